//! The daemon's own guarantees (issue 16), each against the real store, the real models and real processes,
//! with only the hardware simulated:
//! - the door never waits on the database: with another process holding SQLite's exclusive lock for 8 s, a
//!   guard release opens the relay at once, for `pulse`, never past `max_open`, and the passage is counted
//!   exactly once after the lock ends;
//! - a frame worker that panics costs one frame: the next frames are decided and the status shows the fault;
//! - retention is the running daemon's: a template unused past `retention.max_unused_days` is shredded at
//!   start and by the periodic run, without anyone typing `facegate expire`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use facegate::capture::{decode_file, CaptureError, DecodeLimits, Frame, FrameSource};
use facegate::devices::contacts::{Contact, SimulatedContacts};
use facegate::devices::{RelayLog, SimulatedRelay};
use facegate::gate::{self, GateHardware, GateSettings, GateStatus};
use facegate::policy::consent::ConsentRecord;
use facegate::policy::decide::FaceIntent;
use facegate::policy::passage::{EntryMethod, PassageOutcome};
use facegate::registry::owner::{OwnerSettings, RegistryOwner};
use facegate::registry::{MasterKeySource, Registry, RegistryPolicy};
use facegate::store::Store;
use facegate::vision::detect::FaceDetection;
use facegate::vision::embed::{Embedding, EMBEDDING_DIM};
use facegate::vision::enrol::{EnrolmentSession, QualityGate};
use facegate::vision::liveness::DEFAULT_LIVE_THRESHOLD;
use facegate::vision::pipeline::{FacePipeline, FaceReader, FoundFace, PipelineConfig, PipelineError};
use facegate::vision::qr::{CodeReader, QrDecoder};

struct ScriptedCamera(mpsc::Receiver<Frame>);

impl FrameSource for ScriptedCamera {
    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        self.0.recv_timeout(Duration::from_millis(200)).map_err(|_| CaptureError::Camera("idle".into()))
    }
    fn describe(&self) -> String {
        "scripted test camera".into()
    }
}

fn consent(at: i64) -> ConsentRecord {
    ConsentRecord {
        notice_version: "2026-11".into(),
        notice_sha256: "ab".repeat(32),
        purpose: "opening the compound gate".into(),
        channel: "kiosk".into(),
        granted_at: at,
    }
}

fn wait_until(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn guard_opened(db: &Path) -> i64 {
    Store::open(db)
        .unwrap()
        .passage_counts(0, i64::MAX)
        .unwrap()
        .iter()
        .filter(|c| c.method == EntryMethod::Guard && c.outcome == PassageOutcome::Opened)
        .map(|c| c.count)
        .sum()
}

/// Issue 16: the event loop used to count passages and note template uses with blocking SQLite writes
/// (`busy_timeout` 5 s) on the task that also ended the relay's pulse, so a locked database held the door open
/// past `max_open`. Now the door task owns the relay and never waits on the store; counts wait in the tally.
#[test]
fn a_locked_database_never_holds_the_door_and_the_passage_is_counted_once_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/facegate.sqlite");
    let key = MasterKeySource::file(dir.path().join("keys/master.key"));
    let registry = Registry::open(&db, &key, RegistryPolicy::default(), 1).unwrap();
    let owner = RegistryOwner::spawn(registry, OwnerSettings::default()).unwrap();
    let relay_log = RelayLog::default();
    let (contacts, press) = SimulatedContacts::new();
    let mut hardware = GateHardware::new(Box::new(SimulatedRelay::new(relay_log.clone())));
    hardware.contacts = Some(Box::new(contacts));
    let settings = GateSettings {
        pulse: Duration::from_millis(400),
        max_open: Duration::from_millis(1_000),
        ..GateSettings::default()
    };
    let status = Arc::new(GateStatus::default());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gate = runtime.spawn(gate::run(owner.handle(), settings, hardware, status.clone(), async {
        let _ = stopped.await;
    }));
    std::thread::sleep(Duration::from_millis(300));

    let mut locker = common::hold_exclusive_lock(&db, 8.0);
    let held_from = Instant::now();
    // Something for the owner to write while the lock is held: a passage counted before the guard's.
    std::thread::sleep(Duration::from_millis(1_500));
    let before = relay_log.transitions().len();
    let pressed = Instant::now();
    press.press(Contact::GuardRelease);
    wait_until("the relay to open", Duration::from_secs(5), || relay_log.transitions().len() > before);
    let opened_after = pressed.elapsed();
    wait_until("the relay to close", Duration::from_secs(5), || relay_log.transitions().len() > before + 1);
    let open_for = pressed.elapsed();
    assert!(held_from.elapsed() < Duration::from_secs(8), "the lock ended before the door closed: shows nothing");
    let transitions = relay_log.transitions();
    assert!(transitions[before].unlocked && !transitions[before + 1].unlocked, "{transitions:?}");
    assert!(opened_after < Duration::from_millis(100), "the relay opened {opened_after:?} after the release");
    assert!(open_for < Duration::from_millis(1_000), "energised {open_for:?}, past max_open");
    assert!(open_for >= Duration::from_millis(380), "energised {open_for:?}, shorter than the pulse");
    assert_eq!(status.admissions(), 1);
    // Still locked: the passage waits in the tally, not in the database.
    assert_eq!(owner.handle().tally().pending(), 1);

    assert!(locker.wait().unwrap().success());
    let lock_ended = Instant::now();
    wait_until("the count written after the lock", Duration::from_secs(10), || owner.handle().tally().pending() == 0);
    eprintln!(
        "relay opened {opened_after:?} after the release, closed {open_for:?} after it; count written {:?} after \
         the lock ended",
        lock_ended.elapsed()
    );
    assert_eq!(guard_opened(&db), 1);
    stop.send(()).unwrap();
    runtime.block_on(gate).unwrap().unwrap();
    owner.stop().unwrap();
    assert_eq!(guard_opened(&db), 1, "the passage was counted twice");
    assert!(!relay_log.transitions().last().unwrap().unlocked, "the door was left unlocked");
}

