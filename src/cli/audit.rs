//! `facegate audit` and `facegate audit verify`: the signed no-retention report, and its offline check.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::audit::sign::{fingerprint, AuditSigner, SignedReport};
use crate::audit::{run_audit_with_progress, AuditReport, AuditScope, Status};
use crate::config::Config;
use crate::store::unix_now;

/// `facegate audit` arguments.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    /// Verify a saved report instead of making one.
    #[command(subcommand)]
    pub action: Option<AuditAction>,
    /// The database (default: `store.database`).
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// The master key file; its folder holds the audit signing key (default: `store.master_key`).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// More folders or files to scan for images and embeddings (repeatable; adds to `audit.scan_paths`).
    #[arg(long, value_name = "PATH")]
    pub scan: Vec<PathBuf>,
    /// Leave out the system's places (journal, coredumps, /tmp, /var/tmp, swap): scan only the device's folders.
    #[arg(long)]
    pub no_system_places: bool,
    /// Print the signed report as JSON (save it; `facegate audit verify FILE` checks it later, offline).
    #[arg(long)]
    pub json: bool,
}

/// `facegate audit verify`
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check a saved report's signature (offline) and show its result.
    Verify {
        /// The report, as printed by `facegate audit --json`.
        report: PathBuf,
        /// The device's public key or its fingerprint, to be sure which device signed it.
        #[arg(long, value_name = "HEX")]
        key: Option<String>,
    },
}

/// Exit code of a report with a failed check (1 is an error running the command).
const REPORT_FAILED: u8 = 2;

/// Runs `facegate audit [verify]`.
pub fn audit(config: &Config, args: &AuditArgs) -> Result<std::process::ExitCode> {
    if let Some(AuditAction::Verify { report, key }) = &args.action {
        return verify(report, key.as_deref());
    }
    let db = args.db.clone().unwrap_or_else(|| config.database.clone());
    super::residents::refuse_root_on_service_store(&db)?;
    let key_file = args.key_file.clone().unwrap_or_else(|| config.master_key.clone());
    let key_dir = key_file.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let wrap = super::residents::key_wrap(config, &key_file)?;
    let mut scope = AuditScope::new(db, key_dir.clone(), wrap.clone(), config.registry.max_unused_secs);
    scope.extra_paths = config.audit_scan_paths.iter().chain(&args.scan).cloned().collect();
    scope.models_dir = Some(config.models_dir.clone());
    if args.no_system_places || !config.audit_system_places {
        scope.system_root = None;
    }
    let bar =
        super::progress_bar("scanning {elapsed_precise} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})");
    let report = run_audit_with_progress(&scope, unix_now(), &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let signer =
        AuditSigner::load_or_create(&key_dir, &wrap).context("the audit report is signed with the device key")?;
    let signed = signer.sign(&report)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&signed)?);
    } else {
        print_report(&report);
        println!("signed by device key {} (fingerprint)", fingerprint(&signed.public_key));
    }
    Ok(exit_for(report.passed))
}

fn exit_for(passed: bool) -> std::process::ExitCode {
    if passed {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(REPORT_FAILED)
    }
}

fn print_report(report: &AuditReport) {
    println!("facegate audit of {} at {} (facegate {})", report.device, report.generated_at, report.facegate_version);
    for check in &report.checks {
        let mark = match check.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        println!("{mark}  {}", check.title);
        for detail in &check.details {
            println!("        {detail}");
        }
    }
    println!("templates held: {}; residents with live consent: {}", report.templates_held, report.live_consents);
    println!("template deletions in the audit log: {}", report.deletions.len());
    for d in &report.deletions {
        println!(
            "        {}  {:<20} {}  receipt code {}",
            crate::policy::rfc3339(d.at),
            d.event,
            d.subject,
            d.verification_code
        );
    }
    println!("result: {}", if report.passed { "PASSED" } else { "FAILED" });
}

fn verify(path: &Path, key: Option<&str>) -> Result<std::process::ExitCode> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let signed: SignedReport = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a report printed by `facegate audit --json`", path.display()))?;
    signed.verify(key).with_context(|| format!("{}: signature check failed", path.display()))?;
    let passed = signed.report.get("passed").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let at = signed.report.get("generated_at").and_then(serde_json::Value::as_str).unwrap_or("?");
    let device = signed.report.get("device").and_then(serde_json::Value::as_str).unwrap_or("?");
    println!(
        "signature valid: report of {device} at {at}, signed by device key {}; the report {}",
        fingerprint(&signed.public_key),
        if passed { "PASSED" } else { "FAILED" }
    );
    Ok(exit_for(passed))
}
