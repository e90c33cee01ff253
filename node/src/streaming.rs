//! The node's side of disk streaming: applies the memory budget once the sample rate is known
//! ([`loophole_engine::media::stream::prepare`]) and says which clips stream.
//!
//! Thread: Main thread, before playback; writes cache files.

use std::sync::Arc;

use loophole_engine::model::Session;
use loophole_engine::pulse::PulseEvent;

use crate::input::Performance;
use crate::{BadInput, warn_line};

/// Applies the session's memory budget for an engine at `sample_rate`: clips beyond it are
/// converted to the engine's rate into cache files and keep only their head in memory; the audio
/// files the loader only probed (a budget was set) are decoded here. Prints a line per streamed
/// file. Thread: main thread; slow (decodes and writes the cache files).
pub fn prepare(perf: &mut Performance, sample_rate: u32) -> anyhow::Result<()> {
    if perf.session.streaming.memory_budget_mb.is_none() {
        return Ok(());
    }
    let (session, notes) =
        loophole_engine::media::stream::prepare(&perf.session, sample_rate).map_err(|e| match e {
            loophole_engine::media::stream::StreamError::Settings(why) => anyhow::Error::new(BadInput(why)),
            e @ loophole_engine::media::stream::StreamError::Audio { .. } => {
                anyhow::Error::new(BadInput(e.to_string()))
            }
            other => anyhow::Error::new(other),
        })?;
    for n in &notes {
        warn_line(format_args!(
            "loophole: streaming from disk: clip{} '{}' ({:.1} MiB decoded)",
            if n.clips.len() > 1 { "s" } else { "" },
            n.clips.join("', '"),
            n.mb
        ));
    }
    // The full decoded audio of streamed clips is freed with the old session.
    perf.session = Arc::new(session);
    Ok(())
}

/// The terminal line for a refused start, e.g. `bar 3.1  bass: refused bass-long: it starts ...`.
pub fn describe_refusal(event: &PulseEvent, session: &Session) -> Option<String> {
    let PulseEvent::Refused { track, clip, target, reason, .. } = event else { return None };
    let q = session.beats_per_bar.max(1e-9);
    let bar = (target.0 / q + 1e-6).floor();
    let beat = ((target.0 - bar * q) + 1e-6).floor().max(0.0);
    Some(format!(
        "bar {}.{}  {}: refused {}: {reason}",
        bar as i64 + 1,
        beat as i64 + 1,
        session.tracks.get(track.index()).map_or("?", |t| t.id.as_str()),
        session.clips.get(clip.index()).map_or("?", |c| c.id.as_str()),
    ))
}
