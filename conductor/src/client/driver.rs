//! The client's driver: connects (and reconnects with backoff), opens the control stream,
//! makes the `NodeClient` core say hello on each new connection, feeds it what arrives and the
//! passing of time (woken at its `poll_timeout()`, rounded up), writes what it sends, forwards
//! its events, keeps the set offer and answers, receives files on unidirectional streams, and
//! pings the conductor with datagrams for band time.
//!
//! Thread: the client's own thread, on a current-thread tokio runtime.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use loophole_net_proto::node::NodeEvent;
use loophole_net_proto::v1::{Answer, Message};
use loophole_net_proto::{FrameDecoder, encode};
use tokio::sync::mpsc as tokio_mpsc;
use tracing::{debug, info, warn};

use super::error::ClientError;
use super::options::ClientOptions;
use super::shared::{Command, FileReply, Shared};
use crate::join::JoinCode;
use crate::tls;
use crate::wire::{CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_RATE, CLOSE_REFUSED, decode_datagram, encode_datagram};

/// Largest file accepted on a stream.
const MAX_FILE: usize = 1 << 30;
/// Pings sent at each connect, and how far apart.
const BURST: u32 = 16;
const BURST_GAP: Duration = Duration::from_millis(5);
/// Pings after the burst.
const PING_EVERY: Duration = Duration::from_millis(250);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How a connection ended.
enum Ended {
    /// Lost (or closed in a way a reconnect may fix).
    Lost(String),
    /// Closed for good.
    Fatal(ClientError),
    /// The client was dropped.
    Shutdown,
}

/// The driver's state. See the module docs.
pub(super) struct Driver {
    shared: Arc<Shared>,
    code: JoinCode,
    opts: ClientOptions,
    events: mpsc::Sender<NodeEvent>,
    first: Option<mpsc::Sender<Result<(), ClientError>>>,
    mismatch: Arc<Mutex<Option<String>>>,
    queries: VecDeque<mpsc::Sender<Answer>>,
    /// Files asked for: hash -> (size, where the bytes go).
    fetches: HashMap<[u8; 32], (u64, FileReply)>,
    nonce: u64,
}

impl Driver {
    pub(super) fn new(
        shared: Arc<Shared>,
        code: JoinCode,
        opts: ClientOptions,
        events: mpsc::Sender<NodeEvent>,
        first: mpsc::Sender<Result<(), ClientError>>,
    ) -> Driver {
        Driver {
            shared,
            code,
            opts,
            events,
            first: Some(first),
            mismatch: Arc::new(Mutex::new(None)),
            queries: VecDeque::new(),
            fetches: HashMap::new(),
            nonce: 0,
        }
    }

    fn fail(&mut self, error: ClientError) {
        if let Ok(mut c) = self.shared.closed.lock() {
            *c = Some(error.to_string());
        }
        match self.first.take() {
            Some(first) => {
                let _ = first.send(Err(error));
            }
            None => warn!(%error, "the conductor client stops"),
        }
    }

    pub(super) async fn run(mut self, mut commands: tokio_mpsc::UnboundedReceiver<Command>) {
        let endpoint = match self.endpoint() {
            Ok(e) => e,
            Err(e) => return self.fail(ClientError::Setup(e.to_string())),
        };
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            // Short at first (a conductor restarting on the LAN is back within a second), up to
            // the idle timeout for far conductors.
            let attempt_timeout = (backoff * 5).clamp(Duration::from_millis(500), Duration::from_secs(2));
            let attempt = tokio::time::timeout(attempt_timeout, async {
                endpoint.connect(self.code.address, tls::SERVER_NAME)?.await.map_err(anyhow::Error::from)
            });
            let ended = match attempt.await {
                Ok(Ok(conn)) => {
                    backoff = FIRST_BACKOFF;
                    let ended = self.session(&conn, &mut commands).await;
                    self.shared.connected.store(false, Ordering::Relaxed);
                    self.queries.clear();
                    self.fetches.clear();
                    ended
                }
                Ok(Err(e)) => Ended::Lost(e.to_string()),
                Err(_) => Ended::Lost(format!("no answer within {attempt_timeout:?}")),
            };
            let last = match ended {
                Ended::Shutdown => break,
                Ended::Fatal(e) => {
                    self.fail(e);
                    // Wait to be dropped, answering nothing.
                    while let Some(c) = commands.recv().await {
                        if matches!(c, Command::Shutdown) {
                            break;
                        }
                    }
                    break;
                }
                Ended::Lost(why) => why,
            };
            if let Some(m) = self.mismatch.lock().ok().and_then(|m| m.clone()) {
                self.fail(ClientError::CertificateMismatch(m));
                while let Some(c) = commands.recv().await {
                    if matches!(c, Command::Shutdown) {
                        break;
                    }
                }
                break;
            }
            if self.first.is_some() && started.elapsed() >= self.opts.connect_timeout {
                let after = self.opts.connect_timeout;
                self.fail(ClientError::Unreachable { address: self.code.address, after, last });
                break;
            }
            debug!(reason = %last, ?backoff, "connection lost; reconnecting");
            // Wait out the backoff, still answering the API.
            let until = tokio::time::Instant::now() + backoff;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    c = commands.recv() => match c {
                        None | Some(Command::Shutdown) => {
                            endpoint.close(CLOSE_NORMAL.into(), b"node leaving");
                            return;
                        }
                        // Dropping the reply senders tells the caller: not connected.
                        Some(_) => {}
                    },
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        endpoint.close(CLOSE_NORMAL.into(), b"node leaving");
        let _ = tokio::time::timeout(Duration::from_millis(200), endpoint.wait_idle()).await;
    }

