//! Evaluation of the vision path on a labelled photo folder: how often faces are found, and how well
//! embeddings separate people.
//!
//! Owns reading the folder layout (`person_*/` sub-folders, one identity each) and the `pairs.csv` protocol
//! file, embedding every needed image in parallel (embeddings stay in memory and are wiped), and scoring
//! listed or all genuine/impostor pairs. The metrics themselves are pure ([`metrics`]). Nothing is written.

pub mod metrics;
pub mod open_set;
pub mod pad;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::capture::replay::list_images;
use crate::capture::DecodeLimits;
use crate::protect::{ProtectedTemplate, Rotation, TransformKey};
use crate::vision::embed::Embedding;
use crate::vision::pipeline::FacePipeline;

pub use metrics::{verification_metrics, OperatingPoint, VerificationMetrics};

/// The FMR targets every report gives.
pub const FMR_TARGETS: [f64; 3] = [1e-3, 1e-4, 1e-5];

/// Score given to a pair when either image gave no embedding: below any real cosine, so a failure to
/// acquire counts as a rejection (a false non-match for genuine pairs), never silently dropped.
pub const FAILED_PAIR_SCORE: f32 = -1.0;

/// Errors of an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The faces folder holds no `person_*` images.
    #[error("no labelled images under {0}: expected sub-folders named person_* holding photos")]
    NoLabelledImages(PathBuf),
    /// The pairs file cannot be read or parsed.
    #[error("pairs file {path}: {reason}")]
    Pairs {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No pair in the file matches the protocol prefix.
    #[error("no pair in {path} has a protocol starting with {prefix:?}")]
    NoPairs {
        /// The file.
        path: PathBuf,
        /// The prefix.
        prefix: String,
    },
    /// The scores do not allow the metrics (no genuine or no impostor pair).
    #[error("need at least one genuine and one impostor pair; got {genuine} genuine and {impostor} impostor")]
    NotEnoughPairs {
        /// Genuine pairs.
        genuine: usize,
        /// Impostor pairs.
        impostor: usize,
    },
}

/// One photo of a known identity, by path relative to the faces folder.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelledImage {
    /// Path relative to the faces folder.
    pub path: PathBuf,
    /// The identity (the `person_*` folder name).
    pub identity: String,
}

/// One row of a pairs file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// First image, relative to the faces folder.
    pub path_a: PathBuf,
    /// Second image.
    pub path_b: PathBuf,
    /// Same person?
    pub same: bool,
    /// Protocol name.
    pub protocol: String,
}

/// Every image in the `person_*` folders directly under `faces_dir`.
pub fn labelled_images(faces_dir: &Path) -> Result<Vec<LabelledImage>, EvalError> {
    let mut images = Vec::new();
    let entries = std::fs::read_dir(faces_dir).map_err(|_| EvalError::NoLabelledImages(faces_dir.to_path_buf()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("person_")))
        .collect();
    dirs.sort();
    for dir in dirs {
        let identity = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        for file in list_images(&dir) {
            let path = file.strip_prefix(faces_dir).map(Path::to_path_buf).unwrap_or(file);
            images.push(LabelledImage { path, identity: identity.clone() });
        }
    }
    if images.is_empty() {
        return Err(EvalError::NoLabelledImages(faces_dir.to_path_buf()));
    }
    Ok(images)
}

/// Reads `path_a,path_b,same,protocol` rows whose protocol starts with `protocol_prefix`.
pub fn read_pairs(pairs_file: &Path, protocol_prefix: &str) -> Result<Vec<Pair>, EvalError> {
    let err = |reason: String| EvalError::Pairs { path: pairs_file.to_path_buf(), reason };
    let mut reader = csv::Reader::from_path(pairs_file).map_err(|e| err(e.to_string()))?;
    let headers = reader.headers().map_err(|e| err(e.to_string()))?.clone();
    let column = |name: &str| {
        headers.iter().position(|h| h.trim() == name).ok_or_else(|| err(format!("no column {name:?} in the header")))
    };
    let (col_a, col_b, col_same, col_protocol) =
        (column("path_a")?, column("path_b")?, column("same")?, column("protocol")?);
    let mut pairs = Vec::new();
    for (row_idx, record) in reader.records().enumerate() {
        let record = record.map_err(|e| err(format!("row {}: {e}", row_idx + 2)))?;
        let field = |i: usize| record.get(i).map(str::trim).unwrap_or_default();
        let protocol = field(col_protocol);
        if !protocol.starts_with(protocol_prefix) {
            continue;
        }
        let same = match field(col_same) {
            "1" | "true" | "True" => true,
            "0" | "false" | "False" => false,
            other => return Err(err(format!("row {}: `same` must be 0 or 1, got {other:?}", row_idx + 2))),
        };
        pairs.push(Pair {
            path_a: PathBuf::from(field(col_a)),
            path_b: PathBuf::from(field(col_b)),
            same,
            protocol: protocol.to_owned(),
        });
    }
    if pairs.is_empty() {
        return Err(EvalError::NoPairs { path: pairs_file.to_path_buf(), prefix: protocol_prefix.to_owned() });
    }
    Ok(pairs)
}

