//! Liveness: is the face in front of the camera a live person, or a printed photo or a screen held up to it
//! (presentation-attack detection)? Runs after detection, on the same frame, with the MiniFASNetV2 (crop
//! 2.7x the face box) and MiniFASNetV1SE (4.0x) pair from Silent-Face-Anti-Spoofing, through tract, prepared
//! exactly as upstream does: BGR, raw 0..255, the crop shifted back inside the frame (never padded), 80x80
//! bilinear. The two softmaxes are averaged; class 1 is live.
//!
//! Owns the crop geometry (pure), the 80x80 patches (wiped after each run, like every model input) and the
//! live-score threshold. It never stores or logs a patch or a score tied to anyone; a failed check costs the
//! person nothing but a pointer to the other ways in. One RGB camera and a passive model stop printed photos
//! well; screens and masks far less reliably: see docs/liveness.md.

use std::path::Path;

use ndarray::Array4;

use crate::capture::Frame;
use crate::vision::detect::BoundingBox;
use crate::vision::model::{ModelError, ModelSpec, OnnxGraph, RunnablePlan};

/// MiniFASNetV2, crop 2.7x the face box.
pub const MINIFAS_V2: ModelSpec = ModelSpec {
    file_name: "pad/2.7_80x80_MiniFASNetV2.onnx",
    sha256: "4433e871ef03f6c4c13de1757e63dcd69db14b6d7d9cff2319cb274c0f6dbecb",
};

/// MiniFASNetV1SE, crop 4.0x the face box.
pub const MINIFAS_V1SE: ModelSpec = ModelSpec {
    file_name: "pad/4_0_0_80x80_MiniFASNetV1SE.onnx",
    sha256: "a8e67ffbaf39fa74c3b2ed673b530fcfb2f47379d0f26a52b71c2fc6473ec20f",
};

/// Side of the square patch both models read.
pub const PATCH: usize = 80;

/// The crop scales of the two models, in the order of [`LivenessModel`]'s runs.
pub const SCALES: [f64; 2] = [2.7, 4.0];

/// The live-probability threshold, calibrated with facegate's own YuNet boxes on `../shared/spoof`
/// (`facegate eval-pad`, see README): a face (or the mean over a decision's frames) at or above it is live.
pub const DEFAULT_LIVE_THRESHOLD: f32 = 0.5;

/// Errors of the liveness check.
#[derive(Debug, thiserror::Error)]
pub enum LivenessError {
    /// A model could not be loaded or run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The face box is empty, not finite, or outside the frame.
    #[error("the face box {0:?} does not lie in the frame; no liveness check possible")]
    BadBox(BoundingBox),
    /// A model returned something other than three logits.
    #[error("a liveness model returned {0} values, expected 3 logits")]
    Output(usize),
}

/// The two models, each planned once for an 80x80 patch. `&self`, so one instance serves every thread.
#[derive(Debug)]
pub struct LivenessModel {
    plans: [RunnablePlan; 2],
}

impl LivenessModel {
    /// Loads and checks both models from `<models_dir>/pad/`.
    pub fn load(models_dir: &Path) -> Result<Self, LivenessError> {
        let plan = |spec| OnnxGraph::load(models_dir, spec).and_then(|g| g.plan([1, 3, PATCH, PATCH]));
        Ok(Self { plans: [plan(MINIFAS_V2)?, plan(MINIFAS_V1SE)?] })
    }

    /// The probability (0..1) that the face in `bbox` is live: the mean of the two models' softmax for class 1.
    pub fn score(&self, frame: &Frame, bbox: &BoundingBox) -> Result<f32, LivenessError> {
        let [a, b] = self.scores(frame, bbox)?;
        Ok(f32::midpoint(a, b))
    }

    /// Each model's live probability, in the order of [`SCALES`] (for calibration and diagnosis).
    pub fn scores(&self, frame: &Frame, bbox: &BoundingBox) -> Result<[f32; 2], LivenessError> {
        self.scores_in_upstream_box(frame, &upstream_box(bbox))
    }

    /// As [`Self::scores`], for a box already shaped like upstream's detector's.
    fn scores_in_upstream_box(&self, frame: &Frame, bbox: &BoundingBox) -> Result<[f32; 2], LivenessError> {
        let mut live = [0.0; 2];
        for ((plan, scale), out) in self.plans.iter().zip(SCALES).zip(&mut live) {
            let window = crop_window(frame.width(), frame.height(), bbox, scale).ok_or(LivenessError::BadBox(*bbox))?;
            let outputs = plan.run(patch(frame, window))?;
            let logits: Vec<f32> = outputs.into_iter().next().map(|o| o.iter().copied().collect()).unwrap_or_default();
            let [_, p_live, _] = softmax3(&logits).ok_or(LivenessError::Output(logits.len()))?;
            *out = p_live;
        }
        Ok(live)
    }
}

