//! Gate: the daemon's side at the entrance, one concern per file.
//!
//! - `daemon.rs`: `facegate run` wired: the registry's owner, the models, the hardware the config names, the
//!   portal and the compound link, then [`run`].
//! - `camera.rs`: the camera reader and its frame workers (QR search on every frame; face matching against the
//!   registry's published gallery only while a resident has shown intent; readings in camera order).
//! - `readers.rs`: the keypad, the pass scanner and the contacts, each on its own thread.
//! - `events.rs`: the event loop: decisions, lights, Wiegand, the passage tally.
//! - `door.rs`: the door task, sole owner of the relay, its pulse timing and the door-contact alarms.
//! - `status.rs`: live counters and the last few passages by method and outcome (for the terminal).
//! - `guard.rs`: the guard's desk: calls shown on the guard's page, remote releases into the event loop.
//!
//! The ways in are independent: the keypad, the scanner and the guard never wait on the camera or the models,
//! and a camera that fails (unplugged, or never there) only turns face entry and camera-read passes off
//! until it comes back. Nothing on the path from an event to the relay waits on SQLite, argon2id or the
//! registry. The door is locked when the door task starts, at every pulse's end, when the door shuts again,
//! and when it stops, whatever stopped it. Logs and counts carry the method and the outcome of a passage,
//! never who passed; frames are dropped (and wiped) as soon as they are read.

