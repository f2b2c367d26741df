//! The real camera: a USB UVC webcam, or the Pi camera through libcamera's V4L2 compatibility layer, read
//! with nokhwa.
//!
//! Owns opening the device, asking for 640x480 and converting its buffers (MJPEG, YUYV, grey, raw RGB/BGR)
//! to a [`Frame`] without keeping a copy: every buffer it fills is wiped. It never writes a frame anywhere.

use super::{decode_bytes, CaptureError, DecodeLimits, Frame, FrameSource};
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
                            buffer.source_frame_format(),
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

/// Converts one camera buffer to an RGB frame. YUYV uses BT.601 limited range, as UVC cameras send.
pub fn frame_from_buffer(format: FrameFormat, width: u32, height: u32, data: &[u8]) -> Result<Frame, CaptureError> {
    let n_pixels = width as usize * height as usize;
    let need = |bytes: usize| {
        if data.len() < bytes {
            Err(CaptureError::BadBuffer { width, height, got: data.len() })
        } else {
            Ok(())
        }
    };
    let mut rgb = Vec::with_capacity(n_pixels * 3);
    match format {
        FrameFormat::MJPEG => return Ok(decode_bytes(data, DecodeLimits::default())?),
        FrameFormat::RAWRGB => {
            need(n_pixels * 3)?;
            rgb.extend_from_slice(&data[..n_pixels * 3]);
        }
        FrameFormat::RAWBGR => {
            need(n_pixels * 3)?;
            for px in data[..n_pixels * 3].chunks_exact(3) {
                rgb.extend_from_slice(&[px[2], px[1], px[0]]);
            }
        }
        FrameFormat::GRAY => {
            need(n_pixels)?;
            for &g in &data[..n_pixels] {
                rgb.extend_from_slice(&[g, g, g]);
            }
        }
        FrameFormat::YUYV => {
            need(n_pixels * 2)?;
            for quad in data[..n_pixels * 2].chunks_exact(4) {
                let (y0, u, y1, v) = (quad[0], quad[1], quad[2], quad[3]);
                rgb.extend_from_slice(&yuv_to_rgb(y0, u, v));
                rgb.extend_from_slice(&yuv_to_rgb(y1, u, v));
            }
        }
        FrameFormat::NV12 => {
            need(n_pixels * 3 / 2)?;
            let (luma, chroma) = data.split_at(n_pixels);
            for y in 0..height as usize {
                for x in 0..width as usize {
                    let c = (y / 2) * width as usize + (x / 2) * 2;
                    rgb.extend_from_slice(&yuv_to_rgb(luma[y * width as usize + x], chroma[c], chroma[c + 1]));
                }
            }
        }
    }
    Frame::from_rgb(width, height, rgb)
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = f32::from(y) - 16.0;
    let d = f32::from(u) - 128.0;
    let e = f32::from(v) - 128.0;
    let clamp = |x: f32| x.round().clamp(0.0, 255.0) as u8;
    [clamp(1.164 * c + 1.596 * e), clamp(1.164 * c - 0.392 * d - 0.813 * e), clamp(1.164 * c + 2.017 * d)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_grey_and_short_buffers() {
        // Y=235 with neutral chroma is white; Y=16 black.
        let frame = frame_from_buffer(FrameFormat::YUYV, 2, 1, &[235, 128, 16, 128]).unwrap();
        assert_eq!(frame.pixel(0, 0), [255, 255, 255]);
        assert_eq!(frame.pixel(1, 0), [0, 0, 0]);
        assert!(matches!(frame_from_buffer(FrameFormat::YUYV, 4, 4, &[0; 8]), Err(CaptureError::BadBuffer { .. })));
        let frame = frame_from_buffer(FrameFormat::RAWBGR, 1, 1, &[1, 2, 3]).unwrap();
        assert_eq!(frame.pixel(0, 0), [3, 2, 1]);
    }
}
