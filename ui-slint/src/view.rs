//! The Slint binding of the launcher: puts a [`LauncherModel`] into a [`LauncherWindow`] and
//! turns its clicks into [`ControlCommand`]s for the host (the node's inbox). UI thread.

use std::rc::Rc;

use loophole_engine::control::ControlCommand;
use loophole_engine::model::Session;
use slint::{Color, ModelRc, SharedString, VecModel};

use crate::model::{LauncherModel, beats};
use crate::{LauncherWindow, SceneData, SlotData, TrackData};

fn colour(rgb: u32) -> Color {
    Color::from_rgb_u8((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8)
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
        })
        .collect();
    window.set_columns(model.tracks.len() as i32);
    window.set_rows(model.scenes.len() as i32);
    window.set_slots(ModelRc::from(Rc::new(VecModel::from(slots))));
    window.set_scenes(ModelRc::from(Rc::new(VecModel::from(scenes))));
    window.set_tracks(ModelRc::from(Rc::new(VecModel::from(tracks))));
    window.set_transport(model.transport.as_str().into());
    window.set_status(model.status.as_str().into());
}

/// The command a click on slot (`col`, `row`) sends: the slot's clip is launched; a click on an
/// empty slot stops its track (as in Live).
pub fn slot_command(session: &Session, col: usize, row: usize) -> Option<ControlCommand> {
    let track = session.tracks.get(col)?;
    let scene = session.scenes.get(row)?;
    let clip = scene.clips.iter().filter_map(|c| session.clips.get(c.index())).find(|c| c.track.index() == col);
    Some(match clip {
        Some(c) => ControlCommand::ClipTrigger { clip: c.id.clone(), quantise: None, behaviour: None, velocity: None },
        None => ControlCommand::TrackStop { track: track.id.clone(), mode: None },
    })
}

/// The command a click on scene header `row` sends.
pub fn scene_command(session: &Session, row: usize) -> Option<ControlCommand> {
    let scene = session.scenes.get(row)?;
    Some(ControlCommand::SceneTrigger { scene: scene.id.clone(), quantise: None, mode: None })
}

/// Wires the window's clicks to `send`: slots launch clips, scene headers launch scenes, the
/// stop-all button stops every track. `send` runs on the UI thread and must not block.
pub fn connect(
    window: &LauncherWindow,
    session: std::sync::Arc<Session>,
    send: impl Fn(ControlCommand) + Clone + 'static,
) {
    let (s, f) = (session.clone(), send.clone());
    window.on_slot_clicked(move |col, row| {
        if let Some(c) = slot_command(&s, col.max(0) as usize, row.max(0) as usize) {
            f(c);
        }
    });
    let (s, f) = (session, send.clone());
    window.on_scene_clicked(move |row| {
        if let Some(c) = scene_command(&s, row.max(0) as usize) {
            f(c);
        }
    });
    window.on_stop_all(move || send(ControlCommand::StopAll { mode: None }));
}
