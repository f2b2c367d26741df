//! Keys: the device master key, on disk (created on first run, mode 0600), optionally sealed under a
//! passphrase stretched with argon2id, and its crash-safe rotation.
//!
//! The only module that reads or writes key material. It never logs key bytes, never writes a key next to the
//! database (callers check with [`ensure_apart`]), and hands keys out only in zeroizing types.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::protect::{AeadKey, Sealed};

/// Errors of key handling; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Group or others may read the key file.
    #[error("key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The key file does not hold exactly one key.
    #[error("key file {path} is not a facegate master key ({len} bytes, expected 32); restore it from your backup — without it the sealed templates cannot be opened")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The key would sit in the same folder as the data it protects.
    #[error("the master key {key} is in the same folder as the database {db}; keep it elsewhere (e.g. /var/lib/facegate-keys/master.key)")]
    BesideData {
        /// The key file.
        key: PathBuf,
        /// The database.
        db: PathBuf,
    },
    /// The passphrase does not open the key file.
    #[error("the passphrase does not open the master key file {path}; check FACEGATE_MASTER_PASSPHRASE")]
    WrongPassphrase {
        /// The file.
        path: PathBuf,
    },
    /// A passphrase-sealed key file, but no passphrase given.
    #[error("the master key file {path} is sealed with a passphrase; set FACEGATE_MASTER_PASSPHRASE")]
    NeedsPassphrase {
        /// The file.
        path: PathBuf,
    },
    /// A passphrase was given for a plain key file.
    #[error("the master key file {path} is a plain key, not passphrase-sealed; unset FACEGATE_MASTER_PASSPHRASE")]
    NotSealed {
        /// The file.
        path: PathBuf,
    },
    /// The passphrase derivation failed (bad parameters).
    #[error("cannot derive the master key from the passphrase: {0}")]
    Derive(#[source] argon2::Error),
    /// Sealing the key under the passphrase's key failed.
    #[error("cannot seal the master key under the passphrase: {0}")]
    Seal(#[source] crate::protect::SealError),
}

/// The master key's file, and the staged successor that makes rotation crash-safe.
///
/// The key rotates at every revocation, so a copy of the database taken before it can never be opened again
/// with anything left on the device. A rotation writes the new key to `<file>.next`, commits the database
/// re-wrapped under it, then wipes the old file and renames `.next` over it. A crash at any point leaves
/// either the old key (the database was not committed; `.next` is discarded) or `.next` (committed; it is
/// promoted when the registry next opens).
///
/// Plain mode stores the 32 key bytes. With a passphrase, the file holds the key sealed (AES-256-GCM) under
/// a key stretched from the passphrase with argon2id and a fresh salt: `FGK1 | salt(16) | nonce(12) | ct(48)`.
pub struct MasterKeyFile {
    path: PathBuf,
    passphrase: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for MasterKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeyFile")
            .field("path", &self.path)
            .field("passphrase", &self.passphrase.as_ref().map(|_| ".."))
            .finish()
    }
}

const SEALED_MAGIC: &[u8; 4] = b"FGK1";
const SEALED_LEN: usize = 4 + 16 + 12 + 48;

impl MasterKeyFile {
    /// The key file at `path`, sealed under `passphrase` when one is given.
    pub fn new(path: PathBuf, passphrase: Option<Zeroizing<String>>) -> Self {
        Self { path, passphrase }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the key file exists.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    fn next_path(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".next");
        PathBuf::from(name)
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> KeyError {
        let path = path.to_path_buf();
        move |e| KeyError::Io { path: path.clone(), reason: e.to_string() }
    }

    /// Loads the key, creating a fresh random one (mode 0600, created exclusively) on first run.
    pub fn load_or_create(&self) -> Result<AeadKey, KeyError> {
        match self.read(&self.path)? {
            Some(key) => Ok(key),
            None => {
                if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(self.io(dir))?;
                }
                let key = AeadKey::generate();
                self.write_new(&self.path, &key)?;
                Ok(key)
            }
        }
    }

