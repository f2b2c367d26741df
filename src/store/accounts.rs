//! Portal accounts and codes: staff accounts (argon2id hashes), one-time enrolment codes and revocation codes, stored
//! as hashes only.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput};
use serde::{Deserialize, Serialize};

use super::*;

/// A staff member's role: what the portal lets them see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees counts, issues enrolment codes.
    Manager,
    /// Sees and downloads the audit report.
    Auditor,
    /// Sees guard calls, releases the door remotely (audited with a reason), issues visitor passes.
    Guard,
    /// Sees the camera's aiming figures (numbers, never a pixel).
    Installer,
}

impl Role {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manager => "manager",
            Self::Auditor => "auditor",
            Self::Guard => "guard",
            Self::Installer => "installer",
        }
    }

    /// From the stored or typed name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "manager" => Some(Self::Manager),
            "auditor" => Some(Self::Auditor),
            "guard" => Some(Self::Guard),
            "installer" => Some(Self::Installer),
            _ => None,
        }
    }
}

impl ToSql for Role {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

// Only `facegate account` writes roles; an unknown name is tampering or a newer version's, and signs no one in.
impl FromSql for Role {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let name = value.as_str()?;
        Self::parse(name).ok_or_else(|| FromSqlError::Other(format!("unknown staff role {name:?}").into()))
    }
}

/// A staff account of the portal.
#[derive(Clone, PartialEq, Eq)]
pub struct PortalAccount {
    /// Login name.
    pub name: String,
    /// Its role.
    pub role: Role,
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

impl Store {
    /// Adds a staff account (the password already hashed, argon2id PHC string).
    pub fn add_account(&mut self, name: &str, role: Role, password_hash: &str, now: i64) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        tx.execute(
            "INSERT INTO portal_accounts (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET role = ?2, password_hash = ?3, failed_attempts = 0, locked_until = 0",
            params![name, role, password_hash, now],
        )
        .in_db(&path)?;
        append_audit(&tx, now, "portal account set", &format!("{}:{name}", role.as_str())).in_db(&path)?;
        tx.commit().in_db(&path)
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
            .in_db(&self.path)
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
        self.conn.execute(sql, params).in_db(&self.path)?;
        Ok(())
    }

    /// Stores a new one-time enrolment code (its hash) for a household; returns its id.
    pub fn add_enrolment_code(&mut self, code_hash: &[u8], unit_label: &str, now: i64, expires_at: i64) -> Result<i64> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        tx.execute(
            "INSERT INTO portal_enrolment_codes (code_hash, unit_label, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![code_hash, unit_label, now, expires_at],
        )
        .in_db(&path)?;
        let id = tx.last_insert_rowid();
        append_audit(&tx, now, "enrolment code issued", &format!("code:{id} unit:{unit_label}")).in_db(&path)?;
        tx.commit().in_db(&path)?;
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
            .in_db(&self.path)
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
            .in_db(&self.path)?;
        Ok(n == 1)
    }

    /// Cancels an unused code; false if there was none to cancel.
    pub fn cancel_enrolment_code(&mut self, id: i64, now: i64) -> Result<bool> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        let n = tx
            .execute(
                "UPDATE portal_enrolment_codes SET cancelled_at = ?2 WHERE id = ?1 AND used_at IS NULL
                 AND cancelled_at IS NULL",
                params![id, now],
            )
            .in_db(&path)?;
        if n == 1 {
            append_audit(&tx, now, "enrolment code cancelled", &format!("code:{id}")).in_db(&path)?;
        }
        tx.commit().in_db(&path)?;
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
            .in_db(&self.path)?;
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
            .in_db(&self.path)?;
        rows.collect::<rusqlite::Result<_>>().in_db(&self.path)
    }

    /// Sets (or replaces) a resident's revocation code hash.
    pub fn set_revocation_code(&mut self, resident_id: &str, code_hash: &[u8]) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO portal_revocation_codes (code_hash, resident_id) VALUES (?1, ?2)
                 ON CONFLICT(resident_id) DO UPDATE SET code_hash = ?1",
                params![code_hash, resident_id],
            )
            .in_db(&self.path)?;
        Ok(())
    }

    /// The resident a revocation code belongs to.
    pub fn resident_for_revocation_code(&self, code_hash: &[u8]) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT resident_id FROM portal_revocation_codes WHERE code_hash = ?1", [code_hash], |r| {
                r.get(0)
            })
            .optional()
            .in_db(&self.path)
    }
}
