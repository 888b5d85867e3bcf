//! Kura's own known-answer vectors: one fixed-seed example of every document
//! kind Kura writes, for both suites. The bytes are a contract: the test
//! `known_answer` fails when any of them changes, and
//! `cargo run -p test-vectors --bin regenerate` rewrites them deliberately
//! (review the diff: it is a format change).
//!
//! Also signer policies (`policy/`): a full and a minimal policy file, their
//! canonical JSON and their digests, which installed keystores pin.
//!
//! Not covered: the software keystore's age files, whose encryption draws
//! randomness inside the age crate (their plaintext is a `key-share` or
//! `round1-nonces`-style document covered here).

use std::collections::BTreeMap;
use std::path::PathBuf;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use wallet_core::ceremony::dealer as cdealer;
use wallet_core::ceremony::dkg::{self as cdkg, Ceremony};
use wallet_core::ceremony::{maintain, IdentityCard, Role};
use wallet_core::format::{self, canonical_bytes, FormatError};
use wallet_core::frost_core::Identifier;
use wallet_core::keygen::{self, Identifiers};
use wallet_core::keystore::SessionId;
use wallet_core::keystore::{Keystore, MemoryKeystore};
use wallet_core::messages::{CommitmentsMessage, PackageMessage, ShareMessage, SignatureMessage};
use wallet_core::{signing, KuraSuite, Label, Secp256k1, Secp256k1Tr};

/// The directory of the known-answer files.
pub fn dir() -> PathBuf {
    crate::crate_dir().join("known-answer")
}

