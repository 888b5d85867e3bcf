//! Serde readers for Kura's copies of outside test vectors in `vectors/`.
//!
//! Every struct lists every field of its file and rejects unknown ones
//! (`deny_unknown_fields`), so a file edited into a shape these readers do not
//! expect fails loudly instead of being half-read. Hex strings are decoded on
//! load into [`Hex`]. Where each file comes from, and what its fields mean, is
//! in `vectors/SOURCES.md` and in the `source` and `notes` of each file.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Reads and parses a vector file, given relative to `vectors/`.
///
/// # Panics
/// When the file is missing or does not parse: these readers are for tests.
pub fn load<T: DeserializeOwned>(relative: &str) -> T {
    let path = crate::crate_dir().join("vectors").join(relative);
    load_path(&path)
}

/// Reads and parses a vector file at `path`.
///
/// # Panics
/// When the file is missing or does not parse.
pub fn load_path<T: DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read vector file {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("cannot parse vector file {}: {e}", path.display()))
}

/// Bytes written in the files as a lowercase hex string.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Hex(pub Vec<u8>);

impl Hex {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as an array of exactly `N` bytes.
    ///
    /// # Panics
    /// When the length is not `N`.
    pub fn array<const N: usize>(&self) -> [u8; N] {
        <[u8; N]>::try_from(self.0.as_slice()).unwrap_or_else(|_| {
            panic!(
                "expected {N} bytes, found {} ({})",
                self.0.len(),
                hex::encode(&self.0)
            )
        })
    }
}

impl TryFrom<String> for Hex {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("hex must be lowercase: {s}"));
        }
        hex::decode(&s)
            .map(Hex)
            .map_err(|e| format!("bad hex {s:?}: {e}"))
    }
}

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

/// `source_config` of the FROST files: the ciphersuite as named in the source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Ciphersuite name in the source (reads "FROST(secp256k1, SHA-256)" in the TR files too; see their notes).
    pub name: String,
    /// Group name.
    pub group: String,
    /// Hash name.
    pub hash: String,
}

// ---------------------------------------------------------------------------
// FROST signing (RFC 9591 Appendix E format)
// ---------------------------------------------------------------------------

/// A FROST signing vector in the RFC 9591 Appendix E layout:
/// `rfc9591/secp256k1-sign.json` (ZF frost `frost-secp256k1/tests/helpers/vectors.json`),
/// `rfc9591/secp256k1-sign-cfrg-draft15.json` (draft-irtf-cfrg-frost-15, = RFC 9591 Appendix E.5),
/// `rfc9591/secp256k1-sign-big-identifier.json` (ZF frost `vectors-big-identifier.json`) and
/// `frost-secp256k1-tr/secp256k1-tr-sign.json` (ZF frost `frost-secp256k1-tr/tests/helpers/vectors.json`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignVector {
    /// Where the values come from.
    pub source: String,
    /// The source's license.
    pub license: String,
    /// Transcription notes.
    pub notes: Vec<String>,
    /// Kura suite name (`secp256k1` or `secp256k1-tr`).
    pub suite: String,
    /// The source's ciphersuite description.
    pub source_config: SourceConfig,
    /// Threshold t.
    pub min_signers: u16,
    /// Number of shares n.
    pub max_signers: u16,
    /// Number of participants that sign.
    pub num_signers: u16,
    /// Identifiers of the participants that sign.
    pub signers: Vec<u16>,
    /// The dealer's secret (32-byte scalar).
    pub group_secret_key: Hex,
    /// The group verifying key (33-byte compressed point, untweaked).
    pub group_public_key: Hex,
    /// The signed message.
    pub message: Hex,
    /// The dealer polynomial's coefficients after the constant term.
    pub share_polynomial_coefficients: Vec<Hex>,
    /// Every participant's signing share.
    pub shares: Vec<ShareEntry>,
    /// Round 1 of each signer.
    pub round1: Vec<Round1Entry>,
    /// Round 2 of each signer.
    pub round2: Vec<Round2Entry>,
    /// The aggregate signature (65 bytes for secp256k1, 64-byte BIP340 for secp256k1-tr).
    pub signature: Hex,
}

/// One participant's dealer share.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareEntry {
    /// FROST identifier (as an integer).
    pub identifier: u16,
    /// The signing share f(identifier) (32-byte scalar).
    pub signing_share: Hex,
}

