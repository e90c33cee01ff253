//! A conductor and 8 client-library nodes over real QUIC on loopback: a scene pressed at the
//! conductor and one pressed by a node reach every node exactly once, with the same target beat,
//! and the nodes' band-time estimates (datagram pings, median offset) agree within 2 ms, with
//! each other and with the conductor's own clock.

mod common;

use std::time::Duration;

use common::*;
use loophole_conductor::client::{Client, ClientOptions, NodeEvent, Pressed};
use loophole_conductor::set::SetSource;
use loophole_engine::control::ControlCommand;
use loophole_net_proto::v1::Role;

fn scene(name: &str) -> ControlCommand {
    ControlCommand::SceneTrigger { scene: name.into(), quantise: None, mode: None }
}

#[test]
fn eight_nodes_get_every_entry_once_on_the_same_beat_and_agree_on_band_time() {
    let dir = TempDir::new("loopback");
    let server = serve(SetSource::Demo, dir.path());
    let code = server.join_code(Role::Performer).clone();
    let clients: Vec<Client> = (0..8)
        .map(|i| {
            Client::connect(&code, ClientOptions::new(&format!("node-{i}"))).unwrap_or_else(|e| panic!("node-{i}: {e}"))
        })
        .collect();
    for c in &clients {
        assert!(c.is_connected());
        assert_eq!(c.fetch_set(dir.path()).unwrap(), loophole_conductor::client::SetLocation::Demo);
    }

    let first = server.press(scene("chorus"), "ctl").expect("sequenced");
    assert_eq!(first.seq, 1);
    assert!(matches!(clients[3].press(scene("verse")), Pressed::Sent(_)));

    let mut targets = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let events = events_until(c, Duration::from_secs(5), |e| seqs(e).len() >= 2);
        // Nothing more arrives (no duplicate) in a while.
        std::thread::sleep(Duration::from_millis(100));
        let more: Vec<NodeEvent> = std::iter::from_fn(|| c.try_event()).collect();
        let mut all = events.clone();
        all.extend(more);
        assert_eq!(seqs(&all), vec![1, 2], "node-{i}: {all:#?}");
        let beats: Vec<f64> = all
            .iter()
            .filter_map(|e| match e {
                NodeEvent::ScheduleAt { beat, .. } => Some(beat.0),
                _ => None,
            })
            .collect();
        targets.push(beats);
        assert_eq!(c.last_seq(), 2);
    }
    assert!(targets.windows(2).all(|w| w[0] == w[1]), "{targets:?}");
    assert_eq!(targets[0][0], first.target_beat);

    // Band time: wait for the burst of pings, then read every estimate and the truth together.
    wait_for("clock samples", Duration::from_secs(3), || clients.iter().all(|c| c.rtt().is_some()));
    std::thread::sleep(Duration::from_millis(300));
    let truth = server.band_time();
    let estimates: Vec<Duration> = clients.iter().map(|c| c.band_time().expect("an estimate")).collect();
    let after = server.band_time();
    let (lo, hi) = (estimates.iter().min().unwrap(), estimates.iter().max().unwrap());
    assert!(*hi - *lo < Duration::from_millis(2), "estimates spread {:?}: {estimates:?}", *hi - *lo);
    for e in &estimates {
        assert!(
            *e + Duration::from_millis(2) >= truth && *e <= after + Duration::from_millis(2),
            "{e:?} vs {truth:?}..{after:?}"
        );
    }
    for c in &clients {
        assert!(c.offset_spread().unwrap() < Duration::from_millis(2), "{:?}", c.offset_spread());
    }
}
