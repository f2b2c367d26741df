//! The registry's single owner inside the daemon: one thread holds the only [`Registry`] of the process (its
//! keys, its write connection, the audit chain) and runs every change to it, one at a time.
//!
//! The portal, the compound link, the keypad and the pass readers send it jobs through a [`RegistryHandle`]
//! and await typed replies; the frame workers never ask it anything, they read the [`GallerySnapshot`] it
//! publishes. Passages and template uses go into a [`PassageTally`] that the door's event loop adds to without
//! waiting, and that the owner writes when the database lets it: late is fine, lost or twice is not.
//!
//! Besides the jobs it follows changes other processes commit (the CLI: reload when `PRAGMA data_version`
//! moves), enforces retention (at start, then every `expire_every`), and flushes the tally. It must never run
//! argon2id for a caller (PIN and password checks are verified by the caller with what the job returned) and
//! never hand out the master key.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::{GallerySnapshot, Registry};
use crate::policy::passage::{EntryMethod, PassageOutcome};
use crate::store::unix_now;

/// Why a job got no reply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OwnerError {
    /// The owner has stopped (the daemon is shutting down).
    #[error("the registry has stopped (the daemon is shutting down); try again after it restarts")]
    Gone,
    /// The job panicked; the owner reloaded from the store and goes on.
    #[error("the registry operation failed unexpectedly (logged as a fault); try again")]
    Panicked,
}

/// How often the owner does its own work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerSettings {
    /// How often `PRAGMA data_version` is read to follow other processes' changes (a cheap read).
    pub follow_every: Duration,
    /// How often retention is enforced (also once at start).
    pub expire_every: Duration,
    /// How often the tally is written when it holds something.
    pub flush_every: Duration,
    /// At shutdown, how long a busy database may hold up the last write of the tally.
    pub drain_within: Duration,
}

impl Default for OwnerSettings {
    fn default() -> Self {
        Self {
            // A change made by the CLI reaches the gallery within a quarter second.
            follow_every: Duration::from_millis(250),
            expire_every: Duration::from_secs(86_400),
            flush_every: Duration::from_secs(1),
            drain_within: Duration::from_secs(10),
        }
    }
}

/// Counters of the owner's own work, readable while it runs.
#[derive(Debug, Default)]
pub struct OwnerStatus {
    reloads: AtomicU64,
    expired: AtomicU64,
    expiry_runs: AtomicU64,
    flush_failures: AtomicU64,
    faults: AtomicU64,
}

impl OwnerStatus {
    /// Reloads after another process changed the store.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }
    /// Templates shredded by retention since start.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }
    /// Times retention was enforced since start.
    pub fn expiry_runs(&self) -> u64 {
        self.expiry_runs.load(Ordering::Relaxed)
    }
    /// Tally writes the database refused (kept and retried).
    pub fn flush_failures(&self) -> u64 {
        self.flush_failures.load(Ordering::Relaxed)
    }
    /// Jobs that panicked.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }
}

/// Passages and template uses not yet written: aggregated in memory (hour, method, outcome), so however long
/// the database is busy the tally stays small and nothing is dropped. Adding never waits on anything but a
/// lock held for a map insert.
#[derive(Debug, Default)]
pub struct PassageTally {
    inner: Mutex<TallyInner>,
}

#[derive(Debug, Default)]
struct TallyInner {
    counts: BTreeMap<(i64, EntryMethod, PassageOutcome), u64>,
    /// Resident -> latest use (Unix seconds). Only for retention; never a trail.
    used: BTreeMap<String, i64>,
}

impl PassageTally {
    fn lock(&self) -> std::sync::MutexGuard<'_, TallyInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one passage at `at` (Unix seconds).
    pub fn count(&self, at: i64, method: EntryMethod, outcome: PassageOutcome) {
        let hour = at - at.rem_euclid(3_600);
        *self.lock().counts.entry((hour, method, outcome)).or_default() += 1;
    }