/// One signer's round 1.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Round1Entry {
    /// FROST identifier.
    pub identifier: u16,
    /// The 32 random bytes drawn for the hiding nonce (RFC 9591 `nonce_generate`).
    pub hiding_nonce_randomness: Hex,
    /// The 32 random bytes drawn for the binding nonce.
    pub binding_nonce_randomness: Hex,
    /// H3(randomness || SerializeScalar(share)) for the hiding nonce.
    pub hiding_nonce: Hex,
    /// The same for the binding nonce.
    pub binding_nonce: Hex,
    /// hiding_nonce·G.
    pub hiding_nonce_commitment: Hex,
    /// binding_nonce·G.
    pub binding_nonce_commitment: Hex,
    /// The H1 preimage of this signer's binding factor.
    pub binding_factor_input: Hex,
    /// H1(binding_factor_input).
    pub binding_factor: Hex,
}

/// One signer's round 2.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Round2Entry {
    /// FROST identifier.
    pub identifier: u16,
    /// The signature share (32-byte scalar).
    pub signature_share: Hex,
}

// ---------------------------------------------------------------------------
// FROST DKG
// ---------------------------------------------------------------------------

/// A FROST DKG run: `rfc9591/secp256k1-dkg.json` (ZF frost `frost-secp256k1/tests/helpers/vectors_dkg.json`)
/// and `frost-secp256k1-tr/secp256k1-tr-dkg.json` (ZF frost `frost-secp256k1-tr/tests/helpers/vectors_dkg.json`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkgVector {
    /// Where the values come from.
    pub source: String,
    /// The source's license.
    pub license: String,
    /// Transcription notes.
    pub notes: Vec<String>,
    /// Kura suite name.
    pub suite: String,
    /// The source's ciphersuite description.
    pub source_config: SourceConfig,
    /// Threshold t.
    pub min_signers: u16,
    /// Number of participants n.
    pub max_signers: u16,
    /// The resulting group key (for TR: already TapTweaked by frost's post-DKG step).
    pub group_public_key: Hex,
    /// Each participant's values.
    pub participants: Vec<DkgParticipant>,
}

/// One DKG participant i.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkgParticipant {
    /// FROST identifier i.
    pub identifier: u16,
    /// Constant term a_i0 of f_i.
    pub signing_key: Hex,
    /// a_i1 (the vectors have t = 2, so one coefficient).
    pub coefficient: Hex,
    /// [a_i0·G, a_i1·G].
    pub vss_commitments: Vec<Hex>,
    /// The round-1 proof of knowledge of a_i0 (65 bytes; 64 in the TR file).
    pub proof_of_knowledge: Hex,
    /// The round-2 shares participant i RECEIVED: `{from: j, signing_share: f_j(i)}`.
    pub signing_shares: Vec<DkgReceivedShare>,
    /// signing_share·G.
    pub verifying_share: Hex,
    /// The final long-lived share of participant i.
    pub signing_share: Hex,
}

/// A round-2 share received by a DKG participant.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkgReceivedShare {
    /// The sender j.
    pub from: u16,
    /// f_j(i).
    pub signing_share: Hex,
}

// ---------------------------------------------------------------------------
// Repairable threshold scheme
// ---------------------------------------------------------------------------

/// Repair helper sums: `rfc9591/secp256k1-repair.json` and `frost-secp256k1-tr/secp256k1-tr-repair.json`
/// (ZF frost `tests/helpers/repair-share.json` of each crate).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairVector {
    /// Where the values come from.
    pub source: String,
    /// The source's license.
    pub license: String,
    /// Transcription notes.
    pub notes: Vec<String>,
    /// Kura suite name.
    pub suite: String,
    /// Three deltas and their sum.
    pub scalar_generation: ScalarGeneration,
    /// Four sigmas and their sum.
    pub sigma_generation: SigmaGeneration,
}

/// Three deltas and their sum (frost's `repair_share_part2` check).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalarGeneration {
    /// Delta 1.
    pub random_scalar_1: Hex,
    /// Delta 2.
    pub random_scalar_2: Hex,
    /// Delta 3.
    pub random_scalar_3: Hex,
    /// Their sum mod n.
    pub random_scalar_sum: Hex,
}

/// Four sigmas and their sum (frost's `repair_share_part3` check).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigmaGeneration {
    /// Sigma 1.
    pub sigma_1: Hex,
    /// Sigma 2.
    pub sigma_2: Hex,
    /// Sigma 3.
    pub sigma_3: Hex,
    /// Sigma 4.
    pub sigma_4: Hex,
    /// Their sum mod n.
    pub sigma_sum: Hex,
}

// ---------------------------------------------------------------------------
// BIP 340
// ---------------------------------------------------------------------------

/// `bip340/vectors.json`: BIP 340 `bip-0340/test-vectors.csv`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bip340File {
    /// Where the values come from.
    pub source: String,
    /// The source's license.
    pub license: String,
    /// Transcription notes.
    pub notes: Vec<String>,
    /// The 19 vectors.
    pub vectors: Vec<Bip340Vector>,
}

