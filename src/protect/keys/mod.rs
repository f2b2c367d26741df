//! Keys: the device's key files (the master key, the compound secret and gate key, the audit signing key,
//! the portal's TLS key), each sealed at rest under the device's key root ([`root`]: a TPM, the Pi's OTP
//! key, a passphrase, or nothing for development), and the master key's crash-safe rotation.
//!
//! The only module that reads or writes key material. It never logs key bytes, never writes a key next to the
//! database (callers check with [`ensure_apart`]), and hands keys out only in zeroizing types.

pub mod otp;
pub mod root;
pub mod tpm;

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::protect::{AeadKey, Sealed};
pub use root::{Kek, KeyRoot, RootError, RootKind};

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
    #[error("key file {path} is not a facegate key ({len} bytes); it is damaged — without it what it sealed cannot be opened")]
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
    /// A key file sealed under a hardware root, but the config names none.
    #[error("key file {path} is sealed under a hardware key root; set `[keys] root` to the root this device uses (tpm or pi-otp)")]
    SealedUnderRoot {
        /// The file.
        path: PathBuf,
    },
    /// A key file sealed under another device's root: the card was copied or moved.
    #[error("key file {path} does not open under this device's {root} root: it was sealed on another device (a copied or moved card opens nothing)")]
    ForeignRoot {
        /// The file.
        path: PathBuf,
        /// The root in use.
        root: &'static str,
    },
    /// A key file in clear while the config names a hardware root.
    #[error("key file {path} is in clear on the card although `[keys] root` is {root}; run `facegate keys migrate` to seal it and destroy the clear copy")]
    InClear {
        /// The file.
        path: PathBuf,
        /// The configured root.
        root: &'static str,
    },
    /// The key root could not give the key-encryption key.
    #[error(transparent)]
    Root(#[from] RootError),
    /// The passphrase derivation failed (bad parameters).
    #[error("cannot derive the master key from the passphrase: {0}")]
    Derive(#[source] argon2::Error),
    /// Sealing the key under the passphrase's key failed.
    #[error("cannot seal the master key under the passphrase: {0}")]
    Seal(#[source] crate::protect::SealError),
}

/// How key files are sealed at rest: the device's root, once opened. Cloned into every holder of a key file
/// (the registry, the link, the portal); the key-encryption key itself is shared, never copied.
#[derive(Clone)]
pub enum KeyWrap {
    /// `file`: keys in clear on the card (development; the audit warns, the daemon warns at every start).
    Plain,
    /// `passphrase`: each file sealed under argon2id(passphrase, its own salt): `FGK1 | salt(16) | nonce(12) | ct`.
    Passphrase(Zeroizing<String>),
    /// `tpm` or `pi-otp`: each file sealed under the root's key-encryption key: `FGK2 | nonce(12) | ct`.
    Root {
        /// Which root.
        kind: RootKind,
        /// The key-encryption key it gave.
        kek: Kek,
    },
}

impl std::fmt::Debug for KeyWrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyWrap({})", self.kind().name())
    }
}

impl KeyWrap {
    /// The root behind this wrap.
    pub fn kind(&self) -> RootKind {
        match self {
            Self::Plain => RootKind::File,
            Self::Passphrase(_) => RootKind::Passphrase,
            Self::Root { kind, .. } => *kind,
        }
    }

    /// Opens the key-encryption key of a hardware root (creating it on first use).
    pub fn open_root(root: &dyn KeyRoot, key_dir: &Path) -> Result<Self, KeyError> {
        Ok(Self::Root { kind: root.kind(), kek: root::open_or_create(root, key_dir)? })
    }

    fn encode(&self, secret: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let (magic, salt, key): (&[u8; 4], Option<[u8; 16]>, AeadKey) = match self {
            Self::Plain => return Ok(Zeroizing::new(secret.to_vec())),
            Self::Passphrase(passphrase) => {
                let salt: [u8; 16] = rand::random();
                (PASSPHRASE_MAGIC, Some(salt), derive_master_key(passphrase.as_bytes(), &salt)?)
            }
            Self::Root { kek, .. } => (ROOT_MAGIC, None, kek.key().clone()),
        };
        let sealed = crate::protect::seal_message(&key, secret, KEY_FILE_AAD).map_err(KeyError::Seal)?;
        let mut out = Zeroizing::new(Vec::with_capacity(4 + 16 + 12 + sealed.ciphertext.len()));
        out.extend_from_slice(magic);
        if let Some(salt) = salt {
            out.extend_from_slice(&salt);
        }
        out.extend_from_slice(&sealed.nonce);
        out.extend_from_slice(&sealed.ciphertext);
        Ok(out)
    }

