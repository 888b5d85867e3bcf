//! A fresh address for every deposit: the group xpub (BIP328 construction),
//! its BIP389 descriptor read by an outside implementation (the
//! `miniscript` crate), PSBTs that it fills spending derived coins signed by
//! the group and checked by Bitcoin Core's consensus code, and PSBTs that
//! lie about a derivation refused by every signer.

use std::str::FromStr;

use bitcoin::bip32::{ChildNumber, DerivationPath, Fingerprint};
use bitcoin::hashes::{sha256, Hash};
use bitcoin::psbt::Psbt;
use bitcoin::{Network, TxOut};
use kura_testkit::*;
use miniscript::descriptor::{DefiniteDescriptorKey, Descriptor, DescriptorPublicKey};
use miniscript::psbt::PsbtExt;
use wallet_core::hd::{Chain, ChildPath, GroupXpub, GROUP_CHAIN_CODE, MAX_LOOKAHEAD};
use wallet_core::withdrawal::review::{review, ReviewError};
use wallet_core::withdrawal::signer::RefusalKind;
use wallet_core::IdentityPublicKey;

fn policy_toml(requester: &IdentityPublicKey, allowed: &bitcoin::Address) -> String {
    format!(
        r#"version = 1
network = "regtest"
[[requester]]
label = "treasury-ops"
key = "{requester}"
[[destination]]
label = "exchange deposit"
address = "{allowed}"
[limits]
per_transaction_sat = 900_000
rolling_window_hours = 24
rolling_window_sat = 5_000_000
max_fee_sat = 20_000
max_fee_rate_sat_per_vb = 100
"#
    )
}

fn world(seed: u64, t: u16, n: u16) -> World {
    World::builder(seed, policy_toml).threshold(t, n).build()
}

/// The outside implementation's receive and change descriptors, from
/// Kura's multipath descriptor.
fn outside(xpub: &GroupXpub, network: Network) -> Vec<Descriptor<DescriptorPublicKey>> {
    let text = xpub.descriptor(network);
    let parsed = Descriptor::<DescriptorPublicKey>::from_str(&text).unwrap();
    let single = parsed.into_single_descriptors().unwrap();
    assert_eq!(single.len(), 2, "{text}");
    single
}

fn at(d: &Descriptor<DescriptorPublicKey>, index: u32) -> Descriptor<DefiniteDescriptorKey> {
    d.at_derivation_index(index).unwrap()
}

#[test]
fn the_group_xpub_is_bip328s_construction() {
    let w = world(1, 2, 3);
    let xpub = w.group.xpub();
    assert_eq!(
        GROUP_CHAIN_CODE,
        sha256::Hash::hash(b"MuSig2MuSig2MuSig2").to_byte_array()
    );
    let x = xpub.xpub(Network::Bitcoin);
    assert_eq!(x.depth, 0);
    assert_eq!(x.parent_fingerprint, Fingerprint::default());
    assert_eq!(x.child_number, ChildNumber::Normal { index: 0 });
    assert_eq!(x.chain_code.to_bytes(), GROUP_CHAIN_CODE);
    assert_eq!(
        x.public_key.serialize().to_vec(),
        w.group.verifying_key().serialize().unwrap()
    );
    assert!(x.to_string().starts_with("xpub"));
    assert!(xpub.xpub(Network::Regtest).to_string().starts_with("tpub"));
    // The root path is the group key and its address, unchanged.
    let root = xpub.derive(&ChildPath::root()).unwrap();
    assert_eq!(root.taproot(), &w.group.taproot());
    assert!(root.tweak().is_zero());
}

