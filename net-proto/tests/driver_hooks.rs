//! What the real drivers need from the cores beyond the simulated band: a peer that asks for no
//! backlog (`ctl`), a client whose connection was replaced saying hello on the new one, the
//! tempo changes of the log for the conductor's beat clock (also after a restore), and the
//! driver-level messages (set offer, fetch, query, answer) passing through the cores without
//! being taken for misbehaviour.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use loophole_engine::control::ControlCommand;
use loophole_engine::model::Session;
use loophole_engine::time::{Beats, Bpm};
use loophole_net_proto::conductor::{Conductor, Config, ConnId, Event, Moment};
use loophole_net_proto::node::{NodeClient, NodeConfig, NodeEvent};
use loophole_net_proto::v1::{Message, Query, Role};
use loophole_net_proto::{FrameDecoder, encode};

const SECRET: [u8; 32] = [5; 32];

fn at(ms: u64) -> Moment {
    Moment { time: Duration::from_millis(ms), beat: Beats(ms as f64 / 500.0), bpm: 120.0 }
}

fn band() -> Arc<Session> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/band.toml");
    Arc::new(loophole_engine::files::session::load_session(&path).unwrap_or_else(|e| panic!("{e}")))
}

fn scene(name: &str) -> ControlCommand {
    ControlCommand::SceneTrigger { scene: name.into(), quantise: None, mode: None }
}

/// Delivers every message between `c` and `n` (on `conn`) until both are quiet, at `ms`.
fn exchange(c: &mut Conductor, n: &mut NodeClient, conn: ConnId, ms: u64) {
    loop {
        let mut quiet = true;
        while let Some(m) = n.poll_transmit() {
            quiet = false;
            c.handle(at(ms), conn, m);
        }
        while let Some(t) = c.poll_transmit() {
            quiet = false;
            if t.to == conn {
                n.handle(Duration::from_millis(ms), t.message);
            }
        }
        if quiet {
            return;
        }
    }
}

#[test]
fn a_peer_from_the_head_gets_no_backlog_and_then_the_new_entries() {
    let mut c = Conductor::new(band(), Config::new(vec![(Role::Performer, SECRET)]));
    for (i, s) in ["intro", "verse", "chorus"].iter().enumerate() {
        c.press(at(i as u64 * 10), scene(s), "ctl").unwrap();
    }
    let mut n = NodeClient::from_head(NodeConfig::new("ctl-1", Role::Performer, SECRET, 1), Duration::ZERO);
    assert_eq!(n.last_seq(), 0);
    n.handle_timeout(Duration::ZERO);
    exchange(&mut c, &mut n, ConnId(1), 100);
    let events: Vec<_> = std::iter::from_fn(|| n.poll_event()).collect();
    assert_eq!(events, vec![NodeEvent::Welcomed { resume_from: 3, head: 3 }, NodeEvent::CaughtUp { seq: 3 }]);
    assert_eq!(n.last_seq(), 3);
    c.press(at(200), scene("outro"), "keys").unwrap();
    exchange(&mut c, &mut n, ConnId(1), 200);
    let events: Vec<_> = std::iter::from_fn(|| n.poll_event()).collect();
    assert!(matches!(events.as_slice(), [NodeEvent::ScheduleAt { seq: 4, .. }]), "{events:?}");
}

#[test]
fn a_reconnected_client_says_hello_on_the_new_connection() {
    let mut c = Conductor::new(band(), Config::new(vec![(Role::Performer, SECRET)]));
    let mut n = NodeClient::new(NodeConfig::new("keys", Role::Performer, SECRET, 1), 0, Duration::ZERO);
    n.handle_timeout(Duration::ZERO);
    exchange(&mut c, &mut n, ConnId(1), 0);
    assert!(n.is_connected());
    c.press(at(10), scene("intro"), "ctl").unwrap();
    exchange(&mut c, &mut n, ConnId(1), 10);
    while n.poll_event().is_some() {}
    // A new connection: without the hello, the conductor would take it for misbehaviour.
    n.reconnect(Duration::from_millis(20));
    assert!(!n.is_connected());
    assert_eq!(n.poll_event(), Some(NodeEvent::Unreachable));
    exchange(&mut c, &mut n, ConnId(2), 20);
    assert!(n.is_connected());
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(events.iter().all(|e| !matches!(e, Event::Misbehaved { .. })), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, Event::Joined { conn: ConnId(2), resume_from: 1, .. })), "{events:?}");
}

