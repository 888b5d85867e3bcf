//! The setup protocol against whoever carries its files: swapped cards,
//! forged or replaced DKG messages, replaced dealings, forged refreshes,
//! crashes in the middle of a state change, and hostile labels.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use wallet_core::ceremony::dealer::{self, Dealing};
use wallet_core::ceremony::dkg::{self, Ceremony, Round1Document, Round2Document};
use wallet_core::ceremony::maintain::{self, RefreshProposal};
use wallet_core::ceremony::state::{self, MemberState, Step};
use wallet_core::ceremony::{CeremonyError, IdentityCard, Role, Roster};
use wallet_core::keygen::KeygenError;
use wallet_core::keystore::{self, Keystore, MemoryKeystore};
use wallet_core::{format, KeyShare, Label, PublicGroup, Secp256k1Tr};

type C = Secp256k1Tr;
const NONCE: [u8; 32] = [7u8; 32];

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

struct Member {
    label: Label,
    ks: MemoryKeystore,
}

impl Member {
    fn new(label: &str) -> Member {
        Member {
            label: Label::new(label).unwrap(),
            ks: MemoryKeystore::new(),
        }
    }
    fn card(&self, role: Role) -> IdentityCard {
        IdentityCard::new(
            self.label.clone(),
            role,
            self.ks.identity_public_key().unwrap(),
        )
    }
}

fn members(names: &[&str]) -> Vec<Member> {
    names.iter().map(|n| Member::new(n)).collect()
}

fn cards(ms: &[Member]) -> Vec<IdentityCard> {
    ms.iter().map(|m| m.card(Role::Signer)).collect()
}

fn ceremony(ms: &[Member]) -> Ceremony<C> {
    Ceremony::new(2, cards(ms), NONCE).unwrap()
}

/// Round 1 for everyone with the honest cards.
fn round1_all(ms: &[Member]) -> (Ceremony<C>, Vec<Round1Document<C>>) {
    let c = ceremony(ms);
    let fp = c.fingerprint().to_string();
    let docs = ms
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let conf = c.clone().confirm(&fp).unwrap();
            dkg::round1(&conf, &m.ks, &mut rng(i as u64)).unwrap()
        })
        .collect();
    (c, docs)
}

fn round2_all(
    c: &Ceremony<C>,
    ms: &[Member],
    r1: &[Round1Document<C>],
) -> Vec<(Label, Label, Round2Document<C>)> {
    let mut out = Vec::new();
    for (i, m) in ms.iter().enumerate() {
        let o = dkg::round2(c, &m.ks, r1, &mut rng(100 + i as u64)).unwrap();
        for (to, doc) in o.messages {
            out.push((m.label.clone(), to, doc));
        }
    }
    out
}

fn to(r2: &[(Label, Label, Round2Document<C>)], who: &Label) -> Vec<Round2Document<C>> {
    r2.iter()
        .filter(|(_, t, _)| t == who)
        .map(|(_, _, d)| d.clone())
        .collect()
}

fn full_dkg(ms: &[Member]) -> (Ceremony<C>, Vec<dkg::Finished<C>>) {
    let (c, r1) = round1_all(ms);
    let r2 = round2_all(&c, ms, &r1);
    let fin = ms
        .iter()
        .map(|m| dkg::finish(&c, &m.ks, &r1, &to(&r2, &m.label)).unwrap())
        .collect();
    (c, fin)
}

#[test]
fn an_honest_dkg_gives_everyone_one_group_and_one_fingerprint() {
    let ms = members(&["alice", "bob", "carol"]);
    let (_, fin) = full_dkg(&ms);
    assert!(fin.windows(2).all(|w| w[0].group == w[1].group));
    assert!(fin.windows(2).all(|w| w[0].fingerprint == w[1].fingerprint));
    assert_eq!(fin[0].fingerprint.to_string().len(), 32 + 7);
}