#[test]
fn descriptors_and_addresses_equal_an_outside_implementation() {
    for (seed, t, n) in [(2, 2, 3), (3, 3, 5), (4, 2, 2)] {
        let w = world(seed, t, n);
        let xpub = w.group.xpub();
        for network in [Network::Regtest, Network::Bitcoin] {
            let chains = outside(&xpub, network);
            for (chain, d) in [Chain::Receive, Chain::Change].into_iter().zip(&chains) {
                // The single-chain form Kura prints is the same descriptor.
                let single = Descriptor::<DescriptorPublicKey>::from_str(
                    &xpub.chain_descriptor(chain, network),
                )
                .unwrap();
                assert_eq!(&single, d);
                for index in [0, 1, 2, 9, 1000, (1 << 31) - 1] {
                    let ours = xpub.derive(&ChildPath::new(chain, index).unwrap()).unwrap();
                    let theirs = at(d, index);
                    assert_eq!(
                        ours.taproot().address(network),
                        theirs.address(network).unwrap(),
                        "{chain:?} {index} on {network}"
                    );
                }
            }
            // Receive and change differ (a two-keychain wallet needs that).
            assert_ne!(
                at(&chains[0], 0).script_pubkey(),
                at(&chains[1], 0).script_pubkey()
            );
        }
    }
}

#[test]
fn a_tampered_descriptor_checksum_is_refused_by_the_outside_parser() {
    let w = world(5, 2, 3);
    let text = w.group.xpub().descriptor(Network::Regtest);
    let (body, sum) = text.rsplit_once('#').unwrap();
    let mut bad = sum.to_owned().into_bytes();
    bad[0] = if bad[0] == b'q' { b'p' } else { b'q' };
    let tampered = format!("{body}#{}", String::from_utf8(bad).unwrap());
    assert!(Descriptor::<DescriptorPublicKey>::from_str(&tampered).is_err());
}

/// Coins at receive addresses `indices` (and one at the group key when
/// `root`), paid out `amount` to the allowlisted address with the change to
/// `change` (index on the change chain), every input and the change output
/// filled by the outside implementation.
fn derived_psbt(
    w: &World,
    indices: &[u32],
    root: bool,
    amount: u64,
    change: u32,
) -> (Psbt, Vec<TxOut>) {
    let xpub = w.group.xpub();
    let chains = outside(&xpub, Network::Regtest);
    let mut coins = Vec::new();
    for (k, i) in indices.iter().enumerate() {
        coins.push(coin(
            &at(&chains[0], *i).script_pubkey(),
            200_000,
            0x30 + k as u8,
        ));
    }
    if root {
        coins.push(coin(&w.group.taproot().script_pubkey(), 150_000, 0x2f));
    }
    let total: u64 = coins.iter().map(|(_, o)| o.value.to_sat()).sum();
    let change_script = at(&chains[1], change).script_pubkey();
    let outputs = withdrawal_outputs(
        total,
        &w.allowed.script_pubkey(),
        amount,
        &change_script,
        3_000,
    );
    let mut p = psbt(&coins, outputs);
    for (k, i) in indices.iter().enumerate() {
        p.update_input_with_descriptor(k, &at(&chains[0], *i))
            .unwrap();
    }
    p.update_output_with_descriptor(1, &at(&chains[1], change))
        .unwrap();
    let spent = coins.into_iter().map(|(_, o)| o).collect();
    (p, spent)
}

#[test]
fn coins_at_several_indices_are_signed_under_their_children_and_pass_consensus() {
    for (seed, t, n, who) in [(11, 2, 3, vec![0, 2]), (12, 3, 5, vec![4, 1, 3])] {
        let mut w = world(seed, t, n);
        let (p, spent) = derived_psbt(&w, &[0, 3, 17], true, 250_000, 4);
        // What a signer shows: each input's path, the change's path.
        let summary = review(&p, &w.group.xpub(), Network::Regtest).unwrap();
        let paths: Vec<String> = summary
            .inputs
            .iter()
            .map(|i| i.key.path().to_string())
            .collect();
        assert_eq!(paths, ["m/0/0", "m/0/3", "m/0/17", "m"]);
        assert!(summary.outputs[1].is_change);
        assert_eq!(summary.outputs[1].path, Some(ChildPath::change(4).unwrap()));
        assert!(!summary.outputs[0].is_change);
        let shown = summary.to_string();
        assert!(shown.contains("from key m/0/17"), "{shown}");
        assert!(
            shown.contains("change back to this wallet, m/1/4"),
            "{shown}"
        );

        let req = w.request(&format!("hd-{seed}"), &p);
        let (_, tx) = w.run(&req, &who).unwrap();
        consensus_verify(&tx, &spent).unwrap();
    }
}

