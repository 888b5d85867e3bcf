//! Kura's own format vectors: the committed bytes must equal what this build
//! generates from the same seeds, and every file must read back and re-encode
//! to the same bytes.

use test_vectors::known_answer;
use wallet_core::ceremony::dealer::Dealing;
use wallet_core::ceremony::dkg::{Round1Document, Round2Document};
use wallet_core::ceremony::maintain::{
    RefreshEndorsement, RefreshProposal, RefreshReceipt, RepairMessage,
};
use wallet_core::ceremony::reshare::{ReshareDeal, ReshareProposal};
use wallet_core::ceremony::{IdentityCard, Roster};
use wallet_core::format;
use wallet_core::messages::{CommitmentsMessage, PackageMessage, ShareMessage, SignatureMessage};
use wallet_core::{KeyShare, KuraSuite, PublicGroup, Secp256k1, Secp256k1Tr};

const HINT: &str = "a Kura format changed; if that is deliberate, run `cargo run -p test-vectors --bin regenerate` and review the diff";

#[test]
fn committed_known_answers_match_this_build() {
    let generated = known_answer::generate().unwrap();
    // 19 files per suite, the HD file (Taproot), the state anchors, and per
    // policy its TOML and canonical JSON plus one digests file (three
    // policies).
    assert_eq!(generated.len(), 2 * 19 + 1 + 1 + (2 * 3 + 1));
    for f in &generated {
        let path = known_answer::dir().join(&f.path);
        let committed =
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; {HINT}", path.display()));
        assert!(
            committed == f.bytes,
            "{} differs from this build's output; {HINT}",
            f.path
        );
    }
}

fn read(suite: &str, name: &str) -> Vec<u8> {
    std::fs::read(known_answer::dir().join(suite).join(name)).unwrap()
}

fn round_trip<C: KuraSuite>() {
    let s = C::SUITE.as_str();
    let group_doc = read(s, "group.json");
    let group = PublicGroup::<C>::from_document(&group_doc).unwrap();
    assert_eq!(group.to_document().unwrap(), group_doc);
    let share_doc = read(s, "key-share.json");
    let share = KeyShare::<C>::from_secret_document(&share_doc).unwrap();
    share.check_member_of(&group).unwrap();
    assert_eq!(
        share.to_secret_document().unwrap().expose(),
        share_doc.as_slice()
    );

    macro_rules! same {
        ($t:ty, $name:literal) => {{
            let bytes = read(s, $name);
            let doc = format::decode::<$t>(&bytes).unwrap();
            assert_eq!(
                format::encode(&doc.group, &doc.body).unwrap(),
                bytes,
                "{}",
                $name
            );
            doc.body
        }};
    }
    same!(CommitmentsMessage<C>, "signing-commitments.json");
    let package = same!(PackageMessage<C>, "signing-package.json");
    same!(ShareMessage<C>, "signature-share.json");
    let sig = same!(SignatureMessage<C>, "signature.json");
    same!(Round1Document<C>, "dkg-round1.json");
    same!(Round2Document<C>, "dkg-round2.json");
    same!(Roster<C>, "roster.json");
    same!(Dealing<C>, "dealing.json");
    same!(RefreshProposal<C>, "refresh-proposal.json");
    same!(RefreshEndorsement<C>, "refresh-endorsement.json");
    same!(RefreshReceipt<C>, "refresh-receipt.json");
    same!(RepairMessage<C>, "repair-delta.json");
    same!(ReshareProposal<C>, "reshare-proposal.json");
    same!(ReshareDeal<C>, "reshare-deal.json");
    let card_bytes = read(s, "identity-card.json");
    let card = IdentityCard::from_json(&card_bytes).unwrap();
    assert_eq!(card.to_json().unwrap(), card_bytes);
    let fps = String::from_utf8(read(s, "fingerprints.txt")).unwrap();
    assert!(fps.contains(&card.fingerprint().to_string()));
    // The recorded signature verifies under the recorded group.
    assert_eq!(sig.message, package.message);
    wallet_core::signing::verify(&group, &sig.message, &sig.signature).unwrap();
}

#[test]
fn known_answers_read_back_byte_for_byte() {
    round_trip::<Secp256k1Tr>();
    round_trip::<Secp256k1>();
}

#[test]
fn state_anchors_read_back_and_junk_is_refused() {
    use wallet_core::keystore::StateAnchor;
    let text =
        std::fs::read_to_string(known_answer::dir().join("keystore/state-anchor.txt")).unwrap();
    let mut seen = 0;
    for line in text.lines() {
        let (name, hex_bytes) = line.split_once(' ').unwrap();
        let bytes = hex::decode(hex_bytes).unwrap();
        let anchor = StateAnchor::from_bytes(&bytes).unwrap();
        assert_eq!(anchor.to_bytes().to_vec(), bytes, "{name}");
        match name {
            "new" => assert_eq!(anchor, StateAnchor::NEW),
            "pinned" => {
                assert_eq!(anchor.audit.seq, 7);
                assert_eq!(anchor.policy, Some([0x5c; 32]));
            }
            other => panic!("unknown vector {other}"),
        }
        let mut bad = bytes.clone();
        bad[3] = 1;
        assert!(StateAnchor::from_bytes(&bad).is_err(), "{name}: tag");
        seen += 1;
    }
    assert_eq!(seen, 2);
}

#[test]
fn the_hd_vectors_are_what_an_outside_descriptor_implementation_derives() {
    use std::str::FromStr;
    use wallet_core::bitcoin::{Address, Network};
    let text = std::fs::read_to_string(known_answer::dir().join("secp256k1-tr/hd.txt")).unwrap();
    let mut checked = 0;
    let mut descriptors: Vec<(Network, String)> = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["descriptor", net, d] if d.contains("<0;1>") => {
                descriptors.push((Network::from_str(net).unwrap(), (*d).to_owned()));
            }
            ["address", net, path, address, "tweak", _] => {
                let network = Network::from_str(net).unwrap();
                let (_, multipath) = descriptors.iter().find(|(n, _)| *n == network).unwrap();
                let chains =
                    miniscript::Descriptor::<miniscript::DescriptorPublicKey>::from_str(multipath)
                        .unwrap()
                        .into_single_descriptors()
                        .unwrap();
                let steps: Vec<u32> = path
                    .trim_start_matches("m/")
                    .split('/')
                    .map(|s| s.parse().unwrap())
                    .collect();
                let theirs = chains[steps[0] as usize]
                    .at_derivation_index(steps[1])
                    .unwrap()
                    .address(network)
                    .unwrap();
                let ours = Address::from_str(address)
                    .unwrap()
                    .require_network(network)
                    .unwrap();
                assert_eq!(ours, theirs, "{line}");
                checked += 1;
            }
            _ => {}
        }
    }
    assert_eq!(checked, 16);
}
