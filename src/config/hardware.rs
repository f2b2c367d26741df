//! `[hardware]` and its tables: which backend, which keypad and scanner, and which GPIO pin each wire uses.
//!
//! Owns the fixed choices ([`Backend`], [`KeypadKind`], [`ScannerKind`], matched by serde), the default
//! pins, and the list of every pin in use, so [`super::pins::reuses`] sees all of them at once. Never opens a
//! device or claims a pin; the daemon does, from [`HardwareConfig`].

use std::path::PathBuf;

use serde::Deserialize;

use super::error::{invalid, ConfigError};
use super::pins::BcmPin;
use crate::devices::contacts::Contact;
use crate::devices::wiegand::{DEFAULT_D0, DEFAULT_D1};
use crate::devices::MethodCards;

/// The relay's pin when none is configured (hardware/README.md has the wiring).
const DEFAULT_RELAY: BcmPin = BcmPin::constant(17);
/// The 4x3 matrix keypad's pins when none are configured.
const DEFAULT_ROWS: [BcmPin; 4] =
    [BcmPin::constant(5), BcmPin::constant(6), BcmPin::constant(13), BcmPin::constant(19)];
/// See [`DEFAULT_ROWS`].
const DEFAULT_COLS: [BcmPin; 3] = [BcmPin::constant(12), BcmPin::constant(16), BcmPin::constant(20)];

/// DATA0 and DATA1 when the `[hardware.wiegand]` table names none.
const DEFAULT_WIEGAND: (BcmPin, BcmPin) = (BcmPin::constant(DEFAULT_D0), BcmPin::constant(DEFAULT_D1));

/// `[hardware]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHardware {
    /// `"simulated"` (default) or `"gpio"`.
    pub backend: Option<Backend>,
    /// BCM pin of the door relay.
    pub relay_bcm: Option<BcmPin>,
    /// Whether a high level energises the relay.
    pub relay_active_high: Option<bool>,
    /// The keypad (default none).
    pub keypad: Option<KeypadKind>,
    /// BCM pins of the keypad rows.
    pub keypad_rows: Option<[BcmPin; 4]>,
    /// BCM pins of the keypad columns.
    pub keypad_cols: Option<[BcmPin; 3]>,
    /// The USB keypad's event device (`keypad = "usb"`), e.g. `/dev/input/by-id/...-event-kbd`.
    pub keypad_device: Option<PathBuf>,
    /// The visitor-pass scanner (default none).
    pub scanner: Option<ScannerKind>,
    /// The USB QR scanner's event device (`scanner = "usb"`).
    pub scanner_device: Option<PathBuf>,
    /// `[hardware.contacts]`: BCM pins of the wired contacts; a contact not listed is not wired.
    #[serde(default)]
    pub contacts: RawContacts,
    /// `[hardware.lights]`: BCM pins of the status LEDs and buzzer; one not listed is not wired.
    #[serde(default)]
    pub lights: LightPins,
    /// `[hardware.wiegand]`: Wiegand-26 output to an existing controller (absent: off).
    pub wiegand: Option<RawWiegand>,
}

/// `hardware.backend`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// A relay that only logs, no GPIO (the default, so nothing is driven by accident off the Pi).
    #[default]
    Simulated,
    /// The Pi's GPIO.
    Gpio,
}

/// `hardware.keypad`, as written; [`KeypadConfig`] adds the settings of the chosen kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeypadKind {
    /// No keypad.
    #[default]
    None,
    /// Keys typed on standard input (off the Pi).
    Stdin,
    /// A USB numeric keypad (needs `keypad_device`).
    Usb,
    /// A 4x3 membrane keypad on GPIO.
    Matrix,
}

/// `hardware.scanner`, as written; [`ScannerConfig`] adds the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScannerKind {
    /// No scanner (the camera may still read passes).
    #[default]
    None,
    /// A line holding a pass, typed on standard input (off the Pi).
    Stdin,
    /// A USB HID QR scanner (needs `scanner_device`).
    Usb,
}

/// `[hardware.contacts]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContacts {
    /// Request-to-exit button (normally open, to ground).
    pub exit_button: Option<BcmPin>,
    /// Guard-call button (normally open, to ground).
    pub guard_call: Option<BcmPin>,
    /// The guard's remote release button (normally open, to ground).
    pub guard_release: Option<BcmPin>,
    /// Face button (normally open, to ground).
    pub face_button: Option<BcmPin>,
    /// Presence sensor output.
    pub presence: Option<BcmPin>,
    /// Whether the presence sensor pulls low on presence (open collector).
    pub presence_active_low: Option<bool>,
    /// Door reed contact (closed while the door is shut).
    pub door_contact: Option<BcmPin>,
}

