//! Recording in `loophole-node render`, and the `takes` command.
//!
//! - `--input NAME=SOURCE` (repeatable; SOURCE is `file:PATH.wav` or `silence`) binds the inputs
//!   tracks name (`input = "mic"`); a bare `--input SOURCE` feeds every track input not bound by
//!   name. [`RenderRecording`] connects them to the renderer, runs the disk thread that writes
//!   the takes into the takes folder (`--takes-dir`, default `takes/` beside the session), logs
//!   `record.takeCreated`, `record.underrun` and `record.error`, and at the end writes every take
//!   into the session file as a clip (through `toml_edit`, the rest of the file kept).
//! - `loophole-node takes [--takes-dir DIR]` repairs the takes a kill cut off and lists them all.
//!
//! Thread: main thread (the writer runs on its own `loophole-takes` thread).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use loophole_engine::files::session::{NewTake, add_takes};
use loophole_engine::model::Session;
use loophole_engine::record::feed::InputSource;
use loophole_engine::record::writer::{TakeEvent, TakeInfo, TakeWriter, WriterConfig, WriterThread};
use loophole_engine::render::Renderer;

use crate::eventlog::EventLog;
use crate::{BadInput, say, warn_line};

/// One `--input` of `render`: a name (`None` for a bare SOURCE) and where its frames come from.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedInput {
    /// The input's name, as tracks give it; `None` feeds every track input not named.
    pub name: Option<String>,
    /// The source.
    pub source: RenderSource,
}

/// What a render's input plays.
#[derive(Debug, Clone, PartialEq)]
pub enum RenderSource {
    /// Silence.
    Silence,
    /// A WAV file, from the render's first frame, then silence.
    File(PathBuf),
}

/// Parses `NAME=SOURCE` or `SOURCE` (`file:PATH.wav`, `silence`).
pub fn parse_named_input(s: &str) -> Result<NamedInput, String> {
    let (name, source) = match s.split_once('=') {
        Some((n, src)) => {
            let n = n.trim();
            if n.is_empty() || n.contains(':') {
                return Err(format!("'{s}': give NAME=SOURCE, e.g. mic=file:take.wav"));
            }
            (Some(n.to_string()), src.trim())
        }
        None => (None, s.trim()),
    };
    let source = match source {
        "silence" | "null" => RenderSource::Silence,
        src => match src.strip_prefix("file:") {
            Some(p) if !p.is_empty() => RenderSource::File(PathBuf::from(p)),
            _ => {
                return Err(format!(
                    "'{src}': a render's input is file:PATH.wav or silence (devices and loopback are for play)"
                ));
            }
        },
    };
    Ok(NamedInput { name, source })
}

/// Decodes the inputs at `rate` (a file at another rate is resampled once) and binds them to
/// the names the session's tracks use. Bad input (a missing file, a name no track uses) is a
/// [`BadInput`].
pub fn load_inputs(inputs: &[NamedInput], session: &Session, rate: u32) -> anyhow::Result<Vec<(String, InputSource)>> {
    let used: Vec<&str> = session.tracks.iter().filter_map(|t| t.input.as_ref().map(|i| i.name())).collect();
    let load = |src: &RenderSource| -> anyhow::Result<InputSource> {
        Ok(match src {
            RenderSource::Silence => InputSource::Silence { channels: 2 },
            RenderSource::File(path) => {
                if !path.is_file() {
                    return Err(BadInput(format!("--input file:{}: there is no such file", path.display())).into());
                }
                let audio = loophole_engine::media::wav::read_wav_file(path)
                    .map_err(|e| BadInput(format!("--input file:{}: {e}", path.display())))?;
                let audio = if audio.sample_rate == rate {
                    audio
                } else {
                    loophole_engine::media::resample::resample(&audio, rate)
                };
                InputSource::from_stereo(&audio.left, &audio.right)
            }
        })
    };
    let mut out: Vec<(String, InputSource)> = Vec::new();
    let mut default = None;
    for i in inputs {
        match &i.name {
            Some(n) => {
                if !used.contains(&n.as_str()) {
                    let known = if used.is_empty() { "none".to_string() } else { used.join(", ") };
                    return Err(BadInput(format!(
                        "--input {n}=...: no track records from input '{n}' (inputs the tracks name: {known})"
                    ))
                    .into());
                }
                if out.iter().any(|(o, _)| o == n) {
                    return Err(BadInput(format!("--input {n}=... is given twice")).into());
                }
                out.push((n.clone(), load(&i.source)?));
            }
            None if default.is_some() => return Err(BadInput("a bare --input SOURCE is given twice".into()).into()),
            None => default = Some(load(&i.source)?),
        }
    }
    if let Some(src) = default {
        for name in used {
            if !out.iter().any(|(o, _)| o == name) {
                out.push((name.to_string(), src.clone()));
            }
        }
    }
    Ok(out)
}

