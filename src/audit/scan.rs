//! Byte scanners for the no-retention audit: image files (by their signatures, confirmed by a header that
//! parses), raw camera frames (a file exactly the size of a frame, whose bytes vary like pixels), and plaintext
//! embeddings (128 consecutive floats forming a unit vector). Pure: they take bytes and return findings.
//!
//! They must not raise false alarms on what the device legitimately keeps: AES-GCM ciphertext, SQLite pages and
//! log text. Every finding is confirmed past a 3-byte magic (random data contains `FF D8 FF` once in 16 MB).

use serde::Serialize;

use super::faces::FaceCheck;

/// What a scanner found, and where.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// `image`, `raw_frame`, `raw_pixels` or `embedding`.
    pub kind: &'static str,
    /// Byte offset in the file.
    pub offset: usize,
    /// What it looks like (format and size, or the vector's norm).
    pub detail: String,
}

/// Every finding in `bytes` (a whole value: a file, a cell) and in every stream decoded from it ([`super::layers`]: compressed, archived,
/// base64 or hex, nested); a finding inside a layer says which. Pictures count when `faces` finds a face in
/// them ([`FaceCheck`]).
pub fn find_all(bytes: &[u8], faces: &FaceCheck) -> Vec<Finding> {
    find_all_in(bytes, faces, Content::of(bytes)).findings
}

/// What the scan of one value found, and how many decoded streams the limits cut short or left out
/// ([`super::layers::Layers::cut`]): what the report must say was not looked at.
#[derive(Debug, Default)]
pub struct Scan {
    /// What was found.
    pub findings: Vec<Finding>,
    /// Streams cut or left out at the decoding limits.
    pub streams_cut: usize,
}

/// What a file holds, as far as the search for embeddings goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// A program's code and constant data: an ELF executable, library or object (not a core dump, which is
    /// memory), or an `ar` archive of objects. Its tables and model weights (a video encoder's, a browser's,
    /// a code completer's) look like embeddings number by number; pictures in it are still looked for.
    Program,
    /// Anything else: data, memory, text.
    Data,
}

impl Content {
    /// From a file's first bytes.
    pub fn of(bytes: &[u8]) -> Self {
        const ET_REL: u16 = 1;
        const ET_DYN: u16 = 3;
        if bytes.starts_with(b"!<arch>\n") {
            return Self::Program;
        }
        match bytes {
            [0x7f, b'E', b'L', b'F', _, order @ (1 | 2), _, _, _, _, _, _, _, _, _, _, t0, t1, ..] => {
                let kind = if *order == 1 { u16::from_le_bytes([*t0, *t1]) } else { u16::from_be_bytes([*t0, *t1]) };
                if (ET_REL..=ET_DYN).contains(&kind) {
                    Self::Program
                } else {
                    Self::Data
                }
            }
            _ => Self::Data,
        }
    }
}

/// [`find_all`] for a piece of a file whose start said what it holds.
pub fn find_all_in(bytes: &[u8], faces: &FaceCheck, content: Content) -> Scan {
    let mut findings = find_direct(bytes, faces, content);
    findings.extend(super::vectors::find_int8_whole(bytes));
    let decoded = super::layers::layers(bytes);
    for layer in decoded.layers {
        // A program's base64 and hex runs are its own strings, 128 bytes of which pass as int8 by chance
        // (LLVM's libraries had six).
        let whole = super::vectors::find_int8_whole(&layer.bytes).filter(|_| content == Content::Data);
        for f in find_direct(&layer.bytes, faces, Content::Data).into_iter().chain(whole) {
            findings.push(Finding { detail: format!("{} (inside {})", f.detail, layer.path), ..f });
        }
    }
    Scan { findings, streams_cut: decoded.cut }
}

