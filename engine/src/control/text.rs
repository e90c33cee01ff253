//! The text form of control commands, one per line, as a musician types them on the node's
//! terminal (`--stdin-commands`) or in `loophole-conductor ctl`: the seed's names
//! (`clip.trigger CLIP`, `scene.trigger SCENE`, ...) and short aliases (`launch`, `scene`,
//! `stop`), options as `key=value` or `--key value`. See [`HELP`]. Any thread.

use crate::pulse::{Behaviour, MixChange, SceneMode, StopMode};
use crate::time::{Beats, Quantise};

use super::command::ControlCommand;

/// A line of text, understood.
#[derive(Debug, Clone, PartialEq)]
pub enum TextCommand {
    /// Something to perform.
    Control(ControlCommand),
    /// Show what plays and what is queued.
    Status,
    /// Show the commands.
    Help,
    /// End the performance.
    Quit,
    /// Enable (`true`) or disable Ableton Link.
    Link(bool),
}

/// The commands, for `help` and for a line that is not one.
pub const HELP: &str = "\
commands (seed names, or the short forms in brackets):
  clip.trigger CLIP [quantise=Q] [behaviour=start|retrigger|legato|stop] [velocity=0..1]   (launch CLIP)
  clip.release CLIP                                   (release CLIP)
  scene.trigger SCENE [quantise=Q] [mode=full|partial|playlist]   (scene SCENE)
  track.stop TRACK [mode=M] [fade=BEATS]              (stop TRACK)
  stop.all [mode=M] [fade=BEATS]                      (stopall)
  playlist.start PLAYLIST [step=N]                    (playlist PLAYLIST [N])
  scene.playthrough.request [FROM [TO]]               (playthrough [FROM [TO]])
  arrangement.play | arrangement.back [quantise=Q]    (arrangement | back)
  tempo.set BPM                                       (tempo BPM)
  launcher.quantise.update Q                          (quantise Q)
  mixer.set TRACK [gain=DB] [pan=-1..1] [mute|unmute] [solo|unsolo]   (mix TRACK ...)
  transport.start | transport.stop                    (play | stop)
  record.arm TRACK | record.disarm TRACK              (arm TRACK | disarm TRACK)
  record.start [quantise=Q] | record.stop [quantise=Q]   (record | unrecord; default: the next bar)
  clip.record TRACK SCENE [bars=N]                    (record into an empty slot from the next bar)
  status | help | quit | link on | link off
Q: none, bar, 2-bars, beat, half-beat, 1/16, 1/8t, scene, global
M: immediate, quantised, section-end, fade-out";

