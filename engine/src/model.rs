//! The session model: tracks, clips (audio or MIDI), scenes, and the ids that name them.
//!
//! A [`Session`] is immutable once loaded and shared (`Arc`) between Pulse, Signal's preparation
//! step and the UI. Ids are dense indices into the session's vectors, so lookups are O(1) and
//! realtime-safe; the human-readable names from the session file are kept alongside.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::instrument::InstrumentSpec;
use crate::time::{Beats, Bpm, Quantise};

/// Index of a track in [`Session::tracks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TrackId(pub u32);

/// Index of a clip in [`Session::clips`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClipId(pub u32);

/// Index of a scene in [`Session::scenes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SceneId(pub u32);

impl TrackId {
    /// The index as `usize`.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl ClipId {
    /// The index as `usize`.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl SceneId {
    /// The index as `usize`.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A whole live set.
#[derive(Debug, Clone)]
pub struct Session {
    /// Display name.
    pub name: String,
    /// Tempo the set starts at.
    pub tempo: Bpm,
    /// Beats per bar (time-signature numerator in quarter-note beats; Link's quantum).
    pub beats_per_bar: f64,
    /// Seed for every random choice (follow actions), so performances are reproducible.
    pub seed: u64,
    /// Global launch quantisation.
    pub quantise: Quantise,
    /// Length of the declicking crossfade applied at switches, stops and mid-waveform starts, in ms.
    pub crossfade_ms: f64,
    /// Tracks, in display order.
    pub tracks: Vec<Track>,
    /// Clips of every track.
    pub clips: Vec<Clip>,
    /// Scenes, in display order.
    pub scenes: Vec<Scene>,
    /// Scene playlists: ordered scenes with repeat counts.
    pub playlists: Vec<Playlist>,
    /// The linear arrangement, on the same transport as the launcher.
    pub arrangement: Arrangement,
    /// Memory budget and disk streaming of long audio clips (see [`crate::stream`]).
    pub streaming: crate::stream::StreamSettings,
}

impl Session {
    /// An empty session at `tempo` in 4/4.
    pub fn new(name: impl Into<String>, tempo: Bpm) -> Session {
        Session {
            name: name.into(),
            tempo,
            beats_per_bar: 4.0,
            seed: 0,
            quantise: Quantise::Bar,
            crossfade_ms: 5.0,
            tracks: Vec::new(),
            clips: Vec::new(),
            scenes: Vec::new(),
            playlists: Vec::new(),
            arrangement: Arrangement::default(),
            streaming: crate::stream::StreamSettings::default(),
        }
    }

    /// Adds a track and returns its id.
    pub fn add_track(&mut self, track: Track) -> TrackId {
        self.tracks.push(track);
        TrackId(self.tracks.len() as u32 - 1)
    }

    /// Adds a clip and returns its id.
    pub fn add_clip(&mut self, clip: Clip) -> ClipId {
        self.clips.push(clip);
        ClipId(self.clips.len() as u32 - 1)
    }

    /// Adds a scene and returns its id.
    pub fn add_scene(&mut self, scene: Scene) -> SceneId {
        self.scenes.push(scene);
        SceneId(self.scenes.len() as u32 - 1)
    }

    /// The track with this id.
    pub fn track(&self, id: TrackId) -> &Track {
        &self.tracks[id.index()]
    }

    /// The clip with this id.
    pub fn clip(&self, id: ClipId) -> &Clip {
        &self.clips[id.index()]
    }

    /// The scene with this id.
    pub fn scene(&self, id: SceneId) -> &Scene {
        &self.scenes[id.index()]
    }

    /// Finds a track by its session-file id.
    pub fn track_by_name(&self, name: &str) -> Option<TrackId> {
        self.tracks.iter().position(|t| t.id == name).map(|i| TrackId(i as u32))
    }

