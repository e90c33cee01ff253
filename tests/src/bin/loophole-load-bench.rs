//! The deadline benchmark: the null device paced in real time for N blocks at 64 and 128 frames
//! (48 kHz), with an empty callback and with the node's audio callback ([`AudioCore`] running
//! Signal) playing 16 and 64 stereo clips that switch every beat, all in the same run. For each
//! configuration it prints the deadline misses and late starts the null device counted (see
//! `loophole_node::audio::null`) and the DSP load percentiles of its load meter, then whether the
//! goals hold: no configuration misses more deadlines than the empty callback at the same block
//! size, and the p99 load is at most 25 % at 128 frames.
//!
//! Each clip run uses what `loophole-node play` uses: [`AudioBackend::start_null`] with an
//! [`AudioCore`], and a control thread that wakes every 2 ms, presses one launch per track for
//! every beat (each track switches to its other clip, crossfading, legato) as soon as the audio
//! is within the lookahead (two blocks + 10 ms) of that beat, ticks Pulse and drains its events.
//! The audio thread gets realtime scheduling as in `play` unless `--no-realtime`.
//!
//! **Interleaved rounds.** A shared or virtual machine stalls now and then (another process, the
//! hypervisor), and a stall makes any callback miss, empty or not. So that the configurations
//! meet the same weather, each is measured in `--rounds` slices (default 10) of
//! `blocks / rounds` blocks, run round-robin (empty, 16 clips, 64 clips, empty, ...), and the
//! slices' meters are added up ([`LoadMeter::absorb_since`]). Each slice first runs [`WARMUP`]
//! blocks that are not counted (the thread being promoted to realtime priority, the first touch
//! of the clips' memory): the benchmark measures a set in progress, not its first moments.
//!
//! Usage: `loophole-load-bench [--blocks 100000] [--rounds 10] [--frames 64,128] [--clips 16,64]
//! [--steady] [--no-realtime]`. `--steady` adds runs whose clips loop without switching.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use loophole_engine::EngineConfig;
use loophole_engine::model::ClipId;
use loophole_engine::pulse::Action;
use loophole_engine::time::{Beats, Bpm, Quantise, TempoMap};
use loophole_node::audio::load::{LoadMeter, percent};
use loophole_node::audio::null::{NullConfig, NullStats, NullStream};
use loophole_node::audio::rt::RealtimeRequest;
use loophole_node::audio::{AudioBackend, AudioCore};
use loophole_node::clock::Transport;

const RATE: u32 = 48_000;
const TEMPO: f64 = 120.0;
const TICK: Duration = Duration::from_millis(2);
/// Blocks at the start of each slice that are not counted (0.25 s at 64 frames).
const WARMUP: u64 = 200;
/// The goal for the p99 load at 128 frames.
const P99_GOAL: f64 = 0.25;

struct Args {
    blocks: u64,
    rounds: u64,
    frames: Vec<usize>,
    clips: Vec<usize>,
    steady: bool,
    realtime: bool,
}

