//! Rewrites Kura's known-answer vectors under `test-vectors/known-answer/`.
//!
//! Run it only for a deliberate format change, and review the diff.
#![allow(clippy::print_stdout, clippy::print_stderr)] // prints by design

use std::process::ExitCode;

fn main() -> ExitCode {
    let files = match test_vectors::known_answer::generate() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("regenerate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = test_vectors::known_answer::dir();
    for f in &files {
        let path = dir.join(&f.path);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, &f.bytes));
        if let Err(e) = written {
            eprintln!("regenerate: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
