//! Calibration: which cosine threshold keeps a stranger's chance of matching a resident below a target.
//!
//! Owns [`Calibration`] (an anchor measured on impostor scores plus a generalized Pareto tail fitted above
//! it), fitting one from impostor scores, its bootstrap error, and the threshold for a target FPIR and
//! gallery size. Pure: scores in, numbers out. It never sees an embedding or an identity.
//!
//! Why a fitted tail: a 1,000-resident gate at FPIR 1e-3 needs the threshold of a per-comparison FMR of
//! 1e-6, and no photo set a compound has holds the millions of impostor pairs that measure it. The excesses
//! of impostor scores over a high threshold follow a generalized Pareto law (Pickands-Balkema-de Haan);
//! fitting it on the top scores extrapolates with a known error instead of a straight line drawn through
//! three points.

use rand::{Rng, SeedableRng};

/// The impostor-score tail of a face model: `P(score >= u) = rate`, and above `u` the excess follows a
/// generalized Pareto law of `scale` and `shape` (shape < 0: bounded, as a cosine is).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// The anchor threshold `u`: the empirical impostor quantile at `rate`.
    pub anchor: f32,
    /// The fraction of impostor scores at or above the anchor.
    pub rate: f64,
    /// Scale of the excess law.
    pub scale: f64,
    /// Shape of the excess law (xi).
    pub shape: f64,
}

/// The loosest threshold ever used, whatever the target: a cosine no closer to 1.
pub const MAX_THRESHOLD: f32 = 0.99;

/// Why a calibration cannot be fitted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CalibrationError {
    /// Too few impostor pairs for the tail.
    #[error(
        "{found} impostor pairs are too few to calibrate (need at least {needed}): photograph more volunteers, \
         several photos each"
    )]
    TooFewImpostors {
        /// Pairs given.
        found: usize,
        /// Pairs needed.
        needed: usize,
    },
    /// A score is not a number.
    #[error("an impostor score is not a number")]
    NotANumber,
    /// The top scores do not form a tail (all equal).
    #[error("the highest impostor scores are all equal; the photos are probably duplicates of each other")]
    Degenerate,
}

/// Fewest impostor pairs a fit accepts, and fewest scores above the anchor.
pub const MIN_IMPOSTORS: usize = 2_000;
const MIN_EXCESSES: usize = 200;
/// The anchor's FMR when there are enough pairs: the highest FMR any gate uses (one resident, FPIR 1e-3).
pub const ANCHOR_RATE: f64 = 1e-3;

impl Calibration {
    /// SFace (int8bq weights, dequantised) on the development photos, as the gate searches: each enrolled
    /// template (3 photos averaged) against probes fused over 3 photos of another person (the gate's agreement
    /// window), `facegate calibrate --faces ../shared/faces` (491,877 pairs of 1,181 people). It meets the
    /// measured thresholds at FMR 1e-4 (0.437 against 0.436) and 1e-5 (0.490 against 0.488); at 1e-6 a
    /// bootstrap puts it in 0.506-0.568. Fused probes reach further into the tail than single photos (0.376
    /// against 0.355 at 1e-3), so this is also safe for the first frames of an approach, fused over fewer.
    pub const SFACE: Self = Self { anchor: 0.3758, rate: 1e-3, scale: 0.0286, shape: -0.0640 };

    /// Fits the tail on impostor scores (any order). The anchor is the 1e-3 quantile, or a higher one when
    /// there are too few pairs to leave 200 scores above it.
    pub fn fit(impostor: &[f32]) -> Result<Self, CalibrationError> {
        if impostor.iter().any(|s| s.is_nan()) {
            return Err(CalibrationError::NotANumber);
        }
        if impostor.len() < MIN_IMPOSTORS {
            return Err(CalibrationError::TooFewImpostors { found: impostor.len(), needed: MIN_IMPOSTORS });
        }
        let mut sorted = impostor.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        Self::fit_sorted(&sorted)
    }

