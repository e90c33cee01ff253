//! The `loophole-conductor` binary's bad input: exit 2 with a clear line for a bad command line
//! or join code, exit 1 naming the file for a damaged state directory; nothing panics.

mod common;

use std::process::Command;

use common::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_loophole-conductor");

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn bad_input_exits_with_a_clear_line() {
    let (code, err) = run(&["serve"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("<SET>"), "{err}");

    let (code, err) = run(&["ctl", "--join", "loophole1-zzzz", "status"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("corrupt join code"), "{err}");

    let (code, err) = run(&["ctl", "--join", "hello", "status"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a loophole join code"), "{err}");

    // A well-formed code: the command is checked before any connection is tried.
    let code_text = loophole_conductor::join::JoinCode {
        address: "127.0.0.1:9".parse().unwrap(),
        fingerprint: [1; 32],
        secret: [2; 32],
        role: loophole_net_proto::v1::Role::Admin,
    }
    .to_string();
    let (code, err) = run(&["ctl", "--join", &code_text, "frobnicate", "now"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("'frobnicate' is not a command"), "{err}");
    let (code, err) = run(&["ctl", "--join", &code_text, "log", "--since", "x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a sequence number"), "{err}");
}

#[test]
fn a_damaged_state_directory_is_named_not_overwritten() {
    let dir = TempDir::new("cli-state");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("store.redb"), b"not a database, just bytes ".repeat(64)).unwrap();
    let (code, err) = run(&["serve", "--demo", "--listen", "127.0.0.1:0", "--state", state.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("store.redb"), "{err}");
    assert_eq!(std::fs::read(state.join("store.redb")).unwrap(), b"not a database, just bytes ".repeat(64));

    let state = dir.path().join("state2");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("cert.der"), b"x").unwrap();
    let (code, err) = run(&["serve", "--demo", "--listen", "127.0.0.1:0", "--state", state.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("key.der") && err.contains("missing"), "{err}");
}
