//! Ableton Link's TEST-PLAN.md for Link apps, automated: `loophole-node` against the reference
//! peer (`loophole-link-peer`, a plain rusty_link program), each a separate process in its own
//! network namespace, the namespaces joined by a bridge. The nodes play a click session on the
//! null device and capture it with its timing sidecar, so alignment is measured on the audio.
//!
//! The plan's cases map onto commands: the peer's stdin plays LinkHut's buttons, the node's
//! `--stdin-commands` the app's (`tempo`, `play`, `stop`, `link on|off`), and a node restarted
//! with another session file is "loading a new set".
//!
//! Needs root and `ip netns`: without them it fails under CI (`CI=true`) and is skipped, loudly,
//! elsewhere (`common::skip_or_fail`).

mod common;
mod link_support;

use std::io::Write as _;

use link_support::*;
use serde_json::Value;

/// Long enough for any of these runs to finish on a loaded machine.
const FINISH: f64 = 30.0;
/// Longest wait for something a peer does to show up at another.
const PROPAGATE: f64 = 3.0;
/// AUDIOENGINE-1's bound (µs).
const BOUND_US: f64 = 3_000.0;

/// Writes a line to the test output even when libtest captures stdout.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn link_events<'a>(log: &'a [Value], key: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    log.iter().filter(move |e| e["event"] == "link" && e.get(key).is_some())
}

fn no_jumps(log: &[Value], test: &str) {
    let jumps: Vec<&Value> = link_events(log, "jump").collect();
    assert!(jumps.is_empty(), "{test}: the node's beat jumped: {jumps:?}");
}

/// Onsets whose consecutive spacing is not `every` frames (±1): audible discontinuities.
fn irregular(onsets: &[(usize, f64)], every: usize) -> Vec<(usize, usize)> {
    onsets.windows(2).map(|w| (w[0].0, w[1].0 - w[0].0)).filter(|(_, d)| d.abs_diff(every) > 1).collect()
}

/// The node's beat phase against the peer's status lines (`--every`), in µs (node minus peer).
/// Points within 200 ms of a tempo change are left out: a change reaches the other peer a few
/// ms late, and until it does the two play at different tempos (Link's own behaviour).
fn phase_errors(peer: &Peer, rows: &[(i64, f64, f64, i64)], quantum: f64) -> Vec<f64> {
    let events = peer.events();
    let changes: Vec<f64> =
        events.iter().filter(|e| e["event"] == "tempo").map(|e| e["time"].as_f64().unwrap()).collect();
    let mut out = Vec::new();
    for s in events.iter().filter(|e| e["event"] == "status") {
        let (t, phase, tempo) =
            (s["time"].as_f64().unwrap(), s["phase"].as_f64().unwrap(), s["tempo"].as_f64().unwrap());
        if changes.iter().any(|c| (t - c).abs() < 200_000.0) {
            continue;
        }
        let i = rows.partition_point(|r| r.1 <= t);
        if i == 0 || i >= rows.len() || rows[i].1 - rows[i - 1].1 > 50_000.0 {
            continue;
        }
        let a = rows[i - 1];
        let node_beat = a.2 + (t - a.1) * tempo / 60e6;
        let d = (node_beat - phase).rem_euclid(quantum);
        let d = if d > quantum / 2.0 { d - quantum } else { d };
        out.push(d * 60e6 / tempo);
    }
    out
}

/// How far (µs) the node's bar is from the peer's at WAV frame `frame` heard at host time `t`:
/// the node's beat and the peer's beat there must agree modulo the quantum.
fn bar_error(peer: &mut Peer, rows: &[(i64, f64, f64, i64)], frame: usize, t: f64) -> (f64, f64, f64) {
    let node_beat = beat_of(rows, frame);
    let (peer_beat, tempo) = peer.at(t);
    let d = (node_beat - peer_beat).rem_euclid(4.0);
    let d = if d > 2.0 { d - 4.0 } else { d };
    (d * 60e6 / tempo, node_beat, peer_beat)
}

fn summary(name: &str, errors: &[f64]) -> String {
    format!(
        "{name}: {} onsets, |error| p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        errors.len(),
        percentile(errors, 50.0),
        percentile(errors, 99.0),
        percentile(errors, 100.0)
    )
}

