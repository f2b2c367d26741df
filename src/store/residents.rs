//! Residents and consent: pseudonymous ids, unit labels, consent records, and the coarse last-use date that retention
//! needs. Never a name, never a passage.

use super::*;

/// Templates are touched at most once per this period, so `last_used_at` (needed for retention) is a coarse
/// date, never a trail of passages.
pub const LAST_USED_GRANULARITY_SECS: i64 = 30 * 86_400;

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
    /// Whether the portal handed their face enrolment to the management office.
    pub needs_staff: bool,
}

pub(super) fn validate_resident_id(id: &str) -> Result<()> {
    let ok = (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadResidentId(id.to_owned()))
    }
}

impl Store {
    /// Notes that a resident's face enrolment needs the management office (the reason is not kept: it may be
    /// that their face already matches someone, which nobody but staff in person should learn).
    pub fn mark_needs_staff(&mut self, resident_id: &str, now: i64) -> Result<()> {
        self.conn
            .execute("UPDATE residents SET needs_staff_at = ?2 WHERE id = ?1", params![resident_id, now])
            .in_db(&self.path)?;
        Ok(())
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
            .in_db(&self.path)?;
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

    /// Records a separate consent to face entry. Given here while none is live, it opens a new consent
    /// generation in the resident's order of changes; received from the compound, the template that follows
    /// carries the stamp.
    pub fn grant_consent(&mut self, resident_id: &str, consent: &ConsentRecord, origin: ChangeOrigin) -> Result<()> {
        self.require_resident(resident_id)?;
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        if origin == ChangeOrigin::Local && !live_consent_in(&tx, resident_id).in_db(&path)? {
            let stamp = outbox::stamp_in(&tx, resident_id).in_db(&path)?.next_generation();
            outbox::set_standing_in(&tx, resident_id, Standing { stamp, ended: None }).in_db(&path)?;
        }
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
        .in_db(&path)?;
        append_audit(&tx, consent.granted_at, "consent granted", resident_id).in_db(&path)?;
        tx.commit().in_db(&path)
    }

    pub(super) fn require_resident(&self, resident_id: &str) -> Result<()> {
        let found: Option<i64> = self
            .conn
            .query_row("SELECT 1 FROM residents WHERE id = ?1", [resident_id], |r| r.get(0))
            .optional()
            .in_db(&self.path)?;
        found.map(|_| ()).ok_or_else(|| StoreError::UnknownResident(resident_id.to_owned()))
    }

    /// Whether the resident has a consent that is not revoked.
    pub fn has_live_consent(&self, resident_id: &str) -> Result<bool> {
        live_consent_in(&self.conn, resident_id).in_db(&self.path)
    }

    /// When the resident's consent was last withdrawn (or ended), if ever.
    pub fn last_revocation(&self, resident_id: &str) -> Result<Option<i64>> {
        self.conn
            .query_row("SELECT MAX(revoked_at) FROM consent_records WHERE resident_id = ?1", [resident_id], |r| {
                r.get(0)
            })
            .in_db(&self.path)
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
            .in_db(&self.path)
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
                    EXISTS (SELECT 1 FROM pin_verifiers p WHERE p.resident_id = r.id),
                    r.needs_staff_at IS NOT NULL
                 FROM residents r LEFT JOIN sealed_templates t ON t.resident_id = r.id ORDER BY r.id",
            )
            .in_db(&self.path)?;
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
                    needs_staff: r.get(8)?,
                })
            })
            .in_db(&self.path)?;
        rows.collect::<rusqlite::Result<_>>().in_db(&self.path)
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
            .in_db(&self.path)
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
            .in_db(&self.path)
    }

    /// Residents whose template was not used since `cutoff` (Unix seconds).
    pub fn unused_since(&self, cutoff: i64) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT resident_id FROM sealed_templates WHERE last_used_at < ?1 ORDER BY resident_id")
            .in_db(&self.path)?;
        let rows = stmt.query_map([cutoff], |r| r.get(0)).in_db(&self.path)?;
        rows.collect::<rusqlite::Result<_>>().in_db(&self.path)
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
            .in_db(&self.path)?;
        Ok(n > 0)
    }
}

/// Whether the resident has a consent that is not revoked (inside a transaction or not).
fn live_consent_in(conn: &Connection, resident_id: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM consent_records WHERE resident_id = ?1 AND revoked_at IS NULL)",
        [resident_id],
        |r| r.get(0),
    )
}
