//! The cancelable transform: a keyed random orthonormal rotation of the embedding space.
//!
//! Pure functions, no I/O, no clock. A [`TransformKey`] (32 secret bytes) seeds ChaCha20, which draws a
//! Gaussian 128x128 matrix; Gram-Schmidt makes it orthonormal. Rotating preserves every cosine, so matching
//! in the protected domain is exactly as accurate as in the raw one, while templates made under two keys are
//! unrelated (unlinkable) and a new key renews every template. Why a rotation and what it does not protect
//! against (a thief holding the key can undo it) is argued in ARCHITECTURE.md.

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::StandardNormal;
use sha2::{Digest, Sha256};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::vision::embed::{Embedding, EMBEDDING_DIM};

/// Secret seed of one transform. Wiped on drop; `Debug` prints nothing.
#[derive(Clone)]
pub struct TransformKey(super::Secret32);

impl TransformKey {
    /// A key from 32 secret bytes (from the key store, never from a literal in production).
    pub fn from_bytes(mut bytes: [u8; 32]) -> Self {
        Self(super::Secret32::from_array(&mut bytes))
    }

    /// Copies a 32-byte key from a (zeroizing) buffer without an intermediate copy; `None` for another length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        super::Secret32::from_slice(bytes).map(Self)
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self(super::Secret32::random())
    }

    /// The key's bytes, for sealing it in the key store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0 .0
    }

    /// A public identifier of the transform (not secret: a one-way hash of the key), stored beside sealed
    /// templates and bound into their associated data so a template is never matched under the wrong key.
    pub fn transform_id(&self) -> TransformId {
        let digest = Sha256::new().chain_update(b"facegate transform id v1").chain_update(&self.0 .0[..]).finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        TransformId(u64::from_be_bytes(id))
    }
}

impl fmt::Debug for TransformKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransformKey").finish_non_exhaustive()
    }
}

/// Public identifier of a transform key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransformId(pub u64);

/// The rotation a key defines: a 128x128 orthonormal matrix, row-major. Secret (it is the key, expanded);
/// wiped on drop.
#[derive(ZeroizeOnDrop)]
pub struct Rotation {
    matrix: Box<[f32; EMBEDDING_DIM * EMBEDDING_DIM]>,
    #[zeroize(skip)]
    id: TransformId,
}

impl fmt::Debug for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotation").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Rotation {
    /// Expands a key into its rotation (about a millisecond; do it once per key, not per frame).
    pub fn from_key(key: &TransformKey) -> Self {
        let mut rng = ChaCha20Rng::from_seed(*key.0 .0);
        let n = EMBEDDING_DIM;
        // Gram-Schmidt in f64 over Gaussian rows gives a Haar-distributed orthonormal matrix.
        let mut rows = Zeroizing::new(vec![0.0f64; n * n]);
        for value in rows.iter_mut() {
            *value = rng.sample(StandardNormal);
        }
        for i in 0..n {
            for j in 0..i {
                let dot: f64 = (0..n).map(|k| rows[i * n + k] * rows[j * n + k]).sum();
                for k in 0..n {
                    rows[i * n + k] -= dot * rows[j * n + k];
                }
            }
            let norm = (0..n).map(|k| rows[i * n + k].powi(2)).sum::<f64>().sqrt();
            for k in 0..n {
                rows[i * n + k] /= norm;
            }
        }
        let mut matrix = Box::new([0.0f32; EMBEDDING_DIM * EMBEDDING_DIM]);
        for (dst, src) in matrix.iter_mut().zip(rows.iter()) {
            #[allow(clippy::cast_possible_truncation)]
            {
                *dst = *src as f32;
            }
        }
        Self { matrix, id: key.transform_id() }
    }

    /// The transform's public identifier.
    pub fn id(&self) -> TransformId {
        self.id
    }

    /// Protects an embedding: `R e`, still unit length.
    pub fn protect(&self, embedding: &Embedding) -> ProtectedTemplate {
        let e = embedding.as_slice();
        let mut values = Box::new([0.0f32; EMBEDDING_DIM]);
        for (row_idx, out) in values.iter_mut().enumerate() {
            let row = &self.matrix[row_idx * EMBEDDING_DIM..(row_idx + 1) * EMBEDDING_DIM];
            *out = row.iter().zip(e).map(|(a, b)| a * b).sum();
        }
        ProtectedTemplate { values, transform: self.id }
    }
}

