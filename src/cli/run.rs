//! `facegate run`: the gate daemon, wired to the hardware the config names, until SIGTERM or Ctrl-C.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::residents::{open_registry, StoreArgs};
use crate::actuate::{
    GpioIndicator, GpioRelay, GpioWiegand, Relay, RelayLog, SimulatedIndicator, SimulatedRelay, SimulatedWiegand,
};
use crate::capture::{DecodeLimits, FrameSource, ReplaySource};
use crate::config::{CaptureConfig, Config, KeypadConfig, ScannerConfig};
use crate::decide::FaceIntent;
use crate::gate::{self, GateHardware, GateReport, GateStatus};
use crate::hardening::harden_process;
use crate::inputs::GpioContacts;
use crate::keypad::{MatrixKeypad, SimulatedKeypad, UsbKeypad};
use crate::liveness::LivenessModel;
use crate::pass::PASS_PREFIX;
use crate::pipeline::FacePipeline;
use crate::scanner::{SimulatedScanner, UsbScanner};
use crate::store::EntryMethod;

/// `facegate run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Database and key.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Replay this folder as the camera (overrides the config).
    #[arg(long, value_name = "DIR", conflicts_with = "camera")]
    pub replay: Option<PathBuf>,
    /// Read this V4L2 camera (overrides the config).
    #[arg(long, value_name = "N")]
    pub camera: Option<u32>,
    /// Stop after this many seconds (default: run until SIGTERM or Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Frames per second (overrides `capture.fps`).
    #[arg(long)]
    pub fps: Option<f32>,
}

/// Runs the daemon.
pub fn run(config: &Config, args: &RunArgs) -> Result<std::process::ExitCode> {
    let hardening = harden_process();
    tracing::info!(core_dumps_off = hardening.core_dumps_off, memory_locked = hardening.memory_locked, "hardening");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = runtime.block_on(run_async(config, args))?;
    print_report(&report);
    Ok(std::process::ExitCode::SUCCESS)
}

async fn run_async(config: &Config, args: &RunArgs) -> Result<GateReport> {
    // The daemon owns the database: a fresh install starts with an empty one (PIN and passes still need it).
    let registry = open_registry(config, &args.store, true)?;
    let pipeline = {
        let (dir, cfg) = (config.models_dir.clone(), config.pipeline);
        match tokio::task::spawn_blocking(move || FacePipeline::load(&dir, cfg)).await? {
            Ok(pipeline) => Some(Arc::new(pipeline)),
            Err(e) => {
                tracing::error!("face models unavailable, face entry off: {e}");
                None
            }
        }
    };
    let liveness = {
        let dir = config.models_dir.clone();
        match tokio::task::spawn_blocking(move || LivenessModel::load(&dir)).await? {
            Ok(model) => Some(Arc::new(model)),
            Err(e) => {
                tracing::error!("liveness models unavailable, face entry off: {e}");
                None
            }
        }
    };
    let fps = args.fps.unwrap_or(config.fps).clamp(0.1, 120.0);
    let camera: Option<Box<dyn FrameSource>> = match (&args.replay, args.camera, &config.capture) {
        (Some(dir), _, _) | (None, None, CaptureConfig::Replay { dir }) => {
            match ReplaySource::open(dir, DecodeLimits::default()) {
                Ok(source) => Some(Box::new(source)),
                Err(e) => {
                    tracing::error!("replay {}: {e}; face entry off", dir.display());
                    None
                }
            }
        }
        (None, Some(index), _) | (None, None, &CaptureConfig::Camera { index }) => {
            match crate::capture::open_camera(index, fps) {
                Ok(camera) => Some(camera),
                Err(e) => {
                    tracing::error!("{e}; face entry off until restart");
                    None
                }
            }
        }
    };
    let relay: Box<dyn Relay> = if config.hardware.gpio {
        Box::new(GpioRelay::open(config.hardware.relay_bcm, config.hardware.relay_active_high)?)
    } else {
        let log = RelayLog::default();
        Box::new(SimulatedRelay::new(log))
    };
    let mut hardware = open_hardware(config, camera, pipeline, relay)?;
    hardware.liveness = liveness;
    let settings = crate::gate::GateSettings { fps, ..config.gate };
    if settings.intent == FaceIntent::Always && !matches!(config.capture, CaptureConfig::Replay { .. }) {
        tracing::warn!("gate.intent = \"always\" with a live camera: faces are matched without anyone asking");
    }
    let duration = args.duration;
    let (stopping, stop_watch) = tokio::sync::watch::channel(false);
    if config.portal.enabled {
        // The portal gets its own connection to the registry; the gate reloads when the portal changes it.
        let desk = Arc::new(crate::enrol::EnrolmentDesk::default());
        hardware.enrolment_desk = Some(desk.clone());
        let portal_registry = open_registry(config, &args.store, true)?;
        let state = Arc::new(crate::portal::PortalState::new(
            portal_settings(config, &args.store),
            portal_registry,
            Some(desk),
        ));
        let mut watch = stop_watch.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = watch.wait_for(|stop| *stop).await;
            };
            // The gate keeps running without its portal: the portal is for set-up, not for entry.
            if let Err(e) = crate::portal::serve(state, stop).await {
                tracing::error!("{e}; the gate keeps running without the portal");
            }
        });
    }
    if let Some(compound) = &config.compound {
        // The link gets its own registry connection, as the portal does; the gate reloads when it changes.
        let secret = crate::keys::MasterKeyFile::new(compound.secret.clone(), None)
            .load()
            .context("the compound's shared secret ([compound] dir)")?;
        let keys = crate::compound::CompoundKeys::derive(&secret, &compound.name);
        drop(secret);
        let health = Arc::new(crate::compound::LinkHealth::new(compound.link.offline_limit));
        hardware.compound = Some(health.clone());
        let link_registry = open_registry(config, &args.store, true)?;
        let settings = compound.link.clone();
        let mut watch = stop_watch.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = watch.wait_for(|stop| *stop).await;
            };
            // Without the link, face entry stays off (never caught up); the other ways in keep working.
            if let Err(e) = crate::compound::link::run(settings, keys, link_registry, health, stop).await {
                tracing::error!("{e}; face entry stays off, PIN, passes and the guard keep working");
            }
        });
    }
    let signals = async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                tracing::error!("cannot watch SIGTERM: {e}");
                return;
            }
        };
        let timer = tokio::time::sleep(duration.map_or(Duration::from_secs(u64::from(u32::MAX)), Duration::from_secs));
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
            _ = term.recv() => tracing::info!("SIGTERM"),
            () = timer => tracing::info!("run duration reached"),
        }
    };
    let shutdown = async move {
        signals.await;
        let _ = stopping.send(true);
    };
    let report = gate::run(registry, settings, hardware, Arc::new(GateStatus::default()), shutdown)
        .await
        .context("the gate stopped")?;
    Ok(report)
}

