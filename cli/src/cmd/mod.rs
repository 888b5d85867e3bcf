//! The `kura` subcommands.

pub mod coordinate;
pub mod dkg;
pub mod keygen;
pub mod misc;
pub mod sign;
