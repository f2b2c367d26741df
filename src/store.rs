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

/// Errors of the store; each says what happened and, where there is one, what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused (corrupt file, disk full, locked...).
    #[error("database {path}: {reason}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// SQLite's message.
        reason: String,
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

/// Schema versions, applied in order (index + 1 = version).
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE residents (
    id TEXT PRIMARY KEY,
    unit_label TEXT,
    created_at INTEGER NOT NULL,
    moved_out_at INTEGER
);
CREATE TABLE consent_records (
    id INTEGER PRIMARY KEY,
    resident_id TEXT NOT NULL REFERENCES residents(id),
    notice_version TEXT NOT NULL,
    notice_sha256 TEXT NOT NULL,
    purpose TEXT NOT NULL,
    channel TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE wrapped_keys (
    resident_id TEXT PRIMARY KEY REFERENCES residents(id),
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL
);
CREATE TABLE sealed_templates (
    resident_id TEXT PRIMARY KEY REFERENCES wrapped_keys(resident_id),
    version INTEGER NOT NULL,
    transform_id INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    enrolled_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL
);
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    event TEXT NOT NULL,
    subject TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
",
    r"
CREATE TABLE transform_keys (
    id INTEGER PRIMARY KEY,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
);
CREATE TABLE pin_verifiers (
    resident_id TEXT PRIMARY KEY REFERENCES residents(id),
    verifier TEXT NOT NULL,
    set_at INTEGER NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE passage_counts (
    hour_start INTEGER NOT NULL,
    method TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (hour_start, method, outcome)
) WITHOUT ROWID;
",
    r"
ALTER TABLE pin_verifiers ADD COLUMN keypad_code TEXT;
ALTER TABLE pin_verifiers ADD COLUMN last_failed_at INTEGER;
CREATE UNIQUE INDEX pin_verifiers_keypad_code ON pin_verifiers(keypad_code);
CREATE TABLE device_secrets (
    name TEXT PRIMARY KEY,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL
);
",
    // Only the ids of used (or cancelled) visitor passes, until they expire: no time of use, no visitor.
    r"
CREATE TABLE used_passes (
    pass_id BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
",
    // The web portal: staff accounts, one-time enrolment codes for households, residents' revocation codes.
    // Codes are kept only as SHA-256 hashes; nothing here links a code to a face or a passage.
    r"
CREATE TABLE portal_accounts (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('manager', 'auditor')),
    password_hash TEXT NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE portal_enrolment_codes (
    id INTEGER PRIMARY KEY,
    code_hash BLOB NOT NULL UNIQUE,
    unit_label TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    cancelled_at INTEGER
);
CREATE TABLE portal_revocation_codes (
    code_hash BLOB PRIMARY KEY,
    resident_id TEXT NOT NULL UNIQUE REFERENCES residents(id)
);
",
    // The compound link (several gates over a broker). The outbox holds what this device still has to tell
    // the other gates: a kind and a pseudonymous id only; the sealed message is made when it is sent. The
    // state holds the broker sequence applied so far. Other gates' hourly counts are kept per gate, replaced
    // by each report, for compound-wide totals; none of it names anyone.
    r"
CREATE TABLE compound_outbox (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('template', 'revoked', 'moved_out')),
    resident_id TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE compound_state (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE compound_counts (
    gate TEXT NOT NULL,
    hour_start INTEGER NOT NULL,
    method TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (gate, hour_start, method, outcome)
) WITHOUT ROWID;
",
    // The generation of the device keys (master key and transform), raised by every rotation in the rotation's
    // own transaction. Every write that seals or wraps compares it, inside its transaction, with the generation
    // its caller's keys belong to: a process holding keys another process has rotated away is refused instead
    // of committing data that no current key opens.
    r"
CREATE TABLE key_generation (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    generation INTEGER NOT NULL
);
INSERT INTO key_generation (id, generation) VALUES (0, 0);
",
];

/// Which rotation of the device keys a set of keys belongs to (see [`Store::key_generation`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyGeneration(pub u64);

/// The master key a write seals or wraps under, with the generation it belongs to (checked in the write's own
/// transaction).
#[derive(Clone, Copy)]
pub struct KeysInUse<'a> {
    /// The master key.
    pub master: &'a AeadKey,
    /// Its generation, as read together with it.
    pub generation: KeyGeneration,
}

impl std::fmt::Debug for KeysInUse<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeysInUse").field("generation", &self.generation).finish_non_exhaustive()
    }
}

/// The store's clock: Unix seconds, the unit of every time it records.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A store time (Unix seconds) as RFC 3339 UTC, e.g. `2026-11-24T12:00:00Z`; times before 1970 show as 1970.
pub fn rfc3339(t: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(t).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Templates are touched at most once per this period, so `last_used_at` (needed for retention) is a coarse
/// date, never a trail of passages.
pub const LAST_USED_GRANULARITY_SECS: i64 = 30 * 86_400;

/// How a person came in (the only detail a passage count keeps besides the hour and the outcome).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryMethod {
    /// Face match.
    Face,
    /// Resident PIN.
    Pin,
    /// Visitor QR pass.
    VisitorPass,
    /// Opened by the guard.
    Guard,
}

impl EntryMethod {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Face => "face",
            Self::Pin => "pin",
            Self::VisitorPass => "visitor_pass",
            Self::Guard => "guard",
        }
    }
}

/// Whether the gate opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PassageOutcome {
    /// The gate opened.
    Opened,
    /// Refused (no match, wrong PIN, invalid pass).
    Refused,
}

impl PassageOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Refused => "refused",
        }
    }
}

/// One pre-aggregated count: how many passages of one kind in one hour. No identity, ever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassageCount {
    /// Start of the hour (Unix seconds, UTC).
    pub hour_start: i64,
    /// `EntryMethod::as_str`.
    pub method: String,
    /// `PassageOutcome::as_str`.
    pub outcome: String,
    /// How many.
    pub count: i64,
}

/// Why a resident's face data is being destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShredReason {
    /// The resident withdrew consent: template, key and PIN go.
    Revoked,
    /// The template was not used for the retention period: template and key go, consent ends.
    Unused,
    /// The resident moved out: template, key and PIN go.
    MovedOut,
}

impl ShredReason {
    fn event(self) -> &'static str {
        match self {
            Self::Revoked => "revoke",
            Self::Unused => "expire (unused)",
            Self::MovedOut => "expire (moved out)",
        }
    }
}

/// Where a change to the residents comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeOrigin {
    /// Made on this device (CLI, portal): announced to the compound's other gates when replicated.
    Local,
    /// Received from another gate of the compound: applied, never announced again.
    Compound,
}

/// A change this device still has to announce to the compound's other gates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Order of the changes (announced in this order).
    pub seq: i64,
    /// `template`, `revoked` or `moved_out`.
    pub kind: String,
    /// The resident's pseudonymous id.
    pub resident_id: String,
    /// When the change was made (Unix seconds).
    pub at: i64,
}

/// The keys a shredding step (or an explicit rotation) moves the remaining data to, in the same
/// transaction: a fresh master key wraps every data key, and every template is carried to a fresh transform,
/// so nothing on the device links or opens what was there before.
pub struct Rekey<'a> {
    /// The generation of `old_master` (the rotation is refused unless it is still the current one).
    pub generation: KeyGeneration,
    /// The master key everything is wrapped under now.
    pub old_master: &'a AeadKey,
    /// The master key everything is wrapped under after.
    pub new_master: &'a AeadKey,
    /// The next transform key.
    pub new_transform: &'a TransformKey,
    /// Carries templates from the current transform to the next.
    pub renewal: &'a Renewal,
}

impl std::fmt::Debug for Rekey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rekey")
            .field("generation", &self.generation)
            .field("renewal", self.renewal)
            .finish_non_exhaustive()
    }
}

/// A resident as listed for administrators: ids and statuses, no biometrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResidentSummary {
    /// Pseudonymous id.
    pub id: String,
    /// Optional unit label.
    pub unit_label: Option<String>,
    /// When the live consent was granted, if there is one.
    pub consent_granted_at: Option<i64>,
    /// When consent was last withdrawn, if ever.
    pub consent_revoked_at: Option<i64>,
    /// Template version, if a face template is enrolled.
    pub template_version: Option<u32>,
    /// When the current template was enrolled.
    pub enrolled_at: Option<i64>,
    /// Whether a PIN is set.
    pub has_pin: bool,
    /// When the resident moved out, if they did.
    pub moved_out_at: Option<i64>,
}

/// A stored PIN verifier and its failure counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinRecord {
    /// The resident it belongs to.
    pub resident_id: String,
    /// The argon2id PHC string.
    pub verifier: String,
    /// Consecutive failed attempts.
    pub failed_attempts: u32,
    /// When the last failure was (Unix seconds).
    pub last_failed_at: Option<i64>,
}

/// A consent to face entry, as given (separately from any other terms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRecord {
    /// Version of the notice shown.
    pub notice_version: String,
    /// sha256 (hex) of the exact notice text shown.
    pub notice_sha256: String,
    /// The purpose consented to.
    pub purpose: String,
    /// How it was given (gate, kiosk, portal...).
    pub channel: String,
    /// When (Unix seconds).
    pub granted_at: i64,
}