    /// Fits on scores sorted in decreasing order.
    fn fit_sorted(descending: &[f32]) -> Result<Self, CalibrationError> {
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let excesses = ((ANCHOR_RATE * descending.len() as f64).ceil() as usize).max(MIN_EXCESSES);
        let anchor = descending[excesses.min(descending.len() - 1)];
        // The scores strictly above the anchor, as excesses (ascending for the weighted moments).
        let mut above: Vec<f64> =
            descending.iter().take_while(|&&s| s > anchor).map(|&s| f64::from(s) - f64::from(anchor)).collect();
        above.reverse();
        let (scale, shape) = pwm_fit(&above).ok_or(CalibrationError::Degenerate)?;
        #[allow(clippy::cast_precision_loss)]
        let rate = above.len() as f64 / descending.len() as f64;
        Ok(Self { anchor, rate, scale, shape })
    }

    /// The fraction of impostor scores this calibration expects at or above `threshold`.
    pub fn fmr_at(&self, threshold: f32) -> f64 {
        let y = f64::from(threshold) - f64::from(self.anchor);
        if y <= 0.0 {
            return self.rate.max(0.0);
        }
        let survival = if self.shape.abs() < 1e-9 {
            (-y / self.scale).exp()
        } else {
            let base = 1.0 + self.shape * y / self.scale;
            if base <= 0.0 {
                0.0
            } else {
                base.powf(-1.0 / self.shape)
            }
        };
        self.rate * survival
    }

    /// The threshold at which the per-comparison false-match rate is `fmr`; never looser than the anchor.
    pub fn threshold_for_fmr(&self, fmr: f64) -> f32 {
        if fmr.is_nan() {
            // Fail secure: a target that is not a number gets the strictest threshold.
            return MAX_THRESHOLD;
        }
        if fmr >= self.rate {
            return self.anchor.min(MAX_THRESHOLD);
        }
        let ratio = fmr.max(1e-300) / self.rate;
        let excess = if self.shape.abs() < 1e-9 {
            -self.scale * ratio.ln()
        } else {
            self.scale / self.shape * (ratio.powf(-self.shape) - 1.0)
        };
        #[allow(clippy::cast_possible_truncation)]
        let threshold = (f64::from(self.anchor) + excess) as f32;
        threshold.clamp(self.anchor, MAX_THRESHOLD)
    }

    /// The threshold that keeps a stranger's chance of matching anyone in a gallery of `gallery_size` below
    /// `target_fpir` (per comparison FMR = FPIR / N, the union bound).
    pub fn threshold_for_fpir(&self, target_fpir: f64, gallery_size: usize) -> f32 {
        #[allow(clippy::cast_precision_loss)]
        let fmr = target_fpir / gallery_size.max(1) as f64;
        self.threshold_for_fmr(fmr)
    }
}

/// The generalized Pareto law by probability-weighted moments (Hosking & Wallis 1987), on excesses in
/// ascending order: (scale, shape). `None` when they carry no spread.
fn pwm_fit(ascending: &[f64]) -> Option<(f64, f64)> {
    let n = ascending.len();
    if n < 2 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let nf = n as f64;
    let a0 = ascending.iter().sum::<f64>() / nf;
    // a1 = E[Y (1 - F(Y))], with the plotting position (i + 0.65) / n for the i-th smallest (0-based).
    #[allow(clippy::cast_precision_loss)]
    let a1 = ascending.iter().enumerate().map(|(i, y)| y * (1.0 - (i as f64 + 0.65) / nf)).sum::<f64>() / nf;
    let d = a0 - 2.0 * a1;
    if !(a0 > 0.0 && d > 0.0) {
        return None;
    }
    // Hosking's k = -xi.
    let k = a0 / d - 2.0;
    let scale = 2.0 * a0 * a1 / d;
    (scale > 0.0 && scale.is_finite() && k.is_finite()).then_some((scale, -k))
}

