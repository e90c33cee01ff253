//! One connection's task: the TLS handshake (a failed one is logged with the peer's address),
//! the control stream the client opens first (length-prefixed frames decoded with
//! `FrameDecoder` and forwarded to the session task), the core's messages written back, the
//! set offer after the welcome, files sent on unidirectional streams on `Fetch`, clock pings
//! answered at once as datagrams with band time, and the rate limits. A malformed, oversized or
//! unexpected frame or datagram closes this connection only, with a reason.
//!
//! Thread: one tokio task per connection on the conductor's runtime (plus one short task per
//! file sent).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use loophole_net_proto::conductor::ConnId;
use loophole_net_proto::v1::{Message, PressRefusal, SetKind};
use loophole_net_proto::{FrameDecoder, encode};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::limits::{Bucket, Limits};
use super::session::{Input, Output};
use crate::band::BandClock;
use crate::set::ServedSet;
use crate::wire::{CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_RATE, decode_datagram, encode_datagram};

/// What every connection task shares.
pub struct ConnContext {
    /// The session task.
    pub input: mpsc::UnboundedSender<Input>,
    /// The set (offer and files).
    pub set: Arc<ServedSet>,
    /// The set's version.
    pub set_version: u32,
    /// Band time, for pongs.
    pub clock: BandClock,
    /// Rate limits.
    pub limits: Limits,
    /// Files sent so far (all connections).
    pub files_sent: Arc<AtomicU64>,
}

/// How long a connection may take to open its control stream.
const STREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one connection to its end.
pub async fn run(incoming: quinn::Incoming, id: ConnId, ctx: Arc<ConnContext>) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            warn!(%remote, error = %e, "TLS handshake failed (a node with a wrong or stale join code?)");
            let fields = serde_json::json!({"remote": remote.to_string(), "error": e.to_string()});
            let _ = ctx.input.send(Input::Note { event: "handshake-failed", fields });
            return;
        }
    };
    let (send, recv) = match tokio::time::timeout(STREAM_TIMEOUT, conn.accept_bi()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%remote, error = %e, "connection ended before its control stream");
            return;
        }
        Err(_) => {
            conn.close(CLOSE_PROTOCOL.into(), b"protocol error: no control stream within 5 s");
            return;
        }
    };
    let (out, outputs) = mpsc::unbounded_channel();
    if ctx.input.send(Input::Open { conn: id, out, remote, connection: conn.clone() }).is_err() {
        return;
    }
    let reason = serve(&conn, id, &ctx, send, recv, outputs).await;
    if let Some((code, reason)) = reason {
        if code != CLOSE_NORMAL {
            warn!(conn = id.0, %remote, %reason, "closing the connection");
            let fields =
                serde_json::json!({"conn": id.0, "remote": remote.to_string(), "code": code, "reason": reason});
            let _ = ctx.input.send(Input::Note { event: "closed", fields });
        }
        conn.close(code.into(), reason.as_bytes());
    }
    let _ = ctx.input.send(Input::Gone { conn: id });
}

async fn write(send: &mut quinn::SendStream, message: &Message) -> bool {
    match encode(message) {
        Ok(bytes) => send.write_all(&bytes).await.is_ok(),
        Err(e) => {
            warn!(error = %e, message = message.name(), "cannot encode a message");
            true
        }
    }
}

