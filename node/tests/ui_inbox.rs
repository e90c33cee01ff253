//! The launcher's clicks and keys, simulated on the headless window, go through the node's real
//! command path: a live performance (`demo --no-ui` on the null device) hands its board and inbox
//! over as it does to the real window; the headless launcher draws the published snapshots and
//! sends what is clicked and typed to the inbox as `Source::Ui`; the `--log` shows each press with
//! source `ui` and the clip or scene it launched.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser as _;
use common::*;
use loophole_node::cli::{Cli, Command};
use loophole_node::inbox::{PressAt, Request, Source};
use loophole_ui::headless::HeadlessLauncher;

#[test]
fn clicks_and_keys_on_the_launcher_launch_clips_and_scenes_through_the_inbox() {
    let dir = scratch("ui-inbox");
    let log = dir.join("live.jsonl");
    let cli = Cli::try_parse_from([
        "loophole-node",
        "demo",
        "--no-ui",
        "--audio",
        "null",
        "--no-realtime",
        "--seconds",
        "6",
        "--capture",
        dir.join("x.wav").to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
    ])
    .unwrap();
    let Command::Demo(args) = cli.command else { panic!("not demo") };
    let mut opts = args.into_options().unwrap();
    let (tx, rx) = mpsc::channel();
    opts.window.link = Some(tx);
    let performance = std::thread::spawn(move || loophole_node::play::run(opts));
    let link = rx.recv_timeout(Duration::from_secs(20)).expect("the performance hands over its board and inbox");
    let inbox = link.inbox.clone();
    let ui = HeadlessLauncher::with_sender(link.session.clone(), 1366, 768, move |command| {
        inbox.send(Request::Command { source: Source::Ui, at: PressAt::Now, command });
    })
    .unwrap();
    // Frames of the live performance, as the window's timer draws them.
    let started = Instant::now();
    let first = loop {
        if let Some(s) = link.board.latest() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "nothing was published");
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = ui.frame(first);
    // A click on the chorus's lead (track 3, scene 2: the playlist reaches it much later).
    let session = link.session.clone();
    let lead = session.scenes[2]
        .clips
        .iter()
        .map(|c| &session.clips[c.index()])
        .find(|c| c.track.index() == 3)
        .unwrap()
        .id
        .clone();
    let (x, y) = ui.slot_centre(3, 2);
    ui.click(x, y);
    std::thread::sleep(Duration::from_millis(1500));
    let _ = ui.frame(link.board.latest().unwrap());
    // '4' launches the fourth scene.
    ui.key_with("4", Default::default());
    let summary = performance.join().unwrap().unwrap();
    assert_eq!(summary.refused, 0, "a press from the window was refused");

    let events = read_log(&log);
    let presses: Vec<_> = events.iter().filter(|e| e["event"] == "press").collect();
    assert_eq!(presses.len(), 2, "{presses:?}");
    assert!(presses.iter().all(|e| e["from"] == "ui"), "{presses:?}");
    assert_eq!(presses[0]["what"]["clip.trigger"]["clip"], lead.as_str());
    let scene = &session.scenes[3].id;
    assert_eq!(presses[1]["what"]["scene.trigger"]["scene"], scene.as_str());
    let launched = |key: &str, name: &str| {
        events.iter().find(|e| e["event"] == "trigger" && e[key] == name && e["cause"] == "press").cloned()
    };
    let clip = launched("clip", &lead).unwrap_or_else(|| panic!("{lead} never launched: {events:?}"));
    assert!(clip["beat"].as_f64().unwrap() >= presses[0]["beat"].as_f64().unwrap());
    assert!(launched("scene", scene).is_some(), "scene {scene} never launched");
}
