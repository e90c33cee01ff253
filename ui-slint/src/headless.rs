//! Rendering the launcher without a display: Slint's software renderer draws a
//! `MinimalSoftwareWindow` into an RGB buffer, written out as PNG. `ui-snapshot`, the tests and
//! bug reports use it. The calling thread becomes a Slint UI thread (Slint's platform is set
//! once per process, to this headless one); allocates.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use loophole_engine::control::{ControlCommand, Snapshot};
use loophole_engine::model::Session;
use slint::platform::software_renderer::{MinimalSoftwareWindow, RepaintBufferType};
use slint::platform::{Platform, PointerEventButton, WindowAdapter, WindowEvent};
use slint::{ComponentHandle as _, LogicalPosition, PhysicalSize, PlatformError, Rgb8Pixel};

use crate::LauncherWindow;
use crate::keys::{Cursor, Mods};
use crate::view::ViewState;

/// What can go wrong rendering headless.
#[derive(Debug, thiserror::Error)]
pub enum HeadlessError {
    /// Slint could not set up the headless platform or the window.
    #[error("the UI could not be set up: {0}")]
    Platform(String),
    /// A size of zero, or too big to hold in memory.
    #[error("the snapshot size {0}x{1} is not usable (1x1 to 8192x8192)")]
    Size(u32, u32),
    /// The PNG could not be written.
    #[error("cannot write {path}: {why}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
}

/// An RGB image, row by row, 3 bytes a pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The pixels: `(y * width + x) * 3` is the red byte of (x, y).
    pub rgb: Vec<u8>,
}

impl Image {
    /// The colour at (`x`, `y`) as 0xRRGGBB.
    pub fn pixel(&self, x: u32, y: u32) -> u32 {
        let i = ((y * self.width + x) * 3) as usize;
        (u32::from(self.rgb[i]) << 16) | (u32::from(self.rgb[i + 1]) << 8) | u32::from(self.rgb[i + 2])
    }

    /// Writes the image as a PNG file.
    pub fn write_png(&self, path: &Path) -> Result<(), HeadlessError> {
        let err = |why: String| HeadlessError::Write { path: path.display().to_string(), why };
        let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| err(e.to_string()))?;
        writer.write_image_data(&self.rgb).map_err(|e| err(e.to_string()))?;
        writer.finish().map_err(|e| err(e.to_string()))
    }
}

thread_local! {
    /// The window the headless platform made last, for the code that asked for it.
    static MADE: RefCell<Option<Rc<MinimalSoftwareWindow>>> = const { RefCell::new(None) };
}

struct Headless;

impl Platform for Headless {
    fn create_window_adapter(&self) -> Result<Rc<dyn WindowAdapter>, PlatformError> {
        let window = MinimalSoftwareWindow::new(RepaintBufferType::NewBuffer);
        MADE.with(|m| *m.borrow_mut() = Some(window.clone()));
        Ok(window)
    }
}

/// Makes the headless platform Slint's, once (a second call, on any thread, finds it set).
fn platform() -> Result<(), HeadlessError> {
    match slint::platform::set_platform(Box::new(Headless)) {
        Ok(()) | Err(slint::platform::SetPlatformError::AlreadySet) => Ok(()),
        Err(e) => Err(HeadlessError::Platform(e.to_string())),
    }
}

/// A launcher window drawn headless: show a snapshot, click, render.
pub struct HeadlessLauncher {
    ui: LauncherWindow,
    window: Rc<MinimalSoftwareWindow>,
    state: Rc<ViewState>,
    width: u32,
    height: u32,
    sent: Rc<RefCell<Vec<ControlCommand>>>,
}

impl HeadlessLauncher {
    /// A window of `width` x `height` pixels for `session`. The commands its clicks send are kept
    /// (see [`HeadlessLauncher::take_commands`]).
    pub fn new(session: Arc<Session>, width: u32, height: u32) -> Result<HeadlessLauncher, HeadlessError> {
        HeadlessLauncher::with_sender(session, width, height, |_| {})
    }

    /// Like [`HeadlessLauncher::new`], and every command is also handed to `send` (a node's
    /// inbox, in the tests of the real command path).
    pub fn with_sender(
        session: Arc<Session>,
        width: u32,
        height: u32,
        send: impl Fn(ControlCommand) + 'static,
    ) -> Result<HeadlessLauncher, HeadlessError> {
        if !(1..=8192).contains(&width) || !(1..=8192).contains(&height) {
            return Err(HeadlessError::Size(width, height));
        }
        platform()?;
        let ui = LauncherWindow::new().map_err(|e| HeadlessError::Platform(e.to_string()))?;
        let window = MADE
            .with(|m| m.borrow_mut().take())
            .ok_or_else(|| HeadlessError::Platform("Slint did not ask for a window".into()))?;
        window.set_size(PhysicalSize::new(width, height));
        let sent = Rc::new(RefCell::new(Vec::new()));
        let keep = sent.clone();
        let state = ViewState::new(session);
        let send = Rc::new(send);
        crate::view::connect(&ui, state.clone(), move |c| {
            keep.borrow_mut().push(c.clone());
            send(c);
        });
        ui.show().map_err(|e| HeadlessError::Platform(e.to_string()))?;
        Ok(HeadlessLauncher { ui, window, state, width, height, sent })
    }

    /// Shows `snapshot`.
    pub fn show(&self, snapshot: &Snapshot) {
        crate::view::show_snapshot(&self.ui, &self.state, Arc::new(snapshot.clone()));
    }

