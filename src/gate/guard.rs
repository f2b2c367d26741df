//! The guard's desk: between the gate and the guard's page of the portal. The gate notes each press of the
//! guard-call button ([`GuardDesk::called`]); the page shows them live and asks for a remote release
//! ([`GuardDesk::release`]), which reaches the event loop as the guard's own button would, so it is decided,
//! opened and counted as a guard passage like any other.
//!
//! It owns the recent calls (when and at which gate, never who pressed: the camera is not consulted) and the
//! way into the event loop. It must never open the door itself (the door task does, on the event loop's
//! decision) nor record who asked (the portal writes the staff account and reason to the audit chain first).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use super::Input;
use crate::policy::decide::GateEvent;

/// Calls kept (the newest); a guard looks at the last few.
pub const KEPT_CALLS: usize = 20;

/// Calls older than this are not shown (seconds): an unanswered call from yesterday is no call now.
pub const CALL_SHOWN_FOR: i64 = 15 * 60;

/// One press of the guard-call button.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardCall {
    /// Unix seconds.
    pub at: i64,
    /// The gate where it was pressed.
    pub gate: String,
}

/// Why a remote release did not reach the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The gate's event loop is not running (starting, stopping or stopped).
    #[error("the gate is not running: release the door with the guard button at the gate")]
    GateStopped,
    /// The event loop's queue is full (a burst of frames and keys): nothing was sent.
    #[error("the gate is busy: press the button again")]
    Busy,
}

/// The guard's desk of one gate.
#[derive(Debug)]
pub struct GuardDesk {
    gate: String,
    state: Mutex<DeskState>,
}

#[derive(Debug, Default)]
struct DeskState {
    calls: VecDeque<GuardCall>,
    events: Option<mpsc::Sender<Input>>,
}

impl GuardDesk {
    /// The desk of the gate named `gate` (shown on the page).
    pub fn new(gate: impl Into<String>) -> Self {
        Self { gate: gate.into(), state: Mutex::new(DeskState::default()) }
    }

    fn state(&self) -> MutexGuard<'_, DeskState> {
        // A few plain values: a panic elsewhere cannot leave them half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The gate's name.
    pub fn gate(&self) -> &str {
        &self.gate
    }

    /// The gate's event loop is running: releases go to it from now on.
    pub(super) fn attach(&self, events: mpsc::Sender<Input>) {
        self.state().events = Some(events);
    }

    /// The event loop stopped.
    pub(super) fn detach(&self) {
        self.state().events = None;
    }

    /// The guard-call button was pressed at `at` (unix seconds).
    pub fn called(&self, at: i64) {
        let mut state = self.state();
        if state.calls.len() == KEPT_CALLS {
            state.calls.pop_front();
        }
        state.calls.push_back(GuardCall { at, gate: self.gate.clone() });
    }

    /// The calls of the last [`CALL_SHOWN_FOR`] seconds, newest first.
    pub fn calls(&self, now: i64) -> Vec<GuardCall> {
        self.state().calls.iter().rev().filter(|c| now - c.at <= CALL_SHOWN_FOR).cloned().collect()
    }

    /// Asks the event loop to release the door, as the guard's button does. The caller has already written
    /// who asked and why to the audit chain.
    pub fn release(&self) -> Result<(), ReleaseError> {
        let state = self.state();
        let events = state.events.as_ref().ok_or(ReleaseError::GateStopped)?;
        events.try_send(Input::Event { event: GateEvent::GuardOpen, frame: None }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ReleaseError::Busy,
            mpsc::error::TrySendError::Closed(_) => ReleaseError::GateStopped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_shown_newest_first_for_a_while_and_the_oldest_go_first() {
        let desk = GuardDesk::new("north");
        for i in 0..25 {
            desk.called(1_000 + i);
        }
        let calls = desk.calls(1_030);
        assert_eq!(calls.len(), KEPT_CALLS);
        assert_eq!(calls[0], GuardCall { at: 1_024, gate: "north".into() });
        assert_eq!(calls.last().map(|c| c.at), Some(1_005));
        assert!(desk.calls(1_024 + CALL_SHOWN_FOR + 1).is_empty());
    }

    #[test]
    fn a_release_reaches_the_event_loop_as_the_guard_button_and_only_while_it_runs() {
        let desk = GuardDesk::new("north");
        assert_eq!(desk.release(), Err(ReleaseError::GateStopped));
        let (tx, mut rx) = mpsc::channel(1);
        desk.attach(tx);
        desk.release().unwrap();
        assert_eq!(desk.release(), Err(ReleaseError::Busy));
        assert!(matches!(rx.try_recv(), Ok(Input::Event { event: GateEvent::GuardOpen, frame: None })));
        drop(rx);
        assert_eq!(desk.release(), Err(ReleaseError::GateStopped));
        desk.detach();
        assert_eq!(desk.release(), Err(ReleaseError::GateStopped));
    }
}
