//! Verification metrics from genuine and impostor scores: EER, FNMR at fixed FMR, best-threshold accuracy.
//!
//! Pure functions over score lists; no I/O. The decision rule everywhere is "accept when score >= threshold".

/// FNMR at one target FMR, with the threshold that reaches it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OperatingPoint {
    /// The target false-match rate.
    pub target_fmr: f64,
    /// The false-match rate actually reached on these impostors (<= target).
    pub fmr: f64,
    /// The false non-match rate at that threshold.
    pub fnmr: f64,
    /// The threshold (accept when score >= threshold).
    pub threshold: f32,
}

/// The usual summary of a verification experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct VerificationMetrics {
    /// Equal error rate (FMR = FNMR), interpolated between the two nearest thresholds.
    pub eer: f64,
    /// The threshold at the equal error rate.
    pub eer_threshold: f32,
    /// Best accuracy over all thresholds: (true accepts + true rejects) / all pairs.
    pub accuracy: f64,
    /// The threshold reaching that accuracy.
    pub accuracy_threshold: f32,
    /// FNMR at each requested FMR.
    pub operating_points: Vec<OperatingPoint>,
}

/// Computes the metrics; `None` when either list is empty or holds a NaN.
pub fn verification_metrics(genuine: &[f32], impostor: &[f32], fmr_targets: &[f64]) -> Option<VerificationMetrics> {
    if genuine.is_empty() || impostor.is_empty() || genuine.iter().chain(impostor).any(|s| s.is_nan()) {
        return None;
    }
    let mut gen_sorted = genuine.to_vec();
    let mut imp_sorted = impostor.to_vec();
    gen_sorted.sort_by(f32::total_cmp);
    imp_sorted.sort_by(f32::total_cmp);
    #[allow(clippy::cast_precision_loss)]
    let (n_gen, n_imp) = (gen_sorted.len() as f64, imp_sorted.len() as f64);

    // Sweep every distinct score as a threshold, ascending. At threshold t: false non-matches are genuine
    // scores < t; false matches are impostor scores >= t.
    let (mut gi, mut ii) = (0usize, 0usize);
    let mut best_accuracy = (-1.0f64, f32::NEG_INFINITY);
    let mut previous: Option<(f64, f64, f32)> = None; // (fmr, fnmr, threshold) where fmr > fnmr
    let mut eer = None;
    loop {
        let next = match (gen_sorted.get(gi), imp_sorted.get(ii)) {
            (Some(&g), Some(&i)) => Some(g.min(i)),
            (Some(&g), None) => Some(g),
            (None, Some(&i)) => Some(i),
            (None, None) => None,
        };
        let threshold = next.unwrap_or(f32::INFINITY);
        #[allow(clippy::cast_precision_loss)]
        let (fnmr, fmr) = (gi as f64 / n_gen, (imp_sorted.len() - ii) as f64 / n_imp);
        #[allow(clippy::cast_precision_loss)]
        let accuracy = ((gen_sorted.len() - gi) + ii) as f64 / (n_gen + n_imp);
        if accuracy > best_accuracy.0 {
            best_accuracy = (accuracy, threshold);
        }
        if eer.is_none() {
            if fnmr >= fmr {
                eer = Some(match previous {
                    Some((p_fmr, p_fnmr, p_t)) => {
                        let (d_prev, d_cur) = (p_fmr - p_fnmr, fmr - fnmr);
                        let alpha = if d_prev - d_cur > 0.0 { d_prev / (d_prev - d_cur) } else { 0.0 };
                        #[allow(clippy::cast_possible_truncation)]
                        let t = p_t + (threshold.min(1e30) - p_t) * alpha as f32;
                        (p_fmr + alpha * (fmr - p_fmr), t)
                    }
                    None => ((fmr + fnmr) / 2.0, threshold),
                });
            } else {
                previous = Some((fmr, fnmr, threshold));
            }
        }
        let Some(value) = next else { break };
        while gen_sorted.get(gi) == Some(&value) {
            gi += 1;
        }
        while imp_sorted.get(ii) == Some(&value) {
            ii += 1;
        }
    }
    let (eer, eer_threshold) = eer.unwrap_or((0.0, f32::INFINITY));

    let operating_points = fmr_targets
        .iter()
        .map(|&target| {
            // At most floor(target * n_imp) impostors may be accepted: put the threshold just above the
            // impostor score ranked one past that.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let allowed = (target * n_imp).floor() as usize;
            let threshold = if allowed >= imp_sorted.len() {
                f32::NEG_INFINITY
            } else {
                next_up(imp_sorted[imp_sorted.len() - 1 - allowed])
            };
            let false_matches = imp_sorted.len() - imp_sorted.partition_point(|&s| s < threshold);
            let false_non_matches = gen_sorted.partition_point(|&s| s < threshold);
            #[allow(clippy::cast_precision_loss)]
            OperatingPoint {
                target_fmr: target,
                fmr: false_matches as f64 / n_imp,
                fnmr: false_non_matches as f64 / n_gen,
                threshold,
            }
        })
        .collect();
    Some(VerificationMetrics {
        eer,
        eer_threshold,
        accuracy: best_accuracy.0,
        accuracy_threshold: best_accuracy.1,
        operating_points,
    })
}

