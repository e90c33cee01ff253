//! `loophole-conductor serve`: the driver around the `Conductor` core. [`Server::start`] loads
//! the identity, the store and the set from the state directory, restores the log, binds the
//! QUIC endpoint and runs everything on one tokio runtime on a thread of its own:
//! - the accept loop, one task per connection (`conn`): frames in and out, pings, files, limits;
//! - the session task (`session`): the only owner of the core, the store and the beat clock.
//!
//! The [`Server`] handle gives the bound address, the join codes, presses made at the conductor,
//! and stops it when dropped.
//!
//! Thread: `Server`'s methods are called from any plain thread; the runtime runs on its own.

pub mod conn;
pub mod journal;
pub mod limits;
pub mod session;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use loophole_engine::control::ControlCommand;
use loophole_net_proto::conductor::{Conductor, Config, ConnId};
use loophole_net_proto::v1::{PressRefusal, Role, ScheduledCommand};
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use crate::band::{BandClock, unix_now_us};
use crate::identity::Identity;
use crate::join::{JoinCode, role_name};
use crate::set::{ServedSet, SetSource};
use crate::store::Store;
use crate::tls;
use conn::ConnContext;
pub use limits::Limits;
use session::{Input, Session};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:4460";

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The set.
    pub set: SetSource,
    /// Where to listen (port 0: any free port).
    pub listen: SocketAddr,
    /// The address the join codes carry (default: the listen address, or the machine's LAN
    /// address when listening on all interfaces).
    pub advertise: Option<SocketAddr>,
    /// The state directory (identity, store, join codes).
    pub state_dir: PathBuf,
    /// A JSON-lines log of what happens.
    pub log_file: Option<PathBuf>,
    /// Per-connection rate limits.
    pub limits: Limits,
}

impl ServeOptions {
    /// Options for `set` with the defaults (`0.0.0.0:4460`, `./conductor-state`).
    pub fn new(set: SetSource) -> ServeOptions {
        ServeOptions {
            set,
            listen: DEFAULT_LISTEN.parse().expect("a valid address"),
            advertise: None,
            state_dir: PathBuf::from("conductor-state"),
            log_file: None,
            limits: Limits::default(),
        }
    }
}

/// A running conductor. Dropping it stops it.
pub struct Server {
    local_addr: SocketAddr,
    clock: BandClock,
    codes: Vec<(Role, JoinCode)>,
    input: mpsc::UnboundedSender<Input>,
    files_sent: Arc<AtomicU64>,
    endpoint: quinn::Endpoint,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    runtime: Option<tokio::runtime::Handle>,
}

