//! Keypad: the non-biometric way in, behind a small trait, with a 4x3 GPIO matrix implementation (rppal) and
//! a simulated one; and [`PinEntry`], the pure parser of what is typed.
//!
//! Typing is `CODE # PIN #` (the code is the resident's keypad code, e.g. the unit number); `*` clears. The
//! parser holds the digits in zeroizing memory and hands out a [`Pin`] only on submission. Nothing typed is
//! ever logged.

use std::sync::mpsc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::devices::hid::HidDevice;
use crate::devices::ActuateError;
use crate::protect::Pin;

/// One key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// 0-9.
    Digit(u8),
    /// `#`: separates the code from the PIN, and submits.
    Enter,
    /// `*`: clears what was typed.
    Clear,
}

impl Key {
    /// The key for a keypad character (`0-9`, `#`, `*`).
    pub fn from_char(c: char) -> Option<Self> {
        match c {
            '0'..='9' => c.to_digit(10).and_then(|d| u8::try_from(d).ok()).map(Key::Digit),
            '#' => Some(Key::Enter),
            '*' => Some(Key::Clear),
            _ => None,
        }
    }
}

/// A keypad.
pub trait Keypad: Send {
    /// The next key pressed within `timeout`, or `None`.
    fn next_key(&mut self, timeout: Duration) -> Result<Option<Key>, ActuateError>;
}

/// A keypad fed through a channel (tests, and the off-Pi demo).
#[derive(Debug)]
pub struct SimulatedKeypad {
    keys: mpsc::Receiver<Key>,
}

/// The sending side of a [`SimulatedKeypad`].
#[derive(Clone, Debug)]
pub struct KeypadFeeder(mpsc::Sender<Key>);

impl KeypadFeeder {
    /// Presses the keys of `typed` (`0-9`, `#`, `*`; anything else is ignored).
    pub fn type_str(&self, typed: &str) {
        for key in typed.chars().filter_map(Key::from_char) {
            let _ = self.0.send(key);
        }
    }
}

impl SimulatedKeypad {
    /// A keypad and the handle that presses its keys.
    pub fn new() -> (Self, KeypadFeeder) {
        let (tx, rx) = mpsc::channel();
        (Self { keys: rx }, KeypadFeeder(tx))
    }
}

impl Keypad for SimulatedKeypad {
    fn next_key(&mut self, timeout: Duration) -> Result<Option<Key>, ActuateError> {
        match self.keys.recv_timeout(timeout) {
            Ok(key) => Ok(Some(key)),
            Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {
                // A disconnected feeder is an idle keypad, not a fault.
                Ok(None)
            }
        }
    }
}

/// A 4x3 membrane keypad on GPIO: rows driven low one at a time, columns read with pull-ups.
#[derive(Debug)]
pub struct MatrixKeypad {
    rows: Vec<rppal::gpio::OutputPin>,
    cols: Vec<rppal::gpio::InputPin>,
    held: Option<Key>,
}

const MATRIX: [[char; 3]; 4] = [['1', '2', '3'], ['4', '5', '6'], ['7', '8', '9'], ['*', '0', '#']];

impl MatrixKeypad {
    /// Claims four row pins and three column pins (BCM numbers).
    pub fn open(rows: [u8; 4], cols: [u8; 3]) -> Result<Self, ActuateError> {
        let gpio = rppal::gpio::Gpio::new().map_err(ActuateError::gpio("chip"))?;
        let pin = |bcm: u8| gpio.get(bcm).map_err(ActuateError::gpio(format!("BCM {bcm}")));
        let rows = rows.iter().map(|&b| pin(b).map(rppal::gpio::Pin::into_output_high)).collect::<Result<_, _>>()?;
        let cols = cols.iter().map(|&b| pin(b).map(rppal::gpio::Pin::into_input_pullup)).collect::<Result<_, _>>()?;
        Ok(Self { rows, cols, held: None })
    }

    fn scan(&mut self) -> Option<Key> {
        let mut found = None;
        for (r, row) in self.rows.iter_mut().enumerate() {
            row.set_low();
            std::thread::sleep(Duration::from_micros(50));
            for (c, col) in self.cols.iter().enumerate() {
                if col.is_low() {
                    found = Key::from_char(MATRIX[r][c]);
                }
            }
            row.set_high();
        }
        found
    }
}

impl Keypad for MatrixKeypad {
    fn next_key(&mut self, timeout: Duration) -> Result<Option<Key>, ActuateError> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            let now = self.scan();
            // A key counts once when pressed (debounced by the 10 ms scan period), not while held.
            let pressed = if now != self.held { now } else { None };
            self.held = now;
            if pressed.is_some() {
                return Ok(pressed);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(None)
    }
}

/// How often a USB keypad is read when idle. Its keystrokes wait in the kernel meanwhile; 10 ms is below
/// what a person notices.
const USB_KEYPAD_POLL: Duration = Duration::from_millis(10);