    fn decode(&self, path: &Path, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let corrupt = || KeyError::Corrupt { path: path.to_path_buf(), len: bytes.len() };
        let path = path.to_path_buf();
        let form = Form::of(bytes);
        match (self, form) {
            (Self::Plain, Form::Clear) => Ok(Zeroizing::new(bytes.to_vec())),
            (Self::Passphrase(passphrase), Form::Passphrase) => {
                let salt: [u8; 16] = bytes[4..20].try_into().map_err(|_| corrupt())?;
                let key = derive_master_key(passphrase.as_bytes(), &salt)?;
                let sealed = Sealed {
                    nonce: bytes[20..32].try_into().map_err(|_| corrupt())?,
                    ciphertext: bytes[32..].to_vec(),
                };
                open_key_file(&key, &sealed).ok_or(KeyError::WrongPassphrase { path })
            }
            (Self::Root { kind, kek }, Form::Root) => {
                let sealed =
                    Sealed { nonce: bytes[4..16].try_into().map_err(|_| corrupt())?, ciphertext: bytes[16..].to_vec() };
                open_key_file(kek.key(), &sealed).ok_or(KeyError::ForeignRoot { path, root: kind.name() })
            }
            (Self::Passphrase(_), Form::Clear) => Err(KeyError::NotSealed { path }),
            (_, Form::Passphrase) => Err(KeyError::NeedsPassphrase { path }),
            (Self::Plain | Self::Passphrase(_), Form::Root) => Err(KeyError::SealedUnderRoot { path }),
            (Self::Root { kind, .. }, Form::Clear) => Err(KeyError::InClear { path, root: kind.name() }),
        }
    }
}

const PASSPHRASE_MAGIC: &[u8; 4] = b"FGK1";
const ROOT_MAGIC: &[u8; 4] = b"FGK2";
const KEY_FILE_AAD: &[u8] = b"facegate key file v2";
/// The largest key file read (a PEM private key is a few hundred bytes).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// How a key file's bytes are sealed, told from the bytes alone: a 32-byte key or a PEM file is shorter
/// than, or starts differently from, either sealed form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// In clear: whoever copies the card has it.
    Clear,
    /// Sealed under a passphrase.
    Passphrase,
    /// Sealed under a hardware root's key-encryption key.
    Root,
}

impl Form {
    /// For reports.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Clear => "in clear on the card",
            Self::Passphrase => "sealed under the passphrase",
            Self::Root => "sealed under the hardware key root",
        }
    }

    fn of(bytes: &[u8]) -> Self {
        if bytes.len() > 4 + 16 + 12 + 16 && bytes.starts_with(PASSPHRASE_MAGIC) {
            Self::Passphrase
        } else if bytes.len() > 4 + 12 + 16 && bytes.starts_with(ROOT_MAGIC) {
            Self::Root
        } else {
            Self::Clear
        }
    }
}

/// A secret file found in the key folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFileEntry {
    /// The file.
    pub path: PathBuf,
    /// How it is sealed.
    pub form: Form,
}

/// Every secret file in `key_dir` and its sub-folders (one level), with how it is sealed. Certificates,
/// locks and the root's own state are public and left out.
pub fn inventory(key_dir: &Path) -> Vec<KeyFileEntry> {
    let mut out: Vec<KeyFileEntry> = walkdir::WalkDir::new(key_dir)
        .max_depth(2)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy();
            if name.ends_with(".lock") || name.starts_with("root.") || name.starts_with('.') {
                return None;
            }
            // A clear key file's head is the key itself: wiped when dropped, like every other copy.
            let mut head = Zeroizing::new(Vec::with_capacity(64));
            std::fs::File::open(e.path()).and_then(|f| f.take(64).read_to_end(&mut head)).ok()?;
            if head.starts_with(b"-----BEGIN CERTIFICATE") || name.ends_with(".conf") || name.ends_with(".toml") {
                return None;
            }
            let len = e.metadata().map_or(0, |m| m.len());
            // The magic and the length decide the form; a sealed file is never shorter than its header.
            let form = if head.starts_with(ROOT_MAGIC) && len > 32 {
                Form::Root
            } else if head.starts_with(PASSPHRASE_MAGIC) && len > 48 {
                Form::Passphrase
            } else {
                Form::Clear
            };
            Some(KeyFileEntry { path: e.into_path(), form })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn open_key_file(key: &AeadKey, sealed: &Sealed) -> Option<Zeroizing<Vec<u8>>> {
    crate::protect::open_message(key, sealed, KEY_FILE_AAD).ok()
}

/// Files in `key_dir` (and its sub-folders, one level) sealed under a hardware root.
pub fn sealed_files_in(key_dir: &Path) -> impl Iterator<Item = PathBuf> {
    walkdir::WalkDir::new(key_dir)
        .max_depth(2)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            let mut head = [0u8; 4];
            std::fs::File::open(e.path()).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == ROOT_MAGIC
        })
        .map(walkdir::DirEntry::into_path)
}

