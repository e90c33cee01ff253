//! The Slint binding of the launcher: puts a [`LauncherModel`] into a [`LauncherWindow`] and
//! turns its clicks and keys into [`ControlCommand`]s for the host (the node's inbox), keeping
//! the slot cursor in view. The same binding serves the live window and the headless one. UI
//! thread.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use loophole_engine::control::{ControlCommand, Snapshot};
use loophole_engine::model::Session;
use loophole_engine::pulse::MixChange;
use slint::{Color, ComponentHandle as _, Model, ModelRc, SharedString, VecModel};

use crate::keys::{Cursor, Key, KeyOutcome, Mods, next_quantise, press, scene_command, slot_command, track_stop};
use crate::model::{LauncherModel, beats};
use crate::panels::StepState;
use crate::scroll::{Grid, Scroll};
use crate::{LauncherWindow, SceneData, SlotData, StepData, TrackData};

fn colour(rgb: u32) -> Color {
    Color::from_rgb_u8((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8)
}

fn list<T: Clone + 'static>(items: Vec<T>) -> ModelRc<T> {
    ModelRc::from(Rc::new(VecModel::from(items)))
}

/// Puts `items` into the window's list `current`: row by row where only some rows changed (so
/// Slint keeps the other rows' elements and redraws only what changed), or as a new list (via
/// `set`) when the number of rows changed.
fn update<T: Clone + PartialEq + 'static>(current: ModelRc<T>, items: Vec<T>, set: impl FnOnce(ModelRc<T>)) {
    if let Some(rows) = current.as_any().downcast_ref::<VecModel<T>>()
        && rows.row_count() == items.len()
    {
        for (i, item) in items.into_iter().enumerate() {
            if rows.row_data(i).as_ref() != Some(&item) {
                rows.set_row_data(i, item);
            }
        }
        return;
    }
    set(list(items));
}

/// What the binding keeps between frames: the session, the snapshot on screen (keys toggle from
/// it) and the slot cursor.
pub struct ViewState {
    session: Arc<Session>,
    shown: RefCell<Option<Arc<Snapshot>>>,
    cursor: Cell<Cursor>,
}

impl ViewState {
    /// A fresh state for `session`: nothing shown, the cursor on the first slot.
    pub fn new(session: Arc<Session>) -> Rc<ViewState> {
        Rc::new(ViewState { session, shown: RefCell::new(None), cursor: Cell::new(Cursor::default()) })
    }

    /// The slot cursor.
    pub fn cursor(&self) -> Cursor {
        self.cursor.get()
    }

    /// The session shown.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }
}

/// Shows `snapshot` in `window` (builds the model and puts it in).
pub fn show_snapshot(window: &LauncherWindow, state: &ViewState, snapshot: Arc<Snapshot>) {
    show(window, &LauncherModel::new(&state.session, &snapshot));
    *state.shown.borrow_mut() = Some(snapshot);
}

/// A track's gain and pan as its header writes them: `-6.0dB R30`, `+0.0dB C`.
pub fn mix_text(gain_db: f64, pan: f64) -> String {
    let p = (pan * 100.0).round() as i64;
    let pan = match p {
        0 => "C".to_string(),
        p if p < 0 => format!("L{}", -p),
        p => format!("R{p}"),
    };
    let gain = if gain_db <= -96.0 { "-inf".to_string() } else { format!("{gain_db:+.1}") };
    format!("{gain}dB {pan}")
}