/// How far a calibration can be trusted: the thresholds a bootstrap of the top scores gives.
#[derive(Clone, Debug, PartialEq)]
pub struct TailError {
    /// Per target FMR: (FMR, fitted threshold, 5th percentile, 95th percentile over the resamples).
    pub intervals: Vec<(f64, f32, f32, f32)>,
}

/// Resamples the impostor scores above the anchor `rounds` times (seeded, so a report repeats) and refits.
pub fn bootstrap(impostor: &[f32], fitted: &Calibration, targets: &[f64], rounds: usize, seed: u64) -> TailError {
    let mut above: Vec<f64> =
        impostor.iter().filter(|&&s| s > fitted.anchor).map(|&s| f64::from(s) - f64::from(fitted.anchor)).collect();
    above.sort_by(f64::total_cmp);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut per_target: Vec<Vec<f32>> = vec![Vec::with_capacity(rounds); targets.len()];
    let mut resample = vec![0.0f64; above.len()];
    for _ in 0..rounds {
        for slot in &mut resample {
            *slot = above[rng.random_range(0..above.len().max(1))];
        }
        resample.sort_by(f64::total_cmp);
        let Some((scale, shape)) = pwm_fit(&resample) else { continue };
        let refit = Calibration { scale, shape, ..*fitted };
        for (values, &fmr) in per_target.iter_mut().zip(targets) {
            values.push(refit.threshold_for_fmr(fmr));
        }
    }
    let intervals = targets
        .iter()
        .zip(per_target.iter_mut())
        .map(|(&fmr, values)| {
            values.sort_by(f32::total_cmp);
            let at = |q: f64| {
                #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let idx = ((values.len().saturating_sub(1)) as f64 * q).round() as usize;
                values.get(idx).copied().unwrap_or(f32::NAN)
            };
            (fmr, fitted.threshold_for_fmr(fmr), at(0.05), at(0.95))
        })
        .collect();
    TailError { intervals }
}

