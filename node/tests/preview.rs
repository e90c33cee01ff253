//! `render --playthrough` and `render --arrangement`: a session's own scenes or arrangement
//! performed without a script, with the default length taken from them.

mod common;

use std::path::PathBuf;

use common::*;
use loophole_engine::files::session::load_session;
use loophole_engine::model::SceneId;
use loophole_engine::script::{arrangement_length, playthrough_length};

fn band() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/band.toml")
}

/// The `step` events of a log: (beat, scene).
fn steps(log: &[serde_json::Value]) -> Vec<(f64, String)> {
    log.iter()
        .filter(|e| e["event"] == "step")
        .map(|e| (e["beat"].as_f64().unwrap(), e["scene"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn render_playthrough_plays_every_scene_in_order_and_logs_its_triggers() {
    let dir = scratch("preview-playthrough");
    let band = band();
    let args = ["render", band.to_str().unwrap(), "--playthrough", "--sample-rate", "8000", "--out", "p.wav"];
    let out = run_in(&dir, &[&args[..], &["--log", "p.jsonl"]].concat());
    assert_ok(&out);
    let session = load_session(&band).unwrap();
    let log = read_log(&dir.join("p.jsonl"));
    // Every scene once, each for its length (8 beats each in band.toml).
    let expected: Vec<(f64, String)> =
        session.scenes.iter().enumerate().map(|(i, s)| (8.0 * i as f64, s.id.clone())).collect();
    assert_eq!(steps(&log), expected);
    let triggers: Vec<_> = log.iter().filter(|e| e["event"] == "trigger").collect();
    assert!(triggers.len() >= session.scenes.len(), "{} triggers", triggers.len());
    assert!(triggers.iter().all(|e| e["cause"].get("playthrough").is_some()), "every trigger is the playthrough's");
    // At the end every track stops; the default length is the scenes' plus one bar.
    let last = triggers.last().unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["target"].as_f64()),
        (Some("stop"), Some(8.0 * session.scenes.len() as f64))
    );
    let last_scene = SceneId(session.scenes.len() as u32 - 1);
    let length = playthrough_length(&session, SceneId(0), last_scene);
    let (spec, samples) = read_wav(&dir.join("p.wav"));
    let frames = samples.len() / 2;
    let expected_frames = (length.seconds + length.bar_seconds) * f64::from(spec.sample_rate);
    assert!((frames as f64 - expected_frames).abs() <= 1.0, "{frames} frames, expected {expected_frames}");
    assert!(peak(&samples) > 0.01, "not silent");

    // A range of scenes.
    let out = run_in(
        &dir,
        &[
            "render",
            band.to_str().unwrap(),
            "--playthrough",
            "--from",
            "verse",
            "--to",
            "chorus",
            "--sample-rate",
            "8000",
        ]
        .iter()
        .copied()
        .chain(["--out", "r.wav", "--log", "r.jsonl"])
        .collect::<Vec<_>>(),
    );
    assert_ok(&out);
    assert_eq!(steps(&read_log(&dir.join("r.jsonl"))), [(0.0, "verse".to_string()), (8.0, "chorus".to_string())]);
}

#[test]
fn render_arrangement_plays_the_lanes_until_the_end() {
    let dir = scratch("preview-arrangement");
    let band = band();
    let args = ["render", band.to_str().unwrap(), "--arrangement", "--sample-rate", "8000", "--out", "a.wav"];
    let out = run_in(&dir, &[&args[..], &["--log", "a.jsonl"]].concat());
    assert_ok(&out);
    let session = load_session(&band).unwrap();
    let log = read_log(&dir.join("a.jsonl"));
    let triggers: Vec<_> = log.iter().filter(|e| e["event"] == "trigger").collect();
    assert!(triggers.iter().all(|e| e["cause"] == "arrangement"), "every trigger comes from the arrangement");
    let starts = triggers.iter().filter(|e| e["kind"] == "start").count();
    assert_eq!(starts, session.arrangement.clips.len(), "one start per placement");
    let length = arrangement_length(&session);
    let (spec, samples) = read_wav(&dir.join("a.wav"));
    let expected_frames = (length.seconds + length.bar_seconds) * f64::from(spec.sample_rate);
    assert!((samples.len() as f64 / 2.0 - expected_frames).abs() <= 1.0);
}

#[test]
fn bad_preview_options_are_exit_code_2() {
    let dir = scratch("preview-bad");
    let band = band();
    let band = band.to_str().unwrap();
    let bad = |args: &[&str], must_name: &str| {
        let out = run_in(&dir, args);
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(must_name), "{args:?}: stderr does not name {must_name:?}:\n{stderr}");
        assert_no_panic(&out);
    };
    bad(
        &["render", band, "--playthrough", "--from", "bridgee", "--out", "x.wav"],
        "--from: scene 'bridgee' does not exist",
    );
    bad(&["render", band, "--playthrough", "--from", "outro", "--to", "intro", "--out", "x.wav"], "comes before");
    bad(&["render", band, "--playthrough", "--script", "s.toml", "--out", "x.wav"], "--script");
    bad(&["render", band, "--from", "intro", "--out", "x.wav"], "--playthrough");
    let minimal = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/minimal.toml");
    bad(&["render", minimal.to_str().unwrap(), "--arrangement", "--out", "x.wav"], "has no arrangement");
}
