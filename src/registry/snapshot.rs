//! The gallery as the frame workers see it: an immutable snapshot (templates, the transform that protects a
//! probe, the identification threshold), swapped whole by the registry's owner after every change.
//!
//! A frame worker loads the current snapshot (an `Arc`, no lock held while matching) and matches against it;
//! nothing a worker does can wait on a write, and a write never waits on a worker. It holds no key: only the
//! transform (which protects probes) and protected templates. It must never be written anywhere.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::policy::calibration::Calibration;
use crate::policy::matching::{Gallery, Slot};
use crate::protect::{ProtectedTemplate, Rotation, TransformId};
use crate::vision::embed::Embedding;

/// A probe that matched a resident.
#[derive(Clone, Debug, PartialEq)]
pub struct Identified {
    /// The gallery slot (stable while the process runs: a resident keeps theirs across reloads).
    pub slot: Slot,
    /// The resident's pseudonymous id.
    pub resident_id: String,
    /// The cosine.
    pub score: f32,
}

/// One immutable state of the gallery.
#[derive(Clone)]
pub struct GallerySnapshot {
    rotation: Arc<Rotation>,
    gallery: Gallery,
    resident_of: HashMap<Slot, String>,
    target_fpir: f64,
    calibration: Calibration,
    threshold: f32,
    version: u64,
}

impl std::fmt::Debug for GallerySnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GallerySnapshot")
            .field("version", &self.version)
            .field("len", &self.gallery.len())
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl GallerySnapshot {
    /// An empty gallery under `rotation`.
    pub fn empty(rotation: Arc<Rotation>, target_fpir: f64, calibration: Calibration) -> Self {
        let gallery = Gallery::new(rotation.id());
        let resident_of = HashMap::new();
        let mut snapshot =
            Self { rotation, gallery, resident_of, target_fpir, calibration, threshold: 0.0, version: 0 };
        snapshot.settle();
        snapshot
    }

    /// Recomputes what follows from the rows (the threshold for this many residents).
    pub(super) fn settle(&mut self) {
        self.threshold = self.calibration.threshold_for_fpir(self.target_fpir, self.gallery.len().max(1));
    }

    pub(super) fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    pub(super) fn insert(
        &mut self,
        slot: Slot,
        resident: String,
        template: &ProtectedTemplate,
    ) -> Result<(), crate::policy::matching::GalleryError> {
        self.gallery.insert(slot, template)?;
        self.resident_of.insert(slot, resident);
        Ok(())
    }

    pub(super) fn remove(&mut self, slot: Slot) {
        self.gallery.remove(slot);
        self.resident_of.remove(&slot);
    }

    /// The resident a probe matches at the current threshold, or `None`: never the nearest resident.
    pub fn identify(&self, probe: &Embedding) -> Option<Identified> {
        let template = self.rotation.protect(probe);
        let candidate = self.gallery.identify(&template, self.threshold)?;
        let resident_id = self.resident_of.get(&candidate.slot)?.clone();
        Some(Identified { slot: candidate.slot, resident_id, score: candidate.score })
    }

    /// The best other resident's score for a template (duplicate checks at enrolment).
    pub(super) fn best_excluding(&self, template: &ProtectedTemplate, skip: Option<Slot>) -> Option<f32> {
        self.gallery.best_excluding(template, skip).map(|c| c.score)
    }

    /// A slot's template (to carry it to another transform), if the slot is here.
    pub(super) fn template(&self, slot: Slot) -> Option<ProtectedTemplate> {
        self.gallery.template(slot)
    }

    /// Applies this gallery's transform to an embedding.
    pub fn protect(&self, embedding: &Embedding) -> ProtectedTemplate {
        self.rotation.protect(embedding)
    }

    /// The transform in use.
    pub fn rotation(&self) -> &Rotation {
        &self.rotation
    }

    /// The transform's public id.
    pub fn transform_id(&self) -> TransformId {
        self.rotation.id()
    }

    /// Whether `slot` is matchable now (a slot from an older snapshot whose resident was revoked is not).
    pub fn contains(&self, slot: Slot) -> bool {
        self.resident_of.contains_key(&slot)
    }

    /// The resident in `slot`, if matchable now.
    pub fn resident(&self, slot: Slot) -> Option<&str> {
        self.resident_of.get(&slot).map(String::as_str)
    }

    /// How many residents are matchable.
    pub fn len(&self) -> usize {
        self.gallery.len()
    }

    /// True when nobody is matchable.
    pub fn is_empty(&self) -> bool {
        self.gallery.is_empty()
    }

    /// The identification threshold for this gallery's size.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Raised at every publication: a reader can tell that the gallery changed.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A short digest of the set of matchable residents (sorted pseudonymous ids), for an operator or a test
    /// to compare the gallery a running daemon holds with the store, without listing anyone.
    pub fn fingerprint(&self) -> String {
        let mut ids: Vec<&str> = self.resident_of.values().map(String::as_str).collect();
        ids.sort_unstable();
        fingerprint_of(&ids)
    }
}

#[cfg(test)]
impl GallerySnapshot {
    /// A gallery of these residents (slot = position) under a fresh transform, for tests elsewhere in the crate.
    pub(crate) fn of(residents: &[(&str, &Embedding)], target_fpir: f64, calibration: Calibration) -> Self {
        let rotation = Arc::new(Rotation::from_key(&crate::protect::TransformKey::generate()));
        let mut snapshot = Self::empty(rotation, target_fpir, calibration);
        for (slot, (resident, embedding)) in (0..).zip(residents) {
            let template = snapshot.protect(embedding);
            snapshot.insert(slot, (*resident).to_owned(), &template).expect("a fresh slot");
        }
        snapshot.settle();
        snapshot
    }
}

/// The fingerprint of a set of resident ids (see [`GallerySnapshot::fingerprint`]).
pub fn fingerprint_of(sorted_ids: &[&str]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"facegate gallery v1");
    for id in sorted_ids {
        hash.update((id.len() as u64).to_be_bytes());
        hash.update(id.as_bytes());
    }
    hash.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}
