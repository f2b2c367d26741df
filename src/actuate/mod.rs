//! Actuate: the door relay, the status lights and buzzer ([`indicator`]) and the optional Wiegand output to an
//! existing access controller ([`wiegand`]), each behind a small trait with an rppal (GPIO) implementation and
//! a simulated one; the config picks, not `cfg` flags.
//!
//! Fail-secure: "locked" is the relay's resting state, set when a relay is created and again when it is
//! dropped (normal exit, a panic unwinding, the signal handler's orderly shutdown), so the process never
//! leaves the door energised open. This module knows nothing of faces, residents or PINs; the Wiegand output
//! learns only which kind of entry (face, PIN, pass, guard) opened the door, never who.

pub mod gpio;
pub mod indicator;
pub mod simulated;
pub mod wiegand;

use std::time::Instant;

pub use gpio::GpioRelay;
pub use indicator::{GpioIndicator, Indicator, IndicatorLog, Signal, SimulatedIndicator};
pub use simulated::{RelayLog, SimulatedRelay};
pub use wiegand::{GpioWiegand, MethodCards, SimulatedWiegand, Wiegand26, WiegandLog, WiegandOutput};

/// Errors of the actuators; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ActuateError {
    /// The GPIO chip could not be used.
    #[error(
        "GPIO: {0}; on a Raspberry Pi add this user to the gpio group, elsewhere set hardware.backend = \"simulated\""
    )]
    Gpio(String),
    /// A USB input device (keypad, QR scanner) could not be opened or read.
    #[error(
        "input device {0}; give its stable /dev/input/by-id/ path in the config, check that it is plugged in and that the service user is in the input group"
    )]
    Input(String),
    /// The hardware settings contradict each other.
    #[error("hardware settings: {0}; fix [hardware] in the config")]
    Settings(String),
    /// A helper thread of a device has stopped.
    #[error("{0} stopped; restart facegate and see its log (journalctl -u facegate) for why")]
    Stopped(String),
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
