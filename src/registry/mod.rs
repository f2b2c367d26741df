//! Registry: the enrolled residents as the gate sees them. Wires the master key, the store and the in-memory
//! gallery together, and owns the rules that join them.
//!
//! Enrolment needs a live, separately given consent; a face that would already open the gate as another
//! resident is refused; revocation destroys template, key and PIN in one transaction and drops the row from
//! the gallery at once. Only residents with live consent are ever in the gallery, and identification answers
//! "no match" rather than "the nearest resident". It never writes a plaintext embedding or a protected
//! template anywhere but the sealed store, and never records who passed the gate.
//!
//! The keys it holds carry their generation (see [`crate::store::KeyGeneration`]): every write that seals,
//! wraps or rotates is checked against the store's generation inside its own transaction, and a registry whose
//! keys another process rotated refreshes them (under the key file's lock) and tries once more. In the daemon
//! one [`owner`] thread holds the only `Registry`; the frame workers match against [`GallerySnapshot`]s it
//! publishes.

pub mod owner;
pub mod snapshot;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use zeroize::Zeroizing;

use crate::policy::consent::{ConsentRecord, ShredReason};
use crate::policy::decide::PinCheck;
use crate::policy::matching::{threshold_for_fpir, GalleryError, Slot, SFACE_CALIBRATION};
use crate::protect::keys::{self, KeyError, KeyFileLock, MasterKeyFile};
use crate::protect::pass::{PassError, PassKey, VisitorPass};
use crate::protect::{self, AeadKey, Pin, PinError, PinPepper, ProtectedTemplate, Rotation, TransformId, TransformKey};
use crate::store::{ChangeOrigin, KeyGeneration, KeysInUse, Rekey, RevocationReceipt, Store, StoreError};
use crate::vision::embed::Embedding;
pub use snapshot::{GallerySnapshot, Identified};

/// Longest retention of an unused template the configuration may ask for: three years.
pub const MAX_RETENTION_SECS: i64 = 3 * 365 * 86_400;

/// Errors of the registry; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The master key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Enrolment without live consent.
    #[error(
        "resident {0} has no live consent for face entry; record their separate consent first (`facegate consent`)"
    )]
    NoConsent(String),
    /// The face already matches another enrolled resident.
    #[error("this face already matches another enrolled resident (score {score:.3} >= {threshold:.3}); each person enrols once — if this is the same person under a new id, revoke the old id first")]
    Duplicate {
        /// The similarity found.
        score: f32,
        /// The identification threshold it reached.
        threshold: f32,
    },
    /// The template could not join the gallery.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// A PIN problem.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// A keypad code that is not 2 to 8 digits.
    #[error("a keypad code is 2 to 8 digits (e.g. the unit number)")]
    KeypadCode,
    /// A visitor pass cannot be issued or cancelled.
    #[error(transparent)]
    Pass(#[from] PassError),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, RegistryError>;

/// Where the master key lives: a key file (mode 0600, outside the database's folder, created on first run),
/// optionally sealed under a passphrase.
#[derive(Debug)]
pub struct MasterKeySource {
    /// The key file.
    pub file: PathBuf,
    /// The passphrase sealing it, if any.
    pub passphrase: Option<Zeroizing<String>>,
}

impl MasterKeySource {
    /// A plain key file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self { file: path.into(), passphrase: None }
    }
}

/// The rules the registry applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegistryPolicy {
    /// Target chance that a stranger matches anyone in the gallery (FPIR); the threshold follows it.
    pub target_fpir: f64,
    /// A template unused this long expires (at most [`MAX_RETENTION_SECS`]).
    pub max_unused_secs: i64,
}

impl Default for RegistryPolicy {
    fn default() -> Self {
        Self { target_fpir: 1e-3, max_unused_secs: MAX_RETENTION_SECS }
    }
}

/// What an enrolment stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrolReceipt {
    /// The resident.
    pub resident_id: String,
    /// The template version (1 at first enrolment, +1 at each re-enrolment).
    pub version: u32,
}

/// What the keypad must do with a typed code before anything is verified (see [`Registry::pin_challenge`]).
pub enum PinChallenge {
    /// The code is locked for this long: refused unchecked.
    LockedOut(Duration),
    /// Verify the PIN against `verifier` (argon2id, off the registry's owner), then report the outcome with
    /// [`Registry::record_pin_attempt`].
    Verify {
        /// Whose code it is.
        resident_id: String,
        /// The PHC string.
        verifier: String,
        /// The pepper the verifier was made with.
        pepper: PinPepper,
    },
    /// No such code: verify against a dummy verifier anyway (same time as a real one), then refuse.
    Unknown {
        /// The pepper, for the dummy verification.
        pepper: PinPepper,
    },
}

impl std::fmt::Debug for PinChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LockedOut(d) => f.debug_tuple("LockedOut").field(d).finish(),
            Self::Verify { .. } => f.write_str("Verify"),
            Self::Unknown { .. } => f.write_str("Unknown"),
        }
    }
}

impl PinChallenge {
    /// Runs the argon2id verification the challenge asks for (about 50-100 ms on a Pi: call it off the
    /// registry's owner and off any async executor). `Some((resident, ok))` to record, `None` when there is
    /// nothing to record (unknown code, or locked).
    pub fn verify(&self, pin: &Pin) -> (PinCheck, Option<(String, bool)>) {
        match self {
            Self::LockedOut(wait) => (PinCheck::LockedOut(*wait), None),
            Self::Unknown { pepper } => {
                let _ = protect::verify_pin(pin, dummy_verifier(pepper), pepper);
                (PinCheck::Rejected, None)
            }
            Self::Verify { resident_id, verifier, pepper } => {
                let ok = protect::verify_pin(pin, verifier, pepper).unwrap_or(false);
                (if ok { PinCheck::Accepted } else { PinCheck::Rejected }, Some((resident_id.clone(), ok)))
            }
        }
    }
}

/// The device keys of one generation, loaded together under the key file's lock.
struct DeviceKeys {
    generation: KeyGeneration,
    master: AeadKey,
    rotation: Arc<Rotation>,
}

