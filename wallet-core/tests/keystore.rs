//! Keystores: persisted nonces taken once, encryption at rest, identity keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use age::secrecy::SecretString;
use kura_testkit::*;
use wallet_core::identity::{IdentityError, IdentitySignature, SoftwareIdentity};
use wallet_core::keystore::{
    self, Keystore, KeystoreError, MemoryKeystore, SecretSlot, SessionId, SoftwareKeystore,
    StoredSignError, WorkFactor,
};
use wallet_core::signing::{self, SignError};
use wallet_core::{Secp256k1Tr, SecretBytes};

const MSG: &[u8; 32] = b"sighash of input 0 (stand-in)...";

fn pass(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn software(dir: &std::path::Path) -> SoftwareKeystore {
    SoftwareKeystore::create(dir, &pass("correct horse"), WorkFactor::LogN(2)).unwrap()
}

#[test]
fn persisted_rounds_sign_and_nonces_are_taken_once() {
    let d = deal::<Secp256k1Tr>(2, 3, 1);
    let tmp = tempfile::tempdir().unwrap();
    let stores: Vec<Box<dyn Keystore>> = vec![
        Box::new(software(&tmp.path().join("a"))),
        Box::new(MemoryKeystore::new()),
    ];
    for (ks, share) in stores.iter().zip(&d.shares) {
        keystore::put_share(ks.as_ref(), share).unwrap();
    }
    let session = SessionId::random();
    let mut commitments = BTreeMap::new();
    let mut shares = Vec::new();
    for (ks, share) in stores.iter().zip(&d.shares) {
        let loaded =
            keystore::load_share::<Secp256k1Tr>(ks.as_ref(), &d.group, share.identifier()).unwrap();
        assert_eq!(loaded.key_package(), share.key_package());
        commitments.insert(
            *share.identifier(),
            keystore::commit(ks.as_ref(), &loaded, &session).unwrap(),
        );
        shares.push(loaded);
    }
    let package = signing::build_package(&d.group, commitments.clone(), MSG).unwrap();

    // A refused package leaves the nonces in place.
    let bad = signing::build_package(&d.group, commitments.clone(), b"other").unwrap();
    let own = &commitments[shares[0].identifier()];
    let err = keystore::sign(
        stores[0].as_ref(),
        &shares[0],
        &d.group,
        &session,
        &bad,
        MSG,
        own,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            StoredSignError::Refused(SignError::MessageMismatch { .. })
        ),
        "{err}"
    );

    let mut sig_shares = BTreeMap::new();
    for (ks, share) in stores.iter().zip(&shares) {
        let own = &commitments[share.identifier()];
        let s = keystore::sign(ks.as_ref(), share, &d.group, &session, &package, MSG, own).unwrap();
        sig_shares.insert(*share.identifier(), s);
        // The second use of the same session is refused.
        let again =
            keystore::sign(ks.as_ref(), share, &d.group, &session, &package, MSG, own).unwrap_err();
        assert!(
            matches!(
                again,
                StoredSignError::Keystore(KeystoreError::NoncesConsumed(_))
            ),
            "{again}"
        );
    }
    let sig = signing::aggregate(&d.group, &package, &sig_shares).unwrap();
    assert!(libsecp_verify_tr(&d.group, MSG, &sig));
}

#[test]
fn two_racing_takers_get_one_nonce_set() {
    let d = deal::<Secp256k1Tr>(2, 3, 2);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ks");
    let ks = software(&dir);
    for round in 0..10 {
        let session = SessionId::random();
        keystore::commit(&ks, &d.shares[0], &session).unwrap();
        let slot = Arc::new(SecretSlot::nonces(&d.shares[0], &session));
        // Separate keystore instances open separate lock files, as two
        // processes would.
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let ks = SoftwareKeystore::open(&dir, &pass("correct horse")).unwrap();
                let slot = Arc::clone(&slot);
                std::thread::spawn(move || ks.take_nonces(&slot).is_ok())
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&w| w)
            .count();
        assert_eq!(wins, 1, "round {round}");
    }
}

