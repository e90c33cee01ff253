//! `loophole-node arrange`: committing a playthrough or a performance to the arrangement, and
//! moving clips onto lanes, from the command line; the committed arrangement sounds the same.

mod common;

use std::path::Path;

use common::*;

const SESSION: &str = r#"# A small set (this comment must survive the edit)
[session]
name = "arrange"
tempo = 124.0
crossfade_ms = 4.0

[[track]]
id = "keys"
kind = "midi"
instrument = { type = "synth", release = 0.1 }

[[track]]
id = "drums"
kind = "midi"
instrument = { type = "drums" }

[[clip]]
id = "chords"
track = "keys"
notes = [[0.0, 1.5, 57, 90], [2.0, 1.5, 60, 90], [4.0, 3.0, 64, 90]]
length_beats = 8

[[clip]]
id = "riff"
track = "keys"
notes = [[0.0, 0.25, 69, 100], [0.5, 0.25, 72, 100], [1.0, 0.25, 76, 100]]
length_beats = 2

[[clip]]
id = "beat"
track = "drums"
notes = [[0.0, 0.1, 36, 110], [1.0, 0.1, 38, 100], [2.0, 0.1, 36, 110], [3.0, 0.1, 38, 100]]
length_beats = 4

[[scene]]
id = "a"
clips = ["chords", "beat"]

[[scene]]
id = "b"
clips = ["riff"]
empty_slots = "continue"
"#;

fn setup(name: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    std::fs::write(dir.join("set.toml"), SESSION).unwrap();
    dir
}

fn render(dir: &Path, session: &str, how: &[&str], out: &str) -> Vec<f32> {
    let args = [&["render", session][..], how, &["--sample-rate", "16000", "--seconds", "9", "--out", out]].concat();
    let o = run_in(dir, &args);
    assert_ok(&o);
    read_wav(&dir.join(out)).1
}

fn assert_same(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits()) {
        panic!("first difference at sample {i}: {} vs {}", a[i], b[i]);
    }
}

#[test]
fn a_committed_playthrough_renders_like_the_playthrough() {
    let dir = setup("arrange-playthrough");
    let preview = render(&dir, "set.toml", &["--playthrough"], "p.wav");
    assert!(peak(&preview) > 0.05);
    let o = run_in(&dir, &["arrange", "set.toml", "--playthrough"]);
    assert_ok(&o);
    let text = std::fs::read_to_string(dir.join("set.toml")).unwrap();
    assert!(text.starts_with(&SESSION[..SESSION.find("[[scene]]").unwrap()]), "the rest of the file is untouched");
    assert!(text.contains("this comment must survive"));
    let arranged = render(&dir, "set.toml", &["--arrangement"], "a.wav");
    assert_same(&preview, &arranged);
}

#[test]
fn a_committed_performance_renders_like_the_performance() {
    let dir = setup("arrange-performance");
    std::fs::write(
        dir.join("perf.toml"),
        "[[at]]\nbeat = 0\nscene = \"a\"\n[[at]]\nbeat = 5\nlaunch = \"riff\"\n[[at]]\nbeat = 11\nstop = \"drums\"\n",
    )
    .unwrap();
    let live = render(&dir, "set.toml", &["--script", "perf.toml"], "live.wav");
    let o = run_in(&dir, &["arrange", "set.toml", "--script", "perf.toml", "--seconds", "9"]);
    assert_ok(&o);
    let arranged = render(&dir, "set.toml", &["--arrangement"], "a.wav");
    assert_same(&live, &arranged);
}

#[test]
fn placing_checks_the_lane_and_keeps_the_id() {
    let dir = setup("arrange-place");
    let o = run_in(&dir, &["arrange", "set.toml", "--place", "beat", "--lane", "keys", "--at", "4"]);
    // A MIDI drum clip on a MIDI lane is fine (both MIDI); an unknown lane is bad input.
    assert_ok(&o);
    let text = std::fs::read_to_string(dir.join("set.toml")).unwrap();
    assert!(text.contains("clip = \"beat\""), "{text}");
    let o = run_in(&dir, &["arrange", "set.toml", "--place", "riff", "--lane", "bass", "--at", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(texts(&o).1.contains("track 'bass' does not exist"));
    assert_no_panic(&o);
    let o = run_in(&dir, &["arrange", "set.toml", "--place", "riff", "--lane", "keys", "--duplicate"]);
    assert_ok(&o);
    assert!(std::fs::read_to_string(dir.join("set.toml")).unwrap().contains("riff-copy"));
}
