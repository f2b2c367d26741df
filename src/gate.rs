//! Gate: the daemon that runs at the entrance. `capture -> detect/align/embed -> protect/match` on a face
//! thread, the keypad on its own thread, and one async loop that turns their events into decisions, drives
//! the door relay and counts passages.
//!
//! The ways in are independent: the keypad never waits on the camera or the models, and a camera that
//! fails (unplugged, or never there) only turns face entry off until it comes back. The door is locked when
//! the loop starts, at every pulse's end, and when it stops, whatever stopped it. Logs and counts carry the
//! method and the outcome of a passage, never who passed; frames are dropped (and wiped) as soon as they are
//! read.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::actuate::{ActuateError, Relay};
use crate::capture::FrameSource;
use crate::decide::{Decider, Decision, DoorTiming, GateEvent, PinCheck};
use crate::keypad::{Entry, Keypad, PinEntry};
use crate::pipeline::FacePipeline;
use crate::registry::{Registry, RegistryError};
use crate::store::{unix_now, EntryMethod};

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The relay could not be driven.
    #[error(transparent)]
    Actuate(#[from] ActuateError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Timing and agreement settings of the gate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GateSettings {
    /// How long the relay is energised per admission.
    pub pulse: Duration,
    /// The longest the door is held open, however many admissions follow.
    pub max_open: Duration,
    /// A face opens after the same resident matched in `required` of the last `window` frames.
    pub agreement: (usize, usize),
    /// Frames per second the face thread reads at most.
    pub fps: f32,
    /// How often the gallery is checked for changes made by other processes (enrolment, revocation).
    pub reload_every: Duration,
    /// A half-typed keypad entry is cleared after this idle time.
    pub keypad_idle: Duration,
}

impl Default for GateSettings {
    fn default() -> Self {
        Self {
            pulse: Duration::from_secs(3),
            max_open: Duration::from_secs(10),
            agreement: (2, 3),
            fps: 15.0,
            reload_every: Duration::from_secs(1),
            keypad_idle: Duration::from_secs(15),
        }
    }
}

/// The hardware the gate runs with; each input is optional, the relay is not.
pub struct GateHardware {
    /// The camera (or a replay); `None` runs without face entry.
    pub camera: Option<Box<dyn FrameSource>>,
    /// The face models; `None` (they failed to load) runs without face entry.
    pub pipeline: Option<Arc<FacePipeline>>,
    /// The door relay.
    pub relay: Box<dyn Relay>,
    /// The keypad; `None` runs without PIN entry.
    pub keypad: Option<Box<dyn Keypad>>,
}

/// Live counters, readable while the gate runs.
#[derive(Debug, Default)]
pub struct GateStatus {
    frames: AtomicU64,
    admissions: AtomicU64,
    refusals: AtomicU64,
    reloads: AtomicU64,
}

impl GateStatus {
    /// Frames read by the face thread.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
    /// Admissions so far (all methods).
    pub fn admissions(&self) -> u64 {
        self.admissions.load(Ordering::Relaxed)
    }
    /// Refusals so far (all methods).
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }
    /// Gallery reloads after a change by another process.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }
}

/// One admission, for the run report: no identity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Admission {
    /// How.
    pub method: EntryMethod,
    /// For a face: the number (from 1) of the frame that completed the agreement.
    pub frame: Option<u64>,
    /// For a face: from that frame's arrival to the relay command.
    pub latency: Option<Duration>,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GateReport {
    /// Frames read.
    pub frames: u64,
    /// Every admission, in order.
    pub admissions: Vec<Admission>,
    /// Refusals.
    pub refusals: u64,
    /// How long the run lasted.
    pub elapsed: Duration,
}

enum Input {
    Event { event: GateEvent, frame: Option<(u64, Instant)> },
    Fault(String),
}

fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    // A thread that panicked while holding the registry leaves it as consistent as the store is: keep going.
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the gate until `shutdown` completes; the door is locked on the way out, whatever happens.
pub async fn run(
    registry: Registry,
    settings: GateSettings,
    hardware: GateHardware,
    status: Arc<GateStatus>,
    shutdown: impl Future<Output = ()>,
) -> Result<GateReport, GateError> {
    let started = Instant::now();
    let registry = Arc::new(Mutex::new(registry));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::channel::<Input>(16);
    let GateHardware { camera, pipeline, mut relay, keypad } = hardware;
    relay.set_unlocked(false)?;
    tracing::info!(relay = %relay.describe(), "gate starting, door locked");

    let mut threads = Vec::new();
    match (camera, pipeline) {
        (Some(camera), Some(pipeline)) => {
            let (registry, tx, stop, status) = (registry.clone(), tx.clone(), stop.clone(), status.clone());
            threads.push(std::thread::spawn(move || {
                face_loop(camera, &pipeline, &registry, &tx, &stop, &status, settings.fps);
            }));
        }
        (camera, pipeline) => tracing::warn!(
            camera = camera.is_some(),
            models = pipeline.is_some(),
            "face entry is off; PIN, visitor pass and guard entry keep working"
        ),
    }
    if let Some(keypad) = keypad {
        let (registry, tx, stop) = (registry.clone(), tx.clone(), stop.clone());
        threads.push(std::thread::spawn(move || keypad_loop(keypad, &registry, &tx, &stop, settings.keypad_idle)));
    }

    let outcome = event_loop(&registry, settings, &mut *relay, &mut rx, &status, shutdown).await;
    // Fail-secure first, then stop the threads.
    let locked = relay.set_unlocked(false);
    stop.store(true, Ordering::Relaxed);
    drop(tx);
    drop(rx);
    for thread in threads {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    tracing::info!("gate stopped, door locked");
    let mut report = outcome?;
    locked?;
    report.frames = status.frames();
    report.elapsed = started.elapsed();
    Ok(report)
}

async fn event_loop(
    registry: &Mutex<Registry>,
    settings: GateSettings,
    relay: &mut dyn Relay,
    rx: &mut mpsc::Receiver<Input>,
    status: &GateStatus,
    shutdown: impl Future<Output = ()>,
) -> Result<GateReport, GateError> {
    let origin = Instant::now();
    let mut decider = Decider::new(settings.agreement.0, settings.agreement.1);
    let mut door = DoorTiming::new(settings.pulse, settings.max_open);
    let mut report = GateReport::default();
    let mut reload = tokio::time::interval(settings.reload_every);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut data_version = lock(registry).store().data_version().ok();
    tokio::pin!(shutdown);
    loop {
        let close_in = door.close_at().map(|at| at.saturating_sub(origin.elapsed()));
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(close_in.unwrap_or(Duration::from_secs(3_600))), if close_in.is_some() => {
                if door.tick(origin.elapsed()) {
                    relay.set_unlocked(false)?;
                }
            }
            _ = reload.tick() => {
                let mut registry = lock(registry);
                let now = registry.store().data_version().ok();
                if now != data_version {
                    data_version = now;
                    match registry.reload() {
                        Ok(()) => {
                            status.reloads.fetch_add(1, Ordering::Relaxed);
                            decider.reset_faces();
                            tracing::info!(matchable = registry.gallery_len(), "gallery reloaded");
                        }
                        Err(e) => tracing::error!("gallery reload failed, keeping the previous one: {e}"),
                    }
                }
            }
            input = rx.recv() => match input {
                None => break,
                Some(Input::Fault(what)) => tracing::warn!("{what}"),
                Some(Input::Event { event, frame }) => {
                    let (decision, slot) = decider.decide(&event);
                    if matches!(decision, Decision::Admit(_) | Decision::Release) && door.open(origin.elapsed()) {
                        relay.set_unlocked(true)?;
                    }
                    if let Decision::Admit(method) = decision {
                        let (frame_no, latency) = frame.map_or((None, None), |(n, t)| (Some(n), Some(t.elapsed())));
                        report.admissions.push(Admission { method, frame: frame_no, latency });
                        status.admissions.fetch_add(1, Ordering::Relaxed);
                        if let Some(slot) = slot {
                            if let Err(e) = lock(registry).note_used(slot, unix_now()) {
                                tracing::warn!("cannot note template use: {e}");
                            }
                        }
                    }
                    if matches!(decision, Decision::Refuse(_)) {
                        report.refusals += 1;
                        status.refusals.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some((method, outcome)) = decision.passage() {
                        tracing::info!(method = method.as_str(), outcome = outcome.as_str(), "passage");
                        if let Err(e) = lock(registry).store_mut().count_passage(unix_now(), method, outcome) {
                            tracing::warn!("cannot count the passage: {e}");
                        }
                    }
                }
            },
        }
    }
    Ok(report)
}

fn face_loop(
    mut camera: Box<dyn FrameSource>,
    pipeline: &FacePipeline,
    registry: &Mutex<Registry>,
    tx: &mpsc::Sender<Input>,
    stop: &AtomicBool,
    status: &GateStatus,
    fps: f32,
) {
    let period = Duration::from_secs_f32(1.0 / fps.clamp(0.1, 120.0));
    let mut camera_down = false;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let frame = match camera.next_frame() {
            Ok(frame) => frame,
            Err(e) => {
                if !camera_down {
                    camera_down = true;
                    let _ = tx.blocking_send(Input::Fault(format!("camera down, face entry paused: {e}")));
                }
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        if camera_down {
            camera_down = false;
            let _ = tx.blocking_send(Input::Fault("camera back, face entry resumed".into()));
        }
        n += 1;
        let slot = pipeline.read(&frame).ok().and_then(|reading| lock(registry).identify(&reading.embedding));
        drop(frame);
        status.frames.fetch_add(1, Ordering::Relaxed);
        let event = GateEvent::FaceFrame(slot.map(|m| m.slot));
        if tx.blocking_send(Input::Event { event, frame: Some((n, started)) }).is_err() {
            break;
        }
        std::thread::sleep(period.saturating_sub(started.elapsed()));
    }
}

fn keypad_loop(
    mut keypad: Box<dyn Keypad>,
    registry: &Mutex<Registry>,
    tx: &mpsc::Sender<Input>,
    stop: &AtomicBool,
    idle: Duration,
) {
    let mut entry = PinEntry::default();
    let mut last_key = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let key = match keypad.next_key(Duration::from_millis(100)) {
            Ok(Some(key)) => key,
            Ok(None) => {
                if !entry.is_empty() && last_key.elapsed() > idle {
                    entry.clear();
                }
                continue;
            }
            Err(e) => {
                let _ = tx.blocking_send(Input::Fault(format!("keypad: {e}")));
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        last_key = Instant::now();
        let check = match entry.push(key) {
            Entry::Typing => continue,
            Entry::Malformed => PinCheck::Rejected,
            Entry::Submitted { code, pin } => lock(registry).check_pin(&code, &pin, unix_now()).unwrap_or_else(|e| {
                tracing::error!("PIN check failed: {e}");
                PinCheck::Rejected
            }),
        };
        if tx.blocking_send(Input::Event { event: GateEvent::Pin(check), frame: None }).is_err() {
            break;
        }
    }
}