#[test]
fn the_ceremony_fingerprint_covers_every_identity_key() {
    let ms = members(&["alice", "bob", "carol"]);
    let honest = ceremony(&ms);
    // The courier's look-alike card for bob: same label, the courier's key.
    let courier = Member::new("bob");
    let mut swapped = cards(&ms);
    swapped[1] = courier.card(Role::Signer);
    let seen_by_alice = Ceremony::<C>::new(2, swapped, NONCE).unwrap();
    assert_ne!(honest.fingerprint(), seen_by_alice.fingerprint());
    // Same cards in another order: same fingerprint.
    let mut reordered = cards(&ms);
    reordered.reverse();
    let again = Ceremony::<C>::new(2, reordered, NONCE).unwrap();
    assert_eq!(honest.fingerprint(), again.fingerprint());
    // Threshold and nonce are covered too.
    assert_ne!(
        honest.fingerprint(),
        Ceremony::<C>::new(3, cards(&ms), NONCE)
            .unwrap()
            .fingerprint()
    );
    assert_ne!(
        honest.fingerprint(),
        Ceremony::<C>::new(2, cards(&ms), [8; 32])
            .unwrap()
            .fingerprint()
    );
}

#[test]
fn a_card_swapped_in_transit_is_refused_before_round_one() {
    let ms = members(&["alice", "bob", "carol"]);
    let announced = ceremony(&ms).fingerprint().to_string();
    let courier = Member::new("bob");
    let mut swapped = cards(&ms);
    swapped[1] = courier.card(Role::Signer);
    let alices_view = Ceremony::<C>::new(2, swapped, NONCE).unwrap();
    let err = alices_view.clone().confirm(&announced).unwrap_err();
    assert!(
        matches!(err, CeremonyError::FingerprintMismatch { .. }),
        "{err}"
    );
    assert!(err.is_refusal());
    // Without a confirmed ceremony there is no round 1, and without round 1
    // round 2 seals nothing: nothing ever reaches the courier's key.
    let err = dkg::round2(&alices_view, &ms[0].ks, &[], &mut rng(1)).unwrap_err();
    assert!(!matches!(err, CeremonyError::NotAuthentic { .. }));
}

#[test]
fn a_forged_round1_message_is_refused_naming_the_claimed_sender() {
    let ms = members(&["alice", "bob", "carol"]);
    let (c, mut r1) = round1_all(&ms);
    // A relay replaces bob's broadcast with one it made itself (its own
    // polynomial, bob's identifier and label), signed with its own key.
    let relay = MemoryKeystore::new();
    let (_, forged) = wallet_core::keygen::dkg::part1::<C, _>(
        r1[1].body.from,
        ms[1].label.clone(),
        3,
        2,
        &mut rng(9),
    )
    .unwrap();
    r1[1] = wallet_core::ceremony::Authored::sign(c.id(), forged.clone(), &relay).unwrap();
    let err = dkg::round2(&c, &ms[0].ks, &r1, &mut rng(2)).unwrap_err();
    match &err {
        CeremonyError::NotAuthentic { claimed, .. } => assert_eq!(claimed, "bob"),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("bob is not to blame"), "{err}");
    // Unsigned (signature of another message) is refused the same way.
    let mut unsigned = r1[0].clone();
    unsigned.body = forged;
    unsigned.body.from = r1[2].body.from;
    unsigned.body.label = ms[2].label.clone();
    r1[1] = unsigned;
    let err = dkg::round2(&c, &ms[0].ks, &r1, &mut rng(2)).unwrap_err();
    assert!(matches!(err, CeremonyError::NotAuthentic { ref claimed, .. } if claimed == "carol"));
    // A message without any signature parses, and is refused the same way.
    let mut json = serde_json::to_value(&r1[1]).unwrap();
    json.as_object_mut().unwrap().remove("signature");
    r1[1] = serde_json::from_value(json).unwrap();
    assert!(r1[1].signature.is_none());
    let err = dkg::round2(&c, &ms[0].ks, &r1, &mut rng(2)).unwrap_err();
    assert!(
        matches!(err, CeremonyError::NotAuthentic { ref claimed, .. } if claimed == "carol"),
        "{err}"
    );
}