/// The real pipeline, made to panic on one frame (a fault-injection wrapper at the model's edge).
struct PanicsOnFrame {
    real: Arc<FacePipeline>,
    calls: AtomicU64,
    panic_on: u64,
}

impl FaceReader for PanicsOnFrame {
    fn find(&self, frame: &Frame) -> Result<FoundFace, PipelineError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(n != self.panic_on, "injected fault in the frame worker (frame {n})");
        self.real.find(frame)
    }
    fn embed(&self, frame: &Frame, face: &FaceDetection) -> Result<Embedding, PipelineError> {
        FaceReader::embed(self.real.as_ref(), frame, face)
    }
    fn detect(&self, frame: &Frame) -> Result<Vec<FaceDetection>, PipelineError> {
        self.real.detect(frame)
    }
}

/// A registry owner on a new store in `dir` with one resident, "r-1", enrolled from the first five photos of
/// the first person with eight; returns the owner, the face pipeline and that person's photos (the last three
/// were not used at enrolment).
fn enrolled_from_five_photos(dir: &Path) -> (RegistryOwner, Arc<FacePipeline>, Vec<PathBuf>) {
    let key = MasterKeySource::file(dir.join("keys/master.key"));
    let mut registry = Registry::open(&dir.join("data/facegate.sqlite"), &key, RegistryPolicy::default(), 1).unwrap();
    let resident = common::people_with(8)[0].1.clone();
    let pipeline = Arc::new(FacePipeline::load(&common::models_dir(), PipelineConfig::default()).unwrap());
    let mut session = EnrolmentSession::new(3, QualityGate::default(), DEFAULT_LIVE_THRESHOLD);
    for path in &resident[..5] {
        let _ =
            session.offer_frame(&pipeline, common::liveness(), &decode_file(path, DecodeLimits::default()).unwrap());
    }
    registry.record_consent("r-1", None, &consent(1), 1).unwrap();
    registry.enrol("r-1", &session.finish().unwrap(), facegate::store::unix_now()).unwrap();
    (RegistryOwner::spawn(registry, OwnerSettings::default()).unwrap(), pipeline, resident)
}

/// A gate run in this process on a scripted camera (frames sent by the test) with `reader` for faces, matching
/// always, a short pulse.
struct ScriptedGate {
    frames: mpsc::Sender<Frame>,
    relay_log: RelayLog,
    status: Arc<GateStatus>,
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::oneshot::Sender<()>,
    gate: tokio::task::JoinHandle<Result<facegate::gate::GateReport, facegate::gate::GateError>>,
}

