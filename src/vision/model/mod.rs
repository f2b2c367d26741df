//! Loading the ONNX models into tract: the only module that names tract.
//!
//! It owns finding a model file, checking its sha256, the two load-time fixes tract needs for the OpenCV Zoo
//! "int8bq" builds (folding block-quantized `DequantizeLinear` nodes into f32 weights, and dropping graph
//! inputs that no node reads), optimising once, and running a plan on an `ndarray` tensor. It must never touch
//! frames or embeddings beyond the tensors it is handed, and never write anything.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array4, ArrayD};
use sha2::{Digest, Sha256};
use tract_onnx::pb;
use tract_onnx::prelude::*;
use zeroize::Zeroize;

mod kernels;
mod prelu;

/// The command that fetches and verifies the model files.
pub const FETCH_COMMAND: &str = "bash models/fetch.sh";

/// File name and sha256 of one model this crate knows how to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// File name inside the models folder.
    pub file_name: &'static str,
    /// Lower-case hex sha256 of the file.
    pub sha256: &'static str,
}

/// YuNet 2023mar, block-int8 (OpenCV Zoo): face boxes, scores and 5 landmarks.
pub const YUNET: ModelSpec = ModelSpec {
    file_name: "face_detection_yunet_2023mar_int8bq.onnx",
    sha256: "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
};

/// YuNet 2023mar in fp32 (libfacedetection.train's export), for cross-checks against published reference
/// outputs only; the gate runs the int8 build. Found in `../shared/models`, not fetched.
pub const YUNET_FP32: ModelSpec = ModelSpec {
    file_name: "face_detection_yunet_2023mar_fp32.onnx",
    sha256: "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
};

/// SFace 2021dec, block-int8 (OpenCV Zoo): 128-d face embedding.
pub const SFACE: ModelSpec = ModelSpec {
    file_name: "face_recognition_sface_2021dec_int8bq.onnx",
    sha256: "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
};

/// Errors while finding, checking, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model file is not where it should be.
    #[error("model file {path} is missing; run `{FETCH_COMMAND}` (or pass --models DIR)")]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("cannot read model file {path}: {source}; check its permissions or run `{FETCH_COMMAND}`")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file's digest is not the pinned one: corrupt, truncated or a different model.
    #[error("model file {path} is corrupt or not the expected model (sha256 {actual}, expected {expected}); delete it and run `{FETCH_COMMAND}`")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The digest found.
        actual: String,
        /// The pinned digest.
        expected: &'static str,
    },
    /// tract could not parse, fix up or optimise the graph.
    #[error("cannot load model {name}: {detail}")]
    Load {
        /// The model's file name.
        name: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// A run of the model failed (a bad input shape, for instance).
    #[error("running model {name} failed: {detail}")]
    Run {
        /// The model's file name.
        name: &'static str,
        /// What went wrong.
        detail: String,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, ModelError>;

/// The model folder used when none is given: `FACEGATE_MODELS`, else `models/` under the current directory,
/// else `models/` beside the crate sources (so `cargo run` and the tests work from any folder of the tree).
pub fn default_models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FACEGATE_MODELS") {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("models");
    if local.join(YUNET.file_name).exists() {
        return local;
    }
    // Where the Debian package and deploy/install.sh put them.
    let installed = PathBuf::from(INSTALLED_MODELS_DIR);
    if installed.join(YUNET.file_name).exists() {
        return installed;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// The models folder of an installed system.
pub const INSTALLED_MODELS_DIR: &str = "/usr/share/facegate/models";

/// Reads a model file and checks it against its pinned sha256.
pub fn read_verified(dir: &Path, spec: ModelSpec) -> Result<Vec<u8>> {
    let path = dir.join(spec.file_name);
    let bytes = std::fs::read(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ModelError::Missing { path: path.clone() }
        } else {
            ModelError::Unreadable { path: path.clone(), source }
        }
    })?;
    let actual = hex(&Sha256::digest(&bytes));
    if actual != spec.sha256 {
        return Err(ModelError::Corrupt { path, actual, expected: spec.sha256 });
    }
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A parsed and fixed-up ONNX graph, ready to be specialised to an input shape and optimised.
#[derive(Clone)]
pub struct OnnxGraph {
    name: &'static str,
    model: InferenceModel,
}

impl fmt::Debug for OnnxGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxGraph").field("name", &self.name).finish_non_exhaustive()
    }
}