/// What an evaluation found.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalReport {
    /// Images embedded (or attempted).
    pub images: usize,
    /// Images in which a usable face was found and embedded.
    pub detected: usize,
    /// Genuine pairs scored.
    pub genuine_pairs: usize,
    /// Impostor pairs scored.
    pub impostor_pairs: usize,
    /// Why the other images failed, by reason, with counts.
    pub failures: BTreeMap<String, usize>,
    /// The metrics.
    pub metrics: VerificationMetrics,
}

/// Embeddings of a set of images; a failed image is `None`. The vectors are wiped on drop.
pub struct EmbeddedSet {
    embeddings: Vec<Option<Embedding>>,
    failures: BTreeMap<String, usize>,
}

impl EmbeddedSet {
    /// Embeds every image (relative to `faces_dir`) in parallel; `progress` is called once per image.
    pub fn embed(
        pipeline: &FacePipeline,
        faces_dir: &Path,
        images: &[PathBuf],
        limits: DecodeLimits,
        progress: &(dyn Fn() + Sync),
    ) -> Self {
        let results: Vec<Result<Embedding, String>> = images
            .par_iter()
            .map(|rel| {
                let outcome =
                    pipeline.read_file(&faces_dir.join(rel), limits).map(|r| r.embedding).map_err(|e| failure_kind(&e));
                progress();
                outcome
            })
            .collect();
        let mut failures = BTreeMap::new();
        let embeddings = results
            .into_iter()
            .map(|r| match r {
                Ok(e) => Some(e),
                Err(kind) => {
                    *failures.entry(kind).or_insert(0) += 1;
                    None
                }
            })
            .collect();
        Self { embeddings, failures }
    }

    /// How many images gave an embedding.
    pub fn detected(&self) -> usize {
        self.embeddings.iter().filter(|e| e.is_some()).count()
    }

    /// The embedding of image `idx`, if any.
    pub fn get(&self, idx: usize) -> Option<&Embedding> {
        self.embeddings.get(idx).and_then(Option::as_ref)
    }

    /// Failure reasons and counts.
    pub fn failures(&self) -> &BTreeMap<String, usize> {
        &self.failures
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.embeddings.len()
    }

    /// True when no image was given.
    pub fn is_empty(&self) -> bool {
        self.embeddings.is_empty()
    }

    /// The unit vectors, one row per image (`None` where embedding failed), for scoring.
    pub fn rows(&self) -> Vec<Option<&[f32]>> {
        self.embeddings.iter().map(|e| e.as_ref().map(Embedding::as_slice)).collect()
    }

    /// The protected templates of every image under one rotation.
    pub fn protect(&self, rotation: &Rotation) -> Vec<Option<ProtectedTemplate>> {
        self.embeddings.iter().map(|e| e.as_ref().map(|e| rotation.protect(e))).collect()
    }
}

/// A short, stable name for why an image failed (no paths, no pixel data).
fn failure_kind(e: &crate::vision::pipeline::ReadFileError) -> String {
    use crate::vision::pipeline::{PipelineError, ReadFileError};
    match e {
        ReadFileError::Decode(_) => "unreadable image".into(),
        ReadFileError::Face(PipelineError::NoFace) => "no face found".into(),
        ReadFileError::Face(PipelineError::FaceTooSmall { .. }) => "face too small".into(),
        ReadFileError::Face(other) => format!("{other}"),
    }
}

/// Cosine of two rows, or [`FAILED_PAIR_SCORE`] if either is missing.
fn row_score(rows: &[Option<&[f32]>], a: usize, b: usize) -> f32 {
    match (rows.get(a).copied().flatten(), rows.get(b).copied().flatten()) {
        (Some(x), Some(y)) => crate::policy::matching::dot(x, y),
        _ => FAILED_PAIR_SCORE,
    }
}

/// Scores the listed pairs over `rows` (raw embeddings or protected templates).
pub fn score_listed_pairs(
    pairs: &[Pair],
    rows: &[Option<&[f32]>],
    index: &HashMap<PathBuf, usize>,
) -> (Vec<f32>, Vec<f32>) {
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for pair in pairs {
        let score = match (index.get(&pair.path_a), index.get(&pair.path_b)) {
            (Some(&a), Some(&b)) => row_score(rows, a, b),
            _ => FAILED_PAIR_SCORE,
        };
        if pair.same {
            genuine.push(score);
        } else {
            impostor.push(score);
        }
    }
    (genuine, impostor)
}

