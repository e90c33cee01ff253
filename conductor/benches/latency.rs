//! The conductor's benchmarks, in one run (`cargo bench -p loophole-conductor`):
//! 1. the round trip of a 32-byte raw UDP echo on loopback (the floor);
//! 2. conductor -> node delivery of a scheduled command over the QUIC path (a press made at the
//!    in-process conductor until a client-library node has the entry: sequencing, the durable
//!    commit, framing, QUIC, the client's driver), median and p99, against the UDP figures;
//! 3. fan-out of one command to 256 client connections on loopback: p99 delivery and the
//!    conductor's CPU time per command (its threads' run time from /proc schedstat, idle
//!    subtracted);
//! 4. the lead a press gets (how soon after a press the band can switch) with 0, 20 and 100 ms
//!    of round trip added by a user-space UDP relay between the node and the conductor (`tc
//!    netem` is not available here), and how early the node had the entry before its beat.
//!
//! Thread: the bench's main thread, plus the conductor's and the clients' own.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use loophole_conductor::client::{Client, ClientOptions, NodeEvent};
use loophole_conductor::serve::{Limits, ServeOptions, Server};
use loophole_conductor::set::SetSource;
use loophole_engine::control::ControlCommand;
use loophole_net_proto::v1::Role;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn udp_echo(rounds: usize) -> Vec<Duration> {
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = server.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            if n == 1 {
                return;
            }
            let _ = server.send_to(&buf[..n], from);
        }
    });
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client.connect(addr).expect("connect");
    client.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let payload = [7u8; 32];
    let mut buf = [0u8; 64];
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        client.send(&payload).expect("send");
        client.recv(&mut buf).expect("echo");
        out.push(t.elapsed());
    }
    let _ = client.send(&[0]);
    out.sort();
    out
}

