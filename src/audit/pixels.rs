//! Raw pixel data anywhere inside bytes: rows of 8-bit samples (grey, YUYV, RGB, RGBA, a planar frame's
//! luma) of any width from 64 to 4,608 pixels, as a camera, a crop (112x112) or a liveness patch (80x80)
//! leaves them in memory and a careless program writes them out.
//!
//! Pure: bytes in, findings out. What gives a raster away, whatever its width: a sample is close to its
//! neighbour in the row and to the sample one row below, and not to samples at other distances. So a
//! region whose bytes are smooth at a pixel's step is searched for the row length at which they are most
//! alike (mean squared differences at every distance at once, by FFT); a clear dip there (and again two
//! rows down), below both the typical distance and every shorter one, is a raster. Ciphertext is smooth at no step; text and code are no smoother at a pixel's step than
//! anywhere else; a smooth 1-D signal has no dip, only distances that grow.

use super::faces::{raster_pictures, FaceCheck};
use super::scan::Finding;

/// Bytes per block of the first pass.
const BLOCK: usize = 2048;

/// The shortest row, in bytes (a 64-pixel grey row), and the longest (4,608 RGBA pixels).
const MIN_STRIDE: usize = 64;
const MAX_STRIDE: usize = 4608 * 4;

/// The fewest rows, and pixels in a row, reported (a liveness patch has 80 of each; no face image a detector
/// or a matcher can use has fewer than 48 rows).
const MIN_ROWS: usize = 48;
const MIN_WIDTH: usize = 64;

/// Regions of pixel-like bytes, each tested for rows; one finding per raster in which `faces` finds a face
/// (tables of numbers, cursors and sprites have rows too).
pub fn find_raw_pixels(bytes: &[u8], faces: &FaceCheck) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (start, end, step) in smooth_regions(bytes) {
        // Text with lines of one length (tables, rulers, aligned columns, box drawing) has rows too.
        if text_like(&bytes[start..end]) {
            continue;
        }
        if let Some((stride, rows)) = raster(&bytes[start..end], step) {
            let width = stride / step;
            if width < MIN_WIDTH || rows < MIN_ROWS {
                continue;
            }
            let layout = match step {
                1 => "one byte per pixel (grey or luma)",
                2 => "two bytes per pixel (YUYV)",
                3 => "three bytes per pixel (RGB)",
                _ => "four bytes per pixel (RGBA)",
            };
            let pictures = raster_pictures(&bytes[start..end], stride, step, rows);
            if !pictures.iter().any(|p| faces.shows_face(p)) {
                tracing::debug!("raster at byte {start} ({width} pixels wide, {rows} rows) passed over: no face in it");
                continue;
            }
            let detail = format!("rows of {stride} bytes: {width} pixels wide, {rows} rows, {layout}");
            findings.push(Finding { kind: "raw_pixels", offset: start, detail });
        }
    }
    findings
}

/// Whether 97 % of the bytes are text: printable characters or line breaks, in ASCII or valid UTF-8 (a table
/// drawn with box characters is text). A camera image's bytes are not: its dark pixels are control bytes,
/// its bright ones are not valid UTF-8.
fn text_like(bytes: &[u8]) -> bool {
    let text: usize = bytes
        .utf8_chunks()
        .map(|chunk| {
            chunk
                .valid()
                .chars()
                .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\x0c'))
                .map(char::len_utf8)
                .sum::<usize>()
        })
        .sum();
    text * 100 >= bytes.len() * 97
}

/// Runs of blocks whose bytes are alike at some pixel step (1 to 4) and unlike at a far distance, with
/// texture (not zeros or a fill): `(start, end, step)`.
fn smooth_regions(bytes: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut regions: Vec<(usize, usize, usize)> = Vec::new();
    let mut current: Option<(usize, usize, [u32; 4])> = None; // (start, end, votes per step)
    let flush = |c: Option<(usize, usize, [u32; 4])>, regions: &mut Vec<_>| {
        if let Some((start, end, votes)) = c {
            if end - start >= MIN_STRIDE * MIN_ROWS {
                let step = (1..=4).max_by_key(|s| votes[s - 1]).unwrap_or(1);
                regions.push((start, end, step));
            }
        }
    };
    for (k, block) in bytes.chunks(BLOCK).enumerate() {
        let start = k * BLOCK;
        match smooth_step(block) {
            Some(step) => {
                let (s, _, mut votes) = current.unwrap_or((start, start, [0; 4]));
                votes[step - 1] += 1;
                current = Some((s, start + block.len(), votes));
            }
            None => flush(current.take(), &mut regions),
        }
    }
    flush(current, &mut regions);
    regions
}