    /// Notes that a resident's template opened the gate at `at`, for retention.
    pub fn note_used(&self, resident_id: &str, at: i64) {
        let mut inner = self.lock();
        let latest = inner.used.entry(resident_id.to_owned()).or_insert(at);
        *latest = (*latest).max(at);
    }

    /// Passages not yet written.
    pub fn pending(&self) -> u64 {
        self.lock().counts.values().sum()
    }

    fn is_empty(&self) -> bool {
        let inner = self.lock();
        inner.counts.is_empty() && inner.used.is_empty()
    }

    /// Writes what is pending in one transaction; on success removes exactly what was written (passages
    /// counted meanwhile stay), on failure keeps everything.
    fn flush(&self, registry: &mut Registry, wait: Duration) -> crate::store::Result<()> {
        let (counts, used) = {
            let inner = self.lock();
            let counts: Vec<_> = inner.counts.iter().map(|(&(h, m, o), &n)| (h, m, o, n)).collect();
            let used: Vec<_> = inner.used.iter().map(|(id, &at)| (id.clone(), at)).collect();
            (counts, used)
        };
        if counts.is_empty() && used.is_empty() {
            return Ok(());
        }
        registry.store_mut().record_tally(&counts, &used, wait)?;
        let mut inner = self.lock();
        for (h, m, o, n) in counts {
            if let Some(left) = inner.counts.get_mut(&(h, m, o)) {
                *left -= n.min(*left);
                if *left == 0 {
                    inner.counts.remove(&(h, m, o));
                }
            }
        }
        for (id, at) in used {
            if inner.used.get(&id).is_some_and(|&latest| latest <= at) {
                inner.used.remove(&id);
            }
        }
        Ok(())
    }
}

type Job = Box<dyn FnOnce(&mut Registry) + Send>;

enum Message {
    Run(Job),
    Stop,
}

/// Sends jobs to the owner and reads what it publishes. Cheap to clone; every part of the daemon gets one.
#[derive(Clone)]
pub struct RegistryHandle {
    jobs: mpsc::Sender<Message>,
    gallery: Arc<ArcSwap<GallerySnapshot>>,
    tally: Arc<PassageTally>,
    changes: tokio::sync::watch::Receiver<u64>,
    status: Arc<OwnerStatus>,
}

impl std::fmt::Debug for RegistryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryHandle").finish_non_exhaustive()
    }
}

impl RegistryHandle {
    /// Runs `job` on the owner and awaits its reply (for async callers: the portal, the compound link).
    pub async fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Registry) -> T + Send + 'static,
    ) -> Result<T, OwnerError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(job, reply)?;
        answer.await.map_err(|_| OwnerError::Gone)?
    }

    /// Runs `job` on the owner and waits for its reply (for threads: the keypad, the pass scanner, the CLI's
    /// tests). Never call it from an async task.
    pub fn call_blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Registry) -> T + Send + 'static,
    ) -> Result<T, OwnerError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(job, reply)?;
        answer.blocking_recv().map_err(|_| OwnerError::Gone)?
    }

    /// Queues `job` without waiting for it (its result goes wherever the job sends it).
    pub fn submit(&self, job: impl FnOnce(&mut Registry) + Send + 'static) -> Result<(), OwnerError> {
        self.jobs.send(Message::Run(Box::new(job))).map_err(|_| OwnerError::Gone)
    }

    fn send<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Registry) -> T + Send + 'static,
        reply: tokio::sync::oneshot::Sender<Result<T, OwnerError>>,
    ) -> Result<(), OwnerError> {
        self.submit(move |registry| match std::panic::catch_unwind(AssertUnwindSafe(|| job(registry))) {
            Ok(value) => {
                let _ = reply.send(Ok(value));
            }
            Err(panic) => {
                let _ = reply.send(Err(OwnerError::Panicked));
                // On to the owner, which counts the fault and reloads from the store.
                std::panic::resume_unwind(panic)
            }
        })
    }

    /// The gallery as published now (no lock: an `Arc` to an immutable snapshot).
    pub fn gallery(&self) -> Arc<GallerySnapshot> {
        self.gallery.load_full()
    }

    /// Where passages and template uses are counted without waiting.
    pub fn tally(&self) -> &PassageTally {
        &self.tally
    }

    /// Raised after every job that wrote and every reload: whoever keeps something derived from the store (the
    /// compound link's outbox) knows when to look again.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.clone()
    }

    /// The owner's counters.
    pub fn status(&self) -> &OwnerStatus {
        &self.status
    }
}

