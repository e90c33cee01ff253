//! Scenes, follow actions, playlists, the playthrough preview and the arrangement, checked on
//! offline renders to the exact sample.

mod common;

use std::sync::Arc;

use common::*;
use loophole_engine::model::*;
use loophole_engine::pulse::{
    Action, Behaviour, Cause, Choice, ClipTrigger, FollowSource, Pulse, PulseEvent, SceneMode, SceneTrigger,
};
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::signal::Signal;
use loophole_engine::time::{Beats, Bpm, Quantise, SimClock};
use loophole_engine::{EngineConfig, MIN_ENGINE_SAMPLE_RATE};

/// 120 BPM at 48 kHz: 24 000 samples per beat.
const SPB: usize = 24_000;

/// Constant-level audio: reading the output back tells which clip plays.
fn dc(level: f32, beats: usize) -> AudioData {
    AudioData { sample_rate: 48_000, left: vec![level; beats * SPB], right: vec![level; beats * SPB] }
}

/// A session of `tracks` audio tracks; clip `k` of track `t` is DC at level `(t + 1) * 0.1 + k * 0.01`,
/// `beats` long, looping.
fn grid(tracks: usize, clips_per_track: usize, beats: usize) -> Session {
    let mut s = Session::new("grid", Bpm(120.0));
    s.crossfade_ms = 0.0;
    for t in 0..tracks {
        let track = s.add_track(Track::new(format!("t{t}"), TrackKind::Audio));
        for k in 0..clips_per_track {
            let level = (t + 1) as f32 * 0.1 + k as f32 * 0.01;
            s.add_clip(Clip::new(
                format!("t{t}c{k}"),
                track,
                ClipContent::Audio(Arc::new(dc(level, beats))),
                Beats(beats as f64),
            ));
        }
    }
    s
}

fn clip_of(s: &Session, t: usize, k: usize) -> ClipId {
    s.clip_by_name(&format!("t{t}c{k}")).unwrap()
}

fn render_session(s: &Session, actions: Vec<(f64, Action)>, seconds: f64) -> (Vec<f32>, Vec<PulseEvent>) {
    render(s, script(actions), 48_000, 256, seconds)
}

fn executed(events: &[PulseEvent]) -> Vec<(String, i64)> {
    events
        .iter()
        .filter_map(|e| match e {
            PulseEvent::Executed { kind, clip, sample, .. } => Some((format!("{kind:?}:{clip:?}"), *sample)),
            _ => None,
        })
        .collect()
}

fn level_at(audio: &[f32], beat: f64) -> f32 {
    audio[2 * (beat * SPB as f64) as usize]
}

fn follow(after: u32, a: FollowTarget, ca: f64, b: Option<(FollowTarget, f64)>) -> FollowActions {
    FollowActions {
        after_loops: after,
        a: FollowAction { next: a, chance: ca, constraints: FollowConstraints::default() },
        b: b.map(|(next, chance)| FollowAction { next, chance, constraints: FollowConstraints::default() }),
    }
}

#[test]
fn full_scene_starts_all_clips_on_one_sample_and_stops_the_rest() {
    let mut s = grid(3, 2, 4);
    let (a0, b0, b1, c0) = (clip_of(&s, 0, 0), clip_of(&s, 1, 0), clip_of(&s, 1, 1), clip_of(&s, 2, 0));
    s.add_scene(Scene::new("one", vec![a0, b0, c0]));
    s.add_scene(Scene::new("two", vec![b1]));
    let one = SceneId(0);
    let two = SceneId(1);
    let (audio, events) = render_session(
        &s,
        vec![
            (0.0, Action::LaunchScene { scene: one, quantise: None }),
            (5.0, Action::LaunchScene { scene: two, quantise: None }),
        ],
        6.0,
    );
    let starts: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            PulseEvent::Executed { kind, sample, .. } if format!("{kind:?}") == "Start" => Some(*sample),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![0, 0, 0, 8 * SPB as i64], "three on sample 0, then scene two at bar 3 (beat 8)");
    assert!((level_at(&audio, 1.0) - (0.1 + 0.2 + 0.3)).abs() < 1e-6);
    // Scene two: only track 1 (its second clip) plays; tracks 0 and 2 stopped.
    assert!((level_at(&audio, 9.0) - 0.21).abs() < 1e-6, "{}", level_at(&audio, 9.0));

    // A track set to keep playing is not stopped by a full launch.
    s.tracks[2].keep_playing = true;
    let (audio, _) = render_session(
        &s,
        vec![
            (0.0, Action::LaunchScene { scene: one, quantise: None }),
            (5.0, Action::LaunchScene { scene: two, quantise: None }),
        ],
        6.0,
    );
    assert!((level_at(&audio, 9.0) - (0.21 + 0.3)).abs() < 1e-6);

    // Empty slots that continue keep the previous clips.
    s.tracks[2].keep_playing = false;
    s.scenes[1].empty_slots = EmptySlot::Continue;
    let (audio, _) = render_session(
        &s,
        vec![
            (0.0, Action::LaunchScene { scene: one, quantise: None }),
            (5.0, Action::LaunchScene { scene: two, quantise: None }),
        ],
        6.0,
    );
    assert!((level_at(&audio, 9.0) - (0.1 + 0.21 + 0.3)).abs() < 1e-6);
}

