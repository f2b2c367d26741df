//! Evaluation of the vision path on a labelled photo folder: how often faces are found, and how well
//! embeddings separate people.
//!
//! Owns reading the folder layout (`person_*/` sub-folders, one identity each) and the `pairs.csv` protocol
//! file, embedding every needed image in parallel (embeddings stay in memory and are wiped), and scoring
//! listed or all genuine/impostor pairs. The metrics themselves are pure ([`metrics`]). Nothing is written.

pub mod metrics;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::capture::replay::list_images;
use crate::capture::DecodeLimits;
use crate::embed::{Embedding, EMBEDDING_DIM};
use crate::pipeline::FacePipeline;

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

    /// Cosine of two images, or [`FAILED_PAIR_SCORE`] if either has no embedding.
    pub fn score(&self, a: usize, b: usize) -> f32 {
        match (self.get(a), self.get(b)) {
            (Some(x), Some(y)) => x.cosine(y),
            _ => FAILED_PAIR_SCORE,
        }
    }
}

/// A short, stable name for why an image failed (no paths, no pixel data).
fn failure_kind(e: &crate::pipeline::ReadFileError) -> String {
    use crate::pipeline::{PipelineError, ReadFileError};
    match e {
        ReadFileError::Decode(_) => "unreadable image".into(),
        ReadFileError::Face(PipelineError::NoFace) => "no face found".into(),
        ReadFileError::Face(PipelineError::FaceTooSmall { .. }) => "face too small".into(),
        ReadFileError::Face(other) => format!("{other}"),
    }
}

/// Scores the listed pairs.
pub fn score_listed_pairs(pairs: &[Pair], set: &EmbeddedSet, index: &HashMap<PathBuf, usize>) -> (Vec<f32>, Vec<f32>) {
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for pair in pairs {
        let score = match (index.get(&pair.path_a), index.get(&pair.path_b)) {
            (Some(&a), Some(&b)) => set.score(a, b),
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

/// Scores every pair of distinct images: same identity = genuine, different = impostor. Runs over a flat
/// matrix of the embeddings (wiped afterwards) so ~3 M pairs take about a second.
pub fn score_all_pairs(identities: &[&str], set: &EmbeddedSet) -> (Vec<f32>, Vec<f32>) {
    let n = identities.len().min(set.len());
    let mut matrix = Zeroizing::new(vec![0.0f32; n * EMBEDDING_DIM]);
    let mut ok = vec![false; n];
    for idx in 0..n {
        if let Some(e) = set.get(idx) {
            matrix[idx * EMBEDDING_DIM..(idx + 1) * EMBEDDING_DIM].copy_from_slice(e.as_slice());
            ok[idx] = true;
        }
    }
    let per_row: Vec<(Vec<f32>, Vec<f32>)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (mut genuine, mut impostor) = (Vec::new(), Vec::with_capacity(n - i));
            let row_i = &matrix[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM];
            for j in i + 1..n {
                let score = if ok[i] && ok[j] {
                    let row_j = &matrix[j * EMBEDDING_DIM..(j + 1) * EMBEDDING_DIM];
                    row_i.iter().zip(row_j).map(|(a, b)| a * b).sum()
                } else {
                    FAILED_PAIR_SCORE
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

/// Runs an evaluation end to end. `on_total` is told how many images will be embedded, `progress` is
/// called once per image done.
pub fn evaluate(
    pipeline: &FacePipeline,
    request: &EvalRequest,
    on_total: &dyn Fn(usize),
    progress: &(dyn Fn() + Sync),
) -> Result<EvalReport, EvalError> {
    let (set, images, genuine, impostor) = match &request.pairs_file {
        Some(pairs_file) => {
            let pairs = read_pairs(pairs_file, &request.protocol_prefix)?;
            let mut images: Vec<PathBuf> = pairs.iter().flat_map(|p| [p.path_a.clone(), p.path_b.clone()]).collect();
            images.sort();
            images.dedup();
            let index: HashMap<PathBuf, usize> = images.iter().cloned().enumerate().map(|(i, p)| (p, i)).collect();
            on_total(images.len());
            let set = EmbeddedSet::embed(pipeline, &request.faces_dir, &images, request.limits, progress);
            let (genuine, impostor) = score_listed_pairs(&pairs, &set, &index);
            (set, images.len(), genuine, impostor)
        }
        None => {
            let labelled = labelled_images(&request.faces_dir)?;
            let paths: Vec<PathBuf> = labelled.iter().map(|l| l.path.clone()).collect();
            on_total(paths.len());
            let set = EmbeddedSet::embed(pipeline, &request.faces_dir, &paths, request.limits, progress);
            let identities: Vec<&str> = labelled.iter().map(|l| l.identity.as_str()).collect();
            let (genuine, impostor) = score_all_pairs(&identities, &set);
            (set, paths.len(), genuine, impostor)
        }
    };
    let metrics = verification_metrics(&genuine, &impostor, &FMR_TARGETS)
        .ok_or(EvalError::NotEnoughPairs { genuine: genuine.len(), impostor: impostor.len() })?;
    Ok(EvalReport {
        images,
        detected: set.detected(),
        genuine_pairs: genuine.len(),
        impostor_pairs: impostor.len(),
        failures: set.failures().clone(),
        metrics,
    })
}

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
