//! `facegate liveness` (score and verdict per face) and `facegate eval-pad` (APCER/BPCER on a labelled folder).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::capture::{decode_file, DecodeLimits};
use crate::config::Config;
use crate::vision::detect::Detector;
use crate::vision::eval::pad;
use crate::vision::liveness::LivenessModel;

/// `facegate liveness`
#[derive(Debug, Args)]
pub struct LivenessArgs {
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// One JSON object per image.
    #[arg(long)]
    pub json: bool,
}

/// `facegate eval-pad`
#[derive(Debug, Args)]
pub struct EvalPadArgs {
    /// Folder with `manifest.csv` (`file,label,attack_type`) and the images it lists.
    #[arg(long, value_name = "DIR")]
    pub spoof: PathBuf,
    /// Live-score threshold (default: the configured `liveness.threshold`).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn load(config: &Config) -> Result<(Detector, LivenessModel)> {
    let detector = Detector::load(&config.models_dir, config.pipeline.detector).context("loading the face detector")?;
    let liveness = LivenessModel::load(&config.models_dir).context("loading the liveness models")?;
    Ok((detector, liveness))
}

fn mean(pair: &[f32; 2]) -> f32 {
    (pair[0] + pair[1]) / 2.0
}

/// Scores every face of every image.
pub fn liveness(config: &Config, args: &LivenessArgs) -> Result<std::process::ExitCode> {
    let (detector, model) = load(config)?;
    let threshold = config.live_threshold();
    let mut failed = 0usize;
    for path in &args.images {
        let faces = decode_file(path, DecodeLimits::default()).map_err(|e| e.to_string()).and_then(|frame| {
            let faces = detector.detect(&frame).map_err(|e| e.to_string())?;
            Ok(faces
                .iter()
                .map(|face| (face.bbox, model.scores(&frame, &face.bbox).map_err(|e| e.to_string())))
                .collect::<Vec<_>>())
        });
        match faces {
            Err(e) => {
                failed += 1;
                eprintln!("{}: error: {e}", path.display());
            }
            Ok(faces) => {
                let rows: Vec<_> = faces
                    .iter()
                    .map(|(b, score)| match score {
                        Ok(pair) => {
                            let s = mean(pair);
                            // Per model too: when they disagree the mean sits near 0.5 (see docs/liveness.md).
                            json!({ "box": [b.x, b.y, b.width, b.height], "live_score": s, "live": s >= threshold,
                                    "model_scores": {"minifasnet_v2_2.7": pair[0], "minifasnet_v1se_4.0": pair[1]} })
                        }
                        Err(e) => json!({ "box": [b.x, b.y, b.width, b.height], "error": e }),
                    })
                    .collect();
                if args.json {
                    println!(
                        "{}",
                        json!({ "image": path.display().to_string(), "threshold": threshold, "faces": rows })
                    );
                } else {
                    println!("{}: {} face(s)", path.display(), faces.len());
                    for (b, score) in &faces {
                        let at = format!("  box {:.0},{:.0} {:.0}x{:.0}", b.x, b.y, b.width, b.height);
                        match score.as_ref().map(mean) {
                            Ok(s) if s >= threshold => println!("{at}  live score {s:.3}  live"),
                            Ok(s) => println!("{at}  live score {s:.3}  NOT live (photo or screen?)"),
                            Err(e) => println!("{at}  error: {e}"),
                        }
                    }
                }
            }
        }
    }
    Ok(if failed == 0 { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}

/// APCER per attack type and BPCER on a labelled folder.
pub fn eval_pad(config: &Config, args: &EvalPadArgs) -> Result<std::process::ExitCode> {
    let (detector, model) = load(config)?;
    let threshold = args.threshold.unwrap_or(config.live_threshold());
    let samples = pad::score_folder(&args.spoof, &detector, &model, |file, e| eprintln!("{file}: {e}"))?;
    let report = pad::pad_metrics(&samples, threshold);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("threshold {:.3} (live score at or above is live)", report.threshold);
        println!("live images {}: BPCER {:.2} %", report.live, report.bpcer * 100.0);
        for (attack, n) in &report.attacks {
            println!("attack {attack:<8} {n:>4} images: APCER {:.2} %", report.apcer[attack] * 100.0);
        }
        if let Some(best) = pad::suggest_threshold(&samples, 0.01) {
            println!(
                "calibration: threshold {:.3} keeps every APCER <= 1 % with BPCER {:.2} % (set liveness.threshold)",
                best.threshold,
                best.bpcer * 100.0
            );
        }
        println!(
            "no face found: {}; lowest live score {}; highest attack score {}",
            report.no_face,
            report.lowest_live_score.map_or("-".into(), |s| format!("{s:.3}")),
            report.highest_attack_score.map_or("-".into(), |s| format!("{s:.3}"))
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
