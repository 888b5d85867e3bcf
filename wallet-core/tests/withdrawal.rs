//! PSBT review and finalization, checked by Bitcoin Core's consensus code.

use bitcoin::{Amount, Network, TxOut};
use kura_testkit::*;
use wallet_core::withdrawal::finalize::{finalize, FinalizeError};
use wallet_core::withdrawal::review::{parse_psbt, review, Destination, ReviewError};
use wallet_core::Secp256k1Tr;

#[test]
fn a_2_of_3_taproot_withdrawal_passes_bitcoin_core_consensus() {
    let d = deal::<Secp256k1Tr>(2, 3, 21);
    let keys = d.group.taproot();
    let xpub = d.group.xpub();
    let own = keys.script_pubkey();
    let coins = [coin(&own, 150_000, 1), coin(&own, 60_000, 2)];
    let dest = outside_address(9);
    let mut p = psbt(
        &coins,
        vec![
            TxOut {
                value: Amount::from_sat(120_000),
                script_pubkey: dest.script_pubkey(),
            },
            TxOut {
                value: Amount::from_sat(88_000),
                script_pubkey: own.clone(),
            },
        ],
    );
    let p2 = parse_psbt(&p.to_string()).unwrap();
    let summary = review(&p2, &xpub, Network::Regtest).unwrap();
    assert_eq!(summary.fee, Amount::from_sat(2_000));
    assert_eq!(summary.amount_paid(), Amount::from_sat(120_000));
    assert_eq!(summary.amount_leaving(), Amount::from_sat(122_000));
    assert_eq!(
        summary.outputs[0].destination,
        Destination::Address(dest.clone())
    );
    assert!(summary.outputs[1].is_change && !summary.outputs[0].is_change);
    // 2 key-path inputs, 2 P2TR outputs: 211.5 → 212 vB when signed.
    assert_eq!(summary.vsize, 212);

    let sigs: Vec<_> = summary
        .sighashes()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            sign_with(
                &d.group,
                &[&d.shares[0], &d.shares[2]],
                m.as_bytes(),
                i as u64,
            )
            .unwrap()
        })
        .collect();
    let tx = finalize(&mut p, &sigs, &xpub, Network::Regtest).unwrap();
    assert_eq!(tx.compute_txid(), summary.txid);
    assert_eq!(tx.vsize() as u64, summary.vsize);
    let spent: Vec<_> = coins.iter().map(|(_, o)| o.clone()).collect();
    consensus_verify(&tx, &spent).unwrap();

    // The same signatures on swapped inputs fail, in finalize and in consensus.
    let mut swapped = psbt(&coins, p2.unsigned_tx.output.clone());
    let reversed = vec![sigs[1], sigs[0]];
    assert!(matches!(
        finalize(&mut swapped, &reversed, &xpub, Network::Regtest),
        Err(FinalizeError::InvalidSignature { input: 0 })
    ));
    let mut bad = tx.clone();
    bad.input.swap(0, 1);
    let mut spent_swapped = spent.clone();
    spent_swapped.swap(0, 1);
    // Swapping inputs changes every sighash: consensus refuses.
    assert!(consensus_verify(&bad, &spent_swapped).is_err());
    // With an altered spent amount, Core refuses (BIP341 commits to amounts).
    let mut lied = spent.clone();
    lied[0].value = Amount::from_sat(150_001);
    assert!(consensus_verify(&tx, &lied).is_err());
}

