//! The real relay on a Raspberry Pi GPIO pin, through rppal.

use rppal::gpio::{Gpio, OutputPin};

use super::{ActuateError, Relay};

/// A relay driven by one BCM-numbered GPIO pin.
#[derive(Debug)]
pub struct GpioRelay {
    pin: OutputPin,
    bcm: u8,
    active_high: bool,
    unlocked: bool,
}

impl GpioRelay {
    /// Claims BCM pin `bcm` as an output, locked. `active_high`: whether a high level energises the relay
    /// (most opto-isolated relay boards are active low).
    pub fn open(bcm: u8, active_high: bool) -> Result<Self, ActuateError> {
        let gpio = Gpio::new().map_err(ActuateError::gpio("chip"))?;
        let pin = gpio.get(bcm).map_err(ActuateError::gpio(format!("BCM {bcm}")))?;
        let mut pin = if active_high { pin.into_output_low() } else { pin.into_output_high() };
        // rppal would restore the pin's previous mode on drop (an input, floating); keep it driven locked.
        pin.set_reset_on_drop(false);
        Ok(Self { pin, bcm, active_high, unlocked: false })
    }

    fn drive(&mut self, unlocked: bool) {
        if unlocked == self.active_high {
            self.pin.set_high();
        } else {
            self.pin.set_low();
        }
        self.unlocked = unlocked;
    }
}

impl Relay for GpioRelay {
    fn set_unlocked(&mut self, unlocked: bool) -> Result<(), ActuateError> {
        self.drive(unlocked);
        Ok(())
    }

    fn is_unlocked(&self) -> bool {
        self.unlocked
    }

    fn describe(&self) -> String {
        format!("GPIO relay on BCM {} (active {})", self.bcm, if self.active_high { "high" } else { "low" })
    }
}

impl Drop for GpioRelay {
    fn drop(&mut self) {
        self.drive(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_pi_the_gpio_relay_says_what_to_do() {
        // On a Raspberry Pi with access to /dev/gpiomem this opens; everywhere else it must explain.
        if std::path::Path::new("/dev/gpiomem").exists() {
            return;
        }
        let err = GpioRelay::open(17, false).unwrap_err();
        assert!(err.to_string().contains("hardware.backend = \"simulated\""), "{err}");
    }
}
