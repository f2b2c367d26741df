//! Enrolment: from several good frames of a consenting resident to one averaged embedding.
//!
//! The quality gate (face size, frontal pose from the landmarks, sharpness of the aligned crop) and the
//! session that collects K good, live frames of one face and averages them; pure but for
//! [`EnrolmentSession::offer_frame`], which runs the vision path and the liveness models on a frame. A frame
//! the liveness check does not find live is never used, so nobody can be enrolled from a printed photo or a
//! screen held up to the camera. Consent, the duplicate check, sealing and storage are the registry's; this
//! module never writes and never keeps a frame.

use crate::capture::Frame;
use crate::vision::align::{AlignedFace, ALIGNED_SIZE};
use crate::vision::detect::{FaceDetection, Landmarks};
use crate::vision::embed::Embedding;
use crate::vision::liveness::{LivenessError, LivenessModel};
use crate::vision::pipeline::{FaceReader, PipelineError};

/// Limits a frame must meet to be used for enrolment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QualityGate {
    /// Minimum distance between the eyes, in frame pixels.
    pub min_eye_distance_px: f32,
    /// How far off-centre the nose may sit between the eyes (0 = centred, 0.5 = under an eye): yaw.
    pub max_yaw: f32,
    /// Largest tilt of the eye line, as a fraction of the eye distance: roll.
    pub max_roll: f32,
    /// Minimum variance of the Laplacian of the aligned crop's grey levels: sharpness.
    pub min_sharpness: f32,
}

impl Default for QualityGate {
    fn default() -> Self {
        // A gate camera at 0.5-1.5 m gives 40-120 px between the eyes; 25 px is a face of ~65 px.
        Self { min_eye_distance_px: 25.0, max_yaw: 0.25, max_roll: 0.35, min_sharpness: 30.0 }
    }
}

/// Why a frame was not used.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum QualityIssue {
    /// Too small, turned or tilted.
    #[error(transparent)]
    Pose(#[from] PoseIssue),
    /// Motion or focus blur.
    #[error("the picture is blurred (sharpness {sharpness:.0}); hold still")]
    Blurred {
        /// Measured sharpness.
        sharpness: f32,
    },
    /// The liveness check found a photo or a screen rather than a live face.
    #[error(
        "this does not look like a live face (live score {score:.2}); a photo or a screen cannot be enrolled: \
         look at the camera yourself, in even light"
    )]
    NotLive {
        /// The frame's live score (0..1).
        score: f32,
    },
}

/// Why a frame could not be offered at all (no usable face, or a model failed).
#[derive(Debug, thiserror::Error)]
pub enum EnrolFrameError {
    /// Detection, alignment or embedding.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The liveness models.
    #[error(transparent)]
    Liveness(#[from] LivenessError),
}

/// The pose of a detected face, from its five landmarks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FacePose {
    /// Pixels between the eyes.
    pub eye_distance_px: f32,
    /// Where the nose sits along the eye line, less a half (0 = frontal, +-0.5 = under an eye).
    pub yaw: f32,
    /// The eye line's rise over its length (0 = level).
    pub roll: f32,
}

impl FacePose {
    /// The pose of the face with these landmarks.
    pub fn of(landmarks: &Landmarks) -> Self {
        let [right_eye, left_eye, nose, _, _] = *landmarks;
        let (dx, dy) = (left_eye[0] - right_eye[0], left_eye[1] - right_eye[1]);
        let eye_distance = dx.hypot(dy).max(f32::EPSILON);
        // The nose projected on the eye line, 0 at the right eye, 1 at the left.
        let along = ((nose[0] - right_eye[0]) * dx + (nose[1] - right_eye[1]) * dy) / (eye_distance * eye_distance);
        Self { eye_distance_px: eye_distance, yaw: along - 0.5, roll: dy / eye_distance }
    }
}

