//! Performance scripts: timed actions (launch, release, scene, stop) for offline renders and
//! tests.
//!
//! A script is a TOML file of `[[at]]` entries, each with a `beat` and exactly one action:
//!
//! ```toml
//! [[at]]
//! beat = 0
//! launch = "beat-a"          # clip id; optional quantise = "...", velocity = 0.8
//!
//! [[at]]
//! beat = 16
//! scene = "verse"            # scene id; optional quantise
//!
//! [[at]]
//! beat = 30
//! stop = "drums"             # track id; optional mode, fade_beats
//!
//! [[at]]
//! beat = 64
//! stop_all = true
//! ```
//!
//! The beat is when the action is *performed* (the button is pressed); quantisation then decides
//! when it takes effect, exactly as for a live press. Ids are checked against the session, and
//! every problem is reported as `FILE:LINE:COLUMN: PROBLEM`. See `docs/session-format.md`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::model::Session;
use crate::pulse::{Action, StopMode};
use crate::session_file::{Location, TomlProblem, known_list, line_col, parse_toml};
use crate::time::{Beats, Quantise};

/// One action of a script, performed at a beat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScriptAction {
    /// When the action is performed (before quantisation), in beats from the start.
    pub beat: Beats,
    /// What is done.
    pub action: Action,
}

/// A performance script: actions sorted by beat (actions at the same beat keep file order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Script {
    /// The actions, sorted by beat (stable).
    pub actions: Vec<ScriptAction>,
}

/// A problem with a script file: where it is and what it is.
///
/// Displays as `FILE:LINE:COLUMN: PROBLEM` (or `FILE: PROBLEM` when it is not at one place).
#[derive(Debug, thiserror::Error)]
#[error("{}", Location { file: &self.file, line: self.line, column: self.column, what: &self.kind })]
pub struct ScriptError {
    /// The script file.
    pub file: PathBuf,
    /// 1-based line of the problem, when it is at one place in the file.
    pub line: Option<usize>,
    /// 1-based column (in characters), when it is at one place in the file.
    pub column: Option<usize>,
    /// What is wrong (boxed to keep `Result<_, ScriptError>` small).
    pub kind: Box<ScriptErrorKind>,
}

