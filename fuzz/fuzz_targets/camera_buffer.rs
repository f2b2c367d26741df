//! Camera buffers (`capture::buffer::frame_from_buffer`): any layout, any size a driver may report, any
//! bytes. A frame of the reported size or an error, never a panic, and nothing allocated for a size the
//! bytes do not back (libFuzzer's malloc limit catches that).
#![no_main]

use facegate::capture::buffer::{frame_from_buffer, PixelLayout};
use libfuzzer_sys::fuzz_target;

const LAYOUTS: [PixelLayout; 6] =
    [PixelLayout::Mjpeg, PixelLayout::Yuyv, PixelLayout::Nv12, PixelLayout::Grey, PixelLayout::Rgb, PixelLayout::Bgr];

fuzz_target!(|data: &[u8]| {
    let [kind, w0, w1, h0, h1, bytes @ ..] = data else { return };
    let layout = LAYOUTS[usize::from(kind % 6)];
    // Sizes up to 65535, or (high bit) shifted up to the whole u32 range a driver could claim.
    let shift = if kind & 0x80 != 0 { 16 } else { 0 };
    let width = u32::from(u16::from_le_bytes([*w0, *w1])) << shift;
    let height = u32::from(u16::from_le_bytes([*h0, *h1])) << shift;
    if let Ok(frame) = frame_from_buffer(layout, width, height, bytes) {
        if layout != PixelLayout::Mjpeg {
            assert_eq!((frame.width(), frame.height()), (width, height));
        }
        assert_eq!(frame.rgb().len() as u64, u64::from(frame.width()) * u64::from(frame.height()) * 3);
    }
});
