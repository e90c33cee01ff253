//! `loophole-node arrange` never leaves a set that does not load, and respects the file: a
//! second commit over the same beats, an `--at` out of range or a result that would not load is
//! refused with the file byte for byte as it was; a read-only file is refused; the file keeps
//! its mode and owner; the success line comes only after the save. A proptest performs random
//! `arrange` operations on the examples.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use loophole_engine::files::session::load_session;
use loophole_node::arrange::{ArrangeArgs, run};
use proptest::prelude::*;

/// A scratch copy of `examples/` (sessions, scripts, audio and MIDI files).
fn examples(name: &str) -> PathBuf {
    let dir = scratch(name);
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"), &dir);
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_second_playthrough_commit_on_the_same_beats_is_refused_and_the_file_still_loads() {
    let dir = examples("arrange-twice");
    let set = dir.join("band.toml");
    let args = ["arrange", "band.toml", "--playthrough", "--at", "64"];
    assert_ok(&run_in(&dir, &args));
    let once = std::fs::read(&set).unwrap();
    load_session(&set).expect("the file loads after one commit");

    let out = run_in(&dir, &args);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "second commit:\n{stdout}\n{stderr}");
    assert!(stderr.contains("already hold"), "no reason for the refusal:\n{stderr}");
    assert!(!stdout.contains("committed"), "a success line for a refused commit:\n{stdout}");
    assert_eq!(std::fs::read(&set).unwrap(), once, "a refused commit changed the file");
    load_session(&set).expect("the file still loads");
}

#[test]
fn at_out_of_range_is_refused_and_the_file_is_left_byte_for_byte() {
    let dir = examples("arrange-range");
    let set = dir.join("band.toml");
    let original = std::fs::read(&set).unwrap();
    for at in ["--at=-4", "--at=99999", "--at=1e9", "--at=100001", "--at=NaN"] {
        let out = run_in(&dir, &["arrange", "band.toml", "--playthrough", at]);
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{at}:\n{stdout}\n{stderr}");
        assert_no_panic(&out);
        assert!(!stdout.contains("committed"), "{at}: a success line:\n{stdout}");
        assert_eq!(std::fs::read(&set).unwrap(), original, "{at} changed the file");
    }
    // 99999 is a beat the arrangement may start at, but the playthrough would end past the last
    // beat a session may use: the loader says so, and the file is left as it was.
    let (_, stderr) = texts(&run_in(&dir, &["arrange", "band.toml", "--playthrough", "--at=99999"]));
    assert!(stderr.contains("would make a file that does not load"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_read_only_file_is_refused_and_a_saved_file_keeps_its_mode_and_owner() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let dir = examples("arrange-perms");
    let set = dir.join("band.toml");
    let original = std::fs::read(&set).unwrap();

    std::fs::set_permissions(&set, std::fs::Permissions::from_mode(0o444)).unwrap();
    let out = run_in(&dir, &["arrange", "band.toml", "--playthrough", "--at", "1000"]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "read-only file:\n{stdout}\n{stderr}");
    assert!(stderr.contains("read-only"), "{stderr}");
    assert!(!stdout.contains("committed"), "a success line before a failed save:\n{stdout}");
    assert_eq!(std::fs::read(&set).unwrap(), original);
    assert_eq!(std::fs::metadata(&set).unwrap().permissions().mode() & 0o777, 0o444);

    std::fs::set_permissions(&set, std::fs::Permissions::from_mode(0o640)).unwrap();
    // Owned by another user (as root: nobody's), the file stays theirs after the save.
    let other = std::os::unix::fs::chown(&set, Some(65534), Some(65534));
    assert_ok(&run_in(&dir, &["arrange", "band.toml", "--playthrough", "--at", "1000"]));
    let meta = std::fs::metadata(&set).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640, "the save changed the file's mode");
    assert_ne!(std::fs::read(&set).unwrap(), original, "nothing was saved");
    load_session(&set).expect("the saved file loads");
    match other {
        Ok(()) => assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "the save changed the file's owner"),
        Err(e) => skip_or_fail("a_saved_file_keeps_its_owner", &format!("cannot give the file to another user: {e}")),
    }
}

/// One random `arrange` operation on band.toml.
#[derive(Debug, Clone)]
enum Op {
    Playthrough { from: usize, to: usize, at: f64 },
    Place { clip: usize, lane: usize, at: f64, length: Option<f64>, duplicate: bool },
    Script { script: usize, at: f64 },
}

fn at() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => (0u32..64).prop_map(|b| f64::from(b) * 4.0),
        1 => Just(-4.0),
        1 => Just(99_999.0),
        1 => Just(1e9),
        1 => 0.0..200_000.0f64,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..6, 0usize..6, at()).prop_map(|(from, to, at)| Op::Playthrough { from, to, at }),
        (0usize..10, 0usize..6, at(), proptest::option::of(-2.0..40.0f64), any::<bool>())
            .prop_map(|(clip, lane, at, length, duplicate)| Op::Place { clip, lane, at, length, duplicate }),
        (0usize..3, at()).prop_map(|(script, at)| Op::Script { script, at }),
    ]
}

fn args(set: &Path, op: &Op) -> ArrangeArgs {
    // Names the session has, and one it does not (the last of each list).
    const SCENES: [&str; 6] = ["intro", "verse", "chorus", "bridge", "outro", "nope"];
    const CLIPS: [&str; 10] =
        ["beat-a", "beat-b", "fill", "bass-a", "bass-b", "keys-a", "keys-b", "lead-gate", "pad-a", "nope"];
    const LANES: [&str; 6] = ["drums", "bass", "keys", "lead", "pad", "nope"];
    const SCRIPTS: [&str; 3] = ["band-script.toml", "band-follow-script.toml", "band-arrangement-script.toml"];
    let mut a = ArrangeArgs {
        session: set.to_path_buf(),
        playthrough: false,
        from: None,
        to: None,
        script: None,
        seconds: None,
        place: None,
        lane: None,
        length: None,
        duplicate: false,
        at: 0.0,
    };
    match *op {
        Op::Playthrough { from, to, at } => {
            a.playthrough = true;
            a.from = Some(SCENES[from].into());
            a.to = Some(SCENES[to].into());
            a.at = at;
        }
        Op::Place { clip, lane, at, length, duplicate } => {
            a.place = Some(CLIPS[clip].into());
            a.lane = Some(LANES[lane].into());
            a.at = at;
            a.length = length;
            a.duplicate = duplicate;
        }
        Op::Script { script, at } => {
            a.script = Some(set.with_file_name(SCRIPTS[script]));
            a.at = at;
        }
    }
    a
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    /// After every operation that succeeds the file loads; after every one that is refused it is
    /// byte for byte what it was.
    #[test]
    fn random_arrange_operations_never_leave_a_file_that_does_not_load(ops in proptest::collection::vec(op(), 1..6)) {
        let dir = examples("arrange-proptest");
        let set = dir.join("band.toml");
        for op in &ops {
            let before = std::fs::read(&set).unwrap();
            match run(&args(&set, op)) {
                Ok(()) => {
                    if let Err(e) = load_session(&set) {
                        panic!("{op:?} succeeded but the file no longer loads: {e}");
                    }
                }
                Err(_) => prop_assert_eq!(std::fs::read(&set).unwrap(), before, "refused {:?} changed the file", op),
            }
        }
    }
}
