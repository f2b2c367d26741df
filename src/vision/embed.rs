//! Embed: an aligned face becomes a 128-d unit vector, with SFace.
//!
//! Owns the embedder's input layout (RGB, raw 0..255, NCHW), L2 normalisation, and the [`Embedding`] type:
//! plain biometric data that lives only in memory, is wiped on drop, cannot be cloned by accident, and has no
//! `Debug`, `Display` or `Serialize` that could print or send it. Nothing here writes or logs.

use std::fmt;
use std::path::Path;

use ndarray::Array4;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::vision::align::{AlignedFace, ALIGNED_SIZE};
use crate::vision::model::{ModelError, OnnxGraph, RunnablePlan, SFACE};

/// Length of an embedding.
pub const EMBEDDING_DIM: usize = 128;

/// An L2-normalised face embedding. Secret: wiped on drop, never printed or serialised.
#[derive(ZeroizeOnDrop)]
pub struct Embedding {
    values: Box<[f32; EMBEDDING_DIM]>,
}

impl Embedding {
    /// Normalises a raw model output to unit length. `None` for a zero or non-finite vector.
    pub fn from_raw(raw: &[f32]) -> Option<Self> {
        if raw.len() != EMBEDDING_DIM || raw.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm <= f32::EPSILON {
            return None;
        }
        let mut values = Box::new([0.0f32; EMBEDDING_DIM]);
        for (dst, src) in values.iter_mut().zip(raw) {
            *dst = src / norm;
        }
        Some(Self { values })
    }

    /// Cosine similarity with another embedding (a dot product, both being unit vectors), in -1..1.
    pub fn cosine(&self, other: &Embedding) -> f32 {
        self.values.iter().zip(other.values.iter()).map(|(a, b)| a * b).sum()
    }

    /// The unit vector. Only the template protection and matching code may read it.
    pub fn as_slice(&self) -> &[f32] {
        &self.values[..]
    }

    /// The unit-length mean of several embeddings of one person (enrolment averages good frames).
    pub fn mean(embeddings: &[Embedding]) -> Option<Self> {
        Self::weighted_mean(embeddings.iter().map(|e| (e, 1.0)))
    }

    /// The unit-length mean of embeddings of one person, each counted with a weight (negative weights count
    /// as zero). `None` when nothing carries weight.
    pub fn weighted_mean<'a>(parts: impl IntoIterator<Item = (&'a Embedding, f32)>) -> Option<Self> {
        let mut sum = zeroize::Zeroizing::new([0.0f32; EMBEDDING_DIM]);
        for (e, weight) in parts {
            let weight = if weight.is_finite() { weight.max(0.0) } else { 0.0 };
            for (s, v) in sum.iter_mut().zip(e.values.iter()) {
                *s += weight * v;
            }
        }
        Self::from_raw(&sum[..])
    }
}

impl fmt::Debug for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedding").finish_non_exhaustive()
    }
}

/// Errors of the embedder.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model could not be loaded or run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The model returned something that is not a usable vector.
    #[error("the embedder returned an unusable vector (wrong length, zero or not finite)")]
    Degenerate,
}

/// SFace, loaded and optimised once. Shareable between threads.
pub struct Embedder {
    plan: RunnablePlan,
}

impl fmt::Debug for Embedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedder").finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads, checks and optimises SFace from the models folder.
    pub fn load(models_dir: &Path) -> Result<Self, EmbedError> {
        let graph = OnnxGraph::load(models_dir, SFACE)?;
        Ok(Self { plan: graph.plan([1, 3, ALIGNED_SIZE, ALIGNED_SIZE])? })
    }

    /// Runs SFace on a crop and returns the unit-length embedding.
    pub fn embed(&self, face: &AlignedFace) -> Result<Embedding, EmbedError> {
        let raw = self.embed_raw(face)?;
        Embedding::from_raw(&raw[..]).ok_or(EmbedError::Degenerate)
    }

    /// The model's output before normalisation (for cross-checks against another runtime).
    pub fn embed_raw(&self, face: &AlignedFace) -> Result<zeroize::Zeroizing<Vec<f32>>, EmbedError> {
        let outputs = self.plan.run(input_tensor(face))?;
        let mut first = outputs.into_iter().next().ok_or(EmbedError::Degenerate)?;
        let raw = zeroize::Zeroizing::new(first.iter().copied().collect::<Vec<f32>>());
        if let Some(values) = first.as_slice_mut() {
            values.zeroize();
        }
        if raw.len() != EMBEDDING_DIM {
            return Err(EmbedError::Degenerate);
        }
        Ok(raw)
    }
}

/// SFace's input: NCHW, RGB, raw 0..255 (the graph normalises itself).
pub fn input_tensor(face: &AlignedFace) -> Array4<f32> {
    let mut input = Array4::<f32>::zeros((1, 3, ALIGNED_SIZE, ALIGNED_SIZE));
    let plane = ALIGNED_SIZE * ALIGNED_SIZE;
    if let Some(values) = input.as_slice_mut() {
        for (i, px) in face.rgb().chunks_exact(3).enumerate() {
            values[i] = f32::from(px[0]);
            values[plane + i] = f32::from(px[1]);
            values[2 * plane + i] = f32::from(px[2]);
        }
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_rejects_degenerate_vectors() {
        let mut raw = [0.0f32; EMBEDDING_DIM];
        raw[0] = 3.0;
        raw[1] = 4.0;
        let e = Embedding::from_raw(&raw).unwrap();
        assert!((e.as_slice()[0] - 0.6).abs() < 1e-6 && (e.as_slice()[1] - 0.8).abs() < 1e-6);
        assert!((e.cosine(&e) - 1.0).abs() < 1e-6);
        assert!(Embedding::from_raw(&[0.0; EMBEDDING_DIM]).is_none());
        assert!(Embedding::from_raw(&[f32::NAN; EMBEDDING_DIM]).is_none());
        assert!(Embedding::from_raw(&[1.0; 3]).is_none());
    }

    #[test]
    fn debug_prints_no_values() {
        let mut raw = [0.0f32; EMBEDDING_DIM];
        raw[5] = 0.123_456;
        let e = Embedding::from_raw(&raw).unwrap();
        let shown = format!("{e:?}");
        assert!(!shown.contains('1') && shown.starts_with("Embedding"), "{shown}");
    }
}
