//! `loophole-node arrange`: edits a session file's arrangement.
//!
//! - `--playthrough [--from S --to S]`: commits a scene range as the playthrough preview plays it.
//! - `--script PERF.toml [--seconds S]`: commits a launcher performance: the script is performed
//!   offline (deterministically, as `render` does) and every clip it launched becomes a placement.
//! - `--place CLIP --lane TRACK --at BEAT [--length L] [--duplicate]`: moves (or duplicates) a
//!   clip onto a lane; the clip keeps its id, and its content is checked against the lane.
//!
//! Only the arrangement section of the file is rewritten; the rest stays byte for byte.
//!
//! Thread: Main thread; reads and writes the session file.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use clap::Args;
use loophole_engine::files::session::{MAX_ARRANGEMENT_BEAT, SessionErrorKind, load_session, save_arrangement};
use loophole_engine::model::{Placement, SceneId, Session};
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::script::Script;
use loophole_engine::time::Beats;

use crate::{BadInput, say};

/// `arrange` options.
#[derive(Debug, Args)]
pub struct ArrangeArgs {
    /// The session file to edit.
    #[arg(value_name = "SESSION")]
    pub session: PathBuf,
    /// Commit scenes, played in order as the playthrough preview plays them.
    #[arg(long, conflicts_with_all = ["script", "place"])]
    pub playthrough: bool,
    /// With --playthrough: the first scene (default: the first).
    #[arg(long, value_name = "SCENE", requires = "playthrough")]
    pub from: Option<String>,
    /// With --playthrough: the last scene (default: the last).
    #[arg(long, value_name = "SCENE", requires = "playthrough")]
    pub to: Option<String>,
    /// Commit the launcher performance this script makes (performed offline).
    #[arg(long, value_name = "PERF.toml", conflicts_with = "place")]
    pub script: Option<PathBuf>,
    /// With --script: how long the performance lasts (default: its last action plus two bars).
    #[arg(long, value_name = "S", requires = "script")]
    pub seconds: Option<f64>,
    /// Move this clip (by id) onto the arrangement.
    #[arg(long, value_name = "CLIP", requires = "lane")]
    pub place: Option<String>,
    /// With --place: the lane (track id).
    #[arg(long, value_name = "TRACK")]
    pub lane: Option<String>,
    /// With --place: the length in beats (default: the clip's).
    #[arg(long, value_name = "BEATS", requires = "place")]
    pub length: Option<f64>,
    /// With --place: place a copy (a new clip `<id>-copy`) and leave the original in the launcher.
    #[arg(long, requires = "place")]
    pub duplicate: bool,
    /// Beat where the committed or placed material starts (default 0).
    #[arg(long, value_name = "BEAT", default_value_t = 0.0)]
    pub at: f64,
}

fn scene(session: &Session, name: &Option<String>, default: usize) -> anyhow::Result<SceneId> {
    match name {
        None => Ok(SceneId(default as u32)),
        Some(n) => session.scene_by_name(n).ok_or_else(|| {
            let known: Vec<&str> = session.scenes.iter().map(|s| s.id.as_str()).collect();
            BadInput(format!("scene '{n}' does not exist (scenes: {})", known.join(", "))).into()
        }),
    }
}

