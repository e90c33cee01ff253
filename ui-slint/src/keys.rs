//! The keyboard map and the click modifiers: what a key or a modified click does, as plain Rust
//! (tested without a window). Keys move a slot cursor and send [`ControlCommand`]s; the map is
//! documented in docs/ui.md and in [`KEY_HELP`]. UI thread.

use loophole_engine::control::{ControlCommand, Snapshot};
use loophole_engine::model::Session;
use loophole_engine::pulse::{Behaviour, MixChange, StopMode};
use loophole_engine::time::Quantise;

/// The keyboard map as the window's help line shows it (and docs/ui.md spells out).
pub const KEY_HELP: &str = "keys: 1-9 scene · arrows move · Enter launch (Shift legato) · S launch row's scene · \
Backspace stop track (Shift: all) · Space start/stop · +/- tempo (Shift ±10) · Q quantise · M mute · O solo";

/// The global quantisations `Q` cycles through, in order.
pub const QUANTISE_CYCLE: [Quantise; 6] =
    [Quantise::None, Quantise::Division(16), Quantise::Beat, Quantise::Bar, Quantise::Bars(2), Quantise::Bars(4)];

/// A key, as the window reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
    /// Arrow left.
    Left,
    /// Arrow right.
    Right,
    /// Return / Enter.
    Enter,
    /// Backspace (or Delete).
    Backspace,
    /// Space.
    Space,
}

impl Key {
    /// The key of Slint's key event text (special keys are private-use characters).
    pub fn from_text(text: &str) -> Option<Key> {
        use slint::platform::Key as K;
        let c = text.chars().next()?;
        let is = |k: K| char::from(k) == c;
        Some(if is(K::UpArrow) {
            Key::Up
        } else if is(K::DownArrow) {
            Key::Down
        } else if is(K::LeftArrow) {
            Key::Left
        } else if is(K::RightArrow) {
            Key::Right
        } else if is(K::Return) || c == '\n' {
            Key::Enter
        } else if is(K::Backspace) || is(K::Delete) {
            Key::Backspace
        } else if c == ' ' {
            Key::Space
        } else if c.is_control() || ('\u{F700}'..='\u{F8FF}').contains(&c) {
            return None;
        } else {
            Key::Char(c)
        })
    }
}

/// Modifier keys held with a key or a click.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mods {
    /// Shift.
    pub shift: bool,
    /// Alt.
    pub alt: bool,
    /// Control.
    pub ctrl: bool,
}

/// The slot cursor the arrows move: (column = track, row = scene).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The track.
    pub col: usize,
    /// The scene.
    pub row: usize,
}

/// What a key did.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyOutcome {
    /// The key is not in the map.
    Ignored,
    /// The cursor moved.
    Moved,
    /// Send this command.
    Send(ControlCommand),
}

/// The command a click on slot (`col`, `row`) sends: the slot's clip is launched (Shift: legato,
/// taking over the playing clip's position); Alt, or a click on an empty slot, stops the track
/// (as in Live).
pub fn slot_command(session: &Session, col: usize, row: usize, mods: Mods) -> Option<ControlCommand> {
    let track = session.tracks.get(col)?;
    let scene = session.scenes.get(row)?;
    let clip = scene.clips.iter().filter_map(|c| session.clips.get(c.index())).find(|c| c.track.index() == col);
    Some(match clip {
        Some(c) if !mods.alt => ControlCommand::ClipTrigger {
            clip: c.id.clone(),
            quantise: None,
            behaviour: mods.shift.then_some(Behaviour::Legato),
            velocity: None,
        },
        _ => ControlCommand::TrackStop { track: track.id.clone(), mode: None },
    })
}

/// The command a click on scene header `row` sends.
pub fn scene_command(session: &Session, row: usize) -> Option<ControlCommand> {
    let scene = session.scenes.get(row)?;
    Some(ControlCommand::SceneTrigger { scene: scene.id.clone(), quantise: None, mode: None })
}