#[test]
fn a_take_interrupted_before_the_share_leaves_no_reusable_nonce() {
    // Model of a crash after the take and before the share is released: the
    // take succeeded, nothing else happened. A new process sees no nonces.
    let d = deal::<Secp256k1Tr>(2, 3, 3);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ks");
    let ks = software(&dir);
    let session = SessionId::random();
    keystore::commit(&ks, &d.shares[0], &session).unwrap();
    let slot = SecretSlot::nonces(&d.shares[0], &session);
    drop(ks.take_nonces(&slot).unwrap());
    drop(ks);
    let reopened = SoftwareKeystore::open(&dir, &pass("correct horse")).unwrap();
    assert!(matches!(
        reopened.take_nonces(&slot),
        Err(KeystoreError::NoncesConsumed(_))
    ));
    // And the session cannot be re-committed with fresh nonces under the same
    // slot while old ones exist.
    let s2 = SessionId::random();
    keystore::commit(&reopened, &d.shares[0], &s2).unwrap();
    assert!(matches!(
        keystore::commit(&reopened, &d.shares[0], &s2),
        Err(KeystoreError::AlreadyExists(_))
    ));
}

#[test]
fn wrong_passphrase_missing_keystore_and_no_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ks");
    software(&dir);
    assert!(matches!(
        SoftwareKeystore::open(&dir, &pass("wrong")),
        Err(KeystoreError::WrongPassphrase)
    ));
    assert!(matches!(
        SoftwareKeystore::open(&tmp.path().join("nowhere"), &pass("x")),
        Err(KeystoreError::NotFound(_))
    ));
    assert!(matches!(
        SoftwareKeystore::create(&dir, &pass("other"), WorkFactor::LogN(2)),
        Err(KeystoreError::AlreadyExists(_))
    ));
    // The original is still usable.
    SoftwareKeystore::open(&dir, &pass("correct horse")).unwrap();
}

fn only_file(dir: &std::path::Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "age"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

#[test]
fn tampered_or_moved_ciphertext_is_refused() {
    let d = deal::<Secp256k1Tr>(2, 3, 4);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ks");
    let ks = software(&dir);
    keystore::put_share(&ks, &d.shares[0]).unwrap();
    let file = only_file(&dir.join("shares"));
    let good = std::fs::read(&file).unwrap();

    // A flipped byte in the payload.
    let mut bad = good.clone();
    let last = bad.len() - 5;
    bad[last] ^= 1;
    std::fs::write(&file, &bad).unwrap();
    let id = *d.shares[0].identifier();
    let err = keystore::load_share::<Secp256k1Tr>(&ks, &d.group, &id).unwrap_err();
    assert!(matches!(err, KeystoreError::Tampered(_)), "{err}");

    // Participant 1's ciphertext copied into participant 2's slot.
    std::fs::write(&file, &good).unwrap();
    let slot2 = SecretSlot::key_share(&d.shares[1]);
    std::fs::copy(
        &file,
        dir.join("shares").join(format!("{}.age", slot2.name())),
    )
    .unwrap();
    let id2 = *d.shares[1].identifier();
    let err = keystore::load_share::<Secp256k1Tr>(&ks, &d.group, &id2).unwrap_err();
    assert!(matches!(err, KeystoreError::Tampered(_)), "{err}");

    // Another keystore's key cannot read it.
    let other = software(&tmp.path().join("other"));
    std::fs::copy(
        &file,
        tmp.path()
            .join("other/shares")
            .join(file.file_name().unwrap()),
    )
    .unwrap();
    assert!(matches!(
        keystore::load_share::<Secp256k1Tr>(&other, &d.group, &id),
        Err(KeystoreError::Tampered(_))
    ));
}

#[test]
fn nothing_on_disk_shows_the_share_and_debug_is_redacted() {
    let d = deal::<Secp256k1Tr>(2, 3, 5);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ks");
    let ks = software(&dir);
    keystore::put_share(&ks, &d.shares[0]).unwrap();
    keystore::commit(&ks, &d.shares[0], &SessionId::random()).unwrap();
    let share_hex = hex::encode(d.shares[0].key_package().signing_share().serialize());
    let share_raw = d.shares[0].key_package().signing_share().serialize();
    for entry in walk(&dir) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&share_hex),
            "{entry:?}"
        );
        assert!(
            !bytes.windows(32).any(|w| w == share_raw.as_slice()),
            "{entry:?}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
            if entry.extension().is_some_and(|e| e == "age") {
                assert_eq!(mode, 0o600, "{entry:?}");
            }
        }
    }
    let dbg = format!("{ks:?} {:?}", SecretBytes::new(share_raw.clone()));
    assert!(
        !dbg.contains(&share_hex) && !dbg.contains("correct horse"),
        "{dbg}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn identity_signatures_and_sealed_messages() {
    let mut r = rng(6);
    let alice = SoftwareIdentity::generate(&mut r);
    let bob = SoftwareIdentity::generate(&mut r);
    let sig = alice.sign(b"kura/v1/test\0hello");
    alice
        .public_key()
        .verify(b"kura/v1/test\0hello", &sig)
        .unwrap();
    assert!(matches!(
        alice.public_key().verify(b"kura/v1/test\0hellO", &sig),
        Err(IdentityError::BadSignature)
    ));
    assert!(bob
        .public_key()
        .verify(b"kura/v1/test\0hello", &sig)
        .is_err());

    // A high-S encoding of a valid signature is refused (one encoding per signature).
    let bytes = sig.to_bytes();
    let n =
        hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551").unwrap();
    let s_high = sub_be(&n, &bytes[32..]);
    let mut high = bytes.to_vec();
    high[32..].copy_from_slice(&s_high);
    assert!(matches!(
        IdentitySignature::from_bytes(&high),
        Err(IdentityError::InvalidSignature)
    ));
    assert_eq!(IdentitySignature::from_raw_normalizing(&high).unwrap(), sig);

    let sealed = bob
        .public_key()
        .seal(b"round-2 share", b"ctx", &mut r)
        .unwrap();
    assert_eq!(
        bob.open(&sealed, b"ctx").unwrap().expose(),
        b"round-2 share"
    );
    assert!(matches!(
        alice.open(&sealed, b"ctx"),
        Err(IdentityError::SealOpen)
    ));
    assert!(matches!(
        bob.open(&sealed, b"other ctx"),
        Err(IdentityError::SealOpen)
    ));
    let mut tampered = sealed.clone();
    tampered.ciphertext[0] ^= 1;
    assert!(matches!(
        bob.open(&tampered, b"ctx"),
        Err(IdentityError::SealOpen)
    ));
    let ks = MemoryKeystore::with_identity(bob.clone());
    assert_eq!(
        ks.open_sealed(&sealed, b"ctx").unwrap().expose(),
        b"round-2 share"
    );
}

