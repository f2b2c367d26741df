//! The QR search every camera frame gets (`vision::qr::read_codes`), on hostile pixels: any frame size from 1x1
//! to 640x480, any pixels; texts come back bounded, never a panic.
#![no_main]

use facegate::capture::Frame;
use facegate::vision::qr::{read_codes, MAX_QR_TEXT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [w, h, rest @ ..] = data else { return };
    let (width, height) = (u32::from(*w).max(1) * 2, u32::from(*h).max(1) * 2);
    let (width, height) = (width.min(640), height.min(480));
    let n = (width * height) as usize;
    // The fuzzer's bytes as grey levels, repeated to fill the frame: patterns, not noise.
    let rgb: Vec<u8> = (0..n).flat_map(|i| [rest.get(i % rest.len().max(1)).copied().unwrap_or(0); 3]).collect();
    let Ok(frame) = Frame::from_rgb(width, height, rgb) else { return };
    for text in read_codes(&frame, 2) {
        assert!(text.len() <= MAX_QR_TEXT);
    }
});