#[test]
fn a_forged_round2_message_is_refused_and_the_honest_sender_not_blamed() {
    let ms = members(&["alice", "bob", "carol"]);
    let (c, r1) = round1_all(&ms);
    let r2 = round2_all(&c, &ms, &r1);
    let mut for_alice = to(&r2, &ms[0].label);
    // A relay seals a bad share "from bob" to alice's real key: it opens,
    // but is not signed by bob.
    let bob_id = r1[1].body.from;
    let alice_id = r1[0].body.from;
    let relay = MemoryKeystore::new();
    // The round-1 set is public: the relay computes its digest, so its
    // forgery opens — and then fails the signature check.
    let set_digest = dkg::round1_set_digest(&c, &r1).unwrap().to_vec();
    let bad = wallet_core::keygen::dkg::Round2Message::<C> {
        from: bob_id,
        to: alice_id,
        package: serde_json::from_value(serde_json::json!({
            "header": {"version": 0, "ciphersuite": "FROST-secp256k1-SHA256-TR-v1"},
            "signing_share": "0000000000000000000000000000000000000000000000000000000000000001"
        }))
        .unwrap(),
    };
    let signed = wallet_core::ceremony::Authored::sign(
        c.id(),
        dkg::Round2Share {
            message: bad,
            round1_set: set_digest,
        },
        &relay,
    )
    .unwrap();
    let forged = Round2Document {
        part: wallet_core::ceremony::SealedPart::seal(
            wallet_core::ceremony::SealPurpose::DkgRound2,
            c.id(),
            Some(bob_id),
            alice_id,
            &dkg::round1_set_digest(&c, &r1).unwrap(),
            &ms[0].ks.identity_public_key().unwrap(),
            &serde_json::to_vec(&signed).unwrap(),
            &mut rng(4),
        )
        .unwrap(),
    };
    let i = for_alice
        .iter()
        .position(|d| d.part.from == Some(bob_id))
        .unwrap();
    for_alice[i] = forged;
    let err = dkg::finish(&c, &ms[0].ks, &r1, &for_alice).unwrap_err();
    match &err {
        CeremonyError::NotAuthentic { claimed, .. } => assert_eq!(claimed, "bob"),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("bob is not to blame"), "{err}");
    assert!(!matches!(
        err,
        CeremonyError::Keygen(KeygenError::InvalidShare { .. })
    ));
    // With bob's real message the same finish succeeds.
    dkg::finish(&c, &ms[0].ks, &r1, &to(&r2, &ms[0].label)).unwrap();
}

#[test]
fn a_relay_that_replaces_a_sealed_round2_message_with_another_senders_is_refused() {
    let ms = members(&["alice", "bob", "carol"]);
    let (c, r1) = round1_all(&ms);
    let r2 = round2_all(&c, &ms, &r1);
    let mut for_alice = to(&r2, &ms[0].label);
    // Relabel carol's message as bob's: the seal's associated data names
    // the sender, so it no longer opens.
    let bob_id = r1[1].body.from;
    let carol_id = r1[2].body.from;
    let carol_msg = for_alice
        .iter()
        .find(|d| d.part.from == Some(carol_id))
        .unwrap()
        .clone();
    let i = for_alice
        .iter()
        .position(|d| d.part.from == Some(bob_id))
        .unwrap();
    for_alice[i] = Round2Document {
        part: wallet_core::ceremony::SealedPart {
            from: Some(bob_id),
            ..carol_msg.part
        },
    };
    let err = dkg::finish(&c, &ms[0].ks, &r1, &for_alice).unwrap_err();
    assert!(
        matches!(err, CeremonyError::SealOpen { ref from, .. } if from == "bob"),
        "{err}"
    );
    assert!(err.is_refusal());
}

#[test]
fn a_round1_set_with_a_resigned_copy_is_refused() {
    let ms = members(&["alice", "bob", "carol"]);
    let (c, r1) = round1_all(&ms);
    // Two different messages signed by bob in one set are refused, naming him.
    let mut twice = r1.clone();
    let mut other = r1[1].clone();
    other.signature = r1[0].signature;
    twice.push(other);
    let err = dkg::round2(&c, &ms[0].ks, &twice, &mut rng(1)).unwrap_err();
    assert!(matches!(err, CeremonyError::NotAuthentic { .. }), "{err}");
}

