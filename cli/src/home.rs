//! A participant's home directory: its configuration, keystore, identity
//! card, and (for signers) group, roster, policy and audit log.
//!
//! ```text
//! HOME/kura.json       role, label, which keystore (software or a PKCS#11 URI)
//! HOME/identity.json   the public identity card others import
//! HOME/keystore/       software keystore (age files), or HOME/nonces/ with a token
//! HOME/group.json      the group (after keygen)
//! HOME/roster.json     members' identity keys (after keygen)
//! HOME/staged-group.json  a refreshed group waiting for `kura refresh activate`
//! HOME/policy.toml     the signer's policy (written by its operator)
//! HOME/audit.jsonl     the signer's audit log
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use wallet_core::ceremony::{self, IdentityCard, Role};
use wallet_core::format::{self, DocumentBody, GroupId};
use wallet_core::frost_core::Identifier;
use wallet_core::identity::IdentityPublicKey;
use wallet_core::keystore::{files, Keystore, KeystoreError, SoftwareKeystore, WorkFactor};
use wallet_core::{Label, PublicGroup, Secp256k1Tr};

use crate::network::NetworkArg;
use crate::secrets::{SecretArgs, SecretError, SecretKind};

/// Which keystore a home uses.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum KeystoreConfig {
    /// age-encrypted files under HOME/keystore.
    Software,
    /// A PKCS#11 token.
    Pkcs11 {
        /// The token's URI.
        uri: String,
    },
}

/// HOME/kura.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeConfig {
    /// Format version (1).
    pub kura_home: u32,
    /// `signer`, `requester` or `dealer`.
    pub role: Role,
    /// The participant's label.
    pub label: Label,
    /// Its keystore.
    pub keystore: KeystoreConfig,
    /// The Bitcoin network this home is for, when `init --network` set
    /// it (else its installed policy's, see `crate::network`). Absent in
    /// homes made without it, so their kura.json is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkArg>,
}

/// The protocol's documents, defined once in wallet-core.
pub type Roster = ceremony::Roster<Secp256k1Tr>;

/// The largest audit log `kura audit` reads (the signer's own file, which
/// grows with every decision).
pub const MAX_AUDIT_BYTES: usize = wallet_core::audit::MAX_LOG_BYTES as usize;

/// Reads a Kura document file (at most [`format::MAX_DOCUMENT_BYTES`]).
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_capped(path, format::MAX_DOCUMENT_BYTES)
}

/// Reads at most `cap` bytes from `reader`; more is an error, and memory
/// stays bounded by the cap (the reader is never read past `cap + 1`).
pub fn read_bounded(reader: impl std::io::Read, cap: usize, what: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    let mut bytes = Vec::new();
    reader
        .take(limit)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what}"))?;
    if bytes.len() > cap {
        bail!("{what} is larger than the {cap}-byte limit for such files");
    }
    Ok(bytes)
}

/// Reads a file of at most `cap` bytes.
pub fn read_capped(path: &Path, cap: usize) -> anyhow::Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    read_bounded(f, cap, &path.display().to_string())
}

/// Reads a file, or standard input for `-`, of at most `cap` bytes.
pub fn read_input(path: &Path, cap: usize) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        read_bounded(std::io::stdin().lock(), cap, "standard input")
    } else {
        read_capped(path, cap)
    }
}

