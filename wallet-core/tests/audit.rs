//! The audit log: appends survive reopening, and every kind of tampering is
//! caught at the line it affects.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wallet_core::audit::{
    self, genesis_hash, AuditEntry, AuditError, AuditEvent, AuditLog, AuditRecord,
};
use wallet_core::keystore::{Keystore, MemoryKeystore};

use wallet_core::digest::{PolicyDigest, RequestDigest, SigningDigest};
use wallet_core::policy::Rule;
use wallet_core::withdrawal::request::RequestId;
use wallet_core::withdrawal::RefusalKind;

const SIGHASH: [u8; 32] = [7u8; 32];

fn rid(id: &str) -> RequestId {
    RequestId::new(id).unwrap()
}

/// A log of four entries: request seen, share released (50 000 sat),
/// finalized, note — at times 100, 200, 200, 300.
fn sample_log(dir: &Path, ks: &MemoryKeystore) -> (PathBuf, AuditLog) {
    let path = dir.join("signer.audit.jsonl");
    let owner = ks.identity_public_key().unwrap();
    let mut log = AuditLog::open(&path, &owner).unwrap();
    log.append(
        ks,
        100,
        AuditRecord::new(AuditEvent::RequestSeen)
            .with_request_id(&rid("req-1"))
            .with_request_digest(RequestDigest::from_bytes([1u8; 32])),
    )
    .unwrap();
    log.append(
        ks,
        200,
        AuditRecord::new(AuditEvent::ShareReleased)
            .with_request_id(&rid("req-1"))
            .with_request_digest(RequestDigest::from_bytes([1u8; 32]))
            .with_sighashes(vec![SigningDigest::from_bytes(SIGHASH)])
            .with_policy_digest(PolicyDigest::from_bytes([2u8; 32]))
            .with_amount_sat(50_000),
    )
    .unwrap();
    log.append(
        ks,
        200,
        AuditRecord::new(AuditEvent::Finalized).with_request_id(&rid("req-1")),
    )
    .unwrap();
    log.append(
        ks,
        300,
        AuditRecord::new(AuditEvent::Note {
            text: "end of day".into(),
        }),
    )
    .unwrap();
    (path, log)
}

/// The file's lines, each with its newline.
fn lines(path: &Path) -> Vec<Vec<u8>> {
    std::fs::read(path)
        .unwrap()
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// Asserts a `Broken` error at `line` naming `seq`, with `words` in the reason.
fn assert_broken(err: AuditError, line: usize, seq: Option<u64>, words: &str) {
    match &err {
        AuditError::Broken {
            line: l,
            seq: s,
            reason,
        } => {
            assert_eq!((*l, *s), (line, seq), "{err}");
            assert!(reason.contains(words), "{err}");
        }
        other => panic!("expected Broken at line {line}, got {other}"),
    }
    assert!(err
        .to_string()
        .contains("do not trust entries from here on"));
}

/// Verifies `lines` as a file owned by `ks`, expecting an error.
fn verify_err(lines: &[Vec<u8>], ks: &MemoryKeystore) -> AuditError {
    audit::verify(&lines.concat(), &ks.identity_public_key().unwrap()).unwrap_err()
}

#[test]
fn appends_survive_reopening_and_the_chain_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let owner = ks.identity_public_key().unwrap();
    let (path, log) = sample_log(tmp.path(), &ks);

    let entries = log.entries().to_vec();
    assert_eq!(entries.len(), 4);
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(entries[0].prev_hash, genesis_hash(&owner));
    let file = lines(&path);
    for (entry, line) in entries.iter().zip(&file) {
        assert_eq!(&entry.to_line().unwrap(), line);
        assert_eq!(entry.signer, owner);
        owner
            .verify(&entry.signing_bytes().unwrap(), &entry.signature)
            .unwrap();
    }
    for (next, line) in entries.iter().skip(1).zip(&file) {
        assert_eq!(next.prev_hash, hash(line));
    }
    assert_eq!(log.head_hash(), hash(&file[3]));
    assert_eq!(log.head_hash(), entries[3].line_hash().unwrap());
    assert_eq!(
        entries[1].record.sighashes,
        [SigningDigest::from_bytes(SIGHASH)]
    );
    drop(log);

    // Reopened from disk: the same entries and head, and `verify` agrees.
    let mut reopened = AuditLog::open(&path, &owner).unwrap();
    assert_eq!(reopened.entries(), entries.as_slice());
    assert_eq!(reopened.head_hash(), hash(&file[3]));
    assert_eq!(
        audit::verify(&std::fs::read(&path).unwrap(), &owner).unwrap(),
        entries
    );

    // Appending after reopening chains to the old head.
    let old_head = reopened.head_hash();
    let fifth = reopened
        .append(
            &ks,
            300,
            AuditRecord::new(AuditEvent::RequestSeen).with_request_id(&rid("req-2")),
        )
        .unwrap();
    assert_eq!(
        (fifth.seq, fifth.prev_hash.as_str()),
        (5, old_head.as_str())
    );
    drop(reopened);
    let again = AuditLog::open(&path, &owner).unwrap();
    assert_eq!(again.entries().len(), 5);
    assert_eq!(again.entries()[4], fifth);
    assert_eq!(again.head_hash(), fifth.line_hash().unwrap());
}

