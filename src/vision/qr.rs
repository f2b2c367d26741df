//! QR: finds a visitor pass's QR code in a camera frame, so a visitor can show a pass to the same camera a
//! resident looks into. Needs no model: it keeps working when the face models are missing.
//!
//! Owns the grey copy of the frame that the decoder reads; that copy (and the decoder's thresholded version
//! of it, and its copies) is wiped when dropped, like every frame buffer. Also owns what the decoder may cost:
//! its work on a frame is metered and a search past the budget is given up (a damaged code can send rqrr's
//! alignment search round in circles), and its panics are contained (rqrr 0.11 asserts on some damaged codes,
//! upstream issue WanzenBug/rqrr#54). Both were found here by fuzzing; either costs the frame's QR read, is
//! counted, and is summarised in the log at most once a minute.
//!
//! It must never call rqrr's debugging helpers that write images to disk, never run face detection, and never
//! keep or log what it read: the text goes to the caller in zeroizing memory.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

use zeroize::{Zeroize, Zeroizing};

use crate::capture::Frame;

/// The longest text kept from a code; a visitor pass is 57 characters.
pub const MAX_QR_TEXT: usize = 512;

/// The work the decoder may spend on a frame (see [`work_budget`]), a pixel of the frame: its pixel reads and
/// writes, and the steps of its alignment search outside the image. rqrr's work on most frames is a few passes
/// over the image (thresholding alone reads each pixel three times and writes it once), but a damaged code can
/// send its alignment search round in circles, flood-filling the same regions again and again or stepping
/// through millions of points outside the image (fuzzing: 90 million on a 223 x 223 frame, 120 ms; nothing in
/// rqrr bounds it). The 2,628 photos of `shared/faces` and `shared/spoof` cost 10 a pixel at most (mean 6).
pub const WORK_PER_PIXEL: u64 = 24;

/// The work the decoder may spend on a frame besides [`WORK_PER_PIXEL`]: reading a code costs about the same
/// whatever the frame around it (a pass's code at 4 px a module added 1.5 million to the photos above, on a
/// 250 x 250 face or a 640 x 480 webcam frame), so small frames need more than their pixels' share.
pub const WORK_PER_FRAME: u64 = 6_000_000;

/// How many pixels rqrr copies for the cost of one pixel access. rqrr copies the whole image for each group of
/// finder patterns it tries; a copy is a memcpy, far cheaper than accesses through the image traits, but a
/// frame full of candidate groups must not copy without end.
const COPY_PER_ACCESS: u64 = 8;

/// The grey copy of a frame that rqrr reads and thresholds in place: wiped on drop, and metered: each pixel
/// read or write is counted, and past the budget the search is given up by unwinding with [`OverBudget`]
/// (rqrr offers no way to stop a search, and a fork was not worth carrying for one loop).
struct MeteredGrey<'a> {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
    spent: &'a Cell<u64>,
    budget: u64,
}

/// The unwinding payload that gives up a search past its budget; [`read_codes`] catches it.
struct OverBudget;

impl MeteredGrey<'_> {
    #[inline]
    fn spend(&self) {
        self.spend_many(1);
    }

    #[inline]
    fn spend_many(&self, accesses: u64) {
        let spent = self.spent.get().saturating_add(accesses);
        self.spent.set(spent);
        if spent > self.budget {
            std::panic::panic_any(OverBudget);
        }
    }
}

// rqrr copies the whole image for each group of finder patterns it tries (`find_groupings`): a copy is charged
// as a pass over the image, and the copy spends from the same budget.
impl Clone for MeteredGrey<'_> {
    fn clone(&self) -> Self {
        self.spend_many(self.pixels.len() as u64 / COPY_PER_ACCESS);
        Self { pixels: self.pixels.clone(), ..*self }
    }
}

// rqrr reads and writes its image through `image`'s traits (its own buffer trait is private).
impl image::GenericImageView for MeteredGrey<'_> {
    type Pixel = image::Luma<u8>;

    // rqrr asks the size at each step of its alignment search, in the image or out of it: the steps outside
    // read no pixel, and a damaged code can make that search millions of steps long.
    fn dimensions(&self) -> (u32, u32) {
        self.spend();
        (self.width as u32, self.height as u32)
    }

    fn get_pixel(&self, x: u32, y: u32) -> image::Luma<u8> {
        self.spend();
        image::Luma([self.pixels[y as usize * self.width + x as usize]])
    }
}

