//! Golden renders: every example session, script, preview and the demo, rendered offline, must
//! stay bit-identical to the renders recorded in `tests/golden/renders.txt` (SHA-256 of the WAV,
//! the JSON-lines log and, where written, the Standard MIDI File).
//!
//! Refactors must not change what Loophole plays. When a change is *meant* to change the output
//! (a fixed bug, a new feature in an example), run the test with `LOOPHOLE_BLESS=1` to rewrite the
//! file, and say in the commit why the sound changed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use sha2::{Digest, Sha256};

/// Name, then the `render` arguments (the output files are added).
const RENDERS: &[(&str, &[&str])] = &[
    ("demo", &["--demo"]),
    ("demo-block-64", &["--demo", "--block", "64"]),
    ("demo-44100", &["--demo", "--sample-rate", "44100", "--seconds", "20"]),
    ("demo-seed-3", &["--demo", "--seed", "3"]),
    ("demo-playthrough", &["--demo", "--playthrough"]),
    ("demo-budget-0", &["--demo", "--memory-budget", "0", "--seconds", "30"]),
    ("band-script", &["examples/band.toml", "--script", "examples/band-script.toml"]),
    ("band-follow", &["examples/band.toml", "--script", "examples/band-follow-script.toml"]),
    ("band-arrangement-script", &["examples/band.toml", "--script", "examples/band-arrangement-script.toml"]),
    ("band-playthrough", &["examples/band.toml", "--playthrough"]),
    ("band-arrangement", &["examples/band.toml", "--arrangement"]),
    ("band-budget-0", &["examples/band.toml", "--script", "examples/band-script.toml", "--memory-budget", "0"]),
    ("band-silent", &["examples/band.toml", "--seconds", "2"]),
    ("external-synth", &["examples/external-synth.toml", "--script", "examples/external-synth-script.toml"]),
    ("minimal-playthrough", &["examples/minimal.toml", "--playthrough"]),
    ("seven-eight-playthrough", &["examples/seven-eight.toml", "--playthrough"]),
    ("waltz-playthrough", &["examples/waltz.toml", "--playthrough"]),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the node crate sits in the workspace")
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Renders one entry; returns `file -> sha256` for what it wrote.
fn render(name: &str, args: &[&str]) -> BTreeMap<String, String> {
    let dir = scratch(&format!("golden-{name}"));
    let external = args.iter().any(|a| a.contains("external-synth"));
    let mut full: Vec<String> = vec!["render".into()];
    for a in args {
        // Example paths are relative to the repository.
        full.push(if a.starts_with("examples/") { repo().join(a).display().to_string() } else { a.to_string() });
    }
    full.extend(["--out", "out.wav", "--log", "out.jsonl"].map(String::from));
    if external {
        full.extend(["--midi-out", "out.mid"].map(String::from));
    }
    let refs: Vec<&str> = full.iter().map(String::as_str).collect();
    let out = run_in(&dir, &refs);
    assert_ok(&out);
    let mut files = BTreeMap::new();
    for f in ["out.wav", "out.jsonl", "out.mid"] {
        if dir.join(f).exists() {
            files.insert(format!("{name}/{f}"), sha256(&dir.join(f)));
        }
    }
    files
}

#[test]
fn every_example_script_preview_and_the_demo_renders_bit_identical_to_the_recorded_renders() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/renders.txt");
    // Two renders at a time: each is single-threaded past loading.
    let results: Vec<BTreeMap<String, String>> = std::thread::scope(|s| {
        let chunks: Vec<_> = RENDERS.chunks(RENDERS.len().div_ceil(2)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| s.spawn(move || chunk.iter().map(|(n, a)| render(n, a)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a render thread panicked")).collect()
    });
    let got: BTreeMap<String, String> = results.into_iter().flatten().collect();
    // The block size never changes the output.
    assert_eq!(got["demo/out.wav"], got["demo-block-64/out.wav"], "--block 64 changed the demo's audio");
    let text: String = got.iter().map(|(f, h)| format!("{h}  {f}\n")).collect();
    if std::env::var_os("LOOPHOLE_BLESS").is_some() {
        // Re-recording compares nothing: never under CI.
        assert!(!in_ci(), "LOOPHOLE_BLESS=1 under CI would re-record the manifest instead of checking it");
        std::fs::write(&manifest, text).expect("write the manifest");
        return;
    }
    let want = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}); record it with LOOPHOLE_BLESS=1", manifest.display()));
    let want: BTreeMap<String, String> =
        want.lines().filter_map(|l| l.split_once("  ").map(|(h, f)| (f.to_string(), h.to_string()))).collect();
    let mut problems = Vec::new();
    for (f, h) in &want {
        match got.get(f) {
            None => problems.push(format!("{f}: not written any more")),
            Some(g) if g != h => problems.push(format!("{f}: changed ({h} -> {g})")),
            Some(_) => {}
        }
    }
    for f in got.keys().filter(|f| !want.contains_key(*f)) {
        problems.push(format!("{f}: new (not in the manifest)"));
    }
    assert!(problems.is_empty(), "renders differ from {}:\n{}", manifest.display(), problems.join("\n"));
}