/// The residents, their sealed templates, and the live gallery.
pub struct Registry {
    store: Store,
    key_file: MasterKeyFile,
    keys: DeviceKeys,
    pin_key: AeadKey,
    pass_key: AeadKey,
    /// The gallery: the only copy the process holds; a change builds the next one and publishes it.
    gallery: Arc<GallerySnapshot>,
    slot_of: HashMap<String, Slot>,
    next_slot: Slot,
    policy: RegistryPolicy,
    load_failures: Vec<StoreError>,
    /// Where the frame workers read the gallery, once someone asked ([`Registry::share_gallery`]).
    shared: Option<Arc<ArcSwap<GallerySnapshot>>>,
    versions: u64,
    /// `PRAGMA data_version` when the gallery was last loaded: another process's commit changes it.
    data_version: Option<i64>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("store", &self.store).field("gallery", &self.gallery).finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens the database, loads (or on first run creates) the master key and the device transform key, and
    /// fills the gallery with every live template. Rows that do not open are kept aside as
    /// [`Registry::load_failures`]; the rest stay usable.
    pub fn open(db: &Path, key: &MasterKeySource, policy: RegistryPolicy, now: i64) -> Result<Self> {
        keys::ensure_apart(&key.file, db)?;
        let key_file = MasterKeyFile::new(key.file.clone(), key.passphrase.clone());
        let mut store = Store::open(db)?;
        if !key_file.exists() && store.has_device_keys()? {
            return Err(KeyError::Io {
                path: key.file.clone(),
                reason: "missing, but the database holds keys sealed under it; restore the key file from its backup"
                    .into(),
            }
            .into());
        }
        let (keys, pin_key, pass_key) = {
            let guard = key_file.lock()?;
            let keys = open_device_keys(&key_file, &mut store, now, &guard)?;
            // Under the lock, so no rotation can come between loading the keys and using them here.
            let in_use = KeysInUse { master: &keys.master, generation: keys.generation };
            let pin_key = store.device_secret("pin-pepper", in_use)?;
            let pass_key = store.device_secret("visitor-pass-key", in_use)?;
            (keys, pin_key, pass_key)
        };
        let policy = RegistryPolicy { max_unused_secs: policy.max_unused_secs.min(MAX_RETENTION_SECS), ..policy };
        let mut registry = Self {
            store,
            key_file,
            gallery: Arc::new(GallerySnapshot::empty(keys.rotation.clone(), policy.target_fpir)),
            keys,
            pin_key,
            pass_key,
            slot_of: HashMap::new(),
            next_slot: 0,
            policy,
            load_failures: Vec::new(),
            shared: None,
            versions: 0,
            data_version: None,
        };
        registry.reload()?;
        Ok(registry)
    }

    /// Whether another process rotated the keys since they were loaded.
    fn keys_are_stale(&self) -> Result<bool> {
        Ok(self.store.key_generation()? != self.keys.generation)
    }

    /// Loads the current keys (the caller holds the key file's lock). The old master key is dropped, and
    /// so wiped, here.
    fn refresh_keys_locked(&mut self, guard: &KeyFileLock) -> Result<()> {
        self.keys = open_device_keys(&self.key_file, &mut self.store, 0, guard)?;
        Ok(())
    }

    /// Rebuilds the gallery from the store (after another process enrolled or revoked someone), loading the
    /// keys again if another process rotated them. Residents keep their slots.
    pub fn reload(&mut self) -> Result<()> {
        // Read first: a commit that lands while the templates are read is seen by the next check. Kept only
        // once the load succeeded, so a failed reload is tried again.
        let version = self.store.data_version().ok();
        if self.keys_are_stale()? {
            let guard = self.key_file.lock()?;
            self.refresh_keys_locked(&guard)?;
        }
        let live = self.store.live_templates(&self.keys.master, self.keys.rotation.id())?;
        let mut next = GallerySnapshot::empty(self.keys.rotation.clone(), self.policy.target_fpir);
        let mut slot_of = HashMap::with_capacity(live.templates.len());
        for (resident, template) in live.templates {
            let slot = match self.slot_of.get(&resident) {
                Some(&slot) => slot,
                None => self.fresh_slot(),
            };
            next.insert(slot, resident.clone(), &template)?;
            slot_of.insert(resident, slot);
        }
        self.slot_of = slot_of;
        self.load_failures = live.failures;
        self.publish(next);
        self.data_version = version;
        Ok(())
    }

    /// Reloads only if another process committed a change since the last load (a cheap read when nothing
    /// changed). Returns whether it reloaded. Call it before reading anything that must match what the store
    /// holds now (the compound link's outbox names residents the gallery must already hold).
    pub fn reload_if_changed(&mut self) -> Result<bool> {
        let now = self.store.data_version().ok();
        if now.is_some() && now == self.data_version {
            return Ok(false);
        }
        self.reload()?;
        Ok(true)
    }

    fn fresh_slot(&mut self) -> Slot {
        let slot = self.next_slot;
        self.next_slot = self.next_slot.wrapping_add(1);
        slot
    }

    /// Makes `next` the gallery, and the one the frame workers read.
    fn publish(&mut self, next: GallerySnapshot) {
        // The previous snapshot goes when its last reader lets go.
        self.gallery = Arc::new(next);
        self.publish_current();
    }

    /// Settles the gallery just changed (threshold, version) and hands it to the frame workers.
    fn publish_current(&mut self) {
        self.versions += 1;
        let current = Arc::make_mut(&mut self.gallery);
        current.set_version(self.versions);
        current.settle();
        if let Some(shared) = &self.shared {
            shared.store(self.gallery.clone());
        }
    }

    /// The gallery as it stands, shared with the frame workers from now on: every later change is published
    /// there whole, so a reader never waits on a writer.
    pub fn share_gallery(&mut self) -> Arc<ArcSwap<GallerySnapshot>> {
        self.shared.get_or_insert_with(|| Arc::new(ArcSwap::new(self.gallery.clone()))).clone()
    }

    /// The current gallery.
    pub fn gallery(&self) -> Arc<GallerySnapshot> {
        self.gallery.clone()
    }

    fn insert(&mut self, resident: &str, template: &ProtectedTemplate) -> Result<()> {
        let slot = match self.slot_of.get(resident) {
            Some(&slot) => slot,
            None => self.fresh_slot(),
        };
        // Copy-on-write: in place when nobody else holds this snapshot (the CLI, a bulk load), a new snapshot
        // when the frame workers may be reading it (the daemon).
        Arc::make_mut(&mut self.gallery).insert(slot, resident.to_owned(), template)?;
        self.slot_of.insert(resident.to_owned(), slot);
        self.publish_current();
        Ok(())
    }

