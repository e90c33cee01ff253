//! A whole live set: its tracks, clips, scenes, playlists and arrangement, looked up by id or by
//! the names the session file gives them, and the invariants Pulse and Signal rely on.
//!
//! A [`Session`] is immutable once loaded and shared (`Arc`) between Pulse, Signal's preparation
//! step and the UI. Pure data; any thread.

use super::arrangement::Arrangement;
use super::audio::StreamSettings;
use super::clip::{Clip, ClipContent, clip_kind};
use super::ids::{ClipId, SceneId, TrackId};
use super::scene::{Playlist, Scene};
use super::track::{Track, TrackKind};
use crate::time::{Beats, Bpm, Quantise};

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
    /// Memory budget and disk streaming of long audio clips (see [`StreamSettings`]).
    pub streaming: StreamSettings,
    /// The playlist (an index into `playlists`) the set starts at beat 0 when nothing else is
    /// performed (no script, no preview): `[session] autoplay = "ID"`, for sets that play by
    /// themselves (installations, a backing band).
    pub autoplay: Option<usize>,
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
            streaming: StreamSettings::default(),
            autoplay: None,
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
                    clip_kind(clip).name(),
                    track.kind.name()
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