#[test]
fn a_replaced_dealing_and_a_swapped_card_at_the_dealer_are_refused() {
    let ms = members(&["alice", "bob", "carol"]);
    let dealer = Member::new("dealer");
    let c = Ceremony::<C>::with_dealer(2, cards(&ms), dealer.card(Role::Dealer), NONCE).unwrap();
    let announced = c.fingerprint().to_string();

    // A courier swapped bob's card before it reached the dealer: the
    // dealer's fingerprint differs and nothing is dealt.
    let courier = Member::new("bob");
    let mut swapped = cards(&ms);
    swapped[1] = courier.card(Role::Signer);
    let dealers_view =
        Ceremony::<C>::with_dealer(2, swapped.clone(), dealer.card(Role::Dealer), NONCE).unwrap();
    assert!(matches!(
        dealers_view.confirm(&announced),
        Err(CeremonyError::FingerprintMismatch { .. })
    ));

    // The courier runs its own dealer over the real cards and substitutes
    // the dealing: the dealer card inside differs, so the fingerprint does.
    let fake_dealer = Member::new("dealer");
    let fake =
        Ceremony::<C>::with_dealer(2, cards(&ms), fake_dealer.card(Role::Dealer), NONCE).unwrap();
    let fake_fp = fake.fingerprint().to_string();
    let fake_dealt = dealer::deal(
        &fake.confirm(&fake_fp).unwrap(),
        &fake_dealer.ks,
        None,
        &mut rng(5),
    )
    .unwrap();
    let err = dealer::import(
        fake_dealt.group.id(),
        &fake_dealt.dealing,
        &announced,
        &ms[0].ks,
    )
    .unwrap_err();
    assert!(
        matches!(err, CeremonyError::FingerprintMismatch { .. }),
        "{err}"
    );

    // The honest dealing imports, and a copy re-signed by someone else does not.
    let dealt = dealer::deal(
        &c.clone().confirm(&announced).unwrap(),
        &dealer.ks,
        None,
        &mut rng(6),
    )
    .unwrap();
    let mut fps = Vec::new();
    for m in &ms {
        let imp = dealer::import(dealt.group.id(), &dealt.dealing, &announced, &m.ks).unwrap();
        assert_eq!(imp.group, dealt.group);
        fps.push(imp.fingerprint);
    }
    assert!(fps.iter().all(|f| *f == dealt.fingerprint));
    let mut resigned: Dealing<C> = wallet_core::ceremony::Authored::sign(
        dealt.group.id(),
        dealt.dealing.body.clone(),
        &courier.ks,
    )
    .unwrap();
    let err = dealer::import(dealt.group.id(), &resigned, &announced, &ms[0].ks).unwrap_err();
    assert!(
        matches!(err, CeremonyError::NotAuthentic { ref claimed, .. } if claimed == "dealer"),
        "{err}"
    );
    // A dealing made by a keystore that is not the dealer's is refused at the dealer.
    resigned.body.shares.clear();
    let err = dealer::deal(
        &c.confirm(&announced).unwrap(),
        &courier.ks,
        None,
        &mut rng(7),
    )
    .unwrap_err();
    assert!(matches!(err, CeremonyError::Dealer(_)), "{err}");
}

/// A DKG group installed in each member's state dir.
fn installed(ms: &[Member]) -> (Vec<tempfile::TempDir>, PublicGroup<C>, Roster<C>) {
    let (_, fin) = full_dkg(ms);
    let mut dirs = Vec::new();
    for (m, f) in ms.iter().zip(&fin) {
        let d = tempfile::tempdir().unwrap();
        MemberState::new(d.path())
            .install(&m.ks, &f.share, &f.group, &f.roster, &mut state::no_crash)
            .unwrap();
        dirs.push(d);
    }
    (dirs, fin[0].group.clone(), fin[0].roster.clone())
}

fn share_of(m: &Member, g: &PublicGroup<C>) -> KeyShare<C> {
    let id = g.identifier_of(m.label.as_str()).unwrap();
    keystore::load_share(&m.ks, g, &id).unwrap()
}

