//! The launcher window of `play` and `demo` (`--ui`, `--no-ui`, or on its own when a display
//! exists). winit wants the main thread: with a window, the performance ([`crate::play::run`],
//! the control thread) runs on a spawned thread and the main thread runs Slint's event loop
//! ([`loophole_ui::live`]). The window reads the snapshot board (lock-free) and sends every
//! click and key to the inbox as [`Source::Ui`], the same path as the terminal's commands;
//! closing it ends the performance ([`Request::Quit`]), and the end of the performance closes it.
//!
//! Thread: main thread (the event loop); it spawns the performance's thread.

use std::sync::mpsc;

use crate::inbox::{PressAt, Request, Source};
use crate::play::{PlayOptions, PlaySummary};
pub use crate::ui_link::{UiLink, UiMode, WindowOptions};
use crate::{BadInput, warn_line};

/// Whether the environment names a display.
fn display_named() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

/// Plays `opts` with the window or without it, as `opts.window.mode` and the display say.
/// Thread: main thread.
pub fn run(mut opts: PlayOptions) -> anyhow::Result<PlaySummary> {
    let mode = opts.window.mode;
    if mode == UiMode::Off {
        return crate::play::run(opts);
    }
    let started = if display_named() {
        loophole_ui::live::start_backend().map_err(|e| e.to_string())
    } else {
        Err("neither DISPLAY nor WAYLAND_DISPLAY is set".to_string())
    };
    if let Err(why) = started {
        if mode == UiMode::On {
            return Err(BadInput(format!("--ui: cannot open the window: {why}")).into());
        }
        warn_line(format_args!(
            "loophole: no display ({why}); playing on in the terminal (--no-ui: no window and no word of it)"
        ));
        return crate::play::run(opts);
    }
    let (tx, rx) = mpsc::channel();
    opts.window.link = Some(tx);
    let stall = opts.window.stall;
    let performance = std::thread::Builder::new().name("loophole-control".into()).spawn(move || {
        let result = crate::play::run(opts);
        loophole_ui::live::quit();
        result
    })?;
    // The performance hands its board and inbox over once it has set up (or ends before that).
    if let Ok(link) = rx.recv() {
        let board = link.board.clone();
        let (send, quit) = (link.inbox.clone(), link.inbox.clone());
        let opened = loophole_ui::live::run(
            link.session.clone(),
            move || board.latest(),
            move |command| {
                send.send(Request::Command { source: Source::Ui, at: PressAt::Now, command });
            },
            move || {
                quit.send(Request::Quit);
            },
            loophole_ui::live::LiveOptions { stall },
        );
        if let Err(e) = opened {
            warn_line(format_args!("loophole: {e}; playing on in the terminal"));
        }
    }
    performance.join().map_err(|_| anyhow::anyhow!("the performance's thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_is_named_by_either_variable() {
        // The only test here touching these variables; the others read them, never set them.
        let saved: Vec<_> = ["DISPLAY", "WAYLAND_DISPLAY"].iter().map(|v| (*v, std::env::var_os(v))).collect();
        // SAFETY: no other test of this binary reads or writes these variables concurrently.
        unsafe {
            std::env::remove_var("DISPLAY");
            std::env::remove_var("WAYLAND_DISPLAY");
        }
        assert!(!display_named());
        unsafe { std::env::set_var("DISPLAY", "") };
        assert!(!display_named(), "an empty DISPLAY names no display");
        unsafe { std::env::set_var("WAYLAND_DISPLAY", "wayland-0") };
        assert!(display_named());
        for (v, val) in saved {
            match val {
                Some(x) => unsafe { std::env::set_var(v, x) },
                None => unsafe { std::env::remove_var(v) },
            }
        }
    }
}
