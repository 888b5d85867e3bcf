//! A 2-of-3 signature with a trusted dealer, the rounds run by hand.
//!
//! ```sh
//! cargo run -p wallet-core --example dealer_signing
//! ```
//!
//! This is the raw protocol: [`wallet_core::Signer`] runs the same rounds
//! with nonces persisted take-once in a keystore, its own sighashes, a
//! policy and an audit log (see the `withdrawal` example).
#![allow(clippy::print_stdout, clippy::print_stderr)] // prints by design

use std::collections::BTreeMap;
use std::error::Error;

use rand_core::OsRng;
use wallet_core::bitcoin::Network;
use wallet_core::keygen::{self, Identifiers};
use wallet_core::{signing, Label, Secp256k1Tr};

fn main() -> Result<(), Box<dyn Error>> {
    // The dealer draws a key and splits it: one share per label, any 2 sign.
    let labels = ["alice", "bob", "carol"]
        .map(Label::new)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let dealt = keygen::dealer::<Secp256k1Tr, _>(2, &labels, Identifiers::Default, &mut OsRng)?;
    let group = &dealt.group;
    println!(
        "group {}: {}-of-{}, address {}",
        group.id().short(),
        group.min_signers(),
        group.max_signers(),
        group.taproot().address(Network::Bitcoin)
    );

    // What is signed: 32 bytes each signer computed itself (for a
    // withdrawal, an input's BIP341 sighash).
    let message = [42u8; 32];

    // Round 1: alice and carol draw nonces and publish their commitments.
    // A round-1 state is moved into round 2, so it cannot be used twice.
    let (alice, carol) = (&dealt.shares[0], &dealt.shares[2]);
    let (alice_state, alice_commitments) = signing::commit(alice, &mut OsRng);
    let (carol_state, carol_commitments) = signing::commit(carol, &mut OsRng);
    println!("round 1: {} and {} committed", alice.label(), carol.label());

    // The coordinator (untrusted) puts the commitments and the message in a package.
    let commitments = BTreeMap::from([
        (*alice.identifier(), alice_commitments),
        (*carol.identifier(), carol_commitments),
    ]);
    let package = signing::build_package(group, commitments, &message)?;

    // Round 2: each signer checks the package against the message *it*
    // expects (and its own commitment) before computing its share.
    let shares = BTreeMap::from([
        (
            *alice.identifier(),
            signing::sign(alice, group, &package, &message, alice_state)?,
        ),
        (
            *carol.identifier(),
            signing::sign(carol, group, &package, &message, carol_state)?,
        ),
    ]);
    println!("round 2: {} signature shares", shares.len());

    // Aggregation verifies the result under the Taproot output key, or names
    // every signer whose share is invalid.
    let signature = signing::aggregate(group, &package, &shares)?;
    signing::verify(group, &message, &signature)?;
    println!(
        "BIP340 signature {} verifies under output key {}",
        hex::encode(signature.serialize()?),
        group.taproot().output_key()
    );

    // A package for another message is refused before any share exists.
    let (bob, other) = (&dealt.shares[1], [7u8; 32]);
    let (bob_state, bob_commitments) = signing::commit(bob, &mut OsRng);
    let (_, alice_commitments) = signing::commit(alice, &mut OsRng);
    let swapped = signing::build_package(
        group,
        BTreeMap::from([
            (*alice.identifier(), alice_commitments),
            (*bob.identifier(), bob_commitments),
        ]),
        &other,
    )?;
    match signing::sign(bob, group, &swapped, &message, bob_state) {
        Err(refused) => println!("bob refuses a package for other bytes: {refused}"),
        Ok(_) => return Err("bob signed a package for another message".into()),
    }
    Ok(())
}