    /// Loads a key that must already exist (e.g. the compound's shared secret, made by
    /// `facegate compound init`); a missing file is an error, never a fresh key.
    pub fn load(&self) -> Result<AeadKey, KeyError> {
        self.read(&self.path)?.ok_or_else(|| KeyError::Io {
            path: self.path.clone(),
            reason: "missing; copy it from the compound folder (`facegate compound add-gate`)".into(),
        })
    }

    /// The staged successor, if a rotation was interrupted.
    pub fn load_next(&self) -> Result<Option<AeadKey>, KeyError> {
        self.read(&self.next_path())
    }

    /// Writes `key` as the staged successor (replacing any stale one), durably.
    pub fn stage_next(&self, key: &AeadKey) -> Result<(), KeyError> {
        self.discard_next()?;
        self.write_new(&self.next_path(), key)
    }

    /// Takes the cross-process lock that serialises rotations and recoveries (`<file>.lock`, held until the
    /// guard drops).
    pub fn lock(&self) -> Result<KeyFileLock, KeyError> {
        let mut name = self.path.clone().into_os_string();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(self.io(dir))?;
        }
        // flock works on a read-only descriptor: once the lock file exists, taking the lock writes nothing.
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(self.io(&path))?,
            Err(e) => return Err(self.io(&path)(e)),
        };
        file.lock().map_err(self.io(&path))?;
        Ok(KeyFileLock { _file: file })
    }

    /// Makes the staged successor the key: wipes the old file's bytes, then renames `.next` over it. If
    /// another process already promoted it (the key file holds `expected`), there is nothing left to do.
    pub fn promote_next(&self, expected: &AeadKey) -> Result<(), KeyError> {
        let next = self.next_path();
        if !next.exists() {
            return match self.read(&self.path) {
                Ok(Some(key)) if key.as_bytes() == expected.as_bytes() => Ok(()),
                _ => Err(KeyError::Io { path: next, reason: "the staged key is gone".into() }),
            };
        }
        if self.path.exists() {
            self.wipe(&self.path)?;
        }
        std::fs::rename(&next, &self.path).map_err(self.io(&next))?;
        self.sync_dir()
    }

    /// Wipes and removes a staged successor, if any (the rotation it belonged to never committed).
    pub fn discard_next(&self) -> Result<(), KeyError> {
        let next = self.next_path();
        // Look before opening for writing: the daemon's start must not even try to write a key file.
        if !next.exists() {
            return Ok(());
        }
        self.wipe(&next)?;
        std::fs::remove_file(&next).map_err(self.io(&next))?;
        self.sync_dir()
    }

    /// Overwrites a key file's bytes with zeros, durably (before it is replaced or removed).
    fn wipe(&self, path: &Path) -> Result<(), KeyError> {
        let mut file = std::fs::OpenOptions::new().write(true).open(path).map_err(self.io(path))?;
        let len = file.metadata().map_or(0, |m| m.len());
        file.write_all(&vec![0u8; usize::try_from(len).unwrap_or(0)]).map_err(self.io(path))?;
        file.sync_all().map_err(self.io(path))
    }

    fn sync_dir(&self) -> Result<(), KeyError> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(self.io(dir))
    }

    fn read(&self, path: &Path) -> Result<Option<AeadKey>, KeyError> {
        let io = self.io(path);
        let mut file = match std::fs::OpenOptions::new().read(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mode = file.metadata().map_err(&io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: path.to_path_buf(), mode });
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(SEALED_LEN + 1));
        Read::by_ref(&mut file).take(SEALED_LEN as u64 + 1).read_to_end(&mut bytes).map_err(&io)?;
        self.decode(path, &bytes).map(Some)
    }

    fn decode(&self, path: &Path, bytes: &[u8]) -> Result<AeadKey, KeyError> {
        let corrupt = || KeyError::Corrupt { path: path.to_path_buf(), len: bytes.len() };
        let sealed = bytes.len() == SEALED_LEN && bytes.starts_with(SEALED_MAGIC);
        match (&self.passphrase, sealed) {
            (None, false) => AeadKey::from_slice(bytes).ok_or_else(corrupt),
            (Some(passphrase), true) => {
                let salt: [u8; 16] = bytes[4..20].try_into().map_err(|_| corrupt())?;
                let kek = derive_master_key(passphrase.as_bytes(), &salt)?;
                let wrapped = Sealed {
                    nonce: bytes[20..32].try_into().map_err(|_| corrupt())?,
                    ciphertext: bytes[32..].to_vec(),
                };
                crate::protect::unwrap_key(&wrapped, &kek, "facegate master key")
                    .map_err(|_| KeyError::WrongPassphrase { path: path.to_path_buf() })
            }
            (None, true) => Err(KeyError::NeedsPassphrase { path: path.to_path_buf() }),
            (Some(_), false) => Err(KeyError::NotSealed { path: path.to_path_buf() }),
        }
    }

    fn encode(&self, key: &AeadKey) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let Some(passphrase) = &self.passphrase else { return Ok(Zeroizing::new(key.as_bytes().to_vec())) };
        let salt: [u8; 16] = rand::random();
        let kek = derive_master_key(passphrase.as_bytes(), &salt)?;
        let wrapped = crate::protect::wrap_key(key, &kek, "facegate master key").map_err(KeyError::Seal)?;
        let mut out = Zeroizing::new(Vec::with_capacity(SEALED_LEN));
        out.extend_from_slice(SEALED_MAGIC);
        out.extend_from_slice(&salt);
        out.extend_from_slice(&wrapped.nonce);
        out.extend_from_slice(&wrapped.ciphertext);
        Ok(out)
    }

    fn write_new(&self, path: &Path, key: &AeadKey) -> Result<(), KeyError> {
        let bytes = self.encode(key)?;
        let io = self.io(path);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(&io)?;
        file.write_all(&bytes).map_err(&io)?;
        file.sync_all().map_err(&io)?;
        self.sync_dir()
    }
}