/// The key of a USB keypad's key code, or `None` for keys facegate ignores.
///
/// Digits: the top-row digits, the numeric keypad's (reported the same whether NumLock is on or off) and the
/// phone-style numeric keys. Enter (`#`): Enter, keypad Enter, and `#` of phone-style pads. Clear (`*`): keypad
/// `*`, Backspace, Esc, Delete, and `*` of phone-style pads. Everything else is ignored, including the keypad's
/// `.`: it sits beside `0`, and a slip onto it must neither submit half a PIN nor count as a failure. Shift is
/// not tracked, so on a full keyboard Shift+3 is a 3, not `#`.
pub fn usb_key(code: evdev::KeyCode) -> Option<Key> {
    use evdev::KeyCode as K;
    let digit = match code {
        K::KEY_0 | K::KEY_KP0 | K::KEY_NUMERIC_0 => Some(0),
        K::KEY_1 | K::KEY_KP1 | K::KEY_NUMERIC_1 => Some(1),
        K::KEY_2 | K::KEY_KP2 | K::KEY_NUMERIC_2 => Some(2),
        K::KEY_3 | K::KEY_KP3 | K::KEY_NUMERIC_3 => Some(3),
        K::KEY_4 | K::KEY_KP4 | K::KEY_NUMERIC_4 => Some(4),
        K::KEY_5 | K::KEY_KP5 | K::KEY_NUMERIC_5 => Some(5),
        K::KEY_6 | K::KEY_KP6 | K::KEY_NUMERIC_6 => Some(6),
        K::KEY_7 | K::KEY_KP7 | K::KEY_NUMERIC_7 => Some(7),
        K::KEY_8 | K::KEY_KP8 | K::KEY_NUMERIC_8 => Some(8),
        K::KEY_9 | K::KEY_KP9 | K::KEY_NUMERIC_9 => Some(9),
        _ => None,
    };
    if let Some(d) = digit {
        return Some(Key::Digit(d));
    }
    match code {
        K::KEY_ENTER | K::KEY_KPENTER | K::KEY_NUMERIC_POUND => Some(Key::Enter),
        K::KEY_KPASTERISK | K::KEY_BACKSPACE | K::KEY_ESC | K::KEY_DELETE | K::KEY_NUMERIC_STAR => Some(Key::Clear),
        _ => None,
    }
}

/// A USB numeric keypad (a HID keyboard), read through evdev with an exclusive grab, so typed PINs never reach
/// a console. Key-down events only: holding a key types it once. See [`usb_key`] for the mapping.
#[derive(Debug)]
pub struct UsbKeypad {
    device: HidDevice,
    pending: std::collections::VecDeque<Key>,
}

impl UsbKeypad {
    /// Opens and grabs the keypad at `path`; prefer the stable `/dev/input/by-id/usb-...-event-kbd` link
    /// to `/dev/input/eventN`, whose number can change between boots.
    pub fn open(path: &std::path::Path) -> Result<Self, ActuateError> {
        Ok(Self { device: HidDevice::open(path)?, pending: std::collections::VecDeque::new() })
    }

    /// A short description for logs.
    pub fn describe(&self) -> String {
        format!("USB keypad {}", self.device.describe())
    }
}

impl Keypad for UsbKeypad {
    fn next_key(&mut self, timeout: Duration) -> Result<Option<Key>, ActuateError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(key) = self.pending.pop_front() {
                return Ok(Some(key));
            }
            let pending = &mut self.pending;
            self.device.read_keys(|code, value| {
                if value == 1 {
                    pending.extend(usb_key(code));
                }
            })?;
            if !self.pending.is_empty() {
                continue;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(USB_KEYPAD_POLL.min(deadline - now));
        }
    }
}

/// What a keystroke completed.
#[derive(Debug)]
pub enum Entry {
    /// Still typing.
    Typing,
    /// A keypad code and a PIN, submitted.
    Submitted {
        /// The keypad code.
        code: String,
        /// The PIN.
        pin: Pin,
    },
    /// Something malformed was submitted (shown as a refusal, counted as a PIN failure by the caller).
    Malformed,
}

/// Collects keystrokes into `CODE # PIN #`.
#[derive(Default)]
pub struct PinEntry {
    code: Option<Zeroizing<String>>,
    digits: Zeroizing<String>,
}

impl std::fmt::Debug for PinEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinEntry(..)")
    }
}

