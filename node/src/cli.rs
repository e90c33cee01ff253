//! The command line. Scripts and tests depend on these subcommand and flag names: keep them
//! stable (see `docs/` and the architecture page).
//!
//! Thread: Main thread, at start-up.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::BadInput;
use crate::input::{InputArgs, Source, SourceArgs};
use crate::midi::{MidiOptions, MidiSystem};
use crate::play::{Backend, PlayOptions};
use crate::render::RenderOptions;

/// `loophole-node`: a live clip launcher.
#[derive(Debug, Parser)]
#[command(name = "loophole-node", version, about = "Loophole: a live clip launcher", propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render a session (or the demo) offline to a 32-bit float stereo WAV file, as fast as the
    /// machine can.
    Render(RenderArgs),
    /// Play a session (or the demo) live on an audio device, or on the null device when there is
    /// none; or join a band (`--conductor CODE`).
    #[command(mut_arg("session", |a| a.required_unless_present_any(["demo", "conductor"])))]
    Play(PlayArgs),
    /// Play the built-in demo performance live (`play --demo`).
    #[command(mut_arg("seconds", |a| a.help(
        "Stop after this many seconds of audio (more than 0). Default: the demo's length (59 s); with --script, \
         its last action plus two bars"
    )))]
    Demo(DemoArgs),
    /// List the audio hosts, their output and input devices, and the MIDI ports.
    Devices,
    /// Edit a session file's arrangement: commit a playthrough or a launcher performance, or
    /// move a clip onto a lane.
    #[command(mut_arg("at", |a| a.hide_default_value(true)))]
    #[command(mut_arg("seconds", |a| a.allow_negative_numbers(true).value_parser(parse_seconds)))]
    Arrange(crate::arrange::ArrangeArgs),
    /// Draw the launcher window headless, at a beat of an offline performance, to a PNG file.
    #[command(name = "ui-snapshot")]
    UiSnapshot(crate::ui_snapshot::UiSnapshotArgs),
    /// Repair the takes a kill cut off and list the takes in a takes folder.
    Takes(crate::takes::TakesArgs),
}

/// `render` options.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// What to render.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output WAV file (32-bit float, stereo).
    #[arg(long, value_name = "OUT.wav")]
    pub out: PathBuf,
    /// Frames per block (the output does not depend on it).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub block: u32,
    /// Sample rate in Hz (8000 to 384000).
    #[arg(long, value_name = "SR", default_value_t = 48_000, value_parser = parse_sample_rate)]
    pub sample_rate: u32,
    /// Length in seconds. Default: the demo's length with `--demo`; with a script, its last action
    /// plus two bars; with --playthrough or --arrangement, their length plus one bar; otherwise
    /// 30 s. More than 0.
    #[arg(long, value_name = "S", allow_negative_numbers = true, value_parser = parse_seconds)]
    pub seconds: Option<f64>,
    /// Write every executed event as one JSON object per line.
    #[arg(long, value_name = "LOG.jsonl")]
    pub log: Option<PathBuf>,
    /// Write what tracks with `midi_out` send to their external synths as a Standard MIDI File.
    #[arg(long = "midi-out", value_name = "FILE.mid")]
    pub midi_out: Option<PathBuf>,
    /// An input the armed tracks record from (repeatable): NAME=SOURCE binds the input tracks
    /// name with `input = "NAME"`; a bare SOURCE feeds every track input not bound by name.
    /// SOURCE: `file:PATH.wav` (played into the input from the render's first frame) or
    /// `silence`. See docs/recording.md.
    #[arg(long = "input", value_name = "[NAME=]SOURCE", value_parser = crate::takes::parse_named_input)]
    pub inputs: Vec<crate::takes::NamedInput>,
    /// Where takes are written (default: `takes/` beside the session file).
    #[arg(long = "takes-dir", value_name = "DIR")]
    pub takes_dir: Option<PathBuf>,
}

