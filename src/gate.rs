//! Gate: the daemon that runs at the entrance. The camera thread reads frames, looks for a visitor pass's QR
//! code in each and, only while a resident has shown intent (face button or presence, by config), runs
//! `detect/align/embed -> protect/match`; the keypad, the pass scanner and the contacts (exit button, guard
//! call and release, door contact) each have their own thread; one async loop turns their events into
//! decisions, drives the door relay, the lights and buzzer and the optional Wiegand output, and counts
//! passages.
//!
//! The ways in are independent: the keypad, the scanner and the guard never wait on the camera or the models,
//! and a camera that fails (unplugged, or never there) only turns face entry and camera-read passes off
//! until it comes back. The door is locked when the loop starts, at every pulse's end, when the door shuts
//! again, and when the loop stops, whatever stopped it. Logs and counts carry the method and the outcome of a
//! passage, never who passed; frames are dropped (and wiped) as soon as they are read.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::actuate::{ActuateError, Indicator, MethodCards, Relay, Signal, Wiegand26, WiegandOutput};
use crate::capture::FrameSource;
use crate::decide::{
    Decider, Decision, DoorAlarm, DoorMonitor, DoorTiming, FaceIntent, FaceObservation, GateEvent, IntentWindow,
    PassCheck, PinCheck,
};
use crate::enrol::EnrolmentDesk;
use crate::inputs::{Contact, ContactChange, ContactInputs};
use crate::keypad::{Entry, Keypad, PinEntry};
use crate::liveness::LivenessModel;
use crate::pass::PassError;
use crate::pipeline::FacePipeline;
use crate::registry::{Registry, RegistryError};
use crate::scanner::PassScanner;
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
    /// Threads reading frames (QR search, detect, align, embed, match); frames are still decided in camera
    /// order. One per core lets a slow core keep up with the camera.
    pub face_workers: usize,
    /// How often the gallery is checked for changes made by other processes (enrolment, revocation).
    pub reload_every: Duration,
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
            // `PRAGMA data_version` is a cheap read: a change made by the portal, the CLI or the compound link
            // reaches the gallery within a quarter second.
            reload_every: Duration::from_millis(250),
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
    /// The face models; `None` (they failed to load) runs without face entry; passes are still read.
    pub pipeline: Option<Arc<FacePipeline>>,
    /// The liveness models; without them (and a `live_threshold`) face entry is off.
    pub liveness: Option<Arc<LivenessModel>>,
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
            relay,
            keypad: None,
            scanner: None,
            contacts: None,
            indicator: None,
            wiegand: None,
            enrolment_desk: None,
            compound: None,
        }
    }
}

/// Live counters, readable while the gate runs.
#[derive(Debug, Default)]
pub struct GateStatus {
    frames: AtomicU64,
    admissions: AtomicU64,
    refusals: AtomicU64,
    reloads: AtomicU64,
    faces_checked: AtomicU64,
    passes_read: AtomicU64,
    door_alarms: AtomicU64,
}

