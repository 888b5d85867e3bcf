//! [`World`]: a dealt 2-of-3 Taproot group of honest signers and a requester.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitcoin::psbt::Psbt;
use bitcoin::{Network, OutPoint, Transaction, TxOut};
use secrecy::SecretString;
use wallet_core::audit::AuditLog;
use wallet_core::frost_core::Identifier;
use wallet_core::identity::{IdentityPublicKey, SoftwareIdentity};
use wallet_core::keystore::{self, Keystore, MemoryKeystore, SoftwareKeystore, WorkFactor};
use wallet_core::policy::Policy;
use wallet_core::withdrawal::coordinator::{build_packages, finalize_withdrawal, CoordinatorError};
use wallet_core::withdrawal::request::{
    Approval, RequestId, Signed, WithdrawalPackages, WithdrawalRequest,
};
use wallet_core::withdrawal::signer::Signer;
use wallet_core::{KeyShare, PublicGroup, Secp256k1Tr};

use crate::frost::{deal, rng};
use crate::transactions::{coin, outside_address, psbt, withdrawal_outputs};

/// The signers' clock (2026-09-21 14:13:20 UTC): requests from [`World`] are
/// created a minute before and expire an hour after.
pub const NOW: u64 = 1_790_000_000;

/// The passphrase of every software keystore a [`World`] creates.
pub fn passphrase() -> SecretString {
    SecretString::from("passphrase of a signer".to_owned())
}

/// The signer that `share` is, with its roster, keystore, policy and audit log.
///
/// The only place the kit puts a [`Signer`] together: tests that need a
/// signer outside a [`World`] (another keystore, another roster) use it too.
pub fn signer<'a>(
    group: &PublicGroup<Secp256k1Tr>,
    identities: &BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>,
    share: &KeyShare<Secp256k1Tr>,
    keystore: Arc<dyn Keystore>,
    policy: &Policy,
    audit: &'a mut AuditLog,
) -> Signer<&'a mut AuditLog> {
    Signer::new(
        group.clone(),
        identities.clone(),
        share.clone(),
        keystore,
        policy.clone(),
        audit,
    )
    .unwrap()
}

/// A keystore kind a [`World`] can give its signers.
pub trait FixtureKeystore: Keystore + Sized {
    /// A new, empty keystore for the signer whose home is `home` (an
    /// existing directory).
    fn create_in(home: &Path) -> Self;
}

impl FixtureKeystore for MemoryKeystore {
    /// In memory; `home` holds only the audit log.
    fn create_in(_home: &Path) -> Self {
        MemoryKeystore::new()
    }
}

impl FixtureKeystore for SoftwareKeystore {
    /// On disk in `home/keystore`, under [`passphrase`], with the cheapest
    /// scrypt work factor.
    fn create_in(home: &Path) -> Self {
        SoftwareKeystore::create(&home.join("keystore"), &passphrase(), WorkFactor::LogN(2))
            .unwrap()
    }
}

type PolicyText = Box<dyn Fn(&IdentityPublicKey, &bitcoin::Address) -> String>;

/// Options of a [`World`]; made by [`World::builder`].
pub struct WorldBuilder<K> {
    seed: u64,
    threshold: (u16, u16),
    policy: PolicyText,
    coins: Vec<u64>,
    keystore: std::marker::PhantomData<K>,
}

impl<K> std::fmt::Debug for WorldBuilder<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorldBuilder")
            .field("seed", &self.seed)
            .field("threshold", &self.threshold)
            .field("coins", &self.coins)
            .field("keystore", &std::any::type_name::<K>())
            .finish_non_exhaustive()
    }
}

impl<K: FixtureKeystore> WorldBuilder<K> {
    /// The group's coins, by value (default: 400,000 and 300,000 sats).
    /// Coin `i` is [`coin`]`(group script, value, tag)` with
    /// `tag = seed as u8 ^ (0x55 * i)`: the first coin's tag is the seed's
    /// low byte.
    pub fn coins(mut self, values: &[u64]) -> Self {
        self.coins = values.to_vec();
        self
    }

    /// A `t`-of-`n` group (default: 2-of-3).
    pub fn threshold(mut self, t: u16, n: u16) -> Self {
        self.threshold = (t, n);
        self
    }

    /// Gives every signer a keystore of kind `L` (default: [`MemoryKeystore`]).
    pub fn keystores<L: FixtureKeystore>(self) -> WorldBuilder<L> {
        WorldBuilder {
            seed: self.seed,
            threshold: self.threshold,
            policy: self.policy,
            coins: self.coins,
            keystore: std::marker::PhantomData,
        }
    }

