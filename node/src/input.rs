//! What to perform: a session (from a file or the built-in demo), a performance script, and the
//! default length of the performance.
//!
//! Thread: Main thread, before playback; reads files.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use loophole_engine::demo;
use loophole_engine::files::session::{LoadOptions, load_session_with};
use loophole_engine::model::{SceneId, Session};
use loophole_engine::pulse::Action;
use loophole_engine::script::{Script, ScriptAction, arrangement_length, playthrough_length};
use loophole_engine::time::Beats;

use crate::BadInput;

/// Where the session comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A session file (TOML).
    File(PathBuf),
    /// The built-in demo session, performed by the demo script unless another is given.
    Demo,
}

/// What the command line asked to perform.
#[derive(Debug, Clone, PartialEq)]
pub struct InputArgs {
    /// The session.
    pub source: Source,
    /// A performance script; `None` means the demo's own script with [`Source::Demo`], no script
    /// otherwise.
    pub script: Option<PathBuf>,
    /// Overrides the session's seed.
    pub seed: Option<u64>,
    /// Perform the session's own scenes or arrangement instead of a script.
    pub preview: Option<Preview>,
    /// Overrides the session's memory budget for decoded audio (MiB).
    pub memory_budget_mb: Option<f64>,
    /// Threads that decode the session's audio files (`--decode-threads`); `None`: one per core.
    pub decode_threads: Option<usize>,
}

/// A performance made from the session itself instead of a script (`--playthrough`,
/// `--arrangement`).
#[derive(Debug, Clone, PartialEq)]
pub enum Preview {
    /// A scene playthrough: every scene from `from` to `to` (ids; default: the first and the last)
    /// in order, each for its length, from beat 0.
    Playthrough {
        /// First scene.
        from: Option<String>,
        /// Last scene.
        to: Option<String>,
    },
    /// The arrangement, from beat 0.
    Arrangement,
}

/// A loaded performance: the session (seed applied) and the script that performs it.
#[derive(Debug, Clone)]
pub struct Performance {
    /// The session.
    pub session: Arc<Session>,
    /// Timed actions, sorted by beat.
    pub script: Script,
    /// The natural length in seconds: the demo's length with the demo script; the last scripted
    /// action plus two bars with a script file; a preview's length plus one bar; `None` without
    /// a script.
    pub natural_seconds: Option<f64>,
}

impl Performance {
    /// Loads the session and script. A file that does not load fails with the engine's
    /// `SessionError` / `ScriptError` (file:line: problem) in the error chain.
    ///
    /// Thread: control. Not realtime-safe.
    pub fn load(args: &InputArgs) -> anyhow::Result<Performance> {
        Performance::load_with(args, false)
    }

    /// [`Performance::load`] for an offline render: audio files of 32-bit float mono or stereo
    /// samples are only probed, and the render maps them and reads them in place instead of
    /// decoding them into memory (`LoadOptions::map_audio`; the same samples, bit for bit). A live
    /// engine would decode them when it is built, but live playback loads with
    /// [`Performance::load`].
    pub fn load_for_render(args: &InputArgs) -> anyhow::Result<Performance> {
        Performance::load_with(args, true)
    }

    fn load_with(args: &InputArgs, map_audio: bool) -> anyhow::Result<Performance> {
        if let Some(mb) = args.memory_budget_mb
            && !(mb.is_finite() && mb >= 0.0)
        {
            return Err(crate::BadInput(format!("--memory-budget {mb}: give 0 MiB or more")).into());
        }
        // Under a budget the loader only probes the audio files; `streaming::prepare` decodes them
        // once the engine's rate is known.
        let options =
            LoadOptions { memory_budget_mb: args.memory_budget_mb, map_audio, decode_threads: args.decode_threads };
        let mut session = match &args.source {
            Source::File(path) => load_session_with(path, options).context("cannot load the session")?,
            Source::Demo => demo::session(),
        };
        if let Some(seed) = args.seed {
            session.seed = seed;
        }
        if let Some(mb) = args.memory_budget_mb {
            session.streaming.memory_budget_mb = Some(mb);
        }
        let (script, natural_seconds) = match (&args.script, &args.source) {
            _ if let Some(preview) = &args.preview => preview_script(preview, &session)?,
            (Some(path), _) => {
                let script = Script::load(path, &session).context("cannot load the performance script")?;
                let seconds = script_seconds(&script, &session);
                (script, seconds)
            }
            (None, Source::Demo) => (demo::script(), Some(demo::SECONDS)),
            (None, Source::File(_)) => match session.autoplay {
                // The set plays by itself: its autoplay playlist from beat 0, for one pass plus
                // a bar (a looping one until --seconds or Ctrl-C; a render's 30 s).
                Some(playlist) => {
                    let action = Action::Playlist { playlist, step: 0, quantise: None };
                    let script = Script { actions: vec![ScriptAction { beat: Beats(0.0), action }] };
                    let looping = session.playlists.get(playlist).is_some_and(|p| p.looping);
                    let length = loophole_engine::script::playlist_length(&session, playlist, 0);
                    (script, (!looping).then_some(length.seconds + length.bar_seconds))
                }
                None => (Script::empty(), None),
            },
        };
        Ok(Performance { session: Arc::new(session), script, natural_seconds })
    }

