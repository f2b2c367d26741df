//! facegate's per-frame path against OpenCV (FaceDetectorYN + FaceRecognizerSF) and onnxruntime running the same
//! ONNX files, in one run, on the same webcam frames (`../shared/spoof/live`, held in memory) and thread counts.
//!
//! criterion times every contender: facegate in process, the peers through `benches/peer/frame_peer.py`, which
//! times a requested number of repetitions itself (criterion's `iter_custom`), so the Python call overhead is
//! outside the figures. After the groups it prints each stage's median and the ratio facegate / OpenCV, then the
//! peak resident memory of each contender measured in its own process (facegate re-executes this bench alone).
//!
//!     cargo bench --bench peers            (needs `pip install onnxruntime onnx "opencv-python-headless<5"`)

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use facegate::capture::{decode_file, DecodeLimits, Frame};
use facegate::policy::matching::Gallery;
use facegate::protect::{ProtectedTemplate, Rotation, TransformKey};
use facegate::vision::align;
use facegate::vision::embed::{Embedding, EMBEDDING_DIM};
use facegate::vision::pipeline::{ordered_parallel, FacePipeline, PipelineConfig};
use rand::{Rng, SeedableRng};

/// Frames cycled through by the whole-path benches.
const FRAMES: usize = 20;
/// Residents in the gallery each probe is matched against.
const GALLERY: u32 = 10_000;
/// The detector's working size (longer side) for every contender.
const DETECT_SIDE: u32 = 320;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn frame_files() -> Vec<PathBuf> {
    let dir = manifest().join("../shared/spoof/live");
    let files: Vec<PathBuf> = facegate::capture::replay::list_images(&dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("nuaa_")))
        .take(FRAMES)
        .collect();
    assert!(files.len() == FRAMES, "need {FRAMES} webcam frames in {}: the benches need ../shared", dir.display());
    files
}

fn random_embedding(rng: &mut impl Rng) -> Embedding {
    let raw: Vec<f32> = (0..EMBEDDING_DIM).map(|_| rng.random::<f32>() - 0.5).collect();
    Embedding::from_raw(&raw).expect("non-zero")
}

/// facegate's side: the models, the frames and a protected gallery of `GALLERY` random residents.
struct Facegate {
    pipeline: FacePipeline,
    frames: Vec<Frame>,
    rotation: Rotation,
    gallery: Gallery,
}

impl Facegate {
    fn load() -> Self {
        let config = PipelineConfig {
            detector: facegate::vision::detect::DetectorConfig { max_side: DETECT_SIDE, ..Default::default() },
            ..Default::default()
        };
        let pipeline = FacePipeline::load(&manifest().join("models"), config)
            .unwrap_or_else(|e| panic!("{e} (run `bash models/fetch.sh`)"));
        let frames = frame_files().iter().map(|f| decode_file(f, DecodeLimits::default()).expect("frame")).collect();
        let rotation = Rotation::from_key(&TransformKey::generate());
        let mut gallery = Gallery::new(rotation.id());
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for slot in 0..GALLERY {
            gallery.insert(slot, &rotation.protect(&random_embedding(&mut rng))).expect("same transform");
        }
        Self { pipeline, frames, rotation, gallery }
    }

    /// The whole path on one frame: detect, align, embed, protect, match.
    fn read_and_match(&self, frame: &Frame) -> Option<u32> {
        let reading = self.pipeline.read(frame).ok()?;
        let probe: ProtectedTemplate = self.rotation.protect(&reading.embedding);
        self.gallery.best(&probe).map(|c| c.slot)
    }
}

