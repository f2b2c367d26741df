//! `facegate eval --open-set` (FNIR at FPIR as the gate decides, per gallery size, calibrated on other people)
//! and `facegate calibrate` (the impostor-score tail of a compound's own camera and volunteers, as the config
//! section the gate reads).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::capture::DecodeLimits;
use crate::config::Config;
use crate::policy::calibration::{bootstrap, empirical_threshold, Calibration};
use crate::vision::eval::open_set::plan::SplitRule;
use crate::vision::eval::open_set::score::{Fusion, Rule, Tally};
use crate::vision::eval::open_set::{self, median, GalleryFigures, LivenessCheck, Observed, RuleReport};
use crate::vision::liveness::LivenessModel;

/// The open-set options of `facegate eval`.
#[derive(Debug, Args)]
pub struct OpenSetArgs {
    /// Measure open-set identification as the gate decides (FNIR at FPIR per gallery size).
    #[arg(long)]
    pub open_set: bool,
    /// Gallery sizes to draw (each capped at what the folder allows; the largest possible is always added).
    #[arg(long, value_delimiter = ',', default_values_t = [10usize, 100, 1000])]
    pub gallery_sizes: Vec<usize>,
    /// Random galleries per size below the largest.
    #[arg(long, default_value_t = 10)]
    pub draws: usize,
    /// Folds of people: each fold is measured with a threshold calibrated on the others.
    #[arg(long, default_value_t = 2)]
    pub folds: usize,
    /// Times the people are dealt into folds afresh (repeated cross-validation).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Seed of the splits (the same seed gives the same galleries and approaches).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Do not run the liveness models (enrolment then takes every photo as live, decisions ignore liveness).
    #[arg(long)]
    pub no_liveness: bool,
}

