//! Templates and keys: the writes that carry the invariants, side by side for review. Sealing (a template only beside
//! a live consent and a wrapped data key, under the current key generation), shredding (key, template and PIN in one
//! transaction with its audit event and, when replicated, its tombstone; then a checkpoint so no shredded key stays
//! in the WAL) and rotation (every data key rewrapped, every template carried to a fresh transform, in one
//! transaction).

use super::*;

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

pub(super) fn shred_rows(
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
pub(super) fn rotate_keys_in(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    rekey: &Rekey<'_>,
    now: i64,
) -> Result<usize> {
    // Keys rotated by another process since the caller loaded them: refuse before touching anything.
    require_generation(tx, path, rekey.generation)?;
    // The old transform key must open under the old master: otherwise the caller's keys are wrong.
    if let Some(current) = current_transform_key(tx, rekey.old_master).in_db(path)? {
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
        .in_db(path)?;
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
                .in_db(path)?;
                renewed += 1;
            }
            Err(e) => tracing::warn!("the template of resident {resident} does not open ({e}); left behind, unusable"),
        }
    }
    tx.execute("DELETE FROM transform_keys", []).in_db(path)?;
    rewrap_data_keys(tx, path, rekey.old_master, rekey.new_master)?;
    let secrets: Vec<(String, Vec<u8>, Vec<u8>)> = tx
        .prepare("SELECT name, nonce, ciphertext FROM device_secrets")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .in_db(path)?;
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
        .in_db(path)?;
    }
    let wrapped = protect::wrap_transform_key(rekey.new_transform, rekey.new_master)
        .map_err(|source| StoreError::WrongMasterKey { source })?;
    tx.execute(
        "INSERT INTO transform_keys (id, nonce, ciphertext, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![transform_to_sql(rekey.new_transform.transform_id()), &wrapped.nonce[..], wrapped.ciphertext, now],
    )
    .in_db(path)?;
    append_audit(tx, now, "key rotation", &format!("transform {:016x}", rekey.new_transform.transform_id().0))
        .in_db(path)?;
    tx.execute("UPDATE key_generation SET generation = generation + 1 WHERE id = 0", []).in_db(path)?;
    Ok(renewed)
}

pub(super) fn read_generation(conn: &Connection) -> rusqlite::Result<KeyGeneration> {
    conn.query_row("SELECT generation FROM key_generation WHERE id = 0", [], |r| r.get::<_, i64>(0))
        .map(|g| KeyGeneration(u64::try_from(g).unwrap_or(0)))
}

/// Inside a write's transaction: the caller's keys must be the current generation.
pub(super) fn require_generation(conn: &Connection, path: &Path, held: KeyGeneration) -> Result<()> {
    let current = read_generation(conn).in_db(path)?;
    if current == held {
        Ok(())
    } else {
        Err(StoreError::StaleKeys { held: held.0, current: current.0 })
    }
}

/// The device's current transform key as `master` opens it: `None` before the first one is made, `Some(Err)`
/// when `master` does not open it.
pub(super) fn current_transform_key(
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
pub(super) fn rewrap_data_keys(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    old: &AeadKey,
    new: &AeadKey,
) -> Result<()> {
    let rows: Vec<(String, Raw, Raw)> = tx
        .prepare("SELECT resident_id, nonce, ciphertext FROM wrapped_keys")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .in_db(path)?;
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
        .in_db(path)?;
    }
    Ok(())
}

/// The wrapping label of a device secret: a ':' can never appear in a resident id, so a device secret's
/// wrapping can never be mistaken for a resident's data key.
pub(super) fn secret_label(name: &str) -> String {
    format!("device:{name}")
}

/// SQLite integers are signed; the id's bits are kept as they are.
pub(super) fn transform_to_sql(id: TransformId) -> i64 {
    i64::from_be_bytes(id.0.to_be_bytes())
}

