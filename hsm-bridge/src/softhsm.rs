//! SoftHSM2 for tests and the demo: a private token directory with its own
//! configuration, labelled tokens initialised from code, cleaned up on drop.
//!
//! SoftHSM reads `SOFTHSM2_CONF` when the module is initialised, so call
//! [`SoftHsm::activate`] before the first PKCS#11 call of the process. One
//! directory serves the whole process; give each token its own label.

use std::fs;
use std::path::{Path, PathBuf};

use cryptoki::context::Pkcs11;
use cryptoki::session::UserType;
use secrecy::SecretString;

use crate::error::HsmError;

/// Where Debian's `softhsm2` package puts the module.
pub const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The SoftHSM2 module, if installed at its Debian path or named by `PKCS11_MODULE`.
pub fn module() -> Option<PathBuf> {
    std::env::var_os(crate::uri::MODULE_ENV)
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(PathBuf::from(DEFAULT_MODULE)))
        .find(|p| p.is_file())
}

/// A private SoftHSM2 token directory and configuration.
#[derive(Debug)]
pub struct SoftHsm {
    dir: PathBuf,
    remove_on_drop: bool,
}

impl SoftHsm {
    /// Sets up `dir/softhsm2.conf` and `dir/tokens/` (the directory is kept).
    ///
    /// # Errors
    /// An I/O error creating the files.
    pub fn create_in(dir: &Path) -> std::io::Result<Self> {
        Self::setup(dir, false)
    }

    /// Sets up a fresh directory under `/dev/shm` (tmpfs) when it is
    /// writable, else under the system temp directory; removed on drop.
    ///
    /// # Errors
    /// An I/O error.
    pub fn create_temporary() -> std::io::Result<Self> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir()
            && fs::metadata(shm)
                .map(|m| !m.permissions().readonly())
                .unwrap_or(false)
        {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let mut rnd = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut rnd);
        Self::setup(
            &base.join(format!("kura-softhsm-{}", hex::encode(rnd))),
            true,
        )
    }

    /// Uses a directory set up earlier by [`SoftHsm::create_in`] (e.g. by a
    /// parent process) without rewriting its configuration.
    ///
    /// # Errors
    /// `NotFound` when the directory has no `softhsm2.conf`.
    pub fn attach(dir: &Path) -> std::io::Result<Self> {
        if !dir.join("softhsm2.conf").is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} has no softhsm2.conf", dir.display()),
            ));
        }
        Ok(SoftHsm {
            dir: dir.to_owned(),
            remove_on_drop: false,
        })
    }

    fn setup(dir: &Path, remove_on_drop: bool) -> std::io::Result<Self> {
        fs::create_dir_all(dir.join("tokens"))?;
        let conf = format!(
            "# SoftHSM2 configuration written by Kura\ndirectories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            dir.join("tokens").display()
        );
        fs::write(dir.join("softhsm2.conf"), conf)?;
        Ok(SoftHsm {
            dir: dir.to_owned(),
            remove_on_drop,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration file.
    pub fn conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    /// Points this process's SoftHSM at this directory (`SOFTHSM2_CONF`).
    /// Call before the first PKCS#11 call of the process, while it has one thread.
    pub fn activate(&self) {
        std::env::set_var("SOFTHSM2_CONF", self.conf());
    }

    /// Initialises a new token labelled `label` with the given SO and user PINs.
    ///
    /// # Errors
    /// A PKCS#11 error, or [`HsmError::TokenNotFound`] when no free slot is left.
    pub fn init_token(
        ctx: &Pkcs11,
        label: &str,
        so_pin: &SecretString,
        user_pin: &SecretString,
    ) -> Result<(), HsmError> {
        let slots = ctx
            .get_all_slots()
            .map_err(HsmError::pkcs11("C_GetSlotList"))?;
        let labelled = |ctx: &Pkcs11| -> Result<Vec<(cryptoki::slot::Slot, String)>, HsmError> {
            let slots = ctx
                .get_slots_with_token()
                .map_err(HsmError::pkcs11("C_GetSlotList"))?;
            Ok(slots
                .into_iter()
                .filter_map(|s| ctx.get_token_info(s).ok().map(|i| (s, i)))
                .filter(|(_, i)| i.token_initialized() && i.label().trim_end() == label)
                .map(|(s, i)| (s, i.serial_number().trim_end().to_owned()))
                .collect())
        };
        let before: Vec<String> = labelled(ctx)?.into_iter().map(|(_, s)| s).collect();
        let free = slots
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .map(|i| !i.token_initialized())
                    .unwrap_or(false)
            })
            .ok_or_else(|| HsmError::TokenNotFound {
                label: "(a free SoftHSM slot)".into(),
                available: "none".into(),
            })?;
        ctx.init_token(free, so_pin, label)
            .map_err(HsmError::pkcs11("C_InitToken"))?;
        // The new token: the one with this label whose serial is new (tests
        // may give two tokens one label on purpose).
        let slot = labelled(ctx)?
            .into_iter()
            .find(|(_, serial)| !before.contains(serial))
            .map(|(slot, _)| slot)
            .ok_or_else(|| HsmError::TokenNotFound {
                label: label.to_owned(),
                available: "(the token just initialised is not listed)".into(),
            })?;
        let session = ctx
            .open_rw_session(slot)
            .map_err(HsmError::pkcs11("C_OpenSession"))?;
        session
            .login(UserType::So, Some(so_pin))
            .map_err(HsmError::pkcs11("C_Login(SO)"))?;
        session
            .init_pin(user_pin)
            .map_err(HsmError::pkcs11("C_InitPIN"))?;
        session.logout().map_err(HsmError::pkcs11("C_Logout"))?;
        Ok(())
    }
}

impl Drop for SoftHsm {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
