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

mod credentials;
pub mod owner;
pub mod snapshot;

pub use credentials::{PinAttempt, PinChallenge, KEYPAD_CODE_DIGITS};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use zeroize::Zeroizing;

use crate::policy::calibration::Calibration;
use crate::policy::consent::{judge, ConsentRecord, ShredReason, Stamp, Standing, Verdict};
use crate::policy::decide::PinCheck;
use crate::policy::lockout::{KeypadAlarm, Locked, PinBudget, PinLockout};
use crate::policy::matching::{GalleryError, Slot};
use crate::protect::keys::{self, KeyError, KeyFileLock, KeyWrap, MasterKeyFile};
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
    /// A keypad code that is not 6 to 8 digits.
    #[error("a keypad code is 6 to 8 digits, so that guessing one costs more than guessing a PIN; leave it out to get a random one")]
    KeypadCode,
    /// A visitor pass cannot be issued or cancelled.
    #[error(transparent)]
    Pass(#[from] PassError),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, RegistryError>;

/// Where the master key lives: a key file (mode 0600, outside the database's folder, created on first run),
/// sealed under the device's key root.
#[derive(Clone, Debug)]
pub struct MasterKeySource {
    /// The key file.
    pub file: PathBuf,
    /// How it is sealed at rest.
    pub wrap: KeyWrap,
}

impl MasterKeySource {
    /// A key file in clear (the `file` root: development and tests of other things).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self { file: path.into(), wrap: KeyWrap::Plain }
    }
}

/// The rules the registry applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegistryPolicy {
    /// Target chance that a stranger matches anyone in the gallery (FPIR); the threshold follows it.
    pub target_fpir: f64,
    /// A template unused this long expires (at most [`MAX_RETENTION_SECS`]).
    pub max_unused_secs: i64,
    /// The keypad-wide budget of failed PIN attempts.
    pub pin_budget: PinBudget,
    /// The impostor-score tail the identification threshold comes from.
    pub calibration: Calibration,
}

impl Default for RegistryPolicy {
    fn default() -> Self {
        Self {
            target_fpir: 1e-3,
            max_unused_secs: MAX_RETENTION_SECS,
            pin_budget: PinBudget::default(),
            calibration: Calibration::SFACE,
        }
    }
}

/// What became of an announcement from another gate of the compound.
#[derive(Debug)]
pub enum FromCompound<T> {
    /// Applied here.
    Applied(T),
    /// Already known here (an echo, or this gate's own announcement coming back).
    Same,
    /// Refused: this device knows a later state of the resident (shown), so the announcement is a replay or
    /// crossed a later change.
    Older(Standing),
}

/// What an enrolment stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrolReceipt {
    /// The resident.
    pub resident_id: String,
    /// The template version (1 at first enrolment, +1 at each re-enrolment).
    pub version: u32,
}

/// The device keys of one generation, loaded together under the key file's lock: the master key, the
/// transform, and the device secrets wrapped under the master key (another process's rotation may have
/// replaced one, e.g. `facegate keys rotate --pass-key`, so they are reloaded with the generation).
struct DeviceKeys {
    generation: KeyGeneration,
    master: AeadKey,
    rotation: Arc<Rotation>,
    pin_key: AeadKey,
    pass_key: AeadKey,
    /// Keys the noise on published counts (with it the noise could be subtracted).
    count_noise_key: AeadKey,
}

/// The device secrets kept in the database, wrapped under the master key.
pub const PIN_PEPPER: &str = "pin-pepper";
/// Signs visitor passes.
pub const PASS_KEY: &str = "visitor-pass-key";
/// Keys the Laplace noise of published counts.
pub const COUNT_NOISE_KEY: &str = "count-noise-key";