/// One BIP 340 vector.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bip340Vector {
    /// The CSV's index.
    pub index: u32,
    /// Secret key (signing vectors only).
    pub secret_key: Option<Hex>,
    /// x-only public key (32 bytes; some invalid vectors hold a non-key here).
    pub public_key: Hex,
    /// Auxiliary randomness (signing vectors only).
    pub aux_rand: Option<Hex>,
    /// The message (any length).
    pub message: Hex,
    /// 64-byte signature.
    pub signature: Hex,
    /// Whether verification must succeed.
    pub result: bool,
    /// The CSV's comment, "" when none.
    pub comment: String,
}

// ---------------------------------------------------------------------------
// BIP 341
// ---------------------------------------------------------------------------

/// `bip341/key-path.json`: BIP 341 `bip-0341/wallet-test-vectors.json`, the key-path-only
/// `scriptPubKey` entries and the whole `keyPathSpending` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bip341File {
    /// Where the values come from.
    pub source: String,
    /// The source's license.
    pub license: String,
    /// The source file's `version`.
    pub source_version: u32,
    /// Transcription notes.
    pub notes: Vec<String>,
    /// Key-path-only scriptPubKey vectors.
    pub script_pubkey: Vec<Bip341ScriptPubKey>,
    /// Key-path spending vectors.
    pub key_path_spending: Vec<Bip341KeyPathSpending>,
}

/// A key-path-only output (no script tree).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bip341ScriptPubKey {
    /// x-only internal key.
    pub internal_pubkey: Hex,
    /// Script tree root (null for key-path-only).
    pub merkle_root: Option<Hex>,
    /// TapTweak hash.
    pub tweak: Hex,
    /// x-only output key.
    pub tweaked_pubkey: Hex,
    /// `5120 || output key`.
    pub script_pubkey: Hex,
    /// Mainnet bech32m address.
    pub bip350_address: String,
}

/// One transaction with its spent outputs and signed inputs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bip341KeyPathSpending {
    /// The unsigned transaction.
    pub raw_unsigned_tx: Hex,
    /// Output spent by each input, in input order.
    pub utxos_spent: Vec<Bip341Utxo>,
    /// BIP 341 intermediary hashes.
    pub intermediary: Bip341Intermediary,
    /// The signed inputs.
    pub inputs: Vec<Bip341Input>,
    /// The signed transaction.
    pub fully_signed_tx: Hex,
}

/// A spent output.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bip341Utxo {
    /// Its scriptPubKey.
    pub script_pubkey: Hex,
    /// Its amount.
    pub amount_sats: u64,
}

/// BIP 341 intermediary hashes (single SHA-256).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bip341Intermediary {
    /// sha_amounts.
    pub hash_amounts: Hex,
    /// sha_outputs.
    pub hash_outputs: Hex,
    /// sha_prevouts.
    pub hash_prevouts: Hex,
    /// sha_scriptpubkeys.
    pub hash_script_pubkeys: Hex,
    /// sha_sequences.
    pub hash_sequences: Hex,
}

/// One signed input.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bip341Input {
    /// Input index in the transaction.
    pub txin_index: usize,
    /// The internal private key.
    pub internal_privkey: Hex,
    /// Script tree root committed in the tweak (null = key-path-only output).
    pub merkle_root: Option<Hex>,
    /// Sighash type (0 = SIGHASH_DEFAULT).
    pub hash_type: u8,
    /// x-only internal key.
    pub internal_pubkey: Hex,
    /// TapTweak hash.
    pub tweak: Hex,
    /// Tweaked private key.
    pub tweaked_privkey: Hex,
    /// `0x00 (epoch) || SigMsg`.
    pub sig_msg: Hex,
    /// Intermediary hashes used.
    pub precomputed_used: Vec<String>,
    /// TapSighash of sig_msg: the 32-byte message signed.
    pub sig_hash: Hex,
    /// Witness stack (one signature, 64 bytes or 65 with the sighash byte).
    pub witness: Vec<Hex>,
}

// ---------------------------------------------------------------------------
// BIP 86
// ---------------------------------------------------------------------------

/// `bip86/key-path.json`: the BIP 86 "Test vectors" section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bip86File {
    /// Where the values come from.
    pub source: String,
    /// The source's license.
    pub license: String,
    /// Transcription notes.
    pub notes: Vec<String>,
    /// The three addresses.
    pub vectors: Vec<Bip86Vector>,
}

/// One BIP 86 address.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bip86Vector {
    /// Description.
    pub label: String,
    /// BIP 32 path.
    pub path: String,
    /// x-only internal key.
    pub internal_key: Hex,
    /// x-only output key (TapTweak with no script tree).
    pub output_key: Hex,
    /// `5120 || output_key`.
    pub script_pubkey: Hex,
    /// Mainnet bech32m address.
    pub address: String,
}
