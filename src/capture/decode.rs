//! Safe decoding of image files and encoded camera buffers into a [`Frame`].
//!
//! Owns the limits that keep a hostile file from exhausting memory (size is checked from the header before
//! any pixel is decoded), EXIF orientation, and conversion of every colour layout (grey, alpha, 16-bit,
//! float) to RGB8. Every intermediate pixel buffer is zeroized. It reads files; it never writes one.

use std::io::{Cursor, Read};
use std::path::Path;

use image::metadata::Orientation;
use image::{ColorType, ImageDecoder, ImageError, ImageReader, Limits};
use zeroize::Zeroizing;

use super::Frame;

/// Caps applied before and while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest encoded file accepted, in bytes.
    pub max_file_bytes: u64,
    /// Largest picture accepted, in pixels (width x height), checked from the header.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // 50 MB files and 40 MP pictures: more than any gate camera or phone photo, far below a bomb.
        Self { max_file_bytes: 50 * 1024 * 1024, max_pixels: 40_000_000 }
    }
}

impl DecodeLimits {
    /// What a decode may hold for the decoded picture: 4 bytes a pixel of `max_pixels` (8-bit RGBA at the
    /// cap). Deeper pictures (16-bit or float samples) are refused when they would pass it, so a decode holds
    /// at most this plus its RGB copy (280 MB at the default cap), never what a header announces.
    pub fn max_decoded_bytes(&self) -> u64 {
        self.max_pixels.saturating_mul(4).max(1 << 20)
    }
}

/// Why an image could not be turned into a frame.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file does not exist.
    #[error("{path}: no such file")]
    NotFound {
        /// The path given.
        path: String,
    },
    /// The file exists but cannot be read (permissions, a directory, an I/O error).
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        /// The path given.
        path: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Zero bytes.
    #[error("the file is empty (0 bytes)")]
    EmptyFile,
    /// Larger than the file cap.
    #[error("the file is {bytes} bytes, over the {max} byte limit")]
    FileTooLarge {
        /// Its size.
        bytes: u64,
        /// The cap.
        max: u64,
    },
    /// Not a format we recognise.
    #[error("not an image (unrecognised format); use JPEG, PNG, PNM, BMP, TIFF, WebP or GIF")]
    NotAnImage,
    /// The header announces more pixels than allowed (a decompression bomb, or a huge scan).
    #[error("the image is {width}x{height} pixels, over the {max_pixels} pixel limit; downscale it first")]
    TooManyPixels {
        /// Announced width.
        width: u32,
        /// Announced height.
        height: u32,
        /// The cap.
        max_pixels: u64,
    },
    /// The picture fits the pixel cap, but its samples are so deep (16-bit, float) that decoding it would hold
    /// more than [`DecodeLimits::max_decoded_bytes`].
    #[error(
        "the image is {width}x{height} pixels of {} bytes each: decoding it needs {} MB, over the {} MB limit; \
         save it as an 8-bit JPEG or PNG, or downscale it",
        bytes / (u64::from(*width) * u64::from(*height)).max(1),
        bytes / 1_000_000,
        max_bytes / 1_000_000
    )]
    TooManyBytes {
        /// Announced width.
        width: u32,
        /// Announced height.
        height: u32,
        /// What the decoded picture would hold.
        bytes: u64,
        /// The cap.
        max_bytes: u64,
    },
    /// A zero width or height.
    #[error("the image has no pixels ({width}x{height})")]
    ZeroSize {
        /// Announced width.
        width: u32,
        /// Announced height.
        height: u32,
    },
    /// Cut short, or damaged inside.
    #[error("the image is truncated or corrupt: {detail}")]
    Corrupt {
        /// What is wrong.
        detail: String,
        /// The decoder's error, when the decoder found it.
        source: Option<ImageError>,
    },
    /// A variant of a format that the decoder does not handle.
    #[error("unsupported image variant: {detail}")]
    Unsupported {
        /// Which.
        detail: String,
        /// The decoder's error, when the decoder found it.
        source: Option<ImageError>,
    },
}

