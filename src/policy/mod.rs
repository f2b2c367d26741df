//! Policy: the pure core. Values in, values out: no file, clock, device or database. [`matching`] compares
//! a probe with the gallery under calibrated thresholds, [`decide`] turns events into door commands and
//! lights, [`counts`] aggregates passages and hides small counts.

pub mod counts;
pub mod decide;
pub mod matching;
