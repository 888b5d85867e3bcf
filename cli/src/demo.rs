//! `kura demo`: a whole 2-of-3 custody round on this machine, every round a
//! file under `--out`.
//!
//! Three signers (each on its own SoftHSM2 token when the module is
//! installed, else an encrypted software keystore), one requester, a DKG
//! with sealed round-2 shares, a regtest coin synthesised for the group's
//! address, a withdrawal PSBT to an allowlisted address with change,
//! review, two approvals, packages, shares and finalization — every input
//! verified by Bitcoin Core's consensus code — and then a coordinator that
//! swaps the destination, refused by the signers with the reason.
//!
//! The signer and requester folders are real homes (kura.json, keystore,
//! identity card; regtest): later `kura` commands continue from them. Their
//! throwaway passphrases and PINs are files (0600) under `DIR/secrets/`,
//! never arguments.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use age::secrecy::SecretString;
use anyhow::{bail, Context};
use bitcoin::{Amount, Network, TxOut};
use rand_core::{OsRng, RngCore};
use wallet_core::audit::AuditLog;
use wallet_core::ceremony::dkg::{self, Ceremony, Round1Document, Round2Document};
use wallet_core::ceremony::state::MemberState;
use wallet_core::ceremony::{IdentityCard, Role};
use wallet_core::format;
use wallet_core::frost_core::Identifier;
use wallet_core::identity::IdentityPublicKey;
use wallet_core::keystore::{Keystore, SoftwareKeystore, WorkFactor};
use wallet_core::policy::Policy;
use wallet_core::withdrawal::coordinator::{build_packages, finalize_withdrawal};
use wallet_core::withdrawal::request::{RequestId, Signed, WithdrawalRequest};
use wallet_core::withdrawal::review::review;
use wallet_core::withdrawal::signer::{Refusal, Signer};
use wallet_core::{KeyShare, Label, PublicGroup, Secp256k1Tr};

use crate::ctx::{now, print_line, Ctx};
use crate::error::refused;
use crate::home::{HomeConfig, KeystoreConfig};
use crate::network::NetworkArg;

// `kura demo`'s arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Directory for the ceremony's files (created; must be empty if it exists).
    #[arg(long, value_name = "DIR")]
    out: std::path::PathBuf,
    /// Then run the round again through the service: a coordinator over loopback HTTPS, a signer daemon per signer (one killed and restarted), a requester submitting, and a theft attempt refused by every daemon.
    #[arg(long)]
    service: bool,
}

impl DemoArgs {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        run(&self.out, ctx.json, self.service)
    }
}

type Suite = Secp256k1Tr;
const NETWORK: Network = Network::Regtest;

