//! Joining a band: parse the join code, reach the conductor (QUIC, its certificate pinned by the
//! code: `loophole_conductor::client`), fetch the set into the cache, and take the band's log up
//! to its head, so the node can start on the band's current beat. Thread: control (the main
//! thread, before the audio starts); the client runs its own thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use loophole_conductor::client::{Client, ClientOptions, SetLocation};
use loophole_conductor::join::JoinCode;
use loophole_engine::control::ControlCommand;
use loophole_engine::files::session::{LoadOptions, load_session_with};
use loophole_engine::model::{Session, TrackId};
use loophole_net_proto::node::{NodeEvent, Pressed};

use super::{BandLog, BandOptions, ConductorLink, Entry, own_tracks};
use crate::{BadInput, warn_line};

/// A node that joined: the client, the set, the log up to the head it was welcomed with, and the
/// tracks it plays.
pub struct Joined {
    /// The conductor client.
    pub link: Box<dyn ConductorLink>,
    /// The set (the same on every node).
    pub session: Arc<Session>,
    /// The band's log so far.
    pub log: BandLog,
    /// This node's name.
    pub name: String,
    /// The tracks this node plays.
    pub tracks: Vec<TrackId>,
}

impl ConductorLink for Client {
    fn press(&self, command: ControlCommand) -> Pressed {
        Client::press(self, command)
    }
    fn executed(&self, id: u64, beat: f64, late: bool) {
        Client::executed(self, id, beat, late)
    }
    fn try_event(&self) -> Option<NodeEvent> {
        Client::try_event(self)
    }
    fn band_time(&self) -> Option<Duration> {
        Client::band_time(self)
    }
    fn rtt(&self) -> Option<Duration> {
        Client::rtt(self)
    }
    fn offset_spread(&self) -> Option<Duration> {
        Client::offset_spread(self)
    }
    fn report(&self, report: loophole_net_proto::v1::NodeReport) {
        Client::report(self, report)
    }
    fn is_connected(&self) -> bool {
        Client::is_connected(self)
    }
}

/// How long to wait for the log's head and the first clock samples after the welcome.
const SETTLE: Duration = Duration::from_secs(10);

/// Joins the band of the conductor behind `opts.code`. A code that does not parse, a conductor
/// that refuses the node or cannot be reached, a certificate that does not match, or a set that
/// does not load are errors that say which (bad input, exit 2, for what the user typed).
pub fn join(opts: &BandOptions) -> anyhow::Result<Joined> {
    let code = JoinCode::parse(&opts.code).map_err(|e| BadInput(format!("--conductor: {e}")))?;
    let mut options = ClientOptions::new(&opts.name);
    options.connect_timeout = opts.connect_timeout;
    let client = Client::connect(&code, options).map_err(|e| anyhow::anyhow!("cannot join the band: {e}"))?;
    warn_line(format_args!("loophole: conductor: joined {} as '{}'", code.address, opts.name));
    let location = client.fetch_set(&opts.cache).map_err(|e| anyhow::anyhow!("cannot fetch the band's set: {e}"))?;
    let session = match location {
        SetLocation::Demo => loophole_engine::demo::session(),
        SetLocation::File(path) => load_session_with(&path, LoadOptions::default())
            .map_err(|e| anyhow::anyhow!("the band's set {} does not load here: {e}", path.display()))?,
    };
    let session = Arc::new(session);
    let tracks = own_tracks(&session, &opts.name, opts.tracks.as_deref()).map_err(BadInput)?;
    let names: Vec<&str> = tracks.iter().map(|t| session.tracks[t.index()].id.as_str()).collect();
    if names.is_empty() {
        warn_line(format_args!(
            "loophole: warning: the set gives '{}' no track (node = \"{}\"), so this node plays silently; give it --tracks",
            opts.name, opts.name
        ));
    } else {
        warn_line(format_args!("loophole: conductor: this node plays {}", names.join(", ")));
    }
    let mut log = BandLog::new();
    let deadline = Instant::now() + SETTLE;
    let mut caught_up = false;
    while !(caught_up && client.band_time().is_some()) {
        match client.try_event() {
            Some(NodeEvent::ScheduleAt { seq, id, beat, command, origin }) => {
                log.push(Entry { seq, id, target: beat, command, origin });
            }
            Some(NodeEvent::CaughtUp { .. }) => caught_up = true,
            Some(NodeEvent::Welcomed { head: 0, .. }) => caught_up = true,
            Some(NodeEvent::Refused { reason }) => anyhow::bail!("the conductor refused this node: {reason}"),
            Some(_) => {}
            None => {
                if Instant::now() > deadline {
                    anyhow::bail!(
                        "the conductor welcomed this node but {} within {} s",
                        if caught_up { "gave no clock samples" } else { "did not send its log" },
                        SETTLE.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    Ok(Joined { link: Box::new(client), session, log, name: opts.name.clone(), tracks })
}