#[test]
fn tempo_changes_of_the_log_are_kept_and_restored() {
    let mut c = Conductor::new(band(), Config::new(vec![(Role::Performer, SECRET)]));
    let tempo = c.press(at(0), ControlCommand::Tempo { bpm: 90.0 }, "ctl").unwrap();
    let bridge = c.press(at(10), scene("bridge"), "ctl").unwrap();
    let entry = |c: &Conductor, seq: u64| c.sequencer().entry(seq).unwrap().target_beat;
    // The clock learns a change when the band's beat reaches it (it is what the band made).
    assert!(c.sequencer().tempo_changes().is_empty());
    let past = entry(&c, tempo).max(entry(&c, bridge)) + 1.0;
    c.handle_timeout(at((past * 500.0) as u64));
    let changes = c.sequencer().tempo_changes().to_vec();
    let entry = |seq: u64| entry(&c, seq);
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!((changes[0].beat.0, changes[0].tempo), (entry(tempo), Some(Bpm(90.0))));
    assert_eq!((changes[1].beat.0, changes[1].tempo), (entry(bridge), Some(Bpm(100.0))));
    let restored = Conductor::restore(band(), c.log().to_vec(), Config::new(vec![(Role::Performer, SECRET)]));
    assert_eq!(restored.sequencer().tempo_changes(), changes.as_slice());
}

#[test]
fn driver_messages_pass_through_the_cores() {
    let mut c = Conductor::new(band(), Config::new(vec![(Role::Performer, SECRET)]));
    let mut n = NodeClient::new(NodeConfig::new("keys", Role::Performer, SECRET, 1), 0, Duration::ZERO);
    n.handle_timeout(Duration::ZERO);
    exchange(&mut c, &mut n, ConnId(1), 0);
    while c.poll_event().is_some() {}
    c.handle(at(5), ConnId(1), Message::Query(Query::Status));
    c.handle(at(5), ConnId(1), Message::Fetch { sha256: [1; 32] });
    assert_eq!(c.poll_event(), None);
    // Only the conductor sends a set offer.
    c.handle(at(5), ConnId(1), Message::SetOffer { version: 1, set: loophole_net_proto::v1::SetKind::Demo });
    assert!(matches!(c.poll_event(), Some(Event::Misbehaved { .. })));
    // And they round-trip through the codec.
    let m = Message::Query(Query::Log { since: 7 });
    let mut d = FrameDecoder::new();
    d.push(&encode(&m).unwrap());
    assert_eq!(d.next_message().unwrap(), Some(m));
}

#[test]
fn a_closed_connection_is_forgotten_at_once() {
    let mut c = Conductor::new(band(), Config::new(vec![(Role::Performer, SECRET)]));
    let mut n = NodeClient::new(NodeConfig::new("keys", Role::Performer, SECRET, 1), 0, Duration::ZERO);
    n.handle_timeout(Duration::ZERO);
    exchange(&mut c, &mut n, ConnId(1), 0);
    assert_eq!(c.nodes().count(), 1);
    c.disconnected(ConnId(1));
    assert_eq!(c.nodes().count(), 0);
    assert_eq!(c.poll_timeout(), None);
    // Its messages are now out of place, and it can join again on a new connection.
    while c.poll_event().is_some() {}
    c.handle(at(10), ConnId(1), Message::Ack { seq: 0 });
    assert!(matches!(c.poll_event(), Some(Event::Misbehaved { .. })));
    n.reconnect(Duration::from_millis(20));
    exchange(&mut c, &mut n, ConnId(2), 20);
    assert!(n.is_connected());
    assert_eq!(c.nodes().map(|(conn, ..)| conn).collect::<Vec<_>>(), vec![ConnId(2)]);
}