/// What a revocation destroyed, for the resident to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationReceipt {
    /// The resident.
    pub resident_id: String,
    /// When (Unix seconds).
    pub revoked_at: i64,
    /// What was deleted.
    pub deleted: Vec<&'static str>,
    /// The audit chain hash of the revocation event, hex: a code the resident can have checked later.
    pub verification_code: String,
}

/// The templates that opened, and a clear error for each row that did not.
#[derive(Debug)]
pub struct LiveTemplates {
    /// Resident id and template, by resident id.
    pub templates: Vec<(String, ProtectedTemplate)>,
    /// One error per row that failed to open; the other rows stay usable.
    pub failures: Vec<StoreError>,
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
            return Err(StoreError::Database {
                path: path.to_path_buf(),
                reason: "no database here; check `store.database` in the config".into(),
            });
        }
        Self::open(path)
    }

    /// Opens (creating it and its folder, owner-only, if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| StoreError::Database {
                path: path.to_path_buf(),
                reason: format!("creating its folder: {e}"),
            })?;
        }
        let conn = Connection::open(path).map_err(|e| db_err(path, &e))?;
        // Owner-only; SQLite gives the WAL and shared-memory files the database file's mode.
        if let Err(e) = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)) {
            tracing::warn!("cannot make {} owner-only: {e}", path.display());
        }
        let store = Self { path: path.to_path_buf(), conn, replicated: false };
        store
            .conn
            .execute_batch(
                "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
            )
            .map_err(|e| store.err(&e))?;
        store.migrate()?;
        Ok(store)
    }

    fn err(&self, e: &rusqlite::Error) -> StoreError {
        db_err(&self.path, e)
    }

    fn migrate(&self) -> Result<()> {
        let version: i64 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| self.err(&e))?;
        let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > supported {
            return Err(StoreError::TooNew { found: version, supported });
        }
        for (idx, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
            let next = idx + 1;
            self.conn
                .execute_batch(&format!("BEGIN IMMEDIATE; {sql} PRAGMA user_version = {next}; COMMIT;"))
                .map_err(|e| self.err(&e))?;
        }
        Ok(())
    }

    /// Runs SQLite's own consistency check; `Ok(())` when it reports "ok".
    pub fn integrity_check(&self) -> Result<()> {
        let report: String =
            self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|e| self.err(&e))?;
        if report == "ok" {
            Ok(())
        } else {
            Err(StoreError::Database { path: self.path.clone(), reason: format!("integrity check: {report}") })
        }
    }

    /// Adds a resident under a pseudonymous id.
    pub fn add_resident(&mut self, resident_id: &str, unit_label: Option<&str>, now: i64) -> Result<()> {
        validate_resident_id(resident_id)?;
        let inserted = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO residents (id, unit_label, created_at) VALUES (?1, ?2, ?3)",
                params![resident_id, unit_label, now],
            )
            .map_err(|e| self.err(&e))?;
        if inserted == 0 {
            return Err(StoreError::DuplicateResident(resident_id.to_owned()));
        }
        Ok(())
    }

    /// Whether the resident exists.
    pub fn resident_exists(&self, resident_id: &str) -> Result<bool> {
        match self.require_resident(resident_id) {
            Ok(()) => Ok(true),
            Err(StoreError::UnknownResident(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records a separate consent to face entry.
    pub fn grant_consent(&mut self, resident_id: &str, consent: &ConsentRecord) -> Result<()> {
        self.require_resident(resident_id)?;
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, &e))?;
        tx.execute(
            "INSERT INTO consent_records (resident_id, notice_version, notice_sha256, purpose, channel, granted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                resident_id,
                consent.notice_version,
                consent.notice_sha256,
                consent.purpose,
                consent.channel,
                consent.granted_at
            ],
        )
        .map_err(|e| db_err(&path, &e))?;
        append_audit(&tx, consent.granted_at, "consent granted", resident_id).map_err(|e| db_err(&path, &e))?;
        tx.commit().map_err(|e| db_err(&path, &e))
    }

    fn require_resident(&self, resident_id: &str) -> Result<()> {
        let found: Option<i64> = self
            .conn
            .query_row("SELECT 1 FROM residents WHERE id = ?1", [resident_id], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(&e))?;
        found.map(|_| ()).ok_or_else(|| StoreError::UnknownResident(resident_id.to_owned()))
    }

    /// Whether the resident has a consent that is not revoked.
    pub fn has_live_consent(&self, resident_id: &str) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM consent_records WHERE resident_id = ?1 AND revoked_at IS NULL",
                [resident_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(&e))?;
        Ok(n > 0)
    }

    /// Seals and stores a resident's protected template under a fresh data key (wrapped by `master`), in one
    /// transaction, replacing any earlier template and key. Refused without a live consent.
    pub fn store_template(
        &mut self,
        resident_id: &str,
        template: &ProtectedTemplate,
        keys: KeysInUse<'_>,
        now: i64,
    ) -> Result<u32> {
        self.store_template_from(resident_id, template, keys, now, ChangeOrigin::Local)
    }

    /// [`Store::store_template`], saying where the change comes from: a local enrolment is queued for the
    /// compound's other gates (in the same transaction), one received from them is not sent back.
    /// Refused with [`StoreError::StaleKeys`] when `keys` are not the current generation (checked inside the
    /// transaction, so no rotation can slip in between).
    pub fn store_template_from(
        &mut self,
        resident_id: &str,
        template: &ProtectedTemplate,
        keys: KeysInUse<'_>,
        now: i64,
        origin: ChangeOrigin,
    ) -> Result<u32> {
        if !self.has_live_consent(resident_id)? {
            return Err(StoreError::NoConsent(resident_id.to_owned()));
        }
        let previous: Option<u32> = self
            .conn
            .query_row("SELECT version FROM sealed_templates WHERE resident_id = ?1", [resident_id], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(&e))?;
        let version = previous.map_or(1, |v| v + 1);
        let data_key = AeadKey::generate();
        let sealed_err = |source| StoreError::Sealed { resident: resident_id.to_owned(), source };
        let context = TemplateContext { resident_id, version, transform: template.transform() };
        let sealed = protect::seal_template(template, &data_key, context).map_err(sealed_err)?;
        let wrapped = protect::wrap_key(&data_key, keys.master, resident_id).map_err(sealed_err)?;
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, &e))?;
        require_generation(&tx, &path, keys.generation)?;
        tx.execute("DELETE FROM sealed_templates WHERE resident_id = ?1", [resident_id])
            .and_then(|_| tx.execute("DELETE FROM wrapped_keys WHERE resident_id = ?1", [resident_id]))
            .and_then(|_| {
                tx.execute(
                    "INSERT INTO wrapped_keys (resident_id, nonce, ciphertext) VALUES (?1, ?2, ?3)",
                    params![resident_id, &wrapped.nonce[..], wrapped.ciphertext],
                )
            })
            .and_then(|_| {
                tx.execute(
                    "INSERT INTO sealed_templates (resident_id, version, transform_id, nonce, ciphertext, enrolled_at, last_used_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![resident_id, version, transform_to_sql(template.transform()), &sealed.nonce[..], sealed.ciphertext, day_floor(now)],
                )
            })
            .map_err(|e| db_err(&path, &e))?;
        let event = match origin {
            ChangeOrigin::Local => "enrol",
            ChangeOrigin::Compound => "enrol (from the compound)",
        };
        append_audit(&tx, now, event, resident_id).map_err(|e| db_err(&path, &e))?;
        if self.replicated && origin == ChangeOrigin::Local {
            queue_for_compound(&tx, "template", resident_id, now).map_err(|e| db_err(&path, &e))?;
        }
        tx.commit().map_err(|e| db_err(&path, &e))?;
        Ok(version)
    }

    /// Opens every live template (consent not revoked) of a transform, for the in-memory gallery. A row that
    /// does not open is reported with its resident and skipped; the others stay usable.
    pub fn live_templates(&self, master: &AeadKey, transform: TransformId) -> Result<LiveTemplates> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT t.resident_id, t.version, t.nonce, t.ciphertext, k.nonce, k.ciphertext, t.transform_id
                 FROM sealed_templates t JOIN wrapped_keys k ON k.resident_id = t.resident_id
                 WHERE EXISTS (
                     SELECT 1 FROM consent_records c WHERE c.resident_id = t.resident_id AND c.revoked_at IS NULL)
                 ORDER BY t.resident_id",
            )
            .map_err(|e| self.err(&e))?;
        // Columns are read as raw values so that one tampered row (a wrong type, say) is reported on its own
        // instead of failing the whole load.
        let rows = stmt
            .query_map([], |r| {
                Ok([r.get::<_, Raw>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?])
            })
            .map_err(|e| self.err(&e))?;
        let (mut templates, mut failures) = (Vec::new(), Vec::new());
        for row in rows {
            let [resident, version, t_nonce, t_ct, k_nonce, k_ct, row_transform] = row.map_err(|e| self.err(&e))?;
            let Raw::Text(resident) = resident else {
                failures.push(StoreError::Sealed {
                    resident: "(unreadable id)".into(),
                    source: SealError::Malformed("resident id"),
                });
                continue;
            };
            let opened = sealed_from_values(k_nonce, k_ct)
                .and_then(|wrapped| protect::unwrap_key(&wrapped, master, &resident))
                .and_then(|data_key| {
                    if !matches!(row_transform, Raw::Integer(t) if t == transform_to_sql(transform)) {
                        return Err(SealError::Malformed("made under a retired transform key; re-enrol"));
                    }
                    let version = match version {
                        Raw::Integer(v) => u32::try_from(v).map_err(|_| SealError::Malformed("template version"))?,
                        _ => return Err(SealError::Malformed("template version")),
                    };
                    let context = TemplateContext { resident_id: &resident, version, transform };
                    protect::open_template(&sealed_from_values(t_nonce, t_ct)?, &data_key, context)
                });
            match opened {
                Ok(template) => templates.push((resident, template)),
                Err(source) => failures.push(StoreError::Sealed { resident, source }),
            }
        }
        Ok(LiveTemplates { templates, failures })
    }

    /// Withdraws consent and destroys the resident's data key, template and PIN at once (crypto-shredding),
    /// re-wrapping every remaining key from `old` to `new` in the same transaction so that no copy of the
    /// database taken before opens under the new master key; then checkpoints the WAL.
    pub fn revoke_and_shred(&mut self, resident_id: &str, now: i64, rekey: &Rekey<'_>) -> Result<RevocationReceipt> {
        self.shred_one(resident_id, now, ShredReason::Revoked, ChangeOrigin::Local, rekey)
    }

    /// The resident moved out: template, key and PIN destroyed and consent ended, as [`Store::revoke_and_shred`].
    pub fn move_out(&mut self, resident_id: &str, now: i64, rekey: &Rekey<'_>) -> Result<RevocationReceipt> {
        self.shred_one(resident_id, now, ShredReason::MovedOut, ChangeOrigin::Local, rekey)
    }

    /// A revocation or move-out announced by another gate of the compound: the same shredding, not announced
    /// again.
    pub fn shred_from_compound(
        &mut self,
        resident_id: &str,
        reason: ShredReason,
        now: i64,
        rekey: &Rekey<'_>,
    ) -> Result<RevocationReceipt> {
        self.shred_one(resident_id, now, reason, ChangeOrigin::Compound, rekey)
    }

    fn shred_one(
        &mut self,
        resident_id: &str,
        now: i64,
        reason: ShredReason,
        origin: ChangeOrigin,
        rekey: &Rekey<'_>,
    ) -> Result<RevocationReceipt> {
        let mut receipts = self.shred(&[resident_id.to_owned()], now, reason, origin, rekey)?;
        receipts.pop().ok_or_else(|| StoreError::UnknownResident(resident_id.to_owned()))
    }

    /// Residents whose template was not used since `cutoff` (Unix seconds).
    pub fn unused_since(&self, cutoff: i64) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT resident_id FROM sealed_templates WHERE last_used_at < ?1 ORDER BY resident_id")
            .map_err(|e| self.err(&e))?;
        let rows = stmt.query_map([cutoff], |r| r.get(0)).map_err(|e| self.err(&e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(&e))
    }

    /// Expires the templates of `residents` (see [`Store::unused_since`]): template and key destroyed, consent
    /// ended (re-enrolling needs a fresh consent), keys re-wrapped from `old` to `new`. One receipt each.
    pub fn expire_unused(
        &mut self,
        residents: &[String],
        now: i64,
        rekey: &Rekey<'_>,
    ) -> Result<Vec<RevocationReceipt>> {
        // Retention is counted per device: a template unused at this gate expires here only.
        self.shred(residents, now, ShredReason::Unused, ChangeOrigin::Local, rekey)
    }

    /// Notes that a resident's template matched, coarsely: at most one write per
    /// [`LAST_USED_GRANULARITY_SECS`], so the store never holds a trail of passages. Returns whether it wrote.
    pub fn note_used(&mut self, resident_id: &str, now: i64) -> Result<bool> {
        let today = day_floor(now);
        let n = self
            .conn
            .execute(
                "UPDATE sealed_templates SET last_used_at = ?2 WHERE resident_id = ?1 AND last_used_at <= ?3",
                params![resident_id, today, today - LAST_USED_GRANULARITY_SECS],
            )
            .map_err(|e| self.err(&e))?;
        Ok(n > 0)
    }

    fn shred(
        &mut self,
        residents: &[String],
        now: i64,
        reason: ShredReason,
        origin: ChangeOrigin,
        rekey: &Rekey<'_>,
    ) -> Result<Vec<RevocationReceipt>> {
        for resident_id in residents {
            self.require_resident(resident_id)?;
        }
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, &e))?;
        let mut receipts = Vec::with_capacity(residents.len());
        for resident_id in residents {
            let deleted = shred_rows(&tx, resident_id, now, reason).map_err(|e| db_err(&path, &e))?;
            let event = match origin {
                ChangeOrigin::Local => reason.event().to_owned(),
                ChangeOrigin::Compound => format!("{} (from the compound)", reason.event()),
            };
            let hash = append_audit(&tx, now, &event, resident_id).map_err(|e| db_err(&path, &e))?;
            let announce = match reason {
                ShredReason::Revoked => Some("revoked"),
                ShredReason::MovedOut => Some("moved_out"),
                ShredReason::Unused => None,
            };
            if let (true, ChangeOrigin::Local, Some(kind)) = (self.replicated, origin, announce) {
                queue_for_compound(&tx, kind, resident_id, now).map_err(|e| db_err(&path, &e))?;
            }
            receipts.push(RevocationReceipt {
                resident_id: resident_id.clone(),
                revoked_at: now,
                deleted,
                verification_code: hex(&hash[..8]),
            });
        }
        rotate_keys_in(&tx, &path, rekey, now)?;
        tx.commit().map_err(|e| db_err(&path, &e))?;
        self.checkpoint_after_commit();
        Ok(receipts)
    }

    /// Copies the WAL into the database and truncates it, so deleted rows leave no copy in the WAL. Runs after
    /// a commit, so it never fails the operation (an `Err` from a shredding call means "not committed"): if a
    /// reader holds the WAL now, the next checkpoint (SQLite runs one automatically) finishes the job.
    fn checkpoint_after_commit(&self) {
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!("WAL checkpoint after a deletion deferred: {e}");
        }
    }

    /// Whether `master` opens this database's current transform key (read only; creates nothing).
    pub fn opens_with(&self, master: &AeadKey) -> Result<bool> {
        let current = current_transform_key(&self.conn, master).map_err(|e| self.err(&e))?;
        Ok(matches!(current, Some(Ok(_))))
    }

    /// The device's current transform key, creating (and wrapping under `master`) a fresh one on first use.
    /// A master key that does not open the stored one is [`StoreError::WrongMasterKey`].
    pub fn transform_key(&mut self, master: &AeadKey, now: i64) -> Result<TransformKey> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, &e))?;
        if let Some(current) = current_transform_key(&tx, master).map_err(|e| db_err(&path, &e))? {
            return current.map_err(|source| StoreError::WrongMasterKey { source });
        }
        let key = TransformKey::generate();
        let wrapped =
            protect::wrap_transform_key(&key, master).map_err(|source| StoreError::WrongMasterKey { source })?;
        tx.execute(
            "INSERT INTO transform_keys (id, nonce, ciphertext, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![transform_to_sql(key.transform_id()), &wrapped.nonce[..], wrapped.ciphertext, now],
        )
        .map_err(|e| db_err(&path, &e))?;
        append_audit(&tx, now, "transform key created", &format!("{:016x}", key.transform_id().0))
            .map_err(|e| db_err(&path, &e))?;
        tx.commit().map_err(|e| db_err(&path, &e))?;
        Ok(key)
    }

    /// Moves everything to new keys in one transaction (see [`Rekey`]) and chains a "key rotation" event.
    /// Nothing changes if the transform key fails to open (a wrong old master key). Returns how many templates
    /// were carried over to the new transform.
    pub fn rotate_keys(&mut self, rekey: &Rekey<'_>, now: i64) -> Result<usize> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, &e))?;
        let renewed = rotate_keys_in(&tx, &path, rekey, now)?;
        tx.commit().map_err(|e| db_err(&path, &e))?;
        self.checkpoint_after_commit();
        Ok(renewed)
    }

    /// A stable device secret (e.g. the PIN pepper key), created on first use and kept wrapped under the
    /// master key; a master key rotation re-wraps it, so it survives revocations.
    pub fn device_secret(&mut self, name: &str, keys: KeysInUse<'_>) -> Result<AeadKey> {
        let master = keys.master;
        let path = self.path.clone();
        let label = secret_label(name);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, &e))?;
        require_generation(&tx, &path, keys.generation)?;
        let stored: Option<(Vec<u8>, Vec<u8>)> = tx
            .query_row("SELECT nonce, ciphertext FROM device_secrets WHERE name = ?1", [name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(|e| db_err(&path, &e))?;
        if let Some((nonce, ciphertext)) = stored {
            return sealed_from(nonce, ciphertext)
                .and_then(|w| protect::unwrap_key(&w, master, &label))
                .map_err(|source| StoreError::WrongMasterKey { source });
        }
        let secret = AeadKey::generate();
        let wrapped =
            protect::wrap_key(&secret, master, &label).map_err(|source| StoreError::WrongMasterKey { source })?;
        tx.execute(
            "INSERT INTO device_secrets (name, nonce, ciphertext) VALUES (?1, ?2, ?3)",
            params![name, &wrapped.nonce[..], wrapped.ciphertext],
        )
        .map_err(|e| db_err(&path, &e))?;
        tx.commit().map_err(|e| db_err(&path, &e))?;
        Ok(secret)
    }

    /// A number that changes whenever another connection (the CLI, the portal) commits a change; the daemon
    /// polls it to know when to reload its gallery.
    pub fn data_version(&self) -> Result<i64> {
        self.conn.query_row("PRAGMA data_version", [], |r| r.get(0)).map_err(|e| self.err(&e))
    }

    /// Rows this connection has inserted, updated or deleted since it opened: a job that left it unchanged
    /// wrote nothing.
    pub fn writes(&self) -> u64 {
        self.conn.total_changes()
    }

    /// The current generation of the device keys: raised by every rotation, in its transaction.
    pub fn key_generation(&self) -> Result<KeyGeneration> {
        read_generation(&self.conn).map_err(|e| self.err(&e))
    }

    /// Whether any device key is stored (a database that has been used).
    pub fn has_device_keys(&self) -> Result<bool> {
        self.conn.query_row("SELECT EXISTS (SELECT 1 FROM transform_keys)", [], |r| r.get(0)).map_err(|e| self.err(&e))
    }

    /// Stores (or replaces) a resident's PIN verifier under their keypad code (the short number typed before
    /// the PIN), and chains a "pin set" event. A code already used by another resident is refused.
    pub fn set_pin_verifier(&mut self, resident_id: &str, keypad_code: &str, verifier: &str, now: i64) -> Result<()> {
        self.require_resident(resident_id)?;
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, &e))?;
        let taken: Option<String> = tx
            .query_row(
                "SELECT resident_id FROM pin_verifiers WHERE keypad_code = ?1 AND resident_id <> ?2",
                params![keypad_code, resident_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_err(&path, &e))?;
        if taken.is_some() {
            return Err(StoreError::KeypadCodeTaken(keypad_code.to_owned()));
        }
        tx.execute(
            "INSERT INTO pin_verifiers (resident_id, verifier, set_at, keypad_code) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(resident_id) DO UPDATE SET verifier = excluded.verifier, set_at = excluded.set_at,
                 keypad_code = excluded.keypad_code, failed_attempts = 0, last_failed_at = NULL",
            params![resident_id, verifier, now, keypad_code],
        )
        .map_err(|e| db_err(&path, &e))?;
        append_audit(&tx, now, "pin set", resident_id).map_err(|e| db_err(&path, &e))?;
        tx.commit().map_err(|e| db_err(&path, &e))
    }

    /// The PIN verifier stored under a keypad code, if any.
    pub fn pin_record(&self, keypad_code: &str) -> Result<Option<PinRecord>> {
        self.conn
            .query_row(
                "SELECT resident_id, verifier, failed_attempts, last_failed_at FROM pin_verifiers WHERE keypad_code = ?1",
                [keypad_code],
                |r| {
                    Ok(PinRecord {
                        resident_id: r.get(0)?,
                        verifier: r.get(1)?,
                        failed_attempts: r.get(2)?,
                        last_failed_at: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(&e))
    }

    /// Records the result of a PIN attempt: a failure increments the counter and notes when, a success
    /// resets both.
    pub fn record_pin_attempt(&mut self, resident_id: &str, success: bool, now: i64) -> Result<()> {
        let sql = if success {
            "UPDATE pin_verifiers SET failed_attempts = 0, last_failed_at = NULL WHERE resident_id = ?1 AND ?2 IS NOT NULL"
        } else {
            "UPDATE pin_verifiers SET failed_attempts = failed_attempts + 1, last_failed_at = ?2 WHERE resident_id = ?1"
        };
        self.conn.execute(sql, params![resident_id, now]).map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// Marks a visitor pass as used, once: true if it had not been used (or cancelled) before. Forgets passes
    /// whose window has ended, since they cannot open anything any more. When it was used is not kept.
    pub fn redeem_pass(&mut self, pass: &VisitorPass, now: i64) -> Result<bool> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, &e))?;
        tx.execute("DELETE FROM used_passes WHERE expires_at <= ?1", [now]).map_err(|e| db_err(&path, &e))?;
        let fresh = tx
            .execute(
                "INSERT INTO used_passes (pass_id, expires_at) VALUES (?1, ?2) ON CONFLICT(pass_id) DO NOTHING",
                params![&pass.id.0[..], pass.valid_until],
            )
            .map_err(|e| db_err(&path, &e))?
            == 1;
        tx.commit().map_err(|e| db_err(&path, &e))?;
        Ok(fresh)
    }

    /// How many used or cancelled passes are remembered (each only until its window ends).
    pub fn used_pass_count(&self) -> Result<i64> {
        self.conn.query_row("SELECT COUNT(*) FROM used_passes", [], |r| r.get(0)).map_err(|e| self.err(&e))
    }

    /// Chains a "visitor pass issued" (or "cancelled") event naming only the pass's random id.
    pub fn audit_pass(&mut self, event: &str, pass: &VisitorPass, now: i64) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, &e))?;
        append_audit(&tx, now, event, &format!("pass:{}", pass.id.to_hex())).map_err(|e| db_err(&path, &e))?;
        tx.commit().map_err(|e| db_err(&path, &e))
    }

    /// Adds one passage to its hour's pre-aggregated count. Nothing about who passed is kept.
    pub fn count_passage(&mut self, at: i64, method: EntryMethod, outcome: PassageOutcome) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO passage_counts (hour_start, method, outcome, count) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT(hour_start, method, outcome) DO UPDATE SET count = count + 1",
                params![at - at.rem_euclid(3600), method.as_str(), outcome.as_str()],
            )
            .map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// Adds several passages at once, and notes template uses (coarsely, as [`Store::note_used`]), in one
    /// transaction: the daemon's tally of what happened while the database was busy. All or nothing, so a
    /// passage is never counted twice or lost: on an error nothing was written and the caller keeps its tally.
    pub fn record_tally(
        &mut self,
        counts: &[(i64, EntryMethod, PassageOutcome, u64)],
        used: &[(String, i64)],
    ) -> Result<()> {
        let path = self.path.clone();
        let db = |e: rusqlite::Error| db_err(&path, &e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
        for &(at, method, outcome, n) in counts {
            tx.execute(
                "INSERT INTO passage_counts (hour_start, method, outcome, count) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(hour_start, method, outcome) DO UPDATE SET count = count + ?4",
                params![
                    at - at.rem_euclid(3600),
                    method.as_str(),
                    outcome.as_str(),
                    i64::try_from(n).unwrap_or(i64::MAX)
                ],
            )
            .map_err(db)?;
        }
        for (resident_id, at) in used {
            let today = day_floor(*at);
            tx.execute(
                "UPDATE sealed_templates SET last_used_at = ?2 WHERE resident_id = ?1 AND last_used_at <= ?3",
                params![resident_id, today, today - LAST_USED_GRANULARITY_SECS],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    /// The hourly counts in `[from, to)`, oldest first.
    pub fn passage_counts(&self, from: i64, to: i64) -> Result<Vec<PassageCount>> {
        self.counts_query(
            "SELECT hour_start, method, outcome, count FROM passage_counts
             WHERE hour_start >= ?1 AND hour_start < ?2 ORDER BY hour_start, method, outcome",
            from,
            to,
        )
    }

    fn counts_query(&self, sql: &str, from: i64, to: i64) -> Result<Vec<PassageCount>> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(&e))?;
        let rows = stmt
            .query_map([from, to], |r| {
                Ok(PassageCount { hour_start: r.get(0)?, method: r.get(1)?, outcome: r.get(2)?, count: r.get(3)? })
            })
            .map_err(|e| self.err(&e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(&e))
    }

    /// The hourly counts in `[from, to)` of this gate and of every other gate of the compound (their latest
    /// reports), summed per cell, oldest first. Alone, this is [`Store::passage_counts`].
    pub fn compound_passage_counts(&self, from: i64, to: i64) -> Result<Vec<PassageCount>> {
        self.counts_query(
            "SELECT hour_start, method, outcome, SUM(count) FROM (
                 SELECT hour_start, method, outcome, count FROM passage_counts
                 UNION ALL SELECT hour_start, method, outcome, count FROM compound_counts)
             WHERE hour_start >= ?1 AND hour_start < ?2
             GROUP BY hour_start, method, outcome ORDER BY hour_start, method, outcome",
            from,
            to,
        )
    }

    /// The other gates whose counts arrived, with how many hourly cells each reported.
    pub fn compound_gates(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT gate, COUNT(*) FROM compound_counts GROUP BY gate ORDER BY gate")
            .map_err(|e| self.err(&e))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(&e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(&e))
    }

    /// Replaces what is known of another gate's hourly counts by its latest report.
    pub fn set_gate_counts(&mut self, gate: &str, counts: &[PassageCount]) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, &e))?;
        tx.execute("DELETE FROM compound_counts WHERE gate = ?1", [gate]).map_err(|e| db_err(&path, &e))?;
        for c in counts {
            tx.execute(
                "INSERT INTO compound_counts (gate, hour_start, method, outcome, count) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(gate, hour_start, method, outcome) DO UPDATE SET count = excluded.count",
                params![gate, c.hour_start, c.method, c.outcome, c.count],
            )
            .map_err(|e| db_err(&path, &e))?;
        }
        tx.commit().map_err(|e| db_err(&path, &e))
    }

    /// Whether local enrolments and revocations are queued for the compound (set by the registry when the
    /// device belongs to a compound).
    pub fn set_replicated(&mut self, replicated: bool) {
        self.replicated = replicated;
    }

    /// The oldest changes still to announce to the compound, at most `limit`.
    pub fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, kind, resident_id, at FROM compound_outbox ORDER BY seq LIMIT ?1")
            .map_err(|e| self.err(&e))?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok(OutboxEntry { seq: r.get(0)?, kind: r.get(1)?, resident_id: r.get(2)?, at: r.get(3)? })
            })
            .map_err(|e| self.err(&e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(&e))
    }

    /// Removes an announced change (the broker acknowledged it).
    pub fn outbox_done(&mut self, seq: i64) -> Result<()> {
        self.conn.execute("DELETE FROM compound_outbox WHERE seq = ?1", [seq]).map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// A value of the compound link's state (e.g. the last broker sequence applied).
    pub fn compound_state(&self, name: &str) -> Result<Option<i64>> {
        self.conn
            .query_row("SELECT value FROM compound_state WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(&e))
    }

    /// Sets a value of the compound link's state.
    pub fn set_compound_state(&mut self, name: &str, value: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO compound_state (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
            .map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// When the resident's consent was last withdrawn (or ended), if ever.
    pub fn last_revocation(&self, resident_id: &str) -> Result<Option<i64>> {
        self.conn
            .query_row("SELECT MAX(revoked_at) FROM consent_records WHERE resident_id = ?1", [resident_id], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(&e))
    }

    /// The resident's live consent, if any (the latest one).
    pub fn live_consent(&self, resident_id: &str) -> Result<Option<ConsentRecord>> {
        self.conn
            .query_row(
                "SELECT notice_version, notice_sha256, purpose, channel, granted_at FROM consent_records
                 WHERE resident_id = ?1 AND revoked_at IS NULL ORDER BY id DESC LIMIT 1",
                [resident_id],
                |r| {
                    Ok(ConsentRecord {
                        notice_version: r.get(0)?,
                        notice_sha256: r.get(1)?,
                        purpose: r.get(2)?,
                        channel: r.get(3)?,
                        granted_at: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(&e))
    }

    /// Every resident with their consent, template and PIN status; no biometric data.
    pub fn residents(&self) -> Result<Vec<ResidentSummary>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.id, r.unit_label, r.moved_out_at,
                    (SELECT MAX(granted_at) FROM consent_records c WHERE c.resident_id = r.id AND c.revoked_at IS NULL),
                    (SELECT MAX(revoked_at) FROM consent_records c WHERE c.resident_id = r.id),
                    t.version, t.enrolled_at,
                    EXISTS (SELECT 1 FROM pin_verifiers p WHERE p.resident_id = r.id)
                 FROM residents r LEFT JOIN sealed_templates t ON t.resident_id = r.id ORDER BY r.id",
            )
            .map_err(|e| self.err(&e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ResidentSummary {
                    id: r.get(0)?,
                    unit_label: r.get(1)?,
                    moved_out_at: r.get(2)?,
                    consent_granted_at: r.get(3)?,
                    consent_revoked_at: r.get(4)?,
                    template_version: r.get(5)?,
                    enrolled_at: r.get(6)?,
                    has_pin: r.get(7)?,
                })
            })
            .map_err(|e| self.err(&e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(&e))
    }

    /// Counts that an auditor checks after a crash: (templates without a live consent, templates without a
    /// wrapped key, wrapped keys without a template).
    pub fn orphan_counts(&self) -> Result<(i64, i64, i64)> {
        self.conn
            .query_row(
                "SELECT
                    (SELECT COUNT(*) FROM sealed_templates t WHERE NOT EXISTS (
                        SELECT 1 FROM consent_records c WHERE c.resident_id = t.resident_id AND c.revoked_at IS NULL)),
                    (SELECT COUNT(*) FROM sealed_templates t WHERE NOT EXISTS (
                        SELECT 1 FROM wrapped_keys k WHERE k.resident_id = t.resident_id)),
                    (SELECT COUNT(*) FROM wrapped_keys k WHERE NOT EXISTS (
                        SELECT 1 FROM sealed_templates t WHERE t.resident_id = k.resident_id))",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.err(&e))
    }

    /// Every table with its columns and declared types, for the auditor's schema check.
    pub fn schema(&self) -> Result<Vec<TableSchema>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .map_err(|e| self.err(&e))?;
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| self.err(&e))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(&e))?;
        let mut tables = Vec::new();
        for name in names {
            let mut cols = self
                .conn
                .prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")
                .map_err(|e| self.err(&e))?;
            let columns = cols
                .query_map([&name], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(|e| self.err(&e))?
                .collect::<rusqlite::Result<_>>()
                .map_err(|e| self.err(&e))?;
            tables.push(TableSchema { name, columns });
        }
        Ok(tables)
    }

    /// The audit log's events whose name is one of `events`, oldest first, each with the first 8 bytes of its
    /// chain hash in hex (the verification code printed on a revocation receipt).
    pub fn audit_events(&self, events: &[&str]) -> Result<Vec<AuditEvent>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, at, event, subject, hash FROM audit_log ORDER BY seq")
            .map_err(|e| self.err(&e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AuditEvent {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    event: r.get(2)?,
                    subject: r.get(3)?,
                    verification_code: hex(r.get::<_, Vec<u8>>(4)?.get(..8).unwrap_or_default()),
                })
            })
            .map_err(|e| self.err(&e))?;
        let all: Vec<AuditEvent> = rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(&e))?;
        Ok(all.into_iter().filter(|e| events.contains(&e.event.as_str())).collect())
    }

    /// The number of sealed templates, and of residents with a live consent.
    pub fn enrolment_counts(&self) -> Result<(i64, i64)> {
        self.conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM sealed_templates),
                        (SELECT COUNT(DISTINCT resident_id) FROM consent_records WHERE revoked_at IS NULL)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.err(&e))
    }

    /// Adds a staff account (the password already hashed, argon2id PHC string).
    pub fn add_account(&mut self, name: &str, role: &str, password_hash: &str, now: i64) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, &e))?;
        tx.execute(
            "INSERT INTO portal_accounts (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET role = ?2, password_hash = ?3, failed_attempts = 0, locked_until = 0",
            params![name, role, password_hash, now],
        )
        .map_err(|e| db_err(&path, &e))?;
        append_audit(&tx, now, "portal account set", &format!("{role}:{name}")).map_err(|e| db_err(&path, &e))?;
        tx.commit().map_err(|e| db_err(&path, &e))
    }

    /// A staff account, if it exists.
    pub fn account(&self, name: &str) -> Result<Option<PortalAccount>> {
        self.conn
            .query_row(
                "SELECT name, role, password_hash, failed_attempts, locked_until FROM portal_accounts WHERE name = ?1",
                [name],
                |r| {
                    Ok(PortalAccount {
                        name: r.get(0)?,
                        role: r.get(1)?,
                        password_hash: r.get(2)?,
                        failed_attempts: r.get(3)?,
                        locked_until: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(&e))
    }

    /// Records a login attempt: a success clears the failures; a failure counts, and locks the account until
    /// `lock_until` when given.
    pub fn record_login(&mut self, name: &str, success: bool, lock_until: Option<i64>) -> Result<()> {
        let sql = if success {
            "UPDATE portal_accounts SET failed_attempts = 0, locked_until = 0 WHERE name = ?1"
        } else {
            "UPDATE portal_accounts SET failed_attempts = failed_attempts + 1,
                 locked_until = MAX(locked_until, COALESCE(?2, 0)) WHERE name = ?1"
        };
        let params: &[&dyn rusqlite::ToSql] = if success { &[&name] } else { &[&name, &lock_until] };
        self.conn.execute(sql, params).map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// Stores a new one-time enrolment code (its hash) for a household; returns its id.
    pub fn add_enrolment_code(&mut self, code_hash: &[u8], unit_label: &str, now: i64, expires_at: i64) -> Result<i64> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, &e))?;
        tx.execute(
            "INSERT INTO portal_enrolment_codes (code_hash, unit_label, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![code_hash, unit_label, now, expires_at],
        )
        .map_err(|e| db_err(&path, &e))?;
        let id = tx.last_insert_rowid();
        append_audit(&tx, now, "enrolment code issued", &format!("code:{id} unit:{unit_label}"))
            .map_err(|e| db_err(&path, &e))?;
        tx.commit().map_err(|e| db_err(&path, &e))?;
        Ok(id)
    }

    /// The household of a code that can still be used (not used, cancelled or expired).
    pub fn usable_enrolment_code(&self, code_hash: &[u8], now: i64) -> Result<Option<(i64, String)>> {
        self.conn
            .query_row(
                "SELECT id, unit_label FROM portal_enrolment_codes WHERE code_hash = ?1 AND used_at IS NULL
                 AND cancelled_at IS NULL AND expires_at > ?2",
                params![code_hash, now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(&e))
    }

    /// Marks a code used, once: false if it was used, cancelled or expired in the meantime.
    pub fn use_enrolment_code(&mut self, id: i64, now: i64) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE portal_enrolment_codes SET used_at = ?2 WHERE id = ?1 AND used_at IS NULL
                 AND cancelled_at IS NULL AND expires_at > ?2",
                params![id, now],
            )
            .map_err(|e| self.err(&e))?;
        Ok(n == 1)
    }

    /// Cancels an unused code; false if there was none to cancel.
    pub fn cancel_enrolment_code(&mut self, id: i64, now: i64) -> Result<bool> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, &e))?;
        let n = tx
            .execute(
                "UPDATE portal_enrolment_codes SET cancelled_at = ?2 WHERE id = ?1 AND used_at IS NULL
                 AND cancelled_at IS NULL",
                params![id, now],
            )
            .map_err(|e| db_err(&path, &e))?;
        if n == 1 {
            append_audit(&tx, now, "enrolment code cancelled", &format!("code:{id}")).map_err(|e| db_err(&path, &e))?;
        }
        tx.commit().map_err(|e| db_err(&path, &e))?;
        Ok(n == 1)
    }

    /// Every enrolment code issued, newest first (no code, only its state).
    pub fn enrolment_codes(&self) -> Result<Vec<EnrolmentCodeSummary>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, unit_label, issued_at, expires_at, used_at, cancelled_at FROM portal_enrolment_codes
                 ORDER BY id DESC",
            )
            .map_err(|e| self.err(&e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(EnrolmentCodeSummary {
                    id: r.get(0)?,
                    unit_label: r.get(1)?,
                    issued_at: r.get(2)?,
                    expires_at: r.get(3)?,
                    used_at: r.get(4)?,
                    cancelled_at: r.get(5)?,
                })
            })
            .map_err(|e| self.err(&e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(&e))
    }

    /// Sets (or replaces) a resident's revocation code hash.
    pub fn set_revocation_code(&mut self, resident_id: &str, code_hash: &[u8]) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO portal_revocation_codes (code_hash, resident_id) VALUES (?1, ?2)
                 ON CONFLICT(resident_id) DO UPDATE SET code_hash = ?1",
                params![code_hash, resident_id],
            )
            .map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// The resident a revocation code belongs to.
    pub fn resident_for_revocation_code(&self, code_hash: &[u8]) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT resident_id FROM portal_revocation_codes WHERE code_hash = ?1", [code_hash], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(&e))
    }

    /// Keypad codes in use (to give a new resident a free one).
    pub fn keypad_codes(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT keypad_code FROM pin_verifiers WHERE keypad_code IS NOT NULL")
            .map_err(|e| self.err(&e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(&e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(&e))
    }

    /// Verifies the audit log's hash chain end to end; returns the number of events.
    pub fn verify_audit_chain(&self) -> Result<usize> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, at, event, subject, prev_hash, hash FROM audit_log ORDER BY seq")
            .map_err(|e| self.err(&e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                ))
            })
            .map_err(|e| self.err(&e))?;
        let mut previous = vec![0u8; 32];
        let mut n = 0;
        for row in rows {
            let (seq, at, event, subject, prev_hash, hash) = row.map_err(|e| self.err(&e))?;
            if prev_hash != previous || hash != chain_hash(&previous, seq, at, &event, &subject) {
                return Err(StoreError::Database {
                    path: self.path.clone(),
                    reason: format!("audit log broken at event {seq}: an event was altered, removed or inserted"),
                });
            }
            previous = hash;
            n += 1;
        }
        Ok(n)
    }
}