    /// Finds a clip by its session-file id.
    pub fn clip_by_name(&self, name: &str) -> Option<ClipId> {
        self.clips.iter().position(|c| c.id == name).map(|i| ClipId(i as u32))
    }

    /// Finds a scene by its session-file id.
    pub fn scene_by_name(&self, name: &str) -> Option<SceneId> {
        self.scenes.iter().position(|s| s.id == name).map(|i| SceneId(i as u32))
    }

    /// Finds a playlist by its session-file id.
    pub fn playlist_by_name(&self, name: &str) -> Option<usize> {
        self.playlists.iter().position(|p| p.id == name)
    }

    /// The clips of a track in session order (the order `next` / `previous` follow actions use).
    pub fn clips_of_track(&self, track: TrackId) -> Vec<ClipId> {
        (0..self.clips.len() as u32).map(ClipId).filter(|c| self.clip(*c).track == track).collect()
    }

    /// A scene's length: its longest clip (a scene with no clips lasts one bar).
    pub fn scene_length(&self, scene: SceneId) -> Beats {
        let s = self.scene(scene);
        let len = s.clips.iter().map(|c| self.clip(*c).length.0).fold(0.0, f64::max);
        if len > 0.0 { Beats(len) } else { Beats(s.beats_per_bar.unwrap_or(self.beats_per_bar)) }
    }

    /// The scene a clip belongs to (the first scene that lists it), if any.
    pub fn scene_of_clip(&self, clip: ClipId) -> Option<SceneId> {
        self.scenes.iter().position(|s| s.clips.contains(&clip)).map(|i| SceneId(i as u32))
    }

