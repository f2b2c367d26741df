//! `facegate run`: the gate daemon ([`crate::gate::daemon::run`]), wired to the hardware the config names, until
//! SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::residents::{refuse_root_on_service_store, StoreArgs, PASSPHRASE_ENV};
use crate::config::Config;
use crate::gate::daemon::{self, DaemonOptions};
use crate::gate::GateReport;
use crate::policy::passage::EntryMethod;
use crate::protect::hardening::harden_process;

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
    refuse_root_on_service_store(args.store.db.as_deref().unwrap_or(&config.database))?;
    let options = DaemonOptions {
        db: args.store.db.clone(),
        key_file: args.store.key_file.clone(),
        passphrase: std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty()).map(zeroize::Zeroizing::new),
        replay: args.replay.clone(),
        camera: args.camera,
        fps: args.fps,
        ..DaemonOptions::default()
    };
    let duration = args.duration;
    // On a terminal, one status block kept up to date; off it (journald), the log alone.
    let status = std::sync::Arc::new(crate::gate::GateStatus::default());
    let live = super::live::LiveStatus::start(status.clone(), config.gate.intent, stdin_hint(config));
    let options = DaemonOptions { status: Some(status), ..options };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let outcome = runtime.block_on(daemon::run(config, options, shutdown(duration)));
    if let Some(live) = live {
        live.finish();
    }
    let report = outcome.context("the gate daemon stopped")?;
    print_report(&report);
    Ok(std::process::ExitCode::SUCCESS)
}

/// What to type when the keypad or the scanner reads standard input (a bench without hardware).
/// Typing is not echoed while the block is drawn (see [`super::live`]), hence "(not shown)".
fn stdin_hint(config: &Config) -> Option<String> {
    use crate::config::{KeypadConfig, ScannerConfig};
    let keys = matches!(config.hardware.keypad, KeypadConfig::Stdin);
    let passes = matches!(config.hardware.scanner, ScannerConfig::Stdin);
    match (keys, passes) {
        (true, true) => {
            Some("type CODE#PIN# or paste a visitor pass (not shown), then Enter; !guard calls the guard".to_owned())
        }
        (true, false) => Some("type CODE#PIN# (not shown), then Enter; !guard calls the guard".to_owned()),
        (false, true) => Some("paste a visitor pass (not shown), then Enter; !guard calls the guard".to_owned()),
        (false, false) => None,
    }
}

/// SIGTERM, Ctrl-C or the end of `--duration`.
async fn shutdown(duration: Option<u64>) {
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
    if report.worker_faults > 0 {
        println!("frames lost to a frame-worker fault: {} (see the log)", report.worker_faults);
    }
    let admissions = &report.admissions;
    let frames: Vec<String> =
        admissions.iter().filter_map(|a| Some(format!("{}->{}", a.first_frame?, a.frame?))).collect();
    if !frames.is_empty() {
        println!("face admissions (frame numbers, the approach's first -> the agreement's last): {}", frames.join(" "));
    }
    // For the soak (`benches/soak.rs`): when in the run each wait happened, by frame number, never by clock.
    let waits: Vec<String> = admissions
        .iter()
        .filter_map(|a| Some(format!("{}:{:.1}", a.first_frame?, a.from_first_frame?.as_secs_f64() * 1e3)))
        .collect();
    if !waits.is_empty() {
        println!("face admission waits (the approach's first frame: ms to the relay): {}", waits.join(" "));
    }
    for (what, latencies) in [
        ("first-frame-to-relay", admissions.iter().filter_map(|a| a.from_first_frame).collect::<Vec<_>>()),
        (
            "frame-to-relay (from the frame that completed the agreement)",
            admissions.iter().filter_map(|a| a.latency).collect(),
        ),
    ] {
        if let Some([median, p95, max]) = quantiles(latencies, [0.5, 0.95, 1.0]) {
            println!(
                "{what} latency over {} face admissions: median {median:.1} ms, p95 {p95:.1} ms, max {max:.1} ms",
                admissions.iter().filter(|a| a.method == EntryMethod::Face).count()
            );
        }
    }
}

/// The given quantiles of `latencies`, in milliseconds (nearest rank); `None` when there are none.
fn quantiles<const N: usize>(mut latencies: Vec<Duration>, qs: [f64; N]) -> Option<[f64; N]> {
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_unstable();
    Some(qs.map(|q| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let i = ((latencies.len() - 1) as f64 * q).round() as usize;
        latencies[i].as_secs_f64() * 1e3
    }))
}
