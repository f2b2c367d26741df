//! The daemon, wired: `daemon::run(config, options, shutdown)` opens the registry and gives it to its one
//! owner ([`crate::registry::owner`]), loads the models, opens the hardware the config names, starts the
//! portal and the compound link with handles to that owner, and runs the gate until `shutdown` completes.
//!
//! Who owns what while it runs:
//! - the registry's owner thread: the keys, the write connection, the audit chain, the gallery it publishes,
//!   the passage tally, retention;
//! - the gate's door task: the relay, its timing and the door contact; the event loop: decisions and lights;
//! - the portal's and the link's tasks: nothing of the registry; they send it jobs and await replies.
//!
//! It must never open a second registry on the same database: one process, one owner.

use std::path::PathBuf;
use std::sync::Arc;

use crate::capture::reopen::Reopening;
use crate::capture::{DecodeLimits, FrameSource, ReplaySource};
use crate::config::{Backend, BcmPin, CaptureConfig, Config, KeypadConfig, LightPins, ScannerConfig};
use crate::devices::contacts::{Contact, ContactFeeder, GpioContacts, SimulatedContacts};
use crate::devices::keypad::{MatrixKeypad, SimulatedKeypad, UsbKeypad};
use crate::devices::scanner::{SimulatedScanner, UsbScanner};
use crate::devices::{
    GpioIndicator, GpioRelay, GpioWiegand, Relay, RelayLog, SimulatedIndicator, SimulatedRelay, SimulatedWiegand,
};
use crate::gate::{self, GateHardware, GateReport, GateStatus};
use crate::policy::decide::FaceIntent;
use crate::protect::keys::KeyWrap;
use crate::protect::pass::PASS_PREFIX;
use crate::registry::owner::{OwnerSettings, RegistryHandle, RegistryOwner};
use crate::registry::{MasterKeySource, Registry, RegistryError};
use crate::store::unix_now;
use crate::vision::liveness::LivenessModel;
use crate::vision::pipeline::FacePipeline;

