//! PSBTs as the ecosystem writes them, bytes in, [`Psbt`] out (no I/O here:
//! the CLI reads files and stdin).
//!
//! [`decode`] accepts BIP174 version 0 PSBTs in each form wallets save them:
//!
//! - binary (`psbt\xff…`), how Bitcoin Core's GUI, Sparrow and Electrum
//!   write `.psbt` files;
//! - base64 (`cHNidP8…`), on one line or wrapped at any width (coreutils
//!   `base64` wraps at 76, PEM-style tools at 64), surrounding whitespace
//!   ignored (and a leading UTF-8 byte-order mark) — what `bitcoin-cli`
//!   prints;
//! - hex (`70736274ff…`), either case.
//!
//! It refuses, each with its own [`PsbtError`]: empty input, input over
//! [`MAX_PSBT_BYTES`], PSBT version 2 (BIP370, "not supported yet"), input cut
//! short, and anything else that is not a PSBT. [`encode_binary`] and
//! [`encode_base64`] write the two usual forms.

use bitcoin::base64::Engine as _;
use bitcoin::psbt::Psbt;

/// The largest PSBT Kura reads, in bytes of its binary form (and of any text
/// form). Four times the largest standard transaction, so room for
/// `non_witness_utxo`s and metadata.
pub const MAX_PSBT_BYTES: usize = 1_600_000;

/// The largest text form (hex is twice the binary, plus line breaks) a
/// reader should accept before decoding.
pub const MAX_PSBT_TEXT_BYTES: usize = MAX_PSBT_BYTES * 2 + MAX_PSBT_BYTES / 8;

/// The binary form's first bytes: `psbt` and 0xff.
const MAGIC: &[u8] = b"psbt\xff";

/// Why bytes are not a PSBT Kura can read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PsbtError {
    /// Nothing (or only whitespace).
    #[error("the PSBT is empty")]
    Empty,
    /// Over [`MAX_PSBT_BYTES`].
    #[error("the PSBT is {len} bytes, over the {MAX_PSBT_BYTES}-byte limit")]
    TooLarge {
        /// Its length (at least; readers stop just past the cap).
        len: usize,
    },
    /// Neither binary, base64 nor hex.
    #[error("not a PSBT: expected binary (starting with 'psbt' 0xff), base64 (starting with 'cHNidP8') or hex (starting with '70736274ff')")]
    UnknownEncoding,
    /// Text that starts like base64 but does not decode.
    #[error("the PSBT's base64 does not decode: {0}")]
    Base64(String),
    /// Text that starts like hex but does not decode.
    #[error("the PSBT's hex does not decode: {0}")]
    Hex(String),
    /// A PSBT of a version other than 0.
    #[error("PSBT version {0} is not supported yet: Kura reads BIP174 version 0 PSBTs (convert it, e.g. with a wallet's 'export as PSBT v0')")]
    UnsupportedVersion(u32),
    /// The input ends in the middle of the PSBT.
    #[error("the PSBT is truncated: it ends in the middle of a record (was the file cut short?)")]
    Truncated,
    /// A PSBT that does not parse.
    #[error("not a valid PSBT: {0}")]
    Invalid(String),
}

/// Decodes a PSBT given as binary, base64 (wrapped or not) or hex.
///
/// # Errors
/// The [`PsbtError`] naming the problem.
pub fn decode(bytes: &[u8]) -> Result<Psbt, PsbtError> {
    if bytes.len() > MAX_PSBT_TEXT_BYTES {
        return Err(PsbtError::TooLarge { len: bytes.len() });
    }
    if bytes.starts_with(MAGIC) {
        return decode_binary(bytes);
    }
    // A text editor's byte-order mark is not part of the PSBT.
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(PsbtError::Empty);
    }
    if compact.starts_with(b"cHNidP") {
        return decode_base64(&compact);
    }
    if compact.len() >= 10
        && compact
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"70736274ff"))
    {
        if compact.len() / 2 > MAX_PSBT_BYTES {
            return Err(PsbtError::TooLarge {
                len: compact.len() / 2,
            });
        }
        let raw = hex::decode(&compact).map_err(|e| PsbtError::Hex(e.to_string()))?;
        return decode_binary(&raw);
    }
    if MAGIC.starts_with(&compact) {
        return Err(PsbtError::Truncated);
    }
    Err(PsbtError::UnknownEncoding)
}

