//! Inputs: the gate's contact inputs (exit button, guard call, guard release, face button, presence sensor,
//! door contact),
//! behind a small trait, with an rppal (GPIO) implementation and a simulated one; the config picks, not `cfg`
//! flags. [`Debouncer`] is the pure part: a level counts only after it has been stable for [`DEBOUNCE`].
//!
//! This module reports what the contacts do, nothing more: it never opens the door, and it knows nothing of
//! faces, residents or PINs. Only changes are reported; the baseline at start is "inactive", so a contact
//! that is already active when facegate starts (a door left open, a cut door-contact wire) is reported once.
//!
//! Wiring: every contact goes between its GPIO pin and ground, with the pin's pull-up on, so a cut wire reads
//! as "switch open":
//! - buttons (exit, guard call, guard release, face) are normally open: pressed pulls the pin low (`active_low = true`);
//!   a cut wire reads "not pressed", so a damaged exit or release button can never hold the door open;
//! - the door contact is a reed switch that is closed while the door is shut (NC when closed): shut reads
//!   low, open reads high, and "active" means the door is OPEN (`active_low = false`); a cut wire reads as
//!   open, which is visible (door-held alarms) rather than silent;
//! - the presence sensor (PIR or mmWave module, 3.3 V output) drives the pin itself; a push-pull output
//!   that is high on presence is `active_low = false`, an open-collector output that pulls low is
//!   `active_low = true`. The pull-up makes a cut wire read "present": the camera keeps looking, as it does
//!   without a sensor.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::devices::ActuateError;

/// How long a new level must hold before it counts (contact bounce of buttons and reeds is well under this).
pub const DEBOUNCE: Duration = Duration::from_millis(30);

/// How often the GPIO pins are sampled.
pub const POLL: Duration = Duration::from_millis(5);

/// The default pins, as `(contact, BCM, active_low)`; hardware/README.md has the wiring.
pub const DEFAULT_CONTACT_PINS: [(Contact, u8, bool); 6] = [
    (Contact::ExitButton, 22, true),
    (Contact::GuardCall, 23, true),
    (Contact::GuardRelease, 4, true),
    (Contact::FaceButton, 24, true),
    (Contact::Presence, 25, false),
    (Contact::DoorContact, 27, false),
];

/// One contact input of the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Contact {
    /// The request-to-exit button on the inside.
    ExitButton,
    /// The button that calls the guard.
    GuardCall,
    /// The guard's release button (in the guardhouse): the guard opens the door.
    GuardRelease,
    /// The button a person presses to ask for a face check (intent: the camera looks only when asked).
    FaceButton,
    /// A presence sensor (PIR or mmWave) in front of the gate.
    Presence,
    /// The door's reed contact; active means the door is open.
    DoorContact,
}

impl Contact {
    /// Every contact.
    pub const ALL: [Contact; 6] = [
        Contact::ExitButton,
        Contact::GuardCall,
        Contact::GuardRelease,
        Contact::FaceButton,
        Contact::Presence,
        Contact::DoorContact,
    ];

    /// A short name for logs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExitButton => "exit button",
            Self::GuardCall => "guard call",
            Self::GuardRelease => "guard release",
            Self::FaceButton => "face button",
            Self::Presence => "presence",
            Self::DoorContact => "door contact",
        }
    }
}

impl std::fmt::Display for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A debounced change of one contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContactChange {
    /// Which contact.
    pub contact: Contact,
    /// Its new state: pressed, presence seen, door open.
    pub active: bool,
}

/// The gate's contact inputs.
pub trait ContactInputs: Send {
    /// The next debounced change within `timeout`, or `None`.
    fn next_change(&mut self, timeout: Duration) -> Result<Option<ContactChange>, ActuateError>;

    /// A short description for logs.
    fn describe(&self) -> String;
}

/// Debounces one input: a new level is accepted once it has been seen continuously for `hold`.
#[derive(Clone, Copy, Debug)]
pub struct Debouncer {
    stable: bool,
    hold: Duration,
    /// Since when the samples have differed from `stable`.
    differs_since: Option<Instant>,
}

impl Debouncer {
    /// A debouncer whose accepted level starts as `initial`.
    pub fn new(initial: bool, hold: Duration) -> Self {
        Self { stable: initial, hold, differs_since: None }
    }

    /// Feeds one sample taken at `now`; returns the new level when it changes.
    pub fn sample(&mut self, level: bool, now: Instant) -> Option<bool> {
        if level == self.stable {
            // A bounce back cancels the pending change: the new level must hold again from scratch.
            self.differs_since = None;
            return None;
        }
        let since = *self.differs_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.hold {
            self.stable = level;
            self.differs_since = None;
            return Some(level);
        }
        None
    }

    /// The accepted level.
    pub fn level(&self) -> bool {
        self.stable
    }
}