fn parse_args() -> Result<Args> {
    let mut a =
        Args { blocks: 100_000, rounds: 10, frames: vec![64, 128], clips: vec![16, 64], steady: false, realtime: true };
    let list = |v: String| -> Result<Vec<usize>> {
        v.split(',').map(|s| s.trim().parse::<usize>().with_context(|| format!("not a number: {s}"))).collect()
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--blocks" => a.blocks = v()?.parse().context("--blocks N")?,
            "--rounds" => a.rounds = v()?.parse().context("--rounds N")?,
            "--frames" => a.frames = list(v()?)?,
            "--clips" => a.clips = list(v()?)?,
            "--steady" => a.steady = true,
            "--no-realtime" => a.realtime = false,
            "--realtime" => a.realtime = true,
            "-h" | "--help" => {
                println!(
                    "usage: loophole-load-bench [--blocks 100000] [--rounds 10] [--frames 64,128] [--clips 16,64] [--steady] [--no-realtime]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if a.blocks == 0 || a.frames.iter().any(|&f| f == 0 || f > 4096) || a.clips.contains(&0) {
        bail!("--blocks must be > 0, --frames 1..=4096, --clips > 0");
    }
    if a.rounds == 0 || a.rounds > a.blocks {
        bail!("--rounds must be 1..=blocks");
    }
    Ok(a)
}

/// One configuration's figures, added up over its slices.
struct Outcome {
    frames: usize,
    name: String,
    clips: usize,
    switching: bool,
    load: LoadMeter,
    triggers: u64,
    wall: Duration,
    realtime: bool,
}

impl Outcome {
    fn new(frames: usize, clips: usize, switching: bool) -> Outcome {
        let name = match clips {
            0 => "empty callback".to_string(),
            n => format!("{n} clips{}", if switching { ", switching every beat" } else { ", looping" }),
        };
        Outcome {
            frames,
            name,
            clips,
            switching,
            load: LoadMeter::new(),
            triggers: 0,
            wall: Duration::ZERO,
            realtime: true,
        }
    }

    /// Runs one slice of `blocks` blocks of this configuration and adds it up.
    fn run(&mut self, blocks: u64, realtime: bool) -> Result<()> {
        let t0 = Instant::now();
        let (meter, warm, triggers, promoted) = match self.clips {
            0 => empty(self.frames, blocks, realtime)?,
            n => clips(self.frames, n, self.switching, blocks, realtime)?,
        };
        self.wall += t0.elapsed();
        self.load.absorb_since(meter.load(), &warm);
        self.triggers += triggers;
        self.realtime &= promoted;
        Ok(())
    }
}

/// Waits until [`WARMUP`] + `blocks` callbacks were made, promoting the audio thread, and
/// calling `step` every tick (the control thread's work). Returns a copy of `meter` taken once
/// the warm-up was over.
fn run_until(
    blocks: u64,
    stats: &NullStats,
    tid: impl Fn() -> Option<i32>,
    rt: &mut RealtimeRequest,
    mut step: impl FnMut() -> Result<()>,
) -> Result<LoadMeter> {
    let mut warm = None;
    while stats.callbacks() < WARMUP + blocks {
        if let Some(w) = rt.poll(tid()) {
            eprintln!("loophole-load-bench: warning: {w}");
        }
        if warm.is_none() && stats.callbacks() >= WARMUP {
            warm = Some(stats.load().copy());
        }
        step()?;
        std::thread::sleep(TICK);
    }
    Ok(warm.unwrap_or_else(|| stats.load().copy()))
}

/// What a slice leaves: the null device's counters (its meter), a copy of its meter after the
/// warm-up, the triggers pressed, and whether the audio thread ran at realtime priority.
type Slice = (Arc<NullStats>, LoadMeter, u64, bool);

fn empty(frames: usize, blocks: u64, realtime: bool) -> Result<Slice> {
    let stream =
        NullStream::start(NullConfig { sample_rate: RATE, channels: 2, block: frames }, |buf, _| buf.fill(0.0))?;
    let stats = stream.stats();
    let mut rt = RealtimeRequest::new(realtime);
    let warm = run_until(blocks, &stats, || stats.thread_id(), &mut rt, || Ok(()))?;
    stream.stop();
    Ok((stats, warm, 0, rt.priority.is_some()))
}

fn clips(frames: usize, tracks: usize, switching: bool, blocks: u64, realtime: bool) -> Result<Slice> {
    let session = Arc::new(loophole_engine::demo::bench_session(tracks, TEMPO, RATE));
    let (mut pulse, signal) = loophole_engine::build(
        session.clone(),
        &EngineConfig { sample_rate: RATE, max_block: frames, queue_capacity: 8192 },
    )?;
    let launch = |c: usize| Action::Launch { clip: ClipId(c as u32), quantise: Some(Quantise::None), velocity: None };
    for t in 0..tracks {
        pulse.press(launch(2 * t), Beats(0.0))?;
    }
    let transport = Transport::new();
    let core = AudioCore::new(signal, TempoMap::new(RATE, Bpm(TEMPO), 4.0), 0, transport.clone());
    let backend = AudioBackend::start_null(core, frames)?;
    let AudioBackend::Null { stats, .. } = &backend else { unreachable!("start_null makes the null device") };
    let stats = stats.clone();
    let lookahead = (2.0 * frames as f64 + 0.010 * RATE as f64) * Bpm(TEMPO).beats_per_sample(RATE);
    let mut next_beat = 1u64;
    let mut triggers = 0u64;
    let mut rt = RealtimeRequest::new(realtime);
    let warm = run_until(
        blocks,
        &stats,
        || backend.audio_thread_id(),
        &mut rt,
        || {
            let now = transport.snapshot().beat;
            // Every beat each track switches to its other clip, pressed for that beat as soon as
            // the audio is within the lookahead of it.
            while switching && next_beat as f64 - lookahead <= now {
                let beat = Beats(next_beat as f64);
                pulse.tick(beat, beat)?;
                for t in 0..tracks {
                    pulse.press(launch(2 * t + (next_beat % 2) as usize), beat)?;
                    triggers += 1;
                }
                next_beat += 1;
            }
            pulse.tick(Beats(now), Beats(now + lookahead))?;
            while pulse.poll_event().is_some() {}
            Ok(())
        },
    )?;
    drop(backend.stop());
    Ok((stats, warm, triggers, rt.priority.is_some()))
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let total: f64 = a
        .frames
        .iter()
        .map(|&f| {
            let runs = 1 + a.clips.len() * if a.steady { 2 } else { 1 };
            runs as f64 * a.blocks as f64 * f as f64 / RATE as f64
        })
        .sum();
    eprintln!(
        "loophole-load-bench: {} blocks per configuration at {:?} frames, {RATE} Hz, paced in real time: about {:.0} s",
        a.blocks, a.frames, total
    );
    let mut outcomes = Vec::new();
    for &frames in &a.frames {
        outcomes.push(Outcome::new(frames, 0, false));
        for &n in &a.clips {
            for switching in [true, false].into_iter().filter(|s| *s || a.steady) {
                outcomes.push(Outcome::new(frames, n, switching));
            }
        }
    }
    // Round-robin slices; the last round takes what the division leaves.
    for round in 0..a.rounds {
        let slice = a.blocks / a.rounds + if round + 1 == a.rounds { a.blocks % a.rounds } else { 0 };
        for o in &mut outcomes {
            o.run(slice, a.realtime)?;
        }
        eprintln!("  round {} of {} done", round + 1, a.rounds);
    }

    println!();
    println!(
        "{:>6}  {:<34} {:>8} {:>7} {:>5} {:>6} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "frames", "callback", "blocks", "misses", "slow", "late", "p50", "p99", "max", "mean", "triggers"
    );
    for o in &outcomes {
        println!(
            "{:>6}  {:<34} {:>8} {:>7} {:>5} {:>6} {:>7} {:>7} {:>7} {:>7} {:>8}",
            o.frames,
            o.name,
            o.load.stats().blocks,
            o.load.stats().misses,
            o.load.stats().slow_misses,
            o.load.stats().late_starts,
            percent(o.load.stats().p50),
            percent(o.load.stats().p99),
            percent(o.load.stats().max),
            percent(o.load.stats().mean),
            o.triggers
        );
    }
    let realtime = outcomes.iter().all(|o| o.realtime);
    println!(
        "(misses: blocks finished after they were due to be heard; slow: misses whose callback ran > half a period; \
         late: blocks started > half a period late; \
         load: callback time / block period; audio thread {})",
        if realtime { "SCHED_FIFO" } else { "at normal priority for some or all runs" }
    );
    for o in &outcomes {
        let paced = o.load.stats().blocks as f64 * o.frames as f64 / RATE as f64;
        if o.wall.as_secs_f64() < paced * 0.95 {
            bail!("{} at {} frames ran faster than real time: not paced", o.name, o.frames);
        }
    }

    println!();
    let mut all = true;
    for &frames in &a.frames {
        let of = |o: &&Outcome| o.frames == frames;
        let base = outcomes.iter().filter(of).find(|o| o.clips == 0).map_or(0, |o| o.load.stats().misses);
        for o in outcomes.iter().filter(of).filter(|o| o.clips > 0) {
            let ok = o.load.stats().misses <= base;
            all &= ok;
            println!(
                "goal  {frames:>3} frames, {:<30} misses {} <= empty callback's {}: {}",
                o.name,
                o.load.stats().misses,
                base,
                if ok { "holds" } else { "FAILS" }
            );
        }
    }
    // What the callback itself is to blame for: misses whose callback ran over half a period.
    for o in outcomes.iter().filter(|o| o.clips > 0) {
        let slow = o.load.stats().slow_misses;
        all &= slow == 0;
        println!(
            "goal  {:>3} frames, {:<30} slow misses (the callback's own) {slow} == 0: {}",
            o.frames,
            o.name,
            if slow == 0 { "holds" } else { "FAILS" }
        );
    }
    for o in outcomes.iter().filter(|o| o.frames == 128 && o.clips > 0) {
        let ok = o.load.stats().p99 <= P99_GOAL;
        all &= ok;
        println!(
            "goal  128 frames, {:<30} p99 load {} <= {}: {}",
            o.name,
            percent(o.load.stats().p99),
            percent(P99_GOAL),
            if ok { "holds" } else { "FAILS" }
        );
    }
    println!("{}", if all { "all goals hold" } else { "some goals FAIL" });
    Ok(())
}
