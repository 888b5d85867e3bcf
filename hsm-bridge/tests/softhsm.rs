//! hsm-bridge against a real SoftHSM2 token. No mock PKCS#11 anywhere.
//!
//! All tests of this binary share one SoftHSM2 directory (SoftHSM reads its
//! configuration once per process); each test uses tokens of its own labels.
//! The race and crash tests re-run this binary as child processes on the
//! same token directory.
#![allow(clippy::print_stdout, clippy::print_stderr)] // prints by design

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
use cryptoki::session::{Session, UserType};
use hsm_bridge::softhsm::{self, SoftHsm};
use hsm_bridge::{HsmError, HsmKeystore, PinSource, Pkcs11Uri, KEK_LABEL};
use rand::rngs::StdRng;
use rand::SeedableRng;
use secrecy::SecretString;
use wallet_core::keygen::{self, Dealt, Identifiers};
use wallet_core::keystore::{
    self, Keystore, KeystoreError, SecretSlot, SessionId, StoredSignError,
};
use wallet_core::signing::{self, SignError};
use wallet_core::{Label, Secp256k1Tr, SuiteId};

const PIN: &str = "1234-user";
const SO_PIN: &str = "5678-so";
const MSG: &[u8; 32] = b"a sighash this signer computed..";

fn pin() -> SecretString {
    SecretString::from(PIN.to_owned())
}

/// The process's SoftHSM directory: under cargo's per-target temp dir, wiped
/// when the first test of a run starts.
fn hsm() -> &'static SoftHsm {
    static HSM: OnceLock<SoftHsm> = OnceLock::new();
    HSM.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("softhsm-tests");
        if std::env::var_os("KURA_TEST_CHILD").is_some() {
            // A child process uses its parent's directory and configuration.
            return SoftHsm::attach(&dir).unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
        let h = SoftHsm::create_in(&dir).unwrap();
        h.activate();
        // Every token is created here, before the tests run concurrently:
        // SoftHSM's free-slot bookkeeping does not tolerate C_InitToken
        // racing with other threads' slot listings.
        let ctx = hsm_bridge::context::context(&module()).unwrap();
        for label in TOKENS {
            SoftHsm::init_token(&ctx, label, &SecretString::from(SO_PIN.to_owned()), &pin())
                .unwrap();
        }
        h
    })
}

fn module() -> PathBuf {
    softhsm::module()
        .expect("SoftHSM2 is not installed: scripts/test installs it (apt-get install softhsm2)")
}

fn uri(label: &str) -> Pkcs11Uri {
    Pkcs11Uri::parse(&format!(
        "pkcs11:token={label}?module-path={}",
        module().display()
    ))
    .unwrap()
}

/// The tokens the tests use, one set per test.
const TOKENS: [&str; 23] = [
    "t1-alice",
    "t1-bob",
    "t1-carol",
    "t2-identity",
    "t3-pin",
    "t3-fresh",
    "t4-present",
    "t5-tamper",
    "t5-other",
    "t6-replace",
    "t7-sensitive",
    "t8-listing",
    "t9-caps",
    "t10-race",
    "t11-crash",
    "t12-spare",
    "t13-restore",
    "t14-decoy",
    "t15-twin",
    "t15-twin",
    "t16-anchor",
    "t17-foreign",
    "t18-swap",
];

/// An initialised (not provisioned) token of this test run.
fn token(label: &str) -> Pkcs11Uri {
    assert!(TOKENS.contains(&label), "add {label} to TOKENS");
    hsm();
    uri(label)
}

fn nonce_dir(label: &str) -> PathBuf {
    hsm().dir().join("nonces").join(label)
}

fn provisioned(label: &str) -> HsmKeystore {
    HsmKeystore::provision(&token(label), &pin(), &nonce_dir(label)).unwrap()
}

fn deal(seed: u64) -> Dealt<Secp256k1Tr> {
    let labels: Vec<_> = ["alice", "bob", "carol"]
        .iter()
        .map(|l| Label::new(*l).unwrap())
        .collect();
    keygen::dealer(
        2,
        &labels,
        Identifiers::Default,
        &mut StdRng::seed_from_u64(seed),
    )
    .unwrap()
}

fn participant(
    d: &Dealt<Secp256k1Tr>,
    i: usize,
) -> wallet_core::frost_core::Identifier<Secp256k1Tr> {
    *d.shares[i].identifier()
}

/// A session on `label` for inspecting objects directly, as an attacker
/// with the PIN (or a test) could.
fn raw_session(label: &str) -> Session {
    let ctx = hsm_bridge::context::context(&module()).unwrap();
    let slot = hsm_bridge::context::find_token(&ctx, label, None).unwrap();
    let s = ctx.open_rw_session(slot).unwrap();
    let _ = s.login(UserType::User, Some(&pin()));
    s
}

fn libsecp_verify(d: &Dealt<Secp256k1Tr>, sig: &[u8]) -> bool {
    use bitcoin::secp256k1::{schnorr, Message, Secp256k1};
    let key = d.group.taproot().output_key().to_x_only_public_key();
    let sig = schnorr::Signature::from_slice(sig).unwrap();
    Secp256k1::verification_only()
        .verify_schnorr(&sig, &Message::from_digest(*MSG), &key)
        .is_ok()
}

