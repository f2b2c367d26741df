//! Binary numbers in bytes: the runs of values that read as plausible numbers, in every format at every
//! alignment, and which of them to judge as a vector ([`super::vectors`] says what one looks like). A run
//! longer than any embedding is a weight tensor or a table unless it holds a gallery of unit vectors; a run
//! that the other byte order reads one byte off as a long run or a table is that data misread.
//!
//! Pure: bytes in, findings out.

use super::scan::Finding;
use super::vectors::{autocorrelation, embedding_shape, run_finding, NumberFormat, Precision, MIN_DIM};

/// The longest run judged as one vector: the largest embedding (1,024 values) and a window's worth of
/// neighbours that happen to read as numbers. A longer run of normal-looking numbers is a weight tensor or
/// a table (model weights look like embeddings value by value), unless it is a gallery of unit vectors.
pub const MAX_RUN: usize = 1024 + 64;

/// Consecutive zeros that end a run: the zero padding around a stored vector is not part of it (an
/// embedding holds at most two zeros).
const ZERO_BREAK: usize = 4;

/// Values of a long run held at once.
const LONG_RUN: usize = 1 << 16;

/// A run of plausible values in one format at one alignment, as bytes `start..end`.
#[derive(Clone, Copy, Debug)]
struct Run {
    format: NumberFormat,
    start: usize,
    end: usize,
}

impl Run {
    fn len(&self) -> usize {
        (self.end - self.start) / self.format.width()
    }

    fn values(&self, bytes: &[u8]) -> Vec<f64> {
        bytes[self.start..self.end].chunks_exact(self.format.width()).map(|c| self.format.read(c)).collect()
    }
}

/// Every run of at least [`MIN_DIM`] plausible values, every format at every alignment; ends at a value that
/// is not plausible or at [`ZERO_BREAK`] zeros.
fn runs(bytes: &[u8]) -> Vec<Run> {
    let mut found = Vec::new();
    for format in NumberFormat::ALL {
        let width = format.width();
        for align in 0..width {
            let Some(stream) = bytes.get(align..) else { continue };
            let (mut start, mut len, mut zeros) = (0, 0, 0);
            let mut close = |start: usize, len: usize| {
                if len >= MIN_DIM {
                    found.push(Run { format, start: align + start * width, end: align + (start + len) * width });
                }
            };
            for (i, chunk) in stream.chunks_exact(width).enumerate() {
                let v = format.read(chunk);
                if !NumberFormat::plausible(v) {
                    close(start, len);
                    (len, zeros) = (0, 0);
                    continue;
                }
                zeros = if v == 0.0 { zeros + 1 } else { 0 };
                if zeros == ZERO_BREAK {
                    close(start, len + 1 - ZERO_BREAK);
                    (len, zeros) = (0, 0);
                    continue;
                }
                if len == 0 {
                    start = i;
                }
                len += 1;
            }
            close(start, len);
        }
    }
    found
}

/// Whether `run` is the other byte order's misreading of a long run: a number read in the wrong order one
/// byte off takes its sign and exponent from a neighbour, so weights stored little-endian also read as
/// normal-looking big-endian numbers (and the reverse).
fn shadow_of_long_run(run: &Run, long: &[Run]) -> bool {
    let width = run.format.width();
    long.iter().any(|l| {
        let offset = (run.start % width + width - l.start % width) % width;
        let overlap = run.end.min(l.end).saturating_sub(run.start.max(l.start));
        l.format.width() == width
            && l.format != run.format
            && (offset == 1 || offset == width - 1)
            && overlap * 2 >= run.end - run.start
    })
}

/// Whether the window of `wide` values at `offset` is the other byte order's misreading of a table: read in
/// the other order, one byte off (where a misreading takes its sign and exponent from), the numbers repeat
/// at a record's length or hold the same constant three times. (A misread embedding is a noisy copy of one,
/// with neither; a misread table loses the exact repeats that give it away.)
fn shadow_of_a_table(bytes: &[u8], format: NumberFormat, offset: usize, wide: usize) -> bool {
    let (other, shift) = format.other_order();
    let Some(source) = offset.checked_add_signed(shift) else { return false };
    let Some(window) = bytes.get(source..source + wide * format.width()) else { return false };
    let values: Vec<f64> = window.chunks_exact(format.width()).map(|c| other.read(c)).collect();
    values.iter().all(|v| NumberFormat::plausible(*v)) && table_like(&values, format.width() >= 4)
}