impl RenderArgs {
    /// The options [`crate::render::run`] takes.
    pub fn into_options(self) -> anyhow::Result<RenderOptions> {
        Ok(RenderOptions {
            input: self.source.input(),
            out: self.out,
            block: self.block as usize,
            sample_rate: self.sample_rate,
            seconds: self.seconds,
            log: self.log,
            midi_out: self.midi_out,
            inputs: self.inputs,
            takes_dir: self.takes_dir,
        })
    }
}

/// Options shared by `play` and `demo`.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Output device: a name or id as `devices` lists it, or `null` for the null device (paced by
    /// the clock, no sound). Default: the system's default output device.
    #[arg(long, value_name = "NAME")]
    pub audio: Option<String>,
    /// Sample rate in Hz (8000 to 384000). Default: the device's (48000 on the null device).
    #[arg(long, value_name = "SR", value_parser = parse_sample_rate)]
    pub sample_rate: Option<u32>,
    /// Frames per device buffer. Default: the device's (256 on the null device).
    #[arg(long, value_name = "FRAMES", value_parser = clap::value_parser!(u32).range(16..=65_536))]
    pub buffer: Option<u32>,
    /// Stop after this many seconds of audio (more than 0). Default (`play`): the demo's length
    /// with --demo; with a script, its last action plus two bars; with --playthrough or
    /// --arrangement, their length plus one bar; otherwise until Ctrl-C.
    #[arg(long, value_name = "S", allow_negative_numbers = true, value_parser = parse_seconds)]
    pub seconds: Option<f64>,
    /// Write every executed event as one JSON object per line (with `host_time`).
    #[arg(long, value_name = "LOG.jsonl")]
    pub log: Option<PathBuf>,
    /// Also write what is played to this WAV file (32-bit float, stereo). With Link, the host
    /// time of every block goes to OUT.timing.csv next to it.
    #[arg(long, value_name = "OUT.wav")]
    pub capture: Option<PathBuf>,
    /// Audio input, at the output's sample rate and buffer size: an input device's name or id as
    /// `devices` lists it, or the null input: `silence`, `file:PATH.wav` (the file as if played
    /// into the microphone), `loopback[:MS]` (the node's own output fed back after MS ms of input
    /// latency, default 5). A device that cannot be used is reported and the node plays on
    /// without input; a file that does not exist is refused (exit code 2). See docs/audio.md.
    #[arg(long = "input", value_name = "DEVICE", value_parser = parse_input)]
    pub audio_input: Option<crate::audio::input::InputSpec>,
    /// Record the input to this WAV file (32-bit float, stereo), aligned with the output: frame k
    /// is what the input heard while output frame k was at the speaker. Writes OUT.input.toml
    /// next to it.
    #[arg(long = "record-input", value_name = "FILE.wav")]
    pub record_input: Option<PathBuf>,
    /// Join the Ableton Link session on the network: tempo, beat and start/stop shared with the
    /// other Link apps (see docs/link.md). The default for `play`.
    #[arg(long, overrides_with = "no_link")]
    pub link: bool,
    /// Do not use Ableton Link (the default for `demo`): play on the node's own sample clock, as
    /// an offline render does.
    #[arg(long = "no-link", overrides_with = "link")]
    pub no_link: bool,
    /// With Link: start with the transport stopped, and play when the Link session starts (a peer
    /// presses play) or on a `play` command.
    #[arg(long)]
    pub stopped: bool,
    /// Read commands from standard input, one per line: `play`, `stop`, `tempo BPM`, `link on`,
    /// `link off`, `quit`.
    #[arg(long = "stdin-commands")]
    pub stdin_commands: bool,
    /// MIDI input of the controller (repeatable): a port name as `devices` lists it, or a unique
    /// part of it. Default: the mapping's `port`.
    #[arg(long = "midi-in", value_name = "NAME")]
    pub midi_in: Vec<String>,
    /// MIDI output for the controller's LEDs. Default: the output named like the first
    /// --midi-in, else the mapping's `port`.
    #[arg(long = "midi-out", value_name = "NAME")]
    pub midi_out: Option<String>,
    /// Controller mapping file (TOML, see docs/controllers.md): pads to clip slots, scene, stop
    /// and arm buttons, LED values.
    #[arg(long, value_name = "MAPPING.toml")]
    pub controller: Option<PathBuf>,
    /// MIDI backend: `system` (the default) or `fake` (an in-process controller with ports called
    /// `fake`, to see the LED feedback with no device).
    #[arg(long, value_name = "system|fake", value_parser = ["system", "fake"])]
    pub midi: Option<String>,
    /// Run the audio thread with realtime scheduling (SCHED_FIFO), the default: without it other
    /// programs can delay the audio. Where it is not permitted the node warns and plays on.
    #[arg(long, overrides_with = "no_realtime")]
    pub realtime: bool,
    /// Run the audio thread at normal priority (no realtime scheduling, no warning).
    #[arg(long = "no-realtime", overrides_with = "realtime")]
    pub no_realtime: bool,
    /// Open the launcher window, and fail (exit code 2) when there is no display. Default: open
    /// it when a display exists (DISPLAY or WAYLAND_DISPLAY set), else play on in the terminal.
    /// Keys: 1-9 launch scenes, arrows move the slot cursor, Enter launches (Shift: legato), S
    /// launches the cursor's scene, Backspace stops the track (Shift: all), Space starts/stops,
    /// +/- tempo (Shift: 10), Q cycles the quantisation, M/O mute/solo; Shift-click legato,
    /// Alt-click stop (docs/ui.md).
    #[arg(long, overrides_with = "no_ui")]
    pub ui: bool,
    /// Never open the launcher window.
    #[arg(long = "no-ui", overrides_with = "ui")]
    pub no_ui: bool,
    /// Test hook: the window's thread stalls for this many milliseconds once, early on (the
    /// performance must not notice).
    #[arg(long = "ui-stall-ms", value_name = "MS", hide = true)]
    pub ui_stall_ms: Option<u64>,
}

