//! The demo: frames from a replayed folder (or a camera) go through the vision path on an inference
//! thread, and a decision per frame is printed.
//!
//! Residents are "enrolled" in memory only, from the first photo of the first few `person_*` folders, and the
//! replay alternates their other photos with strangers' photos, so a newcomer sees the doors that would open
//! and the ones that stay shut. It has the shape of the gate service (capture task -> bounded channel ->
//! inference thread -> decisions), keeps inference off the async executor, and writes nothing: no image, no
//! embedding, no log of who passed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::sync::mpsc;

use crate::capture::{DecodeLimits, Frame, FrameSource, ReplaySource};
use crate::config::{CaptureConfig, Config, Threshold};
use crate::vision::embed::Embedding;
use crate::vision::eval::labelled_images;
use crate::vision::pipeline::{FacePipeline, PipelineError};

/// `facegate demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder to replay (default: the config's `capture.replay_dir`). Its `person_*` folders provide the
    /// residents and strangers of the demo.
    #[arg(long, value_name = "DIR")]
    pub replay: Option<PathBuf>,
    /// Read the camera /dev/videoN instead of replaying a folder.
    #[arg(long, value_name = "N")]
    pub camera: Option<u32>,
    /// How many residents to enrol (in memory only).
    #[arg(long, default_value_t = 5)]
    pub residents: usize,
    /// Stop after this many frames (0: run until Ctrl-C).
    #[arg(long, default_value_t = 40)]
    pub frames: usize,
    /// Frames per second to pace the source at (default: the config's `capture.fps`).
    #[arg(long)]
    pub fps: Option<f32>,
}

/// What the gate would do with one frame.
#[derive(Clone, Debug, PartialEq)]
pub enum FrameDecision {
    /// An enrolled resident: the door would open.
    Open {
        /// Index of the resident in the demo's gallery.
        resident: usize,
        /// Cosine similarity.
        score: f32,
    },
    /// A face, but nobody enrolled matches it.
    NoMatch {
        /// Best cosine over the gallery.
        best: f32,
    },
    /// No usable face.
    NoFace {
        /// Why.
        reason: String,
    },
}

/// Picks the resident a probe matches, or none: the best score must reach the threshold. Pure.
pub fn decide(probe: &Embedding, gallery: &[Embedding], threshold: Threshold) -> FrameDecision {
    let best = gallery.iter().enumerate().map(|(i, e)| (i, probe.cosine(e))).max_by(|a, b| a.1.total_cmp(&b.1));
    match best {
        Some((resident, score)) if score >= threshold.get() => FrameDecision::Open { resident, score },
        Some((_, best)) => FrameDecision::NoMatch { best },
        None => FrameDecision::NoMatch { best: -1.0 },
    }
}

/// The replay plan: who is enrolled, and the frames to show with who is really in each.
struct Scenario {
    enrol_files: Vec<(String, PathBuf)>,
    replay_files: Vec<PathBuf>,
    truth: BTreeMap<PathBuf, String>,
}

fn build_scenario(dir: &Path, n_residents: usize) -> Result<Scenario> {
    let labelled = labelled_images(dir).ok();
    let Some(labelled) = labelled else {
        // A plain folder: no residents, every photo replayed.
        let files = crate::capture::replay::list_images(dir);
        return Ok(Scenario { enrol_files: Vec::new(), replay_files: files, truth: BTreeMap::new() });
    };
    let mut by_person: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for image in labelled {
        by_person.entry(image.identity).or_default().push(dir.join(image.path));
    }
    let residents: Vec<String> =
        by_person.iter().filter(|(_, files)| files.len() >= 3).take(n_residents).map(|(p, _)| p.clone()).collect();
    let mut enrol_files = Vec::new();
    let mut resident_frames = Vec::new();
    let mut truth = BTreeMap::new();
    for person in &residents {
        let files = &by_person[person];
        enrol_files.push((person.clone(), files[0].clone()));
        for file in &files[1..] {
            truth.insert(file.clone(), person.clone());
            resident_frames.push(file.clone());
        }
    }
    let strangers: Vec<PathBuf> = by_person
        .iter()
        .filter(|(p, _)| !residents.contains(p))
        .filter_map(|(_, files)| files.first().cloned())
        .take(resident_frames.len())
        .collect();
    let mut replay_files = Vec::new();
    for (i, resident_frame) in resident_frames.into_iter().enumerate() {
        replay_files.push(resident_frame);
        if let Some(stranger) = strangers.get(i) {
            truth.insert(stranger.clone(), "stranger".into());
            replay_files.push(stranger.clone());
        }
    }
    Ok(Scenario { enrol_files, replay_files, truth })
}