/// The pixel step at which a block is smoothest, if it is smooth at all.
fn smooth_step(block: &[u8]) -> Option<usize> {
    const FAR: usize = 509;
    if block.len() < BLOCK / 2 {
        return None;
    }
    let n = block.len() - FAR;
    let mean_diff = |d: usize| -> f64 {
        let (mut sum, mut count) = (0u32, 0u32);
        for i in (0..n).step_by(5) {
            sum += u32::from(block[i].abs_diff(block[i + d]));
            count += 1;
        }
        f64::from(sum) / f64::from(count.max(1))
    };
    let far = mean_diff(FAR);
    let zeros = block.iter().filter(|b| **b == 0).count();
    if far < 8.0 || zeros * 2 > block.len() {
        return None;
    }
    let (step, near) = (1..=4).map(|s| (s, mean_diff(s))).min_by(|a, b| a.1.total_cmp(&b.1))?;
    (near * 2.2 < far).then_some(step)
}

/// Bytes of a region examined for rows: [`MIN_ROWS`] of the longest (and a raster's rows are alike all
/// through it).
const EXAMINED: usize = 1 << 20;
const _: () = assert!(EXAMINED >= MIN_ROWS * MAX_STRIDE);

/// The row length (bytes) and row count of a raster filling `region`, if it is one.
fn raster(region: &[u8], step: usize) -> Option<(usize, usize)> {
    let rows_of = region.len();
    let region = &region[..region.len().min(EXAMINED)];
    let longest = (region.len() / MIN_ROWS).min(MAX_STRIDE);
    if longest < MIN_STRIDE {
        return None;
    }
    // From 3/4 of the shortest row: so that a 64-byte row is a dip, not the edge of the search.
    let first = MIN_STRIDE * 3 / 4 - step;
    let distance = mean_square_differences(region, 2 * longest + step);
    let at = |d: usize| distance[d];
    let mut typical: Vec<f64> = distance[first..=longest].to_vec();
    typical.sort_by(f64::total_cmp);
    let median = typical[typical.len() / 2];
    // Straight down, with the two diagonals beside it: one row down and one pixel left is nearly as alike
    // as straight down, but its own neighbours are not symmetric.
    let (stride, _) =
        (MIN_STRIDE..=longest).map(|d| (d, at(d - step) + at(d) + at(d + step))).min_by(|a, b| a.1.total_cmp(&b.1))?;
    let dip = at(stride);
    let shorter = (MIN_STRIDE * 3 / 4..=stride * 3 / 4).map(at).fold(f64::INFINITY, f64::min);
    let raster = dip < 0.3 * median
        && dip < 0.5 * shorter
        && at(2 * stride) < 0.6 * median
        && equal_fraction(region, stride) < 0.8;
    raster.then_some((stride, rows_of / stride))
}

/// The fraction of bytes equal to the byte `d` further on. Records of one size (database pages, tables of
/// structs) repeat nearly all their bytes from one to the next; a camera image has noise, and even one
/// scaled up smoothly (a 640x480 frame resized to a Pi camera's 1456x1088) keeps under 80 % of them.
fn equal_fraction(region: &[u8], d: usize) -> f64 {
    let pairs = region.len().saturating_sub(d);
    let step = (pairs / 4096).max(1);
    let (mut equal, mut count) = (0u32, 0u32);
    for i in (0..pairs).step_by(step) {
        equal += u32::from(region[i] == region[i + d]);
        count += 1;
    }
    f64::from(equal) / f64::from(count.max(1))
}