    fn endpoint(&self) -> anyhow::Result<quinn::Endpoint> {
        let bind: SocketAddr = if self.code.address.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(tls::client_config(self.code.fingerprint, self.mismatch.clone())?);
        Ok(endpoint)
    }

    fn local_us(&self) -> u64 {
        self.shared.now().as_micros() as u64
    }

    /// One connection, from its control stream to its end.
    async fn session(
        &mut self,
        conn: &quinn::Connection,
        commands: &mut tokio_mpsc::UnboundedReceiver<Command>,
    ) -> Ended {
        let (mut send, mut recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => return Ended::Lost(e.to_string()),
        };
        if let Ok(mut core) = self.shared.core.lock() {
            core.reconnect(self.shared.now());
        }
        let (file_tx, mut files) = tokio_mpsc::unbounded_channel::<([u8; 32], Result<Vec<u8>, String>)>();
        let (head_tx, mut heads) = tokio_mpsc::unbounded_channel::<([u8; 32], quinn::RecvStream)>();
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut pings_sent = 0u32;
        let mut next_ping = tokio::time::Instant::now();
        loop {
            if let Some(ended) = self.drain(&mut send).await {
                return ended;
            }
            let deadline = self.shared.core.lock().ok().and_then(|c| c.poll_timeout());
            let wake = async {
                match deadline {
                    Some(d) => {
                        let ms_up = Duration::from_millis((d.as_micros() as u64).div_ceil(1000));
                        tokio::time::sleep_until((self.shared.epoch + ms_up).into()).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = recv.read(&mut buf) => match read {
                    Ok(Some(n)) => {
                        decoder.push(&buf[..n]);
                        loop {
                            match decoder.next_message() {
                                Ok(Some(m)) => self.message(m),
                                Ok(None) => break,
                                Err(e) => {
                                    let reason = format!("protocol error: {e}");
                                    conn.close(CLOSE_PROTOCOL.into(), reason.as_bytes());
                                    return Ended::Lost(reason);
                                }
                            }
                        }
                    }
                    Ok(None) => return Ended::Lost("the conductor finished the control stream".into()),
                    Err(_) => return self.closed(conn),
                },
                datagram = conn.read_datagram() => match datagram {
                    Ok(bytes) => match decode_datagram(&bytes) {
                        Ok(Message::Pong { sent_us, replier_us, .. }) => {
                            let received = self.local_us();
                            if let Ok(mut clock) = self.shared.clock.lock() {
                                clock.sample(sent_us, received, replier_us);
                            }
                        }
                        Ok(_) | Err(_) => debug!("an unexpected datagram from the conductor, ignored"),
                    },
                    Err(_) => return self.closed(conn),
                },
                uni = conn.accept_uni() => match uni {
                    Ok(mut stream) => {
                        let tx = head_tx.clone();
                        tokio::spawn(async move {
                            let mut sha = [0u8; 32];
                            if stream.read_exact(&mut sha).await.is_ok() {
                                let _ = tx.send((sha, stream));
                            }
                        });
                    }
                    Err(_) => return self.closed(conn),
                },
                head = heads.recv() => {
                    // Only files asked for are read, and no more than their size.
                    if let Some((sha, mut stream)) = head {
                        match self.fetches.get(&sha) {
                            Some((size, _)) => {
                                let (tx, limit) = (file_tx.clone(), (*size as usize).min(MAX_FILE));
                                tokio::spawn(async move {
                                    let body = stream.read_to_end(limit).await.map_err(|e| e.to_string());
                                    let _ = tx.send((sha, body));
                                });
                            }
                            None => {
                                let _ = stream.stop(CLOSE_PROTOCOL.into());
                            }
                        }
                    }
                }
                file = files.recv() => {
                    if let Some((sha, body)) = file
                        && let Some((_, waiter)) = self.fetches.remove(&sha)
                    {
                        let _ = waiter.send(body);
                    }
                }
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => {
                        conn.close(CLOSE_NORMAL.into(), b"node leaving");
                        return Ended::Shutdown;
                    }
                    Some(Command::Flush) => {}
                    Some(Command::Query(q, reply)) => {
                        self.queries.push_back(reply);
                        if !write(&mut send, &Message::Query(q)).await {
                            return self.closed(conn);
                        }
                    }
                    Some(Command::Fetch(sha256, size, reply)) => {
                        self.fetches.insert(sha256, (size, reply));
                        if !write(&mut send, &Message::Fetch { sha256 }).await {
                            return self.closed(conn);
                        }
                    }
                },
                () = wake => {
                    if let Ok(mut core) = self.shared.core.lock() {
                        core.handle_timeout(self.shared.now());
                    }
                }
                () = tokio::time::sleep_until(next_ping) => {
                    self.nonce += 1;
                    let ping = Message::Ping { nonce: self.nonce, sent_us: self.local_us() };
                    let _ = conn.send_datagram(encode_datagram(&ping).into());
                    pings_sent += 1;
                    next_ping += if pings_sent < BURST { BURST_GAP } else { PING_EVERY };
                }
            }
        }
    }

    /// Why the connection closed: fatal if the conductor refused us or closed it for a
    /// protocol error or the rate limit; otherwise lost (reconnect).
    fn closed(&self, conn: &quinn::Connection) -> Ended {
        match conn.close_reason() {
            Some(quinn::ConnectionError::ApplicationClosed(close)) => {
                let reason = String::from_utf8_lossy(&close.reason).into_owned();
                match u32::try_from(close.error_code.into_inner()).unwrap_or(u32::MAX) {
                    CLOSE_REFUSED => Ended::Fatal(ClientError::Refused(
                        reason.strip_prefix("refused: ").unwrap_or(&reason).to_string(),
                    )),
                    CLOSE_PROTOCOL | CLOSE_RATE => Ended::Fatal(ClientError::Closed(reason)),
                    _ => Ended::Lost(reason),
                }
            }
            Some(e) => Ended::Lost(e.to_string()),
            None => Ended::Lost("the connection ended".into()),
        }
    }

    /// Takes one message from the conductor.
    fn message(&mut self, message: Message) {
        match message {
            Message::SetOffer { version, set } => {
                if let Ok(mut offer) = self.shared.offer.lock() {
                    *offer = Some((version, set));
                }
                self.shared.offer_changed.notify_all();
            }
            Message::Answer(answer) => {
                if let Some(reply) = self.queries.pop_front() {
                    let _ = reply.send(answer);
                }
            }
            Message::FetchFailed { sha256, reason } => {
                if let Some((_, reply)) = self.fetches.remove(&sha256) {
                    let _ = reply.send(Err(reason));
                }
            }
            other => {
                if let Ok(mut core) = self.shared.core.lock() {
                    core.handle(self.shared.now(), other);
                }
            }
        }
    }

    /// Writes what the core has to send and hands on its events; ends the session on a refusal.
    async fn drain(&mut self, send: &mut quinn::SendStream) -> Option<Ended> {
        let (out, events, connected) = match self.shared.core.lock() {
            Ok(mut core) => {
                let out: Vec<Message> = std::iter::from_fn(|| core.poll_transmit()).collect();
                let events: Vec<NodeEvent> = std::iter::from_fn(|| core.poll_event()).collect();
                (out, events, core.is_connected())
            }
            Err(_) => return Some(Ended::Fatal(ClientError::Setup("client state poisoned".into()))),
        };
        for m in &out {
            if !write(send, m).await {
                return Some(Ended::Lost("the control stream closed".into()));
            }
        }
        self.shared.connected.store(connected, Ordering::Relaxed);
        let mut refused = None;
        for e in events {
            match &e {
                NodeEvent::Welcomed { resume_from, head } => {
                    info!(resume_from, head, "welcomed by the conductor");
                    if let Some(first) = self.first.take() {
                        let _ = first.send(Ok(()));
                    }
                }
                NodeEvent::Refused { reason } => refused = Some(*reason),
                _ => {}
            }
            let _ = self.events.send(e);
        }
        refused.map(|r| Ended::Fatal(ClientError::refused(r)))
    }
}

async fn write(send: &mut quinn::SendStream, message: &Message) -> bool {
    match encode(message) {
        Ok(bytes) => send.write_all(&bytes).await.is_ok(),
        Err(e) => {
            warn!(error = %e, "cannot encode a message");
            true
        }
    }
}
