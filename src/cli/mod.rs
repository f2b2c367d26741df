//! The command line: argument parsing (clap) and one function per subcommand.
//!
//! Owns what each command prints. It prints geometry, scores, verdicts and counts; it never prints or writes
//! an image, a crop or an embedding value.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::capture::{decode_file, DecodeLimits};
use crate::config::{Config, RawConfig, Threshold};
use crate::vision::detect;
use crate::vision::eval::{self, EvalReport, EvalRequest, FMR_TARGETS};
use crate::vision::pipeline::FacePipeline;

mod audit;
mod compound;
pub mod doctor;
pub mod demo;
mod keys;
pub mod live;
mod liveness;
pub mod open_set;
mod passes;
mod portal;
mod residents;
mod run;

/// The config file of an installed system, used when `--config` is not given.
pub const INSTALLED_CONFIG: &str = "/etc/facegate/facegate.toml";

/// facegate: a privacy-first face gate. Faces are matched only against residents who consented; nothing
/// image-like is ever written.
#[derive(Debug, Parser)]
#[command(name = "facegate", version, about, long_about = None)]
pub struct Cli {
    /// Config file (TOML; default: /etc/facegate/facegate.toml if it exists); defaults apply to anything it
    /// leaves out.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder holding the model files (overrides the config).
    #[arg(long, global = true, value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Detect faces in images: boxes, scores and landmark counts. Never writes an image.
    Detect {
        /// Image files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// One JSON object per image instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Compare the largest face of two images: cosine similarity and the verdict.
    Compare {
        /// First image.
        a: PathBuf,
        /// Second image.
        b: PathBuf,
        /// Cosine threshold (default: the configured `matching.threshold`).
        #[arg(long)]
        threshold: Option<f32>,
    },
    /// Evaluate detection and verification on a labelled photo folder (or, with --open-set, identification
    /// as the gate decides it).
    Eval(EvalArgs),
    /// Fit the identification threshold's calibration on volunteers' photos; prints the config section.
    Calibrate(open_set::CalibrateArgs),
    /// Replay a folder (or read a camera) through the vision path, printing a decision per frame.
    Demo(crate::cli::demo::DemoArgs),
    /// Record a resident's separate consent to face entry (creates the resident if new).
    Consent(residents::ConsentArgs),
    /// Enrol a consenting resident's face from K good frames (photos or the camera).
    Enroll(residents::EnrollArgs),
    /// Withdraw a resident's consent: template, data key and PIN are destroyed at once; prints a receipt.
    Revoke(residents::RevokeArgs),
    /// List residents: pseudonymous ids, unit, consent and enrolment status. No biometric data.
    Residents(residents::ListArgs),
    /// Set a resident's keypad code and PIN (the non-biometric way in); the PIN is read from standard input.
    Pin(residents::PinArgs),
    /// A resident moved out: template, key and PIN are destroyed, consent ends.
    MoveOut(residents::ResidentArgs),
    /// Expire templates unused for the retention period (`retention.max_unused_days`).
    Expire(residents::StoreArgs),
    /// Run the gate: camera (or replay) to relay, the keypad beside it, until SIGTERM or Ctrl-C.
    Run(run::RunArgs),
    /// Liveness score and verdict per face (is it a live person, or a photo or screen held up?).
    Liveness(liveness::LivenessArgs),
    /// Presentation-attack evaluation on a labelled folder: APCER per attack type, BPCER.
    EvalPad(liveness::EvalPadArgs),
    /// Issue or cancel single-use visitor passes (QR codes).
    #[command(subcommand)]
    Pass(passes::PassCommand),
    /// Passage counts per hour or day, method and outcome, with small counts suppressed (what a manager sees).
    Counts(passes::CountsArgs),
    /// The auditor's no-retention report, signed with the device key (exit 2 if a check fails); `audit verify
    /// REPORT` checks a saved report offline.
    Audit(audit::AuditArgs),
    /// Create or reset a portal staff account (manager or auditor); the password is read without echo.
    Account(portal::AccountArgs),
    /// Several gates of one compound: make its CA, broker configuration, gate certificates and shared secret.
    #[command(subcommand)]
    Compound(compound::CompoundCommand),
    /// Print the notice to post at the gate (purpose, what is kept, how long, how to revoke, the alternatives).
    Signage(portal::SignageArgs),
    /// The web portal's certificate.
    #[command(subcommand)]
    Portal(portal::PortalCommand),
    /// The device's keys: which root holds them (`status`), moving onto a hardware root (`migrate`), and
    /// renewing each secret (`rotate`).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Check the installation in order (config, models, camera, pins, relay, keys, clock, disk, broker,
    /// certificates) and say what to do for each failure; exit status 0 only when none fails.
    Doctor(doctor::DoctorArgs),
}

/// `facegate eval` arguments.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Folder with `person_*` sub-folders of photos.
    #[arg(long, value_name = "DIR")]
    pub faces: PathBuf,
    /// Score only the pairs listed in this CSV (path_a,path_b,same,protocol); default: all pairs.
    #[arg(long, value_name = "FILE")]
    pub pairs: Option<PathBuf>,
    /// Keep only pairs whose protocol starts with this.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub protocol: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Worker threads for embedding (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also evaluate protected templates (keyed transform), their unlinkability across two keys (D<->sys)
    /// and renewability.
    #[arg(long)]
    pub protected: bool,
    /// Open-set identification instead of verification pairs.
    #[command(flatten)]
    pub open_set: open_set::OpenSetArgs,
}

