//! Wiegand: an optional Wiegand-26 (HID H10301) output to an access controller the compound already has, so
//! the controller sees each opening as if a card had been read. [`Wiegand26`] (framing, parity, decoding) is
//! pure; the output is a small trait with an rppal (GPIO) implementation and a simulated one.
//!
//! Privacy: facegate never sends a per-person card number. Existing controllers log every card number they
//! receive, with the time, and a number per resident would rebuild there the per-person movement history that
//! facegate refuses to keep (its own records are hourly counts per entry method, never who). So facegate
//! sends one fixed card number per entry METHOD (face, PIN, visitor pass, guard), chosen by the installer in
//! [`MethodCards`]: the controller learns "opened by face at 08:14", exactly what facegate's own counts
//! could say, and nothing about who.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ActuateError;
use crate::policy::passage::EntryMethod;

/// The default pins (BCM) of D0 and D1; hardware/README.md has the wiring.
pub const DEFAULT_D0: u8 = 8;
/// See [`DEFAULT_D0`]. Both idle high from power-on (BCM 0-8 have pull-ups until facegate claims them), so
/// a booting Pi clocks no stray bits into the controller.
pub const DEFAULT_D1: u8 = 7;

/// How long a data line is pulled low for one bit. Controllers accept roughly 20-100 µs.
pub const PULSE: Duration = Duration::from_micros(50);

/// From the start of one bit to the start of the next. Controllers accept roughly 200 µs to 20 ms.
pub const BIT_INTERVAL: Duration = Duration::from_millis(2);

/// The quiet time that ends a frame; the next frame waits at least this long after the previous one.
pub const FRAME_GAP: Duration = Duration::from_millis(100);

/// Why 26 bits are not a valid H10301 frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WiegandError {
    /// Bit 1 does not make bits 1-13 even.
    #[error(
        "Wiegand-26: the leading even parity is wrong; the frame is damaged or not H10301, check the D0/D1 wiring and the controller's card format"
    )]
    EvenParity,
    /// Bit 26 does not make bits 14-26 odd.
    #[error(
        "Wiegand-26: the trailing odd parity is wrong; the frame is damaged or not H10301, check the D0/D1 wiring and the controller's card format"
    )]
    OddParity,
}

/// One standard 26-bit Wiegand frame (H10301): even parity, 8-bit facility code, 16-bit card number, odd
/// parity, sent most significant bit first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Wiegand26 {
    facility: u8,
    card: u16,
}

impl Wiegand26 {
    /// The frame of a facility code and a card number.
    pub fn new(facility: u8, card: u16) -> Self {
        Self { facility, card }
    }

    /// The facility (site) code.
    pub fn facility(&self) -> u8 {
        self.facility
    }

    /// The card number.
    pub fn card(&self) -> u16 {
        self.card
    }

    /// The 26 bits in the order they are sent: `[even parity, facility (8, MSB first), card (16, MSB first),
    /// odd parity]`. The even parity covers the first 12 data bits, the odd parity the last 12.
    pub fn bits(&self) -> [bool; 26] {
        let data = (u32::from(self.facility) << 16) | u32::from(self.card);
        let mut bits = [false; 26];
        for (i, bit) in bits[1..25].iter_mut().enumerate() {
            *bit = data & (1 << (23 - i)) != 0;
        }
        let leading = bits[1..13].iter().filter(|&&b| b).count();
        let trailing = bits[13..25].iter().filter(|&&b| b).count();
        bits[0] = leading % 2 == 1;
        bits[25] = trailing % 2 == 0;
        bits
    }

    /// The bits as a string of `0` and `1`, in sending order.
    pub fn bit_string(&self) -> String {
        self.bits().iter().map(|&b| if b { '1' } else { '0' }).collect()
    }

    /// Reads 26 received bits, checking both parities.
    pub fn decode(bits: [bool; 26]) -> Result<Self, WiegandError> {
        let ones = |range: std::ops::Range<usize>| bits[range].iter().filter(|&&b| b).count();
        if ones(0..13) % 2 != 0 {
            return Err(WiegandError::EvenParity);
        }
        if ones(13..26) % 2 != 1 {
            return Err(WiegandError::OddParity);
        }
        let data = bits[1..25].iter().fold(0u32, |acc, &b| (acc << 1) | u32::from(b));
        let [_, facility, card_high, card_low] = data.to_be_bytes();
        Ok(Self { facility, card: u16::from_be_bytes([card_high, card_low]) })
    }
}

/// The card number sent for each entry method (one per method, never one per person: see the module docs).
/// The installer enrols these "cards" in the existing controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodCards {
    /// The facility code of every frame.
    pub facility: u8,
    /// Sent when a resident's face opened the door.
    pub face: u16,
    /// Sent when a resident's PIN opened the door.
    pub pin: u16,
    /// Sent when a visitor pass opened the door.
    pub visitor: u16,
    /// Sent when the guard opened the door.
    pub guard: u16,
}

