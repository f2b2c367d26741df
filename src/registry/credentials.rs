//! Credentials of the non-biometric ways in, as the registry keeps them: residents' PINs (set, checked in
//! two steps so argon2id runs off the owner, and counted towards lockout) and visitor passes (issued,
//! cancelled, redeemed once). No PIN or pass text is kept or logged here.

use super::*;

/// Digits in a keypad code the registry gives out: with 300 residents, one code in 3,000 exists, so guessing a
/// code costs more than guessing a PIN that passed [`Pin::check_strength`].
pub const KEYPAD_CODE_DIGITS: usize = 6;

/// What the keypad must do with a typed code before anything is verified (see [`Registry::pin_challenge`]).
pub enum PinChallenge {
    /// The code, or the whole keypad, is locked: refused unchecked, at once, for a known code and an unknown
    /// one alike.
    Locked(Locked),
    /// Verify the PIN (argon2id, off the registry's owner), then report the outcome with
    /// [`Registry::record_pin_attempt`]. An unknown code carries a dummy verifier that no PIN opens, so it
    /// costs the same time and is counted the same way.
    Verify {
        /// The code as typed (the lockout's key; not who it belongs to).
        code: String,
        /// The PHC string.
        verifier: String,
        /// The pepper the verifier was made with.
        pepper: PinPepper,
    },
}

impl std::fmt::Debug for PinChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Locked(l) => f.debug_tuple("Locked").field(l).finish(),
            Self::Verify { .. } => f.write_str("Verify"),
        }
    }
}

/// A checked attempt, to hand back to [`Registry::record_pin_attempt`].
#[derive(Debug)]
pub struct PinAttempt {
    code: String,
    success: bool,
}

impl PinChallenge {
    /// Runs the argon2id verification the challenge asks for (about 50-100 ms on a Pi: call it off the
    /// registry's owner and off any async executor). Returns the answer for the door, and the attempt to
    /// record when one was checked.
    pub fn verify(self, pin: &Pin) -> (PinCheck, Option<PinAttempt>) {
        match self {
            Self::Locked(locked) => (PinCheck::LockedOut(locked.wait()), None),
            Self::Verify { code, verifier, pepper } => {
                let success = protect::verify_pin(pin, &verifier, &pepper).unwrap_or(false);
                let check = if success { PinCheck::Accepted } else { PinCheck::Rejected };
                (check, Some(PinAttempt { code, success }))
            }
        }
    }
}

impl Registry {
    /// Sets (or replaces) a resident's PIN; refuses an easily guessed PIN. The keypad code is `code` if
    /// given (6 to 8 digits, not another resident's), else a free random one. Returns the keypad code.
    pub fn set_pin(&mut self, resident_id: &str, code: Option<&str>, pin: &Pin, now: i64) -> Result<String> {
        pin.check_strength()?;
        let code = match code {
            Some(code) => {
                if !(KEYPAD_CODE_DIGITS..=8).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(RegistryError::KeypadCode);
                }
                code.to_owned()
            }
            None => self.free_keypad_code()?,
        };
        let verifier = protect::pin_verifier(pin, &PinPepper::derive(&self.keys.pin_key))?;
        self.store.set_pin_verifier(resident_id, &code, &verifier, now)?;
        Ok(code)
    }

    /// A random keypad code of [`KEYPAD_CODE_DIGITS`] digits that nobody holds. Random, not the unit number or
    /// the next free one, so that knowing one resident's code says nothing of the others.
    fn free_keypad_code(&self) -> Result<String> {
        use rand::Rng;
        let taken = self.store.keypad_codes()?;
        let mut rng = rand::rng();
        let low = 10u32.pow(u32::try_from(KEYPAD_CODE_DIGITS - 1).unwrap_or(5));
        (0..1_000)
            .map(|_| rng.random_range(low..low * 10).to_string())
            .find(|c| !taken.contains(c))
            .ok_or(RegistryError::KeypadCode)
    }

    /// The first half of a PIN check, without the argon2id work: whether the code (or the keypad) is locked,
    /// or what to verify the PIN against. `at` is when the keypad read the entry.
    pub fn pin_challenge(&self, code: &str, at: Instant) -> Result<PinChallenge> {
        if let Err(locked) = self.lockout.check(code, self.mono(at)) {
            return Ok(PinChallenge::Locked(locked));
        }
        let pepper = PinPepper::derive(&self.keys.pin_key);
        let verifier = match self.store.pin_record(code)? {
            Some(record) => record.verifier,
            None => dummy_verifier(&pepper).to_owned(),
        };
        Ok(PinChallenge::Verify { code: code.to_owned(), verifier, pepper })
    }

    /// The second half: records a checked attempt. A failure counts towards its code's lockout and the
    /// keypad's budget (kept across restarts as a keypad-wide count per hour, nothing per resident); a success
    /// clears its code. Returns an alarm when this failure spent the keypad's budget.
    pub fn record_pin_attempt(&mut self, attempt: PinAttempt, at: Instant, now: i64) -> Result<Option<KeypadAlarm>> {
        let alarm = self.lockout.record(&attempt.code, attempt.success, self.mono(at));
        if !attempt.success {
            self.store.note_keypad_failure(now)?;
        }
        Ok(alarm)
    }

    /// Checks a PIN typed after a keypad code, in one call (the CLI and tests; the daemon splits it so the
    /// argon2id work runs off the registry's owner). See [`crate::policy::lockout`] for the limits.
    pub fn check_pin(&mut self, code: &str, pin: &Pin, at: Instant, now: i64) -> Result<PinCheck> {
        let (check, attempt) = self.pin_challenge(code, at)?.verify(pin);
        if let Some(attempt) = attempt {
            self.record_pin_attempt(attempt, at, now)?;
        }
        Ok(check)
    }

    fn mono(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.origin)
    }
}

