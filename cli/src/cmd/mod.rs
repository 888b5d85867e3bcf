//! The `kura` subcommands: each module owns its clap arguments and runs them.

pub mod audit;
pub mod coordinate;
pub mod dkg;
pub mod docs;
pub mod hsm;
pub mod keygen;
pub mod mailbox;
pub mod maintain;
pub mod policy;
pub mod reshare;
pub mod roles;
pub mod service;
pub mod sign;
pub mod wallet;