impl LiveArgs {
    /// `link_by_default`: whether Link is on when neither --link nor --no-link is given (`play`
    /// joins the LAN's Link session by default; the solo `demo` does not).
    fn options(self, input: InputArgs, link_by_default: bool) -> anyhow::Result<PlayOptions> {
        if let (Some(rec), None) = (&self.record_input, &self.audio_input) {
            return Err(BadInput(format!(
                "--record-input {} records the audio input, and there is none: add --input DEVICE \
                 (a device as `devices` lists it, or silence, file:PATH.wav or loopback[:MS])",
                rec.display()
            ))
            .into());
        }
        if let Some(crate::audio::input::InputSpec::File(path)) = &self.audio_input
            && !path.is_file()
        {
            return Err(BadInput(format!(
                "--input file:{}: there is no such file (the null input plays a WAV file that exists)",
                path.display()
            ))
            .into());
        }
        let backend = match self.audio.as_deref() {
            Some(name) if name.eq_ignore_ascii_case("null") => Backend::Null,
            Some(name) => Backend::Device(Some(name.to_string())),
            None => Backend::Device(None),
        };
        Ok(PlayOptions {
            input,
            backend,
            sample_rate: self.sample_rate,
            buffer: self.buffer,
            seconds: self.seconds,
            log: self.log,
            capture: self.capture,
            audio_input: self.audio_input,
            record_input: self.record_input,
            link: crate::link::LinkOptions {
                enabled: if self.no_link { false } else { self.link || link_by_default },
                stopped: self.stopped,
                stdin_commands: self.stdin_commands,
                join: true,
            },
            midi: MidiOptions {
                system: if self.midi.as_deref() == Some("fake") { MidiSystem::Fake } else { MidiSystem::System },
                inputs: self.midi_in,
                output: self.midi_out,
                controller: self.controller,
            },
            realtime: !self.no_realtime,
            band: None,
            window: crate::ui_link::WindowOptions {
                mode: match (self.ui, self.no_ui) {
                    (true, _) => crate::ui_link::UiMode::On,
                    (_, true) => crate::ui_link::UiMode::Off,
                    _ => crate::ui_link::UiMode::Auto,
                },
                stall: self.ui_stall_ms.map(std::time::Duration::from_millis),
                link: None,
            },
        })
    }
}

