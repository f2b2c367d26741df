//! The event loop: turns the threads' events into decisions ([`crate::policy::decide`]), tells the door task to open,
//! shows the result on the lights, tells an existing controller the method over Wiegand, and counts the
//! passage in the registry's tally.
//!
//! It never awaits SQLite, argon2id or the registry: a face's slot is checked against the published gallery
//! snapshot, counts and template uses go into the tally (written by the registry's owner when the database
//! lets it). Logs and counts carry the method and the outcome, never who passed.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::door::{DoorCommand, DoorNews, DoorState};
use super::{lock, Admission, FrameClock, GateError, GateReport, GateSettings, Input, Shared};
use crate::devices::contacts::{Contact, ContactChange};
use crate::devices::{ActuateError, Indicator, MethodCards, Signal, Wiegand26};
use crate::policy::decide::{Decider, Decision, DoorAlarm, FaceIntent, GateEvent, PinCheck};
use crate::policy::lockout::KeypadAlarm;
use crate::policy::passage::EntryMethod;
use crate::store::unix_now;

pub(super) struct EventLoop<'a> {
    pub(super) shared: &'a Shared,
    pub(super) settings: GateSettings,
    pub(super) door: mpsc::UnboundedSender<DoorCommand>,
    pub(super) door_state: Arc<DoorState>,
    pub(super) guard: Option<Arc<super::GuardDesk>>,
    pub(super) indicator: Option<Box<dyn Indicator>>,
    pub(super) wiegand: Option<(std::sync::mpsc::Sender<Wiegand26>, MethodCards)>,
    pub(super) decider: Decider,
    pub(super) scanning: bool,
    pub(super) gallery_version: u64,
    pub(super) report: GateReport,
}

