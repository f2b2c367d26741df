//! The non-camera ways in, each on its own thread: the keypad (`CODE # PIN #`), the pass scanner, and the
//! contacts (exit button, guard call and release, face button, presence sensor, door contact).
//!
//! None of them waits on the camera, the models or the event loop. A PIN is verified (argon2id) on the keypad's
//! own thread with what the registry's owner looked up; a pass is checked and redeemed by the owner, which
//! hands the result straight to the event loop. Nothing typed or scanned is logged.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::{Input, Shared};
use crate::devices::contacts::ContactInputs;
use crate::devices::keypad::{Entry, Keypad, PinEntry};
use crate::devices::scanner::PassScanner;
use crate::policy::decide::{GateEvent, PassCheck, PinCheck};
use crate::protect::pass::PassError;
use crate::registry::owner::RegistryHandle;
use crate::registry::RegistryError;
use crate::store::unix_now;

/// Remembers the codes read in the last seconds, by hash, so a pass held in view is checked once, not
/// refused as "used" in every following frame.
#[derive(Default)]
pub(super) struct RecentCodes(Vec<([u8; 32], Instant)>);

impl RecentCodes {
    const HOLD: Duration = Duration::from_secs(10);

    pub(super) fn first_sighting(&mut self, text: &str) -> bool {
        let hash: [u8; 32] = Sha256::digest(text.trim().to_ascii_uppercase().as_bytes()).into();
        self.0.retain(|(_, at)| at.elapsed() < Self::HOLD);
        if self.0.iter().any(|(h, _)| *h == hash) {
            return false;
        }
        self.0.push((hash, Instant::now()));
        true
    }
}

/// Has the registry's owner check (and redeem) a pass; the result goes straight to the event loop, so the
/// camera's frames never wait on the database. The log says why a pass failed, never what it contained.
pub(super) fn check_pass(shared: &Shared, text: Zeroizing<String>, source: &'static str, tx: &mpsc::Sender<Input>) {
    shared.status.passes_read.fetch_add(1, Ordering::Relaxed);
    let tx = tx.clone();
    let submitted = shared.registry.submit(move |registry| {
        let check = pass_outcome(registry.check_pass(&text, unix_now()), source);
        // The owner is a plain thread: a full queue makes it wait for the loop, which never waits on it.
        let _ = tx.blocking_send(Input::Event { event: GateEvent::VisitorPass(check), frame: None });
    });
    if submitted.is_err() {
        tracing::warn!(source, "visitor pass not checked: the registry has stopped");
    }
}

fn pass_outcome(
    result: Result<Result<crate::protect::pass::VisitorPass, PassError>, RegistryError>,
    source: &str,
) -> PassCheck {
    match result {
        Ok(Ok(_)) => PassCheck::Valid,
        Ok(Err(e @ PassError::Malformed)) => {
            tracing::debug!(source, "a code that is not a pass: {e}");
            PassCheck::Invalid
        }
        Ok(Err(e)) => {
            tracing::info!(source, "visitor pass refused: {e}");
            PassCheck::Invalid
        }
        Err(e) => {
            tracing::error!("visitor pass check failed: {e}");
            PassCheck::Invalid
        }
    }
}

/// Checks a typed PIN: the owner looks the code up (a read), this thread runs argon2id, the owner records
/// the attempt. A right PIN is answered before its bookkeeping is written, a wrong one after, so a busy
/// database neither delays the door nor gives a guesser free attempts. A known code and an unknown one take
/// the same path.
fn check_pin(registry: &RegistryHandle, code: String, pin: &crate::protect::Pin, tx: &mpsc::Sender<Input>) -> bool {
    let at = Instant::now();
    let challenge = match registry.call_blocking(move |r| r.pin_challenge(&code, at)) {
        Ok(Ok(challenge)) => challenge,
        Ok(Err(e)) => {
            tracing::error!("PIN check failed: {e}");
            return send_pin(tx, PinCheck::Rejected);
        }
        Err(e) => {
            tracing::error!("PIN check failed: {e}");
            return send_pin(tx, PinCheck::Rejected);
        }
    };
    let (check, attempt) = challenge.verify(pin);
    let Some(attempt) = attempt else { return send_pin(tx, check) };
    let ok = check == PinCheck::Accepted;
    let mut sent = true;
    if ok {
        sent = send_pin(tx, check);
    }
    match registry.call_blocking(move |r| r.record_pin_attempt(attempt, at, unix_now())) {
        Ok(Ok(None)) => {}
        Ok(Ok(Some(alarm))) => sent &= tx.blocking_send(Input::KeypadAlarm(alarm)).is_ok(),
        Ok(Err(e)) => tracing::error!("PIN attempt not recorded: {e}"),
        Err(e) => tracing::error!("PIN attempt not recorded: {e}"),
    }
    if !ok {
        sent &= send_pin(tx, check);
    }
    sent
}

fn send_pin(tx: &mpsc::Sender<Input>, check: PinCheck) -> bool {
    tx.blocking_send(Input::Event { event: GateEvent::Pin(check), frame: None }).is_ok()
}

pub(super) fn keypad_loop(mut keypad: Box<dyn Keypad>, shared: &Shared, tx: &mpsc::Sender<Input>, idle: Duration) {
    let mut entry = PinEntry::default();
    let mut last_key = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        let key = match keypad.next_key(Duration::from_millis(100)) {
            Ok(Some(key)) => key,
            Ok(None) => {
                if !entry.is_empty() && last_key.elapsed() > idle {
                    entry.clear();
                }
                continue;
            }
            Err(e) => {
                let _ = tx.blocking_send(Input::Fault(format!("keypad: {e}")));
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        last_key = Instant::now();
        let sent = match entry.push(key) {
            Entry::Typing => continue,
            Entry::Malformed => send_pin(tx, PinCheck::Rejected),
            Entry::Submitted { code, pin } => check_pin(&shared.registry, code, &pin, tx),
        };
        if !sent {
            break;
        }
    }
}

pub(super) fn scanner_loop(mut scanner: Box<dyn PassScanner>, shared: &Shared, tx: &mpsc::Sender<Input>) {
    let mut recent = RecentCodes::default();
    while !shared.stop.load(Ordering::Relaxed) && !tx.is_closed() {
        match scanner.next_pass(Duration::from_millis(100)) {
            Ok(None) => {}
            Ok(Some(text)) => {
                // A scanner reads on a trigger, but some repeat a code held under them: once is enough.
                if !recent.first_sighting(&text) {
                    continue;
                }
                check_pass(shared, text, "scanner", tx);
            }
            Err(e) => {
                let _ = tx.blocking_send(Input::Fault(format!("pass scanner: {e}")));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

pub(super) fn contacts_loop(mut contacts: Box<dyn ContactInputs>, shared: &Shared, tx: &mpsc::Sender<Input>) {
    while !shared.stop.load(Ordering::Relaxed) {
        match contacts.next_change(Duration::from_millis(100)) {
            Ok(None) => {}
            Ok(Some(change)) => {
                if tx.blocking_send(Input::Contact(change)).is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Input::Fault(format!("contacts: {e}")));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}
