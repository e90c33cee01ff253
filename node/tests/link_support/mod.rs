//! Helpers for the Link tests: network namespaces joined by a bridge, peers as processes in them,
//! a click session, and onset analysis of captures with their timing sidecars.
//!
//! Namespaces are named `lhp<pid>t<test>n<i>` (the bridge's: `...b`), use private addresses
//! (10.240.x.y/24) only inside themselves, and are deleted when the [`Rig`] is dropped, on
//! failure too. Namespaces left by a test process that no longer exists are deleted first.
//!
//! The tests need root and `ip netns`. Without them [`Rig::or_skip`] goes by the one rule of
//! `common::skip_or_fail`: under CI (`CI=true`) the test fails; elsewhere it is skipped with a
//! loud `SKIPPED` banner on stderr. (A test file that uses this module declares `mod common;`.)
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One Link test at a time: each runs real-time processes, and a loaded 2-core machine would make
/// their timing figures meaningless.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Deletes namespaces left by Link test processes that have gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("lhp") else { continue };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Network namespaces for one test: `peers` namespaces, each with `lo` and an `eth0` on a
/// bridge that lives in a namespace of its own.
pub struct Rig {
    /// The peers' namespaces.
    pub ns: Vec<String>,
    bridge: String,
}

impl Rig {
    /// Builds the namespaces, or says why the test cannot run here.
    pub fn new(peers: usize) -> Result<Rig, String> {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        if !is_root() {
            return Err("the Link tests need root (they create network namespaces)".into());
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Err("the `ip` command (iproute2) is not installed".into());
        }
        remove_stale();
        let k = COUNT.fetch_add(1, Ordering::Relaxed);
        let base = format!("lhp{}t{k}", std::process::id());
        let mut rig = Rig { ns: Vec::new(), bridge: format!("{base}b") };
        ip(&["netns", "add", &rig.bridge]).map_err(|e| format!("`ip netns` does not work here: {e}"))?;
        let b = rig.bridge.clone();
        ip(&["-n", &b, "link", "add", "br0", "type", "bridge"])?;
        let _ = ip(&["-n", &b, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0"]);
        ip(&["-n", &b, "link", "set", "br0", "up"])?;
        for i in 0..peers {
            let ns = format!("{base}n{i}");
            ip(&["netns", "add", &ns])?;
            rig.ns.push(ns.clone());
            let v = format!("v{i}");
            ip(&["-n", &b, "link", "add", &v, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            ip(&["-n", &b, "link", "set", &v, "master", "br0", "up"])?;
            let addr = format!("10.240.{}.{}/24", k % 250, i + 1);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(rig)
    }

    /// The rig, or `None` when it cannot be built here: then the test fails under CI, and is
    /// skipped loudly elsewhere ([`crate::common::skip_or_fail`]).
    #[track_caller]
    pub fn or_skip(peers: usize, test: &str) -> Option<Rig> {
        match Rig::new(peers) {
            Ok(rig) => Some(rig),
            Err(why) => {
                crate::common::skip_or_fail(test, &why);
                None
            }
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for ns in self.ns.iter().chain([&self.bridge]) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// The `loophole-node` binary.
pub fn node_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loophole-node"))
}

/// The reference peer (`loophole-link-peer`, built by `cargo test --workspace`; built here if
/// it is missing).
pub fn peer_bin() -> PathBuf {
    let node = node_bin();
    let dir = node.parent().expect("the binary's directory");
    let peer = dir.join("loophole-link-peer");
    if !peer.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target = dir.parent().expect("the target directory");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "loophole-link-peer"]).env("CARGO_TARGET_DIR", target);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let ok = cmd.status().is_ok_and(|s| s.success());
        assert!(ok && peer.exists(), "cannot build the reference peer: run `cargo build -p loophole-link-peer`");
    }
    peer
}

/// A scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("loophole-link-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

/// A process in a namespace, its stdin piped, its stdout and stderr collected line by line.
pub struct Proc {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// For messages.
    pub name: String,
}

fn collect(pipe: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    })
}

impl Proc {
    /// Runs `program args` in namespace `ns` with working directory `dir`.
    pub fn spawn(name: &str, ns: &str, program: &Path, args: &[&str], dir: &Path) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), out.clone()),
            collect(child.stderr.take().expect("stderr"), err.clone()),
        ];
        Proc { stdin: child.stdin.take(), child: Some(child), out, err, readers, name: name.to_string() }
    }

    /// Sends one line to its stdin.
    pub fn send(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
        }
    }

    /// Stdout so far.
    pub fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stderr so far.
    pub fn errors(&self) -> Vec<String> {
        self.err.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits for a stdout line (after the first `skip`) that satisfies `pred`.
    pub fn wait_for(&self, skip: usize, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines().into_iter().skip(skip).find(|l| pred(l)) {
                return Some(l);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Like [`Proc::wait_for`], panicking with the process's output on a timeout.
    pub fn expect(&self, skip: usize, timeout: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_for(skip, timeout, pred).unwrap_or_else(|| {
            panic!(
                "{}: no {what} within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                self.name,
                self.lines().join("\n"),
                self.errors().join("\n")
            )
        })
    }

    /// Waits for the process to exit (killing it after `timeout`); returns its status.
    pub fn finish(&mut self, timeout: Duration) -> Option<ExitStatus> {
        drop(self.stdin.take());
        let mut child = self.child.take()?;
        let until = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    break child.wait().ok();
                }
            }
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        status
    }

    /// Waits for a normal exit and asserts it succeeded without a panic.
    pub fn finish_ok(&mut self, timeout: Duration) {
        let status = self.finish(timeout);
        let err = self.errors().join("\n");
        assert!(
            status.is_some_and(|s| s.success()) && !err.contains("panicked"),
            "{} failed ({status:?})\nstdout:\n{}\nstderr:\n{err}",
            self.name,
            self.lines().join("\n")
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The reference peer in a namespace.
pub struct Peer(pub Proc);

impl Peer {
    /// Starts `loophole-link-peer args` in `ns` and waits until it is ready.
    pub fn start(name: &str, ns: &str, dir: &Path, args: &[&str]) -> Peer {
        let p = Proc::spawn(name, ns, &peer_bin(), args, dir);
        p.expect(0, Duration::from_secs(5), "ready line", |l| l.contains(r#""event":"ready""#));
        Peer(p)
    }

    /// Its JSON lines so far.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.0.lines().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Waits for an event of kind `event` (after the first `skip` lines) for which `pred` holds.
    pub fn expect(
        &self,
        skip: usize,
        timeout: Duration,
        event: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let tag = format!(r#""event":"{event}""#);
        let line = self.0.expect(skip, timeout, &format!("'{event}' event"), |l| {
            l.contains(&tag) && serde_json::from_str(l).is_ok_and(|v: serde_json::Value| pred(&v))
        });
        serde_json::from_str(&line).expect("JSON")
    }

    /// Lines printed so far (for `skip`).
    pub fn mark(&self) -> usize {
        self.0.lines().len()
    }

    /// Its beat and tempo at host time `t` (Link µs).
    pub fn at(&mut self, t: f64) -> (f64, f64) {
        let t = t.round() as i64;
        let mark = self.mark();
        self.0.send(&format!("at {t}"));
        let v = self.expect(mark, Duration::from_secs(5), "at", |v| v["time"].as_i64() == Some(t));
        (v["beat"].as_f64().expect("beat"), v["tempo"].as_f64().expect("tempo"))
    }

    /// Sends a command.
    pub fn send(&mut self, line: &str) {
        self.0.send(line);
    }

    /// Presses play just after a bar line of the session (quantum 4), so that the start (on the
    /// next bar line) leaves the nodes most of a bar to launch on it.
    pub fn play_after_bar(&mut self) {
        let mark = self.mark();
        self.0.send("status");
        let s = self.expect(mark, Duration::from_secs(5), "status", |_| true);
        let (phase, tempo) = (s["phase"].as_f64().expect("phase"), s["tempo"].as_f64().expect("tempo"));
        let wait_beats = (4.0 - phase + 0.1).rem_euclid(4.0);
        std::thread::sleep(Duration::from_secs_f64(wait_beats * 60.0 / tempo));
        self.0.send("play");
    }
}

/// Writes `click.wav` (a 1 ms click, then silence) and a session `NAME.toml` at `tempo` whose
/// scene `go` loops the click every `every` beats, and a script `go.toml` launching it at beat 0.
pub fn click_session(dir: &Path, name: &str, tempo: f64, every: f64) -> PathBuf {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(dir.join("click.wav"), spec).expect("click.wav");
    for i in 0..4_800 {
        let s = if i < 48 { 0.9 * (1.0 - i as f32 / 48.0) } else { 0.0 };
        w.write_sample(s).expect("write click");
    }
    w.finalize().expect("finish click.wav");
    let session = format!(
        r#"[session]
tempo = {tempo}
beats_per_bar = 4

[[track]]
id = "click"
kind = "audio"

[[clip]]
id = "click"
track = "click"
file = "click.wav"
length_beats = {every}

[[scene]]
id = "go"
clips = ["click"]
"#
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, session).expect("write the session");
    std::fs::write(dir.join("go.toml"), "[[at]]\nbeat = 0\nscene = \"go\"\n").expect("write the script");
    path
}

/// Runs a node in `ns`: `play SESSION --link --script go.toml --audio null --capture CAP.wav
/// --log CAP.jsonl --stdin-commands` plus `extra`.
pub fn node(name: &str, ns: &str, dir: &Path, session: &str, capture: &str, extra: &[&str]) -> Proc {
    let wav = format!("{capture}.wav");
    let log = format!("{capture}.jsonl");
    let mut args = vec![
        "play",
        session,
        "--link",
        "--script",
        "go.toml",
        "--audio",
        "null",
        "--capture",
        &wav,
        "--log",
        &log,
        "--stdin-commands",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(name, ns, &node_bin(), &args, dir)
}

/// Interleaved stereo float samples of a WAV file (left channel returned).
pub fn left(path: &Path) -> Vec<f32> {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let s: Vec<f32> = r.samples::<f32>().collect::<Result<_, _>>().expect("float samples");
    s.chunks_exact(2).map(|c| c[0]).collect()
}

/// Frames where a click starts: above 0.5 after at least 100 frames below 0.01.
pub fn onsets(samples: &[f32]) -> Vec<usize> {
    let mut quiet = 100usize;
    let mut out = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let a = s.abs();
        if a > 0.5 && quiet >= 100 {
            out.push(i);
        }
        quiet = if a < 0.01 { quiet + 1 } else { 0 };
    }
    out
}

/// Rows of a timing sidecar: (frame, host µs, beat, frames).
pub fn timing(path: &Path) -> Vec<(i64, f64, f64, i64)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().unwrap())
        })
        .collect()
}

/// The host time (Link µs) at which WAV frame `frame` is heard, from the sidecar.
pub fn host_of(rows: &[(i64, f64, f64, i64)], frame: usize) -> f64 {
    let f = frame as i64;
    let i = rows.partition_point(|r| r.0 <= f).max(1) - 1;
    let (f0, h0, _, _) = rows[i];
    let us_per_frame = match rows.get(i + 1) {
        Some(&(f1, h1, _, _)) if f1 > f0 => (h1 - h0) / (f1 - f0) as f64,
        _ => 1e6 / 48_000.0,
    };
    h0 + (f - f0) as f64 * us_per_frame
}

/// The beat at WAV frame `frame`, from the sidecar (the block's beat plus its own rate).
pub fn beat_of(rows: &[(i64, f64, f64, i64)], frame: usize) -> f64 {
    let f = frame as i64;
    let i = rows.partition_point(|r| r.0 <= f).max(1) - 1;
    let (f0, _, b0, n) = rows[i];
    let per_frame = match rows.get(i + 1) {
        Some(&(f1, _, b1, _)) if f1 == f0 + n && (b1 - b0).abs() < 1.0 => (b1 - b0) / n as f64,
        _ => match i.checked_sub(1).map(|j| rows[j]) {
            Some((fp, _, bp, np)) if fp + np == f0 => (b0 - bp) / np as f64,
            _ => 0.0,
        },
    };
    b0 + (f - f0) as f64 * per_frame
}

/// Onsets of a capture with their host times.
pub fn onset_times(dir: &Path, capture: &str) -> Vec<(usize, f64)> {
    let samples = left(&dir.join(format!("{capture}.wav")));
    let rows = timing(&dir.join(format!("{capture}.timing.csv")));
    onsets(&samples).into_iter().map(|f| (f, host_of(&rows, f))).collect()
}

/// How far (µs) each host time is from the reference peer's nearest grid line (every `grid`
/// beats): positive when late.
pub fn errors_against(peer: &mut Peer, times: &[f64], grid: f64) -> Vec<f64> {
    times
        .iter()
        .map(|&t| {
            let (beat, tempo) = peer.at(t);
            let off = beat - (beat / grid).round() * grid;
            off * 60e6 / tempo
        })
        .collect()
}

/// The `p`-th percentile (0..=100) of absolute values.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().map(|x| x.abs()).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The JSON lines of a node's log.
pub fn read_log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Seconds as a `Duration`.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}
