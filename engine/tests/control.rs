//! The control boundary: a `ControlCommand` names what a performer does by the session's ids,
//! survives JSON and postcard unchanged, resolves to exactly the action it was made from, and
//! refuses names the session does not have with the names it does; the launcher view shows what
//! plays, what is queued and for which beat, and what follow actions wait.

use std::sync::Arc;

use loophole_engine::control::{CommandError, ControlCommand, Resolved};
use loophole_engine::model::*;
use loophole_engine::pulse::{Action, FollowSource, MixChange, PulseCore, StopMode};
use loophole_engine::queue::Command;
use loophole_engine::time::{Beats, Quantise};

fn demo() -> Arc<Session> {
    Arc::new(loophole_engine::demo::session())
}

/// Everything a Pulse sends Signal for `action` pressed at beat 3 on a fresh core.
fn commands(session: &Arc<Session>, action: Action) -> Vec<String> {
    let mut p = PulseCore::new(session.clone());
    let ids = p.press(action, Beats(3.0));
    let mut out = vec![format!("{ids:?}")];
    while let Some(c) = p.poll_command() {
        out.push(format!("{c:?}"));
    }
    out
}

fn every_kind_of_command() -> Vec<ControlCommand> {
    vec![
        ControlCommand::ClipTrigger {
            clip: "bass-a".into(),
            quantise: Some(Quantise::Beat),
            behaviour: None,
            velocity: Some(0.5),
        },
        ControlCommand::ClipRelease { clip: "lead-a".into() },
        ControlCommand::SceneTrigger { scene: "chorus".into(), quantise: None, mode: None },
        ControlCommand::TrackStop { track: "drums".into(), mode: Some(StopMode::FadeOut(Beats(2.0))) },
        ControlCommand::StopAll { mode: None },
        ControlCommand::PlaylistStart { playlist: "song".into(), step: 1, quantise: Some(Quantise::Bars(2)) },
        ControlCommand::Playthrough { from: Some("verse".into()), to: None, quantise: None },
        ControlCommand::ArrangementPlay,
        ControlCommand::BackToArrangement { quantise: Some(Quantise::Bar) },
        ControlCommand::Tempo { bpm: 132.5 },
        ControlCommand::LauncherQuantise { quantise: Quantise::Division(16) },
        ControlCommand::Mix {
            track: "bass".into(),
            change: MixChange { gain_db: Some(-3.0), mute: Some(true), ..MixChange::default() },
        },
        ControlCommand::TransportStart,
        ControlCommand::TransportStop,
    ]
}

#[test]
fn commands_survive_json_and_postcard_unchanged() {
    for c in every_kind_of_command() {
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ControlCommand>(&json).unwrap(), c, "{json}");
        assert!(json.contains(c.name()), "the seed's name is on the wire: {json}");
        let bytes = postcard::to_allocvec(&c).unwrap();
        assert_eq!(postcard::from_bytes::<ControlCommand>(&bytes).unwrap(), c);
    }
}

#[test]
fn a_command_resolves_to_the_action_it_was_made_from() {
    let s = demo();
    for c in every_kind_of_command() {
        let r = c.resolve(&s).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        if let Resolved::Pulse(a) = r {
            let back = ControlCommand::from_action(&a, &s).unwrap();
            assert_eq!(back.resolve(&s).unwrap(), r, "{c:?}");
            assert_eq!(
                commands(&s, a),
                commands(
                    &s,
                    match back.resolve(&s).unwrap() {
                        Resolved::Pulse(a) => a,
                        _ => unreachable!(),
                    }
                )
            );
        }
    }
    // The demo script's own actions, by index, make the same schedule by name.
    for a in loophole_engine::demo::script().actions {
        let c = ControlCommand::from_action(&a.action, &s).unwrap();
        let Resolved::Pulse(back) = c.resolve(&s).unwrap() else { panic!("{c:?}") };
        assert_eq!(commands(&s, a.action), commands(&s, back), "{c:?}");
    }
}

#[test]
fn names_the_session_lacks_are_refused_with_the_names_it_has() {
    let s = demo();
    let e =
        ControlCommand::SceneTrigger { scene: "bridge".into(), quantise: None, mode: None }.resolve(&s).unwrap_err();
    assert!(matches!(&e, CommandError::Unknown { kind: "scene", .. }));
    let text = e.to_string();
    assert!(text.contains("'bridge'") && text.contains("verse") && text.contains("chorus"), "{text}");
    let e = ControlCommand::ClipTrigger { clip: "nope".into(), quantise: None, behaviour: None, velocity: None }
        .resolve(&s)
        .unwrap_err();
    assert!(e.to_string().contains("clip 'nope' does not exist"), "{e}");
    let e = ControlCommand::Playthrough { from: Some("outro".into()), to: Some("intro".into()), quantise: None }
        .resolve(&s)
        .unwrap_err();
    assert!(matches!(e, CommandError::Backwards { .. }), "{e}");
}

#[test]
fn the_view_shows_what_plays_what_is_queued_and_when() {
    let s = demo();
    let mut p = PulseCore::new(s.clone());
    let verse = s.scene_by_name("verse").unwrap();
    let intro = s.scene_by_name("intro").unwrap();
    p.press(Action::LaunchScene { scene: intro, quantise: None }, Beats(0.0)).unwrap();
    p.tick(Beats(0.0), Beats(0.5)).unwrap();
    p.press(Action::LaunchScene { scene: verse, quantise: None }, Beats(5.0)).unwrap();
    let v = p.view(Beats(6.0));
    assert_eq!(v.scene, Some(intro));
    assert_eq!(v.queued_scene, Some((Some(verse), Beats(8.0))), "the verse waits for bar 3");
    let drums = s.track_by_name("drums").unwrap();
    let t = &v.tracks[drums.index()];
    let playing = t.playing.expect("the intro's drums play");
    assert_eq!(s.clip(playing.clip).id, "drums-intro");
    assert!((playing.progress - 6.0 / 8.0).abs() < 1e-9, "{playing:?}");
    let (queued, at) = t.queued.expect("the verse's drums are queued");
    assert_eq!(queued.map(|c| s.clip(c).id.clone()).as_deref(), Some("drums-basic"));
    assert_eq!(at, Beats(8.0));
    assert_eq!(v.bar, (1, 2.0));
    // Once the verse plays, its drums' follow action waits for the end of their loop.
    p.tick(Beats(8.0), Beats(8.5)).unwrap();
    let v = p.view(Beats(9.0));
    assert_eq!(v.scene, Some(verse));
    assert_eq!(v.queued_scene, None);
    let basic = s.clip_by_name("drums-basic").unwrap();
    assert!(v.follow.iter().any(|(src, at)| *src == FollowSource::Clip(basic) && at.0 > 9.0), "{:?}", v.follow);
    // Mixer changes show in dB.
    p.press(
        Action::Mix { track: drums, change: MixChange { gain_db: Some(-6.0), ..MixChange::default() } },
        Beats(9.0),
    )
    .unwrap();
    assert!((p.view(Beats(9.0)).tracks[drums.index()].gain_db + 6.0).abs() < 1e-4);
    assert!(std::iter::from_fn(|| p.poll_command()).any(|c| matches!(c, Command::Mix { .. })));
}

#[test]
fn the_metre_is_written_as_a_time_signature() {
    use loophole_engine::control::metre;
    assert_eq!(metre(4.0), "4/4");
    assert_eq!(metre(3.0), "3/4");
    assert_eq!(metre(3.5), "7/8");
    assert_eq!(metre(3.75), "15/16");
    assert_eq!(metre(1.0 / 3.0), "0.3 beats");
}
