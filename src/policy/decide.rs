//! Decide: what the gate does about an event. Pure: values in, values out, no clock, no I/O.
//!
//! Every way in is a variant of one closed [`GateEvent`] enum, so the face is one method among equals and the
//! non-biometric ones never wait on the camera or the model. A face opens the gate only after the same
//! resident matched in several frames; a PIN check arrives already decided (lockouts are
//! [`super::lockout`]'s); the door itself opens for a pulse and is never left open longer than the configured
//! maximum. This module never sees an image, an embedding or a resident's identity beyond the gallery slot
//! that matched.

use std::time::Duration;

use crate::policy::matching::{FrameAgreement, Slot};
use crate::policy::passage::{EntryMethod, PassageOutcome};

/// Something that happened at the gate.
#[derive(Clone, Debug, PartialEq)]
pub enum GateEvent {
    /// One frame's identification and liveness.
    FaceFrame(FaceObservation),
    /// A PIN was entered and checked.
    Pin(PinCheck),
    /// A visitor pass was shown and checked.
    VisitorPass(PassCheck),
    /// The guard opened the gate (after a call).
    GuardOpen,
    /// Someone pressed the exit button inside.
    ExitButton,
}

/// What one frame showed of the face in front of the gate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaceObservation {
    /// The matched gallery slot, or `None` (no face, or no match).
    pub slot: Option<Slot>,
    /// The live probability of that face (0..1), when the liveness check ran.
    pub live: Option<f32>,
}

impl FaceObservation {
    /// A frame that matched `slot` (or nothing) with no liveness score.
    pub fn matched(slot: Option<Slot>) -> Self {
        Self { slot, live: None }
    }
}

/// The result of checking a PIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinCheck {
    /// Right PIN.
    Accepted,
    /// Wrong PIN, or an unknown resident code.
    Rejected,
    /// Locked out for this long still.
    LockedOut(Duration),
}

/// The result of checking a visitor pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassCheck {
    /// Signed, current, not used before.
    Valid,
    /// Bad signature, expired, or used already.
    Invalid,
}

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Open the door for someone coming in, counted under this method.
    Admit(EntryMethod),
    /// Open the door for someone leaving (not counted as an entry).
    Release,
    /// Refuse, counted under this method (the outcome shown to the person: red light, short buzz).
    Refuse(EntryMethod),
    /// A resident's face matched but did not look live (a photo or a screen?): refused and counted as a refused
    /// face, with no lockout. The gate shows it exactly as a face that matched nobody (nothing), so the refusal
    /// does not tell who is enrolled.
    NotLive,
    /// Nothing yet (a face seen in too few frames so far, or no face at all).
    Wait,
}

impl Decision {
    /// The passage to count, if any: (method, outcome).
    pub fn passage(self) -> Option<(EntryMethod, PassageOutcome)> {
        match self {
            Self::Admit(method) => Some((method, PassageOutcome::Opened)),
            Self::Refuse(method) => Some((method, PassageOutcome::Refused)),
            Self::NotLive => Some((EntryMethod::Face, PassageOutcome::Refused)),
            Self::Release | Self::Wait => None,
        }
    }
}

/// Turns events into decisions; holds only the recent frames' slots and live scores.
#[derive(Clone, Debug)]
pub struct Decider {
    agreement: FrameAgreement,
    window: usize,
    recent: std::collections::VecDeque<FaceObservation>,
    live_threshold: Option<f32>,
}

impl Decider {
    /// A face opens after `required` of the last `window` frames matched the same resident.
    pub fn new(required: usize, window: usize) -> Self {
        Self {
            agreement: FrameAgreement::new(required, window),
            window: window.max(1),
            recent: std::collections::VecDeque::new(),
            live_threshold: None,
        }
    }

    /// Also requires the mean live score of the agreeing frames to reach `threshold`; a frame without a score
    /// counts as not live (fail-secure when the check could not run).
    pub fn with_liveness(mut self, threshold: f32) -> Self {
        self.live_threshold = Some(threshold);
        self
    }