#[test]
fn partial_scene_leaves_other_tracks_alone() {
    let mut s = grid(2, 2, 4);
    let (a0, b1) = (clip_of(&s, 0, 0), clip_of(&s, 1, 1));
    s.add_scene(Scene::new("b", vec![b1]));
    let partial = Action::Scene(SceneTrigger { scene: SceneId(0), quantise: None, mode: SceneMode::Partial });
    let (audio, _) = render_session(&s, vec![(0.0, launch(a0.0)), (1.0, partial)], 6.0);
    assert!((level_at(&audio, 5.0) - (0.1 + 0.21)).abs() < 1e-6);
    let full = Action::Scene(SceneTrigger { scene: SceneId(0), quantise: None, mode: SceneMode::Full });
    let (audio, _) = render_session(&s, vec![(0.0, launch(a0.0)), (1.0, full)], 6.0);
    assert!((level_at(&audio, 5.0) - 0.21).abs() < 1e-6);
}

#[test]
fn scene_tempo_and_time_signature_apply_at_launch() {
    let mut s = audio_session(120.0, vec![("tick", impulse(10, 48_000), 1.0, true)]);
    s.add_scene(Scene::new("slow", vec![ClipId(0)]));
    s.scenes[0].tempo = Some(Bpm(60.0));
    s.scenes[0].beats_per_bar = Some(3.0);
    s.add_scene(Scene::new("again", vec![ClipId(0)]));
    let sc = vec![
        (0.0, launch(0)),
        (1.5, Action::LaunchScene { scene: SceneId(0), quantise: None }),
        // Bar lines are now every 3 beats from beat 4: pressed at 5, the next bar is 7.
        (5.0, Action::LaunchScene { scene: SceneId(1), quantise: None }),
    ];
    let (audio, events) = render_session(&s, sc, 6.0);
    let on = onsets(&left(&audio), 0.5);
    // 120 BPM until beat 4 (sample 96 000), then 60 BPM: a beat lasts 48 000 samples.
    assert_eq!(&on[..6], &[0, 24_000, 48_000, 72_000, 96_000, 144_000]);
    let scene_two = events
        .iter()
        .find_map(|e| match e {
            PulseEvent::Executed { scene: Some(SceneId(1)), sample, tempo, .. } => Some((*sample, *tempo)),
            _ => None,
        })
        .expect("scene two launched");
    assert_eq!(scene_two, (96_000 + 3 * 48_000, 60.0));
}

#[test]
fn bars_are_numbered_across_time_signature_changes() {
    let mut s = audio_session(120.0, vec![("tick", impulse(10, 48_000), 1.0, true)]);
    s.add_scene(Scene::new("waltz", vec![ClipId(0)]));
    s.scenes[0].beats_per_bar = Some(3.0);
    s.add_scene(Scene::new("seven", vec![ClipId(0)]));
    s.scenes[1].beats_per_bar = Some(3.5);
    let session = Arc::new(s);
    let (mut pulse, _signal): (Pulse, Signal) = loophole_engine::build(
        session.clone(),
        &EngineConfig { sample_rate: 48_000, max_block: 64, queue_capacity: 1 << 10 },
    )
    .unwrap();
    // 4/4 until the waltz launches on bar 3 (beat 8), 3/4 until 7/8 launches on the bar after
    // beat 13 (beat 14), 7/8 from there.
    pulse.press(Action::LaunchScene { scene: SceneId(0), quantise: None }, Beats(6.5)).unwrap();
    pulse.tick(Beats(6.5), Beats(9.0)).unwrap();
    pulse.press(Action::LaunchScene { scene: SceneId(1), quantise: None }, Beats(13.0)).unwrap();
    pulse.tick(Beats(13.0), Beats(15.0)).unwrap();
    let at = |b: f64| pulse.bar_position(Beats(b));
    assert_eq!(at(0.0), (0, 0.0));
    assert_eq!(at(7.5), (1, 3.5));
    assert_eq!(at(8.0), (2, 0.0));
    assert_eq!(at(11.0), (3, 0.0));
    assert_eq!(at(13.0), (3, 2.0));
    assert_eq!(at(14.0), (4, 0.0));
    assert_eq!(at(17.5), (5, 0.0));
    assert_eq!(at(19.0), (5, 1.5));
    // A long way on, the old changes are forgotten but the count goes on.
    pulse.tick(Beats(2000.0), Beats(2001.0)).unwrap();
    assert_eq!(pulse.bar_position(Beats(14.0 + 3.5 * 500.0)), (504, 0.0));
}

