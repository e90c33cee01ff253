//! The built-in demo set, generated in code: no downloaded assets, identical on every machine.
//!
//! A short song in A minor at 120 BPM, 4/4, on five tracks:
//!
//! | track     | kind  | sound                                         | clips (length in beats)                          |
//! |-----------|-------|-----------------------------------------------|--------------------------------------------------|
//! | `drums`   | MIDI  | built-in drum kit                             | `drums-intro` 8, `drums-basic` 8, `drums-busy` 8, `drums-break` 16, `drums-fill` 4 |
//! | `bass`    | MIDI  | synth: saw + sub oscillator, plucked low-pass | `bass-intro` 16, `bass-a` 16, `bass-b` 16        |
//! | `chords`  | MIDI  | synth: detuned saws, soft attack (pad)        | `chords-verse` 16, `chords-chorus` 16            |
//! | `lead`    | MIDI  | synth: bright detuned saw                     | `lead-a` 16, `lead-b` 16                         |
//! | `texture` | audio | 48 kHz stereo synthesised here                | `shaker` 8 (shaker, bongos), `arp` 16 (FM plucks, ping-pong echoes) |
//!
//! The verse harmony is Am–F–C–G, one chord per bar; the chorus is F–G–Am–E. Scenes, in order:
//! `intro`, `verse`, `chorus`, `breakdown`, `outro` (see [`session`] for their clips). The
//! playlist `song` plays them in order; follow actions with chances vary the drums, the chorus
//! lead and the breakdown. [`script`] starts the playlist and adds two drum fills by hand; the
//! performance lasts [`SECONDS`] seconds, for `loophole-node play --demo` and `render --demo`.
//!
//! Thread: Built on the control thread (or a render's thread) before playback; allocates.

use std::sync::Arc;

use crate::instrument::{Svf, XorShift32};
use crate::model::{
    AudioData, Clip, ClipContent, ClipId, FollowAction, FollowActions, FollowConstraints, FollowTarget, MidiData,
    Playlist, PlaylistStep, Scene, Session, Track, TrackId, TrackKind,
};
use crate::model::{DrumSpec, InstrumentSpec, SynthSpec, Waveform};
use crate::pulse::Action;
use crate::script::{Script, ScriptAction};
use crate::time::{Beats, Bpm, Quantise};

/// Tempo of the demo, in BPM (the audio clips are rendered for it).
pub const TEMPO: f64 = 120.0;
/// Sample rate of the demo's audio clips.
pub const SAMPLE_RATE: u32 = 48_000;
/// Length of the demo performance ([`script`]) in seconds: the playlist `song` (112 beats at
/// 120 BPM) and six beats after its end for tails to ring out: 118 beats.
pub const SECONDS: f64 = 59.0;

/// A note `(start beat, length in beats, key, velocity)`, as [`MidiData::from_notes`] takes it.
type Note = (f64, f64, u8, u8);

/// A chord of the song: the bass root, a three-note pad voicing and four arpeggio notes.
#[derive(Debug, Clone, Copy)]
struct Chord {
    root: u8,
    pad: [u8; 3],
    arp: [u8; 4],
}

const AM: Chord = Chord { root: 45, pad: [57, 60, 64], arp: [69, 72, 76, 81] };
const F: Chord = Chord { root: 41, pad: [57, 60, 65], arp: [65, 69, 72, 77] };
const C: Chord = Chord { root: 48, pad: [55, 60, 64], arp: [67, 72, 76, 79] };
const G: Chord = Chord { root: 43, pad: [55, 59, 62], arp: [67, 71, 74, 79] };
const E: Chord = Chord { root: 40, pad: [56, 59, 64], arp: [68, 71, 76, 80] };

/// Verse (and intro, breakdown, outro) harmony, one chord per bar.
const VERSE: [Chord; 4] = [AM, F, C, G];
/// Chorus harmony, one chord per bar.
const CHORUS: [Chord; 4] = [F, G, AM, E];

// General MIDI drum keys (see [`DrumSpec`]).
const KICK: u8 = 36;
const RIM: u8 = 37;
const SNARE: u8 = 38;
const CLAP: u8 = 39;
const LOW_TOM: u8 = 41;
const HAT: u8 = 42;
const PEDAL_HAT: u8 = 44;
const MID_TOM: u8 = 45;
const OPEN_HAT: u8 = 46;
const HIGH_TOM: u8 = 48;
const CRASH: u8 = 49;
const RIDE: u8 = 51;

