//! The conductor's session core, sans-IO: the node registry (hello, version, join proof, role),
//! the sequencer (press -> validated -> target beat -> log -> broadcast), per-node
//! acknowledgements and resends, liveness, and catch-up for late joiners and reconnecting nodes.
//!
//! Shaped like `quinn_proto::Connection`: the driver feeds what arrives with
//! [`Conductor::handle`] and the passing of time with [`Conductor::handle_timeout`], then drains
//! [`Conductor::poll_transmit`] (messages to send, by connection) and [`Conductor::poll_event`]
//! (what happened), and wakes it again at [`Conductor::poll_timeout`]. It opens no socket, reads
//! no clock and starts no task: time comes in as a [`Moment`], so tests run a band on virtual
//! time.
//!
//! - [`sequencer`]: the log and the conductor's own Pulse. `peer`: one welcomed node.
//!
//! Thread: the conductor's session thread (the driver's task); allocates, never blocks.

mod peer;
pub mod sequencer;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use loophole_engine::control::ControlCommand;
use loophole_engine::model::Session;
use loophole_engine::time::Beats;

use crate::PROTOCOL_VERSION;
use crate::auth::{Secret, verify};
use crate::rtt::RttEstimator;
use crate::v1::{Message, PressRefusal, RefuseReason, Role, ScheduledCommand};
use peer::{InFlight, Peer};
pub use sequencer::Sequencer;

/// The driver's handle of one connection (a QUIC connection in the real driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The conductor's present: its clock (time since an origin the driver picks, monotonic), and
/// the band's beat and tempo at that time (the driver reads them from Link).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moment {
    /// Time since the driver's origin.
    pub time: Duration,
    /// The Link beat at `time`.
    pub beat: Beats,
    /// The tempo, beats per minute.
    pub bpm: f64,
}

impl Moment {
    /// `d` in beats at this tempo.
    pub fn beats(&self, d: Duration) -> Beats {
        Beats(d.as_secs_f64() * self.bpm / 60.0)
    }
}

/// A message for the driver to send on a connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    /// The connection.
    pub to: ConnId,
    /// The message.
    pub message: Message,
}

/// What happened, for the driver, the status display and the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A node was welcomed; the log after `resume_from` is on its way to it.
    Joined {
        /// Its connection.
        conn: ConnId,
        /// Its name.
        node: String,
        /// Its role.
        role: Role,
        /// The seq it resumes after.
        resume_from: u64,
    },
    /// A hello was refused; the driver closes the connection after sending the refusal.
    Refused {
        /// The connection.
        conn: ConnId,
        /// The name it gave.
        node: String,
        /// Why.
        reason: RefuseReason,
    },
    /// A node that joined again on another connection replaced this one: close it.
    Replaced {
        /// The old connection.
        conn: ConnId,
        /// The node.
        node: String,
    },
    /// A node was not heard for [`Config::dead_after`]: it is forgotten (it rejoins with a
    /// hello); close its connection.
    Lost {
        /// The connection.
        conn: ConnId,
        /// The node.
        node: String,
    },
    /// A message that has no place where it came (a node speaking before its hello, or sending
    /// what only the conductor sends). The driver closes that one connection.
    Misbehaved {
        /// The connection.
        conn: ConnId,
        /// What it did.
        what: String,
    },
    /// A press became an entry of the log (and is being broadcast).
    Sequenced(ScheduledCommand),
    /// A press was refused.
    PressRefused {
        /// Who pressed (a node's name, or the origin given to [`Conductor::press`]).
        origin: String,
        /// What.
        command: ControlCommand,
        /// Why.
        reason: PressRefusal,
    },
    /// A node reported a command executed.
    Executed {
        /// The node.
        node: String,
        /// Command id.
        id: u64,
        /// Beat.
        beat: f64,
        /// Late (arrived after its target).
        late: bool,
    },
}

