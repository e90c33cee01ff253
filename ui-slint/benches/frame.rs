//! Frame time of the launcher: one UI update for a 16 × 32 set (the snapshot -> the view model
//! -> the Slint properties -> a full redraw with the software renderer at 1366 × 768), and its
//! parts. Run: `cargo bench -p loophole-ui --bench frame`. Bench thread (the headless UI thread).

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use loophole_engine::control::Snapshot;
use loophole_engine::files::session::parse_session;
use loophole_engine::model::Session;
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::script::Script;
use loophole_ui::headless::HeadlessLauncher;
use loophole_ui::model::LauncherModel;

/// 16 tracks × 32 scenes, a clip in every slot; scene 0 plays and scene 1 is queued at beat 6.
fn big() -> (Arc<Session>, Snapshot) {
    let mut toml = String::from("[session]\nname = \"big\"\ntempo = 120\nbeats_per_bar = 4\nquantise = \"bar\"\n");
    for t in 0..16 {
        toml.push_str(&format!("[[track]]\nid = \"t{t}\"\nkind = \"midi\"\ninstrument = {{ type = \"synth\" }}\n"));
    }
    for t in 0..16 {
        for s in 0..32 {
            toml.push_str(&format!(
                "[[clip]]\nid = \"c{t}-{s}\"\ntrack = \"t{t}\"\nlength_beats = 4\nnotes = [[0.0, 0.5, 60, 100]]\n"
            ));
        }
    }
    for s in 0..32 {
        let clips: Vec<String> = (0..16).map(|t| format!("\"c{t}-{s}\"")).collect();
        toml.push_str(&format!("[[scene]]\nid = \"s{s}\"\nclips = [{}]\n", clips.join(", ")));
    }
    let session = Arc::new(parse_session(&toml, Path::new("big.toml")).unwrap());
    let script = "[[at]]\nbeat = 0\nscene = \"s0\"\n\n[[at]]\nbeat = 5\nscene = \"s1\"\n";
    let script = Script::parse(script, Path::new("s.toml"), &session).unwrap();
    let mut r =
        Renderer::new(session.clone(), script, RenderConfig { sample_rate: 48_000, block: 256, seconds: 4.0 }).unwrap();
    let mut out = vec![0.0; 256 * 2];
    while r.beat_at(r.position() as i64).0 < 6.5 {
        r.render_frames(256, &mut out);
    }
    while r.poll_event().is_some() {}
    let snap = r.snapshot();
    (session, snap)
}

fn frame(c: &mut Criterion) {
    let (session, snap) = big();
    let ui = HeadlessLauncher::new(session.clone(), 1366, 768).unwrap();
    let mut seq = snap.seq;
    c.bench_function("ui/model 16x32", |b| b.iter(|| LauncherModel::new(&session, &snap)));
    c.bench_function("ui/redraw only 16x32 1366x768", |b| b.iter(|| ui.render()));
    c.bench_function("ui/frame 16x32 1366x768 (snapshot -> model -> render)", |b| {
        b.iter(|| {
            // A new snapshot each frame, as the live window gets one every 33 ms.
            let mut s = snap.clone();
            seq += 1;
            s.seq = seq;
            s.transport.beat += 0.01;
            ui.frame(Arc::new(s))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = frame
}
criterion_main!(benches);
