//! Documents: round trips, and typed errors for every kind of bad input.

use kura_testkit::*;
use wallet_core::format::{self, FormatError};
use wallet_core::keystore::SessionId;
use wallet_core::messages::{CommitmentsMessage, PackageEntry, PackageMessage, ShareMessage};
use wallet_core::signing::{self, SignError};
use wallet_core::{GroupError, KeyShare, PublicGroup, Secp256k1, Secp256k1Tr};

fn set(doc: &[u8], path: &[&str], value: serde_json::Value) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(doc).unwrap();
    let mut cur = &mut v;
    for p in &path[..path.len() - 1] {
        cur = match p.parse::<usize>() {
            Ok(i) => &mut cur[i],
            Err(_) => &mut cur[*p],
        };
    }
    cur[path[path.len() - 1]] = value;
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn group_and_share_round_trip() {
    let d = deal::<Secp256k1Tr>(2, 3, 1);
    let doc = d.group.to_document().unwrap();
    assert_eq!(
        PublicGroup::<Secp256k1Tr>::from_document(&doc).unwrap(),
        d.group
    );
    let secret = d.shares[1].to_secret_document().unwrap();
    assert_eq!(
        KeyShare::<Secp256k1Tr>::from_secret_document(secret.expose()).unwrap(),
        d.shares[1]
    );
}

