//! A fresh address for every deposit: the group's extended public key and
//! the non-hardened children every co-signer derives for itself.
//!
//! There is no FROST derivation standard. Kura uses the construction BIP328
//! defines for MuSig2 aggregate keys, which applies to any group key that
//! looks like a single key: the **group xpub** has depth 0, parent
//! fingerprint 0, child number 0, the group's internal key (its verifying
//! key, the BIP86 internal key of [`crate::taproot`]) as its public key and
//! the fixed chain code [`GROUP_CHAIN_CODE`] = SHA256("MuSig2MuSig2MuSig2").
//! Children are BIP32 public derivations (so any wallet derives them from
//! the xpub alone) and only non-hardened steps exist: hardened ones need the
//! group secret, which nobody holds.
//!
//! A child at path `p` is the group key plus `t(p)·G`, where `t(p)` is the
//! sum of BIP32's `I_L` along the path ([`ChildKeys::tweak`]). Adding the
//! same public `t(p)` to every member's share and verifying share gives a
//! sharing of the child's secret (any `t` Lagrange coefficients sum to 1),
//! so FROST signs under the child with the same shares
//! ([`crate::PublicGroup::derive_child`], [`crate::KeyShare::derive_child`]).
//! The child is then the BIP86 internal key of its address: derive first,
//! TapTweak second.
//!
//! Kura's wallet is the BIP389 multipath descriptor
//! `tr([fp]xpub/<0;1>/*)`: chain 0 receives, chain 1 is change.
//!
//! ```
//! # use wallet_core::hd::{ChildPath, GroupXpub};
//! # let group = kura_testkit::deal::<wallet_core::Secp256k1Tr>(2, 3, 7).group;
//! let xpub = GroupXpub::of(&group);
//! let network = wallet_core::bitcoin::Network::Regtest;
//! println!("{}", xpub.descriptor(network));
//! let deposit = xpub.derive(&ChildPath::receive(5)?)?;
//! println!("deposit address 5: {}", deposit.taproot().address(network));
//! # Ok::<(), wallet_core::hd::HdError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use bitcoin::bip32::{ChainCode, ChildNumber, DerivationPath, Fingerprint, Xpub};
use bitcoin::key::TapTweak;
use bitcoin::secp256k1::{PublicKey, Secp256k1, XOnlyPublicKey};
use bitcoin::{Network, NetworkKind};

use crate::group::{verifying_key_bytes, PublicGroup};
use crate::suite::Secp256k1Tr;
use crate::taproot::{descriptor_checksum, TaprootKeys};

/// BIP328's chain code, SHA256("MuSig2MuSig2MuSig2").
pub const GROUP_CHAIN_CODE: [u8; 32] = [
    0x86, 0x80, 0x87, 0xca, 0x02, 0xa6, 0xf9, 0x74, 0xc4, 0x59, 0x89, 0x24, 0xc3, 0x6b, 0x57, 0x76,
    0x2d, 0x32, 0xcb, 0x45, 0x71, 0x71, 0x67, 0xe3, 0x00, 0x62, 0x2c, 0x71, 0x67, 0xe3, 0x89, 0x65,
];

/// The deepest path a signer derives (Kura's own paths have two steps).
pub const MAX_DEPTH: usize = 8;

/// Why a path is not one Kura derives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HdError {
    /// A hardened step: only the holder of the whole secret could derive it.
    #[error(
        "step {step} of {path} is hardened; a threshold group derives non-hardened children only"
    )]
    Hardened {
        /// The path as given.
        path: String,
        /// Which step (0-based).
        step: usize,
    },
    /// Longer than [`MAX_DEPTH`].
    #[error("{path} has {depth} steps, more than the {MAX_DEPTH} a signer derives")]
    TooDeep {
        /// The path as given.
        path: String,
        /// Its length.
        depth: usize,
    },
    /// An index of 2^31 or more where a non-hardened index is wanted.
    #[error("index {0} is not a non-hardened index (below 2^31)")]
    Index(u32),
    /// Not a derivation path.
    #[error("not a derivation path: {0}")]
    Malformed(String),
    /// The derivation reached an invalid key (probability below 2^-127).
    #[error("{0} derives no valid key; use the next index")]
    Invalid(String),
}

/// Which of the wallet's two chains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Chain {
    /// Chain 0: deposit addresses.
    Receive,
    /// Chain 1: change.
    Change,
}

impl Chain {
    /// The chain's step (0 or 1).
    pub fn index(self) -> u32 {
        match self {
            Chain::Receive => 0,
            Chain::Change => 1,
        }
    }
}