struct Participant {
    label: Label,
    id: Identifier<Suite>,
    keystore: std::sync::Arc<dyn Keystore>,
    home: std::path::PathBuf,
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn random_secret() -> SecretString {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    SecretString::from(hex::encode(b))
}

struct Output {
    json: bool,
}

impl Output {
    fn step(&self, text: &str) {
        if !self.json {
            // Progress only: a reader that went away is not a reason to stop.
            let _ = print_line(&format!("• {text}"));
        }
    }
}

/// A throwaway secret for one of the demo's keystores, written to
/// `DIR/secrets/NAME` (0600) so that later `kura` commands can unlock it
/// with `--passphrase-file` or `--pin-file`.
pub(crate) fn throwaway_secret(out: &Path, name: &str) -> anyhow::Result<SecretString> {
    use age::secrecy::ExposeSecret;
    let secret = random_secret();
    let dir = out.join("secrets");
    wallet_core::keystore::files::create_private_dir(&dir)?;
    crate::home::write_new(
        &dir.join(name),
        format!("{}\n", secret.expose_secret()).as_bytes(),
    )?;
    Ok(secret)
}

/// Makes `dir` a home: its kura.json (regtest) and identity card.
fn make_home(
    dir: &Path,
    role: Role,
    label: &Label,
    keystore: KeystoreConfig,
    key: IdentityPublicKey,
) -> anyhow::Result<()> {
    let config = HomeConfig {
        kura_home: 1,
        role,
        label: label.clone(),
        keystore,
        network: Some(NetworkArg::Regtest),
    };
    crate::home::write_new(&dir.join("kura.json"), &serde_json::to_vec_pretty(&config)?)?;
    write(
        &dir.join("identity.json"),
        &IdentityCard::new(label.clone(), role, key).to_json()?,
    )
}

/// Keystores for the three signers: SoftHSM2 tokens under `out/softhsm`
/// when the module is installed, software keystores otherwise.
type Stores = Vec<(std::sync::Arc<dyn Keystore>, KeystoreConfig)>;

fn keystores(out: &Path, names: &[&str], o: &Output) -> anyhow::Result<(Stores, &'static str)> {
    let mut stores: Stores = Vec::new();
    for name in names {
        wallet_core::keystore::files::create_private_dir(&out.join("signers").join(name))?;
    }
    let Some(module) = hsm_bridge::softhsm::module() else {
        o.step("no SoftHSM2 module found (apt-get install softhsm2): using encrypted software keystores instead");
        for name in names {
            let ks = SoftwareKeystore::create(
                &out.join("signers").join(name).join("keystore"),
                &throwaway_secret(out, &format!("{name}.pass"))?,
                WorkFactor::Default,
            )
            .with_context(|| format!("cannot create {name}'s keystore"))?;
            stores.push((std::sync::Arc::new(ks), KeystoreConfig::Software));
        }
        return Ok((stores, "software keystores (age, scrypt)"));
    };
    let softhsm = hsm_bridge::softhsm::SoftHsm::create_in(&out.join("softhsm"))
        .context("cannot set up SoftHSM2")?;
    softhsm.activate();
    let ctx = hsm_bridge::context::context(&module)?;
    for name in names {
        let label = format!("kura-{name}");
        // Throwaway PINs (and security officer PINs), in DIR/secrets/.
        let pin = throwaway_secret(out, &format!("{name}.pin"))?;
        let so_pin = throwaway_secret(out, &format!("{name}.so-pin"))?;
        hsm_bridge::softhsm::SoftHsm::init_token(&ctx, &label, &so_pin, &pin)?;
        let uri = hsm_bridge::Pkcs11Uri::parse(&format!(
            "pkcs11:token={label}?module-path={}",
            module.display()
        ))?;
        let ks = hsm_bridge::HsmKeystore::provision(
            &uri,
            &pin,
            &out.join("signers").join(name).join("nonces"),
        )?;
        // The home remembers this very token, as `signer init --hsm` does.
        let config = KeystoreConfig::Pkcs11 {
            uri: uri.with_serial(ks.token_serial()).to_string(),
        };
        stores.push((std::sync::Arc::new(ks), config));
    }
    Ok((
        stores,
        "one SoftHSM2 token each (config: softhsm/softhsm2.conf)",
    ))
}

fn run(out: &Path, json: bool, service: bool) -> anyhow::Result<()> {
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
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let o = Output { json };
    let names = ["alice", "bob", "carol"];

    // 1. Signers, each with its keystore and identity key.
    let (stores, keystore_kind) = keystores(out, &names, &o)?;
    o.step(&format!("three signers, {keystore_kind}"));
    let mut signers = Vec::new();
    for (name, (ks, config)) in names.iter().zip(stores) {
        let home = out.join("signers").join(name);
        let label = Label::new(*name)?;
        make_home(
            &home,
            Role::Signer,
            &label,
            config,
            ks.identity_public_key()?,
        )?;
        signers.push(Participant {
            id: wallet_core::ceremony::identifier_for(&label)
                .map_err(crate::error::ceremony_err)?,
            label,
            keystore: ks,
            home,
        });
    }
    let requester_home = out.join("requester");
    wallet_core::keystore::files::create_private_dir(&requester_home)?;
    let requester = SoftwareKeystore::create(
        &requester_home.join("keystore"),
        &throwaway_secret(out, "requester.pass")?,
        WorkFactor::Default,
    )?;
    make_home(
        &requester_home,
        Role::Requester,
        &Label::new("treasury-ops")?,
        KeystoreConfig::Software,
        requester.identity_public_key()?,
    )?;
    write(
        &requester_home.join("identity.pub"),
        format!("{}\n", requester.identity_public_key()?).as_bytes(),
    )?;

    // 2. DKG, every round a file; round-2 shares sealed to each recipient.
    let (shares, group) = run_dkg(out, &signers, &o, service)?;
    let identities: BTreeMap<Identifier<Suite>, IdentityPublicKey> = signers
        .iter()
        .map(|s| Ok((s.id, s.keystore.identity_public_key()?)))
        .collect::<anyhow::Result<_>>()?;
    write(&out.join("group.json"), &group.to_document()?)?;
    let keys = group.taproot();
    let address = keys.address(NETWORK);
    o.step(&format!("group {} — address {address}", group.id().short()));

    // 3. A funding coin for the group, and each signer's policy.
    let (outpoint, coin) = funding_coin(&keys.script_pubkey(), 1_000_000);
    let exchange = demo_address(0x11)?;
    let attacker = demo_address(0x66)?;
    let policy_text = format!(
        "# {name}'s policy (written by kura demo)\nversion = 1\nnetwork = \"regtest\"\n\n[[requester]]\nlabel = \"treasury-ops\"\nkey = \"{}\"\n\n[[destination]]\nlabel = \"exchange deposit\"\naddress = \"{exchange}\"\n\n[limits]\nper_transaction_sat = 500_000\nrolling_window_hours = 24\nrolling_window_sat = 1_000_000\nmax_fee_sat = 10_000\nmax_fee_rate_sat_per_vb = 50\n\n# What a signer daemon (kura signer run) approves without a person.\n[auto_approve]\ndestinations = [\"exchange deposit\"]\nmax_amount_sat = 400_000\n",
        requester.identity_public_key()?,
        name = "this signer"
    );
    let policy = Policy::from_toml(&policy_text)?;
    for s in &signers {
        write(&s.home.join("policy.toml"), policy_text.as_bytes())?;
        wallet_core::keystore::pin_policy(s.keystore.as_ref(), policy.digest())?;
    }

    // 4. The requester's withdrawal: 300,000 sat to the exchange, change back.
    let psbt = demo_psbt(
        &(outpoint, coin.clone()),
        vec![
            TxOut {
                value: Amount::from_sat(300_000),
                script_pubkey: exchange.script_pubkey(),
            },
            TxOut {
                value: Amount::from_sat(698_600),
                script_pubkey: keys.script_pubkey(),
            },
        ],
    )?;
    let t = now();
    let request = Signed::sign(
        group.id(),
        WithdrawalRequest {
            request_id: RequestId::new(format!(
                "demo-{}",
                hex::encode(&group.id().as_bytes()[..4])
            ))?,
            requester: requester.identity_public_key()?,
            created_at: t,
            expires_at: t + 3600,
            memo: "weekly transfer to the exchange".into(),
            psbt: psbt.to_string(),
        },
        &requester,
    )?;
    write(
        &out.join("withdrawal").join("request.json"),
        &format::encode(group.id(), &request)?,
    )?;
    o.step("requester signed a withdrawal request (withdrawal/request.json)");

    // 5. Review and approval by alice and carol, each with its own code,
    //    policy and audit log.
    let chosen = [0usize, 2];
    let mut audits = Vec::new();
    for s in &signers {
        audits.push(AuditLog::open(
            &s.home.join("audit.jsonl"),
            &s.keystore.identity_public_key()?,
        )?);
    }
    let mut approvals = Vec::new();
    for &i in &chosen {
        let s = signers.get(i).context("signer")?;
        let mut signer = signer_at(
            &group,
            &identities,
            &policy,
            &signers,
            &shares,
            &mut audits,
            i,
        )?;
        let reviewed = signer
            .review(&request, t)
            .map_err(|e| refused(format!("{}: {e}", s.label)))?;
        if i == chosen[0] && !json {
            print_line(&format!("  {} reviews, from the PSBT itself:", s.label))?;
            for line in reviewed.summary.to_string().lines() {
                print_line(&format!("    {line}"))?;
            }
        }
        let approval = signer
            .approve(&request, t)
            .map_err(|e| refused(format!("{}: {e}", s.label)))?;
        write(
            &out.join("withdrawal")
                .join(format!("approval-{}.json", s.label)),
            &format::encode(group.id(), &approval)?,
        )?;
        approvals.push(approval);
    }
    o.step("alice and carol approved (policy passed, nonces stored take-once)");
    let packages = build_packages(&group, &identities, &request, &approvals, NETWORK)?;
    write(
        &out.join("withdrawal").join("packages.json"),
        &format::encode(group.id(), &packages)?,
    )?;

    // 6. The attack first: the coordinator swaps the destination.
    o.step("attack: the coordinator swaps the destination in the signing packages…");
    let stolen = demo_psbt(
        &(outpoint, coin.clone()),
        vec![
            TxOut {
                value: Amount::from_sat(300_000),
                script_pubkey: attacker.script_pubkey(),
            },
            TxOut {
                value: Amount::from_sat(698_600),
                script_pubkey: keys.script_pubkey(),
            },
        ],
    )?;
    let mut tampered = packages.clone();
    for (p, sighash) in tampered
        .packages
        .iter_mut()
        .zip(review(&stolen, &group.xpub(), NETWORK)?.sighashes())
    {
        p.message = sighash.as_bytes().to_vec();
    }
    write(
        &out.join("attack").join("packages-tampered.json"),
        &format::encode(group.id(), &tampered)?,
    )?;
    let mut refusals = Vec::new();
    for &i in &chosen {
        let s = signers.get(i).context("signer")?;
        let mut signer = signer_at(
            &group,
            &identities,
            &policy,
            &signers,
            &shares,
            &mut audits,
            i,
        )?;
        match signer.sign(&request, &tampered, t) {
            Err(e @ Refusal::Package { .. }) => {
                o.step(&format!("  {} refused: {e}", s.label));
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

    // 7. The honest packages: shares, aggregation, finalization.
    let mut share_docs = Vec::new();
    for &i in &chosen {
        let s = signers.get(i).context("signer")?;
        let mut signer = signer_at(
            &group,
            &identities,
            &policy,
            &signers,
            &shares,
            &mut audits,
            i,
        )?;
        let doc = signer
            .sign(&request, &packages, t)
            .map_err(|e| refused(format!("{}: {e}", s.label)))?;
        write(
            &out.join("withdrawal")
                .join(format!("shares-{}.json", s.label)),
            &format::encode(group.id(), &doc)?,
        )?;
        share_docs.push(doc);
    }
    let (final_psbt, tx) = finalize_withdrawal(
        &group,
        &identities,
        &request,
        &packages,
        &share_docs,
        NETWORK,
    )
    .map_err(|e| refused(e.to_string()))?;
    write(
        &out.join("withdrawal.psbt"),
        &wallet_core::psbt::encode_binary(&final_psbt),
    )?;
    write(
        &out.join("withdrawal.tx"),
        format!("{}\n", bitcoin::consensus::encode::serialize_hex(&tx)).as_bytes(),
    )?;
    consensus_verify(&tx, &[coin]).map_err(refused)?;
    o.step("finalized; every input verified by Bitcoin Core's consensus code");
    for (s, audit) in signers.iter().zip(&audits) {
        let bytes = fs::read(audit.path()).unwrap_or_default();
        wallet_core::audit::verify(&bytes, &s.keystore.identity_public_key()?)
            .map_err(|e| refused(e.to_string()))?;
    }
    let summary = review(&psbt, &group.xpub(), NETWORK)?;
    let hsm = keystore_kind.contains("SoftHSM2");
    let service = if service {
        // The daemons open the tokens and logs themselves.
        drop(audits);
        let homes: Vec<(String, std::path::PathBuf)> = signers
            .iter()
            .map(|s| (s.label.to_string(), s.home.clone()))
            .collect();
        let (coin2_point, coin2) = funding_coin(&keys.script_pubkey(), 900_000);
        let pay = |to: &bitcoin::Address| {
            demo_psbt(
                &(coin2_point, coin2.clone()),
                vec![
                    TxOut {
                        value: Amount::from_sat(300_000),
                        script_pubkey: to.script_pubkey(),
                    },
                    TxOut {
                        value: Amount::from_sat(598_600),
                        script_pubkey: keys.script_pubkey(),
                    },
                ],
            )
        };
        let secrets = out.join("secrets");
        let step = |t: &str| o.step(t);
        let outcome = crate::demo_service::run(crate::demo_service::Setup {
            out,
            group: &group,
            signers: homes,
            unlock: Box::new(move |label: &str| {
                if hsm {
                    ("--pin-file", secrets.join(format!("{label}.pin")))
                } else {
                    ("--passphrase-file", secrets.join(format!("{label}.pass")))
                }
            }),
            requester: std::sync::Arc::new(requester),
            requester_home: &requester_home,
            honest: pay(&exchange)?,
            theft: pay(&attacker)?,
            spent: vec![coin2.clone()],
            step: &step,
        })?;
        Some(outcome)
    } else {
        None
    };

    let alice = out.join("signers").join("alice");
    let (unlock, env) = if hsm {
        (
            format!(
                "--pin-file {}",
                out.join("secrets").join("alice.pin").display()
            ),
            format!(
                "SOFTHSM2_CONF={} ",
                out.join("softhsm").join("softhsm2.conf").display()
            ),
        )
    } else {
        (
            format!(
                "--passphrase-file {}",
                out.join("secrets").join("alice.pass").display()
            ),
            String::new(),
        )
    };
    let homes: Vec<String> = signers
        .iter()
        .map(|s| s.home.display().to_string())
        .chain([requester_home.display().to_string()])
        .collect();
    if json {
        let v = serde_json::json!({
            "type": "demo",
            "data": {
                "group": group.id().to_string(),
                "address": address.to_string(),
                "keystores": keystore_kind,
                "txid": tx.compute_txid().to_string(),
                "outputs": summary.outputs.iter().map(|o| serde_json::json!({
                    "destination": o.destination.to_string(), "amount_sat": o.amount.to_sat(), "change": o.is_change
                })).collect::<Vec<_>>(),
                "fee_sat": summary.fee.to_sat(),
                "signed_by": ["alice", "carol"],
                "consensus_verified": true,
                "attack_refused": refusals,
                "out": out.display().to_string(),
                "homes": homes,
                "secrets": out.join("secrets").display().to_string(),
                "service": service.as_ref().map(|s| serde_json::json!({
                    "coordinator": s.url,
                    "fingerprint": s.fingerprint.to_string(),
                    "withdrawal": s.id,
                    "txid": s.txid,
                    "consensus_verified": true,
                    "restarted_daemon": s.restarted,
                    "theft_refused_by": s.theft_refused_by,
                })),
            }
        });
        print_line(&crate::ctx::json_inert(&v.to_string()))?;
    } else {
        let mut lines = vec![String::new(), format!("txid         {}", tx.compute_txid())];
        for o in &summary.outputs {
            let what = if o.is_change {
                "change back to the group"
            } else {
                "exchange deposit (allowlisted)"
            };
            lines.push(format!(
                "output {}     {} to {} — {what}",
                o.index, o.amount, o.destination
            ));
        }
        lines.push(format!(
            "fee          {} ({:.1} sat/vB)",
            summary.fee,
            summary.fee_rate_sat_per_vb()
        ));
        lines.push(format!(
            "signed by    alice, carol (2 of 3), {keystore_kind}"
        ));
        lines.push(
            "verified     Bitcoin Core consensus (libbitcoinconsensus, Taproot rules): ok".into(),
        );
        lines.push("attack       destination swap refused by both signers".into());
        lines.push(format!("files        {} (withdrawal.psbt, withdrawal.tx, every round under withdrawal/ and dkg/)", out.display()));
        lines.push(format!(
            "homes        {} — real homes (regtest) that kura commands continue, e.g.\n             {env}kura audit verify --home {} {unlock}",
            homes.join(", "),
            alice.display()
        ));
        if let Some(s) = &service {
            lines.push(format!(
                "service      {} (certificate {}): withdrawal {} finalized, txid {}, consensus-verified;\n             {}'s daemon killed (SIGKILL) after approving and restarted; theft refused by {} (logs in {})",
                s.url,
                s.fingerprint,
                s.id,
                s.txid,
                s.restarted,
                s.theft_refused_by.join(", "),
                out.join("service").display()
            ));
        }
        lines.push(format!(
            "secrets      {} — THROWAWAY passphrases/PINs of this demo (files, 0600); never use them for real funds",
            out.join("secrets").display()
        ));
        print_line(&lines.join("\n"))?;
    }
    Ok(())
}

/// Signer `i` of the demo, with its share, keystore, policy and audit log.
fn signer_at<'a>(
    group: &PublicGroup<Suite>,
    identities: &BTreeMap<Identifier<Suite>, IdentityPublicKey>,
    policy: &Policy,
    signers: &[Participant],
    shares: &[KeyShare<Suite>],
    audits: &'a mut [AuditLog],
    i: usize,
) -> anyhow::Result<Signer<&'a mut AuditLog>> {
    Ok(Signer::new(
        group.clone(),
        identities.clone(),
        shares.get(i).context("share")?.clone(),
        signers.get(i).context("signer")?.keystore.clone(),
        policy.clone(),
        audits.get_mut(i).context("audit log")?,
    )?)
}

fn run_dkg(
    out: &Path,
    signers: &[Participant],
    o: &Output,
    through_mailbox: bool,
) -> anyhow::Result<(Vec<KeyShare<Suite>>, PublicGroup<Suite>)> {
    // The same protocol, step by step, as `kura dkg round1|round2|finish`
    // (or `kura dkg run` through a mailbox): wallet_core::ceremony::dkg.
    let cards = signers
        .iter()
        .map(|s| {
            Ok(IdentityCard::new(
                s.label.clone(),
                Role::Signer,
                s.keystore.identity_public_key()?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut nonce = [0u8; 32];
    OsRng.fill_bytes(&mut nonce);
    let ceremony = Ceremony::<Suite>::new(2, cards, nonce).map_err(crate::error::ceremony_err)?;
    let fingerprint = ceremony.fingerprint();
    o.step(&format!(
        "DKG ceremony {fingerprint} (2-of-3): every signer confirms this fingerprint, signs its round-1 and round-2 messages, and seals round-2 shares to each recipient's identity key"
    ));
    let dir = out.join("dkg");
    write(
        &dir.join("ceremony.json"),
        &serde_json::to_vec_pretty(&ceremony.plan())?,
    )?;
    let finished = if through_mailbox {
        dkg_through_mailbox(&ceremony, signers, o)?
    } else {
        dkg_as_files(&ceremony, &dir, signers)?
    };
    let mut shares = Vec::new();
    let mut group: Option<PublicGroup<Suite>> = None;
    for (s, done) in signers.iter().zip(finished) {
        MemberState::new(&s.home)
            .install(
                s.keystore.as_ref(),
                &done.share,
                &done.group,
                &done.roster,
                &mut wallet_core::ceremony::state::no_crash,
            )
            .map_err(crate::error::ceremony_err)?;
        dkg::forget(&ceremony, s.keystore.as_ref()).map_err(crate::error::ceremony_err)?;
        if group.as_ref().is_some_and(|prev| prev != &done.group) {
            return Err(refused("participants derived different groups"));
        }
        if group.is_none() {
            o.step(&format!(
                "group fingerprint {} (every signer compares it)",
                done.fingerprint
            ));
        }
        group = Some(done.group);
        shares.push(done.share);
    }
    Ok((shares, group.context("no group")?))
}

/// Every round a file under `dir`.
fn dkg_as_files(
    ceremony: &Ceremony<Suite>,
    dir: &Path,
    signers: &[Participant],
) -> anyhow::Result<Vec<dkg::Finished<Suite>>> {
    let fingerprint = ceremony.fingerprint();
    for s in signers {
        // Each signer confirms the fingerprint (here: the one computed from
        // its own copy of the cards, as the convener would announce it).
        let confirmed = ceremony
            .clone()
            .confirm(&fingerprint.to_string())
            .map_err(crate::error::ceremony_err)?;
        let doc = dkg::round1(&confirmed, s.keystore.as_ref(), &mut OsRng)
            .map_err(crate::error::ceremony_err)?;
        write(
            &dir.join(format!("round1-{}.json", s.label)),
            &format::encode(ceremony.id(), &doc)?,
        )?;
    }
    let read_r1 = || -> anyhow::Result<Vec<Round1Document<Suite>>> {
        signers
            .iter()
            .map(|s| {
                let bytes = fs::read(dir.join(format!("round1-{}.json", s.label)))?;
                Ok(format::decode_for_group(&bytes, ceremony.id())?)
            })
            .collect()
    };
    let r1 = read_r1()?;
    for s in signers {
        let o2 = dkg::round2(ceremony, s.keystore.as_ref(), &r1, &mut OsRng)
            .map_err(crate::error::ceremony_err)?;
        for (to, doc) in &o2.messages {
            write(
                &dir.join(format!("round2-{}-to-{to}.json", s.label)),
                &format::encode(ceremony.id(), doc)?,
            )?;
        }
    }
    let mut finished = Vec::new();
    for s in signers {
        let mut received: Vec<Round2Document<Suite>> = Vec::new();
        for from in signers.iter().filter(|x| x.id != s.id) {
            let path = dir.join(format!("round2-{}-to-{}.json", from.label, s.label));
            received.push(format::decode_for_group(&fs::read(&path)?, ceremony.id())?);
        }
        finished.push(
            dkg::finish(ceremony, s.keystore.as_ref(), &read_r1()?, &received)
                .map_err(crate::error::ceremony_err)?,
        );
    }
    Ok(finished)
}

/// Every round through a ceremony mailbox over loopback HTTPS (what `kura
/// coordinator relay` serves), the signers at once, each with its own
/// login; the mailbox sees only signed broadcasts and sealed shares.
fn dkg_through_mailbox(
    ceremony: &Ceremony<Suite>,
    signers: &[Participant],
    o: &Output,
) -> anyhow::Result<Vec<dkg::Finished<Suite>>> {
    use kura_service::ceremony::{run_dkg, MailboxClient};
    use kura_service::relay::{Relay, Scope};
    let tls = kura_service::TlsIdentity::generate(&["127.0.0.1".into()], "kura demo mailbox")?;
    let relay = std::sync::Arc::new(Relay::new(
        tls.fingerprint(),
        vec![Scope::of_ceremony(ceremony)],
    ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("https://{}", listener.local_addr()?);
    o.step(&format!(
        "the DKG's messages go through a ceremony mailbox at {url} (certificate {})",
        tls.fingerprint()
    ));
    let fingerprint = ceremony.fingerprint().to_string();
    let rt = crate::cmd::service::runtime()?;
    rt.block_on(async {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = {
            let tls = tls.clone();
            tokio::spawn(async move {
                kura_service::server::serve_router(
                    kura_service::server::relay_router(relay),
                    &tls,
                    listener,
                    async move {
                        let _ = stopped.await;
                    },
                )
                .await
            })
        };
        let mut runs = Vec::new();
        for s in signers {
            let mailbox = MailboxClient::new(
                &[&url],
                tls.fingerprint(),
                *ceremony.id(),
                s.keystore.clone(),
            )?;
            let confirmed = ceremony
                .clone()
                .confirm(&fingerprint)
                .map_err(crate::error::ceremony_err)?;
            let keystore = s.keystore.clone();
            runs.push(tokio::spawn(async move {
                run_dkg(
                    &mailbox,
                    &confirmed,
                    keystore.as_ref(),
                    std::time::Duration::from_secs(60),
                )
                .await
            }));
        }
        let mut finished = Vec::new();
        for run in runs {
            finished.push(run.await.context("a DKG run failed")??);
        }
        let _ = stop.send(());
        server.await.context("the mailbox failed")??;
        Ok(finished)
    })
}

/// A regtest P2TR address of a fixed key (the demo's exchange and attacker).
fn demo_address(tag: u8) -> anyhow::Result<bitcoin::Address> {
    use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
    let secp = Secp256k1::new();
    let kp = Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[tag; 32])?);
    Ok(bitcoin::Address::p2tr(
        &secp,
        kp.x_only_public_key().0,
        None,
        NETWORK,
    ))
}

/// A synthetic regtest coin paying `value` to `script`.
fn funding_coin(script: &bitcoin::ScriptBuf, value: u64) -> (bitcoin::OutPoint, TxOut) {
    use bitcoin::{absolute, transaction, OutPoint, Sequence, Transaction, TxIn, Witness};
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let funding = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: bitcoin::hashes::Hash::from_byte_array(seed),
                vout: 0,
            },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: script.clone(),
        }],
    };
    let out = TxOut {
        value: Amount::from_sat(value),
        script_pubkey: script.clone(),
    };
    (
        OutPoint {
            txid: funding.compute_txid(),
            vout: 0,
        },
        out,
    )
}

fn demo_psbt(
    coin: &(bitcoin::OutPoint, TxOut),
    outputs: Vec<TxOut>,
) -> anyhow::Result<bitcoin::psbt::Psbt> {
    use bitcoin::{absolute, transaction, Sequence, Transaction, TxIn, Witness};
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: coin.0,
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: outputs,
    };
    let mut psbt = bitcoin::psbt::Psbt::from_unsigned_tx(tx)?;
    if let Some(input) = psbt.inputs.first_mut() {
        input.witness_utxo = Some(coin.1.clone());
    }
    Ok(psbt)
}

/// Bitcoin Core's consensus check of every input (Taproot flag, all spent outputs).
pub(crate) fn consensus_verify(tx: &bitcoin::Transaction, spent: &[TxOut]) -> Result<(), String> {
    let bytes = bitcoin::consensus::serialize(tx);
    let scripts: Vec<Vec<u8>> = spent.iter().map(|o| o.script_pubkey.to_bytes()).collect();
    let utxos: Vec<bitcoinconsensus::Utxo> = spent
        .iter()
        .zip(&scripts)
        .map(|(o, s)| bitcoinconsensus::Utxo {
            script_pubkey: s.as_ptr(),
            script_pubkey_len: u32::try_from(s.len()).unwrap_or(u32::MAX),
            value: i64::try_from(o.value.to_sat()).unwrap_or(i64::MAX),
        })
        .collect();
    let flags = bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT | bitcoinconsensus::VERIFY_TAPROOT;
    for (i, (o, script)) in spent.iter().zip(&scripts).enumerate() {
        bitcoinconsensus::verify_with_flags(
            script,
            o.value.to_sat(),
            &bytes,
            Some(&utxos),
            i,
            flags,
        )
        .map_err(|e| format!("Bitcoin Core rejects input {i}: {e:?}"))?;
    }
    Ok(())
}
