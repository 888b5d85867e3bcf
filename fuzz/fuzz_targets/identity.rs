//! Identity keys, signatures and sealed messages from outside: typed errors,
//! and a sealed message never opens for the wrong bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wallet_core::identity::{IdentityPublicKey, IdentitySignature, SealedMessage, SoftwareIdentity};

fuzz_target!(|data: &[u8]| {
    static ME: std::sync::OnceLock<SoftwareIdentity> = std::sync::OnceLock::new();
    let me = ME.get_or_init(|| SoftwareIdentity::from_secret_bytes(&[9u8; 32]).expect("fixed"));
    let _ = SoftwareIdentity::from_secret_bytes(data);
    if let Ok(key) = IdentityPublicKey::from_sec1(data) {
        let _ = key.to_sec1();
    }
    if let Ok(sig) = IdentitySignature::from_bytes(data) {
        let _ = me.public_key().verify(b"kura fuzz", &sig);
    }
    let _ = IdentitySignature::from_raw_normalizing(data);
    if let Ok(sealed) = serde_json::from_slice::<SealedMessage>(data) {
        let _ = sealed.ephemeral_key();
        let _ = me.open(&sealed, b"kura fuzz context");
    }
});