#[test]
fn clip_follow_actions_start_the_next_clip_on_the_exact_sample() {
    let mut s = grid(1, 3, 1);
    s.clips[0].follow = Some(follow(2, FollowTarget::Next, 1.0, None));
    s.clips[1].follow = Some(follow(1, FollowTarget::Next, 1.0, None));
    s.clips[2].follow = Some(follow(3, FollowTarget::Stop, 1.0, None));
    let (audio, events) = render_session(&s, vec![(0.0, launch(0))], 4.0);
    let l = left(&audio);
    // c0 plays beats 0-2, c1 beat 2-3, c2 beats 3-6, then stops: no gap, no overlap.
    for (beat, level) in [(0.0, 0.1), (1.999, 0.1), (2.0, 0.11), (2.999, 0.11), (3.0, 0.12), (5.999, 0.12)] {
        let i = (beat * SPB as f64).round() as usize;
        assert!((l[i] - level).abs() < 1e-6, "beat {beat}: {} want {level}", l[i]);
    }
    assert_eq!(l[2 * SPB - 1], 0.1_f32);
    assert_eq!(l[2 * SPB], 0.11_f32, "the next clip starts on the sample where the last loop ends");
    assert!(l[6 * SPB..].iter().all(|v| *v == 0.0), "stopped after three loops");
    let ex = executed(&events);
    assert_eq!(ex.iter().map(|e| e.1).collect::<Vec<_>>(), vec![0, 2 * SPB as i64, 3 * SPB as i64, 6 * SPB as i64]);
    assert!(events.iter().any(|e| matches!(e, PulseEvent::Executed { cause: Cause::ClipFollow { .. }, .. })));
}

#[test]
fn every_follow_target_does_what_it_says() {
    // Four clips on one track, 1 beat each; clip 2 follows with the target under test.
    let run = |target: FollowTarget, constraints: FollowConstraints| {
        let mut s = grid(2, 4, 1);
        let mut f = follow(1, target, 1.0, None);
        f.a.constraints = constraints;
        s.clips[2].follow = Some(f);
        s.add_scene(Scene::new("s0", vec![ClipId(0)]));
        s.add_scene(Scene::new("s1", vec![ClipId(4)]));
        let (audio, _) = render_session(&s, vec![(0.0, launch(2))], 1.5);
        let l = left(&audio);
        l[SPB + 100]
    };
    let none = FollowConstraints::default;
    assert!((run(FollowTarget::Next, none()) - 0.13).abs() < 1e-6);
    assert!((run(FollowTarget::Previous, none()) - 0.11).abs() < 1e-6);
    assert!((run(FollowTarget::First, none()) - 0.10).abs() < 1e-6);
    assert!((run(FollowTarget::Last, none()) - 0.13).abs() < 1e-6);
    assert!((run(FollowTarget::Repeat, none()) - 0.12).abs() < 1e-6);
    assert_eq!(run(FollowTarget::Stop, none()), 0.0);
    assert!((run(FollowTarget::Clip(ClipId(0)), none()) - 0.10).abs() < 1e-6);
    // A scene target launches the scene (track 1's first clip; track 0 stops).
    assert!((run(FollowTarget::Scene(SceneId(1)), none()) - 0.2).abs() < 1e-6);
    // Constraints: next skipping an excluded clip; only; no_repeat with random and one candidate.
    let ex = FollowConstraints { exclude: vec![3], ..none() };
    assert!((run(FollowTarget::Next, ex) - 0.10).abs() < 1e-6, "3 excluded: wraps to 0");
    let only = FollowConstraints { only: vec![1, 2], no_repeat: true, ..none() };
    assert!((run(FollowTarget::Random, only) - 0.11).abs() < 1e-6, "only 1 and 2, not itself: 1");
}

