//! Store: the embedded SQLite database (rusqlite, bundled SQLite), the only module that touches it.
//!
//! Owns the schema and its migrations, WAL mode, and the transactions that keep the invariants: a sealed
//! template exists only beside a live consent and a wrapped data key; revocation deletes key, template and
//! PIN in one transaction and chains an audit event; `secure_delete` and a WAL checkpoint leave no shredded
//! key in free pages. It stores pseudonymous ids, consent records, wrapped keys and sealed templates, never
//! an image, a plaintext embedding or a record of who passed the gate.

use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};

use crate::protect::pass::VisitorPass;
use crate::protect::{
    self, AeadKey, ProtectedTemplate, Renewal, SealError, Sealed, TemplateContext, TransformId, TransformKey,
};
use audit_log::append_audit;
use outbox::queue_for_compound;

/// How long a write waits for another process's lock (the CLI beside the daemon, a backup) before it fails.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

use crate::policy::consent::{ConsentRecord, ShredReason, Standing};
use crate::policy::passage::{EntryMethod, PassageCount, PassageOutcome};

mod schema;
mod residents;
mod templates;
mod credentials;
mod counts;
mod accounts;
mod outbox;
mod audit_log;
#[cfg(test)]
mod tests;

pub use accounts::{EnrolmentCodeSummary, PortalAccount, Role};
pub use audit_log::{AuditEvent, REMOTE_RELEASE};
pub use credentials::PinRecord;
pub use outbox::{ChangeOrigin, OutboxEntry, OutboxKind};
pub use residents::{ResidentSummary, LAST_USED_GRANULARITY_SECS};
pub use schema::{SchemaObject, TableSchema};
pub use templates::{KeyGeneration, KeysInUse, LiveTemplates, Rekey, RevocationReceipt};

/// Errors of the store; each says what happened and, where there is one, what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused (corrupt file, disk full, locked...).
    #[error("database {}: {source}{}", path.display(), sqlite_hint(source))]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// There is no database where the config says (an audit or a report never creates one).
    #[error("database {}: no database here; check `store.database` in the config", path.display())]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The database's folder could not be created.
    #[error("database {}: creating its folder: {source}; check the path and the service user's rights", path.display())]
    Folder {
        /// The database file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The file opens but its content is inconsistent (SQLite's integrity check, a broken audit chain).
    #[error("database {}: {what}; stop the service and restore the last backup", path.display())]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The file is newer than this program.
    #[error("database schema version {found} is newer than this facegate understands ({supported}); upgrade facegate")]
    TooNew {
        /// Found version.
        found: i64,
        /// Highest supported.
        supported: i64,
    },
    /// No such resident.
    #[error("no resident {0}")]
    UnknownResident(String),
    /// Enrolment without a live consent record.
    #[error("resident {0} has no live consent for face entry; record their separate consent first")]
    NoConsent(String),
    /// The master key does not open the device keys stored in this database.
    #[error("the master key does not open this database's keys ({source}); use the key file or passphrase this database was created with")]
    WrongMasterKey {
        /// The reason.
        source: SealError,
    },
    /// A resident id that could be a name, or is not printable.
    #[error("resident id {0:?} is not a pseudonymous id: use 1-64 letters, digits, '-' or '_' (never a name)")]
    BadResidentId(String),
    /// The keypad code belongs to another resident.
    #[error("keypad code {0} is already used by another resident; choose another")]
    KeypadCodeTaken(String),
    /// The resident already exists.
    #[error("resident {0} already exists")]
    DuplicateResident(String),
    /// The keys the caller holds are not the current ones: another process (the CLI, a revocation received
    /// from the compound) rotated the master key and the transform since they were loaded. Nothing was
    /// written; reload the keys and try again.
    #[error("the keys in use (generation {held}) were rotated by another process (now generation {current}); nothing was written: reload the keys and retry")]
    StaleKeys {
        /// The generation the caller holds.
        held: u64,
        /// The store's current generation.
        current: u64,
    },
    /// A sealed row that does not open (wrong master key, tampering, a swapped row).
    #[error("the sealed data of resident {resident} does not open: {source}")]
    Sealed {
        /// The resident whose row failed.
        resident: String,
        /// The reason.
        source: SealError,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, StoreError>;

/// The store's clock: Unix seconds, the unit of every time it records.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The database.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Connection,
    /// Whether local enrolments and revocations are queued for the compound's other gates.
    replicated: bool,
}

impl Store {
    /// Opens a database that must already exist (an audit or a report must not create one).
    pub fn open_existing(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(StoreError::Missing { path: path.to_path_buf() });
        }
        Self::open(path)
    }

    /// Opens (creating it and its folder, owner-only, if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| StoreError::Folder { path: path.to_path_buf(), source })?;
        }
        let conn = Connection::open(path).in_db(path)?;
        // Owner-only; SQLite gives the WAL and shared-memory files the database file's mode.
        if let Err(e) = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)) {
            tracing::warn!("cannot make {} owner-only: {e}", path.display());
        }
        let store = Self { path: path.to_path_buf(), conn, replicated: false };
        store
            .conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                 PRAGMA secure_delete = ON;",
            )
            .in_db(&store.path)?;
        store.conn.busy_timeout(BUSY_TIMEOUT).in_db(&store.path)?;
        store.migrate()?;
        Ok(store)
    }

    /// Runs SQLite's own consistency check; `Ok(())` when it reports "ok".
    pub fn integrity_check(&self) -> Result<()> {
        let report: String = self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).in_db(&self.path)?;
        if report == "ok" {
            Ok(())
        } else {
            Err(StoreError::Damaged { path: self.path.clone(), what: format!("integrity check: {report}") })
        }
    }

    /// A number that changes whenever another connection (the CLI, the portal) commits a change; the daemon
    /// polls it to know when to reload its gallery.
    pub fn data_version(&self) -> Result<i64> {
        self.conn.query_row("PRAGMA data_version", [], |r| r.get(0)).in_db(&self.path)
    }

    /// Rows this connection has inserted, updated or deleted since it opened: a job that left it unchanged
    /// wrote nothing.
    pub fn writes(&self) -> u64 {
        self.conn.total_changes()
    }
}

