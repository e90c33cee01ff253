//! The session task: the only owner of the `Conductor` core. It takes what the connection tasks
//! decoded (`(ConnId, Message)`), presses made at the conductor, and the passing of time (it
//! wakes at the core's `poll_timeout()`, rounded up), then drains the core: every new entry is
//! committed to the store **before** its transmits go out, events go to tracing and the
//! `--log` journal, and connections the core gives up on are closed with a reason. It also
//! answers `Query` messages (status, log pages) and keeps the node registry in the store.
//!
//! Thread: one tokio task on the conductor's runtime.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use loophole_engine::control::ControlCommand;
use loophole_net_proto::conductor::{Conductor, ConnId, Event, Moment};
use loophole_net_proto::v1::{
    Answer, ExecutionReport, LOG_PAGE, Message, NodeStatus, PressRefusal, Query, ScheduledCommand, Status,
};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::journal::Journal;
use crate::band::{BandClock, BeatClock, bar_beat};
use crate::join::role_name;
use crate::store::{NodeRecord, Store};
use crate::wire::{CLOSE_LOST, CLOSE_PROTOCOL, CLOSE_REFUSED, CLOSE_REPLACED};

/// What the session task is told.
pub enum Input {
    /// A connection opened its control stream.
    Open {
        /// Its id.
        conn: ConnId,
        /// Where its messages go.
        out: mpsc::UnboundedSender<Output>,
        /// Its address.
        remote: SocketAddr,
        /// The connection, closed from here when the core gives up on it (its task may be
        /// blocked writing to a peer that stopped reading).
        connection: quinn::Connection,
    },
    /// A message arrived on a connection.
    Message {
        /// The connection.
        conn: ConnId,
        /// The message.
        message: Message,
    },
    /// A connection ended.
    Gone {
        /// The connection.
        conn: ConnId,
    },
    /// A connection task's note for the log (a failed handshake, a connection it closed).
    Note {
        /// The event's name in the journal.
        event: &'static str,
        /// Its fields.
        fields: serde_json::Value,
    },
    /// A press made at the conductor (its API, benchmarks).
    Press {
        /// What.
        command: ControlCommand,
        /// Who (shown in the log).
        origin: String,
        /// The entry, or why not.
        reply: oneshot::Sender<Result<ScheduledCommand, PressRefusal>>,
    },
}

/// What a connection task is told.
#[derive(Debug)]
pub enum Output {
    /// Send this message on the control stream.
    Send(Message),
    /// Close the connection with this code and reason.
    Close {
        /// A `wire::CLOSE_*` code.
        code: u32,
        /// For people.
        reason: String,
    },
}

struct Conn {
    out: mpsc::UnboundedSender<Output>,
    connection: quinn::Connection,
    remote: SocketAddr,
    name: Option<String>,
}

/// The session task's state. See the module docs.
pub struct Session {
    core: Conductor,
    store: Store,
    clock: BandClock,
    beats: BeatClock,
    conns: HashMap<ConnId, Conn>,
    executions: VecDeque<ExecutionReport>,
    journal: Option<Journal>,
    set_name: String,
    set_version: u32,
}

impl Session {
    /// A session around `core` (restored from `store`).
    pub fn new(
        core: Conductor,
        store: Store,
        clock: BandClock,
        journal: Option<Journal>,
        set_name: String,
        set_version: u32,
    ) -> Session {
        let mut beats = BeatClock::new(core.sequencer().pulse().session());
        beats.update(core.sequencer().tempo_changes());
        Session {
            core,
            store,
            clock,
            beats,
            conns: HashMap::new(),
            executions: VecDeque::new(),
            journal,
            set_name,
            set_version,
        }
    }

    fn moment(&self) -> Moment {
        self.beats.moment(self.clock.now())
    }

