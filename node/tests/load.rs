//! DSP load, xruns and realtime scheduling as `play` and `demo` report them: the periodic status
//! line, the summary, the `load` log records, the audio thread's SCHED_FIFO policy read from
//! `/proc`, and the warning when realtime scheduling is refused.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Policy and realtime priority of the process's null-device thread, from
/// `/proc/PID/task/*/stat` (fields 41 and 40), once that thread exists.
#[cfg(target_os = "linux")]
fn null_thread_policy(pid: u32) -> Option<(u32, u32)> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("loophole-null") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the command name (which is in parentheses) start with field 3.
        let rest: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        return Some((rest.get(41 - 3)?.parse().ok()?, rest.get(40 - 3)?.parse().ok()?));
    }
    None
}

#[cfg(target_os = "linux")]
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// Whether this process has CAP_SYS_NICE (bit 23 of CapEff), which permits SCHED_FIFO whatever
/// the rtprio limit (root usually has it; a container may drop it).
#[cfg(target_os = "linux")]
fn has_cap_sys_nice() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 23) != 0)
}

#[cfg(target_os = "linux")]
#[test]
fn demo_reports_load_and_xruns_live_in_the_summary_and_in_the_log_with_its_audio_thread_realtime() {
    let dir = scratch("load-report");
    let started = Instant::now();
    let child = bin()
        .current_dir(&dir)
        .args(["demo", "--audio", "null", "--seconds", "5.6", "--log", "live.jsonl", "--buffer", "128"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loophole-node");
    // While it plays: the null device's thread, as the kernel sees it.
    let mut policy = None;
    while started.elapsed() < Duration::from_secs(4) {
        policy = null_thread_policy(child.id()).filter(|(p, _)| *p != 0).or(policy);
        if policy.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    let rt_warning = stderr.contains("realtime scheduling (SCHED_FIFO) is not permitted");
    if has_cap_sys_nice() {
        // Permitted: the thread was promoted, and nothing was said about it.
        assert_eq!(policy, Some((1, 70)), "the null device's thread is not SCHED_FIFO 70:\n{stderr}");
        assert!(!rt_warning, "{stderr}");
    } else {
        // The promotion itself cannot be checked without CAP_SYS_NICE: under CI that is a
        // failure, elsewhere a loud skip of that part.
        skip_or_fail(
            "demo_reports_load_and_xruns_live_in_the_summary_and_in_the_log_with_its_audio_thread_realtime",
            "this process lacks CAP_SYS_NICE, so SCHED_FIFO may be refused",
        );
        // Maybe permitted by the rtprio limit: promoted, or warned, never both.
        assert_ne!(rt_warning, policy.is_some_and(|(p, _)| p == 1), "promoted and warned, or neither:\n{stderr}");
    }
    let promoted = !rt_warning;
    assert!(stdout.contains(if promoted { "(realtime priority)" } else { "(normal priority)" }), "{stdout}");
    // The live status line (every 5 s): smoothed and peak load, xruns.
    let status = stderr.lines().find(|l| l.contains("DSP ") && l.contains("(peak ")).unwrap_or_else(|| {
        panic!("no status line:\n{stderr}");
    });
    assert!(status.contains("xruns "), "{status}");
    // The summary: misses, late starts, percentiles.
    assert!(stdout.contains("deadline misses") && stdout.contains("late callbacks"), "{stdout}");
    assert!(stdout.contains("DSP load p50 ") && stdout.contains(", p99 ") && stdout.contains(", max "), "{stdout}");

    let loads: Vec<_> = read_log(&dir.join("live.jsonl")).into_iter().filter(|e| e["event"] == "load").collect();
    assert!(loads.len() >= 2, "a periodic and a final load record: {loads:?}");
    let last = loads.last().unwrap();
    assert_eq!(last["final"], true, "{last}");
    assert!(loads[..loads.len() - 1].iter().all(|e| e["final"] == false), "{loads:?}");
    // 5.6 s of 128-frame blocks at 48 kHz.
    let blocks = last["blocks"].as_u64().unwrap();
    assert!(blocks.abs_diff(2100) <= 10, "{blocks} blocks measured for 2100 played");
    let f = |k: &str| last[k].as_f64().unwrap_or_else(|| panic!("no {k} in {last}"));
    assert!(f("p50") > 0.0 && f("p50") <= f("p99") && f("p99") <= f("max") + 1e-9, "{last}");
    // The demo is light: its median block takes well under the period even on a busy machine.
    assert!(f("p50") < 0.5, "{last}");
    assert!(last["xruns"].as_u64().is_some() && last["late_starts"].as_u64().is_some(), "{last}");
    assert_eq!(last["realtime"], promoted);
    assert!(last["host_time"].as_f64().is_some() && last["source"] == "live", "{last}");
}

#[cfg(target_os = "linux")]
#[test]
fn without_permission_for_realtime_scheduling_it_warns_once_and_plays_on() {
    let dir = scratch("load-rt-denied");
    // An ordinary user with an rtprio limit of 0 and no capabilities: SCHED_FIFO is refused.
    let mut cmd = if is_root() {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]);
        c.arg("prlimit");
        c
    } else {
        std::process::Command::new("prlimit")
    };
    cmd.arg("--rtprio=0:0").arg(env!("CARGO_BIN_EXE_loophole-node"));
    cmd.args(["demo", "--audio", "null", "--seconds", "1"]).current_dir(&dir).env_remove("RUST_LOG");
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run setpriv/prlimit (util-linux): {e}"),
    };
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    let warnings: Vec<_> =
        stderr.lines().filter(|l| l.contains("realtime scheduling (SCHED_FIFO) is not permitted")).collect();
    assert_eq!(warnings.len(), 1, "one warning:\n{stderr}");
    assert!(warnings[0].starts_with("loophole: warning: "), "{}", warnings[0]);
    assert!(warnings[0].contains("rtprio") && warnings[0].contains("audio"), "says how to fix it: {}", warnings[0]);
    // It played on, to the end.
    assert!(stdout.contains("played 1.0") && stdout.contains("(normal priority)"), "{stdout}");

    // --no-realtime: no attempt, no warning.
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--rtprio=0:0").arg(env!("CARGO_BIN_EXE_loophole-node"));
    let out = cmd.args(["demo", "--audio", "null", "--seconds", "0.3", "--no-realtime"]).current_dir(&dir).output();
    let out = out.unwrap();
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    assert!(!stderr.contains("realtime"), "{stderr}");
    assert!(stdout.contains("(normal priority)"), "{stdout}");
}
