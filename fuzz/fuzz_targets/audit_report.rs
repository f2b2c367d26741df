//! `facegate audit verify FILE`'s parser: any text is a report whose signature is checked or an error, never a
//! panic. A report that verifies must have been signed (none is, with random keys).
#![no_main]

use facegate::audit::sign::SignedReport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(signed) = serde_json::from_str::<SignedReport>(text) {
        let _ = signed.verify(None);
        let _ = signed.verify(Some("00"));
    }
});
