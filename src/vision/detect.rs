//! Detect: faces, scores and five landmarks in a frame, with YuNet.
//!
//! Owns the detector's pre-processing (working resolution, BGR, zero padding to multiples of 32), the
//! decoding of YuNet's twelve outputs, and non-maximum suppression; the last two are pure functions. It returns
//! geometry only and must never keep, log or write the pixels it looked at.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ndarray::{Array4, ArrayD};

use crate::capture::Frame;
use crate::vision::model::{ModelError, ModelSpec, OnnxGraph, RunnablePlan, YUNET};

/// Five landmarks, in frame pixels: right eye (image left), left eye, nose tip, right and left mouth corners.
pub type Landmarks = [[f32; 2]; 5];

/// An axis-aligned box in frame pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoundingBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub width: f32,
    /// Height.
    pub height: f32,
}

impl BoundingBox {
    /// Area in square pixels.
    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    /// Intersection over union with another box.
    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let left = self.x.max(other.x);
        let top = self.y.max(other.y);
        let right = (self.x + self.width).min(other.x + other.width);
        let bottom = (self.y + self.height).min(other.y + other.height);
        let inter = (right - left).max(0.0) * (bottom - top).max(0.0);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// One detected face.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceDetection {
    /// The face box.
    pub bbox: BoundingBox,
    /// Detector confidence in 0..1.
    pub score: f32,
    /// The five landmarks.
    pub landmarks: Landmarks,
}

/// Detector settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectorConfig {
    /// Minimum score to keep a candidate.
    pub score_threshold: f32,
    /// IoU above which a lower-scored overlapping box is dropped.
    pub nms_iou: f32,
    /// Frames whose longer side exceeds this are downscaled before detection. 320 by default: faces at a gate
    /// are large (a 640x480 camera frame keeps faces down to ~40 px found), detection costs a quarter of full
    /// size, and `facegate eval` and `facegate eval-pad` moved by less than 0.06 pp (benches/README.md).
    pub max_side: u32,
    /// At most this many candidates enter NMS.
    pub top_k: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        // 0.8, not OpenCV's 0.9: on the development photos every real face scores >= 0.86 but 1.3 % of LFW
        // faces fall between 0.86 and 0.9, while the strongest non-face (a dog) scores 0.78. A false face
        // costs one "no match"; a missed face makes a resident wait.
        Self { score_threshold: 0.8, nms_iou: 0.3, max_side: 320, top_k: 5000 }
    }
}

/// Errors of the detector.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The model could not be loaded or run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The model's outputs are not what YuNet produces.
    #[error("unexpected detector output: {0}")]
    Output(String),
}

/// The strides of YuNet's three heads.
const STRIDES: [usize; 3] = [8, 16, 32];
/// YuNet needs input sides that are multiples of this.
const SIDE_MULTIPLE: usize = 32;
/// Optimised plans kept, one per padded input size (a camera has one; photo folders have a few).
const PLAN_CACHE_SIZE: usize = 16;

/// YuNet, loaded once, with optimised plans cached per working size. Shareable between threads.
pub struct Detector {
    graph: OnnxGraph,
    plans: Mutex<HashMap<[usize; 2], Arc<RunnablePlan>>>,
    config: DetectorConfig,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Detector {
    /// Loads and checks YuNet from the models folder.
    pub fn load(models_dir: &Path, config: DetectorConfig) -> Result<Self, DetectError> {
        Self::load_model(models_dir, YUNET, config)
    }

    /// Loads another build of YuNet (the fp32 export, for cross-checks).
    pub fn load_model(models_dir: &Path, spec: ModelSpec, config: DetectorConfig) -> Result<Self, DetectError> {
        Ok(Self { graph: OnnxGraph::load(models_dir, spec)?, plans: Mutex::new(HashMap::new()), config })
    }

    /// The settings in use.
    pub fn config(&self) -> DetectorConfig {
        self.config
    }

    /// Every face in the frame, best score first.
    pub fn detect(&self, frame: &Frame) -> Result<Vec<FaceDetection>, DetectError> {
        let geometry = WorkingGeometry::for_frame(frame.width(), frame.height(), self.config.max_side);
        self.detect_with_geometry(frame, &geometry)
    }

    /// Detects with an explicit working geometry (scale and padded input size), e.g. to reproduce a
    /// reference run made at another input size.
    pub fn detect_with_geometry(
        &self,
        frame: &Frame,
        geometry: &WorkingGeometry,
    ) -> Result<Vec<FaceDetection>, DetectError> {
        let plan = self.plan_for(geometry.padded_height, geometry.padded_width)?;
        let input = preprocess(frame, geometry);
        let outputs = plan.run(input)?;
        let heads = YunetHeads::from_named(plan.output_names(), outputs)?;
        let mut faces = decode(&heads, geometry.padded_height, geometry.padded_width, self.config.score_threshold)?;
        faces.truncate(self.config.top_k);
        let mut faces = non_maximum_suppression(faces, self.config.nms_iou);
        for face in &mut faces {
            geometry.map_to_frame(face);
        }
        Ok(faces)
    }

    /// Builds (once) the plan for a padded size. Exposed so a service can warm it before the first frame.
    pub fn plan_for(&self, padded_height: usize, padded_width: usize) -> Result<Arc<RunnablePlan>, DetectError> {
        let key = [padded_height, padded_width];
        if let Some(plan) = self.plans.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key) {
            return Ok(Arc::clone(plan));
        }
        // Optimise outside the lock: it takes tens of milliseconds and other sizes may be running.
        let plan = Arc::new(self.graph.plan([1, 3, padded_height, padded_width])?);
        let mut plans = self.plans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if plans.len() >= PLAN_CACHE_SIZE {
            plans.clear();
        }
        Ok(Arc::clone(plans.entry(key).or_insert(plan)))
    }
}

