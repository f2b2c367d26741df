//! Open-set identification measured as the gate decides: what fraction of residents are refused on an
//! approach (FNIR) and how often a stranger is let in (FPIR), ISO/IEC 19795-1's figures for a 1:N system.
//!
//! Owns reading a labelled folder the way the gate would meet it (every photo through the vision path, the
//! enrolment quality gate and K-frame averaging per person, liveness where the models are given), the splits
//! ([`plan`]: folds by person, so the threshold is always calibrated on other people than it is measured on),
//! and running them ([`score`]: the registry's duplicate refusal, the gate's [`crate::policy::decide::Decider`]
//! with its frame agreement). Embeddings stay in memory and are wiped; nothing is written.

pub mod plan;
pub mod score;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use self::plan::{Fold, Person, SplitRule};
use self::score::{GalleryRun, Rule, Tally, Views};
use super::{labelled_images, EvalError};
use crate::capture::decode::decode_file;
use crate::capture::DecodeLimits;
use crate::policy::calibration::{Calibration, CalibrationError};
use crate::vision::embed::Embedding;
use crate::vision::enrol::{laplacian_variance, EnrolmentSession, FrameVerdict, QualityGate};
use crate::vision::fuse::frame_weight;
use crate::vision::liveness::LivenessModel;
use crate::vision::pipeline::FacePipeline;

/// The FPIR targets every open-set report gives FNIR at.
pub const FPIR_TARGETS: [f64; 3] = [1e-2, 1e-3, 1e-4];

/// What the gate's path made of a labelled folder.
pub struct Observed {
    /// Each photo, relative to the folder (sample index order).
    pub paths: Vec<PathBuf>,
    /// The people, with the photos the gate's enrolment took.
    pub people: Vec<Person>,
    /// Per photo: the embedding of its largest face, if any.
    pub embeddings: Vec<Option<Embedding>>,
    /// Per photo: how much it counts in a fused probe.
    pub weights: Vec<f32>,
    /// Per photo: the live score, when the liveness models were given.
    pub live: Vec<Option<f32>>,
}

impl Observed {
    /// The views facegate's own decisions use.
    pub fn views(&self) -> Views<'_> {
        Views { embeddings: &self.embeddings, weights: &self.weights, live: &self.live }
    }
}

/// Liveness during the evaluation: the models and the gate's threshold.
pub struct LivenessCheck<'a> {
    /// The models.
    pub model: &'a LivenessModel,
    /// The gate's threshold.
    pub threshold: f32,
}

/// Reads every photo of `faces_dir` as the gate would, enrolling each person from their first `enrol_frames`
/// good photos (in file order) exactly as `facegate enroll` does. `on_total` is told how many photos there
/// are, `progress` is called once per photo.
pub fn observe(
    pipeline: &FacePipeline,
    liveness: Option<&LivenessCheck<'_>>,
    enrol_frames: usize,
    faces_dir: &Path,
    limits: DecodeLimits,
    on_total: &dyn Fn(usize),
    progress: &(dyn Fn() + Sync),
) -> Result<Observed, EvalError> {
    let images = labelled_images(faces_dir)?;
    on_total(images.len());
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, image) in images.iter().enumerate() {
        match groups.last_mut() {
            Some(group) if images[group[0]].identity == image.identity => group.push(i),
            _ => groups.push(vec![i]),
        }
    }
    type Read = (usize, Option<Embedding>, f32, Option<f32>);
    let per_person: Vec<(Vec<Read>, Option<Vec<usize>>)> = groups
        .par_iter()
        .map(|group| {
            let live_bar = liveness.map_or(0.0, |l| l.threshold);
            let mut session = EnrolmentSession::new(enrol_frames, QualityGate::default(), live_bar);
            let mut taken: Vec<usize> = Vec::new();
            let mut reads = Vec::with_capacity(group.len());
            for &i in group {
                let read = decode_file(&faces_dir.join(&images[i].path), limits)
                    .ok()
                    .and_then(|frame| pipeline.read_with_crop(&frame).ok().map(|r| (frame, r)));
                let Some((frame, (reading, aligned))) = read else {
                    reads.push((i, None, 0.0, None));
                    progress();
                    continue;
                };
                let live = liveness.and_then(|l| l.model.score(&frame, &reading.face.bbox).ok());
                if !session.is_complete() {
                    // Without the liveness models every photo counts as live (and the report says so).
                    let copy = Embedding::weighted_mean([(&reading.embedding, 1.0)]);
                    if let Some(copy) = copy {
                        match session.offer(&reading.face, &aligned, copy, live.unwrap_or(1.0)) {
                            FrameVerdict::Accepted(_) => taken.push(i),
                            FrameVerdict::Inconsistent => taken = vec![i],
                            FrameVerdict::Rejected(_) => {}
                        }
                    }
                }
                let weight = frame_weight(&reading.face, laplacian_variance(&aligned));
                reads.push((i, Some(reading.embedding), weight, live));
                progress();
            }
            (reads, session.is_complete().then_some(taken))
        })
        .collect();
    let n = images.len();
    let mut embeddings: Vec<Option<Embedding>> = (0..n).map(|_| None).collect();
    let (mut weights, mut live) = (vec![0.0; n], vec![None; n]);
    let mut people = Vec::with_capacity(groups.len());
    for (group, (reads, enrolment)) in groups.iter().zip(per_person) {
        for (i, embedding, weight, score) in reads {
            embeddings[i] = embedding;
            weights[i] = weight;
            live[i] = score;
        }
        people.push(Person { samples: group.clone(), enrolment });
    }
    Ok(Observed { paths: images.into_iter().map(|l| l.path).collect(), people, embeddings, weights, live })
}

