//! Checking a parsed session file and building the [`Session`] from it: ids resolved, ranges
//! checked, audio and MIDI files read (or only probed: under a memory budget, and for an offline
//! render the 32-bit float WAV files it reads in place), every problem reported with its line.
//! Control thread (audio files are decoded on threads of its own); does file I/O.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use super::error::{SessionError, SessionErrorKind};
use super::raw::*;
use crate::files::diagnostics::{TomlProblem, known_list, line_col, parse_toml};
use crate::media::smf::decode_smf;
use crate::media::wav::{MappedWav, decode_wav, read_wav_file};
use crate::model::{
    Arrangement, AudioData, Clip, ClipContent, ClipId, Deferral, DeferredAudio, FollowAction, FollowActions,
    FollowConstraints, FollowTarget, MidiData, MidiOutRoute, Placement, Playlist, PlaylistStep, Scene, SceneId,
    Session, TempoChange, Track, TrackId, TrackKind, clip_kind,
};
use crate::time::{Beats, Bpm, Quantise};

/// How a session is loaded ([`load_session_with`], [`parse_session_with`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadOptions {
    /// Overrides the session's `memory_budget_mb` (the node's `--memory-budget`; 0 or more).
    pub memory_budget_mb: Option<f64>,
    /// For an offline render (the node's `render` sets it, nothing else should): audio files of
    /// 32-bit float mono or stereo samples are only probed, not decoded, as under a memory
    /// budget, and left for the engine to read in place ([`crate::model::Deferral::InPlace`]:
    /// the clip's [`crate::model::Clip::deferred`] holds the file and its content no frames).
    /// An offline engine (`build_with_reader`) then maps them and Signal reads the samples from
    /// the page cache; a live one (`build`) decodes them. Ignored under a memory budget.
    pub map_audio: bool,
    /// Threads that decode (or probe) the audio files; `None` or 0: one per core the process may
    /// run on. 1 decodes on the calling thread.
    pub decode_threads: Option<usize>,
}

/// Parses session-file text into a checked [`Session`] (see [`super::parse_session_with`]).
pub(super) fn parse(text: &str, file: &Path, options: LoadOptions) -> Result<Session, SessionError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let ctx = Ctx { file, text, base_dir: base_dir(file), options };
    let raw: RawFile = parse_toml(text).map_err(|(span, problem)| {
        let kind = match problem {
            TomlProblem::Syntax(message) => SessionErrorKind::Syntax { message },
            TomlProblem::Schema(message) => SessionErrorKind::Schema { message },
        };
        match span {
            Some(span) => ctx.err(&span, kind),
            None => SessionError::whole_file(file, kind),
        }
    })?;
    let session = ctx.build(raw)?;
    session.validate().map_err(|m| SessionError::whole_file(file, SessionErrorKind::Model(m)))?;
    Ok(session)
}

/// The folder relative paths in `file` are resolved against.
fn base_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Default tempo when `[session]` gives none.
pub const DEFAULT_TEMPO: f64 = 120.0;

/// Default declicking crossfade in milliseconds.
pub const DEFAULT_CROSSFADE_MS: f64 = 5.0;

/// Lowest gain (track or clip) a session file may set, in dB.
pub const MIN_GAIN_DB: f64 = -96.0;

/// Highest gain (track or clip) a session file may set, in dB.
pub const MAX_GAIN_DB: f64 = 24.0;

/// Longest declicking crossfade, in milliseconds.
pub const MAX_CROSSFADE_MS: f64 = 1000.0;

/// Longest clip, in beats.
pub const MAX_CLIP_BEATS: f64 = 100_000.0;

/// Most passes before a follow-action decision, and most repeats of a playlist step.
pub const MAX_FOLLOW_LOOPS: u32 = 10_000;

/// Latest beat on the arrangement (about 14 hours at 120 BPM), and its longest placement.
pub const MAX_ARRANGEMENT_BEAT: f64 = 100_000.0;

/// Whose follow actions are being read.
#[derive(Clone, Copy)]
pub(super) enum Owner {
    Clip(ClipId),
    Scene(SceneId),
}

pub(super) struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    base_dir: PathBuf,
    options: LoadOptions,
}

