//! Keys: the device master key, on disk (created on first run, mode 0600) or derived from a passphrase with
//! argon2id.
//!
//! The only module that reads or writes key material. It never logs key bytes, never writes a key next to the
//! database (callers check with [`ensure_apart`]), and hands keys out only in zeroizing types.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::protect::AeadKey;

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
    #[error("the master key {key} is in the same folder as the database {db}; keep it elsewhere (e.g. /etc/facegate/master.key)")]
    BesideData {
        /// The key file.
        key: PathBuf,
        /// The database.
        db: PathBuf,
    },
    /// The passphrase derivation failed (bad parameters).
    #[error("cannot derive the master key from the passphrase: {0}")]
    Derive(String),
}

/// Loads the master key from `path`, creating a fresh random one (mode 0600, created exclusively) if the file
/// does not exist yet.
pub fn load_or_create_master_key(path: &Path) -> Result<AeadKey, KeyError> {
    let io = |e: std::io::Error| KeyError::Io { path: path.to_path_buf(), reason: e.to_string() };
    match std::fs::OpenOptions::new().read(true).open(path) {
        Ok(mut file) => {
            let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions { path: path.to_path_buf(), mode });
            }
            let mut bytes = Zeroizing::new(Vec::with_capacity(33));
            Read::by_ref(&mut file).take(33).read_to_end(&mut bytes).map_err(io)?;
            let array: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::Corrupt { path: path.to_path_buf(), len: bytes.len() })?;
            Ok(AeadKey::from_bytes(array))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let key = AeadKey::generate();
            let mut file =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
            file.write_all(key.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// Derives the master key from a passphrase with argon2id (64 MiB, 3 passes, 1 lane) and a per-device salt.
pub fn derive_master_key(passphrase: &[u8], salt: &[u8; 16]) -> Result<AeadKey, KeyError> {
    let params = Params::new(64 * 1024, 3, 1, Some(32)).map_err(|e| KeyError::Derive(e.to_string()))?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, &mut out[..])
        .map_err(|e| KeyError::Derive(e.to_string()))?;
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