/// Scores every pair of distinct images: same identity = genuine, different = impostor. With `rows_b`, row i
/// of `rows` is compared with row j of `rows_b` (a linkage attack across two keys); otherwise within `rows`.
/// About 3 M pairs take a second.
pub fn score_all_pairs(identities: &[&str], rows: &[Option<&[f32]>]) -> (Vec<f32>, Vec<f32>) {
    score_pairs_across(identities, rows, rows)
}

fn score_pairs_across(
    identities: &[&str],
    rows_a: &[Option<&[f32]>],
    rows_b: &[Option<&[f32]>],
) -> (Vec<f32>, Vec<f32>) {
    let n = identities.len().min(rows_a.len()).min(rows_b.len());
    let per_row: Vec<(Vec<f32>, Vec<f32>)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (mut genuine, mut impostor) = (Vec::new(), Vec::with_capacity(n - i));
            for j in i + 1..n {
                let score = match (rows_a[i], rows_b[j]) {
                    (Some(x), Some(y)) => crate::policy::matching::dot(x, y),
                    _ => FAILED_PAIR_SCORE,
                };
                if identities[i] == identities[j] {
                    genuine.push(score);
                } else {
                    impostor.push(score);
                }
            }
            (genuine, impostor)
        })
        .collect();
    let mut genuine = Vec::new();
    let mut impostor = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for (g, i) in per_row {
        genuine.extend(g);
        impostor.extend(i);
    }
    (genuine, impostor)
}

/// What to evaluate.
#[derive(Clone, Debug)]
pub struct EvalRequest {
    /// The labelled folder.
    pub faces_dir: PathBuf,
    /// A pairs file; without it every pair of labelled images is scored.
    pub pairs_file: Option<PathBuf>,
    /// Only pairs whose protocol starts with this.
    pub protocol_prefix: String,
    /// Decoding limits.
    pub limits: DecodeLimits,
}

/// The images of an evaluation, embedded, and how to pair them.
struct Prepared {
    set: EmbeddedSet,
    /// The identity of each image (its folder).
    identities: Vec<String>,
    /// Listed pairs and the image index, or `None` for all pairs.
    listed: Option<(Vec<Pair>, HashMap<PathBuf, usize>)>,
}

impl Prepared {
    fn new(
        pipeline: &FacePipeline,
        request: &EvalRequest,
        on_total: &dyn Fn(usize),
        progress: &(dyn Fn() + Sync),
    ) -> Result<Self, EvalError> {
        let (images, listed) = match &request.pairs_file {
            Some(pairs_file) => {
                let pairs = read_pairs(pairs_file, &request.protocol_prefix)?;
                let mut images: Vec<PathBuf> =
                    pairs.iter().flat_map(|p| [p.path_a.clone(), p.path_b.clone()]).collect();
                images.sort();
                images.dedup();
                let index = images.iter().cloned().enumerate().map(|(i, p)| (p, i)).collect();
                (images, Some((pairs, index)))
            }
            None => (labelled_images(&request.faces_dir)?.into_iter().map(|l| l.path).collect(), None),
        };
        let identities = images
            .iter()
            .map(|p| p.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default())
            .collect();
        on_total(images.len());
        let set = EmbeddedSet::embed(pipeline, &request.faces_dir, &images, request.limits, progress);
        Ok(Self { set, identities, listed })
    }

    fn report(&self, rows: &[Option<&[f32]>]) -> Result<EvalReport, EvalError> {
        let (genuine, impostor) = match &self.listed {
            Some((pairs, index)) => score_listed_pairs(pairs, rows, index),
            None => {
                let identities: Vec<&str> = self.identities.iter().map(String::as_str).collect();
                score_all_pairs(&identities, rows)
            }
        };
        let metrics = verification_metrics(&genuine, &impostor, &FMR_TARGETS)
            .ok_or(EvalError::NotEnoughPairs { genuine: genuine.len(), impostor: impostor.len() })?;
        Ok(EvalReport {
            images: self.set.len(),
            detected: self.set.detected(),
            genuine_pairs: genuine.len(),
            impostor_pairs: impostor.len(),
            failures: self.set.failures().clone(),
            metrics,
        })
    }
}

/// Runs an evaluation end to end. `on_total` is told how many images will be embedded, `progress` is
/// called once per image done.
pub fn evaluate(
    pipeline: &FacePipeline,
    request: &EvalRequest,
    on_total: &dyn Fn(usize),
    progress: &(dyn Fn() + Sync),
) -> Result<EvalReport, EvalError> {
    let prepared = Prepared::new(pipeline, request, on_total, progress)?;
    prepared.report(&prepared.set.rows())
}

