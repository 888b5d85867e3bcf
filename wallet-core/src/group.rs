//! Groups, participants and key shares.
//!
//! A [`PublicGroup`] is what everyone may know about a signing group: its
//! threshold, its participants with their labels, and the FROST public key
//! package. A [`KeyShare`] is one participant's secret share with the public
//! facts needed to use it; it is the only secret-bearing type here and its
//! `Debug` output is redacted.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use frost_core::keys::{KeyPackage, PublicKeyPackage, VerifyingShare};
use frost_core::{Identifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::format::{self, DocumentBody, FormatError, GroupId};
use crate::suite::{KuraSuite, SuiteId};

/// The largest group Kura builds (FROST identifiers are scalars; this bound
/// keeps files, packages and loops small).
pub const MAX_PARTICIPANTS: u16 = 1000;

/// A person-facing name for a participant, unique within a group.
///
/// Labels end up in file names and on operators' screens, so they are
/// restricted to `[a-z0-9][a-z0-9._-]{0,31}` without `..`: no path
/// separators, no traversal, no control, bidi or look-alike characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Label(String);

/// The longest label, in characters (all ASCII).
pub const MAX_LABEL_LEN: usize = 32;

impl Label {
    /// Checks and wraps a label.
    ///
    /// # Errors
    /// [`GroupError::InvalidLabel`] unless the label is 1 to 32 characters
    /// of `a-z`, `0-9`, `.`, `_` and `-`, starts with a letter or digit and
    /// contains no `..`.
    pub fn new(label: impl Into<String>) -> Result<Self, GroupError> {
        let label = label.into();
        let first_ok = label
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let chars_ok = label.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
        });
        if !first_ok || !chars_ok || label.len() > MAX_LABEL_LEN || label.contains("..") {
            // The refused text is kept escaped so that printing the error
            // cannot move a terminal's cursor or reorder text.
            let shown: String = label.chars().take(2 * MAX_LABEL_LEN).collect();
            return Err(GroupError::InvalidLabel(shown.escape_default().to_string()));
        }
        Ok(Label(label))
    }

    /// The label text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Label::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A participant of a group: its FROST identifier and its label.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct Participant<C: KuraSuite> {
    /// The FROST identifier (a non-zero scalar).
    pub id: Identifier<C>,
    /// The person-facing name.
    pub label: Label,
}

/// Why a group or key share is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// A bad label.
    #[error("invalid participant label \"{0}\": use 1 to 32 of a-z 0-9 . _ -, starting with a letter or digit, without \"..\"")]
    InvalidLabel(String),
    /// Threshold and participant count do not fit together.
    #[error(
        "invalid threshold {min_signers}-of-{max_signers}: need 2 <= t <= n <= {MAX_PARTICIPANTS}"
    )]
    InvalidThreshold {
        /// t
        min_signers: u16,
        /// n
        max_signers: u16,
    },
    /// Two participants with one identifier.
    #[error("identifier {0} appears twice; every participant needs its own identifier")]
    DuplicateIdentifier(String),
    /// Two participants with one label.
    #[error("label {0:?} appears twice; every participant needs its own label")]
    DuplicateLabel(String),
    /// The roster and the public key package disagree.
    #[error("the participant list does not match the public key package: {0}")]
    RosterMismatch(String),
    /// A key share that does not fit its group or is internally inconsistent.
    #[error("key share is not valid for this group: {0}")]
    ShareMismatch(String),
    /// A participant not in the group.
    #[error("participant {0} is not a member of this group")]
    UnknownParticipant(String),
    /// A child tweak that is not a scalar, or reaches an invalid key.
    #[error("cannot derive a child of this group: {0}")]
    Derivation(String),
    /// A malformed document.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// The last `n` characters of `s`, for short references in messages.
pub(crate) fn tail(s: &str, n: usize) -> &str {
    let start = s
        .char_indices()
        .rev()
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    s.get(start..).unwrap_or(s)
}

/// Hex of a FROST identifier, for messages and files.
pub fn identifier_hex<C: KuraSuite>(id: &Identifier<C>) -> String {
    hex::encode(id.serialize())
}

/// The sender of something refused (an invalid share, a bad approval), as an
/// error names it: its FROST identifier, and its label when it is a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Culprit<C: KuraSuite> {
    /// The FROST identifier.
    pub identifier: Identifier<C>,
    /// The member's label; `None` for an identifier outside the group.
    pub label: Option<Label>,
}