impl PinEntry {
    /// Feeds one key.
    pub fn push(&mut self, key: Key) -> Entry {
        match key {
            Key::Digit(d) => {
                if self.digits.len() >= 8 {
                    self.clear();
                    return Entry::Malformed;
                }
                self.digits.push(char::from(b'0' + d.min(9)));
                Entry::Typing
            }
            Key::Clear => {
                self.clear();
                Entry::Typing
            }
            Key::Enter => match self.code.take() {
                None => {
                    self.code = Some(std::mem::take(&mut self.digits));
                    Entry::Typing
                }
                Some(code) => {
                    let outcome = match Pin::parse(&self.digits) {
                        Ok(pin) if !code.is_empty() => Entry::Submitted { code: code.to_string(), pin },
                        _ => Entry::Malformed,
                    };
                    self.clear();
                    outcome
                }
            },
        }
    }

    /// Forgets what was typed (after a timeout, or `*`).
    pub fn clear(&mut self) {
        self.code = None;
        self.digits = Zeroizing::new(String::new());
    }

    /// Whether anything is typed.
    pub fn is_empty(&self) -> bool {
        self.code.is_none() && self.digits.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(entry: &mut PinEntry, typed: &str) -> Vec<Entry> {
        typed.chars().filter_map(Key::from_char).map(|k| entry.push(k)).collect()
    }

    #[test]
    fn code_then_pin_then_enter() {
        let mut entry = PinEntry::default();
        let outcomes = feed(&mut entry, "3401#4071#");
        assert!(outcomes[..9].iter().all(|o| matches!(o, Entry::Typing)));
        let Some(Entry::Submitted { code, pin }) = outcomes.last() else { panic!("{outcomes:?}") };
        assert_eq!(code, "3401");
        let pepper = crate::protect::PinPepper::derive(&crate::protect::AeadKey::from_bytes([1; 32]));
        let verifier = crate::protect::pin_verifier(&Pin::parse("4071").unwrap(), &pepper).unwrap();
        assert!(crate::protect::verify_pin(pin, &verifier, &pepper).unwrap());
        assert!(entry.is_empty());
        // `*` starts over; a PIN too short is malformed.
        assert!(matches!(feed(&mut entry, "99*3401#12#").last(), Some(Entry::Malformed)));
        assert!(matches!(feed(&mut entry, "#4071#").last(), Some(Entry::Malformed)), "no code");
        assert!(matches!(feed(&mut entry, "123456789").last(), Some(Entry::Malformed)), "too long");
        assert!(entry.is_empty());
    }

    #[test]
    fn the_simulated_keypad_delivers_keys_in_order() {
        let (mut keypad, feeder) = SimulatedKeypad::new();
        feeder.type_str("1#x*");
        let mut keys = Vec::new();
        while let Some(k) = keypad.next_key(Duration::from_millis(10)).unwrap() {
            keys.push(k);
        }
        assert_eq!(keys, vec![Key::Digit(1), Key::Enter, Key::Clear]);
    }

    #[test]
    fn usb_keys_map_digits_enter_and_clear_and_ignore_the_rest() {
        use evdev::KeyCode as K;
        let digits = [
            (K::KEY_0, K::KEY_KP0),
            (K::KEY_1, K::KEY_KP1),
            (K::KEY_2, K::KEY_KP2),
            (K::KEY_3, K::KEY_KP3),
            (K::KEY_4, K::KEY_KP4),
            (K::KEY_5, K::KEY_KP5),
            (K::KEY_6, K::KEY_KP6),
            (K::KEY_7, K::KEY_KP7),
            (K::KEY_8, K::KEY_KP8),
            (K::KEY_9, K::KEY_KP9),
        ];
        for (d, (top, pad)) in (0u8..).zip(digits) {
            assert_eq!(usb_key(top), Some(Key::Digit(d)));
            assert_eq!(usb_key(pad), Some(Key::Digit(d)));
            assert_eq!(usb_key(K::new(K::KEY_NUMERIC_0.code() + u16::from(d))), Some(Key::Digit(d)));
        }
        for enter in [K::KEY_ENTER, K::KEY_KPENTER, K::KEY_NUMERIC_POUND] {
            assert_eq!(usb_key(enter), Some(Key::Enter), "{enter:?}");
        }
        for clear in [K::KEY_KPASTERISK, K::KEY_BACKSPACE, K::KEY_ESC, K::KEY_DELETE, K::KEY_NUMERIC_STAR] {
            assert_eq!(usb_key(clear), Some(Key::Clear), "{clear:?}");
        }
        for ignored in [
            K::KEY_KPDOT,
            K::KEY_NUMLOCK,
            K::KEY_KPPLUS,
            K::KEY_KPMINUS,
            K::KEY_KPSLASH,
            K::KEY_A,
            K::KEY_LEFTSHIFT,
            K::KEY_TAB,
        ] {
            assert_eq!(usb_key(ignored), None, "{ignored:?}");
        }
    }

    #[test]
    fn a_usb_keypad_that_is_not_there_says_what_to_do() {
        let err = UsbKeypad::open(std::path::Path::new("/dev/input/by-id/no-such-keypad")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no-such-keypad") && msg.contains("input group"), "{msg}");
    }
}