/// Errors that keep the daemon from starting, or stop it.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The registry (database or master key) could not be opened.
    #[error("opening the resident registry {path}: {source}")]
    Registry {
        /// The database.
        path: PathBuf,
        /// Why.
        #[source]
        source: RegistryError,
    },
    /// A configured device could not be opened.
    #[error(transparent)]
    Hardware(#[from] crate::devices::ActuateError),
    /// The key root could not give the key-encryption key (or the config and key files disagree).
    #[error("the device's keys: {0}")]
    Keys(#[source] crate::protect::keys::KeyError),
    /// The compound's shared secret could not be read.
    #[error("the compound's shared secret ([compound] dir): {0}")]
    CompoundSecret(#[source] crate::compound::renewal::SecretsError),
    /// The gate's certificate or key for the broker could not be read.
    #[error("the compound link's TLS: {0}")]
    CompoundTls(#[source] crate::compound::link::LinkError),
    /// A thread could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The gate stopped on an error.
    #[error("the gate stopped: {0}")]
    Gate(#[from] gate::GateError),
}

/// What the command line may override, and the owner's timing.
#[derive(Default)]
pub struct DaemonOptions {
    /// The database (default: `store.database`).
    pub db: Option<PathBuf>,
    /// The master key file (default: `store.master_key`).
    pub key_file: Option<PathBuf>,
    /// Sealing the key file (`FACEGATE_MASTER_PASSPHRASE`).
    pub passphrase: Option<zeroize::Zeroizing<String>>,
    /// Replay this folder as the camera.
    pub replay: Option<PathBuf>,
    /// Read this V4L2 camera.
    pub camera: Option<u32>,
    /// Frames per second (default: `capture.fps`).
    pub fps: Option<f32>,
    /// How often the registry's owner follows other processes, enforces retention and writes counts.
    pub owner: OwnerSettings,
    /// Where the daemon's live counters go (a fresh set when `None`).
    pub status: Option<Arc<GateStatus>>,
    /// Receives a handle to the registry's owner once it runs (for tests and tools in the same process).
    pub on_ready: Option<tokio::sync::oneshot::Sender<RegistryHandle>>,
}

impl std::fmt::Debug for DaemonOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the passphrase.
        f.debug_struct("DaemonOptions")
            .field("db", &self.db)
            .field("key_file", &self.key_file)
            .field("replay", &self.replay)
            .field("camera", &self.camera)
            .field("fps", &self.fps)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// Runs the daemon until `shutdown` completes: the gate, and with them the portal and the compound link the
/// config enables. Returns the gate's report; the door is locked on every way out, and the passages counted
/// are written before it returns (a busy database gets `options.owner.drain_within`).
pub async fn run(
    config: &Config,
    mut options: DaemonOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<GateReport, DaemonError> {
    let db = options.db.clone().unwrap_or_else(|| config.database.clone());
    let key_file = options.key_file.clone().unwrap_or_else(|| config.master_key.clone());
    let wrap = {
        let (settings, dir, passphrase) = (config.keys.clone(), key_dir(&key_file), options.passphrase.clone());
        match tokio::task::spawn_blocking(move || settings.open(&dir, passphrase)).await {
            Ok(wrap) => wrap.map_err(DaemonError::Keys)?,
            Err(e) => {
                return Err(DaemonError::Thread { what: "key root", source: std::io::Error::other(e.to_string()) })
            }
        }
    };
    if wrap.kind().keys_on_card() {
        tracing::warn!("{}", crate::protect::keys::root::KEYS_ON_CARD);
    }
    let key = MasterKeySource { file: key_file, wrap: wrap.clone() };
    let opened = {
        let (db, policy) = (db.clone(), config.registry);
        tokio::task::spawn_blocking(move || Registry::open(&db, &key, policy, unix_now())).await
    };
    let mut registry = match opened {
        Ok(result) => result.map_err(|source| DaemonError::Registry { path: db.clone(), source })?,
        Err(e) => return Err(DaemonError::Thread { what: "registry", source: std::io::Error::other(e.to_string()) }),
    };
    // In a compound, every local enrolment and revocation is queued for the other gates in its own transaction.
    registry.set_replicated(config.compound.is_some());
    for failure in registry.load_failures() {
        tracing::warn!("{failure}");
    }
    let owner = RegistryOwner::spawn(registry, options.owner)
        .map_err(|source| DaemonError::Thread { what: "registry", source })?;
    let handle = owner.handle();
    if let Some(ready) = options.on_ready.take() {
        let _ = ready.send(handle.clone());
    }
    let outcome = run_with(config, &options, &wrap, handle, shutdown).await;
    // Everything that held a handle has stopped; the owner writes the last counts and lets go.
    let _ = tokio::task::spawn_blocking(move || owner.stop()).await;
    outcome
}

async fn run_with(
    config: &Config,
    options: &DaemonOptions,
    wrap: &KeyWrap,
    registry: RegistryHandle,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<GateReport, DaemonError> {
    let (pipeline, liveness) = load_models(config).await;
    let fps = options.fps.unwrap_or(config.fps()).clamp(0.1, 120.0);
    let camera = Some(open_camera(config, options, fps));
    let hw = &config.hardware;
    let relay: Box<dyn Relay> = match hw.backend {
        Backend::Gpio => Box::new(GpioRelay::open(hw.relay_bcm.get(), hw.relay_active_high)?),
        Backend::Simulated => Box::new(SimulatedRelay::new(RelayLog::default())),
    };
    let mut hardware = open_hardware(config, camera, relay)?;
    hardware.pipeline = pipeline.map(|p| p as Arc<dyn crate::vision::pipeline::FaceReader>);
    hardware.liveness = liveness;
    let settings = crate::gate::GateSettings { fps, ..config.gate };
    if settings.intent == FaceIntent::Always && !matches!(config.capture, CaptureConfig::Replay { .. }) {
        tracing::warn!("gate.intent = \"always\" with a live camera: faces are matched without anyone asking");
    }
    let (stopping, stop_watch) = tokio::sync::watch::channel(false);
    let stopped = |mut watch: tokio::sync::watch::Receiver<bool>| async move {
        let _ = watch.wait_for(|stop| *stop).await;
    };
    let mut services = Vec::new();
    let status = options.status.clone().unwrap_or_default();
    let needs_liveness = settings.live_threshold.is_some();
    if hardware.pipeline.is_none() || (needs_liveness && hardware.liveness.is_none()) {
        let slot = Arc::new(gate::FaceModelSlot::default());
        hardware.later_models = Some(slot.clone());
        let later = LaterModels { dir: config.models_dir.clone(), config: config.pipeline, slot, needs_liveness };
        services.push(tokio::spawn(later.retry(status.clone(), stopped(stop_watch.clone()))));
    }
    let link_health =
        config.compound.as_ref().map(|c| Arc::new(crate::compound::LinkHealth::new(c.link.offline_limit)));
    if let Some(health) = &link_health {
        status.set_link(health.clone());
    }
    if config.portal.enabled {
        let desk = Arc::new(crate::vision::enrol::EnrolmentDesk::default());
        hardware.enrolment_desk = Some(desk.clone());
        // The guard's and the installer's desks: the camera and the event loop on one side, the portal's pages
        // on the other (the portal never touches the relay or a frame).
        let gate_name = config.compound.as_ref().map_or("gate", |c| c.link.gate.as_str());
        let guard = Arc::new(gate::GuardDesk::new(gate_name));
        hardware.guard_desk = Some(guard.clone());
        let aiming = hardware.camera.is_some().then(|| Arc::new(crate::vision::aim::AimingDesk::default()));
        hardware.aiming_desk.clone_from(&aiming);
        let mut state =
            crate::portal::PortalState::new(portal_settings(config, options, wrap), registry.clone(), Some(desk))
                .with_desks(guard, aiming);
        if let Some(token) = &config.portal.metrics_token {
            state = state.with_metrics(crate::portal::metrics::MetricsSource {
                token: token.clone(),
                status: status.clone(),
                link: link_health.clone(),
                database: options.db.clone().unwrap_or_else(|| config.database.clone()),
            });
        }
        let state = Arc::new(state);
        let stop = stopped(stop_watch.clone());
        services.push(tokio::spawn(async move {
            // The gate keeps running without its portal: the portal is for set-up, not for entry.
            if let Err(e) = crate::portal::serve(state, stop).await {
                tracing::error!("{e}; the gate keeps running without the portal");
            }
        }));
    }
    if let (Some(compound), Some(health)) = (&config.compound, link_health) {
        let secrets = crate::compound::renewal::CompoundSecrets::load(&compound.name, &compound.secret, wrap)
            .map_err(DaemonError::CompoundSecret)?;
        let tls = crate::compound::certs::client_tls(&compound.link, wrap).map_err(DaemonError::CompoundTls)?;
        hardware.compound = Some(health.clone());
        let (settings, registry) = (compound.link.clone(), registry.clone());
        let stop = stopped(stop_watch.clone());
        services.push(tokio::spawn(async move {
            // Without the link, face entry stays off (never caught up); the other ways in keep working.
            if let Err(e) = crate::compound::link::run(settings, secrets, tls, registry, health, stop).await {
                tracing::error!("{e}; face entry stays off, PIN, passes and the guard keep working");
            }
        }));
    }
    let report = gate::run(registry, settings, hardware, status, shutdown).await;
    let _ = stopping.send(true);
    for service in services {
        let _ = service.await;
    }
    Ok(report?)
}

/// The face and liveness models, each loaded off the async workers; either missing turns face entry off (the
/// other ways in do not need them).
async fn load_models(config: &Config) -> (Option<Arc<FacePipeline>>, Option<Arc<LivenessModel>>) {
    let (dir, cfg) = (config.models_dir.clone(), config.pipeline);
    let pipeline = load_off_workers("face", move || FacePipeline::load(&dir, cfg)).await;
    let dir = config.models_dir.clone();
    let liveness = load_off_workers("liveness", move || LivenessModel::load(&dir)).await;
    (pipeline, liveness)
}

/// How often models that were missing or damaged at start are tried again.
const MODEL_RETRY: std::time::Duration = std::time::Duration::from_secs(3);

/// Face models that could not be read at start (a folder not yet copied, a damaged file, a card that came up
/// late): read again every [`MODEL_RETRY`] until they load, when face entry begins without a restart.
struct LaterModels {
    dir: PathBuf,
    config: crate::vision::pipeline::PipelineConfig,
    slot: Arc<gate::FaceModelSlot>,
    needs_liveness: bool,
}

impl LaterModels {
    async fn retry(self, status: Arc<GateStatus>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(MODEL_RETRY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once, and the models were tried just now.
        tick.tick().await;
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {}
            }
            let (dir, config, needs_liveness) = (self.dir.clone(), self.config, self.needs_liveness);
            let loaded = tokio::task::spawn_blocking(move || {
                // Liveness first: without it (when needed) the larger face models are not worth reading.
                let liveness = LivenessModel::load(&dir).ok();
                if needs_liveness && liveness.is_none() {
                    return None;
                }
                Some((FacePipeline::load(&dir, config).ok()?, liveness))
            })
            .await;
            if let Ok(Some((pipeline, liveness))) = loaded {
                if self.slot.fill(Arc::new(pipeline), liveness.map(Arc::new), self.needs_liveness) {
                    status.models_up.store(true, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(dir = %self.dir.display(), "face models loaded: face entry on");
                    return;
                }
            }
        }
    }
}

async fn load_off_workers<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    what: &str,
    load: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Option<Arc<T>> {
    match tokio::task::spawn_blocking(load).await {
        Ok(Ok(model)) => Some(Arc::new(model)),
        Ok(Err(e)) => {
            tracing::error!("{what} models unavailable, face entry off: {e}");
            None
        }
        Err(e) => {
            tracing::error!("{what} models unavailable, face entry off: {e}");
            None
        }
    }
}

fn open_camera(config: &Config, options: &DaemonOptions, fps: f32) -> Box<dyn FrameSource> {
    // A camera lost, or missing at start, is opened again while the gate runs: a V4L2 device unplugged or not
    // yet enumerated, a replay folder empty or not yet mounted.
    let (camera, opened) = match (&options.replay, options.camera, &config.capture) {
        (Some(dir), _, _) | (None, None, CaptureConfig::Replay { dir }) => {
            let dir = dir.clone();
            let what = format!("replay of {}", dir.display());
            let (source, opened) = Reopening::new(what, move || {
                ReplaySource::open(&dir, DecodeLimits::default()).map(|s| Box::new(s) as Box<dyn FrameSource>)
            });
            (Box::new(source) as Box<dyn FrameSource>, opened)
        }
        (None, Some(index), _) | (None, None, &CaptureConfig::Camera { index }) => {
            let what = format!("camera /dev/video{index}");
            let (source, opened) = Reopening::new(what, move || crate::capture::open_camera(index, fps));
            (Box::new(source) as Box<dyn FrameSource>, opened)
        }
    };
    if let Err(e) = opened {
        tracing::error!("{e}; face entry off until the camera can be opened (the gate keeps trying)");
    }
    camera
}

/// The portal's settings from the config (and the command line's store paths).
fn portal_settings(config: &Config, options: &DaemonOptions, wrap: &KeyWrap) -> crate::portal::PortalSettings {
    let p = &config.portal;
    let database = options.db.clone().unwrap_or_else(|| config.database.clone());
    let key_dir = key_dir(&options.key_file.clone().unwrap_or_else(|| config.master_key.clone()));
    let mut audit = crate::audit::AuditScope::new(database, key_dir, wrap.clone(), config.registry.max_unused_secs);
    audit.extra_paths.clone_from(&config.audit_scan_paths);
    if !config.audit_system_places {
        audit.system_root = None;
    }
    crate::portal::PortalSettings {
        listen: p.listen,
        cert: p.cert.clone(),
        key: p.key.clone(),
        cert_trusted: p.cert_trusted,
        notice: crate::portal::notice_facts(config),
        utc_offset_secs: p.utc_offset_secs,
        count_noise_epsilon: p.count_noise_epsilon,
        enrol_frames: config.enrol_frames,
        enrol_timeout: crate::portal::ENROL_TIMEOUT,
        live_threshold: config.live_threshold(),
        code_valid: p.code_valid,
        audit,
    }
}

/// The keypad, scanner, contacts, lights and Wiegand output the config names. Off the Pi, standard input
/// feeds both the keypad (digits, `#`, `*`) and the scanner (a line holding a pass).
fn open_hardware(
    config: &Config,
    camera: Option<Box<dyn FrameSource>>,
    relay: Box<dyn Relay>,
) -> Result<GateHardware, DaemonError> {
    use std::io::BufRead;
    let hw = &config.hardware;
    let mut hardware = GateHardware::new(relay);
    hardware.camera = camera;
    let (mut stdin_keys, mut stdin_passes) = (None, None);
    hardware.keypad = match &hw.keypad {
        KeypadConfig::None => None,
        KeypadConfig::Matrix { rows, cols } => {
            Some(Box::new(MatrixKeypad::open(rows.map(BcmPin::get), cols.map(BcmPin::get))?))
        }
        KeypadConfig::Usb { device } => Some(Box::new(UsbKeypad::open(device)?)),
        KeypadConfig::Stdin => {
            let (keypad, feeder) = SimulatedKeypad::new();
            stdin_keys = Some(feeder);
            Some(Box::new(keypad))
        }
    };
    hardware.scanner = match &hw.scanner {
        ScannerConfig::None => None,
        ScannerConfig::Usb { device } => Some(Box::new(UsbScanner::open(device)?)),
        ScannerConfig::Stdin => {
            let (scanner, feeder) = SimulatedScanner::new();
            stdin_passes = Some(feeder);
            Some(Box::new(scanner))
        }
    };
    // On a bench without hardware, standard input also presses the buttons (`!guard`, `!exit`, ...).
    let stdin_contacts = if (stdin_keys.is_some() || stdin_passes.is_some()) && hw.backend == Backend::Simulated {
        let (contacts, feeder) = SimulatedContacts::new();
        hardware.contacts = Some(Box::new(contacts));
        Some(feeder)
    } else {
        None
    };
    if stdin_keys.is_some() || stdin_passes.is_some() {
        // A detached reader: it ends with standard input; the keypad and scanner then just stay idle.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                match (&stdin_passes, &stdin_keys, &stdin_contacts) {
                    (_, _, Some(contacts)) if line.trim_start().starts_with('!') => bench_button(contacts, &line),
                    (Some(passes), _, _) if line.trim().to_ascii_uppercase().starts_with(PASS_PREFIX) => {
                        passes.scan(&line)
                    }
                    (_, Some(keys), _) => keys.type_str(&line),
                    _ => {}
                }
            }
        });
    }
    match hw.backend {
        Backend::Gpio => {
            if !hw.contacts.is_empty() {
                let pins: Vec<_> = hw.contacts.iter().map(|c| (c.contact, c.pin.get(), c.active_low)).collect();
                hardware.contacts = Some(Box::new(GpioContacts::open(&pins)?));
            }
            if hw.lights != LightPins::default() {
                let LightPins { green, red, buzzer } = hw.lights;
                let [green, red, buzzer] = [green, red, buzzer].map(|pin| pin.map(BcmPin::get));
                hardware.indicator = Some(Box::new(GpioIndicator::open(green, red, buzzer)?));
            }
            if let Some(w) = hw.wiegand {
                hardware.wiegand = Some((Box::new(GpioWiegand::open(w.d0.get(), w.d1.get())?), w.cards));
            }
        }
        Backend::Simulated => {
            let (indicator, _log) = SimulatedIndicator::new();
            hardware.indicator = Some(Box::new(indicator));
            if let Some(w) = hw.wiegand {
                let (output, _log) = SimulatedWiegand::new();
                hardware.wiegand = Some((Box::new(output), w.cards));
            }
        }
    }
    Ok(hardware)
}

/// A bench's button press typed on standard input: `!guard` (guard call), `!release` (the guard's release),
/// `!exit`, `!face`, `!open` / `!shut` (the door contact), `!here` / `!gone` (the presence sensor).
pub const BENCH_BUTTONS: &str = "!guard !release !exit !face !open !shut !here !gone";

fn bench_button(contacts: &ContactFeeder, line: &str) {
    match line.trim() {
        "!guard" => contacts.press(Contact::GuardCall),
        "!release" => contacts.press(Contact::GuardRelease),
        "!exit" => contacts.press(Contact::ExitButton),
        "!face" => contacts.press(Contact::FaceButton),
        "!open" => contacts.set(Contact::DoorContact, true),
        "!shut" => contacts.set(Contact::DoorContact, false),
        "!here" => contacts.set(Contact::Presence, true),
        "!gone" => contacts.set(Contact::Presence, false),
        other => tracing::warn!("unknown bench button {other:?}; try one of {BENCH_BUTTONS}"),
    }
}

/// The key folder: the master key's.
fn key_dir(key_file: &std::path::Path) -> PathBuf {
    key_file.parent().map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf)
}