/// Reads and decodes an image file.
pub fn decode_file(path: &Path, limits: DecodeLimits) -> Result<Frame, DecodeError> {
    let shown = path.display().to_string();
    let io_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => DecodeError::NotFound { path: shown.clone() },
        _ => DecodeError::Unreadable { path: shown.clone(), source: e },
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(DecodeError::Unreadable { path: shown, source: std::io::ErrorKind::IsADirectory.into() });
    }
    if meta.len() > limits.max_file_bytes {
        return Err(DecodeError::FileTooLarge { bytes: meta.len(), max: limits.max_file_bytes });
    }
    // Encoded pictures are image data too: keep them in a buffer that is wiped.
    let mut bytes = Zeroizing::new(Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0)));
    file.take(limits.max_file_bytes + 1).read_to_end(&mut bytes).map_err(io_err)?;
    decode_bytes(&bytes, limits)
}

/// Decodes an encoded image held in memory (a file's bytes, an MJPEG camera buffer).
pub fn decode_bytes(bytes: &[u8], limits: DecodeLimits) -> Result<Frame, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::EmptyFile);
    }
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(DecodeError::FileTooLarge { bytes: bytes.len() as u64, max: limits.max_file_bytes });
    }
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| DecodeError::corrupt(e.to_string()))?;
    if reader.format().is_none() {
        return Err(DecodeError::NotAnImage);
    }
    let mut decoder_limits = Limits::default();
    decoder_limits.max_image_width = Some(1 << 16);
    decoder_limits.max_image_height = Some(1 << 16);
    decoder_limits.max_alloc = Some(limits.max_decoded_bytes());
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;

    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(DecodeError::ZeroSize { width, height });
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(DecodeError::TooManyPixels { width, height, max_pixels: limits.max_pixels });
    }
    // A broken EXIF block should not cost the picture: treat it as upright.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let color = decoder.color_type();
    let bytes = decoder.total_bytes();
    let max_bytes = limits.max_decoded_bytes();
    let too_deep = || DecodeError::TooManyBytes { width, height, bytes, max_bytes };
    if bytes > max_bytes {
        return Err(too_deep());
    }
    let total = usize::try_from(bytes).map_err(|_| too_deep())?;
    let mut raw = Zeroizing::new(vec![0u8; total]);
    decoder.read_image(&mut raw).map_err(map_image_error)?;
    let rgb = to_rgb8(&raw, color, width, height)?;
    let frame = Frame::from_rgb(width, height, rgb).map_err(|e| DecodeError::corrupt(e.to_string()))?;
    Ok(orient(frame, orientation))
}

fn map_image_error(e: ImageError) -> DecodeError {
    match &e {
        ImageError::Limits(l) => {
            let detail = format!("it needs more memory to decode than allowed ({l}); save it as an 8-bit JPEG or PNG");
            DecodeError::Unsupported { detail, source: Some(e) }
        }
        ImageError::Unsupported(u) => DecodeError::Unsupported { detail: u.to_string(), source: Some(e) },
        _ => DecodeError::Corrupt { detail: e.to_string(), source: Some(e) },
    }
}

impl DecodeError {
    /// Damage found by facegate's own checks rather than the decoder's.
    fn corrupt(detail: String) -> Self {
        Self::Corrupt { detail, source: None }
    }
}

