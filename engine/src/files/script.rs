//! Performance script files: timed actions (launch, release, scene, stop, playlists, playthroughs, the
//! arrangement) for offline renders and tests.
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
//!
//! [[at]]
//! beat = 68
//! playlist = "song"          # playlist id; optional step = N (from 0), quantise
//! ```
//!
//! Also: `behaviour = "start" | "retrigger" | "legato" | "stop"` with `launch` (an
//! [`Action::Trigger`]), `mode = "full" | "partial" | "playlist" | "follow-action"` with `scene`
//! (an [`Action::Scene`]), `playthrough = true` (optional `from`, `to`, `quantise`),
//! `arrangement = "play"` and `back_to_arrangement = true` (optional `quantise`).
//!
//! The beat is when the action is *performed* (the button is pressed); quantisation then decides
//! when it takes effect, exactly as for a live press. Ids are checked against the session, and
//! every problem is reported as `FILE:LINE:COLUMN: PROBLEM`. See `docs/session-format.md`.
//!
//! Thread: Control thread; reads the file.

//!
//! Control thread; reads the file.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::files::diagnostics::{Location, TomlProblem, known_list, line_col, parse_toml};
use crate::model::{SceneId, Session};
use crate::pulse::{Action, Behaviour, ClipTrigger, SceneMode, SceneTrigger, StopMode};
use crate::script::{Script, ScriptAction};
use crate::time::{Beats, Quantise};

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
    /// action. Give each `[[at]]` exactly one of launch, release, scene, stop, stop_all,
    /// playlist, playthrough, arrangement, back_to_arrangement.
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
    /// A clip behaviour Loophole does not know. Use start, retrigger, legato or stop.
    #[error("'{0}' is not a clip behaviour (use start, retrigger, legato or stop)")]
    BadBehaviour(String),
    /// A scene launch mode Loophole does not know. Use full, partial, playlist or follow-action.
    #[error("'{0}' is not a scene mode (use full, partial, playlist or follow-action)")]
    BadSceneMode(String),
    /// A clip, track, scene or playlist id that the session does not define. Fix the spelling.
    #[error("{kind} '{id}' does not exist in the session ({kind}s: {known})")]
    UnknownId {
        /// `clip`, `track`, `scene` or `playlist`.
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
    behaviour: Option<Spanned<String>>,
    playlist: Option<Spanned<String>>,
    step: Option<Spanned<i64>>,
    playthrough: Option<Spanned<bool>>,
    from: Option<Spanned<String>>,
    to: Option<Spanned<String>>,
    arrangement: Option<Spanned<String>>,
    back_to_arrangement: Option<Spanned<bool>>,
    command: Option<Spanned<String>>,
}

/// Latest beat a script may act at (about 14 hours at 120 BPM).
pub const MAX_SCRIPT_BEAT: f64 = 100_000.0;