#[test]
fn a_missing_file_is_an_empty_log_and_opening_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let owner = ks.identity_public_key().unwrap();
    let path = tmp.path().join("new.audit.jsonl");
    let mut log = AuditLog::open(&path, &owner).unwrap();
    assert!(log.entries().is_empty());
    assert_eq!(log.head_hash(), genesis_hash(&owner));
    assert!(!path.exists());
    assert_eq!(
        audit::verify(b"", &owner).unwrap(),
        Vec::<AuditEntry>::new()
    );

    log.append(&ks, 1, AuditRecord::new(AuditEvent::Approved))
        .unwrap();
    assert_eq!(lines(&path).len(), 1);
}

#[test]
fn an_edited_field_is_caught_at_that_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let (path, _) = sample_log(tmp.path(), &ks);
    let mut file = lines(&path);
    let edited = String::from_utf8(file[1].clone())
        .unwrap()
        .replace("\"amount_sat\":50000", "\"amount_sat\":5000");
    assert_ne!(edited.as_bytes(), file[1].as_slice());
    file[1] = edited.into_bytes();
    let err = verify_err(&file, &ks);
    assert!(
        err.to_string()
            .starts_with("audit log is broken at line 2 (entry 2): "),
        "{err}"
    );
    assert_broken(err, 2, Some(2), "signature does not verify");
}

#[test]
fn a_reformatted_line_is_caught_at_that_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let (path, _) = sample_log(tmp.path(), &ks);
    let mut file = lines(&path);
    // Same content, other bytes: would otherwise only show in the next link.
    file[3] = String::from_utf8(file[3].clone())
        .unwrap()
        .replacen(',', ", ", 1)
        .into_bytes();
    assert_broken(verify_err(&file, &ks), 4, Some(4), "canonical encoding");
}

#[test]
fn a_deleted_entry_is_caught_at_the_entry_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let (path, _) = sample_log(tmp.path(), &ks);
    let mut file = lines(&path);
    file.remove(1);
    assert_broken(verify_err(&file, &ks), 2, Some(3), "sequence number 3");
}

#[test]
fn a_deleted_first_entry_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let (path, _) = sample_log(tmp.path(), &ks);
    let mut file = lines(&path);
    file.remove(0);
    assert_broken(verify_err(&file, &ks), 1, Some(2), "where 1 was expected");
}

#[test]
fn an_entry_forged_by_another_identity_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let mallory = MemoryKeystore::new();
    let (path, log) = sample_log(tmp.path(), &ks);
    let mut file = lines(&path);

    // A well-chained entry 3, signed by (and naming) another identity,
    // inserted after entry 2.
    let mut forged = AuditEntry {
        seq: 3,
        time: 250,
        record: AuditRecord::new(AuditEvent::ShareReleased)
            .with_request_id(&rid("req-evil"))
            .with_amount_sat(1),
        prev_hash: hash(&file[1]),
        signer: mallory.identity_public_key().unwrap(),
        signature: log.entries()[0].signature,
    };
    forged.signature = mallory
        .sign_identity(&forged.signing_bytes().unwrap())
        .unwrap();
    let mut tampered = file.clone();
    tampered.insert(2, forged.to_line().unwrap());
    assert_broken(
        verify_err(&tampered, &ks),
        3,
        Some(3),
        "not by the log's owner",
    );

    // The same entry claiming to be the owner's: the signature gives it away.
    forged.signer = ks.identity_public_key().unwrap();
    forged.signature = mallory
        .sign_identity(&forged.signing_bytes().unwrap())
        .unwrap();
    file.insert(2, forged.to_line().unwrap());
    assert_broken(
        verify_err(&file, &ks),
        3,
        Some(3),
        "signature does not verify",
    );
}