impl GateStatus {
    /// Frames read and handled by the camera thread.
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
    /// Frames that went through face matching (only while intent was shown).
    pub fn faces_checked(&self) -> u64 {
        self.faces_checked.load(Ordering::Relaxed)
    }
    /// Visitor passes read (camera and scanner), valid or not.
    pub fn passes_read(&self) -> u64 {
        self.passes_read.load(Ordering::Relaxed)
    }
    /// Forced-door and held-open alarms.
    pub fn door_alarms(&self) -> u64 {
        self.door_alarms.load(Ordering::Relaxed)
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
    /// Frames that went through face matching.
    pub faces_checked: u64,
    /// Every admission, in order.
    pub admissions: Vec<Admission>,
    /// Refusals.
    pub refusals: u64,
    /// How long the run lasted.
    pub elapsed: Duration,
}

enum Input {
    Event {
        event: GateEvent,
        frame: Option<(u64, Instant)>,
    },
    /// Intent ended (window closed): forget the frames seen so far.
    FaceIdle,
    Contact(ContactChange),
    Fault(String),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked while holding the lock leaves the registry as consistent as the store is, and
    // the intent window as a few plain values: keep going.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the threads share with the event loop.
struct Shared {
    registry: Mutex<Registry>,
    intent: Mutex<IntentWindow>,
    origin: Instant,
    stop: AtomicBool,
    status: Arc<GateStatus>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
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
    let shared = Arc::new(Shared {
        registry: Mutex::new(registry),
        intent: Mutex::new(IntentWindow::new(settings.intent, settings.face_window, settings.face_cooldown)),
        origin: started,
        stop: AtomicBool::new(false),
        status,
    });
    let (tx, mut rx) = mpsc::channel::<Input>(32);
    let GateHardware {
        camera,
        mut pipeline,
        liveness,
        mut relay,
        keypad,
        scanner,
        contacts,
        indicator,
        wiegand,
        enrolment_desk,
        compound,
    } = hardware;
    if settings.live_threshold.is_some() && liveness.is_none() && pipeline.is_some() {
        // A face must match and be live: without the liveness models, a photo would open the door.
        tracing::error!(
            "liveness models unavailable: face entry is off; PIN, visitor pass and guard entry keep working"
        );
        pipeline = None;
    }
    relay.set_unlocked(false)?;
    tracing::info!(relay = %relay.describe(), intent = ?settings.intent, "gate starting, door locked");

    let mut threads = Vec::new();
    let mut spawn =
        |name: &str, body: Box<dyn FnOnce() + Send>| match std::thread::Builder::new().name(name.into()).spawn(body) {
            Ok(handle) => threads.push(handle),
            Err(e) => tracing::error!("cannot start the {name} thread: {e}"),
        };
    if pipeline.is_none() {
        tracing::warn!("face models unavailable: face entry is off; PIN, visitor pass and guard entry keep working");
    }
    match camera {
        Some(camera) if pipeline.is_some() || settings.passes_from_camera => {
            let (shared, tx) = (shared.clone(), tx.clone());
            let models = pipeline.map(|p| (p, liveness));
            spawn(
                "camera",
                Box::new(move || camera_loop(camera, models, enrolment_desk, compound, &shared, &tx, settings)),
            );
        }
        _ => tracing::warn!("no camera: face entry and camera-read passes are off; the other ways in keep working"),
    }
    if let Some(keypad) = keypad {
        let (shared, tx) = (shared.clone(), tx.clone());
        spawn("keypad", Box::new(move || keypad_loop(keypad, &shared, &tx, settings.keypad_idle)));
    }
    if let Some(scanner) = scanner {
        let (shared, tx) = (shared.clone(), tx.clone());
        spawn("scanner", Box::new(move || scanner_loop(scanner, &shared, &tx)));
    }
    if let Some(contacts) = contacts {
        let (shared, tx) = (shared.clone(), tx.clone());
        spawn("contacts", Box::new(move || contacts_loop(contacts, &shared, &tx)));
    }
    let wiegand = wiegand.map(|(mut output, cards)| {
        let (frames, rx) = std::sync::mpsc::channel::<Wiegand26>();
        // Sending a frame takes ~55 ms of timed pulses: its own thread, so the loop never waits on it.
        spawn(
            "wiegand",
            Box::new(move || {
                for frame in rx {
                    if let Err(e) = output.send(frame) {
                        tracing::warn!("Wiegand output: {e}");
                    }
                }
            }),
        );
        (frames, cards)
    });

