//! Indicator: the green and red status LEDs and the buzzer, behind a small trait, with an rppal (GPIO)
//! implementation and a simulated one. [`Pattern`] is the pure part: for each [`Signal`], what the lights and
//! the buzzer do over time.
//!
//! The indicator shows outcomes; it never decides them and never shows who: a signal carries no name, no
//! resident and no match score, so someone watching the gate learns no more than "opened" or "refused".
//! Everything is off when the indicator is dropped.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ActuateError;

/// The default pins (BCM): green LED, red LED, buzzer; hardware/README.md has the wiring.
pub const DEFAULT_PINS: [u8; 3] = [26, 21, 18];

/// What the gate wants to tell the person in front of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Idle, waiting.
    Ready,
    /// Looking for a face.
    Scanning,
    /// The door opens.
    Granted,
    /// Not opened (no match, wrong PIN, invalid pass).
    Refused,
    /// Too many failures; PIN entry is paused.
    LockedOut,
    /// The guard has been called.
    GuardCalled,
    /// The door is forced or held open; until another signal.
    Alarm,
    /// The gate cannot work (camera, models, store); the keypad and the guard remain.
    Fault,
}

impl Signal {
    /// Every signal.
    pub const ALL: [Signal; 8] = [
        Signal::Ready,
        Signal::Scanning,
        Signal::Granted,
        Signal::Refused,
        Signal::LockedOut,
        Signal::GuardCalled,
        Signal::Alarm,
        Signal::Fault,
    ];

    /// What the lights and the buzzer do for this signal.
    pub fn pattern(self) -> Pattern {
        match self {
            Self::Ready => READY,
            Self::Scanning => SCANNING,
            Self::Granted => GRANTED,
            Self::Refused => REFUSED,
            Self::LockedOut => LOCKED_OUT,
            Self::GuardCalled => GUARD_CALLED,
            Self::Alarm => ALARM,
            Self::Fault => FAULT,
        }
    }
}

/// The state of the outputs for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Green LED on.
    pub green: bool,
    /// Red LED on.
    pub red: bool,
    /// Buzzer sounding.
    pub buzzer: bool,
    /// For how long.
    pub duration: Duration,
}

const fn step(green: bool, red: bool, buzzer: bool, millis: u64) -> Step {
    Step { green, red, buzzer, duration: Duration::from_millis(millis) }
}

/// A signal's light-and-sound pattern: `intro` once, then `repeat` in a loop until the next signal. A pattern
/// without `repeat` returns to [`Signal::Ready`] after its intro.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// Played once, first.
    pub intro: &'static [Step],
    /// Played in a loop after the intro, until another signal; empty: back to Ready.
    pub repeat: &'static [Step],
}

// The table. Columns: green, red, buzzer, milliseconds.
// Ready: dark, with a 40 ms green heartbeat every 4 s, so a working gate is told from a dead one.
const READY: Pattern = Pattern { intro: &[], repeat: &[step(false, false, false, 3960), step(true, false, false, 40)] };
// Scanning: green blinking.
const SCANNING: Pattern =
    Pattern { intro: &[], repeat: &[step(true, false, false, 250), step(false, false, false, 250)] };
// Granted: green steady 2 s, one short beep at the start.
const GRANTED: Pattern =
    Pattern { intro: &[step(true, false, true, 100), step(true, false, false, 1900)], repeat: &[] };
// Refused: red 1 s, two short beeps.
const REFUSED: Pattern = Pattern {
    intro: &[
        step(false, true, true, 100),
        step(false, true, false, 100),
        step(false, true, true, 100),
        step(false, true, false, 700),
    ],
    repeat: &[],
};
// Locked out: one long beep, then red blinking until the lockout ends.
const LOCKED_OUT: Pattern = Pattern {
    intro: &[step(false, true, true, 800), step(false, false, false, 200)],
    repeat: &[step(false, true, false, 500), step(false, false, false, 500)],
};
// Guard called: a short acknowledging beep, then both LEDs blinking together.
const GUARD_CALLED: Pattern = Pattern {
    intro: &[step(true, true, true, 100), step(true, true, false, 400), step(false, false, false, 500)],
    repeat: &[step(true, true, false, 500), step(false, false, false, 500)],
};
// Alarm: red fast blink, buzzer continuous until another signal.
const ALARM: Pattern = Pattern { intro: &[], repeat: &[step(false, true, true, 100), step(false, false, true, 100)] };
// Fault: red slow blink, silent (a fault is for the installer, not a siren for the street).
const FAULT: Pattern =
    Pattern { intro: &[], repeat: &[step(false, true, false, 1000), step(false, false, false, 1000)] };

impl Pattern {
    /// How long the intro lasts.
    pub fn intro_duration(&self) -> Duration {
        self.intro.iter().map(|s| s.duration).sum()
    }

