//! Liveness on real webcam frames (`../shared/spoof`, NUAA and Silent-Face samples) with facegate's own
//! detector: printed photos are refused, live faces accepted, across subjects; crops at the frame's edges,
//! tiny faces and degenerate boxes give a score or a clear error, never a panic.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use facegate::capture::{decode_file, DecodeLimits, Frame};
use facegate::vision::detect::{self, BoundingBox};
use facegate::vision::liveness::{LivenessError, LivenessModel, DEFAULT_LIVE_THRESHOLD};

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

fn facegate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["--models", common::models_dir().to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

/// `facegate eval-pad --json` on the whole spoof set: the keys the issue names, rates as fractions, and the
/// targets met with facegate's own detector at the default threshold.
#[test]
fn eval_pad_reports_apcer_per_attack_type_and_bpcer_within_the_targets() {
    let dir = common::spoof_dir();
    let out = facegate(&["eval-pad", "--spoof", dir.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{report}");
    assert_eq!(report["threshold"].as_f64(), Some(f64::from(DEFAULT_LIVE_THRESHOLD)));
    let live = report["live"].as_u64().unwrap();
    let prints = report["attacks"]["print"].as_u64().unwrap();
    assert!(live >= 150 && prints >= 150 && report["attacks"]["screen"].as_u64() == Some(1), "{report}");
    let (apcer_print, bpcer) = (report["apcer"]["print"].as_f64().unwrap(), report["bpcer"].as_f64().unwrap());
    assert!(apcer_print <= 0.01, "APCER(print) {apcer_print}");
    assert!(bpcer <= 0.02, "BPCER {bpcer}");
    assert_eq!(report["apcer"]["screen"].as_f64(), Some(0.0), "the screen image was accepted");
}

/// A folder that is not laid out like the spoof set gets an error naming the manifest and its columns; corrupt
/// images are named on stderr and counted, not fatal; `facegate liveness` scores each face with both models'
/// scores and fails (exit 1) only for the file it could not read.
#[test]
fn bad_folders_corrupt_images_and_per_face_scores_from_the_cli() {
    let work = tempfile::tempdir().unwrap();
    let folder = work.path();
    std::fs::write(folder.join("manifest.csv"), "path,kind\nx.jpg,live\n").unwrap();
    let out = facegate(&["eval-pad", "--spoof", folder.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("manifest.csv") && stderr.contains("file,label,attack_type"), "{stderr}");

    let spoof = common::spoof_dir();
    let live = spoof.join("live/nuaa_0002_00_00_01_0.jpg");
    let live = if live.is_file() { live } else { common::nuaa_frames("live", "0002").remove(0) };
    let print = common::nuaa_frames("print", "0002").remove(0);
    std::fs::copy(&live, folder.join("live.jpg")).unwrap();
    std::fs::copy(&print, folder.join("print.jpg")).unwrap();
    let bytes = std::fs::read(&live).unwrap();
    std::fs::write(folder.join("cut.jpg"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(folder.join("noise.jpg"), b"\xFF\xD8\xFFnot really a jpeg").unwrap();
    std::fs::write(
        folder.join("manifest.csv"),
        "file,label,attack_type\nlive.jpg,live,none\nprint.jpg,spoof,print\ncut.jpg,live,none\nnoise.jpg,spoof,print\n\
         missing.jpg,spoof,screen\n",
    )
    .unwrap();
    let out = facegate(&["eval-pad", "--spoof", folder.to_str().unwrap(), "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("noise.jpg") && stderr.contains("missing.jpg"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["live"].as_u64(), Some(2));
    assert_eq!(report["attacks"]["print"].as_u64(), Some(2));
    assert_eq!(report["apcer"]["print"].as_f64(), Some(0.0), "{report}");
    assert_eq!(report["apcer"]["screen"].as_f64(), Some(0.0), "{report}");
    // A threshold from the command line is applied and reported: at 0.999999 the live face is rejected too.
    let out = facegate(&["eval-pad", "--spoof", folder.to_str().unwrap(), "--json", "--threshold", "0.999999"]);
    let strict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!((strict["threshold"].as_f64().unwrap() - 0.999_999).abs() < 1e-6, "{strict}");
    assert_eq!(strict["bpcer"].as_f64(), Some(1.0), "{strict}");

    let out = facegate(&[
        "liveness",
        "--json",
        folder.join("live.jpg").to_str().unwrap(),
        folder.join("print.jpg").to_str().unwrap(),
        folder.join("noise.jpg").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "one file could not be read");
    assert!(String::from_utf8_lossy(&out.stderr).contains("noise.jpg"));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    let largest = |v: &serde_json::Value| {
        v["faces"]
            .as_array()
            .unwrap()
            .iter()
            .max_by(|a, b| {
                let area = |f: &serde_json::Value| f["box"][2].as_f64().unwrap() * f["box"][3].as_f64().unwrap();
                area(a).total_cmp(&area(b))
            })
            .cloned()
            .unwrap()
    };
    let (live_face, print_face) = (largest(&lines[0]), largest(&lines[1]));
    assert_eq!((live_face["live"].as_bool(), print_face["live"].as_bool()), (Some(true), Some(false)));
    let pair = &live_face["model_scores"];
    let mean = (pair["minifasnet_v2_2.7"].as_f64().unwrap() + pair["minifasnet_v1se_4.0"].as_f64().unwrap()) / 2.0;
    assert!((mean - live_face["live_score"].as_f64().unwrap()).abs() < 1e-5, "{live_face}");
}