/// The demo set: five tracks (`drums`, `bass`, `chords`, `lead` on built-in instruments, and the
/// audio track `texture`), fourteen clips and five scenes:
///
/// | scene       | clips                                                       |
/// |-------------|-------------------------------------------------------------|
/// | `intro`     | `drums-intro`, `bass-intro`, `chords-verse`, `arp`          |
/// | `verse`     | `drums-basic`, `bass-a`, `chords-verse`, `lead-a`, `shaker` |
/// | `chorus`    | `drums-busy`, `bass-b`, `chords-chorus`, `lead-b`, `shaker` |
/// | `breakdown` | `drums-break`, `chords-verse`, `arp`                        |
/// | `outro`     | `drums-intro`, `bass-intro`, `chords-verse`, `lead-a`, `arp`|
///
/// `drums-fill` (one bar) is in no scene: launch it by hand before a scene change.
///
/// Follow actions (decided with the session seed, so every render makes the same choices):
///
/// | on            | after     | action A                  | action B                 |
/// |---------------|-----------|---------------------------|--------------------------|
/// | `drums-basic` | 2 loops   | repeat, 60 %              | `drums-busy`, 40 %       |
/// | `lead-b`      | 1 loop    | repeat, 50 %              | stop, 30 % (20 %: plays on) |
/// | `breakdown`   | 1 length  | scene `chorus`, 50 %      | scene `outro`, 50 %      |
///
/// The playlist `song`: `intro` ×1, `verse` ×2, `chorus` ×2, `breakdown` ×1, `outro` ×1
/// (112 beats), then it stops. Clip follow actions work inside a playlist; the breakdown's scene
/// follow action works when the breakdown is launched by hand (in a playlist, the playlist says
/// which scene comes next). Seed 1, bar quantisation, 5 ms crossfades.
///
/// Thread: control. Not realtime-safe: builds the session and synthesises the audio clips
/// (12 s of stereo audio; about 0.1 s in a debug build).
pub fn session() -> Session {
    let mut s = Session::new("Loophole demo", Bpm(TEMPO));
    s.beats_per_bar = 4.0;
    s.seed = 1;
    s.quantise = Quantise::Bar;
    s.crossfade_ms = 5.0;

    let drums = s.add_track(midi_track("drums", InstrumentSpec::Drums(DrumSpec::default()), -3.0, 0.0));
    let bass = s.add_track(midi_track("bass", InstrumentSpec::Synth(bass_patch()), -2.0, 0.0));
    let chords = s.add_track(midi_track("chords", InstrumentSpec::Synth(pad_patch()), -1.0, -0.15));
    let lead = s.add_track(midi_track("lead", InstrumentSpec::Synth(lead_patch()), -3.0, 0.15));
    let texture = s.add_track(Track { gain_db: -6.0, pan: 0.0, ..Track::new("texture", TrackKind::Audio) });

    let drums_intro = midi_clip(&mut s, "drums-intro", drums, 8.0, drums_intro());
    let drums_basic = midi_clip(&mut s, "drums-basic", drums, 8.0, drums_basic());
    let drums_busy = midi_clip(&mut s, "drums-busy", drums, 8.0, drums_busy());
    let drums_break = midi_clip(&mut s, "drums-break", drums, 16.0, drums_break());
    midi_clip(&mut s, "drums-fill", drums, 4.0, drums_fill());
    let bass_intro = midi_clip(&mut s, "bass-intro", bass, 16.0, bass_intro());
    let bass_a = midi_clip(&mut s, "bass-a", bass, 16.0, bass_a());
    let bass_b = midi_clip(&mut s, "bass-b", bass, 16.0, bass_b());
    let chords_verse = midi_clip(&mut s, "chords-verse", chords, 16.0, chords_verse());
    let chords_chorus = midi_clip(&mut s, "chords-chorus", chords, 16.0, chords_chorus());
    let lead_a = midi_clip(&mut s, "lead-a", lead, 16.0, lead_a());
    let lead_b = midi_clip(&mut s, "lead-b", lead, 16.0, lead_b());
    let shaker = audio_clip(&mut s, "shaker", texture, 8.0, shaker_loop());
    let arp = audio_clip(&mut s, "arp", texture, 16.0, arp_loop());

    let intro = s.add_scene(Scene::new("intro", vec![drums_intro, bass_intro, chords_verse, arp]));
    let verse = s.add_scene(Scene::new("verse", vec![drums_basic, bass_a, chords_verse, lead_a, shaker]));
    let chorus = s.add_scene(Scene::new("chorus", vec![drums_busy, bass_b, chords_chorus, lead_b, shaker]));
    let breakdown = s.add_scene(Scene::new("breakdown", vec![drums_break, chords_verse, arp]));
    let outro = s.add_scene(Scene::new("outro", vec![drums_intro, bass_intro, chords_verse, lead_a, arp]));

    // Follow actions: the verse drums sometimes get busier, the chorus lead sometimes drops
    // out, and a breakdown launched by hand goes on to one more chorus or to the outro.
    s.clips[drums_basic.index()].follow =
        Some(follow(2, (FollowTarget::Repeat, 0.6), Some((FollowTarget::Clip(drums_busy), 0.4))));
    s.clips[lead_b.index()].follow = Some(follow(1, (FollowTarget::Repeat, 0.5), Some((FollowTarget::Stop, 0.3))));
    s.scenes[breakdown.index()].follow =
        Some(follow(1, (FollowTarget::Scene(chorus), 0.5), Some((FollowTarget::Scene(outro), 0.5))));

    let step = |scene, repeat| PlaylistStep { scene, repeat };
    s.playlists.push(Playlist {
        id: "song".into(),
        steps: vec![step(intro, 1), step(verse, 2), step(chorus, 2), step(breakdown, 1), step(outro, 1)],
        looping: false,
    });
    s
}

/// Follow actions after `after_loops` passes: A, and optionally B, as (target, chance).
fn follow(after_loops: u32, a: (FollowTarget, f64), b: Option<(FollowTarget, f64)>) -> FollowActions {
    let action =
        |(next, chance): (FollowTarget, f64)| FollowAction { next, chance, constraints: FollowConstraints::default() };
    FollowActions { after_loops, a: action(a), b: b.map(action) }
}