    let mut gate = GateLoop {
        shared: &shared,
        settings,
        relay: &mut *relay,
        indicator,
        wiegand,
        decider: match settings.live_threshold {
            Some(threshold) => Decider::new(settings.agreement.0, settings.agreement.1).with_liveness(threshold),
            None => Decider::new(settings.agreement.0, settings.agreement.1),
        },
        door: DoorTiming::new(settings.pulse, settings.max_open),
        monitor: DoorMonitor::new(settings.door_grace, settings.door_held_alarm),
        scanning: false,
        report: GateReport::default(),
    };
    gate.show(Signal::Ready);
    let outcome = gate.run(&mut rx, shutdown).await;
    let report = std::mem::take(&mut gate.report);
    drop(gate);
    // Fail-secure first, then stop the threads.
    let locked = relay.set_unlocked(false);
    shared.stop.store(true, Ordering::Relaxed);
    drop(tx);
    drop(rx);
    for thread in threads {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    tracing::info!("gate stopped, door locked");
    outcome?;
    locked?;
    Ok(GateReport {
        frames: shared.status.frames(),
        faces_checked: shared.status.faces_checked(),
        elapsed: started.elapsed(),
        ..report
    })
}

struct GateLoop<'a> {
    shared: &'a Shared,
    settings: GateSettings,
    relay: &'a mut dyn Relay,
    indicator: Option<Box<dyn Indicator>>,
    wiegand: Option<(std::sync::mpsc::Sender<Wiegand26>, MethodCards)>,
    decider: Decider,
    door: DoorTiming,
    monitor: DoorMonitor,
    scanning: bool,
    report: GateReport,
}

impl GateLoop<'_> {
    async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<Input>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GateError> {
        let mut reload = tokio::time::interval(self.settings.reload_every);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(Duration::from_millis(250));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut data_version = lock(&self.shared.registry).store().data_version().ok();
        tokio::pin!(shutdown);
        loop {
            let close_in = self.door.close_at().map(|at| at.saturating_sub(self.shared.now()));
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(close_in.unwrap_or(Duration::from_secs(3_600))), if close_in.is_some() => {
                    if self.door.tick(self.shared.now()) {
                        self.set_lock(false)?;
                    }
                }
                _ = reload.tick() => self.reload_if_changed(&mut data_version),
                _ = housekeeping.tick() => self.housekeeping(),
                input = rx.recv() => match input {
                    None => return Ok(()),
                    Some(Input::Fault(what)) => {
                        tracing::warn!("{what}");
                        self.show(Signal::Fault);
                    }
                    Some(Input::FaceIdle) => self.decider.reset_faces(),
                    Some(Input::Contact(change)) => self.contact(change)?,
                    Some(Input::Event { event, frame }) => self.event(&event, frame)?,
                },
            }
        }
    }

    fn show(&mut self, signal: Signal) {
        if let Some(indicator) = &mut self.indicator {
            if let Err(e) = indicator.show(signal) {
                tracing::warn!("status lights: {e}");
            }
        }
    }

    fn set_lock(&mut self, unlocked: bool) -> Result<(), GateError> {
        self.relay.set_unlocked(unlocked)?;
        self.monitor.lock_changed(unlocked, self.shared.now());
        Ok(())
    }

    fn open_door(&mut self) -> Result<(), GateError> {
        if self.door.open(self.shared.now()) {
            self.set_lock(true)?;
        }
        Ok(())
    }

    fn reload_if_changed(&mut self, data_version: &mut Option<i64>) {
        let mut registry = lock(&self.shared.registry);
        let now = registry.store().data_version().ok();
        if now == *data_version {
            return;
        }
        *data_version = now;
        match registry.reload() {
            Ok(()) => {
                self.shared.status.reloads.fetch_add(1, Ordering::Relaxed);
                self.decider.reset_faces();
                tracing::info!(matchable = registry.gallery_len(), "gallery reloaded");
            }
            Err(e) => tracing::error!("gallery reload failed, keeping the previous one: {e}"),
        }
    }

    fn housekeeping(&mut self) {
        let now = self.shared.now();
        if let Some(alarm) = self.monitor.tick(now) {
            self.door_alarm(alarm);
        }
        let scanning = self.settings.intent != FaceIntent::Always && lock(&self.shared.intent).face_allowed(now);
        if self.scanning && !scanning && !self.monitor.is_open() {
            self.show(Signal::Ready);
        }
        self.scanning = scanning;
    }

    fn door_alarm(&mut self, alarm: DoorAlarm) {
        self.shared.status.door_alarms.fetch_add(1, Ordering::Relaxed);
        match alarm {
            DoorAlarm::Forced => tracing::warn!("door opened without a release: forced or a faulty lock"),
            DoorAlarm::HeldOpen => tracing::warn!("door held open too long"),
        }
        self.show(Signal::Alarm);
    }