/// Records (the same fields at one distance) or, when the numbers are `exact` (f32, f64: an f16 has too few
/// values not to repeat), constants (one non-zero value three times).
fn table_like(values: &[f64], exact: bool) -> bool {
    #[allow(clippy::cast_precision_loss)]
    let m2 = values.iter().map(|v| v * v).sum::<f64>() / values.len().max(1) as f64;
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| *v != 0.0).collect();
    sorted.sort_by(f64::total_cmp);
    (1..=16).any(|k| autocorrelation(values, k, m2).abs() > 0.5) || (exact && sorted.windows(3).any(|w| w[0] == w[2]))
}

/// Binary vectors: every format at every alignment. A run of at most [`MAX_RUN`] plausible values in which a
/// window looks like an embedding is one finding; a longer run only when it holds a gallery of unit vectors.
pub fn find_binary_vectors(bytes: &[u8]) -> Vec<Finding> {
    let all = runs(bytes);
    let long: Vec<Run> = all.iter().copied().filter(|r| r.len() > MAX_RUN).collect();
    let mut findings = Vec::new();
    for run in &all {
        let width = run.format.width();
        if run.len() > MAX_RUN {
            // Judged in pieces that overlap by three of the largest vectors, so that memory stays bounded.
            let mut at = run.start;
            while at < run.end {
                let end = run.end.min(at + LONG_RUN * width);
                let piece = Run { start: at, end, ..*run };
                if let Some((offset, found)) = gallery(&piece.values(bytes), run.format) {
                    findings.push(Finding { offset: at + offset * width, ..found });
                    break;
                }
                if end == run.end {
                    break;
                }
                at = end - 3 * 1024 * width;
            }
        } else if !shadow_of_long_run(run, &long) {
            let precision = if width == 2 { Precision::Coarse } else { Precision::Exact };
            if let Some((at, wide, found)) = run_finding(&run.values(bytes), run.format.as_str(), precision) {
                let offset = run.start + at * width;
                if !shadow_of_a_table(bytes, run.format, offset, wide) {
                    findings.push(Finding { offset, ..found });
                }
            }
        }
    }
    findings
}

/// The lengths of embedding a gallery is searched for.
const GALLERY_DIMS: [usize; 4] = [128, 256, 512, 64];

/// Three or more back-to-back vectors of one length, each of norm 1 (as stored after normalisation) and
/// shaped like an embedding: a gallery. By chance, a window of weights has norm 1 within 1e-4 about once in
/// 3,000; three in a row, once in 10^10.
fn gallery(values: &[f64], format: NumberFormat) -> Option<(usize, Finding)> {
    let tolerance = if format.width() == 2 { 4e-3 } else { 1e-4 };
    let mut prefix = Vec::with_capacity(values.len() + 1);
    prefix.push(0.0f64);
    for v in values {
        prefix.push(prefix[prefix.len() - 1] + v * v);
    }
    // The prefix sums lose digits over a long run of large values: the first test allows for it, the second
    // sums each window again.
    let slack = prefix[values.len()] * 1e-14;
    let unit = |s: usize, d: usize| (prefix[s + d] - prefix[s] - 1.0).abs() <= tolerance + slack;
    let exactly_unit =
        |s: usize, d: usize| (values[s..s + d].iter().map(|v| v * v).sum::<f64>() - 1.0).abs() <= tolerance;
    let precision = if format.width() == 2 { Precision::Coarse } else { Precision::Exact };
    for d in GALLERY_DIMS {
        for s in 0..values.len().saturating_sub(3 * d - 1) {
            if !(0..3).all(|k| unit(s + k * d, d)) || !(0..3).all(|k| exactly_unit(s + k * d, d)) {
                continue;
            }
            if (0..3).all(|k| embedding_shape(&values[s + k * d..s + (k + 1) * d], precision).is_some()) {
                let count = (0..).take_while(|k| s + (k + 1) * d <= values.len() && exactly_unit(s + k * d, d)).count();
                let detail = format!("gallery {}: {count} unit vectors of {d} values back to back", format.as_str());
                return Some((s, Finding { kind: "embedding", offset: 0, detail }));
            }
        }
    }
    None
}
