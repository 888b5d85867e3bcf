//! The group's watch-only `tr()` descriptor (BIP 386) and the BIP 380
//! descriptor checksum, against checksums published in the BIPs.

use kura_testkit::*;
use wallet_core::taproot::{descriptor_checksum, verify_descriptor_checksum};
use wallet_core::Secp256k1Tr;

/// Descriptors printed with their checksums, split at the final `#`:
/// `(descriptor, checksum, source)`. All from bitcoin/bips at commit
/// `7fe0b034ec967b52a5a28276419117326df93263`, copied exactly; also kept in
/// `test-vectors/vectors/bip380/descriptor-checksums.json` (see `SOURCES.md`).
///
/// No published checksum was found for a `tr(<x-only hex>)` descriptor: the
/// `tr()` test vectors of BIP 386 are printed without checksums.
const VECTORS: &[(&str, &str, &str)] = &[
    // bitcoin/bips bip-0380.mediawiki, "Test Vectors": "Valid checksum".
    ("raw(deadbeef)", "89f8spxm", "BIP 380"),
    // bitcoin/bips bip-0129.mediawiki, test vector ROUND 2, the coordinator's
    // `my_multisig_wallet.bsms`.
    (
        "wsh(sortedmulti(1,[59865f44/48'/0'/0'/2']026d15412460ba0d881c21837bb999233896085a9ed4e5445bd637c10e579768ba,[b7044ca6/48'/0'/0'/2']030baf0497ab406ff50cb48b4013abac8a0338758d2fd54cd934927afa57cc2062))",
        "rzx9dffd",
        "BIP 129",
    ),
    // bitcoin/bips bip-0393.mediawiki (Draft), "Test Vectors": "The same
    // descriptor without annotations remains valid".
    (
        "wpkh([deadbeef/84h/0h/0h]xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/0/*)",
        "kf3v6fpx",
        "BIP 393",
    ),
    // bitcoin/bips bip-0393.mediawiki, "Descriptor with bh and gl" (the
    // annotations are part of the checksummed string).
    (
        "wpkh([deadbeef/84h/0h/0h]xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/0/*)?bh=800000&gl=30",
        "v35n46d2",
        "BIP 393",
    ),
    // bitcoin/bips bip-0393.mediawiki, "Descriptor with bh only".
    (
        "wpkh(0260b2003c386519fc9eadf2b5cf124dd8eea4c4e68d5e154050a9346ea98ce600)?bh=150000",
        "8kehtsrj",
        "BIP 393",
    ),
    // bitcoin/bips bip-0393.mediawiki, "Taproot descriptor with annotations".
    (
        "tr(xpub6BgBgsespWvERF3LHQu6CnqdvfEvtMcQjYrcRzx53QJjSxarj2afYWcLteoGVky7D3UKDP9QyrLprQ3VCECoY49yfdDEHGCtMMj92pReUsQ/0/*)?bh=709632&gl=20",
        "6la5jcn3",
        "BIP 393",
    ),
];

/// BIP 380's invalid checksum examples (bitcoin/bips bip-0380.mediawiki,
/// "Test Vectors", same commit): none may verify.
const BIP380_INVALID: &[(&str, &str)] = &[
    ("raw(deadbeef)", "no checksum"),
    ("raw(deadbeef)#", "missing checksum"),
    ("raw(deadbeef)#89f8spxmx", "too long checksum (9 chars)"),
    ("raw(deadbeef)#89f8spx", "too short checksum (7 chars)"),
    ("raw(deedbeef)#89f8spxm", "error in payload"),
    ("raw(deedbeef)##9f8spxm", "error in checksum"),
    ("raw(Ü)#00000000", "invalid characters in payload"),
];

/// BIP 380's input character set, re-typed here (not taken from the crate)
/// for generating substitutions.
const INPUT_CHARSET: &str =
    "0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ";
const CHECKSUM_CHARSET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn with_checksum(descriptor: &str, checksum: &str) -> String {
    format!("{descriptor}#{checksum}")
}

/// `s` with its `index`-th character replaced by `c`.
fn replace_char(s: &str, index: usize, c: char) -> String {
    s.chars()
        .enumerate()
        .map(|(i, x)| if i == index { c } else { x })
        .collect()
}

#[test]
fn published_checksums_are_reproduced() {
    for (descriptor, checksum, source) in VECTORS {
        assert_eq!(
            descriptor_checksum(descriptor).as_deref(),
            Some(*checksum),
            "{source}: {descriptor}"
        );
        assert!(
            verify_descriptor_checksum(&with_checksum(descriptor, checksum)),
            "{source}: {descriptor}#{checksum}"
        );
    }
}

#[test]
fn vector_file_matches_the_constants() {
    let file: serde_json::Value = serde_json::from_str(include_str!(
        "../../test-vectors/vectors/bip380/descriptor-checksums.json"
    ))
    .unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), VECTORS.len());
    for (v, (descriptor, checksum, _)) in vectors.iter().zip(VECTORS) {
        assert_eq!(v["descriptor"].as_str().unwrap(), *descriptor);
        assert_eq!(v["checksum"].as_str().unwrap(), *checksum);
    }
    let invalid = file["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), BIP380_INVALID.len());
    for (v, (string, _)) in invalid.iter().zip(BIP380_INVALID) {
        assert_eq!(v["string"].as_str().unwrap(), *string);
    }
}

#[test]
fn bip380_invalid_examples_fail_verification() {
    for (string, what) in BIP380_INVALID {
        assert!(!verify_descriptor_checksum(string), "{what}: {string}");
    }
}

