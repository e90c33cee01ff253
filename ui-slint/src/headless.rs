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
use crate::model::LauncherModel;

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
    session: Arc<Session>,
    width: u32,
    height: u32,
    sent: Rc<RefCell<Vec<ControlCommand>>>,
}

impl HeadlessLauncher {
    /// A window of `width` x `height` pixels for `session`. The commands its clicks send are kept
    /// (see [`HeadlessLauncher::take_commands`]).
    pub fn new(session: Arc<Session>, width: u32, height: u32) -> Result<HeadlessLauncher, HeadlessError> {
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
        crate::view::connect(&ui, session.clone(), move |c| keep.borrow_mut().push(c));
        ui.show().map_err(|e| HeadlessError::Platform(e.to_string()))?;
        Ok(HeadlessLauncher { ui, window, session, width, height, sent })
    }

    /// Shows `snapshot`.
    pub fn show(&self, snapshot: &Snapshot) {
        crate::view::show(&self.ui, &LauncherModel::new(&self.session, snapshot));
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
        let position = LogicalPosition::new(x, y);
        let w = self.ui.window();
        w.dispatch_event(WindowEvent::PointerMoved { position });
        w.dispatch_event(WindowEvent::PointerPressed { position, button: PointerEventButton::Left });
        w.dispatch_event(WindowEvent::PointerReleased { position, button: PointerEventButton::Left });
    }

    /// The centre of slot (`col`, `row`) in logical pixels, from the window's own geometry.
    pub fn slot_centre(&self, col: usize, row: usize) -> (f32, f32) {
        let ui = &self.ui;
        let x = ui.get_scene_width() + (col as f32 + 0.5) * ui.get_cell_width();
        let y = ui.get_bar_height() + ui.get_header_height() + (row as f32 + 0.5) * ui.get_cell_height();
        (x, y)
    }

    /// The centre of scene header `row` in logical pixels.
    pub fn scene_centre(&self, row: usize) -> (f32, f32) {
        let ui = &self.ui;
        let y = ui.get_bar_height() + ui.get_header_height() + (row as f32 + 0.5) * ui.get_cell_height();
        (ui.get_scene_width() / 2.0, y)
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
