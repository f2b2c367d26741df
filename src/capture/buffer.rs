//! Camera buffers to frames: the pixel layouts a V4L2 camera hands over (MJPEG, YUYV, NV12, grey, raw RGB or
//! BGR), converted to a [`Frame`]. Kept apart from the camera driver so it is tested and fuzzed on any build.
//!
//! Owns the checks the driver's word needs: the size a camera reports is checked against its layout, against
//! [`MAX_CAMERA_PIXELS`] and against the bytes it gave before anything is allocated, so a confused driver
//! costs one frame, never the camera thread. It never keeps a copy and never writes a frame anywhere.

use super::{decode_bytes, CaptureError, DecodeLimits, Frame};

/// How a camera lays out a frame's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelLayout {
    /// Motion JPEG: each frame a JPEG.
    Mjpeg,
    /// Packed 4:2:2, two pixels in four bytes (Y0 U Y1 V).
    Yuyv,
    /// 4:2:0, a luma plane then interleaved U V at half size both ways.
    Nv12,
    /// 8-bit grey.
    Grey,
    /// 8-bit R G B.
    Rgb,
    /// 8-bit B G R.
    Bgr,
}

impl std::fmt::Display for PixelLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Mjpeg => "MJPEG",
            Self::Yuyv => "YUYV",
            Self::Nv12 => "NV12",
            Self::Grey => "grey",
            Self::Rgb => "RGB",
            Self::Bgr => "BGR",
        })
    }
}

/// The largest frame a camera may report: 4096x4096, past any UVC camera's or Pi camera's video mode (the gate
/// asks for 640x480). Its RGB frame is 48 MiB.
pub const MAX_CAMERA_PIXELS: u64 = 4096 * 4096;

/// What an MJPEG frame may be: a JPEG of at most 16 MiB and [`MAX_CAMERA_PIXELS`].
pub fn camera_limits() -> DecodeLimits {
    DecodeLimits { max_file_bytes: 16 * 1024 * 1024, max_pixels: MAX_CAMERA_PIXELS }
}

