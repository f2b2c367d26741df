//! Depthwise 3x3 convolutions, dense 3x3 ones over a few input channels (first layers, on the colour planes) and
//! 2x2 max-pools as plain row loops the compiler vectorises, in place of tract's generic kernels (issue 21).
//!
//! The profile (`cargo bench --bench profile`) showed tract's `DepthWiseConv` at 2.7 GFLOP/s and its `OptMaxPool`
//! at about 3 ns an element: 13 ms of SFace's 63 and 9 ms of YuNet's 22 at 320x256. Both walk a patch geometry
//! element by element. Here each output row is a few passes over contiguous slices (a padded copy of the
//! channel, split into even and odd columns when the stride is 2), which the compiler turns into vector code:
//! AVX2 with FMA when the CPU has them (checked at run time, since the x86-64 baseline is SSE2), NEON on the Pi.
//! The convolution also absorbs what follows it per channel (the batch normalisation's multiply and add, and a
//! PReLU), so an activation is written once instead of three times.
//!
//! Only the shapes these models use are taken (f32, NCHW, 3x3 with stride 1 or 2 and explicit padding up to 2;
//! 2x2 pools with stride 2 and no padding); anything else stays tract's. The arithmetic is the same
//! up to the order of additions (and FMA's single rounding); `benches/ort_agreement.rs` checks SFace against
//! onnxruntime to cosine >= 0.9999.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_hir::internal::*;

use facegate_kernels::{max_pool_2x2, out_len, Dense3x3, Depthwise, DENSE_MAX_IN};

use super::prelu::ChannelPrelu;

/// Replaces every depthwise 3x3 convolution and 2x2 max-pool this module covers by its own op. Run on the typed
/// model before tract's declutter (which would otherwise move some convolutions to channels-last, out of reach)
/// and again after it (which puts the pools in the plain form taken here). The declutter in between lets the
/// convolutions absorb the per-channel multiply, add and PReLU that follow them.
pub fn replace(mut model: TypedModel) -> TractResult<TypedModel> {
    for id in model.eval_order()? {
        let node = model.node(id);
        let op: Option<Box<dyn TypedOp>> = if let Some(conv) = node.op_as::<Conv>() {
            conv3x3_of(&model, node, conv)?.map(|op| Box::new(op) as _)
        } else if let Some(pool) = node.op_as::<MaxPool>() {
            pool_of(&model, node, pool)?.map(|op| Box::new(op) as _)
        } else {
            None
        };
        if let Some(op) = op {
            let patch = TypedModelPatch::replace_single_op(&model, node, &[node.inputs[0]], op)?;
            patch.apply(&mut model)?;
        }
    }
    Ok(model)
}

/// The input's shape, if it is a concrete f32 NCHW tensor with one image.
fn nchw(model: &TypedModel, node: &TypedNode) -> TractResult<Option<[usize; 4]>> {
    let fact = model.outlet_fact(node.inputs[0])?;
    if fact.datum_type != f32::datum_type() {
        return Ok(None);
    }
    Ok(fact.shape.as_concrete().and_then(|s| <[usize; 4]>::try_from(s).ok()).filter(|s| s[0] == 1))
}

fn all_ones(v: &Option<TVec<usize>>) -> bool {
    v.as_ref().is_none_or(|v| v.iter().all(|&d| d == 1))
}

fn conv3x3_of(model: &TypedModel, node: &TypedNode, conv: &Conv) -> TractResult<Option<Conv3x3>> {
    let spec: &PoolSpec = &conv.pool_spec;
    let Some([_, c, h, w]) = nchw(model, node)? else { return Ok(None) };
    let stride = match spec.strides.as_deref() {
        None => 1,
        Some(&[a, b]) if a == b && (a == 1 || a == 2) => a,
        _ => return Ok(None),
    };
    let pad = match &spec.padding {
        PaddingSpec::Explicit(before, after) if before.len() == 2 && after.len() == 2 => {
            [before[0], before[1], after[0], after[1]]
        }
        PaddingSpec::Valid => [0; 4],
        _ => return Ok(None),
    };
    let out_channels = spec.output_channels;
    // Depthwise, or dense over a few input channels (a first layer on the colour planes).
    let dense = conv.group == 1 && c <= DENSE_MAX_IN;
    let covered = conv.q_params.is_none()
        && (dense || (conv.group == c && out_channels == c))
        && spec.input_channels == c
        && spec.data_format == DataFormat::NCHW
        && conv.kernel_fmt == KernelFormat::OIHW
        && *spec.kernel_shape == [3, 3]
        && all_ones(&spec.dilations);
    if !covered || node.inputs.len() != 3 {
        return Ok(None);
    }
    let (Some(kernel), Some(bias)) =
        (model.outlet_fact(node.inputs[1])?.konst.clone(), model.outlet_fact(node.inputs[2])?.konst.clone())
    else {
        return Ok(None);
    };
    let kernel = kernel.cast_to::<f32>()?;
    let taps = kernel.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
    if taps.len() != out_channels * if dense { c } else { 1 } * 9 {
        return Ok(None);
    }
    let bias = bias.cast_to::<f32>()?;
    let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
    let bias = match bias.len() {
        1 => vec![bias[0]; out_channels],
        n if n == out_channels => bias.to_vec(),
        _ => return Ok(None),
    };
    let dense_in = dense.then_some(c);
    let op = Conv3x3 { stride, pad, dense_in, taps: Arc::new(taps), bias: Arc::new(bias), slopes: None };
    // The kernels say which sizes they take.
    Ok(op.kernel_fits(c, h, w).then_some(op))
}

