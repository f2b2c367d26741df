//! The inner loops of facegate's depthwise 3x3 convolutions and 2x2 max-pools over NCHW f32 planes: plain row
//! loops over contiguous slices, which the compiler turns into vector code (AVX2 with FMA when the CPU has them,
//! checked at run time since the x86-64 baseline is SSE2; NEON on the Pi).
//!
//! A crate of its own so the test build can optimise it fully (`[profile.dev.package.facegate-kernels]`): the
//! tests run every model on thousands of photos. It owns arithmetic on slices only: no I/O, no allocation but
//! the scratch it is handed, and it must never see anything but activations.

/// A depthwise 3x3 convolution of one image: for each channel, nine taps, a bias, then optionally a PReLU slope.
#[derive(Clone, Copy, Debug)]
pub struct Depthwise<'a> {
    /// 1 or 2, the same along both axes.
    pub stride: usize,
    /// Zero padding: top, left, bottom, right.
    pub pad: [usize; 4],
    /// Nine taps per channel, row by row.
    pub taps: &'a [f32],
    /// One bias per channel.
    pub bias: &'a [f32],
    /// A PReLU applied after the bias, one slope per channel.
    pub slopes: Option<&'a [f32]>,
}

/// Output length along one axis of a 3-tap kernel over `len` values padded by `before` and `after`.
pub fn out_len(len: usize, before: usize, after: usize, stride: usize) -> usize {
    (len + before + after).saturating_sub(3) / stride.max(1) + 1
}

impl Depthwise<'_> {
    /// The output's height and width for an input of `h` x `w`.
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        let [t, l, b, r] = self.pad;
        (out_len(h, t, b, self.stride), out_len(w, l, r, self.stride))
    }

    /// Whether `run` takes these parameters and sizes.
    pub fn fits(&self, channels: usize, h: usize, w: usize) -> bool {
        let [t, l, b, r] = self.pad;
        matches!(self.stride, 1 | 2)
            && self.pad.iter().all(|&p| p <= 2)
            && h >= 1
            && w >= 1
            && h + t + b >= 3
            && w + l + r >= 3
            && self.taps.len() == channels * 9
            && self.bias.len() == channels
            && self.slopes.is_none_or(|s| s.len() == channels)
    }

    /// Convolves `channels` planes of `h` x `w` in `input` into `out` (`channels` planes of `output_size`).
    ///
    /// # Panics
    /// If the parameters do not `fit` or the slices are not of those sizes.
    pub fn run(&self, input: &[f32], channels: usize, h: usize, w: usize, out: &mut [f32]) {
        assert!(self.fits(channels, h, w), "depthwise parameters that do not fit {channels}x{h}x{w}");
        let (oh, ow) = self.output_size(h, w);
        assert!(input.len() == channels * h * w && out.len() == channels * oh * ow, "slice sizes");
        let plane = Plane { h, w, oh, ow, stride: self.stride, pad: self.pad };
        let (mut scratch, mut row) = (Vec::new(), Vec::new());
        for ch in 0..channels {
            let mut taps = [0f32; 9];
            taps.copy_from_slice(&self.taps[ch * 9..ch * 9 + 9]);
            let one = Channel { taps, bias: self.bias[ch], slope: self.slopes.map(|s| s[ch]) };
            dispatch(
                &plane,
                &one,
                &input[ch * h * w..(ch + 1) * h * w],
                (&mut scratch, &mut row),
                &mut out[ch * oh * ow..(ch + 1) * oh * ow],
            );
        }
    }
}

struct Plane {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    stride: usize,
    pad: [usize; 4],
}

/// Buffers reused for every channel of one call: the padded plane and one padded row.
type Scratch<'a> = (&'a mut Vec<f32>, &'a mut Vec<f32>);

struct Channel {
    taps: [f32; 9],
    bias: f32,
    slope: Option<f32>,
}