impl OnnxGraph {
    /// Reads, verifies, fixes and parses a model from `dir`.
    pub fn load(dir: &Path, spec: ModelSpec) -> Result<Self> {
        let bytes = read_verified(dir, spec)?;
        let load_err = |detail: String| ModelError::Load { name: spec.file_name, detail };
        let mut onnx = tract_onnx::onnx().with_ignore_output_shapes(true).with_ignore_value_info(true);
        prelu::register(&mut onnx);
        let mut proto = onnx.proto_model_for_read(&mut bytes.as_slice()).map_err(|e| load_err(format!("{e:#}")))?;
        let graph = proto.graph.as_mut().ok_or_else(|| load_err("no graph in the file".into()))?;
        fold_constant_dequantize(graph).map_err(load_err)?;
        drop_unused_graph_inputs(graph);
        let model = onnx.model_for_proto_model(&proto).map_err(|e| load_err(format!("{e:#}")))?;
        Ok(Self { name: spec.file_name, model })
    }

    /// Specialises the graph to one f32 NCHW input shape, optimises it and makes it runnable.
    pub fn plan(&self, shape: [usize; 4]) -> Result<RunnablePlan> {
        let load_err = |e: TractError| ModelError::Load { name: self.name, detail: format!("{e:#}") };
        let typed = self
            .model
            .clone()
            .with_input_fact(0, f32::fact(shape).into())
            .and_then(|m| m.into_typed())
            .and_then(kernels::replace)
            .and_then(|m| m.into_decluttered())
            .and_then(kernels::replace)
            .and_then(|m| m.into_optimized())
            .map_err(load_err)?;
        let outlets = typed.output_outlets().map_err(load_err)?.to_vec();
        let output_names = outlets
            .iter()
            .map(|o| typed.outlet_label(*o).map(str::to_owned).unwrap_or_else(|| typed.node(o.node).name.clone()))
            .collect();
        let plan = typed.into_runnable().map_err(load_err)?;
        Ok(RunnablePlan { name: self.name, shape, plan, output_names })
    }
}

/// An optimised model for one input shape. Cheap to share between threads; each run has its own state.
pub struct RunnablePlan {
    name: &'static str,
    shape: [usize; 4],
    plan: Arc<TypedRunnableModel>,
    output_names: Vec<String>,
}

impl fmt::Debug for RunnablePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnablePlan")
            .field("name", &self.name)
            .field("shape", &self.shape)
            .field("outputs", &self.output_names)
            .finish_non_exhaustive()
    }
}

impl RunnablePlan {
    /// The input shape this plan was built for.
    pub fn input_shape(&self) -> [usize; 4] {
        self.shape
    }

    /// Names of the outputs, in the order `run` returns them.
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// Runs the plan on one input tensor and returns every output as f32.
    pub fn run(&self, input: Array4<f32>) -> Result<Vec<ArrayD<f32>>> {
        let run_err = |detail: String| ModelError::Run { name: self.name, detail };
        if input.shape() != self.shape {
            return Err(run_err(format!("input shape {:?}, plan built for {:?}", input.shape(), self.shape)));
        }
        // Keep a handle on the input so its pixels can be wiped once tract is done with them.
        let input = Arc::new(Tensor::from(input));
        let result = self.plan.run(tvec!(TValue::from_const(Arc::clone(&input))));
        if let Ok(mut tensor) = Arc::try_unwrap(input) {
            if let Ok(mut view) = tensor.to_plain_array_view_mut::<f32>() {
                if let Some(values) = view.as_slice_mut() {
                    values.zeroize();
                }
            }
        }
        let outputs = result.map_err(|e| run_err(format!("{e:#}")))?;
        outputs
            .into_iter()
            .map(|value| {
                value.into_tensor().into_plain_array::<f32>().map_err(|e| run_err(format!("output is not f32: {e:#}")))
            })
            .collect()
    }
}