/// The recording side of a render. See the module docs.
pub struct RenderRecording {
    writer: Option<WriterThread>,
    dir: PathBuf,
    rate: u32,
    takes: Vec<TakeInfo>,
    underruns: u64,
    errors: Vec<String>,
}

impl RenderRecording {
    /// Connects `inputs` to the renderer and starts the disk thread writing into `dir`.
    pub fn start(renderer: &mut Renderer, inputs: Vec<(String, InputSource)>, dir: &Path) -> anyhow::Result<Self> {
        let session = renderer.session().clone();
        let (ring, unbound) = renderer.connect_inputs(inputs).map_err(|e| BadInput(e.to_string()))?;
        for name in unbound {
            warn_line(format_args!(
                "loophole: input '{name}' is not given (--input {name}=file:PATH.wav): its tracks record silence"
            ));
        }
        let mut config = WriterConfig::new(
            dir.to_path_buf(),
            renderer.signal().sample_rate(),
            session.tracks.iter().map(|t| t.id.clone()).collect(),
        );
        config.taken = session.clips.iter().map(|c| c.id.clone()).collect();
        let writer = TakeWriter::new(ring, config).spawn().context("cannot start the takes writer thread")?;
        Ok(RenderRecording {
            writer: Some(writer),
            dir: dir.to_path_buf(),
            rate: renderer.signal().sample_rate(),
            takes: Vec::new(),
            underruns: 0,
            errors: Vec::new(),
        })
    }

    /// Logs what the disk thread reported since the last call.
    pub fn poll(&mut self, session: &Session, log: &mut Option<EventLog>) -> anyhow::Result<()> {
        let events = self.writer.as_ref().map(WriterThread::poll).unwrap_or_default();
        self.note(events, session, log)
    }

    fn note(&mut self, events: Vec<TakeEvent>, session: &Session, log: &mut Option<EventLog>) -> anyhow::Result<()> {
        let track = |t: loophole_engine::model::TrackId| session.tracks.get(t.index()).map(|t| t.id.clone());
        for e in events {
            let json = match &e {
                TakeEvent::Finished(t) => serde_json::json!({
                    "event": "record.takeCreated",
                    "take": t.take.0,
                    "track": track(t.track),
                    "clip": t.name,
                    "files": t.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                    "slot": t.slot.and_then(|s| session.scenes.get(s.index())).map(|s| s.id.clone()),
                    "start_sample": t.start.0,
                    "start_beat": t.start.1.0,
                    "stop_sample": t.stop.map(|s| s.0),
                    "stop_beat": t.stop.map(|s| s.1.0),
                    "frames": t.frames,
                    "channels": t.channels,
                    "lost_frames": t.lost_frames,
                    "error": t.error,
                }),
                TakeEvent::Underrun { take, track: tr, frames } => {
                    self.underruns += frames;
                    serde_json::json!({"event": "record.underrun", "take": take.0, "track": track(*tr), "frames": frames})
                }
                TakeEvent::Error { take, track: tr, message } => {
                    warn_line(format_args!(
                        "loophole: cannot write take {} ({message}); it keeps what reached the disk",
                        take.0
                    ));
                    self.errors.push(message.clone());
                    serde_json::json!({"event": "record.error", "take": take.0, "track": track(*tr), "message": message})
                }
            };
            if let Some(log) = log {
                log.write_value(json, None)?;
            }
            if let TakeEvent::Finished(t) = e {
                self.takes.push(t);
            }
        }
        Ok(())
    }

