//! Credentials of the non-biometric ways in, as the registry keeps them: residents' PINs (set, checked in
//! two steps so argon2id runs off the owner, and counted towards lockout) and visitor passes (issued,
//! cancelled, redeemed once). No PIN or pass text is kept or logged here.

use super::*;

/// What the keypad must do with a typed code before anything is verified (see [`Registry::pin_challenge`]).
pub enum PinChallenge {
    /// The code is locked for this long: refused unchecked.
    LockedOut(Duration),
    /// Verify the PIN against `verifier` (argon2id, off the registry's owner), then report the outcome with
    /// [`Registry::record_pin_attempt`].
    Verify {
        /// Whose code it is.
        resident_id: String,
        /// The PHC string.
        verifier: String,
        /// The pepper the verifier was made with.
        pepper: PinPepper,
    },
    /// No such code: verify against a dummy verifier anyway (same time as a real one), then refuse.
    Unknown {
        /// The pepper, for the dummy verification.
        pepper: PinPepper,
    },
}

impl std::fmt::Debug for PinChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LockedOut(d) => f.debug_tuple("LockedOut").field(d).finish(),
            Self::Verify { .. } => f.write_str("Verify"),
            Self::Unknown { .. } => f.write_str("Unknown"),
        }
    }
}

impl PinChallenge {
    /// Runs the argon2id verification the challenge asks for (about 50-100 ms on a Pi: call it off the
    /// registry's owner and off any async executor). `Some((resident, ok))` to record, `None` when there is
    /// nothing to record (unknown code, or locked).
    pub fn verify(&self, pin: &Pin) -> (PinCheck, Option<(String, bool)>) {
        match self {
            Self::LockedOut(wait) => (PinCheck::LockedOut(*wait), None),
            Self::Unknown { pepper } => {
                let _ = protect::verify_pin(pin, dummy_verifier(pepper), pepper);
                (PinCheck::Rejected, None)
            }
            Self::Verify { resident_id, verifier, pepper } => {
                let ok = protect::verify_pin(pin, verifier, pepper).unwrap_or(false);
                (if ok { PinCheck::Accepted } else { PinCheck::Rejected }, Some((resident_id.clone(), ok)))
            }
        }
    }
}

impl Registry {
    /// Sets (or replaces) a resident's PIN under a keypad code; refuses an easily guessed PIN.
    pub fn set_pin(&mut self, resident_id: &str, keypad_code: &str, pin: &Pin, now: i64) -> Result<()> {
        if !(2..=8).contains(&keypad_code.len()) || !keypad_code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RegistryError::KeypadCode);
        }
        pin.check_strength()?;
        let verifier = protect::pin_verifier(pin, &PinPepper::derive(&self.pin_key))?;
        self.store.set_pin_verifier(resident_id, keypad_code, &verifier, now)?;
        Ok(())
    }

    /// The first half of a PIN check, without the argon2id work: whether the code is locked, or what to verify
    /// the PIN against. An unknown code gets a dummy verifier, so the keypad does not reveal which codes exist.
    pub fn pin_challenge(&self, keypad_code: &str, now: i64) -> Result<PinChallenge> {
        let pepper = PinPepper::derive(&self.pin_key);
        let Some(record) = self.store.pin_record(keypad_code)? else {
            return Ok(PinChallenge::Unknown { pepper });
        };
        let wait = crate::policy::decide::pin_backoff(record.failed_attempts);
        let until =
            record.last_failed_at.unwrap_or(i64::MIN).saturating_add(i64::try_from(wait.as_secs()).unwrap_or(0));
        if !wait.is_zero() && now < until {
            return Ok(PinChallenge::LockedOut(Duration::from_secs(u64::try_from(until - now).unwrap_or(0))));
        }
        Ok(PinChallenge::Verify { resident_id: record.resident_id, verifier: record.verifier, pepper })
    }

    /// The second half: records a verified attempt (a failure counts towards the lockout, a success resets it).
    pub fn record_pin_attempt(&mut self, resident_id: &str, success: bool, now: i64) -> Result<()> {
        self.store.record_pin_attempt(resident_id, success, now)?;
        Ok(())
    }

    /// Checks a PIN typed after a keypad code, in one call (the CLI and tests; the daemon splits it so the
    /// argon2id work runs off the registry's owner). Wrong attempts in a row lock the code with a growing
    /// backoff ([`crate::policy::decide::pin_backoff`]); an unknown code costs the same time as a known one and is
    /// simply rejected, so the keypad does not reveal which codes exist.
    pub fn check_pin(&mut self, keypad_code: &str, pin: &Pin, now: i64) -> Result<PinCheck> {
        let challenge = self.pin_challenge(keypad_code, now)?;
        let (check, record) = challenge.verify(pin);
        if let Some((resident, ok)) = record {
            self.record_pin_attempt(&resident, ok, now)?;
        }
        Ok(check)
    }
}

impl Registry {
    /// Issues a single-use visitor pass for `[valid_from, valid_until)` and returns it with the text for its
    /// QR code. The audit log notes the pass's random id; nothing names the visitor or the host.
    pub fn issue_pass(&mut self, valid_from: i64, valid_until: i64, now: i64) -> Result<(VisitorPass, String)> {
        let pass = VisitorPass::new(valid_from, valid_until)?;
        let text = PassKey::new(&self.pass_key).encode(&pass);
        self.store.audit_pass("visitor pass issued", &pass, now)?;
        Ok((pass, text))
    }

    /// Cancels a pass before it is used (it can never open afterwards).
    pub fn cancel_pass(&mut self, text: &str, now: i64) -> Result<VisitorPass> {
        let pass = PassKey::new(&self.pass_key).decode(text)?;
        self.store.redeem_pass(&pass, now)?;
        self.store.audit_pass("visitor pass cancelled", &pass, now)?;
        Ok(pass)
    }

    /// Checks a scanned pass and, if it opens, marks it used in the same step: authentic, inside its window,
    /// and never used before. The inner error says why a pass does not open; the outer one is a store failure.
    pub fn check_pass(&mut self, text: &str, now: i64) -> Result<std::result::Result<VisitorPass, PassError>> {
        let pass = match PassKey::new(&self.pass_key).decode(text).and_then(|p| p.check_window(now).map(|()| p)) {
            Ok(pass) => pass,
            Err(e) => return Ok(Err(e)),
        };
        Ok(if self.store.redeem_pass(&pass, now)? { Ok(pass) } else { Err(PassError::AlreadyUsed) })
    }
}

/// A verifier of no PIN, made once per process, so that an unknown keypad code takes as long as a known one.
fn dummy_verifier(pepper: &PinPepper) -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        Pin::parse("00000000").ok().and_then(|pin| protect::pin_verifier(&pin, pepper).ok()).unwrap_or_default()
    })
}
