//! HID: the shared USB reader of the keypad and the pass scanner, through evdev with an exclusive grab.
//!
//! It hands key events to its caller and keeps nothing: no typed text is buffered here, logged or shown in
//! `Debug` (a PIN or a pass passes through).

use super::ActuateError;

/// A USB HID device that types (a numeric keypad, a QR scanner in keyboard mode), read through evdev with an
/// exclusive grab so that what it types never reaches a console or another program. Shared by [`crate::devices::keypad::UsbKeypad`]
/// and [`crate::devices::scanner::UsbScanner`].
///
/// Reads are non-blocking; the callers poll. If the device goes away (unplugged), the read fails once and
/// the next read reopens the same path, so a re-plugged device (same `/dev/input/by-id/` name) resumes.
pub(crate) struct HidDevice {
    device: Option<evdev::Device>,
    path: std::path::PathBuf,
}

impl std::fmt::Debug for HidDevice {
    // Not derived: evdev's Debug would print the device's key state and read buffer, which can hold a PIN.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HidDevice({})", self.path.display())
    }
}

impl HidDevice {
    /// Opens and grabs the device at `path`.
    pub(crate) fn open(path: &std::path::Path) -> Result<Self, ActuateError> {
        Ok(Self { device: Some(Self::grab(path)?), path: path.to_path_buf() })
    }

    fn grab(path: &std::path::Path) -> Result<evdev::Device, ActuateError> {
        let fail = |what: &str, e: std::io::Error| ActuateError::Input {
            device: path.to_path_buf(),
            what: format!("{what}: {e}"),
            source: Some(e),
        };
        let mut device = evdev::Device::open(path).map_err(|e| fail("cannot open", e))?;
        // A keyboard-like device has an Enter key; this refuses a mouse, or a scanner's non-keyboard interface.
        let types = device
            .supported_keys()
            .is_some_and(|keys| keys.contains(evdev::KeyCode::KEY_ENTER) || keys.contains(evdev::KeyCode::KEY_KPENTER));
        if !types {
            return Err(ActuateError::Input {
                device: path.to_path_buf(),
                what: "not a keyboard-like device (it has no Enter key)".into(),
                source: None,
            });
        }
        device.grab().map_err(|e| fail("cannot grab it for exclusive use (is another program reading it?)", e))?;
        device.set_nonblocking(true).map_err(|e| fail("cannot make it non-blocking", e))?;
        Ok(device)
    }

    /// Hands every key event available now to `key` as `(code, value)`: value 1 pressed, 0 released, 2
    /// auto-repeat. Returns at once when there is none.
    pub(crate) fn read_keys(&mut self, mut key: impl FnMut(evdev::KeyCode, i32)) -> Result<(), ActuateError> {
        let device = match &mut self.device {
            Some(device) => device,
            None => self.device.insert(Self::grab(&self.path)?),
        };
        let result = match device.fetch_events() {
            Ok(events) => {
                for event in events {
                    if let evdev::EventSummary::Key(_, code, value) = event.destructure() {
                        key(code, value);
                    }
                }
                Ok(())
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => Ok(()),
            Err(e) => Err(e),
        };
        result.map_err(|e| {
            // Unplugged (ENODEV) or worse: drop it, and try the path again on the next read.
            self.device = None;
            ActuateError::Input { device: self.path.clone(), what: format!("read failed: {e}"), source: Some(e) }
        })
    }

    /// The device's path, and its name while it is open.
    pub(crate) fn describe(&self) -> String {
        match self.device.as_ref().and_then(|d| d.name()) {
            Some(name) => format!("{} ({name})", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}