    fn contact(&mut self, change: ContactChange) -> Result<(), GateError> {
        let now = self.shared.now();
        match (change.contact, change.active) {
            (Contact::ExitButton, true) => self.event(&GateEvent::ExitButton, None)?,
            (Contact::GuardCall, true) => {
                tracing::info!("guard called");
                self.show(Signal::GuardCalled);
            }
            (Contact::GuardRelease, true) => self.event(&GateEvent::GuardOpen, None)?,
            (Contact::FaceButton, true) => {
                if lock(&self.shared.intent).button(now) {
                    self.show(Signal::Scanning);
                }
            }
            (Contact::Presence, present) => {
                if lock(&self.shared.intent).presence(present, now) {
                    self.show(Signal::Scanning);
                }
            }
            (Contact::DoorContact, open) => {
                if let Some(alarm) = self.monitor.contact(open, now) {
                    self.door_alarm(alarm);
                }
                // Shut again after an opening: relock now rather than at the pulse's end (tailgating).
                if !open && self.door.end_now() {
                    self.set_lock(false)?;
                }
                if !open {
                    self.show(Signal::Ready);
                }
            }
            (_, false) => {}
        }
        Ok(())
    }

    fn event(&mut self, event: &GateEvent, frame: Option<(u64, Instant)>) -> Result<(), GateError> {
        let (decision, slot) = self.decider.decide(event);
        if matches!(decision, Decision::Admit(_) | Decision::Release) {
            self.open_door()?;
        }
        match decision {
            Decision::Admit(method) => {
                let (frame_no, latency) = frame.map_or((None, None), |(n, t)| (Some(n), Some(t.elapsed())));
                self.report.admissions.push(Admission { method, frame: frame_no, latency });
                self.shared.status.admissions.fetch_add(1, Ordering::Relaxed);
                self.show(Signal::Granted);
                if let Some((frames, cards)) = &self.wiegand {
                    let _ = frames.send(cards.card_for(method));
                }
                if method == EntryMethod::Face {
                    lock(&self.shared.intent).admitted(self.shared.now());
                    self.decider.reset_faces();
                }
                if let Some(slot) = slot {
                    if let Err(e) = lock(&self.shared.registry).note_used(slot, unix_now()) {
                        tracing::warn!("cannot note template use: {e}");
                    }
                }
            }
            Decision::Refuse(_) => {
                self.report.refusals += 1;
                self.shared.status.refusals.fetch_add(1, Ordering::Relaxed);
                let locked_out = matches!(event, GateEvent::Pin(PinCheck::LockedOut(_)));
                self.show(if locked_out { Signal::LockedOut } else { Signal::Refused });
            }
            Decision::NotLive => {
                self.report.refusals += 1;
                self.shared.status.refusals.fetch_add(1, Ordering::Relaxed);
                tracing::info!("a matching face was not confirmed live: refused; PIN, pass and guard remain");
                self.show(Signal::Refused);
            }
            Decision::Release => self.show(Signal::Granted),
            Decision::Wait => {}
        }
        if let Some((method, outcome)) = decision.passage() {
            tracing::info!(method = method.as_str(), outcome = outcome.as_str(), "passage");
            if let Err(e) = lock(&self.shared.registry).store_mut().count_passage(unix_now(), method, outcome) {
                tracing::warn!("cannot count the passage: {e}");
            }
        }
        Ok(())
    }
}

/// Remembers the codes read in the last seconds, by hash, so a pass held in view is checked once, not
/// refused as "used" in every following frame.
#[derive(Default)]
struct RecentCodes(Vec<([u8; 32], Instant)>);

impl RecentCodes {
    const HOLD: Duration = Duration::from_secs(10);

    fn first_sighting(&mut self, text: &str) -> bool {
        let hash: [u8; 32] = Sha256::digest(text.trim().to_ascii_uppercase().as_bytes()).into();
        self.0.retain(|(_, at)| at.elapsed() < Self::HOLD);
        if self.0.iter().any(|(h, _)| *h == hash) {
            return false;
        }
        self.0.push((hash, Instant::now()));
        true
    }
}

