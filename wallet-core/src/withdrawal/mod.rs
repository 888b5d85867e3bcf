//! Withdrawals a compromised coordinator cannot redirect.
//!
//! - [`review`]: the signer's own reading of the PSBT and its sighashes.
//! - [`finalize`]: the coordinator's last step, verifying every signature.

pub mod finalize;
pub mod review;