/// YuNet's box is taller than wide (brow to chin); the detector upstream trained with gives a box close to a
/// square around the same centre, and the crop is a multiple of the box. So the box is squared, side = the
/// larger of width and height, before cropping; on `../shared/spoof` this separates live faces from prints
/// (see `facegate eval-pad`), where YuNet's own box gives 6 % BPCER at the same APCER.
pub fn upstream_box(bbox: &BoundingBox) -> BoundingBox {
    let side = bbox.width.max(bbox.height);
    BoundingBox {
        x: bbox.x + (bbox.width - side) / 2.0,
        y: bbox.y + (bbox.height - side) / 2.0,
        width: side,
        height: side,
    }
}

/// The crop around a face for one model, as upstream's `CropImage._get_new_box`: `scale` times the box (less
/// if the frame is too small), centred on the box, shifted back inside the frame, corners truncated to
/// integers. Returns `[left, top, right, bottom]`, inclusive, or `None` for a box that is empty, not finite or
/// entirely outside the frame.
pub fn crop_window(width: u32, height: u32, bbox: &BoundingBox, scale: f64) -> Option<[u32; 4]> {
    let (w, h) = (f64::from(bbox.width), f64::from(bbox.height));
    let (x, y) = (f64::from(bbox.x), f64::from(bbox.y));
    let (src_w, src_h) = (f64::from(width), f64::from(height));
    if !(w > 0.0 && h > 0.0 && x.is_finite() && y.is_finite() && w.is_finite() && h.is_finite())
        || width < 2
        || height < 2
    {
        return None;
    }
    if x + w <= 0.0 || y + h <= 0.0 || x >= src_w || y >= src_h {
        return None;
    }
    // f64 throughout, as upstream's Python floats: 2.7 as f32 would move a corner by a pixel.
    let scale = ((src_h - 1.0) / h).min((src_w - 1.0) / w).min(scale);
    let (new_w, new_h) = (w * scale, h * scale);
    let (cx, cy) = (x + w / 2.0, y + h / 2.0);
    let (mut left, mut top, mut right, mut bottom) =
        (cx - new_w / 2.0, cy - new_h / 2.0, cx + new_w / 2.0, cy + new_h / 2.0);
    if left < 0.0 {
        right -= left;
        left = 0.0;
    }
    if top < 0.0 {
        bottom -= top;
        top = 0.0;
    }
    if right > src_w - 1.0 {
        left -= right - src_w + 1.0;
        right = src_w - 1.0;
    }
    if bottom > src_h - 1.0 {
        top -= bottom - src_h + 1.0;
        bottom = src_h - 1.0;
    }
    // Python's int(): toward zero; then kept inside the frame whatever rounding did.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let clamp = |v: f64, max: f64| v.trunc().clamp(0.0, max) as u32;
    let window =
        [clamp(left, src_w - 1.0), clamp(top, src_h - 1.0), clamp(right, src_w - 1.0), clamp(bottom, src_h - 1.0)];
    (window[2] >= window[0] && window[3] >= window[1]).then_some(window)
}

/// The 80x80 model input for a crop window: OpenCV `INTER_LINEAR` resize (half-pixel centres, no area
/// averaging, each value rounded to 0..255 as OpenCV's 8-bit output is), BGR, NCHW, raw 0..255.
pub fn patch(frame: &Frame, [left, top, right, bottom]: [u32; 4]) -> Array4<f32> {
    let (crop_w, crop_h) = ((right - left + 1) as usize, (bottom - top + 1) as usize);
    let (sx, sy) = (crop_w as f32 / PATCH as f32, crop_h as f32 / PATCH as f32);
    let taps = |d: usize, scale: f32, len: usize| {
        let f = (d as f32 + 0.5) * scale - 0.5;
        let i = f.floor();
        let mut frac = f - i;
        #[allow(clippy::cast_possible_truncation)]
        let mut i = i as i64;
        if i < 0 {
            i = 0;
            frac = 0.0;
        }
        let last = len as i64 - 1;
        if i >= last {
            i = last;
            frac = 0.0;
        }
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
        let i = i as usize;
        (i, (i + 1).min(len - 1), frac)
    };
    let mut input = Array4::<f32>::zeros((1, 3, PATCH, PATCH));
    for dy in 0..PATCH {
        let (y0, y1, fy) = taps(dy, sy, crop_h);
        for dx in 0..PATCH {
            let (x0, x1, fx) = taps(dx, sx, crop_w);
            #[allow(clippy::cast_possible_truncation)]
            let px = |x: usize, y: usize| frame.pixel(left + x as u32, top + y as u32);
            let (a, b, c, d) = (px(x0, y0), px(x1, y0), px(x0, y1), px(x1, y1));
            for channel in 0..3 {
                let top_row = f32::from(a[channel]) * (1.0 - fx) + f32::from(b[channel]) * fx;
                let bottom_row = f32::from(c[channel]) * (1.0 - fx) + f32::from(d[channel]) * fx;
                let value = (top_row * (1.0 - fy) + bottom_row * fy).round().clamp(0.0, 255.0);
                // RGB frame -> BGR planes.
                input[[0, 2 - channel, dy, dx]] = value;
            }
        }
    }
    input
}

