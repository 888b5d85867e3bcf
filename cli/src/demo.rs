//! `kura demo`: a whole 2-of-3 ceremony, every round a file under `--out`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use age::secrecy::SecretString;
use anyhow::{bail, Context};
use bitcoin::Network;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use wallet_core::format;
use wallet_core::frost_core::Identifier;
use wallet_core::keygen::dkg::{self, Round2Message};
use wallet_core::keystore::{
    self, Keystore, SessionId, SoftwareKeystore, StoredSignError, WorkFactor,
};
use wallet_core::messages::{
    ceremony_id, dkg_round2_context, CommitmentsMessage, DkgRound1Document, DkgRound2Document,
    PackageMessage, ShareMessage, SignatureMessage,
};
use wallet_core::signing::{self, SignError};
use wallet_core::{KeyShare, Label, PublicGroup, Secp256k1Tr};

use crate::refused;

type Suite = Secp256k1Tr;

struct Signer {
    label: Label,
    id: Identifier<Suite>,
    keystore: SoftwareKeystore,
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn step(json: bool, text: &str) {
    if !json {
        println!("• {text}");
    }
}

pub fn run(out: &Path, json: bool) -> anyhow::Result<()> {
    if out.exists()
        && fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not empty; choose a new directory for the demo",
            out.display()
        );
    }
    for sub in ["signers", "dkg", "signing", "attack"] {
        fs::create_dir_all(out.join(sub))
            .with_context(|| format!("cannot create {}", out.display()))?;
    }

    // 1. Three signers, each with an encrypted keystore and identity key.
    step(
        json,
        "creating three signers with encrypted keystores (age, scrypt)…",
    );
    let mut signers = Vec::new();
    let mut passphrases = Vec::new();
    for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
        let home = out.join("signers").join(name);
        // Throwaway passphrases, held only in this process: the demo's
        // keystores are sealed for good when it exits.
        let mut pw = [0u8; 24];
        OsRng.fill_bytes(&mut pw);
        let passphrase = SecretString::from(hex::encode(pw));
        let keystore =
            SoftwareKeystore::create(&home.join("keystore"), &passphrase, WorkFactor::Default)
                .with_context(|| format!("cannot create {name}'s keystore"))?;
        write(
            &home.join("identity.pub"),
            format!(
                "{}\n",
                keystore.identity_public_key().context("identity key")?
            )
            .as_bytes(),
        )?;
        let id =
            Identifier::try_from(u16::try_from(i + 1).unwrap_or(u16::MAX)).context("identifier")?;
        signers.push(Signer {
            label: Label::new(*name).context("label")?,
            id,
            keystore,
        });
        passphrases.push(passphrase);
    }

    // 2. DKG, round files on disk; round-2 shares sealed to each recipient.
    let roster: BTreeMap<_, _> = signers.iter().map(|s| (s.id, s.label.clone())).collect();
    let mut nonce = [0u8; 32];
    OsRng.fill_bytes(&mut nonce);
    let ceremony = ceremony_id::<Suite>(2, &roster, &nonce);
    step(
        json,
        &format!(
            "DKG ceremony {} (2-of-3): round 1 broadcasts…",
            ceremony.short()
        ),
    );
    let mut r1_secrets = Vec::new();
    let mut r1_messages = Vec::new();
    for s in &signers {
        let (secret, message) = dkg::part1::<Suite, _>(s.id, s.label.clone(), 3, 2, &mut OsRng)
            .context("DKG part 1")?;
        let doc = format::encode(&ceremony, &DkgRound1Document { message })?;
        write(
            &out.join("dkg").join(format!("round1-{}.json", s.label)),
            &doc,
        )?;
        r1_secrets.push(secret);
    }
    for s in &signers {
        let bytes = fs::read(out.join("dkg").join(format!("round1-{}.json", s.label)))
            .context("read round 1")?;
        r1_messages
            .push(format::decode_for_group::<DkgRound1Document<Suite>>(&bytes, &ceremony)?.message);
    }
    step(
        json,
        "round 2: each share sealed to its recipient's identity key…",
    );
    let mut r2_secrets = Vec::new();
    for (s, secret) in signers.iter().zip(r1_secrets) {
        let (secret2, messages) = dkg::part2(secret, &r1_messages).context("DKG part 2")?;
        for m in messages {
            let to = signers.iter().find(|x| x.id == m.to).context("recipient")?;
            let plain = serde_json::to_vec(&m).context("encode round 2")?;
            let sealed = to
                .keystore
                .identity_public_key()?
                .seal(
                    &plain,
                    &dkg_round2_context(&ceremony, &m.from, &m.to),
                    &mut OsRng,
                )
                .context("seal")?;
            let doc = format::encode(
                &ceremony,
                &DkgRound2Document::<Suite> {
                    from: m.from,
                    to: m.to,
                    sealed,
                },
            )?;
            write(
                &out.join("dkg")
                    .join(format!("round2-{}-to-{}.json", s.label, to.label)),
                &doc,
            )?;
        }
        r2_secrets.push(secret2);
    }
    let mut group: Option<PublicGroup<Suite>> = None;
    let mut shares = Vec::new();
    for (s, secret2) in signers.iter().zip(&r2_secrets) {
        let mut received = Vec::new();
        for from in signers.iter().filter(|x| x.id != s.id) {
            let path = out
                .join("dkg")
                .join(format!("round2-{}-to-{}.json", from.label, s.label));
            let doc =
                format::decode_for_group::<DkgRound2Document<Suite>>(&fs::read(&path)?, &ceremony)?;
            if doc.to != s.id || doc.from != from.id {
                bail!(
                    "{} is not addressed from {} to {}",
                    path.display(),
                    from.label,
                    s.label
                );
            }
            let plain = s.keystore.open_sealed(
                &doc.sealed,
                &dkg_round2_context(&ceremony, &doc.from, &doc.to),
            )?;
            let m: Round2Message<Suite> =
                serde_json::from_slice(plain.expose()).context("round 2 message")?;
            received.push(m);
        }
        let (share, g) = dkg::part3(secret2, &r1_messages, &received).context("DKG part 3")?;
        keystore::put_share(&s.keystore, &share)?;
        if let Some(prev) = &group {
            if prev != &g {
                return Err(refused("participants derived different groups"));
            }
        }
        group = Some(g);
        shares.push(share);
    }
    let group = group.context("no group")?;
    write(&out.join("group.json"), &group.to_document()?)?;
    let taproot = group.taproot();
    let address = taproot.address(Network::Regtest);
    step(
        json,
        &format!("group {} ready: address {address}", group.id().short()),
    );

    // 3. Signing: alice and carol sign with persisted, take-once nonces.
    let message: [u8; 32] = Sha256::digest(b"kura demo: withdrawal sighash stand-in").into();
    let session = SessionId::random();
    let chosen = [0usize, 2];
    step(
        json,
        "signing session: alice and carol commit (nonces stored encrypted)…",
    );
    let mut commitments = BTreeMap::new();
    for &i in &chosen {
        let (s, share) = signer_and_share(&signers, &shares, i)?;
        let c = keystore::commit(&s.keystore, share, &session)?;
        let doc = format::encode(
            group.id(),
            &CommitmentsMessage {
                session,
                participant: s.id,
                commitments: c,
            },
        )?;
        write(
            &out.join("signing")
                .join(format!("commitments-{}.json", s.label)),
            &doc,
        )?;
        commitments.insert(s.id, c);
    }
    let package =
        signing::build_package(&group, commitments.clone(), &message).context("package")?;
    let package_doc = format::encode(group.id(), &PackageMessage::from_package(session, &package))?;
    write(&out.join("signing").join("package.json"), &package_doc)?;

    // 4. The attack first: a coordinator swaps the message. Signers refuse
    //    before their nonces are touched.
    step(
        json,
        "attack: the coordinator sends a package for a different message…",
    );
    let mut tampered = PackageMessage::from_package(session, &package);
    tampered.message = Sha256::digest(b"pay the attacker").to_vec();
    let tampered_doc = format::encode(group.id(), &tampered)?;
    write(
        &out.join("attack").join("package-tampered.json"),
        &tampered_doc,
    )?;
    let mut refusals = Vec::new();
    for &i in &chosen {
        let (s, share) = signer_and_share(&signers, &shares, i)?;
        let pkg = format::decode_for_group::<PackageMessage<Suite>>(&tampered_doc, group.id())?
            .to_package()?;
        match keystore::sign(
            &s.keystore,
            share,
            &group,
            &session,
            &pkg,
            &message,
            commitments.get(&s.id).context("own commitments")?,
        ) {
            Err(StoredSignError::Refused(e @ SignError::MessageMismatch { .. })) => {
                step(json, &format!("  {} refused: {e}", s.label));
                refusals.push(format!("{}: {e}", s.label));
            }
            Ok(_) => return Err(refused(format!("{} signed a tampered package", s.label))),
            Err(e) => bail!("{} failed unexpectedly: {e}", s.label),
        }
    }
    write(
        &out.join("attack").join("refusals.txt"),
        (refusals.join("\n") + "\n").as_bytes(),
    )?;

    // 5. The honest package: shares, aggregation, verification.
    step(json, "honest package: shares, aggregation, verification…");
    let mut sig_shares = BTreeMap::new();
    for &i in &chosen {
        let (s, share) = signer_and_share(&signers, &shares, i)?;
        let pkg = format::decode_for_group::<PackageMessage<Suite>>(&package_doc, group.id())?
            .to_package()?;
        let sig_share = keystore::sign(
            &s.keystore,
            share,
            &group,
            &session,
            &pkg,
            &message,
            commitments.get(&s.id).context("own commitments")?,
        )
        .map_err(|e| refused(format!("{}: {e}", s.label)))?;
        let doc = format::encode(
            group.id(),
            &ShareMessage {
                session,
                participant: s.id,
                share: sig_share,
            },
        )?;
        write(
            &out.join("signing").join(format!("share-{}.json", s.label)),
            &doc,
        )?;
        sig_shares.insert(s.id, sig_share);
    }
    let signature =
        signing::aggregate(&group, &package, &sig_shares).map_err(|e| refused(e.to_string()))?;
    write(
        &out.join("signing").join("signature.json"),
        &format::encode(
            group.id(),
            &SignatureMessage {
                session,
                message: message.to_vec(),
                signature,
            },
        )?,
    )?;
    let sig_bytes = signature.serialize().context("signature encoding")?;
    let libsecp_ok = libsecp_verify(
        &taproot.output_key().to_x_only_public_key(),
        &message,
        &sig_bytes,
    );
    if !libsecp_ok {
        return Err(refused("libsecp256k1 rejected the group signature"));
    }
    // A replay of the same session is refused: the nonces are gone.
    let (s0, share0) = signer_and_share(&signers, &shares, 0)?;
    let replay = keystore::sign(
        &s0.keystore,
        share0,
        &group,
        &session,
        &package,
        &message,
        commitments.get(&s0.id).context("own commitments")?,
    );
    if replay.is_ok() {
        return Err(refused("a nonce was used twice"));
    }

    if json {
        let summary = serde_json::json!({
            "type": "demo",
            "data": {
                "group": group.id().to_string(),
                "suite": "secp256k1-tr",
                "threshold": "2-of-3",
                "address_regtest": address.to_string(),
                "internal_key": taproot.internal_key().to_string(),
                "message": hex::encode(message),
                "signature": hex::encode(&sig_bytes),
                "signers": ["alice", "carol"],
                "libsecp256k1_verified": libsecp_ok,
                "attack_refused": refusals,
                "out": out.display().to_string(),
            }
        });
        println!("{summary}");
    } else {
        println!();
        println!(
            "group        {} (secp256k1-tr, 2-of-3: alice, bob, carol)",
            group.id()
        );
        println!("address      {address} (regtest)");
        println!("signed by    alice, carol");
        println!("signature    {}", hex::encode(&sig_bytes));
        println!("verified     libsecp256k1 BIP340 under the output key: ok");
        println!("attack       tampered package refused by both signers");
        println!("files        {}", out.display());
    }
    Ok(())
}

fn signer_and_share<'a>(
    signers: &'a [Signer],
    shares: &'a [KeyShare<Suite>],
    i: usize,
) -> anyhow::Result<(&'a Signer, &'a KeyShare<Suite>)> {
    Ok((
        signers.get(i).context("signer")?,
        shares.get(i).context("share")?,
    ))
}

fn libsecp_verify(key: &bitcoin::secp256k1::XOnlyPublicKey, msg: &[u8; 32], sig: &[u8]) -> bool {
    use bitcoin::secp256k1::{schnorr, Message, Secp256k1};
    let Ok(sig) = schnorr::Signature::from_slice(sig) else {
        return false;
    };
    Secp256k1::verification_only()
        .verify_schnorr(&sig, &Message::from_digest(*msg), key)
        .is_ok()
}
