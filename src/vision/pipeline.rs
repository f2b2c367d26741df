//! The per-frame vision path: frame -> detect -> pick the person in front -> quality gate -> align -> embed.
//!
//! Owns the choice of face (the largest, with the count of others reported) and the minimum face size below
//! which no embedding is attempted. It holds the loaded models; it keeps no frame and writes nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use crate::capture::{decode_file, DecodeError, DecodeLimits, Frame};
use crate::vision::align;
use crate::vision::detect::{self, DetectError, Detector, DetectorConfig, FaceDetection};
use crate::vision::embed::{EmbedError, Embedder, Embedding};

/// Settings of the vision path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PipelineConfig {
    /// Detector settings.
    pub detector: DetectorConfig,
    /// Faces whose box is narrower than this (frame pixels) are reported but not embedded.
    pub min_face_px: f32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        // SFace works on 112 px crops; below ~40 px the eyes span a handful of pixels and matching is noise.
        Self { detector: DetectorConfig::default(), min_face_px: 40.0 }
    }
}

/// Why a frame gave no embedding.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Nothing above the detector's threshold.
    #[error("no face found")]
    NoFace,
    /// The face is there but too small to recognise.
    #[error(
        "the face is too small ({width_px:.0} px wide, at least {min_px:.0} px needed); come closer to the camera"
    )]
    FaceTooSmall {
        /// Width of the largest face.
        width_px: f32,
        /// The minimum.
        min_px: f32,
    },
    /// The landmarks do not define a usable alignment.
    #[error("the face's landmarks are degenerate; cannot align")]
    Unalignable,
    /// The detector failed.
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// The embedder failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

/// What the vision path read from one frame.
#[derive(Debug)]
pub struct FaceReading {
    /// How many faces the detector found.
    pub n_faces: usize,
    /// The face that was embedded (the largest).
    pub face: FaceDetection,
    /// Its embedding.
    pub embedding: Embedding,
}

/// Errors of [`FacePipeline::read_file`]: the file, or the face in it.
#[derive(Debug, thiserror::Error)]
pub enum ReadFileError {
    /// The file is not a usable image.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The image holds no usable face.
    #[error(transparent)]
    Face(#[from] PipelineError),
}

/// The face a frame is read for: the largest the detector found, big enough to recognise; not yet embedded.
#[derive(Clone, Debug)]
pub struct FoundFace {
    /// How many faces the detector found.
    pub n_faces: usize,
    /// The largest.
    pub face: FaceDetection,
}

/// What reads a face from a frame: [`FacePipeline`] in production. A trait so the gate and enrolment can be
/// driven through a reader that wraps the real one (fault injection: a reader that panics on one frame). Finding
/// and embedding are apart so a caller can score the face's liveness on another core while it is embedded.
pub trait FaceReader: Send + Sync {
    /// Detects, picks the largest face and checks its size.
    fn find(&self, frame: &Frame) -> Result<FoundFace, PipelineError>;
    /// Aligns and embeds a face found in `frame`.
    fn embed(&self, frame: &Frame, face: &FaceDetection) -> Result<Embedding, PipelineError>;
    /// Detects every face (boxes and landmarks only: nothing is aligned or embedded).
    fn detect(&self, frame: &Frame) -> Result<Vec<FaceDetection>, PipelineError>;
    /// Finds and embeds the frame's face.
    fn read(&self, frame: &Frame) -> Result<FaceReading, PipelineError> {
        let FoundFace { n_faces, face } = self.find(frame)?;
        let embedding = self.embed(frame, &face)?;
        Ok(FaceReading { n_faces, face, embedding })
    }
}

impl FaceReader for FacePipeline {
    fn find(&self, frame: &Frame) -> Result<FoundFace, PipelineError> {
        FacePipeline::find(self, frame)
    }
    fn embed(&self, frame: &Frame, face: &FaceDetection) -> Result<Embedding, PipelineError> {
        let aligned = align::align(frame, &face.landmarks).ok_or(PipelineError::Unalignable)?;
        Ok(self.embedder.embed(&aligned)?)
    }
    fn detect(&self, frame: &Frame) -> Result<Vec<FaceDetection>, PipelineError> {
        Ok(self.detector.detect(frame)?)
    }
}

impl<T: FaceReader + ?Sized> FaceReader for std::sync::Arc<T> {
    fn find(&self, frame: &Frame) -> Result<FoundFace, PipelineError> {
        (**self).find(frame)
    }
    fn embed(&self, frame: &Frame, face: &FaceDetection) -> Result<Embedding, PipelineError> {
        (**self).embed(frame, face)
    }
    fn detect(&self, frame: &Frame) -> Result<Vec<FaceDetection>, PipelineError> {
        (**self).detect(frame)
    }
    fn read(&self, frame: &Frame) -> Result<FaceReading, PipelineError> {
        (**self).read(frame)
    }
}

/// Both models, loaded and optimised once; `&self` methods, so one instance serves every thread.
#[derive(Debug)]
pub struct FacePipeline {
    detector: Detector,
    embedder: Embedder,
    config: PipelineConfig,
}

impl FacePipeline {
    /// Loads and checks both models from `models_dir`.
    pub fn load(models_dir: &Path, config: PipelineConfig) -> Result<Self, PipelineError> {
        Ok(Self {
            detector: Detector::load(models_dir, config.detector)?,
            embedder: Embedder::load(models_dir)?,
            config,
        })
    }

    /// The detector, for callers that only need boxes.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// The embedder, for callers that align themselves.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// The settings in use.
    pub fn config(&self) -> PipelineConfig {
        self.config
    }