/// Parses one line. The error says what is wrong with it; show [`HELP`] with it.
pub fn parse(line: &str) -> Result<TextCommand, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&verb, rest)) = words.split_first() else { return Err("empty line".into()) };
    let mut args = Args::new(rest)?;
    let cmd = match verb.to_ascii_lowercase().as_str() {
        "status" => return args.done(TextCommand::Status),
        "help" | "?" => return args.done(TextCommand::Help),
        "quit" | "exit" => return args.done(TextCommand::Quit),
        "link" => {
            let on = match args.word("on or off")?.as_str() {
                "on" => true,
                "off" => false,
                other => return Err(format!("link {other}: say link on or link off")),
            };
            return args.done(TextCommand::Link(on));
        }
        "clip.trigger" | "launch" | "clip" => ControlCommand::ClipTrigger {
            clip: args.word("a clip id")?,
            quantise: args.quantise("quantise")?,
            behaviour: args.option("behaviour")?.map(|b| behaviour(&b)).transpose()?,
            velocity: args.number("velocity", 0.0, 1.0)?,
        },
        "clip.release" | "release" => ControlCommand::ClipRelease { clip: args.word("a clip id")? },
        "scene.trigger" | "scene" => ControlCommand::SceneTrigger {
            scene: args.word("a scene id")?,
            quantise: args.quantise("quantise")?,
            mode: args.option("mode")?.map(|m| scene_mode(&m)).transpose()?,
        },
        "track.stop" => ControlCommand::TrackStop { track: args.word("a track id")?, mode: args.stop_mode()? },
        "stop" if !args.positional.is_empty() => {
            ControlCommand::TrackStop { track: args.word("a track id")?, mode: args.stop_mode()? }
        }
        "stop.all" | "stopall" => ControlCommand::StopAll { mode: args.stop_mode()? },
        "playlist.start" | "playlist" => {
            let playlist = args.word("a playlist id")?;
            let step = match args.positional.first() {
                Some(_) => {
                    let n = args.word("a step number")?;
                    n.parse().map_err(|_| format!("step '{n}': give a step number from 0"))?
                }
                None => args.number("step", 0.0, 1e6)?.map_or(0, |n| n as usize),
            };
            ControlCommand::PlaylistStart { playlist, step, quantise: args.quantise("quantise")? }
        }
        "scene.playthrough.request" | "playthrough" => {
            let from = args.maybe_word();
            let to = args.maybe_word();
            ControlCommand::Playthrough { from, to, quantise: args.quantise("quantise")? }
        }
        "arrangement.play" | "arrangement" => ControlCommand::ArrangementPlay,
        "arrangement.back" | "back" => ControlCommand::BackToArrangement { quantise: args.quantise("quantise")? },
        "tempo.set" | "tempo" => {
            let w = args.word("a tempo in BPM")?;
            let bpm: f64 = w.parse().map_err(|_| format!("tempo '{w}': give beats per minute, e.g. tempo 128"))?;
            ControlCommand::Tempo { bpm }
        }
        "launcher.quantise.update" | "quantise" | "quantize" => {
            let w = args.word("a quantisation")?;
            ControlCommand::LauncherQuantise { quantise: quantise(&w)? }
        }
        "mixer.set" | "mix" => {
            let track = args.word("a track id")?;
            let mut change = MixChange {
                gain_db: args.number("gain", -96.0, 24.0)?,
                pan: args.number("pan", -1.0, 1.0)?,
                ..MixChange::default()
            };
            for flag in std::mem::take(&mut args.positional) {
                match flag.as_str() {
                    "mute" => change.mute = Some(true),
                    "unmute" => change.mute = Some(false),
                    "solo" => change.solo = Some(true),
                    "unsolo" => change.solo = Some(false),
                    other => return Err(format!("mix: '{other}' is not mute, unmute, solo or unsolo")),
                }
            }
            if change == MixChange::default() {
                return Err("mix: say what changes: gain=DB, pan=P, mute, unmute, solo or unsolo".into());
            }
            ControlCommand::Mix { track, change }
        }
        "record.arm" | "arm" => ControlCommand::RecordArm { track: args.word("a track id")? },
        "record.disarm" | "disarm" => ControlCommand::RecordDisarm { track: args.word("a track id")? },
        "record.start" | "record" => ControlCommand::RecordStart { quantise: args.quantise("quantise")? },
        "record.stop" | "unrecord" => ControlCommand::RecordStop { quantise: args.quantise("quantise")? },
        "clip.record" => {
            let track = args.word("a track id")?;
            let scene = args.word("a scene id (the slot's row)")?;
            let bars = args
                .number("bars", 1.0, f64::from(crate::pulse::MAX_RECORD_BARS))?
                .map(|b| {
                    if b.fract() == 0.0 { Ok(b as u32) } else { Err(format!("bars={b}: give a whole number of bars")) }
                })
                .transpose()?;
            ControlCommand::ClipRecord { track, scene, bars }
        }
        "transport.start" | "play" | "start" => ControlCommand::TransportStart,
        "transport.stop" | "stop" => ControlCommand::TransportStop,
        other => return Err(format!("'{other}' is not a command")),
    };
    args.done(TextCommand::Control(cmd))
}

/// The words after the verb: positional words in order, and `key=value` / `--key value` options.
struct Args {
    positional: Vec<String>,
    options: Vec<(String, String)>,
}

impl Args {
    fn new(words: &[&str]) -> Result<Args, String> {
        let mut positional = Vec::new();
        let mut options = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            if let Some(key) = w.strip_prefix("--") {
                let value = words.get(i + 1).ok_or_else(|| format!("--{key} needs a value"))?;
                options.push((key.to_ascii_lowercase(), value.to_string()));
                i += 2;
                continue;
            }
            match w.split_once('=') {
                Some((k, v)) => options.push((k.to_ascii_lowercase(), v.to_string())),
                None => positional.push(w.to_string()),
            }
            i += 1;
        }
        Ok(Args { positional, options })
    }

    fn word(&mut self, what: &str) -> Result<String, String> {
        if self.positional.is_empty() {
            return Err(format!("give {what}"));
        }
        Ok(self.positional.remove(0))
    }

    fn maybe_word(&mut self) -> Option<String> {
        (!self.positional.is_empty()).then(|| self.positional.remove(0))
    }

    fn option(&mut self, key: &str) -> Result<Option<String>, String> {
        let hits: Vec<usize> = (0..self.options.len()).filter(|&i| self.options[i].0 == key).collect();
        match hits.as_slice() {
            [] => Ok(None),
            [i] => Ok(Some(self.options.remove(*i).1)),
            _ => Err(format!("{key} is given twice")),
        }
    }

    fn quantise(&mut self, key: &str) -> Result<Option<Quantise>, String> {
        self.option(key)?.map(|q| quantise(&q)).transpose()
    }

    fn number(&mut self, key: &str, min: f64, max: f64) -> Result<Option<f64>, String> {
        let Some(v) = self.option(key)? else { return Ok(None) };
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() && (min..=max).contains(&x) => Ok(Some(x)),
            _ => Err(format!("{key}={v}: give a number in {min}..={max}")),
        }
    }

    fn stop_mode(&mut self) -> Result<Option<StopMode>, String> {
        let fade = self.number("fade", 1e-6, 1024.0)?;
        let mode = self.option("mode")?;
        Ok(match (mode.as_deref(), fade) {
            (None, None) => None,
            (None | Some("fade-out"), Some(f)) => Some(StopMode::FadeOut(Beats(f))),
            (Some("fade-out"), None) => Some(StopMode::FadeOut(Beats(1.0))),
            (Some(m), None) => Some(match m {
                "immediate" | "now" => StopMode::Immediate,
                "quantised" | "quantized" => StopMode::Quantised,
                "section-end" | "end" => StopMode::SectionEnd,
                other => return Err(format!("mode={other}: use immediate, quantised, section-end or fade-out")),
            }),
            (Some(m), Some(_)) => return Err(format!("fade= only goes with mode=fade-out, not mode={m}")),
        })
    }

    fn done(self, cmd: TextCommand) -> Result<TextCommand, String> {
        if let Some(w) = self.positional.first() {
            return Err(format!("'{w}' is one word too many"));
        }
        if let Some((k, _)) = self.options.first() {
            return Err(format!("'{k}' is not an option of this command"));
        }
        Ok(cmd)
    }
}

