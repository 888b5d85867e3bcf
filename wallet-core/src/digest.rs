//! The 32-byte digests that name things in Kura's documents and audit log.
//!
//! Each is its own type, so a policy digest cannot be passed where a request
//! digest is expected, and each is compared as bytes. In documents each is
//! written as 64 lowercase hex digits, and only that form parses: one value
//! has one spelling, so signed bytes and logs stay byte-identical.
//!
//! ```
//! use wallet_core::digest::RequestDigest;
//!
//! let d: RequestDigest = "00".repeat(32).parse()?;
//! assert_eq!(d.to_bytes(), [0u8; 32]);
//! assert!("00".repeat(31).parse::<RequestDigest>().is_err());
//! assert!("AB".repeat(32).parse::<RequestDigest>().is_err()); // one spelling: lowercase
//! # Ok::<(), wallet_core::digest::DigestParseError>(())
//! ```

use std::fmt;
use std::str::FromStr;

/// A digest that is not 64 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("\"{shown}\" is not a digest (64 lowercase hex digits)")]
pub struct DigestParseError {
    /// The rejected text, shortened and made inert for display.
    shown: String,
}

fn parse_hex32(text: &str) -> Result<[u8; 32], DigestParseError> {
    let bad = || DigestParseError {
        shown: crate::display::inert_bounded(text, 80),
    };
    if text.len() != 64
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| bad())?;
    Ok(out)
}

macro_rules! digest_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps 32 bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                $name(bytes)
            }

            /// The bytes.
            pub const fn to_bytes(&self) -> [u8; 32] {
                self.0
            }

            /// The bytes, borrowed.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl From<[u8; 32]> for $name {
            fn from(bytes: [u8; 32]) -> Self {
                $name(bytes)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = DigestParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32(s).map($name)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

digest_type!(
    /// SHA-256 of a signed request's canonical bytes
    /// ([`Signed::digest`](crate::withdrawal::request::Signed::digest)): what
    /// approvals, packages, shares and audit entries use to name a request.
    RequestDigest
);

digest_type!(
    /// The tagged digest of a policy's canonical JSON
    /// ([`Policy::digest`](crate::policy::Policy::digest)): what a keystore
    /// pins and an approval names as the policy that allowed it.
    PolicyDigest
);

digest_type!(
    /// The 32 bytes one FROST session signs: an input's BIP341 sighash
    /// (from a [`bitcoin::TapSighash`]) or a raw message's
    /// [`raw_message_digest`](crate::withdrawal::request::raw_message_digest).
    SigningDigest
);

digest_type!(
    /// SHA-256 of a `withdrawal-packages` document's canonical bytes: what a
    /// share release answered, so the same packages get the same shares.
    PackagesDigest
);

impl From<bitcoin::TapSighash> for SigningDigest {
    fn from(sighash: bitcoin::TapSighash) -> Self {
        use bitcoin::hashes::Hash;
        SigningDigest(sighash.to_byte_array())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_parses_and_round_trips() {
        let hex = "0f".repeat(32);
        let d: PolicyDigest = hex.parse().unwrap();
        assert_eq!(d.to_string(), hex);
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{hex}\""));
        let back: PolicyDigest = serde_json::from_str(&format!("\"{hex}\"")).unwrap();
        assert_eq!(back, d);
        for bad in [
            "0F".repeat(32),
            "0f".repeat(33),
            "zz".repeat(32),
            String::new(),
        ] {
            assert!(bad.parse::<PolicyDigest>().is_err(), "{bad}");
            assert!(serde_json::from_str::<PolicyDigest>(&format!("\"{bad}\"")).is_err());
        }
    }

    #[test]
    fn error_text_is_inert() {
        let err = "\u{1b}[2J"
            .parse::<RequestDigest>()
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\u{1b}'), "{err}");
    }

    #[test]
    fn tap_sighash_keeps_its_byte_order() {
        use bitcoin::hashes::Hash;
        let bytes: [u8; 32] = core::array::from_fn(|i| i as u8);
        let d = SigningDigest::from(bitcoin::TapSighash::from_byte_array(bytes));
        assert_eq!(d.to_bytes(), bytes);
    }
}
