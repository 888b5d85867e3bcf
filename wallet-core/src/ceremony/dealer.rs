//! Trusted-dealer keygen (and the split of an existing key) as one signed
//! document, the [`Dealing`].
//!
//! The dealer has its own identity card. The ceremony's fingerprint covers
//! it with every member's card, so the dealer confirms the fingerprint
//! before sealing anything ([`deal`] takes a [`Confirmed`] ceremony), and
//! every member confirms the same fingerprint before importing ([`import`]):
//! a dealing made by anyone else, or for a swapped card, is refused before
//! a share is opened.

use frost_core::keys::PublicKeyPackage;
use frost_core::{Identifier, SigningKey};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::dkg::{Ceremony, CeremonyPlan, Confirmed};
use super::{
    group_fingerprint, Authored, CeremonyError, Fingerprint, Roster, SealPurpose, SealedPart,
};
use crate::format::{DocumentBody, GroupId};
use crate::group::{KeyShare, PublicGroup};
use crate::keygen::{self, Identifiers};
use crate::keystore::Keystore;
use crate::suite::{KuraSuite, SuiteId};

/// The dealing's content, signed by the dealer (kind `dealing`, envelope
/// group = the new group's id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct DealingBody<C: KuraSuite> {
    /// The ceremony: threshold, nonce, members' and dealer's cards.
    pub plan: CeremonyPlan,
    /// The group's public key package.
    pub public_key_package: PublicKeyPackage<C>,
    /// One `key-share` document per member, sealed to it.
    pub shares: Vec<SealedPart<C>>,
}

impl<C: KuraSuite> DocumentBody for DealingBody<C> {
    const KIND: &'static str = "dealing";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

/// A signed dealing.
pub type Dealing<C> = Authored<DealingBody<C>>;

/// What a dealer produces.
#[derive(Debug)]
pub struct Dealt<C: KuraSuite> {
    /// The signed dealing (encode it with [`crate::format::encode`] under `group.id()`).
    pub dealing: Dealing<C>,
    /// The group.
    pub group: PublicGroup<C>,
    /// Its roster (with the dealer's card).
    pub roster: Roster<C>,
    /// The group fingerprint.
    pub fingerprint: Fingerprint,
}

/// Deals a new group (or splits `key`) for a confirmed dealer ceremony;
/// `keystore` holds the dealer's identity key, which signs the dealing.
///
/// # Errors
/// [`CeremonyError::Dealer`] when the ceremony has no dealer or the
/// keystore's key is not the dealer card's.
pub fn deal<C: KuraSuite, R: RngCore + CryptoRng>(
    c: &Confirmed<C>,
    keystore: &dyn Keystore,
    key: Option<&SigningKey<C>>,
    rng: &mut R,
) -> Result<Dealt<C>, CeremonyError> {
    let dealer = c.dealer().ok_or_else(|| {
        CeremonyError::Dealer("this ceremony has no dealer card; a dealer needs one".into())
    })?;
    if dealer.key != keystore.identity_public_key()? {
        return Err(CeremonyError::Dealer(format!(
            "this keystore's identity key is not on the dealer card of {}",
            dealer.label
        )));
    }
    let labels: Vec<_> = c
        .members()
        .values()
        .map(|card| card.label.clone())
        .collect();
    let ids: Vec<Identifier<C>> = c.members().keys().copied().collect();
    let dealt = match key {
        None => keygen::dealer::<C, _>(c.min_signers(), &labels, Identifiers::Custom(&ids), rng)?,
        Some(k) => {
            keygen::split::<C, _>(k, c.min_signers(), &labels, Identifiers::Custom(&ids), rng)?
        }
    };
    let group = dealt.group;
    let mut shares = Vec::new();
    for share in &dealt.shares {
        let card = c
            .members()
            .get(share.identifier())
            .ok_or(CeremonyError::NotAMember)?;
        let doc = share.to_secret_document()?;
        shares.push(SealedPart::seal(
            SealPurpose::DealtShare,
            group.id(),
            None,
            *share.identifier(),
            c.id().as_bytes(),
            &card.key,
            doc.expose(),
            rng,
        )?);
    }
    let body = DealingBody {
        plan: c.plan(),
        public_key_package: group.public_key_package().clone(),
        shares,
    };
    let dealing = Authored::sign(group.id(), body, keystore)?;
    let roster = c.roster();
    let fingerprint = group_fingerprint(&group, &roster);
    Ok(Dealt {
        dealing,
        group,
        roster,
        fingerprint,
    })
}

/// What a member takes from a dealing.
#[derive(Debug)]
pub struct Imported<C: KuraSuite> {
    /// Its share (secret).
    pub share: KeyShare<C>,
    /// The group.
    pub group: PublicGroup<C>,
    /// The roster, with the dealer's card pinned.
    pub roster: Roster<C>,
    /// The group fingerprint to compare.
    pub fingerprint: Fingerprint,
}

/// A member's side: confirms the announced ceremony fingerprint against
/// the cards in the dealing, checks the dealer's signature, opens its share
/// and checks it against the group. Nothing is stored (see
/// [`super::state::MemberState::install`]).
///
/// # Errors
/// [`CeremonyError::FingerprintMismatch`] for a dealing over other cards or
/// by another dealer (nothing is opened); [`CeremonyError::NotAuthentic`]
/// for a dealing not signed by its dealer; [`CeremonyError::SealOpen`] or a
/// share check for a share that is not this member's.
pub fn import<C: KuraSuite>(
    scope: &GroupId,
    dealing: &Dealing<C>,
    announced: &str,
    keystore: &dyn Keystore,
) -> Result<Imported<C>, CeremonyError> {
    let c = Ceremony::<C>::from_plan(&dealing.body.plan)?.confirm(announced)?;
    let dealer = c
        .dealer()
        .ok_or_else(|| CeremonyError::Dealer("the dealing names no dealer".into()))?;
    let body = dealing.verify(scope, &dealer.key, &dealer.label)?;
    let group = PublicGroup::new(body.public_key_package.clone(), c.labels())?;
    if group.id() != scope || group.min_signers() != c.min_signers() {
        return Err(CeremonyError::Changed(
            "the dealing's group does not match its envelope or threshold".into(),
        ));
    }
    let me = c.me(keystore)?;
    let mut mine = body.shares.iter().filter(|p| p.to == me);
    let part = mine.next().ok_or_else(|| {
        CeremonyError::Misaddressed("the dealing holds no share for this member".into())
    })?;
    if mine.next().is_some() || part.from.is_some() {
        return Err(CeremonyError::Messages(
            "the dealing holds two shares for this member, or one with a sender".into(),
        ));
    }
    let plain = part.open(
        SealPurpose::DealtShare,
        group.id(),
        c.id().as_bytes(),
        keystore,
        "dealt share",
        dealer.label.as_str(),
    )?;
    let share = KeyShare::<C>::from_secret_document(plain.expose())?;
    share.check_member_of(&group)?;
    if share.identifier() != &me || Some(share.label()) != group.label(&me) {
        return Err(CeremonyError::Misaddressed(
            "the share inside is for another member".into(),
        ));
    }
    let roster = c.roster();
    let fingerprint = group_fingerprint(&group, &roster);
    Ok(Imported {
        share,
        group,
        roster,
        fingerprint,
    })
}
