//! Kura's own known-answer vectors: one fixed-seed example of every document
//! kind Kura writes, for both suites. The bytes are a contract: the test
//! `known_answer` fails when any of them changes, and
//! `cargo run -p test-vectors --bin regenerate` rewrites them deliberately
//! (review the diff: it is a format change).
//!
//! Not covered: the software keystore's age files, whose encryption draws
//! randomness inside the age crate (their plaintext is a `key-share` or
//! `round1-nonces`-style document covered here).

use std::collections::BTreeMap;
use std::path::PathBuf;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use wallet_core::format::{self, canonical_bytes, FormatError};
use wallet_core::frost_core::Identifier;
use wallet_core::keygen::{self, dkg, Identifiers};
use wallet_core::keystore::SessionId;
use wallet_core::messages::{
    ceremony_id, dkg_round2_context, CommitmentsMessage, DkgRound1Document, DkgRound2Document,
    PackageMessage, ShareMessage, SignatureMessage,
};
use wallet_core::{signing, KuraSuite, Label, Secp256k1, Secp256k1Tr};

/// The directory of the known-answer files.
pub fn dir() -> PathBuf {
    crate::crate_dir().join("known-answer")
}

/// One known-answer file: its path under [`dir`] and its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAnswer {
    /// Relative path, e.g. `secp256k1-tr/group.json`.
    pub path: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Why generation failed (never, for the fixed inputs; the type keeps the
/// generator free of panics).
#[derive(Debug)]
pub struct GenerateError(pub String);

impl std::fmt::Display for GenerateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GenerateError {}

fn err(e: impl std::fmt::Display) -> GenerateError {
    GenerateError(e.to_string())
}

impl From<FormatError> for GenerateError {
    fn from(e: FormatError) -> Self {
        err(e)
    }
}

/// Every known-answer file, generated from fixed seeds.
///
/// # Errors
/// Only if wallet-core fails on these fixed inputs.
pub fn generate() -> Result<Vec<KnownAnswer>, GenerateError> {
    let mut out = generate_suite::<Secp256k1Tr>()?;
    out.extend(generate_suite::<Secp256k1>()?);
    out.push(state_anchors());
    Ok(out)
}

fn generate_suite<C: KuraSuite>() -> Result<Vec<KnownAnswer>, GenerateError> {
    let suite = C::SUITE.as_str();
    let mut rng = ChaCha20Rng::seed_from_u64(0x6b757261); // "kura"
    let labels: Vec<Label> = ["alice", "bob", "carol"]
        .iter()
        .map(|l| Label::new(*l))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let dealt = keygen::dealer::<C, _>(2, &labels, Identifiers::Default, &mut rng).map_err(err)?;
    let group = &dealt.group;
    let [alice, _bob, carol] = dealt.shares.as_slice() else {
        return Err(err("dealer returned the wrong number of shares"));
    };
    let mut files = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>| {
        files.push(KnownAnswer {
            path: format!("{suite}/{name}"),
            bytes,
        })
    };
    add("group.json", group.to_document()?);
    add(
        "key-share.json",
        alice.to_secret_document()?.expose().to_vec(),
    );

    let session = SessionId::from_bytes([0x5e; 32]);
    let message = b"kura known-answer message, 32 b.".to_vec();
    let (alice_state, alice_c) = signing::commit(alice, &mut rng);
    let (carol_state, carol_c) = signing::commit(carol, &mut rng);
    let commitments = CommitmentsMessage {
        session,
        participant: *alice.identifier(),
        commitments: alice_c,
    };
    add(
        "signing-commitments.json",
        format::encode(group.id(), &commitments)?,
    );
    let mut canonical = canonical_bytes(group.id(), &commitments)?;
    canonical.push(b'\n');
    add("signing-commitments.canonical", canonical);

    let package = signing::build_package(
        group,
        BTreeMap::from([
            (*alice.identifier(), alice_c),
            (*carol.identifier(), carol_c),
        ]),
        &message,
    )
    .map_err(err)?;
    add(
        "signing-package.json",
        format::encode(group.id(), &PackageMessage::from_package(session, &package))?,
    );
    let alice_share = signing::sign(alice, group, &package, &message, alice_state).map_err(err)?;
    let carol_share = signing::sign(carol, group, &package, &message, carol_state).map_err(err)?;
    add(
        "signature-share.json",
        format::encode(
            group.id(),
            &ShareMessage {
                session,
                participant: *alice.identifier(),
                share: alice_share,
            },
        )?,
    );
    let shares = BTreeMap::from([
        (*alice.identifier(), alice_share),
        (*carol.identifier(), carol_share),
    ]);
    let signature = signing::aggregate(group, &package, &shares).map_err(err)?;
    add(
        "signature.json",
        format::encode(
            group.id(),
            &SignatureMessage {
                session,
                message,
                signature,
            },
        )?,
    );

    // DKG documents: alice's round-1 broadcast and her round-2 message to bob,
    // sealed to a fixed identity key.
    let ids: Vec<Identifier<C>> = (1..=3u16)
        .map(Identifier::try_from)
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let roster: BTreeMap<_, _> = ids.iter().copied().zip(labels.iter().cloned()).collect();
    let ceremony = ceremony_id::<C>(2, &roster, &[0xce; 32]);
    let mut r1 = Vec::new();
    let mut secrets = Vec::new();
    for (id, label) in &roster {
        let (s, m) = dkg::part1::<C, _>(*id, label.clone(), 3, 2, &mut rng).map_err(err)?;
        secrets.push(s);
        r1.push(m);
    }
    let first = r1
        .first()
        .cloned()
        .ok_or_else(|| err("no round-1 message"))?;
    add(
        "dkg-round1.json",
        format::encode(&ceremony, &DkgRound1Document { message: first })?,
    );
    let secret = secrets.into_iter().next().ok_or_else(|| err("no secret"))?;
    let (_, r2) = dkg::part2(secret, &r1).map_err(err)?;
    let to_bob = r2
        .into_iter()
        .next()
        .ok_or_else(|| err("no round-2 message"))?;
    let bob_identity = wallet_core::identity::SoftwareIdentity::generate(&mut rng);
    let plain = serde_json::to_vec(&to_bob).map_err(err)?;
    let sealed = bob_identity
        .public_key()
        .seal(
            &plain,
            &dkg_round2_context(&ceremony, &to_bob.from, &to_bob.to),
            &mut rng,
        )
        .map_err(err)?;
    add(
        "dkg-round2.json",
        format::encode(
            &ceremony,
            &DkgRound2Document::<C> {
                from: to_bob.from,
                to: to_bob.to,
                sealed,
            },
        )?,
    );
    Ok(files)
}

/// The keystore's state anchor (audit head and pinned policy) in its 76-byte
/// form: a new keystore's, and one with a log of 7 entries and a policy.
fn state_anchors() -> KnownAnswer {
    use wallet_core::keystore::{AuditHead, StateAnchor};
    let pinned = StateAnchor::NEW
        .with_audit(AuditHead {
            seq: 7,
            hash: [0xa7; 32],
        })
        .with_policy([0x5c; 32]);
    let mut text = String::new();
    for (name, anchor) in [("new", StateAnchor::NEW), ("pinned", pinned)] {
        text.push_str(&format!("{name} {}\n", hex::encode(anchor.to_bytes())));
    }
    KnownAnswer {
        path: "keystore/state-anchor.txt".into(),
        bytes: text.into_bytes(),
    }
}