/// Why a face's pose is not good enough for enrolment.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum PoseIssue {
    /// Too far from the camera.
    #[error("the face is too small ({eye_distance_px:.0} px between the eyes); come closer")]
    TooSmall {
        /// Measured eye distance.
        eye_distance_px: f32,
    },
    /// Head turned sideways.
    #[error("please look straight at the camera (head turned)")]
    Turned,
    /// Head tilted.
    #[error("please hold your head level")]
    Tilted,
}

impl QualityGate {
    /// Checks a face's pose: size, roll, yaw.
    pub fn check_pose(&self, pose: &FacePose) -> Result<(), PoseIssue> {
        if pose.eye_distance_px < self.min_eye_distance_px {
            return Err(PoseIssue::TooSmall { eye_distance_px: pose.eye_distance_px });
        }
        if pose.roll.abs() > self.max_roll {
            return Err(PoseIssue::Tilted);
        }
        if pose.yaw.abs() > self.max_yaw {
            return Err(PoseIssue::Turned);
        }
        Ok(())
    }

    /// Checks one detected face and its aligned crop.
    pub fn check(&self, face: &FaceDetection, aligned: &AlignedFace) -> Result<(), QualityIssue> {
        self.check_pose(&FacePose::of(&face.landmarks))?;
        let sharpness = laplacian_variance(aligned);
        if sharpness < self.min_sharpness {
            return Err(QualityIssue::Blurred { sharpness });
        }
        Ok(())
    }
}

/// Variance of the 4-neighbour Laplacian over the crop's grey levels (a standard focus measure).
pub fn laplacian_variance(face: &AlignedFace) -> f32 {
    let rgb = face.rgb();
    let grey = |x: usize, y: usize| {
        let i = (y * ALIGNED_SIZE + x) * 3;
        0.299 * f32::from(rgb[i]) + 0.587 * f32::from(rgb[i + 1]) + 0.114 * f32::from(rgb[i + 2])
    };
    let (mut sum, mut sum_sq, mut n) = (0.0f64, 0.0f64, 0.0f64);
    // The centre of the crop: the face, not the black corners a rotation leaves.
    for y in 16..ALIGNED_SIZE - 16 {
        for x in 16..ALIGNED_SIZE - 16 {
            let lap = grey(x - 1, y) + grey(x + 1, y) + grey(x, y - 1) + grey(x, y + 1) - 4.0 * grey(x, y);
            sum += f64::from(lap);
            sum_sq += f64::from(lap) * f64::from(lap);
            n += 1.0;
        }
    }
    let mean = sum / n;
    #[allow(clippy::cast_possible_truncation)]
    let variance = (sum_sq / n - mean * mean) as f32;
    variance
}

/// The outcome of offering one frame to an enrolment session.
#[derive(Debug, PartialEq)]
pub enum FrameVerdict {
    /// Used; this many good frames so far.
    Accepted(usize),
    /// Not used, and why (shown to the resident).
    Rejected(QualityIssue),
    /// Used, but it does not look like the same person as the earlier frames: the session starts over.
    Inconsistent,
}

/// Collects K good, live frames of one person and averages them.
#[derive(Debug)]
pub struct EnrolmentSession {
    needed: usize,
    gate: QualityGate,
    live_threshold: f32,
    min_self_similarity: f32,
    embeddings: Vec<Embedding>,
}

impl EnrolmentSession {
    /// A session that needs `needed` good frames (at least 1), each with a live score of at least
    /// `live_threshold` (the gate's threshold, `[liveness] threshold`).
    pub fn new(needed: usize, gate: QualityGate, live_threshold: f32) -> Self {
        // Frames of one person in one sitting score far above any impostor (cosine > 0.5 typically; the
        // FMR 1e-5 threshold is 0.46): lower means two people took turns.
        Self { needed: needed.max(1), gate, live_threshold, min_self_similarity: 0.5, embeddings: Vec::new() }
    }