#[test]
fn chance_zero_never_fires_and_b_fires_when_a_cannot() {
    let mut s = grid(1, 2, 1);
    s.clips[0].follow = Some(follow(1, FollowTarget::Next, 0.0, None));
    let (audio, events) = render_session(&s, vec![(0.0, launch(0))], 3.0);
    assert!((level_at(&audio, 5.5) - 0.1).abs() < 1e-6, "still the first clip");
    let decisions: Vec<Choice> = events
        .iter()
        .filter_map(|e| match e {
            PulseEvent::Follow { choice, .. } => Some(*choice),
            _ => None,
        })
        .collect();
    assert!(!decisions.is_empty() && decisions.iter().all(|c| *c == Choice::None), "{decisions:?}");
    s.clips[0].follow = Some(follow(1, FollowTarget::Repeat, 0.0, Some((FollowTarget::Next, 1.0))));
    let (audio, _) = render_session(&s, vec![(0.0, launch(0))], 1.0);
    assert!((level_at(&audio, 1.5) - 0.11).abs() < 1e-6);
}

/// Counts A / B / none over many decisions of one clip that repeats itself every beat.
fn decision_counts(seed: u64, ca: f64, cb: f64, steps: usize) -> (Vec<Choice>, [usize; 3]) {
    let mut s = grid(1, 1, 1);
    s.seed = seed;
    s.tempo = Bpm(999.0);
    s.clips[0].follow = Some(follow(1, FollowTarget::Repeat, ca, Some((FollowTarget::Repeat, cb))));
    let choices = drive_pulse(&s, steps as f64 + 0.5, MIN_ENGINE_SAMPLE_RATE).0;
    let mut counts = [0; 3];
    for c in &choices {
        counts[match c {
            Choice::A => 0,
            Choice::B => 1,
            Choice::None => 2,
        }] += 1;
    }
    (choices, counts)
}

/// Runs Pulse and Signal directly (the lowest sample rate and blocks of 64 ms keep it fast)
/// and returns every follow decision in order (with the source and target), starting everything
/// at beat 0.
fn drive_pulse(s: &Session, beats: f64, rate: u32) -> (Vec<Choice>, Vec<String>) {
    let session = Arc::new(s.clone());
    let frames = rate as usize * 64 / 1000;
    let (mut pulse, mut signal): (Pulse, Signal) = loophole_engine::build(
        session.clone(),
        &EngineConfig { sample_rate: rate, max_block: frames, queue_capacity: 1 << 14 },
    )
    .unwrap();
    let clock = SimClock { sample_rate: rate, tempo: s.tempo, quantum: s.beats_per_bar };
    if session.scenes.is_empty() {
        for t in 0..session.tracks.len() {
            let first = session.clips_of_track(TrackId(t as u32))[0];
            pulse.press(launch(first.0), Beats(0.0)).unwrap();
        }
    } else {
        pulse.press(Action::LaunchScene { scene: SceneId(0), quantise: Some(Quantise::None) }, Beats(0.0)).unwrap();
    }
    let mut out = vec![0f32; frames * 2];
    let mut t = 0i64;
    let mut choices = Vec::new();
    let mut trace = Vec::new();
    loop {
        let b = clock.block(t, frames);
        if b.beat_at_first_sample.0 > beats {
            break;
        }
        pulse.tick(b.beat_at_first_sample, Beats(b.end_beat().0 + 0.5)).unwrap();
        signal.process(&b, &mut out);
        t += frames as i64;
        while let Some(e) = pulse.poll_event() {
            if let PulseEvent::Follow { choice, source, next, beat, occurrence } = e {
                choices.push(choice);
                trace.push(format!("{source:?} {beat:?} {occurrence} {choice:?} {next:?}"));
            }
        }
    }
    (choices, trace)
}