/// Checks a scanned pass against the registry; the log says why a pass failed, never what it contained.
fn check_pass(shared: &Shared, text: &str, source: &str) -> PassCheck {
    shared.status.passes_read.fetch_add(1, Ordering::Relaxed);
    match lock(&shared.registry).check_pass(text, unix_now()) {
        Ok(Ok(_)) => PassCheck::Valid,
        Ok(Err(e @ PassError::Malformed)) => {
            tracing::debug!(source, "a code that is not a pass: {e}");
            PassCheck::Invalid
        }
        Ok(Err(e)) => {
            tracing::info!(source, "visitor pass refused: {e}");
            PassCheck::Invalid
        }
        Err(e) => {
            tracing::error!("visitor pass check failed: {e}");
            PassCheck::Invalid
        }
    }
}

/// What a worker read from one frame; the frame itself is gone (wiped) by the time this is delivered.
struct FrameReading {
    n: u64,
    started: Instant,
    /// Visitor-pass texts the QR search found (wiped on drop: a pass is a bearer token).
    codes: Vec<zeroize::Zeroizing<String>>,
    face: FaceWork,
}

enum FaceWork {
    /// The frame went to an enrolment asked for by the portal.
    Enrolment,
    /// Face matching was on: what the largest face matched.
    Observed(FaceObservation),
    /// Face matching was off for this frame.
    Off,
}