/// Runs the demo until `frames` frames are done or Ctrl-C.
pub fn run_demo(config: &Config, args: &DemoArgs) -> Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(run_demo_async(config, args))
}

async fn run_demo_async(config: &Config, args: &DemoArgs) -> Result<std::process::ExitCode> {
    let pipeline = Arc::new(
        tokio::task::spawn_blocking({
            let (dir, cfg) = (config.models_dir.clone(), config.pipeline);
            move || FacePipeline::load(&dir, cfg)
        })
        .await?
        .context("loading the face models")?,
    );
    let fps = args.fps.unwrap_or(config.fps()).clamp(0.1, 120.0);
    let camera = args.camera.or(match config.capture {
        CaptureConfig::Camera { index } => Some(index),
        CaptureConfig::Replay { .. } => None,
    });

    let (source, scenario) = open_source(config, args, camera, fps)?;
    println!("source: {}", source.describe());

    // Enrolment for the demo only: embeddings held in memory, dropped (and wiped) at exit.
    let (gallery, resident_names) = scenario.as_ref().map(|s| enrol_in_memory(&pipeline, s)).unwrap_or_default();
    println!("threshold: cosine >= {:.3}", config.match_threshold.get());

    let limit = if args.frames == 0 { usize::MAX } else { args.frames };
    let (frame_tx, mut frame_rx) = mpsc::channel::<(Frame, Option<PathBuf>)>(2);
    let (decision_tx, mut decision_rx) = mpsc::channel::<(FrameDecision, Option<PathBuf>)>(8);

    let capture = tokio::task::spawn_blocking(move || capture(source, fps, limit, &frame_tx));

    // Inference: a dedicated thread, never the async executor.
    let threshold = config.match_threshold;
    let inference = std::thread::spawn(move || {
        while let Some((frame, file)) = frame_rx.blocking_recv() {
            let decision = match pipeline.read(&frame) {
                Ok(reading) => decide(&reading.embedding, &gallery, threshold),
                Err(PipelineError::NoFace) => FrameDecision::NoFace { reason: "no face".into() },
                Err(e) => FrameDecision::NoFace { reason: e.to_string() },
            };
            drop(frame);
            if decision_tx.blocking_send((decision, file)).is_err() {
                break;
            }
        }
    });

    let mut tally = Tally::default();
    let mut n_frame = 0usize;
    loop {
        tokio::select! {
            next = decision_rx.recv() => {
                let Some((decision, file)) = next else { break };
                n_frame += 1;
                let truth = scenario.as_ref().zip(file.as_ref()).and_then(|(s, f)| s.truth.get(f)).cloned();
                print_decision(n_frame, &decision, &resident_names, file.as_deref(), truth.as_deref());
                tally.add(&decision, &resident_names, truth.as_deref());
            }
            _ = tokio::signal::ctrl_c() => {
                println!("interrupted");
                break;
            }
        }
    }
    drop(decision_rx);
    let _ = capture.await;
    let _ = inference.join();
    tally.print();
    Ok(std::process::ExitCode::SUCCESS)
}

/// The camera, or the replayed folder with its scenario (who is enrolled, who each photo is).
fn open_source(
    config: &Config,
    args: &DemoArgs,
    camera: Option<u32>,
    fps: f32,
) -> Result<(Box<dyn FrameSource>, Option<Scenario>)> {
    Ok(match camera {
        Some(index) => (crate::capture::open_camera(index, fps)?, None),
        None => {
            let dir = args.replay.clone().unwrap_or_else(|| match &config.capture {
                CaptureConfig::Replay { dir } => dir.clone(),
                CaptureConfig::Camera { .. } => PathBuf::from("."),
            });
            let scenario = build_scenario(&dir, args.residents)?;
            let source = ReplaySource::from_files(scenario.replay_files.clone(), DecodeLimits::default())
                .with_context(|| format!("nothing to replay in {}", dir.display()))?;
            (Box::new(source), Some(scenario))
        }
    })
}

