//! `[keys]`: which root holds the key-encryption key every key file is sealed under.
//!
//! Owns the section's defaults (`file`, which the daemon and the audit warn about) and the rule that the
//! stand-in OTP device key exists only with simulated hardware. Never opens a TPM or a key file.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::{invalid, ConfigError};
use super::hardware::Backend;
use crate::protect::keys::root::{OtpSource, RootKind, RootSettings, DEFAULT_OTP_KEY_ID, DEFAULT_TCTI};

/// `[keys]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeys {
    /// `tpm`, `pi-otp`, `file` (default) or `passphrase`.
    pub root: Option<RootKind>,
    /// The TPM's TCTI (default `device:/dev/tpmrm0`).
    pub tpm_tcti: Option<String>,
    /// PCRs (sha256 bank) the sealed key is bound to, e.g. [0, 7]; default none.
    pub tpm_pcrs: Option<Vec<u8>>,
    /// The firmware's OTP key slot (default 1).
    pub otp_key_id: Option<u32>,
    /// A stand-in board's device key file, in place of the firmware (simulated hardware only).
    pub otp_stand_in: Option<PathBuf>,
}

pub(super) fn keys(raw: RawKeys, backend: Backend) -> Result<RootSettings, ConfigError> {
    let defaults = RootSettings::default();
    let tpm_pcrs = raw.tpm_pcrs.unwrap_or_default();
    if let Some(&bad) = tpm_pcrs.iter().find(|&&p| p > 23) {
        return Err(invalid("keys.tpm_pcrs", format!("{bad} is not a PCR; use 0..=23 (e.g. [0, 7])")));
    }
    let otp = match (raw.otp_stand_in, backend) {
        (Some(path), Backend::Simulated) => OtpSource::StandIn(path),
        (Some(_), _) => {
            return Err(invalid(
                "keys.otp_stand_in",
                "a stand-in device key is for simulated hardware only; remove it on a Pi".to_owned(),
            ))
        }
        (None, _) => OtpSource::Firmware { key_id: raw.otp_key_id.unwrap_or(DEFAULT_OTP_KEY_ID) },
    };
    Ok(RootSettings {
        kind: raw.root.unwrap_or(defaults.kind),
        tpm_tcti: raw.tpm_tcti.unwrap_or_else(|| DEFAULT_TCTI.to_owned()),
        tpm_pcrs,
        otp,
    })
}
