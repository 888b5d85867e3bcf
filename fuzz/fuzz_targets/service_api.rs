//! What the service parses from the network and the control socket: the
//! API's JSON bodies and answers, control-socket requests, certificate
//! fingerprints and `service-login` documents. Typed errors, never a panic;
//! what parses prints and parses again the same.
#![no_main]

use kura_service::api::{
    ChallengeRequest, ErrorBody, ServiceLogin, WithdrawalDocuments, WithdrawalStatus, WorkPage,
};
use kura_service::daemon::control::{ControlRequest, ControlResponse};
use kura_service::CertFingerprint;
use libfuzzer_sys::fuzz_target;
use wallet_core::Signed;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<ChallengeRequest>(data);
    let _ = serde_json::from_slice::<ErrorBody>(data);
    let _ = serde_json::from_slice::<WorkPage>(data);
    let _ = serde_json::from_slice::<WithdrawalStatus>(data);
    let _ = serde_json::from_slice::<WithdrawalDocuments>(data);
    let _ = serde_json::from_slice::<ControlResponse>(data);
    if let Ok(request) = serde_json::from_slice::<ControlRequest>(data) {
        let again = serde_json::to_vec(&request).expect("a parsed request prints");
        serde_json::from_slice::<ControlRequest>(&again).expect("and parses again");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(pin) = text.parse::<CertFingerprint>() {
            assert_eq!(pin.to_string(), text, "one spelling of a fingerprint");
        }
    }
    if let Ok(doc) = wallet_core::format::decode::<Signed<ServiceLogin>>(data) {
        let _ = doc.body.verify(&doc.group);
    }
});
