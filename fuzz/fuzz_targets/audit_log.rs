//! An audit log's bytes verified for a fixed owner: a typed error naming a
//! line, or entries, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wallet_core::identity::SoftwareIdentity;

fuzz_target!(|data: &[u8]| {
    static OWNER: std::sync::OnceLock<wallet_core::identity::IdentityPublicKey> =
        std::sync::OnceLock::new();
    let owner = OWNER.get_or_init(|| {
        SoftwareIdentity::from_secret_bytes(&[7u8; 32])
            .expect("a fixed secret")
            .public_key()
    });
    let _ = wallet_core::audit::verify(data, owner);
});
