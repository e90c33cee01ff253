//! What to perform: a session (from a file or the built-in demo), a performance script, and the
//! default length of the performance.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use loophole_engine::demo;
use loophole_engine::model::Session;
use loophole_engine::script::Script;
use loophole_engine::session_file::load_session;

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
}

/// A loaded performance: the session (seed applied) and the script that performs it.
#[derive(Debug, Clone)]
pub struct Performance {
    /// The session.
    pub session: Arc<Session>,
    /// Timed actions, sorted by beat.
    pub script: Script,
    /// The natural length in seconds: the demo's length with the demo script; the last scripted
    /// action plus two bars with a script file; `None` without a script.
    pub natural_seconds: Option<f64>,
}

impl Performance {
    /// Loads the session and script. A file that does not load fails with the engine's
    /// `SessionError` / `ScriptError` (file:line: problem) in the error chain.
    ///
    /// Thread: control. Not realtime-safe.
    pub fn load(args: &InputArgs) -> anyhow::Result<Performance> {
        let mut session = match &args.source {
            Source::File(path) => load_session(path).context("cannot load the session")?,
            Source::Demo => demo::session(),
        };
        if let Some(seed) = args.seed {
            session.seed = seed;
        }
        let (script, natural_seconds) = match (&args.script, &args.source) {
            (Some(path), _) => {
                let script = Script::load(path, &session).context("cannot load the performance script")?;
                let seconds = script_seconds(&script, &session);
                (script, seconds)
            }
            (None, Source::Demo) => (demo::script(), Some(demo::SECONDS)),
            (None, Source::File(_)) => (Script::empty(), None),
        };
        Ok(Performance { session: Arc::new(session), script, natural_seconds })
    }

    /// A short name for files made for this session: lower case, `-` between words, without a
    /// leading `loophole` (the demo, "Loophole demo", is `demo`).
    pub fn file_stem(&self) -> String {
        file_stem(&self.session.name)
    }
}

/// The length of a scripted performance: its last action's beat plus two bars, at the session's
/// tempo. `None` for an empty script.
pub fn script_seconds(script: &Script, session: &Session) -> Option<f64> {
    let last =
        script.actions.iter().map(|a| a.beat.0).fold(None, |m: Option<f64>, b| Some(m.map_or(b, |m| m.max(b))))?;
    let beats = last.max(0.0) + 2.0 * session.beats_per_bar;
    Some(beats * 60.0 / session.tempo.0)
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
