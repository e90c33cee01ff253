//! Everything a conductor refuses, over real QUIC, each with a clear message on both sides (the
//! client's error or event, the conductor's JSON log), while a healthy node stays connected and
//! keeps receiving entries: a wrong secret, a wrong certificate fingerprint, an observer
//! pressing, garbage, oversized and out-of-place frames on raw quinn connections, a press flood
//! (rate-limited presses) and a frame flood (connection closed).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use loophole_conductor::client::{Client, ClientError, ClientOptions, NodeEvent, Pressed};
use loophole_conductor::join::JoinCode;
use loophole_conductor::set::SetSource;
use loophole_conductor::{tls, wire};
use loophole_engine::control::ControlCommand;
use loophole_net_proto::auth::proof;
use loophole_net_proto::v1::{Message, PressRefusal, Role};
use loophole_net_proto::{PROTOCOL_VERSION, encode};

fn scene(name: &str) -> ControlCommand {
    ControlCommand::SceneTrigger { scene: name.into(), quantise: None, mode: None }
}

/// A raw QUIC connection with the right certificate pin, and its control stream.
struct Raw {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

async fn raw(code: &JoinCode) -> Raw {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(tls::client_config(code.fingerprint, Arc::new(Mutex::new(None))).unwrap());
    let conn = endpoint.connect(code.address, tls::SERVER_NAME).unwrap().await.expect("handshake");
    let (send, recv) = conn.open_bi().await.unwrap();
    Raw { _endpoint: endpoint, conn, send, recv }
}

/// Waits for the conductor to close `raw`; returns the close code and reason.
async fn closed(raw: &mut Raw) -> (u32, String) {
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(until, raw.recv.read(&mut buf)).await {
            Err(_) => panic!("the conductor did not close the connection"),
            Ok(Ok(Some(_))) => continue,
            Ok(_) => break,
        }
    }
    match raw.conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            (c.error_code.into_inner() as u32, String::from_utf8_lossy(&c.reason).into_owned())
        }
        other => panic!("closed otherwise: {other}"),
    }
}

