//! Runs the splits: enrols each gallery as the registry does, turns every approach into the per-frame
//! candidates the gate would see, and decides them with the gate's own [`Decider`] at any threshold. Pure but
//! for the random transform key each gallery is protected under (cosines do not depend on it).

use rayon::prelude::*;

use super::plan::{approach, Draw, Fold, Person};
use crate::policy::calibration::Calibration;
use crate::policy::decide::{Decider, Decision, FaceObservation, GateEvent};
use crate::policy::matching::{Gallery, Slot};
use crate::protect::{Rotation, TransformKey};
use crate::vision::embed::Embedding;
use crate::vision::fuse::ApproachFusion;

/// How the frames of an approach become probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fusion {
    /// Each frame is matched alone.
    None,
    /// Each frame's probe is the mean of the approach's frames so far.
    Mean,
    /// The same, each frame weighted by face size and detector confidence.
    Weighted,
}

/// How an approach is decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// The gate: the same resident in `required` of the last `window` frames (`window` frames per approach).
    Gate {
        /// Frames that must agree.
        required: usize,
        /// Frames looked at.
        window: usize,
        /// Probe fusion.
        fusion: Fusion,
        /// A frame counts only when its best resident leads the runner-up by at least this much (0: no rule).
        margin: f32,
    },
    /// The first frame decides alone: the usual single-image peer.
    SingleFrame,
}

impl Rule {
    fn frames(self) -> usize {
        match self {
            Self::Gate { window, .. } => window.max(1),
            Self::SingleFrame => 1,
        }
    }

    /// How many frames a probe fuses at most (what the calibration must be fitted on).
    pub fn probe_frames(self) -> usize {
        match self.fusion() {
            Fusion::None => 1,
            Fusion::Mean | Fusion::Weighted => self.frames(),
        }
    }

    fn fusion(self) -> Fusion {
        match self {
            Self::Gate { fusion, .. } => fusion,
            Self::SingleFrame => Fusion::None,
        }
    }

    fn margin(self) -> f32 {
        match self {
            Self::Gate { margin, .. } => margin,
            Self::SingleFrame => 0.0,
        }
    }

    fn decider(self, live_threshold: Option<f32>) -> Decider {
        let decider = match self {
            Self::Gate { required, window, .. } => Decider::new(required, window),
            Self::SingleFrame => Decider::new(1, 1),
        };
        match live_threshold {
            Some(t) => decider.with_liveness(t),
            None => decider,
        }
    }
}

/// What a system made of each photo (indexed like the samples): the embedding, its fusion weight and live
/// score. Facegate's own and a peer's views are run on the same splits.
pub struct Views<'a> {
    /// Embeddings (`None`: no usable face).
    pub embeddings: &'a [Option<Embedding>],
    /// Fusion weights.
    pub weights: &'a [f32],
    /// Live scores, when the liveness models ran.
    pub live: &'a [Option<f32>],
}

/// A frame's best gallery candidate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameCandidate {
    /// The best resident.
    pub slot: Slot,
    /// Its cosine.
    pub score: f32,
    /// How far it leads the second-best resident (infinite with one resident).
    pub margin: f32,
}

impl FrameCandidate {
    fn of(gallery: &Gallery, probe: &crate::protect::ProtectedTemplate) -> Option<Self> {
        let best = gallery.best(probe)?;
        let margin = gallery.best_excluding(probe, Some(best.slot)).map_or(f32::INFINITY, |c| best.score - c.score);
        Some(Self { slot: best.slot, score: best.score, margin })
    }
}

/// One approach reduced to what a threshold decides on.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// The resident's slot for a mated approach; `None` for a stranger.
    pub mated: Option<Slot>,
    /// Per frame, the best gallery candidate, or `None` with no face.
    pub frames: Vec<Option<FrameCandidate>>,
    /// Per frame, the live score.
    pub live: Vec<Option<f32>>,
}

/// One gallery's approaches.
#[derive(Clone, Debug, PartialEq)]
pub struct GalleryRun {
    /// The nominal size.
    pub size: usize,
    /// Residents in the gallery (after refusals).
    pub enrolled: usize,
    /// Residents refused as duplicates of someone already enrolled.
    pub refused_duplicates: usize,
    /// The threshold the gate sets for this gallery from the fold's calibration.
    pub threshold: f32,
    /// Mated and non-mated approaches.
    pub traces: Vec<Trace>,
}

