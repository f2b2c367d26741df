//! tract against onnxruntime on the same aligned crops: SFace's raw outputs must agree to cosine >= 0.9999
//! on at least 200 real face photos from `../shared/faces`.
//!
//! Run with `cargo bench --bench ort_agreement` (needs Python with onnxruntime and onnx, as `.ci/run`
//! installs). The crops go to `benches/peer/ort_embed.py` through a pipe and its outputs come back the same
//! way; nothing is written to disk. Exits non-zero if any image falls below the bound.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use facegate::capture::DecodeLimits;
use facegate::vision::align;
use facegate::vision::embed::EMBEDDING_DIM;
use facegate::vision::pipeline::{FacePipeline, PipelineConfig};

const MIN_IMAGES: usize = 200;
const MIN_COSINE: f64 = 0.9999;

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; a filter that names another bench means "not me".
    if std::env::args().skip(1).any(|a| !a.starts_with('-') && !"ort_agreement".contains(a.as_str())) {
        return ExitCode::SUCCESS;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let faces = root.join("../shared/faces");
    let pipeline = match FacePipeline::load(&root.join("models"), PipelineConfig::default()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e} (run `bash models/fetch.sh`)");
            return ExitCode::FAILURE;
        }
    };
    let images = match facegate::vision::eval::labelled_images(&faces) {
        Ok(images) => images,
        Err(e) => {
            eprintln!("{e}: the agreement check needs ../shared/faces");
            return ExitCode::FAILURE;
        }
    };
    // Every tenth labelled photo: LFW, deepface and ORL alike.
    let mut crops = Vec::new();
    for image in images.iter().step_by(10) {
        let Ok(frame) = facegate::capture::decode_file(&faces.join(&image.path), DecodeLimits::default()) else {
            continue;
        };
        let Ok(found) = pipeline.detector().detect(&frame) else { continue };
        let Some(face) = facegate::vision::detect::largest(&found) else { continue };
        if let Some(aligned) = align::align(&frame, &face.landmarks) {
            crops.push(aligned);
        }
    }
    let mut child = match Command::new("python3")
        .arg(root.join("benches/peer/ort_embed.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("cannot start python3: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return ExitCode::FAILURE;
    };
    let writer = {
        let bytes: Vec<u8> = crops.iter().flat_map(|c| c.rgb().iter().copied()).collect();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        })
    };
    let mut cosines = Vec::new();
    let mut buffer = vec![0u8; EMBEDDING_DIM * 4];
    for crop in &crops {
        if stdout.read_exact(&mut buffer).is_err() {
            eprintln!("onnxruntime side stopped early (is onnxruntime installed? `pip install onnxruntime onnx`)");
            return ExitCode::FAILURE;
        }
        let ort: Vec<f64> =
            buffer.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect();
        let tract: Vec<f64> = match pipeline.embedder().embed_raw(crop) {
            Ok(raw) => raw.iter().map(|&v| f64::from(v)).collect(),
            Err(e) => {
                eprintln!("tract failed: {e}");
                return ExitCode::FAILURE;
            }
        };
        let dot: f64 = ort.iter().zip(&tract).map(|(a, b)| a * b).sum();
        let norms = ort.iter().map(|v| v * v).sum::<f64>().sqrt() * tract.iter().map(|v| v * v).sum::<f64>().sqrt();
        cosines.push(dot / norms);
    }
    let _ = writer.join();
    let _ = child.wait();
    let n = cosines.len();
    let min = cosines.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = cosines.iter().sum::<f64>() / n.max(1) as f64;
    println!("tract vs onnxruntime, SFace raw output on {n} aligned crops: cosine min {min:.7}, mean {mean:.7}");
    if n >= MIN_IMAGES && min >= MIN_COSINE {
        println!("agreement: ok (>= {MIN_COSINE} on >= {MIN_IMAGES} images)");
        ExitCode::SUCCESS
    } else {
        println!("agreement: FAILED (need >= {MIN_COSINE} on >= {MIN_IMAGES} images)");
        ExitCode::FAILURE
    }
}
