//! Pulse's scheduling cost per block: 64 tracks x 64 scenes, follow actions on every clip and
//! every scene, ticked once per 64-frame block at 48 kHz (deadline 1.333 ms). Only Pulse's work
//! (tick + draining its events) is timed; Signal runs outside the timed part to drain the queues.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use loophole_engine::EngineConfig;
use loophole_engine::model::*;
use loophole_engine::pulse::Action;
use loophole_engine::time::{Beats, Bpm, Quantise, SimClock};

const TRACKS: usize = 64;
const SCENES: usize = 64;

fn session() -> Session {
    let mut s = Session::new("pulse-bench", Bpm(120.0));
    s.seed = 9;
    // One shared buffer: 4096 clips, no memory blow-up.
    let data = Arc::new(AudioData { sample_rate: 48_000, left: vec![0.01; 24_000], right: vec![0.01; 24_000] });
    for t in 0..TRACKS {
        s.add_track(Track::new(format!("t{t}"), TrackKind::Audio));
    }
    let fa = |next, chance| FollowAction {
        next,
        chance,
        constraints: FollowConstraints { no_repeat: true, ..Default::default() },
    };
    for k in 0..SCENES {
        let mut clips = Vec::new();
        for t in 0..TRACKS {
            let mut c = Clip::new(
                format!("t{t}s{k}"),
                TrackId(t as u32),
                ClipContent::Audio(data.clone()),
                Beats(1.0 + (t % 4) as f64),
            );
            c.follow = Some(FollowActions {
                after_loops: 1 + (k % 2) as u32,
                a: fa(FollowTarget::Next, 0.6),
                b: Some(fa(FollowTarget::Random, 0.4)),
            });
            clips.push(s.add_clip(c));
        }
        let mut scene = Scene::new(format!("s{k}"), clips);
        scene.follow = Some(FollowActions {
            after_loops: 2,
            a: fa(FollowTarget::Random, 0.5),
            b: Some(fa(FollowTarget::Next, 0.5)),
        });
        s.add_scene(scene);
    }
    s
}

fn pulse_tick(c: &mut Criterion) {
    let session = Arc::new(session());
    let (mut pulse, mut signal) =
        loophole_engine::build(session, &EngineConfig { sample_rate: 48_000, max_block: 64, queue_capacity: 1 << 15 })
            .unwrap();
    let clock = SimClock { sample_rate: 48_000, tempo: Bpm(120.0), quantum: 4.0 };
    pulse.press(Action::LaunchScene { scene: SceneId(0), quantise: Some(Quantise::None) }, Beats(0.0)).unwrap();
    let mut out = vec![0f32; 128];
    let mut t = 0i64;
    let lookahead = 0.1; // beats (50 ms at 120 BPM)
    c.bench_function("pulse_tick_64_tracks_64_scenes_follow_actions_per_64_frame_block", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let block = clock.block(t, 64);
                let start = Instant::now();
                pulse.tick(block.beat_at_first_sample, Beats(block.end_beat().0 + lookahead)).unwrap();
                while let Some(e) = pulse.poll_event() {
                    black_box(e);
                }
                timed += start.elapsed();
                signal.process(&block, &mut out);
                t += 64;
            }
            timed
        })
    });
}

criterion_group!(benches, pulse_tick);
criterion_main!(benches);