/// Time spent in one node of an optimised plan, summed over profiled runs.
#[derive(Clone, Debug)]
pub struct NodeTime {
    /// The node's name in the optimised graph.
    pub node: String,
    /// The operator as tract prints it, then its parameters (for a matrix product, the kernel tract picked).
    pub op: String,
    /// Total time over all runs.
    pub total: std::time::Duration,
}

impl RunnablePlan {
    /// Runs the plan `runs` times on `input`, timing every node: where an optimisation should look first.
    pub fn profile(&self, input: &Array4<f32>, runs: usize) -> Result<Vec<NodeTime>> {
        let run_err = |e: TractError| ModelError::Run { name: self.name, detail: format!("{e:#}") };
        let model = self.plan.model();
        let mut totals = vec![std::time::Duration::ZERO; model.nodes().len()];
        let mut state = tract_onnx::tract_core::plan::SimpleState::new(&self.plan).map_err(run_err)?;
        for _ in 0..runs {
            let value = TValue::from_const(Arc::new(Tensor::from(input.clone())));
            state
                .run_plan_with_eval(tvec!(value), |ctx, op_state, node, inputs| {
                    let start = std::time::Instant::now();
                    let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                    if let Some(t) = totals.get_mut(node.id) {
                        *t += start.elapsed();
                    }
                    out
                })
                .map_err(run_err)?;
        }
        Ok(model
            .nodes()
            .iter()
            .zip(totals)
            .map(|(node, total)| NodeTime {
                node: node.name.clone(),
                op: format!("{} {}", node.op, node.op.info().unwrap_or_default().join("; ")),
                total,
            })
            .collect())
    }
}

/// ONNX `TensorProto.DataType` codes used by the quantized models.
mod onnx_type {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const INT32: i32 = 6;
}

/// Replaces every `DequantizeLinear` whose inputs are all initializers by an f32 initializer holding
/// `(x - zero_point) * scale`, so tract never sees blocked quantization (which it rejects).
fn fold_constant_dequantize(graph: &mut pb::GraphProto) -> std::result::Result<usize, String> {
    let mut folded = 0;
    let mut kept_nodes = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        let foldable = node.op_type == "DequantizeLinear"
            && node.input.iter().filter(|i| !i.is_empty()).all(|i| graph.initializer.iter().any(|t| &t.name == i));
        if !foldable {
            kept_nodes.push(node);
            continue;
        }
        let tensor = dequantize_node(graph, &node).map_err(|e| format!("node {}: {e}", node.name))?;
        graph.initializer.push(tensor);
        folded += 1;
    }
    graph.node = kept_nodes;
    // The quantized originals are now read by nobody: drop them to halve the memory the graph holds.
    let used: HashSet<&str> = graph.node.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let keep: Vec<bool> =
        graph.initializer.iter().map(|t| used.contains(t.name.as_str()) || outputs.contains(t.name.as_str())).collect();
    let mut keep_iter = keep.into_iter();
    graph.initializer.retain(|_| keep_iter.next().unwrap_or(true));
    Ok(folded)
}

