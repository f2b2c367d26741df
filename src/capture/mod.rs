//! Capture: where frames enter facegate.
//!
//! Owns the [`Frame`] type (RGB pixels that are zeroized when dropped), the [`FrameSource`] trait with its
//! real camera ([`camera`], behind the `camera` feature, opened again after it is lost: [`reopen`]) and the
//! replay source ([`replay`]) used off the Pi,
//! and safe decoding of image files and camera buffers ([`decode`], [`buffer`]). It must never write a frame anywhere:
//! no file, no log line, no network.

pub mod buffer;
pub mod decode;
pub mod reopen;
pub mod replay;

#[cfg(feature = "camera")]
pub mod camera;

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

pub use decode::{decode_bytes, decode_file, DecodeError, DecodeLimits};
pub use replay::ReplaySource;

/// One picture in RGB, 8 bits per channel, rows top to bottom. The pixels are wiped when the frame is
/// dropped, and `Debug` shows only the size.
#[derive(ZeroizeOnDrop)]
pub struct Frame {
    #[zeroize(skip)]
    width: u32,
    #[zeroize(skip)]
    height: u32,
    rgb: Vec<u8>,
}

impl Frame {
    /// Wraps an RGB buffer of exactly `width * height * 3` bytes.
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<Self, CaptureError> {
        let expected = u64::from(width) * u64::from(height) * 3;
        if width == 0 || height == 0 {
            let mut rgb = rgb;
            rgb.zeroize();
            return Err(CaptureError::Empty);
        }
        if rgb.len() as u64 != expected {
            let got = rgb.len();
            let mut rgb = rgb;
            rgb.zeroize();
            return Err(CaptureError::BadBuffer { width, height, got });
        }
        Ok(Self { width, height, rgb })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The RGB bytes, row-major.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// The pixel at (x, y) as `[r, g, b]`; callers keep x < width and y < height.
    #[inline]
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame").field("width", &self.width).field("height", &self.height).finish_non_exhaustive()
    }
}

/// Errors of a frame source.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A frame with no pixels.
    #[error("the frame is empty (0 pixels)")]
    Empty,
    /// A pixel buffer whose length does not fit its size.
    #[error("a {width}x{height} RGB frame needs {} bytes, got {got}", u64::from(*width) * u64::from(*height) * 3)]
    BadBuffer {
        /// Claimed width.
        width: u32,
        /// Claimed height.
        height: u32,
        /// Bytes received.
        got: usize,
    },
    /// A camera buffer shorter than its layout and size need.
    #[error("a {layout} camera buffer needs {need} bytes, got {got}; the camera or its driver misreports its format")]
    ShortBuffer {
        /// The layout the camera reported.
        layout: buffer::PixelLayout,
        /// Bytes needed.
        need: usize,
        /// Bytes received.
        got: usize,
    },
    /// A size a camera reported that its layout cannot have, or larger than any camera's.
    #[error("the camera reports a {width}x{height} {layout} frame, which {why}; set it to 640x480")]
    BadSize {
        /// Reported width.
        width: u32,
        /// Reported height.
        height: u32,
        /// The layout.
        layout: buffer::PixelLayout,
        /// What is wrong.
        why: &'static str,
    },
    /// An image that could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The replay folder holds no image that decodes.
    #[error("no decodable image in {0}; point the replay source at a folder of JPEG/PNG photos")]
    NoImages(std::path::PathBuf),
    /// The camera could not be opened or read.
    #[error(
        "camera: {0}; check that it is plugged in, that /dev/video* exists and that this user is in the video group"
    )]
    Camera(String),
}

/// Anything that yields frames: a camera, or a folder replayed in a loop.
pub trait FrameSource: Send {
    /// Blocks until the next frame is ready.
    fn next_frame(&mut self) -> Result<Frame, CaptureError>;

    /// A short description for logs (never contains pixels).
    fn describe(&self) -> String;

    /// For a replay, the file the last frame came from; a camera has none.
    fn last_file(&self) -> Option<&std::path::Path> {
        None
    }
}

/// Opens V4L2 camera `index` paced at `fps`, or explains that this build has no camera support.
#[cfg(feature = "camera")]
pub fn open_camera(index: u32, fps: f32) -> Result<Box<dyn FrameSource>, CaptureError> {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let fps = fps.round().max(1.0) as u32;
    Ok(Box::new(camera::CameraSource::open(index, fps)?))
}

/// Opens V4L2 camera `index` paced at `fps`, or explains that this build has no camera support.
#[cfg(not(feature = "camera"))]
pub fn open_camera(_index: u32, _fps: f32) -> Result<Box<dyn FrameSource>, CaptureError> {
    Err(CaptureError::Camera(
        "this build has no camera support; rebuild with `--features camera` (needs libclang-dev)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_shows_only_its_size() {
        let frame = Frame::from_rgb(2, 1, vec![17, 42, 99, 201, 7, 250]).unwrap();
        let shown = format!("{frame:?}");
        assert_eq!(shown, "Frame { width: 2, height: 1, .. }");
        for value in ["17", "42", "99", "201", "250"] {
            assert!(!shown.contains(value), "{shown}");
        }
    }
}
