//! Aiming without pixels: what an installer needs to point the camera, as numbers only.
//!
//! Owns the figures of one frame ([`AimView`]: its size, brightness and sharpness, and for each detected face
//! its box, eye distance, yaw and roll, and whether it meets the enrolment quality limits) and the desk
//! ([`AimingDesk`]) through which the portal's aiming page asks for them while an installer watches. It must
//! never keep or hand out a pixel, a crop, an embedding or anything else that tells whose face it was: a view
//! holds at most [`MAX_FACES`] boxes and a handful of figures, and is dropped once nobody watches.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::capture::Frame;
use crate::vision::detect::FaceDetection;
use crate::vision::enrol::{FacePose, PoseIssue, QualityGate};

/// Faces described per view, largest first (a crowd needs no more to aim a camera).
pub const MAX_FACES: usize = 8;

/// Below this mean luma (0-255) the scene is too dark for faces.
pub const DARK: f32 = 40.0;
/// Above this mean luma the scene is washed out (the camera faces a light).
pub const BRIGHT: f32 = 215.0;
/// Below this variance of the Laplacian the whole frame is blurred (focus, a dirty lens).
pub const BLURRED: f32 = 15.0;

/// What is wrong with the scene as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SceneIssue {
    /// Mean luma under [`DARK`].
    TooDark,
    /// Mean luma over [`BRIGHT`].
    TooBright,
    /// Laplacian variance under [`BLURRED`].
    Blurred,
}

impl SceneIssue {
    /// The issue of a scene with these figures, if any.
    pub fn of(brightness: f32, sharpness: f32) -> Option<Self> {
        if brightness < DARK {
            Some(Self::TooDark)
        } else if brightness > BRIGHT {
            Some(Self::TooBright)
        } else if sharpness < BLURRED {
            Some(Self::Blurred)
        } else {
            None
        }
    }

    /// What the installer should do.
    pub fn fix(self) -> &'static str {
        match self {
            Self::TooDark => "too dark: add light at the gate or turn on the IR illuminator",
            Self::TooBright => "too bright: the camera faces a light; turn it or shade it",
            Self::Blurred => "blurred: focus the lens at the distance people stand, and clean it",
        }
    }
}

/// Why a face would not be taken for enrolment where it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AimIssue {
    /// Fewer pixels between the eyes than the enrolment limit: the camera is too far or too wide.
    TooSmall,
    /// Head turned (or the camera looks at people from the side).
    Turned,
    /// Eye line tilted (or the camera is mounted crooked).
    Tilted,
    /// Partly outside the zone: the face is cut at the frame's edge.
    AtTheEdge,
}

impl AimIssue {
    /// Short label for the page.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooSmall => "too small",
            Self::Turned => "turned",
            Self::Tilted => "tilted",
            Self::AtTheEdge => "at the edge",
        }
    }
}

impl From<PoseIssue> for AimIssue {
    fn from(issue: PoseIssue) -> Self {
        match issue {
            PoseIssue::TooSmall { .. } => Self::TooSmall,
            PoseIssue::Turned => Self::Turned,
            PoseIssue::Tilted => Self::Tilted,
        }
    }
}

/// A rectangle in frame pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl Rect {
    fn contains(&self, other: &Rect) -> bool {
        other.x >= self.x
            && other.y >= self.y
            && other.x + other.width <= self.x + self.width
            && other.y + other.height <= self.y + self.height
    }
}

/// One detected face, as figures.
#[derive(Clone, Debug, PartialEq)]
pub struct AimFace {
    /// Its box, clipped to the frame.
    pub bbox: Rect,
    /// Pixels between the eyes.
    pub eye_distance_px: f32,
    /// The nose's offset from the eyes' midpoint along the eye line (0 = frontal).
    pub yaw: f32,
    /// The eye line's tilt, as a fraction of the eye distance (0 = level).
    pub roll: f32,
    /// Why it would not be enrolled where it stands (`None`: it would, as far as the pose goes).
    pub issue: Option<AimIssue>,
}

/// What one frame says about the camera's aim: no pixel of it.
#[derive(Clone, Debug, PartialEq)]
pub struct AimView {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Mean luma, 0-255.
    pub brightness: f32,
    /// Variance of the Laplacian of luma.
    pub sharpness: f32,
    /// The zone a face must lie in (the frame less a margin, so alignment has the whole face).
    pub zone: Rect,
    /// The smallest eye distance enrolment takes, pixels.
    pub min_eye_distance_px: f32,
    /// Whether faces were looked for (the detector loaded).
    pub detector_up: bool,
    /// Faces found, largest first, at most [`MAX_FACES`].
    pub faces: Vec<AimFace>,
}