/// Runs `arrange`.
pub fn run(args: &ArrangeArgs) -> anyhow::Result<()> {
    let mut session = load_session(&args.session).map_err(|e| BadInput(e.to_string()))?;
    if !(args.at.is_finite() && (0.0..=MAX_ARRANGEMENT_BEAT).contains(&args.at)) {
        bail!(BadInput(format!("--at {}: the arrangement runs from beat 0 to beat {MAX_ARRANGEMENT_BEAT}", args.at)));
    }
    let before_placements = session.arrangement.clips.clone();
    let at = Beats(args.at);
    let before = session.arrangement.clips.len();
    let done = if args.playthrough {
        if session.scenes.is_empty() {
            bail!(BadInput("--playthrough: the session has no scenes".into()));
        }
        let from = scene(&session, &args.from, 0)?;
        let to = scene(&session, &args.to, session.scenes.len() - 1)?;
        let end = session.commit_scenes(from, to, at);
        format!("committed scenes {}..{} to beats {}..{}", session.scene(from).id, session.scene(to).id, at, end)
    } else if let Some(path) = &args.script {
        let script = Script::load(path, &session).map_err(|e| BadInput(e.to_string()))?;
        let last = script.actions.last().map(|a| a.beat.0).unwrap_or(0.0);
        let seconds = args.seconds.unwrap_or((last + 2.0 * session.beats_per_bar) * 60.0 / session.tempo.0);
        let mut renderer = Renderer::new(
            Arc::new(session.clone()),
            script,
            RenderConfig { sample_rate: 48_000, block: 1024, seconds },
        )
        .map_err(|e| BadInput(e.to_string()))?;
        let (_, events) = renderer.render_all();
        let end = Beats(seconds * session.tempo.0 / 60.0);
        // The performance is shifted to start at --at.
        let shift = at.0;
        let n = session.commit_performance(&events, end);
        let len = session.arrangement.clips.len();
        for p in &mut session.arrangement.clips[len - n..] {
            p.start = Beats(p.start.0 + shift);
        }
        format!("committed the performance of {}: {n} placements", path.display())
    } else if let (Some(clip), Some(lane)) = (&args.place, &args.lane) {
        let c = session.clip_by_name(clip).ok_or_else(|| BadInput(format!("clip '{clip}' does not exist")))?;
        let t = session.track_by_name(lane).ok_or_else(|| BadInput(format!("track '{lane}' does not exist")))?;
        let placed = session
            .place_clip(c, t, at, args.length.map(Beats), args.duplicate)
            .map_err(|e| BadInput(e.to_string()))?;
        format!("placed '{}' on lane '{lane}' at beat {at}", session.clip(placed).id)
    } else {
        bail!(BadInput("say what to arrange: --playthrough, --script PERF.toml or --place CLIP --lane TRACK".into()));
    };
    refuse_overlaps(&session, &before_placements)?;
    save_arrangement(&args.session, &session).map_err(|e| match *e.kind {
        // Nothing the user asked for is wrong with these: the file system or its permissions.
        SessionErrorKind::Write(_) | SessionErrorKind::Io(_) | SessionErrorKind::ReadOnly => {
            anyhow::anyhow!("cannot save the arrangement: {e}")
        }
        _ => BadInput(e.to_string()).into(),
    })?;
    say(format_args!("{done}"));
    say(format_args!(
        "{}: the arrangement now has {} clips ({} added)",
        args.session.display(),
        session.arrangement.clips.len(),
        session.arrangement.clips.len() - before
    ));
    Ok(())
}

/// Refuses new placements that overlap placements the arrangement already had on the same lane:
/// a second commit over the same beats would stack two clips on one lane (and two tempo changes
/// on one beat). The user picks another `--at`, or removes the old placements from the file.
fn refuse_overlaps(session: &Session, before: &[Placement]) -> anyhow::Result<()> {
    for new in &session.arrangement.clips[before.len()..] {
        let (a, b) = (new.start.0, new.start.0 + new.length.0);
        if let Some(old) = before.iter().find(|o| o.track == new.track && o.start.0 < b && a < o.start.0 + o.length.0) {
            let end = before.iter().map(|p| p.start.0 + p.length.0).fold(0.0, f64::max);
            bail!(BadInput(format!(
                "beats {a}..{b} of lane '{}' already hold '{}' (beats {}..{}); nothing was changed: \
                 commit at another --at (the arrangement ends at beat {end}), or remove those placements \
                 from the file first",
                session.track(new.track).id,
                session.clip(old.clip).id,
                old.start.0,
                old.start.0 + old.length.0,
            )));
        }
    }
    Ok(())
}
