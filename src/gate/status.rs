//! The gate's live counters, readable while it runs (no identity in any of them).

use std::sync::atomic::{AtomicU64, Ordering};

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
}
