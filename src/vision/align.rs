//! Align: a detected face warped onto the ArcFace 112x112 template that SFace was trained on.
//!
//! Pure functions only: the least-squares similarity transform (Umeyama, no reflection) from five landmarks to
//! the template, and a bilinear warp of the frame through it into an [`AlignedFace`], whose pixels are wiped
//! when dropped. No I/O, no clock, no logging of pixels.

use std::fmt;

use zeroize::ZeroizeOnDrop;

use crate::capture::Frame;
use crate::vision::detect::Landmarks;

/// Side of the aligned crop, in pixels.
pub const ALIGNED_SIZE: usize = 112;

/// Where the five landmarks belong in a 112x112 crop (the ArcFace template SFace expects).
pub const ARCFACE_TEMPLATE: Landmarks =
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]];

/// A similarity transform (rotation, uniform scale, translation, no reflection):
/// `x' = a x - b y + tx`, `y' = b x + a y + ty`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    /// scale * cos(angle).
    pub a: f64,
    /// scale * sin(angle).
    pub b: f64,
    /// Horizontal shift.
    pub tx: f64,
    /// Vertical shift.
    pub ty: f64,
}

impl Similarity {
    /// Builds one from scale, angle (radians) and shift.
    pub fn from_parts(scale: f64, angle: f64, tx: f64, ty: f64) -> Self {
        Self { a: scale * angle.cos(), b: scale * angle.sin(), tx, ty }
    }

    /// Maps a point.
    pub fn apply(&self, [x, y]: [f64; 2]) -> [f64; 2] {
        [self.a * x - self.b * y + self.tx, self.b * x + self.a * y + self.ty]
    }

    /// The uniform scale factor.
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    /// The inverse transform, or `None` if this one collapses the plane.
    pub fn inverse(&self) -> Option<Self> {
        let det = self.a * self.a + self.b * self.b;
        if det <= f64::EPSILON {
            return None;
        }
        let (a, b) = (self.a / det, -self.b / det);
        Some(Self { a, b, tx: -(a * self.tx - b * self.ty), ty: -(b * self.tx + a * self.ty) })
    }
}

/// The least-squares similarity taking `src` onto `dst` (Umeyama 1991 restricted to rotations, which in 2-D
/// has this closed form). `None` when the source points all coincide.
pub fn estimate_similarity(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<Similarity> {
    let n = src.len().min(dst.len());
    if n < 2 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let inv_n = 1.0 / n as f64;
    let mean = |pts: &[[f64; 2]]| {
        let (sx, sy) = pts.iter().take(n).fold((0.0, 0.0), |(sx, sy), p| (sx + p[0], sy + p[1]));
        [sx * inv_n, sy * inv_n]
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut dot, mut cross, mut var_src) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(dst).take(n) {
        let (sx, sy) = (s[0] - ms[0], s[1] - ms[1]);
        let (dx, dy) = (d[0] - md[0], d[1] - md[1]);
        dot += sx * dx + sy * dy;
        cross += sx * dy - sy * dx;
        var_src += sx * sx + sy * sy;
    }
    if var_src <= f64::EPSILON {
        return None;
    }
    let (a, b) = (dot / var_src, cross / var_src);
    Some(Similarity { a, b, tx: md[0] - (a * ms[0] - b * ms[1]), ty: md[1] - (b * ms[0] + a * ms[1]) })
}

/// The transform from a face's landmarks onto the ArcFace template.
pub fn template_transform(landmarks: &Landmarks) -> Option<Similarity> {
    let src = landmarks.map(|[x, y]| [f64::from(x), f64::from(y)]);
    let dst = ARCFACE_TEMPLATE.map(|[x, y]| [f64::from(x), f64::from(y)]);
    estimate_similarity(&src, &dst)
}

/// A 112x112 RGB face crop, ready for the embedder. Wiped on drop; `Debug` shows nothing of it.
#[derive(ZeroizeOnDrop)]
pub struct AlignedFace {
    rgb: Box<[u8; ALIGNED_SIZE * ALIGNED_SIZE * 3]>,
}

impl AlignedFace {
    /// The crop's RGB bytes, row-major.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb[..]
    }

    /// A crop from raw RGB bytes (for tests and for cross-checks against other runtimes).
    pub fn from_rgb(rgb: &[u8]) -> Option<Self> {
        let mut face = Self { rgb: Box::new([0; ALIGNED_SIZE * ALIGNED_SIZE * 3]) };
        if rgb.len() != face.rgb.len() {
            return None;
        }
        face.rgb.copy_from_slice(rgb);
        Some(face)
    }
}

impl fmt::Debug for AlignedFace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedFace").finish_non_exhaustive()
    }
}