fn pool_of(model: &TypedModel, node: &TypedNode, pool: &MaxPool) -> TractResult<Option<MaxPool2x2>> {
    let spec = &pool.pool_spec;
    let Some([_, _, h, w]) = nchw(model, node)? else { return Ok(None) };
    let covered = pool.with_index_outputs.is_none()
        && spec.data_format == DataFormat::NCHW
        && *spec.kernel_shape == [2, 2]
        && spec.strides.as_deref() == Some(&[2, 2])
        && matches!(spec.padding, PaddingSpec::Valid)
        && all_ones(&spec.dilations)
        && h >= 2
        && w >= 2;
    Ok(covered.then_some(MaxPool2x2))
}

/// One value per channel of an NCHW activation with `channels` channels, if `fact` is a constant broadcast that
/// way (`[C,1,1]`, `[1,C,1,1]`, or a single value).
fn per_channel(fact: &TypedFact, channels: usize) -> TractResult<Option<Vec<f32>>> {
    let Some(k) = fact.konst.as_ref() else { return Ok(None) };
    let shape = k.shape();
    let values = k.cast_to::<f32>()?.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
    if values.len() == 1 {
        return Ok(Some(vec![values[0]; channels]));
    }
    // Right-aligned against [1, C, H, W]: the channel axis is third from the end.
    let rank = shape.len();
    let per_c = rank >= 3
        && shape[rank - 3] == channels
        && shape[rank - 2] == 1
        && shape[rank - 1] == 1
        && shape[..rank - 3].iter().all(|&d| d == 1);
    Ok(per_c.then_some(values))
}

/// A depthwise 3x3 convolution (or a dense one over a few input channels) with its bias, then (absorbed)
/// per-channel scaling and PReLU.
#[derive(Debug, Clone)]
pub struct Conv3x3 {
    stride: usize,
    /// Top, left, bottom, right.
    pad: [usize; 4],
    /// For a dense convolution, its input channels.
    dense_in: Option<usize>,
    /// Nine taps per channel, row by row (dense: per output channel, per input channel).
    taps: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
    /// A PReLU applied to the result, one slope per channel.
    slopes: Option<Arc<Vec<f32>>>,
}

fn bits(v: &[f32]) -> impl Iterator<Item = u32> + '_ {
    v.iter().map(|x| x.to_bits())
}

impl PartialEq for Conv3x3 {
    fn eq(&self, other: &Self) -> bool {
        self.stride == other.stride
            && self.pad == other.pad
            && self.dense_in == other.dense_in
            && bits(&self.taps).eq(bits(&other.taps))
            && bits(&self.bias).eq(bits(&other.bias))
            && match (&self.slopes, &other.slopes) {
                (None, None) => true,
                (Some(a), Some(b)) => bits(a).eq(bits(b)),
                _ => false,
            }
    }
}

impl Eq for Conv3x3 {}

impl std::hash::Hash for Conv3x3 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.stride, self.pad, self.dense_in).hash(state);
        bits(&self.taps).for_each(|b| b.hash(state));
        bits(&self.bias).for_each(|b| b.hash(state));
        self.slopes.iter().for_each(|s| bits(s).for_each(|b| b.hash(state)));
    }
}

impl Conv3x3 {
    fn channels(&self) -> usize {
        self.bias.len()
    }

    fn output_shape(&self, [n, _, h, w]: [usize; 4]) -> [usize; 4] {
        let [t, l, b, r] = self.pad;
        [n, self.channels(), out_len(h, t, b, self.stride), out_len(w, l, r, self.stride)]
    }