    /// Shows the latest of `snapshot` and redraws (a frame of the live window, headless).
    pub fn frame(&self, snapshot: Arc<Snapshot>) -> Image {
        crate::view::show_snapshot(&self.ui, &self.state, snapshot);
        self.render()
    }

    /// The keyboard's slot cursor.
    pub fn cursor(&self) -> Cursor {
        self.state.cursor()
    }

    /// The window's Slint component (for geometry and properties).
    pub fn window(&self) -> &LauncherWindow {
        &self.ui
    }

    /// Draws the window as it is now.
    pub fn render(&self) -> Image {
        slint::platform::update_timers_and_animations();
        let (w, h) = (self.width as usize, self.height as usize);
        let mut pixels = vec![Rgb8Pixel { r: 0, g: 0, b: 0 }; w * h];
        self.window.request_redraw();
        self.window.draw_if_needed(|renderer| {
            renderer.render(&mut pixels, w);
        });
        let rgb = pixels.iter().flat_map(|p| [p.r, p.g, p.b]).collect();
        Image { width: self.width, height: self.height, rgb }
    }

    /// A left click at (`x`, `y`), in logical pixels (the headless window's scale is 1).
    pub fn click(&self, x: f32, y: f32) {
        self.click_with(x, y, Mods::default());
    }

    /// A left click at (`x`, `y`) with modifier keys held (pressed before, released after, as a
    /// keyboard reports them).
    pub fn click_with(&self, x: f32, y: f32, mods: Mods) {
        let held = self.modifiers(mods);
        let w = self.ui.window();
        for k in &held {
            w.dispatch_event(WindowEvent::KeyPressed { text: (*k).into() });
        }
        let position = LogicalPosition::new(x, y);
        w.dispatch_event(WindowEvent::PointerMoved { position });
        w.dispatch_event(WindowEvent::PointerPressed { position, button: PointerEventButton::Left });
        w.dispatch_event(WindowEvent::PointerReleased { position, button: PointerEventButton::Left });
        for k in held.iter().rev() {
            w.dispatch_event(WindowEvent::KeyReleased { text: (*k).into() });
        }
    }

    /// A key typed (pressed and released) with modifiers held: `text` is the key's text (`"1"`,
    /// `"+"`) or a [`slint::platform::Key`] as a string for the special keys.
    pub fn key_with(&self, text: &str, mods: Mods) {
        let held = self.modifiers(mods);
        let w = self.ui.window();
        for k in &held {
            w.dispatch_event(WindowEvent::KeyPressed { text: (*k).into() });
        }
        w.dispatch_event(WindowEvent::KeyPressed { text: text.into() });
        w.dispatch_event(WindowEvent::KeyReleased { text: text.into() });
        for k in held.iter().rev() {
            w.dispatch_event(WindowEvent::KeyReleased { text: (*k).into() });
        }
    }

    /// A special key typed with no modifier.
    pub fn key(&self, key: slint::platform::Key) {
        self.key_with(&slint::SharedString::from(key), Mods::default());
    }

    fn modifiers(&self, mods: Mods) -> Vec<slint::platform::Key> {
        use slint::platform::Key;
        [(mods.shift, Key::Shift), (mods.alt, Key::Alt), (mods.ctrl, Key::Control)]
            .into_iter()
            .filter_map(|(on, k)| on.then_some(k))
            .collect()
    }

    /// The centre of slot (`col`, `row`) in logical pixels, from the window's own geometry and
    /// scroll (it may lie outside the grid's area when scrolled out of view).
    pub fn slot_centre(&self, col: usize, row: usize) -> (f32, f32) {
        let ui = &self.ui;
        let (grid, scroll) = crate::view::grid_of(ui);
        let (x, y) = grid.centre(scroll, col, row);
        (ui.get_scene_width() + x, ui.get_bar_height() + ui.get_header_height() + y)
    }

    /// The centre of scene header `row` in logical pixels.
    pub fn scene_centre(&self, row: usize) -> (f32, f32) {
        let ui = &self.ui;
        let (grid, scroll) = crate::view::grid_of(ui);
        let (_, y) = grid.centre(scroll, 0, row);
        (ui.get_scene_width() / 2.0, ui.get_bar_height() + ui.get_header_height() + y)
    }

    /// The centre of track `col`'s stop button in logical pixels.
    pub fn track_stop_centre(&self, col: usize) -> (f32, f32) {
        let ui = &self.ui;
        let (grid, scroll) = crate::view::grid_of(ui);
        let right = ui.get_scene_width() + (col as f32 + 1.0) * grid.cell_w - scroll.x - 2.0;
        (right - 30.0 + 13.0, ui.get_bar_height() + 3.0 + 9.0)
    }

    /// The centre of the stop-all button in logical pixels.
    pub fn stop_all_centre(&self) -> (f32, f32) {
        (self.width as f32 - 92.0 + 42.0, 6.0 + 14.0)
    }

    /// The commands sent by clicks so far, oldest first.
    pub fn take_commands(&self) -> Vec<ControlCommand> {
        std::mem::take(&mut self.sent.borrow_mut())
    }
}

/// Renders `snapshot` of `session` into a `width` x `height` image: what `ui-snapshot` writes.
pub fn snapshot_image(
    session: Arc<Session>,
    snapshot: &Snapshot,
    width: u32,
    height: u32,
) -> Result<Image, HeadlessError> {
    let launcher = HeadlessLauncher::new(session, width, height)?;
    launcher.show(snapshot);
    Ok(launcher.render())
}
