//! The media layer: audio and MIDI files decoded, audio resampled to the engine's rate, long
//! clips converted into stream cache files, and the reader thread that streams them to Signal.
//!
//! Everything here does file I/O or heavy conversion on the control thread, the loader's
//! threads or the reader thread, never on the audio thread. The model, Pulse and Signal never
//! import this layer: it attaches what it made to the model through plain descriptions
//! ([`crate::model::DeferredAudio`], [`crate::model::StreamedClip`]) and feeds Signal through the
//! lanes of [`crate::queue::lanes`]. It sits behind the `media` cargo feature (on by default),
//! so a crate that needs only the model, time and Pulse (the conductor) builds without `hound`,
//! `rubato` or `midly`.
//!
//! - [`wav`]: WAV files read a chunk at a time.
//! - [`resample`]: audio resampled to the engine's rate, a chunk at a time.
//! - [`smf`]: Standard MIDI Files decoded into clip events.
//! - [`stream`]: the memory budget: which clips stream, and their cache files.
//! - [`reader`]: the disk reader that fills Signal's lanes.

pub mod reader;
pub mod resample;
pub mod smf;
pub mod stream;
pub mod wav;