/// A non-hardened derivation path below the group xpub, at most
/// [`MAX_DEPTH`] steps (the empty path is the group key itself).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChildPath(Vec<u32>);

impl ChildPath {
    /// The group key itself (`m`).
    pub fn root() -> Self {
        ChildPath(Vec::new())
    }

    /// `m/<chain>/<index>`.
    ///
    /// # Errors
    /// [`HdError::Index`] for an index of 2^31 or more.
    pub fn new(chain: Chain, index: u32) -> Result<Self, HdError> {
        if index >= 1 << 31 {
            return Err(HdError::Index(index));
        }
        Ok(ChildPath(vec![chain.index(), index]))
    }

    /// Deposit address `index`: `m/0/<index>`.
    ///
    /// # Errors
    /// [`HdError::Index`].
    pub fn receive(index: u32) -> Result<Self, HdError> {
        Self::new(Chain::Receive, index)
    }

    /// Change address `index`: `m/1/<index>`.
    ///
    /// # Errors
    /// [`HdError::Index`].
    pub fn change(index: u32) -> Result<Self, HdError> {
        Self::new(Chain::Change, index)
    }

    /// Checks a BIP32 path (from a PSBT's key origin): non-hardened steps
    /// only, at most [`MAX_DEPTH`].
    ///
    /// # Errors
    /// [`HdError::Hardened`], [`HdError::TooDeep`].
    pub fn from_bip32(path: &DerivationPath) -> Result<Self, HdError> {
        let steps: &[ChildNumber] = path.as_ref();
        if steps.len() > MAX_DEPTH {
            return Err(HdError::TooDeep {
                path: path.to_string(),
                depth: steps.len(),
            });
        }
        steps
            .iter()
            .enumerate()
            .map(|(step, n)| match n {
                ChildNumber::Normal { index } => Ok(*index),
                ChildNumber::Hardened { .. } => Err(HdError::Hardened {
                    path: path.to_string(),
                    step,
                }),
            })
            .collect::<Result<_, _>>()
            .map(ChildPath)
    }

    /// The path as BIP32 child numbers.
    pub fn to_bip32(&self) -> DerivationPath {
        self.0
            .iter()
            .map(|i| ChildNumber::Normal { index: *i })
            .collect::<Vec<_>>()
            .into()
    }

    /// The steps.
    pub fn steps(&self) -> &[u32] {
        &self.0
    }

    /// Whether this is the group key itself.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `Some(index)` when this is Kura's path `m/<chain>/<index>`.
    pub fn index_on(&self, chain: Chain) -> Option<u32> {
        match self.0.as_slice() {
            [c, i] if *c == chain.index() => Some(*i),
            _ => None,
        }
    }
}

impl fmt::Display for ChildPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m")?;
        for i in &self.0 {
            write!(f, "/{i}")?;
        }
        Ok(())
    }
}

impl FromStr for ChildPath {
    type Err = HdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let path = DerivationPath::from_str(s).map_err(|e| HdError::Malformed(e.to_string()))?;
        Self::from_bip32(&path)
    }
}

/// The public tweak that takes the group key to a child: the sum of BIP32's
/// `I_L` along the path, a secp256k1 scalar (big-endian). Public: anyone
/// holding the xpub computes it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ChildTweak([u8; 32]);

impl ChildTweak {
    /// No tweak: the group key itself.
    pub const ZERO: ChildTweak = ChildTweak([0u8; 32]);

    /// The scalar's 32 big-endian bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// Whether it is zero (the root: nothing to add).
    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; 32]
    }
}

impl fmt::Debug for ChildTweak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChildTweak({})", hex::encode(self.0))
    }
}

/// A child of the group xpub: its path, its key, the tweak that reaches it
/// and its BIP86 Taproot keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildKeys {
    path: ChildPath,
    public_key: PublicKey,
    tweak: ChildTweak,
    taproot: TaprootKeys,
}

impl ChildKeys {
    /// Its path below the group xpub.
    pub fn path(&self) -> &ChildPath {
        &self.path
    }

    /// The child key (with its parity, as BIP32 derives it).
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The tweak from the group key to this one.
    pub fn tweak(&self) -> &ChildTweak {
        &self.tweak
    }

    /// Its Taproot keys: the child is the internal key, the output key its
    /// BIP86 TapTweak.
    pub fn taproot(&self) -> &TaprootKeys {
        &self.taproot
    }
}

