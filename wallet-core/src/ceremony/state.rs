//! A member's group state on disk and its crash-atomic changes.
//!
//! ```text
//! DIR/group.json          the active group   ← the one commit point of every change
//! DIR/roster.json         its roster (written before group.json)
//! DIR/staged-group.json   a refreshed or reshared group waiting for activation
//! DIR/staged-roster.json  a reshared group's new roster (a reshare changes it)
//! ```
//!
//! The share lives in the keystore. Every change writes the new share and
//! files first and switches `group.json` last with one atomic rename; a
//! share whose group switched but whose main slot was not yet rewritten is
//! found in its staged slot ([`crate::keystore::load_share`]) and the switch
//! completed. A process killed at any point leaves the old state or the new
//! one usable, and running the same step again completes it.
//!
//! The staged files are on a disk anyone may write; what activation relies
//! on is bound in the keystore. The staged share's slot is named by the
//! staged group ([`SecretSlot::staged_share`]), and beside it a *staging
//! record* holds the digest of what was staged with it — its kind, the tag
//! its receipts name, a reshare's roster — so a swapped tag or roster file
//! is refused at activation instead of trusted.

use std::path::{Path, PathBuf};

use super::{CeremonyError, Roster};
use crate::format::GroupId;
use crate::group::{identifier_hex, KeyShare, PublicGroup};

/// What a retired member's share slot holds instead of its share.
pub const RETIRED: &[u8] = b"retired";
use crate::keystore::{self, files, Keystore, SecretSlot};
use crate::suite::KuraSuite;

/// What a staged change is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staging {
    /// A refresh: new shares of the same members and threshold.
    Refresh,
    /// A reshare: new members or threshold (a staged roster).
    Reshare,
}

impl Staging {
    fn as_str(self) -> &'static str {
        match self {
            Staging::Refresh => "refresh",
            Staging::Reshare => "reshare",
        }
    }
}

/// The keystore slot of the staging record beside a staged share.
fn staging_record_slot<C: KuraSuite>(group: &PublicGroup<C>, participant: &str) -> SecretSlot {
    SecretSlot::staged_share(group, &format!("{participant}/staging"))
}

/// What the staging record holds: a digest of the kind, the tag and (a
/// reshare) the roster document, byte for byte as staged.
fn staging_digest(kind: Staging, tag: &[u8; 32], roster: Option<&[u8]>) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"kura/v1/staging-record\0");
    h.update(kind.as_str().as_bytes());
    h.update([0]);
    h.update(tag);
    if let Some(r) = roster {
        h.update((r.len() as u64).to_be_bytes());
        h.update(r);
    }
    h.finalize().to_vec()
}

/// A reshare waiting for activation: the new group and its roster.
#[derive(Clone, Debug)]
pub struct StagedReshare<C: KuraSuite> {
    /// The reshared group.
    pub group: PublicGroup<C>,
    /// Its roster.
    pub roster: Roster<C>,
}

/// The point a state change reached; tests stop a change at each one to
/// check that a crash there is recoverable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The new share is in the keystore (staged slot or, for a new group, main slot).
    ShareKept,
    /// The roster is written.
    RosterWritten,
    /// The staged group is written.
    Staged,
    /// `group.json` switched: the new state is the active one.
    GroupSwitched,
    /// The main share slot holds the new share.
    ShareSwitched,
}

/// Called after each [`Step`]; returning an error stops the change there
/// (what a crash would do). [`no_crash`] is the hook for real use.
pub type Hook<'a> = &'a mut dyn FnMut(Step) -> Result<(), CeremonyError>;

/// The hook that lets every change run to its end.
pub fn no_crash(_: Step) -> Result<(), CeremonyError> {
    Ok(())
}

/// A member's state directory.
#[derive(Clone, Debug)]
pub struct MemberState {
    dir: PathBuf,
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, CeremonyError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(files::io_error(path)(e).into()),
    }
}

