//! One PKCS#11 context per module per process, shared; tokens found by label.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::slot::Slot;

use crate::error::HsmError;

fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Pkcs11>>> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Arc<Pkcs11>>>> = OnceLock::new();
    CONTEXTS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The process's context for `module`, loading and initialising it on first
/// use. PKCS#11 allows one `C_Initialize` per process; every keystore on
/// every token of the module shares this context.
///
/// # Errors
/// [`HsmError::ModuleNotFound`] when the library cannot be loaded.
pub fn context(module: &Path) -> Result<Arc<Pkcs11>, HsmError> {
    let mut contexts = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = contexts.get(module) {
        return Ok(Arc::clone(ctx));
    }
    check_module_trusted(module)?;
    let ctx = Pkcs11::new(module).map_err(|e| HsmError::ModuleNotFound {
        path: module.display().to_string(),
        reason: e.to_string(),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(HsmError::pkcs11("C_Initialize")(e)),
    }
    let ctx = Arc::new(ctx);
    contexts.insert(module.to_owned(), Arc::clone(&ctx));
    Ok(ctx)
}

/// Refuses a module that someone other than root could have replaced: the
/// module is code loaded into the signer and handed its PIN, and its path
/// comes from the signer's home, which a disk writer can edit. The file and
/// every directory above it must be owned by root and writable by no one
/// else (no group or world write bit).
///
/// # Errors
/// [`HsmError::UntrustedModule`] naming the first path that fails.
pub fn check_module_trusted(module: &Path) -> Result<(), HsmError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let untrusted = |path: &Path, reason: &str| HsmError::UntrustedModule {
            module: module.display().to_string(),
            path: path.display().to_string(),
            reason: reason.to_owned(),
        };
        let resolved = std::fs::canonicalize(module).map_err(|e| HsmError::ModuleNotFound {
            path: module.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut at = Some(resolved.as_path());
        while let Some(path) = at {
            let meta = std::fs::metadata(path).map_err(|e| untrusted(path, &e.to_string()))?;
            if meta.uid() != 0 {
                return Err(untrusted(path, "not owned by root"));
            }
            if meta.mode() & 0o022 != 0 {
                return Err(untrusted(path, "writable by group or others"));
            }
            at = path.parent();
        }
    }
    Ok(())
}

/// Finalizes every context no keystore still uses. Call once at shutdown;
/// contexts still in use are left alone (and reported by the count).
pub fn finalize_unused() -> usize {
    let mut contexts = registry().lock().unwrap_or_else(|p| p.into_inner());
    let mut in_use = 0;
    for (path, ctx) in std::mem::take(&mut *contexts) {
        match Arc::try_unwrap(ctx) {
            Ok(ctx) => {
                let _ = ctx.finalize();
            }
            Err(ctx) => {
                in_use += 1;
                contexts.insert(path, ctx);
            }
        }
    }
    in_use
}

/// The slot holding the initialised token labelled `label` (and with
/// serial number `serial`, when given). Two tokens with the label and no
/// serial to tell them apart are refused, never picked by slot order.
///
/// # Errors
/// [`HsmError::TokenNotFound`] listing the tokens present, or
/// [`HsmError::AmbiguousToken`] listing the serials of the candidates.
pub fn find_token(ctx: &Pkcs11, label: &str, serial: Option<&str>) -> Result<Slot, HsmError> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(HsmError::pkcs11("C_GetSlotList"))?;
    let mut available = Vec::new();
    let mut matches = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if !info.token_initialized() {
            continue;
        }
        let found = info.label().trim_end();
        let found_serial = info.serial_number().trim_end();
        if found == label && serial.is_none_or(|s| s == found_serial) {
            matches.push((slot, found_serial.to_owned()));
        }
        available.push(format!("{found:?} (serial {found_serial})"));
    }
    match matches.as_slice() {
        [(slot, _)] => Ok(*slot),
        [] => Err(HsmError::TokenNotFound {
            label: match serial {
                Some(s) => format!("{label}\" with serial \"{s}"),
                None => label.to_owned(),
            },
            available: if available.is_empty() {
                "none".into()
            } else {
                available.join(", ")
            },
        }),
        more => Err(HsmError::AmbiguousToken {
            label: label.to_owned(),
            serials: more
                .iter()
                .map(|(_, s)| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