/// One Python peer process, timing what it is asked to.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start(runtime: &str, threads: usize, files: &[PathBuf]) -> Self {
        let script = manifest().join("benches/peer/frame_peer.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--runtime", runtime, "--threads", &threads.to_string()])
            .args(["--detect-side", &DETECT_SIDE.to_string(), "--gallery", &GALLERY.to_string()])
            .args(files)
            .env("OMP_NUM_THREADS", threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut ready = String::new();
        stdout.read_line(&mut ready).expect("peer output");
        assert_eq!(
            ready.trim(),
            "ready",
            "the {runtime} peer did not start: pip install onnxruntime onnx \"opencv-python-headless<5\""
        );
        Self { child, stdin, stdout }
    }

    fn ask(&mut self, request: &str) -> String {
        writeln!(self.stdin, "{request}").expect("peer stdin");
        self.stdin.flush().expect("peer stdin");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("peer stdout");
        line.trim().to_string()
    }

    fn time(&mut self, stage: &str, iters: u64) -> Duration {
        Duration::from_nanos(self.ask(&format!("{stage} {iters}")).parse().expect("nanoseconds"))
    }

    /// Peak resident memory in KiB.
    fn peak_rss_kib(&mut self) -> u64 {
        self.ask("rss").split_whitespace().next().and_then(|v| v.parse().ok()).expect("rss")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn run_benches(c: &mut Criterion) {
    let files = frame_files();
    let fg = Facegate::load();
    let mut opencv = Peer::start("opencv", 1, &files);
    let mut ort = Peer::start("ort", 1, &files);

    let first = &fg.frames[0];
    let face = fg.pipeline.detector().detect(first).ok().and_then(|f| facegate::vision::detect::largest(&f).cloned());
    let face = face.expect("a face in the first frame");
    let aligned = align::align(first, &face.landmarks).expect("alignable");
    let embedding = fg.pipeline.embedder().embed(&aligned).expect("embedding");

    {
        let mut g = c.benchmark_group("stage_1t");
        g.sample_size(30);
        g.bench_function(BenchmarkId::new("detect", "facegate"), |b| b.iter(|| fg.pipeline.detector().detect(first)));
        g.bench_function(BenchmarkId::new("detect", "opencv"), |b| b.iter_custom(|n| opencv.time("detect", n)));
        g.bench_function(BenchmarkId::new("detect", "onnxruntime"), |b| b.iter_custom(|n| ort.time("detect", n)));
        g.bench_function(BenchmarkId::new("align", "facegate"), |b| b.iter(|| align::align(first, &face.landmarks)));
        g.bench_function(BenchmarkId::new("align", "opencv"), |b| b.iter_custom(|n| opencv.time("align", n)));
        g.bench_function(BenchmarkId::new("embed", "facegate"), |b| b.iter(|| fg.pipeline.embedder().embed(&aligned)));
        g.bench_function(BenchmarkId::new("embed", "opencv"), |b| b.iter_custom(|n| opencv.time("embed", n)));
        g.bench_function(BenchmarkId::new("embed", "onnxruntime"), |b| b.iter_custom(|n| ort.time("embed", n)));
        g.bench_function(BenchmarkId::new("protect_match_10k", "facegate"), |b| {
            b.iter(|| fg.gallery.best(&fg.rotation.protect(&embedding)).map(|c| c.slot))
        });
        g.bench_function(BenchmarkId::new("protect_match_10k", "opencv"), |b| {
            b.iter_custom(|n| opencv.time("match", n))
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("frame_1t");
        g.sample_size(20);
        let mut i = 0usize;
        g.bench_function("facegate", |b| {
            b.iter(|| {
                i += 1;
                fg.read_and_match(&fg.frames[i % fg.frames.len()])
            })
        });
        g.bench_function("opencv", |b| b.iter_custom(|n| opencv.time("frame", n)));
        g.bench_function("onnxruntime", |b| b.iter_custom(|n| ort.time("frame", n)));
        g.finish();
    }
    {
        // facegate on every core (the gate's own two-stage reader) against OpenCV on one and on every core.
        let mut g = c.benchmark_group("frame_all_cores");
        g.sample_size(10);
        g.bench_function(format!("facegate_{}t", cores()), |b| {
            b.iter_custom(|n| {
                let mut frames = (0..n as usize).map(|i| &fg.frames[i % fg.frames.len()]);
                let start = Instant::now();
                ordered_parallel(cores(), move || frames.next(), |frame| fg.read_and_match(frame), |_| {});
                start.elapsed()
            })
        });
        drop(opencv);
        let mut opencv_all = Peer::start("opencv", cores(), &files);
        g.bench_function(format!("opencv_{}t", cores()), |b| b.iter_custom(|n| opencv_all.time("frame", n)));
        g.finish();
    }
}

/// Criterion's median for one benchmark, in milliseconds.
fn median_ms(group: &str, id: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| manifest().join("target"), PathBuf::from);
    let file = target.join("criterion").join(group).join(id).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64().map(|ns| ns / 1e6)
}

fn print_ratios() {
    println!("\nmedians (ms) and ratios, one thread each:");
    println!("{:<22} {:>10} {:>10} {:>12} {:>16}", "stage", "facegate", "opencv", "onnxruntime", "facegate/opencv");
    let rows = [
        ("stage_1t", "detect"),
        ("stage_1t", "align"),
        ("stage_1t", "embed"),
        ("stage_1t", "protect_match_10k"),
        ("frame_1t", ""),
    ];
    for (group, stage) in rows {
        let id = |who: &str| if stage.is_empty() { who.to_string() } else { format!("{stage}/{who}") };
        let fg = median_ms(group, &id("facegate"));
        let cv = median_ms(group, &id("opencv"));
        let ort = median_ms(group, &id("onnxruntime"));
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        let ratio = match (fg, cv) {
            (Some(a), Some(b)) => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let name = if stage.is_empty() { "whole frame" } else { stage };
        println!("{name:<22} {:>10} {:>10} {:>12} {:>16}", show(fg), show(cv), show(ort), ratio);
    }
    let n = cores();
    let fps = |ms: Option<f64>| ms.map_or("-".to_string(), |ms| format!("{:.1}", 1e3 / ms));
    println!("\nframes per second:");
    println!("  facegate, {n} cores: {}", fps(median_ms("frame_all_cores", &format!("facegate_{n}t"))));
    println!("  opencv, 1 thread:   {}", fps(median_ms("frame_1t", "opencv")));
    println!("  opencv, {n} threads: {}", fps(median_ms("frame_all_cores", &format!("opencv_{n}t"))));
}

/// Peak RSS of this process, KiB.
fn own_peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Runs the path alone (no criterion) so the peak memory is facegate's own, then prints it.
fn rss_child() {
    let fg = Facegate::load();
    for frame in fg.frames.iter().cycle().take(100) {
        let _ = fg.read_and_match(frame);
    }
    println!("{}", own_peak_rss_kib());
}

fn print_rss(files: &[PathBuf]) {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe).env("FACEGATE_PEERS_RSS_CHILD", "1").output().expect("re-run");
    let facegate: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    let mut peers = Vec::new();
    for runtime in ["opencv", "ort"] {
        let mut peer = Peer::start(runtime, 1, files);
        peer.time("frame", 100);
        peers.push((runtime, peer.peak_rss_kib()));
    }
    println!("\npeak resident memory after 100 frames, {GALLERY} residents (MiB):");
    println!("  facegate     {:>7.1}", facegate as f64 / 1024.0);
    for (runtime, kib) in peers {
        println!("  {:<12} {:>7.1}  (a Python process, interpreter and numpy included)", runtime, kib as f64 / 1024.0);
    }
}

fn main() {
    if std::env::var_os("FACEGATE_PEERS_RSS_CHILD").is_some() {
        rss_child();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    run_benches(&mut c);
    c.final_summary();
    print_ratios();
    print_rss(&frame_files());
}