    /// Offers a frame's face, crop, embedding and live score. Each frame must be live on its own: the gate
    /// fuses the score over a decision's frames, but a template is for years, so enrolment takes no frame
    /// that a mean could carry.
    pub fn offer(
        &mut self,
        face: &FaceDetection,
        aligned: &AlignedFace,
        embedding: Embedding,
        live_score: f32,
    ) -> FrameVerdict {
        if let Err(issue) = self.gate.check(face, aligned) {
            return FrameVerdict::Rejected(issue);
        }
        // Written so that a NaN score is not live.
        if live_score.is_nan() || live_score < self.live_threshold {
            return FrameVerdict::Rejected(QualityIssue::NotLive { score: live_score });
        }
        if let Some(first) = self.embeddings.first() {
            if first.cosine(&embedding) < self.min_self_similarity {
                self.embeddings.clear();
                self.embeddings.push(embedding);
                return FrameVerdict::Inconsistent;
            }
        }
        self.embeddings.push(embedding);
        FrameVerdict::Accepted(self.embeddings.len())
    }

    /// Runs the vision path and the liveness check on a frame (largest face) and offers the result. The
    /// frame is only read.
    pub fn offer_frame<R: FaceReader + ?Sized>(
        &mut self,
        pipeline: &R,
        liveness: &LivenessModel,
        frame: &Frame,
    ) -> Result<FrameVerdict, EnrolFrameError> {
        let reading = pipeline.read(frame)?;
        let aligned = crate::vision::align::align(frame, &reading.face.landmarks).ok_or(PipelineError::Unalignable)?;
        let live_score = liveness.score(frame, &reading.face.bbox)?;
        Ok(self.offer(&reading.face, &aligned, reading.embedding, live_score))
    }

    /// Good frames so far.
    pub fn good_frames(&self) -> usize {
        self.embeddings.len()
    }

    /// True once enough good frames are in.
    pub fn is_complete(&self) -> bool {
        self.embeddings.len() >= self.needed
    }

    /// The averaged, unit-length embedding, once complete. Consumes the session (its frames' embeddings
    /// are wiped as it drops).
    pub fn finish(self) -> Option<Embedding> {
        if self.is_complete() {
            Embedding::mean(&self.embeddings)
        } else {
            None
        }
    }
}

/// Where the portal asks for an enrolment and the gate's camera loop does it: one job at a time, on the gate
/// camera, with the same quality and liveness checks as `facegate enroll`. The finished embedding is handed
/// over once, in memory, and wiped with the job otherwise. While a job runs, the camera serves it instead of
/// matching faces; PIN, pass and guard entry are untouched.
#[derive(Default)]
pub struct EnrolmentDesk {
    job: std::sync::Mutex<Option<DeskJob>>,
    next_id: std::sync::atomic::AtomicU64,
}

struct DeskJob {
    id: u64,
    session: Option<EnrolmentSession>,
    needed: usize,
    deadline: std::time::Instant,
    last_issue: Option<DeskHint>,
    failed: Option<DeskFailure>,
}

/// Why the last frame offered to an enrolment was not used: what the resident's page says, never an internal
/// error's text.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum DeskHint {
    /// The face was seen but is not good enough.
    #[error(transparent)]
    Quality(QualityIssue),
    /// Another face than the one being enrolled.
    #[error("a different face appeared; starting over")]
    NewFace,
    /// No face in the frame.
    #[error("no face in view")]
    NoFace,
    /// The frame could not be read (the reason is in the log).
    #[error("that frame could not be read; keep still and look at the camera")]
    Unreadable,
}

/// Why a capture ended without an embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeskFailure {
    /// The job was collected, replaced or never started.
    #[error("this capture is no longer running; start again")]
    NotRunning,
    /// The frames could not be averaged.
    #[error("capture failed; start again")]
    CaptureFailed,
    /// Not enough good frames before the deadline.
    #[error("no good, live frames in time: stand in front of the camera, in even light, and try again")]
    Timeout,
}

/// How a job stands, for the page the resident watches.
#[derive(Debug)]
pub enum DeskProgress {
    /// Still capturing: good frames so far, frames needed, and the last hint (never an image).
    Capturing {
        /// Good frames so far.
        good: usize,
        /// Frames needed.
        needed: usize,
        /// Why the last frame was not used, if it was not.
        hint: Option<DeskHint>,
    },
    /// Done: the averaged embedding, handed over once.
    Complete(Embedding),
    /// Gave up (timeout), or the job is not known (already collected, or replaced).
    Failed(DeskFailure),
}