/// Reads the camera at most `settings.fps` times a second and has `settings.face_workers` threads read the
/// frames ([`crate::pipeline::ordered_parallel`]); the readings are then turned into events one at a time,
/// in camera order, so the decision sees frames as they were taken.
fn camera_loop(
    mut camera: Box<dyn FrameSource>,
    models: Option<(Arc<FacePipeline>, Option<Arc<LivenessModel>>)>,
    desk: Option<Arc<EnrolmentDesk>>,
    compound: Option<Arc<crate::compound::LinkHealth>>,
    shared: &Shared,
    tx: &mpsc::Sender<Input>,
    settings: GateSettings,
) {
    let period = Duration::from_secs_f32(1.0 / settings.fps.clamp(0.1, 120.0));
    let closed = AtomicBool::new(false);
    let send = |input: Input| {
        let sent = tx.blocking_send(input).is_ok();
        if !sent {
            closed.store(true, Ordering::Relaxed);
        }
        sent
    };
    let mut camera_down = false;
    let mut last_read: Option<Instant> = None;
    let mut n = 0u64;
    let next = || loop {
        if shared.stop.load(Ordering::Relaxed) || closed.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(last) = last_read {
            std::thread::sleep(period.saturating_sub(last.elapsed()));
        }
        let started = Instant::now();
        last_read = Some(started);
        match camera.next_frame() {
            Ok(frame) => {
                if camera_down {
                    camera_down = false;
                    send(Input::Fault("camera back, face entry resumed".into()));
                }
                n += 1;
                return Some((n, started, frame));
            }
            Err(e) => {
                if !camera_down {
                    camera_down = true;
                    send(Input::Fault(format!("camera down, face entry and camera-read passes paused: {e}")));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    let work = |(n, started, frame): (u64, Instant, crate::capture::Frame)| {
        let codes = if settings.passes_from_camera {
            // Any other code in view (a poster, a T-shirt) is none of the gate's business.
            crate::qr::read_codes(&frame, 1).into_iter().filter(|text| crate::pass::looks_like_pass(text)).collect()
        } else {
            Vec::new()
        };
        // An enrolment asked for by the portal takes the camera's faces while it runs (never both).
        let enrolling = match (&desk, &models) {
            (Some(desk), Some((pipeline, Some(liveness)))) if desk.wants_frames() => {
                desk.offer_frame(pipeline, liveness, &frame);
                true
            }
            _ => false,
        };
        let face = match &models {
            _ if enrolling => FaceWork::Enrolment,
            Some((pipeline, liveness))
                if compound.as_ref().is_none_or(|link| link.face_matching_allowed())
                    && lock(&shared.intent).face_allowed(shared.now()) =>
            {
                FaceWork::Observed(observe_face(&frame, pipeline, liveness.as_deref(), shared))
            }
            _ => FaceWork::Off,
        };
        drop(frame);
        FrameReading { n, started, codes, face }
    };
    let mut face_was_on = false;
    let mut recent = RecentCodes::default();
    let deliver = |reading: FrameReading| {
        for text in &reading.codes {
            if recent.first_sighting(text) {
                let check = check_pass(shared, text, "camera");
                send(Input::Event { event: GateEvent::VisitorPass(check), frame: None });
            }
        }
        let face_on = matches!(reading.face, FaceWork::Observed(_));
        match reading.face {
            FaceWork::Observed(seen) => {
                shared.status.faces_checked.fetch_add(1, Ordering::Relaxed);
                send(Input::Event { event: GateEvent::FaceFrame(seen), frame: Some((reading.n, reading.started)) });
            }
            FaceWork::Off if face_was_on => {
                send(Input::FaceIdle);
            }
            FaceWork::Off | FaceWork::Enrolment => {}
        }
        if !matches!(reading.face, FaceWork::Enrolment) {
            face_was_on = face_on;
        }
        // Counted once handled, so "frames read" also means "their events are sent".
        shared.status.frames.fetch_add(1, Ordering::Relaxed);
    };
    crate::pipeline::ordered_parallel(settings.face_workers.max(1), next, work, deliver);
}

/// Matches the largest face and, only when it matched someone, checks that it is live (the liveness pair costs
/// about a third of an embedding; strangers never need it).
fn observe_face(
    frame: &crate::capture::Frame,
    pipeline: &FacePipeline,
    liveness: Option<&LivenessModel>,
    shared: &Shared,
) -> FaceObservation {
    let Ok(reading) = pipeline.read(frame) else {
        return FaceObservation::matched(None);
    };
    let slot = lock(&shared.registry).identify(&reading.embedding).map(|m| m.slot);
    let live = match (slot, liveness) {
        (Some(_), Some(model)) => model.score(frame, &reading.face.bbox).ok(),
        _ => None,
    };
    FaceObservation { slot, live }
}

fn keypad_loop(mut keypad: Box<dyn Keypad>, shared: &Shared, tx: &mpsc::Sender<Input>, idle: Duration) {
    let mut entry = PinEntry::default();
    let mut last_key = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
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
            Entry::Submitted { code, pin } => {
                lock(&shared.registry).check_pin(&code, &pin, unix_now()).unwrap_or_else(|e| {
                    tracing::error!("PIN check failed: {e}");
                    PinCheck::Rejected
                })
            }
        };
        if tx.blocking_send(Input::Event { event: GateEvent::Pin(check), frame: None }).is_err() {
            break;
        }
    }
}

fn scanner_loop(mut scanner: Box<dyn PassScanner>, shared: &Shared, tx: &mpsc::Sender<Input>) {
    let mut recent = RecentCodes::default();
    while !shared.stop.load(Ordering::Relaxed) {
        match scanner.next_pass(Duration::from_millis(100)) {
            Ok(None) => {}
            Ok(Some(text)) => {
                // A scanner reads on a trigger, but some repeat a code held under them: once is enough.
                if !recent.first_sighting(&text) {
                    continue;
                }
                let check = check_pass(shared, &text, "scanner");
                if tx.blocking_send(Input::Event { event: GateEvent::VisitorPass(check), frame: None }).is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Input::Fault(format!("pass scanner: {e}")));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn contacts_loop(mut contacts: Box<dyn ContactInputs>, shared: &Shared, tx: &mpsc::Sender<Input>) {
    while !shared.stop.load(Ordering::Relaxed) {
        match contacts.next_change(Duration::from_millis(100)) {
            Ok(None) => {}
            Ok(Some(change)) => {
                if tx.blocking_send(Input::Contact(change)).is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Input::Fault(format!("contacts: {e}")));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}
