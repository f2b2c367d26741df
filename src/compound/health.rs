//! Link health: whether the face path may match, as the compound link sees it. The link writes it; the gate's
//! frame workers read it before every face, lock-free. PIN, passes and the guard never read it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether the face path may match, as the link sees it; shared with the gate's frame workers.
#[derive(Debug)]
pub struct LinkHealth {
    origin: Instant,
    limit: Duration,
    /// Milliseconds since `origin` when the broker last answered; `u64::MAX` before the first answer.
    last_heard_ms: AtomicU64,
    /// Applied everything the broker held at the last (re)connection.
    pub(super) caught_up: AtomicBool,
    /// The client holds a connection now.
    pub(super) connected: AtomicBool,
    /// Milliseconds since `origin` since when this gate's announcements cannot be stored, per [`Unstored`]
    /// cause; `u64::MAX` while they can.
    unstored_since_ms: [AtomicU64; 2],
}

/// Why the broker cannot store this gate's announcements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unstored {
    /// It refused or did not acknowledge a publication (cleared by the next one it stores).
    Refused,
    /// Its stream is full, or not configured as the compound needs (cleared when it no longer is).
    Stream,
}

impl LinkHealth {
    /// A link not yet caught up: faces wait for the first synchronisation.
    pub fn new(offline_limit: Duration) -> Self {
        Self {
            origin: Instant::now(),
            limit: offline_limit,
            last_heard_ms: AtomicU64::new(u64::MAX),
            caught_up: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            unstored_since_ms: [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)],
        }
    }

    /// Faces may be matched only when every announcement the broker held at the last (re)connection has been
    /// applied, the broker answered within the offline limit, and it has not been refusing this gate's
    /// announcements for that long (a revocation here that the other gates cannot hear is as bad as one there
    /// this gate cannot hear). PIN, passes and the guard never ask.
    pub fn face_matching_allowed(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
            && self.silent_for().is_some_and(|silent| silent < self.limit)
            && self.unstored_for().is_none_or(|unstored| unstored < self.limit)
    }

    /// How long this gate's announcements have not been stored by the broker, for either cause (`None`:
    /// they are).
    pub fn unstored_for(&self) -> Option<Duration> {
        let since = self.unstored_since_ms.iter().map(|a| a.load(Ordering::Acquire)).min().unwrap_or(u64::MAX);
        (since != u64::MAX).then(|| self.origin.elapsed().saturating_sub(Duration::from_millis(since)))
    }

    /// The broker cannot store this gate's announcements, for `cause`: counted from the first time.
    pub(super) fn unstored(&self, cause: Unstored) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let slot = &self.unstored_since_ms[cause as usize];
        let _ = slot.compare_exchange(u64::MAX, ms, Ordering::AcqRel, Ordering::Acquire);
    }

    /// `cause` no longer stands.
    pub(super) fn stored(&self, cause: Unstored) {
        self.unstored_since_ms[cause as usize].store(u64::MAX, Ordering::Release);
    }

    /// How long since the broker last answered (`None`: never, since start).
    pub fn silent_for(&self) -> Option<Duration> {
        let heard = self.last_heard_ms.load(Ordering::Acquire);
        (heard != u64::MAX).then(|| self.origin.elapsed().saturating_sub(Duration::from_millis(heard)))
    }

    /// Whether every announcement the broker held at the last (re)connection has been applied.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Whether the client holds a connection to the broker now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The broker answered just now.
    pub(super) fn heard(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_heard_ms.store(ms, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[test]
    fn faces_wait_for_the_first_sync_and_stop_past_the_offline_limit() {
        let health = LinkHealth::new(Duration::from_millis(150));
        assert!(!health.face_matching_allowed(), "before any word from the broker");
        health.heard();
        assert!(!health.face_matching_allowed(), "heard but not caught up");
        health.caught_up.store(true, Ordering::Release);
        assert!(health.face_matching_allowed());
        std::thread::sleep(Duration::from_millis(200));
        assert!(!health.face_matching_allowed(), "silent past the limit");
        assert!(health.silent_for().is_some_and(|d| d >= Duration::from_millis(150)));
        health.heard();
        assert!(health.face_matching_allowed());
        // The broker answers but will not keep this gate's announcements: faces stop past the same limit.
        health.unstored(Unstored::Refused);
        health.unstored(Unstored::Stream);
        assert!(health.face_matching_allowed(), "within the limit");
        std::thread::sleep(Duration::from_millis(200));
        health.heard();
        assert!(!health.face_matching_allowed(), "announcements unstored past the limit");
        health.stored(Unstored::Refused);
        assert!(!health.face_matching_allowed(), "the stream is still full");
        health.stored(Unstored::Stream);
        assert!(health.face_matching_allowed());
    }
}
