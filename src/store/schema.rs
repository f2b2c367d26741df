//! Schema: the migrations, applied in order, and what the auditor reads of the schema.

use super::*;

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
    // PIN lockouts live in memory on the monotonic clock, per typed code, known or not: no per-resident failure
    // count or time is kept. What survives a restart is the keypad-wide number of failures per hour.
    r"
ALTER TABLE pin_verifiers DROP COLUMN last_failed_at;
ALTER TABLE pin_verifiers DROP COLUMN failed_attempts;
CREATE TABLE keypad_failures (
    hour_start INTEGER PRIMARY KEY,
    failures INTEGER NOT NULL
) WITHOUT ROWID;
-- A household's face enrolment the portal handed to the management office (a face that already matches, or
-- too many attempts): the resident's page says only that the office will help.
ALTER TABLE residents ADD COLUMN needs_staff_at INTEGER;
",
    // Each resident's place in the compound's order of changes: a consent generation and a change counter,
    // never a time (the gates' clocks need not agree). Kept after a revocation, and for residents this gate
    // never held, so that a replayed earlier announcement is refused; it names no one beyond the pseudonymous
    // id the other tables already keep. The outbox carries the stamp of the change it announces. Residents of
    // an older schema start from their own history here (consents given; live or ended).
    r"
CREATE TABLE compound_stamps (
    resident_id TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    version INTEGER NOT NULL,
    ended TEXT CHECK (ended IN ('revoked', 'moved_out'))
) WITHOUT ROWID;
ALTER TABLE compound_outbox ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE compound_outbox ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
INSERT INTO compound_stamps (resident_id, generation, version, ended)
SELECT r.id,
       (SELECT COUNT(*) FROM consent_records c WHERE c.resident_id = r.id),
       COALESCE((SELECT t.version FROM sealed_templates t WHERE t.resident_id = r.id), 0)
           + (CASE WHEN EXISTS (SELECT 1 FROM consent_records c WHERE c.resident_id = r.id AND c.revoked_at IS NULL)
                   THEN 0 ELSE 1 END),
       CASE WHEN EXISTS (SELECT 1 FROM consent_records c WHERE c.resident_id = r.id AND c.revoked_at IS NULL) THEN NULL
            WHEN r.moved_out_at IS NOT NULL THEN 'moved_out'
            ELSE 'revoked' END
FROM residents r
WHERE EXISTS (SELECT 1 FROM consent_records c WHERE c.resident_id = r.id);
",
    // Two more staff roles: the guard (calls, remote release, passes on the spot) and the installer (aiming
    // figures). SQLite cannot widen a CHECK in place: the table is copied.
    r"
CREATE TABLE portal_accounts_next (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('manager', 'auditor', 'guard', 'installer')),
    password_hash TEXT NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
INSERT INTO portal_accounts_next (name, role, password_hash, failed_attempts, locked_until, created_at)
SELECT name, role, password_hash, failed_attempts, locked_until, created_at FROM portal_accounts;
DROP TABLE portal_accounts;
ALTER TABLE portal_accounts_next RENAME TO portal_accounts;
",
    // Whether announcing an outbox entry makes this gate owe the compound a renewal of its key: only a
    // revocation made here does. An echo of another gate's tombstone, or a word announced again after a
    // replay or a crossing, does not (else every replay would force a compound-wide renewal). Tombstones
    // queued by an older version are taken as this gate's own: one renewal too many is safe, one too few
    // is not.
    r"
ALTER TABLE compound_outbox ADD COLUMN renews INTEGER NOT NULL DEFAULT 0 CHECK (renews IN (0, 1));
UPDATE compound_outbox SET renews = 1 WHERE kind <> 'template';
",
];

/// An index, view or trigger of the database: (type, name).
pub type SchemaObject = (String, String);

/// One table of the database and its columns (name, declared type).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TableSchema {
    /// Table name.
    pub name: String,
    /// Columns: name and declared type.
    pub columns: Vec<(String, String)>,
}

impl Store {
    pub(super) fn migrate(&self) -> Result<()> {
        let version: i64 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).in_db(&self.path)?;
        let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > supported {
            return Err(StoreError::TooNew { found: version, supported });
        }
        for (idx, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
            let next = idx + 1;
            self.conn
                .execute_batch(&format!("BEGIN IMMEDIATE; {sql} PRAGMA user_version = {next}; COMMIT;"))
                .in_db(&self.path)?;
        }
        Ok(())
    }

    /// The schema this version of facegate declares: its migrations run on an empty in-memory database.
    /// The auditor compares a device's database with it, so that nothing is trusted for its name.
    pub fn declared_schema() -> Result<(Vec<TableSchema>, Vec<SchemaObject>)> {
        let path = std::path::PathBuf::from(":memory:");
        let conn = rusqlite::Connection::open_in_memory().in_db(&path)?;
        let store = Self { path, conn, replicated: false };
        store.migrate()?;
        Ok((store.schema()?, store.schema_objects()?))
    }

    /// Every index, view and trigger, as (type, name); SQLite's own automatic indexes left out.
    pub fn schema_objects(&self) -> Result<Vec<SchemaObject>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT type, name FROM sqlite_schema WHERE type != 'table' AND name NOT LIKE 'sqlite_autoindex_%' \
                 ORDER BY type, name",
            )
            .in_db(&self.path)?;
        let objects = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .in_db(&self.path)?
            .collect::<rusqlite::Result<_>>()
            .in_db(&self.path)?;
        Ok(objects)
    }

    /// Every table with its columns and declared types, for the auditor's schema check.
    pub fn schema(&self) -> Result<Vec<TableSchema>> {
        let mut stmt =
            self.conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").in_db(&self.path)?;
        let names: Vec<String> =
            stmt.query_map([], |r| r.get(0)).in_db(&self.path)?.collect::<rusqlite::Result<_>>().in_db(&self.path)?;
        let mut tables = Vec::new();
        for name in names {
            let mut cols =
                self.conn.prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid").in_db(&self.path)?;
            let columns = cols
                .query_map([&name], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .in_db(&self.path)?
                .collect::<rusqlite::Result<_>>()
                .in_db(&self.path)?;
            tables.push(TableSchema { name, columns });
        }
        Ok(tables)
    }
}