/// a - b for 32-byte big-endian numbers with a >= b.
fn sub_be(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut v = a[i] as i16 - b[i] as i16 - borrow;
        borrow = if v < 0 {
            v += 256;
            1
        } else {
            0
        };
        out[i] = v as u8;
    }
    out
}

#[test]
fn stored_nonces_that_do_not_match_their_commitments_are_refused() {
    // Someone who can write a nonce record keeps the genuine (public)
    // commitments but swaps in nonces of their choosing: the signer rebuilds
    // the commitments from the nonces and refuses.
    let d = deal::<Secp256k1Tr>(2, 3, 9);
    let ks = MemoryKeystore::new();
    let (s1, s2) = (SessionId::random(), SessionId::random());
    let own = keystore::commit(&ks, &d.shares[0], &s1).unwrap();
    keystore::commit(&ks, &d.shares[0], &s2).unwrap();
    let slot1 = SecretSlot::nonces(&d.shares[0], &s1);
    let slot2 = SecretSlot::nonces(&d.shares[0], &s2);
    let doc1: serde_json::Value =
        serde_json::from_slice(ks.take_nonces(&slot1).unwrap().expose()).unwrap();
    let doc2: serde_json::Value =
        serde_json::from_slice(ks.take_nonces(&slot2).unwrap().expose()).unwrap();
    let mut forged = doc1.clone();
    forged["body"]["nonces"]["hiding"] = doc2["body"]["nonces"]["hiding"].clone();
    forged["body"]["nonces"]["binding"] = doc2["body"]["nonces"]["binding"].clone();
    assert_eq!(
        forged["body"]["nonces"]["commitments"],
        doc1["body"]["nonces"]["commitments"]
    );
    ks.put_nonces(
        &slot1,
        &SecretBytes::new(serde_json::to_vec(&forged).unwrap()),
    )
    .unwrap();
    let (_, other) = signing::commit(&d.shares[1], &mut rng(3));
    let package = signing::build_package(
        &d.group,
        BTreeMap::from([
            (*d.shares[0].identifier(), own),
            (*d.shares[1].identifier(), other),
        ]),
        MSG,
    )
    .unwrap();
    let err = keystore::sign(&ks, &d.shares[0], &d.group, &s1, &package, MSG, &own).unwrap_err();
    assert!(
        matches!(err, StoredSignError::Refused(SignError::CommitmentChanged)),
        "{err}"
    );
}