/// A staff account of the portal.
#[derive(Clone, PartialEq, Eq)]
pub struct PortalAccount {
    /// Login name.
    pub name: String,
    /// `manager` or `auditor`.
    pub role: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Failed logins since the last success.
    pub failed_attempts: i64,
    /// Unix seconds until which logins are refused.
    pub locked_until: i64,
}

impl std::fmt::Debug for PortalAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalAccount").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

/// An enrolment code's state (never the code).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EnrolmentCodeSummary {
    /// Row id.
    pub id: i64,
    /// The household.
    pub unit_label: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// When it was used, if it was.
    pub used_at: Option<i64>,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<i64>,
}

/// One table of the database and its columns (name, declared type).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TableSchema {
    /// Table name.
    pub name: String,
    /// Columns: name and declared type.
    pub columns: Vec<(String, String)>,
}

/// One event of the hash-chained audit log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditEvent {
    /// Position in the chain.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// What happened (`revoke`, `enrol`, ...).
    pub event: String,
    /// Whom or what it concerned (a pseudonymous resident id, a pass id, a key id).
    pub subject: String,
    /// The first 8 bytes of the event's chain hash, hex: the code on a revocation receipt.
    pub verification_code: String,
}

/// Deletes one resident's face data (and, by reason, PIN and residency) inside `tx`; returns what went.
fn queue_for_compound(tx: &rusqlite::Transaction<'_>, kind: &str, resident_id: &str, at: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO compound_outbox (kind, resident_id, at) VALUES (?1, ?2, ?3)",
        params![kind, resident_id, at],
    )
    .map(|_| ())
}

