//! The deadline benchmark runs end to end: a short run in two interleaved rounds prints a row per
//! configuration with the blocks it was asked for (the warm-up of each slice left out), triggers
//! for the switching clips, and the goal lines.

use std::process::Command;

#[test]
fn a_short_load_bench_prints_every_configuration_and_the_goals() {
    let out = Command::new(env!("CARGO_BIN_EXE_loophole-load-bench"))
        .args(["--blocks", "400", "--rounds", "2", "--frames", "128", "--clips", "4", "--steady"])
        .output()
        .expect("run loophole-load-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows: Vec<Vec<&str>> =
        stdout.lines().filter(|l| l.trim_start().starts_with("128 ")).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 3, "empty, switching and looping rows:\n{stdout}");
    let col = |row: &[&str], from_end: usize| row[row.len() - from_end].to_string();
    for row in &rows {
        let blocks: u64 = col(row, 9).parse().unwrap();
        assert!((396..=404).contains(&blocks), "{row:?}");
        let (misses, slow): (u64, u64) = (col(row, 8).parse().unwrap(), col(row, 7).parse().unwrap());
        assert!(slow <= misses, "{row:?}");
        assert!(col(row, 5).ends_with('%') && col(row, 2).ends_with('%'), "{row:?}");
    }
    // Each slice plays 200 warm-up blocks and 200 counted ones of 128 frames: 1.07 s, 2 beats at
    // 120 BPM, so 4 tracks switch on beats 1 and 2, twice.
    let triggers = |name: &str| {
        let row = rows.iter().find(|r| r.join(" ").contains(name)).unwrap_or_else(|| panic!("no {name} row"));
        col(row, 1).parse::<u64>().unwrap()
    };
    assert_eq!(triggers("switching"), 16, "{stdout}");
    assert_eq!(triggers("looping"), 0);
    assert_eq!(triggers("empty"), 0);
    assert!(stdout.contains("p99 load") && stdout.contains("<= empty callback's"), "{stdout}");
    assert!(stdout.contains("slow misses (the callback's own)"), "{stdout}");
    assert!(stdout.contains("all goals hold") || stdout.contains("some goals FAIL"), "{stdout}");
}