#[test]
fn two_of_three_on_three_tokens_signs_a_valid_bip340_signature() {
    let d = deal(1);
    let stores: Vec<_> = ["t1-alice", "t1-bob", "t1-carol"]
        .iter()
        .map(|l| provisioned(l))
        .collect();
    for (ks, share) in stores.iter().zip(&d.shares) {
        keystore::put_share(ks, share).unwrap();
    }
    let session = SessionId::random();
    let signers = [0usize, 2];
    let mut commitments = BTreeMap::new();
    let mut shares = Vec::new();
    for &i in &signers {
        let share =
            keystore::load_share::<Secp256k1Tr>(&stores[i], &d.group, &participant(&d, i)).unwrap();
        assert_eq!(share.key_package(), d.shares[i].key_package());
        commitments.insert(
            *share.identifier(),
            keystore::commit(&stores[i], &share, &session).unwrap(),
        );
        shares.push(share);
    }
    let package = signing::build_package(&d.group, commitments.clone(), MSG).unwrap();
    let mut sig_shares = BTreeMap::new();
    for (&i, share) in signers.iter().zip(&shares) {
        let own = &commitments[share.identifier()];
        let s = keystore::sign(&stores[i], share, &d.group, &session, &package, MSG, own).unwrap();
        sig_shares.insert(*share.identifier(), s);
        let again =
            keystore::sign(&stores[i], share, &d.group, &session, &package, MSG, own).unwrap_err();
        assert!(
            matches!(
                again,
                StoredSignError::Keystore(KeystoreError::NoncesConsumed(_))
            ),
            "{again}"
        );
    }
    let sig = signing::aggregate(&d.group, &package, &sig_shares).unwrap();
    assert!(libsecp_verify(&d, &sig.serialize().unwrap()));
}

#[test]
fn identity_key_on_the_token_signs_low_s_and_opens_sealed_messages() {
    let ks = provisioned("t2-identity");
    let pk = ks.identity_public_key().unwrap();
    for i in 0..16u8 {
        let msg = [b"kura/v1/test\0".as_slice(), &[i]].concat();
        let sig = ks.sign_identity(&msg).unwrap();
        pk.verify(&msg, &sig).unwrap();
        // Strict parsing refuses high-S: every token signature was normalised.
        wallet_core::identity::IdentitySignature::from_bytes(&sig.to_bytes()).unwrap();
    }
    let mut rng = StdRng::seed_from_u64(2);
    let sealed = pk.seal(b"dkg round-2 share", b"ctx", &mut rng).unwrap();
    assert_eq!(
        ks.open_sealed(&sealed, b"ctx").unwrap().expose(),
        b"dkg round-2 share"
    );
    assert!(ks.open_sealed(&sealed, b"other ctx").is_err());
    let mut tampered = sealed.clone();
    tampered.ciphertext[3] ^= 0x40;
    assert!(ks.open_sealed(&tampered, b"ctx").is_err());
    // The token's RNG answers.
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    ks.fill_random(&mut a).unwrap();
    ks.fill_random(&mut b).unwrap();
    assert_ne!(a, b);
}

#[test]
fn wrong_pin_is_one_clear_error_and_the_token_stays_usable() {
    let u = token("t3-pin");
    let _open = HsmKeystore::provision(&u, &pin(), &nonce_dir("t3-pin")).unwrap();
    // The token is logged in by this process now, so it would not check a
    // second PIN itself: the keystore does.
    let err = HsmKeystore::open(
        &u,
        &SecretString::from("0000".to_owned()),
        &nonce_dir("t3-pin"),
    )
    .unwrap_err();
    assert!(matches!(err, HsmError::WrongPin { .. }), "{err}");
    HsmKeystore::open(&u, &pin(), &nonce_dir("t3-pin")).unwrap();
    // Close the provisioning session's login state by dropping the keystore
    // is not enough in one process (login is per process and token), so
    // check the wrong PIN on a token nobody logged into yet.
    let fresh = token("t3-fresh");
    let err = HsmKeystore::open(
        &fresh,
        &SecretString::from("0000".to_owned()),
        &nonce_dir("t3-fresh"),
    )
    .unwrap_err();
    assert!(matches!(err, HsmError::WrongPin { .. }), "{err}");
    assert!(err.to_string().contains("does not retry"), "{err}");
    assert!(matches!(
        KeystoreError::from(err),
        KeystoreError::WrongPassphrase
    ));
    // A correct PIN still works afterwards (no lockout from one failure).
    let err = HsmKeystore::open(&fresh, &pin(), &nonce_dir("t3-fresh")).unwrap_err();
    assert!(matches!(err, HsmError::NotProvisioned { .. }), "{err}");
}

