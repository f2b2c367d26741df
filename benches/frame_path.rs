//! The per-frame path side by side, one core each, one run: facegate against OpenCV 5 and onnxruntime on the same
//! fp32 numbers (the int8bq weights folded to fp32 as facegate folds them), over the 160 webcam frames of
//! `../shared/spoof/live`, each contender in its own process pinned with `taskset -c 1`.
//!
//!     cargo bench --bench frame_path [-- --repeats N] [--default-malloc]
//!
//! (needs `pip install onnx onnxruntime opencv-python-headless`). facegate's contender sets glibc's allocator as
//! the daemon does (`hardening::return_large_buffers_at_once`); `--default-malloc` leaves glibc's default.
//!
//! Every contender decodes each frame from its JPEG bytes (held in memory), detects at longer side 320, takes the
//! largest face, aligns at full size, embeds with SFace and normalises, matches against 10,000 rows, and runs the
//! liveness pair; each stage is timed, and the process's minor page faults, user and system time are read over the
//! timed loop. The table printed last is the one in `benches/README.md`. Whole frame = decode to match (the issue's
//! definition); liveness is its own column.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use facegate::capture::{decode_bytes, DecodeLimits};
use facegate::policy::matching::Gallery;
use facegate::protect::{Rotation, TransformKey};
use facegate::vision::align;
use facegate::vision::detect::{largest, DetectorConfig};
use facegate::vision::embed::{Embedding, EMBEDDING_DIM};
use facegate::vision::liveness::LivenessModel;
use facegate::vision::pipeline::{FacePipeline, PipelineConfig};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const CONTENDER_ENV: &str = "FRAME_PATH_CONTENDER";
const STAGES: [&str; 7] = ["decode", "detect", "align", "embed", "liveness", "match", "frame"];

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn frame_files() -> Vec<PathBuf> {
    let dir = manifest().join("../shared/spoof/live");
    let files = facegate::capture::replay::list_images(&dir);
    assert!(files.len() >= 100, "need the webcam frames of {}: the benches need ../shared", dir.display());
    files
}

fn repeats() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == "--repeats").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(1)
}

fn rusage() -> (f64, f64, f64) {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).expect("getrusage");
    let ms = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e3 + t.tv_usec() as f64 / 1e3;
    (usage.minor_page_faults() as f64, ms(usage.user_time()), ms(usage.system_time()))
}

fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (n > 0).then(|| if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
}

/// facegate's contender: this bench re-executed under `taskset`, printing one JSON object.
fn facegate_contender() {
    // As the daemon and the CLI start (`main.rs`), unless asked to compare with glibc's default.
    if !std::env::args().any(|a| a == "--default-malloc") {
        facegate::protect::hardening::return_large_buffers_at_once();
    }
    let config =
        PipelineConfig { detector: DetectorConfig { max_side: 320, ..Default::default() }, ..Default::default() };
    let models = manifest().join("models");
    let pipeline = FacePipeline::load(&models, config).unwrap_or_else(|e| panic!("{e} (run `bash models/fetch.sh`)"));
    let liveness = LivenessModel::load(&models).expect("the liveness models");
    let blobs: Vec<Vec<u8>> = frame_files().iter().map(|f| std::fs::read(f).expect("frame")).collect();
    let rotation = Rotation::from_key(&TransformKey::generate());
    let mut gallery = Gallery::new(rotation.id());
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    for slot in 0..10_000 {
        let raw: Vec<f32> = (0..EMBEDDING_DIM).map(|_| rng.random::<f32>() - 0.5).collect();
        let row = Embedding::from_raw(&raw).expect("non-zero");
        gallery.insert(slot, &rotation.protect(&row)).expect("same transform");
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); STAGES.len()];
    let mut one = |blob: &[u8], timed: bool| {
        let t0 = Instant::now();
        let frame = decode_bytes(blob, DecodeLimits::default()).expect("a webcam frame");
        let t1 = Instant::now();
        let faces = pipeline.detector().detect(&frame).expect("detect");
        let t2 = Instant::now();
        let Some(face) = largest(&faces) else { return };
        let crop = align::align(&frame, &face.landmarks).expect("alignable");
        let t3 = Instant::now();
        let embedding = pipeline.embedder().embed(&crop).expect("embed");
        let t4 = Instant::now();
        std::hint::black_box(gallery.best(&rotation.protect(&embedding)));
        let t5 = Instant::now();
        std::hint::black_box(liveness.score(&frame, &face.bbox).ok());
        let t6 = Instant::now();
        if timed {
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            let spans = [ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t3, t4), ms(t5, t6), ms(t4, t5), ms(t0, t5)];
            for (stage, span) in times.iter_mut().zip(spans) {
                stage.push(span);
            }
        }
    };
    for blob in blobs.iter().take(3) {
        one(blob, false);
    }
    let (faults0, user0, sys0) = rusage();
    let mut frames = 0usize;
    for _ in 0..repeats() {
        for blob in &blobs {
            one(blob, true);
            frames += 1;
        }
    }
    let (faults1, user1, sys1) = rusage();
    let n = frames as f64;
    let frame_mean = times[6].iter().sum::<f64>() / times[6].len().max(1) as f64;
    let medians: serde_json::Map<String, Value> =
        STAGES.iter().zip(times.iter_mut()).map(|(s, t)| ((*s).to_owned(), json!(median(t)))).collect();
    println!(
        "{}",
        json!({
            "contender": "facegate (tract)",
            "frames": frames,
            "median_ms": medians,
            "frame_mean_ms": frame_mean,
            "minor_faults_per_frame": (faults1 - faults0) / n,
            "user_ms_per_frame": (user1 - user0) / n,
            "sys_ms_per_frame": (sys1 - sys0) / n,
        })
    );
}

