//! Configuration: the TOML file as written ([`RawConfig`]) and the validated settings the code uses
//! ([`Config`]).
//!
//! Owns defaults and validation: a bad value is refused at start with the key and the reason. It reads the
//! config file and nothing else; it never writes.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::devices::contacts::Contact;
use crate::devices::wiegand::{DEFAULT_D0, DEFAULT_D1};
use crate::devices::MethodCards;
use crate::gate::GateSettings;
use crate::policy::decide::FaceIntent;
use crate::registry::RegistryPolicy;
use crate::vision::detect::DetectorConfig;
use crate::vision::pipeline::PipelineConfig;
use std::time::Duration;

/// Cosine threshold for a 1:1 verification when none is configured. Chosen from `facegate eval` on the
/// development photos: about FMR 1e-4 for SFace (see README, "Accuracy").
pub const DEFAULT_MATCH_THRESHOLD: f32 = 0.42;

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not valid TOML for this schema.
    #[error("config file {path} is not valid: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        reason: String,
    },
    /// A key holds a value outside its range.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// The dotted key.
        key: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

/// The file as written; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[models]`
    #[serde(default)]
    pub models: RawModels,
    /// `[detector]`
    #[serde(default)]
    pub detector: RawDetector,
    /// `[matching]`
    #[serde(default)]
    pub matching: RawMatching,
    /// `[capture]`
    #[serde(default)]
    pub capture: RawCapture,
    /// `[store]`
    #[serde(default)]
    pub store: RawStore,
    /// `[retention]`
    #[serde(default)]
    pub retention: RawRetention,
    /// `[enrolment]`
    #[serde(default)]
    pub enrolment: RawEnrolment,
    /// `[gate]`
    #[serde(default)]
    pub gate: RawGate,
    /// `[hardware]`
    #[serde(default)]
    pub hardware: RawHardware,
    /// `[liveness]`
    #[serde(default)]
    pub liveness: RawLiveness,
    /// `[audit]`
    #[serde(default)]
    pub audit: RawAudit,
    /// `[portal]`
    #[serde(default)]
    pub portal: RawPortal,
    /// `[compound]`: this gate is one of several sharing residents over a broker.
    pub compound: Option<RawCompound>,
}

/// `[compound]`: the gates of one compound share enrolments, revocations and counts over a NATS broker.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompound {
    /// The compound's name, as given to `facegate compound init`.
    pub name: String,
    /// This gate's name, as given to `facegate compound add-gate`.
    pub gate: String,
    /// Every gate of the compound (named in the consent notice: the devices that hold a template).
    pub gates: Option<Vec<String>>,
    /// The broker, e.g. "tls://gate-a.local:4222".
    pub broker: String,
    /// Folder with `ca.pem`, `gate.pem`, `gate.key` and `compound.key` (default: `compound` in the key folder).
    pub dir: Option<PathBuf>,
    /// Face matching stops when the broker was silent this long (default "5m", at least "2s", at most "1h").
    pub offline_limit: Option<String>,
    /// How often this gate's hourly counts are sent (default "60s").
    pub counts_every: Option<String>,
}

/// The validated `[compound]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CompoundConfig {
    /// The compound's name.
    pub name: String,
    /// The broker link's settings.
    pub link: crate::compound::LinkSettings,
    /// The shared secret file.
    pub secret: PathBuf,
    /// Every gate of the compound, if listed.
    pub gates: Vec<String>,
}

/// `[portal]`: the web portal inside the daemon.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPortal {
    /// Serve the portal (default false).
    pub enabled: Option<bool>,
    /// Address and port on the compound's LAN (default 0.0.0.0:8443).
    pub listen: Option<String>,
    /// TLS certificate and key (PEM); default: made on first run in the key folder.
    pub cert: Option<PathBuf>,
    /// See `cert`.
    pub key: Option<PathBuf>,
    /// Who runs the gate (consent notice and signage).
    pub operator: Option<String>,
    /// How residents reach the operator.
    pub contact: Option<String>,
    /// Version label of the consent notice.
    pub notice_version: Option<String>,
    /// Which devices hold templates (for the notice).
    pub templates_held_on: Option<String>,
    /// The compound's offset from UTC for counts, like +08:00.
    pub utc_offset: Option<String>,
    /// Days an enrolment code stays valid (1-30, default 7).
    pub code_valid_days: Option<u32>,
}

