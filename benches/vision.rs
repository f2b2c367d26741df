//! Criterion benches of the per-frame vision stages, one thread: the QR search every frame gets, detect at
//! 640x480 and 320x240, align, liveness (the MiniFASNet pair, per face), embed.
//! Frames are real webcam frames from `../shared/spoof/live` (never written anywhere). The peer's figures
//! (onnxruntime on the same models and input sizes) come from `benches/peer/ort_speed.py`; both are in
//! `benches/README.md`.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use facegate::capture::{decode_file, DecodeLimits, Frame};
use facegate::vision::align;
use facegate::vision::pipeline::{FacePipeline, PipelineConfig};

fn webcam_frame() -> Frame {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/spoof/live");
    let file = facegate::capture::replay::list_images(&dir)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("nuaa_")))
        .unwrap_or_else(|| panic!("no webcam frames in {}: the benches need ../shared", dir.display()));
    decode_file(&file, DecodeLimits::default()).expect("decodable webcam frame")
}

fn half_size(frame: &Frame) -> Frame {
    let image = image::RgbImage::from_raw(frame.width(), frame.height(), frame.rgb().to_vec()).expect("rgb frame");
    let small =
        image::imageops::resize(&image, frame.width() / 2, frame.height() / 2, image::imageops::FilterType::Triangle);
    Frame::from_rgb(small.width(), small.height(), small.into_raw()).expect("rgb frame")
}

fn benches(c: &mut Criterion) {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let pipeline = FacePipeline::load(&models, PipelineConfig::default())
        .unwrap_or_else(|e| panic!("{e} (run `bash models/fetch.sh`)"));
    let frame = webcam_frame();
    assert_eq!((frame.width(), frame.height()), (640, 480));
    let small = half_size(&frame);
    let detector = pipeline.detector();

    let mut group = c.benchmark_group("detect");
    group.sample_size(40);
    group.bench_function("yunet_640x480", |b| b.iter(|| detector.detect(&frame).expect("detect")));
    group.bench_function("yunet_320x240", |b| b.iter(|| detector.detect(&small).expect("detect")));
    group.finish();

    // Every frame is searched for a visitor pass, whether or not anyone asked for a face check.
    let mut group = c.benchmark_group("qr");
    group.sample_size(40);
    group.bench_function("search_640x480_no_code", |b| b.iter(|| facegate::vision::qr::read_codes(&frame, 1)));
    group.finish();

    let faces = detector.detect(&frame).expect("detect");
    let face = facegate::vision::detect::largest(&faces).expect("a face in the webcam frame");
    c.bench_function("align/umeyama_warp_112x112", |b| {
        b.iter(|| align::align(&frame, &face.landmarks).expect("alignable"))
    });

    let liveness = facegate::vision::liveness::LivenessModel::load(&models).unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("liveness");
    group.sample_size(30);
    group.bench_function("minifasnet_pair_80x80", |b| b.iter(|| liveness.score(&frame, &face.bbox).expect("score")));
    group.finish();

    let aligned = align::align(&frame, &face.landmarks).expect("alignable");
    let mut group = c.benchmark_group("embed");
    group.sample_size(30);
    group.bench_function("sface_112x112", |b| b.iter(|| pipeline.embedder().embed(&aligned).expect("embed")));
    group.finish();
}

criterion_group!(vision, benches);
criterion_main!(vision);