#[test]
fn a_forged_refresh_is_refused_and_share_and_group_stay() {
    let ms = members(&["alice", "bob", "carol"]);
    let (dirs, group, roster) = installed(&ms);
    let before = std::fs::read(dirs[0].path().join("group.json")).unwrap();
    // From the public group and roster alone, an outsider builds a refresh.
    let outsider = MemoryKeystore::new();
    let err = maintain::propose_refresh(&group, &roster, &outsider, &mut rng(1)).unwrap_err();
    assert!(matches!(err, CeremonyError::Dealer(_)));
    // It makes one as bob (bob's identifier) and signs it with its own key.
    let real = maintain::propose_refresh(&group, &roster, &ms[1].ks, &mut rng(2)).unwrap();
    let forged: RefreshProposal<C> =
        wallet_core::ceremony::Authored::sign(group.id(), real.body.clone(), &outsider).unwrap();
    let current = share_of(&ms[0], &group);
    let err =
        maintain::accept_refresh(&group, &roster, &current, &forged, &[], &ms[0].ks).unwrap_err();
    assert!(
        matches!(err, CeremonyError::NotAuthentic { ref claimed, .. } if claimed == "bob"),
        "{err}"
    );
    // A real proposal by one member alone is no quorum (t = 2).
    let err =
        maintain::accept_refresh(&group, &roster, &current, &real, &[], &ms[0].ks).unwrap_err();
    assert!(
        matches!(err, CeremonyError::NoQuorum { have: 1, need: 2 }),
        "{err}"
    );
    // An endorsement forged "from carol" does not count.
    let e = maintain::endorse_refresh(&group, &roster, &real, &ms[2].ks).unwrap();
    let forged_e =
        wallet_core::ceremony::Authored::sign(group.id(), e.body.clone(), &outsider).unwrap();
    let err = maintain::accept_refresh(&group, &roster, &current, &real, &[forged_e], &ms[0].ks)
        .unwrap_err();
    assert!(
        matches!(err, CeremonyError::NotAuthentic { ref claimed, .. } if claimed == "carol"),
        "{err}"
    );
    // A dealer refresh for a DKG group (no pinned dealer) is refused.
    let mut as_dealer = real.body.clone();
    as_dealer.proposer = maintain::Proposer::Dealer;
    let as_dealer =
        wallet_core::ceremony::Authored::sign(group.id(), as_dealer, &outsider).unwrap();
    let err = maintain::accept_refresh(&group, &roster, &current, &as_dealer, &[], &ms[0].ks)
        .unwrap_err();
    assert!(matches!(err, CeremonyError::Dealer(_)), "{err}");
    // Nothing changed.
    assert_eq!(
        before,
        std::fs::read(dirs[0].path().join("group.json")).unwrap()
    );
    assert_eq!(share_of(&ms[0], &group), current);
    // With carol's real endorsement it is accepted and only staged.
    let (new_share, new_group) =
        maintain::accept_refresh(&group, &roster, &current, &real, &[e], &ms[0].ks).unwrap();
    let st = MemberState::new(dirs[0].path());
    let tag = real.digest(group.id()).unwrap();
    st.stage(
        &ms[0].ks,
        &new_share,
        &new_group,
        &tag,
        &mut state::no_crash,
    )
    .unwrap();
    assert_eq!(
        before,
        std::fs::read(dirs[0].path().join("group.json")).unwrap()
    );
    assert_eq!(
        share_of(&ms[0], &group),
        current,
        "the old share stays in use until activation"
    );
    // Activation needs every member's receipt for this proposal; a forged
    // one (carol's, signed by the outsider) is refused naming carol.
    let receipts: Vec<_> = ms
        .iter()
        .map(|m| maintain::receipt(&group, &roster, &tag, &m.ks).unwrap())
        .collect();
    let err = maintain::activate_refresh(
        &st,
        &group,
        &roster,
        &receipts[..2],
        &ms[0].ks,
        &mut state::no_crash,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("no receipt yet from carol"),
        "{err}"
    );
    let forged_r =
        wallet_core::ceremony::Authored::sign(group.id(), receipts[2].body.clone(), &outsider)
            .unwrap();
    let err = maintain::activate_refresh(
        &st,
        &group,
        &roster,
        &[receipts[0].clone(), receipts[1].clone(), forged_r],
        &ms[0].ks,
        &mut state::no_crash,
    )
    .unwrap_err();
    assert!(
        matches!(err, CeremonyError::NotAuthentic { ref claimed, .. } if claimed == "carol"),
        "{err}"
    );
    assert_eq!(share_of(&ms[0], &group), current, "still the old share");
    maintain::activate_refresh(
        &st,
        &group,
        &roster,
        &receipts,
        &ms[0].ks,
        &mut state::no_crash,
    )
    .unwrap()
    .unwrap();
    assert_eq!(st.group::<C>().unwrap().unwrap(), new_group);
    assert_eq!(share_of(&ms[0], &new_group), new_share);
}