    fn face(&mut self, seen: FaceObservation) -> (Decision, Option<Slot>) {
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(seen);
        let Some(slot) = self.agreement.observe(seen.slot) else {
            return (Decision::Wait, None);
        };
        let agreeing: Vec<f32> =
            self.recent.iter().filter(|o| o.slot == Some(slot)).map(|o| o.live.unwrap_or(0.0)).collect();
        self.recent.clear();
        match self.live_threshold {
            #[allow(clippy::cast_precision_loss)]
            Some(threshold) if agreeing.iter().sum::<f32>() / (agreeing.len().max(1) as f32) < threshold => {
                (Decision::NotLive, None)
            }
            _ => (Decision::Admit(EntryMethod::Face), Some(slot)),
        }
    }

    /// The decision for one event. Returns the slot that agreed, for a face admission.
    pub fn decide(&mut self, event: &GateEvent) -> (Decision, Option<Slot>) {
        match event {
            GateEvent::FaceFrame(seen) => self.face(*seen),
            GateEvent::Pin(PinCheck::Accepted) => (Decision::Admit(EntryMethod::Pin), None),
            GateEvent::Pin(PinCheck::Rejected | PinCheck::LockedOut(_)) => (Decision::Refuse(EntryMethod::Pin), None),
            GateEvent::VisitorPass(PassCheck::Valid) => (Decision::Admit(EntryMethod::VisitorPass), None),
            GateEvent::VisitorPass(PassCheck::Invalid) => (Decision::Refuse(EntryMethod::VisitorPass), None),
            GateEvent::GuardOpen => (Decision::Admit(EntryMethod::Guard), None),
            GateEvent::ExitButton => (Decision::Release, None),
        }
    }

    /// Forgets the recent frames (the person left, or another way in was used).
    pub fn reset_faces(&mut self) {
        self.agreement.reset();
        self.recent.clear();
    }
}

/// The door's timing, as a state machine over a caller-supplied clock (seconds as `Duration` since any
/// origin): open for a pulse, extended by a new admission, never longer than the maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoorTiming {
    pulse: Duration,
    max_open: Duration,
    opened_at: Option<Duration>,
    close_at: Option<Duration>,
}

impl DoorTiming {
    /// A closed door with this pulse length and maximum open time (the pulse is capped at the maximum).
    pub fn new(pulse: Duration, max_open: Duration) -> Self {
        Self { pulse: pulse.min(max_open), max_open, opened_at: None, close_at: None }
    }

    /// Opens (or extends) at `now`; returns true if the relay must be energised now.
    pub fn open(&mut self, now: Duration) -> bool {
        let opened_at = *self.opened_at.get_or_insert(now);
        let close_at = (now + self.pulse).min(opened_at + self.max_open);
        self.close_at = Some(close_at);
        opened_at == now
    }

    /// When the relay must be released, if open.
    pub fn close_at(&self) -> Option<Duration> {
        self.close_at
    }

    /// Whether the door is held open.
    pub fn is_open(&self) -> bool {
        self.close_at.is_some()
    }

    /// Ends the opening now (the door was opened and shut again: relock at once). Returns true if the relay
    /// must be released.
    pub fn end_now(&mut self) -> bool {
        let was_open = self.is_open();
        self.opened_at = None;
        self.close_at = None;
        was_open
    }

    /// Advances to `now`; returns true if the relay must be released now.
    pub fn tick(&mut self, now: Duration) -> bool {
        match self.close_at {
            Some(close_at) if now >= close_at => {
                self.opened_at = None;
                self.close_at = None;
                true
            }
            _ => false,
        }
    }
}

/// When the camera may look for faces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaceIntent {
    /// Only for a while after someone presses the face button.
    Button,
    /// While the presence sensor sees someone, and for a while after (the face button works too).
    Presence,
    /// All the time (replay tests, or a site whose signage and assessment cover it).
    Always,
}