/// The demo performance for [`session`]: the playlist `song` from beat 0, and a drum fill
/// pressed by hand half a beat before the bar before each of two scene changes.
///
/// | press at | action              | takes effect |
/// |----------|---------------------|--------------|
/// | 0        | playlist `song`     | 0 `intro`, 16 `verse`, 48 `chorus`, 80 `breakdown`, 96 `outro`, 112 stop |
/// | 43.5     | clip `drums-fill`   | 44           |
/// | 75.5     | clip `drums-fill`   | 76           |
///
/// With seed 1, `drums-basic`'s follow action decides at beat 32 and `lead-b`'s at beat 64.
///
/// Thread: control. Not realtime-safe. Builds its own [`session`] to resolve the ids.
pub fn script() -> Script {
    let s = session();
    let fill = |beat: f64| ScriptAction {
        beat: Beats(beat),
        action: Action::Launch {
            clip: s.clip_by_name("drums-fill").expect("demo clip"),
            quantise: None,
            velocity: None,
        },
    };
    let song = s.playlist_by_name("song").expect("demo playlist");
    let actions = vec![
        ScriptAction { beat: Beats(0.0), action: Action::Playlist { playlist: song, step: 0, quantise: None } },
        fill(43.5),
        fill(75.5),
    ];
    Script { actions }
}

fn midi_track(id: &str, instrument: InstrumentSpec, gain_db: f64, pan: f64) -> Track {
    Track { gain_db, pan, instrument: Some(instrument), ..Track::new(id, TrackKind::Midi) }
}

fn midi_clip(s: &mut Session, id: &str, track: TrackId, beats: f64, notes: Vec<Note>) -> ClipId {
    debug_assert!(notes.iter().all(|n| n.0 >= 0.0 && n.0 + n.1 < beats), "a note of {id} overruns the clip");
    let data = MidiData::from_notes(&notes);
    s.add_clip(Clip::new(id, track, ClipContent::Midi(Arc::new(data)), Beats(beats)))
}

fn audio_clip(s: &mut Session, id: &str, track: TrackId, beats: f64, data: AudioData) -> ClipId {
    s.add_clip(Clip::new(id, track, ClipContent::Audio(Arc::new(data)), Beats(beats)))
}

// ---------------------------------------------------------------------------------------------
// Patches
// ---------------------------------------------------------------------------------------------

/// Saw with a sub oscillator an octave down, through a closed filter that the envelope plucks.
fn bass_patch() -> SynthSpec {
    SynthSpec {
        waveform: Waveform::Saw,
        attack: 0.003,
        decay: 0.5,
        sustain: 0.55,
        release: 0.07,
        cutoff: 320.0,
        resonance: 0.35,
        filter_env: 2.8,
        filter_decay: 0.22,
        key_track: 0.3,
        osc2_level: 0.6,
        osc2_detune: 0.0,
        osc2_octave: -1,
        gain_db: 2.0,
        velocity: 0.5,
        polyphony: 2,
    }
}

/// Two detuned saws, soft and slow: a pad for sustained and rhythmic chords.
fn pad_patch() -> SynthSpec {
    SynthSpec {
        waveform: Waveform::Saw,
        attack: 0.12,
        decay: 1.5,
        sustain: 0.75,
        release: 0.7,
        cutoff: 1500.0,
        resonance: 0.1,
        filter_env: 0.5,
        filter_decay: 0.6,
        key_track: 0.0,
        osc2_level: 0.8,
        osc2_detune: 11.0,
        osc2_octave: 0,
        gain_db: -9.0,
        velocity: 0.4,
        polyphony: 8,
    }
}

/// A bright, slightly detuned saw lead with a touch of filter pluck.
fn lead_patch() -> SynthSpec {
    SynthSpec {
        waveform: Waveform::Saw,
        attack: 0.008,
        decay: 0.3,
        sustain: 0.65,
        release: 0.18,
        cutoff: 4200.0,
        resonance: 0.25,
        filter_env: 1.5,
        filter_decay: 0.35,
        key_track: 0.3,
        osc2_level: 0.35,
        osc2_detune: 6.0,
        osc2_octave: 0,
        gain_db: -1.0,
        velocity: 0.5,
        polyphony: 4,
    }
}

// ---------------------------------------------------------------------------------------------
// Drums
// ---------------------------------------------------------------------------------------------

/// A drum hit (one-shot; the length only has to stay inside the clip).
fn hit(beat: f64, key: u8, velocity: u8) -> Note {
    (beat, 0.1, key, velocity)
}

/// Four on the floor with off-beat hats, pedal hats on 2 and 4 and a clap at the end.
fn drums_intro() -> Vec<Note> {
    let mut n = Vec::new();
    for bar in 0..2 {
        let o = f64::from(bar) * 4.0;
        for b in 0..4 {
            let t = o + f64::from(b);
            n.push(hit(t, KICK, if b == 0 { 115 } else { 100 }));
            n.push(hit(t + 0.5, HAT, 76));
            if b % 2 == 1 {
                n.push(hit(t, PEDAL_HAT, 50));
            }
        }
    }
    n.push(hit(7.0, CLAP, 72));
    n.push(hit(7.75, HAT, 55));
    n
}