impl Store {
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
            .in_db(&self.path)?;
        let version = previous.map_or(1, |v| v + 1);
        let data_key = AeadKey::generate();
        let sealed_err = |source| StoreError::Sealed { resident: resident_id.to_owned(), source };
        let context = TemplateContext { resident_id, version, transform: template.transform() };
        let sealed = protect::seal_template(template, &data_key, context).map_err(sealed_err)?;
        let wrapped = protect::wrap_key(&data_key, keys.master, resident_id).map_err(sealed_err)?;
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        require_generation(&tx, &path, keys.generation)?;
        let stamp = match origin {
            ChangeOrigin::Local => outbox::stamp_in(&tx, resident_id).in_db(&path)?.next_version(),
            ChangeOrigin::Compound(stamp) => stamp,
        };
        outbox::set_standing_in(&tx, resident_id, Standing { stamp, ended: None }).in_db(&path)?;
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
            .in_db(&path)?;
        let event = match origin {
            ChangeOrigin::Local => "enrol",
            ChangeOrigin::Compound(_) => "enrol (from the compound)",
        };
        append_audit(&tx, now, event, resident_id).in_db(&path)?;
        if self.replicated && origin == ChangeOrigin::Local {
            queue_for_compound(&tx, OutboxKind::Template, resident_id, now, stamp, false).in_db(&path)?;
        }
        tx.commit().in_db(&path)?;
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
            .in_db(&self.path)?;
        // Columns are read as raw values so that one tampered row (a wrong type, say) is reported on its own
        // instead of failing the whole load.
        let rows = stmt
            .query_map([], |r| {
                Ok([r.get::<_, Raw>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?])
            })
            .in_db(&self.path)?;
        let (mut templates, mut failures) = (Vec::new(), Vec::new());
        for row in rows {
            let [resident, version, t_nonce, t_ct, k_nonce, k_ct, row_transform] = row.in_db(&self.path)?;
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
        origin: ChangeOrigin,
        rekey: &Rekey<'_>,
    ) -> Result<RevocationReceipt> {
        self.shred_one(resident_id, now, reason, origin, rekey)
    }

    pub(super) fn shred_one(
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

    pub(super) fn shred(
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
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        let mut receipts = Vec::with_capacity(residents.len());
        for resident_id in residents {
            let deleted = shred_rows(&tx, resident_id, now, reason).in_db(&path)?;
            let event = match origin {
                ChangeOrigin::Local => shred_event(reason).to_owned(),
                ChangeOrigin::Compound(_) => format!("{} (from the compound)", shred_event(reason)),
            };
            let hash = append_audit(&tx, now, &event, resident_id).in_db(&path)?;
            // An expiry is this device's own matter: it neither moves the resident's order nor is announced.
            if let Some(kind) = OutboxKind::for_shred(reason) {
                let stamp = match origin {
                    ChangeOrigin::Local => outbox::stamp_in(&tx, resident_id).in_db(&path)?.next_version(),
                    ChangeOrigin::Compound(stamp) => stamp,
                };
                outbox::set_standing_in(&tx, resident_id, Standing { stamp, ended: Some(reason) }).in_db(&path)?;
                if self.replicated {
                    let renews = origin == ChangeOrigin::Local;
                    queue_for_compound(&tx, kind, resident_id, now, stamp, renews).in_db(&path)?;
                }
            }
            receipts.push(RevocationReceipt {
                resident_id: resident_id.clone(),
                revoked_at: now,
                deleted,
                verification_code: hex(&hash[..8]),
            });
        }
        rotate_keys_in(&tx, &path, rekey, now)?;
        tx.commit().in_db(&path)?;
        self.checkpoint_after_commit();
        Ok(receipts)
    }

    /// Copies the WAL into the database and truncates it, so deleted rows leave no copy in the WAL. Runs after
    /// a commit, so it never fails the operation (an `Err` from a shredding call means "not committed"): if a
    /// reader holds the WAL now, the next checkpoint (SQLite runs one automatically) finishes the job.
    pub(super) fn checkpoint_after_commit(&self) {
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!("WAL checkpoint after a deletion deferred: {e}");
        }
    }