impl image::GenericImage for MeteredGrey<'_> {
    fn get_pixel_mut(&mut self, x: u32, y: u32) -> &mut image::Luma<u8> {
        use image::Pixel;
        self.spend();
        let i = y as usize * self.width + x as usize;
        image::Luma::from_slice_mut(&mut self.pixels[i..=i])
    }

    fn put_pixel(&mut self, x: u32, y: u32, pixel: image::Luma<u8>) {
        self.spend();
        self.pixels[y as usize * self.width + x as usize] = pixel.0[0];
    }

    fn blend_pixel(&mut self, x: u32, y: u32, pixel: image::Luma<u8>) {
        self.put_pixel(x, y, pixel);
    }
}

impl Drop for MeteredGrey<'_> {
    fn drop(&mut self) {
        self.pixels.zeroize();
    }
}

thread_local! {
    /// Set while this thread runs the decoder: a panic then is the decoder's, and [`read_codes`] contains it.
    static IN_DECODER: Cell<bool> = const { Cell::new(false) };
}

/// Frames whose QR read a decoder panic cost, since start.
static DECODER_PANICS: AtomicU64 = AtomicU64::new(0);

/// Frames whose QR search was given up past its work budget, since start.
static SEARCHES_GIVEN_UP: AtomicU64 = AtomicU64::new(0);

/// The least time between two warnings about lost QR reads: a damaged code held to the camera costs the read
/// of every frame, 15 times a second.
const WARNING_EVERY: Duration = Duration::from_secs(60);

/// Keeps the decoder's panics out of standard error (the journal): installed once, at start, it hands every
/// other panic to the hook it replaces. Without it each such panic prints its message, once a frame.
pub fn quiet_decoder_panics() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_DECODER.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// What searches a frame for QR codes: [`QrDecoder`] in the gate; tests put a slow or scripted one in its place.
pub trait CodeReader: Send + Sync {
    /// The codes in view, up to `max` of them (see [`read_codes`]).
    fn read_codes(&self, frame: &Frame, max: usize) -> Vec<Zeroizing<String>>;
}

/// rqrr, metered and contained: [`read_codes`].
#[derive(Debug, Clone, Copy, Default)]
pub struct QrDecoder;

impl CodeReader for QrDecoder {
    fn read_codes(&self, frame: &Frame, max: usize) -> Vec<Zeroizing<String>> {
        read_codes(frame, max)
    }
}

/// Reads the QR codes in a frame, up to `max` of them, largest image first is not guaranteed. Texts longer
/// than [`MAX_QR_TEXT`] or not valid UTF-8 are skipped. A frame with no code costs one threshold pass and a
/// search; nothing is allocated per code but the decoded text. The search is bounded: past
/// [`work_budget`] it is given up, keeping the codes read by then.
pub fn read_codes(frame: &Frame, max: usize) -> Vec<Zeroizing<String>> {
    search(frame, max, work_budget(frame.width(), frame.height())).codes
}

/// The work the decoder may spend on a frame of `width` x `height` before its search is given up. On a
/// 640 x 480 frame (the camera's) it is 13.4 million. The photos of `shared/` use 26 % of their budget at
/// most, and with a pass held up in them 27 %; a pass's code drawn at 2 to 8 px a module on a noisy 640 x 480
/// scene 24 %, the densest code rqrr reads (500 characters at 2 px a module) 46 %. A search to the budget takes
/// about 0.7 s in the fuzzer's instrumented build and tens of milliseconds optimised (the fixture's 90
/// million, unbounded, took 120 ms); see `docs/reliability.md` (fuzz finding 5) and `tests/vision.rs`.
pub fn work_budget(width: u32, height: u32) -> u64 {
    WORK_PER_PIXEL.saturating_mul(u64::from(width) * u64::from(height)).saturating_add(WORK_PER_FRAME)
}

/// The decoder's work on a frame, searched as the gate searches (one code) but without the budget: the
/// measurement behind [`work_budget`] (`tests/vision.rs`).
pub fn search_work(frame: &Frame) -> u64 {
    search(frame, 1, u64::MAX).spent
}

/// How a frame's search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Done,
    /// Given up past its budget ([`OverBudget`]).
    OverBudget,
    /// The decoder panicked (rqrr#54).
    DecoderPanicked,
}

/// One frame's search: the codes read, the pixel accesses spent and how it ended.
#[cfg_attr(not(test), allow(dead_code, reason = "how a search ended is the unit tests' to check"))]
struct Search {
    codes: Vec<Zeroizing<String>>,
    spent: u64,
    ending: Ending,
}