    /// Drops a resident from the gallery and publishes that at once (before anything is written).
    fn drop_from_gallery(&mut self, resident: &str) {
        if let Some(slot) = self.slot_of.remove(resident) {
            Arc::make_mut(&mut self.gallery).remove(slot);
            self.publish_current();
        }
    }

    /// Rows that did not open when the gallery was last loaded (wrong key, tampering, swapped rows).
    pub fn load_failures(&self) -> &[StoreError] {
        &self.load_failures
    }

    /// The store, for listings and counts.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, for counts and PIN bookkeeping.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The device's current transform.
    pub fn transform_id(&self) -> TransformId {
        self.keys.rotation.id()
    }

    /// The generation of the keys held.
    pub fn key_generation(&self) -> KeyGeneration {
        self.keys.generation
    }

    /// How many residents are matchable.
    pub fn gallery_len(&self) -> usize {
        self.gallery.len()
    }

    /// Applies the device transform to an embedding (the only way a probe reaches the gallery).
    pub fn protect(&self, embedding: &Embedding) -> ProtectedTemplate {
        self.keys.rotation.protect(embedding)
    }

    /// The identification threshold for the current gallery size and target FPIR.
    pub fn threshold(&self) -> f32 {
        self.gallery.threshold()
    }

    /// The rules in force.
    pub fn policy(&self) -> RegistryPolicy {
        self.policy
    }

    /// Records a resident's separate consent to face entry, adding the resident under `resident_id` if new.
    pub fn record_consent(
        &mut self,
        resident_id: &str,
        unit_label: Option<&str>,
        consent: &ConsentRecord,
        now: i64,
    ) -> Result<()> {
        if !self.store.resident_exists(resident_id)? {
            self.store.add_resident(resident_id, unit_label, now)?;
        }
        self.store.grant_consent(resident_id, consent)?;
        Ok(())
    }

    /// Runs a write that seals or wraps under the held keys; when another process rotated them meanwhile (the
    /// store refuses such a write inside its transaction), reloads keys and gallery and runs it once more.
    fn with_current_keys<T>(&mut self, mut write: impl FnMut(&mut Self) -> Result<T>) -> Result<T> {
        match write(self) {
            Err(RegistryError::Store(StoreError::StaleKeys { held, current })) => {
                tracing::info!(held, current, "keys rotated by another process: reloading them and retrying");
                self.reload()?;
                write(self)
            }
            other => other,
        }
    }

    /// Enrols (or re-enrols) a resident from their averaged embedding: needs live consent, refuses a face that
    /// already matches another resident, seals under a fresh data key, and makes it matchable at once.
    pub fn enrol(&mut self, resident_id: &str, embedding: &Embedding, now: i64) -> Result<EnrolReceipt> {
        if !self.store.has_live_consent(resident_id)? {
            return Err(RegistryError::NoConsent(resident_id.to_owned()));
        }
        self.with_current_keys(|this| {
            let template = this.keys.rotation.protect(embedding);
            // The bar is the gate's own threshold with this person added: anything above it would open the
            // gate as someone else.
            let threshold = threshold_for_fpir(this.policy.target_fpir, this.gallery.len() + 1, &SFACE_CALIBRATION);
            let own_slot = this.slot_of.get(resident_id).copied();
            if let Some(score) = this.gallery.best_excluding(&template, own_slot) {
                if score >= threshold {
                    return Err(RegistryError::Duplicate { score, threshold });
                }
            }
            let keys = KeysInUse { master: &this.keys.master, generation: this.keys.generation };
            let version = this.store.store_template(resident_id, &template, keys, now)?;
            this.insert(resident_id, &template)?;
            Ok(EnrolReceipt { resident_id: resident_id.to_owned(), version })
        })
    }

    /// Withdraws consent and destroys template, data key and PIN (crypto-shredding), rotating the master key
    /// in the same step; the resident stops being matchable before this returns.
    pub fn revoke(&mut self, resident_id: &str, now: i64) -> Result<RevocationReceipt> {
        self.drop_from_gallery(resident_id);
        self.with_new_keys(|store, rekey| store.revoke_and_shred(resident_id, now, rekey))
    }

    /// The resident moved out: everything biometric and their PIN go, as for [`Registry::revoke`].
    pub fn move_out(&mut self, resident_id: &str, now: i64) -> Result<RevocationReceipt> {
        self.drop_from_gallery(resident_id);
        self.with_new_keys(|store, rekey| store.move_out(resident_id, now, rekey))
    }

    /// Expires every template unused for the retention period.
    pub fn expire(&mut self, now: i64) -> Result<Vec<RevocationReceipt>> {
        let stale = self.store.unused_since(now.saturating_sub(self.policy.max_unused_secs))?;
        if stale.is_empty() {
            return Ok(Vec::new());
        }
        for resident in &stale {
            self.drop_from_gallery(resident);
        }
        self.with_new_keys(|store, rekey| store.expire_unused(&stale, now, rekey))
    }

    /// Moves everything to a fresh master key and a fresh transform, crash-safely (see [`MasterKeyFile`]).
    /// Returns how many templates were carried over.
    pub fn rotate_keys(&mut self, now: i64) -> Result<usize> {
        self.with_new_keys(|store, rekey| store.rotate_keys(rekey, now))
    }