impl MethodCards {
    /// The frame for an opening by `method`.
    pub fn card_for(&self, method: EntryMethod) -> Wiegand26 {
        let card = match method {
            EntryMethod::Face => self.face,
            EntryMethod::Pin => self.pin,
            EntryMethod::VisitorPass => self.visitor,
            EntryMethod::Guard => self.guard,
        };
        Wiegand26::new(self.facility, card)
    }
}

/// A Wiegand output to an access controller.
pub trait WiegandOutput: Send {
    /// Sends one frame; blocks for the frame's length (about 50 ms), plus the gap after a previous frame.
    fn send(&mut self, frame: Wiegand26) -> Result<(), ActuateError>;

    /// A short description for logs.
    fn describe(&self) -> String;
}

/// Wiegand D0/D1 on two GPIO pins. The lines idle high; a 0 pulls D0 low for [`PULSE`], a 1 pulls D1 low,
/// one bit every [`BIT_INTERVAL`].
///
/// Timing: the 2 ms between bits is a `thread::sleep`, whose overshoot (tens of µs, under a millisecond even
/// on a busy Pi) is far inside the 200 µs-20 ms that controllers accept. The 50 µs pulse itself is a short
/// busy wait instead: Linux's default 50 µs timer slack can stretch a 50 µs sleep past 100 µs, the top of
/// what some controllers accept, and the 26 pulses of a frame spin for only 1.3 ms.
#[derive(Debug)]
pub struct GpioWiegand {
    d0: rppal::gpio::OutputPin,
    d1: rppal::gpio::OutputPin,
    bcm: (u8, u8),
    inverted: bool,
    last_frame: Option<Instant>,
}

impl GpioWiegand {
    /// Claims D0 and D1 (BCM), driven idle high: direct to a 3.3 V controller, or through a non-inverting
    /// level shifter (BSS138 module) to a 5 V one.
    pub fn open(d0: u8, d1: u8) -> Result<Self, ActuateError> {
        Self::claim(d0, d1, false)
    }

    /// As [`GpioWiegand::open`], for open-collector stages (an NPN transistor or N-MOSFET per line), which
    /// invert: the pins idle low and go high to pull a line low.
    pub fn open_inverted(d0: u8, d1: u8) -> Result<Self, ActuateError> {
        Self::claim(d0, d1, true)
    }

    fn claim(d0: u8, d1: u8, inverted: bool) -> Result<Self, ActuateError> {
        if d0 == d1 {
            return Err(ActuateError::Settings(format!("Wiegand D0 and D1 are both BCM {d0}")));
        }
        let gpio = rppal::gpio::Gpio::new().map_err(ActuateError::gpio("chip"))?;
        let claim = |bcm: u8, name: &str| -> Result<rppal::gpio::OutputPin, ActuateError> {
            let pin = gpio.get(bcm).map_err(ActuateError::gpio(format!("BCM {bcm} (Wiegand {name})")))?;
            let mut pin = if inverted { pin.into_output_low() } else { pin.into_output_high() };
            // Keep the lines driven idle after drop: a floating line can clock in garbage bits.
            pin.set_reset_on_drop(false);
            Ok(pin)
        };
        Ok(Self { d0: claim(d0, "D0")?, d1: claim(d1, "D1")?, bcm: (d0, d1), inverted, last_frame: None })
    }

    fn pulse(pin: &mut rppal::gpio::OutputPin, inverted: bool) {
        use rppal::gpio::Level;
        let (active, idle) = if inverted { (Level::High, Level::Low) } else { (Level::Low, Level::High) };
        let start = Instant::now();
        pin.write(active);
        while start.elapsed() < PULSE {
            std::hint::spin_loop();
        }
        pin.write(idle);
    }
}

impl WiegandOutput for GpioWiegand {
    fn send(&mut self, frame: Wiegand26) -> Result<(), ActuateError> {
        if let Some(last) = self.last_frame {
            std::thread::sleep(FRAME_GAP.saturating_sub(last.elapsed()));
        }
        for bit in frame.bits() {
            let start = Instant::now();
            let pin = if bit { &mut self.d1 } else { &mut self.d0 };
            Self::pulse(pin, self.inverted);
            std::thread::sleep(BIT_INTERVAL.saturating_sub(start.elapsed()));
        }
        self.last_frame = Some(Instant::now());
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "Wiegand-26 on BCM {} (D0) and BCM {} (D1){}",
            self.bcm.0,
            self.bcm.1,
            if self.inverted { ", inverted (open collector)" } else { "" }
        )
    }
}

/// A shared, cloneable view of the frames a simulated Wiegand output sent.
#[derive(Clone, Debug, Default)]
pub struct WiegandLog(Arc<Mutex<Vec<Wiegand26>>>);

impl WiegandLog {
    /// Every frame sent, oldest first.
    pub fn frames(&self) -> Vec<Wiegand26> {
        self.0.lock().map(|log| log.clone()).unwrap_or_default()
    }

    fn push(&self, frame: Wiegand26) {
        if let Ok(mut log) = self.0.lock() {
            log.push(frame);
        }
    }
}

/// A Wiegand output that only records.
#[derive(Debug)]
pub struct SimulatedWiegand {
    log: WiegandLog,
}