impl MemberState {
    /// The state in `dir` (a signer's home).
    pub fn new(dir: &Path) -> Self {
        MemberState {
            dir: dir.to_owned(),
        }
    }

    /// `DIR/group.json`.
    pub fn group_path(&self) -> PathBuf {
        self.dir.join("group.json")
    }

    /// `DIR/roster.json`.
    pub fn roster_path(&self) -> PathBuf {
        self.dir.join("roster.json")
    }

    /// `DIR/staged-group.json`.
    pub fn staged_path(&self) -> PathBuf {
        self.dir.join("staged-group.json")
    }

    /// `DIR/staged-roster.json`: the roster of a staged reshare.
    pub fn staged_roster_path(&self) -> PathBuf {
        self.dir.join("staged-roster.json")
    }

    /// The staged reshare's group and roster, if a reshare is staged.
    ///
    /// # Errors
    /// An I/O error, a malformed file, a roster that does not fit.
    pub fn staged_reshare<C: KuraSuite>(&self) -> Result<Option<StagedReshare<C>>, CeremonyError> {
        let Some(roster) = read(&self.staged_roster_path())? else {
            return Ok(None);
        };
        let group = self.staged::<C>()?.ok_or_else(|| {
            CeremonyError::NoState(format!(
                "{} without {}: stage the reshare again",
                self.staged_roster_path().display(),
                self.staged_path().display()
            ))
        })?;
        let roster = Roster::from_document(&roster, &group)?;
        Ok(Some(StagedReshare { group, roster }))
    }

    /// `DIR/staged-refresh.txt`: the digest of the proposal the staged share came from.
    pub fn staged_tag_path(&self) -> PathBuf {
        self.dir.join("staged-refresh.txt")
    }

