//! The real camera: a USB UVC webcam, or the Pi camera through libcamera's V4L2 compatibility layer, read
//! with nokhwa.
//!
//! Owns opening the device, asking for 640x480 and handing each buffer to [`super::buffer`], which converts
//! it to a [`Frame`] without keeping a copy. It never writes a frame anywhere.

use super::buffer::{frame_from_buffer, PixelLayout};
use super::{CaptureError, Frame, FrameSource};
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType};
use nokhwa::Camera;
use std::sync::mpsc;

/// A V4L2 camera. nokhwa's camera is not `Send`, so it lives on a thread of its own that hands over one
/// frame at a time through a channel of capacity one (no queue of frames builds up in memory).
pub struct CameraSource {
    frames: mpsc::Receiver<Result<Frame, CaptureError>>,
    index: u32,
    _reader: std::thread::JoinHandle<()>,
}

impl std::fmt::Debug for CameraSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraSource").field("index", &self.index).finish_non_exhaustive()
    }
}

impl CameraSource {
    /// Opens `/dev/video{index}` at (or near) 640x480 and starts streaming.
    pub fn open(index: u32, fps: u32) -> Result<Self, CaptureError> {
        let (tx, frames) = mpsc::sync_channel(1);
        let (opened_tx, opened_rx) = mpsc::sync_channel(1);
        let reader = std::thread::Builder::new()
            .name(format!("camera-{index}"))
            .spawn(move || {
                let mut camera = match open_camera(index, fps) {
                    Ok(camera) => {
                        let _ = opened_tx.send(Ok(()));
                        camera
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let frame = camera.frame().map_err(|e| CaptureError::Camera(e.to_string())).and_then(|buffer| {
                        let resolution = buffer.resolution();
                        frame_from_buffer(
                            layout(buffer.source_frame_format()),
                            resolution.width(),
                            resolution.height(),
                            buffer.buffer(),
                        )
                    });
                    if tx.send(frame).is_err() {
                        break;
                    }
                }
                let _ = camera.stop_stream();
            })
            .map_err(|e| CaptureError::Camera(format!("cannot start the camera thread: {e}")))?;
        opened_rx.recv().map_err(|_| CaptureError::Camera("the camera thread died while opening".into()))??;
        Ok(Self { frames, index, _reader: reader })
    }
}

fn open_camera(index: u32, fps: u32) -> Result<Camera, CaptureError> {
    let requested = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(CameraFormat::new_from(
        640,
        480,
        FrameFormat::MJPEG,
        fps,
    )));
    let mut camera = Camera::new(CameraIndex::Index(index), requested)
        .map_err(|e| CaptureError::Camera(format!("cannot open /dev/video{index}: {e}")))?;
    camera.open_stream().map_err(|e| CaptureError::Camera(format!("cannot start /dev/video{index}: {e}")))?;
    Ok(camera)
}

impl FrameSource for CameraSource {
    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        self.frames.recv().map_err(|_| CaptureError::Camera("the camera stopped".into()))?
    }

    fn describe(&self) -> String {
        format!("camera /dev/video{}", self.index)
    }
}

/// nokhwa's name for a layout, as ours ([`super::buffer`] converts without the driver).
fn layout(format: FrameFormat) -> PixelLayout {
    match format {
        FrameFormat::MJPEG => PixelLayout::Mjpeg,
        FrameFormat::YUYV => PixelLayout::Yuyv,
        FrameFormat::NV12 => PixelLayout::Nv12,
        FrameFormat::GRAY => PixelLayout::Grey,
        FrameFormat::RAWRGB => PixelLayout::Rgb,
        FrameFormat::RAWBGR => PixelLayout::Bgr,
    }
}