/// Backbeat groove: kick on 1 and the "and" of 3, snare on 2 and 4, ghost notes, eighth hats
/// and an open hat into the loop point.
fn drums_basic() -> Vec<Note> {
    let mut n = Vec::new();
    for bar in 0..2 {
        let o = f64::from(bar) * 4.0;
        n.push(hit(o, KICK, 118));
        n.push(hit(o + 2.5, KICK, 100));
        n.push(hit(o + 1.0, SNARE, 110));
        n.push(hit(o + 3.0, SNARE, 114));
        for e in 0..8 {
            let t = o + f64::from(e) * 0.5;
            if bar == 1 && e == 7 {
                n.push(hit(t, OPEN_HAT, 84));
            } else {
                n.push(hit(t, HAT, if e % 2 == 0 { 92 } else { 62 }));
            }
        }
    }
    // Ghost notes and a pushed kick in the second bar.
    n.extend([
        hit(1.75, SNARE, 34),
        hit(3.25, SNARE, 28),
        hit(5.75, KICK, 82),
        hit(6.25, SNARE, 30),
        hit(7.75, SNARE, 40),
    ]);
    n
}

/// The chorus groove: crash on the one, syncopated kick, snare and clap on the backbeat,
/// sixteenth hats with accents, ghost notes and open hats.
fn drums_busy() -> Vec<Note> {
    const HAT_VELOCITY: [u8; 4] = [100, 46, 74, 52];
    let mut n = vec![hit(0.0, CRASH, 108)];
    for bar in 0..2 {
        let o = f64::from(bar) * 4.0;
        n.extend([
            hit(o, KICK, 120),
            hit(o + 0.75, KICK, 84),
            hit(o + 2.5, KICK, 106),
            hit(o + 1.0, SNARE, 116),
            hit(o + 3.0, SNARE, 118),
            hit(o + 1.0, CLAP, 84),
            hit(o + 3.0, CLAP, 88),
            hit(o + 2.25, SNARE, 30),
            hit(o + 3.75, SNARE, 42),
        ]);
        for s in 0..16u8 {
            let t = o + f64::from(s) * 0.25;
            match (bar, s) {
                (0, 0) => {} // the crash
                (_, 6) => n.push(hit(t, OPEN_HAT, 80)),
                (_, 7) => {} // let the open hat breathe
                (1, 14) => n.push(hit(t, OPEN_HAT, 86)),
                (1, 15) => {}
                _ => n.push(hit(t, HAT, HAT_VELOCITY[usize::from(s % 4)])),
            }
        }
    }
    n.push(hit(5.5, KICK, 92));
    n
}

/// Half-time feel on the ride with rim clicks, ending in a tom fill.
fn drums_break() -> Vec<Note> {
    let mut n = Vec::new();
    for bar in 0..4 {
        let o = f64::from(bar) * 4.0;
        n.push(hit(o, KICK, 104));
        n.push(hit(o + 2.5, KICK, 80));
        if bar < 3 {
            n.push(hit(o + 2.0, RIM, 92));
        }
        for b in 0..4 {
            let t = o + f64::from(b);
            if t >= 14.0 {
                break;
            }
            n.push(hit(t, RIDE, if b % 2 == 0 { 88 } else { 74 }));
            if b % 2 == 1 {
                n.push(hit(t + 0.5, RIDE, 56));
            }
        }
    }
    n.push(hit(13.0, RIM, 92));
    const FILL: [u8; 8] = [HIGH_TOM, HIGH_TOM, HIGH_TOM, MID_TOM, MID_TOM, MID_TOM, LOW_TOM, LOW_TOM];
    for (i, &key) in FILL.iter().enumerate() {
        n.push(hit(14.0 + i as f64 * 0.25, key, 70 + 6 * i as u8));
    }
    n.push(hit(15.5, KICK, 96));
    n
}

/// A one-bar fill: groove for two beats, then sixteenth snares and toms building up.
fn drums_fill() -> Vec<Note> {
    let mut n = vec![hit(0.0, KICK, 118), hit(1.0, SNARE, 112), hit(1.5, KICK, 96)];
    for e in 0..4 {
        n.push(hit(f64::from(e) * 0.5, HAT, if e % 2 == 0 { 90 } else { 60 }));
    }
    const FILL: [u8; 8] = [SNARE, SNARE, SNARE, SNARE, HIGH_TOM, HIGH_TOM, MID_TOM, LOW_TOM];
    for (i, &key) in FILL.iter().enumerate() {
        n.push(hit(2.0 + i as f64 * 0.25, key, 60 + 8 * i as u8));
    }
    n.push(hit(3.5, KICK, 110));
    n
}

// ---------------------------------------------------------------------------------------------
// Bass, chords, lead
// ---------------------------------------------------------------------------------------------

/// Long roots with a pickup into the next bar.
fn bass_intro() -> Vec<Note> {
    let mut n = Vec::new();
    for (bar, chord) in VERSE.iter().enumerate() {
        let o = bar as f64 * 4.0;
        n.push((o, 2.9, chord.root, 96));
        n.push((o + 3.0, 0.4, chord.root + 12, 70));
        n.push((o + 3.5, 0.4, chord.root + 7, 78));
    }
    n
}

/// Syncopated eighths on the verse roots, with octave and fifth.
fn bass_a() -> Vec<Note> {
    let mut n = Vec::new();
    for (bar, chord) in VERSE.iter().enumerate() {
        let (o, r) = (bar as f64 * 4.0, chord.root);
        n.extend([
            (o, 0.45, r, 112),
            (o + 0.5, 0.25, r, 78),
            (o + 1.0, 0.25, r + 12, 96),
            (o + 1.5, 0.45, r, 86),
            (o + 2.5, 0.3, r, 82),
            (o + 3.0, 0.45, r + 7, 96),
            (o + 3.5, 0.4, r + 12, 84),
        ]);
    }
    n
}

