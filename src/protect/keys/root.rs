//! Key roots: what holds the one key-encryption key (KEK) that every key file of the device is sealed under.
//!
//! Owns the choice of root (`[keys] root`), the small [`KeyRoot`] trait the hardware roots implement, and the
//! root's state file in the key folder (`root.tpm`, `root.pi-otp`: public data from which only that root
//! gives the KEK back). Never writes the KEK anywhere: it lives in memory, in a zeroizing type, for the
//! process's life. A root that cannot give the KEK back is an error that says why (another board, another
//! TPM, PCRs changed), never a fresh key over the old files.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::protect::AeadKey;

/// Where the key-encryption key comes from (`[keys] root`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootKind {
    /// A TPM 2.0 seals it (an SPI module on the Pi; `swtpm` in tests).
    Tpm,
    /// An HMAC under the Pi's OTP device key, through the firmware, makes it.
    PiOtp,
    /// No root: key files hold their keys in clear on the card (development only; the audit warns).
    File,
    /// argon2id over a passphrase typed at every start (`FACEGATE_MASTER_PASSPHRASE`).
    Passphrase,
}

impl RootKind {
    /// The name in the config and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tpm => "tpm",
            Self::PiOtp => "pi-otp",
            Self::File => "file",
            Self::Passphrase => "passphrase",
        }
    }

    /// Whether whoever copies the card has the keys.
    pub fn keys_on_card(self) -> bool {
        self == Self::File
    }

    /// The root's state file in the key folder (hardware roots only).
    pub fn state_file(self) -> Option<&'static str> {
        match self {
            Self::Tpm => Some("root.tpm"),
            Self::PiOtp => Some("root.pi-otp"),
            Self::File | Self::Passphrase => None,
        }
    }
}

/// The key-encryption key: every key file of a hardware root is sealed under it. Shared (the process loads it
/// once), wiped when the last holder drops it, never printed.
#[derive(Clone)]
pub struct Kek(Arc<AeadKey>);

impl Kek {
    pub(crate) fn new(key: AeadKey) -> Self {
        Self(Arc::new(key))
    }

