//! The gate's live counters, readable while it runs (no identity in any of them, and no passage count by
//! method or time beyond the run report: `/metrics` reads only the health figures). The last
//! [`RECENT_PASSAGES`] passages (method, outcome, time) are kept in memory for the terminal's status block
//! alone: never written, never served.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use super::door::DoorState;
use crate::compound::LinkHealth;
use crate::policy::passage::{EntryMethod, PassageOutcome};

/// Passages remembered for the terminal's status block (method, outcome and time; never who).
pub const RECENT_PASSAGES: usize = 5;

/// One passage as the terminal shows it: how and with what outcome, and when; never who.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecentPassage {
    /// How.
    pub method: EntryMethod,
    /// Admitted or refused.
    pub outcome: PassageOutcome,
    /// When.
    pub at: SystemTime,
}

/// Upper bounds (seconds) of the frame-time histogram's buckets.
pub const FRAME_SECONDS_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0];

/// How long frames take from the camera to the decision: a cumulative histogram, as Prometheus reads one. It
/// counts every frame, so it says nothing about who came or when.
#[derive(Debug, Default)]
pub struct FrameTimes {
    buckets: [AtomicU64; FRAME_SECONDS_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl FrameTimes {
    /// Counts one frame that took `took`.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(FRAME_SECONDS_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Frames at or under each bound, in the order of [`FRAME_SECONDS_BUCKETS`].
    pub fn cumulative(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }

    /// Frames counted.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Their total time, seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// Live counters, readable while the gate runs.
#[derive(Debug, Default)]
pub struct GateStatus {
    pub(super) frames: AtomicU64,
    pub(super) admissions: AtomicU64,
    pub(super) refusals: AtomicU64,
    pub(super) gallery_changes: AtomicU64,
    pub(super) faces_checked: AtomicU64,
    pub(super) passes_read: AtomicU64,
    pub(super) door_alarms: AtomicU64,
    pub(super) keypad_alarms: AtomicU64,
    pub(super) worker_faults: AtomicU64,
    pub(super) camera_up: AtomicBool,
    pub(super) models_up: AtomicBool,
    pub(super) frame_times: FrameTimes,
    pub(super) door: Arc<DoorState>,
    pub(super) intent_open: AtomicBool,
    recent: Mutex<VecDeque<RecentPassage>>,
    link: OnceLock<Arc<LinkHealth>>,
}

impl GateStatus {
    /// Frames read and handled by the camera workers (a frame lost to a worker fault included).
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
    /// Admissions so far (all methods).
    pub fn admissions(&self) -> u64 {
        self.admissions.load(Ordering::Relaxed)
    }
    /// Refusals so far (all methods).
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }
    /// New galleries the frame workers started matching against (enrolments, revocations, reloads).
    pub fn reloads(&self) -> u64 {
        self.gallery_changes.load(Ordering::Relaxed)
    }
    /// Frames that went through face matching (only while intent was shown).
    pub fn faces_checked(&self) -> u64 {
        self.faces_checked.load(Ordering::Relaxed)
    }
    /// Visitor passes read (camera and scanner), valid or not.
    pub fn passes_read(&self) -> u64 {
        self.passes_read.load(Ordering::Relaxed)
    }
    /// Forced-door and held-open alarms.
    pub fn door_alarms(&self) -> u64 {
        self.door_alarms.load(Ordering::Relaxed)
    }
    /// Times the keypad's PIN failure budget was spent (someone guessing PINs).
    pub fn keypad_alarms(&self) -> u64 {
        self.keypad_alarms.load(Ordering::Relaxed)
    }
    /// Frames a frame worker failed on (a panic): each cost that frame only.
    pub fn worker_faults(&self) -> u64 {
        self.worker_faults.load(Ordering::Relaxed)
    }
    /// Whether the camera gives frames (false before the first, while it is down, and without one).
    pub fn camera_up(&self) -> bool {
        self.camera_up.load(Ordering::Relaxed)
    }
    /// Whether the face models loaded.
    pub fn models_up(&self) -> bool {
        self.models_up.load(Ordering::Relaxed)
    }
    /// Each frame's time from the camera to the decision.
    pub fn frame_times(&self) -> &FrameTimes {
        &self.frame_times
    }
    /// The door: contact and relay.
    pub fn door(&self) -> &DoorState {
        &self.door
    }
    /// Whether faces are matched now (the intent window is open, or `intent = "always"`).
    pub fn intent_open(&self) -> bool {
        self.intent_open.load(Ordering::Relaxed)
    }
    /// The compound link's health, once the daemon started one.
    pub fn link(&self) -> Option<&LinkHealth> {
        self.link.get().map(|link| &**link)
    }
    /// Where the daemon's compound link reports (set once).
    pub fn set_link(&self, link: Arc<LinkHealth>) {
        let _ = self.link.set(link);
    }
    /// The last [`RECENT_PASSAGES`] passages, newest first.
    pub fn recent(&self) -> Vec<RecentPassage> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner).iter().rev().copied().collect()
    }
    pub(super) fn note_passage(&self, method: EntryMethod, outcome: PassageOutcome) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == RECENT_PASSAGES {
            recent.pop_front();
        }
        recent.push_back(RecentPassage { method, outcome, at: SystemTime::now() });
    }
}
