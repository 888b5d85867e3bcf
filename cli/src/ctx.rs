//! What every command shares: how results are printed (text or one JSON
//! line), the operator's confirmation, and the clock.

/// The context a command runs in.
#[derive(Debug)]
pub struct Ctx {
    /// `--json`: one machine-readable line instead of text.
    pub json: bool,
}

impl Ctx {
    /// Prints a command's result: `text`, or `{"type": kind, "data": data}`
    /// as one JSON line with `--json`.
    pub fn done(&self, kind: &str, data: serde_json::Value, text: &str) -> anyhow::Result<()> {
        if self.json {
            print_line(&json_inert(
                &serde_json::json!({"type": kind, "data": data}).to_string(),
            ))
        } else {
            // Outside text is validated or escaped where each message is
            // built; this is the backstop for anything that slipped through.
            print_line(&wallet_core::display::terminal_safe(text))
        }
    }
}

/// Set once by `main` with `--json`: warnings printed before a command
/// knows its [`Ctx`] (e.g. while reading a secret) follow it too.
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes [`warn`] print JSON lines.
pub fn set_json(json: bool) {
    JSON.store(json, std::sync::atomic::Ordering::Relaxed);
}

/// A warning on stderr: `kura: warning: …`, or with `--json` one line
/// `{"warning":{"message":…}}`, so stderr stays JSON lines. Never panics.
pub fn warn(message: &str) {
    use std::io::Write;
    let line = if JSON.load(std::sync::atomic::Ordering::Relaxed) {
        json_inert(&serde_json::json!({"warning": {"message": message}}).to_string())
    } else {
        format!(
            "kura: warning: {}",
            wallet_core::display::terminal_safe(message)
        )
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}

impl Ctx {
    /// Explanatory text for a person, on stderr (never with `--json`),
    /// so that stdout carries only the value a script captures.
    pub fn note(&self, text: &str) {
        use std::io::Write;
        if !self.json {
            let _ = writeln!(
                std::io::stderr(),
                "{}",
                wallet_core::display::terminal_safe(text)
            );
        }
    }
}

/// Asks the operator on the terminal: shows `shown`, then `question [y/N]`.
/// Without a terminal it refuses to go on (pass `--yes` for automation);
/// any answer but yes is a refusal ("not {done} by the operator").
pub fn confirm(shown: &str, question: &str, action: &str, done: &str) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "refusing to {action} without confirmation: run on a terminal, or pass --yes for automation"
        );
    }
    eprintln!("{shown}");
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(crate::error::refused(format!("not {done} by the operator")))
    }
}

/// Writes a line to stdout; a reader that went away (`kura … | head -1`)
/// ends the output quietly instead of a panic.
pub fn print_line(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Writes bytes to stdout as they are (a PSBT, a completion script, a man
/// page); like [`print_line`], a reader that went away ends it quietly.
pub fn print_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Serialized JSON with every character [`wallet_core::display::is_unsafe_char`]
/// flags written as a `\uXXXX` escape: the same JSON value, nothing a
/// terminal acts on (serde_json escapes only U+0000–U+001F itself). Such
/// characters can only occur inside strings, where the escape is valid.
pub fn json_inert(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if wallet_core::display::is_unsafe_char(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04x}", u));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Unix seconds. In debug builds only, `KURA_NOW` overrides the clock (the
/// CLI tests of expiry use it); release builds ignore it, so nobody who
/// controls a signer's environment can move its clock.
pub fn now() -> u64 {
    if cfg!(debug_assertions) {
        if let Some(t) = std::env::var("KURA_NOW").ok().and_then(|v| v.parse().ok()) {
            return t;
        }
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
