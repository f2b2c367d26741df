//! Fuse: the frames of one approach combined into one probe, so that a decision rests on every frame of the
//! person in front of the gate rather than on each frame alone.
//!
//! Owns [`ApproachFusion`]: the last few embeddings of one approach with their quality weights, and their
//! weighted, unit-length mean. A frame that does not look like the same person starts a new approach, so two
//! people taking turns are never averaged into one. It holds embeddings only (wiped on drop and on reset);
//! never a frame, a crop or an identity.

use std::collections::VecDeque;

use crate::vision::detect::FaceDetection;
use crate::vision::embed::Embedding;
use crate::vision::enrol::FacePose;

/// Below this cosine with the approach so far, a frame is taken to be someone else. Two photos of one person
/// score above it about 97 % of the time even across years (the development photos); strangers score about
/// 0.0 +- 0.1, so a swap of people resets the approach.
pub const MIN_SAME_PERSON: f32 = 0.25;

/// The eye distance (pixels) at which a face counts fully; smaller faces carry less detail.
const FULL_WEIGHT_EYE_PX: f32 = 40.0;
/// The sharpness (variance of the crop's Laplacian) at which a face counts half: the enrolment quality gate's
/// bar for "blurred".
const HALF_WEIGHT_SHARPNESS: f32 = 30.0;

/// How much a frame's embedding counts in a quality-weighted fused probe: the detector's confidence, the
/// share of detail the face's size allows and how sharp the aligned crop is (each 0..1). The gate fuses with
/// equal weights: on the development photos these weights changed nothing (`facegate eval --open-set`).
pub fn frame_weight(face: &FaceDetection, sharpness: f32) -> f32 {
    let eyes = FacePose::of(&face.landmarks).eye_distance_px;
    let size = (eyes / FULL_WEIGHT_EYE_PX).clamp(0.1, 1.0);
    let confidence = if face.score.is_finite() { face.score.clamp(0.05, 1.0) } else { 0.05 };
    let sharp =
        if sharpness.is_finite() { sharpness.max(0.0) / (sharpness.max(0.0) + HALF_WEIGHT_SHARPNESS) } else { 0.0 };
    confidence * size * size * sharp.max(0.05)
}

/// The recent frames of one approach.
pub struct ApproachFusion {
    window: usize,
    frames: VecDeque<(Embedding, f32)>,
}

impl std::fmt::Debug for ApproachFusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApproachFusion").field("window", &self.window).field("frames", &self.frames.len()).finish()
    }
}

impl ApproachFusion {
    /// Fuses up to `window` recent frames (at least 1; 1 means no fusion).
    pub fn new(window: usize) -> Self {
        let window = window.max(1);
        Self { window, frames: VecDeque::with_capacity(window) }
    }

    /// Adds one frame's embedding with its weight and returns the probe to match: the weighted mean of the
    /// approach's recent frames, or this frame alone when it starts a new approach. `None` only when no frame
    /// carries weight.
    pub fn add(&mut self, embedding: Embedding, weight: f32) -> Option<Embedding> {
        let same_person = Embedding::weighted_mean(self.frames.iter().map(|(e, w)| (e, *w)))
            .is_some_and(|so_far| so_far.cosine(&embedding) >= MIN_SAME_PERSON);
        if !same_person {
            self.frames.clear();
        }
        if self.frames.len() == self.window {
            self.frames.pop_front();
        }
        self.frames.push_back((embedding, weight));
        Embedding::weighted_mean(self.frames.iter().map(|(e, w)| (e, *w)))
    }

    /// Frames in the current approach.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True before the first frame of an approach.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Ends the approach (the face left, or a decision was made); its embeddings are wiped.
    pub fn reset(&mut self) {
        self.frames.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::embed::EMBEDDING_DIM;

    fn unit(axis: usize, noise_axis: usize, noise: f32) -> Embedding {
        let mut v = [0.0f32; EMBEDDING_DIM];
        v[axis] = 1.0;
        v[noise_axis] += noise;
        Embedding::from_raw(&v).unwrap()
    }

    #[test]
    fn frames_of_one_person_average_out_their_noise() {
        let mut fusion = ApproachFusion::new(3);
        let truth = unit(0, 0, 0.0);
        let first = fusion.add(unit(0, 1, 0.8), 1.0).unwrap();
        let second = fusion.add(unit(0, 2, 0.8), 1.0).unwrap();
        let third = fusion.add(unit(0, 3, 0.8), 1.0).unwrap();
        assert!(truth.cosine(&first) < truth.cosine(&second) && truth.cosine(&second) < truth.cosine(&third));
        assert_eq!(fusion.len(), 3);
        // The window slides: a fourth frame pushes the first out.
        fusion.add(unit(0, 4, 0.8), 1.0);
        assert_eq!(fusion.len(), 3);
    }

    #[test]
    fn someone_else_starts_a_new_approach_and_weights_count() {
        let mut fusion = ApproachFusion::new(5);
        fusion.add(unit(0, 1, 0.3), 1.0);
        fusion.add(unit(0, 2, 0.3), 1.0);
        let stranger = fusion.add(unit(7, 8, 0.3), 1.0).unwrap();
        assert_eq!(fusion.len(), 1, "a different face is not averaged with the resident's");
        assert!(stranger.cosine(&unit(7, 8, 0.3)) > 0.999);
        fusion.reset();
        assert!(fusion.is_empty());
        // A heavy frame pulls the mean towards itself.
        fusion.add(unit(0, 1, 0.5), 0.1);
        let fused = fusion.add(unit(0, 2, 0.5), 1.0).unwrap();
        assert!(fusion.add(unit(0, 3, 0.5), 0.0).is_some(), "a weightless frame leaves the others");
        assert!(fused.cosine(&unit(0, 2, 0.5)) > fused.cosine(&unit(0, 1, 0.5)));
    }
}
