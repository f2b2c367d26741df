//! Lockout: how many PIN guesses the keypad allows, per typed code and across the whole keypad. Pure: values
//! in, values out, on a monotonic clock the caller supplies (time since any fixed origin), so a wall-clock
//! step (a board with no RTC syncing its time) neither clears nor extends a lockout.
//!
//! Two limits, both needed. Per code: four free tries, then a wait of 30 s doubling to 1 h
//! ([`pin_backoff`]); a success resets that code. Keypad-wide: a budget of failures per hour and per day over
//! every code together; when it is spent every code is refused unchecked until the oldest failure leaves the
//! window, and the guard is alarmed. The per-code limit alone lets a guesser try the commonest PINs on every
//! code; the budget bounds the guesses a whole month of trying can make (see `tests/pin_guessing.rs`).
//!
//! A code that belongs to nobody is counted and locked exactly like a resident's: the keypad's answers, its
//! timing and its lockouts must never tell which codes exist. This module holds typed codes only while they
//! have recent failures, never who they belong to, and nothing here is written anywhere.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);

/// How long a code stays locked after `consecutive_failures` wrong attempts: free for the first four, then 30 s
/// doubling up to an hour.
pub fn pin_backoff(consecutive_failures: u32) -> Duration {
    const FREE: u32 = 4;
    if consecutive_failures <= FREE {
        return Duration::ZERO;
    }
    let doublings = (consecutive_failures - FREE - 1).min(7);
    Duration::from_secs(30 << doublings).min(HOUR)
}

/// The keypad-wide budget of failed PIN attempts (`[pin]` in the config, at most `config::MAX_PIN_BUDGET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinBudget {
    /// Failures (over all codes) allowed in any hour.
    pub per_hour: u32,
    /// Failures (over all codes) allowed in any 24 hours.
    pub per_day: u32,
}

impl Default for PinBudget {
    /// 20 an hour, 60 a day: a compound's residents mistype far fewer, and 30 days of guessing at this rate
    /// opens a door with odds below 1 in 1,000 (`tests/pin_guessing.rs`).
    fn default() -> Self {
        Self { per_hour: 20, per_day: 60 }
    }
}

/// Why a PIN attempt is refused unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locked {
    /// This code failed too often: wait this long.
    Code(Duration),
    /// The whole keypad's budget is spent: wait this long.
    Keypad(Duration),
}

impl Locked {
    /// How long until the attempt could be checked.
    pub fn wait(self) -> Duration {
        match self {
            Self::Code(d) | Self::Keypad(d) => d,
        }
    }
}

/// Raised when a failure spends the keypad-wide budget: someone is guessing, call the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeypadAlarm {
    /// The hourly budget is spent.
    HourlyBudgetSpent,
    /// The daily budget is spent.
    DailyBudgetSpent,
}

#[derive(Clone, Copy, Debug)]
struct CodeFailures {
    count: u32,
    last: Duration,
}

/// The keypad's failure bookkeeping: per typed code and keypad-wide.
#[derive(Clone, Debug)]
pub struct PinLockout {
    budget: PinBudget,
    codes: HashMap<String, CodeFailures>,
    /// Codes in the order of their failures (a code again at each failure), to forget and evict the oldest
    /// without scanning the map: every step is amortised O(1), whatever a flood of codes does.
    order: VecDeque<(Duration, String)>,
    /// When each failure of the last 24 hours happened, oldest first.
    failures: VecDeque<Duration>,
}

/// Codes tracked at most; the daily budget keeps the real number far below (one entry per failure a day).
const MAX_CODES: usize = 4_096;

impl PinLockout {
    /// No failures yet.
    pub fn new(budget: PinBudget) -> Self {
        Self { budget, codes: HashMap::new(), order: VecDeque::new(), failures: VecDeque::new() }
    }

    /// Counts `failures` that happened before a restart as if they happened at `now` (the conservative
    /// reading: the budget they spent comes back no sooner than if they were the latest).
    pub fn restore(&mut self, failures: u32, now: Duration) {
        for _ in 0..failures.min(self.budget.per_day) {
            self.failures.push_back(now);
        }
    }

    /// Whether an attempt on `code` may be checked at `now`, or how long it must wait.
    pub fn check(&self, code: &str, now: Duration) -> Result<(), Locked> {
        if let Some(wait) = self.keypad_wait(now) {
            return Err(Locked::Keypad(wait));
        }
        if let Some(f) = self.codes.get(code) {
            let until = f.last.saturating_add(pin_backoff(f.count));
            if now < until {
                return Err(Locked::Code(until - now));
            }
        }
        Ok(())
    }

    /// Records a checked attempt on `code`. A failure counts towards that code's lockout and the keypad's
    /// budget, and raises an alarm when it spends the budget; a success clears the code's failures (the
    /// keypad's budget is not refunded).
    pub fn record(&mut self, code: &str, success: bool, now: Duration) -> Option<KeypadAlarm> {
        if success {
            self.codes.remove(code);
            return None;
        }
        self.forget_before(now);
        let entry = self.codes.entry(code.to_owned()).or_insert(CodeFailures { count: 0, last: now });
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        self.order.push_back((now, code.to_owned()));
        self.failures.push_back(now);
        while self.codes.len() > MAX_CODES {
            self.pop_oldest_code();
        }
        let (hour, day) = self.window_counts(now);
        if day == self.budget.per_day as usize {
            Some(KeypadAlarm::DailyBudgetSpent)
        } else if hour == self.budget.per_hour as usize {
            Some(KeypadAlarm::HourlyBudgetSpent)
        } else {
            None
        }
    }