/// Writes several new files all or nothing: each is written and synced
/// under a temporary name beside it, then linked to its name (which must not
/// exist); if any step fails, every file already put in place is removed.
pub fn write_all_new(files: &[(&Path, &[u8])]) -> anyhow::Result<()> {
    let mut temps: Vec<PathBuf> = Vec::with_capacity(files.len());
    let result = (|| -> anyhow::Result<()> {
        for (path, bytes) in files {
            if path.exists() {
                bail!("cannot create {} (it must not exist yet)", path.display());
            }
            let name = path
                .file_name()
                .with_context(|| format!("{} is not a file name", path.display()))?;
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".kura-{}.tmp", std::process::id()));
            let tmp = path.with_file_name(tmp_name);
            write_new(&tmp, bytes)?;
            temps.push(tmp);
        }
        Ok(())
    })();
    let mut placed: Vec<&Path> = Vec::new();
    let result = result.and_then(|()| {
        for ((path, _), tmp) in files.iter().zip(&temps) {
            std::fs::hard_link(tmp, path).with_context(|| {
                format!("cannot create {} (it must not exist yet)", path.display())
            })?;
            placed.push(path);
        }
        Ok(())
    });
    for tmp in &temps {
        let _ = std::fs::remove_file(tmp);
    }
    if result.is_err() {
        for path in placed {
            let _ = std::fs::remove_file(path);
        }
    }
    result
}

/// Writes a new file (refuses to overwrite, so nothing that could be mistaken
/// for a previous step's output is replaced).
pub fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    // Whole or not at all (a kill mid-write leaves no partial file), 0600.
    files::write_atomic(path, bytes, false).map_err(|e| match e {
        wallet_core::keystore::KeystoreError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            anyhow::anyhow!("cannot create {} (it must not exist yet)", path.display())
        }
        other => anyhow::Error::new(other).context(format!("cannot write {}", path.display())),
    })
}

/// Reads a Kura document of kind `T` belonging to `group` (or DKG
/// ceremony); on failure the error says "PATH is not WHAT" with the cause.
pub fn read_doc<T: DocumentBody>(path: &Path, group: &GroupId, what: &str) -> anyhow::Result<T> {
    format::decode_for_group(&read(path)?, group)
        .with_context(|| format!("{} is not {what}", path.display()))
}

pub fn read_group(path: &Path) -> anyhow::Result<PublicGroup<Secp256k1Tr>> {
    PublicGroup::from_document(&read(path)?)
        .with_context(|| format!("{} is not a valid group file", path.display()))
}

pub fn read_roster(
    path: &Path,
    group: &PublicGroup<Secp256k1Tr>,
) -> anyhow::Result<BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>> {
    Ok(read_roster_doc(path, group)?.identities(group)?)
}

pub fn read_roster_doc(path: &Path, group: &PublicGroup<Secp256k1Tr>) -> anyhow::Result<Roster> {
    Roster::from_document(&read(path)?, group).with_context(|| {
        format!(
            "{} is not a valid roster for group {}",
            path.display(),
            group.id().short()
        )
    })
}

pub fn read_card(path: &Path) -> anyhow::Result<IdentityCard> {
    IdentityCard::from_json(&read(path)?)
        .with_context(|| format!("{} is not an identity card", path.display()))
}

/// Reads HOME/kura.json (public: the home's role, label, keystore kind
/// and network).
pub fn read_config(dir: &Path) -> anyhow::Result<HomeConfig> {
    let config: HomeConfig =
        serde_json::from_slice(&read(&dir.join("kura.json"))?).with_context(|| {
            format!(
                "{} is not a valid Kura home configuration",
                dir.join("kura.json").display()
            )
        })?;
    if config.kura_home != 1 {
        bail!("unsupported home version {}", config.kura_home);
    }
    Ok(config)
}

/// An opened home.
pub struct Home {
    pub dir: PathBuf,
    pub config: HomeConfig,
    pub keystore: std::sync::Arc<dyn Keystore>,
}