/// What is wrong with a script file. Each variant says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ScriptErrorKind {
    /// The script file could not be read. Check the path and its permissions.
    #[error("cannot read the script file: {0}")]
    Io(#[source] std::io::Error),
    /// The file is not valid TOML. Fix the text at the line and column given.
    #[error("TOML syntax error: {message}")]
    Syntax {
        /// The parser's description.
        message: String,
    },
    /// Valid TOML that does not fit the script format: an unknown key (often a typo), a value
    /// of the wrong type or a missing `beat`. See `docs/session-format.md`.
    #[error("{message}")]
    Schema {
        /// What is wrong, with the offending line quoted.
        message: String,
    },
    /// An entry has no action or more than one, or a setting that does not belong to its
    /// action. Give each `[[at]]` exactly one of launch, release, scene, stop, stop_all.
    #[error("{0}")]
    Action(String),
    /// A number outside its range (a negative beat, a velocity above 1, ...). Fix the value.
    #[error("{what} is {value}; it must be {expected}")]
    OutOfRange {
        /// The setting.
        what: String,
        /// The value found.
        value: String,
        /// The allowed range, in words.
        expected: String,
    },
    /// A quantisation string Loophole does not know. Use one of the spellings listed.
    #[error(
        "'{0}' is not a quantisation (use none, bar, 2-bars, 4-bars, beat, half-beat, 1/8, 1/16, 1/32, \
         1/8t, 1/16t, scene or global)"
    )]
    BadQuantise(String),
    /// A stop mode Loophole does not know. Use immediate, quantised, section-end or fade-out.
    #[error("'{0}' is not a stop mode (use immediate, quantised, section-end or fade-out)")]
    BadStopMode(String),
    /// A clip, track or scene id that the session does not define. Fix the spelling.
    #[error("{kind} '{id}' does not exist in the session ({kind}s: {known})")]
    UnknownId {
        /// `clip`, `track` or `scene`.
        kind: &'static str,
        /// The id found.
        id: String,
        /// The ids that exist.
        known: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    #[serde(default)]
    at: Vec<Spanned<RawAt>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAt {
    beat: Spanned<f64>,
    launch: Option<Spanned<String>>,
    release: Option<Spanned<String>>,
    scene: Option<Spanned<String>>,
    stop: Option<Spanned<String>>,
    stop_all: Option<Spanned<bool>>,
    quantise: Option<Spanned<String>>,
    velocity: Option<Spanned<f64>>,
    mode: Option<Spanned<String>>,
    fade_beats: Option<Spanned<f64>>,
}

/// Latest beat a script may act at (about 14 hours at 120 BPM).
pub const MAX_SCRIPT_BEAT: f64 = 100_000.0;

impl Script {
    /// A script that does nothing.
    pub fn empty() -> Script {
        Script { actions: Vec::new() }
    }

    /// Reads and parses a script file, checking its ids against `session`.
    pub fn load(path: &Path, session: &Session) -> Result<Script, ScriptError> {
        let err = |kind| ScriptError { file: path.to_path_buf(), line: None, column: None, kind: Box::new(kind) };
        let bytes = std::fs::read(path).map_err(|e| err(ScriptErrorKind::Io(e)))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            let (line, column) = line_col(&prefix, valid);
            ScriptError {
                file: path.to_path_buf(),
                line: Some(line),
                column: Some(column),
                kind: Box::new(ScriptErrorKind::Syntax {
                    message: "the file is not UTF-8 text (save it as UTF-8)".into(),
                }),
            }
        })?;
        Script::parse(&text, path, session)
    }

    /// Parses script text; `file` names it in error messages. Ids are checked against `session`.
    pub fn parse(text: &str, file: &Path, session: &Session) -> Result<Script, ScriptError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let ctx = Ctx { file, text, session };
        let raw: RawScript = parse_toml(text).map_err(|(span, problem)| {
            let kind = match problem {
                TomlProblem::Syntax(message) => ScriptErrorKind::Syntax { message },
                TomlProblem::Schema(message) => ScriptErrorKind::Schema { message },
            };
            match span {
                Some(span) => ctx.err(&span, kind),
                None => ScriptError { file: file.to_path_buf(), line: None, column: None, kind: Box::new(kind) },
            }
        })?;
        let mut actions = Vec::with_capacity(raw.at.len());
        for entry in &raw.at {
            actions.push(ctx.entry(&entry.span(), entry.get_ref())?);
        }
        actions.sort_by(|a: &ScriptAction, b: &ScriptAction| a.beat.0.total_cmp(&b.beat.0));
        Ok(Script { actions })
    }
}

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    session: &'a Session,
}

