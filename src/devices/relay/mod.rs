//! Relay: the door lock's relay, with a GPIO implementation ([`gpio`]) and a simulated one ([`simulated`]).
//!
//! Fail-secure: "locked" is the resting state, set when a relay is created and again when it is dropped.

pub mod gpio;
pub mod simulated;

use std::time::Instant;

pub use super::ActuateError;
pub use gpio::GpioRelay;
pub use simulated::{RelayLog, SimulatedRelay};

/// The door lock's relay.
pub trait Relay: Send {
    /// Energises (unlocks) or releases (locks) the relay.
    fn set_unlocked(&mut self, unlocked: bool) -> Result<(), ActuateError>;

    /// Whether the relay is energised now.
    fn is_unlocked(&self) -> bool;

    /// A short description for logs.
    fn describe(&self) -> String;
}

/// One relay transition, as recorded by the simulated relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayTransition {
    /// When.
    pub at: Instant,
    /// The new state.
    pub unlocked: bool,
}