#[test]
fn envelope_errors_are_typed() {
    let d = deal::<Secp256k1Tr>(2, 3, 2);
    let doc = d.group.to_document().unwrap();
    let read = |b: &[u8]| PublicGroup::<Secp256k1Tr>::from_document(b).unwrap_err();

    assert!(matches!(
        read(b"not json"),
        GroupError::Format(FormatError::Malformed(_))
    ));
    assert!(matches!(
        read(&doc[..doc.len() / 2]),
        GroupError::Format(FormatError::Malformed(_))
    ));
    assert!(matches!(
        read(b""),
        GroupError::Format(FormatError::Malformed(_))
    ));
    assert!(matches!(
        read(&set(&doc, &["format"], "kyra".into())),
        GroupError::Format(FormatError::NotKura(_))
    ));
    match read(&set(&doc, &["version"], 2.into())) {
        GroupError::Format(
            e @ FormatError::UnknownVersion {
                found: 2,
                supported: 1,
            },
        ) => {
            assert!(e.to_string().contains("upgrade"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        read(&set(&doc, &["kind"], "key-share".into())),
        GroupError::Format(FormatError::WrongKind { .. })
    ));
    assert!(matches!(
        PublicGroup::<Secp256k1>::from_document(&doc).unwrap_err(),
        GroupError::Format(FormatError::WrongSuite { .. })
    ));
    // Unknown fields are refused, not ignored.
    assert!(matches!(
        read(&set(&doc, &["extra"], 1.into())),
        GroupError::Format(FormatError::Malformed(_))
    ));
    assert!(matches!(
        read(&set(&doc, &["body", "extra"], 1.into())),
        GroupError::Format(FormatError::Invalid { .. })
    ));
    // A group id that is not this key's.
    let other = deal::<Secp256k1Tr>(2, 3, 3);
    let wrong = set(&doc, &["group"], other.group.id().to_string().into());
    assert!(matches!(
        read(&wrong),
        GroupError::Format(FormatError::WrongGroup { .. })
    ));
    assert!(matches!(
        read(&set(&doc, &["group"], "00".into())),
        GroupError::Format(FormatError::Malformed(_))
    ));
}

#[test]
fn invalid_points_and_scalars_are_refused() {
    let d = deal::<Secp256k1Tr>(2, 3, 4);
    let doc = d.group.to_document().unwrap();
    let read = |b: &[u8]| PublicGroup::<Secp256k1Tr>::from_document(b).unwrap_err();
    let vk_path = ["body", "public_key_package", "verifying_key"];
    // The identity (encoded as all zeros), a point not on the curve, a bad prefix, a short key.
    // x = 0x0303…03 has no y on secp256k1; x = 0xff…ff is not a field element.
    let not_on_curve = format!("02{}", "03".repeat(32));
    let not_field = format!("02{}", "ff".repeat(32));
    for bad in [
        "00".repeat(33),
        not_on_curve,
        not_field,
        format!("05{}", "11".repeat(32)),
        "02abcd".into(),
    ] {
        let e = read(&set(&doc, &vk_path, bad.clone().into()));
        assert!(
            matches!(e, GroupError::Format(FormatError::Invalid { .. })),
            "{bad}: {e:?}"
        );
    }
    // The same for a verifying share.
    let id = hex::encode(d.shares[0].identifier().serialize());
    let e = read(&set(
        &doc,
        &["body", "public_key_package", "verifying_shares", &id],
        format!("02{}", "03".repeat(32)).into(),
    ));
    assert!(
        matches!(e, GroupError::Format(FormatError::Invalid { .. })),
        "{e:?}"
    );

    // Key share: out-of-range scalar (the group order n) and zero.
    let secret = d.shares[0].to_secret_document().unwrap();
    let n = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
    for bad in [n.to_string(), "00".repeat(32), "ff".repeat(32)] {
        let e = KeyShare::<Secp256k1Tr>::from_secret_document(&set(
            secret.expose(),
            &["body", "key_package", "signing_share"],
            bad.clone().into(),
        ))
        .unwrap_err();
        assert!(
            matches!(
                e,
                GroupError::Format(FormatError::Invalid { .. }) | GroupError::ShareMismatch(_)
            ),
            "{bad}: {e:?}"
        );
    }
    // A valid scalar that is not this share: refused by the verifying-share check.
    let other = d.shares[1].key_package().signing_share().serialize();
    let e = KeyShare::<Secp256k1Tr>::from_secret_document(&set(
        secret.expose(),
        &["body", "key_package", "signing_share"],
        hex::encode(other).into(),
    ))
    .unwrap_err();
    assert!(matches!(e, GroupError::ShareMismatch(_)), "{e:?}");
}

#[test]
fn roster_must_match_the_public_key_package() {
    let d = deal::<Secp256k1Tr>(2, 3, 5);
    let doc = d.group.to_document().unwrap();
    let read = |b: &[u8]| PublicGroup::<Secp256k1Tr>::from_document(b).unwrap_err();
    // Duplicate participant.
    let mut v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    let first = v["body"]["participants"][0].clone();
    v["body"]["participants"][1] = first;
    assert!(matches!(
        read(&serde_json::to_vec(&v).unwrap()),
        GroupError::DuplicateIdentifier(_)
    ));
    // Missing participant.
    let mut v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    v["body"]["participants"].as_array_mut().unwrap().pop();
    assert!(matches!(
        read(&serde_json::to_vec(&v).unwrap()),
        GroupError::RosterMismatch(_)
    ));
    // Threshold out of line with the package.
    assert!(matches!(
        read(&set(&doc, &["body", "min_signers"], 3.into())),
        GroupError::RosterMismatch(_)
    ));
    // Bad labels.
    for bad in ["", "tab\there", &"x".repeat(65)] {
        let e = read(&set(
            &doc,
            &["body", "participants", "0", "label"],
            bad.into(),
        ));
        assert!(
            matches!(e, GroupError::Format(FormatError::Invalid { .. })),
            "{bad:?}: {e:?}"
        );
    }
}

#[test]
fn round_messages_round_trip_and_duplicates_are_refused() {
    let d = deal::<Secp256k1>(2, 3, 6);
    let session = SessionId::from_bytes([7; 32]);
    let mut r = rng(1);
    let (s0, c0) = signing::commit(&d.shares[0], &mut r);
    let (_s1, c1) = signing::commit(&d.shares[1], &mut r);
    let cm = CommitmentsMessage {
        session,
        participant: *d.shares[0].identifier(),
        commitments: c0,
    };
    let bytes = format::encode(d.group.id(), &cm).unwrap();
    assert_eq!(
        format::decode_for_group::<CommitmentsMessage<Secp256k1>>(&bytes, d.group.id()).unwrap(),
        cm
    );
    // Another group's document is refused.
    let other = deal::<Secp256k1>(2, 3, 7);
    assert!(matches!(
        format::decode_for_group::<CommitmentsMessage<Secp256k1>>(&bytes, other.group.id()),
        Err(FormatError::WrongGroup { .. })
    ));
    // A commitment that is not a point.
    let bad = set(
        &bytes,
        &["body", "commitments", "hiding"],
        format!("02{}", "03".repeat(32)).into(),
    );
    assert!(matches!(
        format::decode_for_group::<CommitmentsMessage<Secp256k1>>(&bad, d.group.id()),
        Err(FormatError::Invalid { .. })
    ));

    let msg = b"message".to_vec();
    let pm = PackageMessage {
        session,
        message: msg.clone(),
        commitments: vec![
            PackageEntry {
                participant: *d.shares[0].identifier(),
                commitments: c0,
            },
            PackageEntry {
                participant: *d.shares[1].identifier(),
                commitments: c1,
            },
        ],
    };
    let bytes = format::encode(d.group.id(), &pm).unwrap();
    let back = format::decode_for_group::<PackageMessage<Secp256k1>>(&bytes, d.group.id()).unwrap();
    let package = back.to_package().unwrap();
    let share = signing::sign(&d.shares[0], &d.group, &package, &msg, s0).unwrap();

    // Participant 2 listed twice (a map would silently keep one).
    let mut dup = pm.clone();
    dup.commitments[0] = dup.commitments[1].clone();
    assert!(matches!(
        dup.to_package(),
        Err(SignError::DuplicateSigner(_))
    ));

    let sm = ShareMessage {
        session,
        participant: *d.shares[0].identifier(),
        share,
    };
    let bytes = format::encode(d.group.id(), &sm).unwrap();
    assert_eq!(
        format::decode_for_group::<ShareMessage<Secp256k1>>(&bytes, d.group.id()).unwrap(),
        sm
    );
    // An out-of-range share scalar.
    let n = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
    let bad = set(&bytes, &["body", "share"], n.into());
    assert!(format::decode_for_group::<ShareMessage<Secp256k1>>(&bad, d.group.id()).is_err());
    // A share document read as a package: wrong kind.
    assert!(matches!(
        format::decode_for_group::<PackageMessage<Secp256k1>>(&bytes, d.group.id()),
        Err(FormatError::WrongKind { .. })
    ));
}

#[test]
fn canonical_bytes_ignore_layout_and_separate_kinds() {
    let d = deal::<Secp256k1Tr>(2, 3, 8);
    let session = SessionId::from_bytes([1; 32]);
    let (_, c) = signing::commit(&d.shares[0], &mut rng(2));
    let cm = CommitmentsMessage {
        session,
        participant: *d.shares[0].identifier(),
        commitments: c,
    };
    let a = format::canonical_bytes(d.group.id(), &cm).unwrap();
    // Re-reading a pretty-printed document gives the same canonical bytes.
    let doc = format::encode(d.group.id(), &cm).unwrap();
    let back =
        format::decode_for_group::<CommitmentsMessage<Secp256k1Tr>>(&doc, d.group.id()).unwrap();
    assert_eq!(format::canonical_bytes(d.group.id(), &back).unwrap(), a);
    assert!(a.starts_with(b"kura/v1/signing-commitments\0"));
    assert!(!a.contains(&b'\n'));
}
