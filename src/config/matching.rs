//! `[matching]` and `[retention]`: when a face counts as a resident's, and how long a template is kept.
//!
//! Owns [`Threshold`] and the caps that follow from the privacy promise (a stranger's match chance at most
//! 10 %, no template kept over three years). Never reads the registry.

use serde::Deserialize;

use super::error::{float_in, invalid, ConfigError};
use crate::registry::RegistryPolicy;

/// Cosine threshold for a 1:1 verification when none is configured. Chosen from `facegate eval` on the
/// development photos: about FMR 1e-4 for SFace (see README, "Accuracy").
pub const DEFAULT_MATCH_THRESHOLD: f32 = 0.42;

/// `[matching]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatching {
    /// Cosine threshold for 1:1 verification.
    pub threshold: Option<f32>,
    /// Target chance a stranger matches anyone (1:N); the identification threshold follows it.
    pub target_fpir: Option<f64>,
}

/// `[retention]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Days an unused template is kept (at most 1095).
    pub max_unused_days: Option<u32>,
}

/// A cosine threshold, validated to lie in (-1, 1).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Threshold(f32);

impl Threshold {
    /// Validates a threshold.
    pub fn new(value: f32) -> Option<Self> {
        (value.is_finite() && value > -1.0 && value < 1.0).then_some(Self(value))
    }

    /// The value.
    pub fn get(self) -> f32 {
        self.0
    }
}

/// The 1:1 verification threshold.
pub(super) fn threshold(raw: &RawMatching) -> Result<Threshold, ConfigError> {
    let value = raw.threshold.unwrap_or(DEFAULT_MATCH_THRESHOLD);
    Threshold::new(value).ok_or_else(|| invalid("matching.threshold", format!("{value} is not a cosine in (-1, 1)")))
}

/// Identification and retention rules for the registry.
pub(super) fn registry(matching: &RawMatching, retention: &RawRetention) -> Result<RegistryPolicy, ConfigError> {
    let fpir = matching.target_fpir.unwrap_or(RegistryPolicy::default().target_fpir);
    let target_fpir = float_in("matching.target_fpir", fpir, fpir > 0.0 && fpir <= 0.1, "(0, 0.1]")?;
    let days = retention.max_unused_days.unwrap_or(1095);
    if !(1..=1095).contains(&days) {
        return Err(invalid(
            "retention.max_unused_days",
            format!("{days} is not in 1..=1095 (templates are kept at most three years)"),
        ));
    }
    Ok(RegistryPolicy { target_fpir, max_unused_secs: i64::from(days) * 86_400, ..RegistryPolicy::default() })
}