impl<C: KuraSuite> fmt::Display for Culprit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = identifier_hex(&self.identifier);
        match &self.label {
            Some(label) => write!(f, "{label} (…{})", tail(&hex, 8)),
            None => write!(f, "non-member {hex}"),
        }
    }
}

/// Serialized group verifying key (33-byte compressed point for both suites).
pub(crate) fn verifying_key_bytes<C: KuraSuite>(vk: &VerifyingKey<C>) -> Vec<u8> {
    // Serializing a valid (non-identity) group element cannot fail; a key
    // that did fail would give an empty encoding and so a group id no real
    // group has.
    vk.serialize().unwrap_or_default()
}

/// Everything public about a signing group.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicGroup<C: KuraSuite> {
    id: GroupId,
    min_signers: u16,
    participants: BTreeMap<Identifier<C>, Label>,
    public_key_package: PublicKeyPackage<C>,
    /// The package that aggregates and verifies (tweaked for Taproot);
    /// derived once here instead of on every signature.
    signing_package: PublicKeyPackage<C>,
}

impl<C: KuraSuite> fmt::Debug for PublicGroup<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicGroup")
            .field("id", &self.id)
            .field("suite", &C::SUITE)
            .field("min_signers", &self.min_signers)
            .field(
                "participants",
                &self.participants.values().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<C: KuraSuite> PublicGroup<C> {
    /// Builds a group from a public key package and a label per identifier,
    /// checking that they describe the same participants.
    ///
    /// # Errors
    /// [`GroupError`] when the threshold is out of range, a label repeats, or
    /// the labels and the package name different participants.
    pub fn new(
        public_key_package: PublicKeyPackage<C>,
        labels: BTreeMap<Identifier<C>, Label>,
    ) -> Result<Self, GroupError> {
        let max_signers =
            u16::try_from(public_key_package.verifying_shares().len()).unwrap_or(u16::MAX);
        let min_signers = public_key_package.min_signers().ok_or_else(|| {
            GroupError::RosterMismatch("public key package has no threshold".into())
        })?;
        check_threshold(min_signers, max_signers)?;
        let mut seen = std::collections::BTreeSet::new();
        for label in labels.values() {
            if !seen.insert(label) {
                return Err(GroupError::DuplicateLabel(label.0.clone()));
            }
        }
        if labels.len() != public_key_package.verifying_shares().len()
            || labels
                .keys()
                .any(|id| !public_key_package.verifying_shares().contains_key(id))
        {
            return Err(GroupError::RosterMismatch(format!(
                "{} labels for {} verifying shares, or an identifier without a verifying share",
                labels.len(),
                public_key_package.verifying_shares().len()
            )));
        }
        let id = GroupId::derive(
            C::SUITE,
            &verifying_key_bytes(public_key_package.verifying_key()),
        );
        let signing_package = C::signing_public_key_package(&public_key_package).into_owned();
        Ok(PublicGroup {
            id,
            min_signers,
            participants: labels,
            public_key_package,
            signing_package,
        })
    }

    /// The same group signing under a child of its key: every verifying
    /// share and the verifying key plus `tweak·G` (see [`crate::hd`]). The
    /// id, members and threshold stay the group's (its shares and nonces
    /// are still found under the group's id).
    ///
    /// # Errors
    /// [`GroupError::Derivation`] when the tweak is not a scalar.
    pub fn derive_child(&self, tweak: &crate::hd::ChildTweak) -> Result<Self, GroupError> {
        if tweak.is_zero() {
            return Ok(self.clone());
        }
        let t = tweak_scalar::<C>(tweak)?;
        let shares = self
            .public_key_package
            .verifying_shares()
            .iter()
            .map(|(id, share)| {
                let e = add_tweak::<C>(&share.serialize().unwrap_or_default(), t)?;
                let share = VerifyingShare::deserialize(e.as_ref())
                    .map_err(|e| GroupError::Derivation(e.to_string()))?;
                Ok((*id, share))
            })
            .collect::<Result<BTreeMap<_, _>, GroupError>>()?;
        let key = tweak_verifying_key(self.public_key_package.verifying_key(), t)?;
        let public_key_package =
            PublicKeyPackage::new(shares, key, self.public_key_package.min_signers());
        let signing_package = C::signing_public_key_package(&public_key_package).into_owned();
        Ok(PublicGroup {
            id: self.id,
            min_signers: self.min_signers,
            participants: self.participants.clone(),
            public_key_package,
            signing_package,
        })
    }

    /// The group id.
    pub fn id(&self) -> &GroupId {
        &self.id
    }

    /// The threshold t.
    pub fn min_signers(&self) -> u16 {
        self.min_signers
    }

    /// The number of participants n.
    pub fn max_signers(&self) -> u16 {
        u16::try_from(self.participants.len()).unwrap_or(u16::MAX)
    }

    /// The participants' labels by identifier.
    pub fn participants(&self) -> &BTreeMap<Identifier<C>, Label> {
        &self.participants
    }

    /// The label of `id`, if it is a member.
    pub fn label(&self, id: &Identifier<C>) -> Option<&Label> {
        self.participants.get(id)
    }

    /// The participant `id` as errors name it: with its label if a member.
    pub fn culprit(&self, id: &Identifier<C>) -> Culprit<C> {
        Culprit {
            identifier: *id,
            label: self.label(id).cloned(),
        }
    }

    /// The identifier of the participant with this label.
    pub fn identifier_of(&self, label: &str) -> Option<Identifier<C>> {
        self.participants
            .iter()
            .find(|(_, l)| l.as_str() == label)
            .map(|(id, _)| *id)
    }

    /// The FROST public key package.
    pub fn public_key_package(&self) -> &PublicKeyPackage<C> {
        &self.public_key_package
    }

    /// The package that aggregates and verifies signatures: the public key
    /// package itself for RFC 9591, tweaked to the output key for Taproot.
    pub fn signing_public_key_package(&self) -> &PublicKeyPackage<C> {
        &self.signing_package
    }

    /// The group verifying key (for Taproot: the BIP86 internal key).
    pub fn verifying_key(&self) -> &VerifyingKey<C> {
        self.public_key_package.verifying_key()
    }

    /// The key final signatures verify under (for Taproot: the output key).
    pub fn output_key(&self) -> &VerifyingKey<C> {
        self.signing_package.verifying_key()
    }

    /// The verifying share of a member.
    pub fn verifying_share(&self, id: &Identifier<C>) -> Option<&VerifyingShare<C>> {
        self.public_key_package.verifying_shares().get(id)
    }

    /// Labels of these identifiers, or their hex for non-members.
    pub fn describe(&self, ids: &[Identifier<C>]) -> Vec<String> {
        ids.iter()
            .map(|id| match self.label(id) {
                Some(l) => l.to_string(),
                None => format!("non-member {}", identifier_hex(id)),
            })
            .collect()
    }

    /// Encodes the group as a `group` document.
    ///
    /// # Errors
    /// Only on an internal serialization failure.
    pub fn to_document(&self) -> Result<Vec<u8>, FormatError> {
        format::encode(&self.id, &self.body())
    }

    /// Reads a `group` document, checking everything [`PublicGroup::new`]
    /// checks and that the document's group id is this key's.
    ///
    /// # Errors
    /// [`GroupError`] naming the failed check.
    pub fn from_document(bytes: &[u8]) -> Result<Self, GroupError> {
        let doc = format::decode::<GroupBody<C>>(bytes)?;
        let group = Self::from_body(doc.body)?;
        if group.id != doc.group {
            return Err(FormatError::WrongGroup {
                expected: group.id,
                found: doc.group,
            }
            .into());
        }
        Ok(group)
    }

    fn body(&self) -> GroupBody<C> {
        GroupBody {
            min_signers: self.min_signers,
            participants: self
                .participants
                .iter()
                .map(|(id, label)| Participant {
                    id: *id,
                    label: label.clone(),
                })
                .collect(),
            public_key_package: self.public_key_package.clone(),
        }
    }

    fn from_body(body: GroupBody<C>) -> Result<Self, GroupError> {
        let mut labels = BTreeMap::new();
        for p in body.participants {
            if labels.insert(p.id, p.label).is_some() {
                return Err(GroupError::DuplicateIdentifier(identifier_hex(&p.id)));
            }
        }
        if body.public_key_package.min_signers() != Some(body.min_signers) {
            return Err(GroupError::RosterMismatch(
                "min_signers differs from the public key package's".into(),
            ));
        }
        Self::new(body.public_key_package, labels)
    }
}

pub(crate) fn check_threshold(min_signers: u16, max_signers: u16) -> Result<(), GroupError> {
    if min_signers < 2 || min_signers > max_signers || max_signers > MAX_PARTICIPANTS {
        return Err(GroupError::InvalidThreshold {
            min_signers,
            max_signers,
        });
    }
    Ok(())
}

/// The `group` document body.
#[derive(Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub(crate) struct GroupBody<C: KuraSuite> {
    min_signers: u16,
    participants: Vec<Participant<C>>,
    public_key_package: PublicKeyPackage<C>,
}