impl Ctx<'_> {
    fn err(&self, span: &Range<usize>, kind: ScriptErrorKind) -> ScriptError {
        let (line, column) = line_col(self.text, span.start);
        ScriptError { file: self.file.to_path_buf(), line: Some(line), column: Some(column), kind: Box::new(kind) }
    }

    fn line(&self, span: &Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }

    fn range(
        &self,
        v: &Spanned<f64>,
        what: &str,
        ok: impl FnOnce(f64) -> bool,
        expected: &str,
    ) -> Result<f64, ScriptError> {
        let x = *v.get_ref();
        if x.is_finite() && ok(x) {
            Ok(x)
        } else {
            Err(self.err(
                &v.span(),
                ScriptErrorKind::OutOfRange { what: what.into(), value: x.to_string(), expected: expected.into() },
            ))
        }
    }

    /// Parses a quantise override; `global` means no override.
    fn quantise(&self, q: Option<&Spanned<String>>) -> Result<Option<Quantise>, ScriptError> {
        let Some(q) = q else { return Ok(None) };
        match Quantise::parse(q.get_ref()) {
            Some(Quantise::Global) => Ok(None),
            Some(parsed) => Ok(Some(parsed)),
            None => Err(self.err(&q.span(), ScriptErrorKind::BadQuantise(q.get_ref().clone()))),
        }
    }

    fn stop_mode(&self, at: &RawAt) -> Result<StopMode, ScriptError> {
        let mode = match &at.mode {
            None => "quantised".to_string(),
            Some(m) => m.get_ref().trim().to_ascii_lowercase(),
        };
        let mode_span = at.mode.as_ref().map(|m| m.span());
        let mode = match mode.as_str() {
            "immediate" | "now" => StopMode::Immediate,
            "quantised" | "quantized" => StopMode::Quantised,
            "section-end" | "end" => StopMode::SectionEnd,
            "fade-out" | "fade" => {
                let beats = match &at.fade_beats {
                    None => self.session.beats_per_bar,
                    Some(f) => {
                        self.range(f, "fade_beats", |x| x > 0.0 && x <= 1024.0, "greater than 0 and at most 1024")?
                    }
                };
                StopMode::FadeOut(Beats(beats))
            }
            _ => {
                let span = mode_span.unwrap_or(0..0);
                return Err(self
                    .err(&span, ScriptErrorKind::BadStopMode(at.mode.as_ref().map_or(mode, |m| m.get_ref().clone()))));
            }
        };
        if let (Some(f), false) = (&at.fade_beats, matches!(mode, StopMode::FadeOut(_))) {
            return Err(
                self.err(&f.span(), ScriptErrorKind::Action("fade_beats only applies with mode = \"fade-out\"".into()))
            );
        }
        Ok(mode)
    }

    fn entry(&self, header: &Range<usize>, at: &RawAt) -> Result<ScriptAction, ScriptError> {
        let beat = self.range(
            &at.beat,
            "beat",
            |x| (0.0..=MAX_SCRIPT_BEAT).contains(&x),
            &format!("between 0 and {MAX_SCRIPT_BEAT}"),
        )?;

        // Exactly one action.
        let mut present: Vec<(&str, Range<usize>, Which<'_>)> = Vec::new();
        if let Some(v) = &at.launch {
            present.push(("launch", v.span(), Which::Launch(v)));
        }
        if let Some(v) = &at.release {
            present.push(("release", v.span(), Which::Release(v)));
        }
        if let Some(v) = &at.scene {
            present.push(("scene", v.span(), Which::Scene(v)));
        }
        if let Some(v) = &at.stop {
            present.push(("stop", v.span(), Which::Stop(v)));
        }
        if let Some(v) = &at.stop_all {
            present.push(("stop_all", v.span(), Which::StopAll(v)));
        }
        present.sort_by_key(|(_, span, _)| span.start);
        let (action_name, which) = match present.as_slice() {
            [] => {
                return Err(self.err(
                    header,
                    ScriptErrorKind::Action(
                        "this entry has no action; give one of launch, release, scene, stop or stop_all".into(),
                    ),
                ));
            }
            [(name, _, which)] => (*name, which),
            [(first, first_span, _), (second, second_span, _), ..] => {
                return Err(self.err(
                    second_span,
                    ScriptErrorKind::Action(format!(
                        "this entry has both `{first}` (line {}) and `{second}`; write one action per [[at]]",
                        self.line(first_span)
                    )),
                ));
            }
        };

        // Settings that belong to other actions.
        let allowed: &[&str] = match action_name {
            "launch" => &["quantise", "velocity"],
            "scene" => &["quantise"],
            "stop" | "stop_all" => &["mode", "fade_beats"],
            _ => &[],
        };
        for (name, span) in [
            ("quantise", at.quantise.as_ref().map(|v| v.span())),
            ("velocity", at.velocity.as_ref().map(|v| v.span())),
            ("mode", at.mode.as_ref().map(|v| v.span())),
            ("fade_beats", at.fade_beats.as_ref().map(|v| v.span())),
        ] {
            if let (Some(span), false) = (span, allowed.contains(&name)) {
                return Err(
                    self.err(&span, ScriptErrorKind::Action(format!("`{name}` does not apply to `{action_name}`")))
                );
            }
        }

        let session = self.session;
        let action = match *which {
            Which::Launch(clip) => {
                let velocity = match &at.velocity {
                    None => None,
                    Some(v) => Some(self.range(v, "velocity", |x| (0.0..=1.0).contains(&x), "between 0 and 1")?),
                };
                Action::Launch { clip: self.clip(clip)?, quantise: self.quantise(at.quantise.as_ref())?, velocity }
            }
            Which::Release(clip) => Action::Release { clip: self.clip(clip)? },
            Which::Scene(scene) => {
                let Some(id) = session.scene_by_name(scene.get_ref().trim()) else {
                    return Err(self.unknown(scene, "scene", session.scenes.iter().map(|s| s.id.as_str())));
                };
                Action::LaunchScene { scene: id, quantise: self.quantise(at.quantise.as_ref())? }
            }
            Which::Stop(track) => {
                let Some(id) = session.track_by_name(track.get_ref().trim()) else {
                    return Err(self.unknown(track, "track", session.tracks.iter().map(|t| t.id.as_str())));
                };
                Action::StopTrack { track: id, mode: self.stop_mode(at)? }
            }
            Which::StopAll(all) => {
                if !*all.get_ref() {
                    return Err(self.err(
                        &all.span(),
                        ScriptErrorKind::Action(
                            "stop_all = false does nothing; write stop_all = true or remove the entry".into(),
                        ),
                    ));
                }
                Action::StopAll { mode: self.stop_mode(at)? }
            }
        };
        Ok(ScriptAction { beat: Beats(beat), action })
    }

    fn clip(&self, name: &Spanned<String>) -> Result<crate::model::ClipId, ScriptError> {
        self.session
            .clip_by_name(name.get_ref().trim())
            .ok_or_else(|| self.unknown(name, "clip", self.session.clips.iter().map(|c| c.id.as_str())))
    }

    fn unknown<'s>(
        &self,
        name: &Spanned<String>,
        kind: &'static str,
        ids: impl Iterator<Item = &'s str>,
    ) -> ScriptError {
        self.err(&name.span(), ScriptErrorKind::UnknownId { kind, id: name.get_ref().clone(), known: known_list(ids) })
    }
}

