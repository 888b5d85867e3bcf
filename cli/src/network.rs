//! `--network`: the names bitcoin-cli and BDK use, and where a command's
//! network comes from when it is not given.
//!
//! A command that has a home (`--home`, or a group file inside a home,
//! `HOME/group.json`) takes the home's network: `network` in its
//! `kura.json` (recorded by `init --network`), else the network of its
//! installed policy. A `--network` that contradicts it is an error. With no
//! home, and no `--network`, every command uses [`DEFAULT`]: `bitcoin`.

use std::path::{Path, PathBuf};

use bitcoin::Network;
use serde::{Deserialize, Serialize};

/// A Bitcoin network, as bitcoin-cli's `-chain=` and BDK name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkArg {
    /// Bitcoin's main network (also accepted: `main`, `mainnet`).
    #[value(aliases = ["main", "mainnet"])]
    Bitcoin,
    /// The test network testnet3.
    Testnet,
    /// The test network testnet4 (BIP94).
    Testnet4,
    /// The default signet.
    Signet,
    /// A local regression-test network.
    Regtest,
}

/// The network of a command that has neither a home nor `--network`.
pub const DEFAULT: NetworkArg = NetworkArg::Bitcoin;

impl From<NetworkArg> for Network {
    fn from(n: NetworkArg) -> Network {
        match n {
            NetworkArg::Bitcoin => Network::Bitcoin,
            NetworkArg::Testnet => Network::Testnet,
            NetworkArg::Testnet4 => Network::Testnet4,
            NetworkArg::Signet => Network::Signet,
            NetworkArg::Regtest => Network::Regtest,
        }
    }
}

impl NetworkArg {
    /// The name `--network` takes.
    pub fn name(self) -> &'static str {
        match self {
            NetworkArg::Bitcoin => "bitcoin",
            NetworkArg::Testnet => "testnet",
            NetworkArg::Testnet4 => "testnet4",
            NetworkArg::Signet => "signet",
            NetworkArg::Regtest => "regtest",
        }
    }

    /// The name of a `bitcoin::Network`.
    pub fn of(n: Network) -> NetworkArg {
        match n {
            Network::Bitcoin => NetworkArg::Bitcoin,
            Network::Testnet => NetworkArg::Testnet,
            Network::Testnet4 => NetworkArg::Testnet4,
            Network::Signet => NetworkArg::Signet,
            Network::Regtest => NetworkArg::Regtest,
        }
    }
}

impl std::fmt::Display for NetworkArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A network and where it came from, for messages.
#[derive(Clone, Debug)]
pub struct Configured {
    pub network: NetworkArg,
    pub source: PathBuf,
}

/// A `--network` that contradicts the home's configuration.
#[derive(Debug)]
pub struct NetworkMismatch {
    pub given: NetworkArg,
    pub configured: Configured,
}

impl std::fmt::Display for NetworkMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--network {} contradicts {}, which says {}; leave --network out to use the home's network",
            self.given,
            self.configured.source.display(),
            self.configured.network
        )
    }
}

impl std::error::Error for NetworkMismatch {}

/// The network a home is configured for: `network` in `HOME/kura.json`,
/// else its installed policy's (`HOME/policy.toml`); `None` if neither
/// says. The two disagreeing is an error.
pub fn of_home(dir: &Path) -> anyhow::Result<Option<Configured>> {
    let config = dir.join("kura.json");
    let from_config = if config.is_file() {
        crate::home::read_config(dir)?
            .network
            .map(|network| Configured {
                network,
                source: config,
            })
    } else {
        None
    };
    let policy_path = dir.join("policy.toml");
    // A policy that does not parse says nothing here; the commands that
    // use it refuse it themselves.
    let from_policy = crate::home::read_capped(&policy_path, wallet_core::policy::MAX_POLICY_BYTES)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| wallet_core::policy::Policy::from_toml(&t).ok())
        .map(|p| NetworkArg::of(p.network()))
        .map(|network| Configured {
            network,
            source: policy_path,
        });
    match (from_config, from_policy) {
        (Some(c), Some(p)) if c.network != p.network => anyhow::bail!(
            "{} is for {}, but {} says the home is on {}; install a policy for the home's network",
            p.source.display(),
            p.network,
            c.source.display(),
            c.network
        ),
        (Some(c), _) => Ok(Some(c)),
        (None, p) => Ok(p),
    }
}

/// The home a group file belongs to: its directory, when that is a home.
pub fn home_of_group(group: &Path) -> Option<&Path> {
    let dir = group.parent()?;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    dir.join("kura.json").is_file().then_some(dir)
}

/// The network to use: `--network` if given (checked against the home's),
/// else the home's, else [`DEFAULT`].
pub fn resolve(given: Option<NetworkArg>, home: Option<&Path>) -> anyhow::Result<NetworkArg> {
    let configured = match home {
        Some(dir) => of_home(dir)?,
        None => None,
    };
    match (given, configured) {
        (Some(given), Some(configured)) if given != configured.network => {
            Err(anyhow::Error::new(NetworkMismatch { given, configured }))
        }
        (Some(given), _) => Ok(given),
        (None, Some(c)) => Ok(c.network),
        (None, None) => Ok(DEFAULT),
    }
}
