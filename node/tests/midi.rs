//! MIDI controllers: a mapping driven through the fake port launches the right clips on the right
//! beats, its LED feedback messages are right, bad mapping files are reported with file:line,
//! external MIDI out sends on time, and a machine without MIDI plays on.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use loophole_engine::EngineConfig;
use loophole_engine::model::{
    Clip, ClipContent, ClipId, LaunchMode, MidiData, MidiMsg, Scene, Session, Track, TrackId, TrackKind,
};
use loophole_engine::pulse::{Pulse, PulseEvent, TriggerKind};
use loophole_engine::signal::Signal;
use loophole_engine::time::{Beats, Bpm, SimClock};
use loophole_node::midi::clock::SharedClock;
use loophole_node::midi::feedback::{Grid, LedState};
use loophole_node::midi::mapping::Control;
use loophole_node::midi::out::{ExternalOut, OutPorts, TimedMidi};
use loophole_node::midi::ports::MidiBackend;
use loophole_node::midi::{AudioPosition, FakeMidi, HostTime, Mapping, Message, MidiOptions, MidiRig, MidiSystem};

use common::*;

const SR: u32 = 48_000;
const BLOCK: usize = 256;
/// Samples per beat at 120 BPM.
const SPB: f64 = 24_000.0;
/// Host time (µs) at which the audio clock is at sample 0.
const HOST0: u64 = 10_000_000;
/// The fake controller's own clock is the host clock minus this (µs).
const PORT_BEHIND: u64 = 7_000_000;
/// How late the control thread sees each new audio position (µs).
const SEEN_LATE: u64 = 300;
const PORT: &str = "Launchpad Pro MK3:Launchpad Pro MK3 LPProMK3 MIDI 20:0";

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/controllers").join(name)
}

/// Three MIDI tracks by two scenes:
///
/// | track | scene a   | scene b         |
/// |-------|-----------|-----------------|
/// | drums | drums-a   | drums-b         |
/// | bass  | bass-a    | (empty)         |
/// | keys  | (empty)   | keys-gate (gate)|
fn session() -> Session {
    let mut s = Session::new("pads", Bpm(120.0));
    let notes = || ClipContent::Midi(Arc::new(MidiData::from_notes(&[(0.0, 0.5, 60, 100)])));
    let drums = s.add_track(Track::new("drums", TrackKind::Midi));
    let bass = s.add_track(Track::new("bass", TrackKind::Midi));
    let keys = s.add_track(Track::new("keys", TrackKind::Midi));
    let drums_a = s.add_clip(Clip::new("drums-a", drums, notes(), Beats(4.0)));
    let drums_b = s.add_clip(Clip::new("drums-b", drums, notes(), Beats(4.0)));
    let bass_a = s.add_clip(Clip::new("bass-a", bass, notes(), Beats(8.0)));
    let mut gate = Clip::new("keys-gate", keys, notes(), Beats(4.0));
    gate.launch_mode = LaunchMode::Gate;
    let keys_gate = s.add_clip(gate);
    s.add_scene(Scene::new("a", vec![drums_a, bass_a]));
    s.add_scene(Scene::new("b", vec![drums_b, keys_gate]));
    s
}

/// The node's control loop with a perfectly paced audio device, offline: every block, the
/// control tick (MIDI in, LEDs) runs at the host time the device published the block's position
/// (plus [`SEEN_LATE`]), then Pulse is ticked, Signal renders, and Pulse's reports go to the log
/// and the LEDs.
struct Node {
    session: Arc<Session>,
    pulse: Pulse,
    signal: Signal,
    clock: SimClock,
    sample: u64,
    rig: MidiRig,
    fake: FakeMidi,
    events: Vec<PulseEvent>,
    buf: Vec<f32>,
}