/// Driving straight eighths on the chorus roots.
fn bass_b() -> Vec<Note> {
    let mut n = Vec::new();
    for (bar, chord) in CHORUS.iter().enumerate() {
        let o = bar as f64 * 4.0;
        for e in 0..8u8 {
            let key = match e {
                3 | 7 => chord.root + 12,
                6 => chord.root + 7,
                _ => chord.root,
            };
            n.push((o + f64::from(e) * 0.5, 0.4, key, if e % 2 == 0 { 112 } else { 84 }));
        }
    }
    n
}

/// Sustained verse chords, one per bar.
fn chords_verse() -> Vec<Note> {
    let mut n = Vec::new();
    for (bar, chord) in VERSE.iter().enumerate() {
        let o = bar as f64 * 4.0;
        for (i, &key) in chord.pad.iter().enumerate() {
            n.push((o, 3.85, key, 80 - 4 * i as u8));
        }
    }
    n
}

/// Syncopated chorus chords.
fn chords_chorus() -> Vec<Note> {
    const RHYTHM: [(f64, f64, u8); 4] = [(0.0, 1.4, 92), (1.5, 0.9, 76), (2.5, 1.0, 86), (3.5, 0.4, 70)];
    let mut n = Vec::new();
    for (bar, chord) in CHORUS.iter().enumerate() {
        let o = bar as f64 * 4.0;
        for &(t, len, velocity) in &RHYTHM {
            for &key in &chord.pad {
                n.push((o + t, len, key, velocity));
            }
        }
    }
    n
}

/// The verse melody, over Am–F–C–G.
fn lead_a() -> Vec<Note> {
    vec![
        // Am
        (0.0, 0.9, 76, 104),
        (1.0, 0.45, 74, 84),
        (1.5, 0.45, 72, 88),
        (2.0, 1.4, 69, 96),
        (3.5, 0.45, 72, 80),
        // F
        (4.0, 0.9, 72, 100),
        (5.0, 0.45, 69, 84),
        (5.5, 1.4, 65, 90),
        (7.0, 0.45, 67, 80),
        (7.5, 0.45, 69, 86),
        // C
        (8.0, 1.4, 76, 106),
        (9.5, 0.45, 74, 84),
        (10.0, 0.9, 72, 92),
        (11.0, 0.9, 67, 86),
        // G
        (12.0, 1.4, 71, 98),
        (13.5, 0.45, 72, 82),
        (14.0, 1.75, 74, 96),
    ]
}

/// The chorus hook, higher, over F–G–Am–E.
fn lead_b() -> Vec<Note> {
    vec![
        // F
        (0.0, 0.45, 81, 112),
        (0.5, 0.45, 79, 88),
        (1.0, 0.9, 77, 100),
        (2.0, 0.45, 76, 86),
        (2.5, 0.45, 77, 90),
        (3.0, 0.9, 81, 104),
        // G
        (4.0, 1.4, 79, 108),
        (5.5, 0.45, 77, 86),
        (6.0, 0.9, 74, 94),
        (7.0, 0.45, 71, 82),
        (7.5, 0.45, 74, 90),
        // Am
        (8.0, 1.4, 76, 110),
        (9.5, 0.45, 72, 86),
        (10.0, 0.9, 76, 96),
        (11.0, 0.9, 81, 104),
        // E
        (12.0, 1.4, 80, 110),
        (13.5, 0.45, 76, 86),
        (14.0, 0.9, 71, 90),
        (15.0, 0.9, 80, 100),
    ]
}

// ---------------------------------------------------------------------------------------------
// Audio clips
// ---------------------------------------------------------------------------------------------

/// Frames in `beats` at the demo's tempo and sample rate.
fn frames(beats: f64) -> usize {
    (beats * 60.0 / TEMPO * f64::from(SAMPLE_RATE)).round() as usize
}

/// A stereo loop being rendered: sounds that run past the end wrap to the start, so the loop
/// is seamless.
struct Loop {
    left: Vec<f32>,
    right: Vec<f32>,
}

impl Loop {
    fn new(beats: f64) -> Loop {
        let n = frames(beats);
        Loop { left: vec![0.0; n], right: vec![0.0; n] }
    }

    /// Adds `sound` at `beat`, with per-channel gains.
    fn add(&mut self, beat: f64, sound: &[f32], gain_l: f32, gain_r: f32) {
        let n = self.left.len();
        let start = frames(beat);
        for (i, &x) in sound.iter().enumerate() {
            let j = (start + i) % n;
            self.left[j] += x * gain_l;
            self.right[j] += x * gain_r;
        }
    }

    /// Scales to `peak` and returns the audio.
    fn finish(mut self, peak: f32) -> AudioData {
        let max = self.left.iter().chain(&self.right).fold(0.0f32, |m, x| m.max(x.abs()));
        if max > 0.0 {
            let g = peak / max;
            self.left.iter_mut().chain(self.right.iter_mut()).for_each(|x| *x *= g);
        }
        AudioData { sample_rate: SAMPLE_RATE, left: self.left, right: self.right }
    }
}

