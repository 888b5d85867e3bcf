//! Deposit addresses and quorum change, against their anchors, in one run.
//!
//! - `derive`: one child of the group xpub (`m/0/i`) with its BIP86 output
//!   key and tweak, against rust-bitcoin's `Xpub::derive_pub` alone (the
//!   BIP32 part) — what a signer adds per input.
//! - `sign-input`: one 2-of-3 signature under the group key, and under a
//!   child (deriving the child group and both shares, then signing) — what
//!   signing under a child costs.
//! - `reshare`: the arithmetic of a 2-of-3 → 3-of-5 reshare (two deals,
//!   five combinations) against frost's 3-of-5 DKG (parts 1–3 for all five),
//!   the nearest outside anchor (the Zcash Foundation's frost has no
//!   threshold change).

use std::collections::{BTreeMap, BTreeSet};

use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::StdRng;
use rand::SeedableRng;
use wallet_core::bitcoin::bip32::ChildNumber;
use wallet_core::bitcoin::secp256k1::Secp256k1;
use wallet_core::hd::ChildPath;
use wallet_core::keygen::{self, reshare, Identifiers};
use wallet_core::{signing, Label, Secp256k1Tr};

const MSG: &[u8; 32] = b"benchmark sighash, thirty-two b.";

fn labels(n: u16) -> Vec<Label> {
    (1..=n)
        .map(|i| Label::new(format!("s{i}")).unwrap())
        .collect()
}

fn sign(
    group: &wallet_core::PublicGroup<Secp256k1Tr>,
    shares: &[&wallet_core::KeyShare<Secp256k1Tr>],
    rng: &mut StdRng,
) {
    let mut states = Vec::new();
    let mut commitments = BTreeMap::new();
    for s in shares {
        let (state, c) = signing::commit(*s, rng);
        commitments.insert(*s.identifier(), c);
        states.push(state);
    }
    let package = signing::build_package(group, commitments, MSG).unwrap();
    let mut out = BTreeMap::new();
    for (s, st) in shares.iter().zip(states) {
        out.insert(
            *s.identifier(),
            signing::sign(s, group, &package, MSG, st).unwrap(),
        );
    }
    signing::aggregate(group, &package, &out).unwrap();
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let dealt =
        keygen::dealer::<Secp256k1Tr, _>(2, &labels(3), Identifiers::Default, &mut rng).unwrap();
    let xpub = dealt.group.xpub();

    let mut g = c.benchmark_group("derive");
    g.sample_size(50);
    let raw = xpub.xpub(wallet_core::bitcoin::Network::Bitcoin);
    let secp = Secp256k1::verification_only();
    let mut i = 0u32;
    g.bench_function("rust-bitcoin-derive-pub", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            raw.derive_pub(
                &secp,
                &[
                    ChildNumber::Normal { index: 0 },
                    ChildNumber::Normal { index: i },
                ],
            )
            .unwrap()
        })
    });
    g.bench_function("kura-child-keys", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            xpub.derive(&ChildPath::receive(i).unwrap()).unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("sign-input");
    g.sample_size(30);
    let (a, s3) = (&dealt.shares[0], &dealt.shares[2]);
    g.bench_function("group-key", |b| {
        b.iter(|| sign(&dealt.group, &[a, s3], &mut rng))
    });
    let child = xpub.derive(&ChildPath::receive(5).unwrap()).unwrap();
    g.bench_function("child-key-derived-per-input", |b| {
        b.iter(|| {
            let t = child.tweak();
            let group = dealt.group.derive_child(t).unwrap();
            let a = a.derive_child(t).unwrap();
            let s3 = s3.derive_child(t).unwrap();
            sign(&group, &[&a, &s3], &mut rng)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("reshare");
    g.sample_size(20);
    let dealers: BTreeSet<_> = [*dealt.shares[0].identifier(), *dealt.shares[1].identifier()]
        .into_iter()
        .collect();
    let new_labels: BTreeMap<_, _> = labels(5)
        .into_iter()
        .enumerate()
        .map(|(k, l)| {
            let id =
                wallet_core::frost_core::Identifier::<Secp256k1Tr>::try_from(k as u16 + 1).unwrap();
            (id, l)
        })
        .collect();
    let new_ids: BTreeSet<_> = new_labels.keys().copied().collect();
    g.bench_function("kura-2of3-to-3of5", |b| {
        b.iter(|| {
            let deals: Vec<_> = dealt.shares[..2]
                .iter()
                .map(|s| reshare::deal(s, &dealt.group, &dealers, &new_ids, 3, &mut rng).unwrap())
                .collect();
            let commitments: BTreeMap<_, _> = dealt.shares[..2]
                .iter()
                .zip(&deals)
                .map(|(s, d)| (*s.identifier(), d.commitment.clone()))
                .collect();
            let group = reshare::reshared_group(
                &dealt.group,
                &dealers,
                &commitments,
                new_labels.clone(),
                3,
            )
            .unwrap();
            for id in &new_ids {
                let received = dealt.shares[..2]
                    .iter()
                    .zip(&deals)
                    .map(|(s, d)| (*s.identifier(), d.shares[id].clone()))
                    .collect();
                reshare::combine(&dealt.group, &group, id, &commitments, &received).unwrap();
            }
        })
    });
    g.bench_function("raw-frost-dkg-3of5", |b| {
        use frost_secp256k1_tr as frost;
        b.iter(|| {
            let ids: Vec<frost::Identifier> = (1..=5u16).map(|i| i.try_into().unwrap()).collect();
            let mut secrets1 = BTreeMap::new();
            let mut packages1 = BTreeMap::new();
            for id in &ids {
                let (s, p) = frost::keys::dkg::part1(*id, 5, 3, &mut rng).unwrap();
                secrets1.insert(*id, s);
                packages1.insert(*id, p);
            }
            let mut secrets2 = BTreeMap::new();
            let mut out2: BTreeMap<frost::Identifier, BTreeMap<frost::Identifier, _>> =
                BTreeMap::new();
            for id in &ids {
                let others: BTreeMap<_, _> = packages1
                    .iter()
                    .filter(|(k, _)| *k != id)
                    .map(|(k, v)| (*k, v.clone()))
                    .collect();
                let (s, p) = frost::keys::dkg::part2(secrets1[id].clone(), &others).unwrap();
                secrets2.insert(*id, s);
                for (to, pkg) in p {
                    out2.entry(to).or_default().insert(*id, pkg);
                }
            }
            for id in &ids {
                let others: BTreeMap<_, _> = packages1
                    .iter()
                    .filter(|(k, _)| *k != id)
                    .map(|(k, v)| (*k, v.clone()))
                    .collect();
                frost::keys::dkg::part3(&secrets2[id], &others, &out2[id]).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