impl<C: KuraSuite> DocumentBody for GroupBody<C> {
    const KIND: &'static str = "group";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

/// One participant's secret key share and the public facts needed to use it.
///
/// Its `Debug` output never shows the share; the inner FROST key package
/// zeroizes itself when dropped. Write it to disk only through a keystore.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyShare<C: KuraSuite> {
    group: GroupId,
    label: Label,
    key_package: KeyPackage<C>,
}

impl<C: KuraSuite> fmt::Debug for KeyShare<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyShare")
            .field("group", &self.group)
            .field("label", &self.label)
            .field("identifier", &identifier_hex(self.key_package.identifier()))
            .field("signing_share", &"<redacted>")
            .finish()
    }
}

impl<C: KuraSuite> KeyShare<C> {
    /// Wraps a verified key package, checking that its share matches its
    /// verifying share.
    ///
    /// # Errors
    /// [`GroupError::ShareMismatch`] for an inconsistent package.
    pub fn new(key_package: KeyPackage<C>, label: Label) -> Result<Self, GroupError> {
        let derived = VerifyingShare::<C>::from(*key_package.signing_share());
        if &derived != key_package.verifying_share() {
            return Err(GroupError::ShareMismatch(
                "signing share does not match its verifying share".into(),
            ));
        }
        let group = GroupId::derive(C::SUITE, &verifying_key_bytes(key_package.verifying_key()));
        Ok(KeyShare {
            group,
            label,
            key_package,
        })
    }