impl ScriptedGate {
    fn start(owner: &RegistryOwner, reader: Arc<dyn FaceReader>, face_workers: usize) -> Self {
        Self::start_with(owner, reader, face_workers, Arc::new(QrDecoder))
    }

    fn start_with(
        owner: &RegistryOwner,
        reader: Arc<dyn FaceReader>,
        face_workers: usize,
        qr: Arc<dyn CodeReader>,
    ) -> Self {
        let (frames, camera) = mpsc::channel();
        let relay_log = RelayLog::default();
        let mut hardware = GateHardware::new(Box::new(SimulatedRelay::new(relay_log.clone())));
        hardware.camera = Some(Box::new(ScriptedCamera(camera)));
        hardware.pipeline = Some(reader);
        hardware.qr = qr;
        let settings = GateSettings {
            intent: FaceIntent::Always,
            face_workers,
            fps: 60.0,
            pulse: Duration::from_millis(50),
            max_open: Duration::from_millis(200),
            ..GateSettings::default()
        };
        let status = Arc::new(GateStatus::default());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let gate = runtime.spawn(gate::run(owner.handle(), settings, hardware, status.clone(), async {
            let _ = stopped.await;
        }));
        Self { frames, relay_log, status, runtime, stop, gate }
    }
}

/// Issue 16: a panic in a frame worker lost its sequence number in `ordered_parallel`, which then waited for
/// it forever: no frame after it was ever decided. Now it costs that frame and shows as a fault.
#[test]
fn a_frame_worker_that_panics_costs_one_frame_and_the_status_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, pipeline, resident) = enrolled_from_five_photos(dir.path());
    let photo = |p: &Path| decode_file(p, DecodeLimits::default()).unwrap();
    let reader = Arc::new(PanicsOnFrame { real: pipeline, calls: AtomicU64::new(0), panic_on: 2 });
    let ScriptedGate { frames, relay_log, status, runtime, stop, gate } = ScriptedGate::start(&owner, reader, 2);
    // Frame 2 panics; frames 3 and 4 (the resident, photos not used at enrolment) still open the door.
    for path in &resident[5..8] {
        frames.send(photo(path)).unwrap();
    }
    frames.send(photo(&resident[5])).unwrap();
    wait_until("four frames", Duration::from_secs(60), || status.frames() == 4);
    wait_until("the admission", Duration::from_secs(10), || status.admissions() == 1);
    // Two agreeing frames admit, so the admission can come before the third face's count: wait for the count.
    wait_until("three faces checked", Duration::from_secs(10), || status.faces_checked() >= 3);
    assert_eq!(status.worker_faults(), 1);
    assert_eq!(status.faces_checked(), 3, "the faulty frame was not skipped, or more were lost");
    // And the stream goes on after it.
    frames.send(photo(&resident[6])).unwrap();
    wait_until("a fifth frame", Duration::from_secs(30), || status.frames() == 5);
    stop.send(()).unwrap();
    runtime.block_on(gate).unwrap().unwrap();
    owner.stop().unwrap();
    assert!(relay_log.pulses() >= 1);
}

/// Holds frames in the workers so that some are read before an admission and decided after it: the first two
/// finds go on, but their embeddings wait until two more frames have begun; those wait in `find` until the test
/// releases them.
struct HeldFrames {
    real: Arc<FacePipeline>,
    finds: AtomicU64,
    released: AtomicBool,
}

