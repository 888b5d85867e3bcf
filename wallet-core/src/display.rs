//! Display safety: text that came from outside (a requester, a coordinator,
//! a file) never reaches a terminal able to act on it.
//!
//! Two tools, used everywhere Kura shows such text:
//!
//! - [`inert`] renders any string harmless to print: every control character
//!   (C0, DEL, C1 — so ANSI `ESC [` sequences cannot move the cursor or
//!   rewrite a line), every bidirectional override or isolate (U+202A–U+202E,
//!   U+2066–U+2069, U+200E/U+200F, U+061C) and every invisible or zero-width
//!   character (U+200B–U+200D, U+2060–U+2064, U+FEFF, U+00AD, U+180E, …) is
//!   replaced by a visible `\u{…}` escape, and a backslash by `\\`, so the
//!   escaped form cannot be forged by the input itself. Printable text,
//!   non-Latin scripts included, is left as it is.
//! - [`check_request_id`] validates a request id where it is parsed: 1 to
//!   [`MAX_REQUEST_ID_LEN`] characters of `A–Z a–z 0–9 . _ : / -` — an id is
//!   a name, not text, so anything else is refused rather than escaped.
//!
//! [`check_label`] and [`check_memo`] bound labels and memos the same way
//! (labels: no character [`inert`] would escape; memos: at most
//! [`MAX_MEMO_CHARS`] characters, shown through [`inert`]).

use std::fmt::Write as _;

/// Longest request id, in characters (ASCII only, so also bytes).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Longest memo, in characters.
pub const MAX_MEMO_CHARS: usize = 1024;

/// Longest policy label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// Why a piece of outside text was refused where it was parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// A request id that is empty, too long or has a character outside the
    /// safe set.
    #[error("request id {shown} is not acceptable: use 1 to {MAX_REQUEST_ID_LEN} characters of A-Z a-z 0-9 . _ : / -")]
    RequestId {
        /// The id, rendered inert.
        shown: String,
    },
    /// A memo over [`MAX_MEMO_CHARS`].
    #[error("memo has {chars} characters; at most {MAX_MEMO_CHARS} are accepted")]
    MemoTooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// A label with characters that would not display as themselves, or too
    /// long.
    #[error("label {shown} is not acceptable: at most {MAX_LABEL_CHARS} characters, none of them control, bidirectional or invisible")]
    Label {
        /// The label, rendered inert.
        shown: String,
    },
}

/// Whether `c` must not reach a terminal as itself: control characters
/// (C0, DEL, C1), bidirectional formatting, zero-width and other invisible
/// format characters, line and paragraph separators.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'                 // soft hyphen
            | '\u{034F}'               // combining grapheme joiner
            | '\u{061C}'               // arabic letter mark
            | '\u{115F}' | '\u{1160}'  // hangul fillers
            | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'  // mongolian selectors, vowel separator
            | '\u{200B}'..='\u{200F}'  // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}'  // line/paragraph separators, bidi embeddings and overrides
            | '\u{205F}'..='\u{206F}'  // word joiner, invisible operators, bidi isolates, deprecated formats
            | '\u{3164}'               // hangul filler
            | '\u{FE00}'..='\u{FE0F}'  // variation selectors
            | '\u{FEFF}'               // byte order mark / zero-width no-break space
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'  // interlinear annotation
            | '\u{E0000}'..='\u{E007F}' // tag characters
            | '\u{E0100}'..='\u{E01EF}' // variation selectors supplement
        )
}

/// Renders `text` safe to print: see the module docs. The result contains no
/// character for which [`is_unsafe_char`] holds.
pub fn inert(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_unsafe_char(c) {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// [`inert`], except that line feeds stay line feeds (for multi-line
/// messages quoting a file, such as a TOML parser's).
pub fn inert_lines(text: &str) -> String {
    text.split('\n').map(inert).collect::<Vec<_>>().join("\n")
}

/// The last line of defence before a terminal: every unsafe character but
/// the line feed becomes a `\u{…}` escape; backslashes are left alone, so
/// text already rendered with [`inert`] passes unchanged. For whole
/// messages (a report, an error chain); fields go through [`inert`].
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\n' && is_unsafe_char(c) {
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// [`inert`], cut to at most `max_chars` characters of the input (with `…`
/// and the full length when cut).
pub fn inert_bounded(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => format!(
            "{}… ({} characters in all)",
            inert(text.get(..i).unwrap_or_default()),
            text.chars().count()
        ),
        None => inert(text),
    }
}

/// `secs` (Unix time) as `YYYY-MM-DD HH:MM:SS UTC`, computed here (no
/// time-zone database, no locale).
pub fn utc_time(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (non-negative).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Whether `c` may appear in a request id.
fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-')
}

/// Checks a request id: 1 to [`MAX_REQUEST_ID_LEN`] characters of
/// `A–Z a–z 0–9 . _ : / -`.
///
/// # Errors
/// [`TextError::RequestId`], showing the id through [`inert_bounded`].
pub fn check_request_id(id: &str) -> Result<(), TextError> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID_LEN || !id.chars().all(id_char) {
        return Err(TextError::RequestId {
            shown: format!("\"{}\"", inert_bounded(id, MAX_REQUEST_ID_LEN)),
        });
    }
    Ok(())
}

