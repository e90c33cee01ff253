//! A conductor shut down and started again on the same state directory and port: its close
//! reaches the node at once (no 2 s idle wait), the node's client reconnects by itself within
//! its short first attempts, says hello on the new connection, presses again, and holds every
//! entry once. (When the restart beats the node's 1 s "unreachable" rule, this also exercises
//! the hello-first rule of `NodeClient::reconnect`; `net-proto/tests/driver_hooks.rs` checks that
//! rule deterministically.)

mod common;

use std::time::Duration;

use common::*;
use loophole_conductor::client::{Client, ClientOptions, NodeEvent, Pressed};
use loophole_conductor::serve::{ServeOptions, Server};
use loophole_conductor::set::SetSource;
use loophole_engine::control::ControlCommand;
use loophole_net_proto::v1::Role;

fn scene(name: &str) -> ControlCommand {
    ControlCommand::SceneTrigger { scene: name.into(), quantise: None, mode: None }
}

fn start(dir: &std::path::Path, port: u16) -> Server {
    let mut o = ServeOptions::new(SetSource::Demo);
    o.listen = format!("127.0.0.1:{port}").parse().unwrap();
    o.state_dir = dir.join("state");
    Server::start(o).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn a_quick_restart_is_rejoined_with_a_hello_first() {
    let dir = TempDir::new("restart");
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = start(dir.path(), port);
    let code = server.join_code(Role::Performer).clone();
    let node = Client::connect(&code, ClientOptions::new("keys")).expect("joins");
    server.press(scene("intro"), "ctl").unwrap();
    server.press(scene("verse"), "ctl").unwrap();
    let mut events = events_until(&node, Duration::from_secs(5), |e| seqs(e).len() >= 2);

    server.shutdown().unwrap();
    let server = start(dir.path(), port);
    assert_eq!(server.join_code(Role::Performer), &code);
    std::thread::sleep(Duration::from_millis(150));
    wait_for("the node to be welcomed again", Duration::from_secs(3), || node.is_connected());
    let Pressed::Sent(_) = node.press(scene("chorus")) else { panic!("the press was not sent") };
    events.extend(events_until(&node, Duration::from_secs(5), |e| {
        e.iter().any(|e| matches!(e, NodeEvent::ScheduleAt { origin, .. } if origin == "keys"))
    }));
    assert_eq!(node.closed_reason(), None);
    std::thread::sleep(Duration::from_millis(100));
    events.extend(std::iter::from_fn(|| node.try_event()));
    assert_eq!(seqs(&events), vec![1, 2, 3], "{events:#?}");
}
