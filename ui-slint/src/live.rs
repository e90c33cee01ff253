//! The live launcher window: Slint's winit backend (X11) with the software renderer. It reads
//! the host's latest [`Snapshot`] on a Slint timer at display rate (a lock-free read: it never
//! waits for, nor holds up, the thread that publishes it) and hands every click and key to the
//! host as a [`ControlCommand`] (the node's inbox). Thread: the main thread, which winit wants:
//! [`run`] is Slint's event loop; [`quit`] ends it from any thread.

use std::sync::Arc;
use std::time::Duration;

use loophole_engine::control::{ControlCommand, Snapshot};
use loophole_engine::model::Session;
use slint::{ComponentHandle as _, LogicalSize, Timer, TimerMode};

use crate::LauncherWindow;
use crate::view::{ViewState, connect, show_snapshot};

/// How often the window looks for a new snapshot (50 Hz; the node publishes every 33 ms).
pub const REFRESH: Duration = Duration::from_millis(20);

/// What can go wrong opening the window.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// No display to open a window on (no X server, or it refused the connection).
    #[error("no display: {0}")]
    NoDisplay(String),
    /// The window could not be made or shown.
    #[error("the window could not be opened: {0}")]
    Window(String),
}

/// Options of the live window.
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// A test hook: the UI thread sleeps this long once, in its 25th refresh, as a UI thread
    /// stalled by a slow frame would (the performance must not notice).
    pub stall: Option<Duration>,
}

/// Makes Slint's winit backend with the software renderer the process's platform. Fails with
/// [`LiveError::NoDisplay`] when it cannot reach a display. Main thread; once per process (the
/// headless renderer sets its own platform instead).
pub fn start_backend() -> Result<(), LiveError> {
    slint::BackendSelector::new()
        .backend_name("winit".into())
        .renderer_name("software".into())
        .select()
        .map_err(|e| LiveError::NoDisplay(e.to_string()))
}

/// Opens the launcher for `session` and runs Slint's event loop until the window is closed or
/// [`quit`] is called. `latest` reads the snapshot to show (lock-free, called at [`REFRESH`]);
/// `send` takes every command (must not block); `closed` is called once when the performer
/// closes the window. Main thread, after [`start_backend`].
pub fn run(
    session: Arc<Session>,
    latest: impl Fn() -> Option<Arc<Snapshot>> + 'static,
    send: impl Fn(ControlCommand) + Clone + 'static,
    closed: impl Fn() + 'static,
    options: LiveOptions,
) -> Result<(), LiveError> {
    let ui = LauncherWindow::new().map_err(|e| LiveError::Window(e.to_string()))?;
    ui.window().set_size(LogicalSize::new(1366.0, 768.0));
    let state = ViewState::new(session);
    connect(&ui, state.clone(), send);
    ui.window().on_close_requested(move || {
        closed();
        slint::CloseRequestResponse::HideWindow
    });
    let timer = Timer::default();
    let weak = ui.as_weak();
    let mut seen = None;
    let mut ticks = 0u64;
    timer.start(TimerMode::Repeated, REFRESH, move || {
        ticks += 1;
        if let (Some(d), 25) = (options.stall, ticks) {
            eprintln!("loophole: the window's thread stalls for {} ms (test hook)", d.as_millis());
            std::thread::sleep(d);
        }
        let Some(snapshot) = latest() else { return };
        if seen == Some(snapshot.seq) {
            return;
        }
        seen = Some(snapshot.seq);
        if let Some(ui) = weak.upgrade() {
            show_snapshot(&ui, &state, snapshot);
        }
    });
    ui.show().map_err(|e| LiveError::Window(e.to_string()))?;
    slint::run_event_loop().map_err(|e| LiveError::Window(e.to_string()))?;
    drop(timer);
    Ok(())
}

/// Ends the window's event loop (the performance is over). Any thread; does nothing when no
/// event loop runs.
pub fn quit() {
    let _ = slint::invoke_from_event_loop(|| {
        let _ = slint::quit_event_loop();
    });
}