    pub(crate) fn key(&self) -> &AeadKey {
        &self.0
    }
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

/// Errors of a key root; each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// The TPM could not be reached or refused a command.
    #[error("TPM at {tcti}, {what}: {reason}")]
    Tpm {
        /// The TCTI.
        tcti: String,
        /// The step.
        what: &'static str,
        /// The TSS's message.
        reason: String,
    },
    /// The TPM does not take the sealed object: it was sealed by another TPM.
    #[error("the TPM at {tcti} refuses this device's sealed key ({reason}): this key folder was sealed by another TPM (a copied or moved card opens nothing); restore the card to its own board")]
    Foreign {
        /// The TCTI.
        tcti: String,
        /// The TSS's message.
        reason: String,
    },
    /// The TPM loaded the object but would not unseal it (PCRs changed, or the lockout is engaged).
    #[error("the TPM at {tcti} will not unseal the key ({reason}): the measured boot state (PCRs) changed, or the dictionary-attack lockout is engaged")]
    Refused {
        /// The TCTI.
        tcti: String,
        /// The TSS's message.
        reason: String,
    },
    /// The firmware's OTP device key could not be used.
    #[error("the Pi's OTP device key: {0}")]
    Otp(String),
    /// The root's state file is damaged.
    #[error("the key root's state is damaged: {0}; restore the key folder from the card it came from")]
    State(String),
    /// A setting does not fit the sealed key.
    #[error("{0}")]
    Config(String),
    /// The state file is missing while key files sealed under it exist.
    #[error("{path} is missing but the key folder holds keys sealed under it; nothing can open them without it (residents re-enrol, PINs are reset)")]
    Missing {
        /// The state file.
        path: PathBuf,
    },
    /// Reading or writing the state file failed.
    #[error("key root state {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A hardware root: seals one key-encryption key so that only this root gives it back.
pub trait KeyRoot: Send + Sync {
    /// Which root this is.
    fn kind(&self) -> RootKind;
    /// Makes a fresh key-encryption key; returns it with the state (kept in the key folder, public) from which
    /// this root, and no other, gives it back.
    fn create(&self) -> Result<(Kek, Vec<u8>), RootError>;
    /// Gives back the key-encryption key of `state`.
    fn open(&self, state: &[u8]) -> Result<Kek, RootError>;
    /// One line for `facegate keys status` and the audit.
    fn describe(&self) -> String;
}

/// The root's state file in `key_dir`.
pub fn state_path(root: &dyn KeyRoot, key_dir: &Path) -> PathBuf {
    key_dir.join(root.kind().state_file().unwrap_or("root.state"))
}

/// Opens the key-encryption key kept under `root`, creating it on first use (no state file and no key file
/// sealed under a root in `key_dir`). Two processes starting together agree: the state is created
/// exclusively, and the loser opens the winner's.
pub fn open_or_create(root: &dyn KeyRoot, key_dir: &Path) -> Result<Kek, RootError> {
    let path = state_path(root, key_dir);
    let io = |source| RootError::Io { path: path.clone(), source };
    match std::fs::read(&path) {
        Ok(state) => return root.open(&state),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if super::sealed_files_in(key_dir).next().is_some() {
        return Err(RootError::Missing { path });
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(key_dir).map_err(io)?;
    let (kek, state) = root.create()?;
    // Written aside, then linked into place: a process starting at the same moment sees no state or all of it.
    let staged = key_dir.join(format!(".{}.{}", root.kind().name(), std::process::id()));
    let written =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&staged).and_then(|mut f| {
            f.write_all(&state)?;
            f.sync_all()
        });
    let linked = written.and_then(|()| std::fs::hard_link(&staged, &path));
    let _ = std::fs::remove_file(&staged);
    match linked {
        Ok(()) => {
            std::fs::File::open(key_dir).and_then(|d| d.sync_all()).map_err(io)?;
            Ok(kek)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => root.open(&std::fs::read(&path).map_err(io)?),
        Err(e) => Err(io(e)),
    }
}

/// Where the `pi-otp` root's device key is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OtpSource {
    /// The firmware's OTP key slot (a Pi).
    Firmware {
        /// The slot.
        key_id: u32,
    },
    /// A stand-in board's device key in this file (simulated hardware only).
    StandIn(PathBuf),
}

/// The validated `[keys]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootSettings {
    /// Which root.
    pub kind: RootKind,
    /// The TPM's TCTI (`device:/dev/tpmrm0`).
    pub tpm_tcti: String,
    /// PCRs (sha256 bank) the TPM-sealed key is bound to; empty for none.
    pub tpm_pcrs: Vec<u8>,
    /// The `pi-otp` root's device key.
    pub otp: OtpSource,
}

impl Default for RootSettings {
    fn default() -> Self {
        Self {
            kind: RootKind::File,
            tpm_tcti: DEFAULT_TCTI.into(),
            tpm_pcrs: Vec::new(),
            otp: OtpSource::Firmware { key_id: DEFAULT_OTP_KEY_ID },
        }
    }
}

/// What the daemon logs at every start, and the audit reports, with the `file` root.
pub const KEYS_ON_CARD: &str = "keys are on the card: with `[keys] root = \"file\"` every key sits in clear beside the data, so a copied SD card opens every template, forges passes and opens the compound's messages; set `[keys] root = \"tpm\"` or \"pi-otp\", then run `facegate keys migrate`";

/// The kernel's TPM resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
/// The OTP key slot `rpi-fw-crypto` uses on Pi 4/5 firmware.
pub const DEFAULT_OTP_KEY_ID: u32 = 1;

impl RootSettings {
    /// The hardware root these settings name (`None` for `file` and `passphrase`).
    pub fn hardware(&self) -> Result<Option<Box<dyn KeyRoot>>, RootError> {
        Ok(match self.kind {
            RootKind::Tpm => Some(Box::new(super::tpm::TpmRoot::new(self.tpm_tcti.clone(), self.tpm_pcrs.clone()))),
            RootKind::PiOtp => match &self.otp {
                OtpSource::Firmware { key_id } => {
                    Some(Box::new(super::otp::OtpRoot::new(super::otp::FirmwareOtp { key_id: *key_id })))
                }
                OtpSource::StandIn(path) => {
                    Some(Box::new(super::otp::OtpRoot::new(super::otp::StandInOtp::open(path)?)))
                }
            },
            RootKind::File | RootKind::Passphrase => None,
        })
    }

    /// Opens the device's key wrap: the hardware root's key-encryption key (made on first use), the
    /// passphrase, or none. The passphrase is required with `passphrase` and refused with any other root.
    pub fn open(
        &self,
        key_dir: &Path,
        passphrase: Option<zeroize::Zeroizing<String>>,
    ) -> Result<super::KeyWrap, super::KeyError> {
        match (self.kind, passphrase) {
            (RootKind::Passphrase, Some(passphrase)) => Ok(super::KeyWrap::Passphrase(passphrase)),
            (RootKind::Passphrase, None) => {
                Err(RootError::Config("`[keys] root` is passphrase: set FACEGATE_MASTER_PASSPHRASE".into()).into())
            }
            (kind, Some(_)) => Err(RootError::Config(format!(
                "FACEGATE_MASTER_PASSPHRASE is set but `[keys] root` is {}; unset it, or set the root to passphrase",
                kind.name()
            ))
            .into()),
            (RootKind::File, None) => Ok(super::KeyWrap::Plain),
            (_, None) => match self.hardware()? {
                Some(root) => super::KeyWrap::open_root(root.as_ref(), key_dir),
                None => Ok(super::KeyWrap::Plain),
            },
        }
    }

    /// One line naming the root, for status and the audit.
    pub fn describe(&self) -> String {
        match self.kind {
            RootKind::File => "none: keys are on the card in clear (development only)".into(),
            RootKind::Passphrase => "a passphrase (argon2id), typed at every start".into(),
            RootKind::Tpm | RootKind::PiOtp => match self.hardware() {
                Ok(Some(root)) => root.describe(),
                Ok(None) => self.kind.name().into(),
                Err(e) => format!("{} (unavailable: {e})", self.kind.name()),
            },
        }
    }
}
