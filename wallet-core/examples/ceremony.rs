//! A 2-of-3 key generation without a dealer: three members who each hold
//! only their own keystore create a group by exchanging documents, and each
//! ends with its share installed in its own home.
//!
//! ```sh
//! cargo run -p wallet-core --example ceremony
//! ```
//!
//! The documents could travel by USB stick, email or ticket: round-1
//! broadcasts are signed by their sender's identity key, round-2 shares are
//! signed and then sealed to their recipient, and every message is checked
//! against the cards whose fingerprint the members compared over another
//! channel. Whoever carries the files can stop the ceremony, not subvert it.
#![allow(clippy::print_stdout, clippy::print_stderr)] // prints by design

use std::error::Error;

use rand_core::{OsRng, RngCore};
use wallet_core::bitcoin::Network;
use wallet_core::ceremony::dkg::{self, Ceremony, Round1Document, Round2Document};
use wallet_core::ceremony::state::{self, MemberState};
use wallet_core::ceremony::{CeremonyError, IdentityCard, Role};
use wallet_core::keystore::{self, Keystore};
use wallet_core::{Label, MemoryKeystore, Secp256k1Tr};

type Suite = Secp256k1Tr;

/// One member: its label, its keystore and its home directory.
struct Member {
    label: Label,
    keystore: MemoryKeystore,
    home: tempfile::TempDir,
}

fn main() -> Result<(), Box<dyn Error>> {
    let members = ["alice", "bob", "carol"]
        .into_iter()
        .map(|name| -> Result<Member, Box<dyn Error>> {
            Ok(Member {
                label: Label::new(name)?,
                keystore: MemoryKeystore::new(),
                home: tempfile::tempdir()?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Each member publishes an identity card (label, role, identity key) and
    // reads its fingerprint out to whoever receives the card.
    let mut cards = Vec::new();
    for m in &members {
        let card = IdentityCard::new(
            m.label.clone(),
            Role::Signer,
            m.keystore.identity_public_key()?,
        );
        println!("{}'s card, fingerprint {}", m.label, card.fingerprint());
        cards.push(card);
    }

    // The convener picks a random nonce and announces the ceremony
    // fingerprint (suite, threshold, every member's identifier, label and
    // identity key, the nonce) over another channel.
    let mut nonce = [0u8; 32];
    OsRng.fill_bytes(&mut nonce);
    let announced = Ceremony::<Suite>::new(2, cards.clone(), nonce)?
        .fingerprint()
        .to_string();
    println!("ceremony fingerprint {announced} (announced by phone)");

    // A courier who swaps bob's card for its own look-alike gives alice
    // another ceremony: its fingerprint differs, and she stops before round 1.
    let courier = MemoryKeystore::new();
    let mut swapped = cards.clone();
    swapped[1] = IdentityCard::new(
        Label::new("bob")?,
        Role::Signer,
        courier.identity_public_key()?,
    );
    match Ceremony::<Suite>::new(2, swapped, nonce)?.confirm(&announced) {
        Err(refusal @ CeremonyError::FingerprintMismatch { .. }) => {
            println!("with a swapped card: {refusal}");
        }
        other => return Err(format!("a swapped card must be refused, got {other:?}").into()),
    }

    // Round 1: each member builds the ceremony from the cards it holds,
    // confirms the announced fingerprint, and broadcasts a signed message.
    // Its secret state waits in its keystore.
    let ceremony = Ceremony::<Suite>::new(2, cards, nonce)?;
    let mut round1: Vec<Round1Document<Suite>> = Vec::new();
    for m in &members {
        let confirmed = ceremony.clone().confirm(&announced)?;
        round1.push(dkg::round1(&confirmed, &m.keystore, &mut OsRng)?);
    }
    println!("round 1: {} signed broadcasts", round1.len());

    // Round 2: each member checks that the round-1 set has one authentic
    // message from every member, verifies the proofs, and seals a signed
    // share to each peer.
    let mut round2: Vec<(Label, Round2Document<Suite>)> = Vec::new();
    for m in &members {
        let out = dkg::round2(&ceremony, &m.keystore, &round1, &mut OsRng)?;
        println!(
            "round 2: {} saw round-1 set {}…, sealed {} shares",
            m.label,
            hex::encode(&out.round1_set[..4]),
            out.messages.len()
        );
        round2.extend(out.messages);
    }

    // Finish: each member opens the shares sealed to it, derives its key
    // share and the group, installs them in its home (share in the
    // keystore, group.json and roster.json, crash-atomically), and forgets
    // the ceremony's state.
    let mut fingerprints = Vec::new();
    for m in &members {
        let to_me: Vec<_> = round2
            .iter()
            .filter(|(to, _)| *to == m.label)
            .map(|(_, doc)| doc.clone())
            .collect();
        let finished = dkg::finish(&ceremony, &m.keystore, &round1, &to_me)?;
        MemberState::new(m.home.path()).install(
            &m.keystore,
            &finished.share,
            &finished.group,
            &finished.roster,
            &mut state::no_crash,
        )?;
        dkg::forget(&ceremony, &m.keystore)?;

        // Later, a signer starts from its home: the group and roster from
        // its files, its share from its keystore.
        let home = MemberState::new(m.home.path());
        let group = home
            .group::<Suite>()?
            .ok_or("the group was just installed")?;
        let roster = home.roster(&group)?;
        let share = keystore::load_share(&m.keystore, &group, finished.share.identifier())?;
        println!(
            "{}: share {} of group {}, {} roster keys, address {}, group fingerprint {}",
            m.label,
            share.label(),
            group.id().short(),
            roster.identities(&group)?.len(),
            group.taproot().address(Network::Bitcoin),
            finished.fingerprint
        );
        fingerprints.push(finished.fingerprint);
    }

    // Everyone compares the group fingerprint before funding the address.
    if fingerprints.iter().any(|f| *f != fingerprints[0]) {
        return Err("the members ended with different groups".into());
    }
    println!("all three group fingerprints match: fund the address");
    Ok(())
}
