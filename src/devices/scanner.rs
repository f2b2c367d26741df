//! Scanner: visitor-pass scanners (a USB QR or barcode scanner in HID keyboard-wedge mode), behind a small
//! trait, with an evdev implementation and a simulated one; and [`HidLineDecoder`], the pure part that turns
//! key events back into the text the scanner typed.
//!
//! A scanned pass is a bearer credential until it is used: its text lives only in zeroizing buffers, is
//! handed to the caller whole, and is never logged or printed (no type here shows it in `Debug`). This module
//! reads text; it never decides whether a pass opens the door.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use evdev::KeyCode as K;
use zeroize::{Zeroize, Zeroizing};

use crate::devices::hid::HidDevice;
use crate::devices::ActuateError;

/// The longest line accepted; longer input is dropped up to the next Enter.
pub const MAX_LINE: usize = 512;

/// Partial input older than this is dropped: a scanner types a whole code in a burst, so a pause means a
/// broken scan (or someone typing on a keyboard plugged in instead).
pub const IDLE_RESET: Duration = Duration::from_secs(1);

/// How often a USB scanner is read. A scanner types a code in one burst and the kernel keeps only a short
/// queue per reader (64 events is common, about ten keystrokes); 2 ms keeps well ahead of it.
const USB_SCANNER_POLL: Duration = Duration::from_millis(2);

/// A visitor-pass scanner.
pub trait PassScanner: Send {
    /// The next scanned text within `timeout`, or `None`.
    fn next_pass(&mut self, timeout: Duration) -> Result<Option<Zeroizing<String>>, ActuateError>;

    /// A short description for logs.
    fn describe(&self) -> String;
}

/// The US-layout keys a scanner types: `(key, unshifted, shifted)`. Printable ASCII, which covers every
/// alphabet a pass can use (base32, base64url, and the `FGP1:` prefix).
const US_LAYOUT: &[(K, char, char)] = &[
    (K::KEY_A, 'a', 'A'),
    (K::KEY_B, 'b', 'B'),
    (K::KEY_C, 'c', 'C'),
    (K::KEY_D, 'd', 'D'),
    (K::KEY_E, 'e', 'E'),
    (K::KEY_F, 'f', 'F'),
    (K::KEY_G, 'g', 'G'),
    (K::KEY_H, 'h', 'H'),
    (K::KEY_I, 'i', 'I'),
    (K::KEY_J, 'j', 'J'),
    (K::KEY_K, 'k', 'K'),
    (K::KEY_L, 'l', 'L'),
    (K::KEY_M, 'm', 'M'),
    (K::KEY_N, 'n', 'N'),
    (K::KEY_O, 'o', 'O'),
    (K::KEY_P, 'p', 'P'),
    (K::KEY_Q, 'q', 'Q'),
    (K::KEY_R, 'r', 'R'),
    (K::KEY_S, 's', 'S'),
    (K::KEY_T, 't', 'T'),
    (K::KEY_U, 'u', 'U'),
    (K::KEY_V, 'v', 'V'),
    (K::KEY_W, 'w', 'W'),
    (K::KEY_X, 'x', 'X'),
    (K::KEY_Y, 'y', 'Y'),
    (K::KEY_Z, 'z', 'Z'),
    (K::KEY_1, '1', '!'),
    (K::KEY_2, '2', '@'),
    (K::KEY_3, '3', '#'),
    (K::KEY_4, '4', '$'),
    (K::KEY_5, '5', '%'),
    (K::KEY_6, '6', '^'),
    (K::KEY_7, '7', '&'),
    (K::KEY_8, '8', '*'),
    (K::KEY_9, '9', '('),
    (K::KEY_0, '0', ')'),
    (K::KEY_MINUS, '-', '_'),
    (K::KEY_EQUAL, '=', '+'),
    (K::KEY_LEFTBRACE, '[', '{'),
    (K::KEY_RIGHTBRACE, ']', '}'),
    (K::KEY_SEMICOLON, ';', ':'),
    (K::KEY_APOSTROPHE, '\'', '"'),
    (K::KEY_GRAVE, '`', '~'),
    (K::KEY_BACKSLASH, '\\', '|'),
    (K::KEY_COMMA, ',', '<'),
    (K::KEY_DOT, '.', '>'),
    (K::KEY_SLASH, '/', '?'),
    (K::KEY_SPACE, ' ', ' '),
    // Some scanners type digits and symbols on the keypad; Shift does not change those.
    (K::KEY_KP0, '0', '0'),
    (K::KEY_KP1, '1', '1'),
    (K::KEY_KP2, '2', '2'),
    (K::KEY_KP3, '3', '3'),
    (K::KEY_KP4, '4', '4'),
    (K::KEY_KP5, '5', '5'),
    (K::KEY_KP6, '6', '6'),
    (K::KEY_KP7, '7', '7'),
    (K::KEY_KP8, '8', '8'),
    (K::KEY_KP9, '9', '9'),
    (K::KEY_KPASTERISK, '*', '*'),
    (K::KEY_KPMINUS, '-', '-'),
    (K::KEY_KPPLUS, '+', '+'),
    (K::KEY_KPDOT, '.', '.'),
    (K::KEY_KPSLASH, '/', '/'),
    (K::KEY_KPEQUAL, '=', '='),
    (K::KEY_KPCOMMA, ',', ','),
    (K::KEY_KPLEFTPAREN, '(', '('),
    (K::KEY_KPRIGHTPAREN, ')', ')'),
];