/// The detectors on these bytes as they are.
fn find_direct(bytes: &[u8], faces: &FaceCheck, content: Content) -> Vec<Finding> {
    let mut findings = find_images(bytes, faces);
    match find_raw_frame(bytes) {
        Some(frame) => findings.push(frame),
        None => findings.extend(super::pixels::find_raw_pixels(bytes, faces)),
    }
    if content == Content::Data {
        findings.extend(super::vectors::find_binary_vectors(bytes));
        findings.extend(super::vectors::find_decimal_vectors(bytes));
    }
    findings
}

/// Image files, by signature, confirmed by parsing a header from that offset; one that decodes is reported
/// when it looks like a photograph and shows a face, one that does not decode whole when its header is
/// whole and its size could be a picture's ([`cut_image_header`]).
pub fn find_images(bytes: &[u8], faces: &FaceCheck) -> Vec<Finding> {
    const MAGICS: [&[u8]; 10] =
        [b"\xFF\xD8\xFF", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\0", b"MM\0*", b"RIFF", b"BM", b"P5", b"P6"];
    let mut first = [false; 256];
    MAGICS.iter().for_each(|m| first[usize::from(m[0])] = true);
    let mut findings = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if first[usize::from(rest[0])] && MAGICS.iter().any(|m| rest.starts_with(m)) && plausible_header(rest) {
            if let Some((format, w, h)) = image_header(rest) {
                match decode(rest) {
                    Some(picture) => match look(&picture) {
                        Look::Drawing(why) => {
                            tracing::debug!("image at byte {offset} ({format} {w}x{h}) passed over: {why}");
                        }
                        Look::Photo if !faces.shows_face(&picture.to_rgb8()) => {
                            tracing::debug!("image at byte {offset} ({format} {w}x{h}) passed over: no face in it");
                        }
                        Look::Photo => {
                            findings.push(Finding { kind: "image", offset, detail: format!("{format} {w}x{h}") });
                        }
                    },
                    None if cut_image_header(rest, w, h) => findings.push(Finding {
                        kind: "image",
                        offset,
                        detail: format!("{format} {w}x{h}, not decodable whole (cut, or split over pages)"),
                    }),
                    None => {}
                }
            }
        }
        offset += 1;
    }
    for (i, w) in bytes.windows(4).enumerate() {
        if w == b"ftyp" {
            if let Some((brand, w, h)) = heif_header(&bytes[i.saturating_sub(4)..]).filter(|_| i >= 4) {
                findings.push(Finding { kind: "image", offset: i - 4, detail: format!("HEIF/AVIF ({brand}) {w}x{h}") });
            }
        }
    }
    findings
}

/// A HEIF or AVIF file from its start: an `ftyp` box of sane size naming an image brand, then the `meta`
/// box, in which `ispe` gives the size. (HEIC and AVIF pictures are not decoded here: such a file is
/// reported at [`MIN_UNDECODED_SIDE`] pixels a side or more.)
fn heif_header(bytes: &[u8]) -> Option<(String, u32, u32)> {
    let be32 = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let size = usize::try_from(be32(0)?).ok()?;
    let brand = bytes.get(8..12)?;
    let images: [&[u8]; 6] = [b"heic", b"heix", b"mif1", b"avif", b"heim", b"msf1"];
    if !(16..=256).contains(&size) || size % 4 != 0 || bytes.get(4..8)? != b"ftyp" || !images.contains(&brand) {
        return None;
    }
    // Minor version, then compatible brands: four printable characters each.
    if !bytes.get(16..size)?.chunks(4).all(|b| b.iter().all(|c| c.is_ascii_graphic() || *c == b' ')) {
        return None;
    }
    let meta_size = usize::try_from(be32(size)?).ok()?;
    if bytes.get(size + 4..size + 8)? != b"meta" || meta_size < 12 {
        return None;
    }
    let meta = bytes.get(size..size + meta_size.min(1 << 20))?;
    let at = meta.windows(4).position(|w| w == b"ispe")?;
    let field =
        |k: usize| meta.get(at + 8 + 4 * k..at + 12 + 4 * k).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let (w, h) = (field(0)?, field(1)?);
    let sane = |side: u32| (MIN_UNDECODED_SIDE..=MAX_PICTURE_SIDE).contains(&side);
    (sane(w) && sane(h)).then(|| (String::from_utf8_lossy(brand).into_owned(), w, h))
}

