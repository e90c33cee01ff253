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
        for scene in &self.scenes {
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
}

impl Track {
    /// A track with unity gain, centred, not muted or soloed.
    pub fn new(id: impl Into<String>, kind: TrackKind) -> Track {
        Track { id: id.into(), kind, gain_db: 0.0, pan: 0.0, mute: false, solo: false, instrument: None }
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
}

impl Scene {
    /// A scene with default settings.
    pub fn new(id: impl Into<String>, clips: Vec<ClipId>) -> Scene {
        Scene { id: id.into(), clips, quantise: Quantise::Global, empty_slots: EmptySlot::Stop }
    }
}

/// Converts decibels to a linear gain.
#[inline]
pub fn db_to_gain(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}