/// The portal's validated settings.
#[derive(Clone, Debug, PartialEq)]
pub struct PortalConfig {
    /// Serve it.
    pub enabled: bool,
    /// Where.
    pub listen: std::net::SocketAddr,
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Operator.
    pub operator: String,
    /// Contact.
    pub contact: String,
    /// Notice version.
    pub notice_version: String,
    /// Devices holding templates.
    pub templates_held_on: String,
    /// Seconds east of UTC.
    pub utc_offset_secs: i64,
    /// Code validity.
    pub code_valid: Duration,
}

/// `[audit]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Folders or files scanned for images and embeddings besides the data and key folders (a log folder, a
    /// backup target).
    pub scan_paths: Option<Vec<PathBuf>>,
}

/// `[liveness]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLiveness {
    /// Live-score threshold (0..1); a face (mean over a decision's frames) below it does not open.
    pub threshold: Option<f32>,
}

/// `[gate]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    /// Relay pulse per admission, in milliseconds.
    pub pulse_ms: Option<u64>,
    /// Longest the door is held open, in milliseconds.
    pub max_open_ms: Option<u64>,
    /// Frames that must agree on one resident.
    pub agreement_required: Option<usize>,
    /// Out of this many recent frames.
    pub agreement_window: Option<usize>,
    /// When faces are matched: `"button"` (after the face button), `"presence"` (while the presence sensor
    /// sees someone) or `"always"`. Default: `"button"` with GPIO, `"always"` in the simulated backend.
    pub intent: Option<String>,
    /// How long face matching stays on after a press of the face button, in milliseconds.
    pub face_window_ms: Option<u64>,
    /// Pause of face matching after a face admission, in milliseconds.
    pub face_cooldown_ms: Option<u64>,
    /// Whether the camera also reads visitor passes' QR codes.
    pub passes_from_camera: Option<bool>,
    /// Threads reading camera frames (default: one per core).
    pub face_workers: Option<usize>,
    /// Seconds the door may stay open before the held-open alarm.
    pub door_held_alarm_s: Option<u64>,
}

/// `[hardware]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHardware {
    /// `"simulated"` (default) or `"gpio"`.
    pub backend: Option<String>,
    /// BCM pin of the door relay.
    pub relay_bcm: Option<u8>,
    /// Whether a high level energises the relay.
    pub relay_active_high: Option<bool>,
    /// `"none"`, `"stdin"` (simulated: digits, `#`, `*` typed on standard input) or `"matrix"` (4x3 GPIO).
    pub keypad: Option<String>,
    /// BCM pins of the keypad rows.
    pub keypad_rows: Option<[u8; 4]>,
    /// BCM pins of the keypad columns.
    pub keypad_cols: Option<[u8; 3]>,
    /// The USB keypad's event device (`keypad = "usb"`), e.g. `/dev/input/by-id/...-event-kbd`.
    pub keypad_device: Option<PathBuf>,
    /// `"none"`, `"stdin"` (simulated: a line holding a pass) or `"usb"` (a HID QR scanner).
    pub scanner: Option<String>,
    /// The USB QR scanner's event device (`scanner = "usb"`).
    pub scanner_device: Option<PathBuf>,
    /// `[hardware.contacts]`: BCM pins of the wired contacts; a contact not listed is not wired.
    #[serde(default)]
    pub contacts: RawContacts,
    /// `[hardware.lights]`: BCM pins of the status LEDs and buzzer.
    #[serde(default)]
    pub lights: RawLights,
    /// `[hardware.wiegand]`: Wiegand-26 output to an existing controller (absent: off).
    pub wiegand: Option<RawWiegand>,
}

/// `[hardware.contacts]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContacts {
    /// Request-to-exit button (normally open, to ground).
    pub exit_button: Option<u8>,
    /// Guard-call button (normally open, to ground).
    pub guard_call: Option<u8>,
    /// The guard's remote release button (normally open, to ground).
    pub guard_release: Option<u8>,
    /// Face button (normally open, to ground).
    pub face_button: Option<u8>,
    /// Presence sensor output.
    pub presence: Option<u8>,
    /// Whether the presence sensor pulls low on presence (open collector).
    pub presence_active_low: Option<bool>,
    /// Door reed contact (closed while the door is shut).
    pub door_contact: Option<u8>,
}