#[test]
fn missing_module_token_and_object_are_typed_errors() {
    hsm();
    let bogus = Pkcs11Uri::parse("pkcs11:token=x?module-path=/nonexistent/libpkcs11.so").unwrap();
    assert!(matches!(
        HsmKeystore::open(&bogus, &pin(), &nonce_dir("x")),
        Err(HsmError::ModuleNotFound { .. })
    ));
    let ks = provisioned("t4-present");
    match HsmKeystore::open(&uri("t4-absent"), &pin(), &nonce_dir("t4-absent")) {
        Err(HsmError::TokenNotFound { available, .. }) => {
            assert!(available.contains("t4-present"), "{available}")
        }
        other => panic!("expected TokenNotFound, got {other:?}"),
    }
    let d = deal(4);
    let err = keystore::load_share::<Secp256k1Tr>(&ks, &d.group, &participant(&d, 0)).unwrap_err();
    assert!(matches!(err, KeystoreError::NotFound(_)), "{err}");
    // Provisioning twice would replace the KEK and orphan every ciphertext: refused.
    assert!(matches!(
        HsmKeystore::provision(&uri("t4-present"), &pin(), &nonce_dir("t4-present")),
        Err(HsmError::AlreadyProvisioned { .. })
    ));
}

fn share_object(s: &Session, slot: &SecretSlot) -> cryptoki::object::ObjectHandle {
    s.find_objects(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Label(slot.name().into_bytes()),
    ])
    .unwrap()
    .into_iter()
    .next()
    .expect("share object")
}

/// Replaces a data object's value. SoftHSM keeps CKA_VALUE read-only, so
/// the object is recreated with the same label, as an attacker with the PIN
/// would do.
fn overwrite(
    s: &Session,
    o: cryptoki::object::ObjectHandle,
    new_value: Vec<u8>,
) -> cryptoki::object::ObjectHandle {
    let label = match s.get_attributes(o, &[AttributeType::Label]).unwrap().pop() {
        Some(Attribute::Label(l)) => l,
        other => panic!("{other:?}"),
    };
    s.destroy_object(o).unwrap();
    s.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Application(b"kura".to_vec()),
        Attribute::Label(label),
        Attribute::Value(new_value),
    ])
    .unwrap()
}

fn value(s: &Session, o: cryptoki::object::ObjectHandle) -> Vec<u8> {
    match s.get_attributes(o, &[AttributeType::Value]).unwrap().pop() {
        Some(Attribute::Value(v)) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn tampered_or_moved_ciphertexts_are_refused_as_tampering() {
    let d = deal(5);
    let ks = provisioned("t5-tamper");
    keystore::put_share(&ks, &d.shares[0]).unwrap();
    keystore::put_share(&ks, &d.shares[1]).unwrap();
    let s = raw_session("t5-tamper");
    let slot0 = SecretSlot::key_share(&d.shares[0]);
    let slot1 = SecretSlot::key_share(&d.shares[1]);
    let (o0, o1) = (share_object(&s, &slot0), share_object(&s, &slot1));
    let (good0, good1) = (value(&s, o0), value(&s, o1));

    let mut flipped = good0.clone();
    let n = flipped.len() - 20;
    flipped[n] ^= 1;
    let o0 = overwrite(&s, o0, flipped);
    let err = keystore::load_share::<Secp256k1Tr>(&ks, &d.group, &participant(&d, 0)).unwrap_err();
    assert!(matches!(err, KeystoreError::Tampered(_)), "{err}");

    // Participant 1's ciphertext copied over participant 2's.
    overwrite(&s, o0, good0.clone());
    let o1 = overwrite(&s, o1, good0.clone());
    let err = keystore::load_share::<Secp256k1Tr>(&ks, &d.group, &participant(&d, 1)).unwrap_err();
    assert!(matches!(err, KeystoreError::Tampered(_)), "{err}");
    overwrite(&s, o1, good1);
    keystore::load_share::<Secp256k1Tr>(&ks, &d.group, &participant(&d, 1)).unwrap();

    // Another token's KEK cannot open it.
    let other = provisioned("t5-other");
    keystore::put_share(&other, &d.shares[0]).unwrap();
    let so = raw_session("t5-other");
    overwrite(&so, share_object(&so, &slot0), good0);
    let err =
        keystore::load_share::<Secp256k1Tr>(&other, &d.group, &participant(&d, 0)).unwrap_err();
    assert!(matches!(err, KeystoreError::Tampered(_)), "{err}");

    // A nonce file copied over another session's: that session's own key
    // on the token does not open it.
    let (sa, sb) = (SessionId::random(), SessionId::random());
    keystore::commit(&ks, &d.shares[1], &sa).unwrap();
    keystore::commit(&ks, &d.shares[1], &sb).unwrap();
    let dir = nonce_dir("t5-tamper");
    let from = dir.join(format!(
        "{}.gcm",
        SecretSlot::nonces(&d.shares[1], &sa).name()
    ));
    let to = dir.join(format!(
        "{}.gcm",
        SecretSlot::nonces(&d.shares[1], &sb).name()
    ));
    std::fs::copy(&from, &to).unwrap();
    let err = ks
        .take_nonces(&SecretSlot::nonces(&d.shares[1], &sb))
        .unwrap_err();
    assert!(matches!(err, KeystoreError::Tampered(_)), "{err}");
    // ...and that session is spent: its key is gone from the token.
    let err = ks
        .take_nonces(&SecretSlot::nonces(&d.shares[1], &sb))
        .unwrap_err();
    assert!(matches!(err, KeystoreError::NoncesConsumed(_)), "{err}");
    // A file under a session name with no key on the token is nothing.
    let sc = SessionId::random();
    std::fs::copy(
        &from,
        dir.join(format!(
            "{}.gcm",
            SecretSlot::nonces(&d.shares[1], &sc).name()
        )),
    )
    .unwrap();
    let err = ks
        .take_nonces(&SecretSlot::nonces(&d.shares[1], &sc))
        .unwrap_err();
    assert!(matches!(err, KeystoreError::NoncesConsumed(_)), "{err}");
    ks.take_nonces(&SecretSlot::nonces(&d.shares[1], &sa))
        .unwrap();
}

#[test]
fn an_interrupted_share_replacement_leaves_a_readable_share() {
    let d = deal(6);
    let ks = provisioned("t6-replace");
    keystore::put_share(&ks, &d.shares[0]).unwrap();
    let slot = SecretSlot::key_share(&d.shares[0]);
    let s = raw_session("t6-replace");
    let old = share_object(&s, &slot);
    let ct = value(&s, old);
    // State after a crash between creating the pending object and destroying
    // the old one: both exist; the old one is read.
    let pending = s
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Application(b"kura".to_vec()),
            Attribute::Label(format!("{}~pending", slot.name()).into_bytes()),
            Attribute::Value(b"half-written".to_vec()),
        ])
        .unwrap();
    keystore::load_share::<Secp256k1Tr>(&ks, &d.group, &participant(&d, 0)).unwrap();
    // After a crash between destroying the old object and renaming: the
    // pending one is read.
    overwrite(&s, pending, ct);
    s.destroy_object(old).unwrap();
    keystore::load_share::<Secp256k1Tr>(&ks, &d.group, &participant(&d, 0)).unwrap();
    // A new write cleans up and leaves exactly one share object.
    keystore::put_share(&ks, &d.shares[0]).unwrap();
    let all = s
        .find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Application(b"kura".to_vec()),
        ])
        .unwrap();
    assert_eq!(all.len(), 1);
    keystore::load_share::<Secp256k1Tr>(&ks, &d.group, &participant(&d, 0)).unwrap();
}

