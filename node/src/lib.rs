//! # loophole-node
//!
//! The binary a musician runs, as a library so that tests reach every part of it. `main.rs` only
//! parses the command line ([`cli`]) and calls [`run`].
//!
//! - [`input`]: what to perform: a session file or the built-in demo, an optional performance
//!   script, the seed, and how long a performance lasts by default.
//! - [`render`]: `loophole-node render`: the engine's offline [`Renderer`] streamed to a WAV file.
//! - [`play`]: `loophole-node play` and `demo`: the same engine live, on an audio device or on the
//!   null device, with the control thread that drains the inbox into Pulse (the only caller of
//!   Pulse), logs what happens and publishes the snapshot.
//! - [`inbox`]: the one inbox every input sends to (script actions, MIDI pads, the terminal, the
//!   window; the conductor client later), each request tagged with its source.
//! - [`board`]: where the control thread publishes the latest
//!   [`Snapshot`](loophole_engine::control::Snapshot), lock-free, for every display.
//! - [`stdin`]: the terminal as an input (`--stdin-commands`).
//! - [`clock`]: host time, callback timing, the published audio position and the host-time
//!   filter, below both [`audio`] and [`link`].
//! - [`health`]: DSP load and xrun reporting.
//! - [`ui_snapshot`]: `loophole-node ui-snapshot`: the launcher window drawn headless
//!   ([`loophole_ui`]) at a beat of an offline performance.
//! - [`window`]: the live launcher window of `play` and `demo` (`--ui`, `--no-ui`): the
//!   performance on a spawned thread, Slint's event loop on the main thread; [`ui_link`]: what
//!   the two exchange.
//! - [`audio`]: audio output: the realtime callback ([`audio::AudioCore`]), cpal devices, the null
//!   device (paced by the clock, for machines with no sound card) and the capture writer; audio
//!   input (a cpal device or the null input) recorded aligned with the output (docs/audio.md).
//! - [`link`]: Ableton Link: the musical clock shared with other peers, start/stop sync, the
//!   reference timeline of each audio block.
//! - [`devices`]: `loophole-node devices`.
//! - [`midi`]: MIDI ports (midir, or a fake), controller mappings and their LED feedback.
//! - [`wav`], [`eventlog`]: the streaming float WAV writer and the JSON-lines event log.
//! - [`takes`]: recording in `render` (named inputs, the takes' disk thread, takes into the
//!   session file) and `loophole-node takes` (repair and list).
//!
//! ## Command line (scripts depend on these names)
//!
//! ```text
//! loophole-node render (SESSION | --demo) [--script PERF.toml | --playthrough [--from S --to S] | --arrangement]
//!                      --out OUT.wav [--block N (256)] [--sample-rate SR (48000)] [--seconds S]
//!                      [--seed N] [--log LOG.jsonl] [--input [NAME=]file:PATH.wav|silence]... [--takes-dir DIR]
//! loophole-node play   (SESSION | --demo) [--script PERF.toml | --playthrough [--from S --to S] | --arrangement]
//!                      [--seed N] [--audio NAME|null] [--sample-rate SR] [--buffer FRAMES] [--seconds S]
//!                      [--log LOG.jsonl] [--capture OUT.wav] [--input DEVICE|silence|file:PATH|loopback[:MS]]
//!                      [--record-input FILE.wav] [--link | --no-link] [--stopped] [--stdin-commands]
//!                      [--controller MAPPING.toml] [--midi-in NAME]... [--midi-out NAME] [--midi system|fake]
//!                      [--ui | --no-ui]
//! loophole-node demo   [--script PERF.toml] [--seed N] [same live options as play]
//! loophole-node devices
//! loophole-node takes  [--takes-dir DIR (takes)]
//! loophole-node ui-snapshot (SESSION | --demo) [--script PERF.toml] --at-beat B --out SHOT.png [--size WxH]
//! loophole-node arrange SESSION (--playthrough [--from S --to S] | --script PERF.toml [--seconds S]
//!                      | --place CLIP --lane TRACK [--length L] [--duplicate]) [--at BEAT]
//! ```
//!
//! `--demo` is the demo session performed by the demo script (unless `--script` replaces it).
//! Default lengths: the demo's length; a script's last action plus two bars; otherwise 30 s for
//! `render` and until Ctrl-C for `play`. With no usable audio device (or when the device fails,
//! stops calling back, or plays faster than real time) `play` says so on stderr, e.g.
//! `loophole: no audio device (DeviceNotAvailable); playing on the null device, paced in real
//! time, and writing what it plays to loophole-demo.wav`, and carries on on the null device from
//! the same sample. `--log` lines are [`loophole_engine::pulse::PulseEvent::to_json`] plus
//! `source` (`render` / `live`) and, live, `host_time` (seconds since playback started).
//!
//! Errors are [`anyhow`] errors with context. [`exit_code`] maps them to the process exit code:
//! 2 for bad input (a session or script file that does not load, an impossible option), 1 for
//! anything else.
//!
//! [`Renderer`]: loophole_engine::render::Renderer
#![warn(missing_docs)]