/// `[hardware.lights]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLights {
    /// Green LED.
    pub green: Option<u8>,
    /// Red LED.
    pub red: Option<u8>,
    /// Buzzer (through a transistor).
    pub buzzer: Option<u8>,
}

/// `[hardware.wiegand]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWiegand {
    /// BCM pin of DATA0.
    pub d0: Option<u8>,
    /// BCM pin of DATA1.
    pub d1: Option<u8>,
    /// Facility code (0-255).
    pub facility: Option<u8>,
    /// Card number sent for a face admission: one per method, never per person.
    pub face_card: Option<u16>,
    /// Card number sent for a PIN admission.
    pub pin_card: Option<u16>,
    /// Card number sent for a visitor pass.
    pub visitor_card: Option<u16>,
    /// Card number sent for a guard opening.
    pub guard_card: Option<u16>,
}

/// Which hardware the daemon drives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HardwareConfig {
    /// Real GPIO (true) or the simulated relay (false).
    pub gpio: bool,
    /// BCM pin of the relay.
    pub relay_bcm: u8,
    /// Whether a high level energises the relay.
    pub relay_active_high: bool,
    /// The keypad.
    pub keypad: KeypadConfig,
    /// The visitor-pass scanner.
    pub scanner: ScannerConfig,
    /// Wired contacts: `(contact, BCM, active_low)`.
    pub contacts: Vec<(Contact, u8, bool)>,
    /// Green LED, red LED, buzzer (BCM), each optional.
    pub lights: [Option<u8>; 3],
    /// Wiegand output: DATA0 and DATA1 pins and the card per method.
    pub wiegand: Option<(u8, u8, MethodCards)>,
}

/// The visitor-pass scanner the daemon reads (besides the camera).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScannerConfig {
    /// None.
    None,
    /// Lines typed on standard input (off the Pi).
    Stdin,
    /// A USB HID scanner.
    Usb {
        /// Its event device.
        device: PathBuf,
    },
}

/// The keypad the daemon reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeypadConfig {
    /// None.
    None,
    /// Keys typed on standard input (off the Pi).
    Stdin,
    /// A USB numeric keypad.
    Usb {
        /// Its event device.
        device: PathBuf,
    },
    /// A 4x3 matrix on GPIO.
    Matrix {
        /// Row pins (BCM).
        rows: [u8; 4],
        /// Column pins (BCM).
        cols: [u8; 3],
    },
}

/// `[store]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// The SQLite database file.
    pub database: Option<PathBuf>,
    /// The master key file (32 bytes, mode 0600, not in the database's folder).
    pub master_key: Option<PathBuf>,
}

/// `[retention]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Days an unused template is kept (at most 1095).
    pub max_unused_days: Option<u32>,
}

/// `[enrolment]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnrolment {
    /// Good frames averaged into one template.
    pub frames: Option<usize>,
}

/// `[models]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModels {
    /// Folder holding the ONNX files.
    pub dir: Option<PathBuf>,
}

/// `[detector]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDetector {
    /// Minimum detector score.
    pub score_threshold: Option<f32>,
    /// NMS IoU.
    pub nms_iou: Option<f32>,
    /// Longest side of the detector's working picture.
    pub max_side: Option<u32>,
    /// Smallest face width embedded, in pixels.
    pub min_face_px: Option<f32>,
}

/// `[matching]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatching {
    /// Cosine threshold for 1:1 verification.
    pub threshold: Option<f32>,
    /// Target chance a stranger matches anyone (1:N); the identification threshold follows it.
    pub target_fpir: Option<f64>,
}

/// `[capture]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    /// `"replay"` or `"camera"`.
    pub source: Option<String>,
    /// Folder replayed by the replay source.
    pub replay_dir: Option<PathBuf>,
    /// V4L2 device index of the camera.
    pub camera_index: Option<u32>,
    /// Frames per second to pace the source at.
    pub fps: Option<f32>,
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

/// A cosine threshold, validated to lie in (-1, 1).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Threshold(f32);

impl Threshold {
    /// Validates a threshold.
    pub fn new(value: f32) -> Option<Self> {
        (value.is_finite() && value > -1.0 && value < 1.0).then_some(Self(value))
    }

