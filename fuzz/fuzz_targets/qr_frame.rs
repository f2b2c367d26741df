//! The QR search every camera frame gets (`vision::qr::read_codes`), on hostile pixels, never a panic; texts
//! come back bounded. Two kinds of frame, by the first byte's low bit:
//! - a pattern: any size from 2x2 to 640x480, the fuzzer's bytes as grey levels repeated to fill it;
//! - a real code: the fuzzer's bytes encoded as a QR code (any version and error-correction level) drawn at a
//!   chosen module size and place, with up to 31 modules flipped. Random pixels almost never form the three
//!   finder patterns, so without these frames the decoder's grid reading, error correction and text paths
//!   (what a visitor's hostile code reaches) would go untested. An undamaged code that is read must read back
//!   exactly what was encoded.
//!
//! The decoder's own panics (rqrr 0.11 asserts on some damaged codes: upstream WanzenBug/rqrr#54, found by this
//! target) are contained as in the daemon, which installs the same hook: `read_codes` counts them and loses
//! that frame's read. Any other panic, ours around the decoder included, still aborts and is a finding.
#![no_main]

use facegate::capture::Frame;
use facegate::vision::qr::{read_codes, MAX_QR_TEXT};
use libfuzzer_sys::fuzz_target;
use qrcode::{Color, EcLevel, QrCode};

const MAX_W: u32 = 640;
const MAX_H: u32 = 480;

fuzz_target!(init: { facegate::vision::qr::quiet_decoder_panics(); }, |data: &[u8]| {
    let [mode, a, b, rest @ ..] = data else { return };
    let (frame, clean) = if mode & 1 == 0 {
        (pattern_frame(*a, *b, rest), None)
    } else {
        match code_frame(*mode, *a, *b, rest) {
            Some((frame, clean)) => (Some(frame), clean),
            None => return,
        }
    };
    let Some(frame) = frame else { return };
    for text in read_codes(&frame, 2) {
        assert!(text.len() <= MAX_QR_TEXT);
        if let Some(encoded) = clean {
            assert_eq!(text.as_bytes(), encoded, "an undamaged code read back as something else");
        }
    }
});

/// The fuzzer's bytes as grey levels, repeated to fill a frame: patterns, not noise.
fn pattern_frame(w: u8, h: u8, rest: &[u8]) -> Option<Frame> {
    let (width, height) = ((u32::from(w).max(1) * 2).min(MAX_W), (u32::from(h).max(1) * 2).min(MAX_H));
    let n = (width * height) as usize;
    let rgb: Vec<u8> = (0..n).flat_map(|i| [rest.get(i % rest.len().max(1)).copied().unwrap_or(0); 3]).collect();
    Frame::from_rgb(width, height, rgb).ok()
}

/// `rest` holds the text, then two bytes per flipped module (their count in `mode`'s top five bits). The frame
/// is as small as the code, its quiet zone and its offset need, within 640x480. Returns the frame and, when no
/// module was flipped, the text it must read back as.
fn code_frame<'a>(mode: u8, a: u8, b: u8, rest: &'a [u8]) -> Option<(Frame, Option<&'a [u8]>)> {
    let level = [EcLevel::L, EcLevel::M, EcLevel::Q, EcLevel::H][usize::from((mode >> 1) & 3)];
    let flips = usize::from(mode >> 3);
    let (text, damage) = rest.split_at(rest.len().checked_sub(flips * 2)?);
    let code = QrCode::with_error_correction_level(text, level).ok()?;
    let n = code.width();
    let mut colors = code.to_colors();
    for pair in damage.chunks_exact(2) {
        let i = (usize::from(pair[0]) % n) * n + usize::from(pair[1]) % n;
        colors[i] = if colors[i] == Color::Dark { Color::Light } else { Color::Dark };
    }
    // 1 to 8 px a module; the code's corner at 0 to 120 px from the frame's, on each axis.
    let module = u32::from(a % 8) + 1;
    let (x0, y0) = (u32::from(a / 8) * 4, u32::from(b % 32) * 4);
    let n32 = u32::try_from(n).ok()?;
    let side = (n32 + 8) * module;
    let (width, height) = (x0 + side, y0 + side);
    if width > MAX_W || height > MAX_H {
        return None;
    }
    // Contrast from the last byte: a washed-out code on a grey scene down to black on white.
    let (light, dark) = (255 - (b / 32) * 12, (b / 32) * 12);
    let mut rgb = vec![128u8; (width * height * 3) as usize];
    for y in y0..height {
        for x in x0..width {
            let (mx, my) = ((x - x0) / module, (y - y0) / module);
            let inside = (4..4 + n32).contains(&mx) && (4..4 + n32).contains(&my);
            let v =
                if inside && colors[(my - 4) as usize * n + (mx - 4) as usize] == Color::Dark { dark } else { light };
            let i = ((y * width + x) * 3) as usize;
            rgb[i..i + 3].fill(v);
        }
    }
    let frame = Frame::from_rgb(width, height, rgb).ok()?;
    Some((frame, (flips == 0).then_some(text)))
}
