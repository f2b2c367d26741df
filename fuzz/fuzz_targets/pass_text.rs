//! A visitor pass's text, as typed by a scanner or read from a QR code: `looks_like_pass` and the authenticated
//! decode never panic, and a text that decodes is one the key signed (re-encoding gives the same pass).
#![no_main]

use facegate::protect::pass::{looks_like_pass, PassKey};
use facegate::protect::AeadKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = looks_like_pass(text);
    let secret = AeadKey::from_bytes([7; 32]);
    let key = PassKey::new(&secret);
    if let Ok(pass) = key.decode(text) {
        // Only a pass this key signed decodes; its canonical form decodes to the same pass.
        let again = key.decode(&key.encode(&pass)).expect("a pass's own encoding decodes");
        assert_eq!(again, pass);
    }
});
