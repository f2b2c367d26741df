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

pub use super::runs::{find_binary_vectors, MAX_RUN};
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

    pub(super) fn read(self, b: &[u8]) -> f64 {
        match self {
            Self::F16Le => f64::from(half::f16::from_le_bytes([b[0], b[1]])),
            Self::F16Be => f64::from(half::f16::from_be_bytes([b[0], b[1]])),
            Self::F32Le => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Self::F32Be => f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            Self::F64Le => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            Self::F64Be => f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        }
    }

    /// The other byte order, and where its numbers lie whose sign and exponent a misreading in this order
    /// takes: a little-endian number's top byte is the first byte a big-endian read one byte short of its end
    /// sees, and the reverse.
    pub(super) fn other_order(self) -> (Self, isize) {
        let back = 1 - self.width().cast_signed();
        match self {
            Self::F16Le => (Self::F16Be, -back),
            Self::F16Be => (Self::F16Le, back),
            Self::F32Le => (Self::F32Be, -back),
            Self::F32Be => (Self::F32Le, back),
            Self::F64Le => (Self::F64Be, -back),
            Self::F64Be => (Self::F64Le, back),
        }
    }

    /// Whether a single value could be part of an embedding (cheap: most random values fail it).
    pub(super) fn plausible(v: f64) -> bool {
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

/// How finely the numbers were stored, which decides what an embedding's values may share by chance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// f32 or f64: two components of a real embedding are equal about once in 10,000 vectors, so values
    /// that repeat are a table's constants.
    Exact,
    /// f16 or decimal text: a few components may round to the same number.
    Coarse,
    /// Integers quantised from an embedding: 128 values over 255 levels repeat, and small ones round to zero.
    Quantised,
}

/// The shape of `values` if it looks like an embedding (`None` otherwise).
pub fn embedding_shape(values: &[f64], precision: Precision) -> Option<VectorShape> {
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
    let lag = autocorrelation(values, 1, m2);
    if lag.abs() > 0.38 {
        return None;
    }
    // Records of a few fields (a table of coefficients, of points, of matrices) repeat at their length; an
    // embedding's components are independent at every distance (a normal sample of 64 passes 0.5 at 15
    // distances in all but about 1 of 1,000 cases, one of 128 in all but 1 of 10^6).
    if (2..=16).any(|k| autocorrelation(values, k, m2).abs() > 0.5) {
        return None;
    }
    if normal_misfit(values, rms) > 22.0 {
        return None;
    }
    let zeros = values.iter().filter(|v| **v == 0.0).count();
    // Constants written by hand (0.3, 2.4, 1.0) have at most 3 significant digits; a computed number almost
    // never does (f32: about 1 in 10,000 values).
    if precision == Precision::Exact && values.iter().filter(|v| **v != 0.0 && short_decimal(**v)).count() > 2 {
        return None;
    }
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| *v != 0.0).collect();
    sorted.sort_by(f64::total_cmp);
    // Lengths of the runs of equal values.
    let mut runs = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let j = sorted[i..].iter().take_while(|v| **v == sorted[i]).count();
        runs.push(j);
        i += j;
    }
    let distinct = runs.len() + usize::from(zeros > 0);
    match precision {
        Precision::Quantised => {}
        Precision::Coarse => {
            if distinct * 10 < n * 9 || zeros > 2 {
                return None;
            }
        }
        Precision::Exact => {
            // An f32 model output cast from f16 repeats a value about twice in 128; three equal values, or
            // many pairs, are constants (1.0, 0.5) of a table.
            let repeated = runs.iter().filter(|r| **r > 1).count();
            if zeros > 2 || runs.iter().any(|r| *r > 2) || repeated * 32 > n {
                return None;
            }
        }
    }
    Some(VectorShape { rms, norm: rms * nf.sqrt(), kurtosis, lag_correlation: lag })
}

/// Whether `v` (an f64, or an f32 widened) is the nearest number to a decimal of at most 3 significant digits.
fn short_decimal(v: f64) -> bool {
    let rounded: f64 = format!("{v:.2e}").parse().unwrap_or(f64::NAN);
    #[allow(clippy::cast_possible_truncation)]
    let as_f32 = |x: f64| x as f32;
    rounded == v || as_f32(rounded) == as_f32(v) && f64::from(as_f32(v)) == v
}

