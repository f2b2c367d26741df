//! PIN verifiers: the non-biometric way in, stored as argon2id hashes keyed with a device pepper.
//!
//! Pure: no file, database or clock. A PIN of 4-8 digits has little entropy, so the verifier is argon2id
//! (memory-hard) *and* keyed with a pepper derived from a device secret kept wrapped under the master key: a
//! stolen database alone does not let anyone test PINs offline. The PIN itself lives only in a zeroizing type and is never printed.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::seal::AeadKey;

/// Why a PIN was not accepted or could not be checked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PinError {
    /// Not 4 to 8 digits.
    #[error("a PIN is 4 to 8 digits")]
    Format,
    /// Too easy to guess: among the commonest PINs, a year, a repeated digit or block, or a run.
    #[error(
        "this PIN is among the first ones a guesser tries (a common PIN, a year, a repeat or a run); choose another"
    )]
    Weak,
    /// The stored verifier cannot be read.
    #[error("the stored PIN verifier is damaged; set a new PIN")]
    Damaged,
}

/// A PIN as typed: digits only, wiped on drop, never printed.
pub struct Pin(Zeroizing<String>);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(..)")
    }
}

impl Pin {
    /// Accepts 4-8 ASCII digits (surrounding whitespace ignored). Only checks the shape; see
    /// [`Pin::check_strength`] for new PINs.
    pub fn parse(typed: &str) -> Result<Self, PinError> {
        let digits = typed.trim();
        if !(4..=8).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PinError::Format);
        }
        Ok(Self(Zeroizing::new(digits.to_owned())))
    }

    /// Refuses PINs any guesser tries first: the 200 commonest four-digit PINs (which hold about 45 % of
    /// the PINs people choose), a year from 1900 to 2039, one digit or one block repeated (`7777`, `1212`,
    /// `123123`), or an ascending or descending run. What is left has no PIN chosen by more than about 1 in
    /// 1,000 people (`tests/pin_guessing.rs`).
    pub fn check_strength(&self) -> Result<(), PinError> {
        let d = self.0.as_bytes();
        let steps: Vec<i16> = d.windows(2).map(|w| i16::from(w[1]) - i16::from(w[0])).collect();
        let constant_step = steps.windows(2).all(|w| w[0] == w[1]);
        let run = constant_step && steps.first().is_some_and(|s| s.abs() <= 1);
        let repeated_block =
            (1..d.len()).any(|len| d.len().is_multiple_of(len) && d.chunks(len).all(|c| c == &d[..len]));
        let year = d.len() == 4 && self.0.parse::<u16>().is_ok_and(|y| (1900..=2039).contains(&y));
        let common = d.len() == 4 && PIN_BLOCKLIST.split_ascii_whitespace().any(|p| p.as_bytes() == d);
        if run || repeated_block || year || common {
            return Err(PinError::Weak);
        }
        Ok(())
    }
}

/// The 200 commonest four-digit PINs, most common first (DataGenetics' ranking of 3.4 million PINs; see
/// `tests/data/pins/README.md`).
const PIN_BLOCKLIST: &str = include_str!("pin_blocklist.txt");

/// The device's PIN pepper, derived (HKDF-SHA256) from a stable device secret; wiped on drop.
pub struct PinPepper(Zeroizing<[u8; 32]>);

impl fmt::Debug for PinPepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinPepper(..)")
    }
}

impl PinPepper {
    /// Derives the pepper from a device secret (stable across master key rotations).
    pub fn derive(master: &AeadKey) -> Self {
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit (255 x 32), so expand cannot fail.
        let _ = Hkdf::<Sha256>::new(None, master.as_bytes()).expand(b"facegate pin pepper v1", &mut out[..]);
        Self(out)
    }

    fn hasher(&self) -> Result<Argon2<'_>, PinError> {
        // OWASP's argon2id minimum (19 MiB, 2 passes): ~0.1 s on a Pi 4, and the gate checks one PIN at a time.
        let params = Params::new(19 * 1024, 2, 1, None).map_err(|_| PinError::Damaged)?;
        Argon2::new_with_secret(&self.0[..], Algorithm::Argon2id, Version::V0x13, params).map_err(|_| PinError::Damaged)
    }
}

/// A new verifier (PHC string, random salt) for a PIN.
pub fn pin_verifier(pin: &Pin, pepper: &PinPepper) -> Result<String, PinError> {
    verifier_of(pin.0.as_bytes(), pepper)
}

/// A verifier of `secret` (not a PIN): what an unknown keypad code is checked against, so that it costs the
/// same argon2id time as a known one. Give it bytes no keypad can type.
pub fn dummy_verifier(secret: &[u8], pepper: &PinPepper) -> Result<String, PinError> {
    verifier_of(secret, pepper)
}

/// The peppered argon2id PHC string of `secret`, with a random salt.
fn verifier_of(secret: &[u8], pepper: &PinPepper) -> Result<String, PinError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let hash = pepper.hasher()?.hash_password(secret, &salt).map_err(|_| PinError::Damaged)?;
    Ok(hash.to_string())
}

/// Whether `pin` is the PIN the verifier was made from (under this device's pepper).
pub fn verify_pin(pin: &Pin, verifier: &str, pepper: &PinPepper) -> Result<bool, PinError> {
    let parsed = PasswordHash::new(verifier).map_err(|_| PinError::Damaged)?;
    Ok(pepper.hasher()?.verify_password(pin.0.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_verifies_only_with_its_digits_and_its_device() {
        let master = AeadKey::from_bytes([1; 32]);
        let pepper = PinPepper::derive(&master);
        let pin = Pin::parse(" 4071 ").unwrap();
        let verifier = pin_verifier(&pin, &pepper).unwrap();
        assert!(verifier.starts_with("$argon2id$"), "{verifier}");
        assert!(!verifier.contains("4071"));
        assert!(verify_pin(&pin, &verifier, &pepper).unwrap());
        assert!(!verify_pin(&Pin::parse("4072").unwrap(), &verifier, &pepper).unwrap());
        // The same PIN on another device (another master key) does not verify: the pepper is keyed.
        let other = PinPepper::derive(&AeadKey::from_bytes([2; 32]));
        assert!(!verify_pin(&pin, &verifier, &other).unwrap());
        assert_eq!(verify_pin(&pin, "not a phc string", &pepper), Err(PinError::Damaged));
        assert_eq!(format!("{pin:?}"), "Pin(..)");
    }

    #[test]
    fn shapes_and_weak_pins_are_refused() {
        for bad in ["", "123", "123456789", "12a4", "12 34"] {
            assert_eq!(Pin::parse(bad).err(), Some(PinError::Format), "{bad:?}");
        }
        // The review's examples (1004, 2000, 1212, 2580, years) were accepted before the blocklist.
        for weak in ["0000", "1234", "98765", "55555555", "1004", "2000", "1212", "2580", "1987", "2031", "123123"] {
            assert_eq!(Pin::parse(weak).unwrap().check_strength(), Err(PinError::Weak), "{weak}");
        }
        for fine in ["4071", "3895", "8068", "902114", "12345670"] {
            assert_eq!(Pin::parse(fine).unwrap().check_strength(), Ok(()), "{fine}");
        }
    }
}
