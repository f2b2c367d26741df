//! `/metrics`: the gate's health in Prometheus text format, on the portal's listener, behind a bearer token
//! from the config (`[portal] metrics_token`; without one the route does not exist).
//!
//! Owns the list of metric names ([`METRIC_NAMES`]): frames, frame time, camera, models and broker up, door
//! and keypad alarms, worker faults, free disk and the store's size. It must never expose a passage by method,
//! outcome or time, nor anything about a person: those would undo the counts' suppression.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::PortalState;
use crate::compound::LinkHealth;
use crate::gate::status::FRAME_SECONDS_BUCKETS;
use crate::gate::GateStatus;

/// Every metric `/metrics` may expose; a test holds the route to this list.
pub const METRIC_NAMES: [&str; 11] = [
    "facegate_frames_total",
    "facegate_frame_seconds",
    "facegate_camera_up",
    "facegate_models_up",
    "facegate_broker_up",
    "facegate_door_alarms_total",
    "facegate_keypad_alarms_total",
    "facegate_worker_faults_total",
    "facegate_gallery_reloads_total",
    "facegate_disk_free_bytes",
    "facegate_store_bytes",
];

/// The bearer token a scraper must send. Wiped on drop; compared in constant time; never printed.
#[derive(Clone)]
pub struct MetricsToken(Zeroizing<String>);

impl MetricsToken {
    /// The shortest token accepted: 32 characters (a random 24-byte token in base64 has 32).
    pub const MIN_LEN: usize = 32;

    /// The token, if long enough and made only of visible ASCII.
    pub fn new(token: String) -> Option<Self> {
        let token = Zeroizing::new(token);
        (token.len() >= Self::MIN_LEN && token.bytes().all(|b| b.is_ascii_graphic())).then_some(Self(token))
    }

    fn matches(&self, offered: &str) -> bool {
        self.0.as_bytes().ct_eq(offered.as_bytes()).into()
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

impl PartialEq for MetricsToken {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

/// Where the figures come from: the running gate's counters, the broker link, the store's file.
pub struct MetricsSource {
    /// The token.
    pub token: MetricsToken,
    /// The gate's live counters.
    pub status: Arc<GateStatus>,
    /// The broker link, in a compound.
    pub link: Option<Arc<LinkHealth>>,
    /// The database file (its size, with the write-ahead log, and the free space beside it).
    pub database: PathBuf,
}

/// `GET /metrics`
pub(super) async fn metrics(State(state): State<Arc<PortalState>>, headers: HeaderMap) -> Response {
    let Some(source) = &state.metrics else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !source.token.matches(offered) {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a bearer token is required\n")
            .into_response();
    }
    let text = render(source);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

/// The figures, in Prometheus text format.
pub fn render(source: &MetricsSource) -> String {
    let s = &source.status;
    let mut out = String::with_capacity(2048);
    metric(&mut out, "facegate_frames_total", "counter", "Camera frames handled.", s.frames());
    let times = s.frame_times();
    let _ = writeln!(
        out,
        "# HELP facegate_frame_seconds Time from a frame's arrival to its decision.\n# TYPE facegate_frame_seconds histogram"
    );
    for (bound, count) in FRAME_SECONDS_BUCKETS.iter().zip(times.cumulative()) {
        let _ = writeln!(out, "facegate_frame_seconds_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "facegate_frame_seconds_bucket{{le=\"+Inf\"}} {}", times.count());
    let _ = writeln!(out, "facegate_frame_seconds_sum {}", times.sum_seconds());
    let _ = writeln!(out, "facegate_frame_seconds_count {}", times.count());
    metric(&mut out, "facegate_camera_up", "gauge", "Whether the camera gives frames.", u8::from(s.camera_up()));
    metric(&mut out, "facegate_models_up", "gauge", "Whether the face models loaded.", u8::from(s.models_up()));
    if let Some(link) = &source.link {
        let up = u8::from(link.connected());
        metric(&mut out, "facegate_broker_up", "gauge", "Whether the compound's broker is connected.", up);
    }
    metric(&mut out, "facegate_door_alarms_total", "counter", "Forced-door and held-open alarms.", s.door_alarms());
    metric(&mut out, "facegate_keypad_alarms_total", "counter", "PIN failure budgets spent.", s.keypad_alarms());
    metric(&mut out, "facegate_worker_faults_total", "counter", "Frames a worker failed on.", s.worker_faults());
    metric(&mut out, "facegate_gallery_reloads_total", "counter", "Galleries the gate switched to.", s.reloads());
    let dir = source.database.parent().unwrap_or(std::path::Path::new("/"));
    if let Ok(fs) = nix::sys::statvfs::statvfs(dir) {
        let free = fs.blocks_available().saturating_mul(fs.fragment_size());
        metric(&mut out, "facegate_disk_free_bytes", "gauge", "Free space beside the database.", free);
    }
    let size = |suffix: &str| {
        let mut path = source.database.clone().into_os_string();
        path.push(suffix);
        std::fs::metadata(path).map_or(0, |m| m.len())
    };
    let store = size("") + size("-wal");
    metric(&mut out, "facegate_store_bytes", "gauge", "The database with its write-ahead log.", store);
    out
}
