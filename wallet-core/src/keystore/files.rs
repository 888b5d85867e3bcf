//! Files for secrets: atomic writes, and a directory whose entries can be
//! taken at most once, even by racing processes.
//!
//! Both keystores that ship with Kura keep round-1 nonces (as ciphertext) in
//! a [`TakeOnceDir`]: the software keystore under its passphrase key, the
//! PKCS#11 keystore under the token's AES key.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

use super::KeystoreError;

/// Maps an I/O error on `path` to [`KeystoreError::Io`].
pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeystoreError + '_ {
    move |source| KeystoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or
/// the new one, never a partial one. Without `replace`, an existing `path`
/// is an `AlreadyExists` error.
pub fn write_atomic(path: &Path, bytes: &[u8], replace: bool) -> Result<(), KeystoreError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut rnd = [0u8; 8];
    OsRng.fill_bytes(&mut rnd);
    let tmp = dir.join(format!(".tmp-{}", hex::encode(rnd)));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        if replace {
            fs::rename(&tmp, path)
        } else {
            // link() fails if `path` exists: no silent overwrite, no race.
            fs::hard_link(&tmp, path).and_then(|()| fs::remove_file(&tmp))
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_error(path))?;
    sync_dir(dir)
}

/// Creates `dir` (and missing parents) readable by its owner only (0700 on
/// Unix, whatever the umask), or checks an existing one with
/// [`check_private`].
///
/// # Errors
/// An I/O error, or [`KeystoreError::Insecure`] for an existing directory
/// that others can write.
pub fn create_private_dir(dir: &Path) -> Result<(), KeystoreError> {
    if dir.exists() {
        return check_private(dir);
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io_error(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;
    }
    Ok(())
}

/// Refuses a file or directory that users other than its owner can write
/// (group- or world-writable on Unix): whoever can write it could replace
/// a signer's state.
///
/// # Errors
/// [`KeystoreError::Insecure`], or an I/O error reading its metadata.
pub fn check_private(path: &Path) -> Result<(), KeystoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(io_error(path))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            return Err(KeystoreError::Insecure {
                path: path.display().to_string(),
                mode: mode & 0o7777,
            });
        }
    }
    Ok(())
}

/// An exclusive lock on `path` (created if missing), held across processes
/// until the returned file is dropped.
///
/// # Errors
/// An I/O error opening or locking it.
///
/// A lock file that is a symbolic link is refused, and one replaced while
/// this process waited for it (someone unlinked and recreated it, which
/// would let two processes each hold "the" lock) is locked again.
pub(crate) fn lock_exclusive(path: &Path) -> Result<File, KeystoreError> {
    let mut opts = OpenOptions::new();
    opts.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    for _ in 0..16 {
        if let Ok(m) = fs::symlink_metadata(path) {
            if m.file_type().is_symlink() {
                return Err(KeystoreError::Insecure {
                    path: path.display().to_string(),
                    mode: 0o120000,
                });
            }
        }
        let lock = opts.open(path).map_err(io_error(path))?;
        lock.lock().map_err(io_error(path))?;
        if same_file(&lock, path)? {
            return Ok(lock);
        }
    }
    Err(KeystoreError::Io {
        path: path.display().to_string(),
        source: io::Error::other("the lock file keeps being replaced"),
    })
}

/// Whether the open `file` is still the file at `path`.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> Result<bool, KeystoreError> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata().map_err(io_error(path))?;
    Ok(match fs::symlink_metadata(path) {
        Ok(now) => now.dev() == open.dev() && now.ino() == open.ino(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_error(path)(e)),
    })
}

#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> Result<bool, KeystoreError> {
    Ok(true)
}

/// Makes a directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), KeystoreError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    Ok(())
}

/// A directory of files each of which can be taken (read and deleted) at
/// most once. Takes are serialised by an exclusive lock on `.lock` in the
/// directory, which holds across processes; a taken file is deleted and the
/// deletion made durable before its contents are returned, so a crash after
/// a take can lose the contents but never hand them out twice.
#[derive(Debug, Clone)]
pub struct TakeOnceDir {
    dir: PathBuf,
}

impl TakeOnceDir {
    /// Opens (creating if needed) the directory.
    ///
    /// # Errors
    /// An I/O error creating it.
    pub fn open(dir: &Path) -> Result<Self, KeystoreError> {
        create_private_dir(dir)?;
        Ok(TakeOnceDir {
            dir: dir.to_owned(),
        })
    }

    /// Stores a new entry; an existing `name` is [`KeystoreError::AlreadyExists`].
    ///
    /// # Errors
    /// [`KeystoreError::AlreadyExists`] or an I/O error.
    pub fn put_new(&self, name: &str, bytes: &[u8]) -> Result<(), KeystoreError> {
        write_atomic(&self.dir.join(name), bytes, false).map_err(|e| match e {
            KeystoreError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists => {
                KeystoreError::AlreadyExists(name.to_owned())
            }
            other => other,
        })
    }

    /// Takes an entry under the directory's lock: reads it (`None` when
    /// there is none) and hands it to `consume`, which decides whether the
    /// entry is spent — typically by destroying the per-entry key the bytes
    /// are encrypted under, which restoring the file cannot undo. When
    /// `consume` returns `Ok` the file is deleted durably.
    ///
    /// # Errors
    /// An I/O error, or `consume`'s error (the file is then left as it is).
    pub fn take_with<T>(
        &self,
        name: &str,
        consume: impl FnOnce(Option<Vec<u8>>) -> Result<T, KeystoreError>,
    ) -> Result<T, KeystoreError> {
        let path = self.dir.join(name);
        let _lock = lock_exclusive(&self.dir.join(".lock"))?;
        let bytes = match fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&path)(e)),
        };
        let present = bytes.is_some();
        let out = consume(bytes)?;
        if present {
            self.remove(name)?;
        }
        Ok(out)
    }

    /// Whether an entry named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.dir.join(name).exists()
    }

    /// Deletes an entry durably; a missing one is not an error.
    ///
    /// # Errors
    /// An I/O error.
    pub fn remove(&self, name: &str) -> Result<(), KeystoreError> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// Runs `f` under the directory's lock (the one takes hold).
    ///
    /// # Errors
    /// An I/O error taking the lock, or `f`'s error.
    pub fn locked<T>(
        &self,
        f: impl FnOnce() -> Result<T, KeystoreError>,
    ) -> Result<T, KeystoreError> {
        let _lock = lock_exclusive(&self.dir.join(".lock"))?;
        f()
    }
}