    /// This op followed by `x * k` (`scale`) or `x + k` per channel, if no PReLU came in between.
    fn then_affine(&self, k: &[f32], scale: bool) -> Option<Self> {
        if self.slopes.is_some() {
            return None;
        }
        let mut next = self.clone();
        if scale {
            let per_out = 9 * self.dense_in.unwrap_or(1);
            let taps = Arc::make_mut(&mut next.taps);
            for (c, chunk) in taps.chunks_mut(per_out).enumerate() {
                chunk.iter_mut().for_each(|t| *t *= k[c]);
            }
            Arc::make_mut(&mut next.bias).iter_mut().zip(k).for_each(|(b, k)| *b *= k);
        } else {
            Arc::make_mut(&mut next.bias).iter_mut().zip(k).for_each(|(b, k)| *b += k);
        }
        Some(next)
    }

    fn absorb(&self, model: &TypedModel, succ: &TypedNode, from_slot: usize) -> TractResult<Option<Self>> {
        let c = self.channels();
        if let Some(bin) = succ.op_as::<TypedBinOp>() {
            let scale = match bin.0.name() {
                "Mul" => true,
                "Add" => false,
                _ => return Ok(None),
            };
            if bin.1.is_some() || succ.inputs.len() != 2 {
                return Ok(None);
            }
            let other = model.outlet_fact(succ.inputs[1 - from_slot])?;
            return Ok(per_channel(other, c)?.and_then(|k| self.then_affine(&k, scale)));
        }
        if let Some(prelu) = succ.op_as::<ChannelPrelu>() {
            let shape = model.outlet_fact(succ.inputs[from_slot])?.shape.as_concrete().map(|s| s.to_vec());
            let plane = shape.filter(|s| s.len() == 4).map(|s| s[2] * s[3]);
            if let (None, Some(plane)) = (&self.slopes, plane) {
                if let Some(slopes) = prelu.per_channel(c, plane) {
                    return Ok(Some(Self { slopes: Some(Arc::new(slopes)), ..self.clone() }));
                }
            }
        }
        Ok(None)
    }

    /// Whether the kernel takes an input of `c` planes of `h` x `w`.
    fn kernel_fits(&self, c: usize, h: usize, w: usize) -> bool {
        let (stride, pad, taps, bias) = (self.stride, self.pad, &self.taps[..], &self.bias[..]);
        let slopes = self.slopes.as_deref().map(|s| &s[..]);
        match self.dense_in {
            None => Depthwise { stride, pad, taps, bias, slopes }.fits(c, h, w),
            Some(in_channels) => {
                c == in_channels && Dense3x3 { stride, pad, in_channels, taps, bias, slopes }.fits(h, w)
            }
        }
    }

    fn run(&self, input: &[f32], [_, c, h, w]: [usize; 4], out: &mut [f32]) -> TractResult<()> {
        ensure!(self.kernel_fits(c, h, w), "{} built for other sizes, given {c}x{h}x{w}", self.name());
        let (stride, pad, taps, bias) = (self.stride, self.pad, &self.taps[..], &self.bias[..]);
        let slopes = self.slopes.as_deref().map(|s| &s[..]);
        match self.dense_in {
            None => Depthwise { stride, pad, taps, bias, slopes }.run(input, c, h, w, out),
            Some(in_channels) => Dense3x3 { stride, pad, in_channels, taps, bias, slopes }.run(input, h, w, out),
        }
        Ok(())
    }
}

/// True when the tensor's values lie in row-major order with no gaps (what a slice of them assumes).
pub(super) fn natural_layout(x: &Tensor) -> bool {
    x.len() == x.shape().iter().product::<usize>() && x.strides() == &*Tensor::natural_strides(x.shape())
}

/// Reads an f32 NCHW input as one contiguous slice, copying it only if it is not laid out that way.
fn contiguous(x: &TValue) -> TractResult<std::borrow::Cow<'_, [f32]>> {
    if natural_layout(x) {
        Ok(std::borrow::Cow::Borrowed(x.try_as_plain_ram()?.as_slice::<f32>()?))
    } else {
        Ok(std::borrow::Cow::Owned(x.deep_clone().try_as_plain_ram()?.as_slice::<f32>()?.to_vec()))
    }
}

/// The concrete NCHW shape of an op's input fact.
fn fact_shape4(fact: &TypedFact, op: &str) -> TractResult<[usize; 4]> {
    let shape = fact.shape.as_concrete().and_then(|s| <[usize; 4]>::try_from(s).ok());
    shape.ok_or_else(|| format_err!("{op} needs a concrete NCHW input"))
}