    /// This share of the group's child at `tweak` (see
    /// [`PublicGroup::derive_child`]): the share plus the tweak, its
    /// verifying share and the verifying key plus `tweak·G`. It belongs to
    /// the child group derived with the same tweak.
    ///
    /// # Errors
    /// [`GroupError::Derivation`] when the tweak is not a scalar.
    pub fn derive_child(&self, tweak: &crate::hd::ChildTweak) -> Result<Self, GroupError> {
        if tweak.is_zero() {
            return Ok(self.clone());
        }
        use frost_core::{Field, Group};
        let t = tweak_scalar::<C>(tweak)?;
        let kp = &self.key_package;
        let mut bytes = kp.signing_share().serialize();
        let share = (|| {
            let ser =
                <<C::Group as Group>::Field as Field>::Serialization::try_from(&bytes[..]).ok()?;
            let s = <<C::Group as Group>::Field as Field>::deserialize(&ser).ok()? + t;
            let mut out = <<C::Group as Group>::Field as Field>::serialize(&s);
            let share = frost_core::keys::SigningShare::<C>::deserialize(out.as_ref()).ok();
            out.as_mut().zeroize();
            share
        })();
        bytes.zeroize();
        let share = share.ok_or_else(|| GroupError::Derivation("the tweaked share".into()))?;
        let verifying_share = VerifyingShare::<C>::from(share);
        let key = tweak_verifying_key(kp.verifying_key(), t)?;
        let key_package = KeyPackage::new(
            *kp.identifier(),
            share,
            verifying_share,
            key,
            *kp.min_signers(),
        );
        Ok(KeyShare {
            group: self.group,
            label: self.label.clone(),
            key_package,
        })
    }

    /// Checks that this share belongs to `group` under the same identifier,
    /// verifying share and threshold.
    ///
    /// # Errors
    /// [`GroupError::ShareMismatch`] naming the difference.
    pub fn check_member_of(&self, group: &PublicGroup<C>) -> Result<(), GroupError> {
        if &self.group != group.id() {
            return Err(GroupError::ShareMismatch(format!(
                "share is for group {}, not {}",
                self.group.short(),
                group.id().short()
            )));
        }
        let id = self.key_package.identifier();
        match group.verifying_share(id) {
            None => return Err(GroupError::UnknownParticipant(identifier_hex(id))),
            Some(vs) if vs != self.key_package.verifying_share() => {
                return Err(GroupError::ShareMismatch(
                    "verifying share differs from the group's (an old share after a refresh?)"
                        .into(),
                ))
            }
            Some(_) => {}
        }
        if *self.key_package.min_signers() != group.min_signers() {
            return Err(GroupError::ShareMismatch(
                "threshold differs from the group's".into(),
            ));
        }
        Ok(())
    }

