//! Compound outbox: the changes this gate still has to announce to the compound's other gates, written in the same
//! transaction as the change, and the compound link's own state.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput};

use super::*;

/// What a queued change announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxKind {
    /// A resident enrolled or re-enrolled here: their template and consent.
    Template,
    /// A resident withdrew consent here: a tombstone.
    Revoked,
    /// A resident moved out: a tombstone.
    MovedOut,
}

impl OutboxKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Template => "template",
            Self::Revoked => "revoked",
            Self::MovedOut => "moved_out",
        }
    }

    /// The tombstone a shredding announces, if it announces one (expiry stays per device).
    pub fn for_shred(reason: ShredReason) -> Option<Self> {
        match reason {
            ShredReason::Revoked => Some(Self::Revoked),
            ShredReason::MovedOut => Some(Self::MovedOut),
            ShredReason::Unused => None,
        }
    }
}

impl std::fmt::Display for OutboxKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ToSql for OutboxKind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

// Only this program writes the outbox (a newer schema is refused at open), so an unknown name is tampering:
// an error, never a guess.
impl FromSql for OutboxKind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "template" => Ok(Self::Template),
            "revoked" => Ok(Self::Revoked),
            "moved_out" => Ok(Self::MovedOut),
            other => Err(FromSqlError::Other(format!("unknown outbox kind {other:?}").into())),
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
    /// What it announces.
    pub kind: OutboxKind,
    /// The resident's pseudonymous id.
    pub resident_id: String,
    /// When the change was made (Unix seconds).
    pub at: i64,
}

/// Queues a change for the compound inside the transaction that makes it, so the two happen together or not at
/// all.
pub(super) fn queue_for_compound(
    tx: &rusqlite::Transaction<'_>,
    kind: OutboxKind,
    resident_id: &str,
    at: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO compound_outbox (kind, resident_id, at) VALUES (?1, ?2, ?3)",
        params![kind, resident_id, at],
    )
    .map(|_| ())
}

impl Store {
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
            .in_db(&self.path)?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok(OutboxEntry { seq: r.get(0)?, kind: r.get(1)?, resident_id: r.get(2)?, at: r.get(3)? })
            })
            .in_db(&self.path)?;
        rows.collect::<rusqlite::Result<_>>().in_db(&self.path)
    }

    /// Removes an announced change (the broker acknowledged it).
    pub fn outbox_done(&mut self, seq: i64) -> Result<()> {
        self.conn.execute("DELETE FROM compound_outbox WHERE seq = ?1", [seq]).in_db(&self.path)?;
        Ok(())
    }

    /// A value of the compound link's state (e.g. the last broker sequence applied).
    pub fn compound_state(&self, name: &str) -> Result<Option<i64>> {
        self.conn
            .query_row("SELECT value FROM compound_state WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .in_db(&self.path)
    }

    /// Sets a value of the compound link's state.
    pub fn set_compound_state(&mut self, name: &str, value: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO compound_state (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
            .in_db(&self.path)?;
        Ok(())
    }
}