impl SimulatedWiegand {
    /// An output and the log of what it sent.
    pub fn new() -> (Self, WiegandLog) {
        let log = WiegandLog::default();
        (Self { log: log.clone() }, log)
    }
}

impl WiegandOutput for SimulatedWiegand {
    fn send(&mut self, frame: Wiegand26) -> Result<(), ActuateError> {
        self.log.push(frame);
        Ok(())
    }

    fn describe(&self) -> String {
        "simulated Wiegand output".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> [bool; 26] {
        let v: Vec<bool> = s.chars().map(|c| c == '1').collect();
        v.try_into().expect("26 bits")
    }

    #[test]
    fn frames_match_the_h10301_layout_worked_by_hand() {
        // H10301 (HID tech tip 5): P AAAAAAAA BBBBBBBBBBBBBBBB P, the first P makes bits 1-13 even, the last
        // makes bits 14-26 odd. Each row below is worked by hand:
        let cases = [
            // Facility 1 = 00000001, card 1 = 0000000000000001. Bits 2-13 (00000001 0000) hold one 1: even
            // parity 1. Bits 14-25 (000000000001) hold one 1, already odd: odd parity 0. (0x2020002)
            (1, 1, "10000000100000000000000010"),
            // All zero: even parity 0; the last twelve hold no 1, odd parity 1.
            (0, 0, "00000000000000000000000001"),
            // All ones: twelve 1s in each half, even parity 0, odd parity 1.
            (255, 65535, "01111111111111111111111111"),
            // Facility 18 = 00010010, card 12345 = 0011000000111001. Bits 2-13 (00010010 0011): four 1s,
            // even parity 0. Bits 14-25 (000000111001): four 1s, odd parity 1. (0x246073)
            (18, 12345, "00001001000110000001110011"),
            // Facility 123 = 01111011, card 4567 = 0001000111010111. Bits 2-13 (01111011 0001): seven 1s,
            // even parity 1. Bits 14-25 (000111010111): seven 1s, odd parity 0. (0x2f623ae)
            (123, 4567, "10111101100010001110101110"),
        ];
        for (facility, card, expected) in cases {
            let frame = Wiegand26::new(facility, card);
            assert_eq!(frame.bit_string(), expected, "facility {facility} card {card}");
            assert_eq!(frame.bits(), parse(expected));
            assert_eq!(Wiegand26::decode(parse(expected)), Ok(frame));
        }
    }

    #[test]
    fn every_frame_round_trips_and_any_single_flipped_bit_is_caught() {
        for (facility, card) in [(0, 1), (7, 300), (128, 32768), (200, 54321), (255, 0)] {
            let frame = Wiegand26::new(facility, card);
            let bits = frame.bits();
            assert_eq!(Wiegand26::decode(bits), Ok(frame));
            assert_eq!(frame.facility(), facility);
            assert_eq!(frame.card(), card);
            for i in 0..26 {
                let mut damaged = bits;
                damaged[i] = !damaged[i];
                let expected = if i < 13 { WiegandError::EvenParity } else { WiegandError::OddParity };
                assert_eq!(Wiegand26::decode(damaged), Err(expected), "bit {i} of {facility}/{card}");
            }
        }
    }

    #[test]
    fn one_card_per_method_never_per_person() {
        let cards = MethodCards { facility: 42, face: 1001, pin: 1002, visitor: 1003, guard: 1004 };
        let sent: Vec<(u8, u16)> = [EntryMethod::Face, EntryMethod::Pin, EntryMethod::VisitorPass, EntryMethod::Guard]
            .into_iter()
            .map(|m| cards.card_for(m))
            .map(|f| (f.facility(), f.card()))
            .collect();
        assert_eq!(sent, vec![(42, 1001), (42, 1002), (42, 1003), (42, 1004)]);
        let parsed: MethodCards =
            toml::from_str("facility = 42\nface = 1001\npin = 1002\nvisitor = 1003\nguard = 1004").unwrap();
        assert_eq!(parsed, cards);
        assert!(toml::from_str::<MethodCards>("facility = 1\nface = 1\npin = 2\nvisitor = 3\nguard = 4\nresident = 5")
            .is_err());
    }

    #[test]
    fn the_simulated_output_records_frames() {
        let (mut out, log) = SimulatedWiegand::new();
        out.send(Wiegand26::new(1, 2)).unwrap();
        out.send(Wiegand26::new(1, 3)).unwrap();
        assert_eq!(log.frames(), vec![Wiegand26::new(1, 2), Wiegand26::new(1, 3)]);
    }

    #[test]
    fn the_gpio_output_refuses_one_pin_for_both_lines_and_off_a_pi_says_what_to_do() {
        assert!(GpioWiegand::open(8, 8).unwrap_err().to_string().contains("both BCM 8"));
        if std::path::Path::new("/dev/gpiomem").exists() {
            return;
        }
        let err = GpioWiegand::open(DEFAULT_D0, DEFAULT_D1).unwrap_err();
        assert!(err.to_string().contains("hardware.backend = \"simulated\""), "{err}");
    }
}