impl Command {
    /// Whether the command handles a key, a PIN, a password, a frame or an embedding (and so hardens itself).
    fn holds_secrets(&self) -> bool {
        matches!(
            self,
            Self::Consent(_)
                | Self::Enroll(_)
                | Self::Revoke(_)
                | Self::Pin(_)
                | Self::MoveOut(_)
                | Self::Expire(_)
                | Self::Account(_)
                | Self::Pass(_)
                | Self::Compound(_)
                | Self::Keys(_)
                | Self::Calibrate(_)
        )
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<std::process::ExitCode> {
    if let Command::Doctor(args) = &cli.command {
        // Before the config is validated: a config that does not load is the doctor's first finding.
        return doctor::run(cli.config.as_deref(), cli.models.as_deref(), args);
    }
    // An installed system's config applies without --config, so an administrator's command and the daemon
    // agree on where the database, the key and the models are.
    let installed = Path::new(INSTALLED_CONFIG);
    let mut config = match &cli.config {
        Some(path) => RawConfig::read(path)?.validate()?,
        None if installed.is_file() => RawConfig::read(installed)?.validate()?,
        None => RawConfig::default().validate()?,
    };
    if let Some(models) = cli.models {
        config.models_dir = models;
    }
    if cli.command.holds_secrets() {
        // Keys, PINs, frames or embeddings pass through this process: no core dump, no ptrace by other
        // users, no swap where the memory-lock limit allows it, as in the daemon.
        let hardening = crate::protect::hardening::harden_process();
        tracing::debug!(
            core_dumps_off = hardening.core_dumps_off,
            memory_locked = hardening.memory_locked,
            "hardening"
        );
    }
    match cli.command {
        Command::Detect { images, json } => detect_command(&config, &images, json),
        Command::Compare { a, b, threshold } => compare_command(&config, &a, &b, threshold),
        Command::Eval(args) => eval_command(&config, &args),
        Command::Calibrate(args) => open_set::calibrate(&config, &args),
        Command::Demo(args) => crate::cli::demo::run_demo(&config, &args),
        Command::Consent(args) => residents::consent(&config, &args),
        Command::Enroll(args) => residents::enroll(&config, &args),
        Command::Revoke(args) => residents::revoke(&config, &args),
        Command::Residents(args) => residents::list(&config, &args),
        Command::Pin(args) => residents::pin(&config, &args),
        Command::MoveOut(args) => residents::move_out(&config, &args),
        Command::Expire(args) => residents::expire(&config, &args),
        Command::Run(args) => run::run(&config, &args),
        Command::Pass(command) => passes::pass(&config, &command),
        Command::Liveness(args) => liveness::liveness(&config, &args),
        Command::EvalPad(args) => liveness::eval_pad(&config, &args),
        Command::Counts(args) => passes::counts(&config, &args),
        Command::Audit(args) => audit::audit(&config, &args),
        Command::Account(args) => portal::account(&config, &args),
        Command::Signage(args) => portal::signage(&config, &args),
        Command::Portal(command) => portal::portal(&config, &command),
        Command::Compound(command) => compound::run(&config, &command),
        Command::Keys(command) => keys::keys(&config, &command),
        // Answered above, before the config was validated.
        Command::Doctor(args) => doctor::run(None, Some(&config.models_dir), &args),
    }
}

pub(crate) fn load_pipeline(config: &Config) -> Result<FacePipeline> {
    FacePipeline::load(&config.models_dir, config.pipeline).context("loading the face models")
}

fn detect_command(config: &Config, images: &[PathBuf], as_json: bool) -> Result<std::process::ExitCode> {
    let detector =
        detect::Detector::load(&config.models_dir, config.pipeline.detector).context("loading the face detector")?;
    let mut failed = 0usize;
    for path in images {
        let outcome = decode_file(path, DecodeLimits::default())
            .map_err(anyhow::Error::from)
            .and_then(|frame| Ok((frame.width(), frame.height(), detector.detect(&frame)?)));
        match outcome {
            Ok((width, height, faces)) => {
                if as_json {
                    let faces_json: Vec<_> = faces
                        .iter()
                        .map(|f| {
                            json!({
                                "box": [f.bbox.x, f.bbox.y, f.bbox.width, f.bbox.height],
                                "score": f.score,
                                "landmarks": f.landmarks.len(),
                            })
                        })
                        .collect();
                    println!(
                        "{}",
                        json!({"image": path.display().to_string(), "width": width, "height": height,
                               "faces": faces_json.len(), "detections": faces_json})
                    );
                } else {
                    println!("{}: {width}x{height}, {} face(s)", path.display(), faces.len());
                    for (i, f) in faces.iter().enumerate() {
                        println!(
                            "  face {}: box x={:.1} y={:.1} w={:.1} h={:.1}  score {:.3}  landmarks {}",
                            i + 1,
                            f.bbox.x,
                            f.bbox.y,
                            f.bbox.width,
                            f.bbox.height,
                            f.score,
                            f.landmarks.len()
                        );
                    }
                }
            }
            Err(e) => {
                failed += 1;
                if as_json {
                    println!("{}", json!({"image": path.display().to_string(), "error": format!("{e:#}")}));
                } else {
                    eprintln!("{}: error: {e:#}", path.display());
                }
            }
        }
    }
    Ok(if failed == 0 { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}

fn compare_command(config: &Config, a: &Path, b: &Path, threshold: Option<f32>) -> Result<std::process::ExitCode> {
    let threshold = match threshold {
        Some(t) => Threshold::new(t).with_context(|| format!("--threshold {t} is not a cosine in (-1, 1)"))?,
        None => config.match_threshold,
    };
    let pipeline = load_pipeline(config)?;
    let read = |p: &Path| pipeline.read_file(p, DecodeLimits::default()).with_context(|| format!("{}", p.display()));
    let (first, second) = (read(a)?, read(b)?);
    for (path, reading) in [(a, &first), (b, &second)] {
        if reading.n_faces > 1 {
            eprintln!("note: {} has {} faces; using the largest", path.display(), reading.n_faces);
        }
    }
    let cosine = first.embedding.cosine(&second.embedding);
    let same = cosine >= threshold.get();
    println!(
        "cosine {cosine:.4}  threshold {:.3}  verdict: {}",
        threshold.get(),
        if same { "same person" } else { "different people" }
    );
    Ok(std::process::ExitCode::SUCCESS)
}

fn eval_command(config: &Config, args: &EvalArgs) -> Result<std::process::ExitCode> {
    if let Some(threads) = args.threads {
        // Only fails if a global pool already exists, which is harmless.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build_global();
    }
    if args.open_set.open_set {
        open_set::eval_open_set(config, &args.faces, &args.open_set, args.json)?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let pipeline = Arc::new(load_pipeline(config)?);
    let request = EvalRequest {
        faces_dir: args.faces.clone(),
        pairs_file: args.pairs.clone(),
        protocol_prefix: args.protocol.clone(),
        limits: DecodeLimits::default(),
    };
    let bar = progress_bar("{elapsed_precise} [{bar:40}] {pos}/{len} images ({per_sec}, eta {eta})");
    if args.protected {
        let report = eval::evaluate_protected(&pipeline, &request, &|n| bar.set_length(n as u64), &|| bar.inc(1))?;
        bar.finish_and_clear();
        if args.json {
            let mut value = report_json(&report.raw);
            if let Some(object) = value.as_object_mut() {
                object.insert("raw".into(), report_json(&report.raw));
                object.insert("protected".into(), report_json(&report.protected));
                object.insert("unlinkability_dsys".into(), json!(report.unlinkability_dsys));
                object.insert(
                    "renewability".into(),
                    json!({"mean": report.renewability_mean, "max": report.renewability_max}),
                );
            }
            println!("{value}");
        } else {
            println!("== raw embeddings");
            print_report(&report.raw);
            println!("== protected templates (keyed rotation)");
            print_report(&report.protected);
            println!("unlinkability D<->sys (two keys)  {:.4}", report.unlinkability_dsys);
            println!(
                "renewability (old key vs new key, same person)  mean {:.4}  max {:.4}",
                report.renewability_mean, report.renewability_max
            );
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let report = eval::evaluate(&pipeline, &request, &|n| bar.set_length(n as u64), &|| bar.inc(1))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", report_json(&report));
    } else {
        print_report(&report);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The JSON form of an evaluation report (rates as fractions).
pub fn report_json(report: &EvalReport) -> serde_json::Value {
    let mut fnmr_at_fmr = serde_json::Map::new();
    for point in &report.metrics.operating_points {
        fnmr_at_fmr.insert(fmr_key(point.target_fmr), json!({"fnmr": point.fnmr, "threshold": point.threshold}));
    }
    json!({
        "images": report.images,
        "detected": report.detected,
        "genuine_pairs": report.genuine_pairs,
        "impostor_pairs": report.impostor_pairs,
        "eer": report.metrics.eer,
        "eer_threshold": report.metrics.eer_threshold,
        "accuracy": report.metrics.accuracy,
        "accuracy_threshold": report.metrics.accuracy_threshold,
        "fnmr_at_fmr": fnmr_at_fmr,
        "failures": report.failures,
    })
}

fn fmr_key(target: f64) -> String {
    FMR_TARGETS
        .iter()
        .zip(["1e-3", "1e-4", "1e-5"])
        .find(|(t, _)| (**t - target).abs() < f64::EPSILON)
        .map_or_else(|| format!("{target:e}"), |(_, k)| (*k).to_owned())
}

fn print_report(report: &EvalReport) {
    #[allow(clippy::cast_precision_loss)]
    let detected_pct = 100.0 * report.detected as f64 / report.images.max(1) as f64;
    println!("images          {}", report.images);
    println!("detected        {} ({detected_pct:.2} %)", report.detected);
    for (reason, count) in &report.failures {
        println!("  failed: {reason}: {count}");
    }
    println!("genuine pairs   {}", report.genuine_pairs);
    println!("impostor pairs  {}", report.impostor_pairs);
    println!("EER             {:.3} %  (threshold {:.3})", 100.0 * report.metrics.eer, report.metrics.eer_threshold);
    for point in &report.metrics.operating_points {
        println!(
            "FNMR @ FMR {:<5} {:.3} %  (threshold {:.3}, FMR reached {:.2e})",
            fmr_key(point.target_fmr),
            100.0 * point.fnmr,
            point.threshold,
            point.fmr
        );
    }
    println!(
        "accuracy        {:.3} %  (best threshold {:.3})",
        100.0 * report.metrics.accuracy,
        report.metrics.accuracy_threshold
    );
}

/// A progress bar on stderr in `template`'s style when stderr is a terminal; hidden otherwise (a log, a pipe).
pub(crate) fn progress_bar(template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}
