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
    pub(crate) fn from_parts(internal: UntweakedPublicKey, output: TweakedPublicKey) -> Self {
        TaprootKeys { internal, output }
    }

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

// ---------------------------------------------------------------------------
// Watch-only output descriptor (BIP 380 checksum, BIP 386 `tr()`).
// Written from the BIP 380 "Checksum" section; no outside code is used.
// ---------------------------------------------------------------------------

/// BIP 380's `INPUT_CHARSET`: the 96 characters a descriptor may contain, as
/// three groups of 32. A character's symbol is its position within its group;
/// its group number is folded into an extra symbol after every third character.
const DESCRIPTOR_INPUT_CHARSET: &str =
    "0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ";

/// BIP 380's `CHECKSUM_CHARSET` (the bech32 alphabet): one character per
/// 5-bit checksum symbol.
const DESCRIPTOR_CHECKSUM_CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// BIP 380's `GENERATOR` of the BCH code over GF(32).
const DESCRIPTOR_GENERATOR: [u64; 5] = [
    0xf5_dee5_1989,
    0xa9_fdca_3312,
    0x1b_ab10_e32d,
    0x37_06b1_677a,
    0x64_4d62_6ffd,
];

/// Length of a BIP 380 descriptor checksum, in characters.
const DESCRIPTOR_CHECKSUM_LEN: usize = 8;

/// One step of BIP 380's `descsum_polymod`: feeds the 5-bit `value` into the
/// 40-bit state `chk`.
fn descsum_polymod_step(chk: u64, value: u64) -> u64 {
    let top = chk >> 35;
    let mut next = ((chk & 0x7_ffff_ffff) << 5) ^ value;
    for (i, generator) in DESCRIPTOR_GENERATOR.iter().enumerate() {
        if (top >> i) & 1 == 1 {
            next ^= generator;
        }
    }
    next
}

/// BIP 380's `descsum_expand` fed straight into `descsum_polymod` (starting
/// from 1): the polymod state after all of `s`'s symbols, or `None` if `s`
/// has a character outside the input charset.
fn descsum_expand_polymod(s: &str) -> Option<u64> {
    let mut chk = 1u64;
    let mut groups = 0u64;
    let mut group_count = 0u8;
    for c in s.chars() {
        let position = DESCRIPTOR_INPUT_CHARSET.chars().position(|x| x == c)?;
        let position = u64::try_from(position).ok()?;
        chk = descsum_polymod_step(chk, position & 31);
        // groups[0] * 9 + groups[1] * 3 + groups[2], built up one at a time.
        groups = groups * 3 + (position >> 5);
        group_count += 1;
        if group_count == 3 {
            chk = descsum_polymod_step(chk, groups);
            groups = 0;
            group_count = 0;
        }
    }
    // A trailing one or two group numbers: groups[0], or groups[0] * 3 + groups[1].
    if group_count > 0 {
        chk = descsum_polymod_step(chk, groups);
    }
    Some(chk)
}

/// The 8-character BIP 380 descriptor checksum of `descriptor` (the `SCRIPT`
/// part, without `#` and a checksum), as BIP 380's `descsum_create` computes
/// it; `descriptor#checksum` is then a checksummed descriptor (BIP 380,
/// "Checksum"). The string is checksummed as given: nothing is normalised,
/// so any change to it (case, spacing, hardened marker) changes the checksum.
///
/// Returns `None` if `descriptor` contains a character outside BIP 380's
/// input character set (BIP 380, "Character Set"), e.g. a non-ASCII letter.
pub fn descriptor_checksum(descriptor: &str) -> Option<String> {
    let mut chk = descsum_expand_polymod(descriptor)?;
    for _ in 0..DESCRIPTOR_CHECKSUM_LEN {
        chk = descsum_polymod_step(chk, 0);
    }
    let checksum = chk ^ 1;
    (0..DESCRIPTOR_CHECKSUM_LEN)
        .rev()
        .map(|i| {
            let symbol = usize::try_from((checksum >> (5 * i)) & 31).ok()?;
            DESCRIPTOR_CHECKSUM_CHARSET
                .get(symbol)
                .map(|&b| char::from(b))
        })
        .collect()
}

/// Whether `with_checksum` is a descriptor of the form `SCRIPT#CHECKSUM` whose
/// 8-character checksum is valid, as BIP 380's `descsum_check` decides it
/// (BIP 380, "Checksum"). False when there is no `#` exactly 9 characters
/// from the end, when a checksum character is outside the checksum charset,
/// when `SCRIPT` has a character outside the input charset, or when the
/// checksum does not match. Only the checksum is checked: `SCRIPT` is not
/// parsed.
pub fn verify_descriptor_checksum(with_checksum: &str) -> bool {
    let Some(split) = with_checksum.len().checked_sub(DESCRIPTOR_CHECKSUM_LEN + 1) else {
        return false;
    };
    let (Some(script), Some(tail)) = (with_checksum.get(..split), with_checksum.get(split..))
    else {
        return false;
    };
    let Some(checksum) = tail.strip_prefix('#') else {
        return false;
    };
    let Some(mut chk) = descsum_expand_polymod(script) else {
        return false;
    };
    for c in checksum.bytes() {
        let Some(symbol) = DESCRIPTOR_CHECKSUM_CHARSET.iter().position(|&x| x == c) else {
            return false;
        };
        let Ok(symbol) = u64::try_from(symbol) else {
            return false;
        };
        chk = descsum_polymod_step(chk, symbol);
    }
    chk == 1
}

impl TaprootKeys {
    /// The group's watch-only output descriptor, `tr(<internal key>)#<checksum>`:
    /// the BIP 386 `tr(KEY)` descriptor with the 64-hex-character (lowercase)
    /// x-only internal key and no script tree, followed by its BIP 380
    /// checksum. It describes exactly the P2TR output of
    /// [`TaprootKeys::script_pubkey`] (BIP 386: output key =
    /// internal key tweaked by `TapTweak(internal key)`, as BIP 86 does), so
    /// a watch-only wallet that imports it (Bitcoin Core `importdescriptors`,
    /// Sparrow, BDK) watches the group's address. It contains no private
    /// material and no derivation: the group key is used as is.
    pub fn descriptor(&self) -> String {
        let script = format!("tr({})", hex::encode(self.internal.serialize()));
        match descriptor_checksum(&script) {
            Some(checksum) => format!("{script}#{checksum}"),
            // `tr(`, `)` and lowercase hex are all in BIP 380's input charset,
            // so the checksum always exists; without one the descriptor is
            // still valid (BIP 380 makes the checksum optional).
            None => script,
        }
    }
}
