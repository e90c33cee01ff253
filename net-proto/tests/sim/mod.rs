//! A band on virtual time: one conductor core and N node clients over a simulated network
//! (per-link delay, jitter, loss, reordering; every message goes through the frame codec), with
//! presses from random nodes and `ctl`, node restarts, partitions and late joins. Everything is
//! driven by one seeded generator, so a failing seed replays exactly.

pub mod app;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use loophole_engine::control::ControlCommand;
use loophole_engine::model::Session;
use loophole_engine::pulse::{MixChange, SceneMode, StopMode};
use loophole_engine::time::{Beats, Quantise};
use loophole_net_proto::conductor::{Conductor, Config, ConnId, Event, Moment};
use loophole_net_proto::node::{NodeClient, NodeConfig, NodeEvent};
use loophole_net_proto::v1::{Message, Role};
use loophole_net_proto::{FrameDecoder, encode};

use app::{App, Held};

/// splitmix64: small, seeded, good enough for a simulation.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 % 1.0 < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The shape of one run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub nodes: usize,
    pub commands: usize,
    /// Mean time between presses.
    pub spacing_ms: u64,
    /// Largest one-way base delay of a link (each link draws its own, 0..=this).
    pub max_delay_ms: u64,
    /// Extra delay per message, 0..=this (reorders messages).
    pub jitter_ms: u64,
    pub loss: f64,
    /// Restarts, partitions and late joins, each of a random node.
    pub restarts: usize,
    pub partitions: usize,
    pub late_joins: usize,
}

/// What happens to a node.
#[derive(Debug, Clone, Copy)]
enum Mishap {
    /// The client restarts (connection lost) keeping its last seq; the node plays on.
    Client { down: u64 },
    /// The node loses everything and rejoins after `down`.
    Process { down: u64 },
    /// Every message to and from the node is lost for this long.
    Partition { length: u64 },
    /// The node joins for the first time.
    Join,
}

struct SimNode {
    name: String,
    client: Option<NodeClient>,
    conn: ConnId,
    epoch: u64,
    up: bool,
    partitioned_until: u64,
    app: App,
    rejoined_at: Option<u64>,
    caught_up: bool,
}

/// One message in the air.
struct Packet {
    to_node: Option<usize>,
    conn: ConnId,
    bytes: Vec<u8>,
}

/// What a run found, for the assertions.
pub struct Outcome {
    pub log_len: usize,
    pub refused_presses: usize,
    pub local_presses: usize,
    pub golden: Vec<app::Record>,
    /// Per node: name, records after its live beat, its live beat, rebuilds, late entries,
    /// applied ids, whether it had any mishap.
    pub nodes: Vec<NodeOutcome>,
    pub end_beat: Beats,
    pub all_ids: Vec<u64>,
    /// The earliest target of the log.
    pub first_target: Beats,
}

pub struct NodeOutcome {
    pub name: String,
    pub records: Vec<app::Record>,
    pub live_from: Beats,
    pub rebuilds: usize,
    pub late: usize,
    pub applied: Vec<u64>,
    pub mishaps: usize,
    pub golden_after: Vec<app::Record>,
}

pub fn band() -> Arc<Session> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/band.toml");
    Arc::new(loophole_engine::files::session::load_session(&path).unwrap_or_else(|e| panic!("{e}")))
}

/// A random command on `s` (about one in twenty names something the set does not have).
fn command(rng: &mut Rng, s: &Session) -> ControlCommand {
    let clip = rng.pick(&s.clips).id.clone();
    let scene = rng.pick(&s.scenes).id.clone();
    let track = rng.pick(&s.tracks).id.clone();
    let q = *rng.pick(&[
        None,
        Some(Quantise::None),
        Some(Quantise::Beat),
        Some(Quantise::Bar),
        Some(Quantise::Division(16)),
    ]);
    let stop =
        *rng.pick(&[None, Some(StopMode::Immediate), Some(StopMode::SectionEnd), Some(StopMode::FadeOut(Beats(1.0)))]);
    match rng.below(20) {
        0..=6 => ControlCommand::ClipTrigger { clip, quantise: q, behaviour: None, velocity: Some(0.9) },
        7..=10 => ControlCommand::SceneTrigger {
            scene,
            quantise: q,
            mode: Some(*rng.pick(&[SceneMode::Full, SceneMode::Partial])),
        },
        11 => ControlCommand::ClipRelease { clip },
        12 | 13 => ControlCommand::TrackStop { track, mode: stop },
        14 => ControlCommand::StopAll { mode: stop },
        15 => match s.playlists.first() {
            Some(p) => {
                ControlCommand::PlaylistStart { playlist: p.id.clone(), step: rng.below(2) as usize, quantise: None }
            }
            None => ControlCommand::ArrangementPlay,
        },
        16 => ControlCommand::Mix {
            track,
            change: MixChange { gain_db: Some(-(rng.below(12) as f64)), ..MixChange::default() },
        },
        17 => ControlCommand::LauncherQuantise {
            quantise: *rng.pick(&[Quantise::Bar, Quantise::Beat, Quantise::HalfBeat]),
        },
        18 => ControlCommand::Playthrough { from: Some(scene), to: None, quantise: None },
        _ => ControlCommand::SceneTrigger { scene: "no-such-scene".into(), quantise: None, mode: None },
    }
}

