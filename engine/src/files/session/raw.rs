//! A session file as serde sees it: the raw tables and values with their spans, before any id is
//! resolved or any range checked ([`super::build`] does that). Control thread.

use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use crate::model::{EmptySlot, InstrumentSpec, LaunchMode, TrackKind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) session: Option<Spanned<RawSession>>,
    #[serde(default, rename = "track")]
    pub(super) tracks: Vec<Spanned<RawTrack>>,
    #[serde(default, rename = "clip")]
    pub(super) clips: Vec<Spanned<RawClip>>,
    #[serde(default, rename = "scene")]
    pub(super) scenes: Vec<Spanned<RawScene>>,
    #[serde(default, rename = "playlist")]
    pub(super) playlists: Vec<Spanned<RawPlaylist>>,
    pub(super) arrangement: Option<Spanned<RawArrangement>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSession {
    pub(super) name: Option<String>,
    pub(super) tempo: Option<Spanned<f64>>,
    pub(super) beats_per_bar: Option<Spanned<f64>>,
    pub(super) time_signature: Option<Spanned<String>>,
    pub(super) seed: Option<Spanned<i64>>,
    pub(super) quantise: Option<Spanned<String>>,
    pub(super) crossfade_ms: Option<Spanned<f64>>,
    pub(super) memory_budget_mb: Option<Spanned<f64>>,
    pub(super) stream_head_s: Option<Spanned<f64>>,
    pub(super) stream_lead_ms: Option<Spanned<f64>>,
    pub(super) autoplay: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrack {
    pub(super) id: Spanned<String>,
    pub(super) kind: TrackKind,
    pub(super) gain_db: Option<Spanned<f64>>,
    pub(super) pan: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) mute: bool,
    #[serde(default)]
    pub(super) solo: bool,
    pub(super) instrument: Option<Spanned<InstrumentSpec>>,
    #[serde(default)]
    pub(super) keep_playing: bool,
    pub(super) midi_out: Option<Spanned<String>>,
    pub(super) midi_channel: Option<Spanned<i64>>,
    pub(super) node: Option<String>,
    pub(super) input: Option<Spanned<String>>,
    pub(super) channels: Option<Spanned<Vec<Spanned<i64>>>>,
    pub(super) midi_in: Option<Spanned<String>>,
}

/// `[start_beat, length_beats, key, velocity]`.
pub(super) type RawNote = (f64, f64, i64, i64);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClip {
    pub(super) id: Spanned<String>,
    pub(super) track: Spanned<String>,
    pub(super) notes: Option<Spanned<Vec<Spanned<RawNote>>>>,
    pub(super) midi_file: Option<Spanned<String>>,
    pub(super) midi_track: Option<Spanned<i64>>,
    pub(super) file: Option<Spanned<String>>,
    pub(super) length_beats: Option<Spanned<f64>>,
    #[serde(rename = "loop")]
    pub(super) looping: Option<bool>,
    pub(super) start_offset_beats: Option<Spanned<f64>>,
    pub(super) gain_db: Option<Spanned<f64>>,
    pub(super) quantise: Option<Spanned<String>>,
    pub(super) launch_mode: Option<LaunchMode>,
    pub(super) velocity_amount: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) legato: bool,
    pub(super) follow: Option<Spanned<RawFollow>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScene {
    pub(super) id: Spanned<String>,
    #[serde(default)]
    pub(super) clips: Vec<Spanned<String>>,
    pub(super) quantise: Option<Spanned<String>>,
    pub(super) empty_slots: Option<EmptySlot>,
    pub(super) tempo: Option<Spanned<f64>>,
    pub(super) beats_per_bar: Option<Spanned<f64>>,
    pub(super) time_signature: Option<Spanned<String>>,
    pub(super) follow: Option<Spanned<RawFollow>>,
}

/// `follow = { after_loops = 2, a = { ... }, b = { ... } }` on a clip or a scene.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFollow {
    pub(super) after_loops: Option<Spanned<i64>>,
    pub(super) a: Spanned<RawFollowAction>,
    pub(super) b: Option<Spanned<RawFollowAction>>,
}

