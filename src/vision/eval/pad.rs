//! Presentation-attack evaluation (ISO/IEC 30107-3 terms): reads a folder laid out like `../shared/spoof`
//! (`manifest.csv` with `file,label,attack_type`), runs facegate's own detector and the liveness pair on every
//! image, and reports, per attack type, APCER (attacks accepted as live) and BPCER (live faces rejected). The
//! metrics are pure ([`pad_metrics`]); scores stay in memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::capture::{decode_file, DecodeLimits};
use crate::vision::detect::{self, Detector};
use crate::vision::liveness::LivenessModel;

/// One image's outcome: its label, attack type and live score (`None`: no face found, or no score).
#[derive(Clone, Debug, PartialEq)]
pub struct PadSample {
    /// The file, relative to the folder.
    pub file: String,
    /// `true` for a live face (bona fide presentation).
    pub live: bool,
    /// `none` for live faces, else the attack type (`print`, `screen`, ...).
    pub attack_type: String,
    /// The live probability of the largest face, if one was found.
    pub score: Option<f32>,
}

/// The report, in the keys the issue names (rates as fractions).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PadReport {
    /// Live images.
    pub live: usize,
    /// Attack images per attack type.
    pub attacks: BTreeMap<String, usize>,
    /// Attacks accepted as live, per attack type.
    pub apcer: BTreeMap<String, f64>,
    /// Live images rejected (including those where no face was found).
    pub bpcer: f64,
    /// The live-score threshold used.
    pub threshold: f32,
    /// Images where the detector found no face (live ones count against BPCER; attacks are not accepted).
    pub no_face: usize,
    /// The lowest live score among live images and the highest among attacks: the margin around the threshold.
    pub lowest_live_score: Option<f32>,
    /// See `lowest_live_score`.
    pub highest_attack_score: Option<f32>,
}