fn state_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loophole-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Removes this run's state directories (their servers have stopped by then).
fn remove_state_dirs() {
    let suffix = format!("-{}", std::process::id());
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("loophole-bench-") && name.ends_with(&suffix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn server(name: &str) -> Server {
    let mut o = ServeOptions::new(SetSource::Demo);
    o.listen = "127.0.0.1:0".parse().expect("address");
    o.state_dir = state_dir(name);
    o.limits = Limits { press_rate: 1e6, press_burst: 1e6, frame_rate: 1e7, frame_burst: 1e7 };
    Server::start(o).expect("conductor starts")
}

/// Waits for the next `ScheduleAt` on `client`.
fn wait_entry(client: &Client, within: Duration) -> Option<Instant> {
    let end = Instant::now() + within;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if let Some(NodeEvent::ScheduleAt { .. }) = client.next_event(left) {
            return Some(Instant::now());
        }
    }
    None
}

/// Delivery times: from the press (durable commit included), and from the press's return
/// (the entry committed and handed to the connection task) until the node has it.
fn delivery(rounds: usize) -> (Vec<Duration>, Vec<Duration>) {
    let server = server("delivery");
    let client = Client::connect(server.join_code(Role::Performer), ClientOptions::new("bench")).expect("client joins");
    let (mut total, mut after_commit) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for i in 0..rounds {
        let t = Instant::now();
        server.press(ControlCommand::Tempo { bpm: 100.0 + (i % 50) as f64 }, "bench").expect("sequenced");
        let committed = Instant::now();
        let got = wait_entry(&client, Duration::from_secs(2)).expect("delivered");
        total.push(got - t);
        after_commit.push(got.saturating_duration_since(committed));
    }
    total.sort();
    after_commit.sort();
    (total, after_commit)
}

/// CPU time of this process's threads named `conductor` (the conductor's runtime), from
/// `/proc/self/task/*/schedstat` (nanoseconds on the CPU).
fn conductor_cpu() -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let Ok(comm) = std::fs::read_to_string(t.path().join("comm")) else { continue };
            if !comm.starts_with("conductor") {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(t.path().join("schedstat")) else { continue };
            total += stat.split(' ').next().and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

fn fan_out(nodes: usize, commands: usize) -> (Vec<Duration>, Duration, Duration) {
    let server = server("fanout");
    let code = server.join_code(Role::Observer).clone();
    let clients: Vec<Client> = (0..nodes)
        .map(|i| {
            let mut o = ClientOptions::new(&format!("n{i}"));
            o.connect_timeout = Duration::from_secs(20);
            Client::connect(&code, o).expect("client joins")
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    for c in &clients {
        while c.try_event().is_some() {}
    }
    // Idle CPU over the same span as the commands take, to subtract.
    let idle_span = Duration::from_millis(300) * commands as u32;
    let c0 = conductor_cpu();
    std::thread::sleep(idle_span);
    let idle = conductor_cpu().saturating_sub(c0);
    let mut delays = Vec::new();
    let start_cpu = conductor_cpu();
    let started = Instant::now();
    for i in 0..commands {
        let t = Instant::now();
        server.press(ControlCommand::Tempo { bpm: 90.0 + i as f64 }, "bench").expect("sequenced");
        let mut pending: Vec<usize> = (0..clients.len()).collect();
        let end = t + Duration::from_secs(5);
        while !pending.is_empty() && Instant::now() < end {
            pending.retain(|&k| match clients[k].try_event() {
                Some(NodeEvent::ScheduleAt { .. }) => {
                    delays.push(t.elapsed());
                    false
                }
                _ => true,
            });
            std::thread::sleep(Duration::from_micros(50));
        }
        assert!(pending.is_empty(), "{} nodes did not get command {i}", pending.len());
        std::thread::sleep(Duration::from_millis(300).saturating_sub(t.elapsed()));
    }
    let span = started.elapsed();
    let busy = conductor_cpu().saturating_sub(start_cpu);
    let idle_scaled = idle.mul_f64(span.as_secs_f64() / idle_span.as_secs_f64());
    delays.sort();
    (delays, busy.saturating_sub(idle_scaled) / commands as u32, idle_scaled / commands as u32)
}

/// Forwards datagrams from `from` to whatever `to` gives, each `delay` after it arrived (a
/// constant delay keeps the order). Ends when `from` fails.
fn delayed_pipe(from: UdpSocket, delay: Duration, send: impl Fn(&[u8]) + Send + 'static) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            send(&bytes);
        }
    });
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = from.recv(&mut buf) {
            if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    });
}

/// A UDP relay in front of `server` adding `one_way` each way; returns the address nodes use.
/// One node at a time (the first address that sends is the node).
fn relay(server: SocketAddr, one_way: Duration) -> SocketAddr {
    let front = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = front.local_addr().expect("addr");
    let back = UdpSocket::bind("127.0.0.1:0").expect("bind");
    back.connect(server).expect("connect");
    // Learn the node's address from its first datagram.
    let mut buf = vec![0u8; 65_536];
    let front2 = front.try_clone().expect("clone");
    let back2 = back.try_clone().expect("clone");
    std::thread::spawn(move || {
        let Ok((n, node)) = front.recv_from(&mut buf) else { return };
        front.connect(node).expect("connect");
        let _ = back2.send(&buf[..n]);
        let to_server = back2.try_clone().expect("clone");
        delayed_pipe(front, one_way, move |b| {
            let _ = to_server.send(b);
        });
        let to_node = front2;
        delayed_pipe(back, one_way, move |b| {
            let _ = to_node.send(b);
        });
    });
    addr
}

