//! `[gate]`: the daemon's timing, frame agreement and when faces are matched.
//!
//! Owns the ranges that keep the door safe to run (a relay pulse that ends, a held-open alarm that fires) and
//! the spelling of `gate.intent` ([`Intent`], matched by serde). Never decides an admission: it only builds
//! [`GateSettings`] for the gate.

use std::time::Duration;

use serde::Deserialize;

use super::error::{in_range, invalid, ConfigError};
use super::hardware::Backend;
use crate::gate::GateSettings;
use crate::policy::decide::FaceIntent;

/// `[gate]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    /// Relay pulse per admission, in milliseconds.
    pub pulse_ms: Option<u64>,
    /// Longest the door is held open, in milliseconds.
    pub max_open_ms: Option<u64>,
    /// Frames that must agree on one resident.
    pub agreement_required: Option<usize>,
    /// Out of this many recent frames.
    pub agreement_window: Option<usize>,
    /// When faces are matched. Default: `"button"` with GPIO, `"always"` in the simulated backend.
    pub intent: Option<Intent>,
    /// How long face matching stays on after a press of the face button, in milliseconds.
    pub face_window_ms: Option<u64>,
    /// Pause of face matching after a face admission, in milliseconds.
    pub face_cooldown_ms: Option<u64>,
    /// Whether the camera also reads visitor passes' QR codes.
    pub passes_from_camera: Option<bool>,
    /// Threads reading camera frames (default: one per core).
    pub face_workers: Option<usize>,
    /// Seconds the door may stay open before the held-open alarm.
    pub door_held_alarm_s: Option<u64>,
}

/// `gate.intent`, as written. Kept apart from [`FaceIntent`] so the policy does not carry the file's
/// spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Intent {
    /// `"button"`: after a press of the face button.
    Button,
    /// `"presence"`: while the presence sensor sees someone.
    Presence,
    /// `"always"`.
    Always,
}

impl From<Intent> for FaceIntent {
    fn from(intent: Intent) -> Self {
        match intent {
            Intent::Button => FaceIntent::Button,
            Intent::Presence => FaceIntent::Presence,
            Intent::Always => FaceIntent::Always,
        }
    }
}

/// The daemon's settings; `fps` and `live_threshold` come from `[capture]` and `[liveness]` and are kept
/// only here.
pub(super) fn settings(
    raw: &RawGate,
    backend: Backend,
    fps: f32,
    live_threshold: f32,
) -> Result<GateSettings, ConfigError> {
    let (pulse, max_open) = relay_times(raw)?;
    let face_window = in_range("gate.face_window_ms", raw.face_window_ms.unwrap_or(8_000), 1_000..=60_000)?;
    let face_cooldown = in_range("gate.face_cooldown_ms", raw.face_cooldown_ms.unwrap_or(4_000), 0..=60_000)?;
    let door_held_alarm = in_range("gate.door_held_alarm_s", raw.door_held_alarm_s.unwrap_or(30), 5..=3_600)?;
    let workers = raw.face_workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Off the Pi there is no face button to press, so the simulated gate looks all the time.
    let intent = raw.intent.unwrap_or(match backend {
        Backend::Gpio => Intent::Button,
        Backend::Simulated => Intent::Always,
    });
    Ok(GateSettings {
        pulse,
        max_open,
        agreement: agreement(raw)?,
        fps,
        intent: intent.into(),
        face_window: Duration::from_millis(face_window),
        face_cooldown: Duration::from_millis(face_cooldown),
        passes_from_camera: raw.passes_from_camera.unwrap_or(true),
        face_workers: in_range("gate.face_workers", workers, 1..=16)?,
        live_threshold: Some(live_threshold),
        door_held_alarm: Duration::from_secs(door_held_alarm),
        ..GateSettings::default()
    })
}

/// The relay pulse and the longest opening; a pulse longer than the longest opening would be cut short.
fn relay_times(raw: &RawGate) -> Result<(Duration, Duration), ConfigError> {
    let pulse_ms = in_range("gate.pulse_ms", raw.pulse_ms.unwrap_or(3_000), 100..=30_000)?;
    let max_open_ms = raw.max_open_ms.unwrap_or(10_000);
    if !(pulse_ms..=120_000).contains(&max_open_ms) {
        return Err(invalid("gate.max_open_ms", format!("{max_open_ms} is not in gate.pulse_ms..=120000")));
    }
    Ok((Duration::from_millis(pulse_ms), Duration::from_millis(max_open_ms)))
}

/// `(required, window)`: how many of the last frames must name the same resident.
fn agreement(raw: &RawGate) -> Result<(usize, usize), ConfigError> {
    let window = raw.agreement_window.unwrap_or(3);
    let required = raw.agreement_required.unwrap_or(2);
    if !(1..=10).contains(&window) || !(1..=window).contains(&required) {
        return Err(invalid(
            "gate.agreement_required",
            format!("{required} of {window} frames: need 1 <= required <= window <= 10"),
        ));
    }
    Ok((required, window))
}