    /// How long one round of the loop lasts (zero when the pattern does not repeat).
    pub fn repeat_period(&self) -> Duration {
        self.repeat.iter().map(|s| s.duration).sum()
    }

    /// The step in effect `elapsed` after the pattern started, or `None` once a pattern without a loop has
    /// ended (the indicator is back to Ready).
    pub fn step_at(&self, elapsed: Duration) -> Option<Step> {
        let mut t = elapsed;
        for s in self.intro {
            if t < s.duration {
                return Some(*s);
            }
            t -= s.duration;
        }
        let period = self.repeat_period();
        if period.is_zero() {
            return None;
        }
        let mut t = Duration::from_nanos(u64::try_from(t.as_nanos() % period.as_nanos()).unwrap_or(0));
        for s in self.repeat {
            if t < s.duration {
                return Some(*s);
            }
            t -= s.duration;
        }
        None
    }
}

/// Status lights and buzzer.
pub trait Indicator: Send {
    /// Starts showing `signal`; it interrupts whatever was showing.
    fn show(&mut self, signal: Signal) -> Result<(), ActuateError>;

    /// A short description for logs.
    fn describe(&self) -> String;
}

/// The output pins, owned by the player thread. All active high: LEDs through a resistor to ground, the
/// buzzer through an NPN transistor.
struct Outputs {
    green: Option<rppal::gpio::OutputPin>,
    red: Option<rppal::gpio::OutputPin>,
    buzzer: Option<rppal::gpio::OutputPin>,
}

impl Outputs {
    fn set(&mut self, s: Step) {
        for (pin, on) in [(&mut self.green, s.green), (&mut self.red, s.red), (&mut self.buzzer, s.buzzer)] {
            if let Some(pin) = pin {
                if on {
                    pin.set_high();
                } else {
                    pin.set_low();
                }
            }
        }
    }
}

/// Plays signals into `set` until the sending side is dropped, then turns everything off.
fn play(signals: &mpsc::Receiver<Signal>, mut set: impl FnMut(Step)) {
    const OFF: Step = step(false, false, false, 0);
    let mut signal = Signal::Ready;
    'signals: loop {
        let pattern = signal.pattern();
        for s in pattern.intro.iter().chain(pattern.repeat.iter().cycle()) {
            set(*s);
            match signals.recv_timeout(s.duration) {
                Ok(next) => {
                    signal = next;
                    continue 'signals;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break 'signals,
            }
        }
        if signal == Signal::Ready {
            // Only reached if Ready had no loop; wait for the next signal rather than spin.
            set(OFF);
            match signals.recv() {
                Ok(next) => signal = next,
                Err(mpsc::RecvError) => break,
            }
        } else {
            signal = Signal::Ready;
        }
    }
    set(OFF);
}

/// LEDs and buzzer on GPIO pins, played by a small thread; each new signal interrupts the current pattern.
#[derive(Debug)]
pub struct GpioIndicator {
    signals: Option<mpsc::Sender<Signal>>,
    player: Option<JoinHandle<()>>,
    description: String,
}

impl GpioIndicator {
    /// Claims the given BCM pins (any may be absent) as outputs, off, and starts showing Ready.
    pub fn open(green: Option<u8>, red: Option<u8>, buzzer: Option<u8>) -> Result<Self, ActuateError> {
        let named = [("green LED", green), ("red LED", red), ("buzzer", buzzer)];
        for (i, &(name, bcm)) in named.iter().enumerate() {
            if let Some(bcm) = bcm {
                if let Some(&(other, _)) = named[..i].iter().find(|&&(_, b)| b == Some(bcm)) {
                    return Err(ActuateError::Settings(format!(
                        "BCM {bcm} is given to both the {other} and the {name}"
                    )));
                }
            }
        }
        let gpio = rppal::gpio::Gpio::new().map_err(ActuateError::gpio("chip"))?;
        let claim = |name: &str, bcm: Option<u8>| -> Result<Option<rppal::gpio::OutputPin>, ActuateError> {
            let Some(bcm) = bcm else { return Ok(None) };
            let pin = gpio.get(bcm).map_err(ActuateError::gpio(format!("BCM {bcm} ({name})")))?;
            let mut pin = pin.into_output_low();
            // rppal would float the pin on drop; keep it driven off (a floating transistor base can buzz).
            pin.set_reset_on_drop(false);
            Ok(Some(pin))
        };
        let mut outputs = Outputs {
            green: claim("green LED", green)?,
            red: claim("red LED", red)?,
            buzzer: claim("buzzer", buzzer)?,
        };
        let description = {
            let parts: Vec<String> =
                named.iter().filter_map(|&(name, bcm)| bcm.map(|b| format!("{name} BCM {b}"))).collect();
            if parts.is_empty() {
                "GPIO indicator without pins".to_string()
            } else {
                format!("GPIO indicator: {}", parts.join(", "))
            }
        };
        let (tx, rx) = mpsc::channel();
        let player = std::thread::Builder::new()
            .name("indicator".into())
            .spawn(move || play(&rx, |s| outputs.set(s)))
            .map_err(|e| ActuateError::Stopped(format!("the indicator thread ({e})")))?;
        Ok(Self { signals: Some(tx), player: Some(player), description })
    }
}