    /// The warning for script actions a performance cut short at `end_beat` (by `--seconds`)
    /// never reached: how many, and the first one's beat. `None` if every action was reached.
    pub fn unplayed_script_warning(&self, end_beat: f64) -> Option<String> {
        let late: Vec<f64> = self.script.actions.iter().map(|a| a.beat.0).filter(|&b| b >= end_beat).collect();
        let first = late.iter().copied().fold(f64::INFINITY, f64::min);
        (!late.is_empty()).then(|| {
            format!(
                "{} script action(s) after the end at beat {end_beat:.2} (--seconds) did not play, the first at beat {first}; \
                 give a longer --seconds, or leave it out to play the whole script",
                late.len()
            )
        })
    }

    /// A short name for files made for this session: lower case, `-` between words, without a
    /// leading `loophole` (the demo, "Loophole demo", is `demo`).
    pub fn file_stem(&self) -> String {
        file_stem(&self.session.name)
    }

    /// What to say when nothing in this performance launches a clip by itself (no script and no
    /// preview): how to launch something. `None` when something will play. `live` is how the
    /// performer can launch things during `play` (`None` for a render).
    pub fn launch_hint(&self, live: Option<LiveInputs>) -> Option<String> {
        if !self.script.actions.is_empty() {
            return None;
        }
        let scene = self.session.scenes.first().map_or("SCENE", |s| s.id.as_str());
        Some(match live {
            None => "nothing launches a clip in this render, so it will be silent: add --script PERF.toml, \
                 --playthrough (every scene in turn) or --arrangement"
                .to_string(),
            Some(LiveInputs { stdin: true, .. }) => {
                format!("nothing plays until you launch it: type `scene.trigger {scene}` (or `help`) and Enter")
            }
            Some(LiveInputs { controller: true, .. }) => "nothing plays until you launch it from the controller".into(),
            Some(_) => format!(
                "nothing in this performance launches a clip, so it will be silent: add --stdin-commands and type \
                 `scene.trigger {scene}`, or --script PERF.toml, --playthrough, --arrangement or --controller MAPPING.toml"
            ),
        })
    }
}

/// How a performer can launch things during `play` ([`Performance::launch_hint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveInputs {
    /// `--stdin-commands`.
    pub stdin: bool,
    /// `--controller`.
    pub controller: bool,
}

/// The length of a scripted performance: its last action's beat plus two bars, at the session's
/// tempo. `None` for an empty script.
pub fn script_seconds(script: &Script, session: &Session) -> Option<f64> {
    let last =
        script.actions.iter().map(|a| a.beat.0).fold(None, |m: Option<f64>, b| Some(m.map_or(b, |m| m.max(b))))?;
    let beats = last.max(0.0) + 2.0 * session.beats_per_bar;
    Some(beats * 60.0 / session.tempo.0)
}

/// The script of a preview (a single action at beat 0) and its length: the scenes' (or the
/// arrangement's) length plus one bar, through every tempo change on the way.
pub fn preview_script(preview: &Preview, session: &Session) -> anyhow::Result<(Script, Option<f64>)> {
    let (action, length) = match preview {
        Preview::Playthrough { from, to } => {
            if session.scenes.is_empty() {
                return Err(BadInput("--playthrough: the session has no scenes".into()).into());
            }
            let scene = |flag: &str, name: &Option<String>, default: u32| match name {
                None => Ok(SceneId(default)),
                Some(n) => session.scene_by_name(n.trim()).ok_or_else(|| {
                    let known: Vec<&str> = session.scenes.iter().map(|s| s.id.as_str()).collect();
                    BadInput(format!("{flag}: scene '{n}' does not exist (scenes: {})", known.join(", ")))
                }),
            };
            let from = scene("--from", from, 0)?;
            let to = scene("--to", to, session.scenes.len() as u32 - 1)?;
            if to < from {
                return Err(BadInput(format!(
                    "--to: scene '{}' comes before scene '{}'; a playthrough goes forwards",
                    session.scene(to).id,
                    session.scene(from).id
                ))
                .into());
            }
            (Action::Playthrough { from, to, quantise: None }, playthrough_length(session, from, to))
        }
        Preview::Arrangement => {
            if session.arrangement.clips.is_empty() {
                return Err(BadInput(
                    "--arrangement: the session has no arrangement (add [[arrangement.clip]] entries)".into(),
                )
                .into());
            }
            (Action::PlayArrangement, arrangement_length(session))
        }
    };
    let script = Script { actions: vec![ScriptAction { beat: Beats(0.0), action }] };
    Ok((script, Some(length.seconds + length.bar_seconds)))
}

