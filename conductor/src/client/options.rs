//! How a client joins ([`ClientOptions`]) and where the set it fetched is ([`SetLocation`]).
//!
//! Thread: pure data; any thread.

use std::path::PathBuf;
use std::time::Duration;

/// How to join.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The node's name (unique in the band).
    pub name: String,
    /// The last seq of the log the node holds (0: a new node; what [`Client::last_seq`](super::Client::last_seq) said
    /// before a restart, to resume after it).
    pub last_seq: u64,
    /// Ask for no backlog: resume after the log's head, whatever it is (for `ctl`).
    pub skip_backlog: bool,
    /// How long [`Client::connect`](super::Client::connect) keeps trying before it gives up.
    pub connect_timeout: Duration,
    /// This run's incarnation (default: random).
    pub incarnation: Option<u64>,
}

impl ClientOptions {
    /// A new node called `name`: last seq 0, backlog wanted, 5 s to connect.
    pub fn new(name: &str) -> ClientOptions {
        ClientOptions {
            name: name.to_string(),
            last_seq: 0,
            skip_backlog: false,
            connect_timeout: Duration::from_secs(5),
            incarnation: None,
        }
    }
}

/// Where the set is, once fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetLocation {
    /// The built-in demo (`loophole_engine::demo::session()`).
    Demo,
    /// The session file, laid out in the cache with the files it references.
    File(PathBuf),
}