/// A PSBT the group's signers are asked to sign, with `edit` applied; the
/// first signer's refusal.
fn refused(w: &mut World, p: &Psbt, id: &str) -> wallet_core::Refusal {
    let req = w.request(id, p);
    w.signer(0).approve(&req, NOW).unwrap_err()
}

fn origin(p: &Psbt, input: usize) -> (bitcoin::XOnlyPublicKey, Fingerprint, DerivationPath) {
    let (key, (_, (fp, path))) = p.inputs[input].tap_key_origins.iter().next().unwrap();
    (*key, *fp, path.clone())
}

#[test]
fn a_psbt_lying_about_a_derivation_is_refused() {
    let mut w = world(21, 2, 3);
    let xpub = w.group.xpub();
    let (honest, _) = derived_psbt(&w, &[5, 6], false, 250_000, 2);
    let (key5, fp, _) = origin(&honest, 0);

    // The path of another index for the coin at index 5, with that index's
    // key: the child is not the spent script.
    let mut other = honest.clone();
    let six = origin(&honest, 1);
    other.inputs[0].tap_key_origins.clear();
    other.inputs[0].tap_internal_key = Some(six.0);
    other.inputs[0]
        .tap_key_origins
        .insert(six.0, (vec![], (six.1, six.2)));
    let e = refused(&mut w, &other, "lie-1");
    assert_eq!(e.kind(), RefusalKind::PsbtReview, "{e}");
    assert!(e.to_string().contains("derives script"), "{e}");

    // The path of another index under the right key: the key is not that
    // path's.
    let mut mismatch = honest.clone();
    mismatch.inputs[0].tap_key_origins.insert(
        key5,
        (vec![], (fp, DerivationPath::from_str("m/0/6").unwrap())),
    );
    let e = refused(&mut w, &mismatch, "lie-2");
    assert!(e.to_string().contains("derives"), "{e}");

    // A hardened step.
    let mut hardened = honest.clone();
    hardened.inputs[0].tap_key_origins.insert(
        key5,
        (vec![], (fp, DerivationPath::from_str("m/0/5'").unwrap())),
    );
    let e = refused(&mut w, &hardened, "lie-3");
    assert!(e.to_string().contains("hardened"), "{e}");

    // Too deep.
    let mut deep = honest.clone();
    deep.inputs[0].tap_key_origins.insert(
        key5,
        (
            vec![],
            (fp, DerivationPath::from_str("m/0/0/0/0/0/0/0/0/5").unwrap()),
        ),
    );
    let e = refused(&mut w, &deep, "lie-4");
    assert!(e.to_string().contains("steps"), "{e}");

    // No derivation at all: the coin is not the group key's.
    let mut silent = honest.clone();
    silent.inputs[0].tap_key_origins.clear();
    silent.inputs[0].tap_internal_key = None;
    assert!(matches!(
        review(&silent, &xpub, Network::Regtest),
        Err(ReviewError::ForeignInput { input: 0, .. })
    ));

    // Two paths under the group's fingerprint for one input.
    let mut two = honest.clone();
    let extra = xpub.internal_key(&ChildPath::receive(9).unwrap()).unwrap();
    two.inputs[0].tap_key_origins.insert(
        extra,
        (vec![], (fp, DerivationPath::from_str("m/0/9").unwrap())),
    );
    let e = refused(&mut w, &two, "lie-5");
    assert!(e.to_string().contains("more than one path"), "{e}");

    // A change output whose script is not its declared path's: an attacker's
    // address dressed as change.
    let mut change = honest.clone();
    change.unsigned_tx.output[1].script_pubkey = outside_address(99).script_pubkey();
    match review(&change, &xpub, Network::Regtest) {
        Err(ReviewError::OutputDerivation { output: 1, reason }) => {
            assert!(reason.contains("derives script"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let e = refused(&mut w, &change, "lie-6");
    assert_eq!(e.kind(), RefusalKind::PsbtReview, "{e}");

    // The honest one is signed.
    let req = w.request("honest", &honest);
    w.signer(0).approve(&req, NOW).unwrap();
}

#[test]
fn only_the_change_chain_is_change() {
    // The same amount back to a *receive* address of the group, declared:
    // shown as the group's, but counted as leaving (policy applies), so a
    // transfer the limits forbid is refused.
    let mut w = world(31, 2, 3);
    let xpub = w.group.xpub();
    let chains = outside(&xpub, Network::Regtest);
    let (mut p, _) = derived_psbt(&w, &[1], false, 100_000, 0);
    let receive = at(&chains[0], 8);
    p.unsigned_tx.output[1].script_pubkey = receive.script_pubkey();
    p.outputs[1] = Default::default();
    p.update_output_with_descriptor(1, &receive).unwrap();
    let summary = review(&p, &xpub, Network::Regtest).unwrap();
    assert!(!summary.outputs[1].is_change);
    assert_eq!(
        summary.outputs[1].path,
        Some(ChildPath::receive(8).unwrap())
    );
    assert!(summary.to_string().contains("counted as leaving"));
    let e = refused(&mut w, &p, "to-receive");
    assert!(matches!(e.kind(), RefusalKind::Policy(_)), "{e}");

    // An undeclared change address is external too.
    let (mut q, _) = derived_psbt(&w, &[1], false, 100_000, 0);
    q.outputs[1] = Default::default();
    let s = review(&q, &xpub, Network::Regtest).unwrap();
    assert!(!s.outputs[1].is_change);

    // A change-chain index past any wallet's lookahead is an address
    // nobody would find again: counted as leaving (below it, change).
    for (index, change) in [
        (MAX_LOOKAHEAD - 1, true),
        (MAX_LOOKAHEAD, false),
        ((1 << 31) - 1, false),
    ] {
        let far = at(&chains[1], index);
        let (mut r, _) = derived_psbt(&w, &[1], false, 100_000, 0);
        r.unsigned_tx.output[1].script_pubkey = far.script_pubkey();
        r.outputs[1] = Default::default();
        r.update_output_with_descriptor(1, &far).unwrap();
        let s = review(&r, &xpub, Network::Regtest).unwrap();
        assert_eq!(s.outputs[1].is_change, change, "change index {index}");
        assert_eq!(s.outputs[1].path, Some(ChildPath::change(index).unwrap()));
        if !change {
            let e = refused(&mut w, &r, &format!("far-change-{index}"));
            assert!(matches!(e.kind(), RefusalKind::Policy(_)), "{e}");
        }
    }
}

#[test]
fn a_requester_fills_the_derivations_a_wallet_left_out() {
    // A wallet that writes no key origins: the signers refuse the derived
    // coins as foreign until the requester fills them in.
    let mut w = world(41, 2, 3);
    let xpub = w.group.xpub();
    let (mut p, spent) = derived_psbt(&w, &[2, 40], true, 250_000, 7);
    for input in &mut p.inputs {
        input.tap_key_origins.clear();
        input.tap_internal_key = None;
    }
    p.outputs[1] = Default::default();
    assert!(matches!(
        review(&p, &xpub, Network::Regtest),
        Err(ReviewError::ForeignInput { input: 0, .. })
    ));
    // Not far enough: index 40 is past a look-ahead of 10.
    let mut short = p.clone();
    let f = wallet_core::hd::fill_psbt(&mut short, &xpub, 10).unwrap();
    assert_eq!(f.inputs, vec![(0, ChildPath::receive(2).unwrap())]);
    assert!(review(&short, &xpub, Network::Regtest).is_err());

    let f = wallet_core::hd::fill_psbt(&mut p, &xpub, 100).unwrap();
    assert_eq!(
        f.inputs,
        vec![
            (0, ChildPath::receive(2).unwrap()),
            (1, ChildPath::receive(40).unwrap())
        ]
    );
    assert_eq!(f.outputs, vec![(1, ChildPath::change(7).unwrap())]);
    let summary = review(&p, &xpub, Network::Regtest).unwrap();
    assert!(summary.outputs[1].is_change);
    let req = w.request("filled", &p);
    let (_, tx) = w.run(&req, &[1, 2]).unwrap();
    consensus_verify(&tx, &spent).unwrap();
}
