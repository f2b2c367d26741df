//! Devices: everything wired to the gate, each behind a small trait with a real implementation (rppal GPIO or
//! evdev) and a simulated one; the config picks, not `cfg` flags. Outputs: the door [`relay`], the status
//! [`lights`] and buzzer, the optional [`wiegand`] output to an existing access controller. Inputs: the
//! [`contacts`] (buttons, door contact, presence), the [`keypad`] and the pass [`scanner`] (the last two share
//! the USB `hid` reader).
//!
//! Fail-secure: "locked" is the relay's resting state, set when a relay is created and again when it is
//! dropped (normal exit, a panic unwinding, the signal handler's orderly shutdown), so the process never
//! leaves the door energised open. This module knows nothing of faces, residents or PINs; the Wiegand output
//! learns only which kind of entry (face, PIN, pass, guard) opened the door, never who.

pub mod contacts;
pub(crate) mod hid;
pub mod keypad;
pub mod lights;
pub mod relay;
pub mod scanner;
pub mod wiegand;

pub use lights::{GpioIndicator, Indicator, IndicatorLog, Signal, SimulatedIndicator};
pub use relay::{GpioRelay, Relay, RelayLog, RelayTransition, SimulatedRelay};
pub use wiegand::{GpioWiegand, MethodCards, SimulatedWiegand, Wiegand26, WiegandLog, WiegandOutput};

/// Errors of the actuators; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ActuateError {
    /// The GPIO chip or a pin could not be used.
    #[error(
        "GPIO {what}: {source}; on a Raspberry Pi add this user to the gpio group, elsewhere set hardware.backend = \"simulated\""
    )]
    Gpio {
        /// The chip, or which pin for what.
        what: String,
        /// rppal's error.
        source: rppal::gpio::Error,
    },
    /// A USB input device (keypad, QR scanner) could not be opened or read.
    #[error(
        "input device {}: {what}; give its stable /dev/input/by-id/ path in the config, check that it is plugged in and that the service user is in the input group",
        device.display()
    )]
    Input {
        /// The device's path.
        device: std::path::PathBuf,
        /// What failed (with the system's reason, when there is one).
        what: String,
        /// The system's error, when there is one.
        source: Option<std::io::Error>,
    },
    /// The hardware settings contradict each other.
    #[error("hardware settings: {0}; fix [hardware] in the config")]
    Settings(String),
    /// A helper thread of a device has stopped.
    #[error("{0} stopped; restart facegate and see its log (journalctl -u facegate) for why")]
    Stopped(String),
}

impl ActuateError {
    /// The mapping for an rppal error about `what` (the chip, or a pin and its use).
    pub(crate) fn gpio(what: impl Into<String>) -> impl FnOnce(rppal::gpio::Error) -> Self {
        let what = what.into();
        move |source| Self::Gpio { what, source }
    }
}
