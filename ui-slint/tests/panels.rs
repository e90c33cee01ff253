//! The launcher's panels, its big-set layout and its keyboard, headless: the view model of the
//! demo mid-performance (countdowns with their grid, follow-action labels, the playlist), the
//! screenshots of the empty set, the demo and a 16 × 32 set with key regions checked against
//! their colours, and keys and modified clicks that send the right commands. The PNGs go under
//! the target directory (`loophole-ui-*.png`) for review.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use loophole_engine::control::{ControlCommand, Snapshot};
use loophole_engine::files::session::parse_session;
use loophole_engine::model::Session;
use loophole_engine::pulse::{Behaviour, FollowSource, MixChange, StopMode};
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::script::Script;
use loophole_engine::time::Quantise;
use loophole_ui::headless::{HeadlessLauncher, Image};
use loophole_ui::keys::Mods;
use loophole_ui::model::{LauncherModel, SlotState, track_colour};
use loophole_ui::panels::StepState;
use slint::platform::Key;

/// `session` performed by `script` offline up to `beat`.
fn at_beat(session: &Arc<Session>, script: Script, beat: f64) -> Snapshot {
    let config = RenderConfig { sample_rate: 48_000, block: 256, seconds: beat * 60.0 / session.tempo.0 + 1.0 };
    let mut r = Renderer::new(session.clone(), script, config).unwrap();
    let mut scratch = vec![0.0f32; 512];
    while r.beat_at(r.position() as i64 + 256).0 < beat {
        r.render_frames(256, &mut scratch);
    }
    while r.beat_at(r.position() as i64).0 < beat {
        r.render_frames(1, &mut scratch);
    }
    while r.poll_event().is_some() {}
    r.snapshot()
}

fn demo_at(beat: f64) -> (Arc<Session>, Snapshot) {
    let session = Arc::new(loophole_engine::demo::session());
    let snap = at_beat(&session, loophole_engine::demo::script(), beat);
    (session, snap)
}

/// A set of `tracks` × `scenes` with a clip in every slot (`c<track>-<scene>`), 4 beats each.
fn grid_set(tracks: usize, scenes: usize) -> Arc<Session> {
    let mut toml = String::from("[session]\nname = \"big\"\ntempo = 120\nbeats_per_bar = 4\nquantise = \"bar\"\n");
    for t in 0..tracks {
        toml.push_str(&format!("[[track]]\nid = \"t{t}\"\nkind = \"midi\"\ninstrument = {{ type = \"synth\" }}\n"));
    }
    for t in 0..tracks {
        for s in 0..scenes {
            toml.push_str(&format!(
                "[[clip]]\nid = \"c{t}-{s}\"\ntrack = \"t{t}\"\nlength_beats = 4\nnotes = [[0.0, 0.5, 60, 100]]\n"
            ));
        }
    }
    for s in 0..scenes {
        let clips: Vec<String> = (0..tracks).map(|t| format!("\"c{t}-{s}\"")).collect();
        toml.push_str(&format!("[[scene]]\nid = \"s{s}\"\nclips = [{}]\n", clips.join(", ")));
    }
    Arc::new(parse_session(&toml, Path::new("big.toml")).unwrap())
}

fn script(session: &Session, text: &str) -> Script {
    Script::parse(text, Path::new("s.toml"), session).unwrap()
}

fn shot(name: &str, image: &Image) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("loophole-ui-{name}.png"));
    image.write_png(&path).unwrap();
    path
}