    /// The value.
    pub fn get(self) -> f32 {
        self.0
    }
}

/// Validated settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Folder holding the ONNX files.
    pub models_dir: PathBuf,
    /// Vision path settings.
    pub pipeline: PipelineConfig,
    /// 1:1 verification threshold.
    pub match_threshold: Threshold,
    /// Frame source.
    pub capture: CaptureConfig,
    /// Pace of the frame source.
    pub fps: f32,
    /// The SQLite database file.
    pub database: PathBuf,
    /// The master key file.
    pub master_key: PathBuf,
    /// Identification and retention rules.
    pub registry: RegistryPolicy,
    /// Good frames averaged at enrolment.
    pub enrol_frames: usize,
    /// The daemon's timing and agreement.
    pub gate: GateSettings,
    /// The daemon's hardware.
    pub hardware: HardwareConfig,
    /// Live-score threshold of the liveness check.
    pub live_threshold: f32,
    /// Extra paths the audit scans.
    pub audit_scan_paths: Vec<PathBuf>,
    /// The web portal.
    pub portal: PortalConfig,
    /// The compound this gate belongs to, if any.
    pub compound: Option<CompoundConfig>,
}

impl RawConfig {
    /// Parses TOML text.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), reason: e.to_string() })
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.to_path_buf(), reason: e.to_string() })?;
        Self::parse(&text, path)
    }

    /// Applies defaults and checks every value.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let defaults = PipelineConfig::default();
        let score_threshold = self.detector.score_threshold.unwrap_or(defaults.detector.score_threshold);
        if !(score_threshold > 0.0 && score_threshold < 1.0) {
            return Err(invalid("detector.score_threshold", format!("{score_threshold} is not in (0, 1)")));
        }
        let nms_iou = self.detector.nms_iou.unwrap_or(defaults.detector.nms_iou);
        if !(nms_iou > 0.0 && nms_iou <= 1.0) {
            return Err(invalid("detector.nms_iou", format!("{nms_iou} is not in (0, 1]")));
        }
        let max_side = self.detector.max_side.unwrap_or(defaults.detector.max_side);
        if !(64..=4096).contains(&max_side) {
            return Err(invalid("detector.max_side", format!("{max_side} is not in 64..=4096 pixels")));
        }
        let min_face_px = self.detector.min_face_px.unwrap_or(defaults.min_face_px);
        if !(min_face_px.is_finite() && (0.0..=1000.0).contains(&min_face_px)) {
            return Err(invalid("detector.min_face_px", format!("{min_face_px} is not in 0..=1000 pixels")));
        }
        let threshold = self.matching.threshold.unwrap_or(DEFAULT_MATCH_THRESHOLD);
        let match_threshold = Threshold::new(threshold)
            .ok_or_else(|| invalid("matching.threshold", format!("{threshold} is not a cosine in (-1, 1)")))?;
        let capture = match self.capture.source.as_deref().unwrap_or("replay") {
            "replay" => CaptureConfig::Replay {
                dir: self.capture.replay_dir.unwrap_or_else(|| PathBuf::from("../shared/faces")),
            },
            "camera" => CaptureConfig::Camera { index: self.capture.camera_index.unwrap_or(0) },
            other => return Err(invalid("capture.source", format!("{other:?} is not \"replay\" or \"camera\""))),
        };
        let face_workers =
            self.gate.face_workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if !(1..=16).contains(&face_workers) {
            return Err(invalid("gate.face_workers", format!("{face_workers} is not in 1..=16")));
        }
        let fps = self.capture.fps.unwrap_or(15.0);
        if !(fps > 0.0 && fps <= 120.0) {
            return Err(invalid("capture.fps", format!("{fps} is not in (0, 120]")));
        }
        let target_fpir = self.matching.target_fpir.unwrap_or(RegistryPolicy::default().target_fpir);
        if !(target_fpir > 0.0 && target_fpir <= 0.1) {
            return Err(invalid("matching.target_fpir", format!("{target_fpir} is not in (0, 0.1]")));
        }
        let max_unused_days = self.retention.max_unused_days.unwrap_or(1095);
        if !(1..=1095).contains(&max_unused_days) {
            return Err(invalid(
                "retention.max_unused_days",
                format!("{max_unused_days} is not in 1..=1095 (templates are kept at most three years)"),
            ));
        }
        let enrol_frames = self.enrolment.frames.unwrap_or(3);
        if !(1..=20).contains(&enrol_frames) {
            return Err(invalid("enrolment.frames", format!("{enrol_frames} is not in 1..=20")));
        }
        let pulse_ms = self.gate.pulse_ms.unwrap_or(3_000);
        if !(100..=30_000).contains(&pulse_ms) {
            return Err(invalid("gate.pulse_ms", format!("{pulse_ms} is not in 100..=30000")));
        }
        let max_open_ms = self.gate.max_open_ms.unwrap_or(10_000);
        if !(pulse_ms..=120_000).contains(&max_open_ms) {
            return Err(invalid("gate.max_open_ms", format!("{max_open_ms} is not in gate.pulse_ms..=120000")));
        }
        let window = self.gate.agreement_window.unwrap_or(3);
        let required = self.gate.agreement_required.unwrap_or(2);
        if !(1..=10).contains(&window) || !(1..=window).contains(&required) {
            return Err(invalid(
                "gate.agreement_required",
                format!("{required} of {window} frames: need 1 <= required <= window <= 10"),
            ));
        }
        let gpio = match self.hardware.backend.as_deref().unwrap_or("simulated") {
            "simulated" => false,
            "gpio" => true,
            other => return Err(invalid("hardware.backend", format!("{other:?} is not \"simulated\" or \"gpio\""))),
        };
        let relay_bcm = self.hardware.relay_bcm.unwrap_or(17);
        if relay_bcm > 27 {
            return Err(invalid("hardware.relay_bcm", format!("{relay_bcm} is not a BCM GPIO (0..=27)")));
        }
        let keypad = match self.hardware.keypad.as_deref().unwrap_or("none") {
            "none" => KeypadConfig::None,
            "stdin" => KeypadConfig::Stdin,
            "matrix" => KeypadConfig::Matrix {
                rows: self.hardware.keypad_rows.unwrap_or([5, 6, 13, 19]),
                cols: self.hardware.keypad_cols.unwrap_or([12, 16, 20]),
            },
            "usb" => KeypadConfig::Usb {
                device: self.hardware.keypad_device.ok_or_else(|| {
                    invalid(
                        "hardware.keypad_device",
                        "needed for keypad = \"usb\": /dev/input/by-id/...-event-kbd".into(),
                    )
                })?,
            },
            other => {
                return Err(invalid(
                    "hardware.keypad",
                    format!("{other:?} is not \"none\", \"stdin\", \"usb\" or \"matrix\""),
                ))
            }
        };
        let scanner = match self.hardware.scanner.as_deref().unwrap_or("none") {
            "none" => ScannerConfig::None,
            "stdin" => ScannerConfig::Stdin,
            "usb" => ScannerConfig::Usb {
                device: self.hardware.scanner_device.ok_or_else(|| {
                    invalid("hardware.scanner_device", "needed for scanner = \"usb\": /dev/input/by-id/...".into())
                })?,
            },
            other => {
                return Err(invalid("hardware.scanner", format!("{other:?} is not \"none\", \"stdin\" or \"usb\"")))
            }
        };
        let c = &self.hardware.contacts;
        let contacts: Vec<(Contact, u8, bool)> = [
            (Contact::ExitButton, c.exit_button, true),
            (Contact::GuardCall, c.guard_call, true),
            (Contact::GuardRelease, c.guard_release, true),
            (Contact::FaceButton, c.face_button, true),
            (Contact::Presence, c.presence, c.presence_active_low.unwrap_or(false)),
            (Contact::DoorContact, c.door_contact, false),
        ]
        .into_iter()
        .filter_map(|(contact, pin, low)| pin.map(|pin| (contact, pin, low)))
        .collect();
        let l = &self.hardware.lights;
        let lights = [l.green, l.red, l.buzzer];
        let wiegand = self.hardware.wiegand.as_ref().map(|w| {
            // Defaults: facility 1, cards 1-4; the installer enrols these four "cards" in the controller.
            (
                w.d0.unwrap_or(DEFAULT_D0),
                w.d1.unwrap_or(DEFAULT_D1),
                MethodCards {
                    facility: w.facility.unwrap_or(1),
                    face: w.face_card.unwrap_or(1),
                    pin: w.pin_card.unwrap_or(2),
                    visitor: w.visitor_card.unwrap_or(3),
                    guard: w.guard_card.unwrap_or(4),
                },
            )
        });
        if let Some((_, _, cards)) = &wiegand {
            let numbers = [cards.face, cards.pin, cards.visitor, cards.guard];
            if (1..4).any(|i| numbers[..i].contains(&numbers[i])) {
                return Err(invalid(
                    "hardware.wiegand",
                    format!("the card numbers {numbers:?} must differ, one per entry method"),
                ));
            }
        }
        let mut pins: Vec<(&'static str, u8)> = vec![("hardware.relay_bcm", relay_bcm)];
        if let KeypadConfig::Matrix { rows, cols } = &keypad {
            pins.extend(rows.iter().chain(cols).map(|&p| ("hardware.keypad_rows/keypad_cols", p)));
        }
        pins.extend(contacts.iter().map(|&(_, p, _)| ("hardware.contacts", p)));
        pins.extend(lights.iter().flatten().map(|&p| ("hardware.lights", p)));
        if let Some((d0, d1, _)) = &wiegand {
            pins.extend([("hardware.wiegand", *d0), ("hardware.wiegand", *d1)]);
        }
        for (i, &(key, pin)) in pins.iter().enumerate() {
            if pin > 27 {
                return Err(invalid(key, format!("{pin} is not a BCM GPIO (0..=27)")));
            }
            if let Some(&(other, _)) = pins[..i].iter().find(|&&(_, p)| p == pin) {
                return Err(invalid(key, format!("BCM {pin} is already used by {other}")));
            }
        }
        let intent = match self.gate.intent.as_deref().unwrap_or(if gpio { "button" } else { "always" }) {
            "button" => FaceIntent::Button,
            "presence" => FaceIntent::Presence,
            "always" => FaceIntent::Always,
            other => {
                return Err(invalid("gate.intent", format!("{other:?} is not \"button\", \"presence\" or \"always\"")))
            }
        };
        let face_window_ms = self.gate.face_window_ms.unwrap_or(8_000);
        if !(1_000..=60_000).contains(&face_window_ms) {
            return Err(invalid("gate.face_window_ms", format!("{face_window_ms} is not in 1000..=60000")));
        }
        let face_cooldown_ms = self.gate.face_cooldown_ms.unwrap_or(4_000);
        if face_cooldown_ms > 60_000 {
            return Err(invalid("gate.face_cooldown_ms", format!("{face_cooldown_ms} is not in 0..=60000")));
        }
        let door_held_alarm_s = self.gate.door_held_alarm_s.unwrap_or(30);
        if !(5..=3_600).contains(&door_held_alarm_s) {
            return Err(invalid("gate.door_held_alarm_s", format!("{door_held_alarm_s} is not in 5..=3600")));
        }
        let live_threshold = self.liveness.threshold.unwrap_or(crate::vision::liveness::DEFAULT_LIVE_THRESHOLD);
        if !(live_threshold > 0.0 && live_threshold < 1.0) {
            return Err(invalid("liveness.threshold", format!("{live_threshold} is not in (0, 1)")));
        }
        let master_key = self.store.master_key.unwrap_or_else(|| PathBuf::from("/var/lib/facegate-keys/master.key"));
        let key_dir = master_key.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let compound = self.compound.as_ref().map(|c| validate_compound(c, &key_dir)).transpose()?;
        let portal = &self.portal;
        let listen = portal.listen.as_deref().unwrap_or("0.0.0.0:8443");
        let listen = listen
            .parse()
            .map_err(|_| invalid("portal.listen", format!("{listen:?} is not an address:port like 0.0.0.0:8443")))?;
        let utc_offset = portal.utc_offset.as_deref().unwrap_or("+00:00");
        let utc_offset_secs =
            crate::policy::counts::parse_utc_offset(utc_offset).map_err(|e| invalid("portal.utc_offset", e))?;
        let code_valid_days = portal.code_valid_days.unwrap_or(7);
        if !(1..=30).contains(&code_valid_days) {
            return Err(invalid("portal.code_valid_days", format!("{code_valid_days} is not in 1..=30")));
        }
        let portal = PortalConfig {
            enabled: portal.enabled.unwrap_or(false),
            listen,
            cert: portal.cert.clone().unwrap_or_else(|| key_dir.join("portal-cert.pem")),
            key: portal.key.clone().unwrap_or_else(|| key_dir.join("portal-key.pem")),
            operator: portal.operator.clone().unwrap_or_else(|| "the property management office".into()),
            contact: portal.contact.clone().unwrap_or_else(|| "the management office at the entrance".into()),
            notice_version: portal.notice_version.clone().unwrap_or_else(|| "1".into()),
            templates_held_on: portal.templates_held_on.clone().unwrap_or_else(|| match &compound {
                Some(c) if !c.gates.is_empty() => {
                    format!("the {} gates of this compound ({})", c.gates.len(), c.gates.join(", "))
                }
                Some(_) => "every gate of this compound".into(),
                None => "this gate's device".into(),
            }),
            utc_offset_secs,
            code_valid: Duration::from_secs(u64::from(code_valid_days) * 86_400),
        };
        Ok(Config {
            portal,
            compound,
            live_threshold,
            audit_scan_paths: self.audit.scan_paths.unwrap_or_default(),
            gate: GateSettings {
                pulse: Duration::from_millis(pulse_ms),
                max_open: Duration::from_millis(max_open_ms),
                agreement: (required, window),
                fps,
                intent,
                face_window: Duration::from_millis(face_window_ms),
                face_cooldown: Duration::from_millis(face_cooldown_ms),
                passes_from_camera: self.gate.passes_from_camera.unwrap_or(true),
                face_workers,
                live_threshold: Some(live_threshold),
                door_held_alarm: Duration::from_secs(door_held_alarm_s),
                ..GateSettings::default()
            },
            hardware: HardwareConfig {
                gpio,
                relay_bcm,
                relay_active_high: self.hardware.relay_active_high.unwrap_or(false),
                keypad,
                scanner,
                contacts,
                lights,
                wiegand,
            },
            database: self.store.database.unwrap_or_else(|| PathBuf::from("/var/lib/facegate/facegate.sqlite")),
            master_key,
            registry: RegistryPolicy { target_fpir, max_unused_secs: i64::from(max_unused_days) * 86_400 },
            enrol_frames,
            models_dir: self.models.dir.unwrap_or_else(crate::vision::model::default_models_dir),
            pipeline: PipelineConfig {
                detector: DetectorConfig { score_threshold, nms_iou, max_side, ..defaults.detector },
                min_face_px,
            },
            match_threshold,
            capture,
            fps,
        })
    }
}

