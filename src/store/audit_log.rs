//! Audit log: the hash-chained log of consent, enrolment, revocation and key events (never a passage), appended in
//! the transaction of the change it records.

use super::*;

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

pub(super) fn chain_hash(previous: &[u8], seq: i64, at: i64, event: &str, subject: &str) -> Vec<u8> {
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

pub(super) fn append_audit(
    tx: &rusqlite::Transaction<'_>,
    at: i64,
    event: &str,
    subject: &str,
) -> rusqlite::Result<Vec<u8>> {
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

/// The audit event of a door released from the guard's page.
pub const REMOTE_RELEASE: &str = "remote release";

impl Store {
    /// Chains a door release asked from the guard's page: the staff account and the reason it gave (staff
    /// accountability; the reason is the guard's own words, the page asks not to name anyone).
    pub fn audit_remote_release(&mut self, staff: &str, reason: &str, now: i64) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        append_audit(&tx, now, REMOTE_RELEASE, &format!("staff:{staff} reason:{reason}")).in_db(&path)?;
        tx.commit().in_db(&path)
    }

    /// The audit log's events whose name is one of `events`, oldest first, each with the first 8 bytes of its
    /// chain hash in hex (the verification code printed on a revocation receipt).
    pub fn audit_events(&self, events: &[&str]) -> Result<Vec<AuditEvent>> {
        let mut stmt =
            self.conn.prepare("SELECT seq, at, event, subject, hash FROM audit_log ORDER BY seq").in_db(&self.path)?;
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
            .in_db(&self.path)?;
        let all: Vec<AuditEvent> = rows.collect::<rusqlite::Result<_>>().in_db(&self.path)?;
        Ok(all.into_iter().filter(|e| events.contains(&e.event.as_str())).collect())
    }

    /// Verifies the audit log's hash chain end to end; returns the number of events.
    pub fn verify_audit_chain(&self) -> Result<usize> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, at, event, subject, prev_hash, hash FROM audit_log ORDER BY seq")
            .in_db(&self.path)?;
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
            .in_db(&self.path)?;
        let mut previous = vec![0u8; 32];
        let mut n = 0;
        for row in rows {
            let (seq, at, event, subject, prev_hash, hash) = row.in_db(&self.path)?;
            if prev_hash != previous || hash != chain_hash(&previous, seq, at, &event, &subject) {
                return Err(StoreError::Damaged {
                    path: self.path.clone(),
                    what: format!("audit log broken at event {seq}: an event was altered, removed or inserted"),
                });
            }
            previous = hash;
            n += 1;
        }
        Ok(n)
    }
}