/// Picks the widest vector code the CPU runs.
fn dispatch(p: &Plane, k: &Channel, input: &[f32], scratch: Scratch<'_>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above), the only requirement of a target_feature fn.
        #[allow(unsafe_code)]
        unsafe {
            channel_avx2(p, k, input, scratch, out)
        };
        return;
    }
    // NEON always has a fused multiply-add; an x86-64 without FMA would call libm's software one.
    channel::<{ cfg!(target_arch = "aarch64") }>(p, k, input, scratch, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn channel_avx2(p: &Plane, k: &Channel, input: &[f32], scratch: Scratch<'_>, out: &mut [f32]) {
    channel::<true>(p, k, input, scratch, out)
}

#[inline(always)]
fn madd<const FMA: bool>(acc: f32, x: f32, w: f32) -> f32 {
    if FMA {
        x.mul_add(w, acc)
    } else {
        acc + x * w
    }
}

/// Row width and number of the stored planes of one padded input plane: the padded row (stride 1), or each
/// half of it (stride 2: even and odd columns apart, so every tap reads a contiguous slice).
fn padded_layout(p: &Plane) -> (usize, usize, usize) {
    let [top, left, bottom, right] = p.pad;
    let (ph, pw) = (p.h + top + bottom, p.w + left + right);
    let (rw, planes) = if p.stride == 1 { (pw, 1) } else { (pw.div_ceil(2), 2) };
    (ph, rw, planes)
}

/// Copies one input plane, padded with zeros, into `dst` (`ph * rw * planes` values, zeroed).
#[inline(always)]
fn pad_plane(p: &Plane, input: &[f32], dst: &mut [f32], row: &mut Vec<f32>) {
    let (ph, rw, _) = padded_layout(p);
    let (top, left) = (p.pad[0], p.pad[1]);
    let (even, odd) = dst.split_at_mut(ph * rw);
    if p.stride == 2 {
        row.clear();
        row.resize(2 * rw, 0.0);
    }
    for (y, src) in input.chunks_exact(p.w).enumerate() {
        let r = (y + top) * rw;
        if p.stride == 1 {
            even[r + left..r + left + p.w].copy_from_slice(src);
        } else {
            row[left..left + p.w].copy_from_slice(src);
            for ((e, o), pair) in even[r..r + rw].iter_mut().zip(&mut odd[r..r + rw]).zip(row.chunks_exact(2)) {
                *e = pair[0];
                *o = pair[1];
            }
        }
    }
}

/// Adds one padded input plane, weighted by its nine taps, to every output row: three passes of three taps.
#[inline(always)]
fn accumulate<const FMA: bool>(p: &Plane, taps: &[f32], padded: &[f32], out: &mut [f32]) {
    let (ph, rw, _) = padded_layout(p);
    let (even, odd) = padded.split_at(ph * rw);
    for (y, out_row) in out.chunks_exact_mut(p.ow).enumerate().take(p.oh) {
        for ky in 0..3 {
            let r = (y * p.stride + ky) * rw;
            let (a, b, c) = if p.stride == 1 {
                (&even[r..r + p.ow], &even[r + 1..r + 1 + p.ow], &even[r + 2..r + 2 + p.ow])
            } else {
                (&even[r..r + p.ow], &odd[r..r + p.ow], &even[r + 1..r + 1 + p.ow])
            };
            row3::<FMA>(out_row, a, b, c, [taps[ky * 3], taps[ky * 3 + 1], taps[ky * 3 + 2]]);
        }
    }
}

/// `x < 0 ? x * slope : x`, branch-free so it vectorises.
#[inline(always)]
fn prelu(out: &mut [f32], slope: Option<f32>) {
    if let Some(slope) = slope {
        for o in out.iter_mut() {
            let scaled = *o * slope;
            *o = if *o < 0.0 { scaled } else { *o };
        }
    }
}

/// One channel of a depthwise convolution.
#[inline(always)]
fn channel<const FMA: bool>(p: &Plane, k: &Channel, input: &[f32], (scratch, row): Scratch<'_>, out: &mut [f32]) {
    let (ph, rw, planes) = padded_layout(p);
    scratch.clear();
    scratch.resize(ph * rw * planes, 0.0);
    pad_plane(p, input, scratch, row);
    out.fill(k.bias);
    accumulate::<FMA>(p, &k.taps, scratch, out);
    prelu(out, k.slope);
}

/// A dense convolution: every input plane padded once, then each output plane summed over them.
#[inline(always)]
fn dense<const FMA: bool>(k: &Dense3x3, p: &Plane, input: &[f32], out: &mut [f32]) {
    let (ph, rw, planes) = padded_layout(p);
    let len = ph * rw * planes;
    let mut padded = vec![0.0; len * k.in_channels];
    let mut row = Vec::new();
    for (src, dst) in input.chunks_exact(p.h * p.w).zip(padded.chunks_exact_mut(len)) {
        pad_plane(p, src, dst, &mut row);
    }
    let per_out = k.in_channels * 9;
    for (co, plane) in out.chunks_exact_mut(p.oh * p.ow).enumerate() {
        plane.fill(k.bias[co]);
        for (ci, src) in padded.chunks_exact(len).enumerate() {
            accumulate::<FMA>(p, &k.taps[co * per_out + ci * 9..co * per_out + ci * 9 + 9], src, plane);
        }
        prelu(plane, k.slopes.map(|s| s[co]));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dense_avx2(k: &Dense3x3, p: &Plane, input: &[f32], out: &mut [f32]) {
    dense::<true>(k, p, input, out)
}

/// A dense 3x3 convolution of one image over few input channels (a network's first layer, on the colour planes),
/// with a bias and optionally a PReLU per output channel.
#[derive(Clone, Copy, Debug)]
pub struct Dense3x3<'a> {
    /// 1 or 2, the same along both axes.
    pub stride: usize,
    /// Zero padding: top, left, bottom, right.
    pub pad: [usize; 4],
    /// Input channels.
    pub in_channels: usize,
    /// Per output channel, per input channel, nine taps row by row.
    pub taps: &'a [f32],
    /// One bias per output channel.
    pub bias: &'a [f32],
    /// A PReLU applied after the bias, one slope per output channel.
    pub slopes: Option<&'a [f32]>,
}

impl Dense3x3<'_> {
    /// The output's height and width for an input of `h` x `w`.
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        let [t, l, b, r] = self.pad;
        (out_len(h, t, b, self.stride), out_len(w, l, r, self.stride))
    }

    /// Whether `run` takes these parameters and sizes.
    pub fn fits(&self, h: usize, w: usize) -> bool {
        let [t, l, b, r] = self.pad;
        let out_channels = self.bias.len();
        matches!(self.stride, 1 | 2)
            && self.pad.iter().all(|&p| p <= 2)
            && (1..=DENSE_MAX_IN).contains(&self.in_channels)
            && h >= 1
            && w >= 1
            && h + t + b >= 3
            && w + l + r >= 3
            && self.taps.len() == out_channels * self.in_channels * 9
            && self.slopes.is_none_or(|s| s.len() == out_channels)
    }

    /// Convolves `in_channels` planes of `h` x `w` in `input` into `out` (one plane of `output_size` per bias).
    ///
    /// # Panics
    /// If the parameters do not `fit` or the slices are not of those sizes.
    pub fn run(&self, input: &[f32], h: usize, w: usize, out: &mut [f32]) {
        assert!(self.fits(h, w), "dense parameters that do not fit {}x{h}x{w}", self.in_channels);
        let (oh, ow) = self.output_size(h, w);
        assert!(input.len() == self.in_channels * h * w && out.len() == self.bias.len() * oh * ow, "slice sizes");
        let p = Plane { h, w, oh, ow, stride: self.stride, pad: self.pad };
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above), the only requirement of a target_feature fn.
            #[allow(unsafe_code)]
            unsafe {
                dense_avx2(self, &p, input, out)
            };
            return;
        }
        dense::<{ cfg!(target_arch = "aarch64") }>(self, &p, input, out)
    }
}

