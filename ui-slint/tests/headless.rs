//! The launcher drawn headless from an offline performance: the view model's states and
//! countdowns, the pixels of key regions, and clicks that go through the real command path
//! (ControlCommand -> resolve -> Pulse). The PNGs go under the target directory for review.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use loophole_engine::control::{ControlCommand, Resolved, Snapshot};
use loophole_engine::files::session::load_session;
use loophole_engine::model::Session;
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::script::Script;
use loophole_engine::time::Beats;
use loophole_ui::headless::{HeadlessLauncher, Image};
use loophole_ui::model::{LauncherModel, SlotState, track_colour};

fn band() -> Arc<Session> {
    Arc::new(load_session(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/band.toml")).unwrap())
}

/// The band's intro from beat 0, the verse pressed on beat 1.5 (it waits for bar 2, beat 4),
/// rendered offline to `beat`.
fn performance_at(session: &Arc<Session>, beat: f64) -> (Renderer, Snapshot) {
    let script = "[[at]]\nbeat = 0\nscene = \"intro\"\n\n[[at]]\nbeat = 1.5\nscene = \"verse\"\n";
    let script = Script::parse(script, Path::new("s.toml"), session).unwrap();
    let config = RenderConfig { sample_rate: 48_000, block: 256, seconds: 10.0 };
    let mut r = Renderer::new(session.clone(), script, config).unwrap();
    let frames = (beat * 60.0 / session.tempo.0 * 48_000.0).round() as usize;
    let mut out = vec![0.0; frames * 2];
    r.render_frames(frames, &mut out);
    let snap = r.snapshot();
    (r, snap)
}

fn shot(name: &str, image: &Image) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("loophole-ui-{name}.png"));
    image.write_png(&path).unwrap();
    path
}

#[test]
fn the_model_shows_what_plays_what_is_queued_and_exactly_how_many_beats_are_left() {
    let session = band();
    let (_, snap) = performance_at(&session, 2.0);
    let m = LauncherModel::new(&session, &snap);
    let (intro, verse) = (0, 1);
    let col = |t: &str| session.tracks.iter().position(|x| x.id == t).unwrap();
    let now = snap.transport.beat;
    assert!((now - 2.0).abs() < 1e-9, "rendered to beat {now}");
    // The intro plays keys-a and pad-a; the verse waits for beat 4.
    let keys = m.slot(col("keys"), intro).unwrap();
    assert_eq!((keys.name.as_str(), keys.state), ("keys-a", SlotState::Playing));
    assert!(keys.progress > 0.0 && keys.progress < 1.0, "progress {}", keys.progress);
    let drums = m.slot(col("drums"), verse).unwrap();
    assert_eq!((drums.name.as_str(), drums.state), ("beat-a", SlotState::Queued));
    assert_eq!(drums.countdown, Some(4.0 - now), "the countdown is the beats left to the target");
    assert_eq!(m.scenes[verse].countdown, Some(4.0 - now));
    assert!(m.scenes[intro].active && !m.scenes[verse].active);
    assert_eq!(m.slot(col("drums"), intro).unwrap().state, SlotState::Empty);
    assert_eq!(m.transport.position, "1.3.1");

    // keys-a sits in the intro and the verse: it plays in the intro's slot, and the verse's
    // slot shows its relaunch waiting.
    let keys_verse = m.slot(col("keys"), verse).unwrap();
    assert_eq!((keys_verse.state, keys_verse.countdown), (SlotState::Queued, Some(4.0 - now)));
    assert_eq!(keys.countdown, None);
    // After the verse has landed: it is active and its clips play.
    let (_, later) = performance_at(&session, 5.0);
    let m = LauncherModel::new(&session, &later);
    assert!(m.scenes[verse].active && m.scenes[verse].countdown.is_none());
    assert_eq!(m.slot(col("drums"), verse).unwrap().state, SlotState::Playing);
    assert_eq!(m.slot(col("keys"), verse).unwrap().state, SlotState::Playing, "keys-a plays in the verse's slot");
    assert_eq!(m.slot(col("keys"), intro).unwrap().state, SlotState::Stopped);
}

#[test]
fn the_headless_window_draws_the_states_and_clicks_send_commands_that_pulse_takes() {
    let session = band();
    let (mut r, snap) = performance_at(&session, 2.0);
    let ui = HeadlessLauncher::new(session.clone(), 1366, 768).unwrap();
    ui.show(&snap);
    let image = ui.render();
    let path = shot("band-beat-2", &image);
    let col = |t: &str| session.tracks.iter().position(|x| x.id == t).unwrap();
    let at = |c: usize, row: usize| {
        let (x, y) = ui.slot_centre(c, row);
        image.pixel(x as u32 + 20, y as u32 + 6)
    };
    // A playing slot in its track's colour, a queued one darker, an empty one the grid's grey.
    let keys = col("keys");
    assert_eq!(at(keys, 0), track_colour(keys), "playing slot ({})", path.display());
    assert_eq!(at(col("drums"), 0), 0x27_27_2a, "empty slot ({})", path.display());
    let queued = at(col("drums"), 1);
    assert!(
        queued != track_colour(col("drums")) && queued != 0x27_27_2a,
        "queued slot {queued:06x} ({})",
        path.display()
    );
    // The queued slot's yellow frame.
    let (x, y) = ui.slot_centre(col("drums"), 1);
    let left_edge = (x - ui_cell_half(&ui)) as u32;
    assert!((0..3).any(|dx| image.pixel(left_edge + dx, y as u32) == 0xfd_e0_47), "no frame ({})", path.display());

    // Clicks: a slot launches its clip, a scene header its scene, an empty slot stops its track.
    let (x, y) = ui.slot_centre(col("bass"), 2);
    ui.click(x, y);
    let (x, y) = ui.scene_centre(3);
    ui.click(x, y);
    let (x, y) = ui.slot_centre(col("drums"), 0);
    ui.click(x, y);
    let sent = ui.take_commands();
    let expected = [
        ControlCommand::ClipTrigger { clip: "bass-b".into(), quantise: None, behaviour: None, velocity: None },
        ControlCommand::SceneTrigger { scene: "bridge".into(), quantise: None, mode: None },
        ControlCommand::TrackStop { track: "drums".into(), mode: None },
    ];
    assert_eq!(sent, expected);
    // They are commands Pulse takes: resolved against the session and pressed.
    for c in &sent {
        match c.resolve(&session).unwrap() {
            Resolved::Pulse(action) => {
                r.pulse().press(action, Beats(snap.transport.beat)).unwrap();
            }
            other => panic!("{c:?} resolved to {other:?}"),
        }
    }
}

fn ui_cell_half(ui: &HeadlessLauncher) -> f32 {
    let (a, _) = ui.slot_centre(0, 0);
    let (b, _) = ui.slot_centre(1, 0);
    (b - a) / 2.0
}
