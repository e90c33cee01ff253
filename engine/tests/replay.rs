//! Deterministic replay: a Pulse fast-forwarded through a log of presses to a beat, then
//! resumed, agrees with a Pulse that played the same log on every later event: the same
//! triggers (id, track, target, what they do), the same follow-action decisions and playlist
//! steps, the same tempo changes, and the same state at the end. Shown over the examples (with
//! their scripts and previews) and over random press logs (proptest).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use loophole_engine::files::session::load_session;
use loophole_engine::model::*;
use loophole_engine::pulse::{
    Action, Behaviour, ClipTrigger, CommandId, MixChange, Press, PulseCore, PulseEvent, SceneMode, SceneTrigger,
    StopMode, When,
};
use loophole_engine::queue::{Command, Op, Scheduled};
use loophole_engine::script::Script;
use loophole_engine::time::{Beats, Bpm, Quantise};
use proptest::prelude::*;

/// What a Pulse did after a beat: the triggers a Signal would execute (by target, then id), and
/// every decision, step and tempo change at or after it.
#[derive(Debug, PartialEq)]
struct After {
    triggers: Vec<(u64, u32, u64, String)>,
    notices: Vec<String>,
}

/// Plays `log` through `pulse` as the offline renderer does, in blocks of the given beat
/// lengths (cycled) from `from` to `end`: every press before a block's end is made (after
/// ticking up to it), then the block is ticked. Returns what Signal would execute with a target
/// after `after` and the notices at or after it.
fn drive(pulse: &mut PulseCore, log: &[Press], from: Beats, end: Beats, blocks: &[f64], after: Beats) -> After {
    let mut pending: BTreeMap<u64, Scheduled> = BTreeMap::new();
    let mut notices = Vec::new();
    let mut next = log.iter().position(|p| p.beat.0 >= from.0).unwrap_or(log.len());
    let mut now = from;
    let mut k = 0;
    let collect = |pulse: &mut PulseCore, pending: &mut BTreeMap<u64, Scheduled>, notices: &mut Vec<String>| {
        while let Some(c) = pulse.poll_command() {
            match c {
                Command::Schedule(ev) => {
                    pending.insert(ev.id.0, ev);
                }
                Command::Cancel { id } => {
                    pending.remove(&id.0);
                }
                Command::Mix { .. } | Command::Panic => {}
            }
        }
        while let Some(e) = pulse.poll_event() {
            let beat = match &e {
                PulseEvent::Follow { beat, .. } | PulseEvent::Step { beat, .. } => *beat,
                PulseEvent::TempoChange(c) => c.beat,
                PulseEvent::Refused { target, .. } => *target,
                _ => continue,
            };
            if beat.0 >= after.0 - 1e-9 {
                notices.push(format!("{e:?}"));
            }
        }
    };
    while now.0 < end.0 {
        let b1 = Beats((now.0 + blocks[k % blocks.len()]).min(end.0));
        k += 1;
        while let Some(p) = log.get(next).filter(|p| p.beat.0 < b1.0) {
            let _ = pulse.tick(p.beat, p.beat);
            let _ = pulse.press_when(p.action, p.when, p.beat);
            collect(pulse, &mut pending, &mut notices);
            next += 1;
        }
        let _ = pulse.tick(now, b1);
        collect(pulse, &mut pending, &mut notices);
        now = b1;
    }
    let mut triggers: Vec<_> = pending
        .values()
        .filter(|e| e.target.0 > after.0 + 1e-9)
        .map(|e| {
            let op = match e.op {
                Op::Start { clip, anchor, gain } => format!("start {} @{} x{}", clip.0, anchor.0, gain),
                Op::Stop { fade } => format!("stop {fade:?}"),
                Op::RecordStart { take, slot, until } => format!("record {} {slot:?} {until:?}", take.0),
                Op::RecordStop { take } => format!("record-stop {}", take.0),
            };
            ((e.target.0 * 1e6).round() as u64, e.track.0, e.id.0, op)
        })
        .collect();
    triggers.sort();
    After { triggers, notices }
}