    /// Failures in the last hour and the last 24 hours.
    pub fn window_counts(&self, now: Duration) -> (usize, usize) {
        (self.failures.len() - self.first_inside(HOUR, now), self.failures.len() - self.first_inside(DAY, now))
    }

    /// How many typed codes are tracked now.
    pub fn tracked_codes(&self) -> usize {
        self.codes.len()
    }

    /// The index of the first failure less than `span` before `now` (failures are in time order).
    fn first_inside(&self, span: Duration, now: Duration) -> usize {
        self.failures.partition_point(|t| now.saturating_sub(*t) >= span)
    }

    fn keypad_wait(&self, now: Duration) -> Option<Duration> {
        let wait_for = |span: Duration, limit: u32| -> Option<Duration> {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let first = self.first_inside(span, now);
            let inside = self.failures.len() - first;
            // The attempt may go ahead once the failure that filled the window has left it.
            (inside >= limit).then(|| {
                self.failures.get(first + inside - limit).map_or(Duration::ZERO, |t| (*t + span).saturating_sub(now))
            })
        };
        match (wait_for(HOUR, self.budget.per_hour), wait_for(DAY, self.budget.per_day)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    fn forget_before(&mut self, now: Duration) {
        while self.failures.front().is_some_and(|t| now.saturating_sub(*t) >= DAY) {
            self.failures.pop_front();
        }
        // A code quiet for a day, with its backoff long over, starts afresh.
        while self.order.front().is_some_and(|(t, _)| now.saturating_sub(*t) >= DAY) {
            self.pop_oldest_code();
        }
    }

    /// Drops the front of `order`, and its code if that was the code's latest failure.
    fn pop_oldest_code(&mut self) {
        if let Some((t, code)) = self.order.pop_front() {
            if self.codes.get(&code).is_some_and(|f| f.last == t) {
                self.codes.remove(&code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(pin_backoff(0), Duration::ZERO);
        assert_eq!(pin_backoff(4), Duration::ZERO);
        assert_eq!(pin_backoff(5), S(30));
        assert_eq!(pin_backoff(6), S(60));
        assert_eq!(pin_backoff(8), S(240));
        assert_eq!(pin_backoff(50), S(3_600));
        let mut previous = Duration::ZERO;
        for n in 0..40 {
            assert!(pin_backoff(n) >= previous);
            previous = pin_backoff(n);
        }
    }

    #[test]
    fn a_code_locks_after_five_failures_whoever_it_belongs_to() {
        let mut lockout = PinLockout::new(PinBudget { per_hour: 1_000, per_day: 1_000 });
        for t in 0..5 {
            assert_eq!(lockout.check("123456", S(t)), Ok(()));
            assert_eq!(lockout.record("123456", false, S(t)), None);
        }
        assert_eq!(lockout.check("123456", S(10)), Err(Locked::Code(S(24))));
        assert_eq!(lockout.check("654321", S(10)), Ok(()), "other codes are not slowed by one code");
        assert_eq!(lockout.check("123456", S(34)), Ok(()));
        lockout.record("123456", false, S(34));
        assert_eq!(lockout.check("123456", S(35)), Err(Locked::Code(S(59))), "the wait doubles");
        lockout.record("123456", true, S(100));
        assert_eq!(lockout.check("123456", S(100)), Ok(()), "a success clears the code");
    }

    #[test]
    fn the_keypad_budget_stops_every_code_and_alarms_once() {
        let mut lockout = PinLockout::new(PinBudget { per_hour: 3, per_day: 5 });
        assert_eq!(lockout.record("100001", false, S(0)), None);
        assert_eq!(lockout.record("100002", false, S(10)), None);
        assert_eq!(lockout.record("100003", false, S(20)), Some(KeypadAlarm::HourlyBudgetSpent));
        // Every code, known or not, waits until the first failure leaves the hour.
        assert_eq!(lockout.check("999999", S(30)), Err(Locked::Keypad(S(3_570))));
        assert_eq!(lockout.check("999999", S(3_600)), Ok(()));
        assert_eq!(lockout.record("100004", false, S(3_600)), Some(KeypadAlarm::HourlyBudgetSpent));
        assert_eq!(lockout.record("100005", false, S(7_300)), Some(KeypadAlarm::DailyBudgetSpent));
        // Five failures in the day: locked until the first of them is a day old.
        assert_eq!(lockout.check("100006", S(7_400)), Err(Locked::Keypad(S(86_400 - 7_400))));
        assert_eq!(lockout.check("100006", S(86_400)), Ok(()));
        assert_eq!(lockout.window_counts(S(86_400)), (0, 4));
    }

    #[test]
    fn failures_from_before_a_restart_still_count() {
        let mut lockout = PinLockout::new(PinBudget { per_hour: 3, per_day: 5 });
        lockout.restore(4, S(0));
        assert!(matches!(lockout.check("123456", S(1)), Err(Locked::Keypad(_))));
        assert_eq!(lockout.check("123456", S(3_600)), Ok(()), "the hour passed; one failure left today");
        assert_eq!(lockout.record("123456", false, S(3_600)), Some(KeypadAlarm::DailyBudgetSpent));
    }

    #[test]
    fn codes_are_forgotten_after_a_quiet_day_and_the_map_stays_bounded() {
        let mut lockout = PinLockout::new(PinBudget { per_hour: u32::MAX, per_day: u32::MAX });
        for i in 0..(MAX_CODES + 50) {
            lockout.record(&format!("{i:06}"), false, S(u64::try_from(i).unwrap_or(0)));
        }
        assert_eq!(lockout.tracked_codes(), MAX_CODES);
        lockout.record("000000", false, S(200_000));
        assert_eq!(lockout.tracked_codes(), 1);
    }
}