#[test]
fn probabilistic_choices_match_their_chances() {
    // Chi-square goodness of fit with 2 degrees of freedom: 13.8 is the 0.1% critical value.
    for (ca, cb) in [(0.7, 0.3), (0.25, 0.25), (0.5, 0.0)] {
        let n = 6000;
        let (_, counts) = decision_counts(42, ca, cb, n);
        let total: usize = counts.iter().sum();
        assert!(total >= n - 2, "{total} decisions");
        let expected = [ca * total as f64, cb * total as f64, (1.0 - ca - cb).max(0.0) * total as f64];
        let chi2: f64 =
            counts.iter().zip(expected).filter(|(_, e)| *e > 0.0).map(|(o, e)| (*o as f64 - e).powi(2) / e).sum();
        assert!(chi2 < 13.8, "chances {ca}/{cb}: counts {counts:?}, expected {expected:?}, chi2 {chi2}");
        for (o, e) in counts.iter().zip(expected) {
            if e == 0.0 {
                assert_eq!(*o, 0, "an outcome with no chance never happens");
            }
        }
    }
}

#[test]
fn random_targets_are_uniform_over_the_candidates() {
    let mut s = grid(1, 5, 1);
    s.tempo = Bpm(999.0);
    s.seed = 7;
    for c in 0..5 {
        let mut f = follow(1, FollowTarget::Random, 1.0, None);
        f.a.constraints.exclude = vec![4];
        s.clips[c].follow = Some(f);
    }
    let (_, trace) = drive_pulse(&s, 4000.5, MIN_ENGINE_SAMPLE_RATE);
    // The clip each decision came from is the one the previous decision chose.
    let mut counts = [0usize; 5];
    for line in &trace {
        let from: usize = line.split("ClipId(").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
        counts[from] += 1;
    }
    assert_eq!(counts[4], 0, "excluded");
    let total: usize = counts.iter().sum();
    let e = total as f64 / 4.0;
    let chi2: f64 = counts[..4].iter().map(|o| (*o as f64 - e).powi(2) / e).sum();
    assert!(chi2 < 16.3, "counts {counts:?} chi2 {chi2} (3 dof, 0.1%)");
}

/// A set where every clip and every scene has follow actions with probabilities and constraints.
fn busy_set(seed: u64) -> Session {
    let mut s = grid(3, 4, 1);
    s.seed = seed;
    s.tempo = Bpm(999.0);
    for c in 0..s.clips.len() {
        let mut f = follow(
            1 + (c % 2) as u32,
            [FollowTarget::Next, FollowTarget::Random, FollowTarget::Previous][c % 3],
            0.6,
            Some((FollowTarget::Random, 0.3)),
        );
        f.a.constraints.no_repeat = c % 2 == 0;
        s.clips[c].follow = Some(f);
    }
    for k in 0..4 {
        let clips = (0..3).map(|t| clip_of(&s, t, k)).collect();
        let mut scene = Scene::new(format!("s{k}"), clips);
        scene.follow = Some(follow(3, FollowTarget::Random, 0.5, Some((FollowTarget::Next, 0.5))));
        s.add_scene(scene);
    }
    s
}

#[test]
fn two_pulses_agree_on_ten_thousand_follow_decisions_and_a_new_seed_changes_them() {
    let a = drive_pulse(&busy_set(1), 7000.0, MIN_ENGINE_SAMPLE_RATE).1;
    let b = drive_pulse(&busy_set(1), 7000.0, MIN_ENGINE_SAMPLE_RATE).1;
    assert!(a.len() >= 10_000, "{} decisions", a.len());
    assert_eq!(a, b, "same seed, same decisions");
    let c = drive_pulse(&busy_set(2), 7000.0, MIN_ENGINE_SAMPLE_RATE).1;
    let same = a.iter().zip(&c).filter(|(x, y)| x == y).count();
    assert!(same < a.len() / 2, "a different seed gives different choices ({same} of {} equal)", a.len());
}

#[test]
fn same_seed_renders_are_bit_identical_and_decisions_are_logged() {
    let mut s = busy_set(3);
    s.tempo = Bpm(140.0);
    let go = vec![(0.0, Action::LaunchScene { scene: SceneId(0), quantise: None })];
    let (a, ev) = render_session(&s, go.clone(), 8.0);
    let (b, _) = render_session(&s, go.clone(), 8.0);
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    let json: Vec<String> = ev.iter().map(|e| e.to_json(&s).to_string()).collect();
    assert!(json.iter().any(|j| j.contains("\"event\":\"follow\"") && j.contains("\"choice\"")), "{json:?}");
    s.seed = 4;
    let (c, _) = render_session(&s, go, 8.0);
    assert!(a.iter().zip(&c).any(|(x, y)| x.to_bits() != y.to_bits()));
}