/// The next global quantisation after `q` in [`QUANTISE_CYCLE`] (the first one after a setting
/// not in the cycle).
pub fn next_quantise(q: Quantise) -> Quantise {
    let i = QUANTISE_CYCLE.iter().position(|x| *x == q).map_or(0, |i| i + 1);
    QUANTISE_CYCLE[i % QUANTISE_CYCLE.len()]
}

/// Performs `key` with `mods`: moves `cursor` within the session's grid, or returns the command
/// to send. `snapshot` is the one on screen (for toggles: start/stop, tempo, quantise, mute).
pub fn press(session: &Session, snapshot: Option<&Snapshot>, cursor: &mut Cursor, key: Key, mods: Mods) -> KeyOutcome {
    let (cols, rows) = (session.tracks.len(), session.scenes.len());
    let track = session.tracks.get(cursor.col).map(|t| t.id.clone());
    let mut step = |dc: isize, dr: isize| {
        let c = (cursor.col as isize + dc).clamp(0, cols.saturating_sub(1) as isize) as usize;
        let r = (cursor.row as isize + dr).clamp(0, rows.saturating_sub(1) as isize) as usize;
        *cursor = Cursor { col: c, row: r };
        KeyOutcome::Moved
    };
    let send = |c: Option<ControlCommand>| c.map_or(KeyOutcome::Ignored, KeyOutcome::Send);
    match key {
        Key::Up => step(0, -1),
        Key::Down => step(0, 1),
        Key::Left => step(-1, 0),
        Key::Right => step(1, 0),
        Key::Enter => send(slot_command(session, cursor.col, cursor.row, Mods { alt: false, ..mods })),
        Key::Backspace if mods.shift => send(Some(ControlCommand::StopAll { mode: None })),
        Key::Backspace => send(track.map(|track| ControlCommand::TrackStop { track, mode: None })),
        Key::Space => {
            let playing = snapshot.is_some_and(|s| s.transport.playing);
            send(Some(if playing { ControlCommand::TransportStop } else { ControlCommand::TransportStart }))
        }
        Key::Char(c @ '1'..='9') => {
            let row = c as usize - '1' as usize;
            if row < rows {
                cursor.row = row;
            }
            send(scene_command(session, row))
        }
        Key::Char('s' | 'S') => send(scene_command(session, cursor.row)),
        Key::Char(c @ ('+' | '=' | '-' | '_')) => {
            let Some(s) = snapshot else { return KeyOutcome::Ignored };
            // Shift+'=' is '+' and Shift+'-' is '_' on most layouts: Shift takes steps of 10.
            let by = if mods.shift { 10.0 } else { 1.0 };
            let sign = if matches!(c, '+' | '=') { 1.0 } else { -1.0 };
            let bpm = (s.transport.tempo.round() + sign * by).clamp(20.0, 999.0);
            send(Some(ControlCommand::Tempo { bpm }))
        }
        Key::Char('q' | 'Q') => {
            let now = snapshot.map_or(Quantise::Bar, |s| s.launcher.quantise);
            send(Some(ControlCommand::LauncherQuantise { quantise: next_quantise(now) }))
        }
        Key::Char(c @ ('m' | 'M' | 'o' | 'O')) => {
            let Some(track) = track else { return KeyOutcome::Ignored };
            let view = snapshot.and_then(|s| s.launcher.tracks.get(cursor.col));
            let change = if c.eq_ignore_ascii_case(&'m') {
                MixChange { mute: Some(!view.is_some_and(|v| v.mute)), ..MixChange::default() }
            } else {
                MixChange { solo: Some(!view.is_some_and(|v| v.solo)), ..MixChange::default() }
            };
            send(Some(ControlCommand::Mix { track, change }))
        }
        Key::Char(_) => KeyOutcome::Ignored,
    }
}

/// The command of a track's stop button: a quantised stop (Shift: at once).
pub fn track_stop(session: &Session, col: usize, mods: Mods) -> Option<ControlCommand> {
    let track = session.tracks.get(col)?;
    Some(ControlCommand::TrackStop { track: track.id.clone(), mode: mods.shift.then_some(StopMode::Immediate) })
}
