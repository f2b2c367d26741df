//! GPIO pin numbers: [`BcmPin`] refuses a pin the Pi does not have while the file is parsed, and
//! [`reuses`] finds one pin named by two keys.
//!
//! Both checks run before any device is opened, so a wiring mistake stops the start instead of driving the
//! wrong wire. This module never opens or claims a pin; the devices do that, after validation.

use std::fmt;

use serde::Deserialize;

use super::error::ConfigError;

/// A GPIO pin in BCM numbering, one of those on the Pi's 40-pin header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "u8")]
pub struct BcmPin(u8);

impl BcmPin {
    /// The highest GPIO on the header; 28 and up are the SoC's internal lines, which rppal would still open.
    pub const MAX: u8 = 27;

    /// The pin, if the header has it.
    pub const fn new(bcm: u8) -> Option<Self> {
        if bcm <= Self::MAX {
            Some(Self(bcm))
        } else {
            None
        }
    }

    /// A default pin. Only for constants: evaluated at compile time, a bad number fails the build, never a
    /// run.
    pub(super) const fn constant(bcm: u8) -> Self {
        match Self::new(bcm) {
            Some(pin) => pin,
            None => panic!("not a BCM GPIO of the header"),
        }
    }

    /// The BCM number, for the device drivers.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for BcmPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A number that is not a GPIO of the header.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not a BCM GPIO (0..=27); use the GPIO number from the pinout, not the header pin's position")]
pub struct NotAPin(pub u8);

impl TryFrom<u8> for BcmPin {
    type Error = NotAPin;

    fn try_from(bcm: u8) -> Result<Self, NotAPin> {
        Self::new(bcm).ok_or(NotAPin(bcm))
    }
}

/// Every pin named by two keys, in the order given, each refused at its second key: the refusal names both
/// keys, so the installer sees which two devices collide.
pub(super) fn reuses(uses: &[(&'static str, BcmPin)]) -> Vec<ConfigError> {
    let mut out = Vec::new();
    for (i, &(key, pin)) in uses.iter().enumerate() {
        if let Some(&(first, _)) = uses[..i].iter().find(|&&(_, p)| p == pin) {
            out.push(ConfigError::PinReused { key, pin, first });
        }
    }
    out
}