    /// The digest of the staged refresh proposal, if any.
    ///
    /// # Errors
    /// An I/O error or a malformed file.
    pub fn staged_tag(&self) -> Result<Option<[u8; 32]>, CeremonyError> {
        let Some(bytes) = read(&self.staged_tag_path())? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Some)
            .ok_or_else(|| {
                CeremonyError::Format(crate::FormatError::invalid(
                    "staged-refresh.txt",
                    "not 64 hex digits",
                ))
            })
    }

    /// The active group, if there is one.
    ///
    /// # Errors
    /// An I/O error or a malformed group file.
    pub fn group<C: KuraSuite>(&self) -> Result<Option<PublicGroup<C>>, CeremonyError> {
        read(&self.group_path())?
            .map(|b| PublicGroup::from_document(&b))
            .transpose()
            .map_err(Into::into)
    }

    /// The active group's roster.
    ///
    /// # Errors
    /// A missing, malformed or non-fitting roster.
    pub fn roster<C: KuraSuite>(&self, group: &PublicGroup<C>) -> Result<Roster<C>, CeremonyError> {
        let bytes = read(&self.roster_path())?.ok_or_else(|| {
            CeremonyError::NoState(format!("{} is missing", self.roster_path().display()))
        })?;
        Roster::from_document(&bytes, group)
    }

    /// Installs the share, group and roster of a new group (DKG finish,
    /// dealer import). The group file is written last; running it again
    /// with the same group completes an interrupted install.
    ///
    /// # Errors
    /// [`CeremonyError::Changed`] when this home already holds another
    /// group; keystore and I/O failures.
    pub fn install<C: KuraSuite>(
        &self,
        keystore: &dyn Keystore,
        share: &KeyShare<C>,
        group: &PublicGroup<C>,
        roster: &Roster<C>,
        hook: Hook<'_>,
    ) -> Result<(), CeremonyError> {
        share.check_member_of(group)?;
        roster.identities(group)?;
        if let Some(current) = self.group::<C>()? {
            if current.id() != group.id() {
                return Err(CeremonyError::Changed(format!(
                    "{} already holds group {}; use a new home for another group",
                    self.dir.display(),
                    current.id().short()
                )));
            }
        }
        keystore::put_share(keystore, share)?;
        hook(Step::ShareKept)?;
        files::write_atomic(&self.roster_path(), &roster.to_document(group.id())?, true)?;
        hook(Step::RosterWritten)?;
        files::write_atomic(&self.group_path(), &group.to_document()?, true)?;
        hook(Step::GroupSwitched)?;
        Ok(())
    }

    /// Stages a refreshed share and group, with `tag` (the digest of the
    /// proposal it came from); the active ones stay in use until
    /// [`MemberState::activate`].
    ///
    /// # Errors
    /// [`CeremonyError::Changed`] when the new group is not the active
    /// group refreshed (same key, threshold, members and labels).
    pub fn stage<C: KuraSuite>(
        &self,
        keystore: &dyn Keystore,
        share: &KeyShare<C>,
        new_group: &PublicGroup<C>,
        tag: &[u8; 32],
        hook: Hook<'_>,
    ) -> Result<(), CeremonyError> {
        let current = self
            .group::<C>()?
            .ok_or_else(|| CeremonyError::NoState("this home holds no group yet".into()))?;
        same_group(&current, new_group)?;
        self.write_staged(keystore, share, new_group, None, tag, hook)
    }

    /// Writes what [`MemberState::stage`] and
    /// [`MemberState::stage_reshare`] stage: the share in its staged slot,
    /// the tag, a reshare's roster, and the staged group last.
    fn write_staged<C: KuraSuite>(
        &self,
        keystore: &dyn Keystore,
        share: &KeyShare<C>,
        new_group: &PublicGroup<C>,
        new_roster: Option<&Roster<C>>,
        tag: &[u8; 32],
        hook: Hook<'_>,
    ) -> Result<(), CeremonyError> {
        share.check_member_of(new_group)?;
        if let Some(roster) = new_roster {
            roster.identities(new_group)?;
        }
        let roster_doc = new_roster
            .map(|r| r.to_document(new_group.id()))
            .transpose()?;
        let kind = match new_roster {
            Some(_) => Staging::Reshare,
            None => Staging::Refresh,
        };
        let participant = identifier_hex(share.identifier());
        keystore.put_key_share(
            &SecretSlot::staged_share(new_group, &participant),
            &share.to_secret_document()?,
        )?;
        keystore.put_key_share(
            &staging_record_slot(new_group, &participant),
            &crate::SecretBytes::new(staging_digest(kind, tag, roster_doc.as_deref())),
        )?;
        hook(Step::ShareKept)?;
        files::write_atomic(
            &self.staged_tag_path(),
            format!("{}\n", hex::encode(tag)).as_bytes(),
            true,
        )?;
        if let Some(doc) = &roster_doc {
            files::write_atomic(&self.staged_roster_path(), doc, true)?;
            hook(Step::RosterWritten)?;
        }
        files::write_atomic(&self.staged_path(), &new_group.to_document()?, true)?;
        hook(Step::Staged)?;
        Ok(())
    }

    /// Stages a reshared share, group and roster, with `tag` (the digest
    /// of the reshare proposal): the same group key, another threshold or
    /// other members. A home of a member joining the group holds no group
    /// yet; one of a current member keeps using its group until
    /// [`MemberState::activate`].
    ///
    /// # Errors
    /// [`CeremonyError::Changed`] when the home holds another group.
    pub fn stage_reshare<C: KuraSuite>(
        &self,
        keystore: &dyn Keystore,
        share: &KeyShare<C>,
        new_group: &PublicGroup<C>,
        new_roster: &Roster<C>,
        tag: &[u8; 32],
        hook: Hook<'_>,
    ) -> Result<(), CeremonyError> {
        if let Some(current) = self.group::<C>()? {
            if current.id() != new_group.id() {
                return Err(CeremonyError::Changed(format!(
                    "the reshare is for group {}, this home holds {}",
                    new_group.id().short(),
                    current.id().short()
                )));
            }
        }
        self.write_staged(keystore, share, new_group, Some(new_roster), tag, hook)
    }

    /// The staged group, if any.
    ///
    /// # Errors
    /// An I/O error or a malformed file.
    pub fn staged<C: KuraSuite>(&self) -> Result<Option<PublicGroup<C>>, CeremonyError> {
        read(&self.staged_path())?
            .map(|b| PublicGroup::from_document(&b))
            .transpose()
            .map_err(Into::into)
    }

    /// Whether the staged group is the active one already (an activation
    /// that switched `group.json` and was stopped before it cleared the
    /// staging): running the activation again only completes it.
    ///
    /// # Errors
    /// An I/O error or a malformed file.
    pub fn switched<C: KuraSuite>(&self) -> Result<bool, CeremonyError> {
        Ok(match (self.staged::<C>()?, self.group::<C>()?) {
            (Some(staged), Some(active)) => staged == active,
            _ => false,
        })
    }

    /// Activates the staged share and group, a change of kind `kind`:
    /// switches `group.json` (the commit point), then the main share slot,
    /// then clears the staging. Before anything switches, the staged tag
    /// and roster files must be what was staged (the staging record in the
    /// keystore). Running it again after a crash completes it; with nothing
    /// staged it returns `None`.
    ///
    /// # Errors
    /// [`CeremonyError::NoState`] when what is staged is not of `kind`, or
    /// its tag or roster file is not what was staged (or is missing); a
    /// staged share that is missing or does not fit the staged group;
    /// keystore and I/O failures.
    pub fn activate<C: KuraSuite>(
        &self,
        keystore: &dyn Keystore,
        participant: &frost_core::Identifier<C>,
        kind: Staging,
        hook: Hook<'_>,
    ) -> Result<Option<PublicGroup<C>>, CeremonyError> {
        let Some(staged) = self.staged::<C>()? else {
            return Ok(None);
        };
        let id = participant;
        let participant = identifier_hex(participant);
        let slot = SecretSlot::staged_share(&staged, &participant);
        let record = staging_record_slot(&staged, &participant);
        let active = self.group::<C>()?;
        let switched = active.as_ref() == Some(&staged);
        let roster_doc = read(&self.staged_roster_path())?;
        let roster = self.staged_reshare::<C>()?.map(|r| r.roster);
        if !switched {
            self.check_staging(keystore, &record, kind, roster_doc.as_deref())?;
            if let Some(current) = &active {
                match &roster {
                    // A reshare keeps the key (the group id), not the
                    // threshold or the members.
                    Some(_) if current.id() == staged.id() => {}
                    Some(_) => {
                        return Err(CeremonyError::Changed(format!(
                            "the staged reshare is for group {}, this home holds {}",
                            staged.id().short(),
                            current.id().short()
                        )))
                    }
                    None => same_group(current, &staged)?,
                }
            }
            // The staged share must be there and fit before anything switches.
            let doc = keystore.key_share(&slot)?;
            KeyShare::<C>::from_secret_document(doc.expose())?.check_member_of(&staged)?;
            files::write_atomic(&self.group_path(), &staged.to_document()?, true)?;
        }
        hook(Step::GroupSwitched)?;
        if let Some(roster) = &roster {
            // The roster follows the group it belongs to (a rerun after a
            // crash between the two writes it again).
            files::write_atomic(&self.roster_path(), &roster.to_document(staged.id())?, true)?;
            hook(Step::RosterWritten)?;
        }
        // load_share finds the staged share, moves it to the main slot and
        // clears the staged slot (or finds it moved already).
        keystore::load_share(keystore, &staged, id)?;
        // No copy of a share may outlive its activation in a staged slot
        // (load_share clears it when it moves the share; this covers a
        // crash between its two writes).
        for s in [&slot, &record] {
            keystore.put_key_share(
                s,
                &crate::SecretBytes::new(keystore::STAGED_TOMBSTONE.to_vec()),
            )?;
        }
        hook(Step::ShareSwitched)?;
        for path in [
            self.staged_roster_path(),
            self.staged_tag_path(),
            self.staged_path(),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(files::io_error(&path)(e).into()),
            }
        }
        files::sync_dir(&self.dir)?;
        Ok(Some(staged))
    }

    /// Refuses an activation of `kind` unless the staged tag and roster
    /// files are what the staging record in the keystore says was staged.
    fn check_staging(
        &self,
        keystore: &dyn Keystore,
        record: &SecretSlot,
        kind: Staging,
        roster_doc: Option<&[u8]>,
    ) -> Result<(), CeremonyError> {
        let staged_kind = match roster_doc {
            Some(_) => Staging::Reshare,
            None => Staging::Refresh,
        };
        if staged_kind != kind {
            return Err(CeremonyError::NoState(format!(
                "what is staged here is a {}, not a {}: activate it with its own receipts",
                staged_kind.as_str(),
                kind.as_str()
            )));
        }
        let tag = self.staged_tag()?.ok_or_else(|| {
            CeremonyError::NoState(format!(
                "a staged {} without {}: stage it again",
                kind.as_str(),
                self.staged_tag_path().display()
            ))
        })?;
        let expected = keystore.key_share(record).map_err(|e| {
            CeremonyError::NoState(format!(
                "the keystore holds no record of this staged {} ({e}): stage it again",
                kind.as_str()
            ))
        })?;
        if expected.expose() != staging_digest(kind, &tag, roster_doc).as_slice() {
            return Err(CeremonyError::NoState(format!(
                "{} or {} is not what was staged (the keystore's staging record differs): the files were changed on disk; stage it again",
                self.staged_tag_path().display(),
                self.staged_roster_path().display()
            )));
        }
        Ok(())
    }

    /// Erases this member's share of its group and the group files: what a
    /// member who left the group by a reshare does once the new quorum holds
    /// its shares (see [`super::reshare::retire`], which checks that). The
    /// share slot is overwritten first, then `group.json` and the roster are
    /// removed; running it again after a crash completes it.
    ///
    /// # Errors
    /// Keystore and I/O failures; [`CeremonyError::NoState`] for a home
    /// without a group.
    pub fn retire<C: KuraSuite>(
        &self,
        keystore: &dyn Keystore,
        group: &GroupId,
        participant: &frost_core::Identifier<C>,
    ) -> Result<(), CeremonyError> {
        let slot = SecretSlot::for_share(C::SUITE, *group, identifier_hex(participant));
        keystore.put_key_share(&slot, &crate::SecretBytes::new(RETIRED.to_vec()))?;
        for path in [self.group_path(), self.roster_path()] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(files::io_error(&path)(e).into()),
            }
        }
        files::sync_dir(&self.dir)?;
        Ok(())
    }

    /// Replaces the active share (repair: same group, same verifying share).
    ///
    /// # Errors
    /// A share that does not fit the active group.
    pub fn replace_share<C: KuraSuite>(
        &self,
        keystore: &dyn Keystore,
        share: &KeyShare<C>,
    ) -> Result<(), CeremonyError> {
        let group = self
            .group::<C>()?
            .ok_or_else(|| CeremonyError::NoState("this home holds no group".into()))?;
        share.check_member_of(&group)?;
        keystore::put_share(keystore, share)?;
        Ok(())
    }
}

/// Checks that `new` is `current` refreshed: same key, threshold, members
/// and labels.
///
/// # Errors
/// [`CeremonyError::Changed`] naming the difference.
pub fn same_group<C: KuraSuite>(
    current: &PublicGroup<C>,
    new: &PublicGroup<C>,
) -> Result<(), CeremonyError> {
    if new.id() != current.id() {
        return Err(CeremonyError::Changed(format!(
            "the refresh is for group {}, not {}",
            new.id().short(),
            current.id().short()
        )));
    }
    if new.min_signers() != current.min_signers() {
        return Err(CeremonyError::Changed(format!(
            "the refresh changes the threshold from {} to {}",
            current.min_signers(),
            new.min_signers()
        )));
    }
    if new.participants() != current.participants() {
        return Err(CeremonyError::Changed(
            "the refresh changes the members or their labels".into(),
        ));
    }
    Ok(())
}