#[test]
fn kek_and_identity_private_key_cannot_be_read() {
    let _ks = provisioned("t7-sensitive");
    let s = raw_session("t7-sensitive");
    let kek = s
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(KEK_LABEL.into()),
        ])
        .unwrap()[0];
    let id = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(hsm_bridge::IDENTITY_LABEL.into()),
        ])
        .unwrap()[0];
    for (name, o, secret) in [
        ("KEK", kek, AttributeType::Value),
        ("identity key", id, AttributeType::Value),
    ] {
        let info = s.get_attribute_info(o, &[secret]).unwrap();
        assert!(
            matches!(info.as_slice(), [AttributeInfo::Sensitive]),
            "{name}: {info:?}"
        );
        match s
            .get_attributes(o, &[AttributeType::Extractable, AttributeType::Sensitive])
            .unwrap()
            .as_slice()
        {
            [Attribute::Extractable(false), Attribute::Sensitive(true)] => {}
            other => panic!("{name}: {other:?}"),
        }
        // Flipping the flags back is refused by the token.
        assert!(
            s.update_attributes(o, &[Attribute::Extractable(true)])
                .is_err(),
            "{name}"
        );
        assert!(
            s.update_attributes(o, &[Attribute::Sensitive(false)])
                .is_err(),
            "{name}"
        );
    }
}

#[test]
fn pkcs11_tool_lists_no_plaintext_secret() {
    let d = deal(8);
    let ks = provisioned("t8-listing");
    keystore::put_share(&ks, &d.shares[0]).unwrap();
    keystore::commit(&ks, &d.shares[0], &SessionId::random()).unwrap();
    // The PIN goes on pkcs11-tool's command line here only because this is
    // a throwaway test token.
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", hsm().conf())
        .args(["--module"])
        .arg(module())
        .args([
            "--token-label",
            "t8-listing",
            "--login",
            "--pin",
            PIN,
            "--list-objects",
        ])
        .output()
        .expect("pkcs11-tool (OpenSC) is not installed: scripts/test installs it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains(KEK_LABEL) && listing.contains("kura-identity"),
        "{listing}"
    );
    let secret = d.shares[0].key_package().signing_share().serialize();
    assert!(
        !listing.to_lowercase().contains(&hex::encode(&secret)),
        "{listing}"
    );
    assert!(!out
        .stdout
        .windows(secret.len())
        .any(|w| w == secret.as_slice()));
    // Nothing on disk in the token directory holds it either.
    for entry in walk(hsm().dir()) {
        let Ok(bytes) = std::fs::read(&entry) else {
            continue;
        };
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
            "{entry:?}"
        );
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&hex::encode(&secret)),
            "{entry:?}"
        );
    }
}