/// No face crop is smaller than this; no camera frame is larger.
const MIN_PICTURE_SIDE: u32 = 24;
const MAX_PICTURE_SIDE: u32 = 16_384;

/// A picture the auditor cannot decode (cut short, or HEIF/AVIF, for which it has no decoder) cannot be shown
/// to hold a face; it is reported when it is at least the size of the smallest picture the gate makes (the
/// 80x80 liveness patch; an aligned crop is 112x112). Chromium's resources hold small AVIF drawings.
const MIN_UNDECODED_SIDE: u32 = 80;

/// Whether an image that does not decode whole is still worth reporting: [`MIN_UNDECODED_SIDE`] or more a side, and a
/// header that is whole past its magic (a PNG's IHDR with its checksum; a GIF's screen descriptor followed by
/// a block; for JPEG, the segment chain [`jpeg_header`] walks). Programs carry the magics as strings
/// ("GIF89a" in a GIF library), which read as absurd sizes.
fn cut_image_header(bytes: &[u8], w: u32, h: u32) -> bool {
    let sane = |side: u32| (MIN_UNDECODED_SIDE..=MAX_PICTURE_SIDE).contains(&side);
    if !sane(w) || !sane(h) {
        return false;
    }
    if bytes.starts_with(b"\x89PNG") {
        // Length 13, "IHDR", 13 bytes of header, its CRC-32.
        return bytes.get(8..33).is_some_and(|chunk| {
            chunk[..8] == *b"\0\0\0\x0dIHDR" && crc32fast::hash(&chunk[4..21]).to_be_bytes() == chunk[21..25]
        });
    }
    if bytes.starts_with(b"GIF8") {
        let flags = bytes.get(10).copied().unwrap_or(0);
        let table = if flags & 0x80 != 0 { 3 << ((flags & 7) + 1) } else { 0 };
        return bytes.get(13 + table).is_some_and(|b| matches!(b, 0x21 | 0x2C));
    }
    true
}

/// The image, decoded whole (`None` if it does not decode: cut, split over pages, or not an image at all).
fn decode(bytes: &[u8]) -> Option<image::DynamicImage> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().ok()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    std::panic::catch_unwind(move || reader.decode().ok()).ok().flatten()
}

/// Cheap checks past the short magics that text is full of ("BM", "P5", "RIFF"), before a decoder is asked.
fn plausible_header(rest: &[u8]) -> bool {
    match rest {
        // BMP: the file size in the header, and two reserved words of zero.
        [b'B', b'M', s0, s1, s2, s3, 0, 0, 0, 0, ..] => u32::from_le_bytes([*s0, *s1, *s2, *s3]) >= 26,
        [b'B', b'M', ..] => false,
        // PNM: whitespace after the magic.
        [b'P', b'5' | b'6', w, ..] => w.is_ascii_whitespace(),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => true,
        [b'R', b'I', b'F', b'F', ..] => false,
        _ => true,
    }
}