    /// Deals the group, creates and fills the keystores (share, identity,
    /// pinned policy) and opens the audit logs.
    pub fn build(self) -> World<K> {
        let seed = self.seed;
        let tmp = tempfile::tempdir().unwrap();
        let (t, n) = self.threshold;
        let dealt = deal::<Secp256k1Tr>(t, n, seed);
        let requester = SoftwareIdentity::generate(&mut rng(seed ^ 0xff));
        let allowed = outside_address(7);
        let policy = Policy::from_toml(&(self.policy)(&requester.public_key(), &allowed)).unwrap();
        let homes: Vec<PathBuf> = (0..usize::from(n))
            .map(|i| tmp.path().join(format!("s{i}")))
            .collect();
        let stores: Vec<Arc<K>> = homes
            .iter()
            .zip(&dealt.shares)
            .map(|(home, share)| {
                std::fs::create_dir_all(home).unwrap();
                let ks = K::create_in(home);
                keystore::put_share(&ks, share).unwrap();
                keystore::pin_policy(&ks, policy.digest()).unwrap();
                Arc::new(ks)
            })
            .collect();
        let identities = dealt
            .shares
            .iter()
            .zip(&stores)
            .map(|(s, ks)| (*s.identifier(), ks.identity_public_key().unwrap()))
            .collect();
        let audits = homes
            .iter()
            .zip(&stores)
            .map(|(h, ks)| {
                AuditLog::open(&h.join("audit.jsonl"), &ks.identity_public_key().unwrap()).unwrap()
            })
            .collect();
        let own = dealt.group.taproot().script_pubkey();
        let coins = self
            .coins
            .iter()
            .enumerate()
            .map(|(i, &value)| coin(&own, value, seed as u8 ^ (0x55u8.wrapping_mul(i as u8))))
            .collect();
        World {
            group: dealt.group,
            shares: dealt.shares,
            homes,
            stores,
            audits,
            identities,
            policy,
            requester,
            allowed,
            coins,
            _tmp: tmp,
        }
    }
}

/// The honest signers of a dealt Taproot group (2-of-3 unless the builder says otherwise; `signer-1` to
/// `signer-3`), each with a home directory, a keystore of kind `K` holding
/// its share and the pinned policy, and an audit log in `home/audit.jsonl`;
/// one authorised requester, one allowlisted destination, and coins of the
/// group's address. Everything but the keystores' identity keys and nonces
/// follows from the seed.
#[derive(Debug)]
pub struct World<K = MemoryKeystore> {
    /// The group.
    pub group: PublicGroup<Secp256k1Tr>,
    /// Signer `i`'s share.
    pub shares: Vec<KeyShare<Secp256k1Tr>>,
    /// Signer `i`'s home (a directory in a temporary directory).
    pub homes: Vec<PathBuf>,
    /// Signer `i`'s keystore.
    pub stores: Vec<Arc<K>>,
    /// Signer `i`'s audit log.
    pub audits: Vec<AuditLog>,
    /// The roster every signer trusts: identifier to identity key.
    pub identities: BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>,
    /// The policy in force (pinned in every keystore).
    pub policy: Policy,
    /// The authorised requester (from `seed ^ 0xff`).
    pub requester: SoftwareIdentity,
    /// The allowlisted destination, [`outside_address`]`(7)`.
    pub allowed: bitcoin::Address,
    /// The group's coins that [`World::psbt`] spends.
    pub coins: Vec<(OutPoint, TxOut)>,
    _tmp: tempfile::TempDir,
}

impl World {
    /// A world from `seed` whose policy is `policy(requester key, allowed
    /// destination)`, a TOML policy text; in-memory keystores and two coins
    /// unless the builder says otherwise.
    pub fn builder(
        seed: u64,
        policy: impl Fn(&IdentityPublicKey, &bitcoin::Address) -> String + 'static,
    ) -> WorldBuilder<MemoryKeystore> {
        WorldBuilder {
            seed,
            threshold: (2, 3),
            policy: Box::new(policy),
            coins: vec![400_000, 300_000],
            keystore: std::marker::PhantomData,
        }
    }
}