/// `facegate calibrate`
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Folder of consenting volunteers' photos, one `person_*` sub-folder each (several photos per person).
    #[arg(long, value_name = "DIR")]
    pub faces: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The rules every open-set report compares: the gate as configured (the approach's frames fused by their
/// mean), the same without fusion, with quality weights, or with a second-best margin, and one frame alone.
pub fn rules(config: &Config) -> [Rule; 6] {
    let (required, window) = (config.gate.agreement.0, config.gate.agreement.1);
    let gate = |fusion, margin| Rule::Gate { required, window, fusion, margin };
    [
        gate(Fusion::Mean, 0.0),
        gate(Fusion::None, 0.0),
        gate(Fusion::Weighted, 0.0),
        gate(Fusion::Mean, 0.03),
        gate(Fusion::Mean, 0.08),
        Rule::SingleFrame,
    ]
}

/// Reads a folder through the gate's path, with liveness unless turned off.
pub fn observe(config: &Config, faces: &std::path::Path, no_liveness: bool) -> Result<Observed> {
    let pipeline = super::load_pipeline(config)?;
    let model = if no_liveness {
        None
    } else {
        Some(LivenessModel::load(&config.models_dir).context("loading the liveness models (or pass --no-liveness)")?)
    };
    let check = model.as_ref().map(|model| LivenessCheck { model, threshold: config.live_threshold() });
    let bar = super::progress_bar("{elapsed_precise} [{bar:40}] {pos}/{len} photos ({per_sec}, eta {eta})");
    let observed = open_set::observe(
        &pipeline,
        check.as_ref(),
        config.enrol_frames,
        faces,
        DecodeLimits::default(),
        &|n| bar.set_length(n as u64),
        &|| bar.inc(1),
    )?;
    bar.finish_and_clear();
    Ok(observed)
}

/// `facegate eval --open-set`
pub fn eval_open_set(config: &Config, faces: &std::path::Path, args: &OpenSetArgs, as_json: bool) -> Result<()> {
    let observed = observe(config, faces, args.no_liveness)?;
    let split = SplitRule {
        folds: args.folds,
        repeats: args.repeats,
        gallery_sizes: args.gallery_sizes.clone(),
        draws: args.draws,
        seed: args.seed,
    };
    let folds = open_set::splits(&observed, &split, config.enrol_frames)?;
    let live = (!args.no_liveness).then(|| config.live_threshold());
    let target = config.registry.target_fpir;
    let mut reports = Vec::new();
    for rule in rules(config) {
        reports.push(open_set::run_rule(
            &observed.people,
            &folds,
            &observed.views(),
            rule,
            target,
            live,
            config.enrol_frames,
        )?);
    }
    let enrolled = observed.people.iter().filter(|p| p.enrolment.is_some()).count();
    let residents = observed.people.iter().filter(|p| p.can_be_resident()).count();
    if as_json {
        let value = json!({
            "people": observed.people.len(),
            "photos": observed.paths.len(),
            "faces": observed.embeddings.iter().filter(|e| e.is_some()).count(),
            "enrolled": enrolled,
            "possible_residents": residents,
            "target_fpir": target,
            "liveness": live,
            "rules": reports.iter().map(rule_json).collect::<Vec<Value>>(),
        });
        println!("{value}");
        return Ok(());
    }
    println!(
        "{} people, {} photos ({} with a face); {} enrolled from {} good photos, {} with a photo left to approach with",
        observed.people.len(),
        observed.paths.len(),
        observed.embeddings.iter().filter(|e| e.is_some()).count(),
        enrolled,
        config.enrol_frames,
        residents
    );
    println!(
        "target FPIR {target:.0e}; liveness {}; {} folds by person, dealt {} times (each calibrated on the others)",
        live.map_or("not checked".into(), |t| format!("checked at {t:.2}")),
        args.folds,
        args.repeats
    );
    for report in &reports {
        print_rule(report);
    }
    Ok(())
}

fn rule_name(rule: Rule) -> String {
    match rule {
        Rule::Gate { required, window, fusion, margin } => {
            let fusion = match fusion {
                Fusion::None => "no fusion",
                Fusion::Mean if margin <= 0.0 => "mean fusion (as the gate runs)",
                Fusion::Mean => "mean fusion",
                Fusion::Weighted => "fusion weighted by face size, confidence and sharpness",
            };
            let margin =
                if margin > 0.0 { format!(", best leads the runner-up by {margin:.2}") } else { String::new() };
            format!("gate: {required} of {window} frames, {fusion}{margin}")
        }
        Rule::SingleFrame => "single frame".into(),
    }
}

fn tally_json(t: &Tally) -> Value {
    json!({
        "mated": t.mated, "hits": t.hits, "misidentified": t.misidentified, "fnir": t.fnir(),
        "non_mated": t.non_mated, "false_positives": t.false_positives, "fpir": t.fpir(),
        "searches": t.searches, "search_false_positives": t.search_false_positives, "search_fpir": t.search_fpir(),
        "frames_to_decision_median": median(&t.frames_to_decision),
    })
}

fn gallery_json(g: &GalleryFigures) -> Value {
    json!({
        "size": g.size, "galleries": g.galleries, "enrolled_mean": g.enrolled_mean,
        "refused_duplicates": g.refused_duplicates, "thresholds": [g.thresholds.0, g.thresholds.1],
        "configured": tally_json(&g.configured),
        "at_fpir": g.at_fpir.iter().map(|(target, at)| match at {
            Some((fnir, fpir, t)) => json!({"target": target, "fnir": fnir, "fpir": fpir, "threshold": t}),
            None => json!({"target": target, "fnir": null}),
        }).collect::<Vec<Value>>(),
    })
}

fn rule_json(report: &RuleReport) -> Value {
    json!({
        "rule": rule_name(report.rule),
        "folds": report.folds.iter().map(|f| json!({
            "calibration": {"anchor": f.calibration.anchor, "rate": f.calibration.rate,
                            "scale": f.calibration.scale, "shape": f.calibration.shape},
            "fitted_on_pairs": f.fitted_on, "held_out_pairs": f.held_out_pairs,
            "held_out": f.held_out.iter().map(|(fmr, t, measured)| json!({"fmr": fmr, "threshold": t, "measured": measured}))
                .collect::<Vec<Value>>(),
        })).collect::<Vec<Value>>(),
        "galleries": report.galleries.iter().map(gallery_json).collect::<Vec<Value>>(),
    })
}

/// Prints one rule's table.
pub fn print_rule(report: &RuleReport) {
    println!("\n== {}", rule_name(report.rule));
    let pairs: usize = report.folds.iter().map(|f| f.held_out_pairs).sum();
    let checks: Vec<String> = [1e-3, 1e-4, 1e-5]
        .iter()
        .enumerate()
        .map(|(i, target)| {
            let rows = report.folds.iter().filter_map(|f| f.held_out.get(i));
            let (lo, hi) =
                rows.clone().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), r| (lo.min(r.1), hi.max(r.1)));
            #[allow(clippy::cast_precision_loss)]
            let hits: f64 =
                report.folds.iter().filter_map(|f| Some(f.held_out.get(i)?.2 * f.held_out_pairs as f64)).sum();
            #[allow(clippy::cast_precision_loss)]
            let measured = hits / pairs.max(1) as f64;
            format!("{target:.0e} at {lo:.3}-{hi:.3} -> {measured:.1e}")
        })
        .collect();
    println!(
        "calibration, {} folds (fitted on {}-{} template-probe pairs each, probes of {} photo(s)); on the {pairs} \
         pairs of the people each fold left out, target FMR at threshold -> measured: {}",
        report.folds.len(),
        report.folds.iter().map(|f| f.fitted_on).min().unwrap_or(0),
        report.folds.iter().map(|f| f.fitted_on).max().unwrap_or(0),
        report.rule.probe_frames(),
        checks.join(", ")
    );
    println!(
        "gallery  draws enrolled threshold     FNIR (misses/mated)  misid  FPIR (approaches)   FPIR (searches)   \
         frames  | FNIR at FPIR 1e-2 / 1e-3 / 1e-4"
    );
    for g in &report.galleries {
        let c = &g.configured;
        let at: Vec<String> = g
            .at_fpir
            .iter()
            .map(|(_, at)| at.map_or("-".into(), |(fnir, _, t)| format!("{:.2} % @{t:.3}", 100.0 * fnir)))
            .collect();
        println!(
            "{:>7} {:>6} {:>8.1} {:.3}-{:.3} {:>6.2} % ({:>3}/{:<5}) {:>5} {:>4}/{:<6} {:.1e}  {:>4}/{:<6} {:.1e}  {:>5.1}  | {}",
            g.size,
            g.galleries,
            g.enrolled_mean,
            g.thresholds.0,
            g.thresholds.1,
            100.0 * c.fnir(),
            c.mated - c.hits,
            c.mated,
            c.misidentified,
            c.false_positives,
            c.non_mated,
            c.fpir(),
            c.search_false_positives,
            c.searches,
            c.search_fpir(),
            median(&c.frames_to_decision),
            at.join(" / ")
        );
    }
}

