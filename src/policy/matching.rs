//! Match: a protected probe against the gallery of live protected templates, 1:N, in memory.
//!
//! Pure: no I/O, no clock. The gallery is one contiguous, zeroized matrix (a row per enrolled resident) so a
//! scan streams memory at full speed. The threshold comes from [`super::calibration`] for a target
//! false-positive identification rate and the current gallery size, and a decision needs agreement over
//! several frames. An unknown
//! face gets "no match", never "the closest resident".

use zeroize::{Zeroize, Zeroizing};

use crate::protect::{ProtectedTemplate, TransformId};
use crate::vision::embed::EMBEDDING_DIM;

/// A slot in the gallery (the store maps it to a resident; matching never sees identities).
pub type Slot = u32;

/// Why a template cannot join the gallery.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GalleryError {
    /// Made under another transform key than the gallery's.
    #[error("the template was made under transform {found:?}, the gallery uses {expected:?}; re-enrol under the current key")]
    WrongTransform {
        /// The gallery's transform.
        expected: TransformId,
        /// The template's.
        found: TransformId,
    },
}

/// The live templates, one row each. A clone is a zeroizing copy (the daemon's published snapshots).
#[derive(Clone)]
pub struct Gallery {
    transform: TransformId,
    slots: Vec<Slot>,
    matrix: Zeroizing<Vec<f32>>,
}

impl std::fmt::Debug for Gallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gallery").field("transform", &self.transform).field("len", &self.slots.len()).finish()
    }
}

/// The best candidate of a scan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Its slot.
    pub slot: Slot,
    /// Its cosine.
    pub score: f32,
}

impl Gallery {
    /// An empty gallery for templates of one transform.
    pub fn new(transform: TransformId) -> Self {
        Self { transform, slots: Vec::new(), matrix: Zeroizing::new(Vec::new()) }
    }

    /// The transform its templates use.
    pub fn transform(&self) -> TransformId {
        self.transform
    }

    /// Number of templates.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when nobody is enrolled.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds (or replaces) the template of a slot.
    pub fn insert(&mut self, slot: Slot, template: &ProtectedTemplate) -> Result<(), GalleryError> {
        if template.transform() != self.transform {
            return Err(GalleryError::WrongTransform { expected: self.transform, found: template.transform() });
        }
        self.remove(slot);
        if self.matrix.capacity() < self.matrix.len() + EMBEDDING_DIM {
            // Grow by copying into a new zeroized buffer: a plain Vec growth would free the old rows unwiped.
            let mut grown = Zeroizing::new(Vec::with_capacity((self.matrix.len() + EMBEDDING_DIM) * 2));
            grown.extend_from_slice(&self.matrix);
            self.matrix = grown;
        }
        self.matrix.extend_from_slice(template.as_slice());
        self.slots.push(slot);
        Ok(())
    }

    /// A copy of a slot's template (to carry it to another transform), if the slot is here.
    pub fn template(&self, slot: Slot) -> Option<ProtectedTemplate> {
        let idx = self.slots.iter().position(|&s| s == slot)?;
        ProtectedTemplate::from_values(&self.matrix[idx * EMBEDDING_DIM..(idx + 1) * EMBEDDING_DIM], self.transform)
    }

    /// Removes a slot's template at once, wiping its row. Returns whether it was there.
    pub fn remove(&mut self, slot: Slot) -> bool {
        let Some(idx) = self.slots.iter().position(|&s| s == slot) else { return false };
        let last = self.slots.len() - 1;
        if idx != last {
            let (head, tail) = self.matrix.split_at_mut(last * EMBEDDING_DIM);
            head[idx * EMBEDDING_DIM..(idx + 1) * EMBEDDING_DIM].copy_from_slice(&tail[..EMBEDDING_DIM]);
        }
        self.matrix[last * EMBEDDING_DIM..].zeroize();
        self.matrix.truncate(last * EMBEDDING_DIM);
        self.slots.swap_remove(idx);
        true
    }

    /// The best-scoring template for a probe, if the gallery is not empty. Does not apply a threshold.
    pub fn best(&self, probe: &ProtectedTemplate) -> Option<Candidate> {
        self.best_excluding(probe, None)
    }

    /// Like [`Gallery::best`], skipping one slot (a resident re-enrolling is not their own duplicate).
    pub fn best_excluding(&self, probe: &ProtectedTemplate, skip: Option<Slot>) -> Option<Candidate> {
        if probe.transform() != self.transform {
            return None;
        }
        let p = probe.as_slice();
        let rows = self.matrix.chunks_exact(EMBEDDING_DIM).zip(self.slots.iter().copied());
        // Two loops, so the gate's scan (no slot skipped) carries no per-row test. Written out rather than left
        // to the optimiser, which unswitched it or not depending on how the crate happened to be split into
        // codegen units (22 % slower at 1,000 residents when it did not).
        match skip {
            None => best_of(rows, p),
            Some(skip) => best_of(rows.filter(|&(_, slot)| slot != skip), p),
        }
    }