struct ContactPin {
    contact: Contact,
    bcm: u8,
    active_low: bool,
    pin: rppal::gpio::InputPin,
    debouncer: Debouncer,
}

/// Contacts on GPIO pins, sampled every [`POLL`] and debounced.
pub struct GpioContacts {
    pins: Vec<ContactPin>,
    pending: VecDeque<ContactChange>,
}

impl std::fmt::Debug for GpioContacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl GpioContacts {
    /// Claims one input pin per contact: `(contact, BCM, active_low)`, each with its pull-up on (see the
    /// module docs for the wiring). A contact or a pin listed twice is refused: wire several buttons of one
    /// kind in parallel on one pin.
    pub fn open(pins: &[(Contact, u8, bool)]) -> Result<Self, ActuateError> {
        for (i, &(contact, bcm, _)) in pins.iter().enumerate() {
            for &(other, other_bcm, _) in &pins[..i] {
                if other == contact {
                    return Err(ActuateError::Settings(format!(
                        "the {contact} is listed twice; wire several of them in parallel on one pin"
                    )));
                }
                if other_bcm == bcm {
                    return Err(ActuateError::Settings(format!(
                        "BCM {bcm} is given to both the {other} and the {contact}"
                    )));
                }
            }
        }
        let gpio = rppal::gpio::Gpio::new().map_err(ActuateError::gpio("chip"))?;
        let mut claimed = Vec::with_capacity(pins.len());
        for &(contact, bcm, active_low) in pins {
            let pin = gpio.get(bcm).map_err(ActuateError::gpio(format!("BCM {bcm} ({contact})")))?;
            // Pull-up for every contact, whatever its polarity: each is wired to ground, and a cut wire must
            // read "switch open" (see the module docs).
            let pin = pin.into_input_pullup();
            claimed.push(ContactPin {
                contact,
                bcm,
                active_low,
                pin,
                // Baseline "inactive": a contact active at start is reported once it has held for DEBOUNCE.
                debouncer: Debouncer::new(false, DEBOUNCE),
            });
        }
        Ok(Self { pins: claimed, pending: VecDeque::new() })
    }

    fn sample_all(&mut self, now: Instant) {
        for p in &mut self.pins {
            let active = p.pin.is_high() != p.active_low;
            if let Some(active) = p.debouncer.sample(active, now) {
                self.pending.push_back(ContactChange { contact: p.contact, active });
            }
        }
    }
}

impl ContactInputs for GpioContacts {
    fn next_change(&mut self, timeout: Duration) -> Result<Option<ContactChange>, ActuateError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Ok(Some(change));
            }
            let now = Instant::now();
            self.sample_all(now);
            if !self.pending.is_empty() {
                continue;
            }
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    }

    fn describe(&self) -> String {
        let pins: Vec<String> = self
            .pins
            .iter()
            .map(|p| format!("{} BCM {} (active {})", p.contact, p.bcm, if p.active_low { "low" } else { "high" }))
            .collect();
        format!("GPIO contacts: {}", pins.join(", "))
    }
}

/// Contacts fed through a channel (tests, and the off-Pi demo). Like the GPIO contacts, only changes are
/// reported: setting a contact to the state it already has reports nothing.
#[derive(Debug)]
pub struct SimulatedContacts {
    changes: mpsc::Receiver<ContactChange>,
    active: Vec<Contact>,
}

/// The sending side of [`SimulatedContacts`].
#[derive(Clone, Debug)]
pub struct ContactFeeder(mpsc::Sender<ContactChange>);

impl ContactFeeder {
    /// Presses and releases `contact` (active, then inactive).
    pub fn press(&self, contact: Contact) {
        self.set(contact, true);
        self.set(contact, false);
    }

    /// Sets `contact` active or inactive.
    pub fn set(&self, contact: Contact, active: bool) {
        // A dropped receiver is a stopped gate; nothing to report to.
        let _ = self.0.send(ContactChange { contact, active });
    }
}

impl SimulatedContacts {
    /// Contacts, all inactive, and the handle that changes them.
    pub fn new() -> (Self, ContactFeeder) {
        let (tx, rx) = mpsc::channel();
        (Self { changes: rx, active: Vec::new() }, ContactFeeder(tx))
    }
}

