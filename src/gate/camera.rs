//! The camera reader and its frame workers: every frame goes to the QR search's own thread
//! ([`PassSearch`], which takes the newest frame and never holds the others up); face detection, embedding
//! and liveness run only while a resident has shown intent (the liveness models on a helper thread beside
//! detection and embedding, so a frame takes about as long as those two); readings handed on in camera order,
//! where the approach's frames are fused and identified, then to the event loop.
//!
//! The ordered stage owns the approach ([`Approach`]): each frame's embedding joins the mean of the approach's
//! recent frames and that fused probe is matched against the gallery snapshot the registry's owner last
//! published (an `Arc`, no lock), so no frame waits on an enrolment, a revocation or the database. A worker
//! that panics costs one frame: the fault is logged and counted and the next frames are decided. Frames are
//! dropped (and wiped) as soon as the worker and the QR search are done with them, embeddings once fused;
//! nothing here writes or logs a frame, a crop or an embedding.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::pass_search::{CloseOnDrop, PassSearch};
use super::{FrameClock, GateSettings, Input, Shared};
use crate::capture::{Frame, FrameSource};
use crate::policy::decide::{FaceObservation, GateEvent};
use crate::registry::GallerySnapshot;
use crate::vision::aim::{AimView, AimingDesk};
use crate::vision::embed::Embedding;
use crate::vision::enrol::{EnrolmentDesk, QualityGate};
use crate::vision::fuse::ApproachFusion;
use crate::vision::liveness::LivenessModel;
use crate::vision::pipeline::{FaceReader, WorkerPanicked};
use crate::vision::qr::CodeReader;

/// What a worker read from one frame; the frame itself is gone (wiped) by the time this is delivered.
struct FrameReading {
    n: u64,
    started: Instant,
    face: FaceWork,
}

enum FaceWork {
    /// The frame went to an enrolment asked for by the portal.
    Enrolment,
    /// Face matching was on: the largest face, if there was one.
    Read(Option<FaceRead>),
    /// Face matching was off for this frame.
    Off,
}

/// One frame's largest face as a worker read it: its embedding (wiped on drop) and, with the liveness models,
/// its live score. Liveness is scored on every face read, not only on frames that match alone: a fused probe
/// can match where the frame alone did not, and the decision needs each agreeing frame's score.
struct FaceRead {
    embedding: Embedding,
    live: Option<f32>,
}

/// The detector-and-embedder and the liveness models a camera needs for faces.
pub(super) type FaceModels = (Arc<dyn FaceReader>, Option<Arc<LivenessModel>>);

/// The face models the camera uses, set once: at start, or later, when the daemon's retries read models that
/// were missing or damaged at start. Empty, the camera reads passes only (or nothing); never emptied while
/// frames are read.
#[derive(Default)]
pub struct FaceModelSlot(OnceLock<FaceModels>);

impl FaceModelSlot {
    /// Sets the models, unless set already. Without the liveness models when `needs_liveness` (a liveness
    /// threshold is set), face entry stays off: a face must match and be live, or a photo would open the door.
    /// Returns whether these models are now the camera's.
    pub fn fill(
        &self,
        pipeline: Arc<dyn FaceReader>,
        liveness: Option<Arc<LivenessModel>>,
        needs_liveness: bool,
    ) -> bool {
        if needs_liveness && liveness.is_none() {
            return false;
        }
        self.0.set((pipeline, liveness)).is_ok()
    }

    /// Whether face entry has its models.
    pub fn is_set(&self) -> bool {
        self.0.get().is_some()
    }

    fn get(&self) -> Option<&FaceModels> {
        self.0.get()
    }
}

/// What reads the camera's frames: the face models (once they are loaded) and the QR search.
pub(super) struct Readers {
    pub(super) models: Arc<FaceModelSlot>,
    pub(super) qr: Arc<dyn CodeReader>,
}

/// Where the portal asks the camera for something other than matching: an enrolment, the aiming figures.
pub(super) struct Desks {
    pub(super) enrolment: Option<Arc<EnrolmentDesk>>,
    pub(super) aiming: Option<Arc<AimingDesk>>,
}