#[test]
fn a_replayed_entry_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let (path, _) = sample_log(tmp.path(), &ks);
    let file = lines(&path);

    let mut after_original = file.clone();
    after_original.insert(2, file[1].clone());
    assert_broken(verify_err(&after_original, &ks), 3, Some(2), "replayed");

    let mut at_end = file.clone();
    at_end.push(file[1].clone());
    assert_broken(verify_err(&at_end, &ks), 5, Some(2), "replayed");
}

#[test]
fn swapped_entries_are_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let (path, _) = sample_log(tmp.path(), &ks);
    let mut file = lines(&path);
    file.swap(1, 2);
    assert_broken(verify_err(&file, &ks), 2, Some(3), "reordered");
}

#[test]
fn an_edit_re_signed_with_the_owner_key_breaks_the_next_link() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let (path, _) = sample_log(tmp.path(), &ks);
    let mut file = lines(&path);
    let mut entry: AuditEntry = serde_json::from_slice(&file[1]).unwrap();
    entry.record.amount_sat = Some(1);
    entry.signature = ks.sign_identity(&entry.signing_bytes().unwrap()).unwrap();
    file[1] = entry.to_line().unwrap();
    assert_broken(
        verify_err(&file, &ks),
        3,
        Some(3),
        "prev_hash does not match the line before",
    );
}

#[test]
fn a_truncated_last_line_is_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let owner = ks.identity_public_key().unwrap();
    let (path, _) = sample_log(tmp.path(), &ks);
    let bytes = std::fs::read(&path).unwrap();

    // Only the newline missing: the entry itself is complete.
    let err = audit::verify(&bytes[..bytes.len() - 1], &owner).unwrap_err();
    assert!(matches!(err, AuditError::Truncated { line: 4 }), "{err}");
    assert!(err.to_string().contains("truncated line 4"), "{err}");

    // Cut mid-entry, as by a crash during the write; opening refuses too.
    std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
    let err = AuditLog::open(&path, &owner).unwrap_err();
    assert!(matches!(err, AuditError::Truncated { line: 4 }), "{err}");
}

#[test]
fn garbage_and_blank_lines_are_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let (path, _) = sample_log(tmp.path(), &ks);
    let mut file = lines(&path);
    file.insert(2, b"\n".to_vec());
    assert_broken(verify_err(&file, &ks), 3, None, "not a valid audit entry");
    file[2] = b"{\"seq\":3}\n".to_vec();
    assert_broken(verify_err(&file, &ks), 3, None, "not a valid audit entry");
}

#[test]
fn time_going_backwards_is_caught_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let (path, mut log) = sample_log(tmp.path(), &ks);
    let before = std::fs::read(&path).unwrap();

    let err = log
        .append(&ks, 299, AuditRecord::new(AuditEvent::Aggregated))
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::TimeWentBackwards {
                last: 300,
                given: 299
            }
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // An otherwise perfect owner-signed entry 5 dated before entry 4.
    let mut file = lines(&path);
    let mut early = AuditEntry {
        seq: 5,
        time: 299,
        record: AuditRecord::new(AuditEvent::Aggregated),
        prev_hash: hash(&file[3]),
        signer: ks.identity_public_key().unwrap(),
        signature: log.entries()[0].signature,
    };
    early.signature = ks.sign_identity(&early.signing_bytes().unwrap()).unwrap();
    file.push(early.to_line().unwrap());
    assert_broken(
        verify_err(&file, &ks),
        5,
        Some(5),
        "before the previous entry's time",
    );
}

#[test]
fn a_log_opened_for_another_owner_is_refused_at_the_first_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let other = MemoryKeystore::new();
    let (path, _) = sample_log(tmp.path(), &ks);
    let err = AuditLog::open(&path, &other.identity_public_key().unwrap()).unwrap_err();
    assert_broken(err, 1, Some(1), "genesis hash");
}

#[test]
fn appending_with_another_identity_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let other = MemoryKeystore::new();
    let (path, mut log) = sample_log(tmp.path(), &ks);
    let before = std::fs::read(&path).unwrap();

    let err = log
        .append(&other, 400, AuditRecord::new(AuditEvent::Approved))
        .unwrap_err();
    match &err {
        AuditError::NotOwner { owner, keystore } => {
            assert_eq!(**owner, ks.identity_public_key().unwrap());
            assert_eq!(**keystore, other.identity_public_key().unwrap());
        }
        other => panic!("expected NotOwner, got {other}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(log.entries().len(), 4);
    // The handle is still usable by the owner.
    assert_eq!(
        log.append(&ks, 400, AuditRecord::new(AuditEvent::Approved))
            .unwrap()
            .seq,
        5
    );
}

#[test]
fn a_second_writer_is_caught_instead_of_forking_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let owner = ks.identity_public_key().unwrap();
    let (path, mut first) = sample_log(tmp.path(), &ks);
    let mut second = AuditLog::open(&path, &owner).unwrap();

    second
        .append(&ks, 400, AuditRecord::new(AuditEvent::Aggregated))
        .unwrap();
    let err = first
        .append(&ks, 400, AuditRecord::new(AuditEvent::Finalized))
        .unwrap_err();
    assert!(matches!(err, AuditError::Changed { .. }), "{err}");

    // The file holds one valid chain of five entries.
    assert_eq!(AuditLog::open(&path, &owner).unwrap().entries().len(), 5);
}

