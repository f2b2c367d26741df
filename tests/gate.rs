//! The gate daemon end to end on real photos, a real SQLite file and the real models, with the camera, the
//! relay and the other hardware simulated (the hardware edge): no face is matched before someone asks (the
//! face button); strangers never open; an enrolled resident opens within three frames, once; a resident
//! revoked while the gate runs no longer opens; a visitor pass shown to the camera opens once; with the camera
//! gone the keypad and the pass scanner still open, five wrong PINs lock the keypad out with a backoff, and
//! the exit button, the guard's release and the door contact keep working. A second test removes the models
//! and shows a pass to the camera.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use facegate::capture::{decode_file, CaptureError, DecodeLimits, Frame, FrameSource};
use facegate::devices::contacts::{Contact, SimulatedContacts};
use facegate::devices::keypad::SimulatedKeypad;
use facegate::devices::scanner::SimulatedScanner;
use facegate::devices::{MethodCards, RelayLog, Signal, SimulatedIndicator, SimulatedRelay, SimulatedWiegand};
use facegate::gate::{self, GateError, GateHardware, GateReport, GateSettings, GateStatus};
use facegate::policy::consent::ConsentRecord;
use facegate::policy::decide::FaceIntent;
use facegate::policy::passage::{EntryMethod, PassageOutcome};
use facegate::protect::Pin;
use facegate::registry::owner::{OwnerSettings, RegistryOwner};
use facegate::registry::{MasterKeySource, Registry, RegistryPolicy};
use facegate::store::{unix_now, Store};
use facegate::vision::enrol::{EnrolmentSession, QualityGate};
use facegate::vision::liveness::DEFAULT_LIVE_THRESHOLD;
use facegate::vision::pipeline::{FacePipeline, PipelineConfig};

/// A camera whose frames the test hands over one at a time; when the test drops the sender, the camera is
/// unplugged.
struct ScriptedCamera(mpsc::Receiver<Frame>);

impl FrameSource for ScriptedCamera {
    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        match self.0.recv_timeout(Duration::from_millis(200)) {
            Ok(frame) => Ok(frame),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(CaptureError::Camera("no frame (test camera idle)".into())),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(CaptureError::Camera("unplugged".into())),
        }
    }
    fn describe(&self) -> String {
        "scripted test camera".into()
    }
}

fn photo(path: &std::path::Path) -> Frame {
    decode_file(path, DecodeLimits::default()).unwrap()
}

fn consent() -> ConsentRecord {
    ConsentRecord {
        notice_version: "2026-11".into(),
        notice_sha256: "ab".repeat(32),
        purpose: "opening the compound gate".into(),
        channel: "kiosk".into(),
        granted_at: 1,
    }
}

async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the event loop act on what the threads just sent.
    tokio::time::sleep(Duration::from_millis(150)).await;
}

fn settings() -> GateSettings {
    GateSettings {
        pulse: Duration::from_millis(60),
        max_open: Duration::from_millis(300),
        fps: 120.0,
        intent: FaceIntent::Button,
        face_window: Duration::from_secs(60),
        ..GateSettings::default()
    }
}

