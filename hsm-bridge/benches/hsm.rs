//! Signing with every signer on its own SoftHSM2 token, against the software
//! keystore and raw frost, in one run; plus the costs that decide the design:
//! login, nonce ciphertexts as token objects vs take-once files, and a move
//! of the state anchor.
//!
//! The token directory is on tmpfs (`/dev/shm`) unless
//! `KURA_BENCH_SOFTHSM_DIR` names another directory (e.g. one on disk).
#![allow(clippy::print_stdout, clippy::print_stderr)] // prints by design

use std::collections::BTreeMap;
use std::path::PathBuf;
use wallet_core::frost_core::Identifier;

use age::secrecy::SecretString as AgeSecret;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use hsm_bridge::softhsm::{self, SoftHsm};
use hsm_bridge::{HsmKeystore, Pkcs11Uri};
use rand::rngs::StdRng;
use rand::SeedableRng;
use secrecy::SecretString;
use wallet_core::keygen::{self, Dealt, Identifiers};
use wallet_core::keystore::files::TakeOnceDir;
use wallet_core::keystore::{self, Keystore, SessionId, SoftwareKeystore, WorkFactor};
use wallet_core::{signing, Label, Secp256k1Tr};

const MSG: &[u8; 32] = b"benchmark sighash, thirty-two b.";
const PIN: &str = "1234-bench";

fn pin() -> SecretString {
    SecretString::from(PIN.to_owned())
}

struct Setup {
    hsm: SoftHsm,
    module: PathBuf,
}

fn setup() -> Setup {
    let hsm = match std::env::var_os("KURA_BENCH_SOFTHSM_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let _ = std::fs::remove_dir_all(&dir);
            SoftHsm::create_in(&dir).unwrap()
        }
        None => SoftHsm::create_temporary().unwrap(),
    };
    hsm.activate();
    let module = softhsm::module().expect("SoftHSM2 is not installed");
    let ctx = hsm_bridge::context::context(&module).unwrap();
    for i in 0..6 {
        SoftHsm::init_token(
            &ctx,
            &format!("bench-{i}"),
            &SecretString::from("5678-so".to_owned()),
            &pin(),
        )
        .unwrap();
    }
    eprintln!("SoftHSM token directory: {}", hsm.dir().display());
    Setup { hsm, module }
}

fn uri(s: &Setup, i: usize) -> Pkcs11Uri {
    Pkcs11Uri::parse(&format!(
        "pkcs11:token=bench-{i}?module-path={}",
        s.module.display()
    ))
    .unwrap()
}

