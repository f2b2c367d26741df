//! Compound outbox: the changes this gate still has to announce to the compound's other gates, written in the same
//! transaction as the change, and the compound link's own state.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput};

use super::*;
use crate::policy::consent::{Stamp, Standing};

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
    /// Made on this device (CLI, portal): the next stamp in the resident's order of changes; announced to the
    /// compound's other gates when replicated.
    Local,
    /// Received from another gate of the compound, with the stamp it carried. A template is not announced
    /// again; a tombstone is echoed on this gate's own subject (a tombstone held by every gate cannot be
    /// displaced by a replay on one gate's subject).
    Compound(Stamp),
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
    /// When the change was made (Unix seconds; kept on this device only).
    pub at: i64,
    /// The change's place in the resident's order (for a template, the state current when it is sent).
    pub stamp: Stamp,
    /// Whether announcing it makes this gate renew the compound key: a revocation made here (not an echo of
    /// another gate's, nor a word announced again).
    pub renews: bool,
}

/// Queues a change for the compound inside the transaction that makes it, so the two happen together or not at
/// all.
pub(super) fn queue_for_compound(
    tx: &rusqlite::Transaction<'_>,
    kind: OutboxKind,
    resident_id: &str,
    at: i64,
    stamp: Stamp,
    renews: bool,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO compound_outbox (kind, resident_id, at, generation, version, renews) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![kind, resident_id, at, stamp.generation, stamp.version, renews],
    )
    .map(|_| ())
}

/// The resident's latest state as this device knows it (`None`: nothing known).
pub(super) fn standing_in(conn: &Connection, resident_id: &str) -> rusqlite::Result<Option<Standing>> {
    conn.query_row(
        "SELECT generation, version, ended FROM compound_stamps WHERE resident_id = ?1",
        [resident_id],
        |r| {
            let ended = match r.get_ref(2)? {
                ValueRef::Null => None,
                ValueRef::Text(b"revoked") => Some(ShredReason::Revoked),
                ValueRef::Text(b"moved_out") => Some(ShredReason::MovedOut),
                _ => return Err(rusqlite::Error::IntegralValueOutOfRange(2, 0)),
            };
            Ok(Standing { stamp: Stamp { generation: r.get(0)?, version: r.get(1)? }, ended })
        },
    )
    .optional()
}

/// The resident's latest stamp (the zero stamp when nothing is known): what a local change counts on from.
pub(super) fn stamp_in(conn: &Connection, resident_id: &str) -> rusqlite::Result<Stamp> {
    Ok(standing_in(conn, resident_id)?.map_or(Stamp::default(), |k| k.stamp))
}

/// Records the resident's latest state.
pub(super) fn set_standing_in(conn: &Connection, resident_id: &str, standing: Standing) -> rusqlite::Result<()> {
    let ended = match standing.ended {
        None => None,
        Some(ShredReason::MovedOut) => Some("moved_out"),
        Some(_) => Some("revoked"),
    };
    conn.execute(
        "INSERT INTO compound_stamps (resident_id, generation, version, ended) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(resident_id) DO UPDATE SET
             generation = excluded.generation, version = excluded.version, ended = excluded.ended",
        params![resident_id, standing.stamp.generation, standing.stamp.version, ended],
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
            .prepare(
                "SELECT seq, kind, resident_id, at, generation, version, renews FROM compound_outbox \
                 ORDER BY seq LIMIT ?1",
            )
            .in_db(&self.path)?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok(OutboxEntry {
                    seq: r.get(0)?,
                    kind: r.get(1)?,
                    resident_id: r.get(2)?,
                    at: r.get(3)?,
                    stamp: Stamp { generation: r.get(4)?, version: r.get(5)? },
                    renews: r.get(6)?,
                })
            })
            .in_db(&self.path)?;
        rows.collect::<rusqlite::Result<_>>().in_db(&self.path)
    }

    /// Removes an announced change (the broker acknowledged it).
    pub fn outbox_done(&mut self, seq: i64) -> Result<()> {
        self.conn.execute("DELETE FROM compound_outbox WHERE seq = ?1", [seq]).in_db(&self.path)?;
        Ok(())
    }

    /// The resident's latest state as this device knows it: its stamp and whether it ended (`None`: nothing
    /// known of this resident).
    pub fn standing(&self, resident_id: &str) -> Result<Option<Standing>> {
        standing_in(&self.conn, resident_id).in_db(&self.path)
    }

    /// Remembers the end (revocation or move-out) of a resident this device holds nothing of, announced by
    /// another gate with `stamp`, so that an earlier template replayed later is refused; echoed on this
    /// gate's own subject when replicated.
    pub fn remember_end(&mut self, resident_id: &str, stamp: Stamp, reason: ShredReason, now: i64) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        set_standing_in(&tx, resident_id, Standing { stamp, ended: Some(reason) }).in_db(&path)?;
        if let (true, Some(kind)) = (self.replicated, OutboxKind::for_shred(reason)) {
            queue_for_compound(&tx, kind, resident_id, now, stamp, false).in_db(&path)?;
        }
        tx.commit().in_db(&path)
    }

    /// Queues this device's latest state of a resident to be announced again (a replay displaced it on this
    /// gate's own subject). Nothing when it is already queued, or when nothing is known.
    pub fn announce_again(&mut self, resident_id: &str, now: i64) -> Result<bool> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        let queued: Option<i64> = tx
            .query_row("SELECT 1 FROM compound_outbox WHERE resident_id = ?1 LIMIT 1", [resident_id], |r| r.get(0))
            .optional()
            .in_db(&path)?;
        let Some(standing) = standing_in(&tx, resident_id).in_db(&path)? else { return Ok(false) };
        if queued.is_some() {
            return Ok(false);
        }
        let kind = match standing.ended {
            None => OutboxKind::Template,
            Some(reason) => OutboxKind::for_shred(reason).unwrap_or(OutboxKind::Revoked),
        };
        queue_for_compound(&tx, kind, resident_id, now, standing.stamp, false).in_db(&path)?;
        tx.commit().in_db(&path)?;
        Ok(true)
    }

    /// Queues this device's latest state of every resident it knows to be announced again. Returns how many
    /// were queued.
    pub fn announce_all(&mut self, now: i64) -> Result<usize> {
        let residents: Vec<String> = {
            let mut stmt =
                self.conn.prepare("SELECT resident_id FROM compound_stamps ORDER BY resident_id").in_db(&self.path)?;
            let rows = stmt.query_map([], |r| r.get(0)).in_db(&self.path)?;
            rows.collect::<rusqlite::Result<_>>().in_db(&self.path)?
        };
        let mut queued = 0;
        for resident in residents {
            queued += usize::from(self.announce_again(&resident, now)?);
        }
        Ok(queued)
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