/// Global unlinkability D<->sys (Gomez-Barrero et al., "General framework to evaluate unlinkability in
/// biometric template protection systems", IEEE TIFS 2017), with prior ratio omega = 1: histogram both score
/// sets on `bins` common bins, LR(s) = p(s|mated) / p(s|non-mated), D(s) = 2 LR/(1+LR) - 1 where LR > 1 else
/// 0, and D<->sys = sum over bins of p(s|mated) D(s). 0 means the two keys' templates cannot be linked.
pub fn dsys_global(mated: &[f32], non_mated: &[f32], bins: usize) -> f64 {
    if mated.is_empty() || non_mated.is_empty() || bins == 0 {
        return 0.0;
    }
    let (lo, hi) =
        mated.iter().chain(non_mated).fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    let width = (hi - lo).max(f32::EPSILON);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let histogram = |scores: &[f32]| {
        let mut h = vec![0.0f64; bins];
        for &s in scores {
            let b = (((s - lo) / width) * bins as f32) as usize;
            h[b.min(bins - 1)] += 1.0;
        }
        let n = scores.len() as f64;
        h.iter_mut().for_each(|v| *v /= n);
        h
    };
    let (p_mated, p_non) = (histogram(mated), histogram(non_mated));
    p_mated
        .iter()
        .zip(&p_non)
        .map(|(&pm, &pn)| {
            let lr = if pn > 0.0 {
                pm / pn
            } else if pm > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            let d = if lr > 1.0 {
                if lr.is_infinite() {
                    1.0
                } else {
                    2.0 * lr / (1.0 + lr) - 1.0
                }
            } else {
                0.0
            };
            pm * d
        })
        .sum()
}

/// The smallest f32 greater than `x` (for finite `x`).
fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let bits = x.to_bits();
    f32::from_bits(if x > 0.0 { bits + 1 } else { bits - 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfectly_separated_scores_have_zero_error() {
        let m = verification_metrics(&[0.8, 0.9, 0.7], &[0.1, 0.2, 0.3, 0.0], &[1e-3]).unwrap();
        assert_eq!(m.eer, 0.0);
        assert_eq!(m.accuracy, 1.0);
        assert_eq!(m.operating_points[0].fnmr, 0.0);
        assert!(m.operating_points[0].threshold > 0.3 && m.operating_points[0].threshold <= 0.7);
    }

    #[test]
    fn eer_of_overlapping_uniform_scores() {
        // Genuine 0.5..1.5, impostor 0..1, 1000 each: FMR(t) = 1 - t, FNMR(t) = t - 0.5, crossing at
        // t = 0.75 with EER 0.25.
        let genuine: Vec<f32> = (0..1000).map(|i| 0.5 + i as f32 / 1000.0).collect();
        let impostor: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let m = verification_metrics(&genuine, &impostor, &[0.01, 0.1]).unwrap();
        assert!((m.eer - 0.25).abs() < 0.002, "{}", m.eer);
        assert!((m.eer_threshold - 0.75).abs() < 0.002, "{}", m.eer_threshold);
        assert!((m.accuracy - 0.75).abs() < 0.002, "{}", m.accuracy);
        let p = m.operating_points[0];
        assert!(p.fmr <= 0.01 && (p.fnmr - 0.49).abs() < 0.002, "{p:?}");
        assert!((m.operating_points[1].fnmr - 0.4).abs() < 0.002);
    }

    #[test]
    fn fmr_target_is_never_exceeded_with_ties() {
        let impostor = vec![0.5f32; 100];
        let m = verification_metrics(&[0.5, 0.9], &impostor, &[0.05]).unwrap();
        let p = m.operating_points[0];
        assert_eq!(p.fmr, 0.0);
        assert_eq!(p.fnmr, 0.5);
    }

    #[test]
    fn dsys_is_zero_for_identical_and_one_for_separate_distributions() {
        let same: Vec<f32> = (0..3000).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        assert!(dsys_global(&same, &same, 30) < 1e-9);
        let high: Vec<f32> = (0..500).map(|i| 0.8 + i as f32 / 5000.0).collect();
        let low: Vec<f32> = (0..500).map(|i| i as f32 / 5000.0).collect();
        assert!((dsys_global(&high, &low, 30) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn empty_or_nan_input_gives_none() {
        assert!(verification_metrics(&[], &[0.1], &[]).is_none());
        assert!(verification_metrics(&[f32::NAN], &[0.1], &[]).is_none());
    }
}