fn dealt(t: u16, n: u16) -> Dealt<Secp256k1Tr> {
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

/// One signing with persisted nonces: each signer loads its share from its
/// keystore (decrypting it), commits, then signs; the coordinator aggregates.
fn keystore_sign(
    d: &Dealt<Secp256k1Tr>,
    stores: &[&dyn Keystore],
    ids: &[Identifier<Secp256k1Tr>],
) {
    let session = SessionId::random();
    let mut shares = Vec::new();
    let mut commitments = BTreeMap::new();
    for (ks, id) in stores.iter().zip(ids) {
        let share = keystore::load_share::<Secp256k1Tr>(*ks, &d.group, id).unwrap();
        commitments.insert(
            *share.identifier(),
            keystore::commit(*ks, &share, &session).unwrap(),
        );
        shares.push(share);
    }
    let package = signing::build_package(&d.group, commitments.clone(), MSG).unwrap();
    let mut sig_shares = BTreeMap::new();
    for (ks, share) in stores.iter().zip(&shares) {
        let own = &commitments[share.identifier()];
        sig_shares.insert(
            *share.identifier(),
            keystore::sign(*ks, share, &d.group, &session, &package, MSG, own).unwrap(),
        );
    }
    signing::aggregate(&d.group, &package, &sig_shares).unwrap();
}

fn raw_sign(d: &Dealt<Secp256k1Tr>, t: usize, rng: &mut StdRng) {
    let kps: Vec<_> = d.shares[..t].iter().map(|s| s.key_package()).collect();
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for kp in &kps {
        let (n, c) = frost_secp256k1_tr::round1::commit(kp.signing_share(), rng);
        nonces.insert(*kp.identifier(), n);
        commitments.insert(*kp.identifier(), c);
    }
    let package = frost_secp256k1_tr::SigningPackage::new(commitments, MSG);
    let mut shares = BTreeMap::new();
    for kp in &kps {
        shares.insert(
            *kp.identifier(),
            frost_secp256k1_tr::round2::sign_with_tweak(
                &package,
                &nonces[kp.identifier()],
                kp,
                None,
            )
            .unwrap(),
        );
    }
    frost_secp256k1_tr::aggregate_with_tweak(&package, &shares, d.group.public_key_package(), None)
        .unwrap();
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let hsm_stores: Vec<HsmKeystore> = (0..5)
        .map(|i| {
            HsmKeystore::provision(
                &uri(&s, i),
                &pin(),
                &s.hsm.dir().join(format!("nonces-{i}")),
            )
            .unwrap()
        })
        .collect();
    let soft_stores: Vec<SoftwareKeystore> = (0..5)
        .map(|i| {
            let pass = AgeSecret::from("bench passphrase".to_owned());
            // The work factor only affects opening the keystore, not signing.
            SoftwareKeystore::create(
                &s.hsm.dir().join(format!("soft-{i}")),
                &pass,
                WorkFactor::LogN(10),
            )
            .unwrap()
        })
        .collect();

    let mut g = c.benchmark_group("hsm-sign-secp256k1-tr");
    g.sample_size(30);
    for (t, n) in [(2u16, 3u16), (3, 5)] {
        let d = dealt(t, n);
        for (i, share) in d.shares.iter().enumerate() {
            keystore::put_share(&hsm_stores[i], share).unwrap();
            keystore::put_share(&soft_stores[i], share).unwrap();
        }
        let t = usize::from(t);
        let ids: Vec<Identifier<Secp256k1Tr>> =
            d.shares[..t].iter().map(|s| *s.identifier()).collect();
        let id = format!("{t}-of-{n}");
        let mut rng = StdRng::seed_from_u64(3);
        g.bench_function(BenchmarkId::new("raw-frost", &id), |b| {
            b.iter(|| raw_sign(&d, t, &mut rng))
        });
        let soft: Vec<&dyn Keystore> = soft_stores[..t]
            .iter()
            .map(|k| k as &dyn Keystore)
            .collect();
        g.bench_function(BenchmarkId::new("software-keystore", &id), |b| {
            b.iter(|| keystore_sign(&d, &soft, &ids))
        });
        let hsm: Vec<&dyn Keystore> = hsm_stores[..t].iter().map(|k| k as &dyn Keystore).collect();
        g.bench_function(BenchmarkId::new("softhsm-tokens", &id), |b| {
            b.iter(|| keystore_sign(&d, &hsm, &ids))
        });
    }
    g.finish();

    // What a logged-in session costs to get: C_Login + C_Logout on a token.
    let ctx = hsm_bridge::context::context(&s.module).unwrap();
    let slot = hsm_bridge::context::find_token(&ctx, "bench-5", None).unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    c.bench_function("softhsm-login-logout", |b| {
        b.iter(|| {
            session.login(UserType::User, Some(&pin())).unwrap();
            session.logout().unwrap();
        })
    });
    drop(session);

    // Where nonce ciphertexts live: a token data object (create, then find +
    // read + destroy) vs a take-once file (write, then lock + read + unlink).
    let session = ctx.open_rw_session(slot).unwrap();
    session.login(UserType::User, Some(&pin())).unwrap();
    let blob = vec![7u8; 220];
    let mut g = c.benchmark_group("nonce-storage-store-and-consume");
    let mut counter = 0u64;
    g.bench_function("token-data-object", |b| {
        b.iter(|| {
            counter += 1;
            let label = format!("nonce-{counter}").into_bytes();
            session
                .create_object(&[
                    Attribute::Class(ObjectClass::DATA),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Label(label.clone()),
                    Attribute::Value(blob.clone()),
                ])
                .unwrap();
            let o = session.find_objects(&[Attribute::Label(label)]).unwrap()[0];
            session.get_attributes(o, &[AttributeType::Value]).unwrap();
            session.destroy_object(o).unwrap();
        })
    });
    let dir = TakeOnceDir::open(&s.hsm.dir().join("nonce-files")).unwrap();
    g.bench_function("take-once-file", |b| {
        b.iter(|| {
            counter += 1;
            let name = format!("nonce-{counter}");
            dir.put_new(&name, &blob).unwrap();
            dir.take_with(&name, |b| Ok(b.unwrap())).unwrap();
        })
    });
    g.finish();

    // The state anchor moves with every audit entry (review, approval, share
    // release): one compare-and-swap on the token's state object, or one
    // rewrite of the software keystore's encrypted state file.
    let mut g = c.benchmark_group("state-anchor-move");
    let stores: [(&str, &dyn Keystore); 2] = [
        ("softhsm-token", &hsm_stores[0]),
        ("software-keystore", &soft_stores[0]),
    ];
    for (name, ks) in stores {
        g.bench_function(name, |b| {
            b.iter(|| {
                let a = ks.anchor().unwrap();
                let next = a.with_audit(keystore::AuditHead {
                    seq: a.audit.seq + 1,
                    hash: [1; 32],
                });
                ks.replace_anchor(&a, &next).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