#[test]
fn playlist_plays_scenes_with_repeats_then_stops_or_loops() {
    let mut s = grid(1, 3, 2);
    for k in 0..3 {
        s.add_scene(Scene::new(format!("s{k}"), vec![ClipId(k)]));
    }
    s.playlists.push(Playlist {
        id: "song".into(),
        steps: vec![
            PlaylistStep { scene: SceneId(0), repeat: 2 },
            PlaylistStep { scene: SceneId(2), repeat: 1 },
            PlaylistStep { scene: SceneId(1), repeat: 1 },
        ],
        looping: false,
    });
    let play = Action::Playlist { playlist: 0, step: 0, quantise: None };
    let (audio, events) = render_session(&s, vec![(0.0, play)], 6.0);
    for (beat, level) in [(0.5, 0.1), (3.9, 0.1), (4.0, 0.12), (6.0, 0.11), (7.9, 0.11)] {
        assert!((level_at(&audio, beat) - level).abs() < 1e-6, "beat {beat}");
    }
    assert_eq!(level_at(&audio, 8.0), 0.0, "stopped at the end");
    let steps: Vec<(usize, f64)> = events
        .iter()
        .filter_map(|e| match e {
            PulseEvent::Step { step, beat, .. } => Some((*step, beat.0)),
            _ => None,
        })
        .collect();
    assert_eq!(steps, vec![(0, 0.0), (1, 4.0), (2, 6.0)]);
    // Looping: back to the first step at beat 8. A playlist-mode scene trigger starts at its step.
    s.playlists[0].looping = true;
    let (audio, _) = render_session(&s, vec![(0.0, play)], 6.0);
    assert!((level_at(&audio, 8.5) - 0.1).abs() < 1e-6);
    let from_two = Action::Scene(SceneTrigger { scene: SceneId(2), quantise: None, mode: SceneMode::Playlist });
    let (audio, _) = render_session(&s, vec![(0.0, from_two)], 3.0);
    assert!((level_at(&audio, 0.5) - 0.12).abs() < 1e-6);
    assert!((level_at(&audio, 2.5) - 0.11).abs() < 1e-6);
}

/// A musical set with MIDI and audio, loops shorter than their scenes, a one-shot, a scene tempo,
/// a continuing empty slot and a keep-playing track.
fn song() -> Session {
    let mut s = audio_session(
        110.0,
        vec![
            ("pad", sine(4 * 26_182, 48_000, 220.0, 0.2), 4.0, true),
            ("pad2", sine(4 * 26_182, 48_000, 330.0, 0.2), 8.0, true),
            ("hit", sine(20_000, 48_000, 880.0, 0.3), 2.0, false),
        ],
    );
    s.crossfade_ms = 3.0;
    s.clips[1].track = TrackId(0);
    s.tracks.remove(1);
    s.clips[2].track = TrackId(1);
    let synth = s.add_track(Track::new("synth", TrackKind::Midi));
    let notes: Vec<(f64, f64, u8, u8)> = (0..8).map(|i| (i as f64 * 0.5, 0.4, 57 + (i * 3 % 12) as u8, 100)).collect();
    s.add_clip(Clip::new("arp", synth, ClipContent::Midi(Arc::new(MidiData::from_notes(&notes))), Beats(4.0)));
    let bass: Vec<(f64, f64, u8, u8)> = (0..4).map(|i| (i as f64 * 2.0, 1.5, 40 + i as u8, 110)).collect();
    s.add_clip(Clip::new("bass", synth, ClipContent::Midi(Arc::new(MidiData::from_notes(&bass))), Beats(8.0)));
    let mut a = Scene::new("a", vec![ClipId(0), ClipId(2), ClipId(3)]);
    a.empty_slots = EmptySlot::Stop;
    let mut b = Scene::new("b", vec![ClipId(1), ClipId(4)]);
    b.tempo = Some(Bpm(96.0));
    b.empty_slots = EmptySlot::Continue;
    let c = Scene::new("c", vec![ClipId(0)]);
    s.add_scene(a);
    s.add_scene(b);
    s.add_scene(c);
    s
}