impl ContactInputs for SimulatedContacts {
    fn next_change(&mut self, timeout: Duration) -> Result<Option<ContactChange>, ActuateError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let change = match self.changes.recv_timeout(left) {
                Ok(change) => change,
                // A disconnected feeder is idle contacts, not a fault.
                Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => return Ok(None),
            };
            let was_active = self.active.contains(&change.contact);
            if was_active == change.active {
                continue;
            }
            if change.active {
                self.active.push(change.contact);
            } else {
                self.active.retain(|&c| c != change.contact);
            }
            return Ok(Some(change));
        }
    }

    fn describe(&self) -> String {
        "simulated contacts".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_bouncing_press_counts_once_after_it_holds() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(false, DEBOUNCE);
        // Contact bounce: the level flips for a few ms, then settles high.
        let samples = [(0, true), (5, false), (10, true), (15, false), (20, true), (25, true), (30, true)];
        for (t, level) in samples {
            assert_eq!(d.sample(level, t0 + ms(t)), None, "at {t} ms");
        }
        assert_eq!(d.sample(true, t0 + ms(45)), None, "held 25 ms since the last bounce");
        assert_eq!(d.sample(true, t0 + ms(50)), Some(true), "held 30 ms");
        assert_eq!(d.sample(true, t0 + ms(55)), None, "reported once");
        assert!(d.level());
        // The release, clean this time.
        assert_eq!(d.sample(false, t0 + ms(100)), None);
        assert_eq!(d.sample(false, t0 + ms(130)), Some(false));
    }

    #[test]
    fn a_glitch_shorter_than_the_hold_is_ignored() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(false, DEBOUNCE);
        let mut changes = Vec::new();
        // A 25 ms spike (interference on a long cable), sampled every 5 ms.
        for t in (0..200).step_by(5) {
            let level = (50..75).contains(&t);
            if let Some(c) = d.sample(level, t0 + ms(t)) {
                changes.push(c);
            }
        }
        assert!(changes.is_empty(), "{changes:?}");
        assert!(!d.level());
    }

    #[test]
    fn a_level_that_holds_exactly_the_debounce_time_counts() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(true, ms(30));
        assert_eq!(d.sample(false, t0), None);
        assert_eq!(d.sample(false, t0 + ms(29)), None);
        assert_eq!(d.sample(false, t0 + ms(30)), Some(false));
    }

    #[test]
    fn the_simulated_contacts_report_changes_only() {
        let (mut contacts, feeder) = SimulatedContacts::new();
        feeder.press(Contact::ExitButton);
        feeder.set(Contact::DoorContact, true);
        feeder.set(Contact::DoorContact, true);
        feeder.set(Contact::Presence, false);
        feeder.set(Contact::DoorContact, false);
        let mut seen = Vec::new();
        while let Some(c) = contacts.next_change(ms(10)).unwrap() {
            seen.push((c.contact, c.active));
        }
        assert_eq!(
            seen,
            vec![
                (Contact::ExitButton, true),
                (Contact::ExitButton, false),
                (Contact::DoorContact, true),
                (Contact::DoorContact, false),
            ]
        );
        drop(feeder);
        assert_eq!(contacts.next_change(ms(10)).unwrap(), None, "a dropped feeder is idle");
    }

    #[test]
    fn the_default_pins_avoid_each_other_the_relay_the_keypad_and_the_buses() {
        let mut pins: Vec<u8> = DEFAULT_CONTACT_PINS.iter().map(|&(_, bcm, _)| bcm).collect();
        pins.extend(crate::devices::lights::DEFAULT_PINS);
        pins.extend([crate::devices::wiegand::DEFAULT_D0, crate::devices::wiegand::DEFAULT_D1]);
        let relay_and_keypad = [17, 5, 6, 13, 19, 12, 16, 20];
        // ID EEPROM, I2C1 and UART0 stay free (SPI0 gives its chip selects to Wiegand; see hardware/README.md).
        let buses = [0, 1, 2, 3, 14, 15];
        let mut seen = Vec::new();
        for bcm in pins {
            assert!(bcm <= 27, "BCM {bcm} is not on the header");
            assert!(!seen.contains(&bcm), "BCM {bcm} used twice");
            assert!(!relay_and_keypad.contains(&bcm), "BCM {bcm} is the relay's or the keypad's");
            assert!(!buses.contains(&bcm), "BCM {bcm} is a bus pin");
            seen.push(bcm);
        }
        let contacts: Vec<Contact> = DEFAULT_CONTACT_PINS.iter().map(|&(c, _, _)| c).collect();
        assert_eq!(contacts, Contact::ALL);
    }

    #[test]
    fn off_a_pi_the_gpio_contacts_say_what_to_do() {
        let twice = [(Contact::ExitButton, 22, true), (Contact::ExitButton, 23, true)];
        assert!(GpioContacts::open(&twice).unwrap_err().to_string().contains("parallel"));
        let shared = [(Contact::ExitButton, 22, true), (Contact::GuardCall, 22, true)];
        assert!(GpioContacts::open(&shared).unwrap_err().to_string().contains("BCM 22"));
        if std::path::Path::new("/dev/gpiomem").exists() {
            return;
        }
        let err = GpioContacts::open(&DEFAULT_CONTACT_PINS).unwrap_err();
        assert!(err.to_string().contains("hardware.backend = \"simulated\""), "{err}");
    }
}
