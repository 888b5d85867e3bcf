//! PKCS#11 URIs as they come from a home's configuration or the command
//! line: a typed error or a URI that prints and parses back the same.
#![no_main]

use hsm_bridge::Pkcs11Uri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(uri) = Pkcs11Uri::parse(text) {
            let again = Pkcs11Uri::parse(&uri.to_string()).expect("a printed URI parses");
            assert_eq!(again, uri);
        }
    }
});