#[test]
fn tempo_1_tempo_changes_travel_both_ways_and_the_peers_stay_in_sync() {
    let _serial = serial();
    let Some(rig) = Rig::or_skip(2, "TEMPO-1") else { return };
    let dir = scratch("tempo-1");
    click_session(&dir, "click", 120.0, 1.0);
    let mut peer = Peer::start("peer", &rig.ns[0], &dir, &["--tempo", "120", "--play", "--every", "0"]);
    std::thread::sleep(secs(1.0));
    let mut node = node("node", &rig.ns[1], &dir, "click.toml", "n", &["--seconds", "5"]);
    node.expect(0, secs(PROPAGATE), "peer", |l| l.contains("link: 1 peer"));

    // LinkHut -> App.
    peer.send("tempo 130");
    node.expect(0, secs(PROPAGATE), "tempo 130 from the peer", |l| l.contains("link: tempo 130.00 BPM"));
    std::thread::sleep(secs(0.5));
    // App -> LinkHut.
    let mark = peer.mark();
    node.send("tempo 90");
    let change = peer.expect(mark, secs(PROPAGATE), "tempo", |v| (v["tempo"].as_f64().unwrap() - 90.0).abs() < 0.01);
    node.finish_ok(secs(FINISH));

    // Still in sync after both changes: the clicks after the last one are on the peer's beats.
    let since = change["time"].as_f64().unwrap() + 100_000.0;
    let times: Vec<f64> = onset_times(&dir, "n").into_iter().map(|(_, t)| t).filter(|t| *t > since).collect();
    assert!(times.len() >= 3, "too few clicks after the tempo change: {}", times.len());
    let errors = errors_against(&mut peer, &times, 1.0);
    report(&summary("TEMPO-1 (after 130 then 90 BPM)", &errors));
    assert!(percentile(&errors, 100.0) < BOUND_US, "TEMPO-1: clicks off the peer's beat: {errors:?}");
    let log = read_log(&dir.join("n.jsonl"));
    let tempos: Vec<f64> = link_events(&log, "tempo").map(|e| e["tempo"].as_f64().unwrap()).collect();
    assert!(
        tempos.iter().any(|t| (t - 130.0).abs() < 0.01) && tempos.iter().any(|t| (t - 90.0).abs() < 0.01),
        "{tempos:?}"
    );
}

/// A node that ran alone at 100 BPM, then joins a session at 130: it takes 130 and the session
/// keeps it (the node's own tempo is never imposed).
#[test]
fn tempo_2_a_joining_node_does_not_change_the_session_tempo() {
    let _serial = serial();
    let Some(rig) = Rig::or_skip(2, "TEMPO-2") else { return };
    let dir = scratch("tempo-2");
    click_session(&dir, "hundred", 100.0, 1.0);
    let mut alone = node("alone", &rig.ns[1], &dir, "hundred.toml", "a", &["--seconds", "0.5"]);
    alone.finish_ok(secs(FINISH));
    assert!(alone.lines().iter().any(|l| l.contains("100.00 BPM")), "{:?}", alone.lines());

    let peer = Peer::start("peer", &rig.ns[0], &dir, &["--tempo", "130", "--play", "--every", "0"]);
    std::thread::sleep(secs(1.0));
    let mut joined = node("joined", &rig.ns[1], &dir, "hundred.toml", "j", &["--seconds", "1.5"]);
    joined.finish_ok(secs(FINISH));
    let err = joined.errors().join("\n");
    assert!(err.contains("joined a session of 1 peer(s) at 130.00 BPM"), "{err}");
    assert!(joined.lines().last().is_some_and(|l| l.contains("130.00 BPM")), "{:?}", joined.lines());
    let changed: Vec<Value> = peer.events().into_iter().filter(|e| e["event"] == "tempo").collect();
    assert!(changed.is_empty(), "the peer's tempo changed: {changed:?}");
    for t in read_log(&dir.join("j.jsonl")).iter().filter(|e| e["event"] == "trigger") {
        assert!((t["tempo"].as_f64().unwrap() - 130.0).abs() < 0.01, "trigger at the wrong tempo: {t}");
    }
}

