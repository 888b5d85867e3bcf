//! Changing the quorum with the same key: 2-of-3 → 3-of-5 and 3-of-5 →
//! 2-of-4 keep the address, the new quorum signs (checked by
//! libsecp256k1), old and mixed quorums and a removed member are refused,
//! a lying dealer or courier is caught, and activation stopped at any step
//! completes when run again.

use std::collections::BTreeMap;
use std::sync::Arc;

use kura_testkit::{deal, libsecp_verify_tr, rng, sign_with};
use wallet_core::audit::AuditLog;
use wallet_core::ceremony::maintain::{receipt, RefreshReceipt};
use wallet_core::ceremony::reshare::{
    accept_reshare, activate_reshare, deal_reshare, propose_reshare, reshared, Accepted, Consent,
    ReshareDeal, ReshareProposal, ReshareTerms,
};
use wallet_core::ceremony::state::{no_crash, MemberState, Step};
use wallet_core::ceremony::{CeremonyError, IdentityCard, Role, Roster, RosterEntry};
use wallet_core::frost_core::Identifier;
use wallet_core::keystore::{self, Keystore, MemoryKeystore};
use wallet_core::{KeyShare, Label, PublicGroup, Secp256k1Tr};

type C = Secp256k1Tr;

/// The tests' clock (unix seconds); proposals expire an hour later.
const NOW: u64 = 1_800_000_000;

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
    fn log(&self) -> AuditLog {
        AuditLog::open(
            &self.dir.path().join("audit.jsonl"),
            &self.ks.identity_public_key().unwrap(),
        )
        .unwrap()
    }
}

/// Terms dealt by `dealers`, expiring an hour after [`NOW`].
fn terms(threshold: u16, members: &[&Member], dealers: Vec<Identifier<C>>) -> ReshareTerms<C> {
    ReshareTerms {
        threshold,
        members: members.iter().map(|m| m.card()).collect(),
        dealers,
        expires: NOW + 3600,
    }
}

/// Dealer `i` of `s` consents (confirming every joining card, as its
/// operator would by phone) and deals.
fn deal_as(s: &Setup, i: usize, proposal: &ReshareProposal<C>, seed: u64) -> ReshareDeal<C> {
    let consent = consent(s, proposal);
    deal_reshare(
        &s.group,
        &s.roster,
        &s.shares[i],
        &consent,
        &*s.members[i].ks,
        &mut s.members[i].log(),
        &mut rng(seed),
    )
    .unwrap()
}

