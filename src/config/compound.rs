//! `[compound]`: this gate is one of several sharing residents over a NATS broker.
//!
//! Owns the name rules, the TLS-only broker address and where the compound's keys default to. Never
//! connects to the broker or reads a key: the link does, with [`CompoundConfig`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::{invalid, ConfigError};
use crate::compound::{valid_name, LinkSettings};

/// `[compound]`: the gates of one compound share enrolments, revocations and counts over a NATS broker.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompound {
    /// The compound's name, as given to `facegate compound init`.
    pub name: String,
    /// This gate's name, as given to `facegate compound add-gate`.
    pub gate: String,
    /// Every gate of the compound (named in the consent notice: the devices that hold a template).
    pub gates: Option<Vec<String>>,
    /// The broker, e.g. "tls://gate-a.local:4222".
    pub broker: String,
    /// Folder with `ca.pem`, `gate.pem`, `gate.key` and `compound.key` (default: `compound` in the key folder).
    pub dir: Option<PathBuf>,
    /// Face matching stops when the broker was silent this long (default "5m", at least "2s", at most "1h").
    pub offline_limit: Option<String>,
    /// How often this gate's hourly counts are sent (default "60s").
    pub counts_every: Option<String>,
}

/// The validated `[compound]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CompoundConfig {
    /// The compound's name.
    pub name: String,
    /// The broker link's settings.
    pub link: LinkSettings,
    /// The shared secret file.
    pub secret: PathBuf,
    /// Every gate of the compound, if listed.
    pub gates: Vec<String>,
}

/// The compound's settings; its key files default to `compound/` in the key folder.
pub(super) fn compound(raw: RawCompound, key_dir: &Path) -> Result<CompoundConfig, ConfigError> {
    let gates = names(&raw)?;
    // Plain NATS would carry enrolments (encrypted, but with their metadata) in the clear.
    if !(raw.broker.starts_with("tls://") && raw.broker.len() > 6) {
        return Err(invalid(
            "compound.broker",
            format!("{:?} is not tls://host:port (the broker requires TLS)", raw.broker),
        ));
    }
    let offline_limit = duration("compound.offline_limit", raw.offline_limit.as_deref(), 300, 2..=3_600)?;
    let counts_every = duration("compound.counts_every", raw.counts_every.as_deref(), 60, 1..=3_600)?;
    let dir = raw.dir.unwrap_or_else(|| key_dir.join("compound"));
    Ok(CompoundConfig {
        name: raw.name,
        secret: dir.join("compound.key"),
        gates,
        link: LinkSettings {
            gate: raw.gate,
            broker: raw.broker,
            ca: dir.join("ca.pem"),
            cert: dir.join("gate.pem"),
            key: dir.join("gate.key"),
            offline_limit,
            counts_every,
        },
    })
}

/// `compound.gates`, once the compound's, this gate's and every listed gate's name are checked; a list
/// that leaves out this gate would make the notice wrong about where templates are held.
fn names(raw: &RawCompound) -> Result<Vec<String>, ConfigError> {
    let name_err = |key, name: &str| invalid(key, format!("{name:?} is not 1 to 32 of a-z, 0-9 and '-'"));
    if !valid_name(&raw.name) {
        return Err(name_err("compound.name", &raw.name));
    }
    if !valid_name(&raw.gate) {
        return Err(name_err("compound.gate", &raw.gate));
    }
    let gates = raw.gates.clone().unwrap_or_default();
    if let Some(bad) = gates.iter().find(|g| !valid_name(g)) {
        return Err(name_err("compound.gates", bad));
    }
    if !gates.is_empty() && !gates.contains(&raw.gate) {
        return Err(invalid("compound.gates", format!("does not list this gate ({})", raw.gate)));
    }
    Ok(gates)
}

/// A humantime duration (`"5m"`), `default_secs` if absent, within `secs`.
fn duration(
    key: &'static str,
    text: Option<&str>,
    default_secs: u64,
    secs: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    let value = match text {
        None => Duration::from_secs(default_secs),
        Some(t) => humantime::parse_duration(t).map_err(|e| invalid(key, format!("{t:?}: {e} (e.g. \"5m\")")))?,
    };
    let (low, high) = (Duration::from_secs(*secs.start()), Duration::from_secs(*secs.end()));
    if value < low || value > high {
        return Err(invalid(key, format!("{value:?} is not in {low:?}..={high:?}")));
    }
    Ok(value)
}