/// Runs one contender pinned to core 1 and parses its JSON line.
fn run_pinned(mut command: Command, name: &str) -> Option<Value> {
    let started = Instant::now();
    let output = command.output().ok()?;
    let line = String::from_utf8_lossy(&output.stdout).lines().last().map(str::to_owned).unwrap_or_default();
    match serde_json::from_str::<Value>(&line) {
        Ok(value) => {
            eprintln!("{name}: {:.1} s", started.elapsed().as_secs_f64());
            Some(value)
        }
        Err(_) => {
            eprintln!("{name} failed: {}", String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or(""));
            None
        }
    }
}

fn main() {
    if std::env::var_os(CONTENDER_ENV).is_some() {
        facegate_contender();
        return;
    }
    let repeats = repeats().to_string();
    let mut ours = Command::new("taskset");
    ours.args(["-c", "1"]).arg(std::env::current_exe().expect("this bench")).args(["--repeats", &repeats]);
    ours.args(std::env::args().filter(|a| a == "--default-malloc"));
    ours.env(CONTENDER_ENV, "1").env("RAYON_NUM_THREADS", "1");
    let mut results = vec![run_pinned(ours, "facegate")];
    for runtime in ["opencv", "ort"] {
        let mut peer = Command::new("taskset");
        peer.args(["-c", "1", "python3"]).arg(manifest().join("benches/peer/frame_path.py"));
        peer.args(["--runtime", runtime, "--repeats", &repeats]).args(frame_files());
        peer.env("OMP_NUM_THREADS", "1").env("OPENBLAS_NUM_THREADS", "1");
        results.push(run_pinned(peer, runtime));
    }
    let frame = |r: &Value| r["median_ms"]["frame"].as_f64();
    let opencv = results.get(1).and_then(Option::as_ref).and_then(frame);
    println!(
        "\n| contender (one core) | frames | decode | detect | align | embed | match | whole frame (median / mean) | x OpenCV | liveness | minor faults / frame | sys / frame | user / frame |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for result in results.iter().flatten() {
        let stage = |s: &str| result["median_ms"][s].as_f64().map_or("-".into(), |v| format!("{v:.2}"));
        let ratio = match (frame(result), opencv) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let sys = result["sys_ms_per_frame"].as_f64().unwrap_or(f64::NAN);
        let user = result["user_ms_per_frame"].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} / {:.2} ms | {ratio} | {} | {:.0} | {sys:.2} ms ({:.1} %) | {user:.2} ms |",
            result["contender"].as_str().unwrap_or("?"),
            result["frames"],
            stage("decode"),
            stage("detect"),
            stage("align"),
            stage("embed"),
            stage("match"),
            stage("frame"),
            result["frame_mean_ms"].as_f64().unwrap_or(f64::NAN),
            stage("liveness"),
            result["minor_faults_per_frame"].as_f64().unwrap_or(f64::NAN),
            100.0 * sys / (sys + user),
        );
    }
}