fn search(frame: &Frame, max: usize, budget: u64) -> Search {
    let (width, height) = (frame.width() as usize, frame.height() as usize);
    let spent = Cell::new(0);
    let grey = MeteredGrey { width, height, pixels: grey_of(frame), spent: &spent, budget };
    let mut codes = Vec::new();
    // The code shown is untrusted input to a third-party decoder: a panic in it, or a search that would not
    // end in time, must cost one frame's read, not the thread.
    IN_DECODER.with(|d| d.set(true));
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(grey, max, &mut codes)));
    IN_DECODER.with(|d| d.set(false));
    let ending = match read {
        Ok(()) => Ending::Done,
        Err(payload) if payload.is::<OverBudget>() => {
            search_failed(&SEARCHES_GIVEN_UP, "a QR search was given up past its work budget");
            Ending::OverBudget
        }
        Err(_) => {
            search_failed(&DECODER_PANICS, "the QR decoder failed");
            Ending::DecoderPanicked
        }
    };
    Search { codes, spent: spent.get(), ending }
}

fn search_failed(counter: &AtomicU64, what: &str) {
    static LAST_WARNING: Mutex<Option<Instant>> = Mutex::new(None);
    let total = counter.fetch_add(1, Ordering::Relaxed) + 1;
    let mut last = LAST_WARNING.lock().unwrap_or_else(PoisonError::into_inner);
    if last.is_none_or(|at| at.elapsed() >= WARNING_EVERY) {
        *last = Some(Instant::now());
        tracing::warn!(
            "{what} on a damaged or unusual code ({total} frames since start, at most one warning a minute); \
             those frames' codes were not read, the other ways in are unaffected"
        );
    }
}

fn grey_of(frame: &Frame) -> Vec<u8> {
    // Integer luma (BT.601): a QR code needs contrast, not colour accuracy.
    frame
        .rgb()
        .chunks_exact(3)
        .map(|p| ((u32::from(p[0]) * 77 + u32::from(p[1]) * 150 + u32::from(p[2]) * 29) >> 8) as u8)
        .collect()
}

