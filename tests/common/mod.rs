//! Helpers shared by the integration tests: where the labelled photos and the models are, and one loaded
//! pipeline per test binary.
#![allow(dead_code)]

pub mod compound;
pub mod daemon;
pub mod portal;
pub mod tpm;

use std::path::PathBuf;
use std::sync::OnceLock;

use facegate::vision::pipeline::{FacePipeline, PipelineConfig};

/// `../shared/faces` beside the repository (or `FACEGATE_SHARED_FACES`). Fails loudly when absent: these
/// tests need the labelled photos, which CI always has.
pub fn shared_faces() -> PathBuf {
    let dir = std::env::var_os("FACEGATE_SHARED_FACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/faces"));
    assert!(
        dir.join("pairs.csv").is_file(),
        "the labelled photos are missing: expected {} (with pairs.csv and person_* folders); \
         clone the repository beside `shared/` or set FACEGATE_SHARED_FACES",
        dir.display()
    );
    dir
}

/// The models folder; fails with the command to run when the models are missing.
pub fn models_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    assert!(
        dir.join(facegate::vision::model::YUNET.file_name).is_file()
            && dir.join(facegate::vision::model::SFACE.file_name).is_file(),
        "the face models are missing from {}: run `bash models/fetch.sh`",
        dir.display()
    );
    dir
}

/// The public-domain astronaut photo fetched by `models/fetch.sh`.
pub fn astronaut() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/fixtures/astronaut.png");
    assert!(path.is_file(), "{} is missing: run `bash models/fetch.sh`", path.display());
    path
}

/// One pipeline per test binary, loaded on first use.
pub fn pipeline() -> &'static FacePipeline {
    static PIPELINE: OnceLock<FacePipeline> = OnceLock::new();
    PIPELINE.get_or_init(|| match FacePipeline::load(&models_dir(), PipelineConfig::default()) {
        Ok(p) => p,
        Err(e) => panic!("cannot load the models: {e}"),
    })
}

/// The liveness models, loaded once per test binary.
pub fn liveness() -> &'static facegate::vision::liveness::LivenessModel {
    static LIVENESS: OnceLock<facegate::vision::liveness::LivenessModel> = OnceLock::new();
    LIVENESS.get_or_init(|| {
        facegate::vision::liveness::LivenessModel::load(&models_dir())
            .unwrap_or_else(|e| panic!("cannot load the liveness models from {}/pad: {e}", models_dir().display()))
    })
}

/// `../shared/spoof` (live and printed-photo webcam frames) beside the labelled photos.
pub fn spoof_dir() -> PathBuf {
    let dir = shared_faces().join("../spoof");
    assert!(
        dir.join("manifest.csv").is_file(),
        "the spoof set is missing: expected {} (live/, print/, screen/ and manifest.csv)",
        dir.display()
    );
    dir
}

/// The frames of `../shared/spoof/<class>/` (`live` or `print`) of one NUAA subject (`"0001"`), sorted.
pub fn nuaa_frames(class: &str, subject: &str) -> Vec<PathBuf> {
    let prefix = format!("nuaa_{subject}_");
    let mut files: Vec<PathBuf> = std::fs::read_dir(spoof_dir().join(class))
        .unwrap_or_else(|e| panic!("{}: {e}", spoof_dir().join(class).display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .collect();
    files.sort();
    files
}

/// The people of the labelled photos with at least `min_photos` photos each, and their photos' full paths,
/// in folder order.
pub fn people_with(min_photos: usize) -> Vec<(String, Vec<PathBuf>)> {
    let faces = shared_faces();
    let mut by_person = std::collections::BTreeMap::<String, Vec<PathBuf>>::new();
    let images = facegate::vision::eval::labelled_images(&faces).unwrap_or_else(|e| panic!("{}: {e}", faces.display()));
    for image in images {
        by_person.entry(image.identity).or_default().push(faces.join(image.path));
    }
    by_person.into_iter().filter(|(_, photos)| photos.len() >= min_photos).collect()
}

/// A frame of `photo` with a visitor's phone held up in it: the QR code of `text` (error correction M,
/// 4 px per module, a white quiet zone as a phone screen shows it) pasted over the photo's lower right.
pub fn photo_with_qr(photo: &std::path::Path, text: &str) -> facegate::capture::Frame {
    use facegate::capture::{decode_file, DecodeLimits, Frame};
    let base = decode_file(photo, DecodeLimits::default()).unwrap_or_else(|e| panic!("{}: {e}", photo.display()));
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M)
        .unwrap_or_else(|e| panic!("cannot encode {text:?}: {e}"));
    let modules = code.width() as u32;
    let dark = code.to_colors();
    let (scale, quiet) = (4u32, 4u32);
    let side = (modules + 2 * quiet) * scale;
    let (w, h) = (base.width().max(side + 8), base.height().max(side + 8));
    let (x0, y0) = (w - side - 4, h - side - 4);
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    for y in 0..h {
        for x in 0..w {
            let mut px = if x < base.width() && y < base.height() { base.pixel(x, y) } else { [90, 90, 90] };
            if (x0..x0 + side).contains(&x) && (y0..y0 + side).contains(&y) {
                let (mx, my) = ((x - x0) / scale, (y - y0) / scale);
                let inside = (quiet..quiet + modules).contains(&mx) && (quiet..quiet + modules).contains(&my);
                let is_dark = inside && dark[((my - quiet) * modules + (mx - quiet)) as usize] == qrcode::Color::Dark;
                px = if is_dark { [25, 25, 30] } else { [240, 240, 235] };
            }
            let i = ((y * w + x) * 3) as usize;
            rgb[i..i + 3].copy_from_slice(&px);
        }
    }
    Frame::from_rgb(w, h, rgb).unwrap_or_else(|e| panic!("{e}"))
}

/// Makes a replay camera see `photos` from now on: copies them into `replay` as whole files (the camera lists
/// the folder at every loop), named after `round`, then removes what it showed before.
pub fn show_in_replay(replay: &std::path::Path, round: usize, photos: &[PathBuf]) {
    let old: Vec<PathBuf> = std::fs::read_dir(replay).unwrap().map(|e| e.unwrap().path()).collect();
    for (i, photo) in photos.iter().enumerate() {
        let part = replay.join(format!("{round:03}-{i:02}.part"));
        std::fs::copy(photo, &part).unwrap();
        std::fs::rename(&part, replay.join(format!("{round:03}-{i:02}.jpg"))).unwrap();
    }
    for path in old {
        std::fs::remove_file(path).unwrap();
    }
}

/// Another process (Python's sqlite3, as a backup tool or a curious administrator would) takes the database's
/// exclusive lock (in WAL mode: no other connection can write; readers go on) and holds it for `secs`; returns
/// once the lock is held.
pub fn hold_exclusive_lock(db: &std::path::Path, secs: f64) -> std::process::Child {
    let script = format!(
        "import sqlite3, sys, time\n\
         c = sqlite3.connect({db:?}, isolation_level=None, timeout=30)\n\
         c.execute('BEGIN EXCLUSIVE')\n\
         c.execute('INSERT OR REPLACE INTO compound_state (name, value) VALUES (\"lock-test\", 1)')\n\
         print('locked', flush=True)\n\
         time.sleep({secs})\n\
         c.execute('COMMIT')\n\
         c.close()\n",
        db = db.to_str().unwrap()
    );
    let mut child = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    child
}