/// Mean squared difference of bytes `d` apart, for every `d` up to `max_d`, in O(n log n): the sum of
/// products at lag `d` is the autocorrelation, which the FFT gives for all lags at once.
fn mean_square_differences(region: &[u8], max_d: usize) -> Vec<f64> {
    use rustfft::num_complex::Complex;
    let n = region.len();
    let size = (2 * n).next_power_of_two();
    #[allow(clippy::cast_precision_loss)]
    let mean = region.iter().map(|&b| f64::from(b)).sum::<f64>() / n as f64;
    let x: Vec<f64> = region.iter().map(|&b| f64::from(b) - mean).collect();
    let mut buffer: Vec<Complex<f64>> = x.iter().map(|&v| Complex::new(v, 0.0)).collect();
    buffer.resize(size, Complex::new(0.0, 0.0));
    let mut planner = rustfft::FftPlanner::new();
    planner.plan_fft_forward(size).process(&mut buffer);
    buffer.iter_mut().for_each(|c| *c = Complex::new(c.norm_sqr(), 0.0));
    planner.plan_fft_inverse(size).process(&mut buffer);
    // Prefix sums of squares: the squares of the first n-d values and of the last n-d.
    let mut prefix = vec![0.0; n + 1];
    for (i, v) in x.iter().enumerate() {
        prefix[i + 1] = prefix[i] + v * v;
    }
    #[allow(clippy::cast_precision_loss)]
    (0..=max_d.min(n - 1))
        .map(|d| {
            let products = buffer[d].re / size as f64;
            let squares = prefix[n - d] + (prefix[n] - prefix[d]);
            ((squares - 2.0 * products) / (n - d) as f64).max(0.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rasters' geometry alone: every raster counts as a picture that could show a face.
    fn every_picture() -> FaceCheck {
        FaceCheck::Unavailable("the geometry alone".into())
    }
    use rand::{Rng, SeedableRng};

    /// A smooth synthetic scene with sensor noise: gradients, a disc, texture.
    fn scene(w: usize, h: usize, channels: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(w * h * channels);
        for y in 0..h {
            for x in 0..w {
                // One scale both ways (isotropic, as a camera sees): a wide strip is a strip of a wide scene.
                let side = w.max(h) as f64;
                let (fx, fy) = (x as f64 / side, y as f64 / side);
                let disc = if (fx - 0.5).powi(2) + (fy - 0.45).powi(2) < 0.08 { 70.0 } else { 0.0 };
                let base = 40.0 + 120.0 * fy + 30.0 * (fx * 9.0).sin() + disc;
                for c in 0..channels {
                    let v = base + 15.0 * c as f64 + rng.random_range(-3.0..3.0);
                    out.push(v.clamp(0.0, 255.0) as u8);
                }
            }
        }
        out
    }

    fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random()).collect()
    }

    #[test]
    fn rasters_of_any_width_are_found_inside_other_bytes_with_their_row_length_to_a_pixel() {
        for (w, h, channels) in
            [(112, 112, 3), (80, 80, 3), (80, 80, 1), (640, 480, 2), (1000, 60, 1), (333, 90, 4), (64, 64, 1)]
        {
            let mut bytes = random_bytes(30_000, 1);
            let at = 12_345;
            bytes.splice(at..at, scene(w, h, channels, 2));
            let found = find_raw_pixels(&bytes, &every_picture());
            assert_eq!(found.len(), 1, "{w}x{h}x{channels}: {found:?}");
            // The row length, to a pixel or two (where the scene changes mostly down the rows, one row down
            // and a pixel aside is nearly as alike as straight down).
            let stride: usize = found[0].detail["rows of ".len()..].split(' ').next().unwrap().parse().unwrap();
            assert!(stride.abs_diff(w * channels) <= 2 * channels, "{w}x{h}x{channels}: {found:?}");
            assert!(found[0].offset.abs_diff(at) <= BLOCK, "{found:?}");
        }
    }

    #[test]
    fn noise_text_zeros_and_smooth_signals_are_not_rasters() {
        assert!(find_raw_pixels(&random_bytes(1 << 20, 3), &every_picture()).is_empty());
        let text = "2026-11-24T10:00:00Z INFO gate: opened (face) after 2 frames, score 0.61\n".repeat(10_000);
        assert!(find_raw_pixels(text.as_bytes(), &every_picture()).is_empty());
        assert!(find_raw_pixels(&vec![0u8; 1 << 20], &every_picture()).is_empty());
        let ramp: Vec<u8> = (0..200_000).map(|i| ((i / 700) % 256) as u8).collect();
        assert!(find_raw_pixels(&ramp, &every_picture()).is_empty(), "{:?}", find_raw_pixels(&ramp, &every_picture()));
        // A table drawn with box characters, rows of one length.
        let table: String = (0..2_000)
            .map(|i| format!("│ {:<8} │ {:>6} │ KEYPAD F{} ──────────┤\n", i % 13, i * 7 % 1000, i % 4))
            .collect();
        assert!(
            find_raw_pixels(table.as_bytes(), &every_picture()).is_empty(),
            "{:?}",
            find_raw_pixels(table.as_bytes(), &every_picture())
        );
        // Records of one size with a counter in them (an index page of resident ids, say).
        let records: Vec<u8> =
            (0..3_000u32).flat_map(|i| format!("r{i:05}\x01\x02{:<70}\x00", i % 7).into_bytes()).collect();
        assert!(
            find_raw_pixels(&records, &every_picture()).is_empty(),
            "{:?}",
            find_raw_pixels(&records, &every_picture())
        );
        let wave: Vec<u8> = (0..200_000).map(|i| (128.0 + 90.0 * (i as f64 * 0.0007).sin()) as u8).collect();
        assert!(find_raw_pixels(&wave, &every_picture()).is_empty(), "{:?}", find_raw_pixels(&wave, &every_picture()));
    }
}