/// Converts any decoded layout to interleaved RGB8. Alpha is dropped (as OpenCV's `imread` does), 16-bit
/// keeps its high byte, float is clamped to 0..1.
fn to_rgb8(raw: &[u8], color: ColorType, width: u32, height: u32) -> Result<Vec<u8>, DecodeError> {
    let n_pixels = width as usize * height as usize;
    // What every camera frame is: one copy, not a per-pixel conversion.
    if color == ColorType::Rgb8 && raw.len() >= n_pixels * 3 {
        return Ok(raw[..n_pixels * 3].to_vec());
    }
    let mut rgb = Vec::with_capacity(n_pixels * 3);
    let u16_at = |i: usize| u16::from_ne_bytes([raw[2 * i], raw[2 * i + 1]]);
    let f32_at = |i: usize| f32::from_ne_bytes([raw[4 * i], raw[4 * i + 1], raw[4 * i + 2], raw[4 * i + 3]]);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let f32_to_u8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let channels = usize::from(color.channel_count());
    let needed = n_pixels * usize::from(color.bytes_per_pixel());
    if raw.len() < needed {
        return Err(DecodeError::corrupt(format!("decoder returned {} bytes, expected {needed}", raw.len())));
    }
    for p in 0..n_pixels {
        let base = p * channels;
        let px: [u8; 3] = match color {
            ColorType::L8 | ColorType::La8 => [raw[base]; 3],
            ColorType::Rgb8 | ColorType::Rgba8 => [raw[base], raw[base + 1], raw[base + 2]],
            ColorType::L16 | ColorType::La16 => [(u16_at(base) >> 8) as u8; 3],
            ColorType::Rgb16 | ColorType::Rgba16 => {
                [(u16_at(base) >> 8) as u8, (u16_at(base + 1) >> 8) as u8, (u16_at(base + 2) >> 8) as u8]
            }
            ColorType::Rgb32F | ColorType::Rgba32F => {
                [f32_to_u8(f32_at(base)), f32_to_u8(f32_at(base + 1)), f32_to_u8(f32_at(base + 2))]
            }
            other => return Err(DecodeError::Unsupported { detail: format!("colour layout {other:?}"), source: None }),
        };
        rgb.extend_from_slice(&px);
    }
    Ok(rgb)
}