/// The residents, their sealed templates, and the live gallery.
pub struct Registry {
    store: Store,
    key_file: MasterKeyFile,
    keys: DeviceKeys,
    /// PIN failures per typed code and keypad-wide, on the monotonic clock from `origin`.
    lockout: PinLockout,
    /// When the registry opened, on the monotonic clock and on the wall clock.
    origin: Instant,
    opened_at: i64,
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
        let key_file = MasterKeyFile::new(key.file.clone(), key.wrap.clone());
        let mut store = Store::open(db)?;
        if !key_file.exists() && store.has_device_keys()? {
            return Err(KeyError::Io {
                path: key.file.clone(),
                reason: "missing, but the database holds keys sealed under it; restore the key file from its backup"
                    .into(),
            }
            .into());
        }
        let keys = {
            let guard = key_file.lock()?;
            open_device_keys(&key_file, &mut store, now, &guard)?
        };
        let policy = RegistryPolicy { max_unused_secs: policy.max_unused_secs.min(MAX_RETENTION_SECS), ..policy };
        let mut lockout = PinLockout::new(policy.pin_budget);
        // Failures from before a restart still spend the budget: pulling the plug buys no guesses.
        lockout.restore(store.keypad_failures_since(now - 86_400)?, Duration::ZERO);
        let mut registry = Self {
            store,
            key_file,
            gallery: Arc::new(GallerySnapshot::empty(keys.rotation.clone(), policy.target_fpir, policy.calibration)),
            keys,
            lockout,
            origin: Instant::now(),
            opened_at: now,
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
        let mut next =
            GallerySnapshot::empty(self.keys.rotation.clone(), self.policy.target_fpir, self.policy.calibration);
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
        self.store.grant_consent(resident_id, consent, ChangeOrigin::Local)?;
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
            let threshold = this.policy.calibration.threshold_for_fpir(this.policy.target_fpir, this.gallery.len() + 1);
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
        self.with_new_keys(|store, rekey| store.rotate_keys(rekey, now, &[]))
    }