    /// The group this share belongs to.
    pub fn group_id(&self) -> &GroupId {
        &self.group
    }

    /// This participant's identifier.
    pub fn identifier(&self) -> &Identifier<C> {
        self.key_package.identifier()
    }

    /// This participant's label.
    pub fn label(&self) -> &Label {
        &self.label
    }

    /// The FROST key package (secret).
    pub fn key_package(&self) -> &KeyPackage<C> {
        &self.key_package
    }

    /// The key package that computes signature shares (tweaked for Taproot).
    pub(crate) fn signing_key_package(&self) -> Cow<'_, KeyPackage<C>> {
        C::signing_key_package(&self.key_package)
    }

    /// Encodes the share as a `key-share` document. The bytes are secret:
    /// they are returned in zeroizing memory and belong in a keystore only.
    ///
    /// # Errors
    /// Only on an internal serialization failure.
    pub fn to_secret_document(&self) -> Result<crate::SecretBytes, FormatError> {
        let body = KeyShareBody {
            label: self.label.clone(),
            key_package: self.key_package.clone(),
        };
        format::encode(&self.group, &body).map(crate::SecretBytes::new)
    }

    /// Reads a `key-share` document.
    ///
    /// # Errors
    /// [`GroupError`] when the document is malformed, for another suite, or
    /// its share is inconsistent with its verifying share or group id.
    pub fn from_secret_document(bytes: &[u8]) -> Result<Self, GroupError> {
        let doc = format::decode::<KeyShareBody<C>>(bytes)?;
        let share = KeyShare::new(doc.body.key_package.clone(), doc.body.label.clone())?;
        if share.group != doc.group {
            return Err(GroupError::ShareMismatch(
                "document's group id does not match the share's group key".into(),
            ));
        }
        Ok(share)
    }
}

/// The `key-share` document body (secret).
#[derive(Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
struct KeyShareBody<C: KuraSuite> {
    label: Label,
    key_package: KeyPackage<C>,
}

impl<C: KuraSuite> DocumentBody for KeyShareBody<C> {
    const KIND: &'static str = "key-share";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

fn tweak_scalar<C: KuraSuite>(
    tweak: &crate::hd::ChildTweak,
) -> Result<frost_core::Scalar<C>, GroupError> {
    use frost_core::{Field, Group};
    let bytes = tweak.to_bytes();
    let ser = <<C::Group as Group>::Field as Field>::Serialization::try_from(&bytes[..])
        .map_err(|_| GroupError::Derivation("a tweak is 32 bytes".into()))?;
    <<C::Group as Group>::Field as Field>::deserialize(&ser)
        .map_err(|_| GroupError::Derivation("the tweak is not a scalar".into()))
}

/// The serialized point `element` plus `t·G`, serialized.
fn add_tweak<C: KuraSuite>(
    element: &[u8],
    t: frost_core::Scalar<C>,
) -> Result<<C::Group as frost_core::Group>::Serialization, GroupError> {
    use frost_core::Group;
    let bad = |what: &str| GroupError::Derivation(what.to_owned());
    let ser = <C::Group as Group>::Serialization::try_from(element)
        .map_err(|_| bad("a point of the group does not parse"))?;
    let e = <C::Group as Group>::deserialize(&ser)
        .map_err(|_| bad("a point of the group does not parse"))?;
    let child = e + <C::Group as Group>::generator() * t;
    <C::Group as Group>::serialize(&child).map_err(|_| bad("the child key is the identity"))
}

fn tweak_verifying_key<C: KuraSuite>(
    key: &VerifyingKey<C>,
    t: frost_core::Scalar<C>,
) -> Result<VerifyingKey<C>, GroupError> {
    let child = add_tweak::<C>(&verifying_key_bytes(key), t)?;
    VerifyingKey::deserialize(child.as_ref()).map_err(|e| GroupError::Derivation(e.to_string()))
}