impl Script {
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
        if let Some(v) = &at.playlist {
            present.push(("playlist", v.span(), Which::Playlist(v)));
        }
        if let Some(v) = &at.playthrough {
            present.push(("playthrough", v.span(), Which::Playthrough(v)));
        }
        if let Some(v) = &at.arrangement {
            present.push(("arrangement", v.span(), Which::Arrangement(v)));
        }
        if let Some(v) = &at.back_to_arrangement {
            present.push(("back_to_arrangement", v.span(), Which::BackToArrangement(v)));
        }
        if let Some(v) = &at.command {
            present.push(("command", v.span(), Which::Command(v)));
        }
        present.sort_by_key(|(_, span, _)| span.start);
        let (action_name, which) = match present.as_slice() {
            [] => {
                return Err(self.err(
                    header,
                    ScriptErrorKind::Action(
                        "this entry has no action; give one of launch, release, scene, stop, stop_all, playlist, \
                         playthrough, arrangement, back_to_arrangement or command"
                            .into(),
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
            "launch" => &["quantise", "velocity", "behaviour"],
            "scene" => &["quantise", "mode"],
            "stop" | "stop_all" => &["mode", "fade_beats"],
            "playlist" => &["step", "quantise"],
            "playthrough" => &["from", "to", "quantise"],
            "back_to_arrangement" => &["quantise"],
            _ => &[],
        };
        for (name, span) in [
            ("quantise", at.quantise.as_ref().map(|v| v.span())),
            ("velocity", at.velocity.as_ref().map(|v| v.span())),
            ("mode", at.mode.as_ref().map(|v| v.span())),
            ("fade_beats", at.fade_beats.as_ref().map(|v| v.span())),
            ("behaviour", at.behaviour.as_ref().map(|v| v.span())),
            ("step", at.step.as_ref().map(|v| v.span())),
            ("from", at.from.as_ref().map(|v| v.span())),
            ("to", at.to.as_ref().map(|v| v.span())),
        ] {
            if let (Some(span), false) = (span, allowed.contains(&name)) {
                return Err(
                    self.err(&span, ScriptErrorKind::Action(format!("`{name}` does not apply to `{action_name}`")))
                );
            }
        }

        let session = self.session;
        let action = match *which {
            Which::Command(line) => self.command(line)?,
            Which::Launch(clip) => {
                let velocity = match &at.velocity {
                    None => None,
                    Some(v) => Some(self.range(v, "velocity", |x| (0.0..=1.0).contains(&x), "between 0 and 1")?),
                };
                let clip = self.clip(clip)?;
                let quantise = self.quantise(at.quantise.as_ref())?;
                match &at.behaviour {
                    None => Action::Launch { clip, quantise, velocity },
                    Some(b) => {
                        let behaviour = match b.get_ref().trim().to_ascii_lowercase().as_str() {
                            "start" => Behaviour::Start,
                            "retrigger" => Behaviour::Retrigger,
                            "legato" => Behaviour::Legato,
                            "stop" => Behaviour::Stop,
                            _ => return Err(self.err(&b.span(), ScriptErrorKind::BadBehaviour(b.get_ref().clone()))),
                        };
                        Action::Trigger(ClipTrigger {
                            clip,
                            quantise,
                            behaviour: Some(behaviour),
                            launch_velocity: velocity,
                        })
                    }
                }
            }
            Which::Release(clip) => Action::Release { clip: self.clip(clip)? },
            Which::Scene(scene) => {
                let id = self.scene(scene)?;
                let quantise = self.quantise(at.quantise.as_ref())?;
                match &at.mode {
                    None => Action::LaunchScene { scene: id, quantise },
                    Some(m) => {
                        let mode = match m.get_ref().trim().to_ascii_lowercase().as_str() {
                            "full" => SceneMode::Full,
                            "partial" => SceneMode::Partial,
                            "playlist" => SceneMode::Playlist,
                            "follow-action" => SceneMode::FollowAction,
                            _ => return Err(self.err(&m.span(), ScriptErrorKind::BadSceneMode(m.get_ref().clone()))),
                        };
                        if mode == SceneMode::Playlist
                            && !session.playlists.iter().any(|p| p.steps.iter().any(|s| s.scene == id))
                        {
                            return Err(self.err(
                                &m.span(),
                                ScriptErrorKind::Action(format!(
                                    "scene '{}' is in no playlist; mode = \"playlist\" starts the first playlist that holds it",
                                    session.scene(id).id
                                )),
                            ));
                        }
                        Action::Scene(SceneTrigger { scene: id, quantise, mode })
                    }
                }
            }
            Which::Playlist(name) => {
                let Some(playlist) = session.playlist_by_name(name.get_ref().trim()) else {
                    return Err(self.unknown(name, "playlist", session.playlists.iter().map(|p| p.id.as_str())));
                };
                let steps = session.playlists[playlist].steps.len();
                let step = match &at.step {
                    None => 0,
                    Some(n) => match usize::try_from(*n.get_ref()) {
                        Ok(v) if v < steps => v,
                        _ => {
                            return Err(self.err(
                                &n.span(),
                                ScriptErrorKind::OutOfRange {
                                    what: "step".into(),
                                    value: n.get_ref().to_string(),
                                    expected: format!(
                                        "a step of playlist '{}', counted from 0 (0..={})",
                                        session.playlists[playlist].id,
                                        steps.saturating_sub(1)
                                    ),
                                },
                            ));
                        }
                    },
                };
                Action::Playlist { playlist, step, quantise: self.quantise(at.quantise.as_ref())? }
            }
            Which::Playthrough(on) => {
                self.must_be_true(on, "playthrough")?;
                if session.scenes.is_empty() {
                    return Err(self
                        .err(&on.span(), ScriptErrorKind::Action("the session has no scenes to play through".into())));
                }
                let from = match &at.from {
                    None => SceneId(0),
                    Some(s) => self.scene(s)?,
                };
                let to = match &at.to {
                    None => SceneId(session.scenes.len() as u32 - 1),
                    Some(s) => self.scene(s)?,
                };
                if to < from {
                    let span = at.to.as_ref().or(at.from.as_ref()).map_or(on.span(), |s| s.span());
                    return Err(self.err(
                        &span,
                        ScriptErrorKind::Action(format!(
                            "scene '{}' comes before scene '{}'; a playthrough goes forwards from `from` to `to`",
                            session.scene(to).id,
                            session.scene(from).id
                        )),
                    ));
                }
                Action::Playthrough { from, to, quantise: self.quantise(at.quantise.as_ref())? }
            }
            Which::Arrangement(what) => {
                if !what.get_ref().trim().eq_ignore_ascii_case("play") {
                    return Err(self.err(
                        &what.span(),
                        ScriptErrorKind::Action(format!(
                            "arrangement = '{}' is not an arrangement action; write arrangement = \"play\" (or \
                             back_to_arrangement = true)",
                            what.get_ref()
                        )),
                    ));
                }
                Action::PlayArrangement
            }
            Which::BackToArrangement(on) => {
                self.must_be_true(on, "back_to_arrangement")?;
                Action::BackToArrangement { quantise: self.quantise(at.quantise.as_ref())? }
            }
            Which::Stop(track) => {
                let Some(id) = session.track_by_name(track.get_ref().trim()) else {
                    return Err(self.unknown(track, "track", session.tracks.iter().map(|t| t.id.as_str())));
                };
                Action::StopTrack { track: id, mode: self.stop_mode(at)? }
            }
            Which::StopAll(all) => {
                self.must_be_true(all, "stop_all")?;
                Action::StopAll { mode: self.stop_mode(at)? }
            }
        };
        Ok(ScriptAction { beat: Beats(beat), action })
    }

    /// `command = "record.start"`: any control command in its text form (`help` lists them), resolved
    /// against the session.
    fn command(&self, line: &Spanned<String>) -> Result<Action, ScriptError> {
        use crate::control::{Resolved, TextCommand, text};
        let bad = |why: String| {
            self.err(&line.span(), ScriptErrorKind::Action(format!("command '{}': {why}", line.get_ref())))
        };
        match text::parse(line.get_ref()).map_err(bad)? {
            TextCommand::Control(c) => match c.resolve(self.session).map_err(|e| bad(e.to_string()))? {
                Resolved::Pulse(a) => Ok(a),
                Resolved::Transport(_) => Err(bad("the transport of a render runs from start to end".into())),
            },
            _ => Err(bad("not a control command (status, help, quit and link are for the terminal)".into())),
        }
    }

    /// `key = false` does nothing: refuse it.
    fn must_be_true(&self, v: &Spanned<bool>, key: &str) -> Result<(), ScriptError> {
        if *v.get_ref() {
            return Ok(());
        }
        Err(self.err(
            &v.span(),
            ScriptErrorKind::Action(format!("{key} = false does nothing; write {key} = true or remove the entry")),
        ))
    }

    fn scene(&self, name: &Spanned<String>) -> Result<SceneId, ScriptError> {
        self.session
            .scene_by_name(name.get_ref().trim())
            .ok_or_else(|| self.unknown(name, "scene", self.session.scenes.iter().map(|s| s.id.as_str())))
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
    Playlist(&'r Spanned<String>),
    Playthrough(&'r Spanned<bool>),
    Arrangement(&'r Spanned<String>),
    BackToArrangement(&'r Spanned<bool>),
    Command(&'r Spanned<String>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClipId, SceneId, TrackId};
    use crate::script::{arrangement_length, playlist_length, playthrough_length};
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
[[clip]]
id = "beat-b"
track = "drums"
length_beats = 6
notes = [[0, 0.25, 36, 100]]
[[scene]]
id = "verse"
clips = ["beat", "lead-gate"]
[[scene]]
id = "chorus"
clips = ["beat-b"]
tempo = 90
[[scene]]
id = "solo"
clips = ["lead-gate"]
beats_per_bar = 4
[[playlist]]
id = "song"
steps = ["verse", { scene = "chorus", repeat = 2 }]
[[arrangement.clip]]
clip = "beat"
start = 4
length = 8
[[arrangement.tempo_change]]
beat = 6
tempo = 60
[[arrangement.tempo_change]]
beat = 100
tempo = 30
"#;
        crate::files::session::parse_session(text, Path::new("set.toml")).unwrap()
    }

    /// Every action of the new kinds, with their settings.
    const NEW: &str = r#"[[at]]
beat = 0
launch = "beat"
behaviour = "retrigger"
velocity = 0.5
quantise = "beat"

[[at]]
beat = 1
launch = "lead-gate"
behaviour = "Legato"

[[at]]
beat = 2
scene = "chorus"
mode = "partial"

[[at]]
beat = 3
scene = "verse"
mode = "playlist"
quantise = "none"

[[at]]
beat = 4
scene = "solo"
mode = "follow-action"

[[at]]
beat = 5
scene = "verse"
mode = "full"

[[at]]
beat = 6
playlist = "song"

[[at]]
beat = 7
playlist = "song"
step = 1
quantise = "2-bars"

[[at]]
beat = 8
playthrough = true

[[at]]
beat = 9
playthrough = true
from = "chorus"
to = "solo"
quantise = "beat"

[[at]]
beat = 10
arrangement = "play"

[[at]]
beat = 11
back_to_arrangement = true

[[at]]
beat = 12
back_to_arrangement = true
quantise = "bar"

[[at]]
beat = 13
launch = "beat"
behaviour = "stop"

[[at]]
beat = 14
launch = "beat"
behaviour = "start"
"#;

    fn bad_new(from: &str, to: &str, needle: &str, phrase: &str) {
        assert!(NEW.contains(from), "{from:?} not in NEW");
        let text = NEW.replacen(from, to, 1);
        let line = line_of(&text, needle);
        let msg = match parse(&text) {
            Ok(_) => panic!("expected an error containing {phrase:?}"),
            Err(e) => e.to_string(),
        };
        assert!(msg.starts_with(&format!("{FILE}:{line}:")), "wanted {FILE}:{line}: ..., got: {msg}");
        assert!(msg.contains(phrase), "wanted {phrase:?} in: {msg}");
    }

    #[test]
    fn clip_triggers_scene_modes_playlists_playthroughs_and_the_arrangement() {
        let s = parse(NEW).unwrap();
        let trigger = |clip, behaviour, quantise, launch_velocity| {
            Action::Trigger(ClipTrigger { clip: ClipId(clip), quantise, behaviour: Some(behaviour), launch_velocity })
        };
        let scene = |scene, mode, quantise| Action::Scene(SceneTrigger { scene: SceneId(scene), quantise, mode });
        let got: Vec<Action> = s.actions.iter().map(|a| a.action).collect();
        assert_eq!(
            got,
            vec![
                trigger(0, Behaviour::Retrigger, Some(Quantise::Beat), Some(0.5)),
                trigger(1, Behaviour::Legato, None, None),
                scene(1, SceneMode::Partial, None),
                scene(0, SceneMode::Playlist, Some(Quantise::None)),
                scene(2, SceneMode::FollowAction, None),
                scene(0, SceneMode::Full, None),
                Action::Playlist { playlist: 0, step: 0, quantise: None },
                Action::Playlist { playlist: 0, step: 1, quantise: Some(Quantise::Bars(2)) },
                Action::Playthrough { from: SceneId(0), to: SceneId(2), quantise: None },
                Action::Playthrough { from: SceneId(1), to: SceneId(2), quantise: Some(Quantise::Beat) },
                Action::PlayArrangement,
                Action::BackToArrangement { quantise: None },
                Action::BackToArrangement { quantise: Some(Quantise::Bar) },
                trigger(0, Behaviour::Stop, None, None),
                trigger(0, Behaviour::Start, None, None),
            ]
        );
        // Without `behaviour` and `mode` the old actions stay.
        let plain = parse(VALID).unwrap();
        assert!(plain.actions.iter().all(|a| !matches!(a.action, Action::Trigger(_) | Action::Scene(_))));
    }

    #[test]
    fn bad_new_actions_name_their_line() {
        bad_new(
            "behaviour = \"Legato\"",
            "behaviour = \"hold\"",
            "behaviour = \"hold\"",
            "'hold' is not a clip behaviour (use start, retrigger, legato or stop)",
        );
        bad_new("mode = \"partial\"", "mode = \"half\"", "mode = \"half\"", "'half' is not a scene mode");
        bad_new(
            "scene = \"solo\"\nmode = \"follow-action\"",
            "scene = \"solo\"\nmode = \"playlist\"",
            "mode = \"playlist\"\n\n[[at]]\nbeat = 5",
            "scene 'solo' is in no playlist; mode = \"playlist\" starts the first playlist that holds it",
        );
        bad_new(
            "playlist = \"song\"\n\n",
            "playlist = \"songs\"\n\n",
            "playlist = \"songs\"",
            "playlist 'songs' does not exist in the session (playlists: song)",
        );
        bad_new(
            "step = 1",
            "step = 2",
            "step = 2",
            "step is 2; it must be a step of playlist 'song', counted from 0 (0..=1)",
        );
        bad_new("step = 1", "step = -1", "step = -1", "step is -1");
        bad_new("step = 1", "step = \"two\"", "step = \"two\"", "expected an integer");
        bad_new(
            "playthrough = true\n\n",
            "playthrough = false\n\n",
            "playthrough = false",
            "playthrough = false does nothing",
        );
        bad_new(
            "from = \"chorus\"\nto = \"solo\"",
            "from = \"solo\"\nto = \"chorus\"",
            "to = \"chorus\"",
            "scene 'chorus' comes before scene 'solo'; a playthrough goes forwards",
        );
        bad_new(
            "from = \"chorus\"",
            "from = \"intro\"",
            "from = \"intro\"",
            "scene 'intro' does not exist in the session (scenes: verse, chorus, solo)",
        );
        bad_new(
            "arrangement = \"play\"",
            "arrangement = \"stop\"",
            "arrangement = \"stop\"",
            "arrangement = 'stop' is not an arrangement action; write arrangement = \"play\"",
        );
        bad_new(
            "back_to_arrangement = true\n\n",
            "back_to_arrangement = false\n\n",
            "back_to_arrangement = false",
            "back_to_arrangement = false does nothing",
        );
        bad_new(
            "arrangement = \"play\"",
            "arrangement = \"play\"\nquantise = \"bar\"",
            "quantise = \"bar\"\n\n[[at]]\nbeat = 11",
            "`quantise` does not apply to `arrangement`",
        );
        bad_new(
            "mode = \"partial\"",
            "behaviour = \"start\"",
            "behaviour = \"start\"\n\n[[at]]\nbeat = 3",
            "`behaviour` does not apply to `scene`",
        );
        bad_new("step = 1", "from = \"verse\"", "from = \"verse\"", "`from` does not apply to `playlist`");
        bad_new("to = \"solo\"", "step = 0", "step = 0", "`step` does not apply to `playthrough`");
        bad_new(
            "playlist = \"song\"\n\n",
            "playlist = \"song\"\nvelocity = 1\n\n",
            "velocity = 1",
            "`velocity` does not apply to `playlist`",
        );
        bad_new(
            "arrangement = \"play\"",
            "arrangement = \"play\"\nplaylist = \"song\"",
            "playlist = \"song\"\n\n[[at]]\nbeat = 11",
            "this entry has both `arrangement` (line 57) and `playlist`",
        );
        bad_new("behaviour = \"Legato\"", "behavior = \"legato\"", "behavior", "unknown field `behavior`");
    }

    #[test]
    fn lengths_of_playthroughs_playlists_and_the_arrangement() {
        let s = session();
        // 3/4 at 120 BPM. verse: 3 beats (its longest clip, one 3/4 bar); chorus: 6 beats at 90
        // BPM; solo: 3 beats, still at 90 BPM (the chorus's tempo stays), in 4/4.
        let all = playthrough_length(&s, SceneId(0), SceneId(2));
        assert_eq!(all.beats, Beats(12.0));
        assert!((all.seconds - (1.5 + 4.0 + 2.0)).abs() < 1e-12, "{all:?}");
        assert!((all.bar_seconds - 4.0 * 60.0 / 90.0).abs() < 1e-12, "{all:?}");
        let verse = playthrough_length(&s, SceneId(0), SceneId(0));
        assert_eq!((verse.beats, verse.seconds, verse.bar_seconds), (Beats(3.0), 1.5, 1.5));
        // song: verse once, chorus twice.
        let song = playlist_length(&s, 0, 0);
        assert_eq!(song.beats, Beats(15.0));
        assert!((song.seconds - (1.5 + 8.0)).abs() < 1e-12, "{song:?}");
        assert_eq!(playlist_length(&s, 0, 1).beats, Beats(12.0));
        assert_eq!(playlist_length(&s, 0, 9).beats, Beats(0.0));
        // Arrangement: `beat` at 4 for 8 beats ends at 12; 60 BPM from beat 6; the change at 100
        // is after the end.
        let a = arrangement_length(&s);
        assert_eq!(a.beats, Beats(12.0));
        assert!((a.seconds - (3.0 + 6.0)).abs() < 1e-12, "{a:?}");
        assert_eq!(a.bar_seconds, 3.0);
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
            "clip 'beet' does not exist in the session (clips: beat, lead-gate, beat-b)",
        );
        bad("release = \"lead-gate\"", "release = \"lead\"", "release = \"lead\"", "clip 'lead' does not exist");
        bad(
            "scene = \"verse\"",
            "scene = \"intro\"",
            "scene = \"intro\"",
            "scene 'intro' does not exist in the session (scenes: verse, chorus, solo)",
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
            "release = \"lead-gate\"",
            "release = \"lead-gate\"\nmode = \"immediate\"",
            "mode = \"immediate\"\n\n[[at]]\nbeat = 0",
            "`mode` does not apply to `release`",
        );
        bad(
            "scene = \"verse\"",
            "scene = \"verse\"\nmode = \"immediate\"",
            "mode = \"immediate\"\nquantise",
            "'immediate' is not a scene mode (use full, partial, playlist or follow-action)",
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
        "\nbehaviour = \"legato\"\n",
        "\nmode = \"partial\"\n",
        "\nplaylist = \"song\"\nstep = 7\n",
        "\nplaythrough = true\nfrom = \"solo\"\n",
        "\narrangement = \"play\"\n",
        "\nback_to_arrangement = true\n",
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
            let mut text = if edits.len() % 2 == 0 { VALID.to_string() } else { NEW.to_string() };
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
