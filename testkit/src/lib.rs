//! The test kit shared by Kura's tests: transaction builders, Bitcoin Core's
//! consensus check, dealt groups, and [`World`], a 2-of-3 group of honest
//! signers (own keystore, policy and audit log each) with a requester.
//!
//! Which part fits which test:
//! - a coin and a PSBT spending it: [`coin`], [`psbt`], [`with_tx`],
//!   [`withdrawal_outputs`], [`outside_address`];
//! - whether Bitcoin Core accepts a finalized transaction:
//!   [`consensus_verify`], with every spent output, under the Taproot rules;
//! - FROST without withdrawals: [`deal`], [`sign_with`],
//!   [`libsecp_verify_tr`];
//! - a withdrawal through real signers: [`World::builder`], then
//!   [`World::request`], [`World::approve`], [`World::packages`],
//!   [`World::signer`] or the whole honest flow, [`World::run`].
//!
//! Every check stays in the tests: the kit builds and runs, it asserts
//! nothing but that its own set-up succeeds (it panics otherwise).
//!
//! ```
//! use kura_testkit::{consensus_verify, World, NOW};
//!
//! let policy = |requester: &_, allowed: &_| {
//!     format!(
//!         "version = 1\nnetwork = \"regtest\"\n\
//!          [[requester]]\nlabel = \"ops\"\nkey = \"{requester}\"\n\
//!          [[destination]]\nlabel = \"exchange\"\naddress = \"{allowed}\"\n\
//!          [limits]\nper_transaction_sat = 500_000\nrolling_window_hours = 24\n\
//!          rolling_window_sat = 700_000\nmax_fee_sat = 20_000\nmax_fee_rate_sat_per_vb = 100\n"
//!     )
//! };
//! let mut w = World::builder(1, policy).build();
//! let req = w.request("w-1", &w.psbt());
//! let (_, tx) = w.run(&req, &[0, 2]).unwrap();
//! consensus_verify(&tx, &w.spent()).unwrap();
//! assert!(w.signer(1).approve(&req, NOW).is_ok());
//! ```

mod consensus;
mod frost;
mod transactions;
mod world;

pub use consensus::{consensus_verify, ConsensusFailure};
pub use frost::{deal, labels, libsecp_verify_tr, rng, sign_with};
pub use transactions::{coin, funding_tx, outside_address, psbt, with_tx, withdrawal_outputs};
pub use world::{passphrase, signer, FixtureKeystore, World, WorldBuilder, NOW};
