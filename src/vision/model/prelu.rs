//! PReLU as one in-place pass per activation, for the models that use it (SFace after each of its 27 convolutions,
//! the MiniFASNet liveness pair).
//!
//! tract expands ONNX `PRelu` into a comparison, a broadcast multiply and a select: three passes over every
//! activation, a boolean tensor and a copy, which the profile (`cargo bench --bench profile`) showed to be about
//! half of SFace's time. This op does the same arithmetic, `x < 0 ? x * slope : x`, in one pass over the
//! activation it owns. It handles an f32 input whose slope broadcasts as one value per block of trailing
//! elements (per channel in NCHW, or a single slope); anything else keeps tract's own expansion.

use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::{expand, Expansion};

/// Registers the one-pass PReLU in place of tract's expansion.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert("PRelu", |_, _| Ok((expand(PreluExpansion), vec![])));
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct PreluExpansion;

impl Expansion for PreluExpansion {
    fn name(&self) -> StaticName {
        "Prelu".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(&self, name: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let (x, slope) = (inputs[0], inputs[1]);
        let x_fact = model.outlet_fact(x)?.clone();
        let slope_fact = model.outlet_fact(slope)?.clone();
        if let (Some(shape), Some(slope_value)) = (x_fact.shape.as_concrete(), slope_fact.konst.as_ref()) {
            if x_fact.datum_type == f32::datum_type() {
                if let Some(period) = block_period(shape, slope_value.shape()) {
                    let slopes: Vec<f32> =
                        slope_value.cast_to::<f32>()?.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
                    return model.wire_node(name, ChannelPrelu { slopes: Arc::new(slopes), period }, &[x]);
                }
            }
        }
        wire_generic(name, model, x, slope)
    }
}

/// For an input of `x_shape` and a slope of `slope_shape` (broadcast from the right, as ONNX does): the number of
/// consecutive elements that share one slope value, if the slope's values repeat in blocks that way.
fn block_period(x_shape: &[usize], slope_shape: &[usize]) -> Option<usize> {
    if slope_shape.len() > x_shape.len() {
        return None;
    }
    let offset = x_shape.len() - slope_shape.len();
    // Trailing slope axes of size 1: the block. The slope's other axes must match x's.
    let trailing = slope_shape.iter().rev().take_while(|&&d| d == 1).count();
    let kept = slope_shape.len() - trailing;
    if slope_shape[..kept].iter().zip(&x_shape[offset..offset + kept]).any(|(s, x)| s != x) {
        return None;
    }
    Some(x_shape[offset + kept..].iter().product::<usize>().max(1))
}

/// tract's own expansion (`x > 0 ? x : x * slope`), for inputs the one-pass op does not cover.
fn wire_generic(name: &str, model: &mut TypedModel, x: OutletId, mut slope: OutletId) -> TractResult<TVec<OutletId>> {
    let rank = model.outlet_fact(x)?.rank();
    while model.outlet_fact(slope)?.rank() < rank {
        let label = format!("{name}.add-axis-{}", model.outlet_fact(slope)?.rank());
        slope = model.wire_node(label, AxisOp::Add(0), &[slope])?[0];
    }
    let zero = tensor0(0.0).cast_to_dt(model.outlet_fact(x)?.datum_type)?.into_owned().broadcast_into_rank(rank)?;
    let scaled = model.wire_node(format!("{name}.mul"), tract_onnx::tract_hir::ops::math::mul(), &[x, slope])?[0];
    let zero = model.add_const(format!("{name}.zero"), zero)?;
    let test = model.wire_node(
        format!("{name}.test"),
        tract_onnx::tract_core::ops::binary::TypedBinOp(tract_onnx::tract_core::ops::logic::comp_gt(), None),
        &[zero, x],
    )?;
    model.wire_node(format!("{name}.iff"), tract_onnx::tract_core::ops::logic::Iff, &[test[0], scaled, x])
}

/// `x < 0 ? x * slope[block % slopes] : x`, in place, where a block is `period` consecutive elements.
#[derive(Debug, Clone)]
pub(super) struct ChannelPrelu {
    slopes: Arc<Vec<f32>>,
    period: usize,
}

impl PartialEq for ChannelPrelu {
    fn eq(&self, other: &Self) -> bool {
        self.period == other.period
            && self.slopes.len() == other.slopes.len()
            && self.slopes.iter().zip(other.slopes.iter()).all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl Eq for ChannelPrelu {}

impl std::hash::Hash for ChannelPrelu {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.period.hash(state);
        self.slopes.iter().for_each(|s| s.to_bits().hash(state));
    }
}

impl ChannelPrelu {
    /// One slope per channel of an NCHW activation with `channels` channels of `plane` elements each, if this
    /// PReLU applies them that way.
    pub(super) fn per_channel(&self, channels: usize, plane: usize) -> Option<Vec<f32>> {
        match self.slopes.len() {
            1 => Some(vec![self.slopes[0]; channels]),
            n if n == channels && self.period == plane => Some(self.slopes.to_vec()),
            _ => None,
        }
    }

    fn apply(&self, values: &mut [f32]) {
        let n = self.slopes.len().max(1);
        for (block, chunk) in values.chunks_mut(self.period.max(1)).enumerate() {
            let slope = self.slopes.get(block % n).copied().unwrap_or(0.0);
            // Branch-free so it vectorises: both sides are computed, one is kept.
            for v in chunk {
                let scaled = *v * slope;
                *v = if *v < 0.0 { scaled } else { *v };
            }
        }
    }
}

impl Op for ChannelPrelu {
    fn name(&self) -> StaticName {
        "ChannelPrelu".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ChannelPrelu {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        // Owned when nothing else reads the activation (the usual case): then no copy is made.
        let mut x = x.into_tensor();
        if !super::kernels::natural_layout(&x) {
            x = x.deep_clone();
        }
        self.apply(x.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?);
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for ChannelPrelu {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(inputs[0].datum_type.fact(inputs[0].shape.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_period_follows_onnx_broadcasting() {
        assert_eq!(block_period(&[1, 32, 112, 112], &[32, 1, 1]), Some(112 * 112));
        assert_eq!(block_period(&[1, 32, 112, 112], &[1, 32, 1, 1]), Some(112 * 112));
        // One slope for everything: any period gives the same result.
        assert_eq!(block_period(&[1, 32, 8, 8], &[1]), Some(8));
        assert_eq!(block_period(&[2, 4], &[4]), Some(1));
        // A slope that varies along a later axis than an unary one is not blocked.
        assert_eq!(block_period(&[1, 4, 3, 3], &[4, 1, 3]), None);
        assert_eq!(block_period(&[1, 4, 3, 3], &[5, 1, 1]), None);
    }

    #[test]
    fn negative_values_take_their_channels_slope() {
        let op = ChannelPrelu { slopes: Arc::new(vec![0.5, 2.0]), period: 2 };
        let mut values = [-2.0, 3.0, -1.0, 0.0, -4.0, 1.0, -1.0, -0.0];
        op.apply(&mut values);
        assert_eq!(values, [-1.0, 3.0, -2.0, 0.0, -2.0, 1.0, -2.0, -0.0]);
    }
}