/// The conductor's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The join secret of each role admitted. A hello for a role not listed is refused.
    pub secrets: Vec<(Role, Secret)>,
    /// How often each node is pinged (liveness and round trip).
    pub ping_interval: Duration,
    /// A node not heard for this long is forgotten.
    pub dead_after: Duration,
    /// The round trip assumed of a node before it is measured.
    pub initial_rtt: Duration,
    /// The least resend timeout.
    pub min_rto: Duration,
    /// How many resends of an entry the lead leaves time for (each after a resend timeout).
    pub resends_covered: u32,
    /// Added to the lead (the nodes' scheduling horizon and processing).
    pub margin: Duration,
}

impl Config {
    /// Defaults for a band on a LAN or the internet, admitting the given roles.
    pub fn new(secrets: Vec<(Role, Secret)>) -> Config {
        Config {
            secrets,
            ping_interval: Duration::from_millis(250),
            dead_after: Duration::from_secs(2),
            initial_rtt: Duration::from_millis(250),
            min_rto: Duration::from_millis(20),
            resends_covered: 4,
            margin: Duration::from_millis(50),
        }
    }
}

/// The conductor's session state machine. See the module docs.
pub struct Conductor {
    config: Config,
    sequencer: Sequencer,
    peers: BTreeMap<ConnId, Peer>,
    by_name: HashMap<String, ConnId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Conductor {
    /// A conductor for `session` with an empty log.
    pub fn new(session: Arc<Session>, config: Config) -> Conductor {
        Conductor::with_sequencer(Sequencer::new(session), config)
    }

    /// A conductor that continues a log (from the durable store, after a restart).
    pub fn restore(session: Arc<Session>, log: Vec<ScheduledCommand>, config: Config) -> Conductor {
        Conductor::with_sequencer(Sequencer::restore(session, log), config)
    }

    fn with_sequencer(sequencer: Sequencer, config: Config) -> Conductor {
        Conductor {
            config,
            sequencer,
            peers: BTreeMap::new(),
            by_name: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The log (the driver persists it; [`Conductor::restore`] takes it back).
    pub fn log(&self) -> &[ScheduledCommand] {
        self.sequencer.log()
    }

    /// The sequencer (its Pulse shows what plays).
    pub fn sequencer(&self) -> &Sequencer {
        &self.sequencer
    }

    /// The welcomed nodes: connection, name, role, last acknowledged seq, smoothed round trip.
    pub fn nodes(&self) -> impl Iterator<Item = (ConnId, &str, Role, u64, Duration)> + '_ {
        self.peers.iter().map(|(c, p)| (*c, p.name.as_str(), p.role, p.acked, p.rtt.srtt()))
    }

    /// What the node on `conn` last reported of itself.
    pub fn report(&self, conn: ConnId) -> Option<&crate::v1::NodeReport> {
        self.peers.get(&conn).and_then(|p| p.report.as_ref())
    }

    /// The lead a press gets now: the slowest measured node's resend timeout (round trip plus
    /// jitter) times one plus [`Config::resends_covered`], plus [`Config::margin`].
    pub fn lead(&self) -> Duration {
        // Peers not measured yet (a node or a `ctl` that has just said hello: its first ping
        // answers within a round trip) do not stretch the lead to the assumed round trip; when
        // no peer is measured, the assumed one is used.
        let measured = self.peers.values().filter(|p| p.rtt.samples() > 0);
        let rto = measured
            .map(|p| p.rtt.timeout(self.config.min_rto))
            .max()
            .unwrap_or_else(|| RttEstimator::new(self.config.initial_rtt).timeout(self.config.min_rto));
        rto * (self.config.resends_covered + 1) + self.config.margin
    }

    /// A press made at the conductor (`ctl`, a schedule), by `origin`. Returns the new entry's
    /// seq, or why it is refused (also told as [`Event::PressRefused`]).
    pub fn press(&mut self, at: Moment, command: ControlCommand, origin: &str) -> Result<u64, PressRefusal> {
        self.sequence(at, command, (origin.to_string(), 0, 0))
    }

    /// Takes a message that arrived on `conn` at `at`.
    pub fn handle(&mut self, at: Moment, conn: ConnId, message: Message) {
        let now = at.time;
        if let Message::Hello { version, node, role, proof, incarnation, last_seq } = message {
            return self.hello(now, conn, version, node, role, proof, incarnation, last_seq);
        }
        let Some(peer) = self.peers.get_mut(&conn) else {
            let what = format!("{} before a welcome", message.name());
            self.events.push_back(Event::Misbehaved { conn, what });
            return;
        };
        peer.last_heard = now;
        match message {
            Message::Press { press, command } => {
                let (origin, role, key) = (peer.name.clone(), peer.role, (peer.name.clone(), peer.incarnation, press));
                if !role.may_press() {
                    let reason = PressRefusal::Observer;
                    self.transmits.push_back(Transmit {
                        to: conn,
                        message: Message::PressRefused { press, reason: reason.clone() },
                    });
                    self.events.push_back(Event::PressRefused { origin, command, reason });
                } else if self.sequencer.sequenced(&key).is_none()
                    && let Err(reason) = self.sequence(at, command, key)
                {
                    self.transmits.push_back(Transmit { to: conn, message: Message::PressRefused { press, reason } });
                }
                // A press sequenced before is idempotent: its entry is already on its way.
            }
            Message::Ack { seq } => peer.ack(seq.min(self.sequencer.head()), now),
            Message::Executed { id, beat, late } => {
                self.events.push_back(Event::Executed { node: peer.name.clone(), id, beat, late })
            }
            Message::Report(report) => peer.report = Some(report),
            Message::Ping { nonce, sent_us } => {
                let replier_us = now.as_micros() as u64;
                self.transmits.push_back(Transmit { to: conn, message: Message::Pong { nonce, sent_us, replier_us } });
            }
            Message::Pong { nonce, sent_us, .. } => {
                if nonce == peer.ping_nonce {
                    peer.rtt.sample(now.saturating_sub(Duration::from_micros(sent_us)));
                }
            }
            // Files and questions are the driver's (it has the set and the status); it passes
            // them here so they count as hearing from the node.
            Message::Fetch { .. } | Message::Query(_) => {}
            m @ (Message::Welcome { .. }
            | Message::Refused { .. }
            | Message::PressRefused { .. }
            | Message::Scheduled(_)
            | Message::SetOffer { .. }
            | Message::FetchFailed { .. }
            | Message::Answer(_)) => {
                let what = format!("{} sent by a node", m.name());
                self.events.push_back(Event::Misbehaved { conn, what });
            }
            Message::Hello { .. } => unreachable!("handled above"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn hello(
        &mut self,
        now: Duration,
        conn: ConnId,
        version: u16,
        node: String,
        role: Role,
        proof: [u8; 32],
        incarnation: u64,
        last_seq: u64,
    ) {
        let refusal = if version != PROTOCOL_VERSION {
            Some(RefuseReason::UnsupportedVersion)
        } else {
            match self.config.secrets.iter().find(|(r, _)| *r == role) {
                None => Some(RefuseReason::RoleNotAllowed),
                Some((_, secret)) if !verify(secret, role, &node, &proof) => Some(RefuseReason::WrongSecret),
                Some(_) => None,
            }
        };
        if let Some(reason) = refusal {
            self.transmits.push_back(Transmit { to: conn, message: Message::Refused { reason } });
            self.events.push_back(Event::Refused { conn, node, reason });
            return;
        }
        if let Some(old) = self.by_name.insert(node.clone(), conn)
            && old != conn
            && self.peers.remove(&old).is_some()
        {
            self.events.push_back(Event::Replaced { conn: old, node: node.clone() });
        }
        let head = self.sequencer.head();
        let resume_from = last_seq.min(head);
        let rtt = self.peers.get(&conn).map_or(RttEstimator::new(self.config.initial_rtt), |p| p.rtt);
        let mut peer = Peer {
            name: node.clone(),
            role,
            incarnation,
            acked: resume_from,
            report: None,
            in_flight: BTreeMap::new(),
            rtt,
            last_heard: now,
            next_ping: now,
            ping_nonce: 0,
        };
        self.transmits.push_back(Transmit {
            to: conn,
            message: Message::Welcome { version: PROTOCOL_VERSION, resume_from, head },
        });
        for seq in resume_from + 1..=head {
            let entry = self.sequencer.entry(seq).expect("seq within the log").clone();
            peer.in_flight.insert(seq, InFlight { first: now, last: now, resent: false });
            self.transmits.push_back(Transmit { to: conn, message: Message::Scheduled(entry) });
        }
        self.peers.insert(conn, peer);
        self.events.push_back(Event::Joined { conn, node, role, resume_from });
    }

    fn sequence(&mut self, at: Moment, command: ControlCommand, key: sequencer::PressKey) -> Result<u64, PressRefusal> {
        let origin = key.0.clone();
        let lead = at.beats(self.lead());
        match self.sequencer.sequence(at.beat, lead, command.clone(), key) {
            Ok(entry) => {
                let entry = entry.clone();
                for (conn, peer) in &mut self.peers {
                    peer.in_flight.insert(entry.seq, InFlight { first: at.time, last: at.time, resent: false });
                    self.transmits.push_back(Transmit { to: *conn, message: Message::Scheduled(entry.clone()) });
                }
                let seq = entry.seq;
                self.events.push_back(Event::Sequenced(entry));
                Ok(seq)
            }
            Err(reason) => {
                self.events.push_back(Event::PressRefused { origin, command, reason: reason.clone() });
                Err(reason)
            }
        }
    }

    /// The driver's connection `conn` ended (closed by either side): the node on it is
    /// forgotten now rather than after [`Config::dead_after`] (no event: the driver knows). It
    /// rejoins with a hello on a new connection.
    pub fn disconnected(&mut self, conn: ConnId) {
        if let Some(p) = self.peers.remove(&conn)
            && self.by_name.get(&p.name) == Some(&conn)
        {
            self.by_name.remove(&p.name);
        }
    }

    /// Does what falls due at `at`: forgets silent nodes, resends unacknowledged entries, pings.
    pub fn handle_timeout(&mut self, at: Moment) {
        let now = at.time;
        let dead: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.last_heard) >= self.config.dead_after)
            .map(|(c, _)| *c)
            .collect();
        for conn in dead {
            if let Some(p) = self.peers.remove(&conn) {
                if self.by_name.get(&p.name) == Some(&conn) {
                    self.by_name.remove(&p.name);
                }
                self.events.push_back(Event::Lost { conn, node: p.name });
            }
        }
        for (conn, peer) in &mut self.peers {
            let rto = peer.rtt.timeout(self.config.min_rto);
            for (seq, f) in peer.in_flight.iter_mut() {
                if f.last + rto <= now {
                    f.last = now;
                    f.resent = true;
                    let entry = self.sequencer.entry(*seq).expect("in flight within the log").clone();
                    self.transmits.push_back(Transmit { to: *conn, message: Message::Scheduled(entry) });
                }
            }
            if peer.next_ping <= now {
                peer.ping_nonce += 1;
                peer.next_ping = now + self.config.ping_interval;
                let ping = Message::Ping { nonce: peer.ping_nonce, sent_us: now.as_micros() as u64 };
                self.transmits.push_back(Transmit { to: *conn, message: ping });
            }
        }
        self.sequencer.compact(at.beat);
    }

    /// When [`Conductor::handle_timeout`] is next due (`None`: no node is connected).
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.peers
            .values()
            .flat_map(|p| {
                let rto = p.rtt.timeout(self.config.min_rto);
                [Some(p.next_ping), Some(p.last_heard + self.config.dead_after), p.next_resend(rto)]
            })
            .flatten()
            .min()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}
