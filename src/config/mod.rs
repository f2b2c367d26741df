//! Configuration: the TOML file as written ([`RawConfig`]) and the validated settings the code uses
//! ([`Config`]).
//!
//! Owns the file's schema, its defaults and its validation: a bad value is refused at start, naming the key
//! and what is allowed. Each section's raw form and check live in a submodule; this one reads the file and
//! ties the sections together in [`RawConfig::validate`]. It reads the config file and nothing else; it never
//! writes, and it never opens a device, a model or the database.

mod error;
mod pins;
mod paths;
mod vision;
mod capture;
mod matching;
mod gate;
mod hardware;
mod portal;
mod compound;
mod keys;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use capture::{CaptureConfig, CaptureSource, RawCapture};
pub use compound::{CompoundConfig, RawCompound};
pub use error::ConfigError;
pub use gate::{Intent, RawGate};
pub use hardware::{
    Backend, HardwareConfig, KeypadConfig, KeypadKind, LightPins, RawContacts, RawHardware, RawWiegand, ScannerConfig,
    ScannerKind, WiegandConfig, WiredContact,
};
pub use keys::RawKeys;
pub use matching::{RawMatching, RawPin, RawRetention, Threshold, DEFAULT_MATCH_THRESHOLD, MAX_PIN_BUDGET};
pub use paths::{RawAudit, RawModels, RawStore};
pub use pins::{BcmPin, NotAPin};
pub use portal::{PortalConfig, RawPortal};
pub use vision::{RawDetector, RawEnrolment, RawLiveness};

use crate::gate::GateSettings;
use crate::registry::RegistryPolicy;
use crate::vision::pipeline::PipelineConfig;

/// The file as written; every field optional. Closed choices and pins are already checked here, by serde.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[models]`
    #[serde(default)]
    pub models: RawModels,
    /// `[detector]`
    #[serde(default)]
    pub detector: RawDetector,
    /// `[matching]`
    #[serde(default)]
    pub matching: RawMatching,
    /// `[capture]`
    #[serde(default)]
    pub capture: RawCapture,
    /// `[store]`
    #[serde(default)]
    pub store: RawStore,
    /// `[keys]`
    #[serde(default)]
    pub keys: RawKeys,
    /// `[retention]`
    #[serde(default)]
    pub retention: RawRetention,
    /// `[pin]`
    #[serde(default)]
    pub pin: RawPin,
    /// `[enrolment]`
    #[serde(default)]
    pub enrolment: RawEnrolment,
    /// `[gate]`
    #[serde(default)]
    pub gate: RawGate,
    /// `[hardware]`
    #[serde(default)]
    pub hardware: RawHardware,
    /// `[liveness]`
    #[serde(default)]
    pub liveness: RawLiveness,
    /// `[audit]`
    #[serde(default)]
    pub audit: RawAudit,
    /// `[portal]`
    #[serde(default)]
    pub portal: RawPortal,
    /// `[compound]`: this gate is one of several sharing residents over a broker.
    pub compound: Option<RawCompound>,
}

/// Validated settings. Each value is held once: the frame rate and the live-score threshold live in
/// [`Config::gate`] (read them with [`Config::fps`] and [`Config::live_threshold`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Folder holding the ONNX files.
    pub models_dir: PathBuf,
    /// Vision path settings.
    pub pipeline: PipelineConfig,
    /// 1:1 verification threshold.
    pub match_threshold: Threshold,
    /// Frame source.
    pub capture: CaptureConfig,
    /// The SQLite database file.
    pub database: PathBuf,
    /// The master key file.
    pub master_key: PathBuf,
    /// The key root every key file is sealed under.
    pub keys: crate::protect::keys::root::RootSettings,
    /// Identification and retention rules.
    pub registry: RegistryPolicy,
    /// Good frames averaged at enrolment.
    pub enrol_frames: usize,
    /// The daemon's timing and agreement, with `capture.fps` and `liveness.threshold`.
    pub gate: GateSettings,
    /// The daemon's hardware.
    pub hardware: HardwareConfig,
    /// Extra paths the audit scans.
    pub audit_scan_paths: Vec<PathBuf>,
    /// Whether the audit scans the system's places too (`[audit] system_places`).
    pub audit_system_places: bool,
    /// The web portal.
    pub portal: PortalConfig,
    /// The compound this gate belongs to, if any.
    pub compound: Option<CompoundConfig>,
}

impl Config {
    /// Pace of the frame source (`capture.fps`).
    pub fn fps(&self) -> f32 {
        self.gate.fps
    }

    /// Live-score threshold of the liveness check (`liveness.threshold`). Validation always sets it; the
    /// default stands in only if a caller switched the gate's check off.
    pub fn live_threshold(&self) -> f32 {
        self.gate.live_threshold.unwrap_or(crate::vision::liveness::DEFAULT_LIVE_THRESHOLD)
    }
}

impl RawConfig {
    /// Parses TOML text; a refused value is reported at its dotted key.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let parse_error =
            |key: String, source| ConfigError::Parse { path: path.to_path_buf(), key, source: Box::new(source) };
        let document = toml::Deserializer::parse(text).map_err(|e| parse_error(String::new(), e))?;
        serde_path_to_error::deserialize(document).map_err(|e| parse_error(e.path().to_string(), e.into_inner()))
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Applies defaults and checks every value, one section at a time.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let (config, mut reused) = self.validate_listing_pin_reuse()?;
        match reused.is_empty() {
            true => Ok(config),
            false => Err(reused.remove(0)),
        }
    }

    /// As [`RawConfig::validate`], but a pin named by two keys is listed (every such reuse) instead of
    /// refused: for `facegate doctor`, which reports every fault at once. Never start devices on this.
    pub fn validate_listing_pin_reuse(self) -> Result<(Config, Vec<ConfigError>), ConfigError> {
        let (database, master_key) = paths::store(self.store);
        let key_dir = paths::key_dir(&master_key);
        let (capture, fps) = capture::capture(self.capture)?;
        let hardware = hardware::hardware_unchecked(self.hardware)?;
        let reused = pins::reuses(&hardware.pin_uses());
        let keys = keys::keys(self.keys, hardware.backend)?;
        let live_threshold = vision::live_threshold(&self.liveness)?;
        let compound = self.compound.map(|c| compound::compound(c, &key_dir)).transpose()?;
        let config = Config {
            pipeline: vision::pipeline(&self.detector)?,
            match_threshold: matching::threshold(&self.matching)?,
            registry: matching::registry(&self.matching, &self.retention, &self.pin)?,
            enrol_frames: vision::enrol_frames(&self.enrolment)?,
            gate: gate::settings(&self.gate, hardware.backend, fps, live_threshold)?,
            portal: portal::portal(self.portal, &key_dir, compound.as_ref())?,
            models_dir: paths::models_dir(self.models),
            audit_scan_paths: self.audit.scan_paths.unwrap_or_default(),
            audit_system_places: self.audit.system_places.unwrap_or(true),
            capture,
            database,
            master_key,
            keys,
            hardware,
            compound,
        };
        Ok((config, reused))
    }
}
