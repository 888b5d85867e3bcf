//! Dealer, split, DKG, refresh and repair for both suites.

use std::collections::BTreeMap;

use kura_testkit::*;
use wallet_core::frost_core::{Identifier, SigningKey};
use wallet_core::keygen::{self, dkg, refresh, repair, Identifiers, KeygenError};
use wallet_core::{GroupError, KeyShare, KuraSuite, PublicGroup, Secp256k1, Secp256k1Tr};

const MSG: &[u8] = b"withdrawal sighash stand-in....";

fn run_dkg<C: KuraSuite>(t: u16, n: u16, seed: u64) -> (Vec<KeyShare<C>>, PublicGroup<C>) {
    let mut r = rng(seed);
    let ls = labels(n);
    let mut s1 = Vec::new();
    let mut m1 = Vec::new();
    for (i, l) in ls.iter().enumerate() {
        let id = Identifier::try_from(i as u16 + 1).unwrap();
        let (s, m) = dkg::part1::<C, _>(id, l.clone(), n, t, &mut r).unwrap();
        s1.push(s);
        m1.push(m);
    }
    let mut s2 = Vec::new();
    let mut m2 = Vec::new();
    for s in s1 {
        let (s, ms) = dkg::part2(s, &m1).unwrap();
        s2.push(s);
        m2.extend(ms);
    }
    let mut shares = Vec::new();
    let mut groups = Vec::new();
    for (i, s) in s2.iter().enumerate() {
        let me = Identifier::try_from(i as u16 + 1).unwrap();
        let mine: Vec<_> = m2.iter().filter(|m| m.to == me).cloned().collect();
        let (share, group) = dkg::part3(s, &m1, &mine).unwrap();
        shares.push(share);
        groups.push(group);
    }
    // Every participant derived the same group.
    assert!(groups.windows(2).all(|w| w[0] == w[1]));
    (shares, groups.remove(0))
}

fn check_dkg<C: KuraSuite>() {
    for (t, n) in [(2, 3), (3, 5)] {
        let (shares, group) = run_dkg::<C>(t, n, 21);
        assert_eq!((group.min_signers(), group.max_signers()), (t, n));
        let signers: Vec<_> = shares.iter().rev().take(t as usize).collect();
        let sig = sign_with(&group, &signers, MSG, 1).unwrap();
        wallet_core::signing::verify(&group, MSG, &sig).unwrap();
    }
}

#[test]
fn dkg_groups_sign_both_suites() {
    check_dkg::<Secp256k1>();
    check_dkg::<Secp256k1Tr>();
}

#[test]
fn dkg_tr_signature_verifies_with_libsecp() {
    let (shares, group) = run_dkg::<Secp256k1Tr>(2, 3, 5);
    let msg = [7u8; 32];
    let sig = sign_with(&group, &[&shares[0], &shares[1]], &msg, 2).unwrap();
    assert!(libsecp_verify_tr(&group, &msg, &sig));
}

#[test]
fn dkg_refuses_bad_message_sets() {
    let mut r = rng(3);
    let ls = labels(3);
    let parts: Vec<_> = (0..3)
        .map(|i| {
            dkg::part1::<Secp256k1Tr, _>(
                Identifier::try_from(i as u16 + 1).unwrap(),
                ls[i].clone(),
                3,
                2,
                &mut r,
            )
            .unwrap()
        })
        .collect();
    let msgs: Vec<_> = parts.iter().map(|(_, m)| m.clone()).collect();
    let mut parts = parts.into_iter();
    let (s1, _) = parts.next().unwrap();

    // A missing round-1 message.
    let (s1b, _) = dkg::part1::<Secp256k1Tr, _>(
        Identifier::try_from(1u16).unwrap(),
        ls[0].clone(),
        3,
        2,
        &mut r,
    )
    .unwrap();
    assert!(matches!(
        dkg::part2(s1b, &msgs[..2]),
        Err(KeygenError::Messages(_))
    ));

    // A forged proof of knowledge: signer-2's commitment with signer-3's proof.
    let mut forged = msgs.clone();
    let stolen = forged[2].package.clone();
    forged[1].package = stolen;
    match dkg::part2(s1, &forged) {
        Err(KeygenError::InvalidProofOfKnowledge(who)) => assert_eq!(who, "signer-2"),
        other => panic!("expected InvalidProofOfKnowledge, got {other:?}"),
    }

    // Duplicate labels.
    let (s2, _) = parts.next().unwrap();
    let mut dup = msgs.clone();
    dup[2].label = dup[0].label.clone();
    assert!(matches!(
        dkg::part2(s2, &dup),
        Err(KeygenError::Group(GroupError::DuplicateLabel(_)))
    ));
}

