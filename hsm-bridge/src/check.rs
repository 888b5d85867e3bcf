//! `kura hsm check`: which of the mechanisms Kura needs a token lacks.

use cryptoki::mechanism::MechanismType;

use crate::context::{context, find_token};
use crate::error::HsmError;
use crate::uri::Pkcs11Uri;

/// The mechanisms Kura uses, all widely available on HSMs, with what each is for.
pub const REQUIRED: [(MechanismType, &str); 6] = [
    (
        MechanismType::AES_KEY_GEN,
        "generate the key-encryption key",
    ),
    (MechanismType::AES_GCM, "encrypt shares and nonces"),
    (
        MechanismType::ECC_KEY_PAIR_GEN,
        "generate the P-256 identity key",
    ),
    (MechanismType::ECDSA, "sign messages with the identity key"),
    (
        MechanismType::ECDH1_DERIVE,
        "open DKG shares sealed to the identity key",
    ),
    (
        MechanismType::GENERIC_SECRET_KEY_GEN,
        "hold ECDH results as session objects",
    ),
];

/// What a token offers and lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// The token label.
    pub token: String,
    /// Required mechanisms the token lacks, with their purpose.
    pub missing: Vec<(String, &'static str)>,
    /// Whether `C_GenerateRandom` works.
    pub random: bool,
}

impl Capabilities {
    /// Whether the token has everything Kura needs.
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && self.random
    }
}

/// Checks the token named by `uri` (no login needed).
///
/// # Errors
/// Module or token not found, or a PKCS#11 failure listing mechanisms.
pub fn capabilities(uri: &Pkcs11Uri) -> Result<Capabilities, HsmError> {
    let ctx = context(&uri.module())?;
    let slot = find_token(&ctx, &uri.token, uri.serial.as_deref())?;
    let offered = ctx
        .get_mechanism_list(slot)
        .map_err(HsmError::pkcs11("C_GetMechanismList"))?;
    let missing = REQUIRED
        .iter()
        .filter(|(m, _)| !offered.contains(m))
        .map(|(m, why)| (m.to_string(), *why))
        .collect();
    let random = ctx
        .open_ro_session(slot)
        .and_then(|s| s.generate_random_vec(16))
        .map(|v| v.len() == 16)
        .unwrap_or(false);
    Ok(Capabilities {
        token: uri.token.clone(),
        missing,
        random,
    })
}
