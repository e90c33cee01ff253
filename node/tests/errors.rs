//! Bad input gets a clear message naming the file and line, exit code 2, and never a panic.

mod common;

use common::*;

fn assert_bad_input(out: &std::process::Output, must_name: &str) {
    let (_, stderr) = texts(out);
    assert_eq!(out.status.code(), Some(2), "exit code for bad input; stderr:\n{stderr}");
    assert!(stderr.contains(must_name), "stderr does not name `{must_name}`:\n{stderr}");
    assert_no_panic(out);
}

#[test]
fn a_missing_session_file_is_exit_code_2_naming_the_file() {
    let dir = scratch("missing-session");
    let out = run_in(&dir, &["play", "--no-link", "no-such-session.toml", "--audio", "null", "--seconds", "1"]);
    assert_bad_input(&out, "no-such-session.toml");
    let out = run_in(&dir, &["render", "no-such-session.toml", "--out", "x.wav"]);
    assert_bad_input(&out, "no-such-session.toml");
}

#[test]
fn a_corrupt_session_file_is_exit_code_2_naming_the_file_and_line() {
    let dir = scratch("corrupt-session");
    std::fs::write(dir.join("corrupt.toml"), "[session]\nname = \"broken\"\ntempo = = 120\n").unwrap();
    let out = run_in(&dir, &["play", "--no-link", "corrupt.toml", "--audio", "null", "--seconds", "1"]);
    assert_bad_input(&out, "corrupt.toml:3");
    let out = run_in(&dir, &["render", "corrupt.toml", "--out", "x.wav"]);
    assert_bad_input(&out, "corrupt.toml:3");
}

#[test]
fn a_corrupt_script_is_exit_code_2_naming_the_file_and_line() {
    let dir = scratch("corrupt-script");
    std::fs::write(dir.join("perf.toml"), "# a script\n\n[[action\n").unwrap();
    let out = run_in(&dir, &["render", "--demo", "--script", "perf.toml", "--out", "x.wav"]);
    assert_bad_input(&out, "perf.toml:3");
}

#[test]
fn impossible_options_are_exit_code_2() {
    let dir = scratch("bad-options");
    let out = run_in(&dir, &["render", "--demo", "--out", "x.wav", "--seconds=-3"]);
    assert_bad_input(&out, "--seconds");
    let out = run_in(&dir, &["render", "--demo", "--out", "x.wav", "--block", "0"]);
    assert_bad_input(&out, "--block");
}

#[test]
fn sample_rates_the_engine_does_not_run_at_are_exit_code_2() {
    let dir = scratch("bad-sample-rate");
    for rate in ["1", "7999", "384001"] {
        let out = run_in(&dir, &["render", "--demo", "--out", "x.wav", "--sample-rate", rate]);
        assert_bad_input(&out, "--sample-rate");
        assert!(texts(&out).1.contains("8000 to 384000 Hz"), "{}", texts(&out).1);
        assert!(!dir.join("x.wav").exists(), "nothing rendered at {rate} Hz");
        let out =
            run_in(&dir, &["play", "--demo", "--no-link", "--audio", "null", "--seconds", "1", "--sample-rate", rate]);
        assert_bad_input(&out, "--sample-rate");
        let out = run_in(&dir, &["demo", "--audio", "null", "--seconds", "1", "--sample-rate", rate]);
        assert_bad_input(&out, "--sample-rate");
    }
    // The range's ends are accepted.
    let out = run_in(&dir, &["render", "--demo", "--out", "low.wav", "--sample-rate", "8000", "--seconds", "0.5"]);
    assert_ok(&out);
    let out = run_in(&dir, &["render", "--demo", "--out", "high.wav", "--sample-rate", "384000", "--seconds", "0.1"]);
    assert_ok(&out);
}

#[test]
fn seconds_of_zero_or_less_are_a_range_error_on_render_play_demo_and_arrange() {
    let dir = scratch("bad-seconds");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/minimal.toml"), dir.join("s.toml")).unwrap();
    let before = std::fs::read(dir.join("s.toml")).unwrap();
    for s in ["0", "-1", "-0.5"] {
        for args in [
            &["render", "--demo", "--out", "x.wav", "--seconds", s][..],
            &["play", "--demo", "--no-link", "--audio", "null", "--seconds", s],
            &["demo", "--audio", "null", "--seconds", s],
            &["arrange", "s.toml", "--script", "p.toml", "--seconds", s],
        ] {
            let out = run_in(&dir, args);
            assert_bad_input(&out, "--seconds");
            let (_, stderr) = texts(&out);
            assert!(stderr.contains("more than 0 seconds"), "{args:?}: no range in\n{stderr}");
            assert!(!stderr.contains("use '--"), "{args:?}: clap's `--` hint instead of the range:\n{stderr}");
        }
    }
    assert!(!dir.join("x.wav").exists(), "--seconds 0 wrote an empty WAV file");
    assert_eq!(std::fs::read(dir.join("s.toml")).unwrap(), before, "arrange changed the file");
}

#[test]
fn a_missing_input_file_is_bad_input_and_record_input_names_the_missing_option() {
    let dir = scratch("bad-input-options");
    let out = run_in(&dir, &["demo", "--audio", "null", "--seconds", "0.2", "--input", "file:missing.wav"]);
    assert_bad_input(&out, "missing.wav");
    assert!(texts(&out).1.contains("no such file"), "{}", texts(&out).1);
    let out = run_in(&dir, &["demo", "--audio", "null", "--seconds", "0.2", "--record-input", "in.wav"]);
    assert_bad_input(&out, "--input");
    assert!(texts(&out).1.contains("add --input"), "does not say what is missing:\n{}", texts(&out).1);
    assert!(!dir.join("in.wav").exists());
    // A device that is absent stays a warning: the node plays on without input.
    let out = run_in(&dir, &["demo", "--audio", "null", "--seconds", "0.2", "--input", "no-such-input-device"]);
    assert_ok(&out);
}