/// The demo at beat 75.75: the playlist in its chorus, the hand-played drum fill (pressed at
/// 75.5, a clip in no scene) waiting for its beat, the chorus lead's follow action counting its
/// loops.
#[test]
fn the_demo_mid_performance_shows_exact_countdowns_their_grid_the_next_follow_actions_and_the_playlist() {
    let (session, snap) = demo_at(75.75);
    let m = LauncherModel::new(&session, &snap);
    let now = snap.transport.beat;
    let col = |t: &str| session.tracks.iter().position(|x| x.id == t).unwrap();
    let drums = col("drums");
    // The fill has no slot: the drums' header shows it with the exact beats left to the target
    // the snapshot holds, and the grid it waits for.
    let (clip, at) = snap.launcher.tracks[drums].queued.expect("the fill waits");
    let fill = &session.clips[clip.unwrap().index()];
    assert_eq!(fill.id, "drums-fill");
    let q = if fill.quantise == Quantise::Global { snap.launcher.quantise } else { fill.quantise };
    assert!(at.0 > now && (at.0 / q.grid(4.0).unwrap()).fract().abs() < 1e-9, "{at:?} is not on the {q:?} grid");
    assert_eq!(
        m.tracks[drums].elsewhere.as_deref(),
        Some(format!("drums-fill in {} · {}", loophole_ui::model::beats(at.0 - now), q.name()).as_str())
    );
    assert!(m.slots.iter().all(|s| s.name != "drums-fill"));

    // The playlist: its steps, the one playing and the one next, with the beats left.
    let p = m.playlist.as_ref().expect("the demo plays its playlist");
    assert_eq!(p.title, "playlist song");
    let seq = snap.launcher.sequence.unwrap();
    assert_eq!(p.steps.len(), seq.steps);
    assert_eq!(p.steps[seq.next_step].state, StepState::Next);
    assert_eq!(p.steps[seq.next_step - 1].state, StepState::Playing);
    assert!(p.steps[..seq.next_step - 1].iter().all(|s| s.state == StepState::Done));
    assert_eq!(p.next, Some((seq.next_step, seq.at.0 - now)));

    // The chorus lead's follow action: both alternatives with their chances, the loops left;
    // in its slot and in the side panel's list.
    assert_eq!(m.next.len(), snap.launcher.follow.len(), "{:?}", m.next);
    let lead = m.slots.iter().find(|s| s.name == "lead-b").unwrap();
    assert_eq!(lead.state, SlotState::Playing);
    let (_, decides) = snap.launcher.follow.iter().find(|(s, _)| matches!(s, FollowSource::Clip(_))).unwrap();
    let length = session.clip_by_name("lead-b").map(|c| session.clips[c.index()].length.0).unwrap();
    let loops = ((decides.0 - now) / length).ceil() as u64;
    let label = format!("next: again (50%) / stop (30%) in {loops} loop{}", if loops == 1 { "" } else { "s" });
    assert_eq!(lead.next.as_deref(), Some(label.as_str()));
    assert_eq!(m.next, [format!("lead-b: {label}")]);
    for s in m.slots.iter().filter(|s| s.next.is_some()) {
        assert_eq!(s.state, SlotState::Playing, "{s:?}");
    }

    // Drawn: the playing slots in their tracks' colours, the fill's yellow line in the drums'
    // header, the side panel.
    let ui = HeadlessLauncher::new(session.clone(), 1366, 768).unwrap();
    ui.show(&snap);
    let image = ui.render();
    let path = shot("demo-beat-75.75", &image);
    let (x, y) = ui.slot_centre(lead.col, lead.row);
    assert_eq!(image.pixel(x as u32 - 30, y as u32 - 4), track_colour(lead.col), "({})", path.display());
    let (x, _) = ui.slot_centre(drums, 0);
    let w = ui.window();
    let header = w.get_bar_height() as u32;
    let left = (x - w.get_cell_width() / 2.0) as u32;
    let yellow = (left + 6..left + 80)
        .flat_map(|px| (header + 44..header + 58).map(move |py| (px, py)))
        .map(|(px, py)| image.pixel(px, py))
        .filter(|c| (c >> 16) > 0xc0 && ((c >> 8) & 0xff) > 0xa0 && (c & 0xff) < 0x90)
        .count();
    assert!(yellow > 10, "no yellow countdown line in the drums' header ({})", path.display());
}

