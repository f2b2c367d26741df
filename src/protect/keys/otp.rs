//! The `pi-otp` key root: the key-encryption key is an HMAC-SHA256 under the Pi's OTP device key, computed by
//! the firmware (`rpi-fw-crypto`'s mailbox interface), which never shows the device key itself.
//!
//! Owns the derivation (`HMAC(device key, label || salt)`, the salt kept in `root.pi-otp`) and the
//! [`DeviceKeyHmac`] trait behind which sit the firmware ([`FirmwareOtp`], `/dev/vcio`) and, off a Pi, a
//! stand-in with its own device key ([`StandInOtp`], picked only with `hardware.backend = "simulated"`).
//! Never reads or prints the device key.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::root::{Kek, KeyRoot, RootError, RootKind};
use crate::protect::AeadKey;

const STATE_MAGIC: &[u8; 4] = b"FGO1";
const LABEL: &[u8] = b"facegate key-encryption key v1\0";

/// An HMAC-SHA256 under a device key that never leaves its keeper.
pub trait DeviceKeyHmac: Send + Sync {
    /// `HMAC-SHA256(device key, message)`.
    fn hmac_sha256(&self, message: &[u8]) -> Result<Zeroizing<[u8; 32]>, RootError>;
    /// Where the device key is, for status lines.
    fn describe(&self) -> String;
}

/// The firmware of a Raspberry Pi 4/5 with a device key in OTP (`rpi-otp-private-key`), through the mailbox
/// property interface (`/dev/vcio`, tag `GET_CRYPTO_HMAC_SHA256`).
#[derive(Clone, Copy, Debug)]
pub struct FirmwareOtp {
    /// The OTP key slot (1 on Pi 4/5 firmware with `rpi-fw-crypto`).
    pub key_id: u32,
}

const TAG_GET_CRYPTO_HMAC_SHA256: u32 = 0x0003_0092;
const HMAC_MESSAGE_MAX: usize = 2048;
const VC_MAILBOX_ERROR: u32 = 0x8000_0000;