fn validate_compound(c: &RawCompound, key_dir: &Path) -> Result<CompoundConfig, ConfigError> {
    use crate::compound::valid_name;
    let name_err = |key, name: &str| invalid(key, format!("{name:?} is not 1 to 32 of a-z, 0-9 and '-'"));
    if !valid_name(&c.name) {
        return Err(name_err("compound.name", &c.name));
    }
    if !valid_name(&c.gate) {
        return Err(name_err("compound.gate", &c.gate));
    }
    let gates = c.gates.clone().unwrap_or_default();
    if let Some(bad) = gates.iter().find(|g| !valid_name(g)) {
        return Err(name_err("compound.gates", bad));
    }
    if !gates.is_empty() && !gates.contains(&c.gate) {
        return Err(invalid("compound.gates", format!("does not list this gate ({})", c.gate)));
    }
    if !(c.broker.starts_with("tls://") && c.broker.len() > 6) {
        return Err(invalid(
            "compound.broker",
            format!("{:?} is not tls://host:port (the broker requires TLS)", c.broker),
        ));
    }
    let duration = |key: &'static str, text: Option<&str>, default: Duration, range: (Duration, Duration)| {
        let value = match text {
            None => default,
            Some(t) => humantime::parse_duration(t).map_err(|e| invalid(key, format!("{t:?}: {e} (e.g. \"5m\")")))?,
        };
        if value < range.0 || value > range.1 {
            return Err(invalid(key, format!("{value:?} is not in {:?}..={:?}", range.0, range.1)));
        }
        Ok(value)
    };
    let offline_limit = duration(
        "compound.offline_limit",
        c.offline_limit.as_deref(),
        Duration::from_secs(300),
        (Duration::from_secs(2), Duration::from_secs(3_600)),
    )?;
    let counts_every = duration(
        "compound.counts_every",
        c.counts_every.as_deref(),
        Duration::from_secs(60),
        (Duration::from_secs(1), Duration::from_secs(3_600)),
    )?;
    let dir = c.dir.clone().unwrap_or_else(|| key_dir.join("compound"));
    Ok(CompoundConfig {
        name: c.name.clone(),
        secret: dir.join("compound.key"),
        gates,
        link: crate::compound::LinkSettings {
            gate: c.gate.clone(),
            broker: c.broker.clone(),
            ca: dir.join("ca.pem"),
            cert: dir.join("gate.pem"),
            key: dir.join("gate.key"),
            offline_limit,
            counts_every,
        },
    })
}

fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        RawConfig::parse(text, Path::new("test.toml"))?.validate()
    }

    #[test]
    fn a_compound_section_is_validated_and_names_the_devices_in_the_notice() {
        let base = "[store]\nmaster_key = \"/k/master.key\"\n[compound]\nname = \"maple-court\"\ngate = \"gate-b\"\n";
        let c =
            parse(&format!("{base}broker = \"tls://gate-a.local:4222\"\ngates = [\"gate-a\", \"gate-b\"]\n")).unwrap();
        let compound = c.compound.unwrap();
        assert_eq!(compound.link.offline_limit, Duration::from_secs(300));
        assert_eq!(compound.link.cert, PathBuf::from("/k/compound/gate.pem"));
        assert_eq!(compound.secret, PathBuf::from("/k/compound/compound.key"));
        assert_eq!(c.portal.templates_held_on, "the 2 gates of this compound (gate-a, gate-b)");
        assert!(parse("").unwrap().compound.is_none());
        for (extra, key) in [
            ("broker = \"nats://gate-a:4222\"\n", "compound.broker"),
            ("broker = \"tls://a:4222\"\ngates = [\"gate-a\"]\n", "compound.gates"),
            ("broker = \"tls://a:4222\"\noffline_limit = \"1s\"\n", "compound.offline_limit"),
            ("broker = \"tls://a:4222\"\noffline_limit = \"soon\"\n", "compound.offline_limit"),
        ] {
            let err = parse(&format!("{base}{extra}")).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
        let err = parse("[compound]\nname = \"Maple Court\"\ngate = \"a\"\nbroker = \"tls://a:1\"\n").unwrap_err();
        assert!(err.to_string().contains("compound.name"), "{err}");
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.match_threshold.get(), DEFAULT_MATCH_THRESHOLD);
        assert!(matches!(c.capture, CaptureConfig::Replay { .. }));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[matching]\nthreshold = 1.5", "matching.threshold"),
            ("[detector]\nscore_threshold = 0", "detector.score_threshold"),
            ("[capture]\nsource = \"ftp\"", "capture.source"),
            ("[capture]\nfps = -3", "capture.fps"),
            ("[retention]\nmax_unused_days = 2000", "retention.max_unused_days"),
            ("[matching]\ntarget_fpir = 0.5", "matching.target_fpir"),
            ("[enrolment]\nframes = 0", "enrolment.frames"),
            ("[gate]\npulse_ms = 20000\nmax_open_ms = 10000", "gate.max_open_ms"),
            ("[gate]\nagreement_required = 4", "gate.agreement_required"),
            ("[hardware]\nbackend = \"arduino\"", "hardware.backend"),
            ("[hardware]\nrelay_bcm = 40", "hardware.relay_bcm"),
            ("[hardware]\nkeypad = \"usb\"", "hardware.keypad_device"),
            ("[hardware]\nkeypad = \"ps2\"", "hardware.keypad"),
            ("[hardware]\nscanner = \"usb\"", "hardware.scanner_device"),
            ("[hardware.contacts]\nexit_button = 17", "hardware.contacts"),
            ("[hardware.lights]\ngreen = 30", "hardware.lights"),
            ("[gate]\nintent = \"cctv\"", "gate.intent"),
            ("[liveness]\nthreshold = 1.0", "liveness.threshold"),
            ("[hardware.wiegand]\nface_card = 2", "hardware.wiegand"),
            ("[gate]\nface_window_ms = 10", "gate.face_window_ms"),
            ("[gate]\ndoor_held_alarm_s = 1", "gate.door_held_alarm_s"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
        let err = parse("[matching]\nthreshhold = 0.4").unwrap_err();
        assert!(err.to_string().contains("threshhold"), "{err}");
    }
}