/// While connected, the app "loads another set": a node with a 90 BPM session joins while one
/// with a 100 BPM session plays, so the session stays populated throughout (a node restarted
/// alone can lose Link's session arbitration: docs/link.md). The session stays at 130.
#[test]
fn tempo_3_loading_another_session_keeps_the_session_tempo() {
    let _serial = serial();
    let Some(rig) = Rig::or_skip(3, "TEMPO-3") else { return };
    let dir = scratch("tempo-3");
    click_session(&dir, "first", 100.0, 1.0);
    click_session(&dir, "second", 90.0, 1.0);
    let peer = Peer::start("peer", &rig.ns[0], &dir, &["--tempo", "130", "--play", "--every", "0"]);
    std::thread::sleep(secs(1.0));
    let mut first = node("first", &rig.ns[1], &dir, "first.toml", "f", &["--seconds", "2.5"]);
    first.expect(0, secs(PROPAGATE), "peer", |l| l.contains("link: 1 peer"));
    std::thread::sleep(secs(0.6));
    let mut second = node("second", &rig.ns[2], &dir, "second.toml", "s", &["--seconds", "1"]);
    second.finish_ok(secs(FINISH));
    first.finish_ok(secs(FINISH));
    // Link keeps tempo as whole microseconds per beat, so a peer that commits the session's own
    // tempo back shows as 130.00013 BPM: that is the same tempo, not a change.
    let changed: Vec<Value> = peer
        .events()
        .into_iter()
        .filter(|e| e["event"] == "tempo" && e["tempo"].as_f64().is_none_or(|t| (t - 130.0).abs() > 0.01))
        .collect();
    assert!(changed.is_empty(), "the session tempo changed: {changed:?}\npeer: {:?}", peer.0.lines());
    for n in [&first, &second] {
        assert!(n.lines().last().is_some_and(|l| l.contains("130.00 BPM")), "{}: {:?}", n.name, n.lines());
    }
}

#[test]
fn tempo_4_the_node_follows_20_and_999_bpm_in_sync() {
    let _serial = serial();
    let Some(rig) = Rig::or_skip(2, "TEMPO-4") else { return };
    let dir = scratch("tempo-4");
    click_session(&dir, "click", 120.0, 1.0);
    let mut peer = Peer::start("peer", &rig.ns[0], &dir, &["--tempo", "120", "--play", "--every", "50"]);
    std::thread::sleep(secs(1.0));
    let mut node = node("node", &rig.ns[1], &dir, "click.toml", "n", &["--seconds", "6"]);
    node.expect(0, secs(PROPAGATE), "peer", |l| l.contains("link: 1 peer"));
    peer.send("tempo 20");
    node.expect(0, secs(PROPAGATE), "20 BPM", |l| l.contains("link: tempo 20.00 BPM"));
    std::thread::sleep(secs(2.0));
    let mark = peer.mark();
    peer.send("tempo 999");
    let fast = peer.expect(mark, secs(PROPAGATE), "tempo", |v| v["tempo"].as_f64().unwrap() > 998.0);
    node.expect(0, secs(PROPAGATE), "999 BPM", |l| l.contains("link: tempo 999.00 BPM"));
    node.finish_ok(secs(FINISH));

    // The beat: the node's timeline against the peer's, every 50 ms, at both tempos.
    let rows = timing(&dir.join("n.timing.csv"));
    let phases = phase_errors(&peer, &rows, 4.0);
    report(&summary("TEMPO-4 timeline vs the peer (120, 20, 999 BPM)", &phases));
    assert!(phases.len() >= 40 && percentile(&phases, 100.0) < BOUND_US, "TEMPO-4: out of sync: {phases:?}");
    // The audio at 999 BPM: a click every 60 ms, on the peer's beat.
    let since = fast["time"].as_f64().unwrap() + 100_000.0;
    let times: Vec<f64> = onset_times(&dir, "n").into_iter().map(|(_, t)| t).filter(|t| *t > since).collect();
    assert!(times.len() >= 8, "too few clicks at 999 BPM: {}", times.len());
    let errors = errors_against(&mut peer, &times, 1.0);
    report(&summary("TEMPO-4 clicks at 999 BPM", &errors));
    assert!(percentile(&errors, 100.0) < BOUND_US, "TEMPO-4: clicks off the beat at 999 BPM: {errors:?}");
}