/// The lead of presses at the conductor with `added` round trip between it and one node:
/// (lead, how long before the entry's beat the node had it), medians over `presses`.
fn lead_with(added: Duration, presses: usize) -> (Duration, Duration) {
    let server = server(&format!("lead-{}", added.as_millis()));
    let mut code = server.join_code(Role::Performer).clone();
    code.address = relay(server.local_addr(), added / 2);
    let mut o = ClientOptions::new("far");
    o.connect_timeout = Duration::from_secs(20);
    let client = Client::connect(&code, o).expect("client joins through the relay");
    // Let the round-trip estimate settle (the conductor pings every 250 ms).
    std::thread::sleep(Duration::from_secs(3));
    while client.try_event().is_some() {}
    let bpm = loophole_engine::demo::session().tempo.0;
    let (mut leads, mut margins) = (Vec::new(), Vec::new());
    for i in 0..presses {
        let t = server.band_time();
        let entry = server.press(ControlCommand::Tempo { bpm }, "bench").expect("sequenced");
        // The demo's tempo from band time 0 (these tempo presses keep it).
        let now_beat = t.as_secs_f64() * bpm / 60.0;
        let lead = Duration::from_secs_f64(((entry.target_beat - now_beat) * 60.0 / bpm).max(0.0));
        let got = wait_entry(&client, Duration::from_secs(10)).unwrap_or_else(|| panic!("press {i} not delivered"));
        // Band time when the node had it.
        let had_at = server.band_time().saturating_sub(got.elapsed());
        let target_time = Duration::from_secs_f64(entry.target_beat * 60.0 / bpm);
        leads.push(lead);
        margins.push(target_time.saturating_sub(had_at));
        std::thread::sleep(Duration::from_millis(200));
    }
    leads.sort();
    margins.sort();
    (percentile(&leads, 0.5), percentile(&margins, 0.5))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo test --all-targets` runs this bench without `--bench`: a quick smoke run that the
    // paths still work (a few deliveries, one lead through the relay), not the measurements.
    if !std::env::args().any(|a| a == "--bench") {
        let (total, _) = delivery(5);
        let (lead, margin) = lead_with(Duration::from_millis(20), 1);
        assert!(lead > Duration::ZERO && margin > Duration::ZERO, "lead {lead:?}, margin {margin:?}");
        println!("smoke run: 5 deliveries (slowest {:?}), a lead of {lead:?} through the relay", total.last());
        remove_state_dirs();
        return;
    }
    let udp = udp_echo(5000);
    let (udp_med, udp_p99) = (percentile(&udp, 0.5), percentile(&udp, 0.99));
    println!("raw UDP echo, 32 bytes, loopback: round trip median {:.1} us, p99 {:.1} us", us(udp_med), us(udp_p99));
    let (total, quic) = delivery(1000);
    println!(
        "press at the conductor until the node has the entry (durable commit included): median {:.1} us, p99 {:.1} us",
        us(percentile(&total, 0.5)),
        us(percentile(&total, 0.99))
    );
    let (q_med, q_p99) = (percentile(&quic, 0.5), percentile(&quic, 0.99));
    println!(
        "conductor -> node over QUIC (entry committed and handed to its connection until the node has it): \
         median {:.1} us, p99 {:.1} us",
        us(q_med),
        us(q_p99)
    );
    println!(
        "ratio to the UDP round trip: median {:.2}x, p99 {:.2}x (to UDP one way, round trip / 2: median {:.2}x, p99 {:.2}x)",
        us(q_med) / us(udp_med),
        us(q_p99) / us(udp_p99),
        2.0 * us(q_med) / us(udp_med),
        2.0 * us(q_p99) / us(udp_p99)
    );
    let (delays, cpu, idle) = fan_out(256, 20);
    println!(
        "fan-out of one command to 256 connections: delivery median {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         conductor CPU {:.2} ms per command (its idle CPU over the same time, {:.2} ms per command, subtracted)",
        percentile(&delays, 0.5).as_secs_f64() * 1e3,
        percentile(&delays, 0.99).as_secs_f64() * 1e3,
        delays.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        cpu.as_secs_f64() * 1e3,
        idle.as_secs_f64() * 1e3
    );
    for added in [0u64, 20, 100] {
        let (lead, margin) = lead_with(Duration::from_millis(added), 10);
        println!(
            "lead with {added} ms of round trip added (UDP relay): {:.0} ms from a press to the beat the band switches on; \
             the node had the entry {:.0} ms before that beat",
            lead.as_secs_f64() * 1e3,
            margin.as_secs_f64() * 1e3
        );
    }
    remove_state_dirs();
}