/// `[hardware.lights]`: as written is already valid, so it is also the validated form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LightPins {
    /// Green LED.
    pub green: Option<BcmPin>,
    /// Red LED.
    pub red: Option<BcmPin>,
    /// Buzzer (through a transistor).
    pub buzzer: Option<BcmPin>,
}

/// `[hardware.wiegand]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWiegand {
    /// BCM pin of DATA0.
    pub d0: Option<BcmPin>,
    /// BCM pin of DATA1.
    pub d1: Option<BcmPin>,
    /// Facility code (0-255).
    pub facility: Option<u8>,
    /// Card number sent for a face admission: one per method, never per person.
    pub face_card: Option<u16>,
    /// Card number sent for a PIN admission.
    pub pin_card: Option<u16>,
    /// Card number sent for a visitor pass.
    pub visitor_card: Option<u16>,
    /// Card number sent for a guard opening.
    pub guard_card: Option<u16>,
}

/// Which hardware the daemon drives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HardwareConfig {
    /// GPIO or simulated.
    pub backend: Backend,
    /// The relay's pin.
    pub relay_bcm: BcmPin,
    /// Whether a high level energises the relay.
    pub relay_active_high: bool,
    /// The keypad.
    pub keypad: KeypadConfig,
    /// The visitor-pass scanner.
    pub scanner: ScannerConfig,
    /// The wired contacts.
    pub contacts: Vec<WiredContact>,
    /// Status LEDs and buzzer.
    pub lights: LightPins,
    /// Wiegand output, if wired.
    pub wiegand: Option<WiegandConfig>,
}

/// One wired contact input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WiredContact {
    /// Which contact.
    pub contact: Contact,
    /// Its pin.
    pub pin: BcmPin,
    /// Whether it pulls the pin low when active (see the wiring in `devices::contacts`).
    pub active_low: bool,
}

/// The Wiegand output's pins and the card sent per entry method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WiegandConfig {
    /// DATA0.
    pub d0: BcmPin,
    /// DATA1.
    pub d1: BcmPin,
    /// The card per method.
    pub cards: MethodCards,
}

/// The visitor-pass scanner the daemon reads (besides the camera).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScannerConfig {
    /// None.
    None,
    /// Lines typed on standard input (off the Pi).
    Stdin,
    /// A USB HID scanner.
    Usb {
        /// Its event device.
        device: PathBuf,
    },
}

/// The keypad the daemon reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeypadConfig {
    /// None.
    None,
    /// Keys typed on standard input (off the Pi).
    Stdin,
    /// A USB numeric keypad.
    Usb {
        /// Its event device.
        device: PathBuf,
    },
    /// A 4x3 matrix on GPIO.
    Matrix {
        /// Row pins.
        rows: [BcmPin; 4],
        /// Column pins.
        cols: [BcmPin; 3],
    },
}

/// A contact's key in `[hardware.contacts]`, for the refusal of a reused pin.
fn contact_key(contact: Contact) -> &'static str {
    match contact {
        Contact::ExitButton => "hardware.contacts.exit_button",
        Contact::GuardCall => "hardware.contacts.guard_call",
        Contact::GuardRelease => "hardware.contacts.guard_release",
        Contact::FaceButton => "hardware.contacts.face_button",
        Contact::Presence => "hardware.contacts.presence",
        Contact::DoorContact => "hardware.contacts.door_contact",
    }
}

/// The whole `[hardware]` section, each value checked; pins are checked against each other by the caller
/// ([`super::pins::reuses`]), so `facegate doctor` can list every reuse instead of stopping at the first.
pub(super) fn hardware_unchecked(raw: RawHardware) -> Result<HardwareConfig, ConfigError> {
    Ok(HardwareConfig {
        backend: raw.backend.unwrap_or_default(),
        relay_bcm: raw.relay_bcm.unwrap_or(DEFAULT_RELAY),
        relay_active_high: raw.relay_active_high.unwrap_or(false),
        keypad: keypad(raw.keypad.unwrap_or_default(), raw.keypad_rows, raw.keypad_cols, raw.keypad_device)?,
        scanner: scanner(raw.scanner.unwrap_or_default(), raw.scanner_device)?,
        contacts: contacts(&raw.contacts),
        lights: raw.lights,
        wiegand: raw.wiegand.as_ref().map(wiegand).transpose()?,
    })
}