/// Correlation of each component with the one `k` further on (about the mean of zero an embedding has).
pub(super) fn autocorrelation(values: &[f64], k: usize, m2: f64) -> f64 {
    let pairs = values.len().saturating_sub(k);
    if pairs == 0 || m2 <= 0.0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let p = pairs as f64;
    values.iter().zip(&values[k..]).map(|(a, b)| a * b).sum::<f64>() / p / m2
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

/// The first embedding-like window in a run of plausible values (its start and length in the run, and the
/// finding), tried at every start. A run shorter than 128 values is judged by windows of [`MIN_DIM`] (a short
/// vector alone); a longer one must hold 128 values shaped like an embedding (SFace's length, and the
/// shortest of most face models'): 64 numbers that pass by chance, in a longer run of numbers, are a table's
/// or a tensor's (Chromium's binary had such a run of 205 weights).
pub(super) fn run_finding(run: &[f64], stored: &str, precision: Precision) -> Option<(usize, usize, Finding)> {
    let wide = if run.len() >= 128 { 128 } else { MIN_DIM };
    let blocks: Vec<BlockSums> = run.chunks(BLOCK).map(BlockSums::of).collect();
    for start in 0..=run.len().checked_sub(wide)? {
        if !window_sums(run, &blocks, start, wide).may_be_embedding(wide) {
            continue;
        }
        if let Some(shape) = embedding_shape(&run[start..start + wide], precision) {
            let detail = format!(
                "vector {stored}: {wide} values, norm {:.3}, kurtosis {:.1}, neighbour correlation {:+.2}",
                shape.norm, shape.kurtosis, shape.lag_correlation
            );
            return Some((start, wide, Finding { kind: "embedding", offset: 0, detail }));
        }
    }
    None
}

/// The sums over `run[start..start + wide]`: whole blocks from their sums, the ends value by value.
fn window_sums(run: &[f64], blocks: &[BlockSums], start: usize, wide: usize) -> BlockSums {
    let end = start + wide;
    let (first, last) = (start.div_ceil(BLOCK), end / BLOCK);
    if first >= last {
        return BlockSums::of(&run[start..end]);
    }
    let inner = blocks[first..last].iter().fold(BlockSums::of(&run[start..first * BLOCK]), |a, b| a.add(*b));
    inner.add(BlockSums::of(&run[last * BLOCK..end]))
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
        let quantised = embedding_shape(&values, Precision::Quantised).filter(|s| s.kurtosis >= 2.2);
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
            if let Some((_, _, found)) = run_finding(run, "as decimal text", Precision::Coarse) {
                findings.push(Finding { offset: start, ..found });
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

    /// From /usr/lib: libm's table of 7-value records and lcms's matrices with their 1.0s passed every
    /// test of a single vector (found by the false-positive scan; both failed on the old code).
    #[test]
    fn tables_of_records_and_of_round_constants_are_not_embeddings() {
        let record = gaussian(7, 0.4, 21);
        let records: Vec<f64> = (0..20).flat_map(|k| record.iter().map(move |v| v + f64::from(k) * 0.003)).collect();
        let mut constants = gaussian(128, 0.8, 22);
        constants.iter_mut().step_by(12).for_each(|v| *v = 1.0);
        // Constants written by hand among computed numbers (lcms's matrices): distinct, but short decimals.
        let mut written = gaussian(64, 0.8, 23);
        for (i, c) in [0.33, 0.3, 0.6, 0.15, 0.06, 2.4, -0.5, 1.25].iter().enumerate() {
            written[i * 8] = *c;
        }
        for (name, values) in [("records", &records), ("constants", &constants), ("written", &written)] {
            for format in [NumberFormat::F64Le, NumberFormat::F32Be] {
                let found = find_binary_vectors(&encode(values, format));
                assert!(found.is_empty(), "{name} as {format:?}: {found:?}");
            }
        }
    }

    /// Model weights look like embeddings value by value (Chromium and clangd carry them, and the other byte
    /// order one byte off reads them as normal-looking numbers too); a run longer than any embedding is not
    /// one, unless it is a gallery of unit vectors back to back.
    #[test]
    fn weight_tensors_are_not_embeddings_but_a_gallery_of_unit_vectors_is() {
        let weights = gaussian(6_000, 0.08, 31);
        let mut bytes = random_bytes(3_000, 32);
        bytes.extend(encode(&weights, NumberFormat::F32Le));
        bytes.extend(random_bytes(3_000, 33));
        assert!(find_binary_vectors(&bytes).is_empty(), "{:?}", find_binary_vectors(&bytes));
        for format in [NumberFormat::F32Le, NumberFormat::F16Be, NumberFormat::F64Le] {
            let gallery: Vec<f64> = (0..12)
                .flat_map(|k| {
                    let v = gaussian(128, 1.0, 40 + k);
                    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                    v.into_iter().map(move |x| x / norm)
                })
                .collect();
            let mut bytes = random_bytes(1_001, 34);
            bytes.extend(encode(&gallery, format));
            let found = find_binary_vectors(&bytes);
            assert!(found.iter().any(|f| f.detail.contains("unit vectors of 128 values")), "{format:?}: {found:?}");
        }
    }

    /// Zeros around a stored vector (a page's free space) do not make it part of a long run.
    #[test]
    fn an_embedding_amid_zero_padding_is_found() {
        let v = gaussian(128, 1.0 / 128f64.sqrt(), 51);
        let bytes = [vec![0u8; 40_000], encode(&v, NumberFormat::F32Le), vec![0u8; 40_000]].concat();
        let found = find_binary_vectors(&bytes);
        assert!(found.iter().any(|f| f.offset.abs_diff(40_000) <= 32), "{found:?}");
    }
}