fn shred_rows(
    tx: &rusqlite::Transaction<'_>,
    resident_id: &str,
    now: i64,
    reason: ShredReason,
) -> rusqlite::Result<Vec<&'static str>> {
    let mut deleted = Vec::new();
    let (id_only, id_now) = (params![resident_id], params![resident_id, now]);
    let mut run = |sql: &str, p: &[&dyn rusqlite::ToSql], what: &'static str| -> rusqlite::Result<()> {
        if tx.execute(sql, p)? > 0 {
            deleted.push(what);
        }
        Ok(())
    };
    run("DELETE FROM sealed_templates WHERE resident_id = ?1", id_only, "sealed face template")?;
    if reason != ShredReason::Unused {
        run("DELETE FROM portal_revocation_codes WHERE resident_id = ?1", id_only, "revocation code")?;
    }
    run("DELETE FROM wrapped_keys WHERE resident_id = ?1", id_only, "template data key (crypto-shredded)")?;
    if reason != ShredReason::Unused {
        run("DELETE FROM pin_verifiers WHERE resident_id = ?1", id_only, "PIN verifier")?;
    }
    run(
        "UPDATE consent_records SET revoked_at = ?2 WHERE resident_id = ?1 AND revoked_at IS NULL",
        id_now,
        "consent to face entry (ended)",
    )?;
    if reason == ShredReason::MovedOut {
        run(
            "UPDATE residents SET moved_out_at = ?2 WHERE id = ?1 AND moved_out_at IS NULL",
            id_now,
            "residency (moved out)",
        )?;
    }
    Ok(deleted)
}