/// Reads the camera at most `settings.fps` times a second and has `settings.face_workers` threads read the
/// frames ([`crate::vision::pipeline::ordered_parallel`]); the readings are then turned into events one at a time,
/// in camera order, so the decision sees frames as they were taken.
pub(super) fn camera_loop(
    camera: Box<dyn FrameSource>,
    Readers { models, qr }: Readers,
    desks: Desks,
    compound: Option<Arc<crate::compound::LinkHealth>>,
    shared: &Shared,
    tx: &mpsc::Sender<Input>,
    settings: GateSettings,
) {
    let events = Events { tx, closed: AtomicBool::new(false) };
    let mut frames = Frames {
        camera,
        period: Duration::from_secs_f32(1.0 / settings.fps.clamp(0.1, 120.0)),
        last_read: None,
        n: 0,
        down: false,
    };
    let work = FrameWork { models, desk: desks.enrolment, aiming: desks.aiming, compound };
    let mut readings = Readings { face_was_on: false, approach: Approach::new(settings.agreement.1) };
    let passes = settings.passes_from_camera.then(PassSearch::default);
    std::thread::scope(|scope| {
        let _close = passes.as_ref().map(CloseOnDrop);
        if let Some(search) = &passes {
            let started = std::thread::Builder::new()
                .name("qr".into())
                .spawn_scoped(scope, || search.run(qr.as_ref(), shared, tx));
            if let Err(e) = started {
                tracing::error!("cannot start the QR search thread, camera-read passes are off: {e}");
                // Closed, it takes no frame: none is held for a search that will never come.
                search.close();
            }
        }
        let wanted = || passes.is_some() || work.models.is_set();
        crate::vision::pipeline::ordered_parallel(
            settings.face_workers.max(1),
            || {
                let (n, started, frame) = frames.next(shared, &events, &wanted)?;
                let frame = Arc::new(frame);
                if let Some(search) = &passes {
                    search.offer(&frame);
                }
                Some((n, started, frame))
            },
            |(n, started, frame)| work.read(n, started, frame, shared),
            |reading| readings.deliver(reading, shared, &events),
        );
    });
}

/// The event loop's channel, as the camera thread sees it: once it is closed, the camera stops reading.
struct Events<'a> {
    tx: &'a mpsc::Sender<Input>,
    closed: AtomicBool,
}

impl Events<'_> {
    fn send(&self, input: Input) {
        if self.tx.blocking_send(input).is_err() {
            self.closed.store(true, Ordering::Relaxed);
        }
    }
}

/// The camera, read at a steady rate; a camera that fails is retried every 500 ms, and its loss and return
/// are reported once each.
struct Frames {
    camera: Box<dyn FrameSource>,
    period: Duration,
    last_read: Option<Instant>,
    n: u64,
    down: bool,
}