    /// Waits for the disk thread to finish every take, logs the rest, and writes the takes into
    /// the session file (`session_file`: `None` for the demo, which has none). Returns the
    /// summary line.
    pub fn finish(
        mut self,
        session: &Session,
        session_file: Option<&Path>,
        tempo_at: impl Fn(f64) -> f64,
        log: &mut Option<EventLog>,
    ) -> anyhow::Result<String> {
        let rest = self.writer.take().map(WriterThread::finish).unwrap_or_default();
        self.note(rest, session, log)?;
        let mut new = Vec::new();
        let base = session_file.and_then(Path::parent).map(Path::to_path_buf);
        for t in &self.takes {
            if t.frames == 0 {
                warn_line(format_args!("loophole: take '{}' is empty (stopped where it started): not added", t.name));
                continue;
            }
            if t.files.len() > 1 {
                warn_line(format_args!(
                    "loophole: take '{}' is in {} files (each under 4 GiB); its clip plays the first",
                    t.name,
                    t.files.len()
                ));
            }
            let length_beats = match t.stop {
                Some(stop) => stop.1.0 - t.start.1.0,
                // The render ended while it recorded: its frames at the render's last tempo.
                None => t.frames as f64 / f64::from(self.rate) * tempo_at(t.start.1.0) / 60.0,
            };
            let file = &t.files[0];
            let rel = base.as_deref().and_then(|b| file.strip_prefix(b).ok()).unwrap_or(file);
            new.push(NewTake {
                id: t.name.clone(),
                track: session.tracks[t.track.index()].id.clone(),
                file: rel.to_string_lossy().replace('\\', "/"),
                length_beats,
                scene: t.slot.and_then(|s| session.scenes.get(s.index())).map(|s| s.id.clone()),
            });
        }
        let written = match (session_file, new.is_empty()) {
            (_, true) => String::new(),
            (Some(path), false) => {
                add_takes(path, &new).with_context(|| format!("the takes are in {}, but", self.dir.display()))?;
                format!(", added to {}", path.display())
            }
            (None, false) => " (the demo has no session file to add them to)".to_string(),
        };
        let underruns =
            if self.underruns > 0 { format!(", {} frames lost to a slow disk", self.underruns) } else { String::new() };
        let line = format!(
            "recorded {} take{} -> {}{written}{underruns}",
            self.takes.len(),
            if self.takes.len() == 1 { "" } else { "s" },
            self.dir.display()
        );
        if !self.errors.is_empty() {
            return Err(anyhow::anyhow!("{line}; writing failed: {}", self.errors.join("; ")));
        }
        Ok(line)
    }
}

/// `loophole-node takes` options.
#[derive(Debug, clap::Args)]
pub struct TakesArgs {
    /// The takes folder (a render's `--takes-dir`; by default `takes/` beside the session).
    #[arg(long = "takes-dir", value_name = "DIR", default_value = "takes")]
    pub dir: PathBuf,
}

/// `loophole-node takes`: repairs every unfinished take in the folder (a kill cut it off) and
/// lists the takes there: file, channels, frames, seconds, and whether it was just repaired.
pub fn run(args: &TakesArgs) -> anyhow::Result<()> {
    use loophole_engine::record::repair::{find_unfinished, repair};
    if !args.dir.is_dir() {
        return Err(BadInput(format!("{} is not a folder of takes", args.dir.display())).into());
    }
    let mut repaired = Vec::new();
    for file in find_unfinished(&args.dir).with_context(|| format!("cannot read {}", args.dir.display()))? {
        match repair(&file) {
            Ok(r) => {
                say(format_args!(
                    "repaired {}: {} frames (its header said {}, as of its last sync)",
                    file.display(),
                    r.frames,
                    r.header_frames
                ));
                repaired.push(file);
            }
            Err(e) => warn_line(format_args!("loophole: cannot repair {}: {e}", file.display())),
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    files.sort();
    let mut n = 0;
    for f in files {
        let Some((channels, rate, frames)) = take_header(&f) else { continue };
        n += 1;
        say(format_args!(
            "{}  {}  {frames} frames  {:.2} s{}",
            f.display(),
            if channels == 1 { "mono" } else { "stereo" },
            frames as f64 / f64::from(rate),
            if repaired.contains(&f) { "  (repaired)" } else { "" }
        ));
    }
    say(format_args!(
        "{n} take{} in {}, {} repaired",
        if n == 1 { "" } else { "s" },
        args.dir.display(),
        repaired.len()
    ));
    Ok(())
}

/// Channels, rate and frames of a take file the writer made.
fn take_header(path: &Path) -> Option<(u16, u32, u64)> {
    use std::io::Read as _;
    let mut head = [0u8; 44];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    let (channels, rate) = loophole_engine::record::wav::read_header(&head)?;
    let data = u64::from(u32::from_le_bytes([head[40], head[41], head[42], head[43]]));
    Some((channels, rate, data / (4 * u64::from(channels))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_inputs_parse_by_name_or_bare() {
        let named = |n: &str, s| NamedInput { name: Some(n.into()), source: s };
        assert_eq!(parse_named_input("mic=file:x.wav"), Ok(named("mic", RenderSource::File("x.wav".into()))));
        assert_eq!(parse_named_input("keys = silence"), Ok(named("keys", RenderSource::Silence)));
        assert_eq!(parse_named_input("null"), Ok(NamedInput { name: None, source: RenderSource::Silence }));
        assert_eq!(
            parse_named_input("file:a=b.wav").map(|i| i.name),
            Err("'file:a=b.wav': give NAME=SOURCE, e.g. mic=file:take.wav".into()),
            "a colon before the = is not a name"
        );
        for bad in ["mic=", "mic=loopback:5", "mic=file:", "=silence", "hw:0"] {
            assert!(parse_named_input(bad).is_err(), "{bad}");
        }
    }
}