    /// Stages a fresh master key, runs `change` (which must move every key and template to the new master key
    /// and transform in its transaction), then promotes the new key and rebuilds the gallery under the new
    /// transform; a change that did not commit discards the staged key. Keys another process rotated since
    /// they were loaded are reloaded first, under the same lock, so the change always starts from the current
    /// generation.
    fn with_new_keys<T>(
        &mut self,
        change: impl FnOnce(&mut Store, &Rekey<'_>) -> std::result::Result<T, StoreError>,
    ) -> Result<T> {
        // One rotation at a time across processes (the daemon, the CLI): another process must never discard
        // or promote our staged key halfway through.
        let guard = self.key_file.lock()?;
        let refreshed = self.keys_are_stale()?;
        if refreshed {
            self.refresh_keys_locked(&guard)?;
        }
        let new = AeadKey::generate();
        let new_transform = TransformKey::generate();
        let new_rotation = Rotation::from_key(&new_transform);
        let renewal = self.keys.rotation.renewal_to(&new_rotation);
        self.key_file.stage_next(&new)?;
        let rekey = Rekey {
            generation: self.keys.generation,
            old_master: &self.keys.master,
            new_master: &new,
            new_transform: &new_transform,
            renewal: &renewal,
        };
        let outcome = change(&mut self.store, &rekey);
        // An error means the change did not commit; still, never discard a key the database needs.
        let committed = match &outcome {
            Ok(_) => Some(true),
            Err(_) => self.store.opens_with(&new).ok(),
        };
        match committed {
            Some(true) => {
                let generation = self.store.key_generation()?;
                self.keys = DeviceKeys { generation, master: new, rotation: Arc::new(new_rotation) };
                self.key_file.promote_next(&self.keys.master)?;
            }
            Some(false) => self.key_file.discard_next()?,
            // Unsure (the check itself failed): keep `.next`; the next open settles it.
            None => {}
        }
        drop(guard);
        if committed == Some(true) || refreshed {
            self.reload()?;
        }
        Ok(outcome?)
    }

    /// Queues every later local enrolment, revocation and move-out for the compound's other gates (in the
    /// same transaction as the change); see [`crate::compound`].
    pub fn set_replicated(&mut self, replicated: bool) {
        self.store.set_replicated(replicated);
    }

    /// A resident's live template carried from this device's transform to `to` (the compound's), without
    /// forming the embedding; `None` if the resident has no matchable template.
    pub fn template_under(&self, resident_id: &str, to: &Rotation) -> Option<ProtectedTemplate> {
        let slot = *self.slot_of.get(resident_id)?;
        let template = self.gallery.template(slot)?;
        self.gallery.rotation().renewal_to(to).apply(&template)
    }

    /// Stores a template enrolled at another gate of the compound: records the consent given there (adding
    /// the resident if new), carries the template from the compound's transform `from` to this device's,
    /// seals it under a fresh data key and makes it matchable. Not announced again. The enrolling gate
    /// already refused duplicates. `None` (nothing stored) when the consent it carries was given before a
    /// revocation this device knows of: a revocation always wins over an enrolment that crossed it.
    pub fn import_from_compound(
        &mut self,
        resident_id: &str,
        consent: &ConsentRecord,
        template: &ProtectedTemplate,
        from: &Rotation,
        now: i64,
    ) -> Result<Option<EnrolReceipt>> {
        if self.store.resident_exists(resident_id)?
            && self.store.last_revocation(resident_id)?.is_some_and(|revoked| revoked >= consent.granted_at)
        {
            return Ok(None);
        }
        if !self.store.has_live_consent(resident_id)? {
            self.record_consent(resident_id, None, consent, now)?;
        }
        self.with_current_keys(|this| {
            let local = from
                .renewal_to(&this.keys.rotation)
                .apply(template)
                .ok_or(GalleryError::WrongTransform { expected: from.id(), found: template.transform() })?;
            let keys = KeysInUse { master: &this.keys.master, generation: this.keys.generation };
            let version = this.store.store_template_from(resident_id, &local, keys, now, ChangeOrigin::Compound)?;
            this.insert(resident_id, &local)?;
            Ok(Some(EnrolReceipt { resident_id: resident_id.to_owned(), version }))
        })
    }

    /// Applies a revocation or move-out announced by another gate: the resident stops being matchable, then
    /// template, key and PIN are shredded with a key rotation, as for a local revocation. `None` when there
    /// was nothing here to destroy (never enrolled here, or already gone).
    pub fn shred_from_compound(
        &mut self,
        resident_id: &str,
        reason: ShredReason,
        now: i64,
    ) -> Result<Option<RevocationReceipt>> {
        // The gallery holds exactly the live templates: no need to list every resident to know.
        let matchable = self.slot_of.contains_key(resident_id);
        self.drop_from_gallery(resident_id);
        if !self.store.resident_exists(resident_id)? {
            return Ok(None);
        }
        if !matchable && !self.store.has_live_consent(resident_id)? {
            return Ok(None);
        }
        self.with_new_keys(|store, rekey| store.shred_from_compound(resident_id, reason, now, rekey)).map(Some)
    }

    /// The resident a probe matches at the current threshold, or `None`: never the nearest resident.
    pub fn identify(&self, probe: &Embedding) -> Option<Identified> {
        self.gallery.identify(probe)
    }

    /// Notes (coarsely, see [`crate::store::Store::note_used`]) that the resident in `slot` came in by face,
    /// for retention.
    pub fn note_used(&mut self, slot: Slot, now: i64) -> Result<()> {
        if let Some(resident) = self.gallery.resident(slot).map(str::to_owned) {
            self.store.note_used(&resident, now)?;
        }
        Ok(())
    }

    /// Sets (or replaces) a resident's PIN under a keypad code; refuses an easily guessed PIN.
    pub fn set_pin(&mut self, resident_id: &str, keypad_code: &str, pin: &Pin, now: i64) -> Result<()> {
        if !(2..=8).contains(&keypad_code.len()) || !keypad_code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RegistryError::KeypadCode);
        }
        pin.check_strength()?;
        let verifier = protect::pin_verifier(pin, &PinPepper::derive(&self.pin_key))?;
        self.store.set_pin_verifier(resident_id, keypad_code, &verifier, now)?;
        Ok(())
    }

    /// The first half of a PIN check, without the argon2id work: whether the code is locked, or what to verify
    /// the PIN against. An unknown code gets a dummy verifier, so the keypad does not reveal which codes exist.
    pub fn pin_challenge(&self, keypad_code: &str, now: i64) -> Result<PinChallenge> {
        let pepper = PinPepper::derive(&self.pin_key);
        let Some(record) = self.store.pin_record(keypad_code)? else {
            return Ok(PinChallenge::Unknown { pepper });
        };
        let wait = crate::policy::decide::pin_backoff(record.failed_attempts);
        let until =
            record.last_failed_at.unwrap_or(i64::MIN).saturating_add(i64::try_from(wait.as_secs()).unwrap_or(0));
        if !wait.is_zero() && now < until {
            return Ok(PinChallenge::LockedOut(Duration::from_secs(u64::try_from(until - now).unwrap_or(0))));
        }
        Ok(PinChallenge::Verify { resident_id: record.resident_id, verifier: record.verifier, pepper })
    }

    /// The second half: records a verified attempt (a failure counts towards the lockout, a success resets it).
    pub fn record_pin_attempt(&mut self, resident_id: &str, success: bool, now: i64) -> Result<()> {
        self.store.record_pin_attempt(resident_id, success, now)?;
        Ok(())
    }

    /// Checks a PIN typed after a keypad code, in one call (the CLI and tests; the daemon splits it so the
    /// argon2id work runs off the registry's owner). Wrong attempts in a row lock the code with a growing
    /// backoff ([`crate::policy::decide::pin_backoff`]); an unknown code costs the same time as a known one and is
    /// simply rejected, so the keypad does not reveal which codes exist.
    pub fn check_pin(&mut self, keypad_code: &str, pin: &Pin, now: i64) -> Result<PinCheck> {
        let challenge = self.pin_challenge(keypad_code, now)?;
        let (check, record) = challenge.verify(pin);
        if let Some((resident, ok)) = record {
            self.record_pin_attempt(&resident, ok, now)?;
        }
        Ok(check)
    }
}

