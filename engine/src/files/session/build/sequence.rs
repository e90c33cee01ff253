//! Building a session's sequencing from its parsed file: follow actions (with every id resolved
//! and every constraint checked), playlists and the arrangement. Control thread.

use std::ops::Range;

use toml::Spanned;

use super::super::error::{SessionError, SessionErrorKind};
use super::super::raw::*;
use super::{Ctx, MAX_ARRANGEMENT_BEAT, MAX_FOLLOW_LOOPS, Owner};
use crate::files::diagnostics::known_list;
use crate::model::{
    Arrangement, ClipId, FollowAction, FollowActions, FollowConstraints, FollowTarget, Placement, Playlist,
    PlaylistStep, Session, TempoChange, TrackKind, clip_kind,
};
use crate::time::{Beats, Bpm};

impl Ctx<'_> {
    /// A clip's or scene's follow actions, with every id resolved and every constraint checked.
    pub(super) fn follow(
        &self,
        raw: &Spanned<RawFollow>,
        owner: Owner,
        session: &Session,
    ) -> Result<FollowActions, SessionError> {
        let owner_name = match owner {
            Owner::Clip(c) => format!("clip '{}'", session.clip(c).id),
            Owner::Scene(s) => format!("scene '{}'", session.scene(s).id),
        };
        let fail = |span: &Range<usize>, problem: String| {
            self.err(span, SessionErrorKind::Follow { owner: owner_name.clone(), problem })
        };
        let f = raw.get_ref();
        let after_loops = match &f.after_loops {
            None => 1,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(v) if (1..=MAX_FOLLOW_LOOPS).contains(&v) => v,
                _ => {
                    return Err(self.err(
                        &n.span(),
                        SessionErrorKind::OutOfRange {
                            what: format!("{owner_name}: follow after_loops"),
                            value: n.get_ref().to_string(),
                            expected: format!("a whole number from 1 to {MAX_FOLLOW_LOOPS}"),
                        },
                    ));
                }
            },
        };
        // The candidates `next`, `previous`, `first`, `last` and `random` choose among, in order.
        let (universe, noun): (Vec<u32>, &str) = match owner {
            Owner::Clip(c) => (session.clips_of_track(session.clip(c).track).iter().map(|c| c.0).collect(), "clip"),
            Owner::Scene(_) => ((0..session.scenes.len() as u32).collect(), "scene"),
        };
        let own = match owner {
            Owner::Clip(c) => c.0,
            Owner::Scene(s) => s.0,
        };
        let resolve = |name: &Spanned<String>| -> Result<u32, SessionError> {
            let n = name.get_ref().trim();
            match owner {
                Owner::Clip(c) => {
                    let track = session.clip(c).track;
                    match session.clip_by_name(n) {
                        Some(id) if session.clip(id).track == track => Ok(id.0),
                        Some(id) => Err(fail(
                            &name.span(),
                            format!(
                                "clip '{n}' is on track '{}', not '{}'; a clip's follow action chooses among the \
                                 clips of its own track ({})",
                                session.track(session.clip(id).track).id,
                                session.track(track).id,
                                known_list(session.clips_of_track(track).iter().map(|c| session.clip(*c).id.as_str()))
                            ),
                        )),
                        None => Err(fail(
                            &name.span(),
                            format!(
                                "clip '{n}' does not exist (clips of track '{}': {})",
                                session.track(track).id,
                                known_list(session.clips_of_track(track).iter().map(|c| session.clip(*c).id.as_str()))
                            ),
                        )),
                    }
                }
                Owner::Scene(_) => session.scene_by_name(n).map(|s| s.0).ok_or_else(|| {
                    fail(
                        &name.span(),
                        format!(
                            "scene '{n}' does not exist (scenes: {})",
                            known_list(session.scenes.iter().map(|s| s.id.as_str()))
                        ),
                    )
                }),
            }
        };
        let action = |raw: &Spanned<RawFollowAction>, chance: f64| -> Result<FollowAction, SessionError> {
            let a = raw.get_ref();
            let next = match a.next.get_ref() {
                RawTarget::Word(w) => match w.trim().to_ascii_lowercase().as_str() {
                    "next" => FollowTarget::Next,
                    "previous" => FollowTarget::Previous,
                    "first" => FollowTarget::First,
                    "last" => FollowTarget::Last,
                    "random" => FollowTarget::Random,
                    "repeat" => FollowTarget::Repeat,
                    "stop" => FollowTarget::Stop,
                    _ => {
                        return Err(fail(
                            &a.next.span(),
                            format!("'{w}' is not a follow action (use {TARGET_EXPECTED})"),
                        ));
                    }
                },
                RawTarget::Clip(name) => {
                    let named = Spanned::new(a.next.span(), name.clone());
                    match owner {
                        // Among the clips of its own track, like the constraints.
                        Owner::Clip(_) => FollowTarget::Clip(ClipId(resolve(&named)?)),
                        // Any clip.
                        Owner::Scene(_) => match session.clip_by_name(name.trim()) {
                            Some(c) => FollowTarget::Clip(c),
                            None => {
                                return Err(fail(
                                    &a.next.span(),
                                    format!(
                                        "clip '{}' does not exist (clips: {})",
                                        name.trim(),
                                        known_list(session.clips.iter().map(|c| c.id.as_str()))
                                    ),
                                ));
                            }
                        },
                    }
                }
                RawTarget::Scene(name) => match session.scene_by_name(name.trim()) {
                    Some(s) => FollowTarget::Scene(s),
                    None => {
                        return Err(fail(
                            &a.next.span(),
                            format!(
                                "scene '{}' does not exist (scenes: {})",
                                name.trim(),
                                known_list(session.scenes.iter().map(|s| s.id.as_str()))
                            ),
                        ));
                    }
                },
            };
            let chooses = matches!(
                next,
                FollowTarget::Next
                    | FollowTarget::Previous
                    | FollowTarget::First
                    | FollowTarget::Last
                    | FollowTarget::Random
            );
            let mut constraints = FollowConstraints::default();
            for (key, span) in [
                ("no_repeat", a.no_repeat.as_ref().map(|v| v.span())),
                ("exclude", a.exclude.as_ref().map(|v| v.span())),
                ("only", a.only.as_ref().map(|v| v.span())),
            ] {
                if let (Some(span), false) = (span, chooses) {
                    return Err(fail(
                        &span,
                        format!("`{key}` only applies when next is next, previous, first, last or random"),
                    ));
                }
            }
            constraints.no_repeat = a.no_repeat.as_ref().is_some_and(|v| *v.get_ref());
            for (list, out) in [(&a.exclude, &mut constraints.exclude), (&a.only, &mut constraints.only)] {
                for name in list.iter().flat_map(|l| l.get_ref()) {
                    let id = resolve(name)?;
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
            }
            if chooses {
                let left = universe
                    .iter()
                    .filter(|c| constraints.only.is_empty() || constraints.only.contains(c))
                    .filter(|c| !constraints.exclude.contains(c))
                    .filter(|c| !(constraints.no_repeat && **c == own))
                    .count();
                if left == 0 {
                    let span =
                        [&a.only, &a.exclude].into_iter().flatten().map(|l| l.span()).next().unwrap_or(raw.span());
                    return Err(fail(&span, format!("the constraints leave no {noun} to choose")));
                }
            }
            Ok(FollowAction { next, chance, constraints })
        };
        let chance = |c: &Option<Spanned<f64>>, which: &str| -> Result<Option<f64>, SessionError> {
            c.as_ref()
                .map(|c| {
                    self.range(
                        c,
                        || format!("{owner_name}: follow {which} chance"),
                        |x| (0.0..=1.0).contains(&x),
                        "between 0 and 1",
                    )
                })
                .transpose()
        };
        let ca = chance(&f.a.get_ref().chance, "a")?;
        let cb = match &f.b {
            None => None,
            Some(b) => chance(&b.get_ref().chance, "b")?,
        };
        // A chance left out takes what the other leaves of 1.
        let (ca, cb) = match (&f.b, ca, cb) {
            (None, a, _) => (a.unwrap_or(1.0), 0.0),
            (Some(_), Some(a), Some(b)) => (a, b),
            (Some(_), Some(a), None) => (a, 1.0 - a),
            (Some(_), None, Some(b)) => (1.0 - b, b),
            (Some(_), None, None) => (0.5, 0.5),
        };
        let a = action(&f.a, ca)?;
        let b = f.b.as_ref().map(|b| action(b, cb)).transpose()?;
        Ok(FollowActions { after_loops, a, b })
    }

    /// A playlist, with its scenes resolved.
    pub(super) fn playlist(&self, id: String, p: &RawPlaylist, session: &Session) -> Result<Playlist, SessionError> {
        let fail = |span: &Range<usize>, problem: String| {
            self.err(span, SessionErrorKind::Playlist { playlist: id.clone(), problem })
        };
        if p.steps.get_ref().is_empty() {
            return Err(fail(
                &p.steps.span(),
                "has no steps; list scenes, e.g. steps = [\"intro\", { scene = \"verse\", repeat = 2 }]".into(),
            ));
        }
        let mut steps = Vec::with_capacity(p.steps.get_ref().len());
        for (i, step) in p.steps.get_ref().iter().enumerate() {
            let raw = step.get_ref();
            let name = raw.scene.trim();
            let Some(scene) = session.scene_by_name(name) else {
                return Err(fail(
                    &step.span(),
                    format!(
                        "step {}: scene '{name}' does not exist (scenes: {})",
                        i + 1,
                        known_list(session.scenes.iter().map(|s| s.id.as_str()))
                    ),
                ));
            };
            let repeat = match raw.repeat {
                None => 1,
                Some(n) => match u32::try_from(n) {
                    Ok(v) if (1..=MAX_FOLLOW_LOOPS).contains(&v) => v,
                    _ => {
                        return Err(self.err(
                            &step.span(),
                            SessionErrorKind::OutOfRange {
                                what: format!("playlist '{id}': step {} repeat", i + 1),
                                value: n.to_string(),
                                expected: format!("a whole number from 1 to {MAX_FOLLOW_LOOPS}"),
                            },
                        ));
                    }
                },
            };
            steps.push(PlaylistStep { scene, repeat });
        }
        Ok(Playlist { id, steps, looping: p.looping.unwrap_or(false) })
    }

    /// The arrangement: placements checked against their lanes, tempo changes in beat order.
    pub(super) fn arrangement(&self, a: &RawArrangement, session: &Session) -> Result<Arrangement, SessionError> {
        let fail = |span: &Range<usize>, problem: String| self.err(span, SessionErrorKind::Arrangement { problem });
        let mut out = Arrangement::default();
        for p in &a.clips {
            let p = p.get_ref();
            let name = p.clip.get_ref().trim();
            let Some(clip) = session.clip_by_name(name) else {
                return Err(fail(
                    &p.clip.span(),
                    format!(
                        "clip '{name}' does not exist (clips: {})",
                        known_list(session.clips.iter().map(|c| c.id.as_str()))
                    ),
                ));
            };
            let c = session.clip(clip);
            let (track, track_span) = match &p.track {
                None => (c.track, p.clip.span()),
                Some(t) => match session.track_by_name(t.get_ref().trim()) {
                    Some(id) => (id, t.span()),
                    None => {
                        return Err(fail(
                            &t.span(),
                            format!(
                                "track '{}' does not exist (tracks: {})",
                                t.get_ref().trim(),
                                known_list(session.tracks.iter().map(|t| t.id.as_str()))
                            ),
                        ));
                    }
                },
            };
            let lane = session.track(track);
            if clip_kind(c) != lane.kind {
                let article = |k: TrackKind| match k {
                    TrackKind::Audio => "an audio",
                    TrackKind::Midi => "a MIDI",
                };
                return Err(fail(
                    &track_span,
                    format!(
                        "clip '{}' is {} clip and cannot go on lane '{}', {} track",
                        c.id,
                        article(clip_kind(c)),
                        lane.id,
                        article(lane.kind)
                    ),
                ));
            }
            let start = self.range(
                &p.start,
                || format!("arrangement clip '{}': start", c.id),
                |x| (0.0..=MAX_ARRANGEMENT_BEAT).contains(&x),
                &format!("between 0 and {MAX_ARRANGEMENT_BEAT} beats"),
            )?;
            let length = match &p.length {
                None => c.length.0,
                Some(l) => self.range(
                    l,
                    || format!("arrangement clip '{}': length", c.id),
                    |x| x > 0.0 && x <= MAX_ARRANGEMENT_BEAT,
                    &format!("greater than 0 and at most {MAX_ARRANGEMENT_BEAT} beats"),
                )?,
            };
            let offset = match &p.offset {
                None => 0.0,
                Some(o) => self.range(
                    o,
                    || format!("arrangement clip '{}': offset", c.id),
                    |x| (0.0..=MAX_ARRANGEMENT_BEAT).contains(&x),
                    &format!("between 0 and {MAX_ARRANGEMENT_BEAT} beats"),
                )?,
            };
            out.clips.push(Placement {
                track,
                clip,
                start: Beats(start),
                length: Beats(length),
                offset: Beats(offset),
            });
        }
        let mut seen: Vec<(f64, usize)> = Vec::new();
        for t in &a.tempo_changes {
            let header = t.span();
            let t = t.get_ref();
            let beat = self.range(
                &t.beat,
                || "arrangement tempo_change beat".into(),
                |x| (0.0..=MAX_ARRANGEMENT_BEAT).contains(&x),
                &format!("between 0 and {MAX_ARRANGEMENT_BEAT}"),
            )?;
            if let Some(&(_, line)) = seen.iter().find(|(b, _)| *b == beat) {
                return Err(fail(
                    &t.beat.span(),
                    format!("two tempo changes at beat {beat} (the other is on line {line}); merge them"),
                ));
            }
            seen.push((beat, self.line(&t.beat.span())));
            let tempo = match &t.tempo {
                None => None,
                Some(x) => Some(Bpm(self.tempo(x, || format!("arrangement tempo_change at beat {beat}: tempo"))?)),
            };
            let beats_per_bar = self.bar_length(t.beats_per_bar.as_ref(), t.time_signature.as_ref(), || {
                format!("arrangement tempo_change at beat {beat}: ")
            })?;
            if tempo.is_none() && beats_per_bar.is_none() {
                return Err(fail(
                    &header,
                    format!(
                        "the tempo change at beat {beat} changes nothing; give tempo, time_signature or beats_per_bar"
                    ),
                ));
            }
            out.tempo.push(TempoChange { beat: Beats(beat), tempo, beats_per_bar });
        }
        out.tempo.sort_by(|a, b| a.beat.0.total_cmp(&b.beat.0));
        Ok(out)
    }
}
