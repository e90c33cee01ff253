//! The bench runner: mixes the same N generated stems offline with `loophole-node render` and with
//! `sox -m` (matching gain) in the same run, and prints the speed ratio and the largest sample
//! difference. It also turns criterion's `signal` bench estimates (if present) into fractions of
//! the block deadline.
//!
//! Each stem count is timed two ways, interleaved run by run so both meet the same machine:
//! on ONE thread (both commands pinned to CPU 0 with `taskset -c 0`, and the node told
//! `--decode-threads 1`; sox is single-threaded) and with EVERY core (no pinning; the node decodes
//! on one thread per core). It prints the medians, the ratios, and the machine's load average.
//! It fails (non-zero exit) if a render differs from `sox -m` by more than [`MAX_DIFF`] in any
//! sample, or if the one-thread and all-core renders are not bit-identical.
//!
//! Usage: `loophole-bench --node PATH [--stems 8,64] [--seconds 60] [--dir DIR] [--runs 3]
//! [--criterion DIR]`. `deploy/bench.sh` builds everything and runs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

const RATE: u32 = 48_000;
const TEMPO: f64 = 120.0;
/// The largest sample difference from `sox -m` the runner accepts (both sum the same float
/// samples; only the order of the additions may differ).
const MAX_DIFF: f32 = 1e-6;

struct Args {
    node: PathBuf,
    stems: Vec<usize>,
    seconds: f64,
    dir: PathBuf,
    runs: usize,
    criterion: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        node: PathBuf::new(),
        stems: vec![8, 64],
        seconds: 60.0,
        dir: std::env::temp_dir().join("loophole-bench"),
        runs: 3,
        criterion: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--node" => a.node = v()?.into(),
            "--stems" => a.stems = v()?.split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>()?,
            "--seconds" => a.seconds = v()?.parse()?,
            "--dir" => a.dir = v()?.into(),
            "--runs" => a.runs = v()?.parse()?,
            "--criterion" => a.criterion = Some(v()?.into()),
            other => bail!("unknown argument {other}"),
        }
    }
    if a.node.as_os_str().is_empty() {
        bail!("--node PATH (the loophole-node binary) is required");
    }
    Ok(a)
}

/// A deterministic stereo stem: a few partials and a little noise, quiet enough that 64 of them
/// sum without clipping.
fn write_stem(path: &Path, index: usize, frames: usize) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    let f1 = 55.0 * (1.0 + index as f64 * 0.37);
    let f2 = f1 * 1.5;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ index as u64;
    for i in 0..frames {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let noise = ((seed >> 40) as f64 / (1u64 << 24) as f64 - 0.5) * 0.002;
        let t = i as f64 / RATE as f64;
        let l = 0.006 * (std::f64::consts::TAU * f1 * t).sin() + noise;
        let r = 0.006 * (std::f64::consts::TAU * f2 * t).sin() - noise;
        w.write_sample(l as f32)?;
        w.write_sample(r as f32)?;
    }
    w.finalize()?;
    Ok(())
}

fn prepare(dir: &Path, n: usize, seconds: f64) -> Result<(PathBuf, PathBuf, Vec<PathBuf>)> {
    std::fs::create_dir_all(dir)?;
    let frames = (seconds * RATE as f64).round() as usize;
    let mut stems = Vec::new();
    for i in 0..n {
        let p = dir.join(format!("stem-{i:02}-{frames}.wav"));
        if !p.exists() {
            write_stem(&p, i, frames)?;
        }
        stems.push(p);
    }
    let beats = seconds * TEMPO / 60.0;
    let mut session = format!(
        "[session]\nname = \"bench-{n}\"\ntempo = {TEMPO}\nbeats_per_bar = 4\nquantise = \"none\"\ncrossfade_ms = 0.0\n\n"
    );
    for (i, p) in stems.iter().enumerate() {
        session += &format!("[[track]]\nid = \"t{i}\"\nkind = \"audio\"\n\n");
        session += &format!(
            "[[clip]]\nid = \"c{i}\"\ntrack = \"t{i}\"\nfile = \"{}\"\nlength_beats = {beats}\nloop = false\n\n",
            p.display()
        );
    }
    let clips: Vec<String> = (0..n).map(|i| format!("\"c{i}\"")).collect();
    session += &format!("[[scene]]\nid = \"all\"\nclips = [{}]\n", clips.join(", "));
    let session_path = dir.join(format!("bench-{n}.toml"));
    std::fs::write(&session_path, session)?;
    let script_path = dir.join(format!("bench-{n}-script.toml"));
    std::fs::write(&script_path, "[[at]]\nbeat = 0\nscene = \"all\"\nquantise = \"none\"\n")?;
    Ok((session_path, script_path, stems))
}

fn read_wav(path: &Path) -> Result<Vec<f32>> {
    let mut r = hound::WavReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let spec = r.spec();
    Ok(match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>().map(|s| s.map(|v| v as f32 * scale)).collect::<Result<_, _>>()?
        }
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `cmd` once; returns its wall-clock seconds.
fn time_run(mut c: Command) -> Result<f64> {
    let start = Instant::now();
    let out = c.output().with_context(|| format!("running {c:?}"))?;
    let t = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{:?} failed: {}", c, String::from_utf8_lossy(&out.stderr));
    }
    Ok(t)
}

/// The machine's 1-minute load average (`/proc/loadavg`), for the record.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// One way of running both sides: pinned to one CPU, or free on every core.
#[derive(Clone, Copy, PartialEq)]
enum Threads {
    One,
    All,
}

