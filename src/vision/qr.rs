//! QR: finds a visitor pass's QR code in a camera frame, so a visitor can show a pass to the same camera a
//! resident looks into. Needs no model: it keeps working when the face models are missing.
//!
//! Owns the grey copy of the frame that the decoder reads; that copy (and the decoder's thresholded version
//! of it) is wiped when dropped, like every frame buffer. It must never call rqrr's debugging helpers that
//! write images to disk, never run face detection, and never keep or log what it read: the text goes to the
//! caller in zeroizing memory.

use std::ops::{Deref, DerefMut};

use zeroize::{Zeroize, Zeroizing};

use crate::capture::Frame;

/// The longest text kept from a code; a visitor pass is 57 characters.
pub const MAX_QR_TEXT: usize = 512;

/// A grey pixel buffer that wipes itself on drop (rqrr keeps and thresholds its own copy of the image; this
/// type is that copy).
#[derive(Clone, Default)]
struct WipedGrey(Vec<u8>);

impl Deref for WipedGrey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for WipedGrey {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for WipedGrey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Reads the QR codes in a frame, up to `max` of them, largest image first is not guaranteed. Texts longer
/// than [`MAX_QR_TEXT`] or not valid UTF-8 are skipped. A frame with no code costs one threshold pass and a
/// search; nothing is allocated per code but the decoded text.
pub fn read_codes(frame: &Frame, max: usize) -> Vec<Zeroizing<String>> {
    // The code shown is untrusted input to a third-party decoder: a panic in it must cost one frame, not the
    // face thread.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_frame(frame, max))).unwrap_or_default()
}

fn decode_frame(frame: &Frame, max: usize) -> Vec<Zeroizing<String>> {
    let (w, h) = (frame.width(), frame.height());
    // Integer luma (BT.601): a QR code needs contrast, not colour accuracy.
    let grey: Vec<u8> = frame
        .rgb()
        .chunks_exact(3)
        .map(|p| ((u32::from(p[0]) * 77 + u32::from(p[1]) * 150 + u32::from(p[2]) * 29) >> 8) as u8)
        .collect();
    let Some(image) = image::ImageBuffer::<image::Luma<u8>, WipedGrey>::from_raw(w, h, WipedGrey(grey)) else {
        return Vec::new();
    };
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let mut found = Vec::new();
    for grid in prepared.detect_grids().into_iter().take(max.max(1) * 4) {
        if found.len() >= max {
            break;
        }
        let mut text = Vec::new();
        // A damaged or partial code is simply not read; the visitor holds it steadier.
        if grid.decode_to(&mut text).is_ok() && text.len() <= MAX_QR_TEXT {
            match String::from_utf8(text) {
                Ok(s) => found.push(Zeroizing::new(s)),
                Err(e) => e.into_bytes().zeroize(),
            }
        } else {
            text.zeroize();
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A frame with a QR code of `text` drawn `module` px per module at (x0, y0) on a mid-grey, noisy scene.
    pub(crate) fn frame_with_code(text: &str, module: u32, x0: u32, y0: u32) -> Frame {
        let (w, h) = (640u32, 480u32);
        let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).unwrap();
        let n = u32::try_from(code.width()).unwrap();
        let colors = code.to_colors();
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        for y in 0..h {
            for x in 0..w {
                let noise = ((x * 7919 + y * 104_729) % 23) as u8;
                let mut v = 110 + noise;
                // Quiet zone of 4 modules in white around the code.
                let (qx, qy) = (x as i64 - x0 as i64, y as i64 - y0 as i64);
                let span = i64::from((n + 8) * module);
                if (0..span).contains(&qx) && (0..span).contains(&qy) {
                    v = 235;
                    let (mx, my) = (qx / i64::from(module) - 4, qy / i64::from(module) - 4);
                    if (0..i64::from(n)).contains(&mx) && (0..i64::from(n)).contains(&my) {
                        let c = colors[(my * i64::from(n) + mx) as usize];
                        if c == qrcode::Color::Dark {
                            v = 20;
                        }
                    }
                }
                let i = ((y * w + x) * 3) as usize;
                rgb[i..i + 3].copy_from_slice(&[v, v, v.saturating_sub(5)]);
            }
        }
        Frame::from_rgb(w, h, rgb).unwrap()
    }

    #[test]
    fn a_pass_shown_to_the_camera_is_read() {
        let text = "FGP1:ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRST";
        for (module, x0, y0) in [(4, 10, 10), (6, 300, 150), (3, 200, 200)] {
            let found = read_codes(&frame_with_code(text, module, x0, y0), 1);
            assert_eq!(found.len(), 1, "module {module}px at ({x0},{y0})");
            assert_eq!(found[0].as_str(), text);
        }
    }

    #[test]
    fn a_frame_without_a_code_reads_nothing() {
        let rgb: Vec<u8> = (0..640 * 480 * 3).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        assert!(read_codes(&Frame::from_rgb(640, 480, rgb).unwrap(), 1).is_empty());
        let flat = Frame::from_rgb(2, 2, vec![0; 12]).unwrap();
        assert!(read_codes(&flat, 1).is_empty());
    }
}