impl HeldFrames {
    fn wait_for(&self, what: &str, ready: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready() {
            assert!(Instant::now() < deadline, "held frames: timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl FaceReader for HeldFrames {
    fn find(&self, frame: &Frame) -> Result<FoundFace, PipelineError> {
        if self.finds.fetch_add(1, Ordering::SeqCst) >= 2 {
            self.wait_for("the release", || self.released.load(Ordering::SeqCst));
        }
        self.real.find(frame)
    }
    fn embed(&self, frame: &Frame, face: &FaceDetection) -> Result<Embedding, PipelineError> {
        self.wait_for("the later frames to begin", || self.finds.load(Ordering::SeqCst) >= 4);
        FaceReader::embed(self.real.as_ref(), frame, face)
    }
    fn detect(&self, frame: &Frame) -> Result<Vec<FaceDetection>, PipelineError> {
        self.real.detect(frame)
    }
}

/// Issue 20 (found by the soak's trial run: one approach admitted at frames 5848 and 5850): frames read before
/// a face admission but decided after it matched the same resident again, past the cooldown's check, which was
/// made only when a frame's work began. Two of them admitted a second time and counted a second passage. Now
/// a face frame is judged by the time it was read.
#[test]
fn frames_read_before_a_face_admission_and_decided_after_it_admit_no_one_again() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, pipeline, resident) = enrolled_from_five_photos(dir.path());
    let photo = |p: &Path| decode_file(p, DecodeLimits::default()).unwrap();
    let held = Arc::new(HeldFrames { real: pipeline, finds: AtomicU64::new(0), released: AtomicBool::new(false) });
    let ScriptedGate { frames, relay_log, status, runtime, stop, gate } = ScriptedGate::start(&owner, held.clone(), 4);
    // Four frames of the resident, all read before the first two are decided.
    for path in [&resident[5], &resident[6], &resident[7], &resident[5]] {
        frames.send(photo(path)).unwrap();
    }
    wait_until("the admission", Duration::from_secs(60), || status.admissions() == 1);
    assert_eq!(held.finds.load(Ordering::SeqCst), 4, "the later frames were not read before the admission");
    held.released.store(true, Ordering::SeqCst);
    wait_until("four frames", Duration::from_secs(60), || status.frames() == 4);
    // Give the event loop the time to act on the last two.
    std::thread::sleep(Duration::from_millis(300));
    stop.send(()).unwrap();
    runtime.block_on(gate).unwrap().unwrap();
    let handle = owner.handle();
    wait_until("the counts written", Duration::from_secs(10), || handle.tally().pending() == 0);
    owner.stop().unwrap();
    assert_eq!(status.admissions(), 1, "an approach was admitted twice");
    assert_eq!(relay_log.pulses(), 1, "the relay opened twice for one approach");
    let db = dir.path().join("data/facegate.sqlite");
    let counts = Store::open(&db).unwrap().passage_counts(0, i64::MAX).unwrap();
    let face_opened: i64 = counts
        .iter()
        .filter(|c| c.method == EntryMethod::Face && c.outcome == PassageOutcome::Opened)
        .map(|c| c.count)
        .sum();
    assert_eq!(face_opened, 1, "one approach counted as {face_opened} passages");
}

/// A QR search that takes as long as the test wants: each search waits until the test releases it (or the
/// reader is dropped: a failing test must not leave the gate's threads waiting).
#[derive(Default)]
struct StuckSearch {
    searches: AtomicU64,
    released: AtomicBool,
}

impl CodeReader for StuckSearch {
    fn read_codes(&self, _frame: &Frame, _max: usize) -> Vec<zeroize::Zeroizing<String>> {
        self.searches.fetch_add(1, Ordering::SeqCst);
        while !self.released.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Vec::new()
    }
}

struct ReleaseOnDrop(Arc<StuckSearch>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.released.store(true, Ordering::SeqCst);
    }
}

/// Issue 20 (fuzzing found a damaged code that costs rqrr's search 120 ms on a small frame; a camera frame could
/// cost more): the QR search ran beside each face frame's detection and the frame's result waited for it, so
/// a code held to the camera delayed or stopped face entry. Now the search has its own thread and reads the
/// newest frame only: a search that never ends costs pass reads, not face decisions.
#[test]
fn a_qr_search_that_never_ends_delays_no_face_decision() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, pipeline, resident) = enrolled_from_five_photos(dir.path());
    let photo = |p: &Path| decode_file(p, DecodeLimits::default()).unwrap();
    let stuck = Arc::new(StuckSearch::default());
    let ScriptedGate { frames, relay_log, status, runtime, stop, gate } =
        ScriptedGate::start_with(&owner, pipeline, 2, stuck.clone());
    let release = ReleaseOnDrop(stuck.clone());
    for path in &resident[5..8] {
        frames.send(photo(path)).unwrap();
    }
    wait_until("the resident's admission while the QR search is stuck", Duration::from_secs(60), || {
        status.admissions() == 1
    });
    wait_until("three frames decided", Duration::from_secs(30), || status.frames() == 3);
    let searches = stuck.searches.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&searches),
        "{searches} searches begun: frames queued for the QR search, or none searched"
    );
    drop(release);
    stop.send(()).unwrap();
    runtime.block_on(gate).unwrap().unwrap();
    owner.stop().unwrap();
    assert_eq!(relay_log.pulses(), 1);
}