/// The decoder's part: rqrr's threshold, grid search and decoding, on the frame's grey copy. The codes read
/// go into `found` as they are read, so that a search given up part way keeps what it read.
fn decode(grey: MeteredGrey<'_>, max: usize, found: &mut Vec<Zeroizing<String>>) {
    let mut prepared = rqrr::PreparedImage::prepare(grey);
    let grids = prepared.detect_grids();
    for grid in grids.iter().take(max.max(1) * 4) {
        if found.len() >= max {
            break;
        }
        // Wiped however the read ends, an unwinding included: a pass is a bearer token.
        let mut text = Zeroizing::new(Vec::new());
        // A damaged or partial code is simply not read; the visitor holds it steadier.
        if grid.decode_to(&mut *text).is_ok() && text.len() <= MAX_QR_TEXT {
            if let Ok(s) = std::str::from_utf8(&text) {
                found.push(Zeroizing::new(s.to_owned()));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A frame with a QR code of `text` drawn `module` px per module at (x0, y0) on a mid-grey, noisy scene.
    pub(crate) fn frame_with_code(text: &str, module: u32, x0: u32, y0: u32) -> Frame {
        let (w, h) = (640u32, 480u32);
        let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).unwrap();
        let n = u32::try_from(code.width()).unwrap();
        let colors = code.to_colors();
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        for y in 0..h {
            for x in 0..w {
                let noise = ((x * 7919 + y * 104_729) % 23) as u8;
                let mut v = 110 + noise;
                // Quiet zone of 4 modules in white around the code.
                let (qx, qy) = (x as i64 - x0 as i64, y as i64 - y0 as i64);
                let span = i64::from((n + 8) * module);
                if (0..span).contains(&qx) && (0..span).contains(&qy) {
                    v = 235;
                    let (mx, my) = (qx / i64::from(module) - 4, qy / i64::from(module) - 4);
                    if (0..i64::from(n)).contains(&mx) && (0..i64::from(n)).contains(&my) {
                        let c = colors[(my * i64::from(n) + mx) as usize];
                        if c == qrcode::Color::Dark {
                            v = 20;
                        }
                    }
                }
                let i = ((y * w + x) * 3) as usize;
                rgb[i..i + 3].copy_from_slice(&[v, v, v.saturating_sub(5)]);
            }
        }
        Frame::from_rgb(w, h, rgb).unwrap()
    }

    #[test]
    fn a_pass_shown_to_the_camera_is_read() {
        let text = "FGP1:ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRST";
        for (module, x0, y0) in [(4, 10, 10), (6, 300, 150), (3, 200, 200)] {
            let found = read_codes(&frame_with_code(text, module, x0, y0), 1);
            assert_eq!(found.len(), 1, "module {module}px at ({x0},{y0})");
            assert_eq!(found[0].as_str(), text);
        }
    }

    #[test]
    fn a_frame_without_a_code_reads_nothing() {
        let rgb: Vec<u8> = (0..640 * 480 * 3).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        assert!(read_codes(&Frame::from_rgb(640, 480, rgb).unwrap(), 1).is_empty());
        let flat = Frame::from_rgb(2, 2, vec![0; 12]).unwrap();
        assert!(read_codes(&flat, 1).is_empty());
    }

    /// A damaged code (version 1, 1 px a module, five modules flipped) on which rqrr 0.11 asserts in
    /// `Perspective::map`; found by `fuzz/fuzz_targets/qr_frame.rs`. The read is lost and counted.
    #[test]
    fn a_code_that_panics_the_decoder_costs_its_read_and_is_counted() {
        quiet_decoder_panics();
        let frame = fixture("qr-decoder-panic.png");
        let before = DECODER_PANICS.load(Ordering::Relaxed);
        // Without the budget: within it, the search is given up before the decoder reaches its assertion.
        let read = search(&frame, 2, u64::MAX);
        assert!(read.codes.is_empty() && read.ending == Ending::DecoderPanicked);
        assert!(
            DECODER_PANICS.load(Ordering::Relaxed) > before,
            "the fixture no longer panics the decoder: is rqrr#54 fixed?"
        );
        assert!(!IN_DECODER.with(Cell::get), "the thread is still marked as in the decoder");
    }

    fn fixture(name: &str) -> Frame {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
        crate::capture::decode_file(&path, crate::capture::DecodeLimits::default()).unwrap()
    }

    /// A damaged code (version 1, 7 px a module, low contrast, nine modules flipped; drawn by
    /// `fuzz/fuzz_targets/qr_frame.rs` from `fuzz/regressions/qr_frame/slow-alignment-search`) on which rqrr's
    /// alignment search flood-fills the same regions again and again and steps through points outside the
    /// image: 120 ms on this 223 x 223 frame before the budget. Given up at the budget, counted.
    #[test]
    fn a_code_that_sends_the_search_round_in_circles_is_given_up_at_the_budget() {
        quiet_decoder_panics();
        let frame = fixture("qr-slow-alignment-search.png");
        let budget = work_budget(frame.width(), frame.height());
        let unbounded = search(&frame, 2, u64::MAX);
        assert_eq!(unbounded.ending, Ending::Done);
        assert!(
            unbounded.spent > 5 * budget,
            "the fixture no longer costs the decoder much ({} against a budget of {budget}): is the alignment \
             search fixed?",
            unbounded.spent
        );
        let before = SEARCHES_GIVEN_UP.load(Ordering::Relaxed);
        let bounded = search(&frame, 2, budget);
        assert_eq!(bounded.ending, Ending::OverBudget);
        assert!(bounded.codes.is_empty() && bounded.spent == budget + 1);
        assert!(SEARCHES_GIVEN_UP.load(Ordering::Relaxed) > before);
        assert!(!IN_DECODER.with(Cell::get), "the thread is still marked as in the decoder");
    }

    /// The budget is far above what readable codes and ordinary scenes cost: a pass's code at 2 to 8 px a
    /// module, and the densest code read (500 characters), on the noisy scene; a frame of noise.
    #[test]
    fn readable_codes_and_busy_scenes_cost_a_fraction_of_the_budget() {
        let long = "FGP1:".to_owned() + &"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".repeat(16);
        let pass = "FGP1:ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRST";
        let budget = work_budget(640, 480);
        let mut worst = [0; 2];
        let mut read_back = 0;
        for (kind, text) in [(0, pass), (0, "x"), (1, &long[..MAX_QR_TEXT - 10])] {
            let side = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).unwrap().width() as u32;
            for module in (2..=8).filter(|m| (side + 8) * m + 9 <= 480) {
                let frame = frame_with_code(text, module, 17, 9);
                let read = search(&frame, 2, budget);
                assert_eq!(read.ending, Ending::Done, "{} chars at {module} px", text.len());
                if read.codes.first().is_some_and(|code| code.as_str() == text) {
                    read_back += 1;
                }
                worst[kind] = worst[kind].max(search(&frame, 2, u64::MAX).spent);
            }
        }
        assert!(read_back >= 12, "only {read_back} codes read back");
        let noise: Vec<u8> = (0..640 * 480 * 3).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let read = search(&Frame::from_rgb(640, 480, noise).unwrap(), 2, budget);
        assert_eq!(read.ending, Ending::Done);
        let noise = read.spent;
        eprintln!("work on 640 x 480: a pass's code {}, the densest code {}, noise {noise}", worst[0], worst[1]);
        assert!(worst[0] * 4 <= budget && noise * 4 <= budget, "{worst:?}, noise {noise}, budget {budget}");
        assert!(worst[1] * 2 <= budget, "{worst:?}, budget {budget}");
    }
}