/// Plays the whole log, and separately fast-forwards to `at` and resumes there; both must agree
/// on everything after `at`, and end in the same state.
fn check_replay(session: &Arc<Session>, log: &[Press], at: Beats, end: Beats, blocks: &[f64]) {
    let mut played = PulseCore::new(session.clone());
    let all = drive(&mut played, log, Beats::ZERO, end, blocks, at);

    let mut replayed = PulseCore::new(session.clone());
    replayed.fast_forward(log, at);
    replayed.resume(at);
    let later = drive(&mut replayed, log, at, end, blocks, at);

    assert_eq!(later.triggers, all.triggers, "triggers after beat {} differ", at.0);
    assert_eq!(later.notices, all.notices, "decisions after beat {} differ", at.0);
    for t in 0..session.tracks.len() {
        let t = TrackId(t as u32);
        for b in [end.0, end.0 + 1.0, end.0 + 7.5] {
            assert_eq!(played.playing_at(t, Beats(b)), replayed.playing_at(t, Beats(b)), "track {} at {b}", t.0);
        }
    }
    assert_eq!(played.current_scene(), replayed.current_scene());
    assert_eq!(played.bar_position(end), replayed.bar_position(end));
}

fn presses(script: &Script) -> Vec<Press> {
    script.actions.iter().map(|a| Press { beat: a.beat, action: a.action, when: When::Pressed }).collect()
}

fn example(name: &str) -> Arc<Session> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name);
    Arc::new(load_session(&path).unwrap_or_else(|e| panic!("{e}")))
}

fn example_script(name: &str, session: &Session) -> Script {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name);
    Script::load(&path, session).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_replayed_pulse_agrees_with_a_played_one_over_the_examples() {
    let band = example("band.toml");
    let demo = Arc::new(loophole_engine::demo::session());
    let mut cases: Vec<(Arc<Session>, Vec<Press>)> = vec![(demo.clone(), presses(&loophole_engine::demo::script()))];
    for s in ["band-script.toml", "band-follow-script.toml", "band-arrangement-script.toml"] {
        cases.push((band.clone(), presses(&example_script(s, &band))));
    }
    for name in ["band.toml", "waltz.toml", "seven-eight.toml", "minimal.toml"] {
        let s = example(name);
        let last = SceneId(s.scenes.len() as u32 - 1);
        let play = Action::Playthrough { from: SceneId(0), to: last, quantise: None };
        cases.push((s, vec![Press { beat: Beats::ZERO, action: play, when: When::Pressed }]));
    }
    for (session, log) in &cases {
        for at in [0.5, 7.0, 15.75, 16.0, 31.99, 46.5, 48.0, 60.2, 61.25, 75.9, 100.0] {
            check_replay(session, log, Beats(at), Beats(140.0), &[0.37, 1.0, 0.05, 2.3]);
        }
    }
}

#[test]
fn a_replayed_pulse_takes_exact_presses_at_their_beats() {
    // The conductor's presses: resolved to a beat, with ids, whatever the quantisation.
    let band = example("band.toml");
    let scene = |s: u32| Action::LaunchScene { scene: SceneId(s), quantise: None };
    let log = vec![
        Press { beat: Beats(0.0), action: scene(0), when: When::At { beat: Beats(0.0), id: CommandId(1) } },
        Press { beat: Beats(13.0), action: scene(1), when: When::At { beat: Beats(13.0), id: CommandId(2) } },
        Press {
            beat: Beats(21.5),
            action: Action::StopAll { mode: StopMode::SectionEnd },
            when: When::At { beat: Beats(21.5), id: CommandId(3) },
        },
    ];
    let mut played = PulseCore::new(band.clone());
    let all = drive(&mut played, &log, Beats::ZERO, Beats(40.0), &[1.0], Beats(-1.0));
    // Scene 1 lands on beat 13 exactly (not on its bar), and the section-end stop at 21.5.
    let targets: Vec<u64> = all.triggers.iter().map(|t| t.0).collect();
    assert!(targets.contains(&13_000_000) && targets.contains(&21_500_000), "{:?}", all.triggers);
    for at in [5.0, 13.0, 20.0] {
        check_replay(&band, &log, Beats(at), Beats(40.0), &[1.0, 0.25]);
    }
}

