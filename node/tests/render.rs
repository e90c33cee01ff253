//! `loophole-node render`: the offline render streamed to a WAV file, and its event log.

mod common;

use common::*;

#[test]
fn render_demo_writes_four_seconds_of_float_stereo_and_a_log_of_sample_exact_triggers() {
    let dir = scratch("render-demo");
    let out = run_in(&dir, &["render", "--demo", "--seconds", "4", "--out", "x.wav", "--log", "l.jsonl"]);
    assert_ok(&out);
    let (stdout, _) = texts(&out);
    assert!(stdout.contains("192000 frames") && stdout.contains("x.wav"), "summary line: {stdout}");

    let (spec, samples) = read_wav(&dir.join("x.wav"));
    assert_eq!(spec.channels, 2);
    assert_eq!(spec.sample_rate, 48_000);
    assert_eq!(spec.bits_per_sample, 32);
    assert_eq!(spec.sample_format, hound::SampleFormat::Float);
    assert_eq!(samples.len(), 4 * 48_000 * 2, "exactly 4 s of stereo frames");
    assert!(peak(&samples) > 0.01, "the demo is not silent");

    let events = read_log(&dir.join("l.jsonl"));
    let triggers: Vec<_> = events.iter().filter(|e| e["event"] == "trigger").collect();
    assert!(!triggers.is_empty(), "the demo's first scene launches in the first 4 s");
    for e in &triggers {
        for field in ["event", "id", "kind", "target", "track", "beat", "sample", "tempo", "late"] {
            assert!(e.get(field).is_some(), "no `{field}` in {e}");
        }
        let target = e["target"].as_f64().unwrap();
        let tempo = e["tempo"].as_f64().unwrap();
        let expected = (target * 48_000.0 * 60.0 / tempo).ceil() as i64;
        assert_eq!(e["sample"].as_i64().unwrap(), expected, "trigger not at its target's sample: {e}");
        assert_eq!(e["late"], false, "nothing is late offline: {e}");
    }
}

#[test]
fn rendering_is_deterministic_and_independent_of_the_block_size() {
    let dir = scratch("render-determinism");
    for (name, block) in [("a.wav", "256"), ("b.wav", "256"), ("small.wav", "64"), ("large.wav", "1000")] {
        assert_ok(&run_in(&dir, &["render", "--demo", "--seconds", "3", "--block", block, "--out", name]));
    }
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let a = read("a.wav");
    assert!(peak(&read_wav(&dir.join("a.wav")).1) > 0.01, "not silent");
    assert!(a == read("b.wav"), "two renders of the same performance differ");
    assert!(read("small.wav") == read("large.wav"), "--block 64 and --block 1000 differ");
    assert!(a == read("small.wav"), "--block 256 and --block 64 differ");
}

#[test]
fn the_seed_option_is_accepted_and_the_default_length_of_the_demo_is_its_own() {
    let dir = scratch("render-seed");
    // A short sample rate keeps this quick: the demo's full length at 8 kHz.
    let out = run_in(&dir, &["render", "--demo", "--seed", "7", "--sample-rate", "8000", "--out", "d.wav"]);
    assert_ok(&out);
    let (spec, samples) = read_wav(&dir.join("d.wav"));
    assert_eq!(spec.sample_rate, 8_000);
    let seconds = samples.len() as f64 / 2.0 / 8_000.0;
    assert_eq!(seconds, loophole_engine::demo::SECONDS, "render --demo lasts demo::SECONDS by default");
}

#[test]
fn float_stems_read_in_place_render_the_samples_a_decode_gives() {
    // `render` maps 32-bit float WAV files and reads them in place; under a memory budget the
    // same files are decoded into memory instead. Both renders must be the same, bit for bit,
    // on one decode thread or several.
    let dir = scratch("render-in-place");
    for (name, channels, rate, hz) in
        [("a.wav", 2u16, 48_000u32, 220.0f32), ("b.wav", 1, 48_000, 330.0), ("c.wav", 2, 44_100, 440.0)]
    {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(dir.join(name), spec).unwrap();
        for i in 0..rate as usize * 2 * channels as usize {
            w.write_sample((i as f32 * hz / rate as f32).sin() * 0.3).unwrap();
        }
        w.finalize().unwrap();
    }
    let session = "[session]\nname = \"in place\"\ntempo = 120\n\
        [[track]]\nid = \"a\"\nkind = \"audio\"\n[[track]]\nid = \"b\"\nkind = \"audio\"\n[[track]]\nid = \"c\"\nkind = \"audio\"\n\
        [[clip]]\nid = \"a\"\ntrack = \"a\"\nfile = \"a.wav\"\nstart_offset_beats = 0.5\n\
        [[clip]]\nid = \"b\"\ntrack = \"b\"\nfile = \"b.wav\"\nloop = false\n\
        [[clip]]\nid = \"c\"\ntrack = \"c\"\nfile = \"c.wav\"\n\
        [[scene]]\nid = \"all\"\nclips = [\"a\", \"b\", \"c\"]\n";
    std::fs::write(dir.join("set.toml"), session).unwrap();
    std::fs::write(dir.join("perf.toml"), "[[at]]\nbeat = 0\nscene = \"all\"\n").unwrap();
    let render = |out: &str, extra: &[&str]| {
        let mut args = vec!["render", "set.toml", "--script", "perf.toml", "--seconds", "5", "--out", out];
        args.extend_from_slice(extra);
        assert_ok(&run_in(&dir, &args));
        std::fs::read(dir.join(out)).unwrap()
    };
    let in_place = render("in-place.wav", &[]);
    assert!(peak(&read_wav(&dir.join("in-place.wav")).1) > 0.1, "not silent");
    assert!(in_place == render("decoded.wav", &["--memory-budget", "1000"]), "read in place != decoded");
    assert!(in_place == render("one-thread.wav", &["--decode-threads", "1"]), "--decode-threads 1 differs");
}