/// What one threshold does to a set of approaches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Mated approaches.
    pub mated: usize,
    /// Of those, admitted as the right resident.
    pub hits: usize,
    /// Of those, admitted as someone else.
    pub misidentified: usize,
    /// Frames until the right admission, per hit.
    pub frames_to_decision: Vec<usize>,
    /// Non-mated approaches.
    pub non_mated: usize,
    /// Of those, admitted.
    pub false_positives: usize,
    /// Non-mated searches (each stranger approach's last probe alone, no agreement).
    pub searches: usize,
    /// Of those, above the threshold.
    pub search_false_positives: usize,
}

impl Tally {
    /// False-negative identification rate: mated approaches not admitted as themselves.
    #[allow(clippy::cast_precision_loss)]
    pub fn fnir(&self) -> f64 {
        1.0 - self.hits as f64 / self.mated.max(1) as f64
    }

    /// False-positive identification rate of approaches.
    #[allow(clippy::cast_precision_loss)]
    pub fn fpir(&self) -> f64 {
        self.false_positives as f64 / self.non_mated.max(1) as f64
    }

    /// False-positive identification rate of single searches (what the calibration predicts).
    #[allow(clippy::cast_precision_loss)]
    pub fn search_fpir(&self) -> f64 {
        self.search_false_positives as f64 / self.searches.max(1) as f64
    }

    fn add(&mut self, other: &Tally) {
        self.mated += other.mated;
        self.hits += other.hits;
        self.misidentified += other.misidentified;
        self.frames_to_decision.extend(&other.frames_to_decision);
        self.non_mated += other.non_mated;
        self.false_positives += other.false_positives;
        self.searches += other.searches;
        self.search_false_positives += other.search_false_positives;
    }
}