/// Inside `tx`: carries every template to the new transform (same data key, fresh nonce, new transform id in
/// its associated data), destroys the old transform key, re-wraps every data key under the new master key and
/// stores the new transform key under it; chains a "key rotation" event. A row that no longer opens (a
/// tampered row) is left as it is and reported; it is unusable for good once the old keys are gone, and must
/// not block everyone else's change. Returns how many templates were carried over.
fn rotate_keys_in(tx: &rusqlite::Transaction<'_>, path: &Path, rekey: &Rekey<'_>, now: i64) -> Result<usize> {
    let db = |e: rusqlite::Error| db_err(path, &e);
    // Keys rotated by another process since the caller loaded them: refuse before touching anything.
    require_generation(tx, path, rekey.generation)?;
    // The old transform key must open under the old master: otherwise the caller's keys are wrong.
    if let Some(current) = current_transform_key(tx, rekey.old_master).map_err(db)? {
        current.map_err(|source| StoreError::WrongMasterKey { source })?;
    }
    let rows: Vec<(String, Raw, Raw, Raw, Raw, Raw, Raw)> = tx
        .prepare(
            "SELECT t.resident_id, t.version, t.transform_id, t.nonce, t.ciphertext, k.nonce, k.ciphertext
             FROM sealed_templates t JOIN wrapped_keys k ON k.resident_id = t.resident_id",
        )
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))?
                .collect()
        })
        .map_err(db)?;
    let mut renewed = 0;
    for (resident, version, transform, t_nonce, t_ct, k_nonce, k_ct) in rows {
        let carried = (|| {
            let (Raw::Integer(version), Raw::Integer(transform)) = (version, transform) else {
                return Err(SealError::Malformed("template version or transform"));
            };
            let version = u32::try_from(version).map_err(|_| SealError::Malformed("template version"))?;
            let from = TransformId(u64::from_be_bytes(transform.to_be_bytes()));
            let data_key = protect::unwrap_key(&sealed_from_values(k_nonce, k_ct)?, rekey.old_master, &resident)?;
            let context = TemplateContext { resident_id: &resident, version, transform: from };
            let template = protect::open_template(&sealed_from_values(t_nonce, t_ct)?, &data_key, context)?;
            let moved = rekey.renewal.apply(&template).ok_or(SealError::Malformed("template of another transform"))?;
            let context = TemplateContext { resident_id: &resident, version, transform: moved.transform() };
            protect::seal_template(&moved, &data_key, context)
        })();
        match carried {
            Ok(sealed) => {
                tx.execute(
                    "UPDATE sealed_templates SET transform_id = ?2, nonce = ?3, ciphertext = ?4 WHERE resident_id = ?1",
                    params![resident, transform_to_sql(rekey.renewal.to()), &sealed.nonce[..], sealed.ciphertext],
                )
                .map_err(db)?;
                renewed += 1;
            }
            Err(e) => tracing::warn!("the template of resident {resident} does not open ({e}); left behind, unusable"),
        }
    }
    tx.execute("DELETE FROM transform_keys", []).map_err(db)?;
    rewrap_data_keys(tx, path, rekey.old_master, rekey.new_master)?;
    let secrets: Vec<(String, Vec<u8>, Vec<u8>)> = tx
        .prepare("SELECT name, nonce, ciphertext FROM device_secrets")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .map_err(db)?;
    for (name, nonce, ciphertext) in secrets {
        let label = secret_label(&name);
        let secret = sealed_from(nonce, ciphertext)
            .and_then(|w| protect::unwrap_key(&w, rekey.old_master, &label))
            .map_err(|source| StoreError::WrongMasterKey { source })?;
        let wrapped = protect::wrap_key(&secret, rekey.new_master, &label)
            .map_err(|source| StoreError::WrongMasterKey { source })?;
        tx.execute(
            "UPDATE device_secrets SET nonce = ?2, ciphertext = ?3 WHERE name = ?1",
            params![name, &wrapped.nonce[..], wrapped.ciphertext],
        )
        .map_err(db)?;
    }
    let wrapped = protect::wrap_transform_key(rekey.new_transform, rekey.new_master)
        .map_err(|source| StoreError::WrongMasterKey { source })?;
    tx.execute(
        "INSERT INTO transform_keys (id, nonce, ciphertext, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![transform_to_sql(rekey.new_transform.transform_id()), &wrapped.nonce[..], wrapped.ciphertext, now],
    )
    .map_err(db)?;
    append_audit(tx, now, "key rotation", &format!("transform {:016x}", rekey.new_transform.transform_id().0))
        .map_err(db)?;
    tx.execute("UPDATE key_generation SET generation = generation + 1 WHERE id = 0", []).map_err(db)?;
    Ok(renewed)
}

