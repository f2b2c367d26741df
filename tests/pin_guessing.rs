//! PIN guessing at the keypad, simulated for 30 days against the lockout the gate runs
//! (`policy::lockout::PinLockout`) and the PIN rules residents must pass (`Pin::check_strength`).
//!
//! 300 residents hold PINs drawn from the published frequency of four-digit PINs (`tests/data/pins/`), minus
//! the PINs the rules refuse (a resident refused picks again from the same distribution). The attacker knows
//! that distribution, types one `CODE # PIN #` every 4 seconds, tries the commonest allowed PIN first on every
//! code, never types during a lockout (the keypad shows it), and keeps going for 30 days. The figure is the
//! expected number of doors opened: every attempt on code `c` with PIN `g` adds P(c is a resident's code)
//! times P(that resident chose g), which is exact for randomly drawn codes and PINs and needs no luck.
//!
//! The same attacker against the rules before this change (4-digit codes, a lockout for real codes only,
//! unknown codes never counted, only repeats and runs refused) is simulated for comparison.
//!
//!     cargo test --test pin_guessing -- --nocapture

use std::collections::HashMap;
use std::time::Duration;

use facegate::policy::lockout::{Locked, PinBudget, PinLockout};
use facegate::protect::Pin;

const RESIDENTS: f64 = 300.0;
const DAYS: u64 = 30;
const TYPING: Duration = Duration::from_secs(4);

/// The published shares (%) of the 20 commonest PINs (DataGenetics, 2012), in rank order.
const TOP_20: [(&str, f64); 20] = [
    ("1234", 10.713),
    ("1111", 6.016),
    ("0000", 1.881),
    ("1212", 1.197),
    ("7777", 0.745),
    ("1004", 0.616),
    ("2000", 0.613),
    ("4444", 0.526),
    ("2222", 0.516),
    ("6969", 0.512),
    ("9999", 0.451),
    ("3333", 0.419),
    ("5555", 0.395),
    ("6666", 0.391),
    ("1122", 0.366),
    ("1313", 0.304),
    ("8888", 0.303),
    ("4321", 0.293),
    ("2001", 0.290),
    ("1010", 0.285),
];

/// All 10,000 PINs, most common first, with their probability: the 20 published shares, then a Zipf tail
/// continuous at rank 20 whose exponent makes the whole sum to 1.
fn pin_distribution() -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pins/datagenetics-rank.csv"))
        .expect("the ranked PIN table");
    let ranked: Vec<String> = text.lines().filter_map(|l| l.split(',').next()).map(str::to_owned).collect();
    assert_eq!(ranked.len(), 10_000);
    let mut sorted = ranked.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 10_000, "every PIN once");
    let head: f64 = TOP_20.iter().map(|(_, p)| p / 100.0).sum();
    let p20 = TOP_20[19].1 / 100.0;
    let tail = |s: f64| (21..=10_000).map(|r| p20 * (20.0 / f64::from(r)).powf(s)).sum::<f64>();
    let (mut lo, mut hi) = (0.1, 3.0);
    for _ in 0..80 {
        let mid = (lo + hi) / 2.0;
        if tail(mid) > 1.0 - head {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let s = (lo + hi) / 2.0;
    let published: HashMap<&str, f64> = TOP_20.iter().map(|(pin, p)| (*pin, p / 100.0)).collect();
    ranked
        .into_iter()
        .enumerate()
        .map(|(i, pin)| {
            let p = match published.get(pin.as_str()) {
                Some(p) => *p,
                None => p20 * (20.0 / (i as f64 + 1.0)).powf(s),
            };
            (pin, p)
        })
        .collect()
}

/// What residents end up with under a rule: the distribution restricted to the allowed PINs, renormalised,
/// commonest first.
fn chosen(distribution: &[(String, f64)], allowed: impl Fn(&str) -> bool) -> Vec<f64> {
    let kept: Vec<f64> = distribution.iter().filter(|(pin, _)| allowed(pin)).map(|(_, p)| *p).collect();
    let total: f64 = kept.iter().sum();
    let mut q: Vec<f64> = kept.iter().map(|p| p / total).collect();
    q.sort_by(|a, b| b.total_cmp(a));
    q
}

fn allowed_now(pin: &str) -> bool {
    Pin::parse(pin).is_ok_and(|p| p.check_strength().is_ok())
}

/// The rule before: only one digit repeated or a run of steps of one.
fn allowed_before(pin: &str) -> bool {
    let d = pin.as_bytes();
    let steps: Vec<i16> = d.windows(2).map(|w| i16::from(w[1]) - i16::from(w[0])).collect();
    !(steps.windows(2).all(|w| w[0] == w[1]) && steps.first().is_some_and(|s| s.abs() <= 1))
}

/// The attack on today's keypad: `codes` possible codes of which `RESIDENTS` are real, lockouts as
/// `PinLockout` with `budget`. Rank-major: the commonest PIN on every code, then the next. Returns the expected
/// doors opened and the attempts made.
fn attack(q: &[f64], codes: u64, budget: PinBudget) -> (f64, u64) {
    let mut lockout = PinLockout::new(budget);
    let p_real = RESIDENTS / codes as f64;
    let end = Duration::from_secs(DAYS * 86_400);
    let mut next_rank: HashMap<u64, usize> = HashMap::new();
    let (mut now, mut attempts, mut expected) = (Duration::ZERO, 0u64, 0.0);
    'rounds: for round in 0..q.len() {
        let attempts_before = attempts;
        for code in 0..codes {
            let rank = next_rank.get(&code).copied().unwrap_or(0);
            if rank > round {
                continue;
            }
            let typed = format!("{code:08}");
            loop {
                if now >= end {
                    break 'rounds;
                }
                match lockout.check(&typed, now) {
                    Err(Locked::Keypad(wait)) => now += wait,
                    // The keypad said "locked": this code waits for a later round.
                    Err(Locked::Code(_)) => break,
                    Ok(()) => {
                        expected += p_real * q.get(rank).copied().unwrap_or(0.0);
                        lockout.record(&typed, false, now);
                        next_rank.insert(code, rank + 1);
                        attempts += 1;
                        now += TYPING;
                        break;
                    }
                }
            }
        }
        if attempts == attempts_before {
            // Every code was locked: wait out the shortest lockout.
            now += Duration::from_secs(30);
        }
    }
    (expected, attempts)
}