/// What an image that decodes looks like.
#[derive(Debug, PartialEq)]
enum Look {
    /// It could be a camera frame, a face crop or a liveness patch.
    Photo,
    /// An icon, a drawing or a diagram, and why.
    Drawing(&'static str),
}

/// Whether an image could come from a camera: no face crop is smaller than 24 pixels, transparent, drawn
/// in a few colours, or mostly one flat colour; icons, logos, diagrams and GIF art are.
fn look(img: &image::DynamicImage) -> Look {
    let (w, h) = (img.width(), img.height());
    if w.min(h) < MIN_PICTURE_SIDE {
        return Look::Drawing("smaller than any face crop");
    }
    let rgba = img.to_rgba8();
    let pixels = rgba.pixels().count();
    let stride = (pixels / 65_536).max(1);
    let mut counts = std::collections::HashMap::<u32, u32>::new();
    let (mut sampled, mut transparent, mut grey) = (0u32, 0u32, true);
    for p in rgba.pixels().step_by(stride) {
        let [r, g, b, a] = p.0;
        sampled += 1;
        transparent += u32::from(a < 250);
        grey &= r == g && g == b;
        *counts.entry(u32::from_le_bytes([r, g, b, 0])).or_default() += 1;
    }
    let commonest = counts.values().copied().max().unwrap_or(0);
    let (distinct, least) = (counts.len() as u32, if grey { 32 } else { (sampled / 8).clamp(32, 256) });
    if transparent * 100 > sampled {
        Look::Drawing("transparent")
    } else if commonest * 4 > sampled {
        Look::Drawing("mostly one flat colour")
    } else if distinct < least {
        Look::Drawing("few colours")
    } else {
        Look::Photo
    }
}

/// The format and dimensions, if a real image header starts here (the `image` crate's decoders parse it;
/// JPEG by a strict walk of its segment chain, since a lenient decoder skips garbage to the next marker).
fn image_header(bytes: &[u8]) -> Option<(String, u32, u32)> {
    if bytes.starts_with(b"\xFF\xD8") {
        return jpeg_header(bytes).map(|(w, h)| ("Jpeg".to_owned(), w, h));
    }
    let format = image::guess_format(bytes).ok()?;
    // Cap what a header parse may look at; a header is at most a few kilobytes before the dimensions.
    let head = &bytes[..bytes.len().min(1 << 20)];
    let reader = image::ImageReader::with_format(std::io::Cursor::new(head), format);
    let (w, h) = std::panic::catch_unwind(|| reader.into_dimensions().ok()).ok().flatten()?;
    (w >= 8 && h >= 8).then(|| (format!("{format:?}"), w, h))
}

/// Walks a JPEG's marker segments from SOI to the first frame header; the dimensions if the chain is intact.
fn jpeg_header(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    for _ in 0..64 {
        let (&ff, &marker) = (bytes.get(i)?, bytes.get(i + 1)?);
        if ff != 0xFF {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([*bytes.get(i + 2)?, *bytes.get(i + 3)?]));
        match marker {
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                let sof = bytes.get(i + 4..i + 10)?;
                let (precision, h, w, components) =
                    (sof[0], u16::from_be_bytes([sof[1], sof[2]]), u16::from_be_bytes([sof[3], sof[4]]), sof[5]);
                let valid = len == 8 + 3 * usize::from(components)
                    && matches!(precision, 8 | 12)
                    && matches!(components, 1 | 3 | 4)
                    && h > 0
                    && w > 0;
                return valid.then_some((u32::from(w), u32::from(h)));
            }
            0xE0..=0xEF | 0xDB | 0xC4 | 0xCC | 0xDD | 0xFE if len >= 2 => i += 2 + len,
            _ => return None,
        }
    }
    None
}

/// Frame sizes a camera or a decoder would produce, width x height.
const FRAME_SIZES: [(usize, usize); 12] = [
    (160, 120),
    (320, 240),
    (352, 288),
    (640, 360),
    (640, 480),
    (800, 600),
    (960, 540),
    (1024, 768),
    (1280, 720),
    (1280, 960),
    (1600, 1200),
    (1920, 1080),
];

/// A whole file that is one raw frame: its size is width x height x (1, 1.5, 2, 3 or 4 bytes per pixel),
/// it is no known container, and neighbouring pixels are alike (as in any photo, unlike ciphertext).
pub fn find_raw_frame(bytes: &[u8]) -> Option<Finding> {
    if bytes.starts_with(b"SQLite format 3\0") || image::guess_format(bytes).is_ok() {
        return None;
    }
    // Several layouts can share a size (640x480 RGB is 640x360 RGBA): the one whose pixels are most alike wins.
    let mut best: Option<(u64, String)> = None;
    for (w, h) in FRAME_SIZES {
        let pixels = w * h;
        let layouts = [
            (pixels, 1, "grey"),
            (pixels * 3 / 2, 1, "NV12/I420"),
            (pixels * 2, 2, "YUYV"),
            (pixels * 3, 3, "RGB"),
            (pixels * 4, 4, "RGBA"),
        ];
        for (size, step, layout) in layouts {
            if bytes.len() != size {
                continue;
            }
            let roughness = mean_neighbour_difference(bytes, step);
            if roughness < 45 && best.as_ref().is_none_or(|(r, _)| roughness < *r) {
                best = Some((roughness, format!("{w}x{h} {layout}")));
            }
        }
    }
    best.map(|(_, detail)| Finding { kind: "raw_frame", offset: 0, detail })
}