impl Registry {
    /// Issues a single-use visitor pass for `[valid_from, valid_until)` and returns it with the text for its
    /// QR code. The audit log notes the pass's random id; nothing names the visitor or the host.
    pub fn issue_pass(&mut self, valid_from: i64, valid_until: i64, now: i64) -> Result<(VisitorPass, String)> {
        let pass = VisitorPass::new(valid_from, valid_until)?;
        let text = PassKey::new(&self.pass_key).encode(&pass);
        self.store.audit_pass("visitor pass issued", &pass, now)?;
        Ok((pass, text))
    }

    /// Cancels a pass before it is used (it can never open afterwards).
    pub fn cancel_pass(&mut self, text: &str, now: i64) -> Result<VisitorPass> {
        let pass = PassKey::new(&self.pass_key).decode(text)?;
        self.store.redeem_pass(&pass, now)?;
        self.store.audit_pass("visitor pass cancelled", &pass, now)?;
        Ok(pass)
    }

    /// Checks a scanned pass and, if it opens, marks it used in the same step: authentic, inside its window,
    /// and never used before. The inner error says why a pass does not open; the outer one is a store failure.
    pub fn check_pass(&mut self, text: &str, now: i64) -> Result<std::result::Result<VisitorPass, PassError>> {
        let pass = match PassKey::new(&self.pass_key).decode(text).and_then(|p| p.check_window(now).map(|()| p)) {
            Ok(pass) => pass,
            Err(e) => return Ok(Err(e)),
        };
        Ok(if self.store.redeem_pass(&pass, now)? { Ok(pass) } else { Err(PassError::AlreadyUsed) })
    }
}

/// A verifier of no PIN, made once per process, so that an unknown keypad code takes as long as a known one.
fn dummy_verifier(pepper: &PinPepper) -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        Pin::parse("00000000").ok().and_then(|pin| protect::pin_verifier(&pin, pepper).ok()).unwrap_or_default()
    })
}