/// Checks a memo's length (its content is shown through [`inert`]).
///
/// # Errors
/// [`TextError::MemoTooLong`].
pub fn check_memo(memo: &str) -> Result<(), TextError> {
    let chars = memo.chars().count();
    if chars > MAX_MEMO_CHARS {
        return Err(TextError::MemoTooLong { chars });
    }
    Ok(())
}

/// Checks a label: at most [`MAX_LABEL_CHARS`] characters, none unsafe.
///
/// # Errors
/// [`TextError::Label`].
pub fn check_label(label: &str) -> Result<(), TextError> {
    if label.chars().count() > MAX_LABEL_CHARS || label.chars().any(is_unsafe_char) {
        return Err(TextError::Label {
            shown: format!("\"{}\"", inert_bounded(label, MAX_LABEL_CHARS)),
        });
    }
    Ok(())
}

/// Serde helper: a memo field checked with [`check_memo`] when parsed.
///
/// # Errors
/// The deserializer's error, carrying [`TextError::MemoTooLong`]'s message.
pub fn memo<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let memo = <String as serde::Deserialize>::deserialize(d)?;
    check_memo(&memo).map_err(serde::de::Error::custom)?;
    Ok(memo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        assert_eq!(inert("ok 1.5 BTC"), "ok 1.5 BTC");
        assert_eq!(inert("a\x1b[2Kb"), "a\\u{001b}[2Kb");
        assert_eq!(inert("\u{202e}cba"), "\\u{202e}cba");
        assert_eq!(inert("x\u{200b}y\u{feff}"), "x\\u{200b}y\\u{feff}");
        assert_eq!(inert("\u{9b}31m"), "\\u{009b}31m");
        assert_eq!(inert("\\u{001b}"), "\\\\u{001b}");
        assert_eq!(inert("日本語 café"), "日本語 café");
        for c in [
            '\n', '\r', '\t', '\u{7f}', '\u{2066}', '\u{2069}', '\u{200f}',
        ] {
            assert!(!inert(&c.to_string()).contains(c));
        }
    }

    #[test]
    fn nothing_unsafe_survives_inert() {
        // Every code point of the planes where the unsafe ones live.
        let all: String = (0u32..0x3_0000)
            .chain(0xE_0000..0xE_0200)
            .filter_map(char::from_u32)
            .collect();
        let out = inert(&all);
        assert!(!out.chars().any(is_unsafe_char));
        assert!(!inert_lines(&all)
            .chars()
            .any(|c| c != '\n' && is_unsafe_char(c)));
        assert!(!inert_bounded(&all, 10).chars().any(is_unsafe_char));
        assert!(!terminal_safe(&all)
            .chars()
            .any(|c| c != '\n' && is_unsafe_char(c)));
        // Already inert text passes the backstop unchanged.
        let once = inert("a\x1b[2K\\b\u{202e}");
        assert_eq!(terminal_safe(&once), once);
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(4_000_000_000), "2096-10-02 07:06:40 UTC");
        assert_eq!(utc_time(1_790_000_000), "2026-09-21 14:13:20 UTC");
    }

    #[test]
    fn request_ids() {
        assert!(check_request_id("payout-2026-12-01/7:a_b.c").is_ok());
        for bad in ["", "a b", "a\x1b[31m", "\u{202e}x", "é", &"a".repeat(129)] {
            assert!(check_request_id(bad).is_err(), "{bad:?}");
        }
        let e = check_request_id("a\x1b[2K").unwrap_err().to_string();
        assert!(!e.contains('\x1b'), "{e}");
    }
}