impl Node {
    fn new(mapping: &Path, fake_port: &str) -> Node {
        let session = Arc::new(session());
        let (pulse, signal) = loophole_engine::build(
            session.clone(),
            &EngineConfig { sample_rate: SR, max_block: BLOCK, queue_capacity: 256 },
        )
        .unwrap();
        let fake = FakeMidi::new(&[fake_port], &[fake_port]);
        let opts = MidiOptions {
            inputs: vec!["launchpad".into()],
            controller: Some(mapping.to_path_buf()),
            ..MidiOptions::default()
        };
        let (rig, warnings) = MidiRig::open(&opts, &session, &mut fake.clone()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let mut rig = rig.expect("the fake ports open");
        rig.set_sample_rate(SR);
        let clock = SimClock { sample_rate: SR, tempo: Bpm(120.0), quantum: 4.0 };
        Node { session, pulse, signal, clock, sample: 0, rig, fake, events: Vec::new(), buf: vec![0.0; BLOCK * 2] }
    }

    fn host_of_sample(sample: f64) -> u64 {
        HOST0 + (sample * 1e6 / SR as f64).round() as u64
    }

    fn beat(&self) -> f64 {
        self.sample as f64 / SPB
    }

    /// Runs blocks until the audio position reaches `beat`.
    fn run_until(&mut self, beat: f64) {
        while self.beat() < beat {
            let now = Beats(self.beat());
            let pos = AudioPosition { sample: self.sample, beat: now, beats_per_sample: 1.0 / SPB };
            let seen = HostTime(Node::host_of_sample(self.sample as f64) + SEEN_LATE);
            // What the node's control thread does with the rig: presses at the beat played (as
            // requests through its inbox), then the LEDs for the launcher at the beat heard.
            let (presses, warnings) = self.rig.poll_presses(pos, seen);
            assert!(warnings.is_empty(), "{warnings:?}");
            for p in presses {
                self.pulse.tick(p.beat, p.beat).unwrap();
                if self.pulse.press(p.action, p.beat).is_err() {
                    self.rig.note_refused();
                }
            }
            self.pulse.tick(now, Beats(now.0 + 2.0 * BLOCK as f64 / SPB)).unwrap();
            let heard = self.rig.heard_beat(seen);
            let view = self.pulse.core().view(heard);
            assert_eq!(self.rig.update_leds(heard, Some(&view)), None);
            self.signal.process(&self.clock.block(self.sample as i64, BLOCK), &mut self.buf);
            self.sample += BLOCK as u64;
            while let Some(e) = self.pulse.poll_event() {
                self.events.push(e);
            }
        }
    }

    /// The performer plays `bytes` at beat `beat` (heard); the message reaches the node
    /// `delay_us` later, stamped with the controller's clock.
    fn play(&mut self, beat: f64, bytes: &[u8], delay_us: u64) {
        let host = Node::host_of_sample(beat * SPB);
        let arrived = host + delay_us;
        self.run_until((arrived - HOST0) as f64 * 1e-6 * SR as f64 / SPB);
        let port = self.fake.inject(PORT, host - PORT_BEHIND, HostTime(arrived), bytes);
        assert_eq!(port, 1, "the rig listens on {PORT}");
    }

    /// Executed triggers as (kind, track, clip, target beat, sample, late).
    fn triggers(&self) -> Vec<Trigger<'_>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                PulseEvent::Executed { kind, track, clip, target, sample, late, .. } => Some((
                    *kind,
                    self.session.track(*track).id.as_str(),
                    clip.map(|c| self.session.clip(c).id.as_str()),
                    target.0,
                    *sample,
                    *late,
                )),
                _ => None,
            })
            .collect()
    }

    /// The LED messages sent so far to the address `(status & 0xf0, number)` on any channel.
    fn leds_of(&self, kind: u8, number: u8) -> Vec<[u8; 3]> {
        self.fake
            .sent()
            .iter()
            .filter_map(|s| s.message())
            .map(Message::to_bytes)
            .filter(|b| b[0] & 0xf0 == kind && b[1] == number)
            .collect()
    }
}

/// An executed trigger: (kind, track, clip, target beat, sample, late).
type Trigger<'a> = (TriggerKind, &'a str, Option<&'a str>, f64, i64, bool);

const NOTE_ON: u8 = 0x90;
const CC: u8 = 0xb0;