/// One known-answer file: its path under [`dir`] and its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAnswer {
    /// Relative path, e.g. `secp256k1-tr/group.json`.
    pub path: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Why generation failed (never, for the fixed inputs; the type keeps the
/// generator free of panics).
#[derive(Debug)]
pub struct GenerateError(pub String);

impl std::fmt::Display for GenerateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GenerateError {}

fn err(e: impl std::fmt::Display) -> GenerateError {
    GenerateError(e.to_string())
}

impl From<FormatError> for GenerateError {
    fn from(e: FormatError) -> Self {
        err(e)
    }
}

/// Every known-answer file, generated from fixed seeds.
///
/// # Errors
/// Only if wallet-core fails on these fixed inputs.
pub fn generate() -> Result<Vec<KnownAnswer>, GenerateError> {
    let mut out = generate_suite::<Secp256k1Tr>()?;
    out.push(hd()?);
    out.extend(generate_suite::<Secp256k1>()?);
    out.push(state_anchors());
    out.extend(policies()?);
    Ok(out)
}

fn generate_suite<C: KuraSuite>() -> Result<Vec<KnownAnswer>, GenerateError> {
    let suite = C::SUITE.as_str();
    let mut rng = ChaCha20Rng::seed_from_u64(0x6b757261); // "kura"
    let labels: Vec<Label> = ["alice", "bob", "carol"]
        .iter()
        .map(|l| Label::new(*l))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let dealt = keygen::dealer::<C, _>(2, &labels, Identifiers::Default, &mut rng).map_err(err)?;
    let group = &dealt.group;
    let [alice, _bob, carol] = dealt.shares.as_slice() else {
        return Err(err("dealer returned the wrong number of shares"));
    };
    let mut files = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>| {
        files.push(KnownAnswer {
            path: format!("{suite}/{name}"),
            bytes,
        })
    };
    add("group.json", group.to_document()?);
    add(
        "key-share.json",
        alice.to_secret_document()?.expose().to_vec(),
    );

    let session = SessionId::from_bytes([0x5e; 32]);
    let message = b"kura known-answer message, 32 b.".to_vec();
    let (alice_state, alice_c) = signing::commit(alice, &mut rng);
    let (carol_state, carol_c) = signing::commit(carol, &mut rng);
    let commitments = CommitmentsMessage {
        session,
        participant: *alice.identifier(),
        commitments: alice_c,
    };
    add(
        "signing-commitments.json",
        format::encode(group.id(), &commitments)?,
    );
    let mut canonical = canonical_bytes(group.id(), &commitments)?;
    canonical.push(b'\n');
    add("signing-commitments.canonical", canonical);

    let package = signing::build_package(
        group,
        BTreeMap::from([
            (*alice.identifier(), alice_c),
            (*carol.identifier(), carol_c),
        ]),
        &message,
    )
    .map_err(err)?;
    add(
        "signing-package.json",
        format::encode(group.id(), &PackageMessage::from_package(session, &package))?,
    );
    let alice_share = signing::sign(alice, group, &package, &message, alice_state).map_err(err)?;
    let carol_share = signing::sign(carol, group, &package, &message, carol_state).map_err(err)?;
    add(
        "signature-share.json",
        format::encode(
            group.id(),
            &ShareMessage {
                session,
                participant: *alice.identifier(),
                share: alice_share,
            },
        )?,
    );
    let shares = BTreeMap::from([
        (*alice.identifier(), alice_share),
        (*carol.identifier(), carol_share),
    ]);
    let signature = signing::aggregate(group, &package, &shares).map_err(err)?;
    add(
        "signature.json",
        format::encode(
            group.id(),
            &SignatureMessage {
                session,
                message,
                signature,
            },
        )?,
    );

    // Setup documents (wallet_core::ceremony), from fixed identity keys:
    // alice's card, a DKG ceremony's round-1 and sealed round-2 messages,
    // the resulting roster, a dealer's dealing, a refresh proposal and
    // endorsement, a repair delta, and the fingerprints people compare.
    let identity = |b: u8| {
        wallet_core::identity::SoftwareIdentity::from_secret_bytes(&[b; 32])
            .map(MemoryKeystore::with_deterministic_identity)
            .map_err(err)
    };
    let stores = [identity(0xa1)?, identity(0xb0)?, identity(0xca)?];
    let dealer_ks = identity(0xde)?;
    let cards: Vec<IdentityCard> = labels
        .iter()
        .zip(&stores)
        .map(|(l, ks)| {
            Ok(IdentityCard::new(
                l.clone(),
                Role::Signer,
                ks.identity_public_key().map_err(err)?,
            ))
        })
        .collect::<Result<_, GenerateError>>()?;
    let dealer_card = IdentityCard::new(
        Label::new("dealer").map_err(err)?,
        Role::Dealer,
        dealer_ks.identity_public_key().map_err(err)?,
    );
    let alice_card = cards.first().cloned().ok_or_else(|| err("no card"))?;
    add("identity-card.json", alice_card.to_json()?);
    let c = Ceremony::<C>::new(2, cards.clone(), [0xce; 32]).map_err(err)?;
    let conf = c
        .clone()
        .confirm(&c.fingerprint().to_string())
        .map_err(err)?;
    let mut r1 = Vec::new();
    for ks in &stores {
        r1.push(cdkg::round1(&conf, ks, &mut rng).map_err(err)?);
    }
    let first = r1.first().ok_or_else(|| err("no round-1 message"))?;
    add("dkg-round1.json", format::encode(c.id(), first)?);
    let mut r2 = Vec::new();
    for ks in &stores {
        r2.push(cdkg::round2(&c, ks, &r1, &mut rng).map_err(err)?);
    }
    let (_, to_bob) = r2
        .first()
        .and_then(|o| o.messages.first())
        .ok_or_else(|| err("no round-2 message"))?;
    add("dkg-round2.json", format::encode(c.id(), to_bob)?);
    let alice_r2: Vec<_> = r2
        .iter()
        .flat_map(|o| o.messages.iter())
        .filter(|(to, _)| to.as_str() == "alice")
        .map(|(_, d)| d.clone())
        .collect();
    let alice_ks = stores.first().ok_or_else(|| err("no store"))?;
    let done = cdkg::finish(&c, alice_ks, &r1, &alice_r2).map_err(err)?;
    add("roster.json", done.roster.to_document(done.group.id())?);

    let dc = Ceremony::<C>::with_dealer(2, cards, dealer_card, [0xde; 32]).map_err(err)?;
    let dconf = dc
        .clone()
        .confirm(&dc.fingerprint().to_string())
        .map_err(err)?;
    let dealt = cdealer::deal(&dconf, &dealer_ks, None, &mut rng).map_err(err)?;
    add(
        "dealing.json",
        format::encode(dealt.group.id(), &dealt.dealing)?,
    );
    let bob_ks = stores.get(1).ok_or_else(|| err("no store"))?;
    let carol_ks = stores.get(2).ok_or_else(|| err("no store"))?;
    let proposal =
        maintain::propose_refresh(&dealt.group, &dealt.roster, bob_ks, &mut rng).map_err(err)?;
    add(
        "refresh-proposal.json",
        format::encode(dealt.group.id(), &proposal)?,
    );
    let endorsement =
        maintain::endorse_refresh(&dealt.group, &dealt.roster, &proposal, carol_ks).map_err(err)?;
    add(
        "refresh-endorsement.json",
        format::encode(dealt.group.id(), &endorsement)?,
    );
    let receipt = maintain::receipt(
        &dealt.group,
        &dealt.roster,
        &proposal.digest(dealt.group.id()).map_err(err)?,
        carol_ks,
    )
    .map_err(err)?;
    add(
        "refresh-receipt.json",
        format::encode(dealt.group.id(), &receipt)?,
    );
    let bob_share = cdealer::import(
        dealt.group.id(),
        &dealt.dealing,
        &dc.fingerprint().to_string(),
        bob_ks,
    )
    .map_err(err)?
    .share;
    let ids: Vec<Identifier<C>> = dealt.group.participants().keys().copied().collect();
    let (Some(lost), Some(b), Some(cc)) = (ids.first(), ids.get(1), ids.get(2)) else {
        return Err(err("three members"));
    };
    let deltas = maintain::repair_deltas(
        &dealt.group,
        &dealt.roster,
        &bob_share,
        bob_ks,
        lost,
        &[*b, *cc],
        &mut rng,
    )
    .map_err(err)?;
    let delta = deltas.first().ok_or_else(|| err("no delta"))?;
    add(
        "repair-delta.json",
        format::encode(dealt.group.id(), delta)?,
    );
    // A reshare of the dealt group to 3-of-4 (dave joins), proposed by bob
    // and dealt by bob and carol.
    let dave = identity(0xda)?;
    let mut new_cards: Vec<IdentityCard> = dealt
        .roster
        .members
        .iter()
        .map(|m| IdentityCard::new(m.label.clone(), Role::Signer, m.key))
        .collect();
    new_cards.push(IdentityCard::new(
        Label::new("dave").map_err(err)?,
        Role::Signer,
        dave.identity_public_key().map_err(err)?,
    ));
    use wallet_core::ceremony::reshare::{Consent, ReshareTerms};
    // The proposal's clock: it expires a day after it is dealt.
    const RESHARE_AT: u64 = 1_800_000_000;
    let dave_card = new_cards.last().map(|c| c.fingerprint().to_string());
    let reshare_proposal = wallet_core::ceremony::reshare::propose_reshare(
        &dealt.group,
        &dealt.roster,
        ReshareTerms {
            threshold: 3,
            members: new_cards,
            dealers: vec![*b, *cc],
            expires: RESHARE_AT + 86_400,
        },
        bob_ks,
        &mut rng,
    )
    .map_err(err)?;
    let consent = Consent::check(
        &dealt.group,
        &dealt.roster,
        &reshare_proposal,
        &dave_card.iter().map(String::as_str).collect::<Vec<_>>(),
        RESHARE_AT,
    )
    .map_err(err)?;
    let audit_dir = tempfile::tempdir().map_err(err)?;
    let mut audit = wallet_core::audit::AuditLog::open(
        &audit_dir.path().join("audit.jsonl"),
        &bob_ks.identity_public_key().map_err(err)?,
    )
    .map_err(err)?;
    add(
        "reshare-proposal.json",
        format::encode(dealt.group.id(), &reshare_proposal)?,
    );
    let reshare_deal = wallet_core::ceremony::reshare::deal_reshare(
        &dealt.group,
        &dealt.roster,
        &bob_share,
        &consent,
        bob_ks,
        &mut audit,
        &mut rng,
    )
    .map_err(err)?;
    add(
        "reshare-deal.json",
        format::encode(dealt.group.id(), &reshare_deal)?,
    );
    add(
        "fingerprints.txt",
        format!(
            "card alice {}\nceremony {}\ngroup {}\ndealer ceremony {}\ndealt group {}\n",
            alice_card.fingerprint(),
            c.fingerprint(),
            done.fingerprint,
            dc.fingerprint(),
            dealt.fingerprint
        )
        .into_bytes(),
    );
    Ok(files)
}

/// The group xpub (BIP328 construction) of a fixed dealt group, its
/// descriptors and the first addresses of each chain on mainnet and
/// regtest: what custodians import into their wallets.
fn hd() -> Result<KnownAnswer, GenerateError> {
    use wallet_core::bitcoin::Network;
    use wallet_core::hd::{Chain, ChildPath};
    let mut rng = ChaCha20Rng::seed_from_u64(0x6864); // "hd"
    let labels: Vec<Label> = ["alice", "bob", "carol"]
        .iter()
        .map(|l| Label::new(*l))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let dealt = keygen::dealer::<Secp256k1Tr, _>(2, &labels, Identifiers::Default, &mut rng)
        .map_err(err)?;
    let xpub = dealt.group.xpub();
    let mut text = format!(
        "group-key {}\nfingerprint {}\n",
        hex::encode(
            dealt
                .group
                .verifying_key()
                .serialize()
                .map_err(|e| err(e.to_string()))?
        ),
        xpub.fingerprint()
    );
    for network in [Network::Bitcoin, Network::Regtest] {
        text.push_str(&format!("xpub {network} {}\n", xpub.xpub(network)));
        text.push_str(&format!(
            "descriptor {network} {}\n",
            xpub.descriptor(network)
        ));
        for chain in [Chain::Receive, Chain::Change] {
            text.push_str(&format!(
                "descriptor {network} {}\n",
                xpub.chain_descriptor(chain, network)
            ));
            for index in [0, 1, 2, 1000] {
                let path = ChildPath::new(chain, index).map_err(err)?;
                let child = xpub.derive(&path).map_err(err)?;
                text.push_str(&format!(
                    "address {network} {path} {} tweak {}\n",
                    child.taproot().address(network),
                    hex::encode(child.tweak().to_bytes())
                ));
            }
        }
    }
    Ok(KnownAnswer {
        path: "secp256k1-tr/hd.txt".into(),
        bytes: text.into_bytes(),
    })
}

/// The keystore's state anchor (audit head and pinned policy) in its 76-byte
/// form: a new keystore's, and one with a log of 7 entries and a policy.
fn state_anchors() -> KnownAnswer {
    use wallet_core::keystore::{AuditHead, StateAnchor};
    let pinned = StateAnchor::NEW
        .with_audit(AuditHead {
            seq: 7,
            hash: [0xa7; 32],
        })
        .with_policy([0x5c; 32]);
    let mut text = String::new();
    for (name, anchor) in [("new", StateAnchor::NEW), ("pinned", pinned)] {
        text.push_str(&format!("{name} {}\n", hex::encode(anchor.to_bytes())));
    }
    KnownAnswer {
        path: "keystore/state-anchor.txt".into(),
        bytes: text.into_bytes(),
    }
}

/// A policy with every table and every optional setting written (in an
/// order, case and spelling the canonical form does not keep), and one with
/// only what is required. Their canonical JSON and digest are what signers
/// record in approvals and pin in their keystores: a changed byte here means
/// every installed policy gets a new digest, a deliberate `POLICY_VERSION`
/// decision.
const POLICIES: [(&str, &str); 3] = [
    (
        "full",
        "\
# Every table and every optional setting, none at its default.
network = 'regtest'
version = 1

[limits]
max_fee_rate_sat_per_vb = 12.5
max_fee_sat = 20_000
per_transaction_sat = 1_000_000
rolling_window_fee_sat = 40_000
rolling_window_hours = 48
rolling_window_sat = 3_000_000

[[requester]]
label = \"Trésor bot\"
key = \"046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5\"
raw_messages = true

[[requester]]
label = \"treasury-ops\"
key = \"031e18532fd4754c02f3041d9c75ceb33b83ffd81ac7ce4fe882ccb1c98bc5896e\"

[[destination]]
label = \"legacy payee\"
address = \"mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r\"

[[destination]]
label = \"cold storage\"
address = \"bcrt1pj86axd9ctu0sgv8yh6ph8vhlg6f0g8a8837em9qnsx4fzug6xtxs58v992\"

[[destination]]
label = \"exchange\"
address = \"BCRT1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KYGT080\"

[change]
require_own_address = true

[transaction]
versions = [3, 1, 2]
max_lock_height = 840_000
max_lock_ahead_hours = 6
relative_locks = true
allow_dust = true

[request]
max_lifetime_hours = 72
",
    ),
    (
        "minimal",
        "\
version = 1
network = \"bitcoin\"

[[requester]]
label = \"ops\"
key = \"036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296\"

[limits]
per_transaction_sat = 100_000
rolling_window_hours = 24
rolling_window_sat = 500_000
max_fee_sat = 5_000
max_fee_rate_sat_per_vb = 20
",
    ),
    (
        "auto-approve",
        "\
# A signer daemon's policy: two destinations, one of them approved without a person.
version = 1
network = \"regtest\"

[[requester]]
label = \"ops\"
key = \"036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296\"

[[destination]]
label = \"exchange deposit\"
address = \"bcrt1pj86axd9ctu0sgv8yh6ph8vhlg6f0g8a8837em9qnsx4fzug6xtxs58v992\"

[[destination]]
label = \"cold storage\"
address = \"BCRT1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KYGT080\"

[limits]
per_transaction_sat = 1_000_000
rolling_window_hours = 24
rolling_window_sat = 5_000_000
max_fee_sat = 10_000
max_fee_rate_sat_per_vb = 50

[auto_approve]
destinations = [\"exchange deposit\"]
max_amount_sat = 400_000
",
    ),
];

/// For each of [`POLICIES`]: the file (`policy/<name>.toml`) and its
/// canonical JSON (`policy/<name>.canonical.json`); then every digest, hex,
/// in `policy/digests.txt`.
fn policies() -> Result<Vec<KnownAnswer>, GenerateError> {
    let mut files = Vec::new();
    let mut digests = String::new();
    for (name, text) in POLICIES {
        let policy = wallet_core::policy::Policy::from_toml(text).map_err(err)?;
        files.push(KnownAnswer {
            path: format!("policy/{name}.toml"),
            bytes: text.as_bytes().to_vec(),
        });
        files.push(KnownAnswer {
            path: format!("policy/{name}.canonical.json"),
            bytes: policy.canonical_json().to_vec(),
        });
        digests.push_str(&format!("{name} {}\n", hex::encode(policy.digest())));
    }
    files.push(KnownAnswer {
        path: "policy/digests.txt".into(),
        bytes: digests.into_bytes(),
    });
    Ok(files)
}
