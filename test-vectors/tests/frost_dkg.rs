//! FROST DKG vectors run through wallet-core's three DKG parts.
//!
//! - `rfc9591/secp256k1-dkg.json`: ZF frost v3.0.0 `frost-secp256k1/tests/helpers/vectors_dkg.json`
//!   (FROST(secp256k1, SHA-256); RFC 9591 itself has no DKG).
//! - `frost-secp256k1-tr/secp256k1-tr-dkg.json`: ZF frost v3.0.0
//!   `frost-secp256k1-tr/tests/helpers/vectors_dkg.json`; the group key and
//!   final shares include frost's post-DKG BIP341 TapTweak.
//!
//! Reading the files: participant i's `signing_shares` are the round-2 shares
//! it RECEIVED, keyed by sender: `{from: j, signing_share: f_j(i)}`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{flip_last_bit, id, label};
use test_vectors::outside::{load, DkgParticipant, DkgVector};
use test_vectors::rng::ReplayRng;
use wallet_core::frost_core::keys::dkg::{round1, round2};
use wallet_core::frost_core::keys::{SigningShare, VerifiableSecretSharingCommitment};
use wallet_core::frost_core::Signature;
use wallet_core::keygen::dkg::{self, Round1Message, Round2Message};
use wallet_core::keygen::KeygenError;
use wallet_core::{KuraSuite, Secp256k1, Secp256k1Tr};

/// Bytes the replay RNG hands part 1 for its proof-of-knowledge nonce. The
/// vector does not record that nonce, so our proof differs from the vector's
/// (only the VSS commitment is compared); any valid nonzero scalar works.
const POK_NONCE_BYTES: [u8; 32] = [0x42; 32];

/// The round-1 broadcast of `p` as recorded in the vector.
fn vector_round1<C: KuraSuite>(p: &DkgParticipant) -> Round1Message<C> {
    let commitment = VerifiableSecretSharingCommitment::<C>::deserialize(
        p.vss_commitments.iter().map(|c| c.bytes()),
    )
    .unwrap();
    let proof = Signature::<C>::deserialize(p.proof_of_knowledge.bytes()).unwrap();
    Round1Message {
        from: id::<C>(p.identifier),
        label: label(p.identifier),
        package: round1::Package::new(commitment, proof),
    }
}

/// The round-2 messages `p` received, as recorded in the vector (from j to p).
fn vector_round2_received<C: KuraSuite>(p: &DkgParticipant) -> Vec<Round2Message<C>> {
    p.signing_shares
        .iter()
        .map(|s| Round2Message {
            from: id::<C>(s.from),
            to: id::<C>(p.identifier),
            package: round2::Package::new(
                SigningShare::<C>::deserialize(s.signing_share.bytes()).unwrap(),
            ),
        })
        .collect()
}