#[test]
fn playthrough_is_bit_identical_to_the_committed_arrangement() {
    let s = song();
    let (preview, events) =
        render_session(&s, vec![(0.0, Action::Playthrough { from: SceneId(0), to: SceneId(2), quantise: None })], 14.0);
    assert!(events.iter().any(|e| matches!(e, PulseEvent::Step { step: 2, .. })));
    assert!(preview.iter().any(|v| v.abs() > 0.1));
    // The arrangement is untouched by the preview; commit the same scenes and render that.
    assert!(s.arrangement.clips.is_empty());
    let mut committed = s.clone();
    let end = committed.commit_scenes(SceneId(0), SceneId(2), Beats(0.0));
    assert_eq!(end, Beats(4.0 + 8.0 + 4.0));
    assert!(!committed.arrangement.tempo.is_empty(), "scene b's tempo is committed");
    let (arranged, _) = render_session(&committed, vec![(0.0, Action::PlayArrangement)], 14.0);
    assert_eq!(preview.len(), arranged.len());
    if let Some(i) = preview.iter().zip(&arranged).position(|(x, y)| x.to_bits() != y.to_bits()) {
        panic!("first difference at interleaved sample {i}: {} vs {}", preview[i], arranged[i]);
    }
}

#[test]
fn launching_takes_a_track_from_the_arrangement_and_back_returns_it() {
    let mut s = grid(2, 2, 4);
    s.arrangement.clips.push(Placement {
        track: TrackId(0),
        clip: ClipId(0),
        start: Beats(0.0),
        length: Beats(16.0),
        offset: Beats(0.0),
    });
    s.arrangement.clips.push(Placement {
        track: TrackId(1),
        clip: ClipId(2),
        start: Beats(4.0),
        length: Beats(4.0),
        offset: Beats(0.0),
    });
    let (audio, _) = render_session(
        &s,
        vec![
            (0.0, Action::PlayArrangement),
            (1.0, Action::Launch { clip: ClipId(1), quantise: Some(Quantise::Beat), velocity: None }),
            (6.5, Action::BackToArrangement { quantise: Some(Quantise::Bar) }),
        ],
        8.0,
    );
    assert!((level_at(&audio, 0.5) - 0.1).abs() < 1e-6);
    assert!((level_at(&audio, 2.5) - 0.11).abs() < 1e-6, "track 0 taken over by the launched clip");
    assert!((level_at(&audio, 5.0) - (0.11 + 0.2)).abs() < 1e-6, "track 1 still follows its lane");
    assert!((level_at(&audio, 8.5) - 0.1).abs() < 1e-6, "back on the lane at bar 3; track 1's placement ended at 8");
    assert!((level_at(&audio, 12.5) - 0.1).abs() < 1e-6);
    assert!((level_at(&audio, 15.95) - 0.1).abs() < 1e-6);
}

#[test]
fn moving_clips_between_views_keeps_ids_and_checks_content() {
    let mut s = song();
    let hit = s.clip_by_name("hit").unwrap();
    let synth = s.track_by_name("synth").unwrap();
    let err = s.place_clip(hit, synth, Beats(0.0), None, false).unwrap_err();
    assert!(err.to_string().contains("audio clips go on audio lanes"), "{err}");
    let placed = s.place_clip(hit, TrackId(1), Beats(8.0), None, false).unwrap();
    assert_eq!(placed, hit, "a move keeps the id");
    assert!(s.scenes.iter().all(|sc| !sc.clips.contains(&hit)), "and leaves the launcher");
    let arp = s.clip_by_name("arp").unwrap();
    let copy = s.place_clip(arp, synth, Beats(0.0), Some(Beats(8.0)), true).unwrap();
    assert_ne!(copy, arp);
    assert_eq!(s.clip(copy).id, "arp-copy");
    assert!(s.scenes[0].clips.contains(&arp), "a duplicate leaves the original in the launcher");
    assert!(s.validate().is_ok());
}

#[test]
fn clip_trigger_behaviours() {
    let s = grid(1, 2, 4);
    let trig = |clip: u32, b: Behaviour| {
        Action::Trigger(ClipTrigger {
            clip: ClipId(clip),
            quantise: Some(Quantise::None),
            behaviour: Some(b),
            launch_velocity: None,
        })
    };
    // Start on a playing clip changes nothing; retrigger restarts it.
    let (_, ev) = render_session(&s, vec![(0.0, launch(0)), (1.0, trig(0, Behaviour::Start))], 2.0);
    assert_eq!(executed(&ev).len(), 1);
    let (_, ev) = render_session(&s, vec![(0.0, launch(0)), (1.0, trig(0, Behaviour::Retrigger))], 2.0);
    assert_eq!(executed(&ev)[1].0, "Retrigger:Some(ClipId(0))");
    // Legato keeps the position even though the clip is not set to legato; stop stops.
    let (_, ev) = render_session(&s, vec![(0.0, launch(0)), (1.0, trig(1, Behaviour::Legato))], 2.0);
    assert_eq!(executed(&ev)[1].0, "Legato:Some(ClipId(1))");
    let (audio, _) = render_session(&s, vec![(0.0, launch(0)), (1.0, trig(0, Behaviour::Stop))], 2.0);
    assert_eq!(level_at(&audio, 1.5), 0.0);
}