/// Raw against protected templates, with unlinkability and renewability across two keys.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtectedReport {
    /// Figures on raw embeddings.
    pub raw: EvalReport,
    /// The same pairs on protected templates (one key).
    pub protected: EvalReport,
    /// Global D<->sys (Gomez-Barrero et al. 2017) between templates of two keys: 0 = unlinkable, 1 = fully
    /// linkable.
    pub unlinkability_dsys: f64,
    /// Mean score of old-key templates against new-key probes of the same person.
    pub renewability_mean: f64,
    /// Maximum of the same.
    pub renewability_max: f64,
}

/// Evaluates raw and protected templates on the same images, and links templates across two fresh keys.
pub fn evaluate_protected(
    pipeline: &FacePipeline,
    request: &EvalRequest,
    on_total: &dyn Fn(usize),
    progress: &(dyn Fn() + Sync),
) -> Result<ProtectedReport, EvalError> {
    let prepared = Prepared::new(pipeline, request, on_total, progress)?;
    let raw = prepared.report(&prepared.set.rows())?;
    let (key_a, key_b) = (Rotation::from_key(&TransformKey::generate()), Rotation::from_key(&TransformKey::generate()));
    let (templates_a, templates_b) = (prepared.set.protect(&key_a), prepared.set.protect(&key_b));
    let rows_of = |t: &[Option<ProtectedTemplate>]| -> Vec<Option<Vec<f32>>> {
        t.iter().map(|t| t.as_ref().map(|t| t.as_slice().to_vec())).collect()
    };
    let (owned_a, owned_b) = (rows_of(&templates_a), rows_of(&templates_b));
    let rows_a: Vec<Option<&[f32]>> = owned_a.iter().map(|r| r.as_deref()).collect();
    let rows_b: Vec<Option<&[f32]>> = owned_b.iter().map(|r| r.as_deref()).collect();
    let protected = prepared.report(&rows_a)?;

    // Linkage across keys: mated = same person, different images; non-mated = different people.
    let identities: Vec<&str> = prepared.identities.iter().map(String::as_str).collect();
    let (mated, non_mated) = score_pairs_across(&identities, &rows_a, &rows_b);
    let keep = |v: Vec<f32>| v.into_iter().filter(|s| *s > FAILED_PAIR_SCORE).collect::<Vec<f32>>();
    let (mated, non_mated) = (keep(mated), keep(non_mated));
    let unlinkability_dsys = metrics::dsys_global(&mated, &non_mated, DSYS_BINS);
    // Renewability: every old-key template against every new-key probe of the same person, same image included.
    let mut renewed: Vec<f32> = mated.clone();
    renewed.extend(rows_a.iter().zip(&rows_b).filter_map(|(a, b)| Some(crate::policy::matching::dot((*a)?, (*b)?))));
    #[allow(clippy::cast_precision_loss)]
    let renewability_mean = renewed.iter().map(|&s| f64::from(s)).sum::<f64>() / renewed.len().max(1) as f64;
    let renewability_max = renewed.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    Ok(ProtectedReport {
        raw,
        protected,
        unlinkability_dsys,
        renewability_mean,
        renewability_max: f64::from(renewability_max),
    })
}

/// Histogram bins for D<->sys: 30, as the background notes found stable with few mated pairs.
pub const DSYS_BINS: usize = 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_filtered_by_protocol_prefix_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pairs.csv");
        std::fs::write(
            &file,
            "path_a,path_b,same,protocol\na.jpg,b.jpg,1,lfw_1\na.jpg,c.jpg,0,other\nb.jpg,c.jpg,0,lfw_3\n",
        )
        .unwrap();
        let pairs = read_pairs(&file, "lfw").unwrap();
        assert_eq!(pairs.len(), 2);
        assert!(pairs[0].same && !pairs[1].same);
        assert!(matches!(read_pairs(&file, "nope"), Err(EvalError::NoPairs { .. })));
        std::fs::write(&file, "path_a,path_b,same,protocol\na.jpg,b.jpg,maybe,lfw\n").unwrap();
        assert!(matches!(read_pairs(&file, ""), Err(EvalError::Pairs { .. })));
    }

    #[test]
    fn labelled_images_come_from_person_folders_only() {
        let dir = tempfile::tempdir().unwrap();
        for (folder, file) in
            [("person_0001", "a.jpg"), ("person_0001", "b.png"), ("person_0002", "c.jpg"), ("_negatives", "d.jpg")]
        {
            std::fs::create_dir_all(dir.path().join(folder)).unwrap();
            std::fs::write(dir.path().join(folder).join(file), b"x").unwrap();
        }
        let images = labelled_images(dir.path()).unwrap();
        assert_eq!(images.len(), 3);
        assert_eq!(
            images[2],
            LabelledImage { path: PathBuf::from("person_0002/c.jpg"), identity: "person_0002".into() }
        );
        assert!(matches!(labelled_images(&dir.path().join("_negatives")), Err(EvalError::NoLabelledImages(_))));
    }
}