    /// Checks the invariants Pulse and Signal rely on: every reference points at something that
    /// exists, clips sit on tracks of their kind, lengths are positive and a scene holds at most
    /// one clip per track. Session files are checked with better messages while they are parsed;
    /// this is the last line of defence for sessions built in code.
    pub fn validate(&self) -> Result<(), String> {
        if !(Bpm::MIN..=Bpm::MAX).contains(&self.tempo.0) {
            return Err(format!("tempo {} is outside {}..={} BPM", self.tempo.0, Bpm::MIN, Bpm::MAX));
        }
        if !(self.beats_per_bar > 0.0 && self.beats_per_bar <= 64.0) {
            return Err(format!("beats per bar {} must be in (0, 64]", self.beats_per_bar));
        }
        for clip in &self.clips {
            let Some(track) = self.tracks.get(clip.track.index()) else {
                return Err(format!("clip '{}' is on a track that does not exist", clip.id));
            };
            match (&clip.content, track.kind) {
                (ClipContent::Audio(_), TrackKind::Audio) | (ClipContent::Midi(_), TrackKind::Midi) => {}
                (ClipContent::Audio(_), TrackKind::Midi) => {
                    return Err(format!("audio clip '{}' is on MIDI track '{}'", clip.id, track.id));
                }
                (ClipContent::Midi(_), TrackKind::Audio) => {
                    return Err(format!("MIDI clip '{}' is on audio track '{}'", clip.id, track.id));
                }
            }
            if !(clip.length.0 > 0.0 && clip.length.0.is_finite()) {
                return Err(format!("clip '{}' has length {} beats; it must be positive", clip.id, clip.length.0));
            }
        }
        for p in &self.playlists {
            if let Some(step) = p.steps.iter().find(|st| st.scene.index() >= self.scenes.len()) {
                return Err(format!("playlist '{}' names scene index {} that does not exist", p.id, step.scene.0));
            }
        }
        for pl in &self.arrangement.clips {
            let Some(clip) = self.clips.get(pl.clip.index()) else {
                return Err("the arrangement names a clip that does not exist".into());
            };
            let Some(track) = self.tracks.get(pl.track.index()) else {
                return Err(format!("arrangement clip '{}' is on a track that does not exist", clip.id));
            };
            if clip_kind(clip) != track.kind {
                return Err(format!(
                    "arrangement: clip '{}' cannot go on track '{}' ({} clip on a {} track)",
                    clip.id,
                    track.id,
                    kind_name(clip_kind(clip)),
                    kind_name(track.kind)
                ));
            }
            if !(pl.length.0 > 0.0 && pl.start.0.is_finite() && pl.offset.0 >= 0.0) {
                return Err(format!("arrangement clip '{}' at beat {} has no length", clip.id, pl.start.0));
            }
        }
        for scene in &self.scenes {
            if let Some(t) = scene.tempo
                && !(Bpm::MIN..=Bpm::MAX).contains(&t.0)
            {
                return Err(format!("scene '{}': tempo {} is outside {}..={} BPM", scene.id, t.0, Bpm::MIN, Bpm::MAX));
            }
            let mut seen = vec![false; self.tracks.len()];
            for c in &scene.clips {
                let Some(clip) = self.clips.get(c.index()) else {
                    return Err(format!("scene '{}' names a clip that does not exist", scene.id));
                };
                if std::mem::replace(&mut seen[clip.track.index()], true) {
                    return Err(format!(
                        "scene '{}' has two clips on track '{}'",
                        scene.id,
                        self.tracks[clip.track.index()].id
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What a track plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    /// Audio clips.
    Audio,
    /// MIDI clips, played by the track's instrument.
    Midi,
}

/// A mixer channel with one clip slot playing at a time.
#[derive(Debug, Clone)]
pub struct Track {
    /// Stable id (from the session file).
    pub id: String,
    /// Audio or MIDI.
    pub kind: TrackKind,
    /// Fader gain in dB.
    pub gain_db: f64,
    /// Pan, -1 (left) to +1 (right), equal-power.
    pub pan: f64,
    /// Muted tracks are rendered but not heard.
    pub mute: bool,
    /// When any track is soloed, only soloed tracks are heard.
    pub solo: bool,
    /// The built-in instrument that plays a MIDI track's clips (ignored on audio tracks).
    pub instrument: Option<InstrumentSpec>,
    /// A full scene launch does not stop this track (it keeps playing its clip).
    pub keep_playing: bool,
    /// Where a MIDI track's clips also go: an external MIDI output port (ignored on audio tracks).
    /// A track with a route plays its built-in instrument only if `instrument` is set.
    pub midi_out: Option<MidiOutRoute>,
}

/// A MIDI track's route to an external synth: an output port by name, and optionally the
/// channel every message is sent on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MidiOutRoute {
    /// The output port's name (matched as MIDI ports are: exactly, else by a unique substring).
    pub port: String,
    /// Channel 0..=15 that replaces the clip's own channels; `None` keeps the clip's channels.
    pub channel: Option<u8>,
}

impl Track {
    /// A track with unity gain, centred, not muted or soloed.
    pub fn new(id: impl Into<String>, kind: TrackKind) -> Track {
        Track {
            id: id.into(),
            kind,
            gain_db: 0.0,
            pan: 0.0,
            mute: false,
            solo: false,
            instrument: None,
            keep_playing: false,
            midi_out: None,
        }
    }
}

/// How a clip responds to its launch button, as in Ableton Live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchMode {
    /// Press starts the clip (quantised); release does nothing.
    #[default]
    Trigger,
    /// Press starts the clip; release stops it.
    Gate,
    /// Press starts the clip if it is not playing, and stops it if it is.
    Toggle,
    /// While held, the clip retriggers on every quantisation step; release stops it.
    Repeat,
}

/// A clip: audio or MIDI content with loop and launch settings.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Stable id (from the session file).
    pub id: String,
    /// The track it lives on.
    pub track: TrackId,
    /// Audio samples or MIDI events.
    pub content: ClipContent,
    /// Whether it loops; a clip that does not loop plays once and ends.
    pub looping: bool,
    /// Loop length (and, for a one-shot, play length) in beats.
    pub length: Beats,
    /// Where playback starts within the content, in beats.
    pub start_offset: Beats,
    /// Clip gain in dB.
    pub gain_db: f64,
    /// Launch quantisation (`Global` defers to the scene and the session).
    pub quantise: Quantise,
    /// Launch mode.
    pub launch_mode: LaunchMode,
    /// How much launch velocity scales the clip's level: 0 = not at all, 1 = fully.
    pub velocity_amount: f64,
    /// Legato: when this clip replaces another on its track, it continues from the musical
    /// position the old clip had reached instead of starting from its beginning.
    pub legato: bool,
    /// What happens automatically after the clip has played a number of loops.
    pub follow: Option<FollowActions>,
    /// Set when the clip streams from disk ([`crate::stream::prepare`]): `content` then holds only
    /// its head.
    pub stream: Option<Arc<crate::stream::StreamedClip>>,
    /// Set when the loader left the clip's audio file undecoded because a memory budget is set
    /// ([`crate::session_file::LoadOptions`]): `content` then holds no frames (only the file's
    /// rate) until [`crate::stream::prepare`] decodes the file. Clips sharing a file share it.
    pub deferred: Option<Arc<crate::audio_file::DeferredAudio>>,
}

impl Clip {
    /// A looping clip with default launch settings.
    pub fn new(id: impl Into<String>, track: TrackId, content: ClipContent, length: Beats) -> Clip {
        Clip {
            id: id.into(),
            track,
            content,
            looping: true,
            length,
            start_offset: Beats::ZERO,
            gain_db: 0.0,
            quantise: Quantise::Global,
            launch_mode: LaunchMode::Trigger,
            velocity_amount: 0.0,
            legato: false,
            follow: None,
            stream: None,
            deferred: None,
        }
    }
}

/// The content of a clip.
#[derive(Debug, Clone)]
pub enum ClipContent {
    /// Audio samples.
    Audio(Arc<AudioData>),
    /// MIDI events.
    Midi(Arc<MidiData>),
}

/// Decoded audio, always stored as two planar channels (mono is duplicated).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioData {
    /// Sample rate of `left`/`right`.
    pub sample_rate: u32,
    /// Left channel.
    pub left: Vec<f32>,
    /// Right channel.
    pub right: Vec<f32>,
}

impl AudioData {
    /// Frames of audio.
    pub fn frames(&self) -> usize {
        self.left.len()
    }
}

/// A MIDI message as the engine uses it (channel kept for external outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MidiMsg {
    /// Note on (velocity 1..=127; a note-on with velocity 0 is stored as a note-off).
    NoteOn {
        /// MIDI channel 0..=15.
        channel: u8,
        /// Key 0..=127.
        key: u8,
        /// Velocity 1..=127.
        velocity: u8,
    },
    /// Note off.
    NoteOff {
        /// MIDI channel 0..=15.
        channel: u8,
        /// Key 0..=127.
        key: u8,
    },
    /// Control change.
    Cc {
        /// MIDI channel 0..=15.
        channel: u8,
        /// Controller number 0..=127.
        controller: u8,
        /// Value 0..=127.
        value: u8,
    },
}

/// A MIDI message at a position in a clip.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MidiEvent {
    /// Position from the start of the clip content, in beats.
    pub beat: Beats,
    /// The message.
    pub msg: MidiMsg,
}

/// The events of a MIDI clip, sorted by beat (note-offs before note-ons at the same beat).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MidiData {
    /// Sorted events.
    pub events: Vec<MidiEvent>,
}