#[test]
fn the_set_before_anything_is_launched_draws_stopped_slots_and_empty_panels() {
    let session = grid_set(4, 4);
    let snap = at_beat(&session, Script { actions: vec![] }, 1.0);
    let m = LauncherModel::new(&session, &snap);
    assert!(m.slots.iter().all(|s| s.state == SlotState::Stopped && s.countdown.is_none()));
    assert!(m.playlist.is_none() && m.next.is_empty());
    assert!(m.tracks.iter().all(|t| !t.playing && t.stopping.is_none()));
    let ui = HeadlessLauncher::new(session.clone(), 1366, 768).unwrap();
    ui.show(&snap);
    let image = ui.render();
    let path = shot("empty-set", &image);
    for (c, r) in [(0, 0), (3, 3)] {
        let (x, y) = ui.slot_centre(c, r);
        let dim = image.pixel(x as u32 + 20, y as u32 + 8);
        assert_ne!(dim, track_colour(c), "a stopped slot is drawn like a playing one ({})", path.display());
        assert!(dim < 0x80_80_80, "stopped slot ({c},{r}) {dim:06x} ({})", path.display());
    }
    // The side panel says no playlist runs; the status line is empty (no notice).
    assert_eq!(image.pixel(1366 - 10, 400), 0x1f_1f_23, "side panel ({})", path.display());
    assert_eq!(image.pixel(700, 768 - 30), 0x27_27_2a, "status line ({})", path.display());
}

#[test]
fn a_16_by_32_set_scrolls_to_the_cursor_and_stays_legible_at_1366_by_768() {
    let session = grid_set(16, 32);
    let s = script(&session, "[[at]]\nbeat = 0\nscene = \"s0\"\n\n[[at]]\nbeat = 1\nlaunch = \"c15-31\"\n");
    let snap = at_beat(&session, s, 2.0);
    let m = LauncherModel::new(&session, &snap);
    assert_eq!(m.slots.len(), 16 * 32);
    let queued = m.slot(15, 31).unwrap();
    assert_eq!((queued.state, queued.countdown, queued.grid.as_str()), (SlotState::Queued, Some(4.0 - 2.0), "bar"));
    let ui = HeadlessLauncher::new(session.clone(), 1366, 768).unwrap();
    ui.show(&snap);
    let w = ui.window();
    assert!(w.get_cell_width() >= 96.0 && w.get_cell_height() >= 36.0, "cells too small to read");
    let image = ui.render();
    let path = shot("16x32-top", &image);
    // Scene 0 plays: its slots in their tracks' colours; row 31 is out of view.
    for c in [0, 5, 9] {
        let (x, y) = ui.slot_centre(c, 0);
        assert_eq!(image.pixel(x as u32 - 30, y as u32 + 2), track_colour(c), "slot ({c}, 0) ({})", path.display());
    }
    let (_, y31) = ui.slot_centre(15, 31);
    assert!(y31 > 768.0, "row 31 is visible without scrolling");

    // Arrows move the cursor; End of the grid: the view scrolls to show it.
    for _ in 0..40 {
        ui.key(Key::DownArrow);
    }
    for _ in 0..20 {
        ui.key(Key::RightArrow);
    }
    assert_eq!((ui.cursor().col, ui.cursor().row), (15, 31));
    let image = ui.render();
    let path = shot("16x32-scrolled", &image);
    let (x, y) = ui.slot_centre(15, 31);
    let grid_right = 1366.0 - w.get_side_width();
    let grid_bottom = 768.0 - w.get_footer_height();
    assert!(x < grid_right && y < grid_bottom, "the cursor's slot ({x}, {y}) is out of view ({})", path.display());
    // The queued slot in view: its yellow frame; the cursor's white frame inside the cell.
    let left = (x - w.get_cell_width() / 2.0) as u32;
    assert!((0..3).any(|dx| image.pixel(left + dx, y as u32) == 0xfd_e0_47), "no queued frame ({})", path.display());
    assert!((3..7).any(|dx| image.pixel(left + dx, y as u32) == 0xff_ff_ff), "no cursor frame ({})", path.display());
    // Enter launches the slot under the cursor; a click there too, with Shift legato.
    ui.key(Key::Return);
    ui.click_with(x, y, Mods { shift: true, ..Mods::default() });
    let sent = ui.take_commands();
    assert_eq!(
        sent,
        [
            ControlCommand::ClipTrigger { clip: "c15-31".into(), quantise: None, behaviour: None, velocity: None },
            ControlCommand::ClipTrigger {
                clip: "c15-31".into(),
                quantise: None,
                behaviour: Some(Behaviour::Legato),
                velocity: None
            },
        ]
    );
}

