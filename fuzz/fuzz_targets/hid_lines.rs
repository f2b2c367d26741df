//! A USB pass scanner's key events (`devices::scanner::HidLineDecoder`), in any order with any values and
//! timing: never a panic, and a completed line is never longer than a pass can be.
#![no_main]

use std::time::{Duration, Instant};

use evdev::KeyCode;
use facegate::devices::scanner::{HidLineDecoder, MAX_LINE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut decoder = HidLineDecoder::new();
    let mut at = start;
    for event in data.chunks_exact(4) {
        let key = KeyCode::new(u16::from_le_bytes([event[0], event[1]]) % 0x300);
        let value = i32::from(event[2] % 4) - 1;
        at += Duration::from_millis(u64::from(event[3]) * 8);
        if let Some(line) = decoder.push(key, value, at) {
            assert!(!line.is_empty() && line.len() <= MAX_LINE);
        }
    }
    decoder.expire(at + Duration::from_secs(60));
    assert!(decoder.is_empty(), "a partial line outlived the idle reset");
});