/// The action key of an `[[at]]` entry.
#[derive(Clone, Copy)]
enum Which<'r> {
    Launch(&'r Spanned<String>),
    Release(&'r Spanned<String>),
    Scene(&'r Spanned<String>),
    Stop(&'r Spanned<String>),
    StopAll(&'r Spanned<bool>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClipId, SceneId, TrackId};
    use proptest::prelude::*;

    const FILE: &str = "scripts/show.toml";

    fn session() -> Session {
        let text = r#"
[session]
beats_per_bar = 3
[[track]]
id = "drums"
kind = "midi"
[[track]]
id = "lead"
kind = "midi"
[[clip]]
id = "beat"
track = "drums"
notes = [[0, 0.25, 36, 100]]
[[clip]]
id = "lead-gate"
track = "lead"
launch_mode = "gate"
notes = [[0, 0.25, 72, 100]]
[[scene]]
id = "verse"
clips = ["beat", "lead-gate"]
"#;
        crate::session_file::parse_session(text, Path::new("set.toml")).unwrap()
    }

    const VALID: &str = r#"[[at]]
beat = 8
release = "lead-gate"

[[at]]
beat = 0
launch = "beat"
quantise = "1/16"
velocity = 0.8

[[at]]
beat = 4
launch = "lead-gate"

[[at]]
beat = 8
scene = "verse"
quantise = "none"

[[at]]
beat = 30
stop = "drums"

[[at]]
beat = 31
stop = "lead"
mode = "fade-out"
fade_beats = 2.0

[[at]]
beat = 32
stop = "lead"
mode = "fade-out"

[[at]]
beat = 33
stop = "drums"
mode = "section-end"

[[at]]
beat = 64
stop_all = true
mode = "immediate"
"#;

    fn parse(text: &str) -> Result<Script, ScriptError> {
        Script::parse(text, Path::new(FILE), &session())
    }

    fn line_of(text: &str, needle: &str) -> usize {
        let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in text"));
        text[..at].matches('\n').count() + 1
    }

    /// `VALID` with `from` replaced by `to` fails on the line of `needle` with `phrase`.
    fn bad(from: &str, to: &str, needle: &str, phrase: &str) {
        assert!(VALID.contains(from), "{from:?} not in VALID");
        let text = VALID.replacen(from, to, 1);
        let line = line_of(&text, needle);
        let e = match parse(&text) {
            Ok(_) => panic!("expected an error containing {phrase:?}"),
            Err(e) => e,
        };
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("{FILE}:{line}:")), "wanted {FILE}:{line}: ..., got: {msg}");
        assert!(msg.contains(phrase), "wanted {phrase:?} in: {msg}");
        assert_eq!(e.line, Some(line));
    }

    #[test]
    fn valid_script_parses_sorted_by_beat() {
        let s = parse(VALID).unwrap();
        let got: Vec<(f64, Action)> = s.actions.iter().map(|a| (a.beat.0, a.action)).collect();
        assert_eq!(
            got,
            vec![
                (0.0, Action::Launch { clip: ClipId(0), quantise: Some(Quantise::Division(16)), velocity: Some(0.8) }),
                (4.0, Action::Launch { clip: ClipId(1), quantise: None, velocity: None }),
                // Equal beats keep file order: the release comes first in the file.
                (8.0, Action::Release { clip: ClipId(1) }),
                (8.0, Action::LaunchScene { scene: SceneId(0), quantise: Some(Quantise::None) }),
                (30.0, Action::StopTrack { track: TrackId(0), mode: StopMode::Quantised }),
                (31.0, Action::StopTrack { track: TrackId(1), mode: StopMode::FadeOut(Beats(2.0)) }),
                (32.0, Action::StopTrack { track: TrackId(1), mode: StopMode::FadeOut(Beats(3.0)) }),
                (33.0, Action::StopTrack { track: TrackId(0), mode: StopMode::SectionEnd }),
                (64.0, Action::StopAll { mode: StopMode::Immediate }),
            ]
        );
    }

    #[test]
    fn empty_and_loaded_scripts() {
        assert!(Script::empty().actions.is_empty());
        assert_eq!(parse("").unwrap(), Script::empty());
        let dir = std::env::temp_dir().join(format!("loophole-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.toml");
        std::fs::write(&path, VALID).unwrap();
        assert_eq!(Script::load(&path, &session()).unwrap(), parse(VALID).unwrap());
        let missing = dir.join("missing.toml");
        let e = Script::load(&missing, &session()).unwrap_err();
        assert!(matches!(*e.kind, ScriptErrorKind::Io(_)), "{e}");
        assert!(e.to_string().contains("missing.toml"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_ids_are_refused() {
        bad(
            "launch = \"beat\"",
            "launch = \"beet\"",
            "launch = \"beet\"",
            "clip 'beet' does not exist in the session (clips: beat, lead-gate)",
        );
        bad("release = \"lead-gate\"", "release = \"lead\"", "release = \"lead\"", "clip 'lead' does not exist");
        bad(
            "scene = \"verse\"",
            "scene = \"chorus\"",
            "scene = \"chorus\"",
            "scene 'chorus' does not exist in the session (scenes: verse)",
        );
        bad(
            "stop = \"drums\"",
            "stop = \"drum\"",
            "stop = \"drum\"",
            "track 'drum' does not exist in the session (tracks: drums, lead)",
        );
    }

    #[test]
    fn exactly_one_action_per_entry() {
        bad("beat = 4\nlaunch = \"lead-gate\"", "beat = 4", "[[at]]\nbeat = 4", "this entry has no action");
        bad(
            "launch = \"lead-gate\"",
            "launch = \"lead-gate\"\nstop = \"lead\"",
            "stop = \"lead\"\n",
            "has both `launch` (line 13) and `stop`",
        );
        bad("stop_all = true", "stop_all = false", "stop_all = false", "stop_all = false does nothing");
    }

    #[test]
    fn settings_must_fit_their_action() {
        bad(
            "stop = \"drums\"",
            "stop = \"drums\"\nvelocity = 1",
            "velocity = 1",
            "`velocity` does not apply to `stop`",
        );
        bad(
            "release = \"lead-gate\"",
            "release = \"lead-gate\"\nquantise = \"bar\"",
            "quantise = \"bar\"",
            "`quantise` does not apply to `release`",
        );
        bad(
            "mode = \"section-end\"",
            "mode = \"section-end\"\nfade_beats = 1",
            "fade_beats = 1",
            "fade_beats only applies with mode = \"fade-out\"",
        );
        bad(
            "scene = \"verse\"",
            "scene = \"verse\"\nmode = \"immediate\"",
            "mode = \"immediate\"",
            "`mode` does not apply to `scene`",
        );
    }

    #[test]
    fn bad_values() {
        bad("beat = 30", "beat = -1", "beat = -1", "beat is -1; it must be between 0 and");
        bad("beat = 30", "beat = inf", "beat = inf", "beat is inf");
        bad("beat = 30", "beat = \"soon\"", "beat = \"soon\"", "expected a number");
        bad("velocity = 0.8", "velocity = 1.5", "velocity = 1.5", "velocity is 1.5; it must be between 0 and 1");
        bad("quantise = \"1/16\"", "quantise = \"often\"", "quantise = \"often\"", "'often' is not a quantisation");
        bad("mode = \"immediate\"", "mode = \"soon\"", "mode = \"soon\"", "'soon' is not a stop mode");
        bad("fade_beats = 2.0", "fade_beats = 0", "fade_beats = 0", "fade_beats is 0");
        bad("beat = 64", "beet = 64", "beet = 64", "unknown field `beet`");
        bad("[[at]]\nbeat = 30", "[[at]]\nstop = \"drums\"\n[[at]]\nbeat = 30", "[[at]]\nstop", "missing field `beat`");
        bad("beat = 0", "beat = = 0", "beat = = 0", "TOML syntax error");
    }

    const FRAGMENTS: &[&str] = &[
        "\n[[at]]\nbeat = 1\n",
        "\nlaunch = \"beat\"\n",
        "\nstop_all = true\n",
        "\nmode = \"fade-out\"\n",
        "\nfade_beats = -1\n",
        "\nscene = \"x\"\n",
        "\nquantise = \"global\"\n",
        "\nvelocity = nan\n",
        "[",
        "\"",
        "=",
        "\n",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = parse(&text);
        }

        #[test]
        fn mutated_scripts_never_panic(
            edits in proptest::collection::vec((0usize..2000, 0usize..FRAGMENTS.len(), 0usize..30, any::<bool>()), 1..5)
        ) {
            let mut text = VALID.to_string();
            for (at, fragment, cut, insert) in edits {
                let at = at % (text.len() + 1);
                if insert {
                    text.insert_str(at, FRAGMENTS[fragment]);
                } else {
                    let end = (at + cut).min(text.len());
                    text.replace_range(at..end, "");
                }
            }
            match parse(&text) {
                Ok(script) => prop_assert!(script.actions.windows(2).all(|w| w[0].beat.0 <= w[1].beat.0)),
                Err(e) => prop_assert!(e.to_string().starts_with(FILE)),
            }
        }
    }
}
