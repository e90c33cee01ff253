//! Helpers shared by the node's integration tests: running the binary, reading WAV files, and
//! [`skip_or_fail`], the one rule for a test that cannot run its real path here.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Whether this run is CI's (`CI` set to anything but empty, `0` or `false`; CI sets `CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// Called by a test that cannot run its real path on this machine (`why`), just before it
/// returns early or takes a weaker branch. Under CI (see [`in_ci`]) it panics, so the test fails:
/// CI's machine is set up to run every real path (root, network namespaces, ALSA's `null` PCM,
/// CAP_SYS_NICE), and a skip there would hide that a path stopped running. Elsewhere it writes
/// a loud `SKIPPED` banner straight to stderr (past libtest's capture, so it shows even when the
/// test passes) and returns.
#[track_caller]
pub fn skip_or_fail(test: &str, why: &str) {
    if in_ci() {
        panic!("{test}: cannot run its real path under CI (CI=true): {why}");
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n*** SKIPPED {test}: {why}\n*** The real path of this test did NOT run here; with CI=true it fails instead.\n"
    );
}

/// The `loophole-node` binary under test. Without a display (`DISPLAY` and `WAYLAND_DISPLAY`
/// removed), so that `play` and `demo` open no window on a developer's desktop; the window's
/// tests set their own (Xvfb's).
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loophole-node"));
    cmd.env_remove("RUST_LOG").env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY");
    cmd
}

/// A fresh, empty directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("loophole-node-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

/// Runs the binary with `args` in `dir`; returns the output.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    bin().current_dir(dir).args(args).output().expect("run loophole-node")
}

/// Stdout and stderr as text.
pub fn texts(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Asserts the run succeeded, showing its output if not.
pub fn assert_ok(out: &Output) {
    let (stdout, stderr) = texts(out);
    assert!(out.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status.code());
    assert_no_panic(out);
}

/// Asserts nothing panicked or printed a backtrace.
pub fn assert_no_panic(out: &Output) {
    let (_, stderr) = texts(out);
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "panic in stderr:\n{stderr}");
}

/// A WAV file's spec and interleaved float samples.
pub fn read_wav(path: &Path) -> (hound::WavSpec, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let spec = r.spec();
    let samples = r.samples::<f32>().collect::<Result<Vec<_>, _>>().expect("float samples");
    (spec, samples)
}

/// The largest absolute sample.
pub fn peak(samples: &[f32]) -> f32 {
    samples.iter().fold(0f32, |p, s| p.max(s.abs()))
}

/// The JSON objects of a JSON-lines log.
pub fn read_log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}
