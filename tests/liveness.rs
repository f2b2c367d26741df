//! Liveness on real webcam frames (`../shared/spoof`, NUAA and Silent-Face samples) with facegate's own
//! detector: printed photos are refused, live faces accepted, across subjects; crops at the frame's edges,
//! tiny faces and degenerate boxes give a score or a clear error, never a panic.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use facegate::capture::{decode_file, DecodeLimits, Frame};
use facegate::detect::{self, BoundingBox};
use facegate::liveness::{LivenessError, LivenessModel, DEFAULT_LIVE_THRESHOLD};

fn model() -> LivenessModel {
    LivenessModel::load(&common::models_dir()).unwrap_or_else(|e| panic!("{e}"))
}

fn largest_face_score(model: &LivenessModel, path: &std::path::Path) -> f32 {
    let frame = decode_file(path, DecodeLimits::default()).unwrap();
    let faces = common::pipeline().detector().detect(&frame).unwrap();
    let face = detect::largest(&faces).unwrap_or_else(|| panic!("no face in {}", path.display()));
    model.score(&frame, &face.bbox).unwrap()
}

/// Every fifth live and print image of each NUAA subject, and the Silent-Face samples (EXIF-rotated).
#[test]
fn printed_photos_are_refused_and_live_faces_accepted() {
    let dir = common::spoof_dir();
    let model = model();
    let pick = |sub: &str| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(sub)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files.into_iter().step_by(5).collect()
    };
    let (live, print) = (pick("live"), pick("print"));
    let live_ok = live.iter().filter(|p| largest_face_score(&model, p) >= DEFAULT_LIVE_THRESHOLD).count();
    let print_accepted = print.iter().filter(|p| largest_face_score(&model, p) >= DEFAULT_LIVE_THRESHOLD).count();
    eprintln!("live accepted {live_ok}/{}, prints accepted {print_accepted}/{}", live.len(), print.len());
    assert_eq!(print_accepted, 0, "a printed photo passed as live");
    assert!(live_ok * 100 >= live.len() * 95, "live faces rejected: {live_ok}/{}", live.len());
    // The Silent-Face samples: a live face, a printed photo and a tablet screen, upright only after EXIF.
    let sample = |name: &str| largest_face_score(&model, &dir.join(name));
    assert!(sample("live/silentface_image_T1.jpg") >= DEFAULT_LIVE_THRESHOLD);
    assert!(sample("print/silentface_image_F1.jpg") < DEFAULT_LIVE_THRESHOLD);
    assert!(sample("screen/silentface_image_F2.jpg") < DEFAULT_LIVE_THRESHOLD, "the screen image passed as live");
}

#[test]
fn edge_crops_tiny_faces_and_bad_boxes_never_panic() {
    let model = model();
    let frame = decode_file(&common::astronaut(), DecodeLimits::default()).unwrap();
    let (w, h) = (frame.width() as f32, frame.height() as f32);
    let b = |x: f32, y: f32, width: f32, height: f32| BoundingBox { x, y, width, height };
    // At every edge and corner, partly outside, tiny, and the whole frame: a score in 0..1.
    for bbox in [
        b(0.0, 0.0, 60.0, 60.0),
        b(w - 30.0, h - 30.0, 60.0, 60.0),
        b(-20.0, h / 2.0, 50.0, 50.0),
        b(w / 2.0, -10.0, 40.0, 40.0),
        b(w / 2.0, h / 2.0, 1.0, 1.0),
        b(0.0, 0.0, w, h),
        b(-100.0, -100.0, w + 200.0, h + 200.0),
    ] {
        let score = model.score(&frame, &bbox).unwrap_or_else(|e| panic!("{bbox:?}: {e}"));
        assert!((0.0..=1.0).contains(&score), "{bbox:?}: {score}");
    }
    for bbox in [b(0.0, 0.0, 0.0, 0.0), b(f32::NAN, 0.0, 10.0, 10.0), b(w + 5.0, 0.0, 10.0, 10.0)] {
        assert!(matches!(model.score(&frame, &bbox), Err(LivenessError::BadBox(_))), "{bbox:?}");
    }
    // A frame a few pixels across.
    let tiny = Frame::from_rgb(3, 2, vec![128; 18]).unwrap();
    let _ = model.score(&tiny, &b(0.0, 0.0, 2.0, 2.0));
}
