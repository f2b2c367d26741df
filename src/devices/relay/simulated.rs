//! The simulated relay: records every transition in a shared log (for tests and the off-Pi demo).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{ActuateError, Relay, RelayTransition};

/// A shared, cloneable view of a simulated relay's transitions.
#[derive(Clone, Debug, Default)]
pub struct RelayLog(Arc<Mutex<Vec<RelayTransition>>>);

impl RelayLog {
    /// Every transition so far, oldest first.
    pub fn transitions(&self) -> Vec<RelayTransition> {
        self.0.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// How many times the door was unlocked.
    pub fn pulses(&self) -> usize {
        self.transitions().iter().filter(|t| t.unlocked).count()
    }

    fn push(&self, unlocked: bool) {
        if let Ok(mut log) = self.0.lock() {
            log.push(RelayTransition { at: Instant::now(), unlocked });
        }
    }
}

/// A relay that only records.
#[derive(Debug)]
pub struct SimulatedRelay {
    log: RelayLog,
    unlocked: bool,
}

impl SimulatedRelay {
    /// A locked relay recording into `log`.
    pub fn new(log: RelayLog) -> Self {
        Self { log, unlocked: false }
    }
}

impl Relay for SimulatedRelay {
    fn set_unlocked(&mut self, unlocked: bool) -> Result<(), ActuateError> {
        if unlocked != self.unlocked {
            self.unlocked = unlocked;
            self.log.push(unlocked);
            // On a bench the log is the only view of the door (tests of the real binary read it too).
            tracing::info!("simulated relay: {}", if unlocked { "unlocked" } else { "locked" });
        }
        Ok(())
    }

    fn is_unlocked(&self) -> bool {
        self.unlocked
    }

    fn describe(&self) -> String {
        "simulated relay".into()
    }
}

impl Drop for SimulatedRelay {
    fn drop(&mut self) {
        // Fail-secure, as the real relay.
        if self.unlocked {
            self.unlocked = false;
            self.log.push(false);
            tracing::info!("simulated relay: locked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_records_transitions_and_locks_when_dropped() {
        let log = RelayLog::default();
        let mut relay = SimulatedRelay::new(log.clone());
        relay.set_unlocked(true).unwrap();
        relay.set_unlocked(true).unwrap();
        assert!(relay.is_unlocked());
        drop(relay);
        let states: Vec<bool> = log.transitions().iter().map(|t| t.unlocked).collect();
        assert_eq!(states, vec![true, false]);
        assert_eq!(log.pulses(), 1);
    }
}