    /// Detects, picks the largest face, checks its size, aligns and embeds it.
    pub fn read(&self, frame: &Frame) -> Result<FaceReading, PipelineError> {
        self.read_with_crop(frame).map(|(reading, _)| reading)
    }

    /// Detects, picks the largest face and checks its size.
    pub fn find(&self, frame: &Frame) -> Result<FoundFace, PipelineError> {
        let faces = self.detector.detect(frame)?;
        let face = detect::largest(&faces).ok_or(PipelineError::NoFace)?.clone();
        if face.bbox.width < self.config.min_face_px {
            return Err(PipelineError::FaceTooSmall { width_px: face.bbox.width, min_px: self.config.min_face_px });
        }
        Ok(FoundFace { n_faces: faces.len(), face })
    }

    /// Like [`FacePipeline::read`], also handing back the aligned crop (for the enrolment quality gate). The
    /// crop wipes itself on drop.
    pub fn read_with_crop(&self, frame: &Frame) -> Result<(FaceReading, align::AlignedFace), PipelineError> {
        let FoundFace { n_faces, face } = self.find(frame)?;
        let aligned = align::align(frame, &face.landmarks).ok_or(PipelineError::Unalignable)?;
        let embedding = self.embedder.embed(&aligned)?;
        Ok((FaceReading { n_faces, face, embedding }, aligned))
    }

    /// Decodes an image file and reads the face in it.
    pub fn read_file(&self, path: &Path, limits: DecodeLimits) -> Result<FaceReading, ReadFileError> {
        let frame = decode_file(path, limits)?;
        Ok(self.read(&frame)?)
    }
}

/// A worker's `work` panicked on one item; the item is lost, the stream goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerPanicked {
    /// The item's position in pull order (from 0).
    pub seq: u64,
}

/// Runs `work` on `workers` threads over the items `next` yields, and hands the results to `deliver` one at a
/// time, in the order the items were pulled: frames are read on every core while the gate still decides on
/// them in camera order. `next` is called under a lock (one camera, read by whichever worker is free); it ends
/// the stream by returning `None`. A `work` that panics costs its own item only: `deliver` gets
/// `Err(WorkerPanicked)` in its place (its sequence number is not lost, so later results are not held back
/// forever) and the worker goes on. Returns how many items were handled.
pub fn ordered_parallel<T, R, N, W, D>(workers: usize, next: N, work: W, mut deliver: D) -> u64
where
    T: Send,
    R: Send,
    N: FnMut() -> Option<T> + Send,
    W: Fn(T) -> R + Sync,
    D: FnMut(Result<R, WorkerPanicked>),
{
    let source = Mutex::new((0u64, next));
    let (tx, rx) = std::sync::mpsc::channel::<(u64, Result<R, WorkerPanicked>)>();
    let mut delivered = 0u64;
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            let (tx, source, work) = (tx.clone(), &source, &work);
            scope.spawn(move || loop {
                let pulled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut guard = source.lock().unwrap_or_else(PoisonError::into_inner);
                    let (count, next) = &mut *guard;
                    let item = next()?;
                    *count += 1;
                    Some((*count - 1, item))
                }));
                // A source that panicked cannot be trusted to go on: end the stream.
                let Ok(Some((seq, item))) = pulled else { break };
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(item)))
                    .map_err(|_| WorkerPanicked { seq });
                if tx.send((seq, result)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        // Results arrive in any order; hold the early ones until their predecessors are delivered.
        let mut early = BTreeMap::new();
        for (seq, result) in rx {
            early.insert(seq, result);
            while let Some(result) = early.remove(&delivered) {
                deliver(result);
                delivered += 1;
            }
        }
    });
    delivered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_input_order_whatever_the_workers_timing() {
        for workers in [1, 2, 4] {
            let mut items = 0..200u64;
            let mut seen = Vec::new();
            let n = ordered_parallel(
                workers,
                move || items.next(),
                |i| {
                    // Later items finish first often: the reordering is exercised.
                    std::thread::sleep(std::time::Duration::from_micros((200 - i) % 7 * 50));
                    i * 2
                },
                |r| seen.push(r.unwrap()),
            );
            assert_eq!(n, 200);
            assert_eq!(seen, (0..200).map(|i| i * 2).collect::<Vec<_>>(), "{workers} workers");
        }
    }

    #[test]
    fn work_runs_on_several_threads_at_once() {
        let busy = std::sync::atomic::AtomicUsize::new(0);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        let mut items = 0..20;
        ordered_parallel(
            2,
            move || items.next(),
            |_| {
                let now = busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(5));
                busy.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            },
            |r| r.unwrap(),
        );
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// Issue 16: a panic in one worker used to lose its sequence number, and every later result waited for
    /// it forever (the gate stopped deciding). Now it costs that one item.
    #[test]
    fn a_panicking_item_costs_that_item_only() {
        for workers in [1, 2, 3] {
            let mut items = 0..50u64;
            let mut seen = Vec::new();
            let n = ordered_parallel(
                workers,
                move || items.next(),
                |i| {
                    assert!(i != 7 && i != 30, "injected fault on item {i}");
                    i
                },
                |r| seen.push(r),
            );
            assert_eq!(n, 50, "{workers} workers");
            assert_eq!(seen.len(), 50);
            assert_eq!(seen[7], Err(WorkerPanicked { seq: 7 }));
            assert_eq!(seen[30], Err(WorkerPanicked { seq: 30 }));
            let fine: Vec<u64> = seen.iter().filter_map(|r| r.ok()).collect();
            assert_eq!(fine, (0..50).filter(|&i| i != 7 && i != 30).collect::<Vec<_>>());
        }
    }
}