/// Input channels a [`Dense3x3`] takes: beyond a few, every output plane re-reads too many input planes, and a
/// matrix product is the better way.
pub const DENSE_MAX_IN: usize = 4;

/// `out[i] += a[i] * w0 + b[i] * w1 + c[i] * w2`. Counted over slices cut to one length, so the compiler sees
/// no bounds to check and vectorises it (a zip of four iterators it did not).
#[inline(always)]
fn row3<const FMA: bool>(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32], [w0, w1, w2]: [f32; 3]) {
    let n = out.len();
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    for i in 0..n {
        out[i] = madd::<FMA>(madd::<FMA>(madd::<FMA>(out[i], a[i], w0), b[i], w1), c[i], w2);
    }
}

/// A 2x2 max-pool with stride 2 and no padding over `channels` planes of `h` x `w` into `out` (planes of
/// `h / 2` x `w / 2`; an odd last row or column is dropped, as ONNX's floor rounding does).
///
/// # Panics
/// If the slices are not of those sizes.
pub fn max_pool_2x2(input: &[f32], channels: usize, h: usize, w: usize, out: &mut [f32]) {
    let (oh, ow) = (h / 2, w / 2);
    assert!(input.len() == channels * h * w && out.len() == channels * oh * ow, "slice sizes");
    if ow == 0 {
        return;
    }
    for ch in 0..channels {
        let plane = &input[ch * h * w..(ch + 1) * h * w];
        for (y, o) in out[ch * oh * ow..(ch + 1) * oh * ow].chunks_exact_mut(ow).enumerate() {
            let a = &plane[2 * y * w..2 * y * w + 2 * ow];
            let b = &plane[(2 * y + 1) * w..(2 * y + 1) * w + 2 * ow];
            for ((o, a), b) in o.iter_mut().zip(a.chunks_exact(2)).zip(b.chunks_exact(2)) {
                *o = a[0].max(a[1]).max(b[0].max(b[1]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, tap by tap, with zeros outside the image.
    fn reference(input: &[f32], c: usize, h: usize, w: usize, op: &Depthwise) -> Vec<f32> {
        let (oh, ow) = op.output_size(h, w);
        let mut out = vec![0.0; c * oh * ow];
        for ch in 0..c {
            for y in 0..oh {
                for x in 0..ow {
                    let mut acc = op.bias[ch] as f64;
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let iy = (y * op.stride + ky) as isize - op.pad[0] as isize;
                            let ix = (x * op.stride + kx) as isize - op.pad[1] as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                let v = input[ch * h * w + iy as usize * w + ix as usize] as f64;
                                acc += v * op.taps[ch * 9 + ky * 3 + kx] as f64;
                            }
                        }
                    }
                    if let Some(s) = op.slopes {
                        if acc < 0.0 {
                            acc *= s[ch] as f64;
                        }
                    }
                    out[ch * oh * ow + y * ow + x] = acc as f32;
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 16) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn every_stride_padding_and_odd_size_matches_the_definition() {
        let c = 3;
        let (taps, bias, slopes) = (values(c * 9, 7), values(c, 11), [0.25, -0.5, 2.0]);
        let mut checked = 0;
        for (h, w) in [(7, 9), (8, 8), (3, 3), (12, 5), (1, 4), (40, 33)] {
            for stride in [1, 2] {
                for pad in [[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0], [2, 1, 0, 2]] {
                    let slopes = (stride == 2).then_some(&slopes[..]);
                    let op = Depthwise { stride, pad, taps: &taps, bias: &bias, slopes };
                    if !op.fits(c, h, w) {
                        continue;
                    }
                    let input = values(c * h * w, 3);
                    let (oh, ow) = op.output_size(h, w);
                    let mut out = vec![f32::NAN; c * oh * ow];
                    op.run(&input, c, h, w, &mut out);
                    let want = reference(&input, c, h, w, &op);
                    for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                        assert!((a - b).abs() < 1e-5, "{h}x{w} stride {stride} pad {pad:?} at {i}: {a} vs {b}");
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 50, "only {checked} geometries checked");
    }

    #[test]
    fn a_dense_convolution_matches_the_definition() {
        let (cin, cout) = (3, 4);
        let (taps, bias, slopes) = (values(cout * cin * 9, 21), values(cout, 23), [0.5, -1.0, 0.1, 2.0]);
        for (h, w) in [(7, 9), (12, 12), (3, 4)] {
            for stride in [1, 2] {
                for pad in [[1, 1, 1, 1], [0, 0, 0, 0], [0, 1, 1, 0]] {
                    let k = Dense3x3 { stride, pad, in_channels: cin, taps: &taps, bias: &bias, slopes: Some(&slopes) };
                    if !k.fits(h, w) {
                        continue;
                    }
                    let input = values(cin * h * w, 29);
                    let (oh, ow) = k.output_size(h, w);
                    let mut out = vec![f32::NAN; cout * oh * ow];
                    k.run(&input, h, w, &mut out);
                    for co in 0..cout {
                        for y in 0..oh {
                            for x in 0..ow {
                                let mut want = bias[co] as f64;
                                for ci in 0..cin {
                                    for ky in 0..3 {
                                        for kx in 0..3 {
                                            let iy = (y * stride + ky) as isize - pad[0] as isize;
                                            let ix = (x * stride + kx) as isize - pad[1] as isize;
                                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                                let v = input[ci * h * w + iy as usize * w + ix as usize] as f64;
                                                want += v * taps[(co * cin + ci) * 9 + ky * 3 + kx] as f64;
                                            }
                                        }
                                    }
                                }
                                if want < 0.0 {
                                    want *= slopes[co] as f64;
                                }
                                let got = out[co * oh * ow + y * ow + x] as f64;
                                assert!(
                                    (got - want).abs() < 1e-4,
                                    "{h}x{w} s{stride} {pad:?} at {co},{y},{x}: {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sizes_the_kernel_cannot_take_are_refused_before_running() {
        let (taps, bias) = (values(9, 1), values(1, 2));
        let op = Depthwise { stride: 3, pad: [1; 4], taps: &taps, bias: &bias, slopes: None };
        assert!(!op.fits(1, 8, 8));
        let op = Depthwise { stride: 1, pad: [0; 4], taps: &taps, bias: &bias, slopes: None };
        assert!(!op.fits(1, 2, 8), "a plane shorter than the kernel");
        assert!(!op.fits(2, 8, 8), "taps for one channel, not two");
    }

    #[test]
    fn the_pool_keeps_each_blocks_largest_and_drops_odd_edges() {
        let (c, h, w) = (2, 5, 7);
        let input = values(c * h * w, 1);
        let mut out = vec![0.0; c * 2 * 3];
        max_pool_2x2(&input, c, h, w, &mut out);
        for ch in 0..c {
            for y in 0..2 {
                for x in 0..3 {
                    let at = |dy: usize, dx: usize| input[ch * h * w + (2 * y + dy) * w + 2 * x + dx];
                    let want = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                    assert_eq!(out[ch * 6 + y * 3 + x], want);
                }
            }
        }
    }
}
