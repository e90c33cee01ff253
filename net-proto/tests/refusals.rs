//! The conductor core's refusals and one node client against it, message by message: wrong
//! secret, unknown version, a role with no secret, an observer pressing, a command naming
//! nothing in the set, a message before the hello; a welcomed node resumes after its last seq
//! and a repeated press is sequenced once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use loophole_engine::control::ControlCommand;
use loophole_engine::model::Session;
use loophole_engine::time::Beats;
use loophole_net_proto::PROTOCOL_VERSION;
use loophole_net_proto::auth::proof;
use loophole_net_proto::conductor::{Conductor, Config, ConnId, Event, Moment};
use loophole_net_proto::node::{NodeClient, NodeConfig, NodeEvent, Pressed};
use loophole_net_proto::v1::{Message, PressRefusal, RefuseReason, Role};

const PERFORMERS: [u8; 32] = [1; 32];
const OBSERVERS: [u8; 32] = [2; 32];

fn at(ms: u64) -> Moment {
    Moment { time: Duration::from_millis(ms), beat: Beats(ms as f64 / 500.0), bpm: 120.0 }
}

fn band() -> Arc<Session> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/band.toml");
    Arc::new(loophole_engine::files::session::load_session(&path).unwrap_or_else(|e| panic!("{e}")))
}

fn conductor() -> Conductor {
    Conductor::new(band(), Config::new(vec![(Role::Performer, PERFORMERS), (Role::Observer, OBSERVERS)]))
}

fn hello(name: &str, role: Role, secret: &[u8; 32], version: u16, last_seq: u64) -> Message {
    Message::Hello { version, node: name.into(), role, proof: proof(secret, role, name), incarnation: 9, last_seq }
}

fn sent(c: &mut Conductor) -> Vec<(ConnId, Message)> {
    std::iter::from_fn(|| c.poll_transmit()).map(|t| (t.to, t.message)).collect()
}

fn events(c: &mut Conductor) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn scene(name: &str) -> ControlCommand {
    ControlCommand::SceneTrigger { scene: name.into(), quantise: None, mode: None }
}

#[test]
fn wrong_secret_version_and_role_are_refused_with_a_reason() {
    let mut c = conductor();
    c.handle(at(0), ConnId(1), hello("keys", Role::Performer, &OBSERVERS, PROTOCOL_VERSION, 0));
    c.handle(at(0), ConnId(2), hello("bass", Role::Performer, &PERFORMERS, PROTOCOL_VERSION + 1, 0));
    c.handle(at(0), ConnId(3), hello("boss", Role::Admin, &PERFORMERS, PROTOCOL_VERSION, 0));
    let refusals = [RefuseReason::WrongSecret, RefuseReason::UnsupportedVersion, RefuseReason::RoleNotAllowed];
    let expected: Vec<_> =
        refusals.iter().enumerate().map(|(i, r)| (ConnId(i as u64 + 1), Message::Refused { reason: *r })).collect();
    assert_eq!(sent(&mut c), expected);
    assert_eq!(c.nodes().count(), 0);
    assert!(events(&mut c).iter().all(|e| matches!(e, Event::Refused { .. })));

    // The node says what it was told and stops saying hello.
    let mut n = NodeClient::new(NodeConfig::new("keys", Role::Performer, OBSERVERS, 9), 0, Duration::ZERO);
    n.handle_timeout(Duration::ZERO);
    assert!(matches!(n.poll_transmit(), Some(Message::Hello { .. })));
    n.handle(Duration::from_millis(5), Message::Refused { reason: RefuseReason::WrongSecret });
    assert_eq!(n.poll_event(), Some(NodeEvent::Refused { reason: RefuseReason::WrongSecret }));
    assert_eq!(n.poll_timeout(), None);
}