fn dequantize_node(graph: &pb::GraphProto, node: &pb::NodeProto) -> std::result::Result<pb::TensorProto, String> {
    let find = |name: &str| graph.initializer.iter().find(|t| t.name == name);
    let x = node.input.first().and_then(|n| find(n)).ok_or("missing input x")?;
    let scale = node.input.get(1).and_then(|n| find(n)).ok_or("missing scale")?;
    let zero_point = node.input.get(2).filter(|n| !n.is_empty()).and_then(|n| find(n));
    let attr_int =
        |name: &str, default: i64| node.attribute.iter().find(|a| a.name == name).map(|a| a.i).unwrap_or(default);

    let x_values = tensor_as_f32(x)?;
    let scale_values = tensor_as_f32(scale)?;
    let zero_values = match zero_point {
        Some(z) => tensor_as_f32(z)?,
        None => vec![0.0; scale_values.len()],
    };
    if zero_values.len() != scale_values.len() {
        return Err(format!("zero point has {} values, scale {}", zero_values.len(), scale_values.len()));
    }
    let dims: Vec<usize> = x
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| "negative dim"))
        .collect::<std::result::Result<_, _>>()?;
    let rank = dims.len();
    let axis = {
        let raw = attr_int("axis", 1);
        let rank_i = i64::try_from(rank).map_err(|_| "rank too large")?;
        usize::try_from(if raw < 0 { raw + rank_i } else { raw }).map_err(|_| "bad axis")?
    };
    let block_size = usize::try_from(attr_int("block_size", 0)).map_err(|_| "bad block_size")?;
    // Elements after `axis` in row-major order: the stride of `axis`.
    let inner: usize = dims.iter().skip(axis + 1).product();
    let axis_len = dims.get(axis).copied().unwrap_or(1);
    let scale_dims: Vec<usize> = scale.dims.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();

    let mut out = Vec::with_capacity(x_values.len());
    let mut coords = vec![0usize; rank];
    for (i, &q) in x_values.iter().enumerate() {
        let s_idx = match (scale_values.len(), block_size) {
            (1, _) => 0,
            // Per-axis: one scale per index along `axis`.
            (_, 0) => (i / inner.max(1)) % axis_len.max(1),
            // Blocked: the scale has x's shape with `axis` divided by the block size.
            (_, block) => {
                let mut rem = i;
                for (c, &d) in coords.iter_mut().zip(&dims).rev() {
                    *c = rem % d.max(1);
                    rem /= d.max(1);
                }
                if let Some(c) = coords.get_mut(axis) {
                    *c /= block;
                }
                coords.iter().enumerate().fold(0, |flat, (d, &c)| flat * scale_dims.get(d).copied().unwrap_or(1) + c)
            }
        };
        let s = *scale_values.get(s_idx).ok_or("scale index out of range")?;
        let z = *zero_values.get(s_idx).ok_or("zero point index out of range")?;
        out.push((q - z) * s);
    }
    let output_name = node.output.first().ok_or("node has no output")?.clone();
    Ok(pb::TensorProto {
        dims: x.dims.clone(),
        data_type: onnx_type::FLOAT,
        float_data: out,
        name: output_name,
        ..Default::default()
    })
}