impl Server {
    /// Loads everything and starts serving. Errors name what is wrong (a corrupt store or
    /// identity file, a set that does not load, an address in use).
    pub fn start(options: ServeOptions) -> anyhow::Result<Server> {
        let identity = Identity::load_or_create(&options.state_dir)?;
        let store = Store::open(&options.state_dir.join("store.redb"))?;
        let set = Arc::new(ServedSet::load(&options.set)?);
        let log = store.log()?;
        let origin = store.origin_or(unix_now_us())?;
        let clock = BandClock::new(origin);
        let head = log.len();
        let core = Conductor::restore(set.session.clone(), log, Config::new(identity.secrets.clone()));
        let journal = options.log_file.as_deref().map(journal::Journal::open).transpose()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("conductor")
            .enable_all()
            .build()
            .context("cannot start the conductor's runtime")?;
        let endpoint = {
            let _guard = runtime.enter();
            quinn::Endpoint::server(tls::server_config(&identity)?, options.listen)
                .with_context(|| format!("cannot listen on {}", options.listen))?
        };
        let local_addr = endpoint.local_addr()?;
        let advertised = options.advertise.unwrap_or_else(|| advertised(local_addr));
        let codes: Vec<(Role, JoinCode)> = identity
            .secrets
            .iter()
            .map(|(role, secret)| {
                (
                    *role,
                    JoinCode { address: advertised, fingerprint: identity.fingerprint(), secret: *secret, role: *role },
                )
            })
            .collect();
        write_codes(&options.state_dir.join("join-codes.txt"), &codes)?;
        let session = Session::new(core, store, clock, journal, set.session.name.clone(), 1);
        info!(listen = %local_addr, advertised = %advertised, head, set = %conn::describe(&set.offer), "serving");
        let (input, inputs) = mpsc::unbounded_channel();
        let files_sent = Arc::new(AtomicU64::new(0));
        let ctx = Arc::new(ConnContext {
            input: input.clone(),
            set,
            set_version: 1,
            clock,
            limits: options.limits,
            files_sent: files_sent.clone(),
        });
        let (stop, stopped) = oneshot::channel();
        let accept = endpoint.clone();
        let closer = endpoint.clone();
        let handle = runtime.handle().clone();
        let thread = std::thread::Builder::new().name("conductor".into()).spawn(move || {
            let result = runtime.block_on(async move {
                let session = tokio::spawn(session.run(inputs));
                let accepting = async {
                    let mut next = 0u64;
                    while let Some(incoming) = accept.accept().await {
                        next += 1;
                        tokio::spawn(conn::run(incoming, ConnId(next), ctx.clone()));
                    }
                };
                tokio::select! {
                    () = accepting => Ok(()),
                    _ = stopped => Ok(()),
                    r = session => r.context("the session task failed")?,
                }
            });
            closer.close(0u32.into(), b"the conductor is shutting down");
            // Let the close reach every node (else they wait for the idle timeout).
            runtime.block_on(async {
                let _ = tokio::time::timeout(Duration::from_millis(100), closer.wait_idle()).await;
            });
            runtime.shutdown_timeout(Duration::from_millis(200));
            result
        })?;
        Ok(Server {
            local_addr,
            clock,
            codes,
            input,
            files_sent,
            endpoint,
            stop: Some(stop),
            thread: Some(thread),
            runtime: Some(handle),
        })
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The join code of `role`.
    pub fn join_code(&self, role: Role) -> &JoinCode {
        &self.codes.iter().find(|(r, _)| *r == role).expect("a code per role").1
    }

    /// Presses `command` at the conductor as `origin`; blocks until it is sequenced (and
    /// durable) or refused.
    pub fn press(&self, command: ControlCommand, origin: &str) -> Result<ScheduledCommand, PressRefusal> {
        let (reply, answer) = oneshot::channel();
        let gone = || PressRefusal::Invalid("the conductor has stopped".into());
        self.input.send(Input::Press { command, origin: origin.to_string(), reply }).map_err(|_| gone())?;
        answer.blocking_recv().map_err(|_| gone())?
    }

    /// Whether the conductor is still serving (it stops by itself only if its store fails).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The band time now (what pongs carry).
    pub fn band_time(&self) -> Duration {
        self.clock.now()
    }

    /// Files sent to nodes so far.
    pub fn files_sent(&self) -> u64 {
        self.files_sent.load(Ordering::Relaxed)
    }

    /// Blocks until the conductor stops by itself (its store failed, or its endpoint closed).
    pub fn wait(mut self) -> anyhow::Result<()> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| anyhow::anyhow!("the conductor's thread panicked"))?,
            None => Ok(()),
        }
    }

    /// Stops serving: closes every connection and the endpoint, and waits for the runtime.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> anyhow::Result<()> {
        if let Some(rt) = &self.runtime {
            let _guard = rt.enter();
            self.endpoint.close(0u32.into(), b"the conductor is shutting down");
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| anyhow::anyhow!("the conductor's thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_now();
    }
}

/// The address a join code carries when none is advertised: the bound address, or this
/// machine's LAN address when bound to all interfaces.
fn advertised(local: SocketAddr) -> SocketAddr {
    if !local.ip().is_unspecified() {
        return local;
    }
    SocketAddr::new(lan_address().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), local.port())
}

/// The address this machine uses to reach the outside (no packet is sent: a UDP socket is
/// connected and its local address read).
pub fn lan_address() -> Option<IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Writes the join codes with labels (`performer: CODE`), one a line, readable by the owner
/// only (they carry the secrets).
pub fn write_codes(path: &Path, codes: &[(Role, JoinCode)]) -> anyhow::Result<()> {
    let text: String = codes.iter().map(|(r, c)| format!("{}: {c}\n", role_name(*r))).collect();
    crate::identity::write_private(path, text.as_bytes())
        .with_context(|| format!("{}: cannot write the join codes", path.display()))
}