#[test]
fn observers_and_unknown_names_are_refused_presses_and_a_repeat_is_sequenced_once() {
    let mut c = conductor();
    c.handle(at(0), ConnId(1), hello("eyes", Role::Observer, &OBSERVERS, PROTOCOL_VERSION, 0));
    c.handle(at(0), ConnId(2), hello("keys", Role::Performer, &PERFORMERS, PROTOCOL_VERSION, 0));
    sent(&mut c);
    events(&mut c);
    c.handle(at(10), ConnId(1), Message::Press { press: 1, command: scene("chorus") });
    c.handle(at(10), ConnId(2), Message::Press { press: 1, command: scene("no-such") });
    let out = sent(&mut c);
    assert_eq!(out[0], (ConnId(1), Message::PressRefused { press: 1, reason: PressRefusal::Observer }));
    match &out[1] {
        (ConnId(2), Message::PressRefused { press: 1, reason: PressRefusal::Invalid(why) }) => {
            assert!(why.contains("no-such") && why.contains("chorus"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert!(c.log().is_empty());

    for _ in 0..3 {
        c.handle(at(20), ConnId(2), Message::Press { press: 2, command: scene("chorus") });
    }
    assert_eq!(c.log().len(), 1, "a press sent three times is one entry");
    let e = &c.log()[0];
    assert_eq!((e.origin.as_str(), e.press, e.seq), ("keys", 2, 1));
    // The band's lead before any round trip is measured, and a bar-quantised target after it.
    let lead = at(20).beats(c.lead()).0;
    assert!(e.target_beat >= 0.04 + lead && e.target_beat % 4.0 == 0.0, "{} {lead}", e.target_beat);
    // Both nodes (the observer too) get the entry.
    let to: Vec<ConnId> = sent(&mut c).into_iter().map(|(c, _)| c).collect();
    assert_eq!(to, vec![ConnId(1), ConnId(2)]);
}

#[test]
fn a_message_before_the_hello_is_misbehaviour_and_a_rejoin_resumes_after_the_last_seq() {
    let mut c = conductor();
    c.handle(at(0), ConnId(7), Message::Ack { seq: 3 });
    assert!(matches!(&events(&mut c)[..], [Event::Misbehaved { conn: ConnId(7), .. }]));
    for k in 0..4 {
        c.press(at(k * 100), scene("verse"), "ctl").unwrap();
    }
    c.handle(at(500), ConnId(8), hello("keys", Role::Performer, &PERFORMERS, PROTOCOL_VERSION, 2));
    let out = sent(&mut c);
    assert_eq!(out[0].1, Message::Welcome { version: PROTOCOL_VERSION, resume_from: 2, head: 4 });
    let seqs: Vec<u64> = out[1..]
        .iter()
        .map(|(_, m)| match m {
            Message::Scheduled(e) => e.seq,
            m => panic!("{m:?}"),
        })
        .collect();
    assert_eq!(seqs, vec![3, 4]);
}

#[test]
fn a_node_that_hears_nothing_presses_locally_and_says_hello_again() {
    let mut n = NodeClient::new(NodeConfig::new("keys", Role::Performer, PERFORMERS, 9), 0, Duration::ZERO);
    n.handle_timeout(Duration::ZERO);
    n.poll_transmit();
    n.handle(Duration::from_millis(50), Message::Welcome { version: PROTOCOL_VERSION, resume_from: 0, head: 0 });
    assert!(n.is_connected());
    assert_eq!(n.press(Duration::from_millis(60), scene("verse")), Pressed::Sent(1));
    let silent = n.poll_timeout().unwrap();
    assert!(silent <= Duration::from_millis(1050));
    n.handle_timeout(Duration::from_millis(1050));
    let events: Vec<_> = std::iter::from_fn(|| n.poll_event()).collect();
    assert!(events.contains(&NodeEvent::Unreachable));
    assert!(events.iter().any(|e| matches!(e, NodeEvent::PressDropped { press: 1, .. })));
    assert_eq!(n.press(Duration::from_millis(1100), scene("chorus")), Pressed::Local);
    assert_eq!(n.poll_event(), Some(NodeEvent::Local { command: scene("chorus") }));
    let out: Vec<_> = std::iter::from_fn(|| n.poll_transmit()).collect();
    assert!(out.iter().any(|m| matches!(m, Message::Hello { last_seq: 0, .. })), "{out:?}");
}

/// One thing that can happen to a conductor: a message on a connection, or time passing.
#[derive(Debug, Clone)]
enum Op {
    Message(u64, Message),
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let name = prop_oneof![Just("keys".to_string()), Just("bass".to_string()), "[a-z]{0,6}"];
    let role = prop_oneof![Just(Role::Performer), Just(Role::Observer), Just(Role::Admin)];
    let scenes = prop_oneof![Just("chorus".to_string()), Just("verse".to_string()), "[a-z]{0,6}"];
    let hello = (name, role, any::<bool>(), 0u16..3, 0u64..20).prop_map(|(name, role, good, version, last_seq)| {
        let secret = if good { PERFORMERS } else { OBSERVERS };
        let mut h = hello(&name, role, &secret, version, last_seq);
        if let Message::Hello { incarnation, .. } = &mut h {
            *incarnation = last_seq % 3;
        }
        h
    });
    let message = prop_oneof![
        3 => hello,
        4 => (0u64..6, scenes).prop_map(|(press, s)| Message::Press { press, command: scene(&s) }),
        3 => (0u64..30).prop_map(|seq| Message::Ack { seq }),
        1 => (any::<u64>(), -10.0f64..100.0, any::<bool>()).prop_map(|(id, beat, late)| Message::Executed { id, beat, late }),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(nonce, sent_us)| Message::Ping { nonce, sent_us }),
        1 => (0u64..4, any::<u64>()).prop_map(|(nonce, sent_us)| Message::Pong { nonce, sent_us, replier_us: 0 }),
        1 => (0u64..9, 0u64..9).prop_map(|(resume_from, head)| Message::Welcome { version: 1, resume_from, head }),
        1 => Just(Message::Refused { reason: RefuseReason::WrongSecret }),
    ];
    prop_oneof![4 => (0u64..4, message).prop_map(|(c, m)| Op::Message(c, m)), 1 => (1u64..800).prop_map(Op::Wait)]
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever arrives, in whatever order, the conductor does not panic, its log stays
    /// gapless with targets ahead of the press, and it only writes to connections it welcomed
    /// (or refuses).
    #[test]
    fn a_conductor_fed_anything_keeps_its_log_whole(ops in proptest::collection::vec(op(), 1..120)) {
        let mut c = conductor();
        let mut ms = 0;
        for op in ops {
            match op {
                Op::Message(conn, m) => c.handle(at(ms), ConnId(conn), m),
                Op::Wait(d) => {
                    ms += d;
                    c.handle_timeout(at(ms));
                }
            }
            while let Some(t) = c.poll_transmit() {
                let welcomed = c.nodes().any(|n| n.0 == t.to);
                prop_assert!(welcomed || matches!(t.message, Message::Refused { .. }), "{:?}", t);
            }
            while c.poll_event().is_some() {}
            for (i, e) in c.log().iter().enumerate() {
                prop_assert_eq!(e.seq, i as u64 + 1);
                prop_assert!(e.target_beat.is_finite());
            }
            for n in c.nodes() {
                prop_assert!(n.3 <= c.log().len() as u64);
            }
        }
    }
}