#[test]
fn rolling_amounts_and_seen_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let (_, mut log) = sample_log(tmp.path(), &ks);
    // req-1: seen at 100, 50 000 released at 200, finalized at 200.
    log.append(
        &ks,
        400,
        AuditRecord::new(AuditEvent::Approved)
            .with_request_id(&rid("req-2"))
            .with_amount_sat(7_000_000),
    )
    .unwrap();
    log.append(
        &ks,
        500,
        AuditRecord::new(AuditEvent::ShareReleased)
            .with_request_id(&rid("req-2"))
            .with_amount_sat(20_000),
    )
    .unwrap();
    log.append(
        &ks,
        600,
        AuditRecord::new(AuditEvent::Refused {
            rule: RefusalKind::Policy(Rule::RollingWindowLimit),
            reason: "over the daily limit".into(),
        })
        .with_request_id(&rid("req-3"))
        .with_amount_sat(1_000_000),
    )
    .unwrap();
    log.append(
        &ks,
        700,
        AuditRecord::new(AuditEvent::Finalized).with_request_id(&rid("req-4")),
    )
    .unwrap();
    log.append(
        &ks,
        700,
        AuditRecord::new(AuditEvent::Note {
            text: "about req-5".into(),
        })
        .with_request_id(&rid("req-5")),
    )
    .unwrap();

    // Only ShareReleased counts; the bound is inclusive.
    assert_eq!(log.amount_released_since(0), 70_000);
    assert_eq!(log.amount_released_since(200), 70_000);
    assert_eq!(log.amount_released_since(201), 20_000);
    assert_eq!(log.amount_released_since(500), 20_000);
    assert_eq!(log.amount_released_since(501), 0);

    assert!(log.has_seen_request("req-1"));
    assert!(log.has_seen_request("req-2"));
    assert!(log.has_seen_request("req-3"), "a refusal counts as seen");
    assert!(!log.has_seen_request("req-4"), "finalized only");
    assert!(!log.has_seen_request("req-5"), "a note only");
    assert!(!log.has_seen_request("req-6"));

    // Sums saturate instead of overflowing.
    for t in [800, 801] {
        log.append(
            &ks,
            t,
            AuditRecord::new(AuditEvent::ShareReleased).with_amount_sat(u64::MAX - 1),
        )
        .unwrap();
    }
    assert_eq!(log.amount_released_since(0), u64::MAX);
    assert_eq!(log.amount_released_since(801), u64::MAX - 1);
}

#[test]
fn events_are_written_as_tagged_kebab_case() {
    let tmp = tempfile::tempdir().unwrap();
    let ks = MemoryKeystore::new();
    let (path, _) = sample_log(tmp.path(), &ks);
    let file = lines(&path);
    let text = String::from_utf8(file.concat()).unwrap();
    assert!(
        text.contains("\"event\":{\"type\":\"request-seen\"}"),
        "{text}"
    );
    assert!(
        text.contains("\"event\":{\"type\":\"share-released\"}"),
        "{text}"
    );
    assert!(
        text.contains("\"event\":{\"text\":\"end of day\",\"type\":\"note\"}"),
        "{text}"
    );
}

#[test]
fn event_names_are_the_stored_type() {
    let events = [
        AuditEvent::RequestSeen,
        AuditEvent::Approved,
        AuditEvent::Refused {
            rule: RefusalKind::Replay,
            reason: "x".into(),
        },
        AuditEvent::ShareReleased,
        AuditEvent::SharesRedelivered,
        AuditEvent::ApprovalSuperseded,
        AuditEvent::Aggregated,
        AuditEvent::Finalized,
        AuditEvent::Note { text: "x".into() },
    ];
    for event in events {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], event.as_str(), "{json}");
    }
    let refused = AuditEvent::Refused {
        rule: RefusalKind::Policy(Rule::FeeCap),
        reason: "x".into(),
    };
    assert_eq!(refused.to_string(), "refused (fee-cap)");
}