impl Frames {
    /// The next frame with its number and when it was read; `None` once the gate stops. While no frame is
    /// `wanted` (no face models yet and no passes to read) the camera is not read at all.
    fn next(
        &mut self,
        shared: &Shared,
        events: &Events<'_>,
        wanted: &dyn Fn() -> bool,
    ) -> Option<(u64, Instant, Frame)> {
        loop {
            if shared.stop.load(Ordering::Relaxed) || events.closed.load(Ordering::Relaxed) {
                return None;
            }
            if !wanted() {
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
            if let Some(last) = self.last_read {
                std::thread::sleep(self.period.saturating_sub(last.elapsed()));
            }
            let started = Instant::now();
            self.last_read = Some(started);
            match self.camera.next_frame() {
                Ok(frame) => {
                    shared.status.camera_up.store(true, Ordering::Relaxed);
                    if self.down {
                        self.down = false;
                        events.send(Input::Fault("camera back, face entry resumed".into()));
                    }
                    self.n += 1;
                    return Some((self.n, started, frame));
                }
                Err(e) => {
                    shared.status.camera_up.store(false, Ordering::Relaxed);
                    if !self.down {
                        self.down = true;
                        events
                            .send(Input::Fault(format!("camera down, face entry and camera-read passes paused: {e}")));
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
}

/// What a frame worker does with a frame: feed an enrolment or match the face (the passes in it are the
/// [`PassSearch`]'s).
struct FrameWork {
    models: Arc<FaceModelSlot>,
    desk: Option<Arc<EnrolmentDesk>>,
    aiming: Option<Arc<AimingDesk>>,
    compound: Option<Arc<crate::compound::LinkHealth>>,
}

impl FrameWork {
    fn read(&self, n: u64, started: Instant, frame: Arc<Frame>, shared: &Shared) -> FrameReading {
        // An enrolment asked for by the portal takes the camera's faces while it runs (never both), under the
        // gate's own intent rule: with `intent = "button"` no face is captured until someone presses it, so a
        // running capture cannot take a passer-by who never asked.
        let face_allowed = super::lock(&shared.intent).face_allowed(shared.now());
        let enrolling = match (&self.desk, self.models.get()) {
            (Some(desk), Some((reader, Some(liveness)))) if desk.wants_frames() && face_allowed => {
                desk.offer_frame(reader.as_ref(), liveness, &frame);
                true
            }
            _ => false,
        };
        let face = match self.models.get() {
            _ if enrolling => FaceWork::Enrolment,
            Some((reader, liveness))
                if self.compound.as_ref().is_none_or(|link| link.face_matching_allowed()) && face_allowed =>
            {
                // A resident waits for this frame: the liveness models run beside detection and embedding,
                // which alone set the frame's time.
                FaceWork::Read(std::thread::scope(|scope| {
                    read_face(scope, &frame, reader.as_ref(), liveness.as_deref())
                }))
            }
            _ => FaceWork::Off,
        };
        self.describe_for_aiming(&frame);
        drop(frame);
        FrameReading { n, started, face }
    }

    /// While an installer watches the aiming page: the frame's figures and its faces' boxes and poses, never a
    /// pixel and never a match (nobody is identified for aiming).
    fn describe_for_aiming(&self, frame: &Frame) {
        let Some(desk) = self.aiming.as_ref().filter(|desk| desk.wants_frames()) else { return };
        let faces = self.models.get().map(|(reader, _)| reader.detect(frame));
        let faces = match &faces {
            Some(Ok(faces)) => Some(&faces[..]),
            Some(Err(_)) | None => None,
        };
        desk.offer(AimView::of(frame, faces, &QualityGate::default()));
    }
}

/// Turns readings into events, in camera order.
struct Readings {
    face_was_on: bool,
    approach: Approach,
}

impl Readings {
    fn deliver(&mut self, reading: Result<FrameReading, WorkerPanicked>, shared: &Shared, events: &Events<'_>) {
        // Counted once handled, so "frames read" also means "their events are sent".
        shared.status.frames.fetch_add(1, Ordering::Relaxed);
        let reading = match reading {
            Ok(reading) => {
                shared.status.frame_times.observe(reading.started.elapsed());
                reading
            }
            Err(WorkerPanicked { seq }) => {
                shared.status.worker_faults.fetch_add(1, Ordering::Relaxed);
                events.send(Input::Fault(format!("a frame worker failed on frame {}: that frame is skipped", seq + 1)));
                return;
            }
        };
        // Permission was checked when the frame's work began; the link may have gone past its offline limit
        // while the models ran (long under load). A match decided now must still be allowed now.
        let enrolment = matches!(reading.face, FaceWork::Enrolment);
        let face = match reading.face {
            FaceWork::Read(_) if shared.status.link().is_some_and(|link| !link.face_matching_allowed()) => {
                FaceWork::Off
            }
            face => face,
        };
        let face_on = matches!(face, FaceWork::Read(_));
        match face {
            FaceWork::Read(read) => {
                shared.status.faces_checked.fetch_add(1, Ordering::Relaxed);
                let (seen, approach) =
                    self.approach.observe(read, (reading.n, reading.started), &shared.registry.gallery());
                let frame = Some(FrameClock { n: reading.n, read_at: reading.started, approach });
                events.send(Input::Event { event: GateEvent::FaceFrame(seen), frame });
            }
            FaceWork::Off => {
                // Intent ended, the link forbids faces, or a decision paused them: the approach is over.
                self.approach.end();
                if self.face_was_on {
                    events.send(Input::FaceIdle);
                }
            }
            FaceWork::Enrolment => self.approach.end(),
        }
        if !enrolment {
            self.face_was_on = face_on;
        }
    }
}

/// Reads the largest face of a frame: its embedding and, with the liveness models, its live score, scored on
/// another thread of `scope` while the face is embedded.
fn read_face<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    frame: &'scope Frame,
    reader: &dyn FaceReader,
    liveness: Option<&'scope LivenessModel>,
) -> Option<FaceRead> {
    let found = reader.find(frame).ok()?;
    let bbox = found.face.bbox;
    let live = liveness.map(|model| scope.spawn(move || model.score(frame, &bbox).ok()));
    let embedding = reader.embed(frame, &found.face);
    let live = live.and_then(joined);
    Some(FaceRead { embedding: embedding.ok()?, live })
}

/// A helper thread's result; its panic goes on in the frame's worker, which costs that frame only
/// ([`crate::vision::pipeline::ordered_parallel`]).
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The approach in front of the camera, in camera order: each face joins the mean of the approach's recent
/// frames ([`ApproachFusion`], as many as the agreement window) and the gate searches with that fused probe,
/// which the calibration is fitted on (`facegate calibrate`). A frame without a face, or a face that does not
/// look like the approach so far, starts a new approach, so two people are never averaged into one.
struct Approach {
    fusion: ApproachFusion,
    /// The number and arrival of the approach's first frame.
    first: Option<(u64, Instant)>,
}

impl Approach {
    fn new(window: usize) -> Self {
        Self { fusion: ApproachFusion::new(window), first: None }
    }

    /// What this frame (`frame`: its number and arrival) shows: the resident the fused probe matches (if any) and
    /// this frame's live score; with the number and arrival of the approach's first frame.
    fn observe(
        &mut self,
        face: Option<FaceRead>,
        frame: (u64, Instant),
        gallery: &GallerySnapshot,
    ) -> (FaceObservation, (u64, Instant)) {
        let Some(FaceRead { embedding, live }) = face else {
            self.end();
            return (FaceObservation::matched(None), frame);
        };
        let probe = self.fusion.add(embedding, 1.0);
        // One frame in the fusion: this face began a new approach (the first, or another person's).
        if self.fusion.len() == 1 || self.first.is_none() {
            self.first = Some(frame);
        }
        let slot = probe.and_then(|probe| gallery.identify(&probe)).map(|m| m.slot);
        (FaceObservation { slot, live }, self.first.unwrap_or(frame))
    }

    /// The approach is over; its embeddings are wiped.
    fn end(&mut self) {
        self.fusion.reset();
        self.first = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::calibration::Calibration;
    use crate::vision::embed::EMBEDDING_DIM;

    const RESIDENT: usize = 0;
    /// What the frames of one approach share beyond the identity (the light, the pose, the camera).
    const SCENE: usize = 1;

    /// A face along `identity`, with `scene` of the shared scene and `own` of this frame's own noise.
    fn face(identity: usize, scene: f32, own_axis: usize, own: f32) -> Embedding {
        let mut v = [0.0f32; EMBEDDING_DIM];
        v[identity] = 1.0;
        v[SCENE] += scene;
        v[own_axis] += own;
        Embedding::from_raw(&v).unwrap()
    }

    /// A resident's frame that matches at cosine 0.371 alone, under the one-resident threshold (0.376).
    fn resident_frame(k: usize) -> Option<FaceRead> {
        Some(FaceRead { embedding: face(RESIDENT, 2.0, 10 + k, 1.5), live: Some(0.9) })
    }

    fn gallery() -> GallerySnapshot {
        let gallery = GallerySnapshot::of(&[("r-1", &face(RESIDENT, 0.0, 0, 0.0))], 1e-3, Calibration::SFACE);
        assert!(gallery.threshold() > 0.371, "the frames below must not match alone");
        gallery
    }

    /// Frame `n`, read now.
    fn at(n: u64) -> (u64, Instant) {
        (n, Instant::now())
    }

    #[test]
    fn a_helper_threads_panic_goes_on_in_the_frames_worker_and_its_result_comes_back() {
        // The worker's catch_unwind (`ordered_parallel`) must see a helper's panic, or the frame would be
        // decided without its liveness or its passes.
        let panicked = std::panic::catch_unwind(|| {
            std::thread::scope(|scope| joined(scope.spawn(|| -> u8 { panic!("an injected fault") })))
        });
        assert!(panicked.is_err());
        assert_eq!(std::thread::scope(|scope| joined(scope.spawn(|| 7))), 7);
    }

    #[test]
    fn the_fused_approach_matches_where_no_frame_matches_alone() {
        let gallery = gallery();
        let mut alone = Approach::new(1);
        let mut fused = Approach::new(3);
        let single: Vec<_> = (0..3).map(|k| alone.observe(resident_frame(k), at(k as u64), &gallery).0.slot).collect();
        assert_eq!(single, [None, None, None]);
        let seen: Vec<_> = (0..3).map(|k| fused.observe(resident_frame(k), at(k as u64 + 1), &gallery)).collect();
        assert_eq!(seen.iter().map(|(o, _)| o.slot).collect::<Vec<_>>(), [None, Some(0), Some(0)]);
        assert!(seen.iter().all(|(o, _)| o.live == Some(0.9)), "each frame carries its own live score");
        // The wait is counted from the approach's first frame, not from the frame that matched.
        assert_eq!(seen.iter().map(|(_, first)| first.0).collect::<Vec<_>>(), [1, 1, 1]);
    }

    #[test]
    fn a_stranger_or_a_frame_without_a_face_starts_a_new_approach() {
        let gallery = gallery();
        let mut approach = Approach::new(3);
        approach.observe(resident_frame(0), at(1), &gallery);
        approach.observe(resident_frame(1), at(2), &gallery);
        // Someone else steps in: not averaged with the resident, so not matched as the resident.
        let stranger = Some(FaceRead { embedding: face(7, 0.0, 8, 0.3), live: Some(0.9) });
        let (seen, first) = approach.observe(stranger, at(3), &gallery);
        assert_eq!((seen.slot, first.0), (None, 3), "the stranger's approach begins at their own frame");
        assert_eq!(approach.fusion.len(), 1);
        // A frame without a face ends the approach: the next frame is matched alone.
        approach.observe(resident_frame(2), at(4), &gallery);
        assert_eq!(approach.observe(None, at(5), &gallery).0, FaceObservation::matched(None));
        assert!(approach.fusion.is_empty());
        let (seen, first) = approach.observe(resident_frame(3), at(6), &gallery);
        assert_eq!((seen.slot, first.0), (None, 6));
        approach.end();
        assert!(approach.fusion.is_empty());
    }
}