/// Files under `dir` (other tests create and delete files concurrently;
/// those that vanish are skipped).
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn capability_check_finds_everything_on_softhsm() {
    let _ks = provisioned("t9-caps");
    let caps = hsm_bridge::check::capabilities(&uri("t9-caps")).unwrap();
    assert!(caps.complete(), "{caps:?}");
}

#[test]
fn pin_sources() {
    let dir = hsm().dir().join("pins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pin"), format!("{PIN}\n")).unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(
        PinSource::File(dir.join("pin"))
            .read()
            .unwrap()
            .expose_secret(),
        PIN
    );
    std::fs::write(dir.join("empty"), "\n").unwrap();
    assert!(matches!(
        PinSource::File(dir.join("empty")).read(),
        Err(HsmError::Pin(_))
    ));
    assert!(matches!(
        PinSource::File(dir.join("missing")).read(),
        Err(HsmError::Pin(_))
    ));
    // A huge file is refused after reading just past the cap.
    let big = dir.join("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(64 * 1024 * 1024)
        .unwrap();
    match PinSource::File(big).read() {
        Err(HsmError::Pin(m)) => assert!(m.contains("larger than"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        PinSource::Env("KURA_TEST_UNSET_PIN_VARIABLE".into()).read(),
        Err(HsmError::Pin(_))
    ));
}

// ---- child processes: racing takers and a take killed mid-way ----

/// Runs in a child process (`KURA_TEST_CHILD` set): opens the token named in
/// the environment, prints `READY`, waits until the file `KURA_TEST_GO`
/// exists, then takes one nonce set and prints `TOOK` or `CONSUMED`. With
/// `KURA_TEST_HANG` it then waits to be killed.
///
/// Opening is serialised by the parent (it starts the next child only after
/// `READY`): SoftHSM2's file backend can skip a token, or misread its PIN
/// state, while another process writes the token's files, so concurrent
/// logins are not what these tests are about. The race is on the take.
fn child_take() {
    let label = std::env::var("KURA_TEST_TOKEN").unwrap();
    let pin = PinSource::Env("KURA_TEST_PIN".into()).read().unwrap();
    let ks = HsmKeystore::open(&uri(&label), &pin, &nonce_dir(&label)).unwrap();
    let slot = SecretSlot::for_nonces(
        SuiteId::Secp256k1Tr,
        std::env::var("KURA_TEST_GROUP").unwrap().parse().unwrap(),
        std::env::var("KURA_TEST_PARTICIPANT").unwrap(),
        std::env::var("KURA_TEST_SESSION").unwrap().parse().unwrap(),
    );
    println!("READY");
    let go = PathBuf::from(std::env::var("KURA_TEST_GO").unwrap());
    while !go.exists() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    match ks.take_nonces(&slot) {
        Ok(_) => println!("TOOK"),
        Err(KeystoreError::NoncesConsumed(_)) => println!("CONSUMED"),
        Err(e) => println!("ERROR {e}"),
    }
    if std::env::var_os("KURA_TEST_HANG").is_some() {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// Child-spawning tests run one at a time (see [`child_take`]).
static CHILDREN: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Child {
    process: std::process::Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Child {
    /// The child's next line of output that is not the test harness's.
    fn line(&mut self) -> String {
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).unwrap() == 0 {
                return String::new();
            }
            // The harness prints `test <name> ... ` before the test's own
            // output on the same line; the child's word is the line's end.
            let line = line.trim();
            if let Some(word) = ["READY", "TOOK", "CONSUMED"]
                .iter()
                .find(|w| line.ends_with(*w))
            {
                return (*word).to_owned();
            }
            if let Some(i) = line.find("ERROR") {
                return line[i..].to_owned();
            }
        }
    }
}

/// Starts a child and waits for its `READY`.
fn spawn_child(
    test: &str,
    label: &str,
    d: &Dealt<Secp256k1Tr>,
    session: &SessionId,
    go: &std::path::Path,
    hang: bool,
) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("KURA_TEST_CHILD", "1")
        .env("SOFTHSM2_CONF", hsm().conf())
        .env("KURA_TEST_TOKEN", label)
        .env("KURA_TEST_PIN", PIN)
        .env("KURA_TEST_GROUP", d.group.id().to_string())
        .env(
            "KURA_TEST_PARTICIPANT",
            hex::encode(participant(d, 0).serialize()),
        )
        .env("KURA_TEST_SESSION", session.to_string())
        .env("KURA_TEST_GO", go)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if hang {
        cmd.env("KURA_TEST_HANG", "1");
    }
    let mut process = cmd.spawn().unwrap();
    let stdout = BufReader::new(process.stdout.take().unwrap());
    let mut child = Child { process, stdout };
    assert_eq!(
        child.line(),
        "READY",
        "the child could not open the token (see its stderr above)"
    );
    child
}

#[test]
fn racing_processes_take_a_nonce_set_exactly_once() {
    if std::env::var_os("KURA_TEST_CHILD").is_some() {
        return child_take();
    }
    let _one_at_a_time = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    let d = deal(10);
    let ks = provisioned("t10-race");
    keystore::put_share(&ks, &d.shares[0]).unwrap();
    for round in 0..3 {
        let session = SessionId::random();
        keystore::commit(&ks, &d.shares[0], &session).unwrap();
        let go = hsm().dir().join(format!("go-race-{round}"));
        let test = "racing_processes_take_a_nonce_set_exactly_once";
        let mut children: Vec<_> = (0..4)
            .map(|_| spawn_child(test, "t10-race", &d, &session, &go, false))
            .collect();
        std::fs::write(&go, b"").unwrap();
        let results: Vec<String> = children.iter_mut().map(Child::line).collect();
        for c in &mut children {
            c.process.wait().unwrap();
        }
        let took = results.iter().filter(|r| *r == "TOOK").count();
        let consumed = results.iter().filter(|r| *r == "CONSUMED").count();
        assert_eq!((took, consumed), (1, 3), "round {round}: {results:?}");
    }
}

#[test]
fn a_process_killed_after_taking_nonces_never_lets_them_be_reused() {
    if std::env::var_os("KURA_TEST_CHILD").is_some() {
        return child_take();
    }
    let _one_at_a_time = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    let d = deal(11);
    let ks = provisioned("t11-crash");
    keystore::put_share(&ks, &d.shares[0]).unwrap();
    let share = keystore::load_share::<Secp256k1Tr>(&ks, &d.group, &participant(&d, 0)).unwrap();
    let session = SessionId::random();
    let own = keystore::commit(&ks, &share, &session).unwrap();
    let go = hsm().dir().join("go-crash");
    let test = "a_process_killed_after_taking_nonces_never_lets_them_be_reused";
    let mut child = spawn_child(test, "t11-crash", &d, &session, &go, true);
    std::fs::write(&go, b"").unwrap();
    assert_eq!(child.line(), "TOOK");
    child.process.kill().unwrap();
    child.process.wait().unwrap();
    // The killed process never released a share; this one must not get the
    // nonces either.
    let (_, other) = signing::commit(&d.shares[1], &mut StdRng::seed_from_u64(1));
    let package = signing::build_package(
        &d.group,
        BTreeMap::from([
            (*share.identifier(), own),
            (*d.shares[1].identifier(), other),
        ]),
        MSG,
    )
    .unwrap();
    let err = keystore::sign(&ks, &share, &d.group, &session, &package, MSG, &own).unwrap_err();
    assert!(
        matches!(
            err,
            StoredSignError::Keystore(KeystoreError::NoncesConsumed(_))
        ),
        "{err}"
    );
    // And a refused package never reaches the nonces at all.
    let session2 = SessionId::random();
    let own2 = keystore::commit(&ks, &share, &session2).unwrap();
    let err =
        keystore::sign(&ks, &share, &d.group, &session2, &package, b"other", &own2).unwrap_err();
    assert!(
        matches!(
            err,
            StoredSignError::Refused(SignError::MessageMismatch { .. })
        ),
        "{err}"
    );
    assert!(ks
        .take_nonces(&SecretSlot::nonces(&share, &session2))
        .is_ok());
}

// ---- a full token ----

/// Child mode of the full-token test, run inside a private mount namespace
/// where `KURA_TEST_DIR` is a 1 MiB tmpfs: set up SoftHSM there, store a
/// share, fill the file system, try to replace the share, free the space,
/// and check the original share still loads.
fn child_full() {
    let dir = PathBuf::from(std::env::var("KURA_TEST_DIR").unwrap());
    let hsm = SoftHsm::create_in(&dir).unwrap();
    hsm.activate();
    let st = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", hsm.conf())
        .args([
            "--init-token",
            "--free",
            "--label",
            "full-token",
            "--so-pin",
            SO_PIN,
            "--pin",
            PIN,
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let d = deal(12);
    let ks = HsmKeystore::provision(&uri("full-token"), &pin(), &dir.join("nonces")).unwrap();
    keystore::put_share(&ks, &d.shares[0]).unwrap();
    let junk = dir.join("junk");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&junk).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.write_all(&[0u8]);
    }
    let result = keystore::put_share(&ks, &d.shares[0]);
    println!(
        "REPLACE {}",
        if result.is_err() {
            "FAILED"
        } else {
            "SUCCEEDED"
        }
    );
    std::fs::remove_file(&junk).unwrap();
    let loaded = keystore::load_share::<Secp256k1Tr>(&ks, &d.group, &participant(&d, 0)).unwrap();
    assert_eq!(loaded.key_package(), d.shares[0].key_package());
    println!("OLD SHARE LOADS");
}

#[test]
fn a_full_token_refuses_the_write_and_keeps_the_previous_share() {
    if std::env::var_os("KURA_TEST_FULL").is_some() {
        return child_full();
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("full-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A size-limited tmpfs, mounted in a private mount namespace (unshare
    // from util-linux; `-r` maps the user to root where unprivileged user
    // namespaces are allowed), so nothing outside the test sees it.
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "mount -t tmpfs -o size=1m tmpfs '{dir}' && exec '{exe}' a_full_token_refuses_the_write_and_keeps_the_previous_share --exact --nocapture --test-threads=1",
        dir = dir.display(),
        exe = exe.display()
    );
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let mut cmd = Command::new("unshare");
    if root {
        cmd.arg("-m");
    } else {
        cmd.args(["-r", "-m"]);
    }
    let out = cmd
        .args(["sh", "-c", &script])
        .env("KURA_TEST_FULL", "1")
        .env("KURA_TEST_CHILD", "1")
        .env("KURA_TEST_DIR", &dir)
        .output()
        .expect("unshare (util-linux) is needed to mount a private size-limited tmpfs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("REPLACE FAILED"), "{stdout}");
    assert!(stdout.contains("OLD SHARE LOADS"), "{stdout}");
}

// ---- state a disk writer cannot roll back; objects Kura did not make ----

fn nonce_keys(s: &Session) -> usize {
    s.find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
        .unwrap()
        .into_iter()
        .filter(|o| {
            matches!(
                s.get_attributes(*o, &[AttributeType::Label]).unwrap().pop(),
                Some(Attribute::Label(l)) if l.starts_with(b"kura-nonce-key-")
            )
        })
        .count()
}

#[test]
fn a_restored_nonce_file_is_useless_once_its_token_key_is_destroyed() {
    let d = deal(13);
    let ks = provisioned("t13-restore");
    keystore::put_share(&ks, &d.shares[0]).unwrap();
    let session = SessionId::random();
    keystore::commit(&ks, &d.shares[0], &session).unwrap();
    let slot = SecretSlot::nonces(&d.shares[0], &session);
    let file = nonce_dir("t13-restore").join(format!("{}.gcm", slot.name()));
    let backup = std::fs::read(&file).unwrap();
    let s = raw_session("t13-restore");
    assert_eq!(nonce_keys(&s), 1, "one key on the token per nonce set");
    ks.take_nonces(&slot).unwrap();
    assert_eq!(nonce_keys(&s), 0, "the take destroyed it");
    // The attacker restores the ciphertext from a backup: nothing opens it.
    std::fs::write(&file, &backup).unwrap();
    let err = ks.take_nonces(&slot).unwrap_err();
    assert!(matches!(err, KeystoreError::NoncesConsumed(_)), "{err}");
    // A superseded approval's nonces are destroyed the same way.
    let other = SessionId::random();
    keystore::commit(&ks, &d.shares[0], &other).unwrap();
    let slot = SecretSlot::nonces(&d.shares[0], &other);
    ks.discard_nonces(&slot).unwrap();
    ks.discard_nonces(&slot).unwrap();
    assert_eq!(nonce_keys(&s), 0);
    assert!(matches!(
        ks.take_nonces(&slot),
        Err(KeystoreError::NoncesConsumed(_))
    ));
    // A key whose ciphertext never reached the disk (a crash between the
    // two): rerunning the step replaces it; existing nonces are never
    // overwritten.
    let crashed = SessionId::random();
    keystore::commit(&ks, &d.shares[0], &crashed).unwrap();
    let slot = SecretSlot::nonces(&d.shares[0], &crashed);
    std::fs::remove_file(nonce_dir("t13-restore").join(format!("{}.gcm", slot.name()))).unwrap();
    keystore::commit(&ks, &d.shares[0], &crashed).unwrap();
    assert_eq!(nonce_keys(&s), 1);
    assert!(matches!(
        keystore::commit(&ks, &d.shares[0], &crashed),
        Err(KeystoreError::AlreadyExists(_))
    ));
    assert_eq!(nonce_keys(&s), 1);
    ks.take_nonces(&slot).unwrap();
    assert_eq!(nonce_keys(&s), 0);
}

#[test]
fn the_state_anchor_on_the_token_moves_only_by_compare_and_swap() {
    use wallet_core::keystore::{AuditHead, StateAnchor};
    let ks = provisioned("t16-anchor");
    assert_eq!(ks.anchor().unwrap(), StateAnchor::NEW);
    let a1 = StateAnchor::NEW
        .with_audit(AuditHead {
            seq: 3,
            hash: [7; 32],
        })
        .with_policy([9; 32]);
    ks.replace_anchor(&StateAnchor::NEW, &a1).unwrap();
    let err = ks
        .replace_anchor(&StateAnchor::NEW, &StateAnchor::NEW)
        .unwrap_err();
    assert!(matches!(err, KeystoreError::AnchorMoved { .. }), "{err}");
    drop(ks);
    // On the token, not in the host's files: a fresh keystore reads it back
    // even with its nonce directory gone.
    std::fs::remove_dir_all(nonce_dir("t16-anchor")).unwrap();
    let again = HsmKeystore::open(&token("t16-anchor"), &pin(), &nonce_dir("t16-anchor")).unwrap();
    assert_eq!(again.anchor().unwrap(), a1);
}

#[test]
fn decoy_objects_with_kuras_labels_are_refused() {
    let ks = provisioned("t14-decoy");
    drop(ks);
    let s = raw_session("t14-decoy");
    // A public AES key with the KEK's label, as anyone with access to the
    // token but no PIN could plant: its value is known to its planter.
    let decoy = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(cryptoki::object::KeyType::AES),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(KEK_LABEL.into()),
            Attribute::Value(vec![0x41; 32]),
        ])
        .unwrap();
    let err = HsmKeystore::open(&token("t14-decoy"), &pin(), &nonce_dir("t14-decoy")).unwrap_err();
    assert!(
        matches!(&err, HsmError::UnexpectedObject { object, .. } if object == KEK_LABEL),
        "{err}"
    );
    s.destroy_object(decoy).unwrap();
    // A public state object beside the real one.
    let decoy = s
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Application(hsm_bridge::STATE_APPLICATION.to_vec()),
            Attribute::Label(b"kura-state/v1/00".to_vec()),
            Attribute::Value(Vec::new()),
        ])
        .unwrap();
    let err = HsmKeystore::open(&token("t14-decoy"), &pin(), &nonce_dir("t14-decoy")).unwrap_err();
    assert!(matches!(err, HsmError::UnexpectedObject { .. }), "{err}");
    s.destroy_object(decoy).unwrap();
    HsmKeystore::open(&token("t14-decoy"), &pin(), &nonce_dir("t14-decoy")).unwrap();
}