/// `play` options.
#[derive(Debug, Args)]
pub struct PlayArgs {
    /// What to play.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Playing in a band with a conductor.
    #[command(flatten)]
    pub band: BandArgs,
    /// How to play it.
    #[command(flatten)]
    pub live: LiveArgs,
}

impl PlayArgs {
    /// The options [`crate::play::run`] takes.
    pub fn into_options(self) -> anyhow::Result<PlayOptions> {
        let input = self.source.input();
        let band = self.band.options()?;
        // A band node follows the conductor's timeline, not Link (bridging it into Link is not
        // built yet): Link stays off unless asked for, which is refused.
        if band.is_some() && self.live.link {
            return Err(BadInput(
                "--conductor follows the conductor's timeline; playing it through Link (--link) is not built yet: \
                 drop --link"
                    .into(),
            )
            .into());
        }
        let mut o = self.live.options(input, band.is_none())?;
        o.band = band;
        Ok(o)
    }
}

/// `play --conductor`: join a band.
#[derive(Debug, Args)]
pub struct BandArgs {
    /// Join the band of the conductor that printed this join code: the set comes from the
    /// conductor (no SESSION), every press goes through it, and the node plays its own tracks
    /// on the band's beat (see docs/conductor.md).
    #[arg(long, value_name = "CODE", conflicts_with_all = ["session", "demo", "script", "seed", "playthrough", "arrangement"])]
    pub conductor: Option<String>,
    /// This node's name in the band (unique; tracks with `node = "NAME"` are this node's).
    /// Default: the host name.
    #[arg(long, value_name = "NAME", requires = "conductor")]
    pub name: Option<String>,
    /// The tracks this node plays, comma-separated (default: the set's `node = "NAME"` tracks,
    /// or every track when the set names no node).
    #[arg(long, value_name = "A,B", value_delimiter = ',', requires = "conductor")]
    pub tracks: Option<Vec<String>>,
    /// Where the set's files are cached (default: $XDG_CACHE_HOME/loophole, else
    /// ~/.cache/loophole).
    #[arg(long, value_name = "DIR", requires = "conductor")]
    pub cache: Option<PathBuf>,
}

impl BandArgs {
    fn options(&self) -> anyhow::Result<Option<crate::band::BandOptions>> {
        let Some(code) = &self.conductor else { return Ok(None) };
        let name = match &self.name {
            Some(n) if n.trim().is_empty() => return Err(BadInput("--name: give a non-empty name".into()).into()),
            Some(n) => n.trim().to_string(),
            None => host_name(),
        };
        let cache = self.cache.clone().unwrap_or_else(default_cache);
        Ok(Some(crate::band::BandOptions {
            code: code.trim().to_string(),
            name,
            tracks: self.tracks.clone(),
            cache,
            connect_timeout: std::time::Duration::from_secs(10),
        }))
    }
}

/// The machine's host name (`node` if it has none).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "node".to_string())
}

/// `$XDG_CACHE_HOME/loophole`, else `~/.cache/loophole`, else `./loophole-cache`.
fn default_cache() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("loophole");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("loophole"),
        None => PathBuf::from("loophole-cache"),
    }
}

/// `demo` options: `play --demo` with the demo's performance script.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Performance script to use instead of the demo's own.
    #[arg(long, value_name = "PERF.toml")]
    pub script: Option<PathBuf>,
    /// Overrides the demo session's seed.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Memory budget for decoded audio in MiB: clips beyond it stream from disk.
    #[arg(long, value_name = "MB")]
    pub memory_budget: Option<f64>,
    /// How to play it.
    #[command(flatten)]
    pub live: LiveArgs,
}

impl DemoArgs {
    /// The options [`crate::play::run`] takes.
    pub fn into_options(self) -> anyhow::Result<PlayOptions> {
        let input = InputArgs {
            source: Source::Demo,
            script: self.script,
            seed: self.seed,
            preview: None,
            memory_budget_mb: self.memory_budget,
            decode_threads: None,
        };
        // The demo starts at once and joins a Link session whenever one shows up.
        let mut o = self.live.options(input, false)?;
        o.link.join = o.link.stopped;
        Ok(o)
    }
}