/// The character a key types on a US layout, or `None` for keys that type nothing printable.
pub fn us_char(key: K, shift: bool) -> Option<char> {
    US_LAYOUT.iter().find(|&&(k, _, _)| k == key).map(|&(_, plain, shifted)| if shift { shifted } else { plain })
}

const LEFT_SHIFT: u8 = 1;
const RIGHT_SHIFT: u8 = 2;
const SHIFT: u8 = LEFT_SHIFT | RIGHT_SHIFT;

fn modifier(key: K) -> Option<u8> {
    match key {
        K::KEY_LEFTSHIFT => Some(LEFT_SHIFT),
        K::KEY_RIGHTSHIFT => Some(RIGHT_SHIFT),
        K::KEY_LEFTCTRL => Some(4),
        K::KEY_RIGHTCTRL => Some(8),
        K::KEY_LEFTALT => Some(16),
        K::KEY_RIGHTALT => Some(32),
        K::KEY_LEFTMETA => Some(64),
        K::KEY_RIGHTMETA => Some(128),
        _ => None,
    }
}

/// Turns a keyboard-wedge scanner's key events back into lines of text: printable US-layout characters
/// (with Shift), a line per Enter. Keys chorded with Ctrl, Alt or Meta, auto-repeats and keys that type
/// nothing printable are ignored. A line longer than [`MAX_LINE`] is dropped whole, up to its Enter; partial
/// input idle for [`IDLE_RESET`] is dropped. The line buffer never reallocates and is wiped when dropped.
pub struct HidLineDecoder {
    line: Zeroizing<String>,
    modifiers: u8,
    overflowed: bool,
    last_event: Option<Instant>,
}

impl std::fmt::Debug for HidLineDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HidLineDecoder(..)")
    }
}

impl Default for HidLineDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HidLineDecoder {
    /// An empty decoder, no key held.
    pub fn new() -> Self {
        Self { line: fresh_line(), modifiers: 0, overflowed: false, last_event: None }
    }

