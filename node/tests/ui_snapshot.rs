//! `loophole-node ui-snapshot`: the launcher drawn headless at a beat of an offline performance.

mod common;

use common::*;

/// Width and height from a PNG file's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG file");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn ui_snapshot_draws_the_demo_at_a_beat_and_refuses_bad_arguments() {
    let dir = scratch("ui-snapshot");
    let out = run_in(&dir, &["ui-snapshot", "--demo", "--at-beat", "30", "--out", "shot.png", "--size", "1024x600"]);
    assert_ok(&out);
    assert!(texts(&out).0.contains("the launcher at beat 30.00"), "{}", texts(&out).0);
    let png = std::fs::read(dir.join("shot.png")).unwrap();
    assert_eq!(png_size(&png), (1024, 600));
    assert!(png.len() > 5_000, "a {} byte PNG cannot hold the grid", png.len());

    for bad in [&["--size", "0x10"][..], &["--size", "big"], &["--at-beat", "-1"], &["--at-beat", "1e9"]] {
        let args = [&["ui-snapshot", "--demo", "--out", "bad.png"][..], &["--at-beat", "4"], bad].concat();
        let out = run_in(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", texts(&out).1);
        assert_no_panic(&out);
        assert!(!dir.join("bad.png").exists(), "{bad:?} wrote a file");
    }
}