impl MidiData {
    /// Builds clip data from notes `(start, length, key, velocity)` in beats, sorting the events.
    pub fn from_notes(notes: &[(f64, f64, u8, u8)]) -> MidiData {
        let mut events = Vec::with_capacity(notes.len() * 2);
        for &(start, len, key, velocity) in notes {
            events.push(MidiEvent {
                beat: Beats(start),
                msg: MidiMsg::NoteOn { channel: 0, key, velocity: velocity.clamp(1, 127) },
            });
            events.push(MidiEvent { beat: Beats(start + len.max(0.0)), msg: MidiMsg::NoteOff { channel: 0, key } });
        }
        let mut data = MidiData { events };
        data.sort();
        data
    }

    /// Sorts events by beat, note-offs first at equal beats (so a repeated note retriggers).
    pub fn sort(&mut self) {
        fn rank(m: &MidiMsg) -> u8 {
            match m {
                MidiMsg::NoteOff { .. } => 0,
                MidiMsg::Cc { .. } => 1,
                MidiMsg::NoteOn { .. } => 2,
            }
        }
        self.events.sort_by(|a, b| a.beat.0.total_cmp(&b.beat.0).then_with(|| rank(&a.msg).cmp(&rank(&b.msg))));
    }
}

/// What happens on a track that has no clip in a scene when the scene launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmptySlot {
    /// The track stops (Live's default for a full scene launch).
    #[default]
    Stop,
    /// The track keeps playing whatever it was playing.
    Continue,
}