    /// Feeds one key event seen at `at` (`value`: 1 pressed, 0 released, 2 auto-repeat); returns the line an
    /// Enter completed.
    pub fn push(&mut self, key: K, value: i32, at: Instant) -> Option<Zeroizing<String>> {
        self.expire(at);
        self.last_event = Some(at);
        if let Some(bit) = modifier(key) {
            if value == 0 {
                self.modifiers &= !bit;
            } else {
                self.modifiers |= bit;
            }
            return None;
        }
        if value != 1 {
            return None;
        }
        if matches!(key, K::KEY_ENTER | K::KEY_KPENTER) {
            let overflowed = std::mem::take(&mut self.overflowed);
            if overflowed || self.line.is_empty() {
                self.line.zeroize();
                return None;
            }
            return Some(std::mem::replace(&mut self.line, fresh_line()));
        }
        if self.modifiers & !SHIFT != 0 || self.overflowed {
            return None;
        }
        let c = us_char(key, self.modifiers & SHIFT != 0)?;
        if self.line.len() >= MAX_LINE {
            // Too long to be a pass: drop it and everything up to its Enter, which resynchronises.
            self.line.zeroize();
            self.overflowed = true;
            return None;
        }
        self.line.push(c);
        None
    }

    /// Drops partial input if nothing was typed for [`IDLE_RESET`] before `now`. Call it while waiting, so a
    /// broken scan is wiped without waiting for the next one.
    pub fn expire(&mut self, now: Instant) {
        let idle = self.last_event.is_some_and(|last| now.saturating_duration_since(last) >= IDLE_RESET);
        if idle {
            self.line.zeroize();
            self.overflowed = false;
            self.last_event = None;
        }
    }

    /// Whether no partial line is held.
    pub fn is_empty(&self) -> bool {
        self.line.is_empty() && !self.overflowed
    }
}

fn fresh_line() -> Zeroizing<String> {
    // Full capacity up front: a growing String would leave copies of the text in freed memory.
    Zeroizing::new(String::with_capacity(MAX_LINE))
}

/// A USB QR or barcode scanner in HID keyboard-wedge mode (it types the code's text, then Enter), read
/// through evdev with an exclusive grab so scanned passes never reach a console. Set the scanner to a US
/// keyboard layout and an Enter (CR) suffix.
pub struct UsbScanner {
    device: HidDevice,
    decoder: HidLineDecoder,
    lines: VecDeque<Zeroizing<String>>,
}

impl std::fmt::Debug for UsbScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UsbScanner({:?})", self.device)
    }
}

impl UsbScanner {
    /// Opens and grabs the scanner at `path`; prefer the stable `/dev/input/by-id/usb-...-event-kbd` link.
    pub fn open(path: &Path) -> Result<Self, ActuateError> {
        Ok(Self { device: HidDevice::open(path)?, decoder: HidLineDecoder::new(), lines: VecDeque::new() })
    }
}

impl PassScanner for UsbScanner {
    fn next_pass(&mut self, timeout: Duration) -> Result<Option<Zeroizing<String>>, ActuateError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines.pop_front() {
                return Ok(Some(line));
            }
            let now = Instant::now();
            let (decoder, lines) = (&mut self.decoder, &mut self.lines);
            let read = self.device.read_keys(|key, value| lines.extend(decoder.push(key, value, now)));
            if let Err(e) = read {
                // Whatever was half read belongs to a device that went away.
                self.decoder = HidLineDecoder::new();
                return Err(e);
            }
            if !self.lines.is_empty() {
                continue;
            }
            self.decoder.expire(now);
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(USB_SCANNER_POLL.min(deadline - now));
        }
    }

    fn describe(&self) -> String {
        format!("USB scanner {}", self.device.describe())
    }
}

/// A scanner fed through a channel (tests, and the off-Pi demo).
#[derive(Debug)]
pub struct SimulatedScanner {
    scans: mpsc::Receiver<Zeroizing<String>>,
}

/// The sending side of a [`SimulatedScanner`].
#[derive(Clone, Debug)]
pub struct ScannerFeeder(mpsc::Sender<Zeroizing<String>>);

