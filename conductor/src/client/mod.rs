//! The client library a node joins a conductor with (`loophole-node play --conductor CODE`).
//! Its API is for plain threads (nothing async): [`Client::connect`] starts a thread with its
//! own tokio runtime, connects over QUIC with the certificate pinned by the join code, says
//! hello through a `NodeClient` core and returns once welcomed (or with why not). Then:
//! - [`Client::fetch_set`]: the set into a content-addressed cache (a rejoin downloads nothing);
//! - [`Client::band_time`], [`Client::offset_spread`], [`Client::rtt`]: the conductor's band
//!   time, from the median offset of datagram ping/pong samples (a burst of 16 at each connect,
//!   then four a second; the last 64 kept);
//! - [`Client::press`], [`Client::executed`]: presses and execution reports (non-blocking);
//! - [`Client::try_event`]: the core's events (entries to schedule, refusals, unreachable, ...);
//! - reconnection with backoff (100 ms doubling to 2 s) after the connection is lost, inside:
//!   the core keeps its log state, and the node plays on meanwhile.
//!
//! Dropping the client closes the connection.
//!
//! Parts: `options` ([`ClientOptions`], [`SetLocation`]), `error` ([`ClientError`]), `shared`
//! (what the API and the driver share), `driver` (the connection loop), [`offset`] (the band-time
//! estimate).
//!
//! Thread: the API from any thread (`Client` is `Send + Sync`); the driver (`driver`) on the
//! client's own thread.

mod driver;
mod error;
pub mod offset;
mod options;
mod shared;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use loophole_engine::control::ControlCommand;
use loophole_engine::time::Beats;
use loophole_net_proto::node::{NodeClient, NodeConfig};
pub use loophole_net_proto::node::{NodeEvent, Pressed};
use loophole_net_proto::v1::{Answer, Query, SetKind};
use tokio::sync::mpsc as tokio_mpsc;

use crate::cache;
use crate::join::JoinCode;
pub use error::ClientError;
use offset::OffsetEstimator;
pub use options::{ClientOptions, SetLocation};
use shared::{Command, Shared};

// The node calls the client from its control and UI threads.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Client>();
};