#[test]
fn a_launchpad_mapping_driven_through_the_fake_port_launches_the_right_clips_on_the_right_beats() {
    let mut node = Node::new(&example("launchpad.toml"), PORT);
    use TriggerKind::*;
    // Launchpad layout: pad note = 81 + track - 10 * scene (from 0); scene buttons CC 89, 79;
    // track stop CC 101..; stop all CC 10.
    node.play(1.3, &[0x90, 81, 100], 400); // drums, scene a: drums-a on the next bar
    node.play(1.31, &[0x80, 81, 0], 400); // a trigger-mode release does nothing
    node.play(2.0, &[0x90, 82, 127], 400); // bass, scene a: bass-a
    node.play(2.5, &[0x90, 72, 127], 400); // bass, scene b: an empty slot does nothing
    node.play(5.2, &[0xb0, 79, 127], 400); // scene b launch
    node.play(5.25, &[0xb0, 79, 0], 400); // its release does nothing
    node.play(9.5, &[0xb0, 101, 127], 400); // stop track 1 (quantised)
    node.play(16.5, &[0x90, 73, 90], 400); // keys, scene b: keys-gate (gate), held ...
    node.play(21.2, &[0x90, 73, 0], 400); // ... released (note-on velocity 0)
    node.play(25.0, &[0xb0, 10, 127], 400); // stop all
    node.run_until(30.0);

    let bar = |b: f64| (b * SPB).round() as i64;
    assert_eq!(
        node.triggers(),
        vec![
            (Start, "drums", Some("drums-a"), 4.0, bar(4.0), false),
            (Start, "bass", Some("bass-a"), 4.0, bar(4.0), false),
            (Start, "drums", Some("drums-b"), 8.0, bar(8.0), false),
            (Stop, "bass", Some("bass-a"), 8.0, bar(8.0), false),
            (Start, "keys", Some("keys-gate"), 8.0, bar(8.0), false),
            (Stop, "drums", Some("drums-b"), 12.0, bar(12.0), false),
            (Retrigger, "keys", Some("keys-gate"), 20.0, bar(20.0), false),
            (Stop, "keys", Some("keys-gate"), 24.0, bar(24.0), false),
        ],
        "executed triggers"
    );
    // Stop all at 25: nothing plays any more, so nothing is scheduled.
    assert!(node.triggers().iter().all(|t| t.3 <= 24.0));
}

#[test]
fn pad_velocity_becomes_launch_velocity_and_an_apc_grid_uses_one_channel_per_track() {
    let session = session();
    let c = loophole_node::midi::Controller::new(Mapping::load(&example("apc.toml")).unwrap(), &session);
    use loophole_engine::pulse::Action;
    use loophole_node::midi::controller::Intent;
    // APC40: clip pads are notes 53..57 (scenes) on channels 1..8 (tracks).
    let intent = |bytes: [u8; 3]| c.intent(Message::parse(&bytes).unwrap());
    let bass_a = session.clip_by_name("bass-a").unwrap();
    assert_eq!(
        intent([0x91, 53, 127]),
        Some((
            Control::Clip { track: 1, scene: 0 },
            Intent::Press(Action::Launch { clip: bass_a, quantise: None, velocity: Some(1.0) })
        ))
    );
    let Some((_, Intent::Press(Action::Launch { velocity: Some(v), .. }))) = intent([0x92, 54, 64]) else {
        panic!("keys-gate launch")
    };
    assert!((v - 64.0 / 127.0).abs() < 1e-12);
    assert_eq!(intent([0x82, 54, 0]).map(|(_, i)| i), Some(Intent::Press(Action::Release { clip: ClipId(3) })));
    assert_eq!(intent([0x91, 54, 127]), None, "bass has no clip in scene b");
    assert_eq!(intent([0x95, 53, 127]), None, "track 6 is not in the session");
    assert_eq!(intent([0x90, 84, 127]), None, "scene 3 is not in the session");
    assert_eq!(intent([0x92, 48, 127]).map(|(_, i)| i), Some(Intent::ToggleArm { track: 2 }));
    assert!(matches!(intent([0x90, 81, 127]), Some((Control::StopAll, _))));
    assert_eq!(intent([0x90, 82, 127]).map(|(c, _)| c), Some(Control::SceneLaunch { scene: 0 }));
}

#[test]
fn a_press_is_performed_at_the_beat_it_was_played_not_when_it_arrived() {
    let mut node = Node::new(&example("launchpad.toml"), PORT);
    // A few messages that teach the rig the controller's clock (unmapped controls).
    for k in 0..3 {
        node.play(0.5 + k as f64 * 0.5, &[0xb0, 120, 1], 200);
    }
    // Pressed just before the bar at beat 4, but delivered 40 ms (0.08 beats) late: it still
    // belongs to that bar, and starts there phase-aligned, reported late.
    node.play(3.95, &[0x90, 81, 100], 40_000);
    node.run_until(6.0);
    let t = node.triggers();
    assert_eq!(t.len(), 1, "{t:?}");
    let (kind, track, clip, target, sample, late) = t[0];
    assert_eq!((kind, track, clip, target), (TriggerKind::Start, "drums", Some("drums-a"), 4.0));
    assert!(late, "executed after its beat, phase-aligned");
    assert!(sample > (4.0 * SPB) as i64 && sample < (4.2 * SPB) as i64, "{sample}");
}