    /// Replaces the visitor-pass key (with a master key rotation, so every process reloads it): every pass
    /// issued before no longer verifies (passes are not kept, so each one dies, whoever holds it).
    pub fn rotate_pass_key(&mut self, now: i64) -> Result<()> {
        self.with_new_keys(|store, rekey| store.rotate_keys(rekey, now, &[PASS_KEY]))?;
        Ok(())
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
                self.key_file.promote_next(&new)?;
                // The device secrets under the new key (a rotation may have replaced one).
                self.keys = device_keys(&mut self.store, new, Arc::new(new_rotation))?;
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

    /// Stores a template enrolled at another gate of the compound, announced with `stamp`: records the consent
    /// given there (adding the resident if new), carries the template from the compound's transform `from` to
    /// this device's, seals it under a fresh data key and makes it matchable. Not announced again. The
    /// enrolling gate already refused duplicates. Refused ([`FromCompound::Older`]) when this device knows a
    /// later state of the resident (a replay, or an enrolment that crossed a revocation); a template of a new
    /// consent generation first ends what this device held of the previous one, as a revocation would.
    pub fn import_from_compound(
        &mut self,
        resident_id: &str,
        consent: &ConsentRecord,
        template: &ProtectedTemplate,
        stamp: Stamp,
        from: &Rotation,
        now: i64,
    ) -> Result<FromCompound<EnrolReceipt>> {
        let known = self.store.standing(resident_id)?;
        match judge(known, Standing { stamp, ended: None }) {
            Verdict::Same => return Ok(FromCompound::Same),
            Verdict::Older => return Ok(FromCompound::Older(known.unwrap_or_default())),
            Verdict::Newer => {}
        }
        let earlier_generation = known.is_some_and(|k| k.stamp.generation < stamp.generation);
        if earlier_generation
            && self.store.resident_exists(resident_id)?
            && (self.slot_of.contains_key(resident_id) || self.store.has_live_consent(resident_id)?)
        {
            // This device missed the end of the earlier consent (the broker keeps only the latest state): its
            // template, key and PIN go as they went at the gate that ended it.
            self.drop_from_gallery(resident_id);
            // Its end is the next change after what was known here (what the other gates echo, too).
            let ended = known.map_or(Stamp::default(), |k| k.stamp).next_version();
            let origin = ChangeOrigin::Compound(ended);
            self.with_new_keys(|store, rekey| {
                store.shred_from_compound(resident_id, ShredReason::Revoked, now, origin, rekey)
            })?;
        }
        if !self.store.resident_exists(resident_id)? {
            self.store.add_resident(resident_id, None, now)?;
        }
        if !self.store.has_live_consent(resident_id)? {
            self.store.grant_consent(resident_id, consent, ChangeOrigin::Compound(stamp))?;
        }
        self.with_current_keys(|this| {
            let local = from
                .renewal_to(&this.keys.rotation)
                .apply(template)
                .ok_or(GalleryError::WrongTransform { expected: from.id(), found: template.transform() })?;
            let keys = KeysInUse { master: &this.keys.master, generation: this.keys.generation };
            let origin = ChangeOrigin::Compound(stamp);
            let version = this.store.store_template_from(resident_id, &local, keys, now, origin)?;
            this.insert(resident_id, &local)?;
            Ok(FromCompound::Applied(EnrolReceipt { resident_id: resident_id.to_owned(), version }))
        })
    }

    /// Applies a revocation or move-out announced by another gate with `stamp`: the resident stops being
    /// matchable, then template, key and PIN are shredded with a key rotation, as for a local revocation, and
    /// the tombstone is echoed on this gate's subject. `Applied(None)` when there was nothing here to destroy:
    /// the end is remembered all the same, so an earlier template replayed later is refused. Refused
    /// ([`FromCompound::Older`]) when this device knows a later state (a replayed tombstone after a new
    /// consent).
    pub fn shred_from_compound(
        &mut self,
        resident_id: &str,
        reason: ShredReason,
        stamp: Stamp,
        now: i64,
    ) -> Result<FromCompound<Option<RevocationReceipt>>> {
        let known = self.store.standing(resident_id)?;
        match judge(known, Standing { stamp, ended: Some(reason) }) {
            Verdict::Same => return Ok(FromCompound::Same),
            Verdict::Older => return Ok(FromCompound::Older(known.unwrap_or_default())),
            Verdict::Newer => {}
        }
        // The gallery holds exactly the live templates: no need to list every resident to know.
        let matchable = self.slot_of.contains_key(resident_id);
        self.drop_from_gallery(resident_id);
        let held =
            self.store.resident_exists(resident_id)? && (matchable || self.store.has_live_consent(resident_id)?);
        if !held {
            self.store.remember_end(resident_id, stamp, reason, now)?;
            return Ok(FromCompound::Applied(None));
        }
        let origin = ChangeOrigin::Compound(stamp);
        self.with_new_keys(|store, rekey| store.shred_from_compound(resident_id, reason, now, origin, rekey))
            .map(|receipt| FromCompound::Applied(Some(receipt)))
    }

    /// The noise on published counts at `epsilon` (`None`: exact counts), keyed by this device's secret so
    /// that every load shows the same values.
    pub fn count_noise(&self, epsilon: Option<f64>) -> Option<crate::policy::counts::Noise> {
        epsilon.map(|e| crate::policy::counts::Noise::new(e, self.keys.count_noise_key.as_bytes()))
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
    device_keys(store, master, Arc::new(Rotation::from_key(&transform)))
}

/// The device secrets under `master` (each made on first use), with the store's generation.
fn device_keys(store: &mut Store, master: AeadKey, rotation: Arc<Rotation>) -> Result<DeviceKeys> {
    let generation = store.key_generation()?;
    let in_use = KeysInUse { master: &master, generation };
    let pin_key = store.device_secret(PIN_PEPPER, in_use)?;
    let pass_key = store.device_secret(PASS_KEY, in_use)?;
    let count_noise_key = store.device_secret(COUNT_NOISE_KEY, in_use)?;
    Ok(DeviceKeys { generation, master, rotation, pin_key, pass_key, count_noise_key })
}

#[cfg(test)]
mod tests;