#[test]
fn review_refuses_what_it_must() {
    let d = deal::<Secp256k1Tr>(2, 3, 22);
    let keys = d.group.taproot();
    let xpub = d.group.xpub();
    let own = keys.script_pubkey();
    let out = |v| TxOut {
        value: Amount::from_sat(v),
        script_pubkey: outside_address(3).script_pubkey(),
    };

    // A coin that is not the group's.
    let foreign = coin(&outside_address(4).script_pubkey(), 50_000, 3);
    let p = psbt(&[coin(&own, 50_000, 4), foreign], vec![out(90_000)]);
    assert!(matches!(
        review(&p, &xpub, Network::Regtest),
        Err(ReviewError::ForeignInput { input: 1, .. })
    ));

    // A missing witness_utxo.
    let mut p = psbt(&[coin(&own, 50_000, 5)], vec![out(40_000)]);
    p.inputs[0].witness_utxo = None;
    assert!(matches!(
        review(&p, &xpub, Network::Regtest),
        Err(ReviewError::MissingWitnessUtxo { input: 0 })
    ));

    // SIGHASH_NONE, SINGLE and ANYONECANPAY variants.
    for ty in [
        bitcoin::TapSighashType::None,
        bitcoin::TapSighashType::Single,
        bitcoin::TapSighashType::AllPlusAnyoneCanPay,
        bitcoin::TapSighashType::NonePlusAnyoneCanPay,
        bitcoin::TapSighashType::SinglePlusAnyoneCanPay,
    ] {
        let mut p = psbt(&[coin(&own, 50_000, 6)], vec![out(40_000)]);
        p.inputs[0].sighash_type = Some(ty.into());
        assert!(
            matches!(
                review(&p, &xpub, Network::Regtest),
                Err(ReviewError::UnsupportedSighash { input: 0, .. })
            ),
            "{ty}"
        );
    }
    // SIGHASH_ALL is accepted and changes the sighash.
    let p = psbt(&[coin(&own, 50_000, 7)], vec![out(40_000)]);
    let default = review(&p, &xpub, Network::Regtest).unwrap();
    let mut p_all = p.clone();
    p_all.inputs[0].sighash_type = Some(bitcoin::TapSighashType::All.into());
    let all = review(&p_all, &xpub, Network::Regtest).unwrap();
    assert_ne!(default.inputs[0].sighash, all.inputs[0].sighash);

    // Outputs above inputs; the same coin twice; no outputs; garbage.
    let p = psbt(&[coin(&own, 50_000, 8)], vec![out(50_001)]);
    assert!(matches!(
        review(&p, &xpub, Network::Regtest),
        Err(ReviewError::NegativeFee { .. })
    ));
    let c = coin(&own, 50_000, 9);
    let p = psbt(&[c.clone(), c], vec![out(40_000)]);
    assert!(matches!(
        review(&p, &xpub, Network::Regtest),
        Err(ReviewError::DuplicateInput { input: 1, .. })
    ));
    let p = psbt(&[coin(&own, 50_000, 10)], vec![]);
    assert!(matches!(
        review(&p, &xpub, Network::Regtest),
        Err(ReviewError::NoOutputs)
    ));
    assert!(matches!(
        parse_psbt("cHNidP8BAAoCAAAAAA=="),
        Err(ReviewError::Malformed(_))
    ));
    assert!(matches!(
        parse_psbt("not base64 at all"),
        Err(ReviewError::Malformed(_))
    ));

    // A non-standard output script is shown as such.
    let weird = TxOut {
        value: Amount::from_sat(1_000),
        script_pubkey: bitcoin::ScriptBuf::from_bytes(vec![0x6a, 0x01, 0x42]),
    };
    let p = psbt(&[coin(&own, 50_000, 11)], vec![weird]);
    let s = review(&p, &xpub, Network::Regtest).unwrap();
    assert_eq!(
        s.outputs[0].destination,
        Destination::NonStandard {
            script: bitcoin::ScriptBuf::from_hex("6a0142").unwrap()
        }
    );
}

#[test]
fn an_all_sighash_input_finalizes_with_a_65_byte_signature() {
    let d = deal::<Secp256k1Tr>(2, 3, 23);
    let keys = d.group.taproot();
    let xpub = d.group.xpub();
    let own = keys.script_pubkey();
    let coins = [coin(&own, 80_000, 12)];
    let mut p = psbt(
        &coins,
        vec![TxOut {
            value: Amount::from_sat(79_000),
            script_pubkey: outside_address(5).script_pubkey(),
        }],
    );
    p.inputs[0].sighash_type = Some(bitcoin::TapSighashType::All.into());
    let summary = review(&p, &xpub, Network::Regtest).unwrap();
    let sig = sign_with(
        &d.group,
        &[&d.shares[1], &d.shares[2]],
        summary.inputs[0].sighash.as_ref(),
        1,
    )
    .unwrap();
    let tx = finalize(&mut p, &[sig], &xpub, Network::Regtest).unwrap();
    assert_eq!(tx.input[0].witness.nth(0).unwrap().len(), 65);
    consensus_verify(&tx, &[coins[0].1.clone()]).unwrap();
}
