//! `kill -9` of a `loophole-conductor serve` process mid-session: restarted with the same
//! `--state`, it prints the same join code, `ctl log` shows every earlier entry once, and a
//! client-library node that was connected reconnects by itself and receives only the new
//! entries: none lost, none doubled.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use loophole_conductor::client::{Client, ClientOptions};
use loophole_conductor::join::JoinCode;

const BIN: &str = env!("CARGO_BIN_EXE_loophole-conductor");

/// A `serve` process, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` and returns it with the join code it printed.
fn start(state: &Path, listen: &str) -> (Serve, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--demo", "--listen", listen, "--state"])
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the conductor binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(code) = line.strip_prefix("join code: ") {
                let _ = tx.send(code.to_string());
            }
        }
    });
    let code = rx.recv_timeout(Duration::from_secs(10)).expect("serve prints `join code: CODE`");
    (Serve(child), code)
}

/// Runs `ctl` with the admin code; returns (exit code, stdout).
fn ctl(state: &Path, args: &[&str]) -> (i32, String) {
    let codes = std::fs::read_to_string(state.join("join-codes.txt")).expect("join-codes.txt");
    let admin = codes.lines().find_map(|l| l.strip_prefix("admin: ")).expect("an admin code").to_string();
    let out = Command::new(BIN).args(["ctl", "--join", &admin]).args(args).output().expect("ctl runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_conductor_killed_with_sigkill_resumes_its_log_and_its_nodes() {
    let dir = TempDir::new("kill9");
    let state = dir.path().join("state");
    let listen = format!("127.0.0.1:{}", free_port());
    let (serve, code) = start(&state, &listen);
    let join = JoinCode::parse(&code).expect("a valid join code");
    let node = Client::connect(&join, ClientOptions::new("keys")).expect("joins");

    for scene in ["intro", "verse", "chorus"] {
        let (rc, out) = ctl(&state, &["scene.trigger", scene, "--quantise", "bar"]);
        assert_eq!(rc, 0, "{out}");
        assert!(out.starts_with("scheduled seq "), "{out}");
    }
    let before = events_until(&node, Duration::from_secs(5), |e| seqs(e).len() >= 3);
    assert_eq!(seqs(&before), vec![1, 2, 3]);

    // kill -9 (Child::kill is SIGKILL on Unix).
    drop(serve);
    wait_for("the node to notice", Duration::from_secs(4), || !node.is_connected());

    let (_serve, again) = start(&state, &listen);
    assert_eq!(again, code, "the same state directory gives the same join code");
    wait_for("the node to reconnect by itself", Duration::from_secs(8), || node.is_connected());

    let (rc, log) = ctl(&state, &["log"]);
    assert_eq!(rc, 0, "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("seq {} id {} ", i + 1, i + 1)), "{log}");
    }

    for scene in ["breakdown", "outro"] {
        let (rc, out) = ctl(&state, &["scene.trigger", scene]);
        assert_eq!(rc, 0, "{out}");
    }
    let after = events_until(&node, Duration::from_secs(5), |e| seqs(e).len() >= 2);
    std::thread::sleep(Duration::from_millis(200));
    let mut seen = seqs(&after);
    seen.extend(seqs(&std::iter::from_fn(|| node.try_event()).collect::<Vec<_>>()));
    assert_eq!(seen, vec![4, 5], "only the new entries, once each");
    assert_eq!(node.last_seq(), 5);
}