/// Applies an EXIF orientation so the picture is upright; the old buffer is wiped with the old frame.
pub fn orient(frame: Frame, orientation: Orientation) -> Frame {
    let (w, h) = (frame.width(), frame.height());
    let swaps = matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    );
    if orientation == Orientation::NoTransforms {
        return frame;
    }
    let (out_w, out_h) = if swaps { (h, w) } else { (w, h) };
    let mut rgb = Vec::with_capacity(frame.rgb().len());
    for oy in 0..out_h {
        for ox in 0..out_w {
            // Where the output pixel (ox, oy) comes from in the stored picture.
            let (sx, sy) = match orientation {
                Orientation::NoTransforms => (ox, oy),
                Orientation::Rotate90 => (oy, h - 1 - ox),
                Orientation::Rotate180 => (w - 1 - ox, h - 1 - oy),
                Orientation::Rotate270 => (w - 1 - oy, ox),
                Orientation::FlipHorizontal => (w - 1 - ox, oy),
                Orientation::FlipVertical => (ox, h - 1 - oy),
                Orientation::Rotate90FlipH => (oy, ox),
                Orientation::Rotate270FlipH => (w - 1 - oy, h - 1 - ox),
            };
            rgb.extend_from_slice(&frame.pixel(sx, sy));
        }
    }
    match Frame::from_rgb(out_w, out_h, rgb) {
        Ok(rotated) => rotated,
        // Unreachable: the size is the input's, transposed. Keep the upright-less frame rather than fail.
        Err(_) => frame,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, RgbImage};

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 40) as u8, (y * 40) as u8, ((x + y) * 7) as u8]))
    }

    /// A TIFF header announcing `side` x `side` RGBA pixels of `bits` bits per sample (`float`: IEEE), with no
    /// pixel data: what the decoder would have to hold is known before a byte of it is read.
    fn deep_tiff_header(side: u32, bits: u16, float: bool) -> Vec<u8> {
        let mut out = b"II*\0\x08\0\0\0".to_vec();
        let extra = 8 + 2 + 12 * 12 + 4;
        let (bits_at, format_at) = (extra, extra + 8);
        let entries: [(u16, u16, u32, u32); 12] = [
            (256, 4, 1, side),
            (257, 4, 1, side),
            (258, 3, 4, bits_at),
            (259, 3, 1, 1),
            (262, 3, 1, 2),
            (273, 4, 1, extra + 16),
            (277, 3, 1, 4),
            (278, 4, 1, side),
            (279, 4, 1, side * side * u32::from(bits) / 2),
            (284, 3, 1, 1),
            (338, 3, 1, 2),
            (339, 3, 4, format_at),
        ];
        out.extend_from_slice(&12u16.to_le_bytes());
        for (tag, kind, count, value) in entries {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        for _ in 0..4 {
            out.extend_from_slice(&bits.to_le_bytes());
        }
        for _ in 0..4 {
            out.extend_from_slice(&(if float { 3u16 } else { 1u16 }).to_le_bytes());
        }
        out.extend_from_slice(&[0; 64]);
        out
    }

    /// Found while bounding what the decode fuzz target may hold (issue 20): within the 40 MP cap, a 200-byte
    /// TIFF announcing 6000 x 6000 pixels of 16-bit RGBA made the decoder allocate and fill 288 MB before
    /// finding no data (the test process peaked at 573 MB resident), and float RGBA up to the decoder's
    /// 640 MB allocation limit passed the same way. What a decode may hold is now bounded by 4 bytes a pixel
    /// of the cap, checked from the header.
    #[test]
    fn a_deep_picture_within_the_pixel_cap_is_refused_before_its_buffer_is_made() {
        for (side, bits, float) in [(6000, 16, false), (5000, 32, true)] {
            let err = decode_bytes(&deep_tiff_header(side, bits, float), DecodeLimits::default()).unwrap_err();
            assert!(matches!(err, DecodeError::TooManyBytes { .. }), "{side} {bits}-bit: {err:?}");
            assert!(err.to_string().contains("8-bit"), "{err}");
        }
        // The same depth at a size a camera or phone gives decodes as before (here: is read, and is short).
        let err = decode_bytes(&deep_tiff_header(64, 16, false), DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt { .. }), "{err:?}");
    }

    #[test]
    fn every_orientation_matches_the_image_crate() {
        let src = gradient(5, 3);
        for o in [
            Orientation::NoTransforms,
            Orientation::Rotate90,
            Orientation::Rotate180,
            Orientation::Rotate270,
            Orientation::FlipHorizontal,
            Orientation::FlipVertical,
            Orientation::Rotate90FlipH,
            Orientation::Rotate270FlipH,
        ] {
            let mut reference = DynamicImage::ImageRgb8(src.clone());
            reference.apply_orientation(o);
            let reference = reference.into_rgb8();
            let frame = Frame::from_rgb(5, 3, src.clone().into_raw()).unwrap();
            let ours = orient(frame, o);
            assert_eq!((ours.width(), ours.height()), reference.dimensions(), "{o:?}");
            assert_eq!(ours.rgb(), reference.as_raw().as_slice(), "{o:?}");
        }
    }

    #[test]
    fn grey_16_bit_and_alpha_become_rgb8() {
        let limits = DecodeLimits::default();
        let mut png = Vec::new();
        let grey16 = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(4, 2, |x, _| image::Luma([x as u16 * 0x4000]));
        DynamicImage::ImageLuma16(grey16).write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let frame = decode_bytes(&png, limits).unwrap();
        assert_eq!(frame.pixel(1, 0), [0x40, 0x40, 0x40]);

        let mut png = Vec::new();
        let rgba = image::RgbaImage::from_fn(3, 3, |_, _| image::Rgba([10, 20, 30, 0]));
        DynamicImage::ImageRgba8(rgba).write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let frame = decode_bytes(&png, limits).unwrap();
        assert_eq!(frame.pixel(2, 2), [10, 20, 30]);
    }
}
