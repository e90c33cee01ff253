//! Every `loophole-node …` and `cargo run --release -p loophole-node -- …` command in the shell
//! code blocks of README.md and docs/*.md is run with the binary under test, in a scratch copy of
//! `examples/`, and must exit 0 and write the files it names (`--out`, `--log`, `--capture`,
//! `--record-input` and its `.input.toml`, `render --midi-out`, the session `arrange` edits), so
//! the docs cannot drift from the program. Every event a written `--log` holds must be named in
//! the README's `--log` list.
//!
//! Live commands (`play`, `demo`) run for at most [`LIVE_SECONDS`] s (`--seconds 1` when they give
//! none), on the null device unless they pick a device or the test hook, and `play` without Link
//! unless it asks for it. A command that needs hardware is skipped only by an entry of [`SKIP`],
//! with its reason printed; an entry that matches no command fails the test.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use common::*;

/// Longest a live command from the docs runs, in seconds of audio.
const LIVE_SECONDS: f64 = 3.0;

/// Commands that cannot run on a machine without the hardware they name: (a part of the command,
/// why it is skipped).
const SKIP: &[(&str, &str)] = &[
    ("--midi-in launchpad", "needs a MIDI controller called 'launchpad' plugged in, and a set.toml of your own"),
    ("--conductor CODE", "needs a running conductor's join code; node/tests/band.rs runs this path against one"),
];

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// One command found in the docs.
#[derive(Debug)]
struct DocCommand {
    /// `file:line`, for messages.
    at: String,
    /// The line as written.
    line: String,
    /// `KEY=value` before the command.
    env: Vec<(String, String)>,
    /// The program's arguments, or `None` for a `cp FROM TO` line.
    args: Vec<String>,
    /// `cp FROM TO`: a copy the following commands rely on.
    copy: Option<(String, String)>,
}

/// Splits a shell line into words: double and single quotes group, `#` outside quotes starts a
/// comment.
fn words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, '#') if !any => break,
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            (None, c) => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

/// The commands of the shell code blocks (```sh, ```bash, ```shell) of one Markdown file.
fn commands_in(path: &Path) -> Vec<DocCommand> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let name = path.strip_prefix(REPO).unwrap_or(path).display().to_string();
    let mut fence: Option<String> = None;
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            fence = match fence {
                None => Some(lang.trim().to_string()),
                Some(_) => None,
            };
            continue;
        }
        if !matches!(fence.as_deref(), Some("sh" | "bash" | "shell")) {
            continue;
        }
        let mut w = words(line);
        let mut env = Vec::new();
        while let Some((k, v)) = w.first().and_then(|w| w.split_once('=')).filter(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        }) {
            env.push((k.to_string(), v.to_string()));
            w.remove(0);
        }
        let at = format!("{name}:{}", i + 1);
        let args = match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["loophole-node", rest @ ..] => rest.iter().map(|s| s.to_string()).collect(),
            ["cargo", "run", "--release", "-p", "loophole-node", "--", rest @ ..] => {
                rest.iter().map(|s| s.to_string()).collect()
            }
            ["cp", from, to] => {
                let copy = Some((from.to_string(), to.to_string()));
                found.push(DocCommand { at, line: line.trim().to_string(), env, args: Vec::new(), copy });
                continue;
            }
            _ => continue,
        };
        found.push(DocCommand { at, line: line.trim().to_string(), env, args, copy: None });
    }
    found
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The value after `flag`, if the command gives it.
fn value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// The arguments the command runs with: live ones made short and deviceless (see the module docs).
fn runnable(c: &DocCommand) -> Vec<String> {
    let mut args = c.args.clone();
    if matches!(args.first().map(String::as_str), Some("play" | "demo")) {
        match args.iter().position(|a| a == "--seconds") {
            Some(i) => {
                let s: f64 = args[i + 1].parse().unwrap_or_else(|_| panic!("{}: --seconds {}", c.at, args[i + 1]));
                args[i + 1] = s.min(LIVE_SECONDS).to_string();
            }
            None => args.extend(["--seconds".into(), "1".into()]),
        }
        let hook = c.env.iter().any(|(k, _)| k == "LOOPHOLE_TEST_DEVICE");
        if !hook && !args.iter().any(|a| a == "--audio") {
            args.extend(["--audio".into(), "null".into()]);
        }
        if args[0] == "play" && !args.iter().any(|a| a == "--link" || a == "--no-link") {
            args.push("--no-link".into());
        }
    }
    args
}

/// The files `args` say they write.
fn written(args: &[String]) -> Vec<String> {
    let mut files = Vec::new();
    for flag in ["--out", "--log", "--capture", "--record-input"] {
        files.extend(value(args, flag).map(str::to_string));
    }
    if let Some(rec) = value(args, "--record-input") {
        files.push(format!("{}.input.toml", rec.strip_suffix(".wav").unwrap_or(rec)));
    }
    match args.first().map(String::as_str) {
        // `render --midi-out` is a file; `play --midi-out` a port.
        Some("render") => files.extend(value(args, "--midi-out").map(str::to_string)),
        Some("arrange") => files.extend(args.get(1).cloned()),
        _ => {}
    }
    files
}