/// A row of clips that launch together.
#[derive(Debug, Clone)]
pub struct Scene {
    /// Stable id (from the session file).
    pub id: String,
    /// The clips it launches (at most one per track).
    pub clips: Vec<ClipId>,
    /// Launch quantisation for the scene and the default for its clips.
    pub quantise: Quantise,
    /// What tracks without a clip in this scene do when it launches.
    pub empty_slots: EmptySlot,
    /// Tempo the scene sets when it launches, as Live's scene tempo does.
    pub tempo: Option<Bpm>,
    /// Beats per bar the scene sets when it launches (its time signature).
    pub beats_per_bar: Option<f64>,
    /// What happens automatically after the scene has played a number of times its length.
    pub follow: Option<FollowActions>,
}

impl Scene {
    /// A scene with default settings.
    pub fn new(id: impl Into<String>, clips: Vec<ClipId>) -> Scene {
        Scene {
            id: id.into(),
            clips,
            quantise: Quantise::Global,
            empty_slots: EmptySlot::Stop,
            tempo: None,
            beats_per_bar: None,
            follow: None,
        }
    }
}

/// Where a follow action goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FollowTarget {
    /// The next clip on the track (next scene), wrapping round at the end.
    Next,
    /// The previous clip on the track (previous scene), wrapping round at the start.
    Previous,
    /// The first clip on the track (first scene).
    First,
    /// The last clip on the track (last scene).
    Last,
    /// A clip (scene) chosen at random (seeded) among the candidates the constraints allow.
    Random,
    /// Play the same clip (scene) again from its start.
    Repeat,
    /// Stop the clip (for a scene: stop every track).
    Stop,
    /// A specific clip.
    Clip(ClipId),
    /// A specific scene.
    Scene(SceneId),
}

/// Which candidates a follow action may choose among. Ids are clip indices for a clip's follow
/// actions (clips of the same track) and scene indices for a scene's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowConstraints {
    /// Never choose the clip (scene) that is playing.
    pub no_repeat: bool,
    /// Never choose these.
    pub exclude: Vec<u32>,
    /// Choose only among these (empty: all).
    pub only: Vec<u32>,
}

/// One alternative of a follow action (Live's action A or B).
#[derive(Debug, Clone, PartialEq)]
pub struct FollowAction {
    /// Where it goes.
    pub next: FollowTarget,
    /// Its chance, 0..=1. With two alternatives whose chances add up to 1 or more, one of them
    /// always happens, in proportion to the chances; when they add up to less than 1, nothing
    /// happens with the remaining chance, and the clip (scene) plays on until the next decision.
    pub chance: f64,
    /// Which candidates `next`, `previous`, `random` may pick.
    pub constraints: FollowConstraints,
}

