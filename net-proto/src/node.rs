//! The node's conductor client, sans-IO: hello and welcome, the log's entries received in any
//! order and handed on in sequence order exactly once (deduplicated by seq and id),
//! acknowledgements, presses sent until sequenced or refused, executions reported, and the
//! conductor's absence noticed.
//!
//! Shaped like `quinn_proto::Connection`: [`NodeClient::handle`] takes what arrives,
//! [`NodeClient::handle_timeout`] the passing of time; [`NodeClient::poll_transmit`],
//! [`NodeClient::poll_event`] and [`NodeClient::poll_timeout`] give what to send, what happened
//! and when to wake it. Time is a [`Duration`] since an origin the driver picks (monotonic).
//!
//! While the conductor is unreachable (nothing heard for [`NodeConfig::unreachable_after`]), the
//! node says so ([`NodeEvent::Unreachable`]), keeps the log it has, turns its own presses into
//! [`NodeEvent::Local`] (applied on this node only, shown as local) and says hello again, with
//! the last seq it holds, until welcomed: the entries after it follow.
//!
//! Thread: the node's control thread (or the driver's task); allocates, never blocks.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use loophole_engine::control::ControlCommand;
use loophole_engine::time::Beats;

use crate::PROTOCOL_VERSION;
use crate::auth::{Secret, proof};
use crate::v1::{Message, PressRefusal, RefuseReason, Role, ScheduledCommand};

/// The node client's settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name (unique in the band).
    pub name: String,
    /// The role asked for.
    pub role: Role,
    /// The join secret of that role (from the join code).
    pub secret: Secret,
    /// A random number per start of the node (see [`Message::Hello`]).
    pub incarnation: u64,
    /// The conductor counts as unreachable when nothing was heard from it for this long (it
    /// pings every node four times a second).
    pub unreachable_after: Duration,
    /// How often a hello or an unanswered press is sent again.
    pub retry: Duration,
}

impl NodeConfig {
    /// Defaults for a node called `name`.
    pub fn new(name: &str, role: Role, secret: Secret, incarnation: u64) -> NodeConfig {
        NodeConfig {
            name: name.to_string(),
            role,
            secret,
            incarnation,
            unreachable_after: Duration::from_secs(1),
            retry: Duration::from_millis(300),
        }
    }
}

/// What the node learns from its client.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// The conductor welcomed the node; the entries after `resume_from` follow.
    Welcomed {
        /// The seq the entries resume after.
        resume_from: u64,
        /// The log's last seq at the welcome.
        head: u64,
    },
    /// The node holds every entry up to the head it was welcomed with.
    CaughtUp {
        /// That head.
        seq: u64,
    },
    /// Schedule this command at this beat (exactly once per entry, in seq order; the node
    /// presses it with `When::At { beat, id }`).
    ScheduleAt {
        /// Its seq.
        seq: u64,
        /// Command id.
        id: u64,
        /// Target beat.
        beat: Beats,
        /// What it does.
        command: ControlCommand,
        /// Who pressed it.
        origin: String,
    },
    /// One of this node's presses was refused by the conductor.
    PressRefused {
        /// The press id [`NodeClient::press`] gave.
        press: u64,
        /// Why.
        reason: PressRefusal,
    },
    /// The conductor refused this node: it says no more hellos.
    Refused {
        /// Why.
        reason: RefuseReason,
    },
    /// The conductor was not heard for [`NodeConfig::unreachable_after`]: the node plays on
    /// with the log it has; its presses are local until it is welcomed again.
    Unreachable,
    /// A press made while the conductor is unreachable: apply it on this node only, and show it
    /// as local.
    Local {
        /// What was pressed.
        command: ControlCommand,
    },
    /// A press sent but not sequenced when the conductor became unreachable: it is dropped (it
    /// would play late if the conductor took it after a reconnect).
    PressDropped {
        /// The press id.
        press: u64,
        /// What it was.
        command: ControlCommand,
    },
}

/// What [`NodeClient::press`] did with a press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressed {
    /// Sent to the conductor with this press id; it comes back as a [`NodeEvent::ScheduleAt`]
    /// (or a [`NodeEvent::PressRefused`]).
    Sent(u64),
    /// The conductor is unreachable: a [`NodeEvent::Local`] was queued.
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Saying hello; the next one at this time.
    Connecting {
        next_hello: Duration,
    },
    Connected,
    Refused,
}

