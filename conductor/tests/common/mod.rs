//! Helpers shared by the conductor's integration tests: temporary directories, an in-process
//! conductor on 127.0.0.1 port 0, waiting for client events with a bound.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use loophole_conductor::client::{Client, NodeEvent};
use loophole_conductor::serve::{ServeOptions, Server};
use loophole_conductor::set::SetSource;

/// A fresh directory under the system's temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let mut tag = [0u8; 4];
        getrandom::fill(&mut tag).expect("random numbers");
        let dir = std::env::temp_dir().join(format!("loophole-{name}-{}-{:02x?}", std::process::id(), tag));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The examples folder.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A conductor serving `set` on 127.0.0.1 (any port), its state and log in `dir`.
pub fn serve(set: SetSource, dir: &Path) -> Server {
    let mut o = ServeOptions::new(set);
    o.listen = "127.0.0.1:0".parse().unwrap();
    o.state_dir = dir.join("state");
    o.log_file = Some(dir.join("conductor.jsonl"));
    Server::start(o).unwrap_or_else(|e| panic!("conductor does not start: {e:#}"))
}

/// The conductor's JSON-lines log.
pub fn journal(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("conductor.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect()
}

/// Waits up to `within` for a journal line for which `f` holds.
pub fn wait_journal(dir: &Path, within: Duration, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = journal(dir).into_iter().find(|v| f(v)) {
            return v;
        }
        assert!(Instant::now() < end, "no such line in the conductor's log: {:#?}", journal(dir));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Collects `client`'s events until `done` holds for the list, at most `within`.
pub fn events_until(client: &Client, within: Duration, done: impl Fn(&[NodeEvent]) -> bool) -> Vec<NodeEvent> {
    let end = Instant::now() + within;
    let mut got = Vec::new();
    while !done(&got) {
        let left = end.checked_duration_since(Instant::now()).unwrap_or_else(|| panic!("events so far: {got:#?}"));
        if let Some(e) = client.next_event(left.min(Duration::from_millis(50))) {
            got.push(e);
        }
    }
    got
}

/// The seqs of the `ScheduleAt` events in `events`.
pub fn seqs(events: &[NodeEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::ScheduleAt { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

/// Waits up to `within` for `f`.
pub fn wait_for(what: &str, within: Duration, f: impl Fn() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
