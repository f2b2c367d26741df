//! Policy: the pure core. Values in, values out: no file, clock, device or database. [`matching`] compares
//! a probe with the gallery under calibrated thresholds, [`decide`] turns events into door commands and
//! lights, [`counts`] aggregates passages and hides small counts. The domain types they share: [`passage`]
//! (entry method, outcome, hourly count) and [`consent`] (a consent record, why face data is destroyed).

pub mod passage;
pub mod consent;
pub mod matching;
pub mod decide;
pub mod counts;
