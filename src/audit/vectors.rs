//! Numbers that look like a face embedding, in any common encoding: runs of at least [`MIN_DIM`] values as
//! f16, f32 or f64 in either byte order, or decimal text, at any scale (normalised or raw); int8 (quantised)
//! only as a whole value ([`find_int8_whole`]): inside other data, bytes of text, class files and compressed
//! streams read as int8 pass these tests thousands of times in /usr/share, so a quantised vector needs the
//! stronger evidence of being a value of its own.
//!
//! Pure: bytes in, findings out. What an embedding looks like, whatever its encoding: components spread like a
//! normal distribution around zero at one scale (kurtosis near 3, the largest a few times the RMS), each
//! independent of its neighbour (a sampled signal, a curve or an image is smooth; an embedding is not), nearly
//! all distinct, and few exact zeros. Random bytes (ciphertext) read as floats span dozens of binary
//! exponents and hold NaNs; text read as floats is all positive.

use super::scan::Finding;

/// The fewest values reported as a vector.
pub const MIN_DIM: usize = 64;

/// How a number is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberFormat {
    /// IEEE half, little-endian.
    F16Le,
    /// IEEE half, big-endian.
    F16Be,
    /// IEEE single, little-endian.
    F32Le,
    /// IEEE single, big-endian.
    F32Be,
    /// IEEE double, little-endian.
    F64Le,
    /// IEEE double, big-endian.
    F64Be,
}

impl NumberFormat {
    /// Every binary format.
    pub const ALL: [Self; 6] = [Self::F16Le, Self::F16Be, Self::F32Le, Self::F32Be, Self::F64Le, Self::F64Be];

    /// Bytes per value.
    pub fn width(self) -> usize {
        match self {
            Self::F16Le | Self::F16Be => 2,
            Self::F32Le | Self::F32Be => 4,
            Self::F64Le | Self::F64Be => 8,
        }
    }

    /// As reported.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F16Le => "f16 little-endian",
            Self::F16Be => "f16 big-endian",
            Self::F32Le => "f32 little-endian",
            Self::F32Be => "f32 big-endian",
            Self::F64Le => "f64 little-endian",
            Self::F64Be => "f64 big-endian",
        }
    }

    fn read(self, b: &[u8]) -> f64 {
        match self {
            Self::F16Le => f64::from(half::f16::from_le_bytes([b[0], b[1]])),
            Self::F16Be => f64::from(half::f16::from_be_bytes([b[0], b[1]])),
            Self::F32Le => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Self::F32Be => f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            Self::F64Le => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            Self::F64Be => f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        }
    }

    /// Whether a single value could be part of an embedding (cheap: most random values fail it).
    fn plausible(v: f64) -> bool {
        v.is_finite() && v.abs() <= 1e4 && (v == 0.0 || v.abs() >= 1e-6)
    }
}

/// Why a window of values looks like an embedding: its scale and shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VectorShape {
    /// Root mean square of the components.
    pub rms: f64,
    /// The Euclidean norm.
    pub norm: f64,
    /// Fourth moment over the squared second (3 for a normal distribution).
    pub kurtosis: f64,
    /// Correlation of each component with the next.
    pub lag_correlation: f64,
}

/// The shape of `values` if it looks like an embedding (`None` otherwise).
pub fn embedding_shape(values: &[f64]) -> Option<VectorShape> {
    shape(values, false)
}

/// Integers quantised from an embedding repeat (128 values over 255 levels) and round small ones to zero:
/// for them the tests of distinctness and of exact zeros are left out.
fn shape(values: &[f64], quantised: bool) -> Option<VectorShape> {
    let n = values.len();
    if n < MIN_DIM || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let nf = n as f64;
    let mean = values.iter().sum::<f64>() / nf;
    let m2 = values.iter().map(|v| v * v).sum::<f64>() / nf;
    let rms = m2.sqrt();
    // (A unit vector of 1,024 values has RMS 0.031; TrueType tables read as f16 come out near 1e-4.)
    if rms <= 1e-3 || rms > 1e3 || mean.abs() > 0.5 * rms {
        return None;
    }
    // Bounds from 20,000 normal samples each of 64 and 128 values: each keeps 99.9 % of them (of those of
    // 128, the length of an SFace embedding; a window of 64 is tried too, every 8 values). A uniform
    // table (max at most 1.73 RMS, kurtosis 1.8) and heavy-tailed data fall outside.
    let max = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if max > 5.0 * rms || max < 1.85 * rms {
        return None;
    }
    let kurtosis = values.iter().map(|v| v.powi(4)).sum::<f64>() / nf / (m2 * m2);
    if !(1.9..=5.5).contains(&kurtosis) {
        return None;
    }
    // A normal sample has 1.6 % of its values under RMS/50; numbers whose exponent bits are really other
    // data (bytes in the wrong order, misaligned) spread over many octaves and have far more.
    let tiny = values.iter().filter(|v| v.abs() < rms / 50.0).count();
    if tiny * 16 > n {
        return None;
    }
    let lag = values.windows(2).map(|w| w[0] * w[1]).sum::<f64>() / (nf - 1.0) / m2;
    if lag.abs() > 0.38 {
        return None;
    }
    if normal_misfit(values, rms) > 22.0 {
        return None;
    }
    let zeros = values.iter().filter(|v| **v == 0.0).count();
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    let distinct = sorted.len();
    if !quantised && (distinct * 10 < n * 9 || zeros > 2) {
        return None;
    }
    Some(VectorShape { rms, norm: rms * nf.sqrt(), kurtosis, lag_correlation: lag })
}

