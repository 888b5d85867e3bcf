//! Changing the quorum with the same key: 2-of-3 → 3-of-5 and 3-of-5 →
//! 2-of-4 keep the address, the new quorum signs (checked by
//! libsecp256k1), old and mixed quorums and a removed member are refused,
//! a lying dealer or courier is caught, and activation stopped at any step
//! completes when run again.

use std::collections::BTreeMap;
use std::sync::Arc;

use kura_testkit::{deal, libsecp_verify_tr, rng, sign_with};
use wallet_core::ceremony::maintain::{receipt, RefreshReceipt};
use wallet_core::ceremony::reshare::{
    accept_reshare, activate_reshare, deal_reshare, propose_reshare, reshared, Accepted,
    ReshareDeal, ReshareProposal,
};
use wallet_core::ceremony::state::{no_crash, MemberState, Step};
use wallet_core::ceremony::{CeremonyError, IdentityCard, Role, Roster, RosterEntry};
use wallet_core::frost_core::Identifier;
use wallet_core::keystore::{self, Keystore, MemoryKeystore};
use wallet_core::{KeyShare, Label, PublicGroup, Secp256k1Tr};

type C = Secp256k1Tr;

struct Member {
    label: Label,
    ks: Arc<MemoryKeystore>,
    dir: tempfile::TempDir,
}

