//! Withdrawals a compromised coordinator cannot redirect.
//!
//! ```text
//! requester ── withdrawal-request ──▶ each signer: Signer::review / approve
//!                                      (own PSBT reading, own policy, own sighashes)
//!           ◀── withdrawal-approval ──
//! coordinator: build_packages ── withdrawal-packages ──▶ each signer: Signer::sign
//!           ◀── withdrawal-shares ───  (checks every approval and package first)
//! coordinator: finalize_withdrawal ──▶ signed transaction
//! ```
//!
//! - [`review`]: the signer's own reading of the PSBT and its sighashes.
//! - [`request`]: the signed documents that travel.
//! - [`signer`]: a co-signer's checks, policy and audit.
//! - [`coordinator`]: packages, aggregation, finalization.
//! - [`finalize`]: the key-path witnesses, every signature verified first.

pub mod coordinator;
pub mod finalize;
pub mod refusal;
pub mod request;
pub mod review;
pub mod signer;

pub use coordinator::{
    build_message_packages, build_packages, check_shares, finalize_withdrawal, CoordinatorError,
};
pub use refusal::{Refusal, RefusalKind};
pub use request::{
    Approval, MessageRequest, RequestId, Signed, WithdrawalPackages, WithdrawalRequest,
    WithdrawalShares,
};
pub use review::{ReviewError, WithdrawalSummary};
pub use signer::{Decision, Reviewed, SessionReply, Signer, SignerError};