/// One alternative of a follow action.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFollowAction {
    pub(super) next: Spanned<RawTarget>,
    pub(super) chance: Option<Spanned<f64>>,
    pub(super) no_repeat: Option<Spanned<bool>>,
    pub(super) exclude: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) only: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Where a follow action goes: a word (`"next"`, `"random"`, ...), `{ clip = "id" }` or
/// `{ scene = "id" }`.
pub(super) enum RawTarget {
    Word(String),
    Clip(String),
    Scene(String),
}

/// What a follow target may be, for serde's messages.
pub(super) const TARGET_EXPECTED: &str =
    "next, previous, first, last, random, repeat, stop, { clip = \"id\" } or { scene = \"id\" }";

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawTarget, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawTarget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(TARGET_EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawTarget, E> {
                Ok(RawTarget::Word(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawTarget, A::Error> {
                use serde::de::Error as _;
                let mut out = None;
                while let Some(key) = map.next_key::<String>()? {
                    let id: String = map.next_value()?;
                    let target = match key.as_str() {
                        "clip" => RawTarget::Clip(id),
                        "scene" => RawTarget::Scene(id),
                        other => return Err(A::Error::unknown_field(other, &["clip", "scene"])),
                    };
                    if out.replace(target).is_some() {
                        return Err(A::Error::custom("give `clip` or `scene`, not both"));
                    }
                }
                out.ok_or_else(|| A::Error::custom(format!("an empty table; expected {TARGET_EXPECTED}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[[playlist]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlaylist {
    pub(super) id: Spanned<String>,
    pub(super) steps: Spanned<Vec<Spanned<RawStep>>>,
    #[serde(rename = "loop")]
    pub(super) looping: Option<bool>,
}

/// A playlist step: `"scene-id"` or `{ scene = "scene-id", repeat = 2 }`.
pub(super) struct RawStep {
    pub(super) scene: String,
    pub(super) repeat: Option<i64>,
}

impl<'de> Deserialize<'de> for RawStep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawStep, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawStep;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scene id or { scene = \"id\", repeat = N }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawStep, E> {
                Ok(RawStep { scene: v.to_string(), repeat: None })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawStep, A::Error> {
                use serde::de::Error as _;
                let (mut scene, mut repeat) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "scene" if scene.is_none() => scene = Some(map.next_value::<String>()?),
                        "repeat" if repeat.is_none() => repeat = Some(map.next_value::<i64>()?),
                        "scene" | "repeat" => {
                            return Err(A::Error::duplicate_field(if key == "scene" { "scene" } else { "repeat" }));
                        }
                        other => return Err(A::Error::unknown_field(other, &["scene", "repeat"])),
                    }
                }
                let scene = scene.ok_or_else(|| A::Error::missing_field("scene"))?;
                Ok(RawStep { scene, repeat })
            }
        }
        d.deserialize_any(V)
    }
}

/// `[arrangement]`: `[[arrangement.clip]]` and `[[arrangement.tempo_change]]` entries.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArrangement {
    #[serde(default, rename = "clip")]
    pub(super) clips: Vec<Spanned<RawPlacement>>,
    #[serde(default, rename = "tempo_change")]
    pub(super) tempo_changes: Vec<Spanned<RawTempoChange>>,
}

/// `[[arrangement.clip]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlacement {
    pub(super) clip: Spanned<String>,
    pub(super) track: Option<Spanned<String>>,
    pub(super) start: Spanned<f64>,
    pub(super) length: Option<Spanned<f64>>,
    pub(super) offset: Option<Spanned<f64>>,
}

/// `[[arrangement.tempo_change]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTempoChange {
    pub(super) beat: Spanned<f64>,
    pub(super) tempo: Option<Spanned<f64>>,
    pub(super) beats_per_bar: Option<Spanned<f64>>,
    pub(super) time_signature: Option<Spanned<String>>,
}
