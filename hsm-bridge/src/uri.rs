//! PKCS#11 URIs (RFC 7512), the part Kura uses:
//! `pkcs11:token=<label>[;serial=<serial>][;object=<label>][?module-path=<path>]`.
//!
//! Tokens are found by label (and serial number, when given), never by
//! slot number (slot ids are not stable across processes); two tokens that
//! match are refused as ambiguous. A `pin-value` attribute is refused: a PIN must not
//! travel on a command line.

use std::path::PathBuf;

use crate::error::HsmError;

/// Where the module path comes from when the URI has none.
pub const MODULE_ENV: &str = "PKCS11_MODULE";

/// A parsed PKCS#11 URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The token label (`token=`).
    pub token: String,
    /// The token's serial number (`serial=`), if given.
    pub serial: Option<String>,
    /// The object label (`object=`), if given.
    pub object: Option<String>,
    /// The module path (`module-path=`), if given.
    pub module_path: Option<PathBuf>,
}

impl Pkcs11Uri {
    /// Parses a URI.
    ///
    /// # Errors
    /// [`HsmError::InvalidUri`] for anything but a `pkcs11:` URI with a
    /// `token` attribute, bad percent-encoding, or a `pin-value`.
    pub fn parse(uri: &str) -> Result<Self, HsmError> {
        let bad = |reason: &str| HsmError::InvalidUri {
            uri: redact(uri),
            reason: reason.to_owned(),
        };
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("must start with `pkcs11:`"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut token = None;
        let mut object = None;
        let mut serial = None;
        let mut module_path = None;
        let attrs = path
            .split(';')
            .chain(query.split('&'))
            .filter(|a| !a.is_empty());
        for attr in attrs {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| bad("attributes are `name=value`"))?;
            let v = percent_decode(v).ok_or_else(|| bad("bad percent-encoding"))?;
            match k {
                "token" => token = Some(v),
                "object" => object = Some(v),
                "serial" => serial = Some(v),
                "module-path" => module_path = Some(PathBuf::from(v)),
                "pin-value" => {
                    return Err(bad(
                        "a PIN in the URI would appear in shell history and process lists; use a PIN file, an environment variable or the prompt",
                    ))
                }
                // Other RFC 7512 attributes narrow the search further; Kura
                // matches on the token label and serial only and ignores them.
                _ => {}
            }
        }
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("missing `token=<label>`"))?;
        Ok(Pkcs11Uri {
            token,
            serial: serial.filter(|s| !s.is_empty()),
            object,
            module_path,
        })
    }

    /// The same URI naming the token's serial number too.
    #[must_use]
    pub fn with_serial(&self, serial: &str) -> Self {
        Pkcs11Uri {
            serial: Some(serial.to_owned()),
            ..self.clone()
        }
    }

    /// The module to load: the URI's `module-path`, else `$PKCS11_MODULE`,
    /// else SoftHSM2's Debian path.
    pub fn module(&self) -> PathBuf {
        self.module_path
            .clone()
            .or_else(|| std::env::var_os(MODULE_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(crate::softhsm::DEFAULT_MODULE))
    }
}

impl std::fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pkcs11:token={}", percent_encode(&self.token))?;
        if let Some(s) = &self.serial {
            write!(f, ";serial={}", percent_encode(s))?;
        }
        if let Some(o) = &self.object {
            write!(f, ";object={}", percent_encode(o))?;
        }
        if let Some(m) = &self.module_path {
            write!(f, "?module-path={}", percent_encode(&m.to_string_lossy()))?;
        }
        Ok(())
    }
}

/// The URI with any `pin-value` attribute's value replaced, for messages.
fn redact(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(i) = rest.find("pin-value=") {
        let (head, tail) = rest.split_at(i + "pin-value=".len());
        out.push_str(head);
        out.push_str("<redacted>");
        rest = tail
            .find(['&', ';'])
            .map_or("", |j| tail.get(j..).unwrap_or(""));
    }
    out.push_str(rest);
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_parts_kura_uses() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=kura-alice;object=kura-share?module-path=/usr/lib/softhsm/libsofthsm2.so",
        )
        .unwrap();
        assert_eq!(u.token, "kura-alice");
        assert_eq!(u.object.as_deref(), Some("kura-share"));
        assert_eq!(u.module(), PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
        let u = Pkcs11Uri::parse("pkcs11:manufacturer=SoftHSM%20project;token=My%20Token").unwrap();
        assert_eq!(u.token, "My Token");
        assert_eq!(Pkcs11Uri::parse(&u.to_string()).unwrap(), u);
        let s = Pkcs11Uri::parse("pkcs11:token=kura-alice;serial=3f2a%2001").unwrap();
        assert_eq!(s.serial.as_deref(), Some("3f2a 01"));
        assert_eq!(Pkcs11Uri::parse(&s.to_string()).unwrap(), s);
        assert_eq!(u.with_serial("77").serial.as_deref(), Some("77"));
    }

    #[test]
    fn refuses_bad_uris_and_pins() {
        for bad in [
            "token=x",
            "pkcs11:object=x",
            "pkcs11:token=",
            "pkcs11:token=a%zz",
            "pkcs11:token=a;junk",
            "pkcs11:token=a?pin-value=1234",
        ] {
            assert!(
                matches!(Pkcs11Uri::parse(bad), Err(HsmError::InvalidUri { .. })),
                "{bad}"
            );
        }
    }
}