fn tensor_as_f32(t: &pb::TensorProto) -> std::result::Result<Vec<f32>, String> {
    if t.data_location == Some(1) {
        return Err(format!("initializer {} uses external data, which the model files do not", t.name));
    }
    let raw = &t.raw_data;
    #[allow(clippy::cast_precision_loss)]
    let values = match t.data_type {
        onnx_type::FLOAT if !raw.is_empty() => {
            raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        onnx_type::FLOAT => t.float_data.clone(),
        onnx_type::INT8 if !raw.is_empty() => raw.iter().map(|&b| f32::from(i8::from_le_bytes([b]))).collect(),
        onnx_type::UINT8 if !raw.is_empty() => raw.iter().map(|&b| f32::from(b)).collect(),
        // int8/uint8/int32 without raw_data are stored widened in int32_data.
        onnx_type::INT8 | onnx_type::UINT8 => t.int32_data.iter().map(|&v| v as f32).collect(),
        onnx_type::INT32 if !raw.is_empty() => {
            raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect()
        }
        onnx_type::INT32 => t.int32_data.iter().map(|&v| v as f32).collect(),
        other => return Err(format!("initializer {} has unsupported data type {other}", t.name)),
    };
    Ok(values)
}

/// SFace lists stale weight names as graph inputs that no node reads; tract (like onnxruntime) refuses to
/// leave them unresolved, so keep only the inputs some node consumes.
fn drop_unused_graph_inputs(graph: &mut pb::GraphProto) {
    let used: HashSet<String> = graph.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
    graph.input.retain(|i| used.contains(&i.name));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int8_tensor(name: &str, dims: &[i64], values: &[i8]) -> pb::TensorProto {
        pb::TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: onnx_type::INT8,
            raw_data: values.iter().map(|v| v.to_le_bytes()[0]).collect(),
            ..Default::default()
        }
    }

    fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> pb::TensorProto {
        pb::TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: onnx_type::FLOAT,
            float_data: values.to_vec(),
            ..Default::default()
        }
    }

    fn dq_node(axis: i64, block_size: i64) -> pb::NodeProto {
        let attr = |name: &str, i: i64| pb::AttributeProto { name: name.into(), i, ..Default::default() };
        pb::NodeProto {
            name: "dq".into(),
            op_type: "DequantizeLinear".into(),
            input: vec!["x".into(), "s".into(), "z".into()],
            output: vec!["y".into()],
            attribute: vec![attr("axis", axis), attr("block_size", block_size)],
            ..Default::default()
        }
    }

    #[test]
    fn blocked_dequantize_uses_one_scale_per_block_along_the_axis() {
        // x is 2x4, blocks of 2 along axis 1: scales are 2x2.
        let graph = pb::GraphProto {
            initializer: vec![
                int8_tensor("x", &[2, 4], &[1, 2, 3, 4, -1, -2, -3, -4]),
                float_tensor("s", &[2, 2], &[1.0, 10.0, 100.0, 1000.0]),
                int8_tensor("z", &[2, 2], &[0, 1, 0, -1]),
            ],
            ..Default::default()
        };
        let y = dequantize_node(&graph, &dq_node(1, 2)).unwrap();
        assert_eq!(y.float_data, vec![1.0, 2.0, 20.0, 30.0, -100.0, -200.0, -2000.0, -3000.0]);
        assert_eq!(y.name, "y");
    }

    #[test]
    fn per_axis_dequantize_uses_one_scale_per_channel() {
        let graph = pb::GraphProto {
            initializer: vec![
                int8_tensor("x", &[2, 3], &[1, 2, 3, 4, 5, 6]),
                float_tensor("s", &[2], &[0.5, 2.0]),
                int8_tensor("z", &[2], &[0, 1]),
            ],
            ..Default::default()
        };
        let y = dequantize_node(&graph, &dq_node(0, 0)).unwrap();
        assert_eq!(y.float_data, vec![0.5, 1.0, 1.5, 6.0, 8.0, 10.0]);
    }

    #[test]
    fn single_scale_ignores_a_block_size_attribute() {
        let graph = pb::GraphProto {
            initializer: vec![
                int8_tensor("x", &[3], &[2, 4, 6]),
                float_tensor("s", &[1], &[0.25]),
                int8_tensor("z", &[1], &[2]),
            ],
            ..Default::default()
        };
        let y = dequantize_node(&graph, &dq_node(0, 16)).unwrap();
        assert_eq!(y.float_data, vec![0.0, 0.5, 1.0]);
    }

    #[test]
    fn a_missing_model_names_the_fetch_command() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_verified(dir.path(), YUNET).unwrap_err();
        assert!(matches!(err, ModelError::Missing { .. }));
        assert!(err.to_string().contains(FETCH_COMMAND), "{err}");
    }

    #[test]
    fn a_corrupt_model_is_refused_with_the_fetch_command() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SFACE.file_name), b"not a model").unwrap();
        let err = read_verified(dir.path(), SFACE).unwrap_err();
        assert!(matches!(err, ModelError::Corrupt { .. }));
        assert!(err.to_string().contains(FETCH_COMMAND), "{err}");
    }
}
