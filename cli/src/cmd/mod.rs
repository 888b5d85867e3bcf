//! The `kura` subcommands.

pub mod coordinate;
pub mod dkg;
pub mod keygen;
pub mod maintain;
pub mod misc;
pub mod sign;