fn unit_vector(seed: usize) -> Embedding {
    let mut raw = vec![0.0f32; EMBEDDING_DIM];
    raw[seed % EMBEDDING_DIM] = 1.0;
    Embedding::from_raw(&raw).unwrap()
}

/// Issue 16: retention ran only when someone typed `facegate expire`, while the audit text said the daemon did
/// it daily. Now the daemon enforces it at start and then every `expire_every` (a day; shortened here).
#[test]
fn retention_is_enforced_by_the_running_daemon_at_start_and_periodically() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/facegate.sqlite");
    let key = MasterKeySource::file(dir.path().join("keys/master.key"));
    let now = facegate::store::unix_now();
    let day = 86_400;
    {
        // Enrolled 40 days ago and never used since; another enrolled yesterday.
        let mut registry = Registry::open(&db, &key, RegistryPolicy::default(), now - 40 * day).unwrap();
        registry.record_consent("r-stale", None, &consent(now - 40 * day), now - 40 * day).unwrap();
        registry.enrol("r-stale", &unit_vector(1), now - 40 * day).unwrap();
        registry.record_consent("r-fresh", None, &consent(now - day), now - day).unwrap();
        registry.enrol("r-fresh", &unit_vector(2), now - day).unwrap();
    }
    let replay = dir.path().join("replay");
    std::fs::create_dir_all(&replay).unwrap();
    std::fs::copy(common::astronaut(), replay.join("0.png")).unwrap();
    let config_text = format!(
        "[audit]\nsystem_places = false\n[store]\ndatabase = \"{d}/data/facegate.sqlite\"\nmaster_key = \"{d}/keys/master.key\"\n\
         [capture]\nsource = \"replay\"\nreplay_dir = \"{r}\"\nfps = 2\n\
         [retention]\nmax_unused_days = 30\n\
         [hardware]\nbackend = \"simulated\"\nkeypad = \"none\"\n",
        d = dir.path().display(),
        r = replay.display()
    );
    let mut config =
        facegate::config::RawConfig::parse(&config_text, Path::new("test.toml")).unwrap().validate().unwrap();
    config.models_dir = common::models_dir();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (ready, handle) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = facegate::gate::daemon::DaemonOptions {
        owner: OwnerSettings { expire_every: Duration::from_millis(300), ..OwnerSettings::default() },
        on_ready: Some(ready),
        ..facegate::gate::daemon::DaemonOptions::default()
    };
    let daemon = runtime.spawn(async move {
        facegate::gate::daemon::run(&config, options, async {
            let _ = stopped.await;
        })
        .await
    });
    let handle = runtime.block_on(handle).unwrap();
    let template_of = |id: &str| {
        Store::open(&db).unwrap().residents().unwrap().into_iter().find(|r| r.id == id).unwrap().template_version
    };
    // At start: the stale template goes, the fresh one stays.
    wait_until("the stale template shredded at start", Duration::from_secs(10), || template_of("r-stale").is_none());
    assert!(template_of("r-fresh").is_some());
    assert_eq!(handle.gallery().len(), 1);
    // While it runs: another process enrols someone whose template is already past the limit (as if 31 days
    // went by unused); the next periodic run shreds it, with no command.
    let runs = handle.status().expiry_runs();
    {
        let mut cli = Registry::open(&db, &key, RegistryPolicy::default(), now - 31 * day).unwrap();
        cli.record_consent("r-later", None, &consent(now - 31 * day), now - 31 * day).unwrap();
        cli.enrol("r-later", &unit_vector(3), now - 31 * day).unwrap();
    }
    wait_until("the periodic run", Duration::from_secs(10), || template_of("r-later").is_none());
    wait_until("the run's counters", Duration::from_secs(5), || handle.status().expired() == 2);
    assert!(handle.status().expiry_runs() > runs);
    assert!(template_of("r-fresh").is_some());
    let events = Store::open(&db).unwrap().audit_events(&["expire (unused)"]).unwrap();
    assert_eq!(events.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(), ["r-stale", "r-later"]);
    stop.send(()).unwrap();
    runtime.block_on(daemon).unwrap().unwrap();
}
