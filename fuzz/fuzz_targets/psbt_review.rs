//! PSBT decoding in every form Kura accepts (binary, base64, hex), then the
//! signer's review against a fixed group: a typed error or a summary.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wallet_core::{PublicGroup, Secp256k1Tr};

fuzz_target!(|data: &[u8]| {
    static GROUP: std::sync::OnceLock<PublicGroup<Secp256k1Tr>> = std::sync::OnceLock::new();
    let group = GROUP.get_or_init(|| {
        PublicGroup::from_document(include_bytes!(
            "../../test-vectors/known-answer/secp256k1-tr/group.json"
        ))
        .expect("the known-answer group parses")
    });
    if let Ok(psbt) = wallet_core::psbt::decode(data) {
        let keys = group.taproot();
        for network in [bitcoin::Network::Regtest, bitcoin::Network::Bitcoin] {
            let _ = wallet_core::withdrawal::review::review(&psbt, &keys, network);
        }
    }
});