fn read_generation(conn: &Connection) -> rusqlite::Result<KeyGeneration> {
    conn.query_row("SELECT generation FROM key_generation WHERE id = 0", [], |r| r.get::<_, i64>(0))
        .map(|g| KeyGeneration(u64::try_from(g).unwrap_or(0)))
}

/// Inside a write's transaction: the caller's keys must be the current generation.
fn require_generation(conn: &Connection, path: &Path, held: KeyGeneration) -> Result<()> {
    let current = read_generation(conn).map_err(|e| db_err(path, &e))?;
    if current == held {
        Ok(())
    } else {
        Err(StoreError::StaleKeys { held: held.0, current: current.0 })
    }
}

/// The device's current transform key as `master` opens it: `None` before the first one is made, `Some(Err)`
/// when `master` does not open it.
fn current_transform_key(
    conn: &Connection,
    master: &AeadKey,
) -> rusqlite::Result<Option<std::result::Result<TransformKey, SealError>>> {
    let row: Option<(i64, Vec<u8>, Vec<u8>)> = conn
        .query_row(
            "SELECT id, nonce, ciphertext FROM transform_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(row.map(|(id, nonce, ciphertext)| {
        let id = TransformId(u64::from_be_bytes(id.to_be_bytes()));
        sealed_from(nonce, ciphertext).and_then(|w| protect::unwrap_transform_key(&w, master, id))
    }))
}