/// Shows `model` in `window`.
pub fn show(window: &LauncherWindow, model: &LauncherModel) {
    let countdown = |c: Option<f64>| SharedString::from(c.map(beats).unwrap_or_default());
    let slots: Vec<SlotData> = model
        .slots
        .iter()
        .map(|s| SlotData {
            col: s.col as i32,
            row: s.row as i32,
            name: s.name.as_str().into(),
            state: s.state.code(),
            progress: s.progress as f32,
            countdown: countdown(s.countdown),
            grid: s.grid.as_str().into(),
            next: s.next.clone().unwrap_or_default().into(),
            colour: colour(s.colour),
        })
        .collect();
    let scenes: Vec<SceneData> = model
        .scenes
        .iter()
        .enumerate()
        .map(|(row, s)| SceneData {
            row: row as i32,
            name: s.name.as_str().into(),
            active: s.active,
            countdown: countdown(s.countdown),
            grid: s.grid.as_str().into(),
            follow: s.follow.clone().unwrap_or_default().into(),
        })
        .collect();
    let tracks: Vec<TrackData> = model
        .tracks
        .iter()
        .enumerate()
        .map(|(col, t)| TrackData {
            col: col as i32,
            name: t.name.as_str().into(),
            colour: colour(t.colour),
            meter: t.meter,
            mix: mix_text(t.gain_db, t.pan).into(),
            mute: t.mute,
            solo: t.solo,
            playing: t.playing,
            stopping: countdown(t.stopping),
            elsewhere: t.elsewhere.clone().unwrap_or_default().into(),
        })
        .collect();
    let (steps, playlist) = match &model.playlist {
        Some(p) => (
            p.steps
                .iter()
                .map(|s| StepData {
                    text: if s.repeat > 1 { format!("{} ×{}", s.scene, s.repeat) } else { s.scene.clone() }.into(),
                    state: match s.state {
                        StepState::Done => 0,
                        StepState::Playing => 1,
                        StepState::Next => 2,
                        StepState::Later => 3,
                    },
                })
                .collect(),
            p.heading(),
        ),
        None => (Vec::new(), String::new()),
    };
    let t = &model.transport;
    window.set_columns(model.tracks.len() as i32);
    window.set_rows(model.scenes.len() as i32);
    update(window.get_slots(), slots, |m| window.set_slots(m));
    update(window.get_scenes(), scenes, |m| window.set_scenes(m));
    update(window.get_tracks(), tracks, |m| window.set_tracks(m));
    update(window.get_steps(), steps, |m| window.set_steps(m));
    let next = model.next.iter().map(|n| SharedString::from(n.as_str())).collect();
    update(window.get_next(), next, |m| window.set_next(m));
    window.set_playlist(playlist.into());
    window.set_position(t.position.as_str().into());
    // The tempo field is not overwritten while the performer types into it.
    window.set_tempo(format!("{:.2}", t.tempo).into());
    window.set_metre(t.metre.as_str().into());
    window.set_playing(t.playing);
    window.set_quantise(t.quantise.name().into());
    window.set_link(t.link_text().into());
    window.set_health(model.health.as_str().into());
    window.set_status(model.status.as_str().into());
    window.set_help(crate::keys::KEY_HELP.into());
}

/// The grid's geometry and scroll as the window has them now.
pub fn grid_of(window: &LauncherWindow) -> (Grid, Scroll) {
    let grid = Grid {
        cols: window.get_columns().max(0) as usize,
        rows: window.get_rows().max(0) as usize,
        cell_w: window.get_cell_width(),
        cell_h: window.get_cell_height(),
        view_w: window.get_grid_width(),
        view_h: window.get_grid_height(),
    };
    (grid, Scroll { x: -window.get_view_x(), y: -window.get_view_y() })
}

/// Puts the cursor at `cursor` and scrolls the grid the least that shows it.
fn move_cursor(window: &LauncherWindow, state: &ViewState, cursor: Cursor) {
    state.cursor.set(cursor);
    window.set_cursor_col(cursor.col as i32);
    window.set_cursor_row(cursor.row as i32);
    let (grid, scroll) = grid_of(window);
    let s = grid.reveal(scroll, cursor.col, cursor.row);
    window.set_view_x(-s.x);
    window.set_view_y(-s.y);
}