/// Two bars of sixteenth-note shaker with accents and a little swing, and bongos in bar two.
fn shaker_loop() -> AudioData {
    const ACCENT: [f32; 4] = [0.55, 0.3, 1.0, 0.38];
    let sr = SAMPLE_RATE as f32;
    let mut rng = XorShift32::new(0x5AA4_E401);
    let mut out = Loop::new(8.0);
    for s in 0..32 {
        let swing = if s % 2 == 1 { 0.03 } else { 0.0 };
        let level = ACCENT[s % 4] * (0.9 + 0.2 * rng.unit());
        let sound = shaker_hit(&mut rng, sr);
        let (l, r) = if s % 2 == 0 { (0.9, 0.6) } else { (0.6, 0.9) };
        out.add(s as f64 * 0.25 + swing, &sound, level * l, level * r);
    }
    for &(beat, freq, level, pan) in &[
        (5.5, 390.0, 0.7, 0.3),
        (5.75, 390.0, 0.45, 0.3),
        (6.5, 265.0, 0.8, -0.3),
        (7.0, 265.0, 0.6, -0.3),
        (7.5, 390.0, 0.7, 0.3),
    ] {
        let sound = bongo_hit(&mut rng, freq, sr);
        out.add(beat, &sound, level * (1.0 - pan), level * (1.0 + pan));
    }
    out.finish(0.5)
}

/// A shaker stroke: band-passed noise with a short swell and a quick decay.
fn shaker_hit(rng: &mut XorShift32, sr: f32) -> Vec<f32> {
    let mut bp = Svf::new();
    bp.set(7200.0, 0.9, sr);
    let mut hp = Svf::new();
    hp.set(3000.0, 1.4, sr);
    (0..(0.1 * sr) as usize)
        .map(|i| {
            let t = i as f32 / sr;
            let env = if t < 0.012 { t / 0.012 } else { (-(t - 0.012) / 0.022).exp() };
            hp.step(bp.step(rng.bipolar()).band).high * env
        })
        .collect()
}

/// A bongo: a sine with a falling pitch and a slap of noise.
fn bongo_hit(rng: &mut XorShift32, freq: f32, sr: f32) -> Vec<f32> {
    let mut phase = 0.0f32;
    (0..(0.3 * sr) as usize)
        .map(|i| {
            let t = i as f32 / sr;
            phase = (phase + freq * (1.0 + 0.3 * (-t / 0.015).exp()) / sr).fract();
            let tone = (std::f32::consts::TAU * phase).sin() * (-t / 0.07).exp();
            let slap = rng.bipolar() * (-t / 0.004).exp() * 0.3;
            (tone + slap) * (t / 0.0008).min(1.0)
        })
        .collect()
}

/// Four bars of sixteenth-note FM plucks over Am–F–C–G, with dotted-eighth ping-pong echoes.
fn arp_loop() -> AudioData {
    const PATTERN: [usize; 16] = [0, 1, 2, 3, 2, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 1];
    const ECHO: f64 = 0.75; // beats
    let sr = SAMPLE_RATE as f32;
    let mut out = Loop::new(16.0);
    for (bar, chord) in VERSE.iter().enumerate() {
        for (s, &idx) in PATTERN.iter().enumerate() {
            let beat = bar as f64 * 4.0 + s as f64 * 0.25;
            let key = chord.arp[idx];
            let level = if s % 4 == 0 { 1.0 } else { 0.62 } * if s % 8 == 6 { 0.8 } else { 1.0 };
            let sound = pluck(440.0 * ((f32::from(key) - 69.0) / 12.0).exp2(), sr);
            let (l, r) = if s % 2 == 0 { (0.85, 0.7) } else { (0.7, 0.85) };
            out.add(beat, &sound, level * l, level * r);
            for k in 1..=3 {
                let g = level * 0.45f32.powi(k);
                let (l, r) = if k % 2 == 1 { (0.15, 1.0) } else { (1.0, 0.15) };
                out.add(beat + ECHO * f64::from(k), &sound, g * l, g * r);
            }
        }
    }
    out.finish(0.35)
}

/// A soft FM pluck (modulator at twice the carrier, index decaying quickly).
fn pluck(freq: f32, sr: f32) -> Vec<f32> {
    let (mut pc, mut pm) = (0.0f32, 0.0f32);
    (0..(0.6 * sr) as usize)
        .map(|i| {
            let t = i as f32 / sr;
            pc = (pc + freq / sr).fract();
            pm = (pm + 2.0 * freq / sr).fract();
            let index = 1.6 * (-t / 0.06).exp();
            let y = (std::f32::consts::TAU * pc + index * (std::f32::consts::TAU * pm).sin()).sin();
            y * (1.0 - (-t / 0.0015).exp()) * (-t / 0.16).exp()
        })
        .collect()
}