#[test]
fn a_scene_follow_action_is_reported_with_the_scene_as_its_source_and_carried_out() {
    // Two scenes of one 4-beat clip each; scene "a" follows to the next scene after one loop.
    let mut s = grid(1, 2, 4);
    s.add_scene(Scene::new("a", vec![ClipId(0)]));
    s.add_scene(Scene::new("b", vec![ClipId(1)]));
    s.scenes[0].follow = Some(follow(1, FollowTarget::Next, 1.0, None));
    let (audio, ev) =
        render_session(&s, vec![(0.0, Action::LaunchScene { scene: SceneId(0), quantise: Some(Quantise::None) })], 3.0);
    let follows: Vec<(FollowSource, f64, u64, Choice, Option<FollowTarget>)> = ev
        .iter()
        .filter_map(|e| match e {
            PulseEvent::Follow { source, beat, occurrence, choice, next } => {
                Some((*source, beat.0, *occurrence, *choice, *next))
            }
            _ => None,
        })
        .collect();
    // Exactly one decision, the scene's (its clips have no follow actions), at the end of its
    // first loop.
    assert_eq!(follows, vec![(FollowSource::Scene(SceneId(0)), 4.0, 0, Choice::A, Some(FollowTarget::Next))]);
    // And it was carried out: scene "b" starts there, caused by scene "a"'s follow action.
    let started: Vec<(Option<ClipId>, Option<SceneId>, Cause, i64)> = ev
        .iter()
        .filter_map(|e| match e {
            PulseEvent::Executed { clip, scene, cause, sample, .. }
                if matches!(cause, Cause::SceneFollow { .. } | Cause::ClipFollow { .. }) =>
            {
                Some((*clip, *scene, *cause, *sample))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        vec![(Some(ClipId(1)), Some(SceneId(1)), Cause::SceneFollow { from: SceneId(0) }, 4 * SPB as i64)]
    );
    assert!((level_at(&audio, 4.5) - 0.11).abs() < 1e-6, "scene b's clip plays after the follow action");
}

#[test]
fn renderer_reports_the_tempo_it_changed_to() {
    let mut s = grid(1, 1, 4);
    s.add_scene(Scene::new("fast", vec![ClipId(0)]));
    s.scenes[0].tempo = Some(Bpm(150.0));
    let mut r = Renderer::new(
        Arc::new(s),
        script(vec![(0.0, Action::LaunchScene { scene: SceneId(0), quantise: None })]),
        RenderConfig { sample_rate: 48_000, block: 512, seconds: 1.0 },
    )
    .unwrap();
    let mut buf = vec![0f32; 1024];
    r.render_block(&mut buf);
    r.render_block(&mut buf);
    assert_eq!(r.tempo(), Bpm(150.0));
}

#[test]
fn a_recorded_launcher_performance_commits_to_the_same_sound() {
    let mut s = song();
    s.scenes[1].tempo = None; // a performance log has no tempo track yet
    s.clips[1].legato = true;
    let actions = vec![
        (0.0, Action::LaunchScene { scene: SceneId(0), quantise: None }),
        (5.0, launch(1)),
        (9.5, Action::LaunchScene { scene: SceneId(2), quantise: None }),
        (13.0, Action::StopAll { mode: loophole_engine::pulse::StopMode::Quantised }),
    ];
    let (live, events) = render_session(&s, actions, 9.0);
    let mut committed = s.clone();
    let n = committed.commit_performance(&events, Beats(100.0));
    assert!(n >= 4, "{n} placements");
    let (arranged, _) = render_session(&committed, vec![(0.0, Action::PlayArrangement)], 9.0);
    if let Some(i) = live.iter().zip(&arranged).position(|(x, y)| x.to_bits() != y.to_bits()) {
        panic!("first difference at interleaved sample {i}: {} vs {}", live[i], arranged[i]);
    }
}