/// The connection's loop; returns the close to make, if it is the one closing.
async fn serve(
    conn: &quinn::Connection,
    id: ConnId,
    ctx: &Arc<ConnContext>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut outputs: mpsc::UnboundedReceiver<Output>,
) -> Option<(u32, String)> {
    let now = Instant::now();
    let mut presses = Bucket::new(ctx.limits.press_rate, ctx.limits.press_burst, now);
    let mut frames = Bucket::new(ctx.limits.frame_rate, ctx.limits.frame_burst, now);
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut welcomed = false;
    let (mut limited, mut last_noted) = (0u64, None);
    let rate =
        |what: &str| Some((CLOSE_RATE, format!("rate limit: more than {} {what} a second", ctx.limits.frame_rate)));
    loop {
        tokio::select! {
            read = recv.read(&mut buf) => match read {
                Ok(Some(n)) => {
                    decoder.push(&buf[..n]);
                    loop {
                        let message = match decoder.next_message() {
                            Ok(Some(m)) => m,
                            Ok(None) => break,
                            Err(e) => return Some((CLOSE_PROTOCOL, format!("protocol error: {e}"))),
                        };
                        if !frames.take(Instant::now()) {
                            return rate("frames");
                        }
                        match &message {
                            Message::Press { press, .. } if !presses.take(Instant::now()) => {
                                let refusal = Message::PressRefused { press: *press, reason: PressRefusal::RateLimited };
                                if !write(&mut send, &refusal).await {
                                    return None;
                                }
                                limited += 1;
                                // Told to the log at most once a second per connection.
                                if last_noted.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1)) {
                                    last_noted = Some(Instant::now());
                                    warn!(conn = id.0, refused = limited, "presses refused: rate limit");
                                    let fields = serde_json::json!({"conn": id.0, "reason": PressRefusal::RateLimited.to_string(), "refused_so_far": limited});
                                    let _ = ctx.input.send(Input::Note { event: "press-refused", fields });
                                }
                                continue;
                            }
                            Message::Fetch { sha256 } if welcomed => match ctx.set.file(sha256) {
                                Some(path) => {
                                    tokio::spawn(send_file(conn.clone(), *sha256, path.to_path_buf(), ctx.files_sent.clone()));
                                }
                                None => {
                                    let failed = Message::FetchFailed {
                                        sha256: *sha256,
                                        reason: "the set has no file with this hash".into(),
                                    };
                                    if !write(&mut send, &failed).await {
                                        return None;
                                    }
                                }
                            },
                            _ => {}
                        }
                        if ctx.input.send(Input::Message { conn: id, message }).is_err() {
                            return Some((CLOSE_NORMAL, "the conductor is shutting down".into()));
                        }
                    }
                }
                Ok(None) => return Some((CLOSE_NORMAL, "control stream finished".into())),
                Err(e) => {
                    debug!(conn = id.0, error = %e, "control stream ended");
                    return None;
                }
            },
            datagram = conn.read_datagram() => match datagram {
                Ok(bytes) => {
                    if !frames.take(Instant::now()) {
                        return rate("frames");
                    }
                    match decode_datagram(&bytes) {
                        Ok(Message::Ping { nonce, sent_us }) => {
                            let replier_us = ctx.clock.now().as_micros() as u64;
                            let pong = Message::Pong { nonce, sent_us, replier_us };
                            let _ = conn.send_datagram(encode_datagram(&pong).into());
                        }
                        Ok(m) => return Some((CLOSE_PROTOCOL, format!("protocol error: a {} datagram sent to the conductor", m.name()))),
                        Err(e) => return Some((CLOSE_PROTOCOL, format!("protocol error: {e}"))),
                    }
                }
                Err(_) => return None,
            },
            output = outputs.recv() => match output {
                Some(Output::Send(message)) => {
                    let welcome = matches!(message, Message::Welcome { .. });
                    if !write(&mut send, &message).await {
                        return None;
                    }
                    if welcome && !welcomed {
                        welcomed = true;
                        let offer = Message::SetOffer { version: ctx.set_version, set: ctx.set.offer.clone() };
                        if !write(&mut send, &offer).await {
                            return None;
                        }
                    }
                }
                Some(Output::Close { code, reason }) => return Some((code, reason)),
                None => return Some((CLOSE_NORMAL, "the conductor is shutting down".into())),
            },
        }
    }
}

/// Sends one file of the set on a new unidirectional stream: its hash, then its bytes.
async fn send_file(conn: quinn::Connection, sha256: [u8; 32], path: std::path::PathBuf, sent: Arc<AtomicU64>) {
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || std::fs::read(path)).await
    };
    let bytes = match read {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return warn!(file = %path.display(), error = %e, "cannot read a file of the set"),
        Err(e) => return warn!(error = %e, "file reader failed"),
    };
    let result = async {
        let mut s = conn.open_uni().await?;
        s.write_all(&sha256).await?;
        s.write_all(&bytes).await?;
        s.finish()?;
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            sent.fetch_add(1, Ordering::Relaxed);
            info!(file = %path.display(), bytes = bytes.len(), "file sent");
        }
        Err(e) => debug!(file = %path.display(), error = %e, "file not sent (connection gone?)"),
    }
}

/// The set's files, for messages: `demo` or how many files.
pub fn describe(set: &SetKind) -> String {
    match set {
        SetKind::Demo => "the demo set".into(),
        SetKind::Files { session, files } => format!("{} and {} files", session.path, files.len()),
    }
}
