//! A camera that comes back: wraps the way a source is opened and opens it again once it has failed several
//! reads in a row (a USB webcam unplugged and plugged back, a ribbon cable that lost contact, a V4L2 device
//! that vanished and reappeared, a replay folder emptied or not yet there at start), so face entry resumes
//! without restarting the daemon.
//!
//! Owns only the open source and a count of failed reads; it must never keep, copy or write a frame.

use super::{CaptureError, Frame, FrameSource};

/// Failed reads in a row after which the source is closed and opened again: one damaged frame is not a lost
/// device, and the gate reads again every 500 ms while the camera is down.
pub const REOPEN_AFTER: u32 = 4;

/// A source opened by `open`, and opened again after [`REOPEN_AFTER`] failed reads in a row. A source that
/// cannot be opened (at start or later) reads as an error, so the gate shows the camera as down and tries
/// again; the other ways in never wait on it.
pub struct Reopening<F> {
    open: F,
    source: Option<Box<dyn FrameSource>>,
    failures: u32,
    what: String,
}

impl<F> Reopening<F>
where
    F: FnMut() -> Result<Box<dyn FrameSource>, CaptureError> + Send,
{
    /// A source opened by `open` (at the first read, or at once when `open` succeeds now); `what` names it in
    /// logs until it is open.
    pub fn new(what: impl Into<String>, mut open: F) -> (Self, Result<(), CaptureError>) {
        let (source, opened) = match open() {
            Ok(source) => (Some(source), Ok(())),
            Err(e) => (None, Err(e)),
        };
        (Self { open, source, failures: 0, what: what.into() }, opened)
    }

    /// Whether a source is open now.
    pub fn is_open(&self) -> bool {
        self.source.is_some()
    }
}

impl<F> FrameSource for Reopening<F>
where
    F: FnMut() -> Result<Box<dyn FrameSource>, CaptureError> + Send,
{
    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        let source = match &mut self.source {
            Some(source) => source,
            None => {
                let opened = (self.open)()?;
                tracing::info!("{} opened again", opened.describe());
                self.failures = 0;
                self.source.insert(opened)
            }
        };
        match source.next_frame() {
            Ok(frame) => {
                self.failures = 0;
                Ok(frame)
            }
            Err(e) => {
                self.failures += 1;
                if self.failures >= REOPEN_AFTER {
                    // Closed now (the device handle and its thread go), opened again at the next read.
                    self.source = None;
                    self.failures = 0;
                }
                Err(e)
            }
        }
    }

    fn describe(&self) -> String {
        self.source
            .as_ref()
            .map_or_else(|| format!("{} (closed, opened at the next read)", self.what), |s| s.describe())
    }

    fn last_file(&self) -> Option<&std::path::Path> {
        self.source.as_ref().and_then(|s| s.last_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;

    /// The simulated hardware edge: a device that can be unplugged. A source opened while it was plugged in
    /// fails every read once it is unplugged, and keeps failing after it is plugged back (its handle is
    /// stale, as a V4L2 file descriptor is); opening fails while unplugged.
    struct Device {
        plugged: AtomicBool,
        opened: AtomicU32,
    }

    struct Handle(Arc<Device>, bool);

    impl FrameSource for Handle {
        fn next_frame(&mut self) -> Result<Frame, CaptureError> {
            if !self.0.plugged.load(Ordering::SeqCst) {
                self.1 = true;
            }
            if self.1 {
                return Err(CaptureError::Camera("No such device (os error 19)".into()));
            }
            Frame::from_rgb(1, 1, vec![1, 2, 3])
        }
        fn describe(&self) -> String {
            "test camera".into()
        }
    }

    fn opener(device: &Arc<Device>) -> impl FnMut() -> Result<Box<dyn FrameSource>, CaptureError> + Send {
        let device = device.clone();
        move || {
            if !device.plugged.load(Ordering::SeqCst) {
                return Err(CaptureError::Camera("cannot open /dev/video0: no such device".into()));
            }
            device.opened.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(Handle(device.clone(), false)))
        }
    }

    #[test]
    fn a_camera_unplugged_and_plugged_back_gives_frames_again() {
        let device = Arc::new(Device { plugged: AtomicBool::new(true), opened: AtomicU32::new(0) });
        let (mut camera, opened) = Reopening::new("camera /dev/video0", opener(&device));
        assert!(opened.is_ok());
        assert!(camera.next_frame().is_ok());
        device.plugged.store(false, Ordering::SeqCst);
        for _ in 0..10 {
            assert!(camera.next_frame().is_err());
        }
        assert!(!camera.is_open(), "a lost device kept open");
        device.plugged.store(true, Ordering::SeqCst);
        assert!(camera.next_frame().is_ok(), "no frame after the device came back");
        assert_eq!(device.opened.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_camera_missing_at_start_is_opened_when_it_appears() {
        let device = Arc::new(Device { plugged: AtomicBool::new(false), opened: AtomicU32::new(0) });
        let (mut camera, opened) = Reopening::new("camera /dev/video0", opener(&device));
        assert!(opened.is_err());
        assert!(camera.next_frame().is_err());
        assert!(camera.describe().contains("closed"));
        device.plugged.store(true, Ordering::SeqCst);
        assert!(camera.next_frame().is_ok());
        assert_eq!(camera.describe(), "test camera");
    }

    #[test]
    fn one_bad_read_does_not_reopen_the_device() {
        struct Flaky(u32);
        impl FrameSource for Flaky {
            fn next_frame(&mut self) -> Result<Frame, CaptureError> {
                self.0 += 1;
                if self.0.is_multiple_of(2) {
                    Err(CaptureError::Camera("a damaged frame".into()))
                } else {
                    Frame::from_rgb(1, 1, vec![0, 0, 0])
                }
            }
            fn describe(&self) -> String {
                "flaky".into()
            }
        }
        let opens = Arc::new(AtomicU32::new(0));
        let counted = opens.clone();
        let (mut camera, _) = Reopening::new("flaky", move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(Flaky(0)) as Box<dyn FrameSource>)
        });
        for _ in 0..20 {
            let _ = camera.next_frame();
        }
        assert_eq!(opens.load(Ordering::SeqCst), 1);
    }
}