fn run_dkg<C: KuraSuite>(file: &str, suite: &str) {
    let v: DkgVector = load(file);
    assert_eq!(v.suite, suite);
    assert_eq!(v.participants.len(), usize::from(v.max_signers));
    let all_round1: Vec<Round1Message<C>> = v.participants.iter().map(vector_round1::<C>).collect();
    let mut group_ids = Vec::new();

    for me in &v.participants {
        let i = me.identifier;
        assert_eq!(me.signing_shares.len(), v.participants.len() - 1);
        assert_eq!(
            usize::from(v.min_signers) - 1,
            1,
            "these vectors have one coefficient after the constant term"
        );

        // Part 1: frost draws the constant term (SigningKey::new), then the
        // t-1 coefficients, then the proof-of-knowledge nonce, 32 bytes each.
        let mut rng = ReplayRng::new([
            me.signing_key.bytes(),
            me.coefficient.bytes(),
            &POK_NONCE_BYTES,
        ]);
        let (secret1, my_round1) =
            dkg::part1::<C, _>(id::<C>(i), label(i), v.max_signers, v.min_signers, &mut rng)
                .unwrap();
        assert_eq!(
            rng.remaining(),
            0,
            "participant {i}: part 1 drew an unexpected amount of randomness"
        );
        assert_eq!(my_round1.from, id::<C>(i));
        assert_eq!(
            my_round1.package.commitment().serialize().unwrap(),
            me.vss_commitments
                .iter()
                .map(|c| c.0.clone())
                .collect::<Vec<_>>(),
            "participant {i}: VSS commitment"
        );

        // The round-1 set: the peers' messages from the vector, plus our own
        // (part 2 and part 3 skip the caller's own message).
        let round1_set: Vec<Round1Message<C>> = all_round1
            .iter()
            .map(|m| {
                if m.from == my_round1.from {
                    my_round1.clone()
                } else {
                    m.clone()
                }
            })
            .collect();

        // A peer's proof of knowledge that does not verify is refused, naming the peer.
        {
            let mut rng = ReplayRng::new([
                me.signing_key.bytes(),
                me.coefficient.bytes(),
                &POK_NONCE_BYTES,
            ]);
            let (secret, _) =
                dkg::part1::<C, _>(id::<C>(i), label(i), v.max_signers, v.min_signers, &mut rng)
                    .unwrap();
            let peer = v.participants.iter().find(|p| p.identifier != i).unwrap();
            let mut bad_set = round1_set.clone();
            for m in &mut bad_set {
                if m.from == id::<C>(peer.identifier) {
                    let bad_pok = flip_last_bit(peer.proof_of_knowledge.bytes());
                    m.package = round1::Package::new(
                        m.package.commitment().clone(),
                        Signature::<C>::deserialize(&bad_pok).unwrap(),
                    );
                }
            }
            match dkg::part2(secret, &bad_set) {
                Err(KeygenError::InvalidProofOfKnowledge(who)) => {
                    assert_eq!(who, label(peer.identifier).to_string())
                }
                other => panic!("participant {i}: expected InvalidProofOfKnowledge, got {other:?}"),
            }
        }

        // Part 2: the share we send to j is the one j's entry says it got from us.
        let (secret2, my_round2) = dkg::part2(secret1, &round1_set).unwrap();
        assert_eq!(my_round2.len(), v.participants.len() - 1);
        for m in &my_round2 {
            assert_eq!(m.from, id::<C>(i));
            let to = v
                .participants
                .iter()
                .find(|p| id::<C>(p.identifier) == m.to)
                .expect("round-2 message to a non-participant");
            let expected = to
                .signing_shares
                .iter()
                .find(|s| s.from == i)
                .expect("recipient lists no share from us");
            assert_eq!(
                m.package.signing_share().serialize(),
                expected.signing_share.0,
                "share f_{i}({}) sent by {i}",
                to.identifier
            );
        }

        // Part 3 on the shares the vector says we received.
        let received = vector_round2_received::<C>(me);
        let (share, group) = dkg::part3(&secret2, &round1_set, &received).unwrap();
        assert_eq!(share.identifier(), &id::<C>(i));
        assert_eq!(share.label(), &label(i));
        assert_eq!(
            share.key_package().signing_share().serialize(),
            me.signing_share.0,
            "participant {i}: final signing share"
        );
        assert_eq!(
            share.key_package().verifying_share().serialize().unwrap(),
            me.verifying_share.0,
            "participant {i}: verifying share"
        );
        // For the TR file this key already includes frost's post-DKG tweak.
        assert_eq!(
            group.verifying_key().serialize().unwrap(),
            v.group_public_key.0,
            "participant {i}: group public key"
        );
        assert_eq!(group.min_signers(), v.min_signers);
        assert_eq!(group.max_signers(), v.max_signers);
        for p in &v.participants {
            assert_eq!(
                group
                    .verifying_share(&id::<C>(p.identifier))
                    .unwrap()
                    .serialize()
                    .unwrap(),
                p.verifying_share.0,
                "participant {i}'s view of {}'s verifying share",
                p.identifier
            );
            assert_eq!(
                group.label(&id::<C>(p.identifier)),
                Some(&label(p.identifier))
            );
        }
        share.check_member_of(&group).unwrap();
        group_ids.push(*group.id());

        // One received share with a flipped bit: part 3 refuses, naming the sender.
        let mut tampered = received.clone();
        let sender = me.signing_shares[0].from;
        tampered[0].package = round2::Package::new(
            SigningShare::<C>::deserialize(&flip_last_bit(
                me.signing_shares[0].signing_share.bytes(),
            ))
            .unwrap(),
        );
        match dkg::part3(&secret2, &round1_set, &tampered) {
            Err(KeygenError::InvalidShare {
                participant,
                culprit,
            }) => {
                assert_eq!(participant, label(i).to_string());
                assert_eq!(culprit, Some(label(sender).to_string()));
            }
            other => panic!("participant {i}: expected InvalidShare, got {other:?}"),
        }
    }
    assert!(
        group_ids.windows(2).all(|w| w[0] == w[1]),
        "all participants derive one group"
    );
}

#[test]
fn dkg_vectors_secp256k1() {
    run_dkg::<Secp256k1>("rfc9591/secp256k1-dkg.json", "secp256k1");
}

#[test]
fn dkg_vectors_secp256k1_tr() {
    run_dkg::<Secp256k1Tr>("frost-secp256k1-tr/secp256k1-tr-dkg.json", "secp256k1-tr");
}
