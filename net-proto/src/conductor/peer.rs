//! One welcomed node as the conductor sees it: who it is, what it acknowledged, what is in flight
//! to it (for resends), its round trip, and when it was last heard.
//!
//! Thread: the conductor's session thread (inside [`super::Conductor`]).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::rtt::RttEstimator;
use crate::v1::{NodeReport, Role};

/// An entry sent and not yet acknowledged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InFlight {
    /// First sent (round-trip samples come only from entries never sent again: Karn's rule).
    pub first: Duration,
    /// Last sent.
    pub last: Duration,
    /// Sent more than once.
    pub resent: bool,
}

/// A welcomed node. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub name: String,
    pub role: Role,
    pub incarnation: u64,
    /// Every entry up to this seq was acknowledged.
    pub acked: u64,
    /// What it last reported of itself.
    pub report: Option<NodeReport>,
    pub in_flight: BTreeMap<u64, InFlight>,
    pub rtt: RttEstimator,
    pub last_heard: Duration,
    pub next_ping: Duration,
    pub ping_nonce: u64,
}

impl Peer {
    /// Takes a cumulative acknowledgement at `now`; returns a round-trip sample if it gives one.
    pub fn ack(&mut self, seq: u64, now: Duration) {
        if seq <= self.acked {
            return;
        }
        self.acked = seq;
        let mut sample = None;
        while let Some((&s, f)) = self.in_flight.first_key_value() {
            if s > seq {
                break;
            }
            if !f.resent && s == seq {
                sample = Some(now.saturating_sub(f.first));
            }
            self.in_flight.pop_first();
        }
        if let Some(rtt) = sample {
            self.rtt.sample(rtt);
        }
    }

    /// When the earliest resend falls due, with resend timeout `rto`.
    pub fn next_resend(&self, rto: Duration) -> Option<Duration> {
        self.in_flight.values().map(|f| f.last + rto).min()
    }
}
