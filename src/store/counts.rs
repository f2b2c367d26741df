//! Counts: passages as hourly counts per method and outcome, this gate's and the compound's other gates'. Never a row
//! per passage.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput};

use super::*;

// The pure core's names are the stored ones; unknown names in the file are an error, never a new kind.
impl ToSql for EntryMethod {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for EntryMethod {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let name = value.as_str()?;
        Self::parse(name).ok_or_else(|| FromSqlError::Other(format!("unknown entry method {name:?}").into()))
    }
}

impl ToSql for PassageOutcome {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for PassageOutcome {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let name = value.as_str()?;
        Self::parse(name).ok_or_else(|| FromSqlError::Other(format!("unknown passage outcome {name:?}").into()))
    }
}

impl Store {
    /// Adds one passage to its hour's pre-aggregated count. Nothing about who passed is kept.
    pub fn count_passage(&mut self, at: i64, method: EntryMethod, outcome: PassageOutcome) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO passage_counts (hour_start, method, outcome, count) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT(hour_start, method, outcome) DO UPDATE SET count = count + 1",
                params![at - at.rem_euclid(3600), method, outcome],
            )
            .in_db(&self.path)?;
        Ok(())
    }

    /// Adds several passages at once, and notes template uses (coarsely, as [`Store::note_used`]), in one
    /// transaction: the daemon's tally of what happened while the database was busy. All or nothing, so a
    /// passage is never counted twice or lost: on an error nothing was written and the caller keeps its tally.
    /// Waits at most `wait` for another process's lock (not [`BUSY_TIMEOUT`]): the daemon retries soon anyway,
    /// and its registry's owner, which answers the keypad, must not sit in SQLite's busy handler meanwhile.
    pub fn record_tally(
        &mut self,
        counts: &[(i64, EntryMethod, PassageOutcome, u64)],
        used: &[(String, i64)],
        wait: std::time::Duration,
    ) -> Result<()> {
        self.conn.busy_timeout(wait).in_db(&self.path)?;
        let written = self.write_tally(counts, used);
        if let Err(e) = self.conn.busy_timeout(BUSY_TIMEOUT) {
            tracing::warn!("cannot restore the database's busy timeout: {e}");
        }
        written
    }

    fn write_tally(
        &mut self,
        counts: &[(i64, EntryMethod, PassageOutcome, u64)],
        used: &[(String, i64)],
    ) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        for &(at, method, outcome, n) in counts {
            tx.execute(
                "INSERT INTO passage_counts (hour_start, method, outcome, count) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(hour_start, method, outcome) DO UPDATE SET count = count + ?4",
                params![at - at.rem_euclid(3600), method, outcome, i64::try_from(n).unwrap_or(i64::MAX)],
            )
            .in_db(&path)?;
        }
        for (resident_id, at) in used {
            let today = day_floor(*at);
            tx.execute(
                "UPDATE sealed_templates SET last_used_at = ?2 WHERE resident_id = ?1 AND last_used_at <= ?3",
                params![resident_id, today, today - LAST_USED_GRANULARITY_SECS],
            )
            .in_db(&path)?;
        }
        tx.commit().in_db(&path)
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

    pub(super) fn counts_query(&self, sql: &str, from: i64, to: i64) -> Result<Vec<PassageCount>> {
        let mut stmt = self.conn.prepare(sql).in_db(&self.path)?;
        let rows = stmt
            .query_map([from, to], |r| {
                Ok(PassageCount { hour_start: r.get(0)?, method: r.get(1)?, outcome: r.get(2)?, count: r.get(3)? })
            })
            .in_db(&self.path)?;
        rows.collect::<rusqlite::Result<_>>().in_db(&self.path)
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
            .in_db(&self.path)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).in_db(&self.path)?;
        rows.collect::<rusqlite::Result<_>>().in_db(&self.path)
    }

    /// Replaces what is known of another gate's hourly counts by its latest report, numbered `serial` by
    /// that gate. An earlier report (a replay) changes nothing: `Ok(false)`.
    pub fn set_gate_counts(&mut self, gate: &str, serial: u64, counts: &[PassageCount]) -> Result<bool> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        let key = format!("counts_serial.{gate}");
        let known: Option<i64> = tx
            .query_row("SELECT value FROM compound_state WHERE name = ?1", [&key], |r| r.get(0))
            .optional()
            .in_db(&path)?;
        let serial = i64::try_from(serial).unwrap_or(i64::MAX);
        if known.is_some_and(|known| known >= serial) {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO compound_state (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![key, serial],
        )
        .in_db(&path)?;
        tx.execute("DELETE FROM compound_counts WHERE gate = ?1", [gate]).in_db(&path)?;
        for c in counts {
            tx.execute(
                "INSERT INTO compound_counts (gate, hour_start, method, outcome, count) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(gate, hour_start, method, outcome) DO UPDATE SET count = excluded.count",
                params![gate, c.hour_start, c.method, c.outcome, c.count],
            )
            .in_db(&path)?;
        }
        tx.commit().in_db(&path)?;
        Ok(true)
    }
}
