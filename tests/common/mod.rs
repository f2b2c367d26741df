//! Helpers shared by the integration tests: where the labelled photos and the models are, and one loaded
//! pipeline per test binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use facegate::pipeline::{FacePipeline, PipelineConfig};

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
        dir.join(facegate::model::YUNET.file_name).is_file() && dir.join(facegate::model::SFACE.file_name).is_file(),
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

/// The people of the labelled photos with at least `min_photos` photos each, and their photos' full paths,
/// in folder order.
pub fn people_with(min_photos: usize) -> Vec<(String, Vec<PathBuf>)> {
    let faces = shared_faces();
    let mut by_person = std::collections::BTreeMap::<String, Vec<PathBuf>>::new();
    let images = facegate::eval::labelled_images(&faces).unwrap_or_else(|e| panic!("{}: {e}", faces.display()));
    for image in images {
        by_person.entry(image.identity).or_default().push(faces.join(image.path));
    }
    by_person.into_iter().filter(|(_, photos)| photos.len() >= min_photos).collect()
}