#[test]
fn a_crash_at_every_step_of_refresh_activation_is_recoverable() {
    let ms = members(&["alice", "bob", "carol"]);
    let (dirs, group, roster) = installed(&ms);
    let real = maintain::propose_refresh(&group, &roster, &ms[1].ks, &mut rng(2)).unwrap();
    let e = maintain::endorse_refresh(&group, &roster, &real, &ms[2].ks).unwrap();
    let current = share_of(&ms[0], &group);
    let (new_share, new_group) =
        maintain::accept_refresh(&group, &roster, &current, &real, &[e], &ms[0].ks).unwrap();
    let tag = real.digest(group.id()).unwrap();
    let id = group.identifier_of("alice").unwrap();
    let st = MemberState::new(dirs[0].path());
    let usable = |st: &MemberState| {
        let g = st.group::<C>().unwrap().unwrap();
        let s = share_of(&ms[0], &g);
        s.check_member_of(&g).unwrap();
        g
    };
    for crash_at in [Step::ShareKept, Step::Staged] {
        let mut hook = |s: Step| {
            if s == crash_at {
                Err(CeremonyError::NoState("killed".into()))
            } else {
                Ok(())
            }
        };
        assert!(st
            .stage(&ms[0].ks, &new_share, &new_group, &tag, &mut hook)
            .is_err());
        assert_eq!(
            usable(&st),
            group,
            "old state usable after a crash at {crash_at:?}"
        );
    }
    st.stage(
        &ms[0].ks,
        &new_share,
        &new_group,
        &tag,
        &mut state::no_crash,
    )
    .unwrap();
    for crash_at in [Step::GroupSwitched, Step::ShareSwitched] {
        let mut hook = |s: Step| {
            if s == crash_at {
                Err(CeremonyError::NoState("killed".into()))
            } else {
                Ok(())
            }
        };
        assert!(st
            .activate::<C>(&ms[0].ks, &id, state::Staging::Refresh, &mut hook)
            .is_err());
        // After the switch the new state is the one in use, and usable.
        assert_eq!(
            usable(&st),
            new_group,
            "new state usable after a crash at {crash_at:?}"
        );
        // Rerun completes it.
    }
    st.activate::<C>(
        &ms[0].ks,
        &id,
        state::Staging::Refresh,
        &mut state::no_crash,
    )
    .unwrap();
    assert!(st.staged::<C>().unwrap().is_none());
    assert_eq!(share_of(&ms[0], &new_group), new_share);
    // Someone with the disk restores the old group file: the old share is
    // gone for good (no staged copy brings it back), the signer refuses.
    std::fs::write(st.group_path(), group.to_document().unwrap()).unwrap();
    let err = keystore::load_share(&ms[0].ks, &group, &id).unwrap_err();
    assert!(
        err.to_string().contains("old share after a refresh"),
        "{err}"
    );
}

#[test]
fn a_crash_at_every_step_of_dkg_finish_is_recoverable() {
    let ms = members(&["alice", "bob", "carol"]);
    let (c, r1) = round1_all(&ms);
    let r2 = round2_all(&c, &ms, &r1);
    let mine = to(&r2, &ms[0].label);
    let d = tempfile::tempdir().unwrap();
    let st = MemberState::new(d.path());
    for crash_at in [Step::ShareKept, Step::RosterWritten, Step::GroupSwitched] {
        let f = dkg::finish(&c, &ms[0].ks, &r1, &mine).unwrap();
        let mut hook = |s: Step| {
            if s == crash_at {
                Err(CeremonyError::NoState("killed".into()))
            } else {
                Ok(())
            }
        };
        assert!(st
            .install(&ms[0].ks, &f.share, &f.group, &f.roster, &mut hook)
            .is_err());
    }
    // Rerun from the top: finish is deterministic until forget().
    let f = dkg::finish(&c, &ms[0].ks, &r1, &mine).unwrap();
    st.install(
        &ms[0].ks,
        &f.share,
        &f.group,
        &f.roster,
        &mut state::no_crash,
    )
    .unwrap();
    dkg::forget(&c, &ms[0].ks).unwrap();
    assert_eq!(st.group::<C>().unwrap().unwrap(), f.group);
    assert_eq!(share_of(&ms[0], &f.group), f.share);
    let err = dkg::finish(&c, &ms[0].ks, &r1, &mine).unwrap_err();
    assert!(matches!(err, CeremonyError::NoState(_)), "{err}");
}

