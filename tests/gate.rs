//! The gate daemon end to end on real photos, a real SQLite file and the real models, with the camera and
//! the relay simulated (the hardware edge): strangers never open, an enrolled resident opens within three
//! frames, a resident revoked while the gate runs no longer opens, and with the camera gone the keypad still
//! opens, until five wrong PINs lock it out with a backoff.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use facegate::actuate::{RelayLog, SimulatedRelay};
use facegate::capture::{decode_file, CaptureError, DecodeLimits, Frame, FrameSource};
use facegate::enrol::{EnrolmentSession, QualityGate};
use facegate::gate::{self, GateHardware, GateSettings, GateStatus};
use facegate::keypad::SimulatedKeypad;
use facegate::pipeline::{FacePipeline, PipelineConfig};
use facegate::protect::Pin;
use facegate::registry::{MasterKeySource, Registry, RegistryPolicy};
use facegate::store::{ConsentRecord, EntryMethod, Store};

/// A camera whose frames the test hands over one file at a time; when the test drops the sender, the
/// camera is unplugged.
struct ScriptedCamera(mpsc::Receiver<PathBuf>);

impl FrameSource for ScriptedCamera {
    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        match self.0.recv_timeout(Duration::from_millis(200)) {
            Ok(path) => Ok(decode_file(&path, DecodeLimits::default())?),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(CaptureError::Camera("no frame (test camera idle)".into())),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(CaptureError::Camera("unplugged".into())),
        }
    }
    fn describe(&self) -> String {
        "scripted test camera".into()
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faces_open_strangers_do_not_revoked_do_not_and_the_keypad_works_without_a_camera() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/facegate.sqlite");
    let key = MasterKeySource::file(dir.path().join("keys/master.key"));
    let all = common::people_with(8);
    let (resident, strangers) = (&all[0].1, &all[1..11]);

    let mut registry = Registry::open(&db, &key, RegistryPolicy::default(), 1).unwrap();
    let pipeline = Arc::new(FacePipeline::load(&common::models_dir(), PipelineConfig::default()).unwrap());
    let mut session = EnrolmentSession::new(3, QualityGate::default());
    for photo in &resident[..5] {
        let _ = session.offer_frame(&pipeline, &decode_file(photo, DecodeLimits::default()).unwrap());
    }
    registry.record_consent("r-face", None, &consent(), 1).unwrap();
    registry.enrol("r-face", &session.finish().unwrap(), 2).unwrap();
    registry.record_consent("r-pin", Some("3-401"), &consent(), 1).unwrap();
    registry.set_pin("r-pin", "3401", &Pin::parse("4071").unwrap(), 2).unwrap();

    let (frames, camera) = mpsc::channel();
    let (keypad, keys) = SimulatedKeypad::new();
    let relay_log = RelayLog::default();
    let hardware = GateHardware {
        camera: Some(Box::new(ScriptedCamera(camera))),
        pipeline: Some(pipeline),
        relay: Box::new(SimulatedRelay::new(relay_log.clone())),
        keypad: Some(Box::new(keypad)),
    };
    let settings = GateSettings {
        pulse: Duration::from_millis(60),
        max_open: Duration::from_millis(300),
        fps: 120.0,
        reload_every: Duration::from_millis(100),
        ..GateSettings::default()
    };
    let status = Arc::new(GateStatus::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gate = tokio::spawn(gate::run(registry, settings, hardware, status.clone(), async {
        let _ = stopped.await;
    }));

    // 1. Thirty photos of ten strangers: nobody is let in.
    let stranger_photos: Vec<PathBuf> = strangers.iter().flat_map(|(_, p)| p[..3].to_vec()).collect();
    for photo in &stranger_photos {
        frames.send(photo.clone()).unwrap();
    }
    wait_for("the strangers' frames", || status.frames() == 30).await;
    assert_eq!((status.admissions(), relay_log.pulses()), (0, 0), "a stranger opened the gate");

    // 2. The resident, on photos not used at enrolment: in within three frames.
    for photo in &resident[5..8] {
        frames.send(photo.clone()).unwrap();
    }
    wait_for("the resident's frames", || status.frames() == 33).await;
    assert_eq!(status.admissions(), 1, "the enrolled resident was not let in within 3 frames");
    wait_for("the pulse to end", || relay_log.transitions().len() >= 2).await;
    assert_eq!(relay_log.pulses(), 1);

    // 3. Revoked by another process (the CLI) while the gate runs: no longer opens.
    let mut admin = Registry::open(&db, &key, RegistryPolicy::default(), 3).unwrap();
    admin.revoke("r-face", 3).unwrap();
    drop(admin);
    wait_for("the gallery reload", || status.reloads() >= 1).await;
    for photo in resident[5..8].iter().chain(&resident[..3]) {
        frames.send(photo.clone()).unwrap();
    }
    wait_for("the revoked resident's frames", || status.frames() == 39).await;
    assert_eq!((status.admissions(), relay_log.pulses()), (1, 1), "a revoked resident opened the gate");

    // 4. The camera is unplugged: the keypad still opens.
    drop(frames);
    tokio::time::sleep(Duration::from_millis(300)).await;
    keys.type_str("3401#4071#");
    wait_for("the PIN admission", || status.admissions() == 2).await;
    wait_for("the pulse to end", || relay_log.transitions().len() >= 4).await;
    assert_eq!(relay_log.pulses(), 2);

    // 5. Five wrong PINs, then the right one: refused, locked out with a backoff.
    for _ in 0..5 {
        keys.type_str("3401#9999#");
    }
    wait_for("five refusals", || status.refusals() == 5).await;
    keys.type_str("3401#4071#");
    wait_for("the locked-out attempt", || status.refusals() == 6).await;
    assert_eq!((status.admissions(), relay_log.pulses()), (2, 2), "a locked-out PIN opened the gate");

    stop.send(()).unwrap();
    let report = gate.await.unwrap().unwrap();
    assert_eq!(report.admissions.len(), 2);
    assert_eq!(report.admissions[0].method, EntryMethod::Face);
    let frame = report.admissions[0].frame.unwrap();
    assert!((31..=33).contains(&frame), "face admission at frame {frame}, the resident's frames were 31-33");
    assert_eq!(report.admissions[1].method, EntryMethod::Pin);
    assert!(!relay_log.transitions().last().unwrap().unlocked, "the door was left unlocked");

    // Counts only: per hour, method and outcome.
    let store = Store::open(&db).unwrap();
    let counts = store.passage_counts(0, i64::MAX).unwrap();
    let total = |method: &str, outcome: &str| {
        counts.iter().filter(|c| c.method == method && c.outcome == outcome).map(|c| c.count).sum::<i64>()
    };
    assert_eq!((total("face", "opened"), total("pin", "opened"), total("pin", "refused")), (1, 1, 6));
    eprintln!(
        "face admission at frame {frame}, latency {:?}; {} frames in {:?}",
        report.admissions[0].latency.unwrap(),
        report.frames,
        report.elapsed
    );
}