/// The portal's settings from the config (and the command line's store paths).
fn portal_settings(config: &Config, store: &StoreArgs) -> crate::portal::PortalSettings {
    let p = &config.portal;
    let database = store.db.clone().unwrap_or_else(|| config.database.clone());
    let key_file = store.key_file.clone().unwrap_or_else(|| config.master_key.clone());
    let key_dir = key_file.parent().map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
    let mut audit = crate::audit::AuditScope::new(database, key_dir, config.registry.max_unused_secs);
    audit.extra_paths.clone_from(&config.audit_scan_paths);
    crate::portal::PortalSettings {
        listen: p.listen,
        cert: p.cert.clone(),
        key: p.key.clone(),
        notice: super::portal::notice_facts(config),
        utc_offset_secs: p.utc_offset_secs,
        enrol_frames: config.enrol_frames,
        live_threshold: config.live_threshold,
        code_valid: p.code_valid,
        audit,
    }
}

/// The keypad, scanner, contacts, lights and Wiegand output the config names. Off the Pi, standard input
/// feeds both the keypad (digits, `#`, `*`) and the scanner (a line holding a pass).
fn open_hardware(
    config: &Config,
    camera: Option<Box<dyn FrameSource>>,
    pipeline: Option<Arc<FacePipeline>>,
    relay: Box<dyn Relay>,
) -> Result<GateHardware> {
    let hw = &config.hardware;
    let mut hardware = GateHardware::new(relay);
    hardware.camera = camera;
    hardware.pipeline = pipeline;
    let (mut stdin_keys, mut stdin_passes) = (None, None);
    hardware.keypad = match &hw.keypad {
        KeypadConfig::None => None,
        KeypadConfig::Matrix { rows, cols } => Some(Box::new(MatrixKeypad::open(*rows, *cols)?)),
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
    if stdin_keys.is_some() || stdin_passes.is_some() {
        // A detached reader: it ends with standard input; the keypad and scanner then just stay idle.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                match (&stdin_passes, &stdin_keys) {
                    (Some(passes), _) if line.trim().to_ascii_uppercase().starts_with(PASS_PREFIX) => {
                        passes.scan(&line)
                    }
                    (_, Some(keys)) => keys.type_str(&line),
                    _ => {}
                }
            }
        });
    }
    if hw.gpio {
        if !hw.contacts.is_empty() {
            hardware.contacts = Some(Box::new(GpioContacts::open(&hw.contacts)?));
        }
        if let [None, None, None] = hw.lights {
        } else {
            let [green, red, buzzer] = hw.lights;
            hardware.indicator = Some(Box::new(GpioIndicator::open(green, red, buzzer)?));
        }
        if let Some((d0, d1, cards)) = hw.wiegand {
            hardware.wiegand = Some((Box::new(GpioWiegand::open(d0, d1)?), cards));
        }
    } else {
        let (indicator, _log) = SimulatedIndicator::new();
        hardware.indicator = Some(Box::new(indicator));
        if let Some((_, _, cards)) = hw.wiegand {
            let (output, _log) = SimulatedWiegand::new();
            hardware.wiegand = Some((Box::new(output), cards));
        }
    }
    Ok(hardware)
}

fn print_report(report: &GateReport) {
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    #[allow(clippy::cast_precision_loss)]
    let fps = report.frames as f64 / secs;
    println!("ran {secs:.1} s: {} frames ({fps:.2} fps), {} matched for faces", report.frames, report.faces_checked);
    for method in [EntryMethod::Face, EntryMethod::Pin, EntryMethod::VisitorPass, EntryMethod::Guard] {
        let n = report.admissions.iter().filter(|a| a.method == method).count();
        if n > 0 {
            println!("admitted by {}: {n}", method.as_str());
        }
    }
    println!("refused: {}", report.refusals);
    let mut latencies: Vec<Duration> = report.admissions.iter().filter_map(|a| a.latency).collect();
    if !latencies.is_empty() {
        latencies.sort_unstable();
        let pick = |q: f64| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            let i = ((latencies.len() - 1) as f64 * q).round() as usize;
            latencies[i].as_secs_f64() * 1e3
        };
        println!(
            "frame-to-relay latency over {} face admissions: median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
            latencies.len(),
            pick(0.5),
            pick(0.95),
            pick(1.0)
        );
    }
}
