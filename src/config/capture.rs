//! `[capture]`: where frames come from and how fast.
//!
//! Owns the choice between a replayed folder and a camera ([`CaptureSource`], matched by serde) and the
//! frame-rate cap. Never opens the camera or the folder: a missing one turns face entry off at run time,
//! it does not stop the gate.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::{float_in, ConfigError};

/// `[capture]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    /// `"replay"` (default) or `"camera"`.
    pub source: Option<CaptureSource>,
    /// Folder replayed by the replay source.
    pub replay_dir: Option<PathBuf>,
    /// V4L2 device index of the camera.
    pub camera_index: Option<u32>,
    /// Frames per second to pace the source at.
    pub fps: Option<f32>,
}

/// `capture.source`, as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureSource {
    /// A folder of photos in a loop (the default: development and tests have no camera).
    #[default]
    Replay,
    /// A V4L2 camera.
    Camera,
}

/// Where frames come from.
#[derive(Clone, Debug, PartialEq)]
pub enum CaptureConfig {
    /// A folder of photos in a loop.
    Replay {
        /// The folder.
        dir: PathBuf,
    },
    /// A V4L2 camera.
    Camera {
        /// `/dev/videoN`.
        index: u32,
    },
}

/// The frame source and its pace.
pub(super) fn capture(raw: RawCapture) -> Result<(CaptureConfig, f32), ConfigError> {
    let fps = raw.fps.unwrap_or(15.0);
    let fps = float_in("capture.fps", fps, fps > 0.0 && fps <= 120.0, "(0, 120]")?;
    let source = match raw.source.unwrap_or_default() {
        // Relative to the working directory: the repository's shared photos beside a checkout.
        CaptureSource::Replay => {
            CaptureConfig::Replay { dir: raw.replay_dir.unwrap_or_else(|| PathBuf::from("../shared/faces")) }
        }
        CaptureSource::Camera => CaptureConfig::Camera { index: raw.camera_index.unwrap_or(0) },
    };
    Ok((source, fps))
}