pub mod arrange;
pub mod audio;
pub mod band;
pub mod board;
pub mod cli;
pub mod clock;
pub mod devices;
pub mod eventlog;
pub mod health;
pub mod inbox;
pub mod input;
pub mod link;
pub mod midi;
pub mod play;
pub mod render;
pub mod smf;
pub mod stdin;
pub mod streaming;
pub mod takes;
pub mod ui_link;
pub mod ui_snapshot;
pub mod wav;
pub mod window;

use std::io::Write;

/// Marks an error as the user's input being wrong (exit code 2), as opposed to something failing
/// while running (exit code 1). Attach it with [`anyhow::Error::new`] or `.context(BadInput(..))`.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// The process exit code for an error returned by [`run`]: 2 when the input is at fault (a
/// session or script file that does not load, an impossible option), 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let bad_input = err.chain().any(|e| {
        e.is::<BadInput>()
            || e.is::<loophole_engine::files::session::SessionError>()
            || e.is::<loophole_engine::files::script::ScriptError>()
    });
    if bad_input { 2 } else { 1 }
}

/// Runs one command line. Thread: main thread.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Render(args) => render::run(&args.into_options()?).map(|_| ()),
        cli::Command::Play(args) => window::run(args.into_options()?).map(|_| ()),
        cli::Command::Demo(args) => window::run(args.into_options()?).map(|_| ()),
        cli::Command::Devices => devices::run(),
        cli::Command::Arrange(args) => arrange::run(&args),
        cli::Command::UiSnapshot(args) => ui_snapshot::run(&args),
        cli::Command::Takes(args) => takes::run(&args),
    }
}

/// Sets up `tracing` diagnostics on stderr, filtered by `RUST_LOG` (default: warnings).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Prints one line to stdout, ignoring a closed pipe (`loophole-node ... | head` must not panic).
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Prints one line to stderr, ignoring errors.
pub(crate) fn warn_line(line: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(line);
    let _ = err.write_all(b"\n");
}

/// A linear peak as dBFS text (`-inf` for silence).
pub fn dbfs(peak: f32) -> String {
    if peak > 0.0 { format!("{:.1} dBFS", 20.0 * (peak as f64).log10()) } else { "-inf dBFS".to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbfs_of_full_scale_half_and_silence() {
        assert_eq!(dbfs(1.0), "0.0 dBFS");
        assert_eq!(dbfs(0.5), "-6.0 dBFS");
        assert_eq!(dbfs(0.0), "-inf dBFS");
    }

    #[test]
    fn bad_input_maps_to_exit_code_2() {
        let e = anyhow::Error::new(BadInput("seconds must be positive".into())).context("render");
        assert_eq!(exit_code(&e), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("disk full")), 1);
    }
}