/// How a frame maps onto the detector's input: a scale (<= 1) and a padded size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkingGeometry {
    /// Working pixels per frame pixel.
    pub scale: f32,
    /// Size of the scaled picture inside the input.
    pub scaled_width: usize,
    /// Size of the scaled picture inside the input.
    pub scaled_height: usize,
    /// Input width, a multiple of 32.
    pub padded_width: usize,
    /// Input height, a multiple of 32.
    pub padded_height: usize,
}

impl WorkingGeometry {
    /// The geometry for a frame of `width` x `height`, downscaled so its longer side is at most `max_side`.
    pub fn for_frame(width: u32, height: u32, max_side: u32) -> Self {
        let longer = width.max(height).max(1);
        #[allow(clippy::cast_precision_loss)]
        let scale = if longer > max_side.max(SIDE_MULTIPLE as u32) {
            max_side.max(SIDE_MULTIPLE as u32) as f32 / longer as f32
        } else {
            1.0
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let scaled = |side: u32| ((side as f32 * scale).round() as usize).max(1);
        let (scaled_width, scaled_height) = (scaled(width), scaled(height));
        let pad = |side: usize| side.div_ceil(SIDE_MULTIPLE) * SIDE_MULTIPLE;
        Self { scale, scaled_width, scaled_height, padded_width: pad(scaled_width), padded_height: pad(scaled_height) }
    }

    fn map_to_frame(&self, face: &mut FaceDetection) {
        let inv = 1.0 / self.scale;
        face.bbox.x *= inv;
        face.bbox.y *= inv;
        face.bbox.width *= inv;
        face.bbox.height *= inv;
        for point in &mut face.landmarks {
            point[0] *= inv;
            point[1] *= inv;
        }
    }
}

/// Fills YuNet's input: NCHW, BGR, raw 0..255, the scaled frame at the top left, zeros elsewhere.
/// Downscaling averages the source pixels under each working pixel (an area filter, so small detail
/// does not alias).
pub fn preprocess(frame: &Frame, geometry: &WorkingGeometry) -> Array4<f32> {
    let (ph, pw) = (geometry.padded_height, geometry.padded_width);
    let mut input = Array4::<f32>::zeros((1, 3, ph, pw));
    let Some(plane) = input.as_slice_mut() else { return input };
    let plane_len = ph * pw;
    let (fw, fh) = (frame.width() as usize, frame.height() as usize);
    let rgb = frame.rgb();
    if (geometry.scale - 1.0).abs() < f32::EPSILON {
        for y in 0..fh.min(ph) {
            for x in 0..fw.min(pw) {
                let src = (y * fw + x) * 3;
                let dst = y * pw + x;
                plane[dst] = f32::from(rgb[src + 2]);
                plane[plane_len + dst] = f32::from(rgb[src + 1]);
                plane[2 * plane_len + dst] = f32::from(rgb[src]);
            }
        }
        return input;
    }
    if exact_half(frame, geometry) {
        half_size_into(rgb, fw, geometry, plane);
    } else {
        area_into(rgb, (fw, fh), geometry, plane);
    }
    input
}

/// The area filter: each working pixel is the mean of the source pixels under it. BGR planes into `plane`.
fn area_into(rgb: &[u8], (fw, fh): (usize, usize), geometry: &WorkingGeometry, plane: &mut [f32]) {
    let (ph, pw) = (geometry.padded_height, geometry.padded_width);
    let plane_len = ph * pw;
    // Source columns covered by each working column, computed once.
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let span = |out: usize, src_len: usize, scaled_len: usize| {
        let ratio = src_len as f64 / scaled_len as f64;
        let start = ((out as f64 * ratio).floor() as usize).min(src_len - 1);
        let end = (((out + 1) as f64 * ratio).ceil() as usize).clamp(start + 1, src_len);
        (start, end)
    };
    let columns: Vec<(usize, usize)> =
        (0..geometry.scaled_width.min(pw)).map(|x| span(x, fw, geometry.scaled_width)).collect();
    for y in 0..geometry.scaled_height.min(ph) {
        let (y0, y1) = span(y, fh, geometry.scaled_height);
        for (x, &(x0, x1)) in columns.iter().enumerate() {
            let mut sum = [0u32; 3];
            for sy in y0..y1 {
                let row = sy * fw;
                for sx in x0..x1 {
                    let src = (row + sx) * 3;
                    sum[0] += u32::from(rgb[src]);
                    sum[1] += u32::from(rgb[src + 1]);
                    sum[2] += u32::from(rgb[src + 2]);
                }
            }
            #[allow(clippy::cast_precision_loss)]
            let n = ((y1 - y0) * (x1 - x0)) as f32;
            let dst = y * pw + x;
            #[allow(clippy::cast_precision_loss)]
            {
                plane[dst] = sum[2] as f32 / n;
                plane[plane_len + dst] = sum[1] as f32 / n;
                plane[2 * plane_len + dst] = sum[0] as f32 / n;
            }
        }
    }
}

/// True when the working picture is the frame halved exactly (a 640x480 camera detected at 320): each working
/// pixel is then the mean of one 2x2 block, the general area filter's answer, computed without its spans.
fn exact_half(frame: &Frame, geometry: &WorkingGeometry) -> bool {
    let (fw, fh) = (frame.width() as usize, frame.height() as usize);
    fw % 2 == 0
        && fh % 2 == 0
        && geometry.scaled_width * 2 == fw
        && geometry.scaled_height * 2 == fh
        && geometry.scaled_width <= geometry.padded_width
        && geometry.scaled_height <= geometry.padded_height
}

/// The 2x2 block means of `rgb` (`fw` wide), BGR planes into `plane` (YuNet's input, `padded_width` wide).
fn half_size_into(rgb: &[u8], fw: usize, geometry: &WorkingGeometry, plane: &mut [f32]) {
    let (sw, pw) = (geometry.scaled_width, geometry.padded_width);
    let plane_len = geometry.padded_height * pw;
    let (blue, rest) = plane.split_at_mut(plane_len);
    let (green, red) = rest.split_at_mut(plane_len);
    for y in 0..geometry.scaled_height {
        let top = &rgb[2 * y * fw * 3..(2 * y + 1) * fw * 3];
        let bottom = &rgb[(2 * y + 1) * fw * 3..(2 * y + 2) * fw * 3];
        let row = y * pw..y * pw + sw;
        let (b, g, r) = (&mut blue[row.clone()], &mut green[row.clone()], &mut red[row]);
        for ((t, u), ((b, g), r)) in top.chunks_exact(6).zip(bottom.chunks_exact(6)).zip(b.iter_mut().zip(g).zip(r)) {
            let sum = |c: usize| u16::from(t[c]) + u16::from(t[c + 3]) + u16::from(u[c]) + u16::from(u[c + 3]);
            *r = f32::from(sum(0)) / 4.0;
            *g = f32::from(sum(1)) / 4.0;
            *b = f32::from(sum(2)) / 4.0;
        }
    }
}

/// YuNet's outputs, by head and stride (index 0, 1, 2 = stride 8, 16, 32), flattened.
#[derive(Debug, Default)]
pub struct YunetHeads {
    /// Class scores, sigmoid applied: one per anchor.
    pub cls: [Vec<f32>; 3],
    /// Objectness, sigmoid applied: one per anchor.
    pub obj: [Vec<f32>; 3],
    /// Box offsets: four per anchor.
    pub bbox: [Vec<f32>; 3],
    /// Landmark offsets: ten per anchor.
    pub kps: [Vec<f32>; 3],
}

impl YunetHeads {
    /// Picks the twelve outputs by name (`cls_8` .. `kps_32`); their order in the file does not matter.
    pub fn from_named(names: &[String], outputs: Vec<ArrayD<f32>>) -> Result<Self, DetectError> {
        let mut heads = Self::default();
        let mut seen = 0usize;
        for (name, array) in names.iter().zip(outputs) {
            let Some((kind, stride)) = name.split_once('_') else { continue };
            let Some(idx) = STRIDES.iter().position(|s| stride == s.to_string()) else { continue };
            let values = array.into_raw_vec_and_offset().0;
            let slot = match kind {
                "cls" => &mut heads.cls[idx],
                "obj" => &mut heads.obj[idx],
                "bbox" => &mut heads.bbox[idx],
                "kps" => &mut heads.kps[idx],
                _ => continue,
            };
            *slot = values;
            seen += 1;
        }
        if seen != 12 {
            return Err(DetectError::Output(format!(
                "expected 12 named heads (cls/obj/bbox/kps x 8/16/32), found {seen} in {names:?}"
            )));
        }
        Ok(heads)
    }
}

/// Decodes candidates above `score_threshold` from YuNet's heads for an input of `height` x `width`, best
/// score first, as OpenCV's FaceDetectorYN does. Coordinates are in input pixels.
pub fn decode(
    heads: &YunetHeads,
    height: usize,
    width: usize,
    score_threshold: f32,
) -> Result<Vec<FaceDetection>, DetectError> {
    let mut faces = Vec::new();
    for (head_idx, &stride) in STRIDES.iter().enumerate() {
        let (rows, cols) = (height / stride, width / stride);
        let n = rows * cols;
        let (cls, obj, bbox, kps) =
            (&heads.cls[head_idx], &heads.obj[head_idx], &heads.bbox[head_idx], &heads.kps[head_idx]);
        if cls.len() != n || obj.len() != n || bbox.len() != 4 * n || kps.len() != 10 * n {
            return Err(DetectError::Output(format!(
                "stride {stride}: expected {n} anchors, got cls {} obj {} bbox {} kps {}",
                cls.len(),
                obj.len(),
                bbox.len() / 4,
                kps.len() / 10
            )));
        }
        #[allow(clippy::cast_precision_loss)]
        let s = stride as f32;
        for r in 0..rows {
            for c in 0..cols {
                let idx = r * cols + c;
                let score = (cls[idx].clamp(0.0, 1.0) * obj[idx].clamp(0.0, 1.0)).sqrt();
                if score < score_threshold {
                    continue;
                }
                #[allow(clippy::cast_precision_loss)]
                let (cf, rf) = (c as f32, r as f32);
                let cx = (cf + bbox[4 * idx]) * s;
                let cy = (rf + bbox[4 * idx + 1]) * s;
                let w = bbox[4 * idx + 2].exp() * s;
                let h = bbox[4 * idx + 3].exp() * s;
                let mut landmarks = [[0.0f32; 2]; 5];
                for (n_point, point) in landmarks.iter_mut().enumerate() {
                    point[0] = (kps[10 * idx + 2 * n_point] + cf) * s;
                    point[1] = (kps[10 * idx + 2 * n_point + 1] + rf) * s;
                }
                faces.push(FaceDetection {
                    bbox: BoundingBox { x: cx - w / 2.0, y: cy - h / 2.0, width: w, height: h },
                    score,
                    landmarks,
                });
            }
        }
    }
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(faces)
}

/// Greedy NMS: keeps the best box, drops every box overlapping a kept one by more than `iou_threshold`.
/// Input must be sorted best first (as `decode` returns it).
pub fn non_maximum_suppression(candidates: Vec<FaceDetection>, iou_threshold: f32) -> Vec<FaceDetection> {
    let mut kept: Vec<FaceDetection> = Vec::new();
    for candidate in candidates {
        if kept.iter().all(|k| k.bbox.iou(&candidate.bbox) <= iou_threshold) {
            kept.push(candidate);
        }
    }
    kept
}

/// The face with the largest box, which at a gate is the person in front of the camera.
pub fn largest(faces: &[FaceDetection]) -> Option<&FaceDetection> {
    faces.iter().max_by(|a, b| a.bbox.area().total_cmp(&b.bbox.area()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, score: f32) -> FaceDetection {
        FaceDetection { bbox: BoundingBox { x, y: 0.0, width: 10.0, height: 10.0 }, score, landmarks: [[0.0; 2]; 5] }
    }

    #[test]
    fn nms_drops_overlaps_and_keeps_separate_faces() {
        let kept = non_maximum_suppression(vec![face(0.0, 0.99), face(1.0, 0.95), face(50.0, 0.91)], 0.3);
        assert_eq!(kept.iter().map(|f| f.bbox.x).collect::<Vec<_>>(), vec![0.0, 50.0]);
    }

    #[test]
    fn iou_of_identical_and_disjoint_boxes() {
        let a = BoundingBox { x: 0.0, y: 0.0, width: 4.0, height: 4.0 };
        let b = BoundingBox { x: 2.0, y: 0.0, width: 4.0, height: 4.0 };
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        assert!((a.iou(&b) - 8.0 / 24.0).abs() < 1e-6);
        assert_eq!(a.iou(&BoundingBox { x: 10.0, ..a }), 0.0);
    }

    #[test]
    fn decode_places_one_anchor_as_opencv_does() {
        // A 32x32 input: strides 8/16/32 have 16, 4 and 1 anchors. Light up row 1, col 2 of stride 8.
        let mut heads = YunetHeads::default();
        for (i, n) in [16usize, 4, 1].into_iter().enumerate() {
            heads.cls[i] = vec![0.0; n];
            heads.obj[i] = vec![0.0; n];
            heads.bbox[i] = vec![0.0; 4 * n];
            heads.kps[i] = vec![0.0; 10 * n];
        }
        let idx = 4 + 2;
        heads.cls[0][idx] = 0.81;
        heads.obj[0][idx] = 1.0;
        heads.bbox[0][4 * idx..4 * idx + 4].copy_from_slice(&[0.5, 0.25, 0.0, 1.0f32.ln()]);
        heads.kps[0][10 * idx] = 0.5;
        heads.kps[0][10 * idx + 1] = -0.5;
        let faces = decode(&heads, 32, 32, 0.5).unwrap();
        assert_eq!(faces.len(), 1);
        let f = &faces[0];
        assert!((f.score - 0.9).abs() < 1e-6);
        // cx = (2 + 0.5) * 8 = 20, cy = (1 + 0.25) * 8 = 10, w = h = 8.
        assert_eq!(f.bbox, BoundingBox { x: 16.0, y: 6.0, width: 8.0, height: 8.0 });
        assert_eq!(f.landmarks[0], [20.0, 4.0]);
        assert!(decode(&heads, 32, 32, 0.95).unwrap().is_empty());
    }

    #[test]
    fn geometry_pads_to_32_and_downscales_large_frames() {
        let g = WorkingGeometry::for_frame(250, 250, 640);
        assert_eq!((g.scale, g.padded_width, g.padded_height), (1.0, 256, 256));
        let g = WorkingGeometry::for_frame(1280, 960, 640);
        assert_eq!((g.scaled_width, g.scaled_height, g.padded_width, g.padded_height), (640, 480, 640, 480));
        assert!((g.scale - 0.5).abs() < 1e-6);
    }

    #[test]
    fn preprocess_is_bgr_and_area_averages_when_downscaling() {
        // 4x2 frame: left half red, right half blue; halved to 2x1, padded to 32x32.
        let mut rgb = Vec::new();
        for _y in 0..2 {
            for x in 0..4 {
                rgb.extend_from_slice(if x < 2 { &[200, 0, 0] } else { &[0, 0, 100] });
            }
        }
        let frame = Frame::from_rgb(4, 2, rgb).unwrap();
        let g = WorkingGeometry { scale: 0.5, scaled_width: 2, scaled_height: 1, padded_width: 32, padded_height: 32 };
        let input = preprocess(&frame, &g);
        assert_eq!(input[[0, 2, 0, 0]], 200.0); // red lands in channel 2 (BGR)
        assert_eq!(input[[0, 0, 0, 1]], 100.0); // blue in channel 0
        assert_eq!(input[[0, 0, 0, 2]], 0.0); // padding
    }

    #[test]
    fn halving_exactly_gives_what_the_area_filter_gives() {
        let (w, h) = (80, 60);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| ((i * 97 + i / 7) % 256) as u8).collect();
        let frame = Frame::from_rgb(w as u32, h as u32, rgb.clone()).unwrap();
        let g = WorkingGeometry::for_frame(w as u32, h as u32, 40);
        assert!(exact_half(&frame, &g), "{g:?}");
        let (mut fast, mut general) =
            (vec![0.0; 3 * g.padded_height * g.padded_width], vec![0.0; 3 * g.padded_height * g.padded_width]);
        half_size_into(&rgb, w, &g, &mut fast);
        area_into(&rgb, (w, h), &g, &mut general);
        assert_eq!(fast, general);
        assert!(fast.iter().any(|&v| v > 0.0));
    }
}