/// Converts one camera buffer to an RGB frame. YUYV and NV12 use BT.601 limited range, as UVC cameras send.
pub fn frame_from_buffer(layout: PixelLayout, width: u32, height: u32, data: &[u8]) -> Result<Frame, CaptureError> {
    if layout == PixelLayout::Mjpeg {
        return Ok(decode_bytes(data, camera_limits())?);
    }
    let bad = |why| CaptureError::BadSize { width, height, layout, why };
    if width == 0 || height == 0 {
        return Err(CaptureError::Empty);
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_CAMERA_PIXELS {
        return Err(bad("is larger than any camera's video mode"));
    }
    // Chroma is shared by two pixels of a row (YUYV) or a 2x2 block (NV12).
    let odd = match layout {
        PixelLayout::Yuyv => !width.is_multiple_of(2),
        PixelLayout::Nv12 => !width.is_multiple_of(2) || !height.is_multiple_of(2),
        _ => false,
    };
    if odd {
        return Err(bad("cannot have an odd side in this layout"));
    }
    // At most 4096 x 4096 pixels: every size below fits in usize.
    let n = usize::try_from(pixels).map_err(|_| bad("does not fit in memory"))?;
    let need = match layout {
        PixelLayout::Grey => n,
        PixelLayout::Yuyv => n * 2,
        PixelLayout::Nv12 => n * 3 / 2,
        PixelLayout::Rgb | PixelLayout::Bgr | PixelLayout::Mjpeg => n * 3,
    };
    if data.len() < need {
        return Err(CaptureError::ShortBuffer { layout, need, got: data.len() });
    }
    let data = &data[..need];
    let mut rgb = Vec::with_capacity(n * 3);
    match layout {
        PixelLayout::Rgb | PixelLayout::Mjpeg => rgb.extend_from_slice(data),
        PixelLayout::Bgr => data.chunks_exact(3).for_each(|px| rgb.extend_from_slice(&[px[2], px[1], px[0]])),
        PixelLayout::Grey => data.iter().for_each(|&g| rgb.extend_from_slice(&[g, g, g])),
        PixelLayout::Yuyv => {
            for quad in data.chunks_exact(4) {
                let (y0, u, y1, v) = (quad[0], quad[1], quad[2], quad[3]);
                rgb.extend_from_slice(&yuv_to_rgb(y0, u, v));
                rgb.extend_from_slice(&yuv_to_rgb(y1, u, v));
            }
        }
        PixelLayout::Nv12 => {
            let w = width as usize;
            let (luma, chroma) = data.split_at(n);
            for (y, row) in luma.chunks_exact(w).enumerate() {
                let uv = &chroma[(y / 2) * w..(y / 2 + 1) * w];
                for (x, &l) in row.iter().enumerate() {
                    rgb.extend_from_slice(&yuv_to_rgb(l, uv[x & !1], uv[x | 1]));
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
        let frame = frame_from_buffer(PixelLayout::Yuyv, 2, 1, &[235, 128, 16, 128]).unwrap();
        assert_eq!(frame.pixel(0, 0), [255, 255, 255]);
        assert_eq!(frame.pixel(1, 0), [0, 0, 0]);
        assert!(matches!(frame_from_buffer(PixelLayout::Yuyv, 4, 4, &[0; 8]), Err(CaptureError::ShortBuffer { .. })));
        let frame = frame_from_buffer(PixelLayout::Bgr, 1, 1, &[1, 2, 3]).unwrap();
        assert_eq!(frame.pixel(0, 0), [3, 2, 1]);
        let frame = frame_from_buffer(PixelLayout::Grey, 2, 1, &[7, 9]).unwrap();
        assert_eq!((frame.pixel(0, 0), frame.pixel(1, 0)), ([7; 3], [9; 3]));
    }

    #[test]
    fn nv12_shares_chroma_over_two_by_two_blocks() {
        // A 2x2 block of luma 235 with red-leaning chroma, then one of luma 16 with neutral chroma.
        let data = [235, 235, 16, 16, 235, 235, 16, 16, 90, 240, 128, 128];
        let frame = frame_from_buffer(PixelLayout::Nv12, 4, 2, &data).unwrap();
        let red = yuv_to_rgb(235, 90, 240);
        assert_eq!([frame.pixel(0, 0), frame.pixel(1, 1)], [red, red]);
        assert_eq!([frame.pixel(2, 0), frame.pixel(3, 1)], [[0, 0, 0]; 2]);
    }

    /// Found by reading the code for the fuzz target: an NV12 buffer of odd width or height indexed past its
    /// chroma plane and panicked the camera's thread (the camera then gave no frame until a restart), and a
    /// reported size was allocated before it was checked against the bytes (u32::MAX x u32::MAX overflowed).
    #[test]
    fn a_camera_reporting_an_odd_or_absurd_size_costs_one_frame_not_the_thread() {
        for (layout, width, height, len) in
            [(PixelLayout::Nv12, 3, 1, 5), (PixelLayout::Nv12, 2, 3, 9), (PixelLayout::Yuyv, 3, 2, 12)]
        {
            let result = std::panic::catch_unwind(|| frame_from_buffer(layout, width, height, &vec![128; len]));
            let result = result.unwrap_or_else(|_| panic!("{layout} {width}x{height} panicked"));
            assert!(matches!(result, Err(CaptureError::BadSize { .. })), "{layout} {width}x{height}: {result:?}");
        }
        for layout in [PixelLayout::Rgb, PixelLayout::Grey, PixelLayout::Nv12] {
            let result = std::panic::catch_unwind(|| frame_from_buffer(layout, u32::MAX, u32::MAX, &[0; 16]));
            let result = result.unwrap_or_else(|_| panic!("{layout} u32::MAX panicked"));
            assert!(matches!(result, Err(CaptureError::BadSize { .. })), "{layout}: {result:?}");
        }
        assert!(frame_from_buffer(PixelLayout::Grey, 4096, 4096, &[]).is_err());
    }
}