/// The event names the README's `--log` bullet lists (every `` `name` `` in it).
fn readme_log_names() -> String {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let start = readme.find("- `--log` writes").expect("the README's --log bullet");
    let rest = &readme[start + 2..];
    rest[..rest.find("\n- ").unwrap_or(rest.len())].to_string()
}

#[test]
fn every_command_in_the_readme_and_docs_runs_and_writes_what_it_says() {
    let mut docs: Vec<PathBuf> = vec![Path::new(REPO).join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(Path::new(REPO).join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    docs.extend(pages);
    let commands: Vec<DocCommand> = docs.iter().flat_map(|p| commands_in(p)).collect();
    let runs = commands.iter().filter(|c| c.copy.is_none()).count();
    assert!(
        runs >= 12,
        "only {runs} loophole-node commands found in the docs: is the extractor broken?\n{commands:#?}"
    );

    let dir = scratch("docs-commands");
    copy_dir(&Path::new(REPO).join("examples"), &dir.join("examples"));
    let log_names = readme_log_names();
    let mut used_skips = BTreeSet::new();
    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    for c in &commands {
        if let Some((from, to)) = &c.copy {
            std::fs::copy(dir.join(from), dir.join(to)).unwrap_or_else(|e| panic!("{}: {}: {e}", c.at, c.line));
            continue;
        }
        if let Some((part, why)) = SKIP.iter().find(|(part, _)| c.line.contains(part)) {
            // Straight to stderr, past libtest's capture, so the skip shows even when the test passes.
            let _ = writeln!(std::io::stderr().lock(), "docs_commands: SKIPPED {} `{}`: {why}", c.at, c.line);
            used_skips.insert(*part);
            continue;
        }
        let args = runnable(c);
        let files = written(&args);
        let before: Vec<Option<std::time::SystemTime>> =
            files.iter().map(|f| std::fs::metadata(dir.join(f)).and_then(|m| m.modified()).ok()).collect();
        let out = bin().current_dir(&dir).envs(c.env.iter().cloned()).args(&args).output().expect("run loophole-node");
        let (stdout, stderr) = texts(&out);
        if !out.status.success() || stderr.contains("panicked") {
            failures.push(format!(
                "{}: `{}` (run as {args:?}) exited {:?}\n{stdout}{stderr}",
                c.at,
                c.line,
                out.status.code()
            ));
            continue;
        }
        for (f, was) in files.iter().zip(before) {
            let path = dir.join(f);
            let now = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            if now.is_none() || now == was {
                failures.push(format!("{}: `{}` did not write {f}\n{stderr}", c.at, c.line));
                continue;
            }
            if f.ends_with(".wav") {
                let frames = hound::WavReader::open(&path).map(|r| r.duration());
                if !frames.as_ref().is_ok_and(|n| *n > 0) {
                    failures.push(format!("{}: {f} is not a WAV file with audio: {frames:?}", c.at));
                }
            }
            if f.ends_with(".jsonl") {
                let unnamed: BTreeSet<String> = read_log(&path)
                    .iter()
                    .filter_map(|e| e["event"].as_str().map(str::to_string))
                    .filter(|event| !log_names.contains(&format!("`{event}`")))
                    .collect();
                if !unnamed.is_empty() {
                    failures
                        .push(format!("{}: {f} has events the README's --log list does not name: {unnamed:?}", c.at));
                }
            }
        }
    }
    for (part, why) in SKIP {
        assert!(used_skips.contains(part), "SKIP entry `{part}` ({why}) matches no command in the docs: remove it");
    }
    assert!(failures.is_empty(), "{} problem(s):\n\n{}", failures.len(), failures.join("\n\n"));
    eprintln!("docs_commands: {runs} commands in {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn the_shell_words_and_the_command_forms_are_read_as_a_shell_would() {
    assert_eq!(
        words(r#"A="x y" loophole-node demo  --seconds 7 # a comment"#),
        ["A=x y", "loophole-node", "demo", "--seconds", "7"]
    );
    let dir = scratch("docs-commands-parse");
    std::fs::write(
        dir.join("page.md"),
        "```sh\nloophole-node devices   # lists\ncargo run --release -p loophole-node -- render --demo --out a.wav\n\
         cp a b\nsudo -E cargo test -p loophole-node\n```\n\n```text\nloophole-node render (SESSION | --demo)\n```\n",
    )
    .unwrap();
    let found = commands_in(&dir.join("page.md"));
    let args: Vec<&[String]> = found.iter().map(|c| c.args.as_slice()).collect();
    assert_eq!(args.len(), 3, "{found:?}");
    assert_eq!(args[0], ["devices"]);
    assert_eq!(args[1], ["render", "--demo", "--out", "a.wav"]);
    assert_eq!(found[2].copy, Some(("a".into(), "b".into())));
    let live = DocCommand {
        at: String::new(),
        line: String::new(),
        env: vec![],
        args: words("play s.toml --seconds 10"),
        copy: None,
    };
    assert_eq!(runnable(&live), words("play s.toml --seconds 3 --audio null --no-link"));
    assert_eq!(
        written(&words("demo --capture out.wav --record-input in.wav --log l.jsonl")),
        ["l.jsonl", "out.wav", "in.wav", "in.input.toml"]
    );
}
