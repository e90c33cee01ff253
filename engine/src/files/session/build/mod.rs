//! Checking a parsed session file and building the [`Session`] from it: ids resolved, ranges
//! checked, audio and MIDI files read (or only probed: under a memory budget, and for an offline
//! render the 32-bit float WAV files it reads in place), every problem reported with its line.
//! Control thread (audio files are decoded on threads of its own); does file I/O.

mod clips;
mod inputs;
mod sequence;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use super::error::{SessionError, SessionErrorKind};
use super::raw::*;
use crate::files::diagnostics::{TomlProblem, known_list, line_col, parse_toml};
use crate::model::{ClipId, MidiData, MidiOutRoute, Scene, SceneId, Session, Track, TrackId, TrackKind};
use crate::time::{Bpm, Quantise};

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
    let raw = parse_raw(text, file)?;
    let session = ctx.build(raw)?;
    session.validate().map_err(|m| SessionError::whole_file(file, SessionErrorKind::Model(m)))?;
    Ok(session)
}

/// The file as serde sees it, with TOML and schema errors located in `file`.
pub(super) fn parse_raw(text: &str, file: &Path) -> Result<RawFile, SessionError> {
    let ctx = Ctx { file, text, base_dir: base_dir(file), options: LoadOptions::default() };
    parse_toml(text).map_err(|(span, problem)| {
        let kind = match problem {
            TomlProblem::Syntax(message) => SessionErrorKind::Syntax { message },
            TomlProblem::Schema(message) => SessionErrorKind::Schema { message },
        };
        match span {
            Some(span) => ctx.err(&span, kind),
            None => SessionError::whole_file(file, kind),
        }
    })
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
            let input = self.track_input(&id, t)?;
            let mut track = Track::new(id, t.kind);
            track.gain_db = gain_db;
            track.pan = pan;
            track.mute = t.mute;
            track.solo = t.solo;
            track.instrument = t.instrument.as_ref().map(|i| i.get_ref().clone());
            track.keep_playing = t.keep_playing;
            track.midi_out = midi_out;
            track.node = t.node.clone();
            track.input = input;
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
        if let Some(id) = raw.session.as_ref().and_then(|s| s.get_ref().autoplay.as_ref()) {
            let name = id.get_ref().trim();
            let index = session.playlists.iter().position(|p| p.id == name).ok_or_else(|| {
                let known: Vec<&str> = session.playlists.iter().map(|p| p.id.as_str()).collect();
                self.err(
                    &id.span(),
                    SessionErrorKind::Playlist {
                        playlist: name.to_string(),
                        problem: format!(
                            "autoplay names a playlist that does not exist (playlists: {})",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ),
                    },
                )
            })?;
            session.autoplay = Some(index);
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