/// The group's extended public key (BIP328 construction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupXpub {
    xpub: Xpub,
    root: TaprootKeys,
}

impl GroupXpub {
    /// The xpub of `group`.
    pub fn of(group: &PublicGroup<Secp256k1Tr>) -> Self {
        let root = group.taproot();
        let compressed = verifying_key_bytes(group.verifying_key());
        // A group verifying key is a valid point, so this parses; the
        // fallback (the internal key with even y) is never taken.
        let public_key = PublicKey::from_slice(&compressed).unwrap_or_else(|_| {
            root.internal_key()
                .public_key(bitcoin::secp256k1::Parity::Even)
        });
        GroupXpub {
            xpub: Xpub {
                network: NetworkKind::Main,
                depth: 0,
                parent_fingerprint: Fingerprint::default(),
                child_number: ChildNumber::Normal { index: 0 },
                public_key,
                chain_code: ChainCode::from(GROUP_CHAIN_CODE),
            },
            root,
        }
    }

    /// The xpub as a BIP32 extended key for `network` (`xpub…` on mainnet,
    /// `tpub…` on the test networks).
    pub fn xpub(&self, network: Network) -> Xpub {
        Xpub {
            network: NetworkKind::from(network),
            ..self.xpub
        }
    }

    /// Its fingerprint: the key origin of every child in a PSBT.
    pub fn fingerprint(&self) -> Fingerprint {
        self.xpub.fingerprint()
    }

    /// The group key's own Taproot keys (`m`, the address of a group
    /// without derivation).
    pub fn root(&self) -> &TaprootKeys {
        &self.root
    }

    /// Derives the child at `path`.
    ///
    /// # Errors
    /// [`HdError::Invalid`] in the negligible case that a step gives no
    /// valid key.
    pub fn derive(&self, path: &ChildPath) -> Result<ChildKeys, HdError> {
        let secp = Secp256k1::verification_only();
        let mut xpub = self.xpub;
        let mut tweak = k256::Scalar::ZERO;
        for index in path.steps() {
            let n = ChildNumber::from_normal_idx(*index).map_err(|_| HdError::Index(*index))?;
            let (step, chain_code) = xpub
                .ckd_pub_tweak(n)
                .map_err(|_| HdError::Invalid(path.to_string()))?;
            let child = xpub
                .public_key
                .add_exp_tweak(&secp, &step.into())
                .map_err(|_| HdError::Invalid(path.to_string()))?;
            tweak += scalar_of(&step.secret_bytes())
                .ok_or_else(|| HdError::Invalid(path.to_string()))?;
            xpub = Xpub {
                depth: xpub.depth.saturating_add(1),
                parent_fingerprint: xpub.fingerprint(),
                child_number: n,
                public_key: child,
                chain_code,
                network: xpub.network,
            };
        }
        let (internal, _) = xpub.public_key.x_only_public_key();
        let (output, _) = internal.tap_tweak(&secp, None);
        Ok(ChildKeys {
            path: path.clone(),
            public_key: xpub.public_key,
            tweak: ChildTweak(tweak.to_bytes().into()),
            taproot: TaprootKeys::from_parts(internal, output),
        })
    }

    /// The x-only internal key of the child at `path` (what a PSBT's
    /// `tap_key_origins` maps).
    ///
    /// # Errors
    /// As [`GroupXpub::derive`].
    pub fn internal_key(&self, path: &ChildPath) -> Result<XOnlyPublicKey, HdError> {
        Ok(self.derive(path)?.taproot.internal_key())
    }

    /// The key expression `[fingerprint]xpub` of the descriptors.
    fn key_expression(&self, network: Network) -> String {
        format!("[{}]{}", self.fingerprint(), self.xpub(network))
    }

    /// The wallet's BIP389 multipath descriptor, with its BIP380
    /// checksum: `tr([fp]xpub/<0;1>/*)#…` (receive and change; Bitcoin
    /// Core's `importdescriptors` splits it into both).
    pub fn descriptor(&self, network: Network) -> String {
        with_checksum(format!("tr({}/<0;1>/*)", self.key_expression(network)))
    }

    /// One chain's descriptor: `tr([fp]xpub/0/*)#…` or `…/1/*`.
    pub fn chain_descriptor(&self, chain: Chain, network: Network) -> String {
        with_checksum(format!(
            "tr({}/{}/*)",
            self.key_expression(network),
            chain.index()
        ))
    }
}