/// A clip's or scene's follow actions: after `after_loops` passes, A or B happens.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowActions {
    /// Passes (loops of a clip; lengths of a scene) before each decision. At least 1.
    pub after_loops: u32,
    /// Action A.
    pub a: FollowAction,
    /// Action B, if any.
    pub b: Option<FollowAction>,
}

/// One step of a playlist.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaylistStep {
    /// The scene.
    pub scene: SceneId,
    /// How many times its length it plays (at least 1).
    pub repeat: u32,
}

/// An ordered list of scenes with repeat counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Playlist {
    /// Stable id (from the session file).
    pub id: String,
    /// The steps in order.
    pub steps: Vec<PlaylistStep>,
    /// Start again from the first step after the last (else stop every track).
    pub looping: bool,
}

/// A clip placed on the arrangement's timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// The lane (track) it plays on.
    pub track: TrackId,
    /// The clip (same id as in the launcher: moving keeps it).
    pub clip: ClipId,
    /// Beat where it starts.
    pub start: Beats,
    /// How long it plays, in beats (looping clips loop inside it).
    pub length: Beats,
    /// Position in the clip at `start`, in beats (0 = its beginning).
    pub offset: Beats,
}

impl Placement {
    /// Beat where it ends.
    pub fn end(&self) -> Beats {
        Beats(self.start.0 + self.length.0)
    }
}

/// A tempo (and time-signature) change on the arrangement's timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TempoChange {
    /// Beat where it applies.
    pub beat: Beats,
    /// New tempo.
    pub tempo: Option<Bpm>,
    /// New beats per bar.
    pub beats_per_bar: Option<f64>,
}

/// The linear arrangement: clips on lanes, and tempo changes, all in beats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arrangement {
    /// Placed clips (any order; lanes are tracks).
    pub clips: Vec<Placement>,
    /// Tempo and time-signature changes, in beat order.
    pub tempo: Vec<TempoChange>,
}

impl Arrangement {
    /// Where the arrangement ends (its last clip's end).
    pub fn end(&self) -> Beats {
        Beats(self.clips.iter().map(|p| p.end().0).fold(0.0, f64::max))
    }
}

/// Why a clip cannot be placed on the arrangement.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlaceError {
    /// The clip's content does not fit the lane: an audio clip on a MIDI lane or vice versa.
    #[error("clip '{clip}' is {clip_kind} and lane '{track}' is {track_kind}: pick a {clip_kind} lane")]
    WrongLane {
        /// Clip id.
        clip: String,
        /// Track id.
        track: String,
        /// `audio` / `MIDI`.
        clip_kind: &'static str,
        /// `audio` / `MIDI`.
        track_kind: &'static str,
    },
    /// The clip or the track does not exist.
    #[error("no such clip or track")]
    Missing,
    /// A placement needs a positive length and a start beat that is a number.
    #[error("a placement needs a positive length and a finite start")]
    BadRange,
}

/// Whether a clip holds audio or MIDI.
pub fn clip_kind(clip: &Clip) -> TrackKind {
    match clip.content {
        ClipContent::Audio(_) => TrackKind::Audio,
        ClipContent::Midi(_) => TrackKind::Midi,
    }
}

fn kind_name(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Audio => "audio",
        TrackKind::Midi => "MIDI",
    }
}