#[test]
fn led_feedback_follows_a_slot_from_stopped_to_queued_to_playing_to_stopping_and_back() {
    let mut node = Node::new(&example("launchpad.toml"), PORT);
    node.run_until(0.5);
    // Launchpad colours: 45 blue (a clip), 21 green (playing), flashing on channel 2.
    assert_eq!(node.leds_of(NOTE_ON, 81), vec![[0x90, 81, 45]], "a slot with a clip: stopped");
    assert_eq!(node.leds_of(NOTE_ON, 73), vec![[0x90, 73, 45]]);
    assert_eq!(node.leds_of(NOTE_ON, 72), vec![[0x90, 72, 0]], "an empty slot: off");
    assert_eq!(node.leds_of(NOTE_ON, 83), vec![[0x90, 83, 0]], "keys has no clip in scene a");
    assert_eq!(node.leds_of(CC, 89), vec![[0xb0, 89, 1]], "scene a has clips");
    assert_eq!(node.leds_of(CC, 69), vec![[0xb0, 69, 0]], "scene 3 does not exist");
    assert_eq!(node.leds_of(CC, 101), vec![[0xb0, 101, 0]], "track 1 is silent");

    node.play(1.0, &[0x90, 81, 100], 300);
    node.run_until(1.1);
    assert_eq!(node.leds_of(NOTE_ON, 81).last(), Some(&[0x91, 81, 21]), "queued: flashing green");
    node.run_until(4.1);
    assert_eq!(node.leds_of(NOTE_ON, 81).last(), Some(&[0x90, 81, 21]), "playing: green");
    assert_eq!(node.leds_of(CC, 101).last(), Some(&[0xb0, 101, 7]), "track 1's stop button: playing");
    assert_eq!(node.leds_of(CC, 10).last(), Some(&[0xb0, 10, 5]), "stop all: something plays");
    assert_eq!(node.leds_of(CC, 89).last(), Some(&[0xb0, 89, 1]), "launched by its pad, not by the scene");

    node.play(5.0, &[0xb0, 101, 127], 300); // stop track 1 at beat 8
    node.run_until(5.1);
    assert_eq!(node.leds_of(NOTE_ON, 81).last(), Some(&[0x91, 81, 5]), "stopping: flashing red");
    assert_eq!(node.leds_of(CC, 101).last(), Some(&[0xb1, 101, 5]), "its stop button flashes");
    node.run_until(8.1);
    assert_eq!(node.leds_of(NOTE_ON, 81).last(), Some(&[0x90, 81, 45]), "stopped again");
    assert_eq!(node.leds_of(CC, 101).last(), Some(&[0xb0, 101, 0]));
    assert_eq!(
        node.leds_of(NOTE_ON, 81),
        vec![[0x90, 81, 45], [0x91, 81, 21], [0x90, 81, 21], [0x91, 81, 5], [0x90, 81, 45]],
        "the whole story of pad 81, each change sent once"
    );

    // A scene launch: its button flashes until it plays, then is lit.
    node.play(9.0, &[0xb0, 79, 127], 300);
    node.run_until(9.1);
    assert_eq!(node.leds_of(CC, 79).last(), Some(&[0xb1, 79, 21]), "scene b queued");
    assert_eq!(node.leds_of(NOTE_ON, 71).last(), Some(&[0x91, 71, 21]), "drums-b queued");
    assert_eq!(node.leds_of(NOTE_ON, 73).last(), Some(&[0x91, 73, 21]), "keys-gate queued");
    node.run_until(12.1);
    assert_eq!(node.leds_of(CC, 79).last(), Some(&[0xb0, 79, 21]), "scene b plays");
    assert_eq!(node.leds_of(NOTE_ON, 71).last(), Some(&[0x90, 71, 21]));

    // Record arm: track 2 (bass) has an empty slot in scene b; arming lights it red.
    node.play(13.0, &[0xb0, 2, 127], 300);
    node.run_until(13.1);
    assert_eq!(node.leds_of(CC, 2), vec![[0xb0, 2, 0], [0xb0, 2, 5]], "arm button: off, then armed");
    assert_eq!(node.leds_of(NOTE_ON, 72).last(), Some(&[0x90, 72, 5]), "the armed track's empty slot");
    assert_eq!(node.leds_of(NOTE_ON, 82).last(), Some(&[0x90, 82, 45]), "its clip slot is unchanged");
    node.play(14.0, &[0xb0, 2, 0], 300); // the release does nothing
    node.play(14.5, &[0xb0, 2, 127], 300); // pressed again: disarmed
    node.run_until(14.6);
    assert_eq!(node.leds_of(CC, 2), vec![[0xb0, 2, 0], [0xb0, 2, 5], [0xb0, 2, 0]]);
    assert_eq!(node.leds_of(NOTE_ON, 72).last(), Some(&[0x90, 72, 0]));
    assert!(!node.rig.controller().unwrap().feedback().armed(1));

    // At the end every LED is switched off.
    let before = node.fake.sent().len();
    let summary = node.rig.finish();
    let blank: Vec<_> = node.fake.sent()[before..].iter().filter_map(|s| s.message()).collect();
    assert_eq!(blank.len(), 64 + 8 + 8 + 8 + 1, "one message per control");
    assert!(blank.iter().all(|m| m.to_bytes()[2] == 0), "{blank:?}");
    assert_eq!(summary.presses, 5, "pad, track stop, scene, arm, arm (releases of buttons do nothing)");
}