/// Wires the window's clicks and keys to `send`: slots launch clips (Shift: legato; Alt, or an
/// empty slot: stop the track), scene headers launch scenes, the track and stop-all buttons
/// stop, the transport bar starts, stops, sets the tempo and cycles the quantisation, and the
/// keyboard map ([`crate::keys`]). `send` runs on the UI thread and must not block.
pub fn connect(window: &LauncherWindow, state: Rc<ViewState>, send: impl Fn(ControlCommand) + Clone + 'static) {
    let weak = window.as_weak();
    let (s, f) = (state.clone(), send.clone());
    window.on_slot_clicked(move |col, row, shift, alt| {
        let (col, row) = (col.max(0) as usize, row.max(0) as usize);
        if let Some(ui) = weak.upgrade() {
            move_cursor(&ui, &s, Cursor { col, row });
        }
        if let Some(c) = slot_command(&s.session, col, row, Mods { shift, alt, ctrl: false }) {
            f(c);
        }
    });
    let (s, f) = (state.clone(), send.clone());
    window.on_scene_clicked(move |row| {
        if let Some(c) = scene_command(&s.session, row.max(0) as usize) {
            f(c);
        }
    });
    let (s, f) = (state.clone(), send.clone());
    window.on_track_stop(move |col, shift| {
        if let Some(c) = track_stop(&s.session, col.max(0) as usize, Mods { shift, ..Mods::default() }) {
            f(c);
        }
    });
    let mix = |state: Rc<ViewState>, f: Box<dyn Fn(ControlCommand)>, solo: bool| {
        move |col: i32| {
            let col = col.max(0) as usize;
            let Some(track) = state.session.tracks.get(col) else { return };
            let view = state.shown.borrow().as_ref().and_then(|s| s.launcher.tracks.get(col).cloned());
            let change = if solo {
                MixChange { solo: Some(!view.is_some_and(|v| v.solo)), ..MixChange::default() }
            } else {
                MixChange { mute: Some(!view.is_some_and(|v| v.mute)), ..MixChange::default() }
            };
            f(ControlCommand::Mix { track: track.id.clone(), change });
        }
    };
    window.on_mute(mix(state.clone(), Box::new(send.clone()), false));
    window.on_solo(mix(state.clone(), Box::new(send.clone()), true));
    let f = send.clone();
    window.on_stop_all(move || f(ControlCommand::StopAll { mode: None }));
    let f = send.clone();
    window.on_transport(move |start| {
        f(if start { ControlCommand::TransportStart } else { ControlCommand::TransportStop })
    });
    let (s, f) = (state.clone(), send.clone());
    window.on_tempo_step(move |by| {
        if let Some(snap) = s.shown.borrow().as_ref() {
            let bpm = (snap.transport.tempo.round() + f64::from(by)).clamp(20.0, 999.0);
            f(ControlCommand::Tempo { bpm });
        }
    });
    let f = send.clone();
    let weak = window.as_weak();
    window.on_tempo_typed(move |text| match text.trim().parse::<f64>() {
        Ok(bpm) => f(ControlCommand::Tempo { bpm }),
        Err(_) => {
            if let Some(ui) = weak.upgrade() {
                ui.set_status(format!("tempo '{text}': type beats per minute, e.g. 128").into());
            }
        }
    });
    let (s, f) = (state.clone(), send.clone());
    window.on_cycle_quantise(move || {
        let now = s.shown.borrow().as_ref().map_or(loophole_engine::time::Quantise::Bar, |x| x.launcher.quantise);
        f(ControlCommand::LauncherQuantise { quantise: next_quantise(now) });
    });
    let weak = window.as_weak();
    window.on_key(move |text, shift, alt, ctrl| {
        let Some(key) = Key::from_text(&text) else { return };
        let mut cursor = state.cursor.get();
        let shown = state.shown.borrow().clone();
        match press(&state.session, shown.as_deref(), &mut cursor, key, Mods { shift, alt, ctrl }) {
            KeyOutcome::Ignored => {}
            KeyOutcome::Moved => {
                if let Some(ui) = weak.upgrade() {
                    move_cursor(&ui, &state, cursor);
                }
            }
            KeyOutcome::Send(c) => {
                if let Some(ui) = weak.upgrade()
                    && cursor != state.cursor.get()
                {
                    move_cursor(&ui, &state, cursor);
                }
                send(c);
            }
        }
    });
}