    /// The slot the probe matches at `threshold`, or `None` ("no match", never the nearest resident).
    pub fn identify(&self, probe: &ProtectedTemplate, threshold: f32) -> Option<Candidate> {
        self.best(probe).filter(|c| c.score >= threshold)
    }
}

/// The row that scores highest against `probe`, the first of equals.
#[inline(always)]
fn best_of<'a>(rows: impl Iterator<Item = (&'a [f32], Slot)>, probe: &[f32]) -> Option<Candidate> {
    let mut best: Option<Candidate> = None;
    for (row, slot) in rows {
        let score = dot(row, probe);
        if best.is_none_or(|b| score > b.score) {
            best = Some(Candidate { slot, score });
        }
    }
    best
}

/// Dot product over eight independent accumulators, which the compiler turns into SIMD.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    acc.iter().sum()
}

/// Requires the same resident in `required` of the last `window` frames before opening.
#[derive(Clone, Debug)]
pub struct FrameAgreement {
    required: usize,
    window: usize,
    recent: std::collections::VecDeque<Option<Slot>>,
}

impl FrameAgreement {
    /// `required` of `window` frames (both at least 1; `required` is capped at `window`).
    pub fn new(required: usize, window: usize) -> Self {
        let window = window.max(1);
        Self { required: required.clamp(1, window), window, recent: std::collections::VecDeque::with_capacity(window) }
    }

    /// Feeds one frame's outcome (the matched slot, or `None`); returns the slot once agreement is reached,
    /// and then starts over so one approach opens the door once.
    pub fn observe(&mut self, outcome: Option<Slot>) -> Option<Slot> {
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(outcome);
        let slot = outcome?;
        let votes = self.recent.iter().filter(|o| **o == Some(slot)).count();
        if votes >= self.required {
            self.recent.clear();
            Some(slot)
        } else {
            None
        }
    }

    /// Forgets everything (a new person at the gate).
    pub fn reset(&mut self) {
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(axis: usize, transform: TransformId) -> ProtectedTemplate {
        let mut v = [0.0f32; EMBEDDING_DIM];
        v[axis] = 1.0;
        ProtectedTemplate::from_values(&v, transform).unwrap()
    }

    fn mixed(a: usize, b: usize, wa: f32, transform: TransformId) -> ProtectedTemplate {
        let mut v = [0.0f32; EMBEDDING_DIM];
        v[a] = wa;
        v[b] = (1.0 - wa * wa).sqrt();
        ProtectedTemplate::from_values(&v, transform).unwrap()
    }

    #[test]
    fn identifies_the_right_slot_and_refuses_strangers() {
        let t = TransformId(1);
        let mut g = Gallery::new(t);
        for slot in 0..10 {
            g.insert(slot, &template(slot as usize, t)).unwrap();
        }
        let probe = mixed(4, 50, 0.8, t);
        assert_eq!(g.identify(&probe, 0.5).map(|c| c.slot), Some(4));
        // A stranger close to nobody: no match, even though someone is "closest".
        let stranger = mixed(4, 50, 0.3, t);
        assert!(g.best(&stranger).is_some());
        assert_eq!(g.identify(&stranger, 0.5), None);
    }

    #[test]
    fn removal_takes_effect_at_once_and_keeps_the_others() {
        let t = TransformId(1);
        let mut g = Gallery::new(t);
        for slot in 0..5 {
            g.insert(slot, &template(slot as usize, t)).unwrap();
        }
        assert!(g.remove(1));
        assert!(!g.remove(1));
        assert_eq!(g.identify(&template(1, t), 0.5), None);
        for slot in [0, 2, 3, 4] {
            assert_eq!(g.identify(&template(slot as usize, t), 0.5).map(|c| c.slot), Some(slot));
        }
        assert_eq!(g.len(), 4);
    }

    #[test]
    fn a_template_of_another_transform_is_refused() {
        let mut g = Gallery::new(TransformId(1));
        assert!(matches!(g.insert(0, &template(0, TransformId(2))), Err(GalleryError::WrongTransform { .. })));
        assert_eq!(g.best(&template(0, TransformId(2))), None);
    }

    #[test]
    fn agreement_needs_the_same_resident_in_enough_frames() {
        let mut a = FrameAgreement::new(2, 3);
        assert_eq!(a.observe(Some(7)), None);
        assert_eq!(a.observe(Some(8)), None);
        assert_eq!(a.observe(Some(7)), Some(7));
        assert_eq!(a.observe(Some(7)), None, "starts over after opening");
        assert_eq!(a.observe(None), None);
        assert_eq!(a.observe(None), None);
        assert_eq!(a.observe(Some(7)), None, "the earlier vote has left the window");
    }

    #[test]
    fn dot_matches_the_naive_sum() {
        let a: Vec<f32> = (0..EMBEDDING_DIM).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..EMBEDDING_DIM).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
    }
}