#[test]
fn leds_the_node_blinks_toggle_on_the_beat_while_queued() {
    let dir = scratch("midi-blink");
    let path = dir.join("blink.toml");
    std::fs::write(
        &path,
        "[leds]\noff = 0\nstopped = 1\nqueued = { velocity = 9, blink = true }\nplaying = 3\n\
         [clips]\ntracks = 2\nscenes = 2\nnote = 0\n",
    )
    .unwrap();
    let mut node = Node::new(&path, PORT);
    node.run_until(0.3);
    node.play(0.3, &[0x90, 0, 100], 100); // drums-a at beat 4
    // Sample the pad's LED in every block up to beat 4.2.
    node.run_until(4.2);
    let history = node.leds_of(NOTE_ON, 0);
    assert_eq!(
        history,
        vec![
            [0x90, 0, 1], // stopped
            [0x90, 0, 9], // queued, first half of beat 0
            [0x90, 0, 0], // second half: off
            [0x90, 0, 9],
            [0x90, 0, 0],
            [0x90, 0, 9],
            [0x90, 0, 0],
            [0x90, 0, 9],
            [0x90, 0, 0],
            [0x90, 0, 3], // beat 4.0: playing (the view at the beat heard)
        ]
    );
}

#[test]
fn feedback_states_for_scene_and_arm_controls_without_pulse() {
    let session = session();
    let mapping = Mapping::load(&example("apc.toml")).unwrap();
    let mut fb = loophole_node::midi::feedback::Feedback::new(&mapping, Grid::new(&session));
    assert_eq!(fb.state(&Control::Clip { track: 2, scene: 0 }, None), LedState::Off);
    fb.set_armed(2, true);
    assert_eq!(fb.state(&Control::Clip { track: 2, scene: 0 }, None), LedState::Armed);
    assert_eq!(fb.state(&Control::Clip { track: 2, scene: 1 }, None), LedState::Stopped, "a clip: not armed-empty");
    assert_eq!(fb.state(&Control::TrackArm { track: 2 }, None), LedState::Armed);
    assert_eq!(fb.state(&Control::TrackArm { track: 7 }, None), LedState::Off, "beyond the session");
    fb.set_armed(7, true); // ignored, no panic
    assert_eq!(fb.state(&Control::SceneLaunch { scene: 4 }, None), LedState::Off);
    assert_eq!(fb.state(&Control::StopAll, None), LedState::Off);
    // APC40 pads: yellow for a clip, red for an armed empty slot.
    let msgs = fb.poll(Beats(0.0), None);
    assert!(msgs.contains(&Message::NoteOn { channel: 0, key: 53, velocity: 5 }));
    assert!(msgs.contains(&Message::NoteOn { channel: 2, key: 53, velocity: 3 }));
    assert!(fb.poll(Beats(0.7), None).is_empty(), "nothing changed, nothing blinks");
}