/// The node's conductor client. See the module docs.
pub struct NodeClient {
    config: NodeConfig,
    state: State,
    /// Every entry up to this seq was handed on.
    last_seq: u64,
    /// The head of the last welcome; `None` once caught up.
    catching_up: Option<u64>,
    /// Entries received ahead of a gap.
    ahead: BTreeMap<u64, ScheduledCommand>,
    /// Ids handed on.
    seen: HashSet<u64>,
    presses: BTreeMap<u64, (ControlCommand, Duration)>,
    next_press: u64,
    /// Asked for no backlog ([`NodeClient::from_head`]) and not yet welcomed.
    from_head: bool,
    last_heard: Duration,
    ack_due: bool,
    transmits: VecDeque<Message>,
    events: VecDeque<NodeEvent>,
}

impl NodeClient {
    /// A client that starts saying hello at `now`, holding the log up to `last_seq` (0: a new
    /// node; otherwise the last seq a restarted node kept).
    pub fn new(config: NodeConfig, last_seq: u64, now: Duration) -> NodeClient {
        NodeClient {
            config,
            state: State::Connecting { next_hello: now },
            last_seq,
            catching_up: None,
            ahead: BTreeMap::new(),
            seen: HashSet::new(),
            presses: BTreeMap::new(),
            next_press: 1,
            from_head: false,
            last_heard: now,
            ack_due: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// A client that wants no backlog: its hello asks to resume after the log's head (whatever
    /// it is), and its first welcome sets its last seq to that head. For peers that only press
    /// and watch (`ctl`), not for nodes that play.
    pub fn from_head(config: NodeConfig, now: Duration) -> NodeClient {
        let mut c = NodeClient::new(config, u64::MAX, now);
        c.from_head = true;
        c
    }

    /// The last seq held without gaps (persist it to resume after a restart); 0 for a
    /// [`NodeClient::from_head`] client before its welcome.
    pub fn last_seq(&self) -> u64 {
        if self.from_head { 0 } else { self.last_seq }
    }

    /// The driver's connection to the conductor was lost and a new one is open: say hello on it
    /// now. A connected client first does what it does when the conductor falls silent
    /// ([`NodeEvent::Unreachable`], unsequenced presses dropped), since the conductor forgets
    /// the old connection's state.
    pub fn reconnect(&mut self, now: Duration) {
        match self.state {
            State::Refused => {}
            State::Connected => self.lose(now),
            State::Connecting { .. } => self.hello(now),
        }
        self.last_heard = now;
    }

    /// The conductor is gone: say so, drop unsequenced presses, say hello again.
    fn lose(&mut self, now: Duration) {
        self.state = State::Connecting { next_hello: now };
        self.events.push_back(NodeEvent::Unreachable);
        for (press, (command, _)) in std::mem::take(&mut self.presses) {
            self.events.push_back(NodeEvent::PressDropped { press, command });
        }
        self.ahead.clear();
        self.catching_up = None;
        self.hello(now);
    }

    /// Whether the conductor has welcomed the node and is being heard.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// A performer pressed `command` at `now`.
    pub fn press(&mut self, now: Duration, command: ControlCommand) -> Pressed {
        if self.state != State::Connected {
            self.events.push_back(NodeEvent::Local { command });
            return Pressed::Local;
        }
        let press = self.next_press;
        self.next_press += 1;
        self.transmits.push_back(Message::Press { press, command: command.clone() });
        self.presses.insert(press, (command, now));
        Pressed::Sent(press)
    }

    /// The node executed command `id` at `beat` (`late`: after its target): tells the conductor.
    pub fn executed(&mut self, id: u64, beat: Beats, late: bool) {
        if self.state == State::Connected {
            self.transmits.push_back(Message::Executed { id, beat: beat.0, late });
        }
    }

    /// Tells the conductor how the node is doing (for its `status`), when connected.
    pub fn report(&mut self, report: crate::v1::NodeReport) {
        if self.state == State::Connected {
            self.transmits.push_back(Message::Report(report));
        }
    }

    /// Takes a message from the conductor that arrived at `now`.
    pub fn handle(&mut self, now: Duration, message: Message) {
        if self.state == State::Refused {
            return;
        }
        self.last_heard = now;
        match message {
            Message::Welcome { version: _, resume_from, head } => {
                if self.state != State::Connected {
                    self.state = State::Connected;
                    if std::mem::take(&mut self.from_head) {
                        self.last_seq = resume_from;
                    }
                    self.events.push_back(NodeEvent::Welcomed { resume_from, head });
                    self.catching_up = Some(head);
                    self.check_caught_up();
                    for (press, (command, sent)) in &mut self.presses {
                        *sent = now;
                        self.transmits.push_back(Message::Press { press: *press, command: command.clone() });
                    }
                }
            }
            Message::Refused { reason } => {
                self.state = State::Refused;
                self.presses.clear();
                self.events.push_back(NodeEvent::Refused { reason });
            }
            // An entry is the log whatever the state (a welcome may arrive after the entries
            // that follow it); only a welcomed node acknowledges.
            Message::Scheduled(entry) => self.receive(entry),
            Message::PressRefused { press, reason } => {
                if self.presses.remove(&press).is_some() {
                    self.events.push_back(NodeEvent::PressRefused { press, reason });
                }
            }
            Message::Ping { nonce, sent_us } => {
                let replier_us = now.as_micros() as u64;
                self.transmits.push_back(Message::Pong { nonce, sent_us, replier_us });
            }
            // Nothing else is meant for a node; the driver's frame decoder has already refused
            // what is not a message at all.
            Message::Hello { .. }
            | Message::Press { .. }
            | Message::Ack { .. }
            | Message::Executed { .. }
            | Message::Pong { .. }
            | Message::Fetch { .. }
            | Message::Query(_)
            | Message::Report(_) => {}
            // The driver's: the set and the answers to questions.
            Message::SetOffer { .. } | Message::FetchFailed { .. } | Message::Answer(_) => {}
        }
    }

    fn receive(&mut self, entry: ScheduledCommand) {
        self.ack_due |= self.state == State::Connected;
        if entry.seq <= self.last_seq {
            return;
        }
        self.ahead.insert(entry.seq, entry);
        while let Some(entry) = self.ahead.remove(&(self.last_seq + 1)) {
            self.last_seq = entry.seq;
            if !self.seen.insert(entry.id) {
                continue;
            }
            if entry.origin == self.config.name && entry.incarnation == self.config.incarnation {
                self.presses.remove(&entry.press);
            }
            self.events.push_back(NodeEvent::ScheduleAt {
                seq: entry.seq,
                id: entry.id,
                beat: Beats(entry.target_beat),
                command: entry.command,
                origin: entry.origin,
            });
        }
        self.check_caught_up();
    }

    fn check_caught_up(&mut self) {
        if let Some(head) = self.catching_up
            && self.last_seq >= head
        {
            self.catching_up = None;
            self.events.push_back(NodeEvent::CaughtUp { seq: head });
        }
    }

    /// Does what falls due at `now`: notices the conductor's silence, says hello again, sends
    /// unanswered presses again.
    pub fn handle_timeout(&mut self, now: Duration) {
        match self.state {
            State::Refused => {}
            State::Connected => {
                if now.saturating_sub(self.last_heard) >= self.config.unreachable_after {
                    self.lose(now);
                } else {
                    for (press, (command, sent)) in &mut self.presses {
                        if *sent + self.config.retry <= now {
                            *sent = now;
                            self.transmits.push_back(Message::Press { press: *press, command: command.clone() });
                        }
                    }
                }
            }
            State::Connecting { next_hello } => {
                if next_hello <= now {
                    self.hello(now);
                }
            }
        }
    }

    fn hello(&mut self, now: Duration) {
        let c = &self.config;
        self.transmits.push_back(Message::Hello {
            version: PROTOCOL_VERSION,
            node: c.name.clone(),
            role: c.role,
            proof: proof(&c.secret, c.role, &c.name),
            incarnation: c.incarnation,
            last_seq: self.last_seq,
        });
        self.state = State::Connecting { next_hello: now + c.retry };
    }

    /// When [`NodeClient::handle_timeout`] is next due (`None`: refused, nothing more to do).
    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.state {
            State::Refused => None,
            State::Connecting { next_hello } => Some(next_hello),
            State::Connected => {
                let silence = self.last_heard + self.config.unreachable_after;
                let press = self.presses.values().map(|(_, sent)| *sent + self.config.retry).min();
                Some(press.map_or(silence, |p| p.min(silence)))
            }
        }
    }

    /// The next message to send to the conductor (a pending acknowledgement first).
    pub fn poll_transmit(&mut self) -> Option<Message> {
        if std::mem::take(&mut self.ack_due) {
            return Some(Message::Ack { seq: self.last_seq });
        }
        self.transmits.pop_front()
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }
}