#[test]
fn forged_repair_messages_are_refused_naming_the_claimed_helper() {
    let ms = members(&["alice", "bob", "carol"]);
    let (_dirs, group, roster) = installed(&ms);
    let alice = group.identifier_of("alice").unwrap();
    let helpers = [
        group.identifier_of("bob").unwrap(),
        group.identifier_of("carol").unwrap(),
    ];
    let mut deltas = Vec::new();
    for m in &ms[1..] {
        let share = share_of(m, &group);
        deltas.push(
            maintain::repair_deltas(
                &group,
                &roster,
                &share,
                &m.ks,
                &alice,
                &helpers,
                &mut rng(3),
            )
            .unwrap(),
        );
    }
    let for_helper = |h: usize| -> Vec<_> {
        deltas
            .iter()
            .flatten()
            .filter(|d| d.part.to == helpers[h])
            .cloned()
            .collect()
    };
    let mut sigmas = Vec::new();
    for (h, m) in ms[1..].iter().enumerate() {
        sigmas.push(
            maintain::repair_sigma(
                &group,
                &roster,
                &m.ks,
                &alice,
                &helpers,
                &for_helper(h),
                &mut rng(4),
            )
            .unwrap(),
        );
    }
    // An outsider's sigma "from carol", sealed to alice's real key.
    let outsider = MemoryKeystore::new();
    let forged_sigma = {
        let piece = maintain::RepairPiece::<C, wallet_core::frost_core::keys::repairable::Sigma<C>> {
            from: helpers[1],
            to: alice,
            lost: alice,
            helpers: helpers.to_vec(),
            value: serde_json::from_value(serde_json::json!(
                "0000000000000000000000000000000000000000000000000000000000000001"
            ))
            .unwrap(),
        };
        let signed = wallet_core::ceremony::Authored::sign(group.id(), piece, &outsider).unwrap();
        let mut binding = alice.serialize();
        for h in &helpers {
            binding.extend_from_slice(&h.serialize());
        }
        maintain::RepairMessage {
            purpose: maintain::RepairKind::Sigma,
            part: wallet_core::ceremony::SealedPart::seal(
                wallet_core::ceremony::SealPurpose::RepairSigma,
                group.id(),
                Some(helpers[1]),
                alice,
                &binding,
                &ms[0].ks.identity_public_key().unwrap(),
                &serde_json::to_vec(&signed).unwrap(),
                &mut rng(5),
            )
            .unwrap(),
        }
    };
    let err = maintain::repair_recover(
        &group,
        &roster,
        &ms[0].ks,
        &helpers,
        &[sigmas[0].clone(), forged_sigma],
    )
    .unwrap_err();
    assert!(
        matches!(err, CeremonyError::NotAuthentic { ref claimed, .. } if claimed == "carol"),
        "{err}"
    );
    let share = maintain::repair_recover(&group, &roster, &ms[0].ks, &helpers, &sigmas).unwrap();
    share.check_member_of(&group).unwrap();
}

#[test]
fn labels_that_could_traverse_paths_or_fool_terminals_are_refused() {
    for bad in [
        "",
        "../etc",
        "a/b",
        "..",
        "a..b",
        ".hidden",
        "-x",
        "Alice",
        "ali ce",
        "a\u{202e}b",
        "a\nb",
        "a\u{0}b",
        "é",
        "a\\b",
        &"a".repeat(33),
    ] {
        assert!(Label::new(bad).is_err(), "{bad:?} accepted");
        let json = serde_json::to_string(bad).unwrap();
        assert!(
            serde_json::from_str::<Label>(&json).is_err(),
            "{bad:?} parsed"
        );
    }
    for good in [
        "alice",
        "bob-2",
        "treasury-ops",
        "a.b_c",
        "0",
        &"a".repeat(32),
    ] {
        Label::new(good).unwrap();
    }
    // The refused text is shown escaped.
    let e = Label::new("a\u{202e}b").unwrap_err().to_string();
    assert!(!e.contains('\u{202e}'), "{e}");
}

#[test]
fn documents_round_trip_through_the_envelope() {
    let ms = members(&["alice", "bob", "carol"]);
    let (c, r1) = round1_all(&ms);
    let bytes = format::encode(c.id(), &r1[0]).unwrap();
    let back: Round1Document<C> = format::decode_for_group(&bytes, c.id()).unwrap();
    assert_eq!(back, r1[0]);
    // Another ceremony's id is refused by the envelope.
    let other = Ceremony::<C>::new(2, cards(&ms), [9; 32]).unwrap();
    assert!(format::decode_for_group::<Round1Document<C>>(&bytes, other.id()).is_err());
}