/// Loads the master key and, with it, the device transform key and the keys' generation; the caller holds the
/// key file's lock (every rotation takes it, so the three belong together). Finishes an interrupted rotation:
/// when the key file does not open the database but a staged `.next` does, the database was committed under
/// `.next`.
fn open_device_keys(key_file: &MasterKeyFile, store: &mut Store, now: i64, _lock: &KeyFileLock) -> Result<DeviceKeys> {
    let current = key_file
        .load_or_create()
        .map_err(RegistryError::from)
        .and_then(|master| Ok((store.transform_key(&master, now)?, master)));
    let (transform, master) = match current {
        Ok((transform, master)) => {
            key_file.discard_next()?;
            (transform, master)
        }
        Err(first) => {
            let Some(next) = key_file.load_next()? else { return Err(first) };
            let transform = store.transform_key(&next, now).map_err(|_| first)?;
            key_file.promote_next(&next)?;
            (transform, next)
        }
    };
    let generation = store.key_generation()?;
    Ok(DeviceKeys { generation, master, rotation: Arc::new(Rotation::from_key(&transform)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::embed::EMBEDDING_DIM;

    fn consent(now: i64) -> ConsentRecord {
        ConsentRecord {
            notice_version: "2026-11".into(),
            notice_sha256: "cd".repeat(32),
            purpose: "opening the compound gate".into(),
            channel: "kiosk".into(),
            granted_at: now,
        }
    }

    /// Unit vectors along separate axes, with a personal wobble: distinct people score ~0.
    fn face(person: usize, wobble: f32) -> Embedding {
        let mut raw = vec![0.0f32; EMBEDDING_DIM];
        raw[person % EMBEDDING_DIM] = 1.0;
        raw[(person + 64) % EMBEDDING_DIM] = wobble;
        Embedding::from_raw(&raw).unwrap()
    }

    fn open(dir: &Path) -> Registry {
        let key = MasterKeySource::file(dir.join("keys/master.key"));
        Registry::open(&dir.join("data/facegate.sqlite"), &key, RegistryPolicy::default(), 1_000).unwrap()
    }

    #[test]
    fn a_template_carried_through_the_compound_transform_matches_at_another_gate_until_revoked() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut gate_a, mut gate_b) = (open(a_dir.path()), open(b_dir.path()));
        assert_ne!(gate_a.transform_id(), gate_b.transform_id(), "each device has its own transform");
        let compound = Rotation::from_key(&TransformKey::from_bytes([9; 32]));
        gate_a.set_replicated(true);
        gate_a.record_consent("r-1", None, &consent(1_000), 1_000).unwrap();
        gate_a.enrol("r-1", &face(1, 0.1), 1_000).unwrap();
        assert!(gate_a.template_under("r-2", &compound).is_none());
        let travelling = gate_a.template_under("r-1", &compound).unwrap();
        assert_eq!(travelling.transform(), compound.id());

        let stored = gate_b.import_from_compound("r-1", &consent(1_000), &travelling, &compound, 1_001).unwrap();
        assert_eq!(stored.map(|r| r.version), Some(1));
        assert!(gate_b.store().outbox(10).unwrap().is_empty(), "an imported enrolment was queued again");
        let found = gate_b.identify(&face(1, 0.12)).unwrap();
        assert_eq!(found.resident_id, "r-1");
        assert!(found.score > 0.99, "{}", found.score);
        assert!(gate_b.identify(&face(2, 0.1)).is_none());

        assert!(gate_b.shred_from_compound("r-1", ShredReason::Revoked, 1_002).unwrap().is_some());
        assert!(gate_b.identify(&face(1, 0.12)).is_none());
        assert!(gate_b.shred_from_compound("r-1", ShredReason::Revoked, 1_003).unwrap().is_none(), "twice");
        assert!(gate_b.shred_from_compound("never-here", ShredReason::Revoked, 1_003).unwrap().is_none());
        // An enrolment that crossed the revocation (its consent is older) is ignored; a fresh consent is not.
        assert!(gate_b.import_from_compound("r-1", &consent(1_000), &travelling, &compound, 1_004).unwrap().is_none());
        assert!(gate_b.identify(&face(1, 0.12)).is_none());
        assert!(gate_b.import_from_compound("r-1", &consent(1_005), &travelling, &compound, 1_005).unwrap().is_some());
        assert_eq!(gate_b.identify(&face(1, 0.12)).unwrap().resident_id, "r-1");
    }

    #[test]
    fn consent_enrol_identify_revoke() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let mut registry = open(dir.path());
        assert!(matches!(registry.enrol("r-1", &face(1, 0.1), 1_000), Err(RegistryError::NoConsent(_))));
        registry.record_consent("r-1", Some("3-401"), &consent(1_000), 1_000).unwrap();
        registry.record_consent("r-2", None, &consent(1_000), 1_000).unwrap();
        assert_eq!(registry.enrol("r-1", &face(1, 0.1), 1_001).unwrap().version, 1);
        assert_eq!(registry.enrol("r-2", &face(2, 0.1), 1_001).unwrap().version, 1);
        // r-2 enrolling again is a re-enrolment, not a duplicate of itself.
        assert_eq!(registry.enrol("r-2", &face(2, -0.1), 1_002).unwrap().version, 2);
        // A third resident with r-1's face is refused.
        registry.record_consent("r-3", None, &consent(1_000), 1_000).unwrap();
        assert!(matches!(registry.enrol("r-3", &face(1, 0.05), 1_003), Err(RegistryError::Duplicate { .. })));

        assert_eq!(registry.identify(&face(1, 0.0)).unwrap().resident_id, "r-1");
        assert_eq!(registry.identify(&face(7, 0.0)), None, "a stranger gets no match, not the nearest");

        // A fresh process sees the same gallery.
        drop(registry);
        let mut registry = open(dir.path());
        assert_eq!(registry.gallery_len(), 2);
        assert!(registry.load_failures().is_empty());
        let receipt = registry.revoke("r-1", 2_000).unwrap();
        assert!(receipt.deleted.contains(&"template data key (crypto-shredded)"), "{receipt:?}");
        assert_eq!(registry.identify(&face(1, 0.0)), None);
        assert!(matches!(registry.enrol("r-1", &face(1, 0.1), 2_001), Err(RegistryError::NoConsent(_))));
        drop(registry);
        assert_eq!(open(dir.path()).identify(&face(1, 0.0)), None);
    }

    #[test]
    fn re_enrolment_after_revocation_gives_an_unlinkable_template() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = open(dir.path());
        for (id, person) in [("r-1", 1), ("r-2", 2)] {
            registry.record_consent(id, None, &consent(0), 0).unwrap();
            registry.enrol(id, &face(person, 0.1), 0).unwrap();
        }
        let before = registry.protect(&face(1, 0.1));
        registry.revoke("r-1", 5).unwrap();
        // The same face now protects to an unrelated template: what was stored before cannot be linked to
        // what a re-enrolment stores (keyed rotations of one vector under independent keys).
        let after = registry.protect(&face(1, 0.1));
        assert_ne!(before.transform(), after.transform());
        assert!(before.cosine(&after).abs() < 0.45, "cosine {}", before.cosine(&after));
        // Everyone else was carried over and still matches.
        assert_eq!(registry.identify(&face(2, 0.1)).unwrap().resident_id, "r-2");
        registry.record_consent("r-1", None, &consent(6), 6).unwrap();
        assert_eq!(registry.enrol("r-1", &face(1, 0.1), 6).unwrap().version, 1);
        assert_eq!(registry.identify(&face(1, 0.1)).unwrap().resident_id, "r-1");
    }

    #[test]
    fn a_wrong_master_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        drop(open(dir.path()));
        std::fs::write(dir.path().join("keys/master.key"), [9u8; 32]).unwrap();
        let err = Registry::open(
            &dir.path().join("data/facegate.sqlite"),
            &MasterKeySource::file(dir.path().join("keys/master.key")),
            RegistryPolicy::default(),
            5,
        )
        .unwrap_err();
        assert!(err.to_string().contains("master key does not open"), "{err}");
    }

    #[test]
    fn a_visitor_pass_opens_once_inside_its_window_and_survives_key_rotation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let mut registry = open(dir.path());
        let (pass, text) = registry.issue_pass(2_000, 5_600, 1_000).unwrap();
        assert_eq!(registry.check_pass(&text, 1_500).unwrap(), Err(PassError::NotYetValid));
        // A revocation elsewhere rotates the master key; the pass key is re-wrapped, passes keep working.
        registry.record_consent("r-1", None, &consent(1_000), 1_000).unwrap();
        registry.enrol("r-1", &face(1, 0.1), 1_000).unwrap();
        registry.revoke("r-1", 1_900).unwrap();
        drop(registry);
        let mut registry = open(dir.path());
        assert_eq!(registry.check_pass(&text, 2_000).unwrap(), Ok(pass));
        assert_eq!(registry.check_pass(&text, 2_001).unwrap(), Err(PassError::AlreadyUsed));
        drop(registry);
        // Single use holds across a restart.
        let mut registry = open(dir.path());
        assert_eq!(registry.check_pass(&text, 2_002).unwrap(), Err(PassError::AlreadyUsed));
        let (_, late) = registry.issue_pass(2_000, 3_000, 1_000).unwrap();
        assert_eq!(registry.check_pass(&late, 3_000).unwrap(), Err(PassError::Expired));
        let (_, cancelled) = registry.issue_pass(2_000, 3_000, 1_000).unwrap();
        registry.cancel_pass(&cancelled, 2_100).unwrap();
        assert_eq!(registry.check_pass(&cancelled, 2_200).unwrap(), Err(PassError::AlreadyUsed));
        assert!(matches!(registry.issue_pass(0, 8 * 86_400, 0), Err(RegistryError::Pass(PassError::BadWindow))));

        // Another installation's pass is refused.
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(other.path().join("data")).unwrap();
        let (_, foreign) = open(other.path()).issue_pass(2_000, 5_000, 1_000).unwrap();
        assert_eq!(registry.check_pass(&foreign, 2_500).unwrap(), Err(PassError::BadSignature));
        // Used passes are forgotten once they expire: no lasting trace of visits.
        let rows = registry.store().used_pass_count().unwrap();
        assert_eq!(rows, 2);
        registry.check_pass("FGP1:garbage", 6_000).unwrap().unwrap_err();
        let (_, fresh) = registry.issue_pass(6_000, 7_000, 6_000).unwrap();
        registry.check_pass(&fresh, 6_000).unwrap().unwrap();
        let rows = registry.store().used_pass_count().unwrap();
        assert_eq!(rows, 1);
    }

    #[test]
    fn wrong_pins_back_off_and_revocation_removes_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = open(dir.path());
        registry.record_consent("r-9", None, &consent(1), 1).unwrap();
        registry.record_consent("r-8", None, &consent(1), 1).unwrap();
        let pin = |p: &str| Pin::parse(p).unwrap();
        assert!(matches!(registry.set_pin("r-9", "3401", &pin("1111"), 2), Err(RegistryError::Pin(_))));
        assert!(matches!(registry.set_pin("r-9", "3", &pin("4071"), 2), Err(RegistryError::KeypadCode)));
        registry.set_pin("r-9", "3401", &pin("4071"), 2).unwrap();
        assert!(matches!(registry.set_pin("r-8", "3401", &pin("5093"), 2), Err(RegistryError::Store(_))));
        assert_eq!(registry.check_pin("3401", &pin("4071"), 10).unwrap(), PinCheck::Accepted);
        // Another resident's revocation rotates the master key; PINs keep working (their pepper is stable).
        registry.revoke("r-8", 10).unwrap();
        assert_eq!(registry.check_pin("3401", &pin("4071"), 10).unwrap(), PinCheck::Accepted);
        drop(registry);
        let mut registry = open(dir.path());
        assert_eq!(registry.check_pin("3401", &pin("4071"), 10).unwrap(), PinCheck::Accepted);
        assert_eq!(registry.check_pin("9999", &pin("4071"), 10).unwrap(), PinCheck::Rejected, "unknown code");
        for t in 11..16 {
            assert_eq!(registry.check_pin("3401", &pin("9999"), t).unwrap(), PinCheck::Rejected);
        }
        // Five wrong in a row: even the right PIN waits 30 s, then works.
        assert_eq!(registry.check_pin("3401", &pin("4071"), 16).unwrap(), PinCheck::LockedOut(Duration::from_secs(29)));
        assert_eq!(registry.check_pin("3401", &pin("4071"), 45).unwrap(), PinCheck::Accepted);
        // Attempts during a lockout are refused unchecked; after it, one more wrong PIN doubles the wait.
        for t in 50..55 {
            assert_eq!(registry.check_pin("3401", &pin("9999"), t).unwrap(), PinCheck::Rejected);
        }
        assert_eq!(registry.check_pin("3401", &pin("4071"), 60).unwrap(), PinCheck::LockedOut(Duration::from_secs(24)));
        assert_eq!(registry.check_pin("3401", &pin("9999"), 84).unwrap(), PinCheck::Rejected);
        assert_eq!(registry.check_pin("3401", &pin("4071"), 90).unwrap(), PinCheck::LockedOut(Duration::from_secs(54)));
        let receipt = registry.revoke("r-9", 200).unwrap();
        assert!(receipt.deleted.contains(&"PIN verifier"), "{receipt:?}");
        assert_eq!(registry.check_pin("3401", &pin("4071"), 300).unwrap(), PinCheck::Rejected);
    }

    #[test]
    fn unused_templates_expire_and_moved_out_residents_are_shredded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let mut registry = open(dir.path());
        let day = 86_400;
        for (id, person) in [("old", 1), ("busy", 2), ("leaver", 3)] {
            registry.record_consent(id, None, &consent(0), 0).unwrap();
            registry.enrol(id, &face(person, 0.0), 0).unwrap();
        }
        // "busy" matched two years in; "old" never since enrolment.
        assert!(registry.store_mut().note_used("busy", 730 * day).unwrap());
        assert!(!registry.store_mut().note_used("busy", 731 * day).unwrap(), "touched at most monthly");
        let receipt = registry.move_out("leaver", 800 * day).unwrap();
        assert!(receipt.deleted.contains(&"residency (moved out)"));
        let expired = registry.expire(3 * 365 * day + 2 * day).unwrap();
        assert_eq!(expired.iter().map(|r| r.resident_id.as_str()).collect::<Vec<_>>(), vec!["old"]);
        assert_eq!(registry.gallery_len(), 1);
        assert_eq!(registry.identify(&face(2, 0.0)).unwrap().resident_id, "busy");
        let summary = registry.store().residents().unwrap();
        let old = summary.iter().find(|r| r.id == "old").unwrap();
        assert!(old.template_version.is_none() && old.consent_granted_at.is_none());
        assert_eq!(registry.store().orphan_counts().unwrap(), (0, 0, 0));
        // transform key created, 3 consents, 3 enrolments, move-out and expiry each with its key rotation.
        assert_eq!(registry.store().verify_audit_chain().unwrap(), 1 + 3 + 3 + 2 + 2);
    }

    #[test]
    fn key_rotation_rewraps_and_renews_everything() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let mut registry = open(dir.path());
        registry.record_consent("r-1", None, &consent(0), 0).unwrap();
        registry.enrol("r-1", &face(1, 0.0), 0).unwrap();
        let before = std::fs::read(dir.path().join("keys/master.key")).unwrap();
        let old_transform = registry.transform_id();
        assert_eq!(registry.rotate_keys(10).unwrap(), 1);
        assert_ne!(registry.transform_id(), old_transform);
        drop(registry);
        assert_ne!(std::fs::read(dir.path().join("keys/master.key")).unwrap(), before);
        assert!(!dir.path().join("keys/master.key.next").exists());
        let registry = open(dir.path());
        assert_eq!(registry.identify(&face(1, 0.0)).unwrap().resident_id, "r-1");
    }

    #[test]
    fn an_interrupted_rotation_is_finished_or_undone_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let key_path = dir.path().join("keys/master.key");
        let mut registry = open(dir.path());
        registry.record_consent("r-1", None, &consent(0), 0).unwrap();
        registry.enrol("r-1", &face(1, 0.0), 0).unwrap();
        let file = MasterKeyFile::new(key_path.clone(), None);

        // Crash after staging, before the database committed: the stale `.next` is discarded.
        file.stage_next(&AeadKey::generate()).unwrap();
        drop(registry);
        let registry = open(dir.path());
        assert!(!dir.path().join("keys/master.key.next").exists());
        assert_eq!(registry.gallery_len(), 1);

        // Crash after the database committed under the new key, before the rename: `.next` is promoted.
        let old = file.load_or_create().unwrap();
        let new = AeadKey::generate();
        let new_transform = TransformKey::generate();
        let renewal = registry.gallery().rotation().renewal_to(&Rotation::from_key(&new_transform));
        let generation = registry.key_generation();
        file.stage_next(&new).unwrap();
        drop(registry);
        let rekey =
            Rekey { generation, old_master: &old, new_master: &new, new_transform: &new_transform, renewal: &renewal };
        Store::open(&dir.path().join("data/facegate.sqlite")).unwrap().rotate_keys(&rekey, 5).unwrap();
        let registry = open(dir.path());
        assert_eq!(registry.identify(&face(1, 0.0)).unwrap().resident_id, "r-1");
        assert_eq!(std::fs::read(&key_path).unwrap(), new.as_bytes());
    }

    #[test]
    fn a_passphrase_sealed_key_file_needs_its_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let db = dir.path().join("data/facegate.sqlite");
        let source = |p: &str| MasterKeySource {
            file: dir.path().join("keys/master.key"),
            passphrase: Some(Zeroizing::new(p.to_owned())),
        };
        let mut registry = Registry::open(&db, &source("correct horse"), RegistryPolicy::default(), 0).unwrap();
        registry.record_consent("r-1", None, &consent(0), 0).unwrap();
        registry.enrol("r-1", &face(1, 0.0), 0).unwrap();
        drop(registry);
        let on_disk = std::fs::read(dir.path().join("keys/master.key")).unwrap();
        assert!(on_disk.starts_with(b"FGK1") && on_disk.len() == 80);
        let err = Registry::open(&db, &source("wrong horse"), RegistryPolicy::default(), 1).unwrap_err();
        assert!(err.to_string().contains("passphrase does not open"), "{err}");
        let err = Registry::open(
            &db,
            &MasterKeySource::file(dir.path().join("keys/master.key")),
            RegistryPolicy::default(),
            1,
        )
        .unwrap_err();
        assert!(err.to_string().contains("FACEGATE_MASTER_PASSPHRASE"), "{err}");
        let registry = Registry::open(&db, &source("correct horse"), RegistryPolicy::default(), 1).unwrap();
        assert_eq!(registry.gallery_len(), 1);
    }

    /// Issue 16: a registry whose keys another process rotated (the CLI's `revoke`, a revocation from the
    /// compound) must neither commit a template sealed under the deleted master key (an "enrolled" resident
    /// nobody can ever match) nor refuse a revocation as `WrongMasterKey`: it refreshes its keys and goes on.
    #[test]
    fn a_stale_writer_refreshes_its_keys_instead_of_sealing_under_deleted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut portal = open(dir.path());
        for (id, person) in [("r-1", 1), ("r-2", 2)] {
            portal.record_consent(id, None, &consent(0), 0).unwrap();
            portal.enrol(id, &face(person, 0.0), 0).unwrap();
        }
        portal.record_consent("r-3", None, &consent(0), 0).unwrap();
        portal.record_consent("r-4", None, &consent(0), 0).unwrap();
        // Another process (the CLI) revokes r-1: master key and transform rotate under the portal's feet.
        let mut cli = open(dir.path());
        cli.revoke("r-1", 5).unwrap();
        drop(cli);
        // The portal enrols r-3 with what it holds: the row must open for everyone afterwards.
        portal.enrol("r-3", &face(3, 0.0), 6).unwrap();
        // And a revocation on the portal succeeds.
        let receipt = portal.revoke("r-2", 7).unwrap();
        assert!(receipt.deleted.contains(&"template data key (crypto-shredded)"), "{receipt:?}");
        // Once more after another outside rotation: enrolment and identification still line up.
        let mut cli = open(dir.path());
        cli.rotate_keys(8).unwrap();
        drop(cli);
        portal.enrol("r-4", &face(4, 0.0), 9).unwrap();
        let fresh = open(dir.path());
        assert!(fresh.load_failures().is_empty(), "{:?}", fresh.load_failures());
        assert_eq!(fresh.gallery_len(), 2);
        assert_eq!(fresh.identify(&face(3, 0.0)).unwrap().resident_id, "r-3");
        assert_eq!(fresh.identify(&face(4, 0.0)).unwrap().resident_id, "r-4");
        assert_eq!(fresh.identify(&face(2, 0.0)), None);
        assert_eq!(portal.identify(&face(4, 0.0)).unwrap().resident_id, "r-4");
        assert_eq!(portal.identify(&face(1, 0.0)), None);
    }

    #[test]
    fn a_second_process_follows_a_revocation_and_its_key_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let mut admin = open(dir.path());
        for (id, person) in [("r-1", 1), ("r-2", 2)] {
            admin.record_consent(id, None, &consent(0), 0).unwrap();
            admin.enrol(id, &face(person, 0.0), 0).unwrap();
        }
        let mut gate = open(dir.path());
        assert_eq!(gate.gallery_len(), 2);
        admin.revoke("r-1", 5).unwrap();
        gate.reload().unwrap();
        assert!(gate.load_failures().is_empty(), "{:?}", gate.load_failures());
        assert_eq!(gate.gallery_len(), 1);
        assert_eq!(gate.identify(&face(1, 0.0)), None);
        assert_eq!(gate.identify(&face(2, 0.0)).unwrap().resident_id, "r-2");
    }
}