/// Impostor scores as the gate meets them: each probe of one person against the enrolled template of each
/// other person among `people`. A template is the mean of a person's first `enrol_frames` photos with a face,
/// as enrolment averages K frames (a mean template scores strangers differently from a single photo, so a
/// calibration on photo pairs would not hold for the gate). A probe is what the gate searches with after
/// `fuse` frames of an approach: the mean of `fuse` of the person's photos taken in turn from each one (1: each
/// photo alone). Averaging removes a photo's own noise and leaves the identity, so fused strangers reach
/// further into the tail, and the gate must be calibrated on the probes it fuses. No score for a photo without
/// a face: a failure to acquire is not an impostor comparison.
pub fn impostor_scores(
    people: &[usize],
    all: &[Person],
    embeddings: &[Option<Embedding>],
    enrol_frames: usize,
    fuse: usize,
) -> Vec<f32> {
    let faces_of = |p: usize| all[p].samples.iter().filter_map(|&s| embeddings.get(s)?.as_ref());
    let templates: Vec<(usize, Embedding)> = people
        .iter()
        .filter(|&&p| faces_of(p).count() >= enrol_frames.max(1))
        .filter_map(|&p| Some((p, Embedding::weighted_mean(faces_of(p).take(enrol_frames.max(1)).map(|e| (e, 1.0)))?)))
        .collect();
    let probes: Vec<(usize, Embedding)> = people
        .par_iter()
        .flat_map_iter(|&p| {
            let faces: Vec<&Embedding> = faces_of(p).collect();
            let positions: Vec<usize> = (0..faces.len()).collect();
            (0..faces.len())
                .filter_map(|start| {
                    let frames = approach(&positions, start, fuse.max(1));
                    Embedding::weighted_mean(frames.iter().map(|&k| (faces[k], 1.0))).map(|probe| (p, probe))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    templates
        .par_iter()
        .flat_map_iter(|(owner, template)| {
            probes.iter().filter(move |(p, _)| p != owner).map(move |(_, probe)| template.cosine(probe))
        })
        .collect()
}

/// Enrols a draw's residents as the registry does (mean of their enrolment photos, refused when they match
/// someone already enrolled at the threshold the gallery would then use) and traces every approach.
pub fn run_draw(
    people: &[Person],
    fold: &Fold,
    draw: &Draw,
    views: &Views<'_>,
    rule: Rule,
    calibration: &Calibration,
    target_fpir: f64,
) -> GalleryRun {
    let rotation = Rotation::from_key(&TransformKey::generate());
    let mut gallery = Gallery::new(rotation.id());
    let mut resident_of: Vec<(Slot, usize)> = Vec::new();
    let mut refused_duplicates = 0;
    for (slot, &p) in (0..).zip(&draw.residents) {
        let enrolment = people[p].enrolment.as_deref().unwrap_or_default();
        let parts = enrolment.iter().filter_map(|&s| views.embeddings.get(s)?.as_ref().map(|e| (e, 1.0)));
        let Some(template) = Embedding::weighted_mean(parts) else { continue };
        let template = rotation.protect(&template);
        let bar = calibration.threshold_for_fpir(target_fpir, gallery.len() + 1);
        if gallery.best(&template).is_some_and(|c| c.score >= bar) {
            refused_duplicates += 1;
            continue;
        }
        if gallery.insert(slot, &template).is_ok() {
            resident_of.push((slot, p));
        }
    }
    let threshold = calibration.threshold_for_fpir(target_fpir, gallery.len().max(1));
    let trace = |mated: Option<Slot>, frames: Vec<usize>| {
        let mut fusion = ApproachFusion::new(frames.len());
        let candidates = frames
            .iter()
            .map(|&s| {
                // A frame without a face ends the approach's fusion, as at the gate.
                let Some(embedding) = views.embeddings.get(s).and_then(Option::as_ref) else {
                    fusion.reset();
                    return None;
                };
                let weight = match rule.fusion() {
                    Fusion::None => return FrameCandidate::of(&gallery, &rotation.protect(embedding)),
                    Fusion::Mean => 1.0,
                    Fusion::Weighted => views.weights.get(s).copied()?,
                };
                // The fusion keeps its own (wiped) copy of each frame's embedding.
                let probe = fusion.add(Embedding::weighted_mean([(embedding, 1.0)])?, weight)?;
                FrameCandidate::of(&gallery, &rotation.protect(&probe))
            })
            .collect();
        let live = frames.iter().map(|&s| views.live.get(s).copied().flatten()).collect();
        Trace { mated, frames: candidates, live }
    };
    let mut traces = Vec::new();
    for &(slot, p) in &resident_of {
        let probes = people[p].probes();
        for start in 0..probes.len() {
            traces.push(trace(Some(slot), approach(&probes, start, rule.frames())));
        }
    }
    let enrolled: Vec<usize> = resident_of.iter().map(|&(_, p)| p).collect();
    for &p in fold.evaluation.iter().filter(|p| !enrolled.contains(p)) {
        let samples = &people[p].samples;
        for start in 0..samples.len() {
            traces.push(trace(None, approach(samples, start, rule.frames())));
        }
    }
    GalleryRun { size: draw.size, enrolled: gallery.len(), refused_duplicates, threshold, traces }
}

/// Decides one approach at `threshold` as the gate would: the admitted slot and the frame (from 1) it was
/// admitted at.
pub fn decide(trace: &Trace, threshold: f32, rule: Rule, live_threshold: Option<f32>) -> Option<(Slot, usize)> {
    let mut decider = rule.decider(live_threshold);
    for (k, frame) in trace.frames.iter().enumerate() {
        let margin = rule.margin();
        let slot = frame.filter(|c| c.score >= threshold && c.margin >= margin).map(|c| c.slot);
        let live = trace.live.get(k).copied().flatten();
        if let (Decision::Admit(_), Some(admitted)) =
            decider.decide(&GateEvent::FaceFrame(FaceObservation { slot, live }))
        {
            return Some((admitted, k + 1));
        }
    }
    None
}

/// Tallies a gallery's approaches at one threshold (`None`: the gallery's own).
pub fn tally(run: &GalleryRun, threshold: Option<f32>, rule: Rule, live_threshold: Option<f32>) -> Tally {
    let t = threshold.unwrap_or(run.threshold);
    let mut tally = Tally::default();
    for trace in &run.traces {
        let outcome = decide(trace, t, rule, live_threshold);
        match trace.mated {
            Some(truth) => {
                tally.mated += 1;
                match outcome {
                    Some((slot, frame)) if slot == truth => {
                        tally.hits += 1;
                        tally.frames_to_decision.push(frame);
                    }
                    Some(_) => tally.misidentified += 1,
                    None => {}
                }
            }
            None => {
                tally.non_mated += 1;
                tally.false_positives += usize::from(outcome.is_some());
                // The search after the whole approach: with fusion, the fully fused probe the calibration is for.
                if let Some(last) = trace.frames.last() {
                    tally.searches += 1;
                    tally.search_false_positives += usize::from(last.is_some_and(|c| c.score >= t));
                }
            }
        }
    }
    tally
}

/// Pools the tallies of several galleries.
pub fn pooled<'a>(
    runs: impl IntoIterator<Item = &'a GalleryRun>,
    threshold: Option<f32>,
    rule: Rule,
    live: Option<f32>,
) -> Tally {
    let mut total = Tally::default();
    for run in runs {
        total.add(&tally(run, threshold, rule, live));
    }
    total
}

/// The thresholds swept for FNIR at a measured FPIR.
pub fn threshold_grid() -> Vec<f32> {
    (0..=320u16).map(|i| 0.10 + f32::from(i) * 0.0025).collect()
}

/// A point of the threshold sweep: (FNIR, measured FPIR, threshold).
pub type SweepPoint = (f64, f64, f32);

/// FNIR at the lowest swept threshold whose measured FPIR is at most `fpir`.
pub fn fnir_at_fpir(runs: &[&GalleryRun], fpir: f64, rule: Rule, live: Option<f32>) -> Option<SweepPoint> {
    threshold_grid().into_iter().find_map(|t| {
        let tally = pooled(runs.iter().copied(), Some(t), rule, live);
        (tally.fpir() <= fpir).then(|| (tally.fnir(), tally.fpir(), t))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(mated: Option<Slot>, frames: &[Option<(Slot, f32)>]) -> Trace {
        let live = vec![Some(0.9); frames.len()];
        let frames =
            frames.iter().map(|f| f.map(|(slot, score)| FrameCandidate { slot, score, margin: 0.1 })).collect();
        Trace { mated, frames, live }
    }

    const GATE: Rule = Rule::Gate { required: 2, window: 3, fusion: Fusion::None, margin: 0.0 };

    #[test]
    fn the_gate_needs_agreement_and_a_single_frame_does_not() {
        let approach = trace(Some(4), &[Some((4, 0.6)), Some((9, 0.5)), Some((4, 0.55))]);
        assert_eq!(decide(&approach, 0.45, GATE, None), Some((4, 3)));
        assert_eq!(decide(&approach, 0.58, GATE, None), None, "one frame above the threshold is not enough");
        assert_eq!(decide(&approach, 0.58, Rule::SingleFrame, None), Some((4, 1)));
        // Liveness, when checked, refuses a matched approach that does not look live.
        let spoof = Trace { live: vec![Some(0.1); 3], ..approach.clone() };
        assert_eq!(decide(&spoof, 0.45, GATE, Some(0.5)), None);
        // A margin rule drops frames whose best resident barely leads the runner-up (here by 0.1).
        let strict = Rule::Gate { required: 2, window: 3, fusion: Fusion::None, margin: 0.2 };
        assert_eq!(decide(&approach, 0.45, strict, None), None);
        let loose = Rule::Gate { required: 2, window: 3, fusion: Fusion::None, margin: 0.05 };
        assert_eq!(decide(&approach, 0.45, loose, None), Some((4, 3)));
    }

    #[test]
    fn a_tally_counts_misses_misidentifications_and_strangers() {
        let run = GalleryRun {
            size: 2,
            enrolled: 2,
            refused_duplicates: 0,
            threshold: 0.5,
            traces: vec![
                trace(Some(1), &[Some((1, 0.7)), Some((1, 0.6)), None]),
                trace(Some(1), &[Some((2, 0.7)), Some((2, 0.6)), None]),
                trace(Some(2), &[None, Some((2, 0.3)), None]),
                // A stranger admitted on frames 2 and 3, whose last (fully fused) search also passes.
                trace(None, &[Some((1, 0.2)), Some((1, 0.55)), Some((1, 0.515))]),
                trace(None, &[Some((2, 0.2)), None, None]),
            ],
        };
        let at_own = tally(&run, None, GATE, None);
        assert_eq!((at_own.mated, at_own.hits, at_own.misidentified), (3, 1, 1));
        assert_eq!(at_own.frames_to_decision, vec![2]);
        assert_eq!(
            (at_own.non_mated, at_own.false_positives, at_own.searches, at_own.search_false_positives),
            (2, 1, 2, 1)
        );
        assert!((at_own.fnir() - 2.0 / 3.0).abs() < 1e-12 && (at_own.fpir() - 0.5).abs() < 1e-12);
        let (fnir, fpir, t) = fnir_at_fpir(&[&run], 0.0, GATE, None).unwrap();
        assert_eq!(fpir, 0.0);
        assert!(t > 0.515 && t < 0.519, "the first swept threshold above the stranger's last frame: {t}");
        assert!((fnir - 2.0 / 3.0).abs() < 1e-12, "the first resident is still admitted there");
    }
}
