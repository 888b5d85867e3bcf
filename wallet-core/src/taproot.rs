//! Taproot keys and addresses of a `secp256k1-tr` group, and BIP340
//! verification.
//!
//! The group verifying key is the BIP86 *internal* key; the *output* key is
//! `TapTweak(internal, no script tree)` (BIP341), and the group's address is
//! the P2TR address of the output key. Kura signs only key-path spends, with
//! the tweak applied inside the FROST rounds (see [`crate::suite`]).

use bitcoin::key::{TapTweak, TweakedPublicKey, UntweakedPublicKey};
use bitcoin::secp256k1::{Secp256k1, XOnlyPublicKey};
use bitcoin::{Address, Network, ScriptBuf};
use frost_core::{Signature, VerifyingKey};

use crate::group::{verifying_key_bytes, PublicGroup};
use crate::signing::VerifyError;
use crate::suite::Secp256k1Tr;

/// A `secp256k1-tr` group's Taproot keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaprootKeys {
    internal: UntweakedPublicKey,
    output: TweakedPublicKey,
}

impl TaprootKeys {
    /// The x-only BIP86 internal key (the group verifying key).
    pub fn internal_key(&self) -> XOnlyPublicKey {
        self.internal
    }

    /// The x-only output key that appears in the scriptPubKey and signs.
    pub fn output_key(&self) -> TweakedPublicKey {
        self.output
    }

    /// The P2TR scriptPubKey `OP_1 <output key>`.
    pub fn script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2tr_tweaked(self.output)
    }

    /// The bech32m P2TR address on `network`.
    pub fn address(&self, network: Network) -> Address {
        Address::p2tr_tweaked(self.output, network)
    }
}

impl PublicGroup<Secp256k1Tr> {
    /// The group's Taproot keys. The output key is computed by rust-bitcoin
    /// from the internal key and agrees with the key frost signs under
    /// (tested), so the address and the signatures come from one rule.
    pub fn taproot(&self) -> TaprootKeys {
        let compressed = verifying_key_bytes(self.verifying_key());
        // A group verifying key is a valid non-identity point, so its x
        // coordinate is a valid x-only key; the fallback is unreachable.
        let internal = compressed
            .get(1..)
            .and_then(|x| XOnlyPublicKey::from_slice(x).ok())
            .unwrap_or_else(unreachable_key);
        let secp = Secp256k1::verification_only();
        let (output, _parity) = internal.tap_tweak(&secp, None);
        TaprootKeys { internal, output }
    }
}

#[allow(clippy::unwrap_used, clippy::expect_used)]
fn unreachable_key() -> XOnlyPublicKey {
    // The generator's x coordinate: a valid key, used only if the invariant
    // above were ever broken (it would then yield a foreign address, and
    // signatures that never verify, rather than a panic).
    XOnlyPublicKey::from_slice(&bitcoin::secp256k1::constants::GENERATOR_X)
        .expect("generator x is valid")
}

/// Verifies a 64-byte BIP340 signature over `message` (any length) under
/// the x-only key `public_key`, with frost's BIP340 implementation.
///
/// # Errors
/// [`VerifyError`] when the key or signature does not parse or it does not verify.
pub fn verify_bip340(
    public_key: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), VerifyError> {
    let mut compressed = [0u8; 33];
    compressed[0] = 0x02;
    compressed[1..].copy_from_slice(public_key);
    let key = VerifyingKey::<Secp256k1Tr>::deserialize(&compressed).map_err(|_| VerifyError)?;
    let sig = Signature::<Secp256k1Tr>::deserialize(signature).map_err(|_| VerifyError)?;
    key.verify(message, &sig).map_err(|_| VerifyError)
}