/// Decodes base64 text (whitespace already removed or not) into a PSBT —
/// the form Kura's own requests carry.
///
/// # Errors
/// The [`PsbtError`] naming the problem.
pub fn decode_base64(text: &[u8]) -> Result<Psbt, PsbtError> {
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(PsbtError::Empty);
    }
    if compact.len() / 4 * 3 > MAX_PSBT_BYTES {
        return Err(PsbtError::TooLarge {
            len: compact.len() / 4 * 3,
        });
    }
    let raw = bitcoin::base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| PsbtError::Base64(e.to_string()))?;
    decode_binary(&raw)
}

/// Decodes the binary (BIP174) form.
///
/// # Errors
/// The [`PsbtError`] naming the problem.
pub fn decode_binary(raw: &[u8]) -> Result<Psbt, PsbtError> {
    if raw.is_empty() {
        return Err(PsbtError::Empty);
    }
    if raw.len() > MAX_PSBT_BYTES {
        return Err(PsbtError::TooLarge { len: raw.len() });
    }
    if !raw.starts_with(MAGIC) {
        if MAGIC.starts_with(raw) {
            return Err(PsbtError::Truncated);
        }
        return Err(PsbtError::UnknownEncoding);
    }
    match scan(raw) {
        Scan::Truncated => return Err(PsbtError::Truncated),
        Scan::Version(v) if v != 0 => return Err(PsbtError::UnsupportedVersion(v)),
        Scan::Version(_) | Scan::Complete => {}
    }
    Psbt::deserialize(raw).map_err(|e| {
        if is_eof(&e) {
            PsbtError::Truncated
        } else {
            PsbtError::Invalid(e.to_string())
        }
    })
}

/// The binary BIP174 form (what `.psbt` files hold).
pub fn encode_binary(psbt: &Psbt) -> Vec<u8> {
    psbt.serialize()
}

/// The base64 form (what `bitcoin-cli` prints).
pub fn encode_base64(psbt: &Psbt) -> String {
    psbt.to_string()
}

fn is_eof(e: &bitcoin::psbt::Error) -> bool {
    use bitcoin::consensus::encode;
    use bitcoin::psbt::Error;
    match e {
        Error::Io(io) => io.kind() == bitcoin::io::ErrorKind::UnexpectedEof,
        Error::ConsensusEncoding(encode::Error::Io(io)) => {
            io.kind() == bitcoin::io::ErrorKind::UnexpectedEof
        }
        Error::NoMorePairs => true,
        _ => false,
    }
}

enum Scan {
    /// Every record is whole; no version field.
    Complete,
    /// The global map's PSBT_GLOBAL_VERSION.
    Version(u32),
    /// The data ends inside a record.
    Truncated,
}

/// Walks the key-value records after the magic without interpreting them:
/// finds the global version and whether the data ends inside a record.
fn scan(raw: &[u8]) -> Scan {
    let mut rest = raw.get(MAGIC.len()..).unwrap_or_default();
    let mut in_global = true;
    let mut version = None;
    while !rest.is_empty() {
        let Some((key_len, after)) = compact_size(rest) else {
            return Scan::Truncated;
        };
        rest = after;
        if key_len == 0 {
            in_global = false;
            continue;
        }
        let Some((key, after)) = take(rest, key_len) else {
            return Scan::Truncated;
        };
        rest = after;
        let Some((value_len, after)) = compact_size(rest) else {
            return Scan::Truncated;
        };
        let Some((value, after)) = take(after, value_len) else {
            return Scan::Truncated;
        };
        rest = after;
        if in_global && key == [0xfb] {
            version = Some(value.try_into().map(u32::from_le_bytes).unwrap_or(u32::MAX));
        }
    }
    match version {
        Some(v) => Scan::Version(v),
        None => Scan::Complete,
    }
}

fn take(data: &[u8], len: u64) -> Option<(&[u8], &[u8])> {
    let len = usize::try_from(len).ok()?;
    if len > data.len() {
        return None;
    }
    Some(data.split_at(len))
}

fn compact_size(data: &[u8]) -> Option<(u64, &[u8])> {
    let (&first, rest) = data.split_first()?;
    let (n, rest) = match first {
        0xfd => {
            let (b, r) = take(rest, 2)?;
            (u64::from(u16::from_le_bytes(b.try_into().ok()?)), r)
        }
        0xfe => {
            let (b, r) = take(rest, 4)?;
            (u64::from(u32::from_le_bytes(b.try_into().ok()?)), r)
        }
        0xff => {
            let (b, r) = take(rest, 8)?;
            (u64::from_le_bytes(b.try_into().ok()?), r)
        }
        n => (u64::from(n), rest),
    };
    Some((n, rest))
}