/// Re-wraps every resident's data key from `old` to `new` inside `tx`; a key that does not open is left
/// behind (see [`rotate_keys_in`]).
fn rewrap_data_keys(tx: &rusqlite::Transaction<'_>, path: &Path, old: &AeadKey, new: &AeadKey) -> Result<()> {
    let db = |e: rusqlite::Error| db_err(path, &e);
    let rows: Vec<(String, Raw, Raw)> = tx
        .prepare("SELECT resident_id, nonce, ciphertext FROM wrapped_keys")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .map_err(db)?;
    for (resident, nonce, ciphertext) in rows {
        let data_key = match sealed_from_values(nonce, ciphertext).and_then(|w| protect::unwrap_key(&w, old, &resident))
        {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!("the data key of resident {resident} does not open ({e}); left behind, unusable");
                continue;
            }
        };
        let wrapped = protect::wrap_key(&data_key, new, &resident)
            .map_err(|source| StoreError::Sealed { resident: resident.clone(), source })?;
        tx.execute(
            "UPDATE wrapped_keys SET nonce = ?2, ciphertext = ?3 WHERE resident_id = ?1",
            params![resident, &wrapped.nonce[..], wrapped.ciphertext],
        )
        .map_err(db)?;
    }
    Ok(())
}

fn db_err(path: &Path, e: &rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    let damaged = matches!(e.sqlite_error_code(), Some(DatabaseCorrupt | NotADatabase));
    let reason = if damaged {
        format!("{e}: the file is damaged or not a facegate database; stop the service and restore the last backup")
    } else {
        e.to_string()
    };
    StoreError::Database { path: path.to_path_buf(), reason }
}

/// The wrapping label of a device secret: a ':' can never appear in a resident id, so a device secret's
/// wrapping can never be mistaken for a resident's data key.
fn secret_label(name: &str) -> String {
    format!("device:{name}")
}

fn validate_resident_id(id: &str) -> Result<()> {
    let ok = (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadResidentId(id.to_owned()))
    }
}