impl ScannerFeeder {
    /// Scans a code whose text is `text`.
    pub fn scan(&self, text: &str) {
        // A dropped scanner is a stopped gate; nothing to deliver to.
        let _ = self.0.send(Zeroizing::new(text.to_owned()));
    }
}

impl SimulatedScanner {
    /// A scanner and the handle that scans with it.
    pub fn new() -> (Self, ScannerFeeder) {
        let (tx, rx) = mpsc::channel();
        (Self { scans: rx }, ScannerFeeder(tx))
    }
}

impl PassScanner for SimulatedScanner {
    fn next_pass(&mut self, timeout: Duration) -> Result<Option<Zeroizing<String>>, ActuateError> {
        match self.scans.recv_timeout(timeout) {
            Ok(text) => Ok(Some(text)),
            // A disconnected feeder is an idle scanner, not a fault.
            Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => Ok(None),
        }
    }

    fn describe(&self) -> String {
        "simulated scanner".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key events a US-layout keyboard-wedge scanner sends for `text` and Enter, each key pressed and
    /// released, Shift held around shifted characters.
    fn typed(text: &str) -> Vec<(K, i32)> {
        let mut events = Vec::new();
        for c in text.chars() {
            // The first match is the main block's key; the keypad's come last in the table.
            let &(key, plain, _) = US_LAYOUT.iter().find(|&&(_, p, s)| p == c || s == c).expect("typeable");
            let shift = c != plain;
            if shift {
                events.push((K::KEY_LEFTSHIFT, 1));
            }
            events.extend([(key, 1), (key, 0)]);
            if shift {
                events.push((K::KEY_LEFTSHIFT, 0));
            }
        }
        events.extend([(K::KEY_ENTER, 1), (K::KEY_ENTER, 0)]);
        events
    }

    fn feed(decoder: &mut HidLineDecoder, events: &[(K, i32)], at: Instant) -> Vec<String> {
        events.iter().filter_map(|&(k, v)| decoder.push(k, v, at)).map(|line| line.to_string()).collect()
    }

    #[test]
    fn shift_makes_capitals_and_symbols() {
        let mut d = HidLineDecoder::new();
        let t = Instant::now();
        let events = [
            (K::KEY_LEFTSHIFT, 1),
            (K::KEY_F, 1),
            (K::KEY_F, 0),
            (K::KEY_G, 1),
            (K::KEY_G, 0),
            (K::KEY_P, 1),
            (K::KEY_LEFTSHIFT, 0),
            (K::KEY_P, 0),
            (K::KEY_1, 1),
            (K::KEY_1, 0),
            (K::KEY_RIGHTSHIFT, 1),
            (K::KEY_SEMICOLON, 1),
            (K::KEY_SEMICOLON, 0),
            (K::KEY_MINUS, 1),
            (K::KEY_EQUAL, 1),
            (K::KEY_RIGHTSHIFT, 0),
            (K::KEY_EQUAL, 1),
            (K::KEY_A, 1),
            (K::KEY_KPENTER, 1),
        ];
        assert_eq!(feed(&mut d, &events, t), vec!["FGP1:_+=a"]);
        assert!(d.is_empty());
    }

    #[test]
    fn a_pass_and_the_url_safe_alphabets_come_through_whole() {
        let mut d = HidLineDecoder::new();
        let t = Instant::now();
        let pass = "FGP1:ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRST";
        assert_eq!(feed(&mut d, &typed(pass), t), vec![pass]);
        let base64url = "AZaz09-_.~:/+=";
        assert_eq!(feed(&mut d, &typed(base64url), t), vec![base64url]);
        let every = "!\"#$%&'()*+,-./0123456789:;<=>?@ABCXYZ[\\]^_`abcxyz{|}~ x";
        assert_eq!(feed(&mut d, &typed(every), t), vec![every]);
        // Two scans in one read.
        let mut both = typed("one");
        both.extend(typed("two"));
        assert_eq!(feed(&mut d, &both, t), vec!["one", "two"]);
    }

    #[test]
    fn chords_repeats_and_unknown_keys_type_nothing_and_empty_lines_are_not_scans() {
        let mut d = HidLineDecoder::new();
        let t = Instant::now();
        let events = [
            (K::KEY_A, 1),
            (K::KEY_A, 2),
            (K::KEY_A, 2),
            (K::KEY_LEFTCTRL, 1),
            (K::KEY_C, 1),
            (K::KEY_LEFTCTRL, 0),
            (K::KEY_F1, 1),
            (K::KEY_CAPSLOCK, 1),
            (K::KEY_B, 1),
            (K::KEY_ENTER, 1),
            (K::KEY_ENTER, 1),
            (K::KEY_ENTER, 2),
        ];
        assert_eq!(feed(&mut d, &events, t), vec!["ab"]);
    }

    #[test]
    fn a_line_over_the_cap_is_dropped_up_to_its_enter_then_it_resyncs() {
        let mut d = HidLineDecoder::new();
        let t = Instant::now();
        let just_fits = "A".repeat(MAX_LINE);
        assert_eq!(feed(&mut d, &typed(&just_fits), t), vec![just_fits.clone()]);
        let too_long = format!("{just_fits}B{just_fits}");
        assert!(feed(&mut d, &typed(&too_long), t).is_empty());
        assert!(d.is_empty());
        assert_eq!(feed(&mut d, &typed("next"), t), vec!["next"]);
    }

    #[test]
    fn partial_input_idle_for_a_second_is_dropped() {
        let mut d = HidLineDecoder::new();
        let t = Instant::now();
        let broken = typed("FGP1:ABC");
        let without_enter = &broken[..broken.len() - 2];
        assert!(feed(&mut d, without_enter, t).is_empty());
        assert!(!d.is_empty());
        d.expire(t + Duration::from_millis(999));
        assert!(!d.is_empty(), "a pause within a burst is kept");
        d.expire(t + IDLE_RESET);
        assert!(d.is_empty(), "wiped while waiting");
        // And without an expire call, the next key after the pause starts afresh.
        assert!(feed(&mut d, without_enter, t).is_empty());
        let later = t + Duration::from_secs(5);
        assert_eq!(feed(&mut d, &typed("XYZ"), later), vec!["XYZ"]);
        // An overflow is forgotten after a pause too, even if its Enter never came.
        let overflow = typed(&"A".repeat(MAX_LINE + 1));
        assert!(feed(&mut d, &overflow[..overflow.len() - 2], later).is_empty());
        assert_eq!(feed(&mut d, &typed("ok"), later + IDLE_RESET), vec!["ok"]);
    }

    #[test]
    fn the_line_buffer_does_not_reallocate() {
        let mut d = HidLineDecoder::new();
        let before = d.line.as_ptr();
        let t = Instant::now();
        let events = typed(&"z".repeat(MAX_LINE));
        assert!(feed(&mut d, &events[..events.len() - 2], t).is_empty());
        assert_eq!(d.line.as_ptr(), before);
    }

    #[test]
    fn the_simulated_scanner_delivers_scans_in_order() {
        let (mut scanner, feeder) = SimulatedScanner::new();
        feeder.scan("FGP1:AAAA");
        feeder.scan("FGP1:BBBB");
        let mut seen = Vec::new();
        while let Some(text) = scanner.next_pass(Duration::from_millis(10)).unwrap() {
            seen.push(text.to_string());
        }
        assert_eq!(seen, vec!["FGP1:AAAA", "FGP1:BBBB"]);
    }

    #[test]
    fn a_usb_scanner_that_is_not_there_says_what_to_do() {
        let err = UsbScanner::open(Path::new("/dev/input/by-id/no-such-scanner")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no-such-scanner") && msg.contains("by-id"), "{msg}");
    }
}