#[test]
fn refusals_are_clear_on_both_sides_and_the_band_plays_on() {
    let dir = TempDir::new("refusals");
    let server = serve(SetSource::Demo, dir.path());
    let performer = server.join_code(Role::Performer).clone();
    let observer = server.join_code(Role::Observer).clone();
    let healthy = Client::connect(&performer, ClientOptions::new("healthy")).expect("healthy joins");

    // Wrong secret.
    let mut wrong = performer.clone();
    wrong.secret[0] ^= 1;
    let e = Client::connect(&wrong, ClientOptions::new("intruder")).err().expect("refused");
    assert_eq!(e, ClientError::Refused("the join secret is wrong (check the join code)".into()), "{e}");
    wait_journal(dir.path(), Duration::from_secs(2), |v| {
        v["event"] == "refused" && v["node"] == "intruder" && v["reason"].as_str().unwrap().contains("secret is wrong")
    });

    // Wrong fingerprint.
    let mut forged = performer.clone();
    forged.fingerprint[7] ^= 0x40;
    let e = Client::connect(&forged, ClientOptions::new("forged")).err().expect("refused");
    let ClientError::CertificateMismatch(msg) = &e else { panic!("{e:?}") };
    assert!(msg.contains("does not match the join code (fingerprint"), "{msg}");
    wait_journal(dir.path(), Duration::from_secs(2), |v| v["event"] == "handshake-failed");

    // An observer pressing.
    let watcher = Client::connect(&observer, ClientOptions::new("watcher")).expect("observer joins");
    let Pressed::Sent(press) = watcher.press(scene("chorus")) else { panic!("not sent") };
    let events = events_until(&watcher, Duration::from_secs(3), |e| {
        e.iter().any(|e| matches!(e, NodeEvent::PressRefused { .. }))
    });
    assert!(events.contains(&NodeEvent::PressRefused { press, reason: PressRefusal::Observer }), "{events:?}");
    assert_eq!(PressRefusal::Observer.to_string(), "observers may not press");
    wait_journal(dir.path(), Duration::from_secs(2), |v| v["event"] == "press-refused" && v["origin"] == "watcher");

    // Garbage, an oversized frame and a message before the hello, each on its own connection.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut r = raw(&performer).await;
        r.send.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff]).await.unwrap();
        let (code, reason) = closed(&mut r).await;
        assert_eq!(code, wire::CLOSE_PROTOCOL);
        assert!(reason.starts_with("protocol error: malformed frame"), "{reason}");

        let mut r = raw(&performer).await;
        r.send.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        let (code, reason) = closed(&mut r).await;
        assert_eq!(code, wire::CLOSE_PROTOCOL);
        assert!(reason.contains("exceeds the 65536-byte limit"), "{reason}");

        let mut r = raw(&performer).await;
        let press = encode(&Message::Press { press: 1, command: scene("chorus") }).unwrap();
        r.send.write_all(&press).await.unwrap();
        let (code, reason) = closed(&mut r).await;
        assert_eq!(code, wire::CLOSE_PROTOCOL);
        assert_eq!(reason, "protocol error: press before a welcome");

        // A frame flood from a welcomed connection: closed for the rate limit.
        let mut r = raw(&performer).await;
        let hello = Message::Hello {
            version: PROTOCOL_VERSION,
            node: "flood".into(),
            role: Role::Performer,
            proof: proof(&performer.secret, Role::Performer, "flood"),
            incarnation: 1,
            last_seq: u64::MAX,
        };
        r.send.write_all(&encode(&hello).unwrap()).await.unwrap();
        let ack = encode(&Message::Ack { seq: 0 }).unwrap();
        let flood: Vec<u8> = ack.iter().copied().cycle().take(ack.len() * 6000).collect();
        let _ = r.send.write_all(&flood).await;
        let (code, reason) = closed(&mut r).await;
        assert_eq!(code, wire::CLOSE_RATE);
        assert!(reason.contains("rate limit"), "{reason}");
    });
    wait_journal(dir.path(), Duration::from_secs(2), |v| {
        v["event"] == "closed" && v["reason"].as_str().unwrap().starts_with("protocol error: malformed frame")
    });
    wait_journal(dir.path(), Duration::from_secs(2), |v| v["event"] == "closed" && v["code"] == wire::CLOSE_RATE);

    // A press flood from a performer: the burst is sequenced, the rest refused as rate-limited,
    // and the flooder stays connected.
    let flooder = Client::connect(&performer, ClientOptions::new("flooder")).expect("joins");
    for _ in 0..300 {
        flooder.press(ControlCommand::Tempo { bpm: 120.0 });
    }
    let events = events_until(&flooder, Duration::from_secs(10), |e| {
        let limited =
            e.iter().filter(|e| matches!(e, NodeEvent::PressRefused { reason: PressRefusal::RateLimited, .. })).count();
        let own = e.iter().filter(|e| matches!(e, NodeEvent::ScheduleAt { origin, .. } if origin == "flooder")).count();
        limited + own >= 300
    });
    let limited = events
        .iter()
        .filter(|e| matches!(e, NodeEvent::PressRefused { reason: PressRefusal::RateLimited, .. }))
        .count();
    assert!((150..=200).contains(&limited), "{limited} presses rate-limited");
    wait_journal(dir.path(), Duration::from_secs(2), |v| {
        v["event"] == "press-refused" && v["reason"].as_str().unwrap().contains("rate limit")
    });
    assert!(flooder.is_connected());

    // The healthy node was never disturbed and still receives entries.
    assert!(healthy.is_connected());
    let entry = server.press(scene("outro"), "ctl").expect("sequenced");
    let events = events_until(&healthy, Duration::from_secs(10), |e| seqs(e).contains(&entry.seq));
    let got = seqs(&events);
    assert_eq!(got, (1..=entry.seq).collect::<Vec<_>>(), "every entry once, in order");
    assert!(healthy.is_connected());
}

#[test]
fn an_unreachable_conductor_is_an_error_after_the_timeout() {
    let dir = TempDir::new("unreachable");
    let code = {
        let server = serve(SetSource::Demo, dir.path());
        server.join_code(Role::Performer).clone()
        // The conductor stops here: nothing listens at the code's address any more.
    };
    let mut opts = ClientOptions::new("late");
    opts.connect_timeout = Duration::from_millis(1500);
    let started = std::time::Instant::now();
    let e = Client::connect(&code, opts).err().expect("nobody answers");
    assert!(matches!(e, ClientError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("unreachable"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
}