/// (file text, line, column, words the message must contain)
const BAD: &[(&str, usize, usize, &str)] = &[
    ("[clips]\ntracks = 8\nscenes = 8\nnote = 81\nscene_step = 10\n", 4, 8, "(track 8, scene 5) would be note 128"),
    ("[clips]\ntracks = 8\nscenes = 8\nnote = 128\n", 4, 8, "note is 128; it must be 0..=127"),
    ("[clips]\ntracks = 0\nscenes = 8\nnote = 1\n", 2, 10, "clips: tracks is 0"),
    ("[clips]\ntracks = 8\nscenes = 8\n", 1, 1, "give `note = N` or `cc = N`"),
    ("[scene_launch]\ncount = 2\nnote = 1\ncc = 2\n", 4, 6, "not both"),
    ("[stop_all]\nnote = 1\nchannel = 17\n", 3, 11, "channel is 17"),
    (
        "[track_stop]\ncount = 9\nnote = 52\nstep = 0\nchannel_step = 2\n",
        3,
        8,
        "stop of track 9 would be on channel 17",
    ),
    (
        "[clips]\ntracks = 2\nscenes = 2\nnote = 0\n\n[scene_launch]\ncount = 2\nnote = 3\n",
        8,
        8,
        "note 3 on channel 1 is mapped twice",
    ),
    ("[clips]\ntracks = 2\nscenes = 1\nnote = 0\ntempo = 3\n", 5, 1, "unknown field `tempo`"),
    ("[clips]\ntracks = \"eight\"\nscenes = 1\nnote = 0\n", 2, 10, "expected an integer"),
    ("[leds]\nplaying = 200\n[stop_all]\nnote = 1\n", 2, 11, "LED velocity is 200"),
    ("[leds]\nplaying = { velocity = 1, colour = 2 }\n[stop_all]\nnote = 1\n", 2, 11, "an LED value is a velocity"),
    ("[[button]]\nnote = 1\nscene = 1\narm = 2\n", 4, 7, "both `scene` (line 3) and `arm`"),
    ("[[button]]\nnote = 1\n", 1, 1, "this button does nothing"),
    ("[[button]]\nnote = 1\nclip = [1]\n", 3, 8, "clip = [track, scene]"),
    ("[track_stop]\ncount = 1\nnote = 1\nmode = \"later\"\n", 4, 8, "'later' is not a stop mode"),
    ("[track_stop]\ncount = 1\nnote = 1\nmode = \"fade-out\"\n", 4, 8, "needs fade_beats"),
    ("[track_arm]\ncount = 1\nnote = 1\nmode = \"immediate\"\n", 4, 8, "only applies to stop buttons"),
    ("[clips\ntracks = 1\n", 1, 7, "TOML syntax error"),
    ("[controller]\nname = \"x\"\n", 0, 0, "maps no controls"),
];