impl<K: Keystore + 'static> World<K> {
    /// Signer `i` (0-based: signer `i` holds share `i`).
    pub fn signer(&mut self, i: usize) -> Signer<&mut AuditLog> {
        signer(
            &self.group,
            &self.identities,
            &self.shares[i],
            self.stores[i].clone(),
            &self.policy,
            &mut self.audits[i],
        )
    }

    /// Every signer as an owned [`Signer`] over its audit log, as a daemon
    /// holds it. The world's own logs move into them: [`World::signer`]
    /// panics afterwards.
    pub fn take_signers(&mut self) -> Vec<Signer> {
        let audits = std::mem::take(&mut self.audits);
        audits
            .into_iter()
            .enumerate()
            .map(|(i, audit)| {
                Signer::new(
                    self.group.clone(),
                    self.identities.clone(),
                    self.shares[i].clone(),
                    self.stores[i].clone(),
                    self.policy.clone(),
                    audit,
                )
                .unwrap()
            })
            .collect()
    }

    /// Parses `toml` and installs it: in force, and pinned in every keystore.
    pub fn install_policy(&mut self, toml: &str) {
        self.policy = Policy::from_toml(toml).unwrap();
        for ks in &self.stores {
            keystore::pin_policy(ks, self.policy.digest()).unwrap();
        }
    }

    /// What [`World::coins`] spend.
    pub fn spent(&self) -> Vec<TxOut> {
        self.coins.iter().map(|(_, o)| o.clone()).collect()
    }

    /// The everyday withdrawal's outputs: 250,000 sats to the allowlisted
    /// address, the change back to the group, a 2,000-sat fee.
    pub fn outputs(&self) -> Vec<TxOut> {
        self.outputs_paying(250_000, 2_000)
    }

    /// The everyday withdrawal ([`World::outputs`]) spending every coin.
    pub fn psbt(&self) -> Psbt {
        self.psbt_paying(250_000, 2_000)
    }

    /// A withdrawal spending every coin: `amount` to the allowlisted
    /// address, the change back to the group, `fee`.
    pub fn psbt_paying(&self, amount: u64, fee: u64) -> Psbt {
        psbt(&self.coins, self.outputs_paying(amount, fee))
    }

    fn outputs_paying(&self, amount: u64, fee: u64) -> Vec<TxOut> {
        let total = self.coins.iter().map(|(_, o)| o.value.to_sat()).sum();
        withdrawal_outputs(
            total,
            &self.allowed.script_pubkey(),
            amount,
            &self.group.taproot().script_pubkey(),
            fee,
        )
    }

    /// The requester's request body `id` for `psbt`: created a minute before
    /// [`NOW`], expiring an hour after, memo "weekly rebalance".
    pub fn request_body(&self, id: &str, psbt: &Psbt) -> WithdrawalRequest {
        WithdrawalRequest {
            request_id: RequestId::new(id).unwrap(),
            requester: self.requester.public_key(),
            created_at: NOW - 60,
            expires_at: NOW + 3600,
            memo: "weekly rebalance".into(),
            psbt: psbt.to_string(),
        }
    }

    /// `body` signed by the requester, for this group.
    pub fn sign_request(&self, body: WithdrawalRequest) -> Signed<WithdrawalRequest> {
        let ks = MemoryKeystore::with_identity(self.requester.clone());
        Signed::sign(self.group.id(), body, &ks).unwrap()
    }

    /// The requester's signed request `id` for `psbt` ([`World::request_body`]).
    pub fn request(&self, id: &str, psbt: &Psbt) -> Signed<WithdrawalRequest> {
        self.sign_request(self.request_body(id, psbt))
    }

    /// The request [`World::request`] makes, from `by` instead (another
    /// requester, authorised or not).
    pub fn request_as(
        &self,
        id: &str,
        psbt: &Psbt,
        by: &SoftwareIdentity,
    ) -> Signed<WithdrawalRequest> {
        let mut body = self.request_body(id, psbt);
        body.requester = by.public_key();
        let ks = MemoryKeystore::with_identity(by.clone());
        Signed::sign(self.group.id(), body, &ks).unwrap()
    }

    /// The approvals of signers `who` at [`NOW`]; panics on a refusal.
    pub fn approve(
        &mut self,
        req: &Signed<WithdrawalRequest>,
        who: &[usize],
    ) -> Vec<Signed<Approval>> {
        who.iter()
            .map(|&i| self.signer(i).approve(req, NOW).unwrap())
            .collect()
    }

    /// The coordinator's packages for `approvals` (regtest); panics on a
    /// refusal.
    pub fn packages(
        &self,
        req: &Signed<WithdrawalRequest>,
        approvals: &[Signed<Approval>],
    ) -> WithdrawalPackages {
        build_packages(
            &self.group,
            &self.identities,
            req,
            approvals,
            Network::Regtest,
        )
        .unwrap()
    }

    /// The honest flow to the end with signers `who`: approvals, packages,
    /// shares (each panics on a refusal), then the coordinator's
    /// finalization, whose result is returned.
    ///
    /// # Errors
    /// The coordinator's refusal to finalize.
    pub fn run(
        &mut self,
        req: &Signed<WithdrawalRequest>,
        who: &[usize],
    ) -> Result<(Psbt, Transaction), CoordinatorError> {
        let approvals = self.approve(req, who);
        let packages = self.packages(req, &approvals);
        let shares: Vec<_> = who
            .iter()
            .map(|&i| self.signer(i).sign(req, &packages, NOW).unwrap())
            .collect();
        finalize_withdrawal(
            &self.group,
            &self.identities,
            req,
            &packages,
            &shares,
            Network::Regtest,
        )
    }
}

impl World<SoftwareKeystore> {
    /// Signer `i` as a fresh process sees it: keystore and log opened anew.
    pub fn restart(&mut self, i: usize) {
        self.stores[i] = Arc::new(
            SoftwareKeystore::open(&self.homes[i].join("keystore"), &passphrase()).unwrap(),
        );
        let owner = self.stores[i].identity_public_key().unwrap();
        self.audits[i] = AuditLog::open(&self.homes[i].join("audit.jsonl"), &owner).unwrap();
    }
}