    /// Whether `master` opens this database's current transform key (read only; creates nothing).
    pub fn opens_with(&self, master: &AeadKey) -> Result<bool> {
        let current = current_transform_key(&self.conn, master).in_db(&self.path)?;
        Ok(matches!(current, Some(Ok(_))))
    }

    /// The device's current transform key, creating (and wrapping under `master`) a fresh one on first use.
    /// A master key that does not open the stored one is [`StoreError::WrongMasterKey`].
    pub fn transform_key(&mut self, master: &AeadKey, now: i64) -> Result<TransformKey> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        if let Some(current) = current_transform_key(&tx, master).in_db(&path)? {
            return current.map_err(|source| StoreError::WrongMasterKey { source });
        }
        let key = TransformKey::generate();
        let wrapped =
            protect::wrap_transform_key(&key, master).map_err(|source| StoreError::WrongMasterKey { source })?;
        tx.execute(
            "INSERT INTO transform_keys (id, nonce, ciphertext, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![transform_to_sql(key.transform_id()), &wrapped.nonce[..], wrapped.ciphertext, now],
        )
        .in_db(&path)?;
        append_audit(&tx, now, "transform key created", &format!("{:016x}", key.transform_id().0)).in_db(&path)?;
        tx.commit().in_db(&path)?;
        Ok(key)
    }

    /// Moves everything to new keys in one transaction (see [`Rekey`]) and chains a "key rotation" event.
    /// Nothing changes if the transform key fails to open (a wrong old master key). Returns how many templates
    /// were carried over to the new transform. The device secrets named in `replace` are deleted instead of
    /// carried (the next use makes fresh ones), in the same transaction.
    pub fn rotate_keys(&mut self, rekey: &Rekey<'_>, now: i64, replace: &[&str]) -> Result<usize> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        for name in replace {
            tx.execute("DELETE FROM device_secrets WHERE name = ?1", [name]).in_db(&path)?;
            append_audit(&tx, now, "device secret replaced", name).in_db(&path)?;
        }
        let renewed = rotate_keys_in(&tx, &path, rekey, now)?;
        tx.commit().in_db(&path)?;
        self.checkpoint_after_commit();
        Ok(renewed)
    }

    /// A stable device secret (e.g. the PIN pepper key), created on first use and kept wrapped under the
    /// master key; a master key rotation re-wraps it, so it survives revocations.
    pub fn device_secret(&mut self, name: &str, keys: KeysInUse<'_>) -> Result<AeadKey> {
        let master = keys.master;
        let path = self.path.clone();
        let label = secret_label(name);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).in_db(&path)?;
        require_generation(&tx, &path, keys.generation)?;
        let stored: Option<(Vec<u8>, Vec<u8>)> = tx
            .query_row("SELECT nonce, ciphertext FROM device_secrets WHERE name = ?1", [name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .in_db(&path)?;
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
        .in_db(&path)?;
        tx.commit().in_db(&path)?;
        Ok(secret)
    }

    /// The current generation of the device keys: raised by every rotation, in its transaction.
    pub fn key_generation(&self) -> Result<KeyGeneration> {
        read_generation(&self.conn).in_db(&self.path)
    }

    /// Whether any device key is stored (a database that has been used).
    pub fn has_device_keys(&self) -> Result<bool> {
        self.conn.query_row("SELECT EXISTS (SELECT 1 FROM transform_keys)", [], |r| r.get(0)).in_db(&self.path)
    }
}

/// The audit log's name for a shredding.
fn shred_event(reason: ShredReason) -> &'static str {
    match reason {
        ShredReason::Revoked => "revoke",
        ShredReason::Unused => "expire (unused)",
        ShredReason::MovedOut => "expire (moved out)",
    }
}
