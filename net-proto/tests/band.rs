//! A band on virtual time: a conductor core and up to 64 node clients over a simulated network
//! with 0-100 ms of delay per link, jitter, 5 % loss and reordering; presses from random nodes
//! and `ctl`, node restarts (keeping only the last seq, or losing everything), partitions (the
//! node presses locally meanwhile) and late joins. Every node plays the scheduled commands in its
//! own Pulse, as a node does. Asserted: every node applies every command of the log exactly once,
//! and from the beat it last (re)joined the band's log, its executed triggers and follow-action
//! decisions are exactly those of one node playing the final log with no network at all, on the
//! same beats; nodes that nothing happened to played every command on time, from the start.

mod sim;

use std::time::Instant;

use proptest::prelude::*;
use sim::{Outcome, Scenario, band, run};

fn check(sc: &Scenario, out: &Outcome) {
    // Presses from nodes that are down are lost, those made while partitioned are local, and
    // about one in twenty names nothing the set has.
    assert!(out.log_len * 10 >= sc.commands * 3, "only {} of {} presses were sequenced", out.log_len, sc.commands);
    assert!(out.golden.len() >= out.log_len, "the golden run did little: {} records", out.golden.len());
    for n in &out.nodes {
        assert_eq!(n.applied, out.all_ids, "{}: the commands applied are not the log's, each once", n.name);
        if n.records != n.golden_after {
            let at = n.records.iter().zip(&n.golden_after).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "{} (live from beat {:.2}, {} rebuilds, {} late) differs from the band at record {at}:\n node: {:?}\n band: {:?}",
                n.name,
                n.live_from.0,
                n.rebuilds,
                n.late,
                n.records.get(at),
                n.golden_after.get(at)
            );
        }
        if n.mishaps == 0 {
            assert_eq!((n.rebuilds, n.late), (1, 0), "{}: nothing happened to it, yet it fell behind", n.name);
            assert!(n.live_from.0 < out.first_target.0, "{} joined late: beat {}", n.name, n.live_from.0);
        } else {
            assert!(n.live_from.0 < out.end_beat.0 - 4.0, "{} never came back: live from {}", n.name, n.live_from.0);
        }
    }
}

fn scenario(seed: u64, nodes: usize, commands: usize) -> Scenario {
    Scenario {
        seed,
        nodes,
        commands,
        spacing_ms: 120,
        max_delay_ms: 100,
        jitter_ms: 20,
        loss: 0.05,
        restarts: nodes / 4 + 1,
        partitions: nodes / 8 + 1,
        late_joins: nodes / 8 + 1,
    }
}

#[test]
fn sixty_four_nodes_play_a_thousand_commands_on_the_same_beats() {
    let session = band();
    let sc = scenario(0x0100_f01e, 64, 1000);
    let started = Instant::now();
    let out = run(&sc, session);
    check(&sc, &out);
    assert!(out.log_len >= 800, "only {} of 1000 presses were sequenced", out.log_len);
    let mishaps: usize = out.nodes.iter().map(|n| n.mishaps).sum();
    eprintln!(
        "64 nodes, {} presses: {} sequenced, {} refused, {} local, {} mishaps, {} records per node, {:.1} s",
        sc.commands,
        out.log_len,
        out.refused_presses,
        out.local_presses,
        mishaps,
        out.golden.len(),
        started.elapsed().as_secs_f64()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn a_band_agrees_whatever_the_network_does(seed in any::<u64>(), nodes in 2usize..12, commands in 20usize..120) {
        let sc = scenario(seed, nodes, commands);
        let out = run(&sc, band());
        check(&sc, &out);
    }
}
