//! The accuracy bars on the shared development photos, measured with the library's own evaluation:
//! faces found in >= 99.5 % of the LFW pairs' images with EER <= 1.0 % (OpenCV: 0.67 %), and over all pairs of
//! labelled images FNMR <= 2.0 % at FMR 1e-4 (OpenCV: 1.36 %). Every image is embedded once (about a minute
//! on two cores); the embeddings stay in memory.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use facegate::capture::DecodeLimits;
use facegate::vision::eval::{self, EmbeddedSet, FMR_TARGETS};

#[test]
fn lfw_pairs_and_all_pairs_meet_the_bars() {
    let faces = common::shared_faces();
    let labelled = eval::labelled_images(&faces).unwrap();
    assert!(labelled.len() > 2000, "expected ~2,500 labelled photos, found {}", labelled.len());
    let paths: Vec<PathBuf> = labelled.iter().map(|l| l.path.clone()).collect();
    let set = EmbeddedSet::embed(common::pipeline(), &faces, &paths, DecodeLimits::default(), &|| {});

    // LFW View-2 folds 1 and 3.
    let pairs = eval::read_pairs(&faces.join("pairs.csv"), "lfw").unwrap();
    assert_eq!(pairs.len(), 1191);
    let index: HashMap<PathBuf, usize> = paths.iter().cloned().enumerate().map(|(i, p)| (p, i)).collect();
    let mut lfw_images: Vec<&PathBuf> = pairs.iter().flat_map(|p| [&p.path_a, &p.path_b]).collect();
    lfw_images.sort();
    lfw_images.dedup();
    let lfw_detected = lfw_images.iter().filter(|p| index.get(**p).and_then(|&i| set.get(i)).is_some()).count();
    let detected_rate = lfw_detected as f64 / lfw_images.len() as f64;
    let (genuine, impostor) = eval::score_listed_pairs(&pairs, &set.rows(), &index);
    let lfw = eval::verification_metrics(&genuine, &impostor, &FMR_TARGETS).unwrap();
    println!(
        "LFW pairs: {} images, detected {:.2} %, EER {:.3} %, accuracy {:.3} %",
        lfw_images.len(),
        100.0 * detected_rate,
        100.0 * lfw.eer,
        100.0 * lfw.accuracy
    );
    assert!(detected_rate >= 0.995, "faces found in {:.2} % of LFW images", 100.0 * detected_rate);
    assert!(lfw.eer <= 0.010, "LFW EER {:.3} %", 100.0 * lfw.eer);

    // Every genuine and impostor pair of the labelled photos.
    let identities: Vec<&str> = labelled.iter().map(|l| l.identity.as_str()).collect();
    let (genuine, impostor) = eval::score_all_pairs(&identities, &set.rows());
    assert!(impostor.len() > 3_000_000, "{} impostor pairs", impostor.len());
    let all = eval::verification_metrics(&genuine, &impostor, &FMR_TARGETS).unwrap();
    let at_1e4 = all.operating_points[1];
    println!(
        "all pairs: {} genuine, {} impostor, detected {}/{}, EER {:.3} %, FNMR@1e-3 {:.3} %, FNMR@1e-4 {:.3} % (t {:.3}), FNMR@1e-5 {:.3} %",
        genuine.len(),
        impostor.len(),
        set.detected(),
        set.len(),
        100.0 * all.eer,
        100.0 * all.operating_points[0].fnmr,
        100.0 * at_1e4.fnmr,
        at_1e4.threshold,
        100.0 * all.operating_points[2].fnmr
    );
    assert!(at_1e4.fmr <= 1e-4);
    assert!(at_1e4.fnmr <= 0.020, "FNMR at FMR 1e-4: {:.3} %", 100.0 * at_1e4.fnmr);
}