/// When face matching runs, over a caller-supplied clock: a window opened by intent (button or presence),
/// closed early by an admission, and a short cooldown after each face admission so a resident who is still
/// standing in front of the camera is not admitted (and counted) again and again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntentWindow {
    mode: FaceIntent,
    window: Duration,
    cooldown: Duration,
    open_until: Option<Duration>,
    present: bool,
    quiet_until: Option<Duration>,
}

impl IntentWindow {
    /// A closed window: `window` is how long a press (or the end of presence) keeps face matching on;
    /// `cooldown` is the pause after a face admission.
    pub fn new(mode: FaceIntent, window: Duration, cooldown: Duration) -> Self {
        Self { mode, window, cooldown, open_until: None, present: false, quiet_until: None }
    }

    /// The face button was pressed at `now`. Returns true if this opened the window.
    pub fn button(&mut self, now: Duration) -> bool {
        let was = self.face_allowed(now);
        self.open_until = Some(now + self.window);
        self.quiet_until = None;
        !was && self.face_allowed(now)
    }

    /// The presence sensor changed at `now` (ignored unless the mode is [`FaceIntent::Presence`]). Returns
    /// true if this opened the window.
    pub fn presence(&mut self, present: bool, now: Duration) -> bool {
        if self.mode != FaceIntent::Presence {
            return false;
        }
        let was = self.face_allowed(now);
        if self.present && !present {
            // The person stepped away: keep looking a moment, they may step back.
            self.open_until = Some(self.open_until.unwrap_or(now).max(now + self.window / 2));
        }
        self.present = present;
        !was && self.face_allowed(now)
    }

    /// A face admission at `now`: matching pauses for the cooldown; in the button mode the window closes
    /// (the person got in; the next one presses again).
    pub fn admitted(&mut self, now: Duration) {
        self.quiet_until = Some(now + self.cooldown);
        if self.mode == FaceIntent::Button {
            self.open_until = None;
        }
    }

    /// Whether a frame taken at `now` may be matched.
    pub fn face_allowed(&self, now: Duration) -> bool {
        if self.quiet_until.is_some_and(|q| now < q) {
            return false;
        }
        match self.mode {
            FaceIntent::Always => true,
            FaceIntent::Presence if self.present => true,
            FaceIntent::Button | FaceIntent::Presence => self.open_until.is_some_and(|until| now < until),
        }
    }
}

/// Something wrong with the door, from its contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorAlarm {
    /// The door opened while the lock was not released (and had not been just before).
    Forced,
    /// The door has stayed open longer than allowed.
    HeldOpen,
}

/// Watches the door contact against the lock, over a caller-supplied clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoorMonitor {
    grace: Duration,
    held_limit: Duration,
    unlocked: bool,
    relocked_at: Option<Duration>,
    open_since: Option<Duration>,
    held_reported: bool,
}

impl DoorMonitor {
    /// `grace`: how long after the lock closed again an opening still counts as authorised (a person pushes
    /// the door just after the buzz ends); `held_limit`: how long the door may stay open.
    pub fn new(grace: Duration, held_limit: Duration) -> Self {
        Self { grace, held_limit, unlocked: false, relocked_at: None, open_since: None, held_reported: false }
    }

    /// The lock was released (`true`) or locked again (`false`) at `now`.
    pub fn lock_changed(&mut self, unlocked: bool, now: Duration) {
        if self.unlocked && !unlocked {
            self.relocked_at = Some(now);
        }
        self.unlocked = unlocked;
    }

    /// The door contact changed at `now`. Returns an alarm for a forced opening.
    pub fn contact(&mut self, open: bool, now: Duration) -> Option<DoorAlarm> {
        if !open {
            self.open_since = None;
            self.held_reported = false;
            return None;
        }
        if self.open_since.is_some() {
            return None;
        }
        self.open_since = Some(now);
        let authorised = self.unlocked || self.relocked_at.is_some_and(|at| now.saturating_sub(at) <= self.grace);
        (!authorised).then_some(DoorAlarm::Forced)
    }