impl AimView {
    /// The figures of `frame` and the faces detected in it, judged by the enrolment quality limits.
    pub fn of(frame: &Frame, faces: Option<&[FaceDetection]>, gate: &QualityGate) -> Self {
        let (width, height) = (frame.width(), frame.height());
        let (brightness, sharpness) = scene_figures(frame.rgb(), width as usize, height as usize);
        // 6 % of each side: a face box touching it is cut (or soon will be as the person moves).
        let (mx, my) = (width * 6 / 100, height * 6 / 100);
        let zone = Rect { x: mx, y: my, width: width - 2 * mx, height: height - 2 * my };
        let mut described: Vec<AimFace> = faces
            .unwrap_or_default()
            .iter()
            .map(|face| {
                let pose = FacePose::of(&face.landmarks);
                let bbox = clip(face, width, height);
                let issue = match gate.check_pose(&pose) {
                    Err(issue) => Some(issue.into()),
                    Ok(()) if !zone.contains(&bbox) => Some(AimIssue::AtTheEdge),
                    Ok(()) => None,
                };
                AimFace { bbox, eye_distance_px: pose.eye_distance_px, yaw: pose.yaw, roll: pose.roll, issue }
            })
            .collect();
        described.sort_by_key(|f| std::cmp::Reverse(u64::from(f.bbox.width) * u64::from(f.bbox.height)));
        described.truncate(MAX_FACES);
        Self {
            width,
            height,
            brightness,
            sharpness,
            zone,
            min_eye_distance_px: gate.min_eye_distance_px,
            detector_up: faces.is_some(),
            faces: described,
        }
    }

