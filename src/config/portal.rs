//! `[portal]`: the web portal inside the daemon, and the facts its consent notice states.
//!
//! Owns the notice's defaults, including which devices hold templates, which follows `[compound]` unless
//! written. Never serves anything and never makes the TLS certificate: it only says where it is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::compound::CompoundConfig;
use super::error::{in_range, invalid, ConfigError};

/// `[portal]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPortal {
    /// Serve the portal (default false).
    pub enabled: Option<bool>,
    /// Address and port on the compound's LAN (default 0.0.0.0:8443).
    pub listen: Option<String>,
    /// TLS certificate and key (PEM); default: made on first run in the key folder.
    pub cert: Option<PathBuf>,
    /// See `cert`.
    pub key: Option<PathBuf>,
    /// Who runs the gate (consent notice and signage).
    pub operator: Option<String>,
    /// How residents reach the operator.
    pub contact: Option<String>,
    /// Version label of the consent notice.
    pub notice_version: Option<String>,
    /// Which devices hold templates (for the notice).
    pub templates_held_on: Option<String>,
    /// The compound's offset from UTC for counts, like +08:00.
    pub utc_offset: Option<String>,
    /// Days an enrolment code stays valid (1-30, default 7).
    pub code_valid_days: Option<u32>,
    /// Laplace noise on published counts, epsilon per cell (0.05-10); none when absent.
    pub count_noise_epsilon: Option<f64>,
    /// The bearer token Prometheus sends to `/metrics` (32 visible characters or more); no `/metrics` without.
    pub metrics_token: Option<String>,
}

/// The portal's validated settings.
#[derive(Clone, Debug, PartialEq)]
pub struct PortalConfig {
    /// Serve it.
    pub enabled: bool,
    /// Where.
    pub listen: SocketAddr,
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Whether `cert` was configured (the compound's CA issued it) rather than made self-signed.
    pub cert_trusted: bool,
    /// Operator.
    pub operator: String,
    /// Contact.
    pub contact: String,
    /// Notice version.
    pub notice_version: String,
    /// Devices holding templates.
    pub templates_held_on: String,
    /// Seconds east of UTC.
    pub utc_offset_secs: i64,
    /// Code validity.
    pub code_valid: Duration,
    /// Epsilon of the Laplace noise on published counts (`None`: exact counts, small cells suppressed).
    pub count_noise_epsilon: Option<f64>,
    /// The token `/metrics` requires (`None`: no `/metrics`).
    pub metrics_token: Option<crate::portal::metrics::MetricsToken>,
}

/// The portal's settings; the certificate and key default to the key folder, beside the other secrets.
pub(super) fn portal(
    raw: RawPortal,
    key_dir: &Path,
    compound: Option<&CompoundConfig>,
) -> Result<PortalConfig, ConfigError> {
    let listen = raw.listen.as_deref().unwrap_or("0.0.0.0:8443");
    let listen = listen
        .parse()
        .map_err(|_| invalid("portal.listen", format!("{listen:?} is not an address:port like 0.0.0.0:8443")))?;
    let utc_offset = raw.utc_offset.as_deref().unwrap_or("+00:00");
    let utc_offset_secs =
        crate::policy::counts::parse_utc_offset(utc_offset).map_err(|e| invalid("portal.utc_offset", e))?;
    let code_valid_days = in_range("portal.code_valid_days", raw.code_valid_days.unwrap_or(7), 1..=30)?;
    let count_noise_epsilon = match raw.count_noise_epsilon {
        Some(e) if !(0.05..=10.0).contains(&e) => {
            return Err(invalid("portal.count_noise_epsilon", format!("{e} is not in 0.05..=10 (smaller: more noise)")))
        }
        other => other,
    };
    let metrics_token = raw
        .metrics_token
        .map(|token| {
            crate::portal::metrics::MetricsToken::new(token).ok_or_else(|| {
                invalid(
                    "portal.metrics_token",
                    "must be 32 or more visible characters; make one with `openssl rand -base64 24`".to_owned(),
                )
            })
        })
        .transpose()?;
    Ok(PortalConfig {
        enabled: raw.enabled.unwrap_or(false),
        listen,
        cert_trusted: raw.cert.is_some(),
        cert: raw.cert.unwrap_or_else(|| key_dir.join("portal-cert.pem")),
        key: raw.key.unwrap_or_else(|| key_dir.join("portal-key.pem")),
        operator: raw.operator.unwrap_or_else(|| "the property management office".into()),
        contact: raw.contact.unwrap_or_else(|| "the management office at the entrance".into()),
        notice_version: raw.notice_version.unwrap_or_else(|| "1".into()),
        templates_held_on: raw.templates_held_on.unwrap_or_else(|| templates_held_on(compound)),
        utc_offset_secs,
        code_valid: Duration::from_secs(u64::from(code_valid_days) * 86_400),
        count_noise_epsilon,
        metrics_token,
    })
}

/// The notice must name every device holding a template: in a compound that is every gate.
fn templates_held_on(compound: Option<&CompoundConfig>) -> String {
    match compound {
        Some(c) if !c.gates.is_empty() => {
            format!("the {} gates of this compound ({})", c.gates.len(), c.gates.join(", "))
        }
        Some(_) => "every gate of this compound".into(),
        None => "this gate's device".into(),
    }
}
