//! Readers for Kura's copies of outside test vectors and for Kura's own
//! known-answer vectors. The files live in `vectors/` (outside) and
//! `known-answer/` (Kura's formats); see `vectors/SOURCES.md`.

use std::path::PathBuf;

/// The directory holding this crate's vector files.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub mod known_answer;
pub mod outside;
pub mod rng;