/// The held-out check of one fold's calibration: at the thresholds it sets, the false-match rate measured on
/// the people it never saw.
#[derive(Clone, Debug, PartialEq)]
pub struct FoldCalibration {
    /// The calibration fitted on the other folds' people.
    pub calibration: Calibration,
    /// Impostor pairs it was fitted on.
    pub fitted_on: usize,
    /// Impostor pairs among this fold's people.
    pub held_out_pairs: usize,
    /// Per target FMR: (target, threshold set, FMR measured on the held-out pairs).
    pub held_out: Vec<(f64, f32, f64)>,
}

/// One gallery size, pooled over folds and draws.
#[derive(Clone, Debug, PartialEq)]
pub struct GalleryFigures {
    /// Nominal size.
    pub size: usize,
    /// Galleries drawn.
    pub galleries: usize,
    /// Mean residents actually enrolled.
    pub enrolled_mean: f64,
    /// Residents refused as duplicates, in all.
    pub refused_duplicates: usize,
    /// Lowest and highest threshold the gate set.
    pub thresholds: (f32, f32),
    /// At the gate's own thresholds.
    pub configured: Tally,
    /// FNIR at each FPIR target by threshold sweep: (target, FNIR, measured FPIR, threshold); `None` when no
    /// swept threshold reaches the target.
    pub at_fpir: Vec<(f64, Option<score::SweepPoint>)>,
}

/// One decision rule's results.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleReport {
    /// The rule.
    pub rule: Rule,
    /// Per fold.
    pub folds: Vec<FoldCalibration>,
    /// Per gallery size, smallest first.
    pub galleries: Vec<GalleryFigures>,
}

/// Why an open-set evaluation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum OpenSetError {
    /// Reading the folder.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// Fitting a fold's calibration.
    #[error("calibrating fold {fold}: {source}")]
    Calibration {
        /// The fold.
        fold: usize,
        /// Why.
        source: CalibrationError,
    },
    /// Nobody could be enrolled with a photo left to approach with.
    #[error("no person in the folder has {needed} good photos to enrol plus one more to approach the gate with")]
    NoResidents {
        /// Photos needed per resident.
        needed: usize,
    },
}

/// Runs one decision rule over the splits with one system's views. `live` is the gate's liveness threshold
/// when decisions check it.
pub fn run_rule(
    people: &[Person],
    folds: &[Fold],
    views: &Views<'_>,
    rule: Rule,
    target_fpir: f64,
    live: Option<f32>,
    enrol_frames: usize,
) -> Result<RuleReport, OpenSetError> {
    let mut fold_reports = Vec::new();
    let mut runs: Vec<GalleryRun> = Vec::new();
    for (f, fold) in folds.iter().enumerate() {
        let fuse = rule.probe_frames();
        let impostors = score::impostor_scores(&fold.calibration, people, views.embeddings, enrol_frames, fuse);
        let calibration =
            Calibration::fit(&impostors).map_err(|source| OpenSetError::Calibration { fold: f, source })?;
        let mut held_out = score::impostor_scores(&fold.evaluation, people, views.embeddings, enrol_frames, fuse);
        held_out.sort_by(|a, b| b.total_cmp(a));
        let check = [1e-3, 1e-4, 1e-5]
            .into_iter()
            .map(|fmr| {
                let t = calibration.threshold_for_fmr(fmr);
                #[allow(clippy::cast_precision_loss)]
                let measured = held_out.partition_point(|&s| s >= t) as f64 / held_out.len().max(1) as f64;
                (fmr, t, measured)
            })
            .collect();
        fold_reports.push(FoldCalibration {
            calibration,
            fitted_on: impostors.len(),
            held_out_pairs: held_out.len(),
            held_out: check,
        });
        let fold_runs: Vec<GalleryRun> = fold
            .draws
            .par_iter()
            .map(|draw| score::run_draw(people, fold, draw, views, rule, &calibration, target_fpir))
            .collect();
        runs.extend(fold_runs);
    }
    let mut sizes: Vec<usize> = runs.iter().map(|r| r.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let galleries = sizes
        .into_iter()
        .map(|size| {
            let of_size: Vec<&GalleryRun> = runs.iter().filter(|r| r.size == size).collect();
            #[allow(clippy::cast_precision_loss)]
            let enrolled_mean = of_size.iter().map(|r| r.enrolled as f64).sum::<f64>() / of_size.len().max(1) as f64;
            let thresholds = of_size
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), r| (lo.min(r.threshold), hi.max(r.threshold)));
            let at_fpir = FPIR_TARGETS
                .iter()
                .map(|&target| (target, score::fnir_at_fpir(&of_size, target, rule, live)))
                .collect();
            GalleryFigures {
                size,
                galleries: of_size.len(),
                enrolled_mean,
                refused_duplicates: of_size.iter().map(|r| r.refused_duplicates).sum(),
                thresholds,
                configured: score::pooled(of_size.iter().copied(), None, rule, live),
                at_fpir,
            }
        })
        .collect();
    Ok(RuleReport { rule, folds: fold_reports, galleries })
}

/// The splits of an observed folder; refuses a folder where nobody can be a resident.
pub fn splits(observed: &Observed, rule: &SplitRule, enrol_frames: usize) -> Result<Vec<Fold>, OpenSetError> {
    if !observed.people.iter().any(Person::can_be_resident) {
        return Err(OpenSetError::NoResidents { needed: enrol_frames });
    }
    Ok(plan::split(&observed.people, rule))
}

/// Median of a list of frame counts (0 when empty).
pub fn median(values: &[usize]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => 0.0,
        #[allow(clippy::cast_precision_loss)]
        n if n % 2 == 1 => sorted[n / 2] as f64,
        #[allow(clippy::cast_precision_loss)]
        n => (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0,
    }
}