#[test]
fn the_keyboard_map_and_the_buttons_send_the_documented_commands() {
    let (session, snap) = demo_at(20.0);
    let ui = HeadlessLauncher::new(session.clone(), 1366, 768).unwrap();
    ui.show(&snap);
    let _ = ui.render();
    let none = Mods::default();
    let shift = Mods { shift: true, ..none };
    let tempo = snap.transport.tempo.round();
    ui.key_with("2", none); // scene 2
    ui.key(Key::RightArrow); // cursor to bass, scene 2 (the row '2' chose)
    ui.key(Key::Return); // launch it
    ui.key(Key::Backspace); // stop the bass
    ui.key_with(&slint::SharedString::from(Key::Backspace), shift); // stop all
    ui.key_with(" ", none); // the transport runs: stop it
    ui.key_with("+", none);
    ui.key_with("-", shift);
    ui.key_with("q", none);
    ui.key_with("m", none);
    ui.key_with("x", none); // not in the map: nothing
    let (x, y) = ui.slot_centre(0, 0);
    ui.click_with(x, y, Mods { alt: true, ..none }); // Alt-click: stop the drums
    let (x, y) = ui.track_stop_centre(2);
    ui.click_with(x, y, shift); // chords' stop button with Shift: at once
    let (x, y) = ui.stop_all_centre();
    ui.click(x, y);
    let bass = &session.tracks[1].id;
    let verse_bass =
        session.scenes[1].clips.iter().map(|c| &session.clips[c.index()]).find(|c| c.track.index() == 1).unwrap();
    let sent = ui.take_commands();
    let expected = vec![
        ControlCommand::SceneTrigger { scene: session.scenes[1].id.clone(), quantise: None, mode: None },
        ControlCommand::ClipTrigger { clip: verse_bass.id.clone(), quantise: None, behaviour: None, velocity: None },
        ControlCommand::TrackStop { track: bass.clone(), mode: None },
        ControlCommand::StopAll { mode: None },
        ControlCommand::TransportStop,
        ControlCommand::Tempo { bpm: tempo + 1.0 },
        ControlCommand::Tempo { bpm: tempo - 10.0 },
        ControlCommand::LauncherQuantise { quantise: loophole_ui::keys::next_quantise(snap.launcher.quantise) },
        ControlCommand::Mix { track: bass.clone(), change: MixChange { mute: Some(true), ..MixChange::default() } },
        ControlCommand::TrackStop { track: session.tracks[0].id.clone(), mode: None },
        ControlCommand::TrackStop { track: session.tracks[2].id.clone(), mode: Some(StopMode::Immediate) },
        ControlCommand::StopAll { mode: None },
    ];
    assert_eq!(sent, expected);
}

#[test]
fn in_a_band_the_transport_bar_shows_the_conductor() {
    let (_session, mut snap) = demo_at(8.0);
    assert!(!loophole_ui::panels::health_line(&snap).contains("conductor"), "no band, no conductor");
    snap.conductor = Some(loophole_engine::control::ConductorView {
        node: "keys".into(),
        connected: true,
        rtt_ms: Some(0.42),
        ahead_ms: Some(-2.26),
        ..Default::default()
    });
    let line = loophole_ui::panels::health_line(&snap);
    assert!(line.ends_with("conductor connected, round trip 0.4 ms, output -2.3 ms"), "{line}");
    snap.conductor.as_mut().unwrap().connected = false;
    assert!(loophole_ui::panels::health_line(&snap).contains("conductor UNREACHABLE"));
}