/// Where a clip's content comes from.
pub(super) enum Source<'r> {
    Notes(&'r Spanned<Vec<Spanned<RawNote>>>),
    MidiFile(&'r Spanned<String>),
    Audio(&'r Spanned<String>),
}

impl Ctx<'_> {
    fn err(&self, span: &Range<usize>, kind: SessionErrorKind) -> SessionError {
        let (line, column) = line_col(self.text, span.start);
        SessionError { file: self.file.to_path_buf(), line: Some(line), column: Some(column), kind: Box::new(kind) }
    }

    fn line(&self, span: &Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }

    /// A track's `midi_out` and `midi_channel` (1..=16 in the file, 0..=15 in the model).
    fn midi_out_route(&self, id: &str, t: &RawTrack) -> Result<Option<MidiOutRoute>, SessionError> {
        let misplaced = |span: &Range<usize>, why: String| self.err(span, SessionErrorKind::Misplaced(why));
        let Some(port) = &t.midi_out else {
            return match &t.midi_channel {
                Some(ch) => Err(misplaced(
                    &ch.span(),
                    format!("track '{id}': midi_channel needs midi_out = \"PORT\" (the output it applies to)"),
                )),
                None => Ok(None),
            };
        };
        if t.kind == TrackKind::Audio {
            return Err(misplaced(
                &port.span(),
                format!("track '{id}': an audio track sends no MIDI; remove `midi_out` or make it kind = \"midi\""),
            ));
        }
        if port.get_ref().trim().is_empty() {
            return Err(misplaced(&port.span(), format!("track '{id}': midi_out needs a port name")));
        }
        let channel = match &t.midi_channel {
            None => None,
            Some(ch) if (1..=16).contains(ch.get_ref()) => Some((*ch.get_ref() - 1) as u8),
            Some(ch) => {
                return Err(self.err(
                    &ch.span(),
                    SessionErrorKind::OutOfRange {
                        what: format!("track '{id}': midi_channel"),
                        value: ch.get_ref().to_string(),
                        expected: "a MIDI channel 1..=16".into(),
                    },
                ));
            }
        };
        Ok(Some(MidiOutRoute { port: port.get_ref().clone(), channel }))
    }

    fn range(
        &self,
        v: &Spanned<f64>,
        what: impl FnOnce() -> String,
        ok: impl FnOnce(f64) -> bool,
        expected: &str,
    ) -> Result<f64, SessionError> {
        let x = *v.get_ref();
        if x.is_finite() && ok(x) {
            Ok(x)
        } else {
            Err(self.err(
                &v.span(),
                SessionErrorKind::OutOfRange {
                    what: what(),
                    value: v.get_ref().to_string(),
                    expected: expected.into(),
                },
            ))
        }
    }

    fn quantise(
        &self,
        q: Option<&Spanned<String>>,
        what: impl FnOnce() -> String,
        global_allowed: bool,
        default: Quantise,
    ) -> Result<Quantise, SessionError> {
        let Some(q) = q else { return Ok(default) };
        match Quantise::parse(q.get_ref()) {
            Some(Quantise::Global) if !global_allowed => Err(self.err(
                &q.span(),
                SessionErrorKind::BadQuantise { what: what(), value: q.get_ref().clone(), global_allowed },
            )),
            Some(parsed) => Ok(parsed),
            None => Err(self.err(
                &q.span(),
                SessionErrorKind::BadQuantise { what: what(), value: q.get_ref().clone(), global_allowed },
            )),
        }
    }

    fn id(
        &self,
        id: &Spanned<String>,
        kind: &'static str,
        seen: &mut HashMap<String, usize>,
    ) -> Result<String, SessionError> {
        let name = id.get_ref().trim();
        if name.is_empty() {
            return Err(self.err(&id.span(), SessionErrorKind::EmptyId { kind }));
        }
        let line = self.line(&id.span());
        if let Some(&first_line) = seen.get(name) {
            return Err(self.err(&id.span(), SessionErrorKind::DuplicateId { kind, id: name.to_string(), first_line }));
        }
        seen.insert(name.to_string(), line);
        Ok(name.to_string())
    }

    fn gain(&self, v: Option<&Spanned<f64>>, owner: impl Fn() -> String) -> Result<f64, SessionError> {
        match v {
            None => Ok(0.0),
            Some(v) => self.range(
                v,
                || format!("{}gain_db", owner()),
                |x| (MIN_GAIN_DB..=MAX_GAIN_DB).contains(&x),
                &format!("between {MIN_GAIN_DB} and +{MAX_GAIN_DB} dB"),
            ),
        }
    }

    fn build(&self, raw: RawFile) -> Result<Session, SessionError> {
        let default_name =
            self.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "Untitled".into());
        let mut session = Session::new(default_name, Bpm(DEFAULT_TEMPO));
        session.crossfade_ms = DEFAULT_CROSSFADE_MS;
        if let Some(s) = &raw.session {
            self.session_settings(s.get_ref(), &mut session)?;
        }
        if let Some(mb) = self.options.memory_budget_mb {
            session.streaming.memory_budget_mb = Some(mb);
        }

        // Tracks.
        let mut track_ids = HashMap::new();
        for t in &raw.tracks {
            let t = t.get_ref();
            let id = self.id(&t.id, "track", &mut track_ids)?;
            let owner = || format!("track '{id}': ");
            let gain_db = self.gain(t.gain_db.as_ref(), owner)?;
            let pan = match &t.pan {
                None => 0.0,
                Some(p) => self.range(
                    p,
                    || format!("track '{id}': pan"),
                    |x| (-1.0..=1.0).contains(&x),
                    "between -1 (left) and 1 (right)",
                )?,
            };
            if let (Some(inst), TrackKind::Audio) = (&t.instrument, t.kind) {
                return Err(self.err(
                    &inst.span(),
                    SessionErrorKind::Misplaced(format!(
                        "track '{id}': an audio track has no instrument; remove `instrument` or make it kind = \"midi\""
                    )),
                ));
            }
            if let Some(inst) = &t.instrument {
                inst.get_ref().validate().map_err(|problem| {
                    self.err(&inst.span(), SessionErrorKind::BadInstrument { track: id.clone(), problem })
                })?;
            }
            let midi_out = self.midi_out_route(&id, t)?;
            let mut track = Track::new(id, t.kind);
            track.gain_db = gain_db;
            track.pan = pan;
            track.mute = t.mute;
            track.solo = t.solo;
            track.instrument = t.instrument.as_ref().map(|i| i.get_ref().clone());
            track.keep_playing = t.keep_playing;
            track.midi_out = midi_out;
            session.add_track(track);
        }

        // Clips.
        let mut clip_ids = HashMap::new();
        // Under a memory budget, audio files are only probed here (`stream::prepare` decodes them).
        let defer = session.streaming.memory_budget_mb.is_some();
        let mut deferred = HashMap::new();
        let mut audio_cache = if defer { HashMap::new() } else { self.prefetch_audio(&raw.clips, &mut deferred) };
        let mut midi_cache: HashMap<(PathBuf, Option<usize>), Arc<MidiData>> = HashMap::new();
        for c in &raw.clips {
            let header = c.span();
            let c = c.get_ref();
            let id = self.id(&c.id, "clip", &mut clip_ids)?;
            let clip = self.clip(&id, &header, c, &session, &mut audio_cache, &mut deferred, &mut midi_cache)?;
            session.add_clip(clip);
        }

        // Scenes.
        let mut scene_ids = HashMap::new();
        for s in &raw.scenes {
            let s = s.get_ref();
            let id = self.id(&s.id, "scene", &mut scene_ids)?;
            let mut clips: Vec<ClipId> = Vec::with_capacity(s.clips.len());
            let mut on_track: HashMap<TrackId, ClipId> = HashMap::new();
            for name in &s.clips {
                let Some(cid) = session.clip_by_name(name.get_ref().trim()) else {
                    return Err(self.err(
                        &name.span(),
                        SessionErrorKind::UnknownClip {
                            scene: id.clone(),
                            clip: name.get_ref().clone(),
                            known: known_list(session.clips.iter().map(|c| c.id.as_str())),
                        },
                    ));
                };
                let track = session.clip(cid).track;
                if let Some(&other) = on_track.get(&track) {
                    let problem = if other == cid {
                        format!("clip '{}' is listed twice", session.clip(cid).id)
                    } else {
                        format!(
                            "clips '{}' and '{}' are both on track '{}'; a scene holds at most one clip per track",
                            session.clip(other).id,
                            session.clip(cid).id,
                            session.track(track).id
                        )
                    };
                    return Err(self.err(&name.span(), SessionErrorKind::SceneClash { scene: id.clone(), problem }));
                }
                on_track.insert(track, cid);
                clips.push(cid);
            }
            let quantise =
                self.quantise(s.quantise.as_ref(), || format!("scene '{id}': quantise"), true, Quantise::Global)?;
            let tempo = match &s.tempo {
                None => None,
                Some(t) => Some(Bpm(self.tempo(t, || format!("scene '{id}': tempo"))?)),
            };
            let beats_per_bar =
                self.bar_length(s.beats_per_bar.as_ref(), s.time_signature.as_ref(), || format!("scene '{id}': "))?;
            let mut scene = Scene::new(id, clips);
            scene.quantise = quantise;
            scene.empty_slots = s.empty_slots.unwrap_or_default();
            scene.tempo = tempo;
            scene.beats_per_bar = beats_per_bar;
            session.add_scene(scene);
        }

        // Follow actions, once every clip and scene they may name exists.
        for (i, c) in raw.clips.iter().enumerate() {
            if let Some(f) = &c.get_ref().follow {
                session.clips[i].follow = Some(self.follow(f, Owner::Clip(ClipId(i as u32)), &session)?);
            }
        }
        for (i, s) in raw.scenes.iter().enumerate() {
            if let Some(f) = &s.get_ref().follow {
                session.scenes[i].follow = Some(self.follow(f, Owner::Scene(SceneId(i as u32)), &session)?);
            }
        }

        // Playlists.
        let mut playlist_ids = HashMap::new();
        for p in &raw.playlists {
            let p = p.get_ref();
            let id = self.id(&p.id, "playlist", &mut playlist_ids)?;
            let playlist = self.playlist(id, p, &session)?;
            session.playlists.push(playlist);
        }

        // The arrangement.
        if let Some(a) = &raw.arrangement {
            session.arrangement = self.arrangement(a.get_ref(), &session)?;
        }
        Ok(session)
    }

    /// A tempo in BPM, checked against the range Link accepts.
    fn tempo(&self, t: &Spanned<f64>, what: impl FnOnce() -> String) -> Result<f64, SessionError> {
        self.range(
            t,
            what,
            |x| (Bpm::MIN..=Bpm::MAX).contains(&x),
            &format!("between {} and {} BPM", Bpm::MIN, Bpm::MAX),
        )
    }

    /// Beats per bar from `beats_per_bar` or `time_signature` (at most one of them); `prefix`
    /// names the owner in messages (`""` for the session, `"scene 'x': "`).
    fn bar_length(
        &self,
        beats_per_bar: Option<&Spanned<f64>>,
        time_signature: Option<&Spanned<String>>,
        prefix: impl Fn() -> String,
    ) -> Result<Option<f64>, SessionError> {
        match (beats_per_bar, time_signature) {
            (Some(_), Some(ts)) => Err(self.err(
                &ts.span(),
                SessionErrorKind::Misplaced(format!(
                    "{}give either beats_per_bar or time_signature, not both",
                    prefix()
                )),
            )),
            (Some(b), None) => Ok(Some(self.range(
                b,
                || format!("{}beats_per_bar", prefix()),
                |x| x > 0.0 && x <= 64.0,
                "greater than 0 and at most 64",
            )?)),
            (None, Some(ts)) => parse_time_signature(ts.get_ref()).map(Some).ok_or_else(|| {
                self.err(&ts.span(), SessionErrorKind::BadTimeSignature { value: ts.get_ref().clone() })
            }),
            (None, None) => Ok(None),
        }
    }

    /// A clip's or scene's follow actions, with every id resolved and every constraint checked.
    fn follow(&self, raw: &Spanned<RawFollow>, owner: Owner, session: &Session) -> Result<FollowActions, SessionError> {
        let owner_name = match owner {
            Owner::Clip(c) => format!("clip '{}'", session.clip(c).id),
            Owner::Scene(s) => format!("scene '{}'", session.scene(s).id),
        };
        let fail = |span: &Range<usize>, problem: String| {
            self.err(span, SessionErrorKind::Follow { owner: owner_name.clone(), problem })
        };
        let f = raw.get_ref();
        let after_loops = match &f.after_loops {
            None => 1,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(v) if (1..=MAX_FOLLOW_LOOPS).contains(&v) => v,
                _ => {
                    return Err(self.err(
                        &n.span(),
                        SessionErrorKind::OutOfRange {
                            what: format!("{owner_name}: follow after_loops"),
                            value: n.get_ref().to_string(),
                            expected: format!("a whole number from 1 to {MAX_FOLLOW_LOOPS}"),
                        },
                    ));
                }
            },
        };
        // The candidates `next`, `previous`, `first`, `last` and `random` choose among, in order.
        let (universe, noun): (Vec<u32>, &str) = match owner {
            Owner::Clip(c) => (session.clips_of_track(session.clip(c).track).iter().map(|c| c.0).collect(), "clip"),
            Owner::Scene(_) => ((0..session.scenes.len() as u32).collect(), "scene"),
        };
        let own = match owner {
            Owner::Clip(c) => c.0,
            Owner::Scene(s) => s.0,
        };
        let resolve = |name: &Spanned<String>| -> Result<u32, SessionError> {
            let n = name.get_ref().trim();
            match owner {
                Owner::Clip(c) => {
                    let track = session.clip(c).track;
                    match session.clip_by_name(n) {
                        Some(id) if session.clip(id).track == track => Ok(id.0),
                        Some(id) => Err(fail(
                            &name.span(),
                            format!(
                                "clip '{n}' is on track '{}', not '{}'; a clip's follow action chooses among the \
                                 clips of its own track ({})",
                                session.track(session.clip(id).track).id,
                                session.track(track).id,
                                known_list(session.clips_of_track(track).iter().map(|c| session.clip(*c).id.as_str()))
                            ),
                        )),
                        None => Err(fail(
                            &name.span(),
                            format!(
                                "clip '{n}' does not exist (clips of track '{}': {})",
                                session.track(track).id,
                                known_list(session.clips_of_track(track).iter().map(|c| session.clip(*c).id.as_str()))
                            ),
                        )),
                    }
                }
                Owner::Scene(_) => session.scene_by_name(n).map(|s| s.0).ok_or_else(|| {
                    fail(
                        &name.span(),
                        format!(
                            "scene '{n}' does not exist (scenes: {})",
                            known_list(session.scenes.iter().map(|s| s.id.as_str()))
                        ),
                    )
                }),
            }
        };
        let action = |raw: &Spanned<RawFollowAction>, chance: f64| -> Result<FollowAction, SessionError> {
            let a = raw.get_ref();
            let next = match a.next.get_ref() {
                RawTarget::Word(w) => match w.trim().to_ascii_lowercase().as_str() {
                    "next" => FollowTarget::Next,
                    "previous" => FollowTarget::Previous,
                    "first" => FollowTarget::First,
                    "last" => FollowTarget::Last,
                    "random" => FollowTarget::Random,
                    "repeat" => FollowTarget::Repeat,
                    "stop" => FollowTarget::Stop,
                    _ => {
                        return Err(fail(
                            &a.next.span(),
                            format!("'{w}' is not a follow action (use {TARGET_EXPECTED})"),
                        ));
                    }
                },
                RawTarget::Clip(name) => {
                    let named = Spanned::new(a.next.span(), name.clone());
                    match owner {
                        // Among the clips of its own track, like the constraints.
                        Owner::Clip(_) => FollowTarget::Clip(ClipId(resolve(&named)?)),
                        // Any clip.
                        Owner::Scene(_) => match session.clip_by_name(name.trim()) {
                            Some(c) => FollowTarget::Clip(c),
                            None => {
                                return Err(fail(
                                    &a.next.span(),
                                    format!(
                                        "clip '{}' does not exist (clips: {})",
                                        name.trim(),
                                        known_list(session.clips.iter().map(|c| c.id.as_str()))
                                    ),
                                ));
                            }
                        },
                    }
                }
                RawTarget::Scene(name) => match session.scene_by_name(name.trim()) {
                    Some(s) => FollowTarget::Scene(s),
                    None => {
                        return Err(fail(
                            &a.next.span(),
                            format!(
                                "scene '{}' does not exist (scenes: {})",
                                name.trim(),
                                known_list(session.scenes.iter().map(|s| s.id.as_str()))
                            ),
                        ));
                    }
                },
            };
            let chooses = matches!(
                next,
                FollowTarget::Next
                    | FollowTarget::Previous
                    | FollowTarget::First
                    | FollowTarget::Last
                    | FollowTarget::Random
            );
            let mut constraints = FollowConstraints::default();
            for (key, span) in [
                ("no_repeat", a.no_repeat.as_ref().map(|v| v.span())),
                ("exclude", a.exclude.as_ref().map(|v| v.span())),
                ("only", a.only.as_ref().map(|v| v.span())),
            ] {
                if let (Some(span), false) = (span, chooses) {
                    return Err(fail(
                        &span,
                        format!("`{key}` only applies when next is next, previous, first, last or random"),
                    ));
                }
            }
            constraints.no_repeat = a.no_repeat.as_ref().is_some_and(|v| *v.get_ref());
            for (list, out) in [(&a.exclude, &mut constraints.exclude), (&a.only, &mut constraints.only)] {
                for name in list.iter().flat_map(|l| l.get_ref()) {
                    let id = resolve(name)?;
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
            }
            if chooses {
                let left = universe
                    .iter()
                    .filter(|c| constraints.only.is_empty() || constraints.only.contains(c))
                    .filter(|c| !constraints.exclude.contains(c))
                    .filter(|c| !(constraints.no_repeat && **c == own))
                    .count();
                if left == 0 {
                    let span =
                        [&a.only, &a.exclude].into_iter().flatten().map(|l| l.span()).next().unwrap_or(raw.span());
                    return Err(fail(&span, format!("the constraints leave no {noun} to choose")));
                }
            }
            Ok(FollowAction { next, chance, constraints })
        };
        let chance = |c: &Option<Spanned<f64>>, which: &str| -> Result<Option<f64>, SessionError> {
            c.as_ref()
                .map(|c| {
                    self.range(
                        c,
                        || format!("{owner_name}: follow {which} chance"),
                        |x| (0.0..=1.0).contains(&x),
                        "between 0 and 1",
                    )
                })
                .transpose()
        };
        let ca = chance(&f.a.get_ref().chance, "a")?;
        let cb = match &f.b {
            None => None,
            Some(b) => chance(&b.get_ref().chance, "b")?,
        };
        // A chance left out takes what the other leaves of 1.
        let (ca, cb) = match (&f.b, ca, cb) {
            (None, a, _) => (a.unwrap_or(1.0), 0.0),
            (Some(_), Some(a), Some(b)) => (a, b),
            (Some(_), Some(a), None) => (a, 1.0 - a),
            (Some(_), None, Some(b)) => (1.0 - b, b),
            (Some(_), None, None) => (0.5, 0.5),
        };
        let a = action(&f.a, ca)?;
        let b = f.b.as_ref().map(|b| action(b, cb)).transpose()?;
        Ok(FollowActions { after_loops, a, b })
    }

    /// A playlist, with its scenes resolved.
    fn playlist(&self, id: String, p: &RawPlaylist, session: &Session) -> Result<Playlist, SessionError> {
        let fail = |span: &Range<usize>, problem: String| {
            self.err(span, SessionErrorKind::Playlist { playlist: id.clone(), problem })
        };
        if p.steps.get_ref().is_empty() {
            return Err(fail(
                &p.steps.span(),
                "has no steps; list scenes, e.g. steps = [\"intro\", { scene = \"verse\", repeat = 2 }]".into(),
            ));
        }
        let mut steps = Vec::with_capacity(p.steps.get_ref().len());
        for (i, step) in p.steps.get_ref().iter().enumerate() {
            let raw = step.get_ref();
            let name = raw.scene.trim();
            let Some(scene) = session.scene_by_name(name) else {
                return Err(fail(
                    &step.span(),
                    format!(
                        "step {}: scene '{name}' does not exist (scenes: {})",
                        i + 1,
                        known_list(session.scenes.iter().map(|s| s.id.as_str()))
                    ),
                ));
            };
            let repeat = match raw.repeat {
                None => 1,
                Some(n) => match u32::try_from(n) {
                    Ok(v) if (1..=MAX_FOLLOW_LOOPS).contains(&v) => v,
                    _ => {
                        return Err(self.err(
                            &step.span(),
                            SessionErrorKind::OutOfRange {
                                what: format!("playlist '{id}': step {} repeat", i + 1),
                                value: n.to_string(),
                                expected: format!("a whole number from 1 to {MAX_FOLLOW_LOOPS}"),
                            },
                        ));
                    }
                },
            };
            steps.push(PlaylistStep { scene, repeat });
        }
        Ok(Playlist { id, steps, looping: p.looping.unwrap_or(false) })
    }

    /// The arrangement: placements checked against their lanes, tempo changes in beat order.
    fn arrangement(&self, a: &RawArrangement, session: &Session) -> Result<Arrangement, SessionError> {
        let fail = |span: &Range<usize>, problem: String| self.err(span, SessionErrorKind::Arrangement { problem });
        let mut out = Arrangement::default();
        for p in &a.clips {
            let p = p.get_ref();
            let name = p.clip.get_ref().trim();
            let Some(clip) = session.clip_by_name(name) else {
                return Err(fail(
                    &p.clip.span(),
                    format!(
                        "clip '{name}' does not exist (clips: {})",
                        known_list(session.clips.iter().map(|c| c.id.as_str()))
                    ),
                ));
            };
            let c = session.clip(clip);
            let (track, track_span) = match &p.track {
                None => (c.track, p.clip.span()),
                Some(t) => match session.track_by_name(t.get_ref().trim()) {
                    Some(id) => (id, t.span()),
                    None => {
                        return Err(fail(
                            &t.span(),
                            format!(
                                "track '{}' does not exist (tracks: {})",
                                t.get_ref().trim(),
                                known_list(session.tracks.iter().map(|t| t.id.as_str()))
                            ),
                        ));
                    }
                },
            };
            let lane = session.track(track);
            if clip_kind(c) != lane.kind {
                let article = |k: TrackKind| match k {
                    TrackKind::Audio => "an audio",
                    TrackKind::Midi => "a MIDI",
                };
                return Err(fail(
                    &track_span,
                    format!(
                        "clip '{}' is {} clip and cannot go on lane '{}', {} track",
                        c.id,
                        article(clip_kind(c)),
                        lane.id,
                        article(lane.kind)
                    ),
                ));
            }
            let start = self.range(
                &p.start,
                || format!("arrangement clip '{}': start", c.id),
                |x| (0.0..=MAX_ARRANGEMENT_BEAT).contains(&x),
                &format!("between 0 and {MAX_ARRANGEMENT_BEAT} beats"),
            )?;
            let length = match &p.length {
                None => c.length.0,
                Some(l) => self.range(
                    l,
                    || format!("arrangement clip '{}': length", c.id),
                    |x| x > 0.0 && x <= MAX_ARRANGEMENT_BEAT,
                    &format!("greater than 0 and at most {MAX_ARRANGEMENT_BEAT} beats"),
                )?,
            };
            let offset = match &p.offset {
                None => 0.0,
                Some(o) => self.range(
                    o,
                    || format!("arrangement clip '{}': offset", c.id),
                    |x| (0.0..=MAX_ARRANGEMENT_BEAT).contains(&x),
                    &format!("between 0 and {MAX_ARRANGEMENT_BEAT} beats"),
                )?,
            };
            out.clips.push(Placement {
                track,
                clip,
                start: Beats(start),
                length: Beats(length),
                offset: Beats(offset),
            });
        }
        let mut seen: Vec<(f64, usize)> = Vec::new();
        for t in &a.tempo_changes {
            let header = t.span();
            let t = t.get_ref();
            let beat = self.range(
                &t.beat,
                || "arrangement tempo_change beat".into(),
                |x| (0.0..=MAX_ARRANGEMENT_BEAT).contains(&x),
                &format!("between 0 and {MAX_ARRANGEMENT_BEAT}"),
            )?;
            if let Some(&(_, line)) = seen.iter().find(|(b, _)| *b == beat) {
                return Err(fail(
                    &t.beat.span(),
                    format!("two tempo changes at beat {beat} (the other is on line {line}); merge them"),
                ));
            }
            seen.push((beat, self.line(&t.beat.span())));
            let tempo = match &t.tempo {
                None => None,
                Some(x) => Some(Bpm(self.tempo(x, || format!("arrangement tempo_change at beat {beat}: tempo"))?)),
            };
            let beats_per_bar = self.bar_length(t.beats_per_bar.as_ref(), t.time_signature.as_ref(), || {
                format!("arrangement tempo_change at beat {beat}: ")
            })?;
            if tempo.is_none() && beats_per_bar.is_none() {
                return Err(fail(
                    &header,
                    format!(
                        "the tempo change at beat {beat} changes nothing; give tempo, time_signature or beats_per_bar"
                    ),
                ));
            }
            out.tempo.push(TempoChange { beat: Beats(beat), tempo, beats_per_bar });
        }
        out.tempo.sort_by(|a, b| a.beat.0.total_cmp(&b.beat.0));
        Ok(out)
    }

    fn session_settings(&self, s: &RawSession, session: &mut Session) -> Result<(), SessionError> {
        if let Some(name) = &s.name {
            session.name = name.clone();
        }
        if let Some(t) = &s.tempo {
            session.tempo = Bpm(self.tempo(t, || "tempo".into())?);
        }
        if let Some(b) = self.bar_length(s.beats_per_bar.as_ref(), s.time_signature.as_ref(), String::new)? {
            session.beats_per_bar = b;
        }
        if let Some(seed) = &s.seed {
            if *seed.get_ref() < 0 {
                return Err(self.err(
                    &seed.span(),
                    SessionErrorKind::OutOfRange {
                        what: "seed".into(),
                        value: seed.get_ref().to_string(),
                        expected: "0 or more".into(),
                    },
                ));
            }
            session.seed = *seed.get_ref() as u64;
        }
        session.quantise = self.quantise(s.quantise.as_ref(), || "session quantise".into(), false, Quantise::Bar)?;
        if let Some(x) = &s.crossfade_ms {
            session.crossfade_ms = self.range(
                x,
                || "crossfade_ms".into(),
                |x| (0.0..=MAX_CROSSFADE_MS).contains(&x),
                &format!("between 0 and {MAX_CROSSFADE_MS} ms"),
            )?;
        }
        if let Some(x) = &s.memory_budget_mb {
            let mb = self.range(x, || "memory_budget_mb".into(), |x| x >= 0.0, "0 MiB or more")?;
            session.streaming.memory_budget_mb = Some(mb);
        }
        if let Some(x) = &s.stream_head_s {
            session.streaming.head_seconds = self.range(
                x,
                || "stream_head_s".into(),
                |x| (crate::model::audio::MIN_HEAD_SECONDS..=600.0).contains(&x),
                &format!("between {} and 600 s", crate::model::audio::MIN_HEAD_SECONDS),
            )?;
        }
        if let Some(x) = &s.stream_lead_ms {
            session.streaming.lead_ms =
                self.range(x, || "stream_lead_ms".into(), |x| (0.0..=10_000.0).contains(&x), "between 0 and 10000 ms")?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn clip(
        &self,
        id: &str,
        header: &Range<usize>,
        c: &RawClip,
        session: &Session,
        audio_cache: &mut HashMap<PathBuf, Arc<AudioData>>,
        deferred: &mut HashMap<PathBuf, Arc<DeferredAudio>>,
        midi_cache: &mut HashMap<(PathBuf, Option<usize>), Arc<MidiData>>,
    ) -> Result<Clip, SessionError> {
        let content_err = |span: &Range<usize>, problem: String| {
            self.err(span, SessionErrorKind::Content { clip: id.to_string(), problem })
        };

        // Track.
        let Some(track_id) = session.track_by_name(c.track.get_ref().trim()) else {
            return Err(self.err(
                &c.track.span(),
                SessionErrorKind::UnknownTrack {
                    clip: id.to_string(),
                    track: c.track.get_ref().clone(),
                    known: known_list(session.tracks.iter().map(|t| t.id.as_str())),
                },
            ));
        };
        let track = session.track(track_id);

        // Content source: exactly one of notes, midi_file, file.
        let mut sources: Vec<(&str, Range<usize>, Source<'_>)> = Vec::new();
        if let Some(n) = &c.notes {
            sources.push(("notes", n.span(), Source::Notes(n)));
        }
        if let Some(m) = &c.midi_file {
            sources.push(("midi_file", m.span(), Source::MidiFile(m)));
        }
        if let Some(f) = &c.file {
            sources.push(("file", f.span(), Source::Audio(f)));
        }
        sources.sort_by_key(|(_, span, _)| span.start);
        if sources.len() > 1 {
            let (first, first_span, _) = &sources[0];
            let (second, second_span, _) = &sources[1];
            return Err(content_err(
                second_span,
                format!(
                    "has both `{first}` (line {}) and `{second}`; a clip has exactly one of notes, midi_file or file",
                    self.line(first_span)
                ),
            ));
        }
        let Some((_, _, source)) = sources.pop() else {
            return Err(content_err(
                header,
                "has no content; give notes = [[start, length, key, velocity], ...], midi_file = \"x.mid\" \
                 or file = \"x.wav\""
                    .into(),
            ));
        };
        if let (Some(mt), false) = (&c.midi_track, matches!(source, Source::MidiFile(_))) {
            return Err(content_err(&mt.span(), "midi_track only applies with midi_file".into()));
        }

        // Kind check.
        let clip_kind = match source {
            Source::Audio(_) => TrackKind::Audio,
            _ => TrackKind::Midi,
        };
        if clip_kind != track.kind {
            let article = |k: TrackKind| match k {
                TrackKind::Audio => "an audio",
                TrackKind::Midi => "a MIDI",
            };
            return Err(self.err(
                &c.track.span(),
                SessionErrorKind::KindMismatch {
                    clip: id.to_string(),
                    clip_kind: article(clip_kind),
                    track: track.id.clone(),
                    track_kind: article(track.kind),
                },
            ));
        }

        // Explicit length, checked before any file is loaded.
        let length = match &c.length_beats {
            None => None,
            Some(l) => Some(self.range(
                l,
                || format!("clip '{id}': length_beats"),
                |x| x > 0.0 && x <= MAX_CLIP_BEATS,
                &format!("greater than 0 and at most {MAX_CLIP_BEATS} beats"),
            )?),
        };

        // Content.
        let mut deferred_file = None;
        let (content, natural_length) = match source {
            Source::Notes(notes) => {
                let midi = self.notes(id, notes)?;
                let end = midi_end(&midi);
                (ClipContent::Midi(Arc::new(midi)), round_up_to_bar(end, session.beats_per_bar))
            }
            Source::MidiFile(path) => {
                let midi_track = match &c.midi_track {
                    None => None,
                    Some(t) => match usize::try_from(*t.get_ref()) {
                        Ok(n) if n <= 65_535 => Some(n),
                        _ => {
                            return Err(self.err(
                                &t.span(),
                                SessionErrorKind::OutOfRange {
                                    what: format!("clip '{id}': midi_track"),
                                    value: t.get_ref().to_string(),
                                    expected: "a track number from 0 (the file's first track)".into(),
                                },
                            ));
                        }
                    },
                };
                let resolved = self.base_dir.join(path.get_ref());
                let key = (resolved.clone(), midi_track);
                let midi = if let Some(m) = midi_cache.get(&key) {
                    m.clone()
                } else {
                    let bytes = self.read_referenced(id, "MIDI file", path, &resolved)?;
                    let midi = decode_smf(&bytes, midi_track).map_err(|problem| {
                        let span = match (&c.midi_track, problem.starts_with("midi_track")) {
                            (Some(t), true) => t.span(),
                            _ => path.span(),
                        };
                        self.err(
                            &span,
                            SessionErrorKind::BadMidi {
                                clip: id.to_string(),
                                path: PathBuf::from(path.get_ref()),
                                problem,
                            },
                        )
                    })?;
                    let midi = Arc::new(midi);
                    midi_cache.insert(key, midi.clone());
                    midi
                };
                let end = midi_end(&midi);
                (ClipContent::Midi(midi), round_up_to_bar(end, session.beats_per_bar))
            }
            Source::Audio(path) => {
                let resolved = self.base_dir.join(path.get_ref());
                let audio = if let Some(a) = audio_cache.get(&resolved) {
                    a.clone()
                } else if session.streaming.memory_budget_mb.is_some() {
                    let (audio, file) = self.defer_audio(id, path, &resolved)?;
                    deferred.insert(resolved.clone(), file);
                    audio_cache.insert(resolved.clone(), audio.clone());
                    audio
                } else {
                    let bytes = self.read_referenced(id, "audio file", path, &resolved)?;
                    let audio = decode_wav(&bytes).map_err(|problem| {
                        self.err(
                            &path.span(),
                            SessionErrorKind::BadAudio {
                                clip: id.to_string(),
                                path: PathBuf::from(path.get_ref()),
                                problem,
                            },
                        )
                    })?;
                    let audio = Arc::new(audio);
                    audio_cache.insert(resolved.clone(), audio.clone());
                    audio
                };
                deferred_file = deferred.get(&resolved).cloned();
                let frames = deferred_file.as_ref().map_or(audio.frames() as u64, |d| d.header.frames);
                let seconds = frames as f64 / f64::from(audio.sample_rate);
                (ClipContent::Audio(audio), seconds * session.tempo.0 / 60.0)
            }
        };
        let length = match length {
            Some(l) => l,
            None if natural_length > 0.0 && natural_length <= MAX_CLIP_BEATS => natural_length,
            None => {
                return Err(content_err(
                    header,
                    format!(
                        "its content is {natural_length} beats long, more than the {MAX_CLIP_BEATS} a clip may \
                         have; set length_beats"
                    ),
                ));
            }
        };

        let start_offset = match &c.start_offset_beats {
            None => 0.0,
            Some(s) => self.range(
                s,
                || format!("clip '{id}': start_offset_beats"),
                |x| x >= 0.0 && x < length,
                &format!("0 or more and less than the clip's length ({length} beats)"),
            )?,
        };
        let gain_db = self.gain(c.gain_db.as_ref(), || format!("clip '{id}': "))?;
        let quantise =
            self.quantise(c.quantise.as_ref(), || format!("clip '{id}': quantise"), true, Quantise::Global)?;
        let velocity_amount = match &c.velocity_amount {
            None => 0.0,
            Some(v) => self.range(
                v,
                || format!("clip '{id}': velocity_amount"),
                |x| (0.0..=1.0).contains(&x),
                "between 0 and 1",
            )?,
        };
        // Built from `Clip::new` so settings the format does not have keep the model's defaults.
        let mut clip = Clip::new(id, track_id, content, Beats(length));
        clip.looping = c.looping.unwrap_or(true);
        clip.start_offset = Beats(start_offset);
        clip.gain_db = gain_db;
        clip.quantise = quantise;
        clip.launch_mode = c.launch_mode.unwrap_or_default();
        clip.velocity_amount = velocity_amount;
        clip.legato = c.legato;
        clip.deferred = deferred_file;
        Ok(clip)
    }

    /// Reads and decodes every distinct audio file the clips reference, on
    /// [`LoadOptions::decode_threads`] threads (default: one per core). Files that fail are left
    /// out: the clip pass reads them again and reports the error with its line. With
    /// [`LoadOptions::map_audio`], files an engine can read in place (32-bit float, mono or
    /// stereo: [`MappedWav::probe`]) are only probed: their clips get no frames (the file's rate)
    /// and the file in `deferred` ([`Deferral::InPlace`]).
    fn prefetch_audio(
        &self,
        clips: &[Spanned<RawClip>],
        deferred: &mut HashMap<PathBuf, Arc<DeferredAudio>>,
    ) -> HashMap<PathBuf, Arc<AudioData>> {
        // Each distinct file, and where its first clip names it (for messages).
        let mut paths: Vec<(PathBuf, String)> = Vec::new();
        for c in clips {
            if let Some(f) = &c.get_ref().file {
                let p = self.base_dir.join(f.get_ref());
                if !f.get_ref().trim().is_empty() && !paths.iter().any(|(q, _)| *q == p) {
                    let origin = self.audio_origin(c.get_ref().id.get_ref().trim(), f);
                    paths.push((p, origin));
                }
            }
        }
        enum Loaded {
            Decoded(AudioData),
            Probed(crate::model::WavHeader),
        }
        let in_place = self.options.map_audio;
        let load = |(p, _): &(PathBuf, String)| -> Option<Loaded> {
            match in_place.then(|| MappedWav::probe(p)).flatten() {
                Some(header) => Some(Loaded::Probed(header)),
                None => read_wav_file(p).ok().map(Loaded::Decoded),
            }
        };
        let threads = match self.options.decode_threads {
            Some(n) if n > 0 => n,
            _ => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        };
        let workers = threads.min(paths.len()).max(1);
        let loaded: Vec<(usize, Loaded)> = if workers == 1 {
            paths.iter().enumerate().filter_map(|(i, p)| Some((i, load(p)?))).collect()
        } else {
            let next = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut out = Vec::new();
                            loop {
                                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let Some(p) = paths.get(i) else { break };
                                if let Some(l) = load(p) {
                                    out.push((i, l));
                                }
                            }
                            out
                        })
                    })
                    .collect();
                handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
            })
        };
        let mut audio = HashMap::new();
        for (i, l) in loaded {
            let (path, origin) = &paths[i];
            let data = match l {
                Loaded::Decoded(a) => a,
                Loaded::Probed(header) => {
                    let file = DeferredAudio {
                        path: path.clone(),
                        header,
                        origin: origin.clone(),
                        deferral: Deferral::InPlace,
                    };
                    deferred.insert(path.clone(), Arc::new(file));
                    AudioData { sample_rate: header.sample_rate, left: Vec::new(), right: Vec::new() }
                }
            };
            audio.insert(path.clone(), Arc::new(data));
        }
        audio
    }

    /// Where clip `clip` names its audio file `path`, for messages about the file:
    /// `session.toml:12:8: clip 'x': audio file 'x.wav'`.
    fn audio_origin(&self, clip: &str, path: &Spanned<String>) -> String {
        let (line, column) = line_col(self.text, path.span().start);
        format!("{}:{line}:{column}: clip '{clip}': audio file '{}'", self.file.display(), path.get_ref())
    }

    /// Probes the audio file a clip references without decoding it: its header is read and checked
    /// (the same checks as a full decode makes before reading samples). Returns the clip content
    /// until [`crate::stream::prepare`] decodes the file (no frames, the file's rate) and the file.
    fn defer_audio(
        &self,
        clip: &str,
        path: &Spanned<String>,
        resolved: &Path,
    ) -> Result<(Arc<AudioData>, Arc<DeferredAudio>), SessionError> {
        if path.get_ref().trim().is_empty() {
            return Err(self.err(
                &path.span(),
                SessionErrorKind::Content { clip: clip.to_string(), problem: "the audio file path is empty".into() },
            ));
        }
        let file = std::fs::File::open(resolved).map_err(|e| {
            self.err(
                &path.span(),
                SessionErrorKind::MissingFile {
                    clip: clip.to_string(),
                    what: "audio file",
                    path: PathBuf::from(path.get_ref()),
                    resolved: resolved.to_path_buf(),
                    reason: e.to_string(),
                },
            )
        })?;
        let size = file.metadata().map(|m| m.len() as usize).unwrap_or(usize::MAX);
        let header = crate::media::wav::WavFrames::new(std::io::BufReader::new(file), size)
            .map_err(|problem| {
                self.err(
                    &path.span(),
                    SessionErrorKind::BadAudio { clip: clip.to_string(), path: PathBuf::from(path.get_ref()), problem },
                )
            })?
            .header();
        let origin = self.audio_origin(clip, path);
        let audio = Arc::new(AudioData { sample_rate: header.sample_rate, left: Vec::new(), right: Vec::new() });
        let file = DeferredAudio { path: resolved.to_path_buf(), header, origin, deferral: Deferral::Budget };
        Ok((audio, Arc::new(file)))
    }

    /// Reads a file a clip references, with a clear error if it is missing.
    fn read_referenced(
        &self,
        clip: &str,
        what: &'static str,
        path: &Spanned<String>,
        resolved: &Path,
    ) -> Result<Vec<u8>, SessionError> {
        if path.get_ref().trim().is_empty() {
            return Err(self.err(
                &path.span(),
                SessionErrorKind::Content { clip: clip.to_string(), problem: format!("the {what} path is empty") },
            ));
        }
        std::fs::read(resolved).map_err(|e| {
            self.err(
                &path.span(),
                SessionErrorKind::MissingFile {
                    clip: clip.to_string(),
                    what,
                    path: PathBuf::from(path.get_ref()),
                    resolved: resolved.to_path_buf(),
                    reason: e.to_string(),
                },
            )
        })
    }

    fn notes(&self, id: &str, notes: &Spanned<Vec<Spanned<RawNote>>>) -> Result<MidiData, SessionError> {
        let mut checked = Vec::with_capacity(notes.get_ref().len());
        for (i, n) in notes.get_ref().iter().enumerate() {
            let &(start, length, key, velocity) = n.get_ref();
            let nth = i + 1;
            let bad = |what: &str, value: String, expected: &str| {
                self.err(
                    &n.span(),
                    SessionErrorKind::OutOfRange {
                        what: format!("clip '{id}': note {nth} {what}"),
                        value,
                        expected: expected.into(),
                    },
                )
            };
            if !(start.is_finite() && (0.0..=MAX_CLIP_BEATS).contains(&start)) {
                return Err(bad("start beat", start.to_string(), &format!("between 0 and {MAX_CLIP_BEATS}")));
            }
            if !(length.is_finite() && length > 0.0 && length <= MAX_CLIP_BEATS) {
                return Err(bad(
                    "length",
                    length.to_string(),
                    &format!("greater than 0 and at most {MAX_CLIP_BEATS} beats"),
                ));
            }
            if !(0..=127).contains(&key) {
                return Err(bad("key", key.to_string(), "between 0 and 127 (60 is middle C)"));
            }
            if !(1..=127).contains(&velocity) {
                return Err(bad("velocity", velocity.to_string(), "between 1 and 127"));
            }
            checked.push((start, length, key as u8, velocity as u8));
        }
        Ok(MidiData::from_notes(&checked))
    }
}

/// The beat of the last event of a MIDI clip (0 if empty).
pub(super) fn midi_end(midi: &MidiData) -> f64 {
    midi.events.iter().map(|e| e.beat.0).fold(0.0, f64::max)
}

/// `end` rounded up to a whole number of bars, at least one bar.
pub(super) fn round_up_to_bar(end: f64, beats_per_bar: f64) -> f64 {
    let bars = (end / beats_per_bar - 1e-9).ceil().max(1.0);
    bars * beats_per_bar
}

/// Parses `N/D` into quarter-note beats per bar.
pub(super) fn parse_time_signature(text: &str) -> Option<f64> {
    let (n, d) = text.trim().split_once('/')?;
    let n: u32 = n.trim().parse().ok()?;
    let d: u32 = d.trim().parse().ok()?;
    if n == 0 || ![1, 2, 4, 8, 16, 32].contains(&d) {
        return None;
    }
    let beats = f64::from(n) * 4.0 / f64::from(d);
    (beats <= 64.0).then_some(beats)
}
