//! Cost of one `Signal::process` block with 64 stereo looping clips, switching with crossfades.
//!
//! The block deadline is `frames / sample_rate` (1.333 ms at 64 frames, 2.667 ms at 128 frames,
//! 48 kHz). `cargo bench -p loophole-engine --bench signal` prints criterion's estimates; the bench
//! runner (`loophole-bench`) turns them into fractions of the deadline.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use loophole_engine::EngineConfig;
use loophole_engine::model::*;
use loophole_engine::pulse::{Action, Pulse};
use loophole_engine::signal::Signal;
use loophole_engine::time::{Beats, Bpm, Quantise, SimClock};

const RATE: u32 = 48_000;
const CLIPS: usize = 64;

fn bench_frames(c: &mut Criterion, frames: usize) {
    let session = Arc::new(loophole_engine::demo::bench_session(CLIPS, 120.0, RATE));
    let (mut pulse, mut signal): (Pulse, Signal) = loophole_engine::build(
        session.clone(),
        &EngineConfig { sample_rate: RATE, max_block: frames, queue_capacity: 4096 },
    )
    .unwrap();
    let clock = SimClock { sample_rate: RATE, tempo: Bpm(120.0), quantum: 4.0 };
    for clip in (0..CLIPS).map(|t| ClipId(2 * t as u32)) {
        pulse.press(Action::Launch { clip, quantise: Some(Quantise::None), velocity: None }, Beats(0.0)).unwrap();
    }
    let mut out = vec![0f32; frames * 2];
    let mut t = 0i64;
    let mut block = 0u64;
    c.bench_function(&format!("signal_process_64_stereo_clips_{frames}_frames"), |b| {
        b.iter(|| {
            // Every 8 blocks, switch a quarter of the tracks to their other clip: there is always a
            // crossfade in flight somewhere.
            if block.is_multiple_of(8) {
                let now = Beats(t as f64 / 24_000.0);
                for k in 0..CLIPS / 4 {
                    let track = (block as usize / 8 * 7 + k * 4) % CLIPS;
                    let other = ClipId((2 * track + (block as usize / 8) % 2) as u32);
                    let _ = pulse
                        .press(Action::Launch { clip: other, quantise: Some(Quantise::None), velocity: None }, now);
                }
                while pulse.poll_event().is_some() {}
            }
            signal.process(&clock.block(t, frames), black_box(&mut out));
            t += frames as i64;
            block += 1;
        })
    });
}

fn signal_process(c: &mut Criterion) {
    bench_frames(c, 64);
    bench_frames(c, 128);
}

criterion_group!(benches, signal_process);
criterion_main!(benches);