/// Mean absolute difference between a byte and the same channel of the next pixel: about 85 for uniform
/// random bytes (ciphertext), well under 45 for camera images (even noisy ones), 0 for a flat frame.
fn mean_neighbour_difference(bytes: &[u8], step: usize) -> u64 {
    let n = bytes.len().saturating_sub(step);
    if n == 0 {
        return u64::MAX;
    }
    let stride = (n / 200_000).max(1);
    let (mut sum, mut count) = (0u64, 0u64);
    let mut i = 0;
    while i < n {
        sum += u64::from(bytes[i].abs_diff(bytes[i + step]));
        count += 1;
        i += stride;
    }
    sum / count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The structure alone: every photograph counts as one that could show a face.
    fn every_picture() -> FaceCheck {
        FaceCheck::Unavailable("the structure alone".into())
    }
    use rand::{Rng, SeedableRng};

    fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random()).collect()
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 3) as u8, 90]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn ciphertext_and_text_raise_nothing() {
        let noise = random_bytes(4 << 20, 7);
        assert!(find_images(&noise, &every_picture()).is_empty());
        assert!(find_all(&noise, &every_picture()).is_empty());
        let text = "2026-11-24T10:00:00Z INFO gate: opened (face)\n".repeat(20_000);
        assert!(find_images(text.as_bytes(), &every_picture()).is_empty());
        assert!(find_all(text.as_bytes(), &every_picture()).is_empty());
        // Ciphertext exactly the size of a 640x480 RGB frame is not a frame.
        assert!(find_raw_frame(&random_bytes(640 * 480 * 3, 8)).is_none());
    }

    #[test]
    fn an_image_inside_other_bytes_is_found_at_its_offset() {
        let mut bytes = random_bytes(10_000, 1);
        let image = png(32, 24);
        bytes.splice(1234..1234, image);
        let found = find_images(&bytes, &every_picture());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].offset, found[0].detail.as_str()), (1234, "Png 32x24"));
        // A JPEG magic alone (random bytes after it) is not an image.
        let mut fake = random_bytes(5000, 2);
        fake[100..103].copy_from_slice(b"\xFF\xD8\xFF");
        assert!(find_images(&fake, &every_picture()).is_empty());
    }

    #[test]
    fn raw_frames_are_recognised_by_size_and_smoothness() {
        let frame: Vec<u8> = (0..640 * 480)
            .flat_map(|i| {
                let (x, y) = (i % 640, i / 640);
                [(x / 3) as u8, (y / 2) as u8, ((x + y) / 5) as u8]
            })
            .collect();
        let finding = find_raw_frame(&frame).unwrap();
        assert_eq!(finding.detail, "640x480 RGB");
        assert!(find_raw_frame(&frame[..frame.len() - 1]).is_none(), "not a frame size");
    }

    /// Programs carry image magics as strings ("GIF89a" in a GIF library, "ftypheic" in a MIME table); they
    /// read as absurd sizes or lack the boxes that follow. Both were false positives of the old scan.
    #[test]
    fn a_magic_without_the_structure_behind_it_is_no_image() {
        let strings = b"\0GIF87a\0GIF89a\0image/gif\0<match value=\"ftypheic\" offset=\"4\"/>\0ftypavif\0".repeat(50);
        assert!(find_images(&strings, &every_picture()).is_empty(), "{:?}", find_images(&strings, &every_picture()));
        // A PNG cut short is still reported (its header is whole); with a damaged header checksum it is not.
        let mut cut = random_bytes(3_000, 4);
        let image = noisy_png(96, 96);
        cut.splice(500..500, image[..image.len() / 2].to_vec());
        let found = find_images(&cut, &every_picture());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.contains("not decodable whole"), "{found:?}");
        cut[500 + 30] ^= 0x40;
        assert!(find_images(&cut, &every_picture()).is_empty());
        // Nor when it is smaller than any picture the gate makes (a cut 64x64 icon).
        let small = noisy_png(64, 64);
        let cut = [random_bytes(500, 5), small[..small.len() / 2].to_vec(), random_bytes(500, 6)].concat();
        assert!(find_images(&cut, &every_picture()).is_empty());
    }

    #[test]
    fn a_heif_file_is_found_by_its_boxes_with_its_size() {
        let mut heif = Vec::new();
        heif.extend(24u32.to_be_bytes());
        heif.extend(b"ftypheic\0\0\0\0mif1heic");
        let ispe =
            [&20u32.to_be_bytes()[..], b"ispe", &[0; 4], &4032u32.to_be_bytes(), &3024u32.to_be_bytes()].concat();
        let iprp = [&(8 + ispe.len() as u32).to_be_bytes()[..], b"ipco", &ispe].concat();
        heif.extend((12 + iprp.len() as u32).to_be_bytes());
        heif.extend(b"meta\0\0\0\0");
        heif.extend(iprp);
        let bytes = [random_bytes(777, 5), heif, random_bytes(5_000, 6)].concat();
        let found = find_images(&bytes, &every_picture());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].offset, found[0].detail.as_str()), (777, "HEIF/AVIF (heic) 4032x3024"));
    }

    fn noisy_png(w: u32, h: u32) -> Vec<u8> {
        let noise = random_bytes((w * h) as usize, 9);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let n = noise[(y * w + x) as usize] / 8;
            image::Rgb([(x * 2) as u8 + n, (y * 2) as u8 + n, 90 + n])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// Libraries carry model weights and tables that look like embeddings number by number (libaom's,
    /// Chromium's, clangd's: false positives of the full scan); a program's pictures are still looked for,
    /// and a core dump (memory) is scanned whole.
    #[test]
    fn a_program_is_searched_for_pictures_and_a_core_dump_for_everything() {
        use rand_distr::Distribution;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(77);
        let normal = rand_distr::Normal::<f64>::new(0.0, 0.09).unwrap();
        let vector: Vec<u8> = (0..128).flat_map(|_| (normal.sample(&mut rng) as f32).to_le_bytes()).collect();
        let elf = |kind: u16| {
            let mut header = b"\x7fELF\x02\x01\x01".to_vec();
            header.resize(16, 0);
            header.extend(kind.to_le_bytes());
            [header, random_bytes(3_000, 1), vector.clone(), random_bytes(3_000, 2), png(64, 48)].concat()
        };
        let kinds = |found: &[Finding]| found.iter().map(|f| f.kind).collect::<Vec<_>>();
        assert_eq!(kinds(&find_all(&elf(3), &every_picture())), ["image"], "a shared library");
        assert_eq!(kinds(&find_all(&elf(4), &every_picture())), ["image", "embedding"], "a core dump");
        assert_eq!(Content::of(b"!<arch>\nlibfoo.o/"), Content::Program);
        // int8 in a program's base64 strings is not looked for; in a core dump it is.
        let int8: Vec<u8> =
            (0..128).map(|_| (normal.sample(&mut rng) * 400.0).clamp(-127.0, 127.0) as i8 as u8).collect();
        let text = data_encoding::BASE64.encode(&int8);
        let with = |kind: u16| [&elf(kind)[..200], b" \"", text.as_bytes(), b"\" "].concat();
        assert!(!kinds(&find_all(&with(3), &every_picture())).contains(&"embedding"), "a library's string");
        assert!(kinds(&find_all(&with(4), &every_picture())).contains(&"embedding"), "a core dump's");
    }
}
