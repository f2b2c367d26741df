//! Pass: visitor passes, the QR codes a resident or the guard hands to a visitor. Pure: values in, values
//! out; the store remembers which passes were used, the gate reads them from the camera or a scanner.
//!
//! A pass is short on purpose, so a phone screen held at the gate decodes at 640x480: `FGP1:` and 52 base32
//! characters (QR alphanumeric mode, version 3, 29x29 modules). It carries a random 64-bit id, the window in
//! which it opens (Unix seconds) and a 128-bit HMAC-SHA256 tag under the device's pass key. It names nobody:
//! neither the visitor nor the resident who invited them, so a used pass tells nothing about who came. Each
//! opens once (the store keeps the ids of used passes until they expire) and never outside its window.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::protect::AeadKey;

/// The text every pass starts with (format version 1).
pub const PASS_PREFIX: &str = "FGP1:";

/// The longest validity a pass may be issued with: a week. Longer access is a resident's, with consent.
pub const MAX_PASS_VALIDITY_SECS: i64 = 7 * 86_400;

/// Clock difference tolerated between the issuing device and the gate.
pub const CLOCK_SKEW_SECS: i64 = 120;

const PAYLOAD_LEN: usize = 16;
const TAG_LEN: usize = 16;
const DOMAIN: &[u8] = b"facegate visitor pass v1\0";

/// Why a pass does not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PassError {
    /// Not a facegate pass (wrong prefix, length or characters).
    #[error("not a facegate visitor pass; ask the resident for a new one")]
    Malformed,
    /// The tag does not verify: forged, altered, or issued for another compound.
    #[error("this pass was not issued here or was altered; ask the resident for a new one")]
    BadSignature,
    /// Before its window.
    #[error("this pass is not valid yet")]
    NotYetValid,
    /// After its window.
    #[error("this pass has expired; ask the resident for a new one")]
    Expired,
    /// Opened the gate once already (or was cancelled).
    #[error("this pass has been used already; ask the resident for a new one")]
    AlreadyUsed,
    /// The requested window is empty or longer than [`MAX_PASS_VALIDITY_SECS`].
    #[error("a pass must be valid for 1 s to 7 days, from a time before its end")]
    BadWindow,
}

/// Whether a scanned text claims to be a facegate pass (its prefix), before any check.
pub fn looks_like_pass(text: &str) -> bool {
    text.trim().get(..PASS_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(PASS_PREFIX))
}

/// The random id of a pass: what the store keeps once it has been used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PassId(pub [u8; 8]);

impl PassId {
    /// Lower-case hex, for receipts and the `pass cancel` command.
    pub fn to_hex(self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }
}

/// A verified pass: who issued it is known (this device's key), what it allows is its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VisitorPass {
    /// The id the store marks as used.
    pub id: PassId,
    /// Opens from (Unix seconds).
    pub valid_from: i64,
    /// Opens until (Unix seconds, exclusive).
    pub valid_until: i64,
}

impl VisitorPass {
    /// A new pass with a random id for `[valid_from, valid_until)`.
    pub fn new(valid_from: i64, valid_until: i64) -> Result<Self, PassError> {
        let span = valid_until - valid_from;
        if span <= 0 || span > MAX_PASS_VALIDITY_SECS || valid_from < 0 || valid_until > i64::from(u32::MAX) {
            return Err(PassError::BadWindow);
        }
        Ok(Self { id: PassId(rand::random()), valid_from, valid_until })
    }

    fn payload(&self) -> [u8; PAYLOAD_LEN] {
        let mut payload = [0u8; PAYLOAD_LEN];
        payload[..8].copy_from_slice(&self.id.0);
        // The window fits u32 (checked at creation and parse): valid until 2106.
        payload[8..12].copy_from_slice(&u32::try_from(self.valid_from).unwrap_or(u32::MAX).to_be_bytes());
        payload[12..].copy_from_slice(&u32::try_from(self.valid_until).unwrap_or(0).to_be_bytes());
        payload
    }

    /// Whether the pass opens at `now`, apart from having been used.
    pub fn check_window(&self, now: i64) -> Result<(), PassError> {
        if now + CLOCK_SKEW_SECS < self.valid_from {
            Err(PassError::NotYetValid)
        } else if now >= self.valid_until {
            Err(PassError::Expired)
        } else {
            Ok(())
        }
    }
}

/// The device key that signs and checks passes (a device secret, wrapped under the master key at rest).
pub struct PassKey<'a>(&'a AeadKey);

impl<'a> PassKey<'a> {
    /// Uses these 32 secret bytes as the pass key.
    pub fn new(secret: &'a AeadKey) -> Self {
        Self(secret)
    }