impl Registry {
    /// Issues a single-use visitor pass for `[valid_from, valid_until)` and returns it with the text for its
    /// QR code. The audit log notes the pass's random id; nothing names the visitor or the host.
    pub fn issue_pass(&mut self, valid_from: i64, valid_until: i64, now: i64) -> Result<(VisitorPass, String)> {
        let pass = VisitorPass::new(valid_from, valid_until)?;
        let text = PassKey::new(&self.keys.pass_key).encode(&pass);
        self.store.audit_pass("visitor pass issued", &pass, now)?;
        Ok((pass, text))
    }

    /// Cancels a pass before it is used (it can never open afterwards).
    pub fn cancel_pass(&mut self, text: &str, now: i64) -> Result<VisitorPass> {
        let pass = PassKey::new(&self.keys.pass_key).decode(text)?;
        self.store.redeem_pass(&pass, self.forget_passes_before(now))?;
        self.store.audit_pass("visitor pass cancelled", &pass, now)?;
        Ok(pass)
    }

    /// Checks a scanned pass and, if it opens, marks it used in the same step: authentic, inside its window,
    /// and never used before. The inner error says why a pass does not open; the outer one is a store failure.
    pub fn check_pass(&mut self, text: &str, now: i64) -> Result<std::result::Result<VisitorPass, PassError>> {
        let pass = match PassKey::new(&self.keys.pass_key).decode(text).and_then(|p| p.check_window(now).map(|()| p)) {
            Ok(pass) => pass,
            Err(e) => return Ok(Err(e)),
        };
        let forget_before = self.forget_passes_before(now);
        Ok(if self.store.redeem_pass(&pass, forget_before)? { Ok(pass) } else { Err(PassError::AlreadyUsed) })
    }

    /// Used-pass ids whose window ended before this may be forgotten: a margin past expiry by the wall clock
    /// *and* by the monotonic clock since the registry opened, so that neither a wall clock stepped forward
    /// (forgetting too soon) nor one stepped back afterwards (the pass inside its window again) reopens a
    /// used pass.
    fn forget_passes_before(&self, now: i64) -> i64 {
        let elapsed = i64::try_from(self.origin.elapsed().as_secs()).unwrap_or(i64::MAX);
        now.min(self.opened_at.saturating_add(elapsed)) - USED_PASS_MARGIN_SECS
    }
}

/// How long past its window a used pass's id is kept: a week, far beyond any clock correction.
pub const USED_PASS_MARGIN_SECS: i64 = 7 * 86_400;

/// A verifier of random bytes that no typed PIN can match, made once per process, so that an unknown keypad code
/// takes as long as a known one and never opens.
fn dummy_verifier(pepper: &PinPepper) -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        // Random bytes, not a PIN: verify_pin is only ever asked about 4-8 digits, so no typed PIN matches.
        let mut secret = Zeroizing::new([0u8; 24]);
        rand::Rng::fill(&mut protect::secret_rng(), &mut secret[..]);
        protect::dummy_verifier(&secret[..], pepper).unwrap_or_default()
    })
}
