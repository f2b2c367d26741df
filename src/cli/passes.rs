//! `facegate pass` (visitor passes) and `facegate counts` (the anonymized counts a manager may see).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::residents::{open_registry, StoreArgs};
use crate::config::Config;
use crate::policy::counts::{self, Granularity};
use crate::policy::rfc3339;
use crate::protect::pass::MAX_PASS_VALIDITY_SECS;
use crate::store::unix_now;

/// `facegate pass`
#[derive(Debug, Subcommand)]
pub enum PassCommand {
    /// Issue a single-use visitor pass: prints its text and a QR code to show at the gate.
    Issue(IssueArgs),
    /// Cancel a pass before it is used.
    Cancel(CancelArgs),
}

/// `facegate pass issue`
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Database and key.
    #[command(flatten)]
    pub store: StoreArgs,
    /// How long the pass opens, from `--starts-in` (e.g. `4h`, `90min`, `2days`; at most 7 days).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub valid_for: Duration,
    /// When the pass starts opening, from now (e.g. `2h`; default: now).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub starts_in: Option<Duration>,
    /// Also write the QR code as an SVG file (a vector drawing of the code, no photo), e.g. to send by message.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// `facegate pass cancel`
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Database and key.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The pass text (`FGP1:...`).
    pub pass: String,
}

/// Runs `facegate pass`.
pub fn pass(config: &Config, command: &PassCommand) -> Result<std::process::ExitCode> {
    match command {
        PassCommand::Issue(args) => issue(config, args),
        PassCommand::Cancel(args) => {
            let mut registry = open_registry(config, &args.store, false)?;
            let pass = registry.cancel_pass(&args.pass, unix_now())?;
            if args.store.json {
                println!("{}", json!({ "cancelled": pass.id.to_hex() }));
            } else {
                println!("cancelled pass {}: it can no longer open the gate", pass.id.to_hex());
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn issue(config: &Config, args: &IssueArgs) -> Result<std::process::ExitCode> {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if secs(args.valid_for) > MAX_PASS_VALIDITY_SECS || args.valid_for.is_zero() {
        bail!("--valid-for must be 1 s to 7 days; longer access is a resident's, with their own consent");
    }
    let now = unix_now();
    let from = now.saturating_add(args.starts_in.map_or(0, secs));
    let until = from.saturating_add(secs(args.valid_for));
    let mut registry = open_registry(config, &args.store, true)?;
    let (pass, text) = registry.issue_pass(from, until, now)?;
    let code = qrcode::QrCode::with_error_correction_level(&text, qrcode::EcLevel::M)
        .context("encoding the pass as a QR code")?;
    if let Some(path) = &args.svg {
        let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(240, 240).build();
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.store.json {
        let value = json!({
            "pass": text,
            "id": pass.id.to_hex(),
            "valid_from": rfc3339(pass.valid_from),
            "valid_until": rfc3339(pass.valid_until),
        });
        println!("{value}");
    } else {
        let art = code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build();
        println!("{art}");
        println!("{text}");
        println!(
            "single use, opens from {} to {} (UTC); pass id {} (for `facegate pass cancel`)",
            rfc3339(pass.valid_from),
            rfc3339(pass.valid_until),
            pass.id.to_hex()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Bin size of `facegate counts`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum By {
    /// Hourly cells.
    Hour,
    /// Daily cells.
    Day,
}

/// `facegate counts`
#[derive(Debug, Args)]
pub struct CountsArgs {
    /// Database and key.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Cell size.
    #[arg(long, value_enum, default_value = "day")]
    pub by: By,
    /// How many whole days before today (in the compound's zone, `[portal] utc_offset`) to publish; today is
    /// never published.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// CSV instead of a table.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}

/// Runs `facegate counts`: hourly or daily counts per method and outcome, small cells suppressed.
pub fn counts(config: &Config, args: &CountsArgs) -> Result<std::process::ExitCode> {
    let registry = open_registry(config, &args.store, false)?;
    // The compound's zone from the config only: two offsets would cut days differently and difference into
    // hours.
    let offset = config.portal.utc_offset_secs;
    let now = unix_now();
    let today = counts::day_start(now, offset);
    let from = today - i64::from(args.days.min(3_660)) * 86_400;
    let hourly = registry.store().compound_passage_counts(from, today)?;
    let granularity = match args.by {
        By::Hour => Granularity::Hour,
        By::Day => Granularity::Day,
    };
    let cells = counts::publish(
        &hourly,
        granularity,
        offset,
        now,
        registry.count_noise(config.portal.count_noise_epsilon).as_ref(),
    );
    if args.csv {
        print!("{}", counts::to_csv(&cells));
    } else if args.store.json {
        println!("{}", json!({ "small_cell_max": counts::SMALL_CELL_MAX, "cells": cells }));
    } else {
        println!("{:<22} {:<13} {:<8} {:>10}", "start (UTC)", "method", "outcome", "count");
        for c in &cells {
            let start = rfc3339(c.start);
            println!("{start:<22} {:<13} {:<8} {:>10}", c.method, c.outcome, c.count.as_text());
        }
        println!("counts of 1 to {} are not shown, nor any that would reveal one", counts::SMALL_CELL_MAX);
    }
    Ok(std::process::ExitCode::SUCCESS)
}