/// Alone: enabling and disabling Link changes neither the tempo nor the beat.
#[test]
fn tempo_5_and_beattime_1_enabling_link_alone_changes_neither_tempo_nor_beat() {
    let _serial = serial();
    let Some(rig) = Rig::or_skip(1, "TEMPO-5 / BEATTIME-1") else { return };
    let dir = scratch("tempo-5");
    click_session(&dir, "click", 120.0, 0.25);
    let mut node = node("node", &rig.ns[0], &dir, "click.toml", "n", &["--seconds", "3.5"]);
    node.expect(0, secs(PROPAGATE), "first trigger", |l| l.contains("click: start"));
    node.send("link off");
    node.send("tempo 123");
    std::thread::sleep(secs(0.6));
    node.send("link on");
    std::thread::sleep(secs(0.8));
    node.send("tempo 87");
    std::thread::sleep(secs(0.5));
    node.send("link off");
    node.finish_ok(secs(FINISH));

    let log = read_log(&dir.join("n.jsonl"));
    let tempos: Vec<f64> = link_events(&log, "tempo").map(|e| e["tempo"].as_f64().unwrap()).collect();
    assert_eq!(tempos.len(), 2, "TEMPO-5: tempo changed other than by the two commands: {tempos:?}");
    assert!((tempos[0] - 123.0).abs() < 0.01 && (tempos[1] - 87.0).abs() < 0.01, "{tempos:?}");
    let enabled: Vec<bool> = link_events(&log, "enabled").map(|e| e["enabled"].as_bool().unwrap()).collect();
    assert_eq!(enabled, [false, true, false], "{log:?}");
    assert!(node.lines().last().is_some_and(|l| l.contains("87.00 BPM")), "{:?}", node.lines());
    // BEATTIME-1: no jump, and the clicks before the first tempo change are exactly regular.
    no_jumps(&log, "BEATTIME-1");
    let rows = timing(&dir.join("n.timing.csv"));
    let onsets = onset_times(&dir, "n");
    let beats: Vec<f64> = onsets.iter().map(|(f, _)| beat_of(&rows, *f)).collect();
    assert!(onsets.len() > 20, "too few clicks: {}", onsets.len());
    // Every click is on the 1/16 grid of the node's own timeline, through every switch.
    for ((f, _), b) in onsets.iter().zip(&beats) {
        let off = (b * 4.0 - (b * 4.0).round()).abs();
        assert!(off < 1e-3, "BEATTIME-1: click at frame {f} is off the grid (beat {b})");
    }
}

/// The node plays alone; the peer joins its session: the node's beat does not move, the clicks
/// stay exactly regular, and the peer is in phase with them.
#[test]
fn beattime_2_a_peer_joining_does_not_move_the_nodes_beat() {
    let _serial = serial();
    let Some(rig) = Rig::or_skip(2, "BEATTIME-2") else { return };
    let dir = scratch("beattime-2");
    click_session(&dir, "click", 120.0, 0.25);
    let mut node = node("node", &rig.ns[1], &dir, "click.toml", "n", &["--seconds", "4"]);
    node.expect(0, secs(PROPAGATE), "first trigger", |l| l.contains("click: start"));
    std::thread::sleep(secs(1.2));
    let mut peer = Peer::start("peer", &rig.ns[0], &dir, &["--tempo", "100", "--every", "50"]);
    node.expect(0, secs(PROPAGATE), "peer", |l| l.contains("link: 1 peer"));
    node.finish_ok(secs(FINISH));

    let log = read_log(&dir.join("n.jsonl"));
    no_jumps(&log, "BEATTIME-2");
    assert!(link_events(&log, "tempo").next().is_none(), "the joiner changed the tempo: {log:?}");
    let onsets = onset_times(&dir, "n");
    assert!(onsets.len() > 25, "too few clicks: {}", onsets.len());
    assert_eq!(irregular(&onsets, 6_000), [], "BEATTIME-2: a discontinuity in the clicks");
    let after: Vec<f64> = onsets.iter().map(|(_, t)| *t).skip(onsets.len() / 2).collect();
    let errors = errors_against(&mut peer, &after, 0.25);
    report(&summary("BEATTIME-2 clicks vs the joined peer", &errors));
    assert!(percentile(&errors, 100.0) < BOUND_US, "BEATTIME-2: the peer is not in phase: {errors:?}");
}