#[test]
fn a_swapped_identity_public_key_fails_the_self_test() {
    let ks = provisioned("t18-swap");
    drop(ks);
    let s = raw_session("t18-swap");
    let original = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(hsm_bridge::IDENTITY_LABEL.into()),
        ])
        .unwrap()[0];
    let (_, other_private) = s
        .generate_key_pair(
            &cryptoki::mechanism::Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Verify(true),
                Attribute::EcParams(vec![
                    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                ]),
                Attribute::Label(hsm_bridge::IDENTITY_LABEL.into()),
            ],
            &[
                Attribute::Token(false),
                Attribute::Sign(true),
                Attribute::Label(b"someone else".to_vec()),
            ],
        )
        .unwrap();
    s.destroy_object(other_private).unwrap();
    s.destroy_object(original).unwrap();
    let err = HsmKeystore::open(&token("t18-swap"), &pin(), &nonce_dir("t18-swap")).unwrap_err();
    assert!(matches!(err, HsmError::SelfTest { .. }), "{err}");
}

#[test]
fn two_tokens_with_one_label_need_the_serial() {
    hsm();
    let err = HsmKeystore::open(&uri("t15-twin"), &pin(), &nonce_dir("t15-twin")).unwrap_err();
    let serials = match &err {
        HsmError::AmbiguousToken { serials, .. } => serials.clone(),
        other => panic!("expected AmbiguousToken, got {other:?}"),
    };
    assert!(err.to_string().contains("serial="), "{err}");
    let serial = serials.split(", ").next().unwrap();
    let first = uri("t15-twin").with_serial(serial);
    let ks = HsmKeystore::provision(&first, &pin(), &nonce_dir("t15-twin-a")).unwrap();
    assert_eq!(ks.token_serial(), serial);
    // The URI a home records names the serial; another serial is not it.
    let err = HsmKeystore::open(
        &uri("t15-twin").with_serial("no-such-serial"),
        &pin(),
        &nonce_dir("t15-twin-a"),
    )
    .unwrap_err();
    assert!(matches!(err, HsmError::TokenNotFound { .. }), "{err}");
    HsmKeystore::open(&first, &pin(), &nonce_dir("t15-twin-a")).unwrap();
}