    /// Whether the door is open.
    pub fn is_open(&self) -> bool {
        self.open_since.is_some()
    }

    /// Advances to `now`: a held-open alarm once per opening.
    pub fn tick(&mut self, now: Duration) -> Option<DoorAlarm> {
        let since = self.open_since?;
        if !self.held_reported && now.saturating_sub(since) >= self.held_limit {
            self.held_reported = true;
            return Some(DoorAlarm::HeldOpen);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(slot: Option<Slot>) -> GateEvent {
        GateEvent::FaceFrame(FaceObservation::matched(slot))
    }

    fn seen(slot: Option<Slot>, live: f32) -> GateEvent {
        GateEvent::FaceFrame(FaceObservation { slot, live: Some(live) })
    }

    #[test]
    fn a_matching_face_opens_only_if_its_frames_look_live() {
        let mut decider = Decider::new(2, 3).with_liveness(0.5);
        assert_eq!(decider.decide(&seen(Some(1), 0.9)).0, Decision::Wait);
        assert_eq!(decider.decide(&seen(Some(1), 0.7)), (Decision::Admit(EntryMethod::Face), Some(1)));
        // A photo of resident 1: matches, but scores low: refused, no slot, counted as a refused face.
        decider.decide(&seen(Some(1), 0.1));
        assert_eq!(decider.decide(&seen(Some(1), 0.2)), (Decision::NotLive, None));
        assert_eq!(Decision::NotLive.passage(), Some((EntryMethod::Face, PassageOutcome::Refused)));
        // The mean decides: one low frame among live ones passes; no score at all does not.
        decider.decide(&seen(Some(2), 0.45));
        assert_eq!(decider.decide(&seen(Some(2), 0.8)).0, Decision::Admit(EntryMethod::Face));
        decider.decide(&face(Some(3)));
        assert_eq!(decider.decide(&face(Some(3))).0, Decision::NotLive, "no score is not live");
        // Without liveness configured, scores are ignored.
        let mut plain = Decider::new(2, 3);
        plain.decide(&seen(Some(1), 0.0));
        assert_eq!(plain.decide(&face(Some(1))).0, Decision::Admit(EntryMethod::Face));
    }

    #[test]
    fn the_face_window_opens_on_intent_and_pauses_after_an_admission() {
        let s = Duration::from_secs;
        let mut button = IntentWindow::new(FaceIntent::Button, s(8), s(4));
        assert!(!button.face_allowed(s(0)), "no intent, no matching");
        assert!(!button.presence(true, s(0)), "presence is not intent in the button mode");
        assert!(!button.face_allowed(s(1)));
        assert!(button.button(s(10)));
        assert!(button.face_allowed(s(17)) && !button.face_allowed(s(18)));
        assert!(!button.button(s(11)), "a second press extends, not reopens");
        button.admitted(s(12));
        assert!(!button.face_allowed(s(13)), "the window closes on admission");
        assert!(button.button(s(13)), "the next person presses again");
        assert!(button.face_allowed(s(14)), "a press ends the cooldown: someone asked to be checked");

        let mut presence = IntentWindow::new(FaceIntent::Presence, s(8), s(4));
        assert!(presence.presence(true, s(0)));
        assert!(presence.face_allowed(s(100)), "open while present");
        presence.admitted(s(100));
        assert!(!presence.face_allowed(s(103)) && presence.face_allowed(s(104)), "cooldown only");
        presence.presence(false, s(200));
        assert!(presence.face_allowed(s(203)) && !presence.face_allowed(s(204)), "lingers half a window");

        let mut always = IntentWindow::new(FaceIntent::Always, s(8), s(4));
        assert!(always.face_allowed(s(0)));
        always.admitted(s(1));
        assert!(!always.face_allowed(s(4)) && always.face_allowed(s(5)));
    }

    #[test]
    fn the_door_contact_reports_forced_and_held_open_doors() {
        let s = Duration::from_secs;
        let mut door = DoorMonitor::new(s(5), s(30));
        assert_eq!(door.contact(true, s(1)), Some(DoorAlarm::Forced), "opened without a release");
        assert_eq!(door.contact(true, s(2)), None, "reported once per opening");
        assert_eq!(door.contact(false, s(3)), None);
        door.lock_changed(true, s(10));
        assert_eq!(door.contact(true, s(19)), None, "opened while released, however late");
        assert_eq!(door.contact(false, s(20)), None);
        door.lock_changed(false, s(20));
        assert_eq!(door.contact(true, s(14 + 10)), None, "opened just after the lock closed again");
        assert_eq!(door.tick(s(53)), None);
        assert_eq!(door.tick(s(54)), Some(DoorAlarm::HeldOpen));
        assert_eq!(door.tick(s(60)), None, "held-open is reported once");
        assert_eq!(door.contact(false, s(61)), None);
        assert!(!door.is_open());
        assert_eq!(door.contact(true, s(100)), Some(DoorAlarm::Forced), "the old release has lapsed");
        assert_eq!(door.tick(s(200)), Some(DoorAlarm::HeldOpen));
    }

    #[test]
    fn a_face_opens_only_after_agreement_and_every_other_way_in_works_alone() {
        let mut decider = Decider::new(2, 3);
        assert_eq!(decider.decide(&face(Some(4))), (Decision::Wait, None));
        assert_eq!(decider.decide(&face(None)), (Decision::Wait, None));
        assert_eq!(decider.decide(&face(Some(4))), (Decision::Admit(EntryMethod::Face), Some(4)));
        // Three residents in turn never agree (no slot twice in any three frames).
        for slot in [1, 2, 3, 1, 2, 3].map(Some) {
            assert_eq!(decider.decide(&face(slot)).0, Decision::Wait);
        }
        assert_eq!(decider.decide(&GateEvent::Pin(PinCheck::Accepted)).0, Decision::Admit(EntryMethod::Pin));
        assert_eq!(
            decider.decide(&GateEvent::Pin(PinCheck::LockedOut(Duration::from_secs(30)))).0,
            Decision::Refuse(EntryMethod::Pin)
        );
        assert_eq!(
            decider.decide(&GateEvent::VisitorPass(PassCheck::Valid)).0,
            Decision::Admit(EntryMethod::VisitorPass)
        );
        assert_eq!(
            decider.decide(&GateEvent::VisitorPass(PassCheck::Invalid)).0,
            Decision::Refuse(EntryMethod::VisitorPass)
        );
        assert_eq!(decider.decide(&GateEvent::GuardOpen).0, Decision::Admit(EntryMethod::Guard));
        assert_eq!(decider.decide(&GateEvent::ExitButton).0, Decision::Release);
        assert_eq!(Decision::Release.passage(), None);
        assert_eq!(Decision::Refuse(EntryMethod::Pin).passage(), Some((EntryMethod::Pin, PassageOutcome::Refused)));
    }

    #[test]
    fn the_door_opens_for_a_pulse_and_never_beyond_the_maximum() {
        let s = Duration::from_secs;
        let mut door = DoorTiming::new(s(3), s(10));
        assert!(door.open(s(0)), "first admission energises the relay");
        assert!(!door.tick(s(2)));
        assert!(!door.open(s(2)), "a second admission extends, no new pulse");
        assert_eq!(door.close_at(), Some(s(5)));
        for t in [4, 6, 8] {
            door.open(s(t));
        }
        assert_eq!(door.close_at(), Some(s(10)), "held open at most 10 s whatever happens");
        assert!(!door.tick(s(9)));
        assert!(door.tick(s(10)));
        assert!(!door.is_open());
        assert!(door.open(s(20)));
    }
}