#[test]
fn bad_mapping_files_are_reported_with_file_line_and_column() {
    let mut wrong = Vec::new();
    for (text, line, column, words) in BAD {
        let shown = match Mapping::parse(text, Path::new("pads.toml")) {
            Ok(_) => "accepted".to_string(),
            Err(e) => e.to_string(),
        };
        let place = if *line == 0 { "pads.toml: ".to_string() } else { format!("pads.toml:{line}:{column}: ") };
        if !shown.starts_with(&place) || !shown.contains(words) {
            wrong.push(format!("expected {place}...{words}... for\n{text}got: {shown}\n"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let missing = Mapping::load(Path::new("/nonexistent/pads.toml")).unwrap_err().to_string();
    assert!(missing.starts_with("/nonexistent/pads.toml: cannot read the controller mapping"), "{missing}");
    let dir = scratch("midi-not-utf8");
    std::fs::write(dir.join("x.toml"), b"[clips]\nnote = \xff\n").unwrap();
    let e = Mapping::load(&dir.join("x.toml")).unwrap_err();
    assert_eq!((e.line, e.column), (Some(2), Some(8)), "{e}");
}

#[test]
fn mangled_mapping_files_never_panic() {
    for name in ["launchpad.toml", "apc.toml"] {
        let text = std::fs::read_to_string(example(name)).unwrap();
        let bytes = text.as_bytes();
        for cut in (0..bytes.len()).step_by(7) {
            let _ = Mapping::parse(&String::from_utf8_lossy(&bytes[..cut]), Path::new(name));
        }
        for (i, replacement) in
            (0..bytes.len()).step_by(3).zip([b'-', b'9', b'[', b'"', b'=', b'\n', b'x'].iter().cycle())
        {
            let mut mangled = bytes.to_vec();
            mangled[i] = *replacement;
            let _ = Mapping::parse(&String::from_utf8_lossy(&mangled), Path::new(name));
        }
    }
}

#[test]
fn the_example_mappings_load() {
    let lp = Mapping::load(&example("launchpad.toml")).unwrap();
    assert_eq!(lp.controls.len(), 64 + 8 + 8 + 8 + 1);
    assert_eq!(lp.port.as_deref(), Some("launchpad"));
    let apc = Mapping::load(&example("apc.toml")).unwrap();
    assert_eq!(apc.controls.len(), 40 + 5 + 8 + 8 + 1);
}

#[test]
fn no_midi_subsystem_is_one_line_and_no_rig() {
    let session = session();
    let opts = MidiOptions {
        inputs: vec!["a".into(), "b".into()],
        output: Some("c".into()),
        controller: Some(example("launchpad.toml")),
        system: MidiSystem::System,
    };
    let mut backend = FakeMidi::unavailable("no ALSA sequencer");
    let (rig, warnings) = MidiRig::open(&opts, &session, &mut backend).unwrap();
    assert!(rig.is_none());
    assert_eq!(warnings, vec!["MIDI: not available (no ALSA sequencer); playing on without MIDI".to_string()]);
    // A bad mapping is still an error, MIDI or not: the user's file is wrong.
    let opts = MidiOptions { controller: Some(PathBuf::from("/nonexistent.toml")), ..opts };
    assert!(MidiRig::open(&opts, &session, &mut backend).is_err());
    // Nothing asked for: nothing opened, nothing said.
    let (rig, warnings) = MidiRig::open(&MidiOptions::default(), &session, &mut backend).unwrap();
    assert!(rig.is_none() && warnings.is_empty());
}

#[test]
fn a_missing_port_or_a_failing_output_is_a_warning_and_the_rest_works() {
    let session = session();
    let fake = FakeMidi::new(&["pads"], &["pads"]);
    let opts = MidiOptions {
        inputs: vec!["pads".into(), "keyboard".into()],
        controller: Some(example("apc.toml")),
        ..MidiOptions::default()
    };
    let (rig, warnings) = MidiRig::open(&opts, &session, &mut fake.clone()).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("no MIDI input matches 'keyboard' (inputs: 'pads')"), "{}", warnings[0]);
    let mut rig = rig.unwrap();
    assert!(rig.describe().contains("LEDs to 'pads'"), "the output defaults to the input's name");
    let pos = AudioPosition { sample: 0, beat: Beats::ZERO, beats_per_sample: 1.0 / SPB };
    fake.set_failing_sends(true);
    let (presses, w) = rig.poll_presses(pos, HostTime(1));
    assert!(presses.is_empty() && w.is_empty());
    let w = rig.update_leds(Beats::ZERO, None);
    assert!(w.is_some(), "one warning when the LED output fails");
    assert_eq!(rig.update_leds(Beats(0.7), None), None, "not one per LED, nor per tick");
    fake.set_failing_sends(false);
    let mut backend: Box<dyn MidiBackend> = Box::new(fake.clone());
    assert!(backend.open_output("pads").is_ok());
}

#[test]
fn external_midi_out_sends_each_event_when_its_sample_is_heard_and_releases_held_notes() {
    let fake = FakeMidi::new(&[], &["synth"]);
    let port = fake.clone().open_output("synth").unwrap();
    // Sample 0 is heard 50 ms from now.
    let start = HostTime::now().0 + 50_000;
    let clock = Arc::new(SharedClock::fixed(HostTime(start), SR));
    let (mut tx, rx) = rtrb::RingBuffer::new(64);
    let out = ExternalOut::start(rx, OutPorts::new(vec![port], vec![Some(0)]), clock).unwrap();
    let on = |key| MidiMsg::NoteOn { channel: 1, key, velocity: 90 };
    // As Signal would push them: in render order, ahead of time.
    tx.push(TimedMidi { track: TrackId(0), sample: 0, msg: on(60) }).unwrap();
    // +100 ms
    tx.push(TimedMidi { track: TrackId(0), sample: 4_800, msg: MidiMsg::NoteOff { channel: 1, key: 60 } }).unwrap();
    tx.push(TimedMidi { track: TrackId(0), sample: 4_800, msg: on(64) }).unwrap();
    tx.push(TimedMidi { track: TrackId(0), sample: 9_600, msg: MidiMsg::Cc { channel: 1, controller: 1, value: 5 } })
        .unwrap(); // +200 ms
    std::thread::sleep(Duration::from_millis(320));
    tx.push(TimedMidi { track: TrackId(0), sample: 480_000, msg: on(70) }).unwrap(); // 10 s away: dropped at the stop
    std::thread::sleep(Duration::from_millis(20));
    let stats = out.stop();
    let sent = fake.sent();
    let got: Vec<[u8; 3]> = sent.iter().filter_map(|s| s.message()).map(Message::to_bytes).collect();
    assert_eq!(got, vec![[0x91, 60, 90], [0x81, 60, 0], [0x91, 64, 90], [0xb1, 1, 5], [0x81, 64, 0]]);
    for (s, due_ms) in sent.iter().zip([0u64, 100, 100, 200]) {
        let due = start + due_ms * 1000;
        let early = due.saturating_sub(s.at.0);
        let late = s.at.0.saturating_sub(due);
        // Sent up to SEND_AHEAD (0.5 ms) early; a loaded 2-core machine may wake late.
        assert!(early <= 600 && late <= 30_000, "sent at {} µs for {due} µs", s.at.0);
    }
    assert_eq!((stats.sent, stats.errors), (5, 0));
}

#[test]
fn play_with_a_midi_input_on_a_machine_without_midi_says_so_once_and_plays_on() {
    let dir = scratch("midi-none");
    let out =
        run_in(&dir, &["play", "--no-link", "--demo", "--audio", "null", "--seconds", "1", "--midi-in", "anything"]);
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    let midi_lines: Vec<&str> = stderr.lines().filter(|l| l.contains("MIDI")).collect();
    assert_eq!(midi_lines.len(), 1, "one MIDI line, got:\n{stderr}");
    assert!(
        midi_lines[0].contains("MIDI: not available (") || midi_lines[0].contains("no MIDI input matches 'anything'"),
        "{stderr}"
    );
    assert!(midi_lines[0].contains("playing on without"), "{stderr}");
    assert!(stdout.contains("played 1."), "it played on:\n{stdout}");
}

#[test]
fn devices_lists_midi_ports_or_says_midi_is_not_available() {
    let out = bin().arg("devices").output().unwrap();
    assert_ok(&out);
    let (stdout, _) = texts(&out);
    assert!(stdout.contains("MIDI: not available (") || stdout.contains("MIDI ("), "{stdout}");
}

#[test]
fn a_bad_controller_mapping_stops_play_with_its_file_and_line_and_exit_code_2() {
    let dir = scratch("midi-bad-mapping");
    std::fs::write(dir.join("pads.toml"), "[clips]\ntracks = 8\nscenes = 8\nnote = 81\nscene_step = 10\n").unwrap();
    let out =
        run_in(&dir, &["demo", "--audio", "null", "--seconds", "1", "--controller", "pads.toml", "--capture", "x.wav"]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = texts(&out);
    assert!(stderr.contains("pads.toml:4:8: the clip slot (track 8, scene 5) would be note 128"), "{stderr}");
    assert!(!dir.join("x.wav").exists(), "it stopped before opening anything");
}

#[test]
fn demo_with_the_fake_controller_sends_led_feedback_for_the_scripted_scenes() {
    let dir = scratch("midi-fake-demo");
    let lp = example("launchpad.toml");
    // The intro at once, the verse pressed at beat 2.5: queued (flashing) until beat 4.
    std::fs::write(dir.join("s.toml"), "[[at]]\nbeat = 0\nscene = \"intro\"\n[[at]]\nbeat = 2.5\nscene = \"verse\"\n")
        .unwrap();
    let out = run_in(
        &dir,
        &[
            "demo",
            "--script",
            "s.toml",
            "--audio",
            "null",
            "--seconds",
            "2.5",
            "--midi",
            "fake",
            "--controller",
            lp.to_str().unwrap(),
        ],
    );
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    assert!(stderr.contains("MIDI: controller 'Launchpad (Programmer mode)' on 'fake', LEDs to 'fake'"), "{stderr}");
    // 89 controls set at the start, the verse's pads change, 89 switched off at the end.
    let line = stdout.lines().find(|l| l.starts_with("MIDI: ")).unwrap_or_else(|| panic!("no MIDI summary:\n{stdout}"));
    let n: u64 = line.split("; ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(n > 2 * 89, "{line}");
}