/// The desk is busy with another resident's capture.
#[derive(Debug, thiserror::Error)]
#[error("the gate camera is enrolling someone else; try again in a minute")]
pub struct DeskBusy;

impl EnrolmentDesk {
    /// Starts a capture job; a job past its deadline is replaced.
    pub fn start(
        &self,
        needed: usize,
        gate: QualityGate,
        live_threshold: f32,
        timeout: std::time::Duration,
    ) -> Result<u64, DeskBusy> {
        let mut job = self.job.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        if job.as_ref().is_some_and(|j| j.deadline > now && j.failed.is_none()) {
            return Err(DeskBusy);
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        *job = Some(DeskJob {
            id,
            session: Some(EnrolmentSession::new(needed, gate, live_threshold)),
            needed: needed.max(1),
            deadline: now + timeout,
            last_issue: None,
            failed: None,
        });
        Ok(id)
    }

    /// True while a capture job wants frames.
    pub fn wants_frames(&self) -> bool {
        let job = self.job.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        job.as_ref().is_some_and(|j| {
            j.failed.is_none()
                && j.deadline > std::time::Instant::now()
                && j.session.as_ref().is_some_and(|s| !s.is_complete())
        })
    }

    /// The camera loop's side: offers one frame to the running job (the frame is only read).
    pub fn offer_frame(&self, pipeline: &dyn FaceReader, liveness: &LivenessModel, frame: &Frame) {
        let mut guard = self.job.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(job) = guard.as_mut() else { return };
        let Some(session) = job.session.as_mut() else { return };
        if session.is_complete() {
            return;
        }
        job.last_issue = match session.offer_frame(pipeline, liveness, frame) {
            Ok(FrameVerdict::Accepted(_)) => None,
            Ok(FrameVerdict::Rejected(issue)) => Some(DeskHint::Quality(issue)),
            Ok(FrameVerdict::Inconsistent) => Some(DeskHint::NewFace),
            Err(EnrolFrameError::Pipeline(PipelineError::NoFace)) => Some(DeskHint::NoFace),
            Err(e) => {
                tracing::warn!("enrolment: a frame could not be read: {e}");
                Some(DeskHint::Unreadable)
            }
        };
    }

    /// The portal's side: how job `id` stands. A complete job hands its embedding over and ends.
    pub fn progress(&self, id: u64) -> DeskProgress {
        let mut guard = self.job.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(job) = guard.as_mut().filter(|j| j.id == id) else {
            return DeskProgress::Failed(DeskFailure::NotRunning);
        };
        if let Some(reason) = job.failed {
            return DeskProgress::Failed(reason);
        }
        let complete = job.session.as_ref().is_some_and(EnrolmentSession::is_complete);
        if complete {
            let embedding = job.session.take().and_then(EnrolmentSession::finish);
            *guard = None;
            return embedding.map_or(DeskProgress::Failed(DeskFailure::CaptureFailed), DeskProgress::Complete);
        }
        if job.deadline <= std::time::Instant::now() {
            job.session = None;
            job.failed = Some(DeskFailure::Timeout);
            return DeskProgress::Failed(DeskFailure::Timeout);
        }
        DeskProgress::Capturing {
            good: job.session.as_ref().map_or(0, EnrolmentSession::good_frames),
            needed: job.needed,
            hint: job.last_issue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::detect::BoundingBox;
    use crate::vision::embed::EMBEDDING_DIM;

    fn face(landmarks: [[f32; 2]; 5]) -> FaceDetection {
        FaceDetection { bbox: BoundingBox { x: 0.0, y: 0.0, width: 100.0, height: 120.0 }, score: 0.95, landmarks }
    }

    fn frontal() -> [[f32; 2]; 5] {
        [[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 80.0], [65.0, 80.0]]
    }

    fn textured() -> AlignedFace {
        let rgb: Vec<u8> = (0..ALIGNED_SIZE * ALIGNED_SIZE * 3)
            .map(|i| if (i / 3 + i / (3 * ALIGNED_SIZE)).is_multiple_of(2) { 0 } else { 200 })
            .collect();
        AlignedFace::from_rgb(&rgb).unwrap()
    }

    fn flat() -> AlignedFace {
        AlignedFace::from_rgb(&[128u8; ALIGNED_SIZE * ALIGNED_SIZE * 3]).unwrap()
    }

    fn embedding(axis: usize, mix: f32) -> Embedding {
        let mut raw = [0.0f32; EMBEDDING_DIM];
        raw[axis] = 1.0;
        raw[(axis + 1) % EMBEDDING_DIM] = mix;
        Embedding::from_raw(&raw).unwrap()
    }

    #[test]
    fn the_gate_refuses_small_turned_tilted_and_blurred_faces() {
        let gate = QualityGate::default();
        assert_eq!(gate.check(&face(frontal()), &textured()), Ok(()));
        let mut small = frontal();
        small[1][0] = 45.0;
        assert!(matches!(gate.check(&face(small), &textured()), Err(QualityIssue::Pose(PoseIssue::TooSmall { .. }))));
        let mut turned = frontal();
        turned[2][0] = 68.0;
        assert_eq!(gate.check(&face(turned), &textured()), Err(QualityIssue::Pose(PoseIssue::Turned)));
        let mut tilted = frontal();
        tilted[1][1] = 60.0;
        assert_eq!(gate.check(&face(tilted), &textured()), Err(QualityIssue::Pose(PoseIssue::Tilted)));
        assert!(matches!(gate.check(&face(frontal()), &flat()), Err(QualityIssue::Blurred { .. })));
    }

    #[test]
    fn a_session_averages_k_consistent_frames_and_restarts_on_a_new_face() {
        let mut session = EnrolmentSession::new(3, QualityGate::default(), 0.5);
        assert_eq!(session.offer(&face(frontal()), &textured(), embedding(0, 0.1), 0.9), FrameVerdict::Accepted(1));
        assert_eq!(
            session.offer(&face(frontal()), &flat(), embedding(0, 0.1), 0.9),
            FrameVerdict::Rejected(QualityIssue::Blurred { sharpness: 0.0 })
        );
        assert_eq!(session.offer(&face(frontal()), &textured(), embedding(40, 0.0), 0.9), FrameVerdict::Inconsistent);
        assert!(!session.is_complete());
        assert_eq!(session.offer(&face(frontal()), &textured(), embedding(40, 0.2), 0.9), FrameVerdict::Accepted(2));
        assert_eq!(session.offer(&face(frontal()), &textured(), embedding(40, -0.2), 0.9), FrameVerdict::Accepted(3));
        let mean = session.finish().unwrap();
        assert!((mean.as_slice()[40] - 1.0).abs() < 0.05);
    }

    #[test]
    fn frames_that_are_not_live_are_never_used_even_between_live_ones() {
        let mut session = EnrolmentSession::new(2, QualityGate::default(), 0.5);
        assert_eq!(session.offer(&face(frontal()), &textured(), embedding(0, 0.1), 0.8), FrameVerdict::Accepted(1));
        for score in [0.49, 0.0, f32::NAN] {
            let verdict = session.offer(&face(frontal()), &textured(), embedding(0, 0.1), score);
            assert!(matches!(verdict, FrameVerdict::Rejected(QualityIssue::NotLive { .. })), "{score}: {verdict:?}");
        }
        assert!(!session.is_complete(), "a photo's frames completed a session");
        assert_eq!(session.offer(&face(frontal()), &textured(), embedding(0, 0.2), 0.5), FrameVerdict::Accepted(2));
        assert!(session.finish().is_some());
        // A printed photo alone never completes a session, however many frames it is shown for.
        let mut photo_only = EnrolmentSession::new(1, QualityGate::default(), 0.5);
        for _ in 0..50 {
            photo_only.offer(&face(frontal()), &textured(), embedding(3, 0.0), 0.2);
        }
        assert!(photo_only.finish().is_none());
    }
}