#[test]
fn dkg_part3_names_the_sender_of_a_bad_share() {
    let mut r = rng(4);
    let ls = labels(3);
    let ids: Vec<Identifier<Secp256k1Tr>> = (1..=3u16)
        .map(|i| Identifier::try_from(i).unwrap())
        .collect();
    let (s1, m1): (Vec<_>, Vec<_>) = (0..3)
        .map(|i| dkg::part1(ids[i], ls[i].clone(), 3, 2, &mut r).unwrap())
        .unzip();
    let mut s2 = Vec::new();
    let mut m2 = Vec::new();
    for s in s1 {
        let (s, ms) = dkg::part2(s, &m1).unwrap();
        s2.push(s);
        m2.extend(ms);
    }
    // signer-3 sends signer-1 the share meant for signer-2.
    let to1: Vec<_> = m2
        .iter()
        .filter(|m| m.to == ids[0])
        .map(|m| {
            let mut m = m.clone();
            if m.from == ids[2] {
                let other = m2
                    .iter()
                    .find(|x| x.from == ids[2] && x.to == ids[1])
                    .unwrap();
                m.package = other.package.clone();
            }
            m
        })
        .collect();
    match dkg::part3(&s2[0], &m1, &to1) {
        Err(KeygenError::InvalidShare { culprit, .. }) => {
            assert_eq!(culprit.as_deref(), Some("signer-3"))
        }
        other => panic!("expected InvalidShare, got {other:?}"),
    }
    // A message addressed to someone else is refused.
    let wrong: Vec<_> = m2.iter().filter(|m| m.to == ids[1]).cloned().collect();
    assert!(matches!(
        dkg::part3(&s2[0], &m1, &wrong),
        Err(KeygenError::Messages(_))
    ));
}

#[test]
fn dealer_with_custom_identifiers_and_bad_parameters() {
    let ids: Vec<Identifier<Secp256k1Tr>> = ["alice", "bob", "carol"]
        .iter()
        .map(|s| Identifier::derive(s.as_bytes()).unwrap())
        .collect();
    let d = keygen::dealer::<Secp256k1Tr, _>(2, &labels(3), Identifiers::Custom(&ids), &mut rng(1))
        .unwrap();
    assert!(d.shares.iter().all(|s| ids.contains(s.identifier())));
    sign_with(&d.group, &[&d.shares[0], &d.shares[1]], MSG, 3).unwrap();

    for (t, n) in [(1, 3), (4, 3), (0, 0)] {
        let r = keygen::dealer::<Secp256k1Tr, _>(t, &labels(n), Identifiers::Default, &mut rng(1));
        assert!(
            matches!(
                r,
                Err(KeygenError::Group(GroupError::InvalidThreshold { .. }))
            ),
            "{t}-of-{n}"
        );
    }
    let dup = vec![ids[0], ids[0], ids[1]];
    assert!(keygen::dealer::<Secp256k1Tr, _>(
        2,
        &labels(3),
        Identifiers::Custom(&dup),
        &mut rng(1)
    )
    .is_err());
    let mut same_labels = labels(3);
    same_labels[2] = same_labels[0].clone();
    assert!(matches!(
        keygen::dealer::<Secp256k1Tr, _>(2, &same_labels, Identifiers::Default, &mut rng(1)),
        Err(KeygenError::Group(GroupError::DuplicateLabel(_)))
    ));
}

#[test]
fn split_keeps_the_imported_key() {
    let key = SigningKey::<Secp256k1Tr>::new(&mut rng(9));
    let d = keygen::split(&key, 2, &labels(3), Identifiers::Default, &mut rng(2)).unwrap();
    assert_eq!(
        d.group.verifying_key(),
        &wallet_core::frost_core::VerifyingKey::from(&key)
    );
    let sig = sign_with(&d.group, &[&d.shares[1], &d.shares[2]], MSG, 3).unwrap();
    wallet_core::signing::verify(&d.group, MSG, &sig).unwrap();
}

#[test]
fn a_tampered_dealt_share_is_refused() {
    let key = SigningKey::<Secp256k1>::new(&mut rng(9));
    let d = keygen::split(&key, 2, &labels(3), Identifiers::Default, &mut rng(2)).unwrap();
    // A share from another dealing does not verify against this group.
    let other = deal::<Secp256k1>(2, 3, 77);
    let err = other.shares[0].check_member_of(&d.group).unwrap_err();
    assert!(matches!(err, GroupError::ShareMismatch(_)));
}

fn check_dealer_refresh<C: KuraSuite>() {
    let d = deal::<C>(2, 3, 31);
    let keep: Vec<_> = d.shares.iter().map(|s| *s.identifier()).collect();
    let mut rf = refresh::dealer_refresh(&d.group, &keep, &mut rng(4)).unwrap();
    assert_eq!(rf.group.id(), d.group.id());
    assert_eq!(rf.group.output_key(), d.group.output_key());
    assert_ne!(rf.group, d.group, "verifying shares must change");
    let new: Vec<_> = d
        .shares
        .iter()
        .map(|s| {
            let rs = rf.refreshing_shares.remove(s.identifier()).unwrap();
            refresh::apply_dealer_refresh(s, rs, &rf.group).unwrap()
        })
        .collect();
    let sig = sign_with(&rf.group, &[&new[0], &new[2]], MSG, 5).unwrap();
    wallet_core::signing::verify(&d.group, MSG, &sig).unwrap();
    check_no_mixing(&d.shares, &new, &rf.group);
}