/// The peer starts and stops the session; the node (waiting, `--stopped`) starts on the
/// session's bar and stops with it.
#[test]
fn startstopstate_1_the_node_follows_the_peers_start_and_stop() {
    let _serial = serial();
    let Some(rig) = Rig::or_skip(2, "STARTSTOPSTATE-1") else { return };
    let dir = scratch("startstop-1");
    // 240 BPM: a bar is 1 s, so a start on the next bar comes soon.
    click_session(&dir, "click", 240.0, 0.25);
    let mut peer = Peer::start("peer", &rig.ns[0], &dir, &["--tempo", "240", "--every", "0"]);
    std::thread::sleep(secs(1.0));
    let mut node = node("node", &rig.ns[1], &dir, "click.toml", "n", &["--seconds", "6", "--stopped"]);
    node.expect(0, secs(PROPAGATE), "peer", |l| l.contains("link: 1 peer"));
    std::thread::sleep(secs(0.8));
    assert!(!node.lines().iter().any(|l| l.contains("transport:")), "started without the session: {:?}", node.lines());
    let mark = peer.mark();
    peer.play_after_bar();
    let start = peer.expect(mark, secs(PROPAGATE), "playing", |v| v["playing"] == true);
    node.expect(0, secs(PROPAGATE), "start", |l| l.contains("transport: the session starts"));
    node.expect(0, secs(PROPAGATE), "first trigger", |l| l.contains("click: start"));
    std::thread::sleep(secs(1.0));
    let mark = peer.mark();
    peer.send("stop");
    let stop = peer.expect(mark, secs(PROPAGATE), "playing", |v| v["playing"] == false);
    node.expect(0, secs(PROPAGATE), "stop", |l| l.contains("transport: the session stops"));
    node.finish_ok(secs(FINISH));

    let onsets = onset_times(&dir, "n");
    assert!(onsets.len() >= 8, "too few clicks: {}", onsets.len());
    let start_time = start["start_time"].as_f64().unwrap();
    let stop_time = stop["start_time"].as_f64().unwrap();
    // The node's bars are the session's: its beat 0 is the session's first bar line after the
    // start, and its first click is no earlier than the start.
    let rows = timing(&dir.join("n.timing.csv"));
    let (err, node_beat, peer_beat) = bar_error(&mut peer, &rows, onsets[0].0, onsets[0].1);
    report(&format!("STARTSTOPSTATE-1: node bar vs session bar {err:.1} µs (first click at node beat {node_beat:.3})"));
    assert!(err.abs() < BOUND_US, "first click at node beat {node_beat}, peer beat {peer_beat}");
    assert!(node_beat > -1e-3 && node_beat < 0.3, "the first click is not the start (beat {node_beat})");
    assert!(onsets[0].1 > start_time - BOUND_US, "a click before the session started");
    let times: Vec<f64> = onsets.iter().map(|o| o.1).collect();
    let errors = errors_against(&mut peer, &times, 0.25);
    assert!(percentile(&errors, 100.0) < BOUND_US, "clicks off the peer's grid: {errors:?}");
    // Nothing after the stop (Link's delivery plus the 5 ms fade).
    assert!(times.iter().all(|t| *t < stop_time + 50_000.0), "clicks after the stop at {stop_time}: {times:?}");
    let samples = left(&dir.join("n.wav"));
    let silent_from = (0..samples.len()).find(|f| host_of(&rows, *f) > stop_time + 60_000.0).unwrap_or(samples.len());
    let loud = samples[silent_from..].iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!(loud < 1e-6, "the node still sounds {loud} after the stop");
}

