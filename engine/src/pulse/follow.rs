//! Follow actions: when a clip or scene has played its passes, a seeded choice decides between
//! its two alternatives and where `next`, `previous`, `random`... go. The choice is a pure
//! function of the session seed, what decides and how many decisions it had before, so every
//! node and every render decides the same. Control thread.

use crate::model::{ClipId, FollowAction, FollowActions, FollowTarget, SceneId, TrackId};
use crate::time::Beats;

use super::core::PulseCore;
use super::event::{Cause, Choice, FollowSource, PulseError, PulseEvent};
use super::state::{ClipFollowPending, SceneFollowPending, StartSpec};

impl PulseCore {
    /// The seeded choice for a follow-action decision: a pure function of the session seed,
    /// what decides (clip or scene index), how many decisions it had before, and a salt.
    pub(super) fn draw(&self, what: u64, index: u32, occurrence: u64, salt: u64) -> f64 {
        let mut x = self.session.seed ^ 0x6c6f_6f70_686f_6c65;
        for v in [what, index as u64, occurrence, salt] {
            x = splitmix64(x ^ v.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(super) fn choose(
        &self,
        f: &FollowActions,
        what: u64,
        index: u32,
        occurrence: u64,
    ) -> (Choice, Option<FollowAction>) {
        let ca = f.a.chance.clamp(0.0, 1.0);
        let cb = f.b.as_ref().map(|b| b.chance.clamp(0.0, 1.0)).unwrap_or(0.0);
        let total = ca + cb;
        if total <= 0.0 {
            return (Choice::None, None);
        }
        let r = self.draw(what, index, occurrence, 0) * total.max(1.0);
        if r < ca {
            (Choice::A, Some(f.a.clone()))
        } else if r < total {
            (Choice::B, f.b.clone())
        } else {
            (Choice::None, None)
        }
    }

    /// Resolves `next` / `previous` / `first` / `last` / `random` among `domain` (in order).
    pub(super) fn pick(
        &self,
        action: &FollowAction,
        domain: &[u32],
        current: u32,
        salt: (u64, u32, u64),
    ) -> Option<u32> {
        let c = &action.constraints;
        let allowed = |x: &u32| {
            (c.only.is_empty() || c.only.contains(x)) && !c.exclude.contains(x) && !(c.no_repeat && *x == current)
        };
        let cands: Vec<u32> = domain.iter().copied().filter(allowed).collect();
        if cands.is_empty() {
            return None;
        }
        let pos = domain.iter().position(|x| *x == current).unwrap_or(0);
        let n = domain.len();
        match action.next {
            FollowTarget::Next => (1..=n).map(|k| domain[(pos + k) % n]).find(|x| cands.contains(x)),
            FollowTarget::Previous => (1..=n).map(|k| domain[(pos + n - k % n) % n]).find(|x| cands.contains(x)),
            FollowTarget::First => cands.first().copied(),
            FollowTarget::Last => cands.last().copied(),
            FollowTarget::Random => {
                let r = self.draw(salt.0, salt.1, salt.2, 1);
                Some(cands[((r * cands.len() as f64) as usize).min(cands.len() - 1)])
            }
            _ => None,
        }
    }

    /// Makes one follow-action decision for a clip or scene: counts it, draws the choice and
    /// reports it. Returns the action taken (if any) and the occurrence number it was drawn with.
    pub(super) fn decide(&mut self, source: FollowSource, f: &FollowActions, at: Beats) -> (Option<FollowAction>, u64) {
        let (what, index, counter) = match source {
            FollowSource::Clip(c) => (1, c.0, &mut self.clip_decisions[c.index()]),
            FollowSource::Scene(sc) => (2, sc.0, &mut self.scene_decisions[sc.index()]),
        };
        let occurrence = *counter;
        *counter += 1;
        let (choice, action) = self.choose(f, what, index, occurrence);
        self.notices.push_back(PulseEvent::Follow {
            source,
            beat: at,
            occurrence,
            choice,
            next: action.as_ref().map(|a| a.next),
        });
        (action, occurrence)
    }

    pub(super) fn clip_follow_decide(&mut self, t: usize) -> Result<(), PulseError> {
        let Some(pending) = self.clip_follow[t].take() else { return Ok(()) };
        let at = pending.at;
        let track = TrackId(t as u32);
        // The clip must still be the one playing up to that beat.
        let still = self.plans[t].state_at(Beats(at.0 - 1e-6)).map(|p| p.clip) == Some(pending.clip);
        if !still {
            return Ok(());
        }
        let session = self.session.clone();
        let Some(f) = session.clip(pending.clip).follow.as_ref() else { return Ok(()) };
        let (action, occurrence) = self.decide(FollowSource::Clip(pending.clip), f, at);
        let cause = Cause::ClipFollow { from: pending.clip };
        let spec = StartSpec { legato: Some(false), ..StartSpec::press(cause) };
        let Some(action) = action else {
            // Nothing this time: decide again after the same number of passes.
            self.clip_follow[t] = Some(ClipFollowPending { at: Beats(at.0 + pending.every), ..pending });
            return Ok(());
        };
        match action.next {
            FollowTarget::Stop => {
                self.schedule_stop(track, at, None, None, cause)?;
            }
            FollowTarget::Repeat => {
                self.schedule_start(pending.clip, at, spec)?;
            }
            FollowTarget::Scene(scene) => {
                self.sequence = None;
                self.launch_scene(scene, at, false, cause, true)?;
            }
            FollowTarget::Clip(clip) => {
                self.schedule_start(clip, at, spec)?;
            }
            _ => {
                let domain: Vec<u32> = session.clips_of_track(track).iter().map(|c| c.0).collect();
                match self.pick(&action, &domain, pending.clip.0, (1, pending.clip.0, occurrence)) {
                    Some(next) => {
                        self.schedule_start(ClipId(next), at, spec)?;
                    }
                    // No candidate: play on and decide again later.
                    None => {
                        self.clip_follow[t] = Some(ClipFollowPending { at: Beats(at.0 + pending.every), ..pending })
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn scene_follow_decide(&mut self) -> Result<(), PulseError> {
        let Some(pending) = self.scene_follow.take() else { return Ok(()) };
        let at = pending.at;
        let session = self.session.clone();
        let Some(f) = session.scene(pending.scene).follow.as_ref() else { return Ok(()) };
        let (action, occurrence) = self.decide(FollowSource::Scene(pending.scene), f, at);
        let cause = Cause::SceneFollow { from: pending.scene };
        let Some(action) = action else {
            self.scene_follow = Some(SceneFollowPending { at: Beats(at.0 + pending.every), ..pending });
            return Ok(());
        };
        let next = match action.next {
            FollowTarget::Stop => {
                for t in 0..session.tracks.len() {
                    self.schedule_stop(TrackId(t as u32), at, None, None, cause)?;
                }
                self.set_scene(None, at);
                return Ok(());
            }
            FollowTarget::Repeat => Some(pending.scene),
            FollowTarget::Scene(s) => Some(s),
            FollowTarget::Clip(c) => {
                let spec = StartSpec { legato: Some(false), ..StartSpec::press(cause) };
                self.schedule_start(c, at, spec)?;
                return Ok(());
            }
            _ => {
                let domain: Vec<u32> = (0..session.scenes.len() as u32).collect();
                self.pick(&action, &domain, pending.scene.0, (2, pending.scene.0, occurrence)).map(SceneId)
            }
        };
        match next {
            Some(scene) => {
                self.launch_scene(scene, at, false, cause, true)?;
            }
            None => self.scene_follow = Some(SceneFollowPending { at: Beats(at.0 + pending.every), ..pending }),
        }
        Ok(())
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