impl EventLoop<'_> {
    pub(super) async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<Input>,
        news: &mut mpsc::UnboundedReceiver<DoorNews>,
        door_task: &mut tokio::task::JoinHandle<Result<(), ActuateError>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GateError> {
        let mut housekeeping = tokio::time::interval(Duration::from_millis(250));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                ended = &mut *door_task => {
                    // The door task ends only on a relay failure: the gate cannot work without its lock.
                    return match ended {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.into()),
                        Err(e) => Err(GateError::DoorTask(e)),
                    };
                }
                news = news.recv() => match news {
                    Some(DoorNews::Alarm(alarm)) => self.door_alarm(alarm),
                    Some(DoorNews::Shut) => self.show(Signal::Ready),
                    None => {}
                },
                _ = housekeeping.tick() => self.housekeeping(),
                input = rx.recv() => match input {
                    None => return Ok(()),
                    Some(Input::Fault(what)) => {
                        tracing::warn!("{what}");
                        self.show(Signal::Fault);
                    }
                    Some(Input::FaceIdle) => self.decider.reset_faces(),
                    Some(Input::Contact(change)) => self.contact(change),
                    Some(Input::Event { event, frame }) => self.event(event, frame),
                    Some(Input::KeypadAlarm(alarm)) => self.keypad_alarm(alarm),
                },
            }
        }
    }

    pub(super) fn show(&mut self, signal: Signal) {
        if let Some(indicator) = &mut self.indicator {
            if let Err(e) = indicator.show(signal) {
                tracing::warn!("status lights: {e}");
            }
        }
    }

    fn open_door(&mut self) {
        // Unbounded and never awaited: the door task drains it at once.
        if self.door.send(DoorCommand::Open).is_err() {
            tracing::error!("the door task has stopped: cannot open");
        }
    }

    fn housekeeping(&mut self) {
        let now = self.shared.now();
        let version = self.shared.registry.gallery().version();
        if version != self.gallery_version {
            self.gallery_version = version;
            self.shared.status.gallery_changes.fetch_add(1, Ordering::Relaxed);
        }
        let scanning = self.settings.intent != FaceIntent::Always && lock(&self.shared.intent).face_allowed(now);
        if self.scanning && !scanning && !self.door_state.is_open() {
            self.show(Signal::Ready);
        }
        self.scanning = scanning;
        let window_open = self.settings.intent == FaceIntent::Always || scanning;
        self.shared.status.intent_open.store(window_open, Ordering::Relaxed);
    }

    fn door_alarm(&mut self, alarm: DoorAlarm) {
        self.shared.status.door_alarms.fetch_add(1, Ordering::Relaxed);
        match alarm {
            DoorAlarm::Forced => tracing::warn!("door opened without a release: forced or a faulty lock"),
            DoorAlarm::HeldOpen => tracing::warn!("door held open too long"),
        }
        self.show(Signal::Alarm);
    }

    fn keypad_alarm(&mut self, alarm: KeypadAlarm) {
        self.shared.status.keypad_alarms.fetch_add(1, Ordering::Relaxed);
        let window = match alarm {
            KeypadAlarm::HourlyBudgetSpent => "hour",
            KeypadAlarm::DailyBudgetSpent => "day",
        };
        tracing::warn!(
            "the keypad's PIN failures for the {window} are spent: someone may be guessing; every code is paused \
             until the window frees, face, passes and the guard keep working"
        );
        self.show(Signal::Alarm);
    }

    fn contact(&mut self, change: ContactChange) {
        let now = self.shared.now();
        match (change.contact, change.active) {
            (Contact::ExitButton, true) => self.event(GateEvent::ExitButton, None),
            (Contact::GuardCall, true) => {
                tracing::info!("guard called");
                if let Some(desk) = &self.guard {
                    desk.called(unix_now());
                }
                self.show(Signal::GuardCalled);
            }
            (Contact::GuardRelease, true) => self.event(GateEvent::GuardOpen, None),
            (Contact::FaceButton, true) => {
                if lock(&self.shared.intent).button(now) {
                    self.show(Signal::Scanning);
                }
            }
            (Contact::Presence, present) => {
                if lock(&self.shared.intent).presence(present, now) {
                    self.show(Signal::Scanning);
                }
            }
            (Contact::DoorContact, open) => {
                if self.door.send(DoorCommand::Contact(open)).is_err() {
                    tracing::error!("the door task has stopped");
                }
            }
            (_, false) => {}
        }
    }

    fn event(&mut self, mut event: GateEvent, frame: Option<FrameClock>) {
        if let (GateEvent::FaceFrame(_), Some(clock)) = (&event, &frame) {
            // Workers decide frames in parallel: one read before a face admission may arrive after it, when
            // the decider has been reset. Judged by when it was read, it falls in the cooldown (or the closed
            // window) and must not admit the same approach a second time.
            let read_at = clock.read_at.saturating_duration_since(self.shared.origin);
            if !lock(&self.shared.intent).face_allowed(read_at) {
                return;
            }
        }
        let gallery = self.shared.registry.gallery();
        if let GateEvent::FaceFrame(seen) = &mut event {
            // A frame matched against an older gallery may name a resident revoked since: no match now.
            if seen.slot.is_some_and(|slot| !gallery.contains(slot)) {
                seen.slot = None;
            }
        }
        let (decision, slot) = self.decider.decide(&event);
        if matches!(decision, Decision::Admit(_) | Decision::Release) {
            self.open_door();
        }
        let tally = self.shared.registry.tally();
        match decision {
            Decision::Admit(method) => {
                self.report.admissions.push(Admission {
                    method,
                    frame: frame.map(|f| f.n),
                    latency: frame.map(|f| f.read_at.elapsed()),
                    first_frame: frame.map(|f| f.approach.0),
                    from_first_frame: frame.map(|f| f.approach.1.elapsed()),
                });
                self.shared.status.admissions.fetch_add(1, Ordering::Relaxed);
                self.show(Signal::Granted);
                if let Some((frames, cards)) = &self.wiegand {
                    let _ = frames.send(cards.card_for(method));
                }
                if method == EntryMethod::Face {
                    lock(&self.shared.intent).admitted(self.shared.now());
                    self.decider.reset_faces();
                }
                if let Some(resident) = slot.and_then(|slot| gallery.resident(slot)) {
                    tally.note_used(resident, unix_now());
                }
            }
            Decision::Refuse(_) => {
                self.report.refusals += 1;
                self.shared.status.refusals.fetch_add(1, Ordering::Relaxed);
                let locked_out = matches!(event, GateEvent::Pin(PinCheck::LockedOut(_)));
                self.show(if locked_out { Signal::LockedOut } else { Signal::Refused });
            }
            Decision::NotLive => {
                self.report.refusals += 1;
                self.shared.status.refusals.fetch_add(1, Ordering::Relaxed);
                tracing::info!("a matching face was not confirmed live: refused; PIN, pass and guard remain");
                // No light and no buzz: a face that matches nobody gets none either, and a passer-by holding
                // up a photo must not learn from the gate whether that person lives here.
            }
            Decision::Release => self.show(Signal::Granted),
            Decision::Wait => {}
        }
        if let Some((method, outcome)) = decision.passage() {
            tracing::info!(method = method.as_str(), outcome = outcome.as_str(), "passage");
            self.shared.status.note_passage(method, outcome);
            tally.count(unix_now(), method, outcome);
        }
    }
}