#[test]
fn a_refresh_dkg_needs_every_member_and_refuses_forged_messages() {
    let ms = members(&["alice", "bob", "carol"]);
    let (dirs, group, roster) = installed(&ms);
    let c = Ceremony::<C>::for_refresh(&group, &roster, [3; 32]).unwrap();
    // Its fingerprint is not the keygen ceremony's over the same cards.
    assert_ne!(c.fingerprint(), ceremony(&ms).fingerprint());
    let fp = c.fingerprint().to_string();
    let shares: Vec<_> = ms.iter().map(|m| share_of(m, &group)).collect();
    let mut r1 = Vec::new();
    for (i, m) in ms.iter().enumerate() {
        let conf = c.clone().confirm(&fp).unwrap();
        r1.push(dkg::refresh_round1(&conf, &m.ks, &shares[i], &group, &mut rng(i as u64)).unwrap());
    }
    // Without carol's round-1 message (her consent), nothing goes on.
    let err = dkg::round2(&c, &ms[0].ks, &r1[..2], &mut rng(9)).unwrap_err();
    assert!(err.to_string().contains("missing from carol"), "{err}");
    // A forged one "from carol" is refused naming her.
    let mut forged = r1.clone();
    forged[2] =
        wallet_core::ceremony::Authored::sign(c.id(), r1[2].body.clone(), &MemoryKeystore::new())
            .unwrap();
    let err = dkg::round2(&c, &ms[0].ks, &forged, &mut rng(9)).unwrap_err();
    assert!(
        matches!(err, CeremonyError::NotAuthentic { ref claimed, .. } if claimed == "carol"),
        "{err}"
    );
    let mut r2 = Vec::new();
    for (i, m) in ms.iter().enumerate() {
        let o = dkg::round2(&c, &m.ks, &r1, &mut rng(50 + i as u64)).unwrap();
        for (to, doc) in o.messages {
            r2.push((m.label.clone(), to, doc));
        }
    }
    let tag = *c.id().as_bytes();
    let mut receipts = Vec::new();
    let mut staged = Vec::new();
    for (i, m) in ms.iter().enumerate() {
        let (share, new_group) =
            dkg::refresh_finish(&c, &m.ks, &r1, &to(&r2, &m.label), &shares[i], &group).unwrap();
        assert_eq!(new_group.id(), group.id());
        assert_ne!(new_group, group, "new verifying shares");
        let st = MemberState::new(dirs[i].path());
        st.stage(&m.ks, &share, &new_group, &tag, &mut state::no_crash)
            .unwrap();
        dkg::forget(&c, &m.ks).unwrap();
        receipts.push(maintain::receipt(&group, &roster, &tag, &m.ks).unwrap());
        staged.push((share, new_group));
    }
    for (i, m) in ms.iter().enumerate() {
        let st = MemberState::new(dirs[i].path());
        let g = maintain::activate_refresh(
            &st,
            &group,
            &roster,
            &receipts,
            &m.ks,
            &mut state::no_crash,
        )
        .unwrap()
        .unwrap();
        assert_eq!(g, staged[i].1);
        assert_eq!(share_of(m, &g), staged[i].0);
    }
    // The refreshed shares sign together.
    let g = &staged[0].1;
    let msg = b"after a refresh dkg, 32 bytes...";
    let (s0, c0) = wallet_core::signing::commit(&staged[0].0, &mut rng(70));
    let (s2, c2) = wallet_core::signing::commit(&staged[2].0, &mut rng(71));
    let pkg = wallet_core::signing::build_package(
        g,
        std::collections::BTreeMap::from([
            (*staged[0].0.identifier(), c0),
            (*staged[2].0.identifier(), c2),
        ]),
        msg,
    )
    .unwrap();
    let z0 = wallet_core::signing::sign(&staged[0].0, g, &pkg, msg, s0).unwrap();
    let z2 = wallet_core::signing::sign(&staged[2].0, g, &pkg, msg, s2).unwrap();
    let sig = wallet_core::signing::aggregate(
        g,
        &pkg,
        &std::collections::BTreeMap::from([
            (*staged[0].0.identifier(), z0),
            (*staged[2].0.identifier(), z2),
        ]),
    )
    .unwrap();
    wallet_core::signing::verify(g, msg, &sig).unwrap();
}
