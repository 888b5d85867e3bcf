//! A quorum change with the real `kura` binary: a 2-of-3 group becomes
//! 3-of-4 (dave joins, the threshold rises) with the same address; one
//! member's activation is killed with SIGKILL and completed by running it
//! again; the new quorum (with dave) signs a withdrawal that Bitcoin Core's
//! consensus code accepts, and two signers, enough before, are no longer.

mod common;

use common::*;

fn ok_json(env: &Env, who: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend(args);
    env.kura_as(who, &all).ok().json()
}

/// The fingerprint of `who`'s identity card, as that member reads it out.
fn card_fingerprint(env: &Env, who: &str) -> String {
    let card = format!("{who}/identity.json");
    env.kura(&["--json", "fingerprint", "--card", &card])
        .ok()
        .json()["data"]["cards"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_two_of_three_group_becomes_three_of_four_and_keeps_its_address() {
    let mut env = Env::new();
    let (group_addr, exchange) = env.setup(false);
    std::fs::write(env.p("dave.pass"), "passphrase of dave\n").unwrap();
    env.kura(&[
        "signer",
        "init",
        "--home",
        "dave",
        "--label",
        "dave",
        "--software",
        "--passphrase-file",
        "dave.pass",
    ])
    .ok();

    let cards = ["alice", "bob", "carol", "dave"].map(|n| format!("{n}/identity.json"));
    let mut propose = vec![
        "reshare",
        "propose",
        "--home",
        "alice",
        "-t",
        "3",
        "--dealer",
        "alice",
        "--dealer",
        "bob",
        "--out",
        "reshare.json",
    ];
    for c in &cards {
        propose.extend(["--card", c.as_str()]);
    }
    let p = ok_json(&env, "alice", &propose);
    assert_eq!(p["data"]["joining"][0], "dave");
    let fingerprint = p["data"]["group_fingerprint"].as_str().unwrap().to_owned();

    // carol is not a dealer: she cannot deal.
    let r = env.kura_as(
        "carol",
        &[
            "reshare",
            "deal",
            "--home",
            "carol",
            "reshare.json",
            "--out",
            "deal-carol.json",
        ],
    );
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("dealer"), "{}", r.stderr);
    // dave reads his card's fingerprint out to each dealer.
    let dave_fp = card_fingerprint(&env, "dave");
    let deal = |who: &str, extra: &[&str]| {
        let out = format!("deal-{who}.json");
        let mut args = vec![
            "reshare",
            "deal",
            "--home",
            who,
            "reshare.json",
            "--out",
            &out,
        ];
        args.extend(extra);
        env.kura_as(who, &args)
    };
    // Without the joining card's fingerprint, with a wrong one, or without
    // the operator's yes (no terminal): no deal.
    let r = deal("bob", &["--yes"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--joining-card"), "{}", r.stderr);
    let alice_fp = card_fingerprint(&env, "alice");
    let r = deal("bob", &["--joining-card", &alice_fp, "--yes"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not confirmed"), "{}", r.stderr);
    let r = deal("bob", &["--joining-card", &dave_fp]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("without confirmation"), "{}", r.stderr);
    assert!(!env.p("deal-bob.json").exists());
    for d in ["alice", "bob"] {
        let r = deal(d, &["--joining-card", &dave_fp, "--yes"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        // The plan was shown.
        assert!(r.stderr.contains("2-of-3 becomes 3-of-4"), "{}", r.stderr);
        assert!(r.stderr.contains("joining:   dave"), "{}", r.stderr);
    }
    // A second deal for the same proposal: refused (the audit log says so).
    let r = env.kura_as(
        "bob",
        &[
            "reshare",
            "deal",
            "--home",
            "bob",
            "reshare.json",
            "--out",
            "deal-bob-2.json",
            "--joining-card",
            &dave_fp,
            "--yes",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!env.p("deal-bob-2.json").exists());
    assert!(
        r.stderr.contains("dealt for this reshare proposal already"),
        "{}",
        r.stderr
    );
    let r = env.kura(&["audit", "show", "--home", "bob"]);
    assert!(
        r.stdout.contains("reshare-dealt"),
        "{}{}",
        r.stdout,
        r.stderr
    );

    // A joining member without the group's fingerprint is refused; with a
    // wrong one too.
    let deals = ["--deal", "deal-alice.json", "--deal", "deal-bob.json"];
    let mut dave = vec![
        "reshare",
        "accept",
        "--home",
        "dave",
        "reshare.json",
        "--out",
        "receipt-dave.json",
    ];
    dave.extend(deals);
    let r = env.kura_as("dave", &dave);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let mut wrong = dave.clone();
    wrong.extend([
        "--group",
        "group/group.json",
        "--roster",
        "group/roster.json",
        "--fingerprint",
        "AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA",
    ]);
    let r = env.kura_as("dave", &wrong);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(!env.p("receipt-dave.json").exists());
    dave.extend([
        "--group",
        "group/group.json",
        "--roster",
        "group/roster.json",
        "--fingerprint",
        &fingerprint,
    ]);
    env.kura_as("dave", &dave).ok();
    for m in ["alice", "bob", "carol"] {
        let receipt = format!("receipt-{m}.json");
        let mut a = vec![
            "reshare",
            "accept",
            "--home",
            m,
            "reshare.json",
            "--out",
            &receipt,
        ];
        a.extend(deals);
        env.kura_as(m, &a).ok();
    }

    let receipts: Vec<String> = ["alice", "bob", "carol", "dave"]
        .iter()
        .flat_map(|m| ["--receipt".to_owned(), format!("receipt-{m}.json")])
        .collect();
    let activate = |m: &str| -> Vec<String> {
        let mut a: Vec<String> = ["reshare", "activate", "--home", m]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(receipts.iter().cloned());
        a.extend(env.unlock(m));
        a
    };
    // carol's activation is killed at the commit point, then run again.
    let a = activate("carol");
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let r = env.kura_with(&refs, &[("KURA_CRASH_AT", "GroupSwitched")]);
    assert_ne!(r.code, 0, "the activation was to be killed: {}", r.stderr);
    env.kura(&refs).ok();
    for m in ["alice", "bob", "dave"] {
        let a = activate(m);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let v = env.kura(&{
            let mut j = vec!["--json"];
            j.extend(&refs);
            j
        });
        let v = v.ok().json();
        assert_eq!(v["data"]["threshold"], 3);
        assert_eq!(v["data"]["members"], 4);
    }
    // Every member holds the same new group, at the same address.
    let new_group = std::fs::read(env.p("alice/group.json")).unwrap();
    for m in ["bob", "carol", "dave"] {
        assert_eq!(
            std::fs::read(env.p(&format!("{m}/group.json"))).unwrap(),
            new_group
        );
    }
    let addr = env
        .kura(&[
            "wallet",
            "address",
            "--group",
            "alice/group.json",
            "--network",
            "regtest",
        ])
        .ok()
        .stdout;
    assert_eq!(addr.trim(), group_addr);

    // dave installs the signers' policy, then dave, carol and alice sign.
    env.kura_as(
        "dave",
        &[
            "policy",
            "install",
            "--home",
            "dave",
            "--yes",
            "alice-policy.toml",
        ],
    )
    .ok();
    let (psbt_b64, coin) = psbt(
        &group_addr,
        &[(&exchange, 300_000), (&group_addr, 698_600)],
        3,
    );
    std::fs::write(env.p("w.psbt"), &psbt_b64).unwrap();
    env.kura_as(
        "ops",
        &[
            "withdraw",
            "request",
            "--home",
            "ops",
            "--group",
            "alice/group.json",
            "--psbt",
            "w.psbt",
            "--id",
            "after-reshare",
            "--out",
            "w.request.json",
        ],
    )
    .ok();
    for m in ["alice", "carol", "dave"] {
        env.kura_as(
            m,
            &[
                "sign",
                "approve",
                "--home",
                m,
                "w.request.json",
                "--out",
                &format!("w.{m}.approval.json"),
                "--yes",
            ],
        )
        .ok();
    }
    let package = |approvals: &[&str], out: &str| {
        let mut a = vec![
            "coordinate",
            "package",
            "--group",
            "alice/group.json",
            "--roster",
            "alice/roster.json",
            "--network",
            "regtest",
            "w.request.json",
        ];
        a.extend(approvals);
        a.extend(["--out", out]);
        env.kura(&a)
    };
    // Two approvals were a quorum before; they are not any more.
    let r = package(
        &["w.alice.approval.json", "w.carol.approval.json"],
        "w.two.json",
    );
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("needs 3"), "{}", r.stderr);
    package(
        &[
            "w.alice.approval.json",
            "w.carol.approval.json",
            "w.dave.approval.json",
        ],
        "w.packages.json",
    )
    .ok();
    for m in ["alice", "carol", "dave"] {
        env.kura_as(
            m,
            &[
                "sign",
                "share",
                "--home",
                m,
                "w.request.json",
                "w.packages.json",
                "--out",
                &format!("w.{m}.shares.json"),
            ],
        )
        .ok();
    }
    env.kura(&[
        "coordinate",
        "finalize",
        "--group",
        "alice/group.json",
        "--roster",
        "alice/roster.json",
        "--network",
        "regtest",
        "w.request.json",
        "w.packages.json",
        "w.alice.shares.json",
        "w.carol.shares.json",
        "w.dave.shares.json",
        "--psbt-out",
        "w.final.psbt",
        "--tx-out",
        "w.tx",
    ])
    .ok();
    let tx = tx_from_hex(&std::fs::read_to_string(env.p("w.tx")).unwrap());
    consensus_verify(&tx, std::slice::from_ref(&coin)).unwrap();
}
