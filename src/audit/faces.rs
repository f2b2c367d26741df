//! Whether a picture the byte scanners found could show a face: the gate's own detector (YuNet) looks at
//! every decoded image and every raster that passes as a photograph. What the audit protects is biometric
//! data; photographs without a face (a wallpaper, a screenshot, a product shot in a program's resources) are
//! not it, and no statistic of pixels tells a photo of a face from a photo of a building.
//!
//! Owns the detector the audit loads, and the conversion of a raster's bytes into a picture. Must never keep,
//! write or log a picture: the pixels live for one detection.

use std::path::Path;

use image::RgbImage;

use crate::capture::Frame;
use crate::vision::detect::{Detector, DetectorConfig};

/// Longer side a picture is scaled to before it is centred on a canvas twice its size: a crop that is all
/// face (112x112) is then a face among background, as the detector was trained to see one.
const SIDE: u32 = 320;

/// The face check in use.
#[derive(Debug)]
pub enum FaceCheck {
    /// YuNet, loaded from the device's models folder.
    Detector(Box<Detector>),
    /// No model at hand (the audit run away from the device): every photographic picture counts as one that
    /// could show a face, so nothing is missed and more is reported.
    Unavailable(String),
}

impl FaceCheck {
    /// YuNet from `models_dir`, or [`FaceCheck::Unavailable`] with the reason.
    pub fn load(models_dir: Option<&Path>) -> Self {
        let Some(dir) = models_dir else {
            return Self::Unavailable("no models folder given".into());
        };
        // The gate's own score threshold: the strongest non-face seen scores 0.78.
        let config = DetectorConfig { max_side: 2 * SIDE, ..DetectorConfig::default() };
        match Detector::load(dir, config) {
            Ok(detector) => Self::Detector(Box::new(detector)),
            Err(e) => Self::Unavailable(format!("the face detector did not load from {}: {e}", dir.display())),
        }
    }

    /// Why every photographic picture is reported, when it is.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            Self::Detector(_) => None,
            Self::Unavailable(why) => Some(why),
        }
    }

    /// Whether the detector finds a face in `picture` (always true without a detector).
    pub fn shows_face(&self, picture: &RgbImage) -> bool {
        match self {
            Self::Detector(_) => self.best_score(picture).is_some(),
            Self::Unavailable(_) => true,
        }
    }

    /// The detector's best face score in `picture`, if it finds one (`None` without a detector).
    pub fn best_score(&self, picture: &RgbImage) -> Option<f32> {
        let Self::Detector(detector) = self else { return None };
        let (w, h) = picture.dimensions();
        if w == 0 || h == 0 {
            return None;
        }
        let scale = f64::from(SIDE) / f64::from(w.max(h));
        let scaled = if scale < 1.0 {
            let (sw, sh) = (scaled_side(w, scale), scaled_side(h, scale));
            image::imageops::resize(picture, sw, sh, image::imageops::FilterType::Triangle)
        } else {
            picture.clone()
        };
        let (sw, sh) = scaled.dimensions();
        let mut canvas = RgbImage::from_pixel(2 * sw, 2 * sh, image::Rgb([128, 128, 128]));
        image::imageops::replace(&mut canvas, &scaled, i64::from(sw / 2), i64::from(sh / 2));
        let (cw, ch) = canvas.dimensions();
        let frame = Frame::from_rgb(cw, ch, canvas.into_raw()).ok()?;
        detector.detect(&frame).ok()?.first().map(|f| f.score)
    }
}

fn scaled_side(side: u32, scale: f64) -> u32 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let scaled = (f64::from(side) * scale).round() as u32;
    scaled.max(1)
}

/// The pictures a raster's bytes could be: `rows` rows of `stride` bytes (or a pixel more or less: the row
/// length found can be off by one where the picture changes mostly along its diagonals), `step` bytes a
/// pixel, as grey (the mean of a pixel's bytes; for two bytes a pixel, YUYV's or UYVY's luma, both tried).
/// The bytes need not start at a row's start: each picture is laid twice side by side, so that a face split
/// across its left and right edges is whole in the middle.
pub fn raster_pictures(bytes: &[u8], stride: usize, step: usize, rows: usize) -> Vec<RgbImage> {
    let step = step.max(1);
    let phases: &[usize] = if step == 2 { &[0, 1] } else { &[0] };
    let mut pictures = Vec::new();
    for stride in [stride, stride + step, stride.saturating_sub(step)] {
        let width = stride / step;
        let rows = rows.min(bytes.len() / stride.max(1));
        let (Ok(w), Ok(h)) = (u32::try_from(width), u32::try_from(rows)) else { continue };
        if w == 0 || h == 0 {
            continue;
        }
        for &phase in phases {
            pictures.push(RgbImage::from_fn(2 * w, h, |x, y| {
                let at = y as usize * stride + (x % w) as usize * step;
                let pixel = &bytes[at..at + step];
                let grey = if step == 2 {
                    pixel[phase]
                } else {
                    #[allow(clippy::cast_possible_truncation)]
                    let mean = (pixel.iter().map(|b| u32::from(*b)).sum::<u32>() / step as u32) as u8;
                    mean
                };
                image::Rgb([grey, grey, grey])
            }));
        }
    }
    pictures
}
