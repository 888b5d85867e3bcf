//! PSBTs as other wallets write them: binary, base64 wrapped
//! or not, hex; version 2, empty, truncated and oversized input named.

use bitcoin::base64::Engine as _;
use bitcoin::{Amount, TxOut};
use kura_testkit::*;
use wallet_core::psbt::{self, PsbtError, MAX_PSBT_BYTES, MAX_PSBT_TEXT_BYTES};
use wallet_core::withdrawal::review::parse_psbt;

fn sample() -> bitcoin::psbt::Psbt {
    let own = outside_address(1).script_pubkey();
    psbt(
        &[coin(&own, 100_000, 1), coin(&own, 50_000, 2)],
        vec![TxOut {
            value: Amount::from_sat(149_000),
            script_pubkey: outside_address(2).script_pubkey(),
        }],
    )
}

fn wrap(text: &str, width: usize) -> String {
    text.as_bytes()
        .chunks(width)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn every_usual_form_decodes_to_the_same_psbt() {
    let p = sample();
    let binary = psbt::encode_binary(&p);
    let b64 = psbt::encode_base64(&p);
    let hex_lower = hex::encode(&binary);
    let forms: Vec<(&str, Vec<u8>)> = vec![
        ("binary", binary.clone()),
        ("base64", b64.clone().into_bytes()),
        ("base64 + newline", format!("{b64}\n").into_bytes()),
        ("base64 wrapped at 64", wrap(&b64, 64).into_bytes()),
        (
            "base64 wrapped at 76 (coreutils)",
            wrap(&b64, 76).into_bytes(),
        ),
        (
            "base64 CRLF",
            wrap(&b64, 76).replace('\n', "\r\n").into_bytes(),
        ),
        ("hex", hex_lower.clone().into_bytes()),
        ("HEX", hex_lower.to_uppercase().into_bytes()),
        ("hex wrapped", wrap(&hex_lower, 80).into_bytes()),
        ("  padded  ", format!("  \n{b64}  \n\n").into_bytes()),
        ("UTF-8 BOM", format!("\u{feff}{b64}\r\n").into_bytes()),
    ];
    for (name, bytes) in forms {
        assert_eq!(psbt::decode(&bytes).unwrap(), p, "{name}");
    }
    // The request field (base64) tolerates wrapping too.
    assert_eq!(parse_psbt(&wrap(&b64, 64)).unwrap(), p);
}

#[test]
fn version_2_is_named_not_supported_yet() {
    // A BIP370 PSBT: global tx version, counts, PSBT_GLOBAL_VERSION = 2; one
    // input (previous txid, index) and one output (amount, script).
    let mut v2 = b"psbt\xff".to_vec();
    let kv = |out: &mut Vec<u8>, key: &[u8], value: &[u8]| {
        out.push(key.len() as u8);
        out.extend_from_slice(key);
        out.push(value.len() as u8);
        out.extend_from_slice(value);
    };
    kv(&mut v2, &[0x02], &2u32.to_le_bytes());
    kv(&mut v2, &[0x04], &[1]);
    kv(&mut v2, &[0x05], &[1]);
    kv(&mut v2, &[0xfb], &2u32.to_le_bytes());
    v2.push(0);
    kv(&mut v2, &[0x0e], &[7u8; 32]);
    kv(&mut v2, &[0x0f], &0u32.to_le_bytes());
    v2.push(0);
    kv(&mut v2, &[0x03], &1000u64.to_le_bytes());
    kv(&mut v2, &[0x04], &[0x51]);
    v2.push(0);
    let err = psbt::decode(&v2).unwrap_err();
    assert_eq!(err, PsbtError::UnsupportedVersion(2));
    assert!(err.to_string().contains("not supported yet"), "{err}");
    let b64 = bitcoin::base64::engine::general_purpose::STANDARD.encode(&v2);
    assert_eq!(
        psbt::decode(b64.as_bytes()).unwrap_err(),
        PsbtError::UnsupportedVersion(2)
    );
    assert!(parse_psbt(&b64)
        .unwrap_err()
        .to_string()
        .contains("version 2"));
}

#[test]
fn empty_truncated_and_foreign_input_are_named() {
    assert_eq!(psbt::decode(b"").unwrap_err(), PsbtError::Empty);
    assert_eq!(psbt::decode(b" \n\t").unwrap_err(), PsbtError::Empty);
    assert_eq!(
        psbt::decode(b"hello world").unwrap_err(),
        PsbtError::UnknownEncoding
    );
    let binary = psbt::encode_binary(&sample());
    // Cut anywhere inside, the binary form is "truncated", never a panic and
    // never a PSBT.
    for cut in 1..binary.len() {
        assert_eq!(
            psbt::decode(&binary[..cut]).unwrap_err(),
            PsbtError::Truncated,
            "cut at {cut} of {}",
            binary.len()
        );
    }
    // Base64 cut on a 4-character boundary decodes to a truncated PSBT.
    let b64 = psbt::encode_base64(&sample());
    assert_eq!(
        psbt::decode(&b64.as_bytes()[..b64.len() / 8 * 4]).unwrap_err(),
        PsbtError::Truncated
    );
    assert!(matches!(
        psbt::decode(&b64.as_bytes()[..b64.len() - 3]).unwrap_err(),
        PsbtError::Base64(_)
    ));
    assert!(matches!(
        psbt::decode(b"70736274ffzz").unwrap_err(),
        PsbtError::Hex(_)
    ));
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    let mut big = b"psbt\xff".to_vec();
    big.resize(MAX_PSBT_BYTES + 1, 0);
    assert!(matches!(
        psbt::decode(&big),
        Err(PsbtError::TooLarge { .. })
    ));
    let text = vec![b'A'; MAX_PSBT_TEXT_BYTES + 1];
    assert!(matches!(
        psbt::decode(&text),
        Err(PsbtError::TooLarge { .. })
    ));
    let b64 = format!("cHNidP8{}", "A".repeat(MAX_PSBT_BYTES / 3 * 4 + 8));
    assert!(matches!(
        psbt::decode(b64.as_bytes()),
        Err(PsbtError::TooLarge { .. })
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_are_an_error_or_a_psbt_never_a_panic(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        prefix in 0usize..3,
    ) {
        let mut input = match prefix {
            0 => Vec::new(),
            1 => b"psbt\xff".to_vec(),
            _ => b"cHNidP8".to_vec(),
        };
        input.extend_from_slice(&bytes);
        let _ = psbt::decode(&input);
    }

    #[test]
    fn damaged_psbts_never_panic(cut in 0usize..400, at in 0usize..400, byte in proptest::prelude::any::<u8>()) {
        let mut bytes = psbt::encode_binary(&sample());
        let len = bytes.len();
        bytes[at % len] = byte;
        bytes.truncate(len - cut % len);
        let _ = psbt::decode(&bytes);
    }
}