/// Holds the key file's rotation lock; released on drop.
#[derive(Debug)]
pub struct KeyFileLock {
    _file: std::fs::File,
}

/// Derives the master key from a passphrase with argon2id (64 MiB, 3 passes, 1 lane) and a per-device salt.
pub fn derive_master_key(passphrase: &[u8], salt: &[u8; 16]) -> Result<AeadKey, KeyError> {
    let params = Params::new(64 * 1024, 3, 1, Some(32)).map_err(KeyError::Derive)?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, &mut out[..])
        .map_err(KeyError::Derive)?;
    Ok(AeadKey::from_bytes(*out))
}

/// Refuses a key file in the same folder as the database it protects.
pub fn ensure_apart(key: &Path, db: &Path) -> Result<(), KeyError> {
    let folder = |p: &Path| {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
    };
    if folder(key) == folder(db) {
        return Err(KeyError::BesideData { key: key.to_path_buf(), db: db.to_path_buf() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_or_create_master_key(path: &Path) -> Result<AeadKey, KeyError> {
        MasterKeyFile::new(path.to_path_buf(), None).load_or_create()
    }

    #[test]
    fn first_run_creates_a_0600_key_and_later_runs_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        let first = load_or_create_master_key(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = load_or_create_master_key(&path).unwrap();
        assert_eq!(first.as_bytes(), again.as_bytes());
    }

    #[test]
    fn a_readable_or_damaged_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        load_or_create_master_key(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_master_key(&path).unwrap_err();
        assert!(matches!(err, KeyError::Permissions { .. }) && err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(load_or_create_master_key(&path), Err(KeyError::Corrupt { len: 5, .. })));
    }

    #[test]
    fn passphrase_derivation_is_deterministic_and_salted() {
        let salt = [9u8; 16];
        let a = derive_master_key(b"correct horse", &salt).unwrap();
        assert_eq!(a.as_bytes(), derive_master_key(b"correct horse", &salt).unwrap().as_bytes());
        assert_ne!(a.as_bytes(), derive_master_key(b"correct horse", &[8u8; 16]).unwrap().as_bytes());
        assert_ne!(a.as_bytes(), derive_master_key(b"wrong horse", &salt).unwrap().as_bytes());
    }

    #[test]
    fn the_key_may_not_sit_beside_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("facegate.sqlite");
        assert!(matches!(ensure_apart(&dir.path().join("master.key"), &db), Err(KeyError::BesideData { .. })));
        ensure_apart(&dir.path().join("keys/master.key"), &db).unwrap();
    }
}
