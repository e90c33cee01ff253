//! `loophole-node ui-snapshot`: the launcher window drawn headless at a beat of an offline
//! performance (the same Pulse and Signal as `render`), written as PNG, for docs, tests and bug
//! reports on machines with no display.
//!
//! Thread: main thread (it becomes the headless UI's thread).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::time::Bpm;

use crate::input::{Performance, SourceArgs};
use crate::{BadInput, say};

/// `ui-snapshot` options.
#[derive(Debug, Args)]
pub struct UiSnapshotArgs {
    /// What to perform.
    #[command(flatten)]
    pub source: SourceArgs,
    /// The beat to draw the window at (the performance is rendered offline up to it).
    #[arg(long = "at-beat", value_name = "B", allow_negative_numbers = true)]
    pub at_beat: f64,
    /// The PNG file to write.
    #[arg(long, value_name = "SHOT.png")]
    pub out: PathBuf,
    /// The window's size in pixels, WIDTHxHEIGHT.
    #[arg(long, value_name = "WxH", default_value = "1366x768", value_parser = parse_size)]
    pub size: (u32, u32),
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("'{text}': give the size as WIDTHxHEIGHT, each 1 to 8192 (e.g. 1366x768)");
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h) = (w.trim().parse::<u32>().map_err(|_| bad())?, h.trim().parse::<u32>().map_err(|_| bad())?);
    if !(1..=8192).contains(&w) || !(1..=8192).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

/// Runs `ui-snapshot`.
pub fn run(args: &UiSnapshotArgs) -> anyhow::Result<()> {
    const MAX_BEAT: f64 = 100_000.0;
    if !(args.at_beat.is_finite() && (0.0..=MAX_BEAT).contains(&args.at_beat)) {
        anyhow::bail!(BadInput(format!("--at-beat {}: a beat from 0 to {MAX_BEAT}", args.at_beat)));
    }
    let perf = Performance::load_for_render(&args.source.input())?;
    let sample_rate = 48_000;
    // Long enough to reach the beat at the slowest tempo a session may have.
    let seconds = args.at_beat * 60.0 / Bpm::MIN + 1.0;
    let config = RenderConfig { sample_rate, block: 256, seconds };
    let mut renderer = Renderer::new(perf.session.clone(), perf.script.clone(), config)
        .map_err(|e| BadInput(e.to_string()))
        .context("cannot set up the performance")?;
    let mut scratch = vec![0.0f32; 256 * 2];
    // Block by block up to the block that reaches the beat, then frame by frame onto it.
    while renderer.beat_at(renderer.position() as i64 + 256).0 < args.at_beat {
        renderer.render_frames(256, &mut scratch);
    }
    while renderer.beat_at(renderer.position() as i64).0 < args.at_beat {
        renderer.render_frames(1, &mut scratch);
    }
    while renderer.poll_event().is_some() {}
    let snapshot = renderer.snapshot();
    let (w, h) = args.size;
    let image = loophole_ui::headless::snapshot_image(perf.session.clone(), &snapshot, w, h)?;
    image.write_png(&args.out)?;
    say(format_args!("{}: the launcher at beat {:.2} ({w}x{h})", args.out.display(), snapshot.transport.beat));
    Ok(())
}
