//! Playing in a band with a conductor (`play --conductor CODE`): the node follows the band's log
//! instead of pressing its performers' commands itself.
//!
//! - Every press of this node's performers (the terminal, MIDI pads, the window) goes to the
//!   conductor ([`ConductorLink::press`]); it comes back, like every other node's, as an entry of
//!   the log with a target beat, which every node makes exactly there ([`log::BandLog`]).
//! - The node's clock is the band's: its sample `s` is band sample `s`, counted from the
//!   conductor's origin ([`start`]); it starts at the band's current beat with Pulse
//!   fast-forwarded through the log, phase-aligned, so it comes in on the right bar mid-song.
//! - It renders only its own tracks (`node = "NAME"` in the set, or `--tracks`); the others are
//!   scheduled and run silently, so its Pulse makes the band's decisions.
//! - While the conductor is unreachable the node plays on with the log it has; its performers'
//!   presses apply on this node only, and it says so.
//!
//! The control thread drives it ([`crate::play`]); the connection itself is the conductor
//! client's (a thread of its own behind [`ConductorLink`]). Thread: control.

pub mod connect;
pub mod log;
pub mod start;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use loophole_engine::control::ControlCommand;
use loophole_engine::model::{Session, TrackId};
use loophole_net_proto::node::{NodeEvent, Pressed};

pub use log::{BandLog, Entry, Pushed};
pub use start::{StartPoint, start_point};

/// The node's end of its connection to the conductor: the conductor client, which runs the
/// protocol on a thread of its own. Every call is non-blocking.
pub trait ConductorLink: Send {
    /// Sends a performer's press to the conductor (or, when it is unreachable, says it is
    /// local: a [`NodeEvent::Local`] follows).
    fn press(&self, command: ControlCommand) -> Pressed;
    /// Tells the conductor a command executed (`late`: after its target).
    fn executed(&self, id: u64, beat: f64, late: bool);
    /// The next thing the client learned, if any.
    fn try_event(&self) -> Option<NodeEvent>;
    /// The conductor's band time now, as this node estimates it (`None` before the first clock
    /// samples).
    fn band_time(&self) -> Option<Duration>;
    /// The round trip to the conductor.
    fn rtt(&self) -> Option<Duration>;
    /// How much the clock samples disagree (the spread of the middle half of the offsets).
    fn offset_spread(&self) -> Option<Duration>;
    /// Tells the conductor how this node is doing (for its `status`).
    fn report(&self, report: loophole_net_proto::v1::NodeReport);
    /// Whether the conductor is welcoming this node and being heard.
    fn is_connected(&self) -> bool;
}

/// `play --conductor`'s options.
#[derive(Debug, Clone, PartialEq)]
pub struct BandOptions {
    /// The join code the conductor printed.
    pub code: String,
    /// This node's name in the band (unique).
    pub name: String,
    /// The tracks this node plays (`--tracks`); `None`: the set's `node = "NAME"` tracks, or
    /// every track when the set names no node.
    pub tracks: Option<Vec<String>>,
    /// Where the set's files are cached.
    pub cache: PathBuf,
    /// How long to try to reach the conductor before giving up.
    pub connect_timeout: Duration,
}

/// Which tracks a node called `name` plays: the `--tracks` it was given (each must exist), else
/// the tracks the set gives it (`node = "NAME"`), else, when the set gives none to anyone,
/// every track. A set that gives tracks to other nodes only leaves this node silent, and says so.
pub fn own_tracks(session: &Session, name: &str, tracks: Option<&[String]>) -> Result<Vec<TrackId>, String> {
    let all = || session.tracks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>().join(", ");
    if let Some(wanted) = tracks {
        let mut out = Vec::new();
        for w in wanted {
            match session.tracks.iter().position(|t| &t.id == w) {
                Some(i) => out.push(TrackId(i as u32)),
                None => return Err(format!("--tracks: the set has no track '{w}' (tracks: {})", all())),
            }
        }
        return Ok(out);
    }
    let named: Vec<TrackId> = (0..session.tracks.len())
        .filter(|&i| session.tracks[i].node.as_deref() == Some(name))
        .map(|i| TrackId(i as u32))
        .collect();
    if named.is_empty() && session.tracks.iter().all(|t| t.node.is_none()) {
        return Ok((0..session.tracks.len()).map(|i| TrackId(i as u32)).collect());
    }
    Ok(named)
}

/// What the control thread keeps of the band.
pub struct Band {
    /// The conductor client.
    pub link: Box<dyn ConductorLink>,
    /// The log as this node holds it.
    pub log: BandLog,
    /// Command ids reported executed (each is reported once, at its first trigger).
    pub reported: HashSet<u64>,
    /// Presses applied on this node only (the conductor was unreachable).
    pub local_presses: u64,
    /// Presses the conductor refused.
    pub refused: u64,
    /// Whether the conductor was reachable at the last look (to say when it changes).
    pub connected: bool,
    /// The node's name.
    pub name: String,
    /// The names of the tracks it plays.
    pub tracks: Vec<String>,
}

impl Band {
    /// The band state for a node that joined with `link` and holds `log`.
    pub fn new(link: Box<dyn ConductorLink>, log: BandLog, name: String, tracks: Vec<String>) -> Band {
        Band { link, log, reported: HashSet::new(), local_presses: 0, refused: 0, connected: true, name, tracks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loophole_engine::demo;

    #[test]
    fn a_node_plays_its_tracks_or_every_track() {
        let mut s = demo::session();
        let n = s.tracks.len();
        assert_eq!(own_tracks(&s, "keys", None).unwrap().len(), n, "a set naming no node: every track");
        s.tracks[1].node = Some("keys".into());
        assert_eq!(own_tracks(&s, "keys", None).unwrap(), [TrackId(1)]);
        assert!(own_tracks(&s, "bass", None).unwrap().is_empty(), "a set naming other nodes only");
        let first = s.tracks[0].id.clone();
        assert_eq!(own_tracks(&s, "bass", Some(&[first])).unwrap(), [TrackId(0)]);
        let err = own_tracks(&s, "bass", Some(&["nope".to_string()])).unwrap_err();
        assert!(err.contains("no track 'nope'"), "{err}");
    }
}
