//! PINs and passes: PIN verifiers (argon2id PHC strings, never a PIN), the keypad's failure count per hour (over
//! all codes: nothing per resident), and the ids of visitor passes already used.

use super::*;

/// A stored PIN verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinRecord {
    /// The resident it belongs to.
    pub resident_id: String,
    /// The argon2id PHC string.
    pub verifier: String,
}

impl Store {
    /// Stores (or replaces) a resident's PIN verifier under their keypad code (the short number typed before
    /// the PIN), and chains a "pin set" event. A code already used by another resident is refused.
    pub fn set_pin_verifier(&mut self, resident_id: &str, keypad_code: &str, verifier: &str, now: i64) -> Result<()> {
        self.require_resident(resident_id)?;
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        let taken: Option<String> = tx
            .query_row(
                "SELECT resident_id FROM pin_verifiers WHERE keypad_code = ?1 AND resident_id <> ?2",
                params![keypad_code, resident_id],
                |r| r.get(0),
            )
            .optional()
            .in_db(&path)?;
        if taken.is_some() {
            return Err(StoreError::KeypadCodeTaken(keypad_code.to_owned()));
        }
        tx.execute(
            "INSERT INTO pin_verifiers (resident_id, verifier, set_at, keypad_code) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(resident_id) DO UPDATE SET verifier = excluded.verifier, set_at = excluded.set_at,
                 keypad_code = excluded.keypad_code",
            params![resident_id, verifier, now, keypad_code],
        )
        .in_db(&path)?;
        append_audit(&tx, now, "pin set", resident_id).in_db(&path)?;
        tx.commit().in_db(&path)
    }

    /// The PIN verifier stored under a keypad code, if any.
    pub fn pin_record(&self, keypad_code: &str) -> Result<Option<PinRecord>> {
        self.conn
            .query_row("SELECT resident_id, verifier FROM pin_verifiers WHERE keypad_code = ?1", [keypad_code], |r| {
                Ok(PinRecord { resident_id: r.get(0)?, verifier: r.get(1)? })
            })
            .optional()
            .in_db(&self.path)
    }

    /// Counts one failed PIN attempt (any code) in its hour, and forgets hours older than two days. The
    /// keypad's budget survives a restart through these counts; they say nothing of whose code was tried.
    pub fn note_keypad_failure(&mut self, now: i64) -> Result<()> {
        let hour = now - now.rem_euclid(3_600);
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        tx.execute(
            "INSERT INTO keypad_failures (hour_start, failures) VALUES (?1, 1)
             ON CONFLICT(hour_start) DO UPDATE SET failures = failures + 1",
            [hour],
        )
        .in_db(&path)?;
        tx.execute("DELETE FROM keypad_failures WHERE hour_start < ?1", [hour - 2 * 86_400]).in_db(&path)?;
        tx.commit().in_db(&path)
    }

    /// Failed PIN attempts (all codes together) counted in the hours that end after `since`.
    pub fn keypad_failures_since(&self, since: i64) -> Result<u32> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(SUM(failures), 0) FROM keypad_failures WHERE hour_start + 3600 > ?1",
                [since],
                |r| r.get(0),
            )
            .in_db(&self.path)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// How many keypad codes are shorter than `digits` (issued before codes were lengthened).
    pub fn short_keypad_codes(&self, digits: usize) -> Result<i64> {
        let digits = i64::try_from(digits).unwrap_or(i64::MAX);
        self.conn
            .query_row("SELECT COUNT(*) FROM pin_verifiers WHERE length(keypad_code) < ?1", [digits], |r| r.get(0))
            .in_db(&self.path)
    }

    /// Keypad codes in use (to give a new resident a free one).
    pub fn keypad_codes(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT keypad_code FROM pin_verifiers WHERE keypad_code IS NOT NULL")
            .in_db(&self.path)?;
        let rows = stmt.query_map([], |r| r.get(0)).in_db(&self.path)?;
        rows.collect::<rusqlite::Result<_>>().in_db(&self.path)
    }

    /// Marks a visitor pass as used, once: true if it had not been used (or cancelled) before. Forgets passes
    /// whose window ended before `forget_before` (the caller's margin past expiry on both of its clocks: a
    /// forgotten id must stay unusable even if the wall clock later steps back). When it was used is not kept.
    pub fn redeem_pass(&mut self, pass: &VisitorPass, forget_before: i64) -> Result<bool> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        tx.execute("DELETE FROM used_passes WHERE expires_at < ?1", [forget_before]).in_db(&path)?;
        let fresh = tx
            .execute(
                "INSERT INTO used_passes (pass_id, expires_at) VALUES (?1, ?2) ON CONFLICT(pass_id) DO NOTHING",
                params![&pass.id.0[..], pass.valid_until],
            )
            .in_db(&path)?
            == 1;
        tx.commit().in_db(&path)?;
        Ok(fresh)
    }

    /// How many used or cancelled passes are remembered (each only until its window ends).
    pub fn used_pass_count(&self) -> Result<i64> {
        self.conn.query_row("SELECT COUNT(*) FROM used_passes", [], |r| r.get(0)).in_db(&self.path)
    }

    /// Chains a "visitor pass issued" (or "cancelled") event naming only the pass's random id.
    pub fn audit_pass(&mut self, event: &str, pass: &VisitorPass, now: i64) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        append_audit(&tx, now, event, &format!("pass:{}", pass.id.to_hex())).in_db(&path)?;
        tx.commit().in_db(&path)
    }
}
