//! Dealt groups and honest signing rounds, for tests of the FROST layer.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::SeedableRng;
use wallet_core::frost_core::{Identifier, Signature};
use wallet_core::keygen::{self, Dealt, Identifiers};
use wallet_core::signing;
use wallet_core::{KeyShare, KuraSuite, Label, PublicGroup, Secp256k1Tr};

/// A deterministic RNG: the same `seed`, the same keys and nonces.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Labels `signer-1` to `signer-n`.
pub fn labels(n: u16) -> Vec<Label> {
    (1..=n)
        .map(|i| Label::new(format!("signer-{i}")).unwrap())
        .collect()
}

/// A `t`-of-`n` group dealt by a trusted dealer, labelled by [`labels`],
/// with the default identifiers `1..=n`; the same `seed`, the same group.
pub fn deal<C: KuraSuite>(t: u16, n: u16, seed: u64) -> Dealt<C> {
    keygen::dealer::<C, _>(t, &labels(n), Identifiers::Default, &mut rng(seed)).unwrap()
}

/// Runs both rounds honestly with `signers` over `message` and aggregates.
///
/// # Errors
/// The aggregation's (or a round's) refusal, e.g. too few signers.
pub fn sign_with<C: KuraSuite>(
    group: &PublicGroup<C>,
    signers: &[&KeyShare<C>],
    message: &[u8],
    seed: u64,
) -> Result<Signature<C>, signing::AggregateError<C>> {
    let mut rng = rng(seed);
    let mut states = Vec::new();
    let mut commitments = BTreeMap::new();
    for s in signers {
        let (state, c) = signing::commit(*s, &mut rng);
        commitments.insert(*s.identifier(), c);
        states.push(state);
    }
    let package = signing::build_package(group, commitments, message)?;
    let mut shares: BTreeMap<Identifier<C>, _> = BTreeMap::new();
    for (s, state) in signers.iter().zip(states) {
        let share = signing::sign(*s, group, &package, message, state)?;
        shares.insert(*s.identifier(), share);
    }
    signing::aggregate(group, &package, &shares)
}

/// Checks a tr-suite signature with libsecp256k1's BIP340 verifier against
/// the group's output key (x-only), independently of frost.
pub fn libsecp_verify_tr(
    group: &PublicGroup<Secp256k1Tr>,
    msg32: &[u8; 32],
    sig: &Signature<Secp256k1Tr>,
) -> bool {
    use bitcoin::secp256k1::{schnorr, Message, Secp256k1, XOnlyPublicKey};
    let secp = Secp256k1::verification_only();
    let out = group.output_key().serialize().unwrap();
    let xonly = XOnlyPublicKey::from_slice(&out[1..]).unwrap();
    let sig = schnorr::Signature::from_slice(&sig.serialize().unwrap()).unwrap();
    secp.verify_schnorr(&sig, &Message::from_digest(*msg32), &xonly)
        .is_ok()
}
