//! Policy: the pure core. Values in, values out: no file, clock, device or database. [`matching`] compares
//! a probe with the gallery under the thresholds [`calibration`] fits on impostor scores, [`decide`] turns events into door commands and
//! lights, [`lockout`] bounds PIN guessing per code and keypad-wide, [`counts`] aggregates passages and hides
//! small counts. The domain types they share: [`passage`] (entry method, outcome, hourly count) and
//! [`consent`] (a consent record, why face data is destroyed).

pub mod passage;
pub mod consent;
pub mod calibration;
pub mod matching;
pub mod decide;
pub mod lockout;
pub mod counts;

/// A time (Unix seconds) as RFC 3339 UTC, e.g. `2026-11-24T12:00:00Z`; times before 1970 show as 1970.
pub fn rfc3339(t: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(t).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}