fn quantise(text: &str) -> Result<Quantise, String> {
    Quantise::parse(text).ok_or_else(|| {
        format!("'{text}' is not a quantisation (none, bar, 2-bars, beat, half-beat, 1/16, 1/8t, scene)")
    })
}

fn behaviour(text: &str) -> Result<Behaviour, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "start" => Behaviour::Start,
        "retrigger" => Behaviour::Retrigger,
        "legato" => Behaviour::Legato,
        "stop" => Behaviour::Stop,
        other => return Err(format!("behaviour={other}: use start, retrigger, legato or stop")),
    })
}

fn scene_mode(text: &str) -> Result<SceneMode, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "full" => SceneMode::Full,
        "partial" => SceneMode::Partial,
        "playlist" => SceneMode::Playlist,
        "follow-action" => SceneMode::FollowAction,
        other => return Err(format!("mode={other}: use full, partial or playlist")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(line: &str) -> ControlCommand {
        match parse(line) {
            Ok(TextCommand::Control(c)) => c,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn the_seed_names_and_the_short_forms_parse_to_the_same_commands() {
        assert_eq!(control("clip.trigger bass-a quantise=beat"), control("launch bass-a --quantise beat"));
        assert_eq!(
            control("launch lead behaviour=legato velocity=0.5"),
            ControlCommand::ClipTrigger {
                clip: "lead".into(),
                quantise: None,
                behaviour: Some(Behaviour::Legato),
                velocity: Some(0.5)
            }
        );
        assert_eq!(
            control("scene verse mode=partial"),
            ControlCommand::SceneTrigger { scene: "verse".into(), quantise: None, mode: Some(SceneMode::Partial) }
        );
        assert_eq!(control("stop drums"), ControlCommand::TrackStop { track: "drums".into(), mode: None });
        assert_eq!(control("stop"), ControlCommand::TransportStop);
        assert_eq!(control("play"), ControlCommand::TransportStart);
        assert_eq!(control("stopall fade=2"), ControlCommand::StopAll { mode: Some(StopMode::FadeOut(Beats(2.0))) });
        assert_eq!(control("tempo 128"), ControlCommand::Tempo { bpm: 128.0 });
        assert_eq!(control("quantise 1/16"), ControlCommand::LauncherQuantise { quantise: Quantise::Division(16) });
        assert_eq!(
            control("playlist song 2"),
            ControlCommand::PlaylistStart { playlist: "song".into(), step: 2, quantise: None }
        );
        assert_eq!(
            control("playthrough intro chorus"),
            ControlCommand::Playthrough { from: Some("intro".into()), to: Some("chorus".into()), quantise: None }
        );
        assert_eq!(
            control("mix bass gain=-6 mute"),
            ControlCommand::Mix {
                track: "bass".into(),
                change: MixChange { gain_db: Some(-6.0), mute: Some(true), ..MixChange::default() }
            }
        );
        assert_eq!(parse("status"), Ok(TextCommand::Status));
        assert_eq!(parse("link off"), Ok(TextCommand::Link(false)));
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        for (line, phrase) in [
            ("", "empty"),
            ("dance", "not a command"),
            ("launch", "give a clip id"),
            ("launch a b", "one word too many"),
            ("launch a quantise=soon", "not a quantisation"),
            ("launch a velocity=2", "0..=1"),
            ("scene a colour=red", "not an option"),
            ("tempo fast", "beats per minute"),
            ("stop drums mode=later", "section-end"),
            ("mix bass", "say what changes"),
            ("link maybe", "link on"),
        ] {
            let e = parse(line).expect_err(line);
            assert!(e.contains(phrase), "{line}: {e}");
        }
    }
}