#[test]
fn one_character_change_in_descriptor_changes_checksum() {
    // BIP 380 guarantees any 1- to 3-symbol error is detected in descriptors
    // of up to 49154 characters, and one substituted character is at most
    // 2 symbol errors: every single substitution must change the checksum.
    let (short, short_checksum, _) = VECTORS[0];
    for i in 0..short.chars().count() {
        for c in INPUT_CHARSET.chars() {
            let changed = replace_char(short, i, c);
            if changed == short {
                continue;
            }
            let checksum = descriptor_checksum(&changed).unwrap();
            assert_ne!(checksum, short_checksum, "{changed}");
            assert!(!verify_descriptor_checksum(&with_checksum(
                &changed,
                short_checksum
            )));
        }
    }
    // Longer vectors: every position, with a substitute in the same group,
    // one in another group and a case change where there is one.
    for (descriptor, checksum, _) in &VECTORS[1..] {
        for (i, original) in descriptor.chars().enumerate() {
            let position = INPUT_CHARSET.chars().position(|x| x == original).unwrap();
            let same_group = position / 32 * 32 + (position + 1) % 32;
            let other_group = (position + 32) % 96;
            let mut substitutes: Vec<char> = [same_group, other_group]
                .iter()
                .map(|&p| INPUT_CHARSET.chars().nth(p).unwrap())
                .collect();
            if original.is_ascii_alphabetic() {
                substitutes.push(if original.is_ascii_lowercase() {
                    original.to_ascii_uppercase()
                } else {
                    original.to_ascii_lowercase()
                });
            }
            for c in substitutes {
                let changed = replace_char(descriptor, i, c);
                assert_ne!(changed, *descriptor);
                assert_ne!(
                    descriptor_checksum(&changed).unwrap(),
                    *checksum,
                    "{changed}"
                );
            }
        }
    }
}

#[test]
fn one_wrong_checksum_character_fails_verification() {
    for (descriptor, checksum, _) in VECTORS {
        for i in 0..checksum.len() {
            for c in CHECKSUM_CHARSET.chars() {
                let wrong = replace_char(checksum, i, c);
                let ok = verify_descriptor_checksum(&with_checksum(descriptor, &wrong));
                assert_eq!(ok, wrong == *checksum, "{descriptor}#{wrong}");
            }
            // Checksum characters are lowercase only: an uppercase letter is
            // outside the checksum charset even if its lowercase is right.
            let upper = checksum.chars().nth(i).unwrap().to_ascii_uppercase();
            if upper.is_ascii_uppercase() {
                let wrong = replace_char(checksum, i, upper);
                assert!(!verify_descriptor_checksum(&with_checksum(
                    descriptor, &wrong
                )));
            }
        }
    }
}

#[test]
fn character_outside_charset_gives_none() {
    for bad in [
        "raw(Ü)",
        "raw(dead\tbeef)",
        "raw(dead\nbeef)",
        "tr(é)",
        "raw(deadbeef)\u{0}",
    ] {
        assert_eq!(descriptor_checksum(bad), None, "{bad:?}");
        assert!(!verify_descriptor_checksum(&with_checksum(bad, "89f8spxm")));
    }
    // A checksum character outside the checksum charset ('b', 'i', 'o', '1'
    // are not in it) fails rather than panics, as does a multi-byte one.
    assert!(!verify_descriptor_checksum("raw(deadbeef)#89f8spxb"));
    assert!(!verify_descriptor_checksum("raw(deadbeef)#89f8spx1"));
    assert!(!verify_descriptor_checksum("raw(deadbeef)#89f8spxÜ"));
    assert!(!verify_descriptor_checksum("ÜÜÜÜÜ"));
    assert!(!verify_descriptor_checksum(""));
    // Every input character has a checksum.
    for c in INPUT_CHARSET.chars() {
        assert!(descriptor_checksum(&format!("raw({c})")).is_some(), "{c:?}");
    }
    assert_eq!(descriptor_checksum("").map(|c| c.len()), Some(8));
}

#[test]
fn group_descriptor_is_tr_of_internal_key_with_valid_checksum() {
    let mut seen = Vec::new();
    for (t, n, seed) in [(2, 3, 1), (2, 3, 2), (3, 5, 9)] {
        let dealt = deal::<Secp256k1Tr>(t, n, seed);
        let keys = dealt.group.taproot();
        let descriptor = keys.descriptor();

        let (script, checksum) = descriptor.rsplit_once('#').unwrap();
        let key_hex = script
            .strip_prefix("tr(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap();
        assert_eq!(key_hex.len(), 64, "{descriptor}");
        assert!(key_hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_eq!(key_hex, hex::encode(keys.internal_key().serialize()));
        assert_eq!(key_hex, keys.internal_key().to_string());

        assert_eq!(checksum.len(), 8);
        assert!(checksum.chars().all(|c| CHECKSUM_CHARSET.contains(c)));
        assert_eq!(descriptor_checksum(script).as_deref(), Some(checksum));
        assert!(verify_descriptor_checksum(&descriptor));

        // The internal key, not the tweaked output key, is in the descriptor.
        assert_ne!(key_hex, hex::encode(keys.output_key().serialize()));
        assert!(!seen.contains(&descriptor));
        seen.push(descriptor);
    }
    // Same group, same descriptor.
    let again = deal::<Secp256k1Tr>(2, 3, 1).group.taproot().descriptor();
    assert_eq!(again, seen[0]);
}