/// `program` as a command, pinned to CPU 0 with `taskset` for [`Threads::One`].
fn command(program: &Path, threads: Threads) -> Command {
    match threads {
        Threads::One => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg("0").arg(program);
            c
        }
        Threads::All => Command::new(program),
    }
}

/// The largest absolute sample difference between `ours` and `reference` (infinite where either
/// is not a number).
fn compare(ours: &[f32], reference: &[f32]) -> Result<f32> {
    if ours.len() != reference.len() {
        bail!("length differs: loophole {} samples, sox {} samples", ours.len(), reference.len());
    }
    let diff = |(x, y): (&f32, &f32)| {
        let d = (x - y).abs();
        if d.is_nan() { f32::INFINITY } else { d }
    };
    Ok(ours.iter().zip(reference).map(diff).fold(0f32, f32::max))
}

fn criterion_median_ns(dir: &Path, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(id).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn criterion_summary(dir: &Path) {
    match criterion_median_ns(dir, "pulse_tick_64_tracks_64_scenes_follow_actions_per_64_frame_block") {
        Some(ns) => println!(
            "Pulse::tick, 64 tracks x 64 scenes with follow actions on every clip and scene, per 64-frame block @ 48 kHz: median {:.0} ns = {:.4}% of the 1.333 ms deadline",
            ns,
            100.0 * ns / (64.0 / RATE as f64 * 1e9)
        ),
        None => println!("pulse bench: no criterion estimates in {}", dir.display()),
    }
    for frames in [64usize, 128] {
        let est = dir.join(format!("signal_process_64_stereo_clips_{frames}_frames/new/estimates.json"));
        let Ok(text) = std::fs::read_to_string(&est) else {
            println!("signal bench {frames} frames: no criterion estimates at {}", est.display());
            continue;
        };
        let v: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                println!("signal bench {frames} frames: unreadable estimates: {e}");
                continue;
            }
        };
        let median_ns = v["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN);
        let deadline_ns = frames as f64 / RATE as f64 * 1e9;
        println!(
            "Signal::process, 64 stereo looping clips with crossfades, {frames} frames @ 48 kHz: median {:.1} us = {:.2}% of the {:.3} ms deadline",
            median_ns / 1e3,
            100.0 * median_ns / deadline_ns,
            deadline_ns / 1e6
        );
    }
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if let Some(dir) = &args.criterion {
        criterion_summary(dir);
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let sox = PathBuf::from("sox");
    let mut failures = Vec::new();
    for &n in &args.stems {
        let (session, script, stems) = prepare(&args.dir, n, args.seconds)?;
        // Warm the page cache so both tools read from memory.
        for s in &stems {
            std::fs::read(s)?;
        }
        let ours =
            |t: Threads| args.dir.join(format!("mix-{n}-loophole-{}.wav", if t == Threads::One { 1 } else { cores }));
        let theirs = args.dir.join(format!("mix-{n}-sox.wav"));
        let node = |t: Threads| {
            let mut c = command(&args.node, t);
            c.arg("render").arg(&session).arg("--script").arg(&script).arg("--out").arg(ours(t));
            c.arg("--seconds").arg(args.seconds.to_string()).arg("--block").arg("1024");
            if t == Threads::One {
                c.arg("--decode-threads").arg("1");
            }
            c
        };
        let sox_mix = |t: Threads| {
            let mut c = command(&sox, t);
            c.arg("-m");
            for s in &stems {
                c.arg("-v").arg("1").arg(s);
            }
            c.args(["-b", "32", "-e", "floating-point"]).arg(&theirs);
            c
        };
        let load_before = load_average();
        // Interleaved, run by run, so a change in the machine's load meets every configuration.
        let (mut node_1, mut sox_1, mut node_all, mut sox_all) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.runs {
            node_1.push(time_run(node(Threads::One))?);
            sox_1.push(time_run(sox_mix(Threads::One))?);
            node_all.push(time_run(node(Threads::All))?);
            sox_all.push(time_run(sox_mix(Threads::All))?);
        }
        let load_after = load_average();
        let reference = read_wav(&theirs)?;
        let one = read_wav(&ours(Threads::One))?;
        let all = read_wav(&ours(Threads::All))?;
        let max_diff = compare(&one, &reference)?;
        let peak = one.iter().fold(0f32, |m, x| m.max(x.abs()));
        let identical = one.len() == all.len() && one.iter().zip(&all).all(|(a, b)| a.to_bits() == b.to_bits());
        println!(
            "{n} stereo stems x {}s, medians of {} runs, load average {load_before} before, {load_after} after:",
            args.seconds, args.runs
        );
        for (what, ours, theirs) in [
            (
                "1 thread (both pinned to CPU 0; node --decode-threads 1, sox single-threaded)".to_string(),
                median(node_1),
                median(sox_1),
            ),
            (
                format!(
                    "all {cores} cores (node: {cores} decode threads, then one render thread; sox single-threaded)"
                ),
                median(node_all),
                median(sox_all),
            ),
        ] {
            println!(
                "  {what}: loophole-node render {ours:.3}s, sox -m {theirs:.3}s: loophole is {:.2}x sox's speed",
                theirs / ours
            );
        }
        println!(
            "  largest sample difference from sox {max_diff:.2e} (limit {MAX_DIFF:.0e}, peak {peak:.3}); 1-thread and \
             {cores}-core renders {}",
            if identical { "bit-identical" } else { "DIFFER" }
        );
        if max_diff > MAX_DIFF {
            failures.push(format!("{n} stems: largest difference from sox {max_diff:.2e} > {MAX_DIFF:.0e}"));
        }
        if !identical {
            failures.push(format!("{n} stems: the 1-thread and {cores}-core renders differ"));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}