const BLOCK_US: u64 = 20_000;

/// A deadline in whole microseconds, rounded up (rounding down would wake a core before its
/// deadline, forever).
fn us(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1000) as u64
}
const SECRET: [u8; 32] = [0x5e; 32];

/// Runs a scenario; returns what every node did and the golden run of the final log.
pub fn run(sc: &Scenario, session: Arc<Session>) -> Outcome {
    let mut rng = Rng::new(sc.seed);
    let bpm = session.tempo.0;
    let beat = |t: u64| Beats(t as f64 / 1e6 * bpm / 60.0);
    let moment = |t: u64| Moment { time: Duration::from_micros(t), beat: beat(t), bpm };
    let mut conductor = Conductor::new(session.clone(), Config::new(vec![(Role::Performer, SECRET)]));
    let delays: Vec<u64> = (0..sc.nodes).map(|_| rng.below(sc.max_delay_ms + 1) * 1000).collect();

    // The script: presses, mishaps.
    let mut presses: Vec<(u64, Option<usize>, ControlCommand)> = Vec::new();
    let mut t = 500_000;
    for _ in 0..sc.commands {
        t += 1 + rng.below(2 * sc.spacing_ms * 1000);
        let who = if rng.chance(0.1) { None } else { Some(rng.below(sc.nodes as u64) as usize) };
        presses.push((t, who, command(&mut rng, &session)));
    }
    let last_press = t;
    let mut mishaps: Vec<(u64, usize, Mishap)> = Vec::new();
    let mut joins_late = vec![false; sc.nodes];
    for k in 0..sc.restarts + sc.partitions + sc.late_joins {
        let at = 1_000_000 + rng.below(last_press.saturating_sub(4_000_000).max(1));
        let node = rng.below(sc.nodes as u64) as usize;
        let m = if k < sc.restarts {
            let down = 200_000 + rng.below(3_000_000);
            if rng.chance(0.5) { Mishap::Client { down } } else { Mishap::Process { down } }
        } else if k < sc.restarts + sc.partitions {
            Mishap::Partition { length: 500_000 + rng.below(3_000_000) }
        } else {
            if joins_late[node] {
                continue;
            }
            joins_late[node] = true;
            Mishap::Join
        };
        mishaps.push((at, node, m));
    }
    if std::env::var("SIM_TRACE").is_ok() {
        eprintln!("mishaps {mishaps:?} late {joins_late:?} last press {last_press}");
    }
    mishaps.sort_by_key(|m| m.0);
    let end = last_press + 8_000_000;

    let config = |name: &str, incarnation: u64| NodeConfig::new(name, Role::Performer, SECRET, incarnation);
    let mut nodes: Vec<SimNode> = (0..sc.nodes)
        .map(|i| {
            let name = format!("node-{i}");
            let up = !joins_late[i];
            SimNode {
                client: up.then(|| NodeClient::new(config(&name, rng.next()), 0, Duration::ZERO)),
                name,
                conn: ConnId((i as u64) << 16),
                epoch: 0,
                up,
                partitioned_until: 0,
                app: App::new(session.clone()),
                rejoined_at: None,
                caught_up: false,
            }
        })
        .collect();
    for n in nodes.iter_mut().filter(|n| n.up) {
        n.app.needs_rebuild = true;
    }
    let mut mishap_count = vec![0usize; sc.nodes];
    let mut air: BTreeMap<(u64, u64), Packet> = BTreeMap::new();
    let mut order = 0u64;
    let mut next_block: Vec<u64> = (0..sc.nodes).map(|_| rng.below(BLOCK_US)).collect();
    let mut pending_up: Vec<(u64, usize, bool)> = Vec::new(); // (at, node, wiped)
    let mut refused_presses = 0;
    let mut local_presses = 0;
    let (mut pi, mut mi) = (0, 0);
    let mut now = 0u64;

    let mut send = |air: &mut BTreeMap<(u64, u64), Packet>, rng: &mut Rng, now: u64, p: Packet, link: u64| {
        if rng.chance(sc.loss) {
            return;
        }
        let at = now + link + rng.below(sc.jitter_ms * 1000 + 1);
        order += 1;
        air.insert((at, order), p);
    };

    let mut iters = 0u64;
    let mut next_report = 0u64;
    while now <= end {
        iters += 1;
        if std::env::var("SIM_TRACE").is_ok() && now >= next_report {
            next_report += 1_000_000;
            let acked: Vec<_> = conductor.nodes().map(|n| (n.3, n.4.as_millis())).collect();
            eprintln!(
                "t={:.1}s iters={iters} air={} log={} nodes={acked:?}",
                now as f64 / 1e6,
                air.len(),
                conductor.log().len()
            );
        }
        // Conductor: timers, then what it has to say.
        if conductor.poll_timeout().is_some_and(|d| us(d) <= now) {
            conductor.handle_timeout(moment(now));
        }
        while let Some(tx) = conductor.poll_transmit() {
            let i = (tx.to.0 >> 16) as usize;
            let n = &nodes[i];
            if n.up && n.conn == tx.to && n.partitioned_until <= now {
                let p = Packet { to_node: Some(i), conn: tx.to, bytes: encode(&tx.message).unwrap() };
                send(&mut air, &mut rng, now, p, delays[i]);
            }
        }
        while let Some(e) = conductor.poll_event() {
            if let Event::PressRefused { .. } = e {
                refused_presses += 1;
            }
        }
        // Nodes: timers, events, transmits.
        for (i, n) in nodes.iter_mut().enumerate() {
            let Some(client) = n.client.as_mut() else { continue };
            if client.poll_timeout().is_some_and(|d| us(d) <= now) {
                client.handle_timeout(Duration::from_micros(now));
            }
            while let Some(e) = client.poll_event() {
                match e {
                    NodeEvent::ScheduleAt { seq, id, beat, command, .. } => {
                        n.app.schedule(Held { seq, id, beat, command });
                    }
                    NodeEvent::Welcomed { .. } => n.caught_up = false,
                    NodeEvent::CaughtUp { .. } => n.caught_up = true,
                    NodeEvent::Local { command } => {
                        local_presses += 1;
                        n.app.local(&command, beat(now));
                    }
                    NodeEvent::PressRefused { .. } => {}
                    NodeEvent::Refused { reason } => panic!("{} refused: {reason}", n.name),
                    NodeEvent::Unreachable | NodeEvent::PressDropped { .. } => {}
                }
            }
            while let Some(m) = client.poll_transmit() {
                if n.partitioned_until <= now {
                    let p = Packet { to_node: None, conn: n.conn, bytes: encode(&m).unwrap() };
                    send(&mut air, &mut rng, now, p, delays[i]);
                }
            }
        }
        // Audio blocks.
        for (i, n) in nodes.iter_mut().enumerate() {
            if next_block[i] <= now {
                next_block[i] += BLOCK_US;
                let playing = n.up && (n.app.rebuilds > 0 || !n.app.needs_rebuild);
                if n.up && n.app.needs_rebuild && n.caught_up {
                    n.app.rebuild(beat(now));
                } else if playing {
                    n.app.step(beat(now));
                }
            }
        }

        // The next thing to happen.
        let mut next = end + 1;
        next = next.min(air.keys().next().map_or(u64::MAX, |k| k.0));
        next = next.min(conductor.poll_timeout().map_or(u64::MAX, us));
        for n in &nodes {
            if let Some(t) = n.client.as_ref().and_then(|c| c.poll_timeout()) {
                next = next.min(us(t));
            }
        }
        next = next.min(*next_block.iter().min().unwrap());
        next = next.min(presses.get(pi).map_or(u64::MAX, |p| p.0));
        next = next.min(mishaps.get(mi).map_or(u64::MAX, |m| m.0));
        next = next.min(pending_up.iter().map(|p| p.0).min().unwrap_or(u64::MAX));
        now = next.max(now);
        if now > end {
            break;
        }

        // Deliveries due now.
        while let Some(entry) = air.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let p = entry.remove();
            let mut d = FrameDecoder::new();
            d.push(&p.bytes);
            let msg: Message = d.next_message().expect("a frame we encoded decodes").expect("whole frame");
            match p.to_node {
                None => conductor.handle(moment(now), p.conn, msg),
                Some(i) => {
                    let n = &mut nodes[i];
                    if n.up
                        && n.conn == p.conn
                        && n.partitioned_until <= now
                        && let Some(c) = n.client.as_mut()
                    {
                        c.handle(Duration::from_micros(now), msg);
                    }
                }
            }
        }
        // Presses due now.
        while let Some((t, who, command)) = presses.get(pi).cloned() {
            if t > now {
                break;
            }
            pi += 1;
            match who {
                None => {
                    let _ = conductor.press(moment(now), command, "ctl");
                }
                Some(i) => {
                    let n = &mut nodes[i];
                    if let Some(c) = n.client.as_mut().filter(|_| n.up) {
                        c.press(Duration::from_micros(now), command);
                    }
                }
            }
        }
        // Mishaps due now.
        while let Some(&(t, i, m)) = mishaps.get(mi) {
            if t > now {
                break;
            }
            mi += 1;
            let n = &mut nodes[i];
            match m {
                Mishap::Client { down } | Mishap::Process { down } if n.up && n.client.is_some() => {
                    mishap_count[i] += 1;
                    n.client = None;
                    let wiped = matches!(m, Mishap::Process { .. });
                    if wiped {
                        n.up = false;
                    }
                    pending_up.push((now + down, i, wiped));
                }
                Mishap::Partition { length } if n.up => {
                    mishap_count[i] += 1;
                    n.partitioned_until = now + length;
                }
                Mishap::Join => {
                    mishap_count[i] += 1;
                    pending_up.push((now, i, true));
                }
                _ => {}
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = pending_up.iter().partition(|p| p.0 <= now);
        pending_up = later;
        for (_, i, wiped) in due {
            let n = &mut nodes[i];
            n.epoch += 1;
            n.conn = ConnId(((i as u64) << 16) | n.epoch);
            let last = if wiped {
                n.app = App::new(session.clone());
                n.app.needs_rebuild = true;
                0
            } else {
                n.app.log.keys().next_back().copied().unwrap_or(0)
            };
            n.up = true;
            n.caught_up = false;
            n.rejoined_at = Some(now);
            if std::env::var("SIM_TRACE").is_ok() {
                eprintln!("t={now} {} up (wiped {wiped}, last {last})", n.name);
            }
            n.client = Some(NodeClient::new(config(&n.name, rng.next()), last, Duration::from_micros(now)));
        }
    }

    // The golden run: the final log played by one node with no network.
    let log = conductor.log().to_vec();
    let mut golden = App::new(session.clone());
    for e in &log {
        golden.schedule(Held { seq: e.seq, id: e.id, beat: Beats(e.target_beat), command: e.command.clone() });
    }
    let mut t = 0;
    while t <= end {
        golden.step(beat(t));
        t += BLOCK_US;
    }
    let end_beat = beat(end - BLOCK_US);
    let cut = |r: Vec<app::Record>| -> Vec<app::Record> {
        r.into_iter().filter(|r| (r.0 as f64) < end_beat.0 * 1e6 - 1e6).collect()
    };
    let nodes = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut applied: Vec<u64> = n.app.applied.iter().copied().collect();
            applied.sort();
            NodeOutcome {
                name: n.name.clone(),
                records: cut(n.app.after(n.app.live_from)),
                golden_after: cut(golden.after(n.app.live_from)),
                live_from: n.app.live_from,
                rebuilds: n.app.rebuilds,
                late: n.app.late,
                applied,
                mishaps: mishap_count[i],
            }
        })
        .collect();
    Outcome {
        log_len: log.len(),
        refused_presses,
        local_presses,
        golden: golden.after(Beats(-1.0)),
        nodes,
        end_beat,
        all_ids: log.iter().map(|e| e.id).collect(),
        first_target: Beats(log.iter().map(|e| e.target_beat).fold(f64::INFINITY, f64::min)),
    }
}