/// Names the database file in SQLite's errors, keeping SQLite's error as the source: the one mapping every
/// query of the store goes through.
trait InDatabase<T> {
    fn in_db(self, path: &Path) -> Result<T>;
}

impl<T> InDatabase<T> for rusqlite::Result<T> {
    fn in_db(self, path: &Path) -> Result<T> {
        self.map_err(|source| StoreError::Sqlite { path: path.to_path_buf(), source })
    }
}

/// What to do about a SQLite error, where there is something to say beyond SQLite's own message.
fn sqlite_hint(e: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseCorrupt, DatabaseLocked, DiskFull, NotADatabase};
    match e.sqlite_error_code() {
        Some(DatabaseCorrupt | NotADatabase) => {
            ": the file is damaged or not a facegate database; stop the service and restore the last backup"
        }
        Some(DiskFull) => ": the disk is full; free space on the data partition",
        Some(DatabaseBusy | DatabaseLocked) => ": another process holds the database; retry, or stop it",
        _ => "",
    }
}

fn day_floor(t: i64) -> i64 {
    t - t.rem_euclid(86_400)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A column read without trusting its declared type: a tampered row may hold anything (and rusqlite's own
/// `Value` panics on text that is not UTF-8).
enum Raw {
    Blob(Vec<u8>),
    Integer(i64),
    Text(String),
    Other,
}

impl rusqlite::types::FromSql for Raw {
    fn column_result(value: ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        Ok(match value {
            ValueRef::Blob(b) => Self::Blob(b.to_vec()),
            ValueRef::Integer(i) => Self::Integer(i),
            ValueRef::Text(t) => std::str::from_utf8(t).map_or(Self::Other, |t| Self::Text(t.to_owned())),
            ValueRef::Null | ValueRef::Real(_) => Self::Other,
        })
    }
}

fn sealed_from_values(nonce: Raw, ciphertext: Raw) -> std::result::Result<Sealed, SealError> {
    match (nonce, ciphertext) {
        (Raw::Blob(nonce), Raw::Blob(ciphertext)) => sealed_from(nonce, ciphertext),
        _ => Err(SealError::Malformed("a sealed column is not a blob")),
    }
}

fn sealed_from(nonce: Vec<u8>, ciphertext: Vec<u8>) -> std::result::Result<Sealed, SealError> {
    let nonce = nonce.try_into().map_err(|_| SealError::Malformed("nonce length"))?;
    Ok(Sealed { nonce, ciphertext })
}