/// The owner thread; stop it with [`RegistryOwner::stop`] (dropping it stops it too, without waiting).
pub struct RegistryOwner {
    handle: RegistryHandle,
    thread: Option<std::thread::JoinHandle<Registry>>,
}

impl RegistryOwner {
    /// Moves `registry` onto its own thread.
    pub fn spawn(mut registry: Registry, settings: OwnerSettings) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        let gallery = registry.share_gallery();
        let tally = Arc::new(PassageTally::default());
        let (changed, changes) = tokio::sync::watch::channel(0u64);
        let status = Arc::new(OwnerStatus::default());
        let handle = RegistryHandle { jobs, gallery, tally: tally.clone(), changes, status: status.clone() };
        let thread = std::thread::Builder::new().name("registry".into()).spawn(move || {
            let mut owner = Owner { registry, settings, tally, changed, status };
            owner.run(&queue);
            owner.registry
        })?;
        Ok(Self { handle, thread: Some(thread) })
    }

    /// A handle for one part of the daemon.
    pub fn handle(&self) -> RegistryHandle {
        self.handle.clone()
    }

    /// Finishes the queued jobs, writes the tally (retrying a busy database for `drain_within`), stops the
    /// thread and returns the registry. Blocks: call it from `spawn_blocking` in async code.
    pub fn stop(mut self) -> Option<Registry> {
        let _ = self.handle.jobs.send(Message::Stop);
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for RegistryOwner {
    fn drop(&mut self) {
        let _ = self.handle.jobs.send(Message::Stop);
    }
}

struct Owner {
    registry: Registry,
    settings: OwnerSettings,
    tally: Arc<PassageTally>,
    changed: tokio::sync::watch::Sender<u64>,
    status: Arc<OwnerStatus>,
}

impl Owner {
    fn run(&mut self, queue: &mpsc::Receiver<Message>) {
        self.log_gallery("gallery loaded");
        let start = Instant::now();
        let (mut next_follow, mut next_flush, mut next_expiry) = (start, start, start);
        loop {
            let now = Instant::now();
            if now >= next_expiry {
                self.expire();
                next_expiry = now + self.settings.expire_every;
            }
            if now >= next_follow {
                self.follow();
                next_follow = now + self.settings.follow_every;
            }
            if now >= next_flush {
                self.flush();
                next_flush = now + self.settings.flush_every;
            }
            let wake = next_follow.min(next_flush).min(next_expiry);
            match queue.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(Message::Run(job)) => self.run_job(job),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        self.drain();
    }

    fn run_job(&mut self, job: Job) {
        let before = self.registry.gallery().version();
        let writes = self.registry.store().writes();
        let registry = &mut self.registry;
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(registry))).is_err() {
            self.status.faults.fetch_add(1, Ordering::Relaxed);
            tracing::error!("a registry operation panicked; reloading from the store");
            if let Err(e) = self.registry.reload() {
                tracing::error!("reloading the registry failed: {e}");
            }
        }
        // Only a job that wrote tells the others to look again (a read, such as the link's look at the outbox,
        // must not make it look again forever).
        if self.registry.store().writes() != writes {
            self.changed.send_modify(|n| *n += 1);
        }
        if self.registry.gallery().version() != before {
            self.log_gallery("gallery changed");
        }
    }

    /// Follows changes other processes committed (the CLI, a second daemon by mistake).
    fn follow(&mut self) {
        match self.registry.reload_if_changed() {
            Ok(false) => return,
            Ok(true) => {
                self.status.reloads.fetch_add(1, Ordering::Relaxed);
                for failure in self.registry.load_failures() {
                    tracing::warn!("{failure}");
                }
                self.log_gallery("gallery reloaded after a change by another process");
            }
            Err(e) => tracing::error!("gallery reload failed, keeping the previous one: {e}"),
        }
        self.changed.send_modify(|n| *n += 1);
    }

    fn expire(&mut self) {
        self.status.expiry_runs.fetch_add(1, Ordering::Relaxed);
        match self.registry.expire(unix_now()) {
            Ok(receipts) if receipts.is_empty() => {}
            Ok(receipts) => {
                self.status.expired.fetch_add(receipts.len() as u64, Ordering::Relaxed);
                tracing::info!(
                    expired = receipts.len(),
                    max_unused_days = self.registry.policy().max_unused_secs / 86_400,
                    "retention: templates unused past the limit shredded (keys rotated)"
                );
                self.changed.send_modify(|n| *n += 1);
                self.log_gallery("gallery changed");
            }
            Err(e) => tracing::error!("retention could not run now (retried at the next run): {e}"),
        }
    }

    fn flush(&mut self) {
        if self.tally.is_empty() {
            return;
        }
        // A short wait: the owner also answers the keypad, and the next flush comes within a second.
        if let Err(e) = self.tally.flush(&mut self.registry, Duration::from_millis(50)) {
            if self.status.flush_failures.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(pending = self.tally.pending(), "passage counts kept in memory for now: {e}");
            }
        }
    }

    /// The last write of the tally at shutdown: a busy database gets `drain_within` to let go.
    fn drain(&mut self) {
        let deadline = Instant::now() + self.settings.drain_within;
        while !self.tally.is_empty() {
            match self.tally.flush(&mut self.registry, Duration::from_millis(200)) {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => {
                    tracing::error!(pending = self.tally.pending(), "passage counts lost at shutdown: {e}");
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn log_gallery(&self, what: &str) {
        let gallery = self.registry.gallery();
        tracing::info!(matchable = gallery.len(), fingerprint = %gallery.fingerprint(), "{what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{MasterKeySource, RegistryPolicy};

    #[test]
    fn a_job_that_panics_is_answered_and_the_owner_goes_on_then_drains_the_tally() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKeySource::file(dir.path().join("keys/master.key"));
        let db = dir.path().join("data/facegate.sqlite");
        let registry = Registry::open(&db, &key, RegistryPolicy::default(), unix_now()).unwrap();
        let owner = RegistryOwner::spawn(registry, OwnerSettings::default()).unwrap();
        let handle = owner.handle();
        let panicked: Result<(), OwnerError> = handle.call_blocking(|_| panic!("injected fault"));
        assert_eq!(panicked, Err(OwnerError::Panicked));
        assert_eq!(handle.call_blocking(|r| r.gallery_len()), Ok(0));
        assert_eq!(handle.status().faults(), 1);
        // Counted and not yet written: the owner writes it when it stops, at the latest.
        handle.tally().count(unix_now(), EntryMethod::Guard, PassageOutcome::Opened);
        let registry = owner.stop().unwrap();
        let counts = registry.store().passage_counts(0, i64::MAX).unwrap();
        assert_eq!(counts.iter().map(|c| c.count).sum::<i64>(), 1);
        assert_eq!(handle.call_blocking(|r| r.gallery_len()), Err(OwnerError::Gone));
    }

    #[test]
    fn a_tally_keeps_what_was_counted_while_a_write_was_under_way() {
        let tally = PassageTally::default();
        for _ in 0..3 {
            tally.count(7_300, EntryMethod::Pin, PassageOutcome::Opened);
        }
        tally.count(7_300, EntryMethod::Guard, PassageOutcome::Opened);
        assert_eq!(tally.pending(), 4);
        let inner = tally.lock();
        assert_eq!(inner.counts.get(&(7_200, EntryMethod::Pin, PassageOutcome::Opened)), Some(&3));
    }
}
