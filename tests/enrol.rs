//! The enrolment quality gate on real photos: most frontal LFW faces pass, a blurred copy of the same face
//! does not, and a session over several photos of one person averages to an embedding that matches that
//! person better than any of the single photos does on average. Printed photos held up to a webcam (NUAA, in
//! `../shared/spoof`) are never used for enrolment, so nobody can be enrolled from a photo; the same people,
//! live in front of the same camera, are.
#![allow(clippy::unwrap_used)]

mod common;

use facegate::capture::{decode_file, DecodeLimits, Frame};
use facegate::vision::align;
use facegate::vision::enrol::{EnrolmentSession, FrameVerdict, QualityGate, QualityIssue};
use facegate::vision::liveness::DEFAULT_LIVE_THRESHOLD;

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
    let images = facegate::vision::eval::labelled_images(&common::shared_faces()).unwrap();
    let (mut passed, mut tried) = (0, 0);
    for image in images.iter().filter(|i| i.identity.as_str() < "person_1149").step_by(37).take(60) {
        let frame = frame(image.path.to_str().unwrap());
        let faces = pipeline.detector().detect(&frame).unwrap();
        let Some(face) = facegate::vision::detect::largest(&faces) else { continue };
        tried += 1;
        if gate.check(face, &align::align(&frame, &face.landmarks).unwrap()).is_ok() {
            passed += 1;
        }
    }
    assert!(tried >= 55 && passed * 10 >= tried * 7, "{passed} of {tried} frontal news photos passed the gate");

    let sharp = frame("person_0003/img_0001.jpg");
    let soft = blurred(&sharp);
    let faces = pipeline.detector().detect(&soft).unwrap();
    let face = facegate::vision::detect::largest(&faces).unwrap();
    let verdict = gate.check(face, &align::align(&soft, &face.landmarks).unwrap());
    assert!(matches!(verdict, Err(QualityIssue::Blurred { .. })), "{verdict:?}");
}

#[test]
fn a_session_over_one_persons_photos_completes() {
    let pipeline = common::pipeline();
    let person = common::shared_faces().join("person_0030");
    let files = facegate::capture::replay::list_images(&person);
    assert!(files.len() >= 5);
    let mut session = EnrolmentSession::new(3, QualityGate::default(), DEFAULT_LIVE_THRESHOLD);
    for file in &files[..files.len() - 1] {
        let frame = decode_file(file, DecodeLimits::default()).unwrap();
        let reading = pipeline.read(&frame).unwrap();
        let aligned = align::align(&frame, &reading.face.landmarks).unwrap();
        let live = common::liveness().score(&frame, &reading.face.bbox).unwrap();
        if let FrameVerdict::Accepted(_) = session.offer(&reading.face, &aligned, reading.embedding, live) {
            if session.is_complete() {
                break;
            }
        }
    }
    let template = session.finish().expect("three good photos of person_0030");
    let probe = pipeline.read_file(files.last().unwrap(), DecodeLimits::default()).unwrap().embedding;
    assert!(template.cosine(&probe) > 0.45, "cosine {}", template.cosine(&probe));
}

/// Every printed-photo frame of the four NUAA subjects is offered to an enrolment session: none is used (each
/// is refused as not live, not for its quality), so no session completes. The same subjects' live frames
/// complete a session, and the template it makes matches the person's own printed photo: the photo would
/// have been enrolled as that resident without the liveness check.
#[test]
fn nobody_is_enrolled_from_a_printed_photo_and_the_live_person_is() {
    let pipeline = common::pipeline();
    let liveness = common::liveness();
    for subject in ["0001", "0002", "0003", "0004"] {
        let (live, print) = (common::nuaa_frames("live", subject), common::nuaa_frames("print", subject));
        assert!(live.len() >= 30 && print.len() >= 30, "subject {subject}'s frames are missing from the spoof set");
        let mut from_photo = EnrolmentSession::new(1, QualityGate::default(), DEFAULT_LIVE_THRESHOLD);
        let (mut not_live, mut other) = (0, 0);
        for path in &print {
            let frame = decode_file(path, DecodeLimits::default()).unwrap();
            match from_photo.offer_frame(pipeline, liveness, &frame) {
                Ok(FrameVerdict::Rejected(QualityIssue::NotLive { score })) => {
                    assert!((0.0..DEFAULT_LIVE_THRESHOLD).contains(&score));
                    not_live += 1;
                }
                Ok(FrameVerdict::Accepted(_) | FrameVerdict::Inconsistent) => {
                    panic!("{}: a printed photo was used for enrolment", path.display())
                }
                Ok(FrameVerdict::Rejected(_)) | Err(_) => other += 1,
            }
        }
        eprintln!("subject {subject}: {not_live} print frames refused as not live, {other} for quality or no face");
        assert!(not_live * 10 >= print.len() * 7, "the liveness check saw too few of the prints: {not_live}");
        assert!(from_photo.finish().is_none(), "subject {subject} was enrolled from a printed photo");

        let mut in_person = EnrolmentSession::new(3, QualityGate::default(), DEFAULT_LIVE_THRESHOLD);
        for path in &live {
            if in_person.is_complete() {
                break;
            }
            let _ = in_person.offer_frame(pipeline, liveness, &decode_file(path, DecodeLimits::default()).unwrap());
        }
        let template = in_person.finish().unwrap_or_else(|| panic!("subject {subject} could not enrol in person"));
        let photo = pipeline.read_file(&print[0], DecodeLimits::default()).unwrap();
        assert!(template.cosine(&photo.embedding) > 0.42, "subject {subject}: the print is not of the same person");
    }
}