fn parse_input(s: &str) -> Result<crate::audio::input::InputSpec, String> {
    crate::audio::input::InputSpec::parse(s)
}

/// `--sample-rate`: a whole number of Hz the engine runs at
/// ([`loophole_engine::MIN_ENGINE_SAMPLE_RATE`]`..=`[`loophole_engine::MAX_ENGINE_SAMPLE_RATE`]).
/// clap reports a refusal as a usage error: exit code 2, like [`BadInput`].
fn parse_sample_rate(s: &str) -> Result<u32, String> {
    use loophole_engine::{MAX_ENGINE_SAMPLE_RATE as MAX, MIN_ENGINE_SAMPLE_RATE as MIN};
    let rate: u32 = s.trim().parse().map_err(|_| format!("give a whole number of Hz from {MIN} to {MAX}"))?;
    if !(MIN..=MAX).contains(&rate) {
        return Err(format!("{rate} Hz is not supported: the engine runs at {MIN} to {MAX} Hz"));
    }
    Ok(rate)
}

/// `--seconds`: a finite number of seconds above 0 (0 would write an empty file or play
/// nothing). Negative numbers reach this parser (`allow_negative_numbers`), so `-1` gets this
/// range message rather than clap's hint about `--`. clap reports a refusal as a usage error:
/// exit code 2, like [`BadInput`].
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let seconds: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number of seconds; give more than 0"))?;
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{s} s is out of range: give a length of more than 0 seconds"));
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn render_needs_a_session_or_demo_but_not_both() {
        assert!(Cli::try_parse_from(["loophole-node", "render", "--out", "x.wav"]).is_err());
        assert!(Cli::try_parse_from(["loophole-node", "render", "s.toml", "--demo", "--out", "x.wav"]).is_err());
        let cli = Cli::try_parse_from(["loophole-node", "render", "--demo", "--out", "x.wav"]).unwrap();
        let Command::Render(args) = cli.command else { panic!("not render") };
        let o = args.into_options().unwrap();
        assert_eq!(o.block, 256);
        assert_eq!(o.sample_rate, 48_000);
        assert!(matches!(o.input.source, Source::Demo));
    }

    #[test]
    fn audio_null_selects_the_null_device() {
        let cli = Cli::try_parse_from(["loophole-node", "demo", "--audio", "null"]).unwrap();
        let Command::Demo(args) = cli.command else { panic!("not demo") };
        assert!(matches!(args.into_options().unwrap().backend, Backend::Null));
        let cli = Cli::try_parse_from(["loophole-node", "play", "s.toml", "--audio", "hw:0"]).unwrap();
        let Command::Play(args) = cli.command else { panic!("not play") };
        assert!(matches!(args.into_options().unwrap().backend, Backend::Device(Some(n)) if n == "hw:0"));
    }

    #[test]
    fn midi_options_are_parsed() {
        let cli = Cli::try_parse_from([
            "loophole-node",
            "demo",
            "--midi-in",
            "pads",
            "--midi-in",
            "keys",
            "--midi-out",
            "pads",
            "--controller",
            "lp.toml",
        ])
        .unwrap();
        let Command::Demo(args) = cli.command else { panic!("not demo") };
        let midi = args.into_options().unwrap().midi;
        assert_eq!(midi.inputs, ["pads", "keys"]);
        assert_eq!((midi.output.as_deref(), midi.system), (Some("pads"), MidiSystem::System));
        assert_eq!(midi.controller, Some(PathBuf::from("lp.toml")));
        let cli = Cli::try_parse_from(["loophole-node", "play", "--demo", "--midi", "fake"]).unwrap();
        let Command::Play(args) = cli.command else { panic!("not play") };
        assert_eq!(args.into_options().unwrap().midi.system, MidiSystem::Fake);
        assert!(Cli::try_parse_from(["loophole-node", "demo", "--midi", "jack"]).is_err());
    }

    #[test]
    fn the_window_opens_where_a_display_is_unless_ui_or_no_ui_says_otherwise_and_the_last_flag_wins() {
        use crate::ui_link::UiMode;
        let window = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            match cli.command {
                Command::Play(a) => a.into_options().unwrap().window,
                Command::Demo(a) => a.into_options().unwrap().window,
                _ => panic!("not live"),
            }
        };
        assert_eq!(window(&["loophole-node", "demo"]).mode, UiMode::Auto);
        assert_eq!(window(&["loophole-node", "play", "--demo", "--ui"]).mode, UiMode::On);
        assert_eq!(window(&["loophole-node", "demo", "--no-ui"]).mode, UiMode::Off);
        assert_eq!(window(&["loophole-node", "demo", "--ui", "--no-ui"]).mode, UiMode::Off);
        assert_eq!(window(&["loophole-node", "demo", "--no-ui", "--ui"]).mode, UiMode::On);
        let w = window(&["loophole-node", "demo", "--ui-stall-ms", "500"]);
        assert_eq!(w.stall, Some(std::time::Duration::from_millis(500)));
        assert!(w.link.is_none());
    }

    #[test]
    fn link_is_on_for_play_off_for_demo_and_the_last_flag_wins() {
        let link = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            match cli.command {
                Command::Play(a) => a.into_options().unwrap().link,
                Command::Demo(a) => a.into_options().unwrap().link,
                _ => panic!("not live"),
            }
        };
        assert!(!link(&["loophole-node", "demo"]).enabled);
        assert!(link(&["loophole-node", "play", "--demo"]).enabled, "play joins Link by default");
        assert!(!link(&["loophole-node", "play", "--demo", "--no-link"]).enabled);
        assert!(link(&["loophole-node", "play", "--demo", "--link"]).enabled);
        assert!(!link(&["loophole-node", "play", "--demo", "--link", "--no-link"]).enabled);
        assert!(link(&["loophole-node", "demo", "--no-link", "--link"]).enabled);
        let o = link(&["loophole-node", "demo", "--link", "--stopped", "--stdin-commands"]);
        assert!(o.enabled && o.stopped && o.stdin_commands);
    }

    #[test]
    fn input_options_are_parsed() {
        use crate::audio::input::InputSpec;
        let cli = Cli::try_parse_from(["loophole-node", "demo", "--input", "loopback:7", "--record-input", "in.wav"])
            .unwrap();
        let Command::Demo(args) = cli.command else { panic!("not demo") };
        let o = args.into_options().unwrap();
        assert_eq!(o.audio_input, Some(InputSpec::Loopback { latency_ms: 7.0 }));
        assert_eq!(o.record_input, Some(PathBuf::from("in.wav")));
        let Command::Demo(args) =
            Cli::try_parse_from(["loophole-node", "demo", "--record-input", "in.wav"]).unwrap().command
        else {
            panic!("not demo")
        };
        let err = args.into_options().unwrap_err();
        assert_eq!(crate::exit_code(&err), 2);
        assert!(err.to_string().contains("--record-input in.wav") && err.to_string().contains("add --input"), "{err}");
        assert!(Cli::try_parse_from(["loophole-node", "demo", "--input", "loopback:fast"]).is_err());
    }

    #[test]
    fn seconds_of_zero_or_less_are_a_range_error_on_every_command() {
        for bad in ["-1", "0", "-0.5", "nan", "inf", "soon"] {
            for cmd in [
                &["loophole-node", "render", "--demo", "--out", "x.wav", "--seconds", bad][..],
                &["loophole-node", "play", "--demo", "--seconds", bad],
                &["loophole-node", "demo", "--seconds", bad],
                &["loophole-node", "arrange", "s.toml", "--script", "p.toml", "--seconds", bad],
            ] {
                let e = Cli::try_parse_from(cmd).expect_err(bad);
                let msg = e.to_string();
                assert_eq!(e.exit_code(), 2, "{cmd:?}: {msg}");
                assert!(msg.contains("--seconds") && msg.contains("more than 0"), "{cmd:?}: {msg}");
                assert!(!msg.contains("use '--"), "clap's hint about `--` instead of the range: {msg}");
            }
        }
        let Command::Render(a) =
            Cli::try_parse_from(["loophole-node", "render", "--demo", "--out", "x.wav", "--seconds", "0.25"])
                .unwrap()
                .command
        else {
            panic!("not render")
        };
        assert_eq!(a.seconds, Some(0.25));
    }

    #[test]
    fn help_says_what_each_command_takes() {
        use clap::CommandFactory;
        let help = |name: &str| {
            let mut cmd = Cli::command();
            cmd.find_subcommand_mut(name).expect(name).render_help().to_string()
        };
        let demo = help("demo");
        assert!(!demo.contains("--playthrough") && !demo.contains("--arrangement"), "{demo}");
        assert!(demo.contains("the demo's length"), "{demo}");
        let devices = Cli::command().find_subcommand("devices").unwrap().get_about().unwrap().to_string();
        assert!(devices.contains("output") && devices.contains("input") && devices.contains("MIDI"), "{devices}");
        let arrange = help("arrange");
        assert_eq!(arrange.matches("default: 0").count() + arrange.matches("default 0").count(), 1, "{arrange}");
    }

    #[test]
    fn sample_rates_outside_the_engines_range_are_refused() {
        let rate = |args: &[&str]| Cli::try_parse_from(args).map_err(|e| (e.exit_code(), e.to_string()));
        for sr in ["1", "7999", "384001", "0", "48k"] {
            for cmd in [
                &["loophole-node", "render", "--demo", "--out", "x.wav", "--sample-rate", sr][..],
                &["loophole-node", "play", "--demo", "--sample-rate", sr],
                &["loophole-node", "demo", "--sample-rate", sr],
            ] {
                let (code, msg) = rate(cmd).expect_err(sr);
                assert_eq!(code, 2, "{cmd:?}: {msg}");
                assert!(msg.contains("--sample-rate") && msg.contains("8000 to 384000"), "{cmd:?}: {msg}");
            }
        }
        for sr in ["8000", "384000"] {
            let Command::Render(a) =
                rate(&["loophole-node", "render", "--demo", "--out", "x.wav", "--sample-rate", sr]).unwrap().command
            else {
                panic!("not render")
            };
            assert_eq!(a.sample_rate.to_string(), sr);
            let Command::Demo(a) = rate(&["loophole-node", "demo", "--sample-rate", sr]).unwrap().command else {
                panic!("not demo")
            };
            assert_eq!(a.live.sample_rate.map(|r| r.to_string()).as_deref(), Some(sr));
        }
    }

    #[test]
    fn decode_threads_are_passed_to_the_loader_and_zero_is_refused() {
        let Command::Render(a) =
            Cli::try_parse_from(["loophole-node", "render", "s.toml", "--out", "x.wav", "--decode-threads", "1"])
                .unwrap()
                .command
        else {
            panic!("not render")
        };
        assert_eq!(a.into_options().unwrap().input.decode_threads, Some(1));
        let Command::Play(a) = Cli::try_parse_from(["loophole-node", "play", "s.toml"]).unwrap().command else {
            panic!("not play")
        };
        assert_eq!(a.into_options().unwrap().input.decode_threads, None, "default: one per core");
        let e = Cli::try_parse_from(["loophole-node", "render", "s.toml", "--out", "x.wav", "--decode-threads", "0"])
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn realtime_is_on_unless_no_realtime_is_the_last_word() {
        let realtime = |args: &[&str]| {
            let Command::Demo(a) = Cli::try_parse_from(args).unwrap().command else { panic!("not demo") };
            a.into_options().unwrap().realtime
        };
        assert!(realtime(&["loophole-node", "demo"]));
        assert!(!realtime(&["loophole-node", "demo", "--no-realtime"]));
        assert!(realtime(&["loophole-node", "demo", "--no-realtime", "--realtime"]));
    }
}