impl DeviceKeyHmac for FirmwareOtp {
    fn hmac_sha256(&self, message: &[u8]) -> Result<Zeroizing<[u8; 32]>, RootError> {
        use std::os::fd::AsRawFd;
        if message.len() > HMAC_MESSAGE_MAX {
            return Err(RootError::Otp(format!("message of {} bytes, at most {HMAC_MESSAGE_MAX}", message.len())));
        }
        let vcio =
            std::fs::OpenOptions::new().read(true).write(true).open("/dev/vcio").map_err(|e| {
                RootError::Otp(format!("/dev/vcio: {e}; is this a Raspberry Pi with current firmware?"))
            })?;
        // Property message: size, code, tag, value buffer size, request size, value (flags, key id, length,
        // message; the response's 32 bytes overwrite its start), end tag. u32 words, native (little) endian.
        let value_words = (12 + HMAC_MESSAGE_MAX).div_ceil(4);
        let mut words = Zeroizing::new(vec![0u32; 5 + value_words + 1]);
        let total = u32::try_from(words.len() * 4).unwrap_or(u32::MAX);
        words[0] = total;
        words[2] = TAG_GET_CRYPTO_HMAC_SHA256;
        words[3] = u32::try_from(value_words * 4).unwrap_or(u32::MAX);
        words[4] = u32::try_from(12 + message.len()).unwrap_or(u32::MAX);
        words[6] = self.key_id;
        words[7] = u32::try_from(message.len()).unwrap_or(u32::MAX);
        for (i, chunk) in message.chunks(4).enumerate() {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            words[8 + i] = u32::from_le_bytes(word);
        }
        mailbox_property(vcio.as_raw_fd(), &mut words)
            .map_err(|e| RootError::Otp(format!("mailbox call failed: {e}")))?;
        // The firmware sets the buffer's code to 0x80000000 on success (0x80000001: it could not parse it).
        if words[1] != VC_MAILBOX_ERROR {
            return Err(RootError::Otp("the firmware did not answer the HMAC request; update the firmware".into()));
        }
        if words[4] & VC_MAILBOX_ERROR == 0 {
            return Err(RootError::Otp(
                "the firmware refused the HMAC (no device key in OTP, or it is locked for this boot): see hardware/README.md".into(),
            ));
        }
        let mut out = Zeroizing::new([0u8; 32]);
        for (i, chunk) in out.chunks_mut(4).enumerate() {
            chunk.copy_from_slice(&words[5 + i].to_le_bytes());
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("the Pi's OTP device key (slot {}, through the firmware)", self.key_id)
    }
}

/// `IOCTL_MBOX_PROPERTY` = `_IOWR(100, 0, char *)`: the driver reads the property message and writes the
/// firmware's answer over it.
#[allow(unsafe_code)]
fn mailbox_property(fd: std::os::fd::RawFd, words: &mut [u32]) -> std::io::Result<()> {
    const IOCTL_MBOX_PROPERTY: u64 = (3 << 30) | ((std::mem::size_of::<*mut u8>() as u64) << 16) | (100 << 8);
    // SAFETY: `words` is a live, correctly sized property message (its first word is its length in bytes);
    // the driver copies it in and its answer back within that length.
    let rc = unsafe { libc::ioctl(fd, IOCTL_MBOX_PROPERTY as _, words.as_mut_ptr()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A stand-in for the firmware off a Pi: its own 32-byte device key in a file that stands for the board
/// (tests give each "board" its own). Picked only with `hardware.backend = "simulated"`.
pub struct StandInOtp {
    path: PathBuf,
    key: AeadKey,
}

impl StandInOtp {
    /// The stand-in board whose device key is in `path` (made on first use, 0600).
    pub fn open(path: &Path) -> Result<Self, RootError> {
        let file = super::MasterKeyFile::new(path.to_path_buf(), super::KeyWrap::Plain);
        let key = file.load_or_create().map_err(|e| RootError::Otp(format!("stand-in device key: {e}")))?;
        Ok(Self { path: path.to_path_buf(), key })
    }
}

impl DeviceKeyHmac for StandInOtp {
    fn hmac_sha256(&self, message: &[u8]) -> Result<Zeroizing<[u8; 32]>, RootError> {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.key.as_bytes())
            .map_err(|e| RootError::Otp(e.to_string()))?;
        mac.update(message);
        Ok(Zeroizing::new(mac.finalize().into_bytes().into()))
    }

    fn describe(&self) -> String {
        format!("a stand-in OTP device key ({}; simulated hardware, not a Pi)", self.path.display())
    }
}

/// The `pi-otp` root over a device key.
pub struct OtpRoot<D> {
    device: D,
}

impl<D: DeviceKeyHmac> OtpRoot<D> {
    /// The root over `device`.
    pub fn new(device: D) -> Self {
        Self { device }
    }

    fn derive(&self, salt: &[u8; 32]) -> Result<Kek, RootError> {
        let mut message = Vec::with_capacity(LABEL.len() + salt.len());
        message.extend_from_slice(LABEL);
        message.extend_from_slice(salt);
        let mut mac = self.device.hmac_sha256(&message)?;
        Ok(Kek::new(AeadKey::from_bytes(std::mem::take(&mut *mac))))
    }
}

impl<D: DeviceKeyHmac> KeyRoot for OtpRoot<D> {
    fn kind(&self) -> RootKind {
        RootKind::PiOtp
    }

    fn create(&self) -> Result<(Kek, Vec<u8>), RootError> {
        let salt: [u8; 32] = rand::random();
        let kek = self.derive(&salt)?;
        let mut state = STATE_MAGIC.to_vec();
        state.extend_from_slice(&salt);
        Ok((kek, state))
    }

    fn open(&self, state: &[u8]) -> Result<Kek, RootError> {
        let salt: &[u8; 32] = state
            .strip_prefix(STATE_MAGIC)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| RootError::State("not a facegate pi-otp state (FGO1 and 32 bytes of salt)".into()))?;
        // Another board's device key gives another KEK; the key files then fail to open, and say so.
        self.derive(salt)
    }

    fn describe(&self) -> String {
        self.device.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_board_gives_the_same_key_and_another_board_another() {
        let dir = tempfile::tempdir().unwrap();
        let board_a = OtpRoot::new(StandInOtp::open(&dir.path().join("board-a")).unwrap());
        let board_b = OtpRoot::new(StandInOtp::open(&dir.path().join("board-b")).unwrap());
        let (kek, state) = board_a.create().unwrap();
        assert_eq!(board_a.open(&state).unwrap().key().as_bytes(), kek.key().as_bytes());
        assert_ne!(board_b.open(&state).unwrap().key().as_bytes(), kek.key().as_bytes());
        let (again, other_state) = board_a.create().unwrap();
        assert_ne!(state, other_state, "a fresh salt each time");
        assert_ne!(again.key().as_bytes(), kek.key().as_bytes());
        assert!(matches!(board_a.open(b"FGO1short"), Err(RootError::State(_))));
    }
}
