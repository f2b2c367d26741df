//! Who may do what on the portal: staff passwords (argon2id), login throttling (per account in the database,
//! per address in memory), one-time codes (enrolment and revocation: random, shown once, kept as SHA-256), and
//! CSRF tokens. Pure but for the throttle's clock.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use crate::store::Role;

/// Errors of account set-up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Too short a password.
    #[error("a staff password needs at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Shortest staff password.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// The argon2id PHC string of a password (random salt, the crate's default cost).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AuthError::WeakPassword);
    }
    let salt = SaltString::from_b64(&data_encoding::BASE64_NOPAD.encode(&rand::random::<[u8; 16]>()))
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// A verifier for unknown names, so a login costs the same whether or not the account exists.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not-a-real-password-at-all").unwrap_or_default())
}

/// Checks a password against a PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// Failed logins in a row before an account locks.
pub const LOCK_AFTER: i64 = 5;

/// Until when an account stays locked after `failed` failures in a row (None: not locked): 15 minutes at the
/// fifth, doubling with each further one, at most a day.
pub fn lock_until(failed: i64, now: i64) -> Option<i64> {
    (failed >= LOCK_AFTER).then(|| {
        let doublings = u32::try_from((failed - LOCK_AFTER).min(7)).unwrap_or(7);
        now + (900i64 << doublings).min(86_400)
    })
}

/// Login attempts per address: 10 a minute, then refused until the bucket refills.
pub struct Throttle {
    quota: governor::Quota,
    /// One limiter per address, in a bounded cache: a flood from many addresses costs bounded memory, and an
    /// address idle for two minutes (its allowance full again) is forgotten.
    limiters: moka::sync::Cache<IpAddr, Arc<governor::DefaultDirectRateLimiter>>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").field("quota", &self.quota).finish_non_exhaustive()
    }
}

impl Default for Throttle {
    /// Ten a minute: sign-ins and codes, which a person types.
    fn default() -> Self {
        Self::per_minute(10)
    }
}

/// Addresses remembered at most.
const THROTTLE_ADDRESSES: u64 = 4_096;

impl Throttle {
    /// At most `n` a minute per address (a burst of `n`, refilled evenly).
    pub fn per_minute(n: u32) -> Self {
        let quota = governor::Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        let limiters = moka::sync::Cache::builder()
            .max_capacity(THROTTLE_ADDRESSES)
            .time_to_idle(std::time::Duration::from_secs(120))
            .build();
        Self { quota, limiters }
    }

    /// True if this address may go ahead now.
    pub fn allow(&self, addr: IpAddr) -> bool {
        self.limiters.get_with(addr, || Arc::new(governor::RateLimiter::direct(self.quota))).check().is_ok()
    }

    /// Addresses remembered now (after pending evictions are applied).
    pub fn addresses(&self) -> u64 {
        self.limiters.run_pending_tasks();
        self.limiters.entry_count()
    }
}

/// Letters and digits that cannot be mistaken for each other (no 0/O, 1/I/L, U).
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";

/// A random code of `groups` groups of 4 characters, dash-separated (an enrolment code is 3 groups, about 59
/// bits; a revocation code 4, about 78 bits).
pub fn new_code(groups: usize) -> String {
    use rand::Rng;
    // A code is a bearer secret (a revocation code withdraws someone's consent): from the kernel.
    let mut rng = crate::protect::secret_rng();
    (0..groups)
        .map(|_| {
            (0..4).map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())])).collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The SHA-256 of a code as typed: case, spaces and dashes do not matter.
pub fn code_hash(typed: &str) -> [u8; 32] {
    let normal: String = typed.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect();
    Sha256::digest(normal.as_bytes()).into()
}

/// A fresh CSRF token (128 bits, hex).
pub fn new_csrf_token() -> String {
    data_encoding::HEXLOWER.encode(&rand::random::<[u8; 16]>())
}

/// Constant-time comparison of a submitted token with the session's.
pub fn csrf_ok(expected: &str, submitted: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_verify_and_short_ones_are_refused() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("correct horse batterY", &phc));
        assert!(!verify_password("anything", "not a phc string"));
        assert!(matches!(hash_password("short"), Err(AuthError::WeakPassword)));
        assert!(!verify_password("x", dummy_hash()));
    }

    #[test]
    fn lockout_starts_at_the_fifth_failure_and_grows_to_a_day() {
        assert_eq!(lock_until(4, 100), None);
        assert_eq!(lock_until(5, 100), Some(1000));
        assert_eq!(lock_until(6, 100), Some(1900));
        assert_eq!(lock_until(40, 0), Some(86_400));
    }

    #[test]
    fn codes_are_random_readable_and_hash_the_same_however_typed() {
        let code = new_code(3);
        assert_eq!(code.len(), 14);
        assert_ne!(code, new_code(3));
        assert!(code.bytes().all(|b| b == b'-' || CODE_ALPHABET.contains(&b)));
        assert_eq!(code_hash(&code), code_hash(&code.to_lowercase().replace('-', " ")));
        assert_ne!(code_hash("AAAA-BBBB-CCCC"), code_hash("AAAA-BBBB-CCCD"));
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        let token = new_csrf_token();
        assert!(csrf_ok(&token, &token));
        assert!(!csrf_ok(&token, &new_csrf_token()));
        assert!(!csrf_ok("", ""));
    }

    #[test]
    fn the_throttle_forgets_idle_addresses_so_a_flood_of_addresses_stays_bounded() {
        let throttle = Throttle::per_minute(1_000);
        for i in 0..20_000u32 {
            throttle.allow(std::net::Ipv4Addr::from(0x0a00_0000 + i).into());
        }
        assert!(throttle.addresses() <= THROTTLE_ADDRESSES, "{}", throttle.addresses());
    }

    #[test]
    fn the_throttle_refuses_the_eleventh_attempt_in_a_minute() {
        let throttle = Throttle::default();
        let addr: IpAddr = [192, 168, 1, 20].into();
        assert!((0..10).all(|_| throttle.allow(addr)));
        assert!(!throttle.allow(addr));
        assert!(throttle.allow([192, 168, 1, 21].into()), "other addresses are not affected");
    }
}
