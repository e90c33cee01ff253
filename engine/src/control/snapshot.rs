//! [`Snapshot`]: everything a display shows, in one value the node publishes at display rate —
//! the launcher as Pulse plans it ([`LauncherView`]), the transport and Link, the meters, and
//! the health of the audio path. Displays (the terminal status line, the UI, the conductor
//! client) read only this. Plain data (serde), any thread.

use serde::{Deserialize, Serialize};

use crate::model::Session;
use crate::pulse::{FollowSource, LauncherView};

/// What a display shows. See the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Publications so far (a display can tell a fresh snapshot from one it has drawn).
    pub seq: u64,
    /// The launcher as planned at the beat heard.
    pub launcher: LauncherView,
    /// The clock.
    pub transport: TransportView,
    /// Ableton Link, when the node plays on it.
    pub link: Option<LinkView>,
    /// Per track: the left/right peaks since the last snapshot.
    pub meters: Vec<[f32; 2]>,
    /// The master peaks since the last snapshot.
    pub master: [f32; 2],
    /// The audio path.
    pub health: HealthView,
    /// The last warning or refusal, for a status line (`None`: nothing to say).
    pub notice: Option<String>,
    /// The band's conductor, when the node plays with one.
    pub conductor: Option<ConductorView>,
}

/// The band's conductor, as this node sees it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConductorView {
    /// This node's name in the band.
    pub node: String,
    /// The conductor welcomes this node and is heard.
    pub connected: bool,
    /// The round trip to it (ms).
    pub rtt_ms: Option<f64>,
    /// How far this node's output position is ahead of the band's time (ms; negative: behind).
    /// It includes the output's buffering (up to a block on the null device).
    pub ahead_ms: Option<f64>,
    /// Entries of the band's log this node holds.
    pub entries: u64,
    /// Entries that arrived after their beat (started phase-aligned).
    pub late: u64,
    /// Presses applied on this node only while the conductor was unreachable.
    pub local_presses: u64,
}

/// The clock, as heard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransportView {
    /// The transport runs.
    pub playing: bool,
    /// The beat heard now.
    pub beat: f64,
    /// The tempo of the clock (BPM).
    pub tempo: f64,
    /// The sample the output has reached.
    pub sample: i64,
    /// The output's sample rate.
    pub sample_rate: u32,
}

/// Ableton Link.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinkView {
    /// Link is enabled.
    pub enabled: bool,
    /// Peers in the session.
    pub peers: u64,
}

/// The audio path's health.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HealthView {
    /// What plays: the device's name, or the null device.
    pub device: String,
    /// DSP load, smoothed (0..1 of the block period).
    pub dsp_load: f64,
    /// The highest DSP load of the last seconds.
    pub dsp_peak: f64,
    /// Underruns, callback gaps and missed deadlines so far.
    pub xruns: u64,
    /// Presses refused so far (bad names, streamed clips not ready).
    pub refused: u64,
    /// Frames of streamed clips played as silence because the disk was late.
    pub stream_underruns: u64,
}

impl Snapshot {
    /// The lines of the `status` command: the position, then each track with what plays and
    /// what is queued (with the beats left), the scene, the follow actions and the playlist.
    /// Any thread; allocates.
    pub fn status_lines(&self, session: &Session) -> Vec<String> {
        let l = &self.launcher;
        let now = self.transport.beat;
        let clip = |c: crate::model::ClipId| session.clips.get(c.index()).map_or("?", |c| c.id.as_str());
        let scene = |s: crate::model::SceneId| session.scenes.get(s.index()).map_or("?", |s| s.id.as_str());
        let beats_left = |at: f64| {
            let n = (at - now).max(0.0);
            format!("in {n:.1} beat{}", if (n - 1.0).abs() < 0.05 { "" } else { "s" })
        };
        let mut out = vec![format!(
            "bar {}  {:.2} BPM  {}  {}  quantise {}{}",
            bar_label(l.bar.0, l.bar.1),
            self.transport.tempo,
            metre(l.beats_per_bar),
            if self.transport.playing { "playing" } else { "stopped" },
            l.quantise.name(),
            match &self.link {
                Some(k) if k.enabled => format!("  Link: {} peer(s)", k.peers),
                _ => String::new(),
            }
        )];
        if let Some(c) = &self.conductor {
            let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.1} ms"));
            out.push(format!(
                "conductor: {} as '{}', round trip {}, output {} of the band's time; {} entries, {} late{}",
                if c.connected { "connected" } else { "UNREACHABLE (presses apply here only)" },
                c.node,
                c.rtt_ms.map_or("-".to_string(), |v| format!("{v:.1} ms")),
                ms(c.ahead_ms),
                c.entries,
                c.late,
                if c.local_presses > 0 { format!(", {} local press(es)", c.local_presses) } else { String::new() }
            ));
        }
        match (l.scene, l.queued_scene) {
            (s, Some((q, at))) => out.push(format!(
                "scene: {}  queued: {} at beat {:.2}, {}",
                s.map_or("-", scene),
                q.map_or("stop", scene),
                at.0,
                beats_left(at.0)
            )),
            (Some(s), None) => out.push(format!("scene: {}", scene(s))),
            (None, None) => {}
        }
        for (t, v) in session.tracks.iter().zip(&l.tracks) {
            let playing = match &v.playing {
                Some(p) => format!("{} ({:.0}%)", clip(p.clip), p.progress * 100.0),
                None => "-".into(),
            };
            let queued = match v.queued {
                Some((c, at)) => {
                    format!("  queued: {} at beat {:.2}, {}", c.map_or("stop", clip), at.0, beats_left(at.0))
                }
                None => String::new(),
            };
            out.push(format!("  {}: {playing}{queued}", t.id));
        }
        for (source, at) in &l.follow {
            let who = match source {
                FollowSource::Clip(c) => format!("clip {}", clip(*c)),
                FollowSource::Scene(s) => format!("scene {}", scene(*s)),
            };
            out.push(format!("follow action of {who} decides at beat {:.2}, {}", at.0, beats_left(at.0)));
        }
        if let Some(s) = &l.sequence {
            let name = match s.playlist {
                Some(p) => format!("playlist {}", session.playlists.get(p).map_or("?", |p| p.id.as_str())),
                None => "playthrough".into(),
            };
            out.push(format!(
                "{name}: step {} of {} at beat {:.2}, {}",
                s.next_step + 1,
                s.steps,
                s.at.0,
                beats_left(s.at.0)
            ));
        }
        out
    }
}

/// A bar of `beats_per_bar` quarter-note beats as a time signature: `4/4`, `3/4`, `7/8` (3.5
/// beats), `15/16` (3.75 beats); a length no signature up to 1/64 notes can write stays in beats
/// (`3.3 beats`). Any thread.
pub fn metre(beats_per_bar: f64) -> String {
    for denominator in [4u32, 8, 16, 32, 64] {
        let numerator = beats_per_bar * f64::from(denominator) / 4.0;
        if (numerator - numerator.round()).abs() < 1e-9 && numerator >= 1.0 {
            return format!("{}/{denominator}", numerator.round() as u64);
        }
    }
    format!("{beats_per_bar:.1} beats")
}

/// A position as the terminal and the UI write it: `bar.beat`, both counted from 1, from the
/// bar index and the beats into that bar (as `LauncherView::bar` holds them). Any thread.
pub fn bar_label(bar: i64, in_bar: f64) -> String {
    format!("{}.{}", bar + 1, (in_bar + 1e-6).floor() as i64 + 1)
}