/// Reads a key file of any length (a PEM key, a 32-byte secret) sealed under `wrap`; `None` if it does not
/// exist. Refused if group or others may read it.
pub fn read_secret(path: &Path, wrap: &KeyWrap) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
    let io = |e: std::io::Error| KeyError::Io { path: path.to_path_buf(), reason: e.to_string() };
    let mut file = match std::fs::OpenOptions::new().read(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions { path: path.to_path_buf(), mode });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(256));
    Read::by_ref(&mut file).take(MAX_KEY_FILE).read_to_end(&mut bytes).map_err(io)?;
    wrap.decode(path, &bytes).map(Some)
}

/// Writes a key file sealed under `wrap` (0600), replacing any old one durably: written aside, synced, the
/// old file's bytes overwritten with zeros, then renamed over it.
pub fn write_secret(path: &Path, wrap: &KeyWrap, secret: &[u8]) -> Result<(), KeyError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| KeyError::Io { path: p.clone(), reason: e.to_string() }
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
    let bytes = wrap.encode(secret)?;
    let mut staged = path.as_os_str().to_owned();
    staged.push(format!(".new.{}", std::process::id()));
    let staged = PathBuf::from(staged);
    let _ = std::fs::remove_file(&staged);
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&staged).map_err(io(&staged))?;
    file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(io(&staged))?;
    if path.exists() {
        wipe(path)?;
    }
    std::fs::rename(&staged, path).map_err(io(path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Overwrites a key file's bytes with zeros, durably (before it is replaced or removed). On flash the old
/// blocks may survive in the controller; sealing under a hardware root is what makes them worthless.
pub fn wipe(path: &Path) -> Result<(), KeyError> {
    let io = |e: std::io::Error| KeyError::Io { path: path.to_path_buf(), reason: e.to_string() };
    let mut file = std::fs::OpenOptions::new().write(true).open(path).map_err(io)?;
    let len = file.metadata().map_or(0, |m| m.len());
    file.write_all(&vec![0u8; usize::try_from(len).unwrap_or(0)]).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Wipes and removes a key file, if it exists.
pub fn destroy(path: &Path) -> Result<(), KeyError> {
    if !path.exists() {
        return Ok(());
    }
    wipe(path)?;
    std::fs::remove_file(path).map_err(|e| KeyError::Io { path: path.to_path_buf(), reason: e.to_string() })
}

/// The master key's file, and the staged successor that makes rotation crash-safe.
///
/// The key rotates at every revocation, so a copy of the database taken before it can never be opened again
/// with anything left on the device. A rotation writes the new key to `<file>.next`, commits the database
/// re-wrapped under it, then wipes the old file and renames `.next` over it. A crash at any point leaves
/// either the old key (the database was not committed; `.next` is discarded) or `.next` (committed; it is
/// promoted when the registry next opens). The file is sealed under the device's [`KeyWrap`].
pub struct MasterKeyFile {
    path: PathBuf,
    wrap: KeyWrap,
}

impl std::fmt::Debug for MasterKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeyFile").field("path", &self.path).field("wrap", &self.wrap).finish()
    }
}

impl MasterKeyFile {
    /// The key file at `path`, sealed under `wrap`.
    pub fn new(path: PathBuf, wrap: KeyWrap) -> Self {
        Self { path, wrap }
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

    fn wipe(&self, path: &Path) -> Result<(), KeyError> {
        wipe(path)
    }

    fn sync_dir(&self) -> Result<(), KeyError> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(self.io(dir))
    }

    fn read(&self, path: &Path) -> Result<Option<AeadKey>, KeyError> {
        let Some(bytes) = read_secret(path, &self.wrap)? else { return Ok(None) };
        AeadKey::from_slice(&bytes).map(Some).ok_or(KeyError::Corrupt { path: path.to_path_buf(), len: bytes.len() })
    }

    fn write_new(&self, path: &Path, key: &AeadKey) -> Result<(), KeyError> {
        let bytes = self.wrap.encode(key.as_bytes())?;
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
        MasterKeyFile::new(path.to_path_buf(), KeyWrap::Plain).load_or_create()
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