    /// Runs until every sender of `inputs` is gone, or the store fails (an entry that cannot be
    /// made durable must not be broadcast: the conductor stops with the error).
    pub async fn run(mut self, mut inputs: mpsc::UnboundedReceiver<Input>) -> anyhow::Result<()> {
        let mut registry = tokio::time::interval(Duration::from_secs(1));
        registry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.core.poll_timeout().map(|t| self.clock.instant_of(t));
            let wake = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                input = inputs.recv() => match input {
                    None => return Ok(()),
                    Some(input) => self.input(input)?,
                },
                () = wake => {
                    let m = self.moment();
                    self.core.handle_timeout(m);
                    self.flush()?;
                }
                _ = registry.tick() => self.record_registry()?,
            }
        }
    }

    fn input(&mut self, input: Input) -> anyhow::Result<()> {
        match input {
            Input::Open { conn, out, remote, connection } => {
                self.conns.insert(conn, Conn { out, connection, remote, name: None });
            }
            Input::Gone { conn } => {
                self.core.disconnected(conn);
                if let Some(c) = self.conns.remove(&conn) {
                    info!(conn = conn.0, remote = %c.remote, node = c.name.as_deref().unwrap_or("-"), "connection closed");
                }
            }
            Input::Message { conn, message } => {
                let query = match &message {
                    Message::Query(q) => Some(q.clone()),
                    _ => None,
                };
                let m = self.moment();
                self.core.handle(m, conn, message);
                if let Some(q) = query
                    && let Some(c) = self.conns.get(&conn)
                    && c.name.is_some()
                {
                    let answer = self.answer(q);
                    let _ = c.out.send(Output::Send(Message::Answer(answer)));
                }
            }
            Input::Note { event, fields } => {
                self.journal(event, fields);
                return Ok(());
            }
            Input::Press { command, origin, reply } => {
                let m = self.moment();
                let result = self.core.press(m, command, &origin);
                self.flush()?;
                let _ =
                    reply.send(result.map(|seq| self.core.sequencer().entry(seq).cloned().expect("just sequenced")));
                return Ok(());
            }
        }
        self.flush()
    }

    fn answer(&self, q: Query) -> Answer {
        match q {
            Query::Status => {
                let m = self.moment();
                let log = self.core.log();
                Answer::Status(Box::new(Status {
                    set: self.set_name.clone(),
                    set_version: self.set_version,
                    band_us: m.time.as_micros() as u64,
                    beat: m.beat.0,
                    bpm: m.bpm,
                    beats_per_bar: self.beats.beats_per_bar(m.time),
                    lead_us: self.core.lead().as_micros() as u64,
                    head: self.core.sequencer().head(),
                    nodes: self
                        .core
                        .nodes()
                        .map(|(conn, name, role, acked, rtt)| NodeStatus {
                            name: name.to_string(),
                            role,
                            rtt_us: rtt.as_micros() as u64,
                            acked,
                            report: self.core.report(conn).cloned(),
                        })
                        .collect(),
                    recent: log[log.len().saturating_sub(16)..].to_vec(),
                    executions: self.executions.iter().cloned().collect(),
                }))
            }
            Query::Log { since } => {
                let log = self.core.log();
                let from = (since as usize).min(log.len());
                let to = (from + LOG_PAGE).min(log.len());
                Answer::Log { entries: log[from..to].to_vec(), head: log.len() as u64 }
            }
        }
    }

    fn record_registry(&mut self) -> anyhow::Result<()> {
        let now = self.clock.now().as_micros() as u64;
        let nodes: Vec<(String, NodeRecord)> = self
            .core
            .nodes()
            .map(|(_, name, _, acked, _)| (name.to_string(), NodeRecord { acked, last_seen_us: now }))
            .collect();
        if !nodes.is_empty() {
            self.store.record_nodes(nodes.iter().map(|(n, r)| (n.as_str(), *r)))?;
        }
        Ok(())
    }

    fn journal(&mut self, event: &str, fields: serde_json::Value) {
        let band_us = self.clock.now().as_micros() as u64;
        if let Some(j) = &mut self.journal {
            j.write(event, band_us, fields);
        }
    }

    /// Drains the core: events first (entries made durable), then transmits, then closes.
    fn flush(&mut self) -> anyhow::Result<()> {
        let mut closes: Vec<(ConnId, u32, String)> = Vec::new();
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Sequenced(entry) => {
                    self.store.append(&entry)?;
                    let refused = self.beats.update(self.core.sequencer().tempo_changes());
                    if refused > 0 {
                        warn!(refused, "the beat clock is full: tempo changes ignored");
                    }
                    let bpb = self.beats.beats_per_bar(self.clock.now());
                    info!(
                        seq = entry.seq,
                        id = entry.id,
                        origin = %entry.origin,
                        command = ?entry.command,
                        beat = entry.target_beat,
                        at = %bar_beat(loophole_engine::time::Beats(entry.target_beat), bpb),
                        "sequenced"
                    );
                    self.journal(
                        "sequenced",
                        json!({"seq": entry.seq, "id": entry.id, "origin": entry.origin,
                               "command": format!("{:?}", entry.command), "target_beat": entry.target_beat}),
                    );
                }
                Event::Joined { conn, node, role, resume_from } => {
                    let remote = self.conns.get(&conn).map(|c| c.remote.to_string()).unwrap_or_default();
                    info!(conn = conn.0, node = %node, role = role_name(role), resume_from, remote = %remote, "joined");
                    self.journal("joined", json!({"node": node, "role": role_name(role), "resume_from": resume_from}));
                    let now = self.clock.now().as_micros() as u64;
                    self.store.record_nodes([(node.as_str(), NodeRecord { acked: resume_from, last_seen_us: now })])?;
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.name = Some(node);
                    }
                }
                Event::Refused { conn, node, reason } => {
                    warn!(conn = conn.0, node = %node, %reason, "hello refused");
                    self.journal("refused", json!({"node": node, "reason": reason.to_string()}));
                    closes.push((conn, CLOSE_REFUSED, format!("refused: {reason}")));
                }
                Event::Replaced { conn, node } => {
                    info!(conn = conn.0, node = %node, "replaced by a newer connection");
                    closes.push((conn, CLOSE_REPLACED, format!("node '{node}' joined again on another connection")));
                }
                Event::Lost { conn, node } => {
                    warn!(conn = conn.0, node = %node, "lost (nothing heard for 2 s)");
                    self.journal("lost", json!({"node": node}));
                    closes.push((conn, CLOSE_LOST, format!("nothing heard from node '{node}' for 2 s")));
                }
                Event::Misbehaved { conn, what } => {
                    warn!(conn = conn.0, %what, "protocol error: closing the connection");
                    self.journal("misbehaved", json!({"conn": conn.0, "what": what}));
                    closes.push((conn, CLOSE_PROTOCOL, format!("protocol error: {what}")));
                }
                Event::PressRefused { origin, command, reason } => {
                    info!(origin = %origin, command = ?command, %reason, "press refused");
                    self.journal(
                        "press-refused",
                        json!({"origin": origin, "command": format!("{command:?}"), "reason": reason.to_string()}),
                    );
                }
                Event::Executed { node, id, beat, late } => {
                    info!(node = %node, id, beat, late, "executed");
                    self.journal("executed", json!({"node": node, "id": id, "beat": beat, "late": late}));
                    if self.executions.len() >= 64 {
                        self.executions.pop_front();
                    }
                    self.executions.push_back(ExecutionReport { node, id, beat, late });
                }
            }
        }
        while let Some(t) = self.core.poll_transmit() {
            if let Some(c) = self.conns.get(&t.to) {
                let _ = c.out.send(Output::Send(t.message));
            }
        }
        for (conn, code, reason) in closes {
            if let Some(c) = self.conns.remove(&conn) {
                c.connection.close(code.into(), reason.as_bytes());
                let _ = c.out.send(Output::Close { code, reason });
            }
        }
        Ok(())
    }
}
