//! `[detector]`, `[enrolment]` and `[liveness]`: the numbers of the vision path.
//!
//! Owns their ranges; the defaults come from the vision modules themselves, so a tuned default is changed in
//! one place. Never loads a model.

use serde::Deserialize;

use super::error::{float_in, in_range, invalid, ConfigError};
use crate::vision::detect::DetectorConfig;
use crate::vision::pipeline::PipelineConfig;

/// `[detector]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDetector {
    /// Minimum detector score.
    pub score_threshold: Option<f32>,
    /// NMS IoU.
    pub nms_iou: Option<f32>,
    /// Longest side of the detector's working picture.
    pub max_side: Option<u32>,
    /// Smallest face width embedded, in pixels.
    pub min_face_px: Option<f32>,
}

/// `[enrolment]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnrolment {
    /// Good frames averaged into one template.
    pub frames: Option<usize>,
}

/// `[liveness]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLiveness {
    /// Live-score threshold (0..1); a face (mean over a decision's frames) below it does not open.
    pub threshold: Option<f32>,
}

/// The detector's and the embedder's settings.
pub(super) fn pipeline(raw: &RawDetector) -> Result<PipelineConfig, ConfigError> {
    let defaults = PipelineConfig::default();
    let score = raw.score_threshold.unwrap_or(defaults.detector.score_threshold);
    let score_threshold = float_in("detector.score_threshold", score, score > 0.0 && score < 1.0, "(0, 1)")?;
    let iou = raw.nms_iou.unwrap_or(defaults.detector.nms_iou);
    let nms_iou = float_in("detector.nms_iou", iou, iou > 0.0 && iou <= 1.0, "(0, 1]")?;
    let max_side = raw.max_side.unwrap_or(defaults.detector.max_side);
    if !(64..=4096).contains(&max_side) {
        return Err(invalid("detector.max_side", format!("{max_side} is not in 64..=4096 pixels")));
    }
    let px = raw.min_face_px.unwrap_or(defaults.min_face_px);
    let min_face_px =
        float_in("detector.min_face_px", px, px.is_finite() && (0.0..=1000.0).contains(&px), "0..=1000 pixels")?;
    Ok(PipelineConfig {
        detector: DetectorConfig { score_threshold, nms_iou, max_side, ..defaults.detector },
        min_face_px,
    })
}

/// Good frames averaged into one template.
pub(super) fn enrol_frames(raw: &RawEnrolment) -> Result<usize, ConfigError> {
    in_range("enrolment.frames", raw.frames.unwrap_or(3), 1..=20)
}

/// The live-score threshold; open at both ends, since 0 would pass every photo and 1 no face.
pub(super) fn live_threshold(raw: &RawLiveness) -> Result<f32, ConfigError> {
    let t = raw.threshold.unwrap_or(crate::vision::liveness::DEFAULT_LIVE_THRESHOLD);
    float_in("liveness.threshold", t, t > 0.0 && t < 1.0, "(0, 1)")
}
