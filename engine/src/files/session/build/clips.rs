//! Building a session's clips from its parsed file: ranges, launch settings, audio (read, probed
//! under a memory budget, or deferred for an offline render to map in place) and MIDI notes.
//! Control thread; reads files, decoding audio on threads of its own.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use super::super::error::{SessionError, SessionErrorKind};
use super::super::raw::*;
use super::{Ctx, MAX_CLIP_BEATS, Source, midi_end, round_up_to_bar};
use crate::files::diagnostics::{known_list, line_col};
use crate::media::smf::decode_smf;
use crate::media::wav::{MappedWav, decode_wav, read_wav_file};
use crate::model::{AudioData, Clip, ClipContent, Deferral, DeferredAudio, MidiData, Session, TrackKind};
use crate::time::{Beats, Quantise};

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn clip(
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
    pub(super) fn prefetch_audio(
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
    pub(super) fn audio_origin(&self, clip: &str, path: &Spanned<String>) -> String {
        let (line, column) = line_col(self.text, path.span().start);
        format!("{}:{line}:{column}: clip '{clip}': audio file '{}'", self.file.display(), path.get_ref())
    }

    /// Probes the audio file a clip references without decoding it: its header is read and checked
    /// (the same checks as a full decode makes before reading samples). Returns the clip content
    /// until `media::stream::prepare` decodes the file (no frames, the file's rate) and the file.
    pub(super) fn defer_audio(
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
    pub(super) fn read_referenced(
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

    pub(super) fn notes(&self, id: &str, notes: &Spanned<Vec<Spanned<RawNote>>>) -> Result<MidiData, SessionError> {
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
