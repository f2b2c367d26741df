//! The config file (`config::RawConfig::parse` then `validate`): any text is a config or an error naming the
//! key, never a panic.
#![no_main]

use std::path::Path;

use facegate::config::RawConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(raw) = RawConfig::parse(text, Path::new("fuzz.toml")) {
        let _ = raw.validate();
    }
});
