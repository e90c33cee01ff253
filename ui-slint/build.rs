//! Compiles the Slint views (`ui/*.slint`) into Rust at build time. Build script thread.
fn main() {
    slint_build::compile("ui/launcher.slint").expect("ui/launcher.slint compiles");
}
