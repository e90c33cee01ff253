//! What the client's API and its driver share: the `NodeClient` core behind a mutex, the clock
//! samples, the set offer, the connection state, and the commands the API sends the driver.
//!
//! Thread: the caller's threads and the client's driver thread (short locks only).

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use loophole_net_proto::node::NodeClient;
use loophole_net_proto::v1::{Answer, Query, SetKind};

use super::offset::OffsetEstimator;

/// Where a fetched file's bytes (or why they did not come) go.
pub(crate) type FileReply = mpsc::Sender<Result<Vec<u8>, String>>;

/// What the API asks the driver.
pub(crate) enum Command {
    /// The core has something to send.
    Flush,
    /// Ask the conductor a question.
    Query(Query, mpsc::Sender<Answer>),
    /// Fetch a file of the set: its hash, its size (the most read), where the bytes go.
    Fetch([u8; 32], u64, FileReply),
    /// Close and stop.
    Shutdown,
}

/// What the API and the driver share.
pub(crate) struct Shared {
    pub(crate) core: Mutex<NodeClient>,
    pub(crate) epoch: Instant,
    pub(crate) connected: AtomicBool,
    pub(crate) clock: Mutex<OffsetEstimator>,
    pub(crate) downloads: AtomicU64,
    pub(crate) offer: Mutex<Option<(u32, SetKind)>>,
    pub(crate) offer_changed: Condvar,
    pub(crate) closed: Mutex<Option<String>>,
}

impl Shared {
    pub(crate) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}