/// APCER per attack type and BPCER at `threshold` (a score at or above it is live).
pub fn pad_metrics(samples: &[PadSample], threshold: f32) -> PadReport {
    let accepted = |s: &PadSample| s.score.is_some_and(|v| v >= threshold);
    let live: Vec<&PadSample> = samples.iter().filter(|s| s.live).collect();
    let mut attacks: BTreeMap<String, usize> = BTreeMap::new();
    let mut accepted_attacks: BTreeMap<String, usize> = BTreeMap::new();
    for s in samples.iter().filter(|s| !s.live) {
        *attacks.entry(s.attack_type.clone()).or_default() += 1;
        *accepted_attacks.entry(s.attack_type.clone()).or_default() += usize::from(accepted(s));
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let apcer = attacks.iter().map(|(k, &n)| (k.clone(), rate(accepted_attacks[k], n))).collect();
    let rejected_live = live.iter().filter(|s| !accepted(s)).count();
    let fold = |it: &mut dyn Iterator<Item = f32>, pick: fn(f32, f32) -> f32| it.reduce(pick);
    PadReport {
        live: live.len(),
        attacks,
        apcer,
        bpcer: rate(rejected_live, live.len()),
        threshold,
        no_face: samples.iter().filter(|s| s.score.is_none()).count(),
        lowest_live_score: fold(&mut live.iter().filter_map(|s| s.score), f32::min),
        highest_attack_score: fold(&mut samples.iter().filter(|s| !s.live).filter_map(|s| s.score), f32::max),
    }
}

/// The threshold with the lowest BPCER among those that keep every attack type's APCER at or below
/// `max_apcer` (ties: the higher, safer threshold), with its report. Candidates are the observed scores
/// (a threshold equal to a score accepts it) and a value just above the highest attack score.
pub fn suggest_threshold(samples: &[PadSample], max_apcer: f64) -> Option<PadReport> {
    let mut candidates: Vec<f32> = samples.iter().filter_map(|s| s.score).collect();
    if let Some(top) = samples.iter().filter(|s| !s.live).filter_map(|s| s.score).reduce(f32::max) {
        candidates.push(top.next_up());
    }
    candidates.retain(|t| *t > 0.0 && *t < 1.0);
    candidates.sort_by(f32::total_cmp);
    candidates.dedup();
    candidates
        .into_iter()
        .map(|t| pad_metrics(samples, t))
        .filter(|r| r.apcer.values().all(|&a| a <= max_apcer))
        .min_by(|a, b| a.bpcer.total_cmp(&b.bpcer).then(b.threshold.total_cmp(&a.threshold)))
}

/// Errors reading the folder.
#[derive(Debug, thiserror::Error)]
pub enum PadEvalError {
    /// The manifest cannot be read or parsed.
    #[error("{path}: {reason}; expected a CSV with the columns file,label,attack_type (as ../shared/spoof)")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

#[derive(serde::Deserialize)]
struct ManifestRow {
    file: String,
    label: String,
    attack_type: String,
}

/// Scores every image of the folder (largest face per image, facegate's detector). An image that does not
/// decode is reported on stderr by the caller through `on_error` and counted as "no face".
pub fn score_folder(
    dir: &Path,
    detector: &Detector,
    liveness: &LivenessModel,
    mut on_error: impl FnMut(&str, &str),
) -> Result<Vec<PadSample>, PadEvalError> {
    let manifest = dir.join("manifest.csv");
    let bad = |reason: String| PadEvalError::Manifest { path: manifest.clone(), reason };
    let mut reader = csv::Reader::from_path(&manifest).map_err(|e| bad(e.to_string()))?;
    let mut samples = Vec::new();
    for row in reader.deserialize::<ManifestRow>() {
        let row = row.map_err(|e| bad(e.to_string()))?;
        let live = match row.label.as_str() {
            "live" => true,
            "spoof" | "attack" => false,
            other => return Err(bad(format!("label {other:?} is neither live nor spoof"))),
        };
        let score = match decode_file(&dir.join(&row.file), DecodeLimits::default()) {
            Ok(frame) => match detector.detect(&frame) {
                Ok(faces) => detect::largest(&faces).and_then(|face| match liveness.score(&frame, &face.bbox) {
                    Ok(score) => Some(score),
                    Err(e) => {
                        on_error(&row.file, &e.to_string());
                        None
                    }
                }),
                Err(e) => {
                    on_error(&row.file, &e.to_string());
                    None
                }
            },
            Err(e) => {
                on_error(&row.file, &e.to_string());
                None
            }
        };
        samples.push(PadSample { file: row.file, live, attack_type: row.attack_type, score });
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(live: bool, attack: &str, score: Option<f32>) -> PadSample {
        PadSample { file: String::new(), live, attack_type: attack.into(), score }
    }

    #[test]
    fn apcer_per_attack_type_and_bpcer() {
        let samples = [
            sample(true, "none", Some(0.9)),
            sample(true, "none", Some(0.4)),
            sample(true, "none", None),
            sample(true, "none", Some(0.7)),
            sample(false, "print", Some(0.1)),
            sample(false, "print", Some(0.6)),
            sample(false, "print", None),
            sample(false, "print", Some(0.2)),
            sample(false, "screen", Some(0.3)),
        ];
        let r = pad_metrics(&samples, 0.5);
        assert_eq!(r.live, 4);
        assert_eq!(r.attacks["print"], 4);
        assert!((r.apcer["print"] - 0.25).abs() < 1e-12);
        assert_eq!(r.apcer["screen"], 0.0);
        assert!((r.bpcer - 0.5).abs() < 1e-12, "0.4 and no face are rejected");
        assert_eq!((r.no_face, r.lowest_live_score, r.highest_attack_score), (2, Some(0.4), Some(0.6)));
        let json = serde_json::to_value(&r).unwrap_or_default();
        for key in ["live", "attacks", "apcer", "bpcer", "threshold"] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }
}