/// A node's connection to its conductor. See the module docs.
pub struct Client {
    shared: Arc<Shared>,
    commands: tokio_mpsc::UnboundedSender<Command>,
    events: Mutex<mpsc::Receiver<NodeEvent>>,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    /// Connects to the conductor of `code` and says hello; returns once welcomed. Errors: the
    /// refusal with its reason, a certificate that does not match the code, or the conductor
    /// unreachable for `opts.connect_timeout`.
    pub fn connect(code: &JoinCode, opts: ClientOptions) -> Result<Client, ClientError> {
        let incarnation = match opts.incarnation {
            Some(i) => i,
            None => getrandom::u64().map_err(|e| ClientError::Setup(format!("no random numbers: {e}")))?,
        };
        let config = NodeConfig::new(&opts.name, code.role, code.secret, incarnation);
        let core = if opts.skip_backlog {
            NodeClient::from_head(config, Duration::ZERO)
        } else {
            NodeClient::new(config, opts.last_seq, Duration::ZERO)
        };
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            epoch: Instant::now(),
            connected: AtomicBool::new(false),
            clock: Mutex::new(OffsetEstimator::default()),
            downloads: AtomicU64::new(0),
            offer: Mutex::new(None),
            offer_changed: Condvar::new(),
            closed: Mutex::new(None),
        });
        let (commands, command_rx) = tokio_mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::channel();
        let (first_tx, first_rx) = mpsc::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        let driver = driver::Driver::new(shared.clone(), code.clone(), opts.clone(), event_tx, first_tx);
        let thread = std::thread::Builder::new()
            .name(format!("conductor-client-{}", opts.name))
            .spawn(move || runtime.block_on(driver.run(command_rx)))
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        let client = Client { shared, commands, events: Mutex::new(events), thread: Some(thread) };
        match first_rx.recv_timeout(opts.connect_timeout + Duration::from_secs(1)) {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Unreachable {
                address: code.address,
                after: opts.connect_timeout,
                last: "no welcome".into(),
            }),
        }
    }

    /// Fetches the set the conductor offers into `cache_dir` (what the cache lacks only) and
    /// lays it out there; returns where the session file is. Blocks until done (60 s at most
    /// per file).
    pub fn fetch_set(&self, cache_dir: &Path) -> Result<SetLocation, ClientError> {
        let offer = {
            let guard = self.shared.offer.lock().map_err(|_| ClientError::Set("client state poisoned".into()))?;
            let (guard, _) = self
                .shared
                .offer_changed
                .wait_timeout_while(guard, Duration::from_secs(10), |o| o.is_none())
                .map_err(|_| ClientError::Set("client state poisoned".into()))?;
            guard.clone()
        };
        let Some((_, set)) = offer else { return Err(ClientError::Timeout("the conductor's set offer".into())) };
        let (session, files) = match set {
            SetKind::Demo => return Ok(SetLocation::Demo),
            SetKind::Files { session, files } => (session, files),
        };
        let mut waiting = Vec::new();
        for f in std::iter::once(&session).chain(&files) {
            if cache::has(cache_dir, f)
                || waiting.iter().any(|(w, _): &(&loophole_net_proto::v1::FileRef, _)| w.sha256 == f.sha256)
            {
                continue;
            }
            let (tx, rx) = mpsc::channel();
            self.commands.send(Command::Fetch(f.sha256, f.size, tx)).map_err(|_| ClientError::NotConnected)?;
            waiting.push((f, rx));
        }
        for (f, rx) in waiting {
            let bytes = match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(Ok(b)) => b,
                Ok(Err(why)) => return Err(ClientError::Set(format!("\"{}\": {why}", f.path))),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(ClientError::Timeout(format!("file \"{}\"", f.path)));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(ClientError::Set(format!("\"{}\": the connection was lost; fetch again", f.path)));
                }
            };
            cache::store(cache_dir, f, &bytes).map_err(ClientError::Set)?;
            self.shared.downloads.fetch_add(1, Ordering::Relaxed);
        }
        cache::lay_out(cache_dir, &session, &files).map(SetLocation::File).map_err(ClientError::Set)
    }

    /// Files downloaded by [`Client::fetch_set`] so far (0 on a rejoin with a full cache).
    pub fn files_downloaded(&self) -> u64 {
        self.shared.downloads.load(Ordering::Relaxed)
    }

    /// The conductor's band time now, estimated from the median clock offset of the recent
    /// ping samples (`None` before the first pong).
    pub fn band_time(&self) -> Option<Duration> {
        let offset = self.shared.clock.lock().ok()?.offset_us()?;
        let local = self.shared.now().as_micros() as i64;
        u64::try_from(local + offset).ok().map(Duration::from_micros)
    }

    /// How much the recent offset samples disagree (their interquartile range).
    pub fn offset_spread(&self) -> Option<Duration> {
        self.shared.clock.lock().ok()?.spread()
    }

    /// The median round trip of the recent pings.
    pub fn rtt(&self) -> Option<Duration> {
        self.shared.clock.lock().ok()?.rtt()
    }

    /// A performer pressed `command`: sent to the conductor (it comes back as a
    /// [`NodeEvent::ScheduleAt`] or a [`NodeEvent::PressRefused`]), or, while the conductor is
    /// unreachable, a [`NodeEvent::Local`]. Never waits for the network (it takes a lock held
    /// for microseconds).
    pub fn press(&self, command: ControlCommand) -> Pressed {
        let now = self.shared.now();
        let pressed = match self.shared.core.lock() {
            Ok(mut core) => core.press(now, command),
            Err(_) => return Pressed::Local,
        };
        let _ = self.commands.send(Command::Flush);
        pressed
    }

    /// The node executed command `id` at `beat` (`late`: after its target): reported to the
    /// conductor (status and its log).
    pub fn executed(&self, id: u64, beat: f64, late: bool) {
        if let Ok(mut core) = self.shared.core.lock() {
            core.executed(id, Beats(beat), late);
        }
        let _ = self.commands.send(Command::Flush);
    }

    /// Tells the conductor how the node is doing (its tracks, its offset from the band's time,
    /// late entries, xruns), for `ctl status`. Non-blocking; dropped while not connected.
    pub fn report(&self, report: loophole_net_proto::v1::NodeReport) {
        if let Ok(mut core) = self.shared.core.lock() {
            core.report(report);
        }
        let _ = self.commands.send(Command::Flush);
    }

    /// The next event, if any (non-blocking).
    pub fn try_event(&self) -> Option<NodeEvent> {
        self.events.lock().ok()?.try_recv().ok()
    }

    /// The next event, waiting up to `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<NodeEvent> {
        self.events.lock().ok()?.recv_timeout(timeout).ok()
    }

    /// Whether the client is connected and welcomed now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed) && self.shared.core.lock().is_ok_and(|c| c.is_connected())
    }

    /// The last seq of the log held without gaps (keep it to resume after a restart).
    pub fn last_seq(&self) -> u64 {
        self.shared.core.lock().map_or(0, |c| c.last_seq())
    }

    /// Why the conductor closed the connection for good, if it did (the client then stops
    /// reconnecting): a refusal, a protocol error or the rate limit.
    pub fn closed_reason(&self) -> Option<String> {
        self.shared.closed.lock().ok()?.clone()
    }

    /// Asks the conductor a question (`ctl status`, `ctl log`) and waits up to `timeout`.
    pub fn query(&self, query: Query, timeout: Duration) -> Result<Answer, ClientError> {
        let (tx, rx) = mpsc::channel();
        self.commands.send(Command::Query(query, tx)).map_err(|_| ClientError::NotConnected)?;
        rx.recv_timeout(timeout).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => ClientError::Timeout("the conductor's answer".into()),
            mpsc::RecvTimeoutError::Disconnected => ClientError::NotConnected,
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
