//! QR: finds a visitor pass's QR code in a camera frame, so a visitor can show a pass to the same camera a
//! resident looks into. Needs no model: it keeps working when the face models are missing.
//!
//! Owns the grey copy of the frame that the decoder reads; that copy (and the decoder's thresholded version
//! of it) is wiped when dropped, like every frame buffer. Also owns the containment of the decoder's panics:
//! rqrr 0.11 asserts on some damaged codes (upstream issue WanzenBug/rqrr#54, found here by fuzzing), and such
//! a panic costs the frame's QR read, is counted, and is summarised in the log at most once a minute.
//!
//! It must never call rqrr's debugging helpers that write images to disk, never run face detection, and never
//! keep or log what it read: the text goes to the caller in zeroizing memory.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

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

thread_local! {
    /// Set while this thread runs the decoder: a panic then is the decoder's, and [`read_codes`] contains it.
    static IN_DECODER: Cell<bool> = const { Cell::new(false) };
}

/// Frames whose QR read a decoder panic cost, since start.
static DECODER_PANICS: AtomicU64 = AtomicU64::new(0);

/// The least time between two warnings about decoder panics: a damaged code held to the camera panics the
/// decoder on every frame, 15 times a second.
const PANIC_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Keeps the decoder's panics out of standard error (the journal): installed once, at start, it hands every
/// other panic to the hook it replaces. Without it each such panic prints its message, once a frame.
pub fn quiet_decoder_panics() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_DECODER.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Reads the QR codes in a frame, up to `max` of them, largest image first is not guaranteed. Texts longer
/// than [`MAX_QR_TEXT`] or not valid UTF-8 are skipped. A frame with no code costs one threshold pass and a
/// search; nothing is allocated per code but the decoded text.
pub fn read_codes(frame: &Frame, max: usize) -> Vec<Zeroizing<String>> {
    let grey = grey_of(frame);
    // The code shown is untrusted input to a third-party decoder: a panic in it must cost one frame's read,
    // not the face thread.
    IN_DECODER.with(|d| d.set(true));
    let read =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(frame.width(), frame.height(), grey, max)));
    IN_DECODER.with(|d| d.set(false));
    read.unwrap_or_else(|_| {
        decoder_panicked();
        Vec::new()
    })
}

fn decoder_panicked() {
    static LAST_WARNING: Mutex<Option<Instant>> = Mutex::new(None);
    let total = DECODER_PANICS.fetch_add(1, Ordering::Relaxed) + 1;
    let mut last = LAST_WARNING.lock().unwrap_or_else(PoisonError::into_inner);
    if last.is_none_or(|at| at.elapsed() >= PANIC_WARNING_EVERY) {
        *last = Some(Instant::now());
        tracing::warn!(
            "the QR decoder failed on a damaged or unusual code ({total} frames since start, at most one warning \
             a minute); those frames' codes were not read, the other ways in are unaffected"
        );
    }
}

fn grey_of(frame: &Frame) -> WipedGrey {
    // Integer luma (BT.601): a QR code needs contrast, not colour accuracy.
    WipedGrey(
        frame
            .rgb()
            .chunks_exact(3)
            .map(|p| ((u32::from(p[0]) * 77 + u32::from(p[1]) * 150 + u32::from(p[2]) * 29) >> 8) as u8)
            .collect(),
    )
}

/// The decoder's part: rqrr's threshold, grid search and decoding, on the frame's grey copy.
fn decode(w: u32, h: u32, grey: WipedGrey, max: usize) -> Vec<Zeroizing<String>> {
    let Some(image) = image::ImageBuffer::<image::Luma<u8>, WipedGrey>::from_raw(w, h, grey) else {
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

    /// A damaged code (version 1, 1 px a module, five modules flipped) on which rqrr 0.11 asserts in
    /// `Perspective::map`; found by `fuzz/fuzz_targets/qr_frame.rs`. The read is lost and counted.
    #[test]
    fn a_code_that_panics_the_decoder_costs_its_read_and_is_counted() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qr-decoder-panic.png");
        let frame = crate::capture::decode_file(&path, crate::capture::DecodeLimits::default()).unwrap();
        let before = DECODER_PANICS.load(Ordering::Relaxed);
        assert!(read_codes(&frame, 2).is_empty());
        assert!(
            DECODER_PANICS.load(Ordering::Relaxed) > before,
            "the fixture no longer panics the decoder: is rqrr#54 fixed?"
        );
        assert!(!IN_DECODER.with(Cell::get), "the thread is still marked as in the decoder");
    }
}