/// See [`Performance::file_stem`].
pub fn file_stem(name: &str) -> String {
    let mut stem = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() {
            stem.extend(c.to_lowercase());
        } else if !stem.is_empty() && !stem.ends_with('-') {
            stem.push('-');
        }
    }
    while stem.ends_with('-') {
        stem.pop();
    }
    let stem = stem.strip_prefix("loophole-").map(str::to_string).unwrap_or(stem);
    if stem.is_empty() || stem == "loophole" { "session".to_string() } else { stem }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loophole_engine::pulse::{Action, StopMode};
    use loophole_engine::script::ScriptAction;
    use loophole_engine::time::{Beats, Bpm};

    #[test]
    fn file_stems_are_tidy() {
        assert_eq!(file_stem("Loophole demo"), "demo");
        assert_eq!(file_stem("My Set: Live!"), "my-set-live");
        assert_eq!(file_stem("  "), "session");
        assert_eq!(file_stem("loophole"), "session");
    }

    #[test]
    fn a_script_lasts_until_two_bars_after_its_last_action() {
        let session = Session::new("s", Bpm(120.0));
        let stop = Action::StopAll { mode: StopMode::Immediate };
        let script = Script {
            actions: vec![
                ScriptAction { beat: Beats(0.0), action: stop },
                ScriptAction { beat: Beats(16.0), action: stop },
            ],
        };
        // 16 beats + 2 bars of 4 = 24 beats at 120 BPM = 12 s.
        assert_eq!(script_seconds(&script, &session), Some(12.0));
        assert_eq!(script_seconds(&Script::empty(), &session), None);
    }
}

/// What to perform: a session file or the demo, and a performance script.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Session file (TOML).
    #[arg(value_name = "SESSION", required_unless_present = "demo", conflicts_with = "demo")]
    pub session: Option<PathBuf>,
    /// Use the built-in demo session and its performance script.
    #[arg(long)]
    pub demo: bool,
    /// Performance script (timed actions, TOML). Replaces the demo's script with `--demo`.
    #[arg(long, value_name = "PERF.toml")]
    pub script: Option<PathBuf>,
    /// Overrides the session's seed (follow-action choices).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Instead of a script, play every scene in order (a scene playthrough preview), each for its
    /// length; default length: the scenes' plus one bar.
    #[arg(long, conflicts_with_all = ["script", "arrangement"])]
    pub playthrough: bool,
    /// With --playthrough: the first scene to play (default: the first).
    #[arg(long, value_name = "SCENE", requires = "playthrough")]
    pub from: Option<String>,
    /// With --playthrough: the last scene to play (default: the last).
    #[arg(long, value_name = "SCENE", requires = "playthrough")]
    pub to: Option<String>,
    /// Instead of a script, play the session's arrangement from beat 0; default length: to its
    /// end plus one bar.
    #[arg(long, conflicts_with = "script")]
    pub arrangement: bool,
    /// Memory budget for decoded audio in MiB (overrides the session's `memory_budget_mb`):
    /// clips beyond it stream from disk.
    #[arg(long, value_name = "MB")]
    pub memory_budget: Option<f64>,
    /// Threads that decode the session's audio files while it loads. Default: one per core the
    /// node may run on (so `taskset -c 0` gives one). 1 decodes on the main thread.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub decode_threads: Option<u16>,
}

impl SourceArgs {
    /// What to perform, as the input layer takes it.
    pub fn input(&self) -> InputArgs {
        InputArgs {
            source: match &self.session {
                Some(p) if !self.demo => Source::File(p.clone()),
                _ => Source::Demo,
            },
            script: self.script.clone(),
            seed: self.seed,
            memory_budget_mb: self.memory_budget,
            decode_threads: self.decode_threads.map(usize::from),
            preview: if self.playthrough {
                Some(Preview::Playthrough { from: self.from.clone(), to: self.to.clone() })
            } else if self.arrangement {
                Some(Preview::Arrangement)
            } else {
                None
            },
        }
    }
}
