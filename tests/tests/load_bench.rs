//! The deadline benchmark runs end to end: a short run prints a row per configuration with the
//! blocks it was asked for, triggers for the switching clips, and the goal lines.

use std::process::Command;

#[test]
fn a_short_load_bench_prints_every_configuration_and_the_goals() {
    let out = Command::new(env!("CARGO_BIN_EXE_loophole-load-bench"))
        .args(["--blocks", "400", "--frames", "128", "--clips", "4", "--steady"])
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
        let blocks: u64 = col(row, 8).parse().unwrap();
        assert!((400..=402).contains(&blocks), "{row:?}");
        assert!(col(row, 5).ends_with('%') && col(row, 2).ends_with('%'), "{row:?}");
    }
    // 400 blocks of 128 frames are 1.07 s = 2 beats at 120 BPM: 4 tracks switch on beats 1 and 2.
    let triggers = |name: &str| {
        let row = rows.iter().find(|r| r.join(" ").contains(name)).unwrap_or_else(|| panic!("no {name} row"));
        col(row, 1).parse::<u64>().unwrap()
    };
    assert_eq!(triggers("switching"), 8, "{stdout}");
    assert_eq!(triggers("looping"), 0);
    assert_eq!(triggers("empty"), 0);
    assert!(stdout.contains("p99 load") && stdout.contains("<= empty callback's"), "{stdout}");
    assert!(stdout.contains("all goals hold") || stdout.contains("some goals FAIL"), "{stdout}");
}
