//! `[matching]` and `[retention]`: when a face counts as a resident's, and how long a template is kept.
//!
//! Owns [`Threshold`] and the caps that follow from the privacy promise (a stranger's match chance at most
//! 10 %, no template kept over three years). Never reads the registry.

use serde::Deserialize;

use super::error::{float_in, invalid, ConfigError};
use crate::policy::calibration::Calibration;
use crate::policy::lockout::PinBudget;
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
    /// The impostor-score tail of this camera and model (`facegate calibrate` prints it); default: SFace on
    /// the development photos.
    pub calibration: Option<RawCalibration>,
}

/// `[matching.calibration]`, as `facegate calibrate` prints it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalibration {
    /// The anchor threshold (the impostor quantile at `rate`).
    pub anchor: f32,
    /// The fraction of impostor scores at or above the anchor.
    pub rate: f64,
    /// Scale of the fitted tail.
    pub scale: f64,
    /// Shape of the fitted tail.
    pub shape: f64,
}

/// Checks a configured calibration: a tail that could open the gate to strangers is refused.
fn calibration(raw: Option<&RawCalibration>) -> Result<Calibration, ConfigError> {
    let Some(raw) = raw else { return Ok(Calibration::SFACE) };
    let anchor =
        float_in("matching.calibration.anchor", f64::from(raw.anchor), (0.0..1.0).contains(&raw.anchor), "(0, 1)")?;
    let rate = float_in("matching.calibration.rate", raw.rate, raw.rate > 0.0 && raw.rate <= 0.05, "(0, 0.05]")?;
    let scale = float_in("matching.calibration.scale", raw.scale, raw.scale > 0.0 && raw.scale < 1.0, "(0, 1)")?;
    let shape = float_in("matching.calibration.shape", raw.shape, raw.shape > -1.0 && raw.shape < 1.0, "(-1, 1)")?;
    #[allow(clippy::cast_possible_truncation)]
    let anchor = anchor as f32;
    Ok(Calibration { anchor, rate, scale, shape })
}

/// `[pin]`: the keypad-wide budget of failed PIN attempts (see `policy::lockout`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPin {
    /// Failures over all codes allowed in any hour (default 20, at most 50).
    pub failures_per_hour: Option<u32>,
    /// Failures over all codes allowed in any 24 hours (default 60, at most 200).
    pub failures_per_day: Option<u32>,
}

/// The highest budget the config accepts: `tests/pin_guessing.rs` shows that even at this budget 30 days of
/// guessing open a door with odds below 1 in 100.
pub const MAX_PIN_BUDGET: PinBudget = PinBudget { per_hour: 50, per_day: 200 };

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

/// Identification, retention and PIN rules for the registry.
pub(super) fn registry(
    matching: &RawMatching,
    retention: &RawRetention,
    pin: &RawPin,
) -> Result<RegistryPolicy, ConfigError> {
    let fpir = matching.target_fpir.unwrap_or(RegistryPolicy::default().target_fpir);
    let target_fpir = float_in("matching.target_fpir", fpir, fpir > 0.0 && fpir <= 0.1, "(0, 0.1]")?;
    let days = retention.max_unused_days.unwrap_or(1095);
    if !(1..=1095).contains(&days) {
        return Err(invalid(
            "retention.max_unused_days",
            format!("{days} is not in 1..=1095 (templates are kept at most three years)"),
        ));
    }
    let default = PinBudget::default();
    let per_hour = pin.failures_per_hour.unwrap_or(default.per_hour);
    if !(1..=MAX_PIN_BUDGET.per_hour).contains(&per_hour) {
        let range = format!("1..={}", MAX_PIN_BUDGET.per_hour);
        return Err(invalid("pin.failures_per_hour", format!("{per_hour} is not in {range}")));
    }
    let per_day = pin.failures_per_day.unwrap_or(default.per_day.max(per_hour));
    if !(per_hour..=MAX_PIN_BUDGET.per_day).contains(&per_day) {
        let range = format!("{per_hour}..={} (at least the hourly budget)", MAX_PIN_BUDGET.per_day);
        return Err(invalid("pin.failures_per_day", format!("{per_day} is not in {range}")));
    }
    Ok(RegistryPolicy {
        target_fpir,
        max_unused_secs: i64::from(days) * 86_400,
        pin_budget: PinBudget { per_hour, per_day },
        calibration: calibration(matching.calibration.as_ref())?,
    })
}