/// Runs the gate as the daemon does: the registry on its own owner thread (following other processes every
/// 100 ms), the gate with a handle to it; the owner writes the last counts when the gate stops.
fn spawn_gate(
    registry: Registry,
    settings: GateSettings,
    hardware: GateHardware,
    status: Arc<GateStatus>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<Result<GateReport, GateError>> {
    let owner = RegistryOwner::spawn(
        registry,
        OwnerSettings { follow_every: Duration::from_millis(100), ..OwnerSettings::default() },
    )
    .unwrap();
    let handle = owner.handle();
    tokio::spawn(async move {
        let report = gate::run(handle, settings, hardware, status, async {
            let _ = stopped.await;
        })
        .await;
        tokio::task::spawn_blocking(move || owner.stop()).await.unwrap();
        report
    })
}

const CARDS: MethodCards = MethodCards { facility: 42, face: 1001, pin: 1002, visitor: 1003, guard: 1004 };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_in_end_to_end_and_the_alternatives_without_a_camera() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/facegate.sqlite");
    let key = MasterKeySource::file(dir.path().join("keys/master.key"));
    let all = common::people_with(8);
    let (resident, strangers) = (&all[0].1, &all[1..11]);

    let mut registry = Registry::open(&db, &key, RegistryPolicy::default(), 1).unwrap();
    let pipeline = Arc::new(FacePipeline::load(&common::models_dir(), PipelineConfig::default()).unwrap());
    let mut session = EnrolmentSession::new(3, QualityGate::default(), DEFAULT_LIVE_THRESHOLD);
    for path in &resident[..5] {
        let _ = session.offer_frame(&pipeline, common::liveness(), &photo(path));
    }
    registry.record_consent("r-face", None, &consent(), 1).unwrap();
    registry.enrol("r-face", &session.finish().unwrap(), unix_now()).unwrap();
    registry.record_consent("r-pin", Some("3-401"), &consent(), 1).unwrap();
    registry.set_pin("r-pin", Some("340112"), &Pin::parse("4071").unwrap(), 2).unwrap();
    let now = unix_now();
    let (_, camera_pass) = registry.issue_pass(now - 60, now + 3_600, now).unwrap();
    let (_, scanner_pass) = registry.issue_pass(now - 60, now + 3_600, now).unwrap();
    let (_, expired_pass) = registry.issue_pass(now - 7_200, now - 3_600, now).unwrap();

    let (frames, camera) = mpsc::channel();
    let (keypad, keys) = SimulatedKeypad::new();
    let (scanner, scans) = SimulatedScanner::new();
    let (contacts, press) = SimulatedContacts::new();
    let (indicator, lights) = SimulatedIndicator::new();
    let (wiegand, wiegand_log) = SimulatedWiegand::new();
    let relay_log = RelayLog::default();
    let mut hardware = GateHardware::new(Box::new(SimulatedRelay::new(relay_log.clone())));
    hardware.camera = Some(Box::new(ScriptedCamera(camera)));
    hardware.pipeline = Some(pipeline);
    hardware.keypad = Some(Box::new(keypad));
    hardware.scanner = Some(Box::new(scanner));
    hardware.contacts = Some(Box::new(contacts));
    hardware.indicator = Some(Box::new(indicator));
    hardware.wiegand = Some((Box::new(wiegand), CARDS));
    let status = Arc::new(GateStatus::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gate = spawn_gate(registry, settings(), hardware, status.clone(), stopped);
    let pulses_done = |n: usize| relay_log.transitions().len() >= 2 * n;

    // 0. Nobody asked: the resident walks past, no face is even matched.
    for path in &resident[5..8] {
        frames.send(photo(path)).unwrap();
    }
    wait_for("the unasked frames", || status.frames() == 3).await;
    assert_eq!((status.faces_checked(), status.admissions()), (0, 0), "faces matched without intent");

    // 1. Someone presses the face button; thirty photos of ten strangers: nobody is let in.
    press.press(Contact::FaceButton);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stranger_photos: Vec<PathBuf> = strangers.iter().flat_map(|(_, p)| p[..3].to_vec()).collect();
    for path in &stranger_photos {
        frames.send(photo(path)).unwrap();
    }
    wait_for("the strangers' frames", || status.frames() == 33).await;
    assert_eq!(status.faces_checked(), 30);
    assert_eq!((status.admissions(), relay_log.pulses()), (0, 0), "a stranger opened the gate");

    // 2. The resident, on photos not used at enrolment: in within three frames, and only once while they
    //    stay in view (the window closes on admission).
    for path in resident[5..8].iter().chain(&resident[..3]) {
        frames.send(photo(path)).unwrap();
    }
    wait_for("the resident's frames", || status.frames() == 39).await;
    assert_eq!(status.admissions(), 1, "the enrolled resident was not let in within 3 frames, or twice");
    wait_for("the pulse to end", || pulses_done(1)).await;
    assert_eq!(relay_log.pulses(), 1);

    // 3. Revoked by another process (the CLI) while the gate runs: no longer opens.
    let mut admin = Registry::open(&db, &key, RegistryPolicy::default(), 3).unwrap();
    admin.revoke("r-face", 3).unwrap();
    drop(admin);
    wait_for("the gallery reload", || status.reloads() >= 1).await;
    press.press(Contact::FaceButton);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for path in resident[5..8].iter().chain(&resident[..3]) {
        frames.send(photo(path)).unwrap();
    }
    wait_for("the revoked resident's frames", || status.frames() == 45).await;
    assert_eq!((status.admissions(), relay_log.pulses()), (1, 1), "a revoked resident opened the gate");

    // 4. A visitor shows a pass to the camera (held in front of a stranger's face): in once; shown again in
    //    the next frames it is not checked again (no refusal counted for a pass still in view).
    let visitor_face = &strangers[0].1[4];
    for _ in 0..3 {
        frames.send(common::photo_with_qr(visitor_face, &camera_pass)).unwrap();
    }
    wait_for("the pass frames", || status.frames() == 48).await;
    // The QR search has its own thread: the pass can be read after the frames are decided.
    wait_for("the pass's admission", || status.admissions() == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((status.admissions(), status.passes_read(), status.refusals()), (2, 1, 0));
    wait_for("the pulse to end", || pulses_done(2)).await;

    // 5. The camera is unplugged: the keypad and the pass scanner still open.
    drop(frames);
    tokio::time::sleep(Duration::from_millis(300)).await;
    keys.type_str("340112#4071#");
    wait_for("the PIN admission", || status.admissions() == 3).await;
    wait_for("the pulse to end", || pulses_done(3)).await;
    scans.scan(&scanner_pass);
    wait_for("the scanned pass", || status.admissions() == 4).await;
    wait_for("the pulse to end", || pulses_done(4)).await;
    // Used (at the camera), expired, forged: refused.
    let mut forged = scanner_pass.clone();
    forged.replace_range(10..11, if &forged[10..11] == "A" { "B" } else { "A" });
    for text in [&camera_pass, &expired_pass, &forged] {
        scans.scan(text);
    }
    wait_for("three refused passes", || status.refusals() == 3).await;
    assert_eq!((status.admissions(), relay_log.pulses()), (4, 4), "a bad pass opened the gate");

    // 6. Five wrong PINs, then the right one: refused, locked out with a backoff.
    for _ in 0..5 {
        keys.type_str("340112#9999#");
    }
    wait_for("five refusals", || status.refusals() == 8).await;
    keys.type_str("340112#4071#");
    wait_for("the locked-out attempt", || status.refusals() == 9).await;
    assert_eq!((status.admissions(), relay_log.pulses()), (4, 4), "a locked-out PIN opened the gate");
    assert!(lights.count(Signal::LockedOut) >= 1, "the lockout was not shown");

    // 7. The guard releases the door after a call; someone leaves by the exit button; the door is forced.
    press.press(Contact::GuardCall);
    press.press(Contact::GuardRelease);
    wait_for("the guard's opening", || status.admissions() == 5).await;
    wait_for("the pulse to end", || pulses_done(5)).await;
    press.press(Contact::ExitButton);
    wait_for("the exit", || pulses_done(6)).await;
    assert_eq!(status.admissions(), 5, "an exit is not an entry");
    tokio::time::sleep(Duration::from_secs(6)).await;
    press.set(Contact::DoorContact, true);
    wait_for("the forced-door alarm", || status.door_alarms() == 1).await;
    press.set(Contact::DoorContact, false);
    assert!(lights.count(Signal::Alarm) >= 1 && lights.count(Signal::GuardCalled) == 1);

    stop.send(()).unwrap();
    let report = gate.await.unwrap().unwrap();
    let methods: Vec<EntryMethod> = report.admissions.iter().map(|a| a.method).collect();
    use EntryMethod::{Face, Guard, Pin as PinEntry, VisitorPass};
    assert_eq!(methods, [Face, VisitorPass, PinEntry, VisitorPass, Guard]);
    let frame = report.admissions[0].frame.unwrap();
    assert!((34..=36).contains(&frame), "face admission at frame {frame}, the resident's frames were 34-36");
    assert!(!relay_log.transitions().last().unwrap().unlocked, "the door was left unlocked");
    // The existing controller hears one card per method, never one per person.
    let cards: Vec<u16> = wiegand_log.frames().iter().map(|f| f.card()).collect();
    assert_eq!(cards, [1001, 1003, 1002, 1003, 1004]);
    assert!(wiegand_log.frames().iter().all(|f| f.facility() == 42));
    assert_eq!(lights.count(Signal::Granted), 6, "five entries and one exit");

    // Counts only: per hour, method and outcome.
    let store = Store::open(&db).unwrap();
    let counts = store.passage_counts(0, i64::MAX).unwrap();
    let total = |method: &str, outcome: &str| {
        counts
            .iter()
            .filter(|c| c.method.as_str() == method && c.outcome.as_str() == outcome)
            .map(|c| c.count)
            .sum::<i64>()
    };
    assert_eq!(
        [
            ("face", "opened"),
            ("pin", "opened"),
            ("pin", "refused"),
            ("visitor_pass", "opened"),
            ("visitor_pass", "refused"),
            ("guard", "opened")
        ]
        .map(|(m, o)| total(m, o)),
        [1, 1, 6, 2, 3, 1]
    );
    eprintln!(
        "face admission at frame {frame}, latency {:?}; {} frames ({} matched for faces) in {:?}",
        report.admissions[0].latency.unwrap(),
        report.frames,
        report.faces_checked,
        report.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_models_a_pass_shown_to_the_camera_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/facegate.sqlite");
    let key = MasterKeySource::file(dir.path().join("keys/master.key"));
    let mut registry = Registry::open(&db, &key, RegistryPolicy::default(), 1).unwrap();
    let now = unix_now();
    let (_, pass) = registry.issue_pass(now, now + 600, now).unwrap();
    let someone = &common::people_with(2)[0].1[0];

    let (frames, camera) = mpsc::channel();
    let relay_log = RelayLog::default();
    let mut hardware = GateHardware::new(Box::new(SimulatedRelay::new(relay_log.clone())));
    hardware.camera = Some(Box::new(ScriptedCamera(camera)));
    let status = Arc::new(GateStatus::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let settings = GateSettings { intent: FaceIntent::Always, ..settings() };
    let gate = spawn_gate(registry, settings, hardware, status.clone(), stopped);
    frames.send(photo(someone)).unwrap();
    frames.send(common::photo_with_qr(someone, "https://example.com/not-a-pass")).unwrap();
    frames.send(common::photo_with_qr(someone, &pass)).unwrap();
    wait_for("three frames", || status.frames() == 3).await;
    wait_for("the pulse to end", || relay_log.transitions().len() >= 2).await;
    stop.send(()).unwrap();
    let report = gate.await.unwrap().unwrap();
    assert_eq!(report.faces_checked, 0, "no models, no face matching");
    assert_eq!(report.admissions.iter().map(|a| a.method).collect::<Vec<_>>(), [EntryMethod::VisitorPass]);
    // Any other QR code in view (a poster, a T-shirt) is ignored, not refused.
    assert_eq!((relay_log.pulses(), status.passes_read(), report.refusals), (1, 1, 0));
}

/// Liveness at the gate, on real webcam frames (NUAA subject 0001, `../shared/spoof`): the subject enrolled
/// from live frames opens with live frames; their printed photo, held up to the same camera, matches them but
/// is refused as not live, with no lockout: the live face opens again right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printed_photo_of_a_resident_is_refused_and_the_live_resident_opens() {
    let (live, print) = (common::nuaa_frames("live", "0001"), common::nuaa_frames("print", "0001"));
    assert!(live.len() >= 20 && print.len() >= 20, "subject 0001's frames are missing from the spoof set");

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/facegate.sqlite");
    let key = MasterKeySource::file(dir.path().join("keys/master.key"));
    let mut registry = Registry::open(&db, &key, RegistryPolicy::default(), 1).unwrap();
    let pipeline = Arc::new(FacePipeline::load(&common::models_dir(), PipelineConfig::default()).unwrap());
    let liveness = Arc::new(facegate::vision::liveness::LivenessModel::load(&common::models_dir()).unwrap());
    let mut session = EnrolmentSession::new(3, QualityGate::default(), DEFAULT_LIVE_THRESHOLD);
    for path in &live[..10] {
        let _ = session.offer_frame(&pipeline, &liveness, &photo(path));
    }
    registry.record_consent("r-nuaa", None, &consent(), 1).unwrap();
    registry.enrol("r-nuaa", &session.finish().unwrap(), unix_now()).unwrap();

    let (frames, camera) = mpsc::channel();
    let relay_log = RelayLog::default();
    let mut hardware = GateHardware::new(Box::new(SimulatedRelay::new(relay_log.clone())));
    hardware.camera = Some(Box::new(ScriptedCamera(camera)));
    hardware.pipeline = Some(pipeline);
    hardware.liveness = Some(liveness);
    let (indicator, lights) = SimulatedIndicator::new();
    hardware.indicator = Some(Box::new(indicator));
    let settings = GateSettings {
        intent: FaceIntent::Always,
        face_cooldown: Duration::ZERO,
        live_threshold: Some(facegate::vision::liveness::DEFAULT_LIVE_THRESHOLD),
        ..settings()
    };
    let status = Arc::new(GateStatus::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gate = spawn_gate(registry, settings, hardware, status.clone(), stopped);

    // Six printed photos of the resident: they match, but never open.
    for path in print.iter().step_by(4).take(6) {
        frames.send(photo(path)).unwrap();
    }
    wait_for("the printed photos", || status.frames() == 6).await;
    assert_eq!((status.admissions(), relay_log.pulses()), (0, 0), "a printed photo opened the gate");
    assert!(status.refusals() >= 1, "the printed photo matched nobody: the test shows nothing");
    // Attack 3 of the outside review: the photo of a resident got a red light and a buzz, a stranger's photo
    // nothing, so a passer-by learnt who lives here. Both must look the same: nothing.
    let stranger = common::nuaa_frames("print", "0002");
    let shown = lights.signals().len();
    for path in stranger.iter().step_by(4).take(6) {
        frames.send(photo(path)).unwrap();
    }
    wait_for("the stranger's photos", || status.frames() == 12).await;
    assert_eq!(
        lights.count(Signal::Refused),
        0,
        "a resident's photo is told apart from a stranger's: {:?}",
        lights.signals()
    );
    assert_eq!(lights.signals().len(), shown, "the stranger's photo changed the lights");
    // The live resident, on frames not used at enrolment: in within three frames.
    for path in &live[10..13] {
        frames.send(photo(path)).unwrap();
    }
    wait_for("the live frames", || status.frames() == 15).await;
    assert_eq!(status.admissions(), 1, "the live resident was not let in");
    stop.send(()).unwrap();
    let report = gate.await.unwrap().unwrap();
    assert_eq!(report.admissions[0].method, EntryMethod::Face);
    let counts = Store::open(&db).unwrap().passage_counts(0, i64::MAX).unwrap();
    let refused: i64 = counts
        .iter()
        .filter(|c| c.method == EntryMethod::Face && c.outcome == PassageOutcome::Refused)
        .map(|c| c.count)
        .sum();
    assert_eq!(refused, i64::try_from(report.refusals).unwrap(), "not-live refusals are counted as refused faces");
}