/// The attack on the keypad before: a lockout per real code only (four free tries, then 30 s doubling to an
/// hour), unknown codes never counted. Six attempts per code tell the real ones apart (only they then answer
/// "locked out"); after that the attacker works the 300 real codes as fast as their lockouts allow.
fn attack_before(q: &[f64], codes: u64) -> f64 {
    let end = DAYS * 86_400;
    let scan = codes * 6 * TYPING.as_secs();
    let backoff = |failures: u32| -> u64 {
        if failures <= 4 {
            0
        } else {
            (30u64 << (failures - 5).min(7)).min(3_600)
        }
    };
    // Every code got five guesses during the scan; each real code then one more whenever its lockout ends.
    let (mut t, mut failures) = (scan, 5u32);
    while t + backoff(failures) < end {
        t += backoff(failures) + TYPING.as_secs();
        failures += 1;
    }
    let per_code = usize::try_from(failures).unwrap_or(usize::MAX);
    RESIDENTS * q.iter().take(per_code).sum::<f64>()
}

#[test]
fn thirty_days_of_guessing_opens_no_door() {
    let distribution = pin_distribution();
    let total: f64 = distribution.iter().map(|(_, p)| p).sum();
    assert!((total - 1.0).abs() < 1e-9, "{total}");
    let q_now = chosen(&distribution, allowed_now);
    let q_before = chosen(&distribution, allowed_before);
    let budget = PinBudget::default();
    let unlimited = PinBudget { per_hour: u32::MAX, per_day: u32::MAX };

    let before = attack_before(&q_before, 9_000);
    let (now, attempts) = attack(&q_now, 900_000, budget);
    let (no_budget, _) = attack(&q_now, 900_000, unlimited);
    let (short_codes, _) = attack(&q_now, 9_000, budget);
    let (loosest, _) = attack(&q_now, 900_000, facegate::config::MAX_PIN_BUDGET);
    let (no_blocklist, _) = attack(&q_before, 900_000, budget);

    println!("PIN guessing, 300 residents, 30 days, one attempt per 4 s, every lockout honoured:");
    println!("  before (4-digit codes, lockout on real codes only, repeats/runs refused): {before:.1} doors expected");
    println!("  now (6-digit codes, per-code and keypad-wide lockout, blocklist):       {now:.5} doors expected");
    println!("    ({attempts} attempts in 30 days; commonest allowed PIN chosen by {:.3} %)", q_now[0] * 100.0);
    println!("  now with the loosest budget the config accepts (50/h, 200/day):        {loosest:.4}");
    println!("  now without the keypad-wide budget:                                   {no_budget:.3}");
    println!("  now with 4-digit codes:                                               {short_codes:.4}");
    println!("  now without the blocklist:                                            {no_blocklist:.4}");

    assert!(before > 10.0, "the old rules should fall to this attacker: {before}");
    assert!(now <= 0.01, "expected doors opened {now} > 0.01");
    assert!(loosest <= 0.01, "the config accepts a budget that opens doors: {loosest}");
    assert!(attempts <= u64::from(budget.per_day) * DAYS + u64::from(budget.per_hour), "{attempts}");
    // Each of the three measures matters: without any one of them the figure is several times worse.
    for (what, figure) in [("budget", no_budget), ("short codes", short_codes), ("blocklist", no_blocklist)] {
        assert!(figure > 3.0 * now, "{what}: {figure} vs {now}");
    }
}

#[test]
fn the_blocklist_is_the_top_of_the_published_ranking() {
    let distribution = pin_distribution();
    let blocked: Vec<&str> = distribution.iter().map(|(pin, _)| pin.as_str()).filter(|pin| !allowed_now(pin)).collect();
    for (pin, _) in distribution.iter().take(200) {
        assert!(!allowed_now(pin), "{pin} is among the 200 commonest and must be refused");
    }
    // Blocked: the 200 commonest, the years, the repeats and runs. Most PINs stay allowed.
    assert!((300..600).contains(&blocked.len()), "{}", blocked.len());
    let q = chosen(&distribution, allowed_now);
    assert!(q[0] < 0.001, "commonest allowed PIN chosen by {} of people", q[0]);
}