mod camera;
pub mod daemon;
pub mod door;
mod events;
pub mod guard;
mod pass_search;
mod readers;
pub mod status;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::capture::FrameSource;
use crate::devices::contacts::{ContactChange, ContactInputs};
use crate::devices::keypad::Keypad;
use crate::devices::scanner::PassScanner;
use crate::devices::{ActuateError, Indicator, MethodCards, Relay, Signal, Wiegand26, WiegandOutput};
use crate::policy::decide::{Decider, FaceIntent, GateEvent, IntentWindow};
use crate::policy::lockout::KeypadAlarm;
use crate::policy::passage::EntryMethod;
use crate::registry::owner::RegistryHandle;
use crate::vision::aim::AimingDesk;
use crate::vision::enrol::EnrolmentDesk;
use crate::vision::liveness::LivenessModel;
use crate::vision::pipeline::FaceReader;
pub use camera::FaceModelSlot;
pub use guard::GuardDesk;
pub use status::GateStatus;

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The relay could not be driven.
    #[error(transparent)]
    Actuate(#[from] ActuateError),
    /// The door task ended abnormally (a bug): the gate stops with the door locked.
    #[error("the door task failed ({0}); the door is locked; restart the service")]
    DoorTask(#[source] tokio::task::JoinError),
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
    /// Threads reading frames for faces (detect, align, embed, liveness); frames are still decided in camera
    /// order. One per core lets a slow core keep up with the camera. The QR search has a thread of its own.
    pub face_workers: usize,
    /// A half-typed keypad entry is cleared after this idle time.
    pub keypad_idle: Duration,
    /// When faces are matched: on the face button, on presence, or always.
    pub intent: FaceIntent,
    /// How long a press of the face button (or the end of presence) keeps face matching on.
    pub face_window: Duration,
    /// After a face admission, faces are not matched for this long (the resident is still in view).
    pub face_cooldown: Duration,
    /// Whether the camera also reads visitor passes' QR codes.
    pub passes_from_camera: bool,
    /// A face opens only if the mean live score of the agreeing frames reaches this (`None`: no liveness
    /// check, for tests of other parts only).
    pub live_threshold: Option<f32>,
    /// An opening this soon after the lock closed again is not a forced door.
    pub door_grace: Duration,
    /// The door may stay open this long before the alarm sounds.
    pub door_held_alarm: Duration,
}

impl Default for GateSettings {
    fn default() -> Self {
        Self {
            pulse: Duration::from_secs(3),
            max_open: Duration::from_secs(10),
            agreement: (2, 3),
            fps: 15.0,
            face_workers: 1,
            keypad_idle: Duration::from_secs(15),
            intent: FaceIntent::Button,
            face_window: Duration::from_secs(8),
            face_cooldown: Duration::from_secs(4),
            passes_from_camera: true,
            // The config always sets one (`liveness.threshold`); `None` is for tests of the other parts.
            live_threshold: None,
            door_grace: Duration::from_secs(5),
            door_held_alarm: Duration::from_secs(30),
        }
    }
}

/// The hardware the gate runs with; everything but the relay is optional.
pub struct GateHardware {
    /// The camera (or a replay); `None` runs without face entry and without camera-read passes.
    pub camera: Option<Box<dyn FrameSource>>,
    /// The face models (a [`FaceReader`]: the real pipeline, or one wrapping it); `None` (they failed to load)
    /// runs without face entry; passes are still read.
    pub pipeline: Option<Arc<dyn FaceReader>>,
    /// The liveness models; without them (and a `live_threshold`) face entry is off.
    pub liveness: Option<Arc<LivenessModel>>,
    /// What searches the camera's frames for visitor passes' QR codes (rqrr: [`crate::vision::qr::QrDecoder`]).
    pub qr: Arc<dyn crate::vision::qr::CodeReader>,
    /// Where face models loaded after start arrive when `pipeline` (or a needed `liveness`) is `None`: the
    /// daemon retries models that were missing or damaged at start, and face entry begins once they load.
    pub later_models: Option<Arc<FaceModelSlot>>,
    /// The door relay.
    pub relay: Box<dyn Relay>,
    /// The keypad; `None` runs without PIN entry.
    pub keypad: Option<Box<dyn Keypad>>,
    /// A QR scanner for visitor passes, independent of the camera.
    pub scanner: Option<Box<dyn PassScanner>>,
    /// Exit button, guard call and release, face button, presence sensor, door contact.
    pub contacts: Option<Box<dyn ContactInputs>>,
    /// Status lights and buzzer.
    pub indicator: Option<Box<dyn Indicator>>,
    /// Wiegand output to an existing access controller, with the card number sent per entry method.
    pub wiegand: Option<(Box<dyn WiegandOutput>, MethodCards)>,
    /// Where the portal asks the gate camera to capture an enrolment.
    pub enrolment_desk: Option<Arc<EnrolmentDesk>>,
    /// Where the portal's aiming page asks for the camera's figures (numbers only).
    pub aiming_desk: Option<Arc<AimingDesk>>,
    /// Where the guard's page sees calls and asks for a release.
    pub guard_desk: Option<Arc<GuardDesk>>,
    /// In a compound: the broker link's word on whether faces may be matched (silent past the offline limit,
    /// or not yet caught up after a reconnection: no). The other ways in never ask it.
    pub compound: Option<Arc<crate::compound::LinkHealth>>,
}

impl GateHardware {
    /// Just a relay; add the rest by setting the fields.
    pub fn new(relay: Box<dyn Relay>) -> Self {
        Self {
            camera: None,
            pipeline: None,
            liveness: None,
            qr: Arc::new(crate::vision::qr::QrDecoder),
            later_models: None,
            relay,
            keypad: None,
            scanner: None,
            contacts: None,
            indicator: None,
            wiegand: None,
            enrolment_desk: None,
            aiming_desk: None,
            guard_desk: None,
            compound: None,
        }
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
    /// For a face: the number of the approach's first frame (the first in which the face was seen).
    pub first_frame: Option<u64>,
    /// For a face: from the arrival of the approach's first frame to the relay command, what the person waits.
    pub from_first_frame: Option<Duration>,
}

/// When a face frame was read, and when the approach it belongs to began (frame number and arrival).
#[derive(Clone, Copy, Debug)]
struct FrameClock {
    n: u64,
    read_at: Instant,
    approach: (u64, Instant),
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GateReport {
    /// Frames read.
    pub frames: u64,
    /// Frames that went through face matching.
    pub faces_checked: u64,
    /// Every admission, in order.
    pub admissions: Vec<Admission>,
    /// Refusals.
    pub refusals: u64,
    /// How long the run lasted.
    pub elapsed: Duration,
    /// Frames a frame worker failed on (each cost that frame only).
    pub worker_faults: u64,
}

enum Input {
    Event {
        event: GateEvent,
        frame: Option<FrameClock>,
    },
    /// Intent ended (window closed): forget the frames seen so far.
    FaceIdle,
    Contact(ContactChange),
    Fault(String),
    /// Someone spent the keypad's PIN budget: every code is paused; the guard must look.
    KeypadAlarm(KeypadAlarm),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked while holding the lock leaves the intent window as a few plain values: keep going.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the threads share with the event loop.
struct Shared {
    registry: RegistryHandle,
    intent: Mutex<IntentWindow>,
    origin: Instant,
    stop: AtomicBool,
    status: Arc<GateStatus>,
}

impl GateSettings {
    /// The decision core, with the liveness check when a threshold is set.
    fn decider(&self) -> Decider {
        let decider = Decider::new(self.agreement.0, self.agreement.1);
        match self.live_threshold {
            Some(threshold) => decider.with_liveness(threshold),
            None => decider,
        }
    }

    /// What the door task needs of the settings.
    fn door(&self) -> door::DoorSettings {
        door::DoorSettings {
            pulse: self.pulse,
            max_open: self.max_open,
            grace: self.door_grace,
            held_alarm: self.door_held_alarm,
        }
    }
}

impl Shared {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Runs the gate until `shutdown` completes; the door is locked on the way out, whatever happens. `registry`
/// is a handle to the registry's owner ([`crate::registry::owner`]): the gate reads its published gallery and
/// counts passages in its tally, and never waits on it.
pub async fn run(
    registry: RegistryHandle,
    settings: GateSettings,
    hardware: GateHardware,
    status: Arc<GateStatus>,
    shutdown: impl Future<Output = ()>,
) -> Result<GateReport, GateError> {
    let started = Instant::now();
    let shared = Arc::new(Shared {
        registry,
        intent: Mutex::new(IntentWindow::new(settings.intent, settings.face_window, settings.face_cooldown)),
        origin: started,
        stop: AtomicBool::new(false),
        status,
    });
    let (tx, mut rx) = mpsc::channel::<Input>(32);
    let GateHardware {
        camera,
        pipeline,
        liveness,
        qr,
        later_models,
        relay,
        keypad,
        scanner,
        contacts,
        indicator,
        wiegand,
        enrolment_desk,
        aiming_desk,
        guard_desk,
        compound,
    } = hardware;
    tracing::info!(relay = %relay.describe(), intent = ?settings.intent, "gate starting, door locked");
    let (door_news, mut news) = mpsc::unbounded_channel();
    let (door, door_commands) = mpsc::unbounded_channel();
    let door_state = shared.status.door.clone();
    let mut door_task = tokio::spawn(door::run(relay, settings.door(), door_commands, door_news, door_state.clone()));
    if let Some(desk) = &guard_desk {
        desk.attach(tx.clone());
    }

    let mut threads = Threads::default();
    let models = later_models.unwrap_or_default();
    if let Some((pipeline, liveness)) = face_models(pipeline, liveness, &settings) {
        models.fill(pipeline, liveness, false);
    }
    shared.status.models_up.store(models.is_set(), Ordering::Relaxed);
    match camera {
        Some(camera) => {
            let (shared, tx) = (shared.clone(), tx.clone());
            threads.spawn("camera", move || {
                let desks = camera::Desks { enrolment: enrolment_desk, aiming: aiming_desk };
                camera::camera_loop(camera, camera::Readers { models, qr }, desks, compound, &shared, &tx, settings);
            });
        }
        None => tracing::warn!("no camera: face entry and camera-read passes are off; the other ways in keep working"),
    }
    threads.readers(Readers { keypad, scanner, contacts }, &shared, &tx, settings);
    let wiegand = wiegand.map(|(output, cards)| (threads.wiegand(output), cards));

    let mut events = events::EventLoop {
        shared: &shared,
        settings,
        door,
        door_state,
        guard: guard_desk.clone(),
        indicator,
        wiegand,
        decider: settings.decider(),
        scanning: false,
        gallery_version: shared.registry.gallery().version(),
        report: GateReport::default(),
    };
    events.show(Signal::Ready);
    let outcome = events.run(&mut rx, &mut news, &mut door_task, shutdown).await;
    let report = std::mem::take(&mut events.report);
    if let Some(desk) = &guard_desk {
        desk.detach();
    }
    // Fail-secure first: closing the door task's channel ends it with the relay locked.
    drop(events);
    let locked = door::wait(door_task).await;
    shared.stop.store(true, Ordering::Relaxed);
    drop(tx);
    drop(rx);
    threads.join().await;
    tracing::info!("gate stopped, door locked");
    outcome?;
    locked?;
    Ok(GateReport {
        frames: shared.status.frames(),
        faces_checked: shared.status.faces_checked(),
        worker_faults: shared.status.worker_faults(),
        elapsed: started.elapsed(),
        ..report
    })
}

/// The face models the camera may use: none without the detector and embedder, and none without liveness when
/// a liveness threshold is set (a face must match and be live: without the liveness models a photo would open
/// the door).
fn face_models(
    pipeline: Option<Arc<dyn FaceReader>>,
    liveness: Option<Arc<LivenessModel>>,
    settings: &GateSettings,
) -> Option<camera::FaceModels> {
    let Some(pipeline) = pipeline else {
        tracing::warn!("face models unavailable: face entry is off; PIN, visitor pass and guard entry keep working");
        return None;
    };
    if settings.live_threshold.is_some() && liveness.is_none() {
        tracing::error!(
            "liveness models unavailable: face entry is off; PIN, visitor pass and guard entry keep working"
        );
        return None;
    }
    Some((pipeline, liveness))
}

/// The gate's helper threads (camera, readers, Wiegand), joined on the way out.
#[derive(Default)]
struct Threads(Vec<std::thread::JoinHandle<()>>);

/// The inputs that each get a thread of their own.
struct Readers {
    keypad: Option<Box<dyn Keypad>>,
    scanner: Option<Box<dyn PassScanner>>,
    contacts: Option<Box<dyn ContactInputs>>,
}

impl Threads {
    /// Starts the keypad's, the scanner's and the contacts' threads (those the gate has).
    fn readers(&mut self, inputs: Readers, shared: &Arc<Shared>, tx: &mpsc::Sender<Input>, settings: GateSettings) {
        if let Some(keypad) = inputs.keypad {
            let (shared, tx) = (shared.clone(), tx.clone());
            self.spawn("keypad", move || readers::keypad_loop(keypad, &shared, &tx, settings.keypad_idle));
        }
        if let Some(scanner) = inputs.scanner {
            let (shared, tx) = (shared.clone(), tx.clone());
            self.spawn("scanner", move || readers::scanner_loop(scanner, &shared, &tx));
        }
        if let Some(contacts) = inputs.contacts {
            let (shared, tx) = (shared.clone(), tx.clone());
            self.spawn("contacts", move || readers::contacts_loop(contacts, &shared, &tx));
        }
    }

    /// Starts a named thread; a failure to start one is logged and the other ways in keep working.
    fn spawn(&mut self, name: &str, body: impl FnOnce() + Send + 'static) {
        match std::thread::Builder::new().name(name.into()).spawn(body) {
            Ok(handle) => self.0.push(handle),
            Err(e) => tracing::error!("cannot start the {name} thread: {e}"),
        }
    }

    /// The Wiegand output's own thread: sending a frame takes ~55 ms of timed pulses, so the event loop only
    /// queues it.
    fn wiegand(&mut self, mut output: Box<dyn WiegandOutput>) -> std::sync::mpsc::Sender<Wiegand26> {
        let (frames, rx) = std::sync::mpsc::channel::<Wiegand26>();
        self.spawn("wiegand", move || {
            for frame in rx {
                if let Err(e) = output.send(frame) {
                    tracing::warn!("Wiegand output: {e}");
                }
            }
        });
        frames
    }

    /// Waits for every thread (off the executor: a reader may take a moment to notice the stop flag).
    async fn join(self) {
        for thread in self.0 {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
