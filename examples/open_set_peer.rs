//! Open-set identification of facegate against OpenCV's own pipeline (FaceDetectorYN + FaceRecognizerSF on the
//! same models), on exactly the same splits: the same folds of people, the same galleries and enrolment photos,
//! the same approaches. The peer decides as a single-image system does: one frame, no fusion, a threshold
//! calibrated on its own impostor scores of the same calibration people.
//!
//!     cargo run --release --example open_set_peer -- ../shared/faces [--no-liveness] [--draws 10] [--seed 1]
//!
//! The peer runs as `python3 benches/peer/opencv_embed.py` (needs `opencv-python-headless` 5 and `onnx`); its
//! embeddings come back through a pipe and stay in memory.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use facegate::capture::DecodeLimits;
use facegate::cli::open_set::{print_rule, rules};
use facegate::config::RawConfig;
use facegate::vision::embed::Embedding;
use facegate::vision::eval::open_set::plan::SplitRule;
use facegate::vision::eval::open_set::score::{Rule, Views};
use facegate::vision::eval::open_set::{self, LivenessCheck};
use facegate::vision::liveness::LivenessModel;
use facegate::vision::pipeline::FacePipeline;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut faces = None;
    let (mut no_liveness, mut draws, mut seed) = (false, 10usize, 1u64);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-liveness" => no_liveness = true,
            "--draws" => draws = args.next().context("--draws N")?.parse()?,
            "--seed" => seed = args.next().context("--seed N")?.parse()?,
            other => faces = Some(PathBuf::from(other)),
        }
    }
    let faces = faces.context("usage: open_set_peer FACES_DIR [--no-liveness] [--draws N] [--seed N]")?;
    let config = RawConfig::default().validate()?;
    let pipeline = FacePipeline::load(&config.models_dir, config.pipeline)?;
    let model = if no_liveness { None } else { Some(LivenessModel::load(&config.models_dir)?) };
    let check = model.as_ref().map(|model| LivenessCheck { model, threshold: config.live_threshold() });
    let ours = open_set::observe(
        &pipeline,
        check.as_ref(),
        config.enrol_frames,
        &faces,
        DecodeLimits::default(),
        &|_| {},
        &|| {},
    )?;
    let peer = opencv_embeddings(&faces, &ours.paths)?;
    let split = SplitRule { folds: 2, repeats: 5, gallery_sizes: vec![10, 100, 1000], draws, seed };
    let folds = open_set::splits(&ours, &split, config.enrol_frames)?;
    let live = (!no_liveness).then(|| config.live_threshold());
    let target = config.registry.target_fpir;
    println!(
        "{} people, {} photos: facegate found {} faces, OpenCV {}; target FPIR {target:.0e}; liveness {}",
        ours.people.len(),
        ours.paths.len(),
        ours.embeddings.iter().filter(|e| e.is_some()).count(),
        peer.iter().filter(|e| e.is_some()).count(),
        if live.is_some() { "checked (the peer is given facegate's live scores)" } else { "not checked" }
    );
    for rule in rules(&config) {
        println!("\n#### facegate");
        print_rule(&open_set::run_rule(&ours.people, &folds, &ours.views(), rule, target, live, config.enrol_frames)?);
    }
    let ones = vec![1.0; peer.len()];
    let peer_views = Views { embeddings: &peer, weights: &ones, live: &ours.live };
    println!("\n#### OpenCV {} pipeline", opencv_version());
    print_rule(&open_set::run_rule(
        &ours.people,
        &folds,
        &peer_views,
        Rule::SingleFrame,
        target,
        live,
        config.enrol_frames,
    )?);
    Ok(())
}

/// OpenCV's embedding of each photo, in order, through the peer script's pipe.
fn opencv_embeddings(faces: &std::path::Path, paths: &[PathBuf]) -> Result<Vec<Option<Embedding>>> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peer/opencv_embed.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg("--faces")
        .arg(faces)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting python3 benches/peer/opencv_embed.py")?;
    let mut stdin = child.stdin.take().context("peer stdin")?;
    let list: String = paths.iter().map(|p| format!("{}\n", p.display())).collect();
    let writer = std::thread::spawn(move || stdin.write_all(list.as_bytes()));
    let reader = BufReader::new(child.stdout.take().context("peer stdout")?);
    let mut out = Vec::with_capacity(paths.len());
    for line in reader.lines() {
        let line = line?;
        if line.trim() == "-" {
            out.push(None);
            continue;
        }
        let values: Vec<f32> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
        out.push(Embedding::from_raw(&values));
    }
    writer.join().map_err(|_| anyhow::anyhow!("the writer to the peer panicked"))??;
    if !child.wait()?.success() || out.len() != paths.len() {
        bail!(
            "the OpenCV peer answered {} of {} photos (is opencv-python-headless installed?)",
            out.len(),
            paths.len()
        );
    }
    Ok(out)
}

fn opencv_version() -> String {
    Command::new("python3")
        .args(["-c", "import cv2; print(cv2.__version__)"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}