impl HardwareConfig {
    /// Every pin in use with its key, relay first: the order decides which key a reuse is reported at.
    pub fn pin_uses(&self) -> Vec<(&'static str, BcmPin)> {
        let mut uses = vec![("hardware.relay_bcm", self.relay_bcm)];
        if let KeypadConfig::Matrix { rows, cols } = &self.keypad {
            uses.extend(rows.iter().map(|&pin| ("hardware.keypad_rows", pin)));
            uses.extend(cols.iter().map(|&pin| ("hardware.keypad_cols", pin)));
        }
        uses.extend(self.contacts.iter().map(|wired| (contact_key(wired.contact), wired.pin)));
        let LightPins { green, red, buzzer } = self.lights;
        let lights =
            [("hardware.lights.green", green), ("hardware.lights.red", red), ("hardware.lights.buzzer", buzzer)];
        uses.extend(lights.into_iter().filter_map(|(key, pin)| pin.map(|pin| (key, pin))));
        if let Some(w) = &self.wiegand {
            uses.extend([("hardware.wiegand.d0", w.d0), ("hardware.wiegand.d1", w.d1)]);
        }
        uses
    }
}

/// The keypad; a device or pins given for another kind are ignored, as the file may keep them for later.
fn keypad(
    kind: KeypadKind,
    rows: Option<[BcmPin; 4]>,
    cols: Option<[BcmPin; 3]>,
    device: Option<PathBuf>,
) -> Result<KeypadConfig, ConfigError> {
    Ok(match kind {
        KeypadKind::None => KeypadConfig::None,
        KeypadKind::Stdin => KeypadConfig::Stdin,
        KeypadKind::Matrix => {
            KeypadConfig::Matrix { rows: rows.unwrap_or(DEFAULT_ROWS), cols: cols.unwrap_or(DEFAULT_COLS) }
        }
        KeypadKind::Usb => KeypadConfig::Usb {
            device: device.ok_or_else(|| {
                invalid("hardware.keypad_device", "needed for keypad = \"usb\": /dev/input/by-id/...-event-kbd".into())
            })?,
        },
    })
}

/// The scanner; a device given for another kind is ignored.
fn scanner(kind: ScannerKind, device: Option<PathBuf>) -> Result<ScannerConfig, ConfigError> {
    Ok(match kind {
        ScannerKind::None => ScannerConfig::None,
        ScannerKind::Stdin => ScannerConfig::Stdin,
        ScannerKind::Usb => ScannerConfig::Usb {
            device: device.ok_or_else(|| {
                invalid("hardware.scanner_device", "needed for scanner = \"usb\": /dev/input/by-id/...".into())
            })?,
        },
    })
}

/// The contacts that have a pin. Buttons pull low (pull-up, switch to ground); the door contact reads high
/// when open; the presence sensor drives the pin itself, either way.
fn contacts(raw: &RawContacts) -> Vec<WiredContact> {
    [
        (Contact::ExitButton, raw.exit_button, true),
        (Contact::GuardCall, raw.guard_call, true),
        (Contact::GuardRelease, raw.guard_release, true),
        (Contact::FaceButton, raw.face_button, true),
        (Contact::Presence, raw.presence, raw.presence_active_low.unwrap_or(false)),
        (Contact::DoorContact, raw.door_contact, false),
    ]
    .into_iter()
    .filter_map(|(contact, pin, active_low)| pin.map(|pin| WiredContact { contact, pin, active_low }))
    .collect()
}

/// The Wiegand output. The default cards 1-4 under facility 1 are what the installer enrols in the
/// controller; they must differ, or the controller could not tell the entry methods apart.
fn wiegand(raw: &RawWiegand) -> Result<WiegandConfig, ConfigError> {
    let cards = MethodCards {
        facility: raw.facility.unwrap_or(1),
        face: raw.face_card.unwrap_or(1),
        pin: raw.pin_card.unwrap_or(2),
        visitor: raw.visitor_card.unwrap_or(3),
        guard: raw.guard_card.unwrap_or(4),
    };
    let numbers = [cards.face, cards.pin, cards.visitor, cards.guard];
    if (1..4).any(|i| numbers[..i].contains(&numbers[i])) {
        return Err(invalid(
            "hardware.wiegand",
            format!("the card numbers {numbers:?} must differ, one per entry method"),
        ));
    }
    Ok(WiegandConfig { d0: raw.d0.unwrap_or(DEFAULT_WIEGAND.0), d1: raw.d1.unwrap_or(DEFAULT_WIEGAND.1), cards })
}