fn with_checksum(descriptor: String) -> String {
    // Every character written above is in BIP380's character set.
    match descriptor_checksum(&descriptor) {
        Some(sum) => format!("{descriptor}#{sum}"),
        None => descriptor,
    }
}

fn scalar_of(bytes: &[u8; 32]) -> Option<k256::Scalar> {
    use k256::elliptic_curve::PrimeField;
    Option::from(k256::Scalar::from_repr((*bytes).into()))
}

impl PublicGroup<Secp256k1Tr> {
    /// The group's extended public key ([`GroupXpub`]).
    pub fn xpub(&self) -> GroupXpub {
        GroupXpub::of(self)
    }
}

/// The most indices of a chain [`fill_psbt`] searches (each costs one
/// derivation, about 0.1 ms).
pub const MAX_LOOKAHEAD: u32 = 100_000;

/// What [`fill_psbt`] added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filled {
    /// The inputs it gave a derivation (index, path).
    pub inputs: Vec<(usize, ChildPath)>,
    /// The outputs it gave a derivation (index, path): change-chain outputs.
    pub outputs: Vec<(usize, ChildPath)>,
}

/// Fills the BIP371 fields of the group's own inputs and change outputs of
/// a PSBT that lacks them (one made by a wallet that does not write key
/// origins): for every input, and every output, whose script is a child of
/// `xpub` among the first `lookahead` indices (at most [`MAX_LOOKAHEAD`]) of a chain (inputs: both
/// chains; outputs: the change chain), it writes `tap_internal_key` and
/// `tap_key_origins` (the group's fingerprint, the path). Entries already
/// there are left alone: signers check them whoever wrote them. This is
/// the requester's convenience, never a signer's trust: a signer derives
/// every key itself.
///
/// # Errors
/// [`HdError::Invalid`] when an index derives no key (negligible).
pub fn fill_psbt(
    psbt: &mut bitcoin::psbt::Psbt,
    xpub: &GroupXpub,
    lookahead: u32,
) -> Result<Filled, HdError> {
    use std::collections::HashMap;
    let mut filled = Filled::default();
    let mut known: Option<HashMap<bitcoin::ScriptBuf, ChildKeys>> = None;
    let table = |chains: &[Chain]| -> Result<HashMap<bitcoin::ScriptBuf, ChildKeys>, HdError> {
        let mut map = HashMap::new();
        for chain in chains {
            for index in 0..lookahead.min(MAX_LOOKAHEAD) {
                let keys = xpub.derive(&ChildPath::new(*chain, index)?)?;
                map.insert(keys.taproot().script_pubkey(), keys);
            }
        }
        Ok(map)
    };
    let fingerprint = xpub.fingerprint();
    let ours = |origins: &std::collections::BTreeMap<
        XOnlyPublicKey,
        (Vec<bitcoin::TapLeafHash>, bitcoin::bip32::KeySource),
    >| origins.values().any(|(_, (fp, _))| *fp == fingerprint);
    for (i, input) in psbt.inputs.iter_mut().enumerate() {
        let Some(utxo) = &input.witness_utxo else {
            continue;
        };
        if ours(&input.tap_key_origins) || utxo.script_pubkey == xpub.root().script_pubkey() {
            continue;
        }
        if known.is_none() {
            known = Some(table(&[Chain::Receive, Chain::Change])?);
        }
        if let Some(keys) = known.as_ref().and_then(|k| k.get(&utxo.script_pubkey)) {
            let key = keys.taproot().internal_key();
            input.tap_internal_key = Some(key);
            input
                .tap_key_origins
                .insert(key, (Vec::new(), (fingerprint, keys.path().to_bip32())));
            filled.inputs.push((i, keys.path().clone()));
        }
    }
    let mut change = None;
    for (i, (output, txout)) in psbt
        .outputs
        .iter_mut()
        .zip(&psbt.unsigned_tx.output)
        .enumerate()
    {
        if ours(&output.tap_key_origins) || txout.script_pubkey == xpub.root().script_pubkey() {
            continue;
        }
        if change.is_none() {
            change = Some(table(&[Chain::Change])?);
        }
        if let Some(keys) = change.as_ref().and_then(|c| c.get(&txout.script_pubkey)) {
            let key = keys.taproot().internal_key();
            output.tap_internal_key = Some(key);
            output
                .tap_key_origins
                .insert(key, (Vec::new(), (fingerprint, keys.path().to_bip32())));
            filled.outputs.push((i, keys.path().clone()));
        }
    }
    Ok(filled)
}