/// Enrols the scenario's residents from their first photos, in memory only.
fn enrol_in_memory(pipeline: &FacePipeline, scenario: &Scenario) -> (Vec<Embedding>, Vec<String>) {
    let mut gallery = Vec::new();
    let mut resident_names = Vec::new();
    for (person, file) in &scenario.enrol_files {
        match pipeline.read_file(file, DecodeLimits::default()) {
            Ok(reading) => {
                gallery.push(reading.embedding);
                resident_names.push(person.clone());
            }
            Err(e) => eprintln!("could not enrol {person}: {e}"),
        }
    }
    println!("enrolled {} residents in memory: {}", gallery.len(), resident_names.join(", "));
    (gallery, resident_names)
}

/// Capture: blocking reads, paced, on the blocking pool, until `limit` frames or the receiver goes.
fn capture(
    mut source: Box<dyn FrameSource>,
    fps: f32,
    limit: usize,
    frame_tx: &mpsc::Sender<(Frame, Option<PathBuf>)>,
) {
    let period = Duration::from_secs_f32(1.0 / fps);
    for _ in 0..limit {
        let started = std::time::Instant::now();
        let frame = match source.next_frame() {
            Ok(frame) => frame,
            Err(e) => {
                eprintln!("capture stopped: {e}");
                break;
            }
        };
        if frame_tx.blocking_send((frame, source_file(&*source))).is_err() {
            break;
        }
        std::thread::sleep(period.saturating_sub(started.elapsed()));
    }
}

fn source_file(source: &dyn FrameSource) -> Option<PathBuf> {
    source.last_file().map(Path::to_path_buf)
}

fn print_decision(n: usize, decision: &FrameDecision, residents: &[String], file: Option<&Path>, truth: Option<&str>) {
    let shown = file.map(|f| {
        let mut parts: Vec<_> = f.components().rev().take(2).map(|c| c.as_os_str().to_string_lossy()).collect();
        parts.reverse();
        parts.join("/")
    });
    let what = match decision {
        FrameDecision::Open { resident, score } => {
            format!("OPEN    {} (cosine {score:.3})", residents.get(*resident).map_or("?", String::as_str))
        }
        FrameDecision::NoMatch { best } => format!("closed  no match (best cosine {best:.3})"),
        FrameDecision::NoFace { reason } => format!("closed  {reason}"),
    };
    match (shown, truth) {
        (Some(file), Some(truth)) => println!("frame {n:>4}  {file:<28} [{truth:<11}] -> {what}"),
        (Some(file), None) => println!("frame {n:>4}  {file:<28} -> {what}"),
        _ => println!("frame {n:>4}  -> {what}"),
    }
}

#[derive(Default)]
struct Tally {
    resident_frames: usize,
    resident_opened_correctly: usize,
    wrong_resident: usize,
    stranger_frames: usize,
    stranger_opened: usize,
    no_face: usize,
}

impl Tally {
    fn add(&mut self, decision: &FrameDecision, residents: &[String], truth: Option<&str>) {
        if let FrameDecision::NoFace { .. } = decision {
            self.no_face += 1;
        }
        match (truth, decision) {
            (Some("stranger"), FrameDecision::Open { .. }) => {
                self.stranger_frames += 1;
                self.stranger_opened += 1;
            }
            (Some("stranger"), _) => self.stranger_frames += 1,
            (Some(person), FrameDecision::Open { resident, .. }) => {
                self.resident_frames += 1;
                if residents.get(*resident).map(String::as_str) == Some(person) {
                    self.resident_opened_correctly += 1;
                } else {
                    self.wrong_resident += 1;
                }
            }
            (Some(_), _) => self.resident_frames += 1,
            (None, _) => {}
        }
    }

    fn print(&self) {
        println!(
            "summary: residents let in {}/{} frames, wrong resident {}, strangers let in {}/{}, frames without a usable face {}",
            self.resident_opened_correctly,
            self.resident_frames,
            self.wrong_resident,
            self.stranger_opened,
            self.stranger_frames,
            self.no_face
        );
        println!("nothing was written: no image, no embedding, no record of who passed");
    }
}