/// A random action on the demo set.
fn action(s: &Session) -> impl Strategy<Value = Action> {
    let clips = s.clips.len() as u32;
    let scenes = s.scenes.len() as u32;
    let tracks = s.tracks.len() as u32;
    let q = prop_oneof![
        Just(None),
        Just(Some(Quantise::None)),
        Just(Some(Quantise::Beat)),
        Just(Some(Quantise::Bar)),
        Just(Some(Quantise::Division(16))),
        Just(Some(Quantise::Scene))
    ];
    let stop = prop_oneof![
        Just(StopMode::Immediate),
        Just(StopMode::Quantised),
        Just(StopMode::SectionEnd),
        Just(StopMode::FadeOut(Beats(1.5)))
    ];
    let behaviour = prop_oneof![
        Just(None),
        Just(Some(Behaviour::Legato)),
        Just(Some(Behaviour::Retrigger)),
        Just(Some(Behaviour::Stop))
    ];
    let mode = prop_oneof![Just(SceneMode::Full), Just(SceneMode::Partial), Just(SceneMode::Playlist)];
    prop_oneof![
        (0..clips, q.clone(), behaviour).prop_map(|(c, quantise, behaviour)| Action::Trigger(ClipTrigger {
            clip: ClipId(c),
            quantise,
            behaviour,
            launch_velocity: Some(0.8),
        })),
        (0..clips).prop_map(|c| Action::Release { clip: ClipId(c) }),
        (0..scenes, q.clone(), mode).prop_map(|(sc, quantise, mode)| Action::Scene(SceneTrigger {
            scene: SceneId(sc),
            quantise,
            mode
        })),
        (0..tracks, stop.clone()).prop_map(|(t, mode)| Action::StopTrack { track: TrackId(t), mode }),
        stop.prop_map(|mode| Action::StopAll { mode }),
        (0..2usize, q.clone()).prop_map(|(step, quantise)| Action::Playlist { playlist: 0, step, quantise }),
        (0..scenes, 0..scenes).prop_map(|(a, b)| Action::Playthrough {
            from: SceneId(a.min(b)),
            to: SceneId(a.max(b)),
            quantise: None
        }),
        (90.0..160.0f64).prop_map(|bpm| Action::SetTempo { bpm: Bpm(bpm) }),
        prop_oneof![Just(Quantise::Beat), Just(Quantise::Bar), Just(Quantise::Bars(2))]
            .prop_map(|quantise| Action::SetQuantise { quantise }),
        (0..tracks, -12.0..3.0f64).prop_map(|(t, db)| Action::Mix {
            track: TrackId(t),
            change: MixChange { gain_db: Some(db), ..MixChange::default() }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_replayed_pulse_agrees_with_a_played_one_for_random_press_logs(
        raw in proptest::collection::vec(
            (0.0..90.0f64, action(&loophole_engine::demo::session()), any::<bool>()),
            1..40,
        ),
        at in 0.0..100.0f64,
        blocks in proptest::collection::vec(0.01..3.0f64, 1..6),
    ) {
        let demo = Arc::new(loophole_engine::demo::session());
        let mut raw = raw;
        raw.sort_by(|a, b| a.0.total_cmp(&b.0));
        let log: Vec<Press> = raw
            .into_iter()
            .enumerate()
            .map(|(i, (beat, action, exact))| Press {
                beat: Beats(beat),
                action,
                when: if exact { When::At { beat: Beats(beat), id: CommandId(i as u64) } } else { When::Pressed },
            })
            .collect();
        check_replay(&demo, &log, Beats(at), Beats(130.0), &blocks);
    }
}