/// Pearson's chi-square of the components, in units of their RMS, against a normal distribution over six
/// bins (5 degrees of freedom: above 22 in fewer than 1 of 2,000 normal samples of 64 or 128). Text read as int8 (ASCII
/// positive, UTF-8 continuation bytes far below zero) leaves the middle bins empty and scores in the hundreds.
fn normal_misfit(values: &[f64], rms: f64) -> f64 {
    const EDGES: [f64; 5] = [-1.5, -0.5, 0.0, 0.5, 1.5];
    const EXPECTED: [f64; 6] = [0.0668, 0.2417, 0.1915, 0.1915, 0.2417, 0.0668];
    let mut counts = [0usize; 6];
    for v in values {
        let z = v / rms;
        counts[EDGES.iter().filter(|edge| z >= **edge).count()] += 1;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = values.len() as f64;
    #[allow(clippy::cast_precision_loss)]
    counts.iter().zip(EXPECTED).map(|(&c, p)| (c as f64 - n * p).powi(2) / (n * p)).sum()
}

/// Values per block: windows start at block boundaries of a run, and their cheap statistics are sums of
/// per-block sums (exact enough: no running total over a whole file to cancel).
const BLOCK: usize = 8;

/// Values of a run held at once.
const LONG_RUN: usize = 1 << 16;

/// Binary runs: every format at every alignment; a run of plausible values of at least [`MIN_DIM`] in which a
/// window looks like an embedding is one finding.
pub fn find_binary_vectors(bytes: &[u8]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut run: Vec<f64> = Vec::new();
    for format in NumberFormat::ALL {
        let width = format.width();
        for align in 0..width {
            let Some(stream) = bytes.get(align..) else { continue };
            let mut run_start = 0;
            let flush = |run: &mut Vec<f64>, start: usize, findings: &mut Vec<Finding>| {
                if run.len() >= MIN_DIM {
                    if let Some((at, found)) = run_finding(run, format) {
                        findings.push(Finding { offset: align + (start + at) * width, ..found });
                    }
                }
                run.clear();
            };
            for (i, chunk) in stream.chunks_exact(width).enumerate() {
                let v = format.read(chunk);
                if NumberFormat::plausible(v) {
                    if run.is_empty() {
                        run_start = i;
                    }
                    run.push(v);
                    // A long run (zeros, text read as f16) is judged in pieces that overlap by a window, so
                    // that memory stays bounded.
                    if run.len() >= LONG_RUN {
                        let keep = run.len() - (128 - BLOCK);
                        if let Some((at, found)) = run_finding(&run, format) {
                            findings.push(Finding { offset: align + (run_start + at) * width, ..found });
                            run.clear();
                        } else {
                            run.drain(..keep);
                            run_start += keep;
                        }
                    }
                } else if !run.is_empty() {
                    flush(&mut run, run_start, &mut findings);
                }
            }
            flush(&mut run, run_start, &mut findings);
        }
    }
    findings
}

/// Sums over one block of a run.
#[derive(Clone, Copy, Default)]
struct BlockSums {
    s1: f64,
    s2: f64,
    s4: f64,
    max: f64,
}

impl BlockSums {
    fn of(values: &[f64]) -> Self {
        values.iter().fold(Self::default(), |b, v| {
            let sq = v * v;
            Self { s1: b.s1 + v, s2: b.s2 + sq, s4: b.s4 + sq * sq, max: b.max.max(v.abs()) }
        })
    }

    fn add(self, o: Self) -> Self {
        Self { s1: self.s1 + o.s1, s2: self.s2 + o.s2, s4: self.s4 + o.s4, max: self.max.max(o.max) }
    }

    /// The tests of [`embedding_shape`] that sums decide: most windows of other data fail one of them, so
    /// the full test runs on few windows.
    fn may_be_embedding(self, n: usize) -> bool {
        #[allow(clippy::cast_precision_loss)]
        let nf = n as f64;
        let m2 = self.s2 / nf;
        let rms = m2.sqrt();
        let slack = 1.0 + 1e-9;
        rms > 1e-3 / slack
            && rms <= 1e3 * slack
            && (self.s1 / nf).abs() <= 0.5 * rms * slack
            && self.max <= 5.0 * rms * slack
            && self.max >= 1.85 * rms / slack
            && (1.9 / slack..=5.5 * slack).contains(&(self.s4 / nf / (m2 * m2)))
    }
}

/// The first embedding-like window in a run of plausible values (its start in the run, and the finding):
/// windows of 128 values (an SFace embedding) and of [`MIN_DIM`] (a shorter vector, or one whose neighbours
/// in the run are other data), starting every [`BLOCK`] values.
fn run_finding(run: &[f64], format: NumberFormat) -> Option<(usize, Finding)> {
    let blocks: Vec<BlockSums> = run.chunks(BLOCK).map(BlockSums::of).collect();
    let mut start = 0;
    while start + MIN_DIM <= run.len() {
        for wide in [128, MIN_DIM] {
            let Some(window) = run.get(start..start + wide) else { continue };
            let sums =
                blocks[start / BLOCK..(start + wide) / BLOCK].iter().fold(BlockSums::default(), |a, b| a.add(*b));
            if !sums.may_be_embedding(wide) {
                continue;
            }
            if let Some(shape) = embedding_shape(window) {
                let detail = format!(
                    "vector {}: {wide} values, norm {:.3}, kurtosis {:.1}, neighbour correlation {:+.2}",
                    format.as_str(),
                    shape.norm,
                    shape.kurtosis,
                    shape.lag_correlation
                );
                return Some((start, Finding { kind: "embedding", offset: 0, detail }));
            }
        }
        start += BLOCK;
    }
    None
}

/// The lengths of the embeddings that face models commonly give (SFace, ArcFace, FaceNet and their kin).
const INT8_DIMS: [usize; 3] = [128, 256, 512];

/// A whole value (a file, a database cell, a decoded layer) that is nothing but 128, 256 or 512 int8 numbers
/// shaped like an embedding: signed, or unsigned around 128 (asymmetric quantisation), using at least half
/// the range as a quantiser does. Only whole values: inside larger data, bytes of text and code read as
/// int8 pass these tests too often to be evidence.
pub fn find_int8_whole(bytes: &[u8]) -> Option<Finding> {
    if !INT8_DIMS.contains(&bytes.len()) {
        return None;
    }
    for (signed, name) in [(true, "int8"), (false, "uint8 around 128")] {
        let values: Vec<f64> =
            bytes.iter().map(|&b| if signed { f64::from(b.cast_signed()) } else { f64::from(b) - 128.0 }).collect();
        if values.iter().fold(0.0f64, |m, v| m.max(v.abs())) < 64.0 {
            continue;
        }
        // Uniform bytes (compressed or random data) have a largest value of 1.73 RMS and a kurtosis of 1.8;
        // 128 normal values reach 2 RMS in all but 1 of 400 samples, and a kurtosis of 2.2 in all but 1 of 25.
        let quantised = shape(&values, true).filter(|s| s.kurtosis >= 2.2);
        let max = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if let Some(shape) = quantised.filter(|s| max >= 2.0 * s.rms) {
            let detail = format!(
                "quantised vector {name}: the whole value, {} values, kurtosis {:.1}, neighbour correlation {:+.2}",
                values.len(),
                shape.kurtosis,
                shape.lag_correlation
            );
            return Some(Finding { kind: "embedding", offset: 0, detail });
        }
    }
    None
}

/// Decimal text: runs of at least [`MIN_DIM`] numbers with a fraction (JSON arrays, CSV, log lines),
/// separated by commas, blanks, semicolons or brackets.
pub fn find_decimal_vectors(bytes: &[u8]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut run: Vec<f64> = Vec::new();
    let mut run_start = 0;
    let mut i = 0;
    let flush = |run: &mut Vec<f64>, start: usize, findings: &mut Vec<Finding>| {
        if run.len() >= MIN_DIM {
            if let Some((_, found)) = run_finding(run, NumberFormat::F64Le) {
                let detail = found.detail.replacen("vector f64 little-endian", "vector as decimal text", 1);
                findings.push(Finding { offset: start, detail, ..found });
            }
        }
        run.clear();
    };
    while i < bytes.len() {
        let token_start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || b"+-.eE".contains(&bytes[i])) {
            i += 1;
        }
        let token = &bytes[token_start..i];
        let parsed = std::str::from_utf8(token).ok().filter(|t| t.contains('.')).and_then(|t| t.parse::<f64>().ok());
        match parsed {
            Some(v) => {
                if run.is_empty() {
                    run_start = token_start;
                }
                run.push(v);
            }
            None if !token.is_empty() => flush(&mut run, run_start, &mut findings),
            None => {}
        }
        // Separators keep a run going; anything else ends it.
        if i < bytes.len() {
            if !b", \t\r\n;[]()".contains(&bytes[i]) {
                flush(&mut run, run_start, &mut findings);
            }
            i += 1;
        }
    }
    flush(&mut run, run_start, &mut findings);
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Normal};

    fn gaussian(n: usize, scale: f64, seed: u64) -> Vec<f64> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0, scale).unwrap();
        (0..n).map(|_| normal.sample(&mut rng)).collect()
    }

    fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random()).collect()
    }

    fn encode(values: &[f64], format: NumberFormat) -> Vec<u8> {
        values
            .iter()
            .flat_map(|&v| match format {
                NumberFormat::F16Le => half::f16::from_f64(v).to_le_bytes().to_vec(),
                NumberFormat::F16Be => half::f16::from_f64(v).to_be_bytes().to_vec(),
                #[allow(clippy::cast_possible_truncation)]
                NumberFormat::F32Le => (v as f32).to_le_bytes().to_vec(),
                #[allow(clippy::cast_possible_truncation)]
                NumberFormat::F32Be => (v as f32).to_be_bytes().to_vec(),
                NumberFormat::F64Le => v.to_le_bytes().to_vec(),
                NumberFormat::F64Be => v.to_be_bytes().to_vec(),
            })
            .collect()
    }

    #[test]
    fn an_embedding_is_found_in_every_format_at_any_scale_and_alignment() {
        for (seed, scale) in [(1u64, 1.0 / 128f64.sqrt()), (2, 0.95), (3, 40.0)] {
            let v = gaussian(128, scale, seed);
            for format in NumberFormat::ALL {
                for shift in [0usize, 1, 3] {
                    let mut bytes = random_bytes(2_000, seed + 10);
                    bytes.splice(701 + shift..701 + shift, encode(&v, format));
                    let found = find_binary_vectors(&bytes);
                    // Reported where a window of it starts: at the vector, or a few values off (a random value
                    // beside it can be plausible too).
                    let at = 701 + shift;
                    let near = |offset: usize| offset.abs_diff(at) <= 8 * format.width();
                    assert!(
                        found.iter().any(|f| near(f.offset) && f.detail.contains(format.as_str())),
                        "{format:?} scale {scale} shift {shift}: {found:?}"
                    );
                }
            }
            let text =
                format!("{{\"embedding\": [{}]}}", v.iter().map(|x| format!("{x:.6}")).collect::<Vec<_>>().join(", "));
            let found = find_decimal_vectors(text.as_bytes());
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].offset, 15);
        }
    }

    #[test]
    fn noise_text_signals_and_tables_are_not_embeddings() {
        let noise = random_bytes(1 << 20, 9);
        assert!(find_binary_vectors(&noise).is_empty(), "{:?}", find_binary_vectors(&noise));
        let log = "2026-11-24T10:00:00.123Z INFO gate: opened (face) 0.93 1.5\n".repeat(5_000);
        assert!(find_binary_vectors(log.as_bytes()).is_empty());
        assert!(find_decimal_vectors(log.as_bytes()).is_empty());
        // A sampled sine, a ramp and a sparse vector. (Not a table of uniform random floats: read one byte
        // off, its values spread like a normal sample. Any run of normal-looking numbers, model weights
        // included, is reported: which is why the audit scans the device's own folders, not the models.)
        let sine: Vec<f64> = (0..512).map(|i| (f64::from(i) * 0.07).sin()).collect();
        let ramp: Vec<f64> = (0..512).map(|i| f64::from(i) / 512.0 - 0.5).collect();
        let mut sparse = gaussian(512, 1.0, 5);
        sparse.iter_mut().step_by(2).for_each(|v| *v = 0.0);
        for (name, values) in [("sine", &sine), ("ramp", &ramp), ("sparse", &sparse)] {
            for format in [NumberFormat::F32Le, NumberFormat::F64Be, NumberFormat::F16Le] {
                let found = find_binary_vectors(&encode(values, format));
                assert!(found.is_empty(), "{name} as {format:?}: {found:?}");
            }
            let csv = values.iter().map(|x| format!("{x:.5}")).collect::<Vec<_>>().join(",");
            assert!(find_decimal_vectors(csv.as_bytes()).is_empty(), "{name} as text");
        }
    }
}
