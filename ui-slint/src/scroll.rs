//! The grid's scrolling, as plain Rust: which part of a big set (16 tracks × 32 scenes) the
//! window shows, and how far it scrolls to keep the slot cursor in view. The Slint view is a
//! `Flickable` whose offsets are these. UI thread.

/// The grid's geometry: cells and the visible area, in logical pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Columns (tracks).
    pub cols: usize,
    /// Rows (scenes).
    pub rows: usize,
    /// One cell's width.
    pub cell_w: f32,
    /// One cell's height.
    pub cell_h: f32,
    /// The visible area's width.
    pub view_w: f32,
    /// The visible area's height.
    pub view_h: f32,
}

/// How far the grid is scrolled: the content's offset from its top-left corner (both >= 0).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scroll {
    /// Pixels scrolled to the right.
    pub x: f32,
    /// Pixels scrolled down.
    pub y: f32,
}

impl Grid {
    /// The largest offsets: the content's size less the visible area (0 when it all fits).
    pub fn max_scroll(&self) -> Scroll {
        Scroll {
            x: (self.cols as f32 * self.cell_w - self.view_w).max(0.0),
            y: (self.rows as f32 * self.cell_h - self.view_h).max(0.0),
        }
    }

    /// `s` held within 0..=[`Grid::max_scroll`].
    pub fn clamp(&self, s: Scroll) -> Scroll {
        let m = self.max_scroll();
        Scroll { x: s.x.clamp(0.0, m.x), y: s.y.clamp(0.0, m.y) }
    }

    /// The columns and rows at least partly visible at `s`: (first..end, first..end).
    pub fn visible(&self, s: Scroll) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let range = |off: f32, cell: f32, view: f32, n: usize| {
            if cell <= 0.0 || n == 0 {
                return 0..0;
            }
            let first = ((off / cell).floor().max(0.0) as usize).min(n);
            let end = (((off + view) / cell).ceil().max(0.0) as usize).min(n);
            first..end
        };
        (range(s.x, self.cell_w, self.view_w, self.cols), range(s.y, self.cell_h, self.view_h, self.rows))
    }

    /// The least scroll from `s` that shows cell (`col`, `row`) whole (as far as it fits).
    pub fn reveal(&self, s: Scroll, col: usize, row: usize) -> Scroll {
        let axis = |off: f32, cell: f32, view: f32, i: usize| {
            let (start, end) = (i as f32 * cell, (i + 1) as f32 * cell);
            if start < off {
                start
            } else if end > off + view {
                (end - view).min(start)
            } else {
                off
            }
        };
        self.clamp(Scroll { x: axis(s.x, self.cell_w, self.view_w, col), y: axis(s.y, self.cell_h, self.view_h, row) })
    }

    /// The centre of cell (`col`, `row`) relative to the visible area's top-left at `s`.
    pub fn centre(&self, s: Scroll, col: usize, row: usize) -> (f32, f32) {
        ((col as f32 + 0.5) * self.cell_w - s.x, (row as f32 + 0.5) * self.cell_h - s.y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 16 × 32 at the window's cell size in the 1366 × 768 layout's grid area.
    fn big() -> Grid {
        Grid { cols: 16, rows: 32, cell_w: 96.0, cell_h: 36.0, view_w: 986.0, view_h: 600.0 }
    }

    #[test]
    fn a_16_by_32_set_scrolls_both_ways_and_a_small_one_does_not() {
        let g = big();
        assert_eq!(g.max_scroll(), Scroll { x: 16.0 * 96.0 - 986.0, y: 32.0 * 36.0 - 600.0 });
        let (c, r) = g.visible(Scroll::default());
        assert_eq!((c, r), (0..11, 0..17));
        let (c, r) = g.visible(g.max_scroll());
        assert_eq!((c.end, r.end), (16, 32), "the last track and scene come into view");
        let small = Grid { cols: 5, rows: 5, ..g };
        assert_eq!(small.max_scroll(), Scroll::default());
        assert_eq!(small.clamp(Scroll { x: 50.0, y: -3.0 }), Scroll::default());
    }

    #[test]
    fn the_cursor_is_revealed_with_the_least_scroll() {
        let g = big();
        let s = Scroll::default();
        assert_eq!(g.reveal(s, 3, 4), s, "already visible: no scroll");
        let down = g.reveal(s, 0, 31);
        assert_eq!(down.y, 32.0 * 36.0 - 600.0, "the last row's bottom edge meets the view's");
        let (_, rows) = g.visible(down);
        assert!(rows.contains(&31) && !rows.contains(&0));
        let back = g.reveal(down, 0, 2);
        assert_eq!(back.y, 2.0 * 36.0, "scrolling up puts row 2 at the top");
        let right = g.reveal(s, 15, 0);
        assert_eq!(right.x, 16.0 * 96.0 - 986.0);
        let (x, y) = g.centre(right, 15, 0);
        assert!(x > 0.0 && x < g.view_w && y > 0.0 && y < g.view_h, "centre ({x}, {y}) outside the view");
    }
}