/// An old share cannot sign with a new one: the signer refuses (its
/// verifying share is not the refreshed group's), and a share forced through
/// anyway is named as the culprit.
fn check_no_mixing<C: KuraSuite>(
    old: &[KeyShare<C>],
    new: &[KeyShare<C>],
    new_group: &PublicGroup<C>,
) {
    assert!(matches!(
        old[0].check_member_of(new_group),
        Err(GroupError::ShareMismatch(_))
    ));
    let err = sign_with(new_group, &[&old[0], &new[1]], MSG, 6).unwrap_err();
    assert!(err.to_string().contains("verifying share differs"), "{err}");
}

fn check_dkg_refresh<C: KuraSuite>() {
    let (shares, group) = run_dkg::<C>(2, 3, 41);
    let mut r = rng(5);
    let (s1, m1): (Vec<_>, Vec<_>) = shares
        .iter()
        .map(|s| refresh::dkg_part1(s, &group, &mut r).unwrap())
        .unzip();
    let mut s2 = Vec::new();
    let mut m2 = Vec::new();
    for s in s1 {
        let (s, ms) = refresh::dkg_part2(s, &m1).unwrap();
        s2.push(s);
        m2.extend(ms);
    }
    let mut new = Vec::new();
    let mut new_group = None;
    for (s, old) in s2.iter().zip(&shares) {
        let mine: Vec<_> = m2
            .iter()
            .filter(|m| &m.to == old.identifier())
            .cloned()
            .collect();
        let (share, g) = refresh::dkg_finish(s, &m1, &mine, old, &group).unwrap();
        new.push(share);
        new_group = Some(g);
    }
    let new_group = new_group.unwrap();
    assert_eq!(new_group.id(), group.id());
    assert_eq!(new_group.output_key(), group.output_key());
    let sig = sign_with(&new_group, &[&new[1], &new[2]], MSG, 8).unwrap();
    wallet_core::signing::verify(&group, MSG, &sig).unwrap();
    check_no_mixing(&shares, &new, &new_group);
}

#[test]
fn refresh_keeps_the_group_key_and_separates_old_shares() {
    check_dealer_refresh::<Secp256k1>();
    check_dealer_refresh::<Secp256k1Tr>();
    check_dkg_refresh::<Secp256k1>();
    check_dkg_refresh::<Secp256k1Tr>();
}

#[test]
fn dealer_refresh_can_remove_a_participant() {
    let d = deal::<Secp256k1Tr>(2, 3, 32);
    let keep = [*d.shares[0].identifier(), *d.shares[1].identifier()];
    let rf = refresh::dealer_refresh(&d.group, &keep, &mut rng(4)).unwrap();
    assert_eq!(rf.group.max_signers(), 2);
    assert!(matches!(
        d.shares[2].check_member_of(&rf.group),
        Err(GroupError::UnknownParticipant(_))
    ));
}

fn check_repair<C: KuraSuite>(shares: &[KeyShare<C>], group: &PublicGroup<C>) {
    let lost = *shares[0].identifier();
    let helpers: Vec<_> = shares[1..].iter().map(|s| *s.identifier()).collect();
    let mut r = rng(12);
    let mut to_helper: BTreeMap<Identifier<C>, Vec<_>> = BTreeMap::new();
    for h in &shares[1..] {
        for (to, delta) in repair::helper_deltas(h, group, &helpers, &lost, &mut r).unwrap() {
            to_helper.entry(to).or_default().push(delta);
        }
    }
    let sigmas: Vec<_> = to_helper
        .values()
        .map(|ds| repair::helper_sigma(ds))
        .collect();
    let repaired = repair::recover(&sigmas, &lost, group).unwrap();
    assert_eq!(repaired.key_package(), shares[0].key_package());
    let t = group.min_signers() as usize;
    let mut signers = vec![&repaired];
    signers.extend(&shares[1..t]);
    let sig = sign_with(group, &signers, MSG, 9).unwrap();
    wallet_core::signing::verify(group, MSG, &sig).unwrap();

    // A missing sigma yields a share that does not match: refused.
    assert!(matches!(
        repair::recover(&sigmas[1..], &lost, group),
        Err(KeygenError::InvalidShare { .. })
    ));
    // The lost participant cannot help with its own repair.
    let bad_helpers = [lost, helpers[0]];
    assert!(repair::helper_deltas(&shares[1], group, &bad_helpers, &lost, &mut r).is_err());
}

#[test]
fn repair_rebuilds_a_lost_share() {
    let d = deal::<Secp256k1>(2, 3, 51);
    check_repair(&d.shares, &d.group);
    let d = deal::<Secp256k1Tr>(3, 5, 52);
    check_repair(&d.shares, &d.group);
    let (shares, group) = run_dkg::<Secp256k1Tr>(2, 3, 53);
    check_repair(&shares, &group);
}
