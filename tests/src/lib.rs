//! Cross-crate integration tests for Loophole live in `tests/tests/`.
//!
//! Thread: Test threads only.