/// Carries templates from one transform to another without the embeddings: `M = R_new R_oldᵀ`, applied as
/// `t' = M t`. Secret like the rotations it is made of; wiped on drop.
#[derive(ZeroizeOnDrop)]
pub struct Renewal {
    matrix: Box<[f32; EMBEDDING_DIM * EMBEDDING_DIM]>,
    #[zeroize(skip)]
    from: TransformId,
    #[zeroize(skip)]
    to: TransformId,
}

impl fmt::Debug for Renewal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renewal").field("from", &self.from).field("to", &self.to).finish_non_exhaustive()
    }
}

impl Rotation {
    /// The renewal from this transform to `new`.
    pub fn renewal_to(&self, new: &Rotation) -> Renewal {
        let n = EMBEDDING_DIM;
        let mut matrix = Box::new([0.0f32; EMBEDDING_DIM * EMBEDDING_DIM]);
        for i in 0..n {
            for j in 0..n {
                let row_new = &new.matrix[i * n..(i + 1) * n];
                let row_old = &self.matrix[j * n..(j + 1) * n];
                let dot: f64 = row_new.iter().zip(row_old).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                #[allow(clippy::cast_possible_truncation)]
                {
                    matrix[i * n + j] = dot as f32;
                }
            }
        }
        Renewal { matrix, from: self.id, to: new.id }
    }
}

impl Renewal {
    /// The transform templates come from.
    pub fn from(&self) -> TransformId {
        self.from
    }

    /// The transform templates go to.
    pub fn to(&self) -> TransformId {
        self.to
    }

    /// The template under the new transform (renormalised so rounding never accumulates), or `None` if it
    /// was not made under [`Renewal::from`].
    pub fn apply(&self, template: &ProtectedTemplate) -> Option<ProtectedTemplate> {
        if template.transform != self.from {
            return None;
        }
        let mut values = Box::new([0.0f32; EMBEDDING_DIM]);
        for (row_idx, out) in values.iter_mut().enumerate() {
            let row = &self.matrix[row_idx * EMBEDDING_DIM..(row_idx + 1) * EMBEDDING_DIM];
            *out = row.iter().zip(template.values.iter()).map(|(a, b)| a * b).sum();
        }
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        if !(norm.is_finite() && norm > 0.5) {
            return None;
        }
        values.iter_mut().for_each(|v| *v /= norm);
        Some(ProtectedTemplate { values, transform: self.to })
    }
}

/// An embedding after the keyed transform. Still biometric data while in memory (whoever holds the key can
/// undo it), so it is treated as a secret: wiped on drop, no `Debug` of values, no `Serialize`.
#[derive(ZeroizeOnDrop)]
pub struct ProtectedTemplate {
    values: Box<[f32; EMBEDDING_DIM]>,
    #[zeroize(skip)]
    transform: TransformId,
}

impl fmt::Debug for ProtectedTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtectedTemplate").field("transform", &self.transform).finish_non_exhaustive()
    }
}

impl ProtectedTemplate {
    /// Rebuilds a template from its values (after unsealing). `None` if the length is wrong or a value is
    /// not finite.
    pub fn from_values(values: &[f32], transform: TransformId) -> Option<Self> {
        if values.len() != EMBEDDING_DIM || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut boxed = Box::new([0.0f32; EMBEDDING_DIM]);
        boxed.copy_from_slice(values);
        Some(Self { values: boxed, transform })
    }

    /// The transform it was made under.
    pub fn transform(&self) -> TransformId {
        self.transform
    }

    /// The values; only sealing and matching read them.
    pub fn as_slice(&self) -> &[f32] {
        &self.values[..]
    }

