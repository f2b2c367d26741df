//! Image decoding as the replay camera and the CLI do it (`capture::decode_bytes`): any bytes are an error or a
//! frame whose size matches its pixels, never a panic or an allocation past the limits.
#![no_main]

use facegate::capture::{decode_bytes, DecodeLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The limits the camera's MJPEG buffers, the replay folder and the CLI decode with.
    let limits = DecodeLimits::default();
    if let Ok(frame) = decode_bytes(data, limits) {
        let pixels = u64::from(frame.width()) * u64::from(frame.height());
        assert!(pixels <= limits.max_pixels);
        assert_eq!(frame.rgb().len() as u64, pixels * 3);
    }
});