impl Indicator for GpioIndicator {
    fn show(&mut self, signal: Signal) -> Result<(), ActuateError> {
        let sent = self.signals.as_ref().is_some_and(|tx| tx.send(signal).is_ok());
        if sent {
            Ok(())
        } else {
            Err(ActuateError::Stopped("the indicator thread".into()))
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for GpioIndicator {
    fn drop(&mut self) {
        // Closing the channel wakes the player, which turns everything off and returns.
        self.signals = None;
        if let Some(player) = self.player.take() {
            let _ = player.join();
        }
    }
}

/// A shared, cloneable view of what a simulated indicator was asked to show.
#[derive(Clone, Debug, Default)]
pub struct IndicatorLog(Arc<Mutex<Vec<(Instant, Signal)>>>);

impl IndicatorLog {
    /// Every signal shown, oldest first, with when.
    pub fn entries(&self) -> Vec<(Instant, Signal)> {
        self.0.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Every signal shown, oldest first.
    pub fn signals(&self) -> Vec<Signal> {
        self.entries().into_iter().map(|(_, s)| s).collect()
    }

    /// How many times `signal` was shown.
    pub fn count(&self, signal: Signal) -> usize {
        self.entries().iter().filter(|&&(_, s)| s == signal).count()
    }

    fn push(&self, signal: Signal) {
        if let Ok(mut log) = self.0.lock() {
            log.push((Instant::now(), signal));
        }
    }
}

/// An indicator that only records.
#[derive(Debug)]
pub struct SimulatedIndicator {
    log: IndicatorLog,
}

impl SimulatedIndicator {
    /// An indicator and the log of what it showed.
    pub fn new() -> (Self, IndicatorLog) {
        let log = IndicatorLog::default();
        (Self { log: log.clone() }, log)
    }
}

impl Indicator for SimulatedIndicator {
    fn show(&mut self, signal: Signal) -> Result<(), ActuateError> {
        self.log.push(signal);
        Ok(())
    }

    fn describe(&self) -> String {
        "simulated indicator".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn every_pattern_has_steps_and_ready_never_ends() {
        for signal in Signal::ALL {
            let p = signal.pattern();
            assert!(!p.intro.is_empty() || !p.repeat.is_empty(), "{signal:?} is empty");
            assert!(p.intro.iter().chain(p.repeat).all(|s| !s.duration.is_zero()), "{signal:?} has a zero step");
        }
        assert!(!Signal::Ready.pattern().repeat.is_empty());
        // Ready is calm: never red, never a sound, green only for a heartbeat.
        let ready = Signal::Ready.pattern();
        assert!(ready.repeat.iter().all(|s| !s.red && !s.buzzer));
        let green: Duration = ready.repeat.iter().filter(|s| s.green).map(|s| s.duration).sum();
        assert!(green * 50 <= ready.repeat_period(), "green at most 2% of the time");
    }

    #[test]
    fn granted_is_green_for_two_seconds_with_one_beep_then_ready() {
        let p = Signal::Granted.pattern();
        assert_eq!(p.intro_duration(), ms(2000));
        assert!(p.repeat.is_empty());
        assert!(p.intro.iter().all(|s| s.green && !s.red));
        assert_eq!(p.step_at(ms(0)).map(|s| s.buzzer), Some(true));
        assert_eq!(p.step_at(ms(150)).map(|s| s.buzzer), Some(false));
        assert_eq!(p.step_at(ms(1999)).map(|s| s.green), Some(true));
        assert_eq!(p.step_at(ms(2000)), None, "back to Ready");
        assert_eq!(beeps(&p), 1);
    }

    #[test]
    fn refused_is_red_for_a_second_with_two_beeps() {
        let p = Signal::Refused.pattern();
        assert_eq!(p.intro_duration(), ms(1000));
        assert!(p.repeat.is_empty());
        assert!(p.intro.iter().all(|s| s.red && !s.green));
        assert_eq!(beeps(&p), 2);
        assert_eq!(p.step_at(ms(1000)), None);
    }

    #[test]
    fn looping_patterns_repeat_until_the_next_signal() {
        for signal in [Signal::Scanning, Signal::LockedOut, Signal::GuardCalled, Signal::Alarm, Signal::Fault] {
            let p = signal.pattern();
            assert!(!p.repeat.is_empty(), "{signal:?}");
            let late = p.intro_duration() + p.repeat_period() * 1000;
            assert_eq!(p.step_at(late), Some(p.repeat[0]), "{signal:?}");
        }
        // Alarm: the buzzer never stops, the red LED blinks fast.
        let alarm = Signal::Alarm.pattern();
        assert!(alarm.repeat.iter().all(|s| s.buzzer && !s.green));
        assert!(alarm.repeat_period() <= ms(250));
        assert!(alarm.repeat.iter().any(|s| s.red) && alarm.repeat.iter().any(|s| !s.red));
        // Locked out: a long beep first, then a silent red blink.
        let locked = Signal::LockedOut.pattern();
        assert!(locked.intro[0].buzzer && locked.intro[0].duration >= ms(500));
        assert!(locked.repeat.iter().all(|s| !s.buzzer && !s.green));
        // Guard called: both LEDs together.
        assert!(Signal::GuardCalled.pattern().repeat.iter().all(|s| s.green == s.red));
        // Scanning: green only, silent. Fault: red only, slow, silent.
        assert!(Signal::Scanning.pattern().repeat.iter().all(|s| !s.red && !s.buzzer));
        let fault = Signal::Fault.pattern();
        assert!(fault.repeat.iter().all(|s| !s.green && !s.buzzer));
        assert!(fault.repeat_period() >= ms(1500));
    }

    #[test]
    fn step_at_walks_intro_then_loop() {
        let p = Signal::LockedOut.pattern();
        assert_eq!(p.step_at(ms(0)), Some(p.intro[0]));
        assert_eq!(p.step_at(ms(799)), Some(p.intro[0]));
        assert_eq!(p.step_at(ms(800)), Some(p.intro[1]));
        assert_eq!(p.step_at(ms(1000)), Some(p.repeat[0]));
        assert_eq!(p.step_at(ms(1500)), Some(p.repeat[1]));
        assert_eq!(p.step_at(ms(2000)), Some(p.repeat[0]));
    }

    fn beeps(p: &Pattern) -> usize {
        // Rising edges of the buzzer.
        let mut on = false;
        let mut n = 0;
        for s in p.intro {
            if s.buzzer && !on {
                n += 1;
            }
            on = s.buzzer;
        }
        n
    }

    #[test]
    fn the_player_interrupts_returns_to_ready_and_ends_dark() {
        let (tx, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::<Step>::new()));
        let record = Arc::clone(&seen);
        let player = std::thread::spawn(move || play(&rx, |s| record.lock().expect("test lock").push(s)));
        let steps = || seen.lock().expect("test lock").clone();
        tx.send(Signal::Alarm).unwrap();
        std::thread::sleep(ms(50));
        assert_eq!(steps().last(), Some(&Signal::Alarm.pattern().repeat[0]), "the alarm interrupts Ready at once");
        // Refused interrupts the endless alarm, and after its second the player is back to Ready by itself.
        tx.send(Signal::Refused).unwrap();
        std::thread::sleep(ms(1300));
        let played = steps();
        let refused = Signal::Refused.pattern().intro;
        assert!(played.windows(refused.len()).any(|w| w == refused), "refused played whole: {played:?}");
        assert_eq!(played.last(), Some(&Signal::Ready.pattern().repeat[0]));
        drop(tx);
        player.join().unwrap();
        let last = *steps().last().unwrap();
        assert!(!last.green && !last.red && !last.buzzer, "dark and silent at the end: {last:?}");
    }

    #[test]
    fn the_simulated_indicator_records_what_it_shows() {
        let (mut indicator, log) = SimulatedIndicator::new();
        for s in [Signal::Scanning, Signal::Refused, Signal::Scanning, Signal::Granted] {
            indicator.show(s).unwrap();
        }
        assert_eq!(log.signals(), vec![Signal::Scanning, Signal::Refused, Signal::Scanning, Signal::Granted]);
        assert_eq!(log.count(Signal::Scanning), 2);
        assert_eq!(log.count(Signal::Alarm), 0);
        let times: Vec<Instant> = log.entries().iter().map(|&(t, _)| t).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn the_gpio_indicator_refuses_a_pin_twice_and_off_a_pi_says_what_to_do() {
        let err = GpioIndicator::open(Some(26), Some(26), None).unwrap_err();
        assert!(err.to_string().contains("green LED and the red LED"), "{err}");
        if std::path::Path::new("/dev/gpiomem").exists() {
            return;
        }
        let err = GpioIndicator::open(Some(26), Some(21), Some(18)).unwrap_err();
        assert!(err.to_string().contains("hardware.backend = \"simulated\""), "{err}");
    }
}
