//! End-to-end signing: wallet-core against the raw frost crates, in one run.
//!
//! For each (t, n): t signers commit, a package is built, t shares are
//! computed and aggregated into a verified signature.
//! - `raw-frost`: frost-secp256k1(-tr) called directly (`*_with_tweak(None)` for tr);
//! - `kura`: wallet-core's checked rounds with in-memory round-1 states;
//! - `kura+keystore`: the same with nonces persisted in a `MemoryKeystore`
//!   (stored as documents, taken once) and the package check before the take.
//!
//! `libsecp256k1` single-key BIP340 signing is the physical reference.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::StdRng;
use rand::SeedableRng;
use wallet_core::keygen::{self, Dealt, Identifiers};
use wallet_core::keystore::{self, MemoryKeystore, SessionId};
use wallet_core::{signing, KuraSuite, Label, Secp256k1, Secp256k1Tr};

const SIZES: [(u16, u16); 4] = [(2, 3), (3, 5), (11, 15), (67, 100)];
const MSG: &[u8; 32] = b"benchmark sighash, thirty-two b.";

fn dealt<C: KuraSuite>(t: u16, n: u16) -> Dealt<C> {
    let labels: Vec<_> = (1..=n)
        .map(|i| Label::new(format!("s{i}")).unwrap())
        .collect();
    keygen::dealer(
        t,
        &labels,
        Identifiers::Default,
        &mut StdRng::seed_from_u64(1),
    )
    .unwrap()
}

fn kura_sign<C: KuraSuite>(d: &Dealt<C>, t: usize, rng: &mut StdRng) {
    let signers = &d.shares[..t];
    let mut states = Vec::with_capacity(t);
    let mut commitments = BTreeMap::new();
    for s in signers {
        let (st, c) = signing::commit(s, rng);
        commitments.insert(*s.identifier(), c);
        states.push(st);
    }
    let package = signing::build_package(&d.group, commitments, MSG).unwrap();
    let mut shares = BTreeMap::new();
    for (s, st) in signers.iter().zip(states) {
        shares.insert(
            *s.identifier(),
            signing::sign(s, &d.group, &package, MSG, st).unwrap(),
        );
    }
    signing::aggregate(&d.group, &package, &shares).unwrap();
}

fn kura_keystore_sign<C: KuraSuite>(d: &Dealt<C>, t: usize, stores: &[MemoryKeystore]) {
    let signers = &d.shares[..t];
    let session = SessionId::random();
    let mut commitments = BTreeMap::new();
    for (s, ks) in signers.iter().zip(stores) {
        commitments.insert(*s.identifier(), keystore::commit(ks, s, &session).unwrap());
    }
    let package = signing::build_package(&d.group, commitments.clone(), MSG).unwrap();
    let mut shares = BTreeMap::new();
    for (s, ks) in signers.iter().zip(stores) {
        let own = &commitments[s.identifier()];
        let share = keystore::sign(ks, s, &d.group, &session, &package, MSG, own).unwrap();
        shares.insert(*s.identifier(), share);
    }
    signing::aggregate(&d.group, &package, &shares).unwrap();
}

macro_rules! raw_frost {
    ($name:ident, $krate:ident, $sign:expr, $aggregate:expr) => {
        fn $name(d: &Dealt<<$krate::Identifier as IdSuite>::Suite>, t: usize, rng: &mut StdRng) {
            use $krate as frost;
            let kps: Vec<&frost::keys::KeyPackage> =
                d.shares[..t].iter().map(|s| s.key_package()).collect();
            let mut nonces = BTreeMap::new();
            let mut commitments = BTreeMap::new();
            for kp in &kps {
                let (n, c) = frost::round1::commit(kp.signing_share(), rng);
                nonces.insert(*kp.identifier(), n);
                commitments.insert(*kp.identifier(), c);
            }
            let package = frost::SigningPackage::new(commitments, MSG);
            let mut shares = BTreeMap::new();
            for kp in &kps {
                let share = $sign(&package, &nonces[kp.identifier()], kp).unwrap();
                shares.insert(*kp.identifier(), share);
            }
            $aggregate(&package, &shares, d.group.public_key_package()).unwrap();
        }
    };
}

/// Maps a suite crate's `Identifier` alias back to its ciphersuite type.
trait IdSuite {
    type Suite: KuraSuite;
}
impl IdSuite for frost_secp256k1::Identifier {
    type Suite = Secp256k1;
}
impl IdSuite for frost_secp256k1_tr::Identifier {
    type Suite = Secp256k1Tr;
}

raw_frost!(
    raw_rfc,
    frost_secp256k1,
    frost_secp256k1::round2::sign,
    frost_secp256k1::aggregate
);
raw_frost!(
    raw_tr,
    frost_secp256k1_tr,
    |p, n, k| frost_secp256k1_tr::round2::sign_with_tweak(p, n, k, None),
    |p, s, k| frost_secp256k1_tr::aggregate_with_tweak(p, s, k, None)
);

fn bench_suite<C: KuraSuite>(
    c: &mut Criterion,
    name: &str,
    raw: fn(&Dealt<C>, usize, &mut StdRng),
) {
    let mut g = c.benchmark_group(format!("sign-{name}"));
    for (t, n) in SIZES {
        if t > 11 {
            g.sample_size(10);
        } else {
            g.sample_size(30);
        }
        let d = dealt::<C>(t, n);
        let id = format!("{t}-of-{n}");
        let mut rng = StdRng::seed_from_u64(7);
        g.bench_function(BenchmarkId::new("raw-frost", &id), |b| {
            b.iter(|| raw(&d, t.into(), &mut rng))
        });
        g.bench_function(BenchmarkId::new("kura", &id), |b| {
            b.iter(|| kura_sign(&d, t.into(), &mut rng))
        });
        let stores: Vec<_> = (0..t).map(|_| MemoryKeystore::new()).collect();
        g.bench_function(BenchmarkId::new("kura+keystore", &id), |b| {
            b.iter(|| kura_keystore_sign(&d, t.into(), &stores))
        });
    }
    g.finish();
}

fn bench_all(c: &mut Criterion) {
    bench_suite::<Secp256k1Tr>(c, "secp256k1-tr", raw_tr);
    bench_suite::<Secp256k1>(c, "secp256k1", raw_rfc);

    use bitcoin::secp256k1::{Keypair, Message, Secp256k1 as Ctx, SecretKey};
    let secp = Ctx::new();
    let kp = Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[3u8; 32]).unwrap());
    let msg = Message::from_digest(*MSG);
    c.bench_function("libsecp256k1-bip340-sign", |b| {
        b.iter(|| secp.sign_schnorr_with_aux_rand(&msg, &kp, &[5u8; 32]))
    });
}

criterion_group!(benches, bench_all);
criterion_main!(benches);