/// The peer plays; the node joins stopped and stays stopped until told; its own play and stop
/// start and stop the peer too, on the session's bars.
#[test]
fn startstopstate_2_the_node_starts_and_stops_the_session() {
    let _serial = serial();
    let Some(rig) = Rig::or_skip(2, "STARTSTOPSTATE-2") else { return };
    let dir = scratch("startstop-2");
    click_session(&dir, "click", 240.0, 0.25);
    let mut peer = Peer::start("peer", &rig.ns[0], &dir, &["--tempo", "240", "--play", "--every", "0"]);
    std::thread::sleep(secs(1.0));
    let mut node = node("node", &rig.ns[1], &dir, "click.toml", "n", &["--seconds", "8", "--stopped"]);
    node.expect(0, secs(PROPAGATE), "peer", |l| l.contains("link: 1 peer"));
    std::thread::sleep(secs(0.8));
    assert!(!node.lines().iter().any(|l| l.contains("transport:")), "joined playing: {:?}", node.lines());

    node.send("play");
    node.expect(0, secs(PROPAGATE), "own start", |l| l.contains("transport: play"));
    node.expect(0, secs(PROPAGATE), "first trigger", |l| l.contains("click: start"));
    std::thread::sleep(secs(1.0));
    let mark = peer.mark();
    node.send("stop");
    let stop = peer.expect(mark, secs(PROPAGATE), "playing", |v| v["playing"] == false);
    std::thread::sleep(secs(0.6));
    let mark = peer.mark();
    node.send("play");
    let restart = peer.expect(mark, secs(PROPAGATE), "playing", |v| v["playing"] == true);
    let starts = |n: &Proc| n.lines().iter().filter(|l| l.contains("click: start")).count();
    let until = std::time::Instant::now() + secs(PROPAGATE);
    while starts(&node) < 2 && std::time::Instant::now() < until {
        std::thread::sleep(secs(0.01));
    }
    std::thread::sleep(secs(1.0));
    node.finish_ok(secs(FINISH));
    let stops_before: Vec<Value> =
        peer.events().into_iter().filter(|e| e["event"] == "playing" && e["playing"] == false).collect();
    assert_eq!(stops_before.len(), 1, "the peer stopped other than by the node's stop: {stops_before:?}");

    let onsets = onset_times(&dir, "n");
    let stop_time = stop["start_time"].as_f64().unwrap();
    let restart_time = restart["start_time"].as_f64().unwrap();
    let first: Vec<f64> = onsets.iter().map(|o| o.1).filter(|t| *t < stop_time + 50_000.0).collect();
    let second: Vec<f64> = onsets.iter().map(|o| o.1).filter(|t| *t > restart_time).collect();
    assert!(first.len() >= 8 && second.len() >= 8, "clicks: {} then {}", first.len(), second.len());
    assert_eq!(first.len() + second.len(), onsets.len(), "clicks between the stop and the restart");
    let rows = timing(&dir.join("n.timing.csv"));
    for (what, times) in [("joined start", &first), ("restart", &second)] {
        let frame = onsets.iter().find(|o| o.1 == times[0]).expect("onset").0;
        let (err, node_beat, peer_beat) = bar_error(&mut peer, &rows, frame, times[0]);
        report(&format!("STARTSTOPSTATE-2 {what}: node bar vs session bar {err:.1} µs (node beat {node_beat:.3})"));
        assert!(err.abs() < BOUND_US, "{what}: node beat {node_beat}, peer beat {peer_beat}");
        // The first click is beat 0 (or 0.25 when the launch was faded in: docs/link.md).
        assert!(node_beat > -1e-3 && node_beat < 0.26, "{what}: the first click is not the start ({node_beat})");
        let errors = errors_against(&mut peer, times, 0.25);
        assert!(percentile(&errors, 100.0) < BOUND_US, "{what}: clicks off the peer's grid: {errors:?}");
        if what == "restart" {
            // Both started from the same bar: the node's beats are the peer's beats.
            assert!((peer_beat - node_beat).abs() < 0.01, "restart: node beat {node_beat}, peer beat {peer_beat}");
        }
    }
}

#[test]
fn audioengine_1_clicks_line_up_with_the_peers_beats() {
    let _serial = serial();
    let Some(rig) = Rig::or_skip(2, "AUDIOENGINE-1") else { return };
    let dir = scratch("audioengine-1");
    click_session(&dir, "click", 120.0, 0.25);
    let mut peer = Peer::start("peer", &rig.ns[0], &dir, &["--tempo", "120", "--play", "--every", "0"]);
    std::thread::sleep(secs(1.0));
    let mut node = node("node", &rig.ns[1], &dir, "click.toml", "n", &["--seconds", "5"]);
    node.finish_ok(secs(FINISH));
    let times: Vec<f64> = onset_times(&dir, "n").into_iter().map(|o| o.1).collect();
    assert!(times.len() >= 16, "too few clicks: {}", times.len());
    let errors = errors_against(&mut peer, &times, 0.25);
    report(&summary("AUDIOENGINE-1 clicks vs the peer's beats (bound 3 ms, aim 0.2 ms)", &errors));
    assert!(percentile(&errors, 100.0) < BOUND_US, "AUDIOENGINE-1: {errors:?}");
}
