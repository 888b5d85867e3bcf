//! Files for secrets: atomic writes, and a directory whose entries can be
//! taken at most once, even by racing processes.
//!
//! Both keystores that ship with Kura keep round-1 nonces (as ciphertext) in
//! a [`TakeOnceDir`]: the software keystore under its passphrase key, the
//! PKCS#11 keystore under the token's AES key.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

use super::KeystoreError;

/// Maps an I/O error on `path` to [`KeystoreError::Io`].
pub fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeystoreError + '_ {
    move |source| KeystoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or
/// the new one, never a partial one. Without `replace`, an existing `path`
/// is an `AlreadyExists` error.
pub fn write_atomic(path: &Path, bytes: &[u8], replace: bool) -> Result<(), KeystoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
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

/// Makes a directory's entries (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<(), KeystoreError> {
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
        fs::create_dir_all(dir).map_err(io_error(dir))?;
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

    /// Takes an entry: returns its bytes once, `None` ever after (or if it
    /// never existed).
    ///
    /// # Errors
    /// An I/O error; the entry is then either untouched or gone, never returned twice.
    pub fn take(&self, name: &str) -> Result<Option<Vec<u8>>, KeystoreError> {
        let path = self.dir.join(name);
        let lock_path = self.dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        lock.lock().map_err(io_error(&lock_path))?;
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path)(e)),
        };
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(io_error(&path))?;
        drop(f);
        fs::remove_file(&path).map_err(io_error(&path))?;
        sync_dir(&self.dir)?;
        drop(lock);
        Ok(Some(bytes))
    }
}