impl Home {
    /// Creates a home with a new keystore and identity key.
    pub fn init(
        dir: &Path,
        role: Role,
        label: &str,
        hsm: Option<&str>,
        network: Option<NetworkArg>,
        secrets: &SecretArgs,
    ) -> anyhow::Result<Home> {
        if dir.join("kura.json").exists() {
            bail!("{} is already a Kura home", dir.display());
        }
        let label = Label::new(label)?;
        // Readable and writable by its owner only, whatever the umask: whoever
        // can write a signer's home can try to roll its state back.
        files::create_private_dir(dir)?;
        let (keystore, config): (std::sync::Arc<dyn Keystore>, KeystoreConfig) = match hsm {
            None => {
                let pass = secrets.passphrase()?;
                let _progress =
                    Progress::start("sealing the new keystore (scrypt, about a second)");
                let ks =
                    SoftwareKeystore::create(&dir.join("keystore"), &pass, WorkFactor::Default)?;
                (std::sync::Arc::new(ks), KeystoreConfig::Software)
            }
            Some(uri) => {
                let parsed = hsm_bridge::Pkcs11Uri::parse(uri)?;
                let ks = hsm_bridge::HsmKeystore::provision(
                    &parsed,
                    &secrets.pin()?,
                    &dir.join("nonces"),
                )?;
                // The home remembers this very token: another one with the
                // same label is refused from now on.
                let pinned = parsed.with_serial(ks.token_serial());
                (
                    std::sync::Arc::new(ks),
                    KeystoreConfig::Pkcs11 {
                        uri: pinned.to_string(),
                    },
                )
            }
        };
        let config = HomeConfig {
            kura_home: 1,
            role,
            label: label.clone(),
            keystore: config,
            network,
        };
        write_new(&dir.join("kura.json"), &serde_json::to_vec_pretty(&config)?)?;
        let card = IdentityCard::new(label, role, keystore.identity_public_key()?);
        write_new(&dir.join("identity.json"), &card.to_json()?)?;
        Ok(Home {
            dir: dir.to_owned(),
            config,
            keystore,
        })
    }

    /// Opens a home and unlocks its keystore.
    pub fn open(dir: &Path, role: &str, secrets: &SecretArgs) -> anyhow::Result<Home> {
        Self::open_as(dir, Some(role), secrets)
    }

    /// Opens a home of any role.
    pub fn open_any(dir: &Path, secrets: &SecretArgs) -> anyhow::Result<Home> {
        Self::open_as(dir, None, secrets)
    }

    fn open_as(dir: &Path, role: Option<&str>, secrets: &SecretArgs) -> anyhow::Result<Home> {
        for path in [dir.to_owned(), dir.join("kura.json")] {
            if path.exists() {
                files::check_private(&path)?;
            }
        }
        let config = read_config(dir)?;
        if let Some(role) = role.filter(|r| *r != config.role.as_str()) {
            bail!(
                "{} is a {} home, not a {role} home",
                dir.display(),
                config.role
            );
        }
        let keystore: std::sync::Arc<dyn Keystore> = match &config.keystore {
            KeystoreConfig::Software => {
                let pass = secrets.passphrase()?;
                let _progress = Progress::start("unlocking the keystore (scrypt, about a second)");
                // A software keystore has a passphrase, not a PIN: say so.
                std::sync::Arc::new(
                    SoftwareKeystore::open(&dir.join("keystore"), &pass).map_err(|e| match e {
                        KeystoreError::WrongPassphrase => {
                            anyhow::Error::new(SecretError::Wrong(SecretKind::Passphrase))
                        }
                        other => anyhow::Error::new(other),
                    })?,
                )
            }
            KeystoreConfig::Pkcs11 { uri } => std::sync::Arc::new(hsm_bridge::HsmKeystore::open(
                &hsm_bridge::Pkcs11Uri::parse(uri)?,
                &secrets.pin()?,
                &dir.join("nonces"),
            )?),
        };
        Ok(Home {
            dir: dir.to_owned(),
            config,
            keystore,
        })
    }
}

/// A one-line progress note on a terminal's stderr for steps that take
/// about a second or more; silent when stderr is not a terminal.
pub struct Progress(bool);

impl Progress {
    pub fn start(what: &str) -> Progress {
        use std::io::IsTerminal;
        let on = std::io::stderr().is_terminal();
        if on {
            eprint!("{what}…");
        }
        Progress(on)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.0 {
            eprintln!(" done");
        }
    }
}
