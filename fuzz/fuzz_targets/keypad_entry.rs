//! The keypad's `CODE # PIN #` entry (`devices::keypad::PinEntry`): any keys in any order give typing,
//! a malformed entry or a submitted code and PIN, never a panic; `*` always clears.
#![no_main]

use facegate::devices::keypad::{Entry, Key, PinEntry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut entry = PinEntry::default();
    for &b in data {
        let key = match b % 12 {
            10 => Key::Enter,
            11 => Key::Clear,
            d => Key::Digit(d),
        };
        match entry.push(key) {
            Entry::Submitted { code, .. } => {
                assert!(!code.is_empty() && code.bytes().all(|c| c.is_ascii_digit()));
                assert!(entry.is_empty(), "a submitted entry must be forgotten");
            }
            Entry::Malformed => assert!(entry.is_empty()),
            Entry::Typing => {}
        }
        if matches!(key, Key::Clear) {
            assert!(entry.is_empty());
        }
    }
});