#[test]
fn a_login_kura_did_not_make_is_refused_rather_than_trusted() {
    hsm();
    // Another user of the module in this process logs in first...
    let _s = raw_session("t17-foreign");
    // ...so the token would accept any PIN from Kura's second session.
    let err = HsmKeystore::provision(
        &token("t17-foreign"),
        &SecretString::from("not the PIN".to_owned()),
        &nonce_dir("t17-foreign"),
    )
    .unwrap_err();
    assert!(matches!(err, HsmError::ForeignLogin { .. }), "{err}");
}

#[test]
fn a_module_someone_else_could_replace_is_never_loaded() {
    hsm();
    // A disk writer edits the home's URI to load its own library, which
    // would be handed the PIN: a copy of the real module in a directory
    // others can write stands for it.
    let dir = std::env::temp_dir().join(format!("kura-evil-module-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let evil = dir.join("libevil.so");
    std::fs::copy(module(), &evil).unwrap();
    let u = Pkcs11Uri::parse(&format!(
        "pkcs11:token=t1-alice?module-path={}",
        evil.display()
    ))
    .unwrap();
    let err = HsmKeystore::open(&u, &pin(), &nonce_dir("t1-alice")).unwrap_err();
    assert!(matches!(err, HsmError::UntrustedModule { .. }), "{err}");
    assert!(
        err.to_string().contains("writable by group or others"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // The system's module passes.
    hsm_bridge::context::check_module_trusted(&module()).unwrap();
}