/// Warps the frame through `to_crop` (frame -> crop coordinates) into a 112x112 crop, sampling bilinearly;
/// pixels from outside the frame are black, as OpenCV's `warpAffine` with a constant border gives.
pub fn warp(frame: &Frame, to_crop: &Similarity) -> Option<AlignedFace> {
    let to_frame = to_crop.inverse()?;
    let mut face = AlignedFace { rgb: Box::new([0; ALIGNED_SIZE * ALIGNED_SIZE * 3]) };
    let (w, h) = (i64::from(frame.width()), i64::from(frame.height()));
    let rgb = frame.rgb();
    let sample = |x: i64, y: i64, c: usize| -> f64 {
        if x < 0 || y < 0 || x >= w || y >= h {
            0.0
        } else {
            #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
            let i = ((y * w + x) * 3) as usize + c;
            f64::from(rgb[i])
        }
    };
    for v in 0..ALIGNED_SIZE {
        for u in 0..ALIGNED_SIZE {
            #[allow(clippy::cast_precision_loss)]
            let [sx, sy] = to_frame.apply([u as f64, v as f64]);
            let (fx, fy) = (sx.floor(), sy.floor());
            #[allow(clippy::cast_possible_truncation)]
            let (x0, y0) = (fx as i64, fy as i64);
            let (dx, dy) = (sx - fx, sy - fy);
            for c in 0..3 {
                let top = sample(x0, y0, c) * (1.0 - dx) + sample(x0 + 1, y0, c) * dx;
                let bottom = sample(x0, y0 + 1, c) * (1.0 - dx) + sample(x0 + 1, y0 + 1, c) * dx;
                let value = top * (1.0 - dy) + bottom * dy;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                {
                    face.rgb[(v * ALIGNED_SIZE + u) * 3 + c] = value.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    Some(face)
}

/// Aligns the face with these landmarks; `None` if the landmarks are degenerate.
pub fn align(frame: &Frame, landmarks: &Landmarks) -> Option<AlignedFace> {
    warp(frame, &template_transform(landmarks)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn recovers_a_known_similarity_exactly() {
        let truth = Similarity::from_parts(1.7, 0.4, -12.5, 33.0);
        let src = [[10.0, 20.0], [50.0, 22.0], [31.0, 40.0], [15.0, 60.0], [47.0, 61.0]];
        let dst = src.map(|p| truth.apply(p));
        let found = estimate_similarity(&src, &dst).unwrap();
        assert!(close(found.a, truth.a) && close(found.b, truth.b), "{found:?} vs {truth:?}");
        assert!(close(found.tx, truth.tx) && close(found.ty, truth.ty), "{found:?} vs {truth:?}");
    }

    proptest::proptest! {
        /// Any similarity (scale 0.1-10, any angle, any shift) applied to any non-degenerate five points is
        /// recovered, and a little landmark noise moves the estimate only a little.
        #[test]
        fn recovers_random_similarities(
            scale in 0.1f64..10.0,
            angle in -3.1f64..3.1,
            tx in -500.0f64..500.0,
            ty in -500.0f64..500.0,
            points in proptest::array::uniform5((0.0f64..300.0, 0.0f64..300.0)),
        ) {
            let src = points.map(|(x, y)| [x, y]);
            let spread: f64 = src.iter().map(|p| (p[0] - src[0][0]).abs() + (p[1] - src[0][1]).abs()).sum();
            proptest::prop_assume!(spread > 20.0);
            let truth = Similarity::from_parts(scale, angle, tx, ty);
            let dst = src.map(|p| truth.apply(p));
            let found = estimate_similarity(&src, &dst).unwrap();
            for p in src {
                let (a, b) = (found.apply(p), truth.apply(p));
                proptest::prop_assert!((a[0] - b[0]).abs() < 1e-6 * (1.0 + scale * 300.0));
                proptest::prop_assert!((a[1] - b[1]).abs() < 1e-6 * (1.0 + scale * 300.0));
            }
            proptest::prop_assert!((found.scale() - scale).abs() < 1e-9 * scale.max(1.0));
        }
    }

    #[test]
    fn never_returns_a_reflection() {
        // Mirrored points: the best similarity has positive determinant by construction (a^2 + b^2 > 0).
        let src = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        let dst = [[0.0, 0.0], [-1.0, 0.0], [0.0, 1.0]];
        let found = estimate_similarity(&src, &dst).unwrap();
        assert!(found.a * found.a + found.b * found.b > 0.0);
    }

    #[test]
    fn inverse_undoes_the_transform() {
        let t = Similarity::from_parts(0.6, -1.1, 4.0, -7.0);
        let p = [13.0, -2.5];
        let back = t.inverse().unwrap().apply(t.apply(p));
        assert!(close(back[0], p[0]) && close(back[1], p[1]));
    }

    #[test]
    fn degenerate_landmarks_give_none() {
        assert!(template_transform(&[[5.0, 5.0]; 5]).is_none());
    }

    #[test]
    fn warp_samples_through_the_inverse() {
        // A frame whose pixel value encodes its x coordinate; a pure shift by (+10, +20) into the crop means
        // crop pixel (u, v) reads frame pixel (u - 10, v - 20).
        let (w, h) = (200u32, 200u32);
        let mut rgb = Vec::new();
        for _y in 0..h {
            for x in 0..w {
                rgb.extend_from_slice(&[x as u8, 0, 0]);
            }
        }
        let frame = Frame::from_rgb(w, h, rgb).unwrap();
        let shift = Similarity { a: 1.0, b: 0.0, tx: 10.0, ty: 20.0 };
        let face = warp(&frame, &shift).unwrap();
        let at = |u: usize, v: usize| face.rgb()[(v * ALIGNED_SIZE + u) * 3];
        assert_eq!(at(50, 50), 40);
        assert_eq!(at(5, 50), 0); // x = -5: outside the frame, black
        assert_eq!(at(50, 10), 0); // y = -10: outside
    }

    #[test]
    fn landmarks_on_the_template_map_to_themselves() {
        let t = template_transform(&ARCFACE_TEMPLATE).unwrap();
        assert!(close(t.a, 1.0) && t.b.abs() < 1e-9 && t.tx.abs() < 1e-6 && t.ty.abs() < 1e-6);
    }
}