/// `facegate calibrate`
pub fn calibrate(config: &Config, args: &CalibrateArgs) -> Result<std::process::ExitCode> {
    // Liveness plays no part in impostor scores.
    let observed = observe(config, &args.faces, true)?;
    let everyone: Vec<usize> = (0..observed.people.len()).collect();
    // The gate searches with the mean of the approach's frames in its agreement window: fit on those probes.
    let fuse = config.gate.agreement.1;
    let mut impostors =
        open_set::score::impostor_scores(&everyone, &observed.people, &observed.embeddings, config.enrol_frames, fuse);
    let fit = Calibration::fit(&impostors)?;
    impostors.sort_by(|a, b| b.total_cmp(a));
    let targets = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7];
    let error = bootstrap(&impostors, &fit, &targets, 500, 1);
    let rows: Vec<(f64, f32, f32, f32, Option<f32>)> = error
        .intervals
        .iter()
        .map(|&(fmr, t, lo, hi)| (fmr, t, lo, hi, empirical_threshold(&impostors, fmr)))
        .collect();
    if args.json {
        let value = json!({
            "impostor_pairs": impostors.len(),
            "fused_frames": fuse,
            "calibration": {"anchor": fit.anchor, "rate": fit.rate, "scale": fit.scale, "shape": fit.shape},
            "thresholds": rows.iter().map(|(fmr, t, lo, hi, measured)| json!({
                "fmr": fmr, "threshold": t, "bootstrap_5": lo, "bootstrap_95": hi, "measured": measured,
            })).collect::<Vec<Value>>(),
        });
        println!("{value}");
        return Ok(std::process::ExitCode::SUCCESS);
    }
    println!(
        "{} people, {} impostor pairs (templates against probes fused over {fuse} photos, as the gate searches)",
        observed.people.len(),
        impostors.len()
    );
    println!("FMR      threshold  bootstrap 5-95 %   measured");
    for (fmr, t, lo, hi, measured) in &rows {
        let measured = measured.map_or("(too few pairs)".into(), |m| format!("{m:.3}"));
        println!("{fmr:.0e}    {t:.3}      {lo:.3}-{hi:.3}        {measured}");
    }
    println!("\n# Add to the gate's config (facegate.toml):");
    println!("[matching.calibration]");
    println!("anchor = {:.4}", fit.anchor);
    println!("rate = {:.3e}", fit.rate);
    println!("scale = {:.4}", fit.scale);
    println!("shape = {:.4}", fit.shape);
    Ok(std::process::ExitCode::SUCCESS)
}
