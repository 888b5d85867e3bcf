//! A signer's policy file: a typed error or a policy, never a panic; a
//! policy that parses has a digest and canonical form that parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wallet_core::policy::Policy;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(policy) = Policy::from_toml(text) {
            let _ = policy.digest();
            assert!(serde_json::from_slice::<serde_json::Value>(policy.canonical_json()).is_ok());
        }
    }
});