    fn tag(&self, payload: &[u8; PAYLOAD_LEN]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; 32 bytes cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_bytes()).unwrap_or_else(|_| unreachable!());
        mac.update(DOMAIN);
        mac.update(payload);
        mac
    }

    /// The text to put in the QR code.
    pub fn encode(&self, pass: &VisitorPass) -> String {
        let payload = pass.payload();
        let tag = self.tag(&payload).finalize().into_bytes();
        let mut bytes = [0u8; PAYLOAD_LEN + TAG_LEN];
        bytes[..PAYLOAD_LEN].copy_from_slice(&payload);
        bytes[PAYLOAD_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        format!("{PASS_PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&bytes))
    }

    /// Parses and authenticates a scanned text (surrounding whitespace and lower case are tolerated, as some
    /// scanners change case). Does not check the window or single use.
    pub fn decode(&self, text: &str) -> Result<VisitorPass, PassError> {
        let text = text.trim();
        let body = text
            .get(..PASS_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PASS_PREFIX))
            .and_then(|_| text.get(PASS_PREFIX.len()..))
            .ok_or(PassError::Malformed)?;
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| PassError::Malformed)?;
        if bytes.len() != PAYLOAD_LEN + TAG_LEN {
            return Err(PassError::Malformed);
        }
        let mut payload = [0u8; PAYLOAD_LEN];
        payload.copy_from_slice(&bytes[..PAYLOAD_LEN]);
        // Constant-time comparison of the truncated tag.
        self.tag(&payload).verify_truncated_left(&bytes[PAYLOAD_LEN..]).map_err(|_| PassError::BadSignature)?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&payload[..8]);
        let word = |range: std::ops::Range<usize>| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&payload[range]);
            i64::from(u32::from_be_bytes(b))
        };
        Ok(VisitorPass { id: PassId(id), valid_from: word(8..12), valid_until: word(12..16) })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_round_trips_and_fits_a_small_alphanumeric_qr() {
        let key = AeadKey::generate();
        let pass = VisitorPass::new(1_800_000_000, 1_800_003_600).unwrap();
        let text = PassKey::new(&key).encode(&pass);
        assert_eq!(text.len(), PASS_PREFIX.len() + 52);
        // Every character is in QR's alphanumeric set, so the code stays at version 3.
        assert!(text.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || ":$%*+-./ ".contains(c)));
        let qr = qrcode::QrCode::with_error_correction_level(&text, qrcode::EcLevel::M).unwrap();
        assert_eq!(qr.version(), qrcode::Version::Normal(3));
        assert_eq!(PassKey::new(&key).decode(&text).unwrap(), pass);
        assert_eq!(PassKey::new(&key).decode(&format!(" {} \n", text.to_lowercase())).unwrap(), pass);
    }

    #[test]
    fn another_key_or_any_changed_character_is_refused() {
        let key = AeadKey::generate();
        let pass = VisitorPass::new(100, 200).unwrap();
        let text = PassKey::new(&key).encode(&pass);
        assert_eq!(PassKey::new(&AeadKey::generate()).decode(&text), Err(PassError::BadSignature));
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        for i in PASS_PREFIX.len()..text.len() {
            let original = text.as_bytes()[i] as char;
            let other = alphabet.chars().find(|&c| c != original).unwrap();
            let mut altered = text.clone();
            altered.replace_range(i..=i, &other.to_string());
            // The last character carries 3 padding bits, so some changes there are malformed rather than forged.
            assert!(
                matches!(PassKey::new(&key).decode(&altered), Err(PassError::BadSignature | PassError::Malformed)),
                "a change at {i} was accepted"
            );
        }
    }

    #[test]
    fn malformed_texts_are_refused_without_panicking() {
        let key = AeadKey::generate();
        for text in ["", "FGP1:", "FGP1", "hello", "FGP1:!!!!", "FGP2:AAAA", "ＦＧＰ1:AAAA", &"A".repeat(10_000)] {
            assert!(PassKey::new(&key).decode(text).is_err(), "{text:?}");
        }
        let short = format!("{PASS_PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&[0u8; 31]));
        assert_eq!(PassKey::new(&key).decode(&short), Err(PassError::Malformed));
    }

    #[test]
    fn the_window_is_enforced_with_a_small_skew() {
        let pass = VisitorPass::new(1_000, 2_000).unwrap();
        assert_eq!(pass.check_window(1_000 - CLOCK_SKEW_SECS - 1), Err(PassError::NotYetValid));
        assert_eq!(pass.check_window(1_000 - CLOCK_SKEW_SECS), Ok(()));
        assert_eq!(pass.check_window(1_999), Ok(()));
        assert_eq!(pass.check_window(2_000), Err(PassError::Expired));
        assert_eq!(VisitorPass::new(10, 10), Err(PassError::BadWindow));
        assert_eq!(VisitorPass::new(0, MAX_PASS_VALIDITY_SECS + 1), Err(PassError::BadWindow));
        assert!(VisitorPass::new(0, MAX_PASS_VALIDITY_SECS).is_ok());
    }

    #[test]
    fn two_passes_for_the_same_window_differ() {
        let key = AeadKey::generate();
        let a = PassKey::new(&key).encode(&VisitorPass::new(0, 60).unwrap());
        let b = PassKey::new(&key).encode(&VisitorPass::new(0, 60).unwrap());
        assert_ne!(a, b);
    }
}
