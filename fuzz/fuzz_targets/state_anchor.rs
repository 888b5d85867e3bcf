//! The keystore's state anchor (read back from a token label or the
//! software keystore's state): a typed error or an anchor that round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wallet_core::keystore::StateAnchor;

fuzz_target!(|data: &[u8]| {
    if let Ok(anchor) = StateAnchor::from_bytes(data) {
        assert_eq!(anchor.to_bytes().as_slice(), data);
    }
});