    /// What is wrong with the scene, if anything.
    pub fn scene_issue(&self) -> Option<SceneIssue> {
        SceneIssue::of(self.brightness, self.sharpness)
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
fn clip(face: &FaceDetection, width: u32, height: u32) -> Rect {
    let b = &face.bbox;
    let (w, h) = (width as f32, height as f32);
    let (x0, y0) = (b.x.clamp(0.0, w), b.y.clamp(0.0, h));
    let (x1, y1) = ((b.x + b.width).clamp(0.0, w), (b.y + b.height).clamp(0.0, h));
    Rect { x: x0 as u32, y: y0 as u32, width: (x1 - x0) as u32, height: (y1 - y0) as u32 }
}

/// Mean luma, and the variance of a 4-neighbour Laplacian on luma (every second pixel): a focused scene gives
/// hundreds, a blurred one a few.
#[allow(clippy::cast_possible_truncation)]
pub fn scene_figures(rgb: &[u8], width: usize, height: usize) -> (f32, f32) {
    let luma = |x: usize, y: usize| -> f64 {
        let i = (y * width + x) * 3;
        rgb.get(i..i + 3).map_or(0.0, |p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
    };
    let (mut sum, mut lap_sum, mut lap_sq, mut n) = (0.0, 0.0, 0.0, 0.0);
    for y in (1..height.saturating_sub(1)).step_by(2) {
        for x in (1..width.saturating_sub(1)).step_by(2) {
            let c = luma(x, y);
            sum += c;
            let lap = luma(x - 1, y) + luma(x + 1, y) + luma(x, y - 1) + luma(x, y + 1) - 4.0 * c;
            lap_sum += lap;
            lap_sq += lap * lap;
            n += 1.0;
        }
    }
    if n == 0.0 {
        return (0.0, 0.0);
    }
    let mean_lap = lap_sum / n;
    ((sum / n) as f32, (lap_sq / n - mean_lap * mean_lap) as f32)
}

/// How long a view is shown after the page last asked: the camera stops detecting for aiming soon after the
/// installer closes the page.
pub const WATCH_FOR: Duration = Duration::from_secs(5);

/// A view older than this is not shown (the camera is down or slow).
pub const FRESH_FOR: Duration = Duration::from_secs(3);

/// Between the portal's aiming page and the camera: the page asks ([`Self::watch`]), the camera's workers
/// describe frames while someone watches ([`Self::wants_frames`], [`Self::offer`]). It holds one view at most
/// and forgets it when nobody watches.
#[derive(Debug, Default)]
pub struct AimingDesk {
    state: Mutex<DeskState>,
}

#[derive(Debug, Default)]
struct DeskState {
    watched_until: Option<Instant>,
    latest: Option<(Instant, AimView)>,
}

impl AimingDesk {
    fn state(&self) -> std::sync::MutexGuard<'_, DeskState> {
        // The state is two plain values: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The page asks: keep describing frames for [`WATCH_FOR`], and give the latest view if it is fresh.
    pub fn watch(&self) -> Option<AimView> {
        let now = Instant::now();
        let mut state = self.state();
        state.watched_until = Some(now + WATCH_FOR);
        state.latest.as_ref().filter(|(at, _)| now.duration_since(*at) <= FRESH_FOR).map(|(_, view)| view.clone())
    }

    /// Whether someone watches (the camera then describes its frames); once nobody does, the last view goes.
    pub fn wants_frames(&self) -> bool {
        let mut state = self.state();
        let watched = state.watched_until.is_some_and(|until| Instant::now() < until);
        if !watched {
            state.watched_until = None;
            state.latest = None;
        }
        watched
    }

    /// A frame's view, from the camera's workers.
    pub fn offer(&self, view: AimView) {
        let mut state = self.state();
        if state.watched_until.is_some() {
            state.latest = Some((Instant::now(), view));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::detect::BoundingBox;

    fn face(x: f32, y: f32, size: f32, eyes: f32, nose_shift: f32, tilt: f32) -> FaceDetection {
        let (cx, cy) = (x + size / 2.0, y + size * 0.4);
        let right = [cx - eyes / 2.0, cy - tilt / 2.0];
        let left = [cx + eyes / 2.0, cy + tilt / 2.0];
        let nose = [cx + nose_shift, cy + eyes * 0.5];
        FaceDetection {
            bbox: BoundingBox { x, y, width: size, height: size * 1.2 },
            score: 0.9,
            landmarks: [right, left, nose, [cx - eyes / 3.0, cy + eyes], [cx + eyes / 3.0, cy + eyes]],
        }
    }

    fn grey_frame(width: u32, height: u32, level: u8, stripes: bool) -> Frame {
        let mut rgb = vec![level; (width * height * 3) as usize];
        if stripes {
            for (i, px) in rgb.chunks_mut(3).enumerate() {
                if (i % width as usize) % 4 < 2 {
                    px.fill(level / 2);
                }
            }
        }
        Frame::from_rgb(width, height, rgb).unwrap()
    }

    #[test]
    fn each_face_is_judged_by_the_enrolment_limits_and_the_zone() {
        let frame = grey_frame(640, 480, 128, true);
        let faces = [
            face(250.0, 150.0, 140.0, 60.0, 0.0, 0.0),  // good
            face(50.0, 60.0, 40.0, 15.0, 0.0, 0.0),     // too small
            face(400.0, 100.0, 120.0, 50.0, 20.0, 0.0), // turned
            face(100.0, 250.0, 120.0, 50.0, 0.0, 25.0), // tilted
            face(560.0, 200.0, 120.0, 50.0, 0.0, 0.0),  // cut at the right edge
        ];
        let view = AimView::of(&frame, Some(&faces), &QualityGate::default());
        assert!(view.detector_up);
        assert_eq!(view.zone, Rect { x: 38, y: 28, width: 564, height: 424 });
        let issues: Vec<_> = view.faces.iter().map(|f| f.issue).collect();
        // Largest first.
        assert_eq!(
            issues,
            [None, Some(AimIssue::Turned), Some(AimIssue::Tilted), Some(AimIssue::AtTheEdge), Some(AimIssue::TooSmall)]
        );
        assert_eq!(view.faces[4].bbox, Rect { x: 50, y: 60, width: 40, height: 48 });
        assert!((view.faces[0].eye_distance_px - 60.0).abs() < 1e-3);
        assert_eq!(view.faces[3].bbox.width, 80, "clipped at the frame's edge");
        assert_eq!(view.scene_issue(), None);
    }

    #[test]
    fn a_dark_a_bright_and_a_flat_scene_are_named() {
        let gate = QualityGate::default();
        assert_eq!(AimView::of(&grey_frame(64, 48, 10, true), None, &gate).scene_issue(), Some(SceneIssue::TooDark));
        assert_eq!(
            AimView::of(&grey_frame(64, 48, 250, false), None, &gate).scene_issue(),
            Some(SceneIssue::TooBright)
        );
        assert_eq!(AimView::of(&grey_frame(64, 48, 120, false), None, &gate).scene_issue(), Some(SceneIssue::Blurred));
        assert!(!AimView::of(&grey_frame(64, 48, 120, false), None, &gate).detector_up);
    }

    #[test]
    fn a_crowd_is_cut_to_the_largest_faces() {
        let frame = grey_frame(1280, 720, 128, true);
        let faces: Vec<_> =
            (0..20).map(|i| face(40.0 + 60.0 * i as f32, 300.0, 30.0 + i as f32, 12.0, 0.0, 0.0)).collect();
        let view = AimView::of(&frame, Some(&faces), &QualityGate::default());
        assert_eq!(view.faces.len(), MAX_FACES);
        assert_eq!(view.faces[0].bbox.width, 49);
    }

    #[test]
    fn the_desk_describes_frames_only_while_watched_and_forgets_after() {
        let desk = AimingDesk::default();
        let view = AimView::of(&grey_frame(64, 48, 120, true), None, &QualityGate::default());
        assert!(!desk.wants_frames());
        desk.offer(view.clone());
        assert_eq!(desk.watch(), None, "an offer nobody asked for is not kept");
        assert!(desk.wants_frames());
        desk.offer(view.clone());
        assert_eq!(desk.watch(), Some(view));
        desk.state().watched_until = Some(Instant::now());
        assert!(!desk.wants_frames());
        assert!(desk.state().latest.is_none(), "the view outlived the watch");
    }
}
