//! The accuracy bars on the shared development photos, measured with the library's own evaluation:
//! faces found in >= 99.5 % of the LFW pairs' images with EER <= 1.0 % (OpenCV: 0.67 %), and over all pairs of
//! labelled images FNMR <= 2.0 % at FMR 1e-4 (OpenCV: 1.36 %). Every image is embedded once (about a minute
//! on two cores); the embeddings stay in memory. Then open-set identification as the gate decides.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use facegate::capture::DecodeLimits;
use facegate::vision::embed::Embedding;
use facegate::vision::eval::open_set::plan::SplitRule;
use facegate::vision::eval::open_set::score::{Fusion, Rule};
use facegate::vision::eval::open_set::{self, median};
use facegate::vision::eval::{self, FMR_TARGETS};

/// Both checks read the photos once, the way the open-set evaluation reads them (every photo through the
/// vision path, each person through the enrolment session).
#[test]
fn verification_bars_and_open_set_identification() {
    let faces = common::shared_faces();
    let observed =
        open_set::observe(common::pipeline(), None, 3, &faces, DecodeLimits::default(), &|_| {}, &|| {}).unwrap();
    lfw_pairs_and_all_pairs_meet_the_bars(&faces, &observed);
    open_set_calibration_holds_on_strangers_and_the_gate_beats_a_single_frame(&observed);
}

fn lfw_pairs_and_all_pairs_meet_the_bars(faces: &std::path::Path, observed: &open_set::Observed) {
    let labelled = eval::labelled_images(faces).unwrap();
    assert!(labelled.len() > 2000, "expected ~2,500 labelled photos, found {}", labelled.len());
    let paths: Vec<PathBuf> = labelled.iter().map(|l| l.path.clone()).collect();
    assert_eq!(paths, observed.paths, "the open-set reading keeps the labelled order");
    let rows: Vec<Option<&[f32]>> = observed.embeddings.iter().map(|e| e.as_ref().map(Embedding::as_slice)).collect();
    let detected = rows.iter().filter(|r| r.is_some()).count();

    // LFW View-2 folds 1 and 3.
    let pairs = eval::read_pairs(&faces.join("pairs.csv"), "lfw").unwrap();
    assert_eq!(pairs.len(), 1191);
    let index: HashMap<PathBuf, usize> = paths.iter().cloned().enumerate().map(|(i, p)| (p, i)).collect();
    let mut lfw_images: Vec<&PathBuf> = pairs.iter().flat_map(|p| [&p.path_a, &p.path_b]).collect();
    lfw_images.sort();
    lfw_images.dedup();
    let lfw_detected = lfw_images.iter().filter(|p| index.get(**p).and_then(|&i| rows[i]).is_some()).count();
    let detected_rate = lfw_detected as f64 / lfw_images.len() as f64;
    let (genuine, impostor) = eval::score_listed_pairs(&pairs, &rows, &index);
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
    let (genuine, impostor) = eval::score_all_pairs(&identities, &rows);
    assert!(impostor.len() > 3_000_000, "{} impostor pairs", impostor.len());
    let all = eval::verification_metrics(&genuine, &impostor, &FMR_TARGETS).unwrap();
    let at_1e4 = all.operating_points[1];
    println!(
        "all pairs: {} genuine, {} impostor, detected {}/{}, EER {:.3} %, FNMR@1e-3 {:.3} %, FNMR@1e-4 {:.3} % (t {:.3}), FNMR@1e-5 {:.3} %",
        genuine.len(),
        impostor.len(),
        detected,
        rows.len(),
        100.0 * all.eer,
        100.0 * all.operating_points[0].fnmr,
        100.0 * at_1e4.fnmr,
        at_1e4.threshold,
        100.0 * all.operating_points[2].fnmr
    );
    assert!(at_1e4.fmr <= 1e-4);
    assert!(at_1e4.fnmr <= 0.020, "FNMR at FMR 1e-4: {:.3} %", 100.0 * at_1e4.fnmr);
}

/// Open-set identification as the gate decides, on people the threshold was never calibrated on: the
/// calibration's FMR (fitted on fused probes, as the gate searches) holds on the people each fold left out, a
/// stranger's fused search matches at about the target FPIR, and the gate's fusion and agreement refuse fewer
/// residents than one frame alone at the same measured FPIR.
fn open_set_calibration_holds_on_strangers_and_the_gate_beats_a_single_frame(observed: &open_set::Observed) {
    let rule = SplitRule { folds: 2, repeats: 2, gallery_sizes: vec![10], draws: 10, seed: 7 };
    let folds = open_set::splits(observed, &rule, 3).unwrap();
    let target = 1e-3;
    // The gate as it runs: the approach's frames fused by their mean, 2 of 3 fused probes agreeing.
    let gate = Rule::Gate { required: 2, window: 3, fusion: Fusion::Mean, margin: 0.0 };
    let gate_report = open_set::run_rule(&observed.people, &folds, &observed.views(), gate, target, None, 3).unwrap();
    let single =
        open_set::run_rule(&observed.people, &folds, &observed.views(), Rule::SingleFrame, target, None, 3).unwrap();

    // The calibration fitted on the other folds, checked on each fold's own people.
    let pairs: usize = gate_report.folds.iter().map(|f| f.held_out_pairs).sum();
    let hits: f64 = gate_report.folds.iter().map(|f| f.held_out[0].2 * f.held_out_pairs as f64).sum();
    let held_out_fmr = hits / pairs as f64;
    println!("held-out FMR at the 1e-3 threshold: {held_out_fmr:.2e} over {pairs} pairs");
    assert!((0.5e-3..=2e-3).contains(&held_out_fmr), "held-out FMR {held_out_fmr:.2e} for a target of 1e-3");

    let small = &gate_report.galleries[0];
    assert_eq!(small.size, 10);
    let searches = &small.configured;
    println!("10 residents: search FPIR {:.2e} ({} searches)", searches.search_fpir(), searches.searches);
    assert!(searches.searches > 20_000, "{} stranger searches", searches.searches);
    assert!(
        (target / 2.0..=target * 2.0).contains(&searches.search_fpir()),
        "search FPIR {:.2e} at the configured threshold, target {target:.0e}",
        searches.search_fpir()
    );
    assert_eq!(median(&searches.frames_to_decision), 2.0, "2 of 3 frames decide on the second frame");

    let largest = gate_report.galleries.last().unwrap();
    let single_largest = single.galleries.last().unwrap();
    let at = |g: &open_set::GalleryFigures| g.at_fpir[1].1.map(|(fnir, _, _)| fnir).unwrap();
    println!(
        "{} residents: FNIR at FPIR 1e-3, gate {:.3} %, single frame {:.3} %",
        largest.size,
        100.0 * at(largest),
        100.0 * at(single_largest)
    );
    assert!(largest.size >= 50, "the folder allows galleries of {} residents", largest.size);
    assert!(at(largest) <= at(single_largest), "the gate's fusion and agreement refuse more residents than one frame");
    assert!(at(largest) < 0.01, "FNIR at FPIR 1e-3: {:.3} %", 100.0 * at(largest));
}
