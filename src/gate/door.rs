//! The door task: the only owner of the relay, with the pulse timing ([`DoorTiming`]) and the door contact's
//! watch ([`DoorMonitor`]).
//!
//! It runs on its own task and takes commands over a channel; it never awaits SQLite, argon2id or the registry,
//! so a busy database, a PIN check or a revocation can never hold the door open past `max_open` or delay an
//! opening. It locks the relay when it starts, at every pulse's end, when the door shuts again, and when it
//! stops, whatever stopped it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::devices::{ActuateError, Relay};
use crate::policy::decide::{DoorAlarm, DoorMonitor, DoorTiming};

/// What the event loop asks of the door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorCommand {
    /// An admission or a release: unlock for a pulse (extended by a later one, never past `max_open`).
    Open,
    /// The door contact changed (`true`: open).
    Contact(bool),
}

/// What the door tells the event loop (for the lights and the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorNews {
    /// Forced or held open.
    Alarm(DoorAlarm),
    /// The door shut again.
    Shut,
}

/// Door timing settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoorSettings {
    /// How long the relay is energised per admission.
    pub pulse: Duration,
    /// The longest the relay stays energised, however many admissions follow.
    pub max_open: Duration,
    /// An opening this soon after the lock closed again is not a forced door.
    pub grace: Duration,
    /// The door may stay open this long before the alarm sounds.
    pub held_alarm: Duration,
}

/// The door now: its contact (read by the event loop for the lights) and the relay (for the status).
#[derive(Debug, Default)]
pub struct DoorState {
    open: AtomicBool,
    unlocked: AtomicBool,
}

impl DoorState {
    /// True while the door contact reads open.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// True while the relay holds the lock released.
    pub fn is_unlocked(&self) -> bool {
        self.unlocked.load(Ordering::Relaxed)
    }
}

/// Runs the door until the command channel closes; the relay is locked on every way out.
pub async fn run(
    mut relay: Box<dyn Relay>,
    settings: DoorSettings,
    mut commands: mpsc::UnboundedReceiver<DoorCommand>,
    news: mpsc::UnboundedSender<DoorNews>,
    state: Arc<DoorState>,
) -> Result<(), ActuateError> {
    let origin = Instant::now();
    let mut door = Door {
        relay: &mut *relay,
        timing: DoorTiming::new(settings.pulse, settings.max_open),
        monitor: DoorMonitor::new(settings.grace, settings.held_alarm),
        news,
        state,
        origin,
    };
    let outcome = door.run(&mut commands).await;
    // Fail-secure, whatever ended the loop.
    let locked = relay.set_unlocked(false);
    outcome.and(locked)
}

struct Door<'a> {
    relay: &'a mut dyn Relay,
    timing: DoorTiming,
    monitor: DoorMonitor,
    news: mpsc::UnboundedSender<DoorNews>,
    state: Arc<DoorState>,
    origin: Instant,
}

impl Door<'_> {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    async fn run(&mut self, commands: &mut mpsc::UnboundedReceiver<DoorCommand>) -> Result<(), ActuateError> {
        self.set_lock(false)?;
        let mut watch = tokio::time::interval(Duration::from_millis(250));
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let close_in = self.timing.close_at().map(|at| at.saturating_sub(self.now()));
            tokio::select! {
                biased;
                () = tokio::time::sleep(close_in.unwrap_or(Duration::from_secs(3_600))), if close_in.is_some() => {
                    if self.timing.tick(self.now()) {
                        self.set_lock(false)?;
                    }
                }
                command = commands.recv() => match command {
                    None => return Ok(()),
                    Some(DoorCommand::Open) => {
                        if self.timing.open(self.now()) {
                            self.set_lock(true)?;
                        }
                    }
                    Some(DoorCommand::Contact(open)) => {
                        self.state.open.store(open, Ordering::Relaxed);
                        if let Some(alarm) = self.monitor.contact(open, self.now()) {
                            let _ = self.news.send(DoorNews::Alarm(alarm));
                        }
                        // Shut again after an opening: relock now rather than at the pulse's end (tailgating).
                        if !open && self.timing.end_now() {
                            self.set_lock(false)?;
                        }
                        if !open {
                            let _ = self.news.send(DoorNews::Shut);
                        }
                    }
                },
                _ = watch.tick() => {
                    if let Some(alarm) = self.monitor.tick(self.now()) {
                        let _ = self.news.send(DoorNews::Alarm(alarm));
                    }
                }
            }
        }
    }

    fn set_lock(&mut self, unlocked: bool) -> Result<(), ActuateError> {
        self.relay.set_unlocked(unlocked)?;
        self.state.unlocked.store(unlocked, Ordering::Relaxed);
        self.monitor.lock_changed(unlocked, self.now());
        Ok(())
    }
}

/// Waits for the door task to end once its command channel is closed, and says whether it left the relay
/// locked. A task the event loop already saw end is not awaited again (its result was handled there).
pub(super) async fn wait(task: tokio::task::JoinHandle<Result<(), ActuateError>>) -> Result<(), super::GateError> {
    if task.is_finished() {
        return Ok(());
    }
    match task.await {
        Ok(result) => result.map_err(super::GateError::from),
        Err(e) => Err(super::GateError::DoorTask(e)),
    }
}
