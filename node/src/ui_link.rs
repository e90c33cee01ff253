//! What the launcher window and a performance exchange: whether the window opens ([`UiMode`],
//! [`WindowOptions`], part of the play options) and what a running performance hands the window
//! ([`UiLink`]: the snapshot board, an inbox sender, the session). Plain data, kept apart from
//! both `crate::play` and `crate::window` so that neither imports the other's internals. Any
//! thread.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use loophole_engine::model::Session;

use crate::board::Board;
use crate::inbox::InboxSender;

/// Whether `play` and `demo` open the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UiMode {
    /// When a display exists (`DISPLAY` or `WAYLAND_DISPLAY` set and the backend starts).
    #[default]
    Auto,
    /// Always (`--ui`): no display is an error.
    On,
    /// Never (`--no-ui`).
    Off,
}

/// What the window needs of a running performance, handed over once its control state exists.
#[derive(Debug, Clone)]
pub struct UiLink {
    /// Where the control thread publishes the snapshot.
    pub board: Arc<Board>,
    /// The inbox, for the window's commands.
    pub inbox: InboxSender,
    /// The session played.
    pub session: Arc<Session>,
}

/// The window's options beyond [`UiMode`].
#[derive(Debug, Clone, Default)]
pub struct WindowOptions {
    /// Open it or not.
    pub mode: UiMode,
    /// Test hook (`--ui-stall-ms`): the UI thread stalls this long once.
    pub stall: Option<Duration>,
    /// Where [`crate::play::run`] hands the window its [`UiLink`].
    pub link: Option<mpsc::Sender<UiLink>>,
}