impl Session {
    /// Commits scenes `from..=to`, played in order as the playthrough preview plays them, to the
    /// arrangement starting at beat `at`: each scene lasts its length (its longest clip), shorter
    /// clips loop inside it, tracks a scene has no clip for stop or continue as the scene says
    /// (or keep playing, if the track is set to), and scene tempos become tempo changes. Lanes
    /// are the tracks. Returns the beat where the committed part ends.
    ///
    /// Rendering the arrangement afterwards sounds exactly like rendering the playthrough.
    pub fn commit_scenes(&mut self, from: SceneId, to: SceneId, at: Beats) -> Beats {
        let (lo, hi) = (from.0.min(to.0), from.0.max(to.0).min(self.scenes.len().saturating_sub(1) as u32));
        // The placement open on each lane: (clip, start).
        let mut open: Vec<Option<(ClipId, Beats)>> = vec![None; self.tracks.len()];
        let mut placed = Vec::new();
        let mut t = at;
        let close = |open: &mut Option<(ClipId, Beats)>, end: Beats, track: usize, placed: &mut Vec<Placement>| {
            if let Some((clip, start)) = open.take()
                && end.0 > start.0
            {
                placed.push(Placement {
                    track: TrackId(track as u32),
                    clip,
                    start,
                    length: Beats(end.0 - start.0),
                    offset: Beats::ZERO,
                });
            }
        };
        for i in lo..=hi {
            let scene = self.scene(SceneId(i)).clone();
            for (track, slot) in open.iter_mut().enumerate() {
                let clip = scene.clips.iter().copied().find(|c| self.clip(*c).track.index() == track);
                match clip {
                    Some(c) => {
                        close(slot, t, track, &mut placed);
                        // A one-shot plays once inside its placement.
                        *slot = Some((c, t));
                    }
                    None if scene.empty_slots == EmptySlot::Stop && !self.tracks[track].keep_playing => {
                        close(slot, t, track, &mut placed);
                    }
                    None => {}
                }
            }
            if scene.tempo.is_some() || scene.beats_per_bar.is_some() {
                self.arrangement.tempo.push(TempoChange {
                    beat: t,
                    tempo: scene.tempo,
                    beats_per_bar: scene.beats_per_bar,
                });
            }
            t = Beats(t.0 + self.scene_length(SceneId(i)).0);
        }
        for (track, slot) in open.iter_mut().enumerate() {
            close(slot, t, track, &mut placed);
        }
        self.arrangement.clips.extend(placed);
        self.arrangement.tempo.sort_by(|a, b| a.beat.0.total_cmp(&b.beat.0));
        t
    }

    /// Moves a launcher clip onto the arrangement at `start` on lane `track` (the clip keeps its
    /// id and leaves the launcher's scenes), or duplicates it (`duplicate = true`: a new clip with
    /// id `<id>-copy`, `<id>-copy2`, ... is placed and the original stays in the launcher).
    /// Returns the clip that was placed. The content is checked against the lane.
    pub fn place_clip(
        &mut self,
        clip: ClipId,
        track: TrackId,
        start: Beats,
        length: Option<Beats>,
        duplicate: bool,
    ) -> Result<ClipId, PlaceError> {
        let c = self.clips.get(clip.index()).ok_or(PlaceError::Missing)?;
        let t = self.tracks.get(track.index()).ok_or(PlaceError::Missing)?;
        if clip_kind(c) != t.kind {
            return Err(PlaceError::WrongLane {
                clip: c.id.clone(),
                track: t.id.clone(),
                clip_kind: kind_name(clip_kind(c)),
                track_kind: kind_name(t.kind),
            });
        }
        let length = length.unwrap_or(c.length);
        if !(length.0 > 0.0 && start.0.is_finite()) {
            return Err(PlaceError::BadRange);
        }
        let placed = if duplicate {
            let mut copy = c.clone();
            let mut n = 1;
            copy.id = loop {
                let id = if n == 1 { format!("{}-copy", c.id) } else { format!("{}-copy{n}", c.id) };
                if self.clip_by_name(&id).is_none() {
                    break id;
                }
                n += 1;
            };
            copy.track = track;
            self.add_clip(copy)
        } else {
            // Moved: it leaves the launcher's scenes and now lives on this lane.
            for scene in &mut self.scenes {
                scene.clips.retain(|c| *c != clip);
            }
            self.clips[clip.index()].track = track;
            clip
        };
        self.arrangement.clips.push(Placement { track, clip: placed, start, length, offset: Beats::ZERO });
        Ok(placed)
    }
}

/// Converts decibels to a linear gain.
#[inline]
pub fn db_to_gain(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}