/// A consent with every joining card's fingerprint confirmed.
fn consent(s: &Setup, proposal: &ReshareProposal<C>) -> Consent<C> {
    let plan =
        wallet_core::ceremony::reshare::check_proposal(&s.group, &s.roster, proposal).unwrap();
    let fps: Vec<String> = plan
        .joining_cards(&s.group)
        .iter()
        .map(|c| c.fingerprint().to_string())
        .collect();
    let fps: Vec<&str> = fps.iter().map(String::as_str).collect();
    Consent::check(&s.group, &s.roster, proposal, &fps, NOW).unwrap()
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
        let a = accept_reshare(&s.group, &s.roster, proposal, deals, &*m.ks, NOW).unwrap();
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
    let proposer = &s.members[dealers[0]];
    let proposal = propose_reshare(
        &s.group,
        &s.roster,
        terms(threshold, new_members, ids),
        &*proposer.ks,
        &mut rng(1),
    )
    .unwrap();
    let deals = dealers
        .iter()
        .map(|i| deal_as(s, *i, &proposal, 100 + *i as u64))
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
        NOW,
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
        NOW,
    )
    .unwrap_err();
    assert!(matches!(e, CeremonyError::NotAuthentic { .. }), "{e}");

    // A deal missing: the reshare waits, naming the dealer.
    let e = accept_reshare(&s.group, &s.roster, &proposal, &deals[..1], &*d.ks, NOW).unwrap_err();
    assert!(e.to_string().contains("no deal yet from signer-2"), "{e}");

    // Fewer dealers than the threshold: no quorum.
    let e = propose_reshare(
        &s.group,
        &s.roster,
        terms(2, &new, vec![*s.shares[0].identifier()]),
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
    let e = accept_reshare(&s.group, &s.roster, &forged, &deals, &*d.ks, NOW).unwrap_err();
    assert!(matches!(e, CeremonyError::NotAuthentic { .. }), "{e}");

    // A current member's card under another key (a swapped card).
    let mut swapped = terms(
        2,
        &new,
        vec![*s.shares[0].identifier(), *s.shares[1].identifier()],
    );
    swapped.members[0].key = d.ks.identity_public_key().unwrap();
    let e =
        propose_reshare(&s.group, &s.roster, swapped, &*s.members[0].ks, &mut rng(9)).unwrap_err();
    assert!(matches!(e, CeremonyError::Cards(_)), "{e}");

    // Activation waits for every new member's receipt.
    let a = accept_reshare(&s.group, &s.roster, &proposal, &deals, &*d.ks, NOW).unwrap();
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
        let a = accept_reshare(&s.group, &s.roster, &proposal, &deals, &*m.ks, NOW).unwrap();
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
    // (Its own audit log refuses a second deal: it deals on a fresh log.)
    let fresh = tempfile::tempdir().unwrap();
    let mut fresh_log = AuditLog::open(
        &fresh.path().join("audit.jsonl"),
        &s.members[0].ks.identity_public_key().unwrap(),
    )
    .unwrap();
    let other = deal_reshare(
        &s.group,
        &s.roster,
        &s.shares[0],
        &consent(&s, &proposal),
        &*s.members[0].ks,
        &mut fresh_log,
        &mut rng(999),
    );
    assert!(other.is_err(), "a log behind its anchor must refuse");
    // ...unless its keystore holder re-anchors it (what only the dealer
    // itself, with its PIN, can do).
    fresh_log
        .reanchor(&*s.members[0].ks, NOW, "a dealer that deals twice")
        .unwrap();
    let other = deal_reshare(
        &s.group,
        &s.roster,
        &s.shares[0],
        &consent(&s, &proposal),
        &*s.members[0].ks,
        &mut fresh_log,
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
        let a = accept_reshare(&s.group, &s.roster, &proposal, &given, &*m.ks, NOW).unwrap();
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

#[test]
fn a_proposer_who_slips_in_a_card_of_its_own_gets_no_deal() {
    use wallet_core::ceremony::reshare::check_proposal;
    // signer-1 proposes that "dave" joins a 2-of-4 — but with a card whose
    // key signer-1 holds. Dealt, signer-1 alone would hold two shares of
    // the new group: it could move the funds alone.
    let s = setup(2, 3, 8);
    let dave = Member::new("dave");
    let fake = Member::new("dave");
    let new: Vec<&Member> = s.members.iter().chain([&fake]).collect();
    let ids = vec![*s.shares[0].identifier(), *s.shares[1].identifier()];
    let proposal = propose_reshare(
        &s.group,
        &s.roster,
        terms(2, &new, ids),
        &*s.members[0].ks,
        &mut rng(1),
    )
    .unwrap();
    // Dealer signer-2 confirms the fingerprint the real dave read out to
    // it: the proposal's dave is not that card, so there is no consent.
    let real = dave.card().fingerprint().to_string();
    let e = Consent::check(&s.group, &s.roster, &proposal, &[&real], NOW).unwrap_err();
    assert!(matches!(e, CeremonyError::Cards(_)), "{e}");
    assert!(e.to_string().contains("dave"), "{e}");
    // Nor without confirming any card, nor with a stray extra one.
    let e = Consent::check(&s.group, &s.roster, &proposal, &[], NOW).unwrap_err();
    assert!(e.to_string().contains("not confirmed"), "{e}");
    let fake_fp = fake.card().fingerprint().to_string();
    let e = Consent::check(&s.group, &s.roster, &proposal, &[&fake_fp, &real], NOW).unwrap_err();
    assert!(e.to_string().contains("no joining member"), "{e}");
    let e = Consent::check(&s.group, &s.roster, &proposal, &[&fake_fp, "junk"], NOW).unwrap_err();
    assert!(matches!(e, CeremonyError::BadFingerprint(_)), "{e}");

    // What the check prevents: a dealer fooled into confirming the fake
    // card deals, and signer-1 then signs alone with the fake dave's share.
    let fooled = Consent::check(&s.group, &s.roster, &proposal, &[&fake_fp], NOW).unwrap();
    let deals: Vec<ReshareDeal<C>> = [0, 1]
        .iter()
        .map(|i| {
            deal_reshare(
                &s.group,
                &s.roster,
                &s.shares[*i],
                &fooled,
                &*s.members[*i].ks,
                &mut s.members[*i].log(),
                &mut rng(50 + *i as u64),
            )
            .unwrap()
        })
        .collect();
    let mine = accept_reshare(
        &s.group,
        &s.roster,
        &proposal,
        &deals,
        &*s.members[0].ks,
        NOW,
    )
    .unwrap();
    let stolen = accept_reshare(&s.group, &s.roster, &proposal, &deals, &*fake.ks, NOW).unwrap();
    assert!(signs(&mine.group, &[&mine.share, &stolen.share]));
    assert_eq!(
        check_proposal(&s.group, &s.roster, &proposal)
            .unwrap()
            .joining_cards(&s.group)
            .len(),
        1
    );
}

#[test]
fn a_stale_or_expired_proposal_is_not_dealt_or_accepted() {
    let s = setup(2, 3, 9);
    let d = Member::new("dave");
    let new: Vec<&Member> = s.members.iter().chain([&d]).collect();
    let ids = vec![*s.shares[0].identifier(), *s.shares[1].identifier()];
    let proposal = propose_reshare(
        &s.group,
        &s.roster,
        terms(2, &new, ids.clone()),
        &*s.members[0].ks,
        &mut rng(1),
    )
    .unwrap();
    let fp = d.card().fingerprint().to_string();
    // At its expiry: no consent, no acceptance.
    let e = Consent::check(&s.group, &s.roster, &proposal, &[&fp], NOW + 3600).unwrap_err();
    assert!(matches!(e, CeremonyError::Expired(_)), "{e}");
    let deals = vec![deal_as(&s, 0, &proposal, 1), deal_as(&s, 1, &proposal, 2)];
    let e = accept_reshare(&s.group, &s.roster, &proposal, &deals, &*d.ks, NOW + 3600).unwrap_err();
    assert!(matches!(e, CeremonyError::Expired(_)), "{e}");
    accept_reshare(&s.group, &s.roster, &proposal, &deals, &*d.ks, NOW + 3599).unwrap();

    // An expiry nobody reaches is refused.
    let mut far = terms(2, &new, ids.clone());
    far.expires = NOW + 31 * 86_400;
    let p = propose_reshare(&s.group, &s.roster, far, &*s.members[0].ks, &mut rng(2)).unwrap();
    let e = Consent::check(&s.group, &s.roster, &p, &[&fp], NOW).unwrap_err();
    assert!(e.to_string().contains("more than the 30"), "{e}");

    // A refresh since the proposal (new verifying shares, same key,
    // roster and threshold — the same group fingerprint): stale.
    let refreshed = wallet_core::keygen::refresh::dealer_refresh(
        &s.group,
        &ids.iter()
            .chain([s.shares[2].identifier()])
            .copied()
            .collect::<Vec<_>>(),
        &mut rng(3),
    )
    .unwrap()
    .group;
    assert_eq!(
        wallet_core::ceremony::group_fingerprint(&refreshed, &s.roster).to_string(),
        wallet_core::ceremony::group_fingerprint(&s.group, &s.roster).to_string()
    );
    let e = Consent::check(&refreshed, &s.roster, &proposal, &[&fp], NOW).unwrap_err();
    assert!(matches!(e, CeremonyError::Changed(_)), "{e}");
    assert!(e.to_string().contains("verifying shares"), "{e}");
}

#[test]
fn a_dealer_deals_once_per_proposal_and_records_it() {
    use wallet_core::audit::AuditEvent;
    let s = setup(2, 3, 10);
    let d = Member::new("dave");
    let new: Vec<&Member> = s.members.iter().chain([&d]).collect();
    let (proposal, _) = proposal_and_deals(&s, &new, 2, &[0, 1]);
    let digest = wallet_core::ceremony::reshare::check_proposal(&s.group, &s.roster, &proposal)
        .unwrap()
        .digest;
    let m = &s.members[1];
    let log = m.log();
    let dealt: Vec<_> = log
        .entries()
        .iter()
        .filter(|e| {
            matches!(&e.record.event, AuditEvent::ReshareDealt { proposal } if *proposal == hex::encode(digest))
        })
        .collect();
    assert_eq!(dealt.len(), 1);
    // A second deal for the same proposal: refused, nothing new logged.
    let e = deal_reshare(
        &s.group,
        &s.roster,
        &s.shares[1],
        &consent(&s, &proposal),
        &*m.ks,
        &mut m.log(),
        &mut rng(7),
    )
    .unwrap_err();
    assert!(matches!(e, CeremonyError::AlreadyDealt), "{e}");
    assert_eq!(m.log().entries().len(), log.entries().len());
    // A disk writer deleting the log does not make the dealer forget: the
    // log's anchor in the keystore refuses the empty file.
    std::fs::remove_file(m.dir.path().join("audit.jsonl")).unwrap();
    let e = deal_reshare(
        &s.group,
        &s.roster,
        &s.shares[1],
        &consent(&s, &proposal),
        &*m.ks,
        &mut m.log(),
        &mut rng(7),
    )
    .unwrap_err();
    assert!(matches!(e, CeremonyError::Audit(_)), "{e}");
}

#[test]
fn a_current_member_under_another_label_is_refused() {
    // Same key, new label: it would get a new identifier and its old share
    // would stay in its keystore, never overwritten.
    let s = setup(2, 3, 11);
    let new: Vec<&Member> = s.members.iter().collect();
    let ids = vec![*s.shares[0].identifier(), *s.shares[1].identifier()];
    let mut relabelled = terms(2, &new, ids);
    relabelled.members[2].label = Label::new("carol").unwrap();
    let e = propose_reshare(
        &s.group,
        &s.roster,
        relabelled,
        &*s.members[0].ks,
        &mut rng(1),
    )
    .unwrap_err();
    assert!(matches!(e, CeremonyError::Cards(_)), "{e}");
    assert!(e.to_string().contains("keeps its label"), "{e}");
}

#[test]
fn a_staged_reshare_is_activated_only_as_a_reshare_and_as_staged() {
    use wallet_core::ceremony::maintain::activate_refresh;
    let s = setup(2, 3, 12);
    let d = Member::new("dave");
    let new: Vec<&Member> = s.members.iter().chain([&d]).collect();
    let (proposal, deals) = proposal_and_deals(&s, &new, 3, &[0, 1]);
    let (staged, receipts) = stage_all(&s, &new, &proposal, &deals);
    let m = &s.members[0];
    let st = m.state();

    // As a refresh (with or without the tag file): refused, nothing switches.
    let e =
        activate_refresh::<C>(&st, &s.group, &s.roster, &[], &*m.ks, &mut no_crash).unwrap_err();
    assert!(matches!(e, CeremonyError::NoState(_)), "{e}");
    let tag = std::fs::read(st.staged_tag_path()).unwrap();
    std::fs::remove_file(st.staged_tag_path()).unwrap();
    let e =
        activate_refresh::<C>(&st, &s.group, &s.roster, &[], &*m.ks, &mut no_crash).unwrap_err();
    assert!(matches!(e, CeremonyError::NoState(_)), "{e}");
    assert_eq!(st.group::<C>().unwrap().unwrap(), s.group);
    assert!(st.staged::<C>().unwrap().is_some());
    std::fs::write(st.staged_tag_path(), &tag).unwrap();

    // A disk writer swaps dave's key in the staged roster for its own and
    // forges dave's receipt: the staging record in the keystore refuses.
    let mallory = Member::new("dave");
    let mut roster = staged[0].plan.roster.clone();
    let dave = roster
        .members
        .iter_mut()
        .find(|e| e.label.as_str() == "dave")
        .unwrap();
    dave.key = mallory.ks.identity_public_key().unwrap();
    let group = &staged[0].group;
    let original = std::fs::read(st.staged_roster_path()).unwrap();
    std::fs::write(
        st.staged_roster_path(),
        roster.to_document(group.id()).unwrap(),
    )
    .unwrap();
    let mut forged = receipts.clone();
    forged[3] = receipt(group, &roster, &staged[0].tag, &*mallory.ks).unwrap();
    let e = activate_reshare::<C>(&st, &forged, &*m.ks, &mut no_crash).unwrap_err();
    assert!(matches!(e, CeremonyError::NoState(_)), "{e}");
    assert!(e.to_string().contains("not what was staged"), "{e}");
    assert_eq!(st.group::<C>().unwrap().unwrap(), s.group);
    // So is a tag file changed on disk.
    std::fs::write(st.staged_roster_path(), &original).unwrap();
    std::fs::write(
        st.staged_tag_path(),
        format!("{}\n", hex::encode([7u8; 32])),
    )
    .unwrap();
    let e = activate_reshare::<C>(&st, &receipts, &*m.ks, &mut no_crash).unwrap_err();
    assert!(
        matches!(
            e,
            CeremonyError::NoState(_) | CeremonyError::Messages(_) | CeremonyError::Misaddressed(_)
        ),
        "{e}"
    );
    assert_eq!(st.group::<C>().unwrap().unwrap(), s.group);
    // Restored, it activates.
    std::fs::write(st.staged_tag_path(), &tag).unwrap();
    activate_reshare::<C>(&st, &receipts, &*m.ks, &mut no_crash)
        .unwrap()
        .unwrap();
    assert_eq!(&st.group::<C>().unwrap().unwrap(), group);
}