/// Softmax of three logits, or `None` if there are not exactly three finite ones.
pub fn softmax3(logits: &[f32]) -> Option<[f32; 3]> {
    let [a, b, c] = <[f32; 3]>::try_from(logits).ok()?;
    if !(a.is_finite() && b.is_finite() && c.is_finite()) {
        return None;
    }
    let max = a.max(b).max(c);
    let e = [(a - max).exp(), (b - max).exp(), (c - max).exp()];
    let sum = e[0] + e[1] + e[2];
    Some([e[0] / sum, e[1] / sum, e[2] / sum])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bbox(x: f32, y: f32, width: f32, height: f32) -> BoundingBox {
        BoundingBox { x, y, width, height }
    }

    #[test]
    fn the_crop_is_centred_scaled_and_shifted_inside_as_upstream() {
        // A 100x100 face in the middle of 640x480: 270x270 around (320, 240).
        assert_eq!(crop_window(640, 480, &bbox(270.0, 190.0, 100.0, 100.0), 2.7), Some([185, 105, 455, 375]));
        // Near the left edge: shifted right, not padded, same size.
        assert_eq!(crop_window(640, 480, &bbox(0.0, 190.0, 100.0, 100.0), 2.7), Some([0, 105, 270, 375]));
        // Near the bottom right corner.
        assert_eq!(crop_window(640, 480, &bbox(560.0, 400.0, 80.0, 80.0), 2.7), Some([423, 263, 639, 479]));
        // Too big for the scale: the scale shrinks to fit the frame's height.
        let big = crop_window(640, 480, &bbox(200.0, 100.0, 200.0, 200.0), 4.0).unwrap();
        assert_eq!((big[1], big[3]), (0, 479));
        assert_eq!(big[2] - big[0], 479);
    }

    #[test]
    fn degenerate_boxes_are_refused_without_panicking() {
        for b in [
            bbox(0.0, 0.0, 0.0, 10.0),
            bbox(0.0, 0.0, 10.0, -1.0),
            bbox(f32::NAN, 0.0, 10.0, 10.0),
            bbox(0.0, 0.0, f32::INFINITY, 10.0),
            bbox(700.0, 10.0, 20.0, 20.0),
            bbox(-50.0, -50.0, 20.0, 20.0),
        ] {
            assert_eq!(crop_window(640, 480, &b, 2.7), None, "{b:?}");
        }
        assert_eq!(crop_window(1, 1, &bbox(0.0, 0.0, 1.0, 1.0), 2.7), None);
        // A tiny face in a tiny frame still yields a window inside the frame.
        let w = crop_window(3, 3, &bbox(1.0, 1.0, 1.0, 1.0), 4.0).unwrap();
        assert!(w[2] <= 2 && w[3] <= 2);
    }

    #[test]
    fn the_patch_is_bgr_raw_and_resized_bilinearly() {
        // A frame with R = x, G = y, B = 200: a 160x160 crop halves each axis.
        let (w, h) = (160u32, 160u32);
        let rgb: Vec<u8> = (0..h).flat_map(|y| (0..w).flat_map(move |x| [x as u8, y as u8, 200])).collect();
        let frame = Frame::from_rgb(w, h, rgb).unwrap();
        let p = patch(&frame, [0, 0, 159, 159]);
        assert_eq!(p.shape(), &[1, 3, 80, 80]);
        // Plane 0 is blue, plane 2 is red; values are raw 0..255, not normalised.
        assert_eq!(p[[0, 0, 10, 10]], 200.0);
        // Destination x=10 samples source x = 10.5*2 - 0.5 = 20.5: the mean of 20 and 21, rounded.
        assert_eq!(p[[0, 2, 10, 10]], 21.0);
        assert_eq!(p[[0, 1, 10, 10]], 21.0);
        assert_eq!(p[[0, 2, 0, 79]], 159.0, "the last column clamps to the crop's edge");
        // A crop smaller than 80 upsamples.
        let small = patch(&frame, [40, 40, 59, 59]);
        assert!((40.0..=59.0).contains(&small[[0, 2, 40, 40]]));
    }

    #[test]
    fn softmax_is_a_distribution_and_rejects_bad_outputs() {
        let p = softmax3(&[1.0, 3.0, -2.0]).unwrap();
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6 && p[1] > p[0] && p[0] > p[2]);
        assert!(softmax3(&[1000.0, 0.0, 0.0]).unwrap()[0] > 0.999, "no overflow");
        assert_eq!(softmax3(&[1.0, 2.0]), None);
        assert_eq!(softmax3(&[1.0, f32::NAN, 0.0]), None);
    }
}
