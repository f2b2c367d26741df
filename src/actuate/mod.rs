//! Actuate: the door relay, behind a small trait, with an rppal (GPIO) implementation and a simulated one;
//! the config picks, not `cfg` flags.
//!
//! Fail-secure: "locked" is the relay's resting state, set when a relay is created and again when it is
//! dropped (normal exit, a panic unwinding, the signal handler's orderly shutdown), so the process never
//! leaves the door energised open. This module knows nothing of faces, residents or PINs.

pub mod gpio;
pub mod simulated;

use std::time::Instant;

pub use gpio::GpioRelay;
pub use simulated::{RelayLog, SimulatedRelay};

/// Errors of the actuators; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ActuateError {
    /// The GPIO chip could not be used.
    #[error(
        "GPIO: {0}; on a Raspberry Pi add this user to the gpio group, elsewhere set hardware.backend = \"simulated\""
    )]
    Gpio(String),
}

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