/// The empirical threshold at which at most `fmr` of `descending` scores are at or above it: the smallest
/// value above the k-th highest score, where k = floor(fmr x n). `None` when there are too few scores to say.
pub fn empirical_threshold(descending: &[f32], fmr: f64) -> Option<f32> {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let k = (fmr * descending.len() as f64).floor() as usize;
    (k >= 1).then(|| descending.get(k).map(|s| s.next_up())).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    fn normal_scores(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let law = Normal::new(0.0f32, 0.1).unwrap();
        (0..n).map(|_| law.sample(&mut rng)).collect()
    }

    /// The threshold a normal law of sd 0.1 reaches at `fmr` (its upper quantile).
    fn normal_quantile(fmr: f64) -> f64 {
        // Acklam-free: invert by bisection on erfc.
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..200 {
            let mid = (lo + hi) / 2.0;
            let tail = 0.5 * libm_erfc(mid / (0.1 * std::f64::consts::SQRT_2));
            if tail > fmr {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// erfc by its continued-fraction-free Chebyshev fit (Numerical Recipes erfcc, |error| < 1.2e-7).
    fn libm_erfc(x: f64) -> f64 {
        let z = x.abs();
        let t = 1.0 / (1.0 + 0.5 * z);
        let poly = -z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
        let r = t * poly.exp();
        if x >= 0.0 {
            r
        } else {
            2.0 - r
        }
    }

    #[test]
    fn the_fitted_tail_predicts_thresholds_it_never_saw() {
        // 2 M scores measure FMR down to about 1e-5; the fit must also land near the true 1e-6 and 1e-7
        // thresholds, which no score reaches.
        let scores = normal_scores(2_000_000, 7);
        let fit = Calibration::fit(&scores).unwrap();
        for fmr in [1e-4, 1e-5, 1e-6, 1e-7] {
            let truth = normal_quantile(fmr);
            let got = f64::from(fit.threshold_for_fmr(fmr));
            assert!((got - truth).abs() < 0.02, "FMR {fmr}: fitted {got:.4}, true {truth:.4}");
        }
        // A straight line through the measured points in log10(FMR) misses 1e-7 by more than the fit does.
        let (t4, t5) = (normal_quantile(1e-4), normal_quantile(1e-5));
        let line = t5 + 2.0 * (t5 - t4);
        assert!(
            (line - normal_quantile(1e-7)).abs()
                > (f64::from(fit.threshold_for_fmr(1e-7)) - normal_quantile(1e-7)).abs()
        );
    }

    #[test]
    fn fmr_and_threshold_are_inverse_and_monotone() {
        let fit = Calibration::SFACE;
        let mut last = 0.0f32;
        for exp in 3..=9 {
            let fmr = 10f64.powi(-exp);
            let t = fit.threshold_for_fmr(fmr);
            assert!(t > last || exp == 3, "thresholds rise as the FMR falls");
            last = t;
            let back = fit.fmr_at(t);
            assert!((back.log10() - fmr.log10()).abs() < 0.01, "{fmr} -> {t} -> {back}");
        }
        assert_eq!(fit.threshold_for_fmr(0.5), fit.anchor, "never looser than the anchor");
        assert_eq!(fit.threshold_for_fmr(f64::NAN), MAX_THRESHOLD, "fail secure");
        assert!(fit.threshold_for_fmr(0.0) <= MAX_THRESHOLD);
    }

    #[test]
    fn the_threshold_rises_with_the_gallery() {
        let t = |n| Calibration::SFACE.threshold_for_fpir(1e-3, n);
        assert!((t(1) - 0.3758).abs() < 1e-6);
        assert!(t(1) < t(10) && t(10) < t(100) && t(100) < t(1000) && t(1000) < t(100_000));
        // The development photos measured 0.436 at FMR 1e-4 and 0.488 at 1e-5: the tail passes near them.
        assert!((t(10) - 0.436).abs() < 0.01, "{}", t(10));
        assert!((t(100) - 0.488).abs() < 0.01, "{}", t(100));
    }

    #[test]
    fn too_few_or_broken_scores_are_refused_with_a_reason() {
        assert!(matches!(Calibration::fit(&[0.1; 100]), Err(CalibrationError::TooFewImpostors { found: 100, .. })));
        let mut scores = normal_scores(5_000, 1);
        scores[3] = f32::NAN;
        assert_eq!(Calibration::fit(&scores), Err(CalibrationError::NotANumber));
        assert_eq!(Calibration::fit(&[0.2; 5_000]), Err(CalibrationError::Degenerate));
    }

    #[test]
    fn few_pairs_move_the_anchor_up_and_widen_the_error() {
        let small = normal_scores(10_000, 3);
        let fit = Calibration::fit(&small).unwrap();
        assert!(fit.rate > 0.015 && fit.rate < 0.025, "200 scores above the anchor of 10,000: {}", fit.rate);
        let narrow = bootstrap(
            &normal_scores(2_000_000, 7),
            &Calibration::fit(&normal_scores(2_000_000, 7)).unwrap(),
            &[1e-6],
            100,
            1,
        );
        let wide = bootstrap(&small, &fit, &[1e-6], 100, 1);
        let width = |e: &TailError| e.intervals[0].3 - e.intervals[0].2;
        assert!(width(&wide) > width(&narrow), "{wide:?} vs {narrow:?}");
        let (_, fitted, lo, hi) = wide.intervals[0];
        assert!(lo <= fitted && fitted <= hi);
    }

    #[test]
    fn the_empirical_threshold_leaves_at_most_the_rate_above_it() {
        let mut scores = normal_scores(100_000, 5);
        scores.sort_by(|a, b| b.total_cmp(a));
        let t = empirical_threshold(&scores, 1e-3).unwrap();
        let above = scores.iter().filter(|&&s| s >= t).count();
        assert_eq!(above, 100);
        assert_eq!(empirical_threshold(&scores, 1e-6), None);
    }
}