fn shape4(x: &TValue) -> TractResult<[usize; 4]> {
    <[usize; 4]>::try_from(x.shape()).map_err(|_| format_err!("expected an NCHW input, got shape {:?}", x.shape()))
}

impl Op for Conv3x3 {
    fn name(&self) -> StaticName {
        if self.dense_in.is_some() { "Conv3x3" } else { "Depthwise3x3" }.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("stride {} pad {:?} prelu {}", self.stride, self.pad, self.slopes.is_some())])
    }

    op_as_typed_op!();
}

impl EvalOp for Conv3x3 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let shape = shape4(&x)?;
        ensure!(shape[0] == 1, "{} takes one image", self.name());
        let mut out = Tensor::zero::<f32>(&self.output_shape(shape))?;
        let input = contiguous(&x)?;
        self.run(&input, shape, out.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?)?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Conv3x3 {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = fact_shape4(inputs[0], &self.name())?;
        Ok(tvec!(f32::fact(self.output_shape(shape))))
    }

    fn declutter(&self, model: &TypedModel, node: &TypedNode) -> TractResult<Option<TypedModelPatch>> {
        let Some(succ) = model.single_succ(node.id)? else { return Ok(None) };
        let Some(slot) = succ.inputs.iter().position(|i| i.node == node.id) else { return Ok(None) };
        if model.outputs.iter().any(|o| o.node == node.id) {
            return Ok(None);
        }
        match self.absorb(model, succ, slot)? {
            Some(op) => Ok(Some(TypedModelPatch::fuse_with_next(model, node, op)?)),
            None => Ok(None),
        }
    }
}

/// A 2x2 max-pool with stride 2 and no padding (odd trailing rows and columns are dropped, as ONNX's floor).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct MaxPool2x2;

impl Op for MaxPool2x2 {
    fn name(&self) -> StaticName {
        "MaxPool2x2".into()
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2x2 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let [n, c, h, w] = shape4(&x)?;
        ensure!(n == 1, "MaxPool2x2 takes one image");
        let mut out = Tensor::zero::<f32>(&[n, c, h / 2, w / 2])?;
        let input = contiguous(&x)?;
        max_pool_2x2(&input, c, h, w, out.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?);
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for MaxPool2x2 {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let [n, c, h, w] = fact_shape4(inputs[0], "MaxPool2x2")?;
        Ok(tvec!(f32::fact([n, c, h / 2, w / 2])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 19) as f32 - 9.0) / 7.0).collect()
    }

    #[test]
    fn a_following_scale_and_shift_fold_into_the_taps_and_bias() {
        let op = Conv3x3 {
            stride: 1,
            pad: [1; 4],
            dense_in: None,
            taps: Arc::new(values(18)),
            bias: Arc::new(vec![0.5, -0.25]),
            slopes: None,
        };
        let folded = op.then_affine(&[2.0, -3.0], true).and_then(|o| o.then_affine(&[1.0, 0.5], false));
        let folded = folded.expect("no PReLU in between");
        let input = values(2 * 5 * 6);
        let (mut plain, mut fused) = (vec![0.0; 60], vec![0.0; 60]);
        op.run(&input, [1, 2, 5, 6], &mut plain).unwrap();
        folded.run(&input, [1, 2, 5, 6], &mut fused).unwrap();
        for (i, (p, f)) in plain.iter().zip(&fused).enumerate() {
            let (k, b) = if i < 30 { (2.0, 1.0) } else { (-3.0, 0.5) };
            assert!((p * k + b - f).abs() < 1e-5, "at {i}: {p} * {k} + {b} vs {f}");
        }
        // Nothing is absorbed past a PReLU: the scale would change which values are negative.
        let with_prelu = Conv3x3 { slopes: Some(Arc::new(vec![0.1, 0.1])), ..op };
        assert!(with_prelu.then_affine(&[2.0, 2.0], true).is_none());
    }

    #[test]
    fn a_channels_mismatch_is_an_error_not_a_panic() {
        let op = Conv3x3 {
            stride: 1,
            pad: [1; 4],
            dense_in: None,
            taps: Arc::new(values(9)),
            bias: Arc::new(vec![0.0]),
            slopes: None,
        };
        let mut out = vec![0.0; 2 * 16];
        assert!(op.run(&values(2 * 16), [1, 2, 4, 4], &mut out).is_err());
    }
}