fn day_floor(t: i64) -> i64 {
    t - t.rem_euclid(86_400)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SQLite integers are signed; the id's bits are kept as they are.
fn transform_to_sql(id: TransformId) -> i64 {
    i64::from_be_bytes(id.0.to_be_bytes())
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

fn chain_hash(previous: &[u8], seq: i64, at: i64, event: &str, subject: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(seq.to_be_bytes());
    h.update(at.to_be_bytes());
    for field in [event, subject] {
        h.update(u64::try_from(field.len()).unwrap_or(u64::MAX).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().to_vec()
}

fn append_audit(tx: &rusqlite::Transaction<'_>, at: i64, event: &str, subject: &str) -> rusqlite::Result<Vec<u8>> {
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (seq, previous) = last.map_or((1, vec![0u8; 32]), |(s, h)| (s + 1, h));
    let hash = chain_hash(&previous, seq, at, event, subject);
    tx.execute(
        "INSERT INTO audit_log (seq, at, event, subject, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![seq, at, event, subject, previous, hash],
    )?;
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protect::{Rotation, TransformKey};
    use crate::vision::embed::{Embedding, EMBEDDING_DIM};

    /// A master key of the first generation (before any rotation).
    fn gen0(master: &AeadKey) -> KeysInUse<'_> {
        KeysInUse { master, generation: KeyGeneration(0) }
    }

    fn consent(now: i64) -> ConsentRecord {
        ConsentRecord {
            notice_version: "2026-11".into(),
            notice_sha256: "ab".repeat(32),
            purpose: "gate entry only".into(),
            channel: "kiosk".into(),
            granted_at: now,
        }
    }

    fn embedding(seed: usize) -> Embedding {
        let raw: Vec<f32> = (0..EMBEDDING_DIM).map(|i| ((i * 7 + seed * 13) as f32 * 0.37).sin()).collect();
        Embedding::from_raw(&raw).unwrap()
    }

    fn all_bytes(dir: &Path) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        bytes
    }

    #[test]
    fn enrol_match_revoke_and_nothing_plain_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("facegate.sqlite");
        let mut store = Store::open(&db).unwrap();
        let master = AeadKey::generate();
        let rotation = Rotation::from_key(&TransformKey::from_bytes([5; 32]));
        let (e1, e2) = (embedding(1), embedding(2));
        let (t1, t2) = (rotation.protect(&e1), rotation.protect(&e2));
        for (id, t) in [("r1", &t1), ("r2", &t2)] {
            store.add_resident(id, Some("3-401"), 100).unwrap();
            assert!(matches!(store.store_template(id, t, gen0(&master), 100), Err(StoreError::NoConsent(_))));
            store.grant_consent(id, &consent(100)).unwrap();
            assert_eq!(store.store_template(id, t, gen0(&master), 101).unwrap(), 1);
        }
        let LiveTemplates { templates: live, failures } = store.live_templates(&master, rotation.id()).unwrap();
        assert!(failures.is_empty());
        assert_eq!(live.len(), 2);
        assert_eq!(live[0].1.as_slice(), t1.as_slice());

        // Neither the embedding's nor the protected template's float bytes are anywhere in the files.
        let on_disk = all_bytes(dir.path());
        for values in [e1.as_slice(), t1.as_slice()] {
            for v in values.iter().filter(|v| v.abs() > 1e-3) {
                assert!(!on_disk.windows(4).any(|w| w == v.to_le_bytes()), "float {v} found on disk");
            }
        }
        for magic in [&[0xFFu8, 0xD8, 0xFF][..], b"\x89PNG"] {
            assert!(!on_disk.windows(magic.len()).any(|w| w == magic));
        }

        // Wrong master key: a clear error per row, nothing panics.
        let LiveTemplates { templates: live, failures } =
            store.live_templates(&AeadKey::generate(), rotation.id()).unwrap();
        assert!(live.is_empty() && failures.len() == 2);

        let wrapped_before: Vec<u8> = store
            .conn
            .query_row("SELECT ciphertext FROM wrapped_keys WHERE resident_id = 'r1'", [], |r| r.get(0))
            .unwrap();
        let next = AeadKey::generate();
        let next_transform = TransformKey::from_bytes([6; 32]);
        let next_rotation = Rotation::from_key(&next_transform);
        let renewal = rotation.renewal_to(&next_rotation);
        let rekey = Rekey {
            generation: KeyGeneration(0),
            old_master: &master,
            new_master: &next,
            new_transform: &next_transform,
            renewal: &renewal,
        };
        let receipt = store.revoke_and_shred("r1", 200, &rekey).unwrap();
        assert_eq!(receipt.deleted.len(), 3, "{receipt:?}");
        assert_eq!(receipt.verification_code.len(), 16);
        // Everything left is wrapped under the new master key only, and carried to the new transform.
        assert!(store.live_templates(&master, next_rotation.id()).unwrap().templates.is_empty());
        let live = store.live_templates(&next, next_rotation.id()).unwrap().templates;
        assert_eq!(live.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), vec!["r2"]);
        assert!((live[0].1.cosine(&next_rotation.protect(&e2)) - 1.0).abs() < 1e-5);
        // The shredded wrapped key is nowhere in the files (secure_delete + WAL checkpoint).
        let on_disk = all_bytes(dir.path());
        assert!(!on_disk.windows(wrapped_before.len()).any(|w| w == wrapped_before.as_slice()));
        // 2 consents, 2 enrolments, the revocation and its key rotation.
        assert_eq!(store.verify_audit_chain().unwrap(), 6);
        store.integrity_check().unwrap();
    }

    #[test]
    fn replicated_changes_are_queued_in_their_transaction_and_received_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("facegate.sqlite")).unwrap();
        let master = AeadKey::generate();
        let rotation = Rotation::from_key(&TransformKey::from_bytes([5; 32]));
        let next = AeadKey::generate();
        let next_transform = TransformKey::from_bytes([6; 32]);
        let renewal = rotation.renewal_to(&Rotation::from_key(&next_transform));
        let rekey = Rekey {
            generation: KeyGeneration(0),
            old_master: &master,
            new_master: &next,
            new_transform: &next_transform,
            renewal: &renewal,
        };
        for id in ["local", "received", "standalone"] {
            store.add_resident(id, None, 100).unwrap();
            store.grant_consent(id, &consent(100)).unwrap();
        }
        // Not replicated: nothing queued.
        store.store_template("standalone", &rotation.protect(&embedding(3)), gen0(&master), 100).unwrap();
        assert!(store.outbox(10).unwrap().is_empty());
        store.set_replicated(true);
        store.store_template("local", &rotation.protect(&embedding(1)), gen0(&master), 101).unwrap();
        store
            .store_template_from(
                "received",
                &rotation.protect(&embedding(2)),
                gen0(&master),
                101,
                ChangeOrigin::Compound,
            )
            .unwrap();
        store.revoke_and_shred("local", 102, &rekey).unwrap();
        let queued: Vec<(String, String)> =
            store.outbox(10).unwrap().into_iter().map(|e| (e.kind, e.resident_id)).collect();
        assert_eq!(queued, [("template".into(), "local".into()), ("revoked".into(), "local".into())]);
        let receipt = store
            .shred_from_compound(
                "received",
                ShredReason::MovedOut,
                103,
                &Rekey {
                    generation: KeyGeneration(1),
                    old_master: &next,
                    new_master: &master,
                    new_transform: &TransformKey::from_bytes([5; 32]),
                    renewal: &Rotation::from_key(&next_transform).renewal_to(&rotation),
                },
            )
            .unwrap();
        assert!(receipt.deleted.contains(&"sealed face template"));
        assert_eq!(store.outbox(10).unwrap().len(), 2, "a shred received from the compound was queued again");
        assert_eq!(store.last_revocation("received").unwrap(), Some(103));
        let first = store.outbox(1).unwrap()[0].seq;
        store.outbox_done(first).unwrap();
        assert_eq!(store.outbox(10).unwrap()[0].kind, "revoked");
        assert!(
            store.audit_events(&["enrol (from the compound)", "expire (moved out) (from the compound)"]).unwrap().len()
                == 2
        );
    }

    #[test]
    fn compound_counts_add_every_gates_latest_report() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("facegate.sqlite")).unwrap();
        store.count_passage(3_600 * 10 + 5, EntryMethod::Pin, PassageOutcome::Opened).unwrap();
        let cell = |count| PassageCount { hour_start: 36_000, method: "pin".into(), outcome: "opened".into(), count };
        store.set_gate_counts("gate-b", &[cell(4)]).unwrap();
        store.set_gate_counts("gate-c", &[cell(7)]).unwrap();
        store.set_gate_counts("gate-b", &[cell(5)]).unwrap(); // a later report replaces the earlier one
        assert_eq!(store.passage_counts(0, 100_000).unwrap(), vec![cell(1)]);
        assert_eq!(store.compound_passage_counts(0, 100_000).unwrap(), vec![cell(13)]);
        assert_eq!(store.compound_gates().unwrap(), [("gate-b".to_owned(), 1), ("gate-c".to_owned(), 1)]);
        store.set_compound_state("applied_seq", 42).unwrap();
        assert_eq!(store.compound_state("applied_seq").unwrap(), Some(42));
        assert_eq!(store.compound_state("other").unwrap(), None);
    }

    #[test]
    fn swapped_rows_and_tampered_audit_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let master = AeadKey::generate();
        let rotation = Rotation::from_key(&TransformKey::from_bytes([6; 32]));
        for (id, seed) in [("a", 1), ("b", 2)] {
            store.add_resident(id, None, 1).unwrap();
            store.grant_consent(id, &consent(1)).unwrap();
            store.store_template(id, &rotation.protect(&embedding(seed)), gen0(&master), 2).unwrap();
        }
        // Swap the two sealed templates between residents.
        store
            .conn
            .execute_batch(
                "UPDATE sealed_templates SET resident_id = 'tmp' WHERE resident_id = 'a';
                 UPDATE sealed_templates SET resident_id = 'a' WHERE resident_id = 'b';
                 UPDATE sealed_templates SET resident_id = 'b' WHERE resident_id = 'tmp';",
            )
            .unwrap_or_else(|_| {
                // Foreign keys forbid 'tmp'; swap the ciphertexts instead.
                store
                    .conn
                    .execute_batch(
                        "UPDATE sealed_templates SET ciphertext = (SELECT ciphertext FROM sealed_templates WHERE resident_id = 'b'),
                                nonce = (SELECT nonce FROM sealed_templates WHERE resident_id = 'b') WHERE resident_id = 'a';",
                    )
                    .unwrap()
            });
        let LiveTemplates { templates: live, failures } = store.live_templates(&master, rotation.id()).unwrap();
        assert!(!failures.is_empty(), "a swapped row must not open");
        assert!(live.len() < 2);
        store.conn.execute("UPDATE audit_log SET subject = 'x' WHERE seq = 1", []).unwrap();
        assert!(store.verify_audit_chain().is_err());
    }

    #[test]
    fn passages_are_kept_only_as_hourly_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let hour = 1_795_510_800; // an hour boundary
        for (at, method, outcome) in [
            (hour + 5, EntryMethod::Face, PassageOutcome::Opened),
            (hour + 1_800, EntryMethod::Face, PassageOutcome::Opened),
            (hour + 3_599, EntryMethod::Pin, PassageOutcome::Refused),
            (hour + 3_600, EntryMethod::Face, PassageOutcome::Opened),
        ] {
            store.count_passage(at, method, outcome).unwrap();
        }
        let counts = store.passage_counts(hour, hour + 7_200).unwrap();
        let row = |h: i64, m: &str, o: &str, n: i64| PassageCount {
            hour_start: h,
            method: m.into(),
            outcome: o.into(),
            count: n,
        };
        assert_eq!(
            counts,
            vec![
                row(hour, "face", "opened", 2),
                row(hour, "pin", "refused", 1),
                row(hour + 3_600, "face", "opened", 1)
            ]
        );
        // The table has no column that could hold an identity or a time finer than the hour.
        let columns: Vec<String> = store
            .conn
            .prepare("SELECT name FROM pragma_table_info('passage_counts')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        assert_eq!(columns, vec!["hour_start", "method", "outcome", "count"]);
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(err.to_string().contains("db.sqlite"), "{err}");
    }
}