    /// Cosine with another template of the same transform (both are unit vectors).
    pub fn cosine(&self, other: &ProtectedTemplate) -> f32 {
        self.values.iter().zip(other.values.iter()).map(|(a, b)| a * b).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::{ChaCha20Rng, Embedding, Rotation, SeedableRng, StandardNormal, TransformKey, EMBEDDING_DIM};
    use proptest::prelude::*;

    fn embedding_from(seed: u64) -> Embedding {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let raw: Vec<f32> = (0..EMBEDDING_DIM).map(|_| rand::Rng::sample::<f32, _>(&mut rng, StandardNormal)).collect();
        Embedding::from_raw(&raw).unwrap()
    }

    fn key(byte: u8) -> TransformKey {
        TransformKey::from_bytes([byte; 32])
    }

    #[test]
    fn the_rotation_is_orthonormal() {
        let r = Rotation::from_key(&key(7));
        for i in 0..EMBEDDING_DIM {
            for j in 0..EMBEDDING_DIM {
                let dot: f32 =
                    (0..EMBEDDING_DIM).map(|k| r.matrix[i * EMBEDDING_DIM + k] * r.matrix[j * EMBEDDING_DIM + k]).sum();
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!((dot - expected).abs() < 1e-5, "row {i}.{j} = {dot}");
            }
        }
    }

    #[test]
    fn the_same_key_gives_the_same_rotation_and_id() {
        let (a, b) = (Rotation::from_key(&key(3)), Rotation::from_key(&key(3)));
        assert_eq!(a.matrix[..], b.matrix[..]);
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), Rotation::from_key(&key(4)).id());
    }

    #[test]
    fn debug_shows_no_secret() {
        let k = key(0xAB);
        assert!(!format!("{k:?}").contains("171"));
        let t = Rotation::from_key(&k).protect(&embedding_from(1));
        let shown = format!("{t:?}");
        assert!(!shown.contains("0.") && shown.starts_with("ProtectedTemplate"), "{shown}");
    }

    proptest! {
        /// Scores are preserved under one key (accuracy is unchanged) ...
        #[test]
        fn cosines_are_preserved(seed_a in any::<u64>(), seed_b in any::<u64>(), key_byte in any::<u8>()) {
            let (a, b) = (embedding_from(seed_a), embedding_from(seed_b));
            let r = Rotation::from_key(&key(key_byte));
            let (pa, pb) = (r.protect(&a), r.protect(&b));
            prop_assert!((pa.cosine(&pb) - a.cosine(&b)).abs() < 1e-5);
            prop_assert!((pa.cosine(&pa) - 1.0).abs() < 1e-5);
        }

        /// A renewal carries an old-key template to exactly what the new key makes of the embedding.
        #[test]
        fn a_renewal_equals_protecting_under_the_new_key(seed in any::<u64>(), k1 in 0u8..128, k2 in 128u8..=255) {
            let e = embedding_from(seed);
            let (old, new) = (Rotation::from_key(&key(k1)), Rotation::from_key(&key(k2)));
            let renewed = old.renewal_to(&new).apply(&old.protect(&e)).unwrap();
            prop_assert_eq!(renewed.transform(), new.id());
            prop_assert!((renewed.cosine(&new.protect(&e)) - 1.0).abs() < 1e-5);
            prop_assert!(old.renewal_to(&new).apply(&new.protect(&e)).is_none(), "wrong source transform");
        }

        /// ... while the same face under two keys gives unrelated templates (cosine near 0, |c| < 0.45 for
        /// 128-d random directions with overwhelming probability), and the protected template is not the
        /// raw embedding.
        #[test]
        fn two_keys_give_unrelated_templates(seed in any::<u64>(), k1 in 0u8..128, k2 in 128u8..=255) {
            let e = embedding_from(seed);
            let (t1, t2) = (Rotation::from_key(&key(k1)).protect(&e), Rotation::from_key(&key(k2)).protect(&e));
            prop_assert!(t1.cosine(&t2).abs() < 0.45, "cosine {}", t1.cosine(&t2));
            let raw_vs_protected: f32 = t1.as_slice().iter().zip(e.as_slice()).map(|(a, b)| a * b).sum();
            prop_assert!(raw_vs_protected.abs() < 0.45);
        }
    }
}