/// The benchmark set: `tracks` audio tracks at `tempo`, each with two 4-beat stereo clips of
/// quiet sine tones at `sample_rate` (legato, so a switch between them crossfades mid-waveform).
/// Clip `2 t` and `2 t + 1` are track `t`'s. The `signal` criterion bench and the deadline
/// benchmark (`loophole-load-bench`) both play it.
pub fn bench_session(tracks: usize, tempo: f64, sample_rate: u32) -> Session {
    let mut s = Session::new("bench", Bpm(tempo));
    s.crossfade_ms = 5.0;
    let frames = (4.0 * 60.0 / tempo * sample_rate as f64) as usize;
    for t in 0..tracks {
        let track = s.add_track(Track::new(format!("t{t}"), TrackKind::Audio));
        for k in 0..2 {
            let hz = 110.0 * (1.0 + t as f64 / 7.0 + k as f64 / 3.0);
            let left: Vec<f32> = (0..frames)
                .map(|i| 0.01 * (i as f64 * hz * std::f64::consts::TAU / sample_rate as f64).sin() as f32)
                .collect();
            let right: Vec<f32> = left.iter().rev().copied().collect();
            let data = AudioData { sample_rate, left, right };
            let mut c = Clip::new(format!("t{t}c{k}"), track, ClipContent::Audio(Arc::new(data)), Beats(4.0));
            c.legato = true;
            s.add_clip(c);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::Instrument;
    use crate::model::MidiMsg;

    #[test]
    fn the_demo_validates_and_has_its_shape() {
        let s = session();
        s.validate().unwrap();
        assert!(s.tracks.len() >= 5 && s.scenes.len() >= 4);
        assert_eq!(
            (s.tempo.0, s.beats_per_bar, s.seed, s.quantise, s.crossfade_ms),
            (120.0, 4.0, 1, Quantise::Bar, 5.0)
        );
        for id in ["drums", "bass", "chords", "lead", "texture"] {
            assert!(s.track_by_name(id).is_some(), "no track {id}");
        }
        for id in ["intro", "verse", "chorus", "breakdown", "outro"] {
            let scene = s.scene(s.scene_by_name(id).unwrap_or_else(|| panic!("no scene {id}")));
            assert!(scene.clips.len() >= 3, "scene {id} is thin");
        }
        // Unique ids, every MIDI track has an instrument, every track has 2-5 clips.
        let mut ids: Vec<_> = s.clips.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), s.clips.len(), "clip ids repeat");
        for (i, t) in s.tracks.iter().enumerate() {
            assert_eq!(t.kind == TrackKind::Midi, t.instrument.is_some(), "track {}", t.id);
            let n = s.clips.iter().filter(|c| c.track == TrackId(i as u32)).count();
            assert!((2..=5).contains(&n), "track {} has {n} clips", t.id);
        }
        for c in &s.clips {
            assert!([4.0, 8.0, 16.0].contains(&c.length.0), "clip {} is {} beats", c.id, c.length.0);
            assert!(c.looping);
        }
    }

    #[test]
    fn midi_clips_have_their_events_inside_and_balanced() {
        let s = session();
        for c in &s.clips {
            let ClipContent::Midi(data) = &c.content else { continue };
            assert!(data.events.len() >= 8, "clip {} is nearly empty", c.id);
            let mut held = [0i32; 128];
            for e in &data.events {
                assert!(e.beat.0 >= 0.0 && e.beat.0 < c.length.0, "clip {}: event at beat {}", c.id, e.beat.0);
                match e.msg {
                    MidiMsg::NoteOn { key, velocity, .. } => {
                        assert!((1..=127).contains(&velocity));
                        held[key as usize] += 1;
                    }
                    MidiMsg::NoteOff { key, .. } => held[key as usize] -= 1,
                    MidiMsg::Cc { .. } => {}
                }
            }
            assert!(held.iter().all(|&h| h == 0), "clip {} leaves notes hanging", c.id);
        }
    }

    #[test]
    fn harmony_clips_stay_in_key() {
        // A natural minor, plus G# over the chorus's E chord.
        const A_MINOR: [u8; 8] = [9, 11, 0, 2, 4, 5, 7, 8];
        let s = session();
        for c in s.clips.iter().filter(|c| !c.id.starts_with("drums")) {
            let ClipContent::Midi(data) = &c.content else { continue };
            for e in &data.events {
                if let MidiMsg::NoteOn { key, .. } = e.msg {
                    assert!(A_MINOR.contains(&(key % 12)), "clip {}: key {key} is out of A minor", c.id);
                }
            }
        }
    }

    #[test]
    fn audio_clips_are_loud_enough_and_do_not_clip() {
        let s = session();
        let mut audio = 0;
        for c in &s.clips {
            let ClipContent::Audio(a) = &c.content else { continue };
            audio += 1;
            assert_eq!(a.sample_rate, SAMPLE_RATE);
            assert_eq!(a.frames(), frames(c.length.0), "clip {} length", c.id);
            assert_eq!(a.right.len(), a.frames());
            let peak = a.left.iter().chain(&a.right).fold(0.0f32, |m, x| m.max(x.abs()));
            let rms = (a.left.iter().map(|x| x * x).sum::<f32>() / a.frames() as f32).sqrt();
            assert!(peak <= 1.0 && peak > 0.2, "clip {} peaks at {peak}", c.id);
            assert!(rms > 0.02, "clip {} is nearly silent (rms {rms})", c.id);
            assert!(a.left != a.right, "clip {} is mono", c.id);
        }
        assert_eq!(audio, 2);
    }

    #[test]
    fn the_script_plays_the_playlist_and_fits_in_the_demo_length() {
        let s = session();
        let script = script();
        assert!(script.actions.windows(2).all(|w| w[0].beat.0 <= w[1].beat.0), "actions are not sorted");
        let song = s.playlist_by_name("song").unwrap();
        assert_eq!(
            script.actions[0],
            ScriptAction { beat: Beats(0.0), action: Action::Playlist { playlist: song, step: 0, quantise: None } }
        );
        // The playlist performs every scene, in order, and ends before the demo does.
        let steps = &s.playlists[song].steps;
        let order: Vec<u32> = steps.iter().map(|st| st.scene.0).collect();
        assert_eq!(order, (0..s.scenes.len() as u32).collect::<Vec<_>>());
        assert!(!s.playlists[song].looping);
        let length = crate::script::playlist_length(&s, song, 0);
        assert_eq!(length.beats, Beats(112.0));
        assert_eq!(SECONDS, length.seconds + 6.0 * 60.0 / TEMPO, "six beats of tail after the playlist");
        // The hand presses land inside the playlist, before a scene change.
        for a in &script.actions[1..] {
            assert!(matches!(a.action, Action::Launch { .. }));
            assert!(a.beat.0 < length.beats.0);
        }
    }

    #[test]
    fn the_demo_has_follow_actions_with_chances() {
        let s = session();
        let with_follow: Vec<&str> = s.clips.iter().filter(|c| c.follow.is_some()).map(|c| c.id.as_str()).collect();
        assert_eq!(with_follow, ["drums-basic", "lead-b"]);
        let f = s.clip(s.clip_by_name("drums-basic").unwrap()).follow.as_ref().unwrap();
        let b = f.b.as_ref().unwrap();
        assert_eq!((f.after_loops, f.a.next, f.a.chance), (2, FollowTarget::Repeat, 0.6));
        assert_eq!((b.next, b.chance), (FollowTarget::Clip(s.clip_by_name("drums-busy").unwrap()), 0.4));
        let breakdown = s.scene(s.scene_by_name("breakdown").unwrap()).follow.as_ref().unwrap();
        assert_eq!(breakdown.a.next, FollowTarget::Scene(s.scene_by_name("chorus").unwrap()));
        assert_eq!(breakdown.b.as_ref().unwrap().next, FollowTarget::Scene(s.scene_by_name("outro").unwrap()));
        for f in
            s.clips.iter().filter_map(|c| c.follow.as_ref()).chain(s.scenes.iter().filter_map(|s| s.follow.as_ref()))
        {
            let b = f.b.as_ref().unwrap();
            assert!(f.a.chance > 0.0 && b.chance > 0.0 && f.a.chance + b.chance <= 1.0);
        }
    }

    #[test]
    fn the_demo_is_the_same_every_time() {
        let (a, b) = (session(), session());
        for (x, y) in a.clips.iter().zip(&b.clips) {
            match (&x.content, &y.content) {
                (ClipContent::Audio(p), ClipContent::Audio(q)) => assert_eq!(p, q),
                (ClipContent::Midi(p), ClipContent::Midi(q)) => assert_eq!(p, q),
                _ => panic!("clip {} changed kind", x.id),
            }
        }
    }

    #[test]
    fn the_demo_performance_renders_through_the_engine() {
        let config = crate::render::RenderConfig { sample_rate: SAMPLE_RATE, block: 256, seconds: SECONDS };
        let mut renderer = crate::render::Renderer::new(Arc::new(session()), script(), config).unwrap();
        let (audio, events) = renderer.render_all();
        assert!(renderer.errors().is_empty(), "Pulse refused: {:?}", renderer.errors());
        assert_eq!(audio.len(), frames(SECONDS * TEMPO / 60.0) * 2);
        // The playlist steps through every scene on its bar, and the clip follow actions decide.
        let s = session();
        let steps: Vec<(u32, f64)> = events
            .iter()
            .filter_map(|e| match e {
                crate::pulse::PulseEvent::Step { scene, beat, .. } => Some((scene.0, beat.0)),
                _ => None,
            })
            .collect();
        assert_eq!(steps, [(0, 0.0), (1, 16.0), (2, 48.0), (3, 80.0), (4, 96.0)]);
        let decisions: Vec<(crate::pulse::FollowSource, f64)> = events
            .iter()
            .filter_map(|e| match e {
                crate::pulse::PulseEvent::Follow { source, beat, .. } => Some((*source, beat.0)),
                _ => None,
            })
            .collect();
        let clip = |id: &str| crate::pulse::FollowSource::Clip(s.clip_by_name(id).unwrap());
        assert!(decisions.contains(&(clip("drums-basic"), 32.0)), "{decisions:?}");
        assert!(decisions.contains(&(clip("lead-b"), 64.0)), "{decisions:?}");
        let peak = audio.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(peak < 0.95, "the performance peaks at {peak}");
        // Music in every bar until the playlist ends at beat 112; silence soon after it.
        for (bar, w) in audio.chunks(frames(4.0) * 2).enumerate() {
            let rms = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
            if bar < 28 {
                assert!(rms > 0.04, "bar {bar} is nearly silent (rms {rms})");
            } else if bar == 29 {
                assert!(rms < 0.01, "bar {bar} after the end still plays (rms {rms})");
            }
        }
    }

    #[test]
    fn every_midi_clip_sounds_on_its_track_instrument() {
        let s = session();
        for c in &s.clips {
            let ClipContent::Midi(data) = &c.content else { continue };
            let spec = s.track(c.track).instrument.as_ref().unwrap();
            let mut inst = Instrument::new(spec, SAMPLE_RATE);
            let n = frames(c.length.0);
            let (mut l, mut r) = (vec![0.0f32; n], vec![0.0f32; n]);
            let mut pos = 0;
            for e in &data.events {
                let at = frames(e.beat.0);
                inst.render(&mut l[pos..at], &mut r[pos..at]);
                inst.handle(e.msg);
                pos = at;
            }
            inst.render(&mut l[pos..], &mut r[pos..]);
            let peak = l.iter().chain(&r).fold(0.0f32, |m, x| m.max(x.abs()));
            let rms = (l.iter().map(|x| x * x).sum::<f32>() / n as f32).sqrt();
            assert!(rms > 0.02 && peak < 0.9, "clip {}: rms {rms}, peak {peak}", c.id);
        }
    }
}
