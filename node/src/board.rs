//! The snapshot board: where the control thread publishes the [`Snapshot`] every display reads
//! (the terminal status line, `status`, the UI, the conductor client). Publishing swaps an
//! `Arc` (arc-swap); reading takes the current one without a lock and without ever waiting for
//! the writer, so a slow display never holds up the control thread, nor the other way round.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use loophole_engine::control::Snapshot;

/// The board. Share it as `Arc<Board>`; any thread.
#[derive(Debug, Default)]
pub struct Board {
    current: ArcSwapOption<Snapshot>,
}

impl Board {
    /// An empty board (nothing published yet).
    pub fn new() -> Arc<Board> {
        Arc::new(Board::default())
    }

    /// Publishes `snapshot`. Control thread.
    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(Some(Arc::new(snapshot)));
    }

    /// The snapshot published last, if any. Any thread; lock-free.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }
}
