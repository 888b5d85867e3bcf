//! Deposit addresses with the real `kura` binary: the descriptor and the
//! addresses it prints equal an outside implementation's (`miniscript`), and
//! a withdrawal of coins at derived addresses, from a PSBT without key
//! origins, goes through every role's command and passes Bitcoin Core's
//! consensus code.

mod common;

use std::str::FromStr;

use bitcoin::{Address, Amount, Network, TxOut};
use common::*;
use miniscript::descriptor::{Descriptor, DescriptorPublicKey};

fn address(env: &Env, args: &[&str]) -> String {
    let mut all = vec![
        "wallet",
        "address",
        "--group",
        "group/group.json",
        "--network",
        "regtest",
    ];
    all.extend(args);
    env.kura(&all).ok().stdout.trim().to_owned()
}

#[test]
fn deposits_at_derived_addresses_are_withdrawn_through_the_file_ceremony() {
    let mut env = Env::new();
    let (group_addr, exchange) = env.setup(false);

    let d = env
        .kura(&[
            "--json",
            "wallet",
            "descriptor",
            "--group",
            "group/group.json",
            "--network",
            "regtest",
        ])
        .ok()
        .json();
    let multipath = d["data"]["descriptor"].as_str().unwrap();
    assert!(multipath.contains("/<0;1>/*)#"), "{multipath}");
    let chains = Descriptor::<DescriptorPublicKey>::from_str(multipath)
        .unwrap()
        .into_single_descriptors()
        .unwrap();
    for (chain, flag) in [(0, None), (1, Some("--change"))] {
        for index in [0u32, 3, 250] {
            let i = index.to_string();
            let mut args = vec!["--index", i.as_str()];
            args.extend(flag);
            let theirs = chains[chain]
                .at_derivation_index(index)
                .unwrap()
                .address(Network::Regtest)
                .unwrap();
            assert_eq!(address(&env, &args), theirs.to_string(), "{chain}/{index}");
        }
        let single = env
            .kura(&[
                "wallet",
                "descriptor",
                "--group",
                "group/group.json",
                "--network",
                "regtest",
                "--chain",
                if chain == 0 { "receive" } else { "change" },
            ])
            .ok()
            .stdout;
        assert_eq!(
            Descriptor::<DescriptorPublicKey>::from_str(single.trim()).unwrap(),
            chains[chain]
        );
    }
    // Without an index: the group key's own address, as before.
    assert_eq!(address(&env, &[]), group_addr);

    // Two deposits (index 3 and 250), change to change address 2; the PSBT
    // carries no derivation, as a wallet without key origins writes it.
    let script = |a: &str| {
        a.parse::<Address<_>>()
            .unwrap()
            .assume_checked()
            .script_pubkey()
    };
    let coins = [
        kura_testkit::coin(&script(&address(&env, &["--index", "3"])), 600_000, 7),
        kura_testkit::coin(&script(&address(&env, &["--index", "250"])), 400_000, 8),
    ];
    let change = address(&env, &["--index", "2", "--change"]);
    let outputs = vec![
        TxOut {
            value: Amount::from_sat(300_000),
            script_pubkey: script(&exchange),
        },
        TxOut {
            value: Amount::from_sat(698_000),
            script_pubkey: script(&change),
        },
    ];
    let p = kura_testkit::psbt(&coins, outputs);
    std::fs::write(env.p("hd.psbt"), p.to_string()).unwrap();
    let req = env
        .kura_as(
            "ops",
            &[
                "--json",
                "withdraw",
                "request",
                "--home",
                "ops",
                "--group",
                "group/group.json",
                "--psbt",
                "hd.psbt",
                "--id",
                "hd-1",
                "--out",
                "hd.request.json",
            ],
        )
        .ok()
        .json();
    assert_eq!(req["data"]["filled_inputs"][1]["path"], "m/0/250");
    assert_eq!(req["data"]["filled_outputs"][0]["path"], "m/1/2");

    let review = env
        .kura_as(
            "alice",
            &[
                "--json",
                "sign",
                "review",
                "--home",
                "alice",
                "hd.request.json",
            ],
        )
        .ok()
        .json();
    assert_eq!(review["data"]["inputs"][0]["path"], "m/0/3");
    assert_eq!(review["data"]["outputs"][1]["path"], "m/1/2");
    assert_eq!(review["data"]["outputs"][1]["change"], true);
    let shown = env
        .kura_as(
            "alice",
            &["sign", "review", "--home", "alice", "hd.request.json"],
        )
        .ok()
        .stdout;
    assert!(shown.contains("from key m/0/250"), "{shown}");

    for name in ["alice", "bob"] {
        env.kura_as(
            name,
            &[
                "sign",
                "approve",
                "--home",
                name,
                "hd.request.json",
                "--out",
                &format!("hd.{name}.approval.json"),
                "--yes",
            ],
        )
        .ok();
    }
    env.kura(&[
        "coordinate",
        "package",
        "--group",
        "group/group.json",
        "--roster",
        "group/roster.json",
        "--network",
        "regtest",
        "hd.request.json",
        "hd.alice.approval.json",
        "hd.bob.approval.json",
        "--out",
        "hd.packages.json",
    ])
    .ok();
    for name in ["alice", "bob"] {
        env.kura_as(
            name,
            &[
                "sign",
                "share",
                "--home",
                name,
                "hd.request.json",
                "hd.packages.json",
                "--out",
                &format!("hd.{name}.shares.json"),
            ],
        )
        .ok();
    }
    env.kura(&[
        "coordinate",
        "finalize",
        "--group",
        "group/group.json",
        "--roster",
        "group/roster.json",
        "--network",
        "regtest",
        "hd.request.json",
        "hd.packages.json",
        "hd.alice.shares.json",
        "hd.bob.shares.json",
        "--psbt-out",
        "hd.final.psbt",
        "--tx-out",
        "hd.tx",
    ])
    .ok();
    let tx = tx_from_hex(&std::fs::read_to_string(env.p("hd.tx")).unwrap());
    let spent: Vec<TxOut> = coins.iter().map(|(_, o)| o.clone()).collect();
    consensus_verify(&tx, &spent).unwrap();
}