impl Member {
    fn new(label: &str) -> Member {
        Member {
            label: Label::new(label).unwrap(),
            ks: Arc::new(MemoryKeystore::new()),
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn card(&self) -> IdentityCard {
        IdentityCard::new(
            self.label.clone(),
            Role::Signer,
            self.ks.identity_public_key().unwrap(),
        )
    }
    fn state(&self) -> MemberState {
        MemberState::new(self.dir.path())
    }
}

/// A dealt `t`-of-`n` group whose members hold their shares and group.
struct Setup {
    group: PublicGroup<C>,
    roster: Roster<C>,
    shares: Vec<KeyShare<C>>,
    members: Vec<Member>,
}

fn setup(t: u16, n: u16, seed: u64) -> Setup {
    let dealt = deal::<C>(t, n, seed);
    let members: Vec<Member> = dealt
        .shares
        .iter()
        .map(|s| Member::new(s.label().as_str()))
        .collect();
    let roster = Roster {
        members: dealt
            .shares
            .iter()
            .zip(&members)
            .map(|(s, m)| RosterEntry {
                participant: *s.identifier(),
                label: s.label().clone(),
                key: m.ks.identity_public_key().unwrap(),
            })
            .collect(),
        dealer: None,
    };
    for (s, m) in dealt.shares.iter().zip(&members) {
        m.state()
            .install(&*m.ks, s, &dealt.group, &roster, &mut no_crash)
            .unwrap();
    }
    Setup {
        group: dealt.group,
        roster,
        shares: dealt.shares,
        members,
    }
}

/// The whole reshare: `proposer` proposes `(threshold, new members)` dealt
/// by `dealers`; every new member accepts and stages; receipts; every new
/// member activates. Returns the new group and each new member's share.
fn reshare(
    s: &Setup,
    new_members: &[&Member],
    threshold: u16,
    dealers: &[usize],
) -> (PublicGroup<C>, Vec<KeyShare<C>>) {
    let (proposal, deals) = proposal_and_deals(s, new_members, threshold, dealers);
    let (staged, receipts) = stage_all(s, new_members, &proposal, &deals);
    for m in new_members {
        activate_reshare::<C>(&m.state(), &receipts, &*m.ks, &mut no_crash)
            .unwrap()
            .unwrap();
    }
    let group = staged[0].group.clone();
    (group, staged.into_iter().map(|a| a.share).collect())
}

/// Every new member accepts and stages the reshare; their receipts.
fn stage_all(
    s: &Setup,
    new_members: &[&Member],
    proposal: &ReshareProposal<C>,
    deals: &[ReshareDeal<C>],
) -> (Vec<Accepted<C>>, Vec<RefreshReceipt<C>>) {
    let mut staged = Vec::new();
    let mut receipts = Vec::new();
    for m in new_members {
        let a = accept_reshare(&s.group, &s.roster, proposal, deals, &*m.ks).unwrap();
        m.state()
            .stage_reshare(
                &*m.ks,
                &a.share,
                &a.group,
                &a.plan.roster,
                &a.tag,
                &mut no_crash,
            )
            .unwrap();
        receipts.push(receipt(&a.group, &a.plan.roster, &a.tag, &*m.ks).unwrap());
        staged.push(a);
    }
    (staged, receipts)
}

fn proposal_and_deals(
    s: &Setup,
    new_members: &[&Member],
    threshold: u16,
    dealers: &[usize],
) -> (ReshareProposal<C>, Vec<ReshareDeal<C>>) {
    let ids: Vec<Identifier<C>> = dealers.iter().map(|i| *s.shares[*i].identifier()).collect();
    let cards = new_members.iter().map(|m| m.card()).collect();
    let proposer = &s.members[dealers[0]];
    let proposal = propose_reshare(
        &s.group,
        &s.roster,
        threshold,
        cards,
        ids,
        &*proposer.ks,
        &mut rng(1),
    )
    .unwrap();
    let deals = dealers
        .iter()
        .map(|i| {
            deal_reshare(
                &s.group,
                &s.roster,
                &s.shares[*i],
                &proposal,
                &*s.members[*i].ks,
                &mut rng(100 + *i as u64),
            )
            .unwrap()
        })
        .collect();
    (proposal, deals)
}

fn signs(group: &PublicGroup<C>, signers: &[&KeyShare<C>]) -> bool {
    let msg = [7u8; 32];
    match sign_with(group, signers, &msg, 5) {
        Ok(sig) => libsecp_verify_tr(group, &msg, &sig),
        Err(_) => false,
    }
}

#[test]
fn two_of_three_becomes_three_of_five_with_the_same_address() {
    let s = setup(2, 3, 1);
    let (d, e) = (Member::new("dave"), Member::new("erin"));
    let new: Vec<&Member> = s.members.iter().chain([&d, &e]).collect();
    let (group, shares) = reshare(&s, &new, 3, &[0, 2]);
    assert_eq!(group.id(), s.group.id());
    assert_eq!(group.verifying_key(), s.group.verifying_key());
    assert_eq!(group.taproot(), s.group.taproot());
    assert_eq!(group.xpub(), s.group.xpub());
    assert_eq!((group.min_signers(), group.max_signers()), (3, 5));
    // Current members kept their identifiers.
    for (old, new) in s.shares.iter().zip(&shares) {
        assert_eq!(old.identifier(), new.identifier());
    }
    // Any three new shares sign; two do not.
    assert!(signs(&group, &[&shares[0], &shares[3], &shares[4]]));
    assert!(signs(&group, &[&shares[1], &shares[2], &shares[4]]));
    assert!(!signs(&group, &[&shares[0], &shares[4]]));
    // Old shares under the new group, alone or mixed with new ones: refused.
    assert!(!signs(&group, &[&s.shares[0], &s.shares[1], &s.shares[2]]));
    assert!(!signs(&group, &[&shares[3], &shares[4], &s.shares[0]]));
    // Every member's keystore and home now hold the new state; the old
    // share is gone from the kept members' keystores.
    for (m, share) in new.iter().zip(&shares) {
        let st = m.state();
        assert_eq!(st.group::<C>().unwrap().unwrap(), group);
        assert_eq!(st.roster::<C>(&group).unwrap().members.len(), 5);
        let loaded = keystore::load_share::<C>(&*m.ks, &group, share.identifier()).unwrap();
        assert_eq!(&loaded, share);
        assert!(st.staged::<C>().unwrap().is_none());
    }
    for (m, old) in s.members.iter().zip(&s.shares) {
        assert!(keystore::load_share::<C>(&*m.ks, &s.group, old.identifier()).is_err());
    }
}

#[test]
fn three_of_five_becomes_two_of_four_and_the_removed_member_is_refused() {
    let s = setup(3, 5, 2);
    // signer-5 leaves; the threshold falls to 2.
    let new: Vec<&Member> = s.members.iter().take(4).collect();
    let (group, shares) = reshare(&s, &new, 2, &[1, 2, 4]);
    assert_eq!(group.taproot(), s.group.taproot());
    assert_eq!((group.min_signers(), group.max_signers()), (2, 4));
    assert!(signs(&group, &[&shares[0], &shares[3]]));
    assert!(signs(&group, &[&shares[1], &shares[2]]));
    // The removed member's share is not the new group's: refused alone or
    // with new members.
    let removed = &s.shares[4];
    assert!(!signs(&group, &[removed, &shares[0]]));
    assert!(removed.check_member_of(&group).is_err());
    let commitments: BTreeMap<_, _> = [removed, &shares[0]]
        .iter()
        .map(|k| {
            (
                *k.identifier(),
                wallet_core::signing::commit(*k, &mut rng(3)).1,
            )
        })
        .collect();
    assert!(wallet_core::signing::build_package(&group, commitments, &[1; 32]).is_err());
    // The old 3-of-5 quorum's shares are gone from every remaining member.
    for (m, old) in s.members.iter().zip(&s.shares).take(4) {
        assert!(keystore::load_share::<C>(&*m.ks, &s.group, old.identifier()).is_err());
    }
    // Anyone with the public documents computes the same new group.
    let new_members: Vec<&Member> = s.members.iter().take(4).collect();
    let (proposal, deals) = proposal_and_deals(&s, &new_members, 2, &[1, 2, 4]);
    let public = reshared(&s.group, &s.roster, &proposal, &deals).unwrap();
    assert_eq!(public.group.verifying_key(), group.verifying_key());
    assert_eq!(public.plan.roster.members.len(), 4);
}

#[test]
fn a_lying_dealer_a_forger_and_a_tampering_courier_are_caught() {
    let s = setup(2, 3, 3);
    let d = Member::new("dave");
    let new: Vec<&Member> = s.members.iter().chain([&d]).collect();
    let (proposal, deals) = proposal_and_deals(&s, &new, 2, &[0, 1]);

    // Dealer signer-2 hands on signer-1's deal as its own (re-signed with
    // its own key): its commitment is not signer-2's part of the key.
    let mut body = deals[0].body.clone();
    body.from = *s.shares[1].identifier();
    let lying =
        wallet_core::ceremony::Authored::sign(s.group.id(), body, &*s.members[1].ks).unwrap();
    let e = accept_reshare(
        &s.group,
        &s.roster,
        &proposal,
        &[deals[0].clone(), lying],
        &*d.ks,
    )
    .unwrap_err();
    assert!(e.to_string().contains("signer-2"), "{e}");
    assert!(
        e.to_string().contains("not its part of the group key"),
        "{e}"
    );

    // A courier altering a sealed share: it no longer opens.
    let mut altered = deals[1].clone();
    let last = altered.body.shares.len() - 1;
    let mut sealed = serde_json::to_value(&altered.body.shares[last]).unwrap();
    let ct = sealed["sealed"]["ciphertext"].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if ct.starts_with('0') { "1" } else { "0" },
        &ct[1..]
    );
    sealed["sealed"]["ciphertext"] = flipped.into();
    altered.body.shares[last] = serde_json::from_value(sealed).unwrap();
    // (re-signed by nobody: the dealer's signature no longer verifies)
    let e = accept_reshare(
        &s.group,
        &s.roster,
        &proposal,
        &[deals[0].clone(), altered],
        &*d.ks,
    )
    .unwrap_err();
    assert!(matches!(e, CeremonyError::NotAuthentic { .. }), "{e}");

    // A deal missing: the reshare waits, naming the dealer.
    let e = accept_reshare(&s.group, &s.roster, &proposal, &deals[..1], &*d.ks).unwrap_err();
    assert!(e.to_string().contains("no deal yet from signer-2"), "{e}");

    // Fewer dealers than the threshold: no quorum.
    let e = propose_reshare(
        &s.group,
        &s.roster,
        2,
        new.iter().map(|m| m.card()).collect(),
        vec![*s.shares[0].identifier()],
        &*s.members[0].ks,
        &mut rng(9),
    )
    .unwrap_err();
    assert!(
        matches!(e, CeremonyError::NoQuorum { have: 1, need: 2 }),
        "{e}"
    );

    // A proposal signed by an outsider (dave, who is not yet a member).
    let mut forged = proposal.clone();
    forged = wallet_core::ceremony::Authored::sign(s.group.id(), forged.body, &*d.ks).unwrap();
    let e = accept_reshare(&s.group, &s.roster, &forged, &deals, &*d.ks).unwrap_err();
    assert!(matches!(e, CeremonyError::NotAuthentic { .. }), "{e}");

    // A current member's card under another key (a swapped card).
    let mut cards: Vec<IdentityCard> = new.iter().map(|m| m.card()).collect();
    cards[0].key = d.ks.identity_public_key().unwrap();
    let e = propose_reshare(
        &s.group,
        &s.roster,
        2,
        cards,
        vec![*s.shares[0].identifier(), *s.shares[1].identifier()],
        &*s.members[0].ks,
        &mut rng(9),
    )
    .unwrap_err();
    assert!(matches!(e, CeremonyError::Cards(_)), "{e}");

    // Activation waits for every new member's receipt.
    let a = accept_reshare(&s.group, &s.roster, &proposal, &deals, &*d.ks).unwrap();
    d.state()
        .stage_reshare(
            &*d.ks,
            &a.share,
            &a.group,
            &a.plan.roster,
            &a.tag,
            &mut no_crash,
        )
        .unwrap();
    let own = receipt(&a.group, &a.plan.roster, &a.tag, &*d.ks).unwrap();
    let e = activate_reshare::<C>(&d.state(), &[own], &*d.ks, &mut no_crash).unwrap_err();
    assert!(
        e.to_string().contains("no receipt yet from signer-1"),
        "{e}"
    );
}

#[test]
fn an_activation_stopped_at_any_step_completes_when_run_again() {
    for stop in [
        Step::GroupSwitched,
        Step::RosterWritten,
        Step::ShareSwitched,
    ] {
        let s = setup(2, 3, 4);
        let d = Member::new("dave");
        let new: Vec<&Member> = s.members.iter().chain([&d]).collect();
        let (proposal, deals) = proposal_and_deals(&s, &new, 3, &[0, 1]);
        let (staged, receipts) = stage_all(&s, &new, &proposal, &deals);
        let m = &s.members[0];
        let mut crash = |step: Step| {
            if step == stop {
                Err(CeremonyError::NoState(format!("killed at {step:?}")))
            } else {
                Ok(())
            }
        };
        assert!(activate_reshare::<C>(&m.state(), &receipts, &*m.ks, &mut crash).is_err());
        // Run again: it completes.
        let active = activate_reshare::<C>(&m.state(), &receipts, &*m.ks, &mut no_crash)
            .unwrap()
            .unwrap();
        let (share, group) = (&staged[0].share, &staged[0].group);
        assert_eq!(&active, group, "{stop:?}");
        let st = m.state();
        assert_eq!(&st.group::<C>().unwrap().unwrap(), group);
        assert_eq!(st.roster::<C>(group).unwrap().members.len(), 4);
        assert_eq!(
            &keystore::load_share::<C>(&*m.ks, group, share.identifier()).unwrap(),
            share
        );
        // And once more: nothing staged, nothing to do.
        assert!(activate_reshare::<C>(&st, &receipts, &*m.ks, &mut no_crash)
            .unwrap()
            .is_none());
    }
}

#[test]
fn a_member_who_leaves_erases_its_share_once_the_new_quorum_holds_theirs() {
    use wallet_core::ceremony::reshare::retire;
    let s = setup(2, 3, 6);
    // signer-3 leaves; dave joins; still 2-of-3.
    let d = Member::new("dave");
    let new: Vec<&Member> = s.members.iter().take(2).chain([&d]).collect();
    let (proposal, deals) = proposal_and_deals(&s, &new, 2, &[0, 1]);
    let mut receipts = Vec::new();
    for m in &new {
        let a = accept_reshare(&s.group, &s.roster, &proposal, &deals, &*m.ks).unwrap();
        receipts.push(receipt(&a.group, &a.plan.roster, &a.tag, &*m.ks).unwrap());
    }
    let leaving = &s.members[2];
    let state = leaving.state();
    // Not before every new member holds its share.
    let e = retire(
        &state,
        &s.group,
        &s.roster,
        &proposal,
        &deals,
        &receipts[..2],
        &*leaving.ks,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no receipt yet from dave"), "{e}");
    assert!(keystore::load_share::<C>(&*leaving.ks, &s.group, s.shares[2].identifier()).is_ok());
    // A member who stays cannot retire by this reshare.
    let stays = &s.members[0];
    let e = retire(
        &stays.state(),
        &s.group,
        &s.roster,
        &proposal,
        &deals,
        &receipts,
        &*stays.ks,
    )
    .unwrap_err();
    assert!(matches!(e, CeremonyError::Misaddressed(_)), "{e}");
    // With every receipt: the share is erased, the group files are gone.
    retire(
        &state,
        &s.group,
        &s.roster,
        &proposal,
        &deals,
        &receipts,
        &*leaving.ks,
    )
    .unwrap();
    assert!(keystore::load_share::<C>(&*leaving.ks, &s.group, s.shares[2].identifier()).is_err());
    assert!(state.group::<C>().unwrap().is_none());
    assert!(!state.roster_path().exists());
}

#[test]
fn a_dealer_who_gives_members_different_deals_stops_the_activation() {
    // Dealer signer-1 signs two deals for the same proposal and gives one
    // to some new members, the other to the rest: each member's checks
    // pass, but they would hold shares of different sharings (a group that
    // can never sign again). Receipts name the group each member staged,
    // so nobody activates.
    let s = setup(2, 3, 7);
    let new: Vec<&Member> = s.members.iter().collect();
    let (proposal, deals) = proposal_and_deals(&s, &new, 2, &[0, 1]);
    let other = deal_reshare(
        &s.group,
        &s.roster,
        &s.shares[0],
        &proposal,
        &*s.members[0].ks,
        &mut rng(999),
    )
    .unwrap();
    assert_ne!(other.body.commitment, deals[0].body.commitment);
    let mut receipts = Vec::new();
    for (k, m) in new.iter().enumerate() {
        let given = if k == 2 {
            vec![other.clone(), deals[1].clone()]
        } else {
            deals.clone()
        };
        let a = accept_reshare(&s.group, &s.roster, &proposal, &given, &*m.ks).unwrap();
        m.state()
            .stage_reshare(
                &*m.ks,
                &a.share,
                &a.group,
                &a.plan.roster,
                &a.tag,
                &mut no_crash,
            )
            .unwrap();
        receipts.push(receipt(&a.group, &a.plan.roster, &a.tag, &*m.ks).unwrap());
    }
    for m in &new {
        let e = activate_reshare::<C>(&m.state(), &receipts, &*m.ks, &mut no_crash).unwrap_err();
        assert!(matches!(e, CeremonyError::Misaddressed(_)), "{e}");
        // Still on the old group and share.
        assert_eq!(m.state().group::<C>().unwrap().unwrap(), s.group);
    }
}
