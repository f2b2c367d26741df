//! Counts: what a property manager may see of the gate's use. Pure: the store's hourly counts in, the
//! published table out.
//!
//! The store keeps only counts per hour x method x outcome. Publishing them follows the small-cell rule
//! (no value of 1 to 10 may be reported, nor derived): a cell of 1-10 is shown as suppressed, and within
//! each day, more hours are suppressed until the hidden hours add up to 0 or to more than 10, so the day's
//! own count minus the visible hours never reveals a small number. Bins are fixed (whole hours or whole days
//! in the compound's time zone, one zone: the config's), so asking again with other ranges yields the same
//! cells and nothing to subtract. Only closed days are published, hours included: a live cell would change
//! between two page loads minutes apart and the difference would be one person's passage. Optionally
//! ([`Noise`], `[portal] count_noise_epsilon`), every shown value also carries Laplace noise of scale 1/epsilon
//! (one passage changes one cell by one), drawn from a keyed hash of the cell so that reloading gives the
//! same value and averaging reloads gives nothing. This module never sees an identity; there is none to see.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::policy::passage::{EntryMethod, PassageCount, PassageOutcome};

/// Counts from 1 up to this are never shown.
pub const SMALL_CELL_MAX: i64 = 10;

/// The size of a published bin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// One cell per hour, method and outcome.
    Hour,
    /// One cell per day, method and outcome.
    Day,
}

/// A published count: the value, or suppressed (1 to 10, or hidden so that no small value can be derived;
/// the two kinds look the same). In JSON a suppressed count is `null`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Published {
    /// The exact count (0, or more than 10).
    Count(i64),
    /// Not shown.
    Suppressed,
}

impl Published {
    /// The text for a table or CSV cell.
    pub fn as_text(&self) -> String {
        match self {
            Self::Count(n) => n.to_string(),
            Self::Suppressed => "suppressed".into(),
        }
    }

    /// Whether the value is hidden.
    pub fn is_suppressed(&self) -> bool {
        matches!(self, Self::Suppressed)
    }
}

/// One published cell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublishedCell {
    /// Start of the bin, Unix seconds (UTC instant of the local hour or midnight).
    pub start: i64,
    /// Entry method (`face`, `pin`, `visitor_pass`, `guard` in JSON).
    pub method: EntryMethod,
    /// `opened` or `refused` in JSON.
    pub outcome: PassageOutcome,
    /// The count, or suppressed.
    pub count: Published,
}

/// Laplace noise on published counts: epsilon per published cell, drawn per cell from a keyed hash (the
/// device's own secret), so the same cell always shows the same value.
pub struct Noise {
    epsilon: f64,
    key: zeroize::Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Noise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Noise").field("epsilon", &self.epsilon).finish_non_exhaustive()
    }
}

impl Noise {
    /// Noise of scale `1 / epsilon`, keyed by `key` (which must stay secret from whoever reads the counts:
    /// with it the noise could be subtracted).
    pub fn new(epsilon: f64, key: &[u8; 32]) -> Self {
        Self { epsilon, key: zeroize::Zeroizing::new(*key) }
    }

    /// The cell's noise: Laplace(0, 1/epsilon) by inverse transform of a uniform value from HMAC-SHA256 of
    /// the cell's identity.
    fn sample(&self, granularity: Granularity, start: i64, method: EntryMethod, outcome: PassageOutcome) -> f64 {
        use hmac::{Hmac, Mac};
        let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key[..]) else { return 0.0 };
        mac.update(b"facegate count noise v1\0");
        mac.update(&[u8::from(granularity == Granularity::Hour)]);
        mac.update(&start.to_le_bytes());
        mac.update(method.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(outcome.as_str().as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag[..8]);
        // 53 random bits: a uniform value in [0, 1), then centred.
        let u = (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        let tail = (1.0 - 2.0 * u.abs()).max(f64::MIN_POSITIVE);
        -u.signum() * tail.ln() / self.epsilon
    }

    fn apply(&self, granularity: Granularity, cell: PublishedCell) -> PublishedCell {
        match cell.count {
            Published::Count(n) => {
                let noisy = (n as f64 + self.sample(granularity, cell.start, cell.method, cell.outcome)).round();
                // Counts are never negative; the float is bounded (|noise| < 37/epsilon).
                PublishedCell { count: Published::Count((noisy.max(0.0)) as i64), ..cell }
            }
            Published::Suppressed => cell,
        }
    }
}

/// An offset from UTC like `+08:00` or `-05:00`, in seconds east of UTC.
pub fn parse_utc_offset(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not an offset like +08:00 or -05:00");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// The local day (as the Unix second of its midnight) that `at` falls in, for a zone `utc_offset_secs` east
/// of UTC.
pub fn day_start(at: i64, utc_offset_secs: i64) -> i64 {
    let local = at + utc_offset_secs;
    local - local.rem_euclid(86_400) - utc_offset_secs
}

/// Publishes hourly counts at the given granularity, with small cells suppressed as the module explains, and
/// the shown ones noised when `noise` is given (suppression is decided on the true counts). Only days that
/// ended before `now` are published (today's hours never are); zero cells are not listed. The input may be in
/// any order.
pub fn publish(
    counts: &[PassageCount],
    granularity: Granularity,
    utc_offset_secs: i64,
    now: i64,
    noise: Option<&Noise>,
) -> Vec<PublishedCell> {
    let exact = publish_exact(counts, granularity, utc_offset_secs, now);
    match noise {
        Some(noise) => exact.into_iter().map(|cell| noise.apply(granularity, cell)).collect(),
        None => exact,
    }
}

fn publish_exact(
    counts: &[PassageCount],
    granularity: Granularity,
    utc_offset_secs: i64,
    now: i64,
) -> Vec<PublishedCell> {
    let open_day = day_start(now, utc_offset_secs);
    // (day, method, outcome) -> hour -> count
    let mut days: BTreeMap<(i64, EntryMethod, PassageOutcome), BTreeMap<i64, i64>> = BTreeMap::new();
    for c in counts.iter().filter(|c| c.count > 0 && day_start(c.hour_start, utc_offset_secs) < open_day) {
        *days
            .entry((day_start(c.hour_start, utc_offset_secs), c.method, c.outcome))
            .or_default()
            .entry(c.hour_start)
            .or_default() += c.count;
    }
    let mut out = Vec::new();
    for ((day, method, outcome), hours) in days {
        let cell = |start: i64, count: Published| PublishedCell { start, method, outcome, count };
        match granularity {
            Granularity::Day => out.push(cell(day, suppress_small(hours.values().sum()))),
            Granularity::Hour => {
                let hidden = hours_to_hide(&hours);
                out.extend(hours.iter().map(|(&hour, &n)| {
                    cell(hour, if hidden.contains(&hour) { Published::Suppressed } else { Published::Count(n) })
                }));
            }
        }
    }
    out
}

fn suppress_small(n: i64) -> Published {
    if (1..=SMALL_CELL_MAX).contains(&n) {
        Published::Suppressed
    } else {
        Published::Count(n)
    }
}

/// The hours of one day's group to hide: every small one, then the smallest others until the hidden total
/// is 0 or above the limit (or everything is hidden, when the day itself is small and thus hidden too).
fn hours_to_hide(hours: &BTreeMap<i64, i64>) -> Vec<i64> {
    let mut hidden: Vec<i64> =
        hours.iter().filter(|(_, &n)| (1..=SMALL_CELL_MAX).contains(&n)).map(|(&h, _)| h).collect();
    let mut hidden_sum: i64 = hidden.iter().map(|h| hours[h]).sum();
    let mut rest: Vec<(i64, i64)> =
        hours.iter().filter(|(h, &n)| n > SMALL_CELL_MAX && !hidden.contains(h)).map(|(&h, &n)| (n, h)).collect();
    rest.sort_unstable();
    let mut rest = rest.into_iter();
    while (1..=SMALL_CELL_MAX).contains(&hidden_sum) {
        let Some((n, h)) = rest.next() else { break };
        hidden.push(h);
        hidden_sum += n;
    }
    hidden
}

/// The published cells as CSV (RFC 4180: CRLF, fields quoted where needed), times in RFC 3339 UTC, columns
/// `start_utc,method,outcome,count`. A field that a spreadsheet would read as a formula (leading `=`, `+`, `-`,
/// `@`, tab or carriage return) is prefixed with `'`: none can arise from the closed method and outcome
/// names today, and none ever will, whatever is added.
pub fn to_csv(cells: &[PublishedCell]) -> String {
    let mut out = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    let _ = out.write_record(["start_utc", "method", "outcome", "count"]);
    for c in cells {
        let fields = [crate::policy::rfc3339(c.start), c.method.to_string(), c.outcome.to_string(), c.count.as_text()];
        // Writing to a Vec cannot fail.
        let _ = out.write_record(fields.iter().map(|f| neutralise_formula(f).into_owned()));
    }
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// A CSV field a spreadsheet will not evaluate.
fn neutralise_formula(field: &str) -> std::borrow::Cow<'_, str> {
    if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{field}").into()
    } else {
        field.into()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Long after every count in these tests: all their days are closed.
    const NOW: i64 = 400 * 86_400;

    fn count(hour: i64, method: &str, outcome: &str, n: i64) -> PassageCount {
        let method = EntryMethod::parse(method).unwrap();
        PassageCount { hour_start: hour * 3600, method, outcome: PassageOutcome::parse(outcome).unwrap(), count: n }
    }

    fn shown(cells: &[PublishedCell]) -> Vec<Option<i64>> {
        cells
            .iter()
            .map(|c| match c.count {
                Published::Count(n) => Some(n),
                Published::Suppressed => None,
            })
            .collect()
    }

    #[test]
    fn small_cells_and_one_complement_are_hidden() {
        let counts = [count(8, "face", "opened", 40), count(9, "face", "opened", 3), count(10, "face", "opened", 25)];
        let hours = publish(&counts, Granularity::Hour, 0, NOW, None);
        // 3 is hidden; hiding it alone would let the day (68) minus 40 and 25 reveal it, so 25 goes too.
        assert_eq!(shown(&hours), vec![Some(40), None, None]);
        let days = publish(&counts, Granularity::Day, 0, NOW, None);
        assert_eq!(shown(&days), vec![Some(68)]);
        assert_eq!(
            to_csv(&hours).split("\r\n").nth(2).unwrap(),
            "1970-01-01T09:00:00Z,face,opened,suppressed",
            "csv marks the cell"
        );
    }

    #[test]
    fn a_quiet_day_is_hidden_whole_and_zero_is_shown() {
        let counts = [count(1, "pin", "refused", 2), count(2, "pin", "refused", 5), count(3, "guard", "opened", 0)];
        assert_eq!(shown(&publish(&counts, Granularity::Hour, 0, NOW, None)), vec![None, None]);
        assert_eq!(shown(&publish(&counts, Granularity::Day, 0, NOW, None)), vec![None]);
        let busy = [count(1, "pin", "refused", 11)];
        assert_eq!(shown(&publish(&busy, Granularity::Day, 0, NOW, None)), vec![Some(11)]);
    }

    #[test]
    fn days_follow_the_compound_time_zone() {
        // 20:00 UTC and 06:00 UTC the next day fall on one day in UTC+8 (04:00 and 14:00).
        let counts = [count(20, "face", "opened", 20), count(30, "face", "opened", 30)];
        assert_eq!(shown(&publish(&counts, Granularity::Day, 0, NOW, None)), vec![Some(20), Some(30)]);
        assert_eq!(shown(&publish(&counts, Granularity::Day, 8 * 3600, NOW, None)), vec![Some(50)]);
        assert_eq!(day_start(20 * 3600, 8 * 3600), 16 * 3600);
    }

    /// Attack 4 of the outside review: today's cells were published live, so two loads minutes apart gave one
    /// passage away, and the hour view (last 24 h) cut days in two, so a day total minus visible hours gave a
    /// suppressed hour. Now today is never published and hours come in whole days.
    #[test]
    fn the_open_day_is_never_published_and_a_later_load_changes_no_published_cell() {
        let day = 86_400;
        let yesterday = [count(10, "face", "opened", 25), count(11, "face", "opened", 30)];
        let mut later = yesterday.to_vec();
        later.push(count(24 + 9, "face", "opened", 14));
        let now = day + 10 * 3600;
        for g in [Granularity::Hour, Granularity::Day] {
            let first = publish(&later[..2], g, 0, now, None);
            let second = publish(&later, g, 0, now + 600, None);
            assert_eq!(first, second, "a passage today changed a published cell");
            assert!(second.iter().all(|c| c.start < day), "{second:?}");
        }
        // The next day, the whole of the day before is published, its hours and its total agreeing.
        let hours = publish(&later, Granularity::Hour, 0, 2 * day, None);
        assert!(hours.iter().any(|c| c.start == (24 + 9) * 3600), "{hours:?}");
    }

    #[test]
    fn csv_is_rfc_4180_and_no_field_can_start_a_formula() {
        let cells = [PublishedCell {
            start: 0,
            method: EntryMethod::Face,
            outcome: PassageOutcome::Opened,
            count: Published::Count(12),
        }];
        let text = to_csv(&cells);
        assert_eq!(text, "start_utc,method,outcome,count\r\n1970-01-01T00:00:00Z,face,opened,12\r\n");
        assert_eq!(neutralise_formula("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise_formula("-1"), "'-1");
        assert_eq!(neutralise_formula("face"), "face");
    }

    #[test]
    fn noise_is_the_same_on_every_load_centred_and_of_the_configured_scale() {
        let day = 86_400;
        // 200 days with one busy hour each (40 passages): every day cell and hour cell is shown.
        let counts: Vec<PassageCount> = (0..200).map(|d| count(d * 24 + 9, "pin", "opened", 40)).collect();
        let now = 201 * day;
        let key = [7u8; 32];
        let (eps, other) = (Noise::new(0.5, &key), Noise::new(0.5, &[8u8; 32]));
        for g in [Granularity::Hour, Granularity::Day] {
            let first = publish(&counts, g, 0, now, Some(&eps));
            assert_eq!(first, publish(&counts, g, 0, now + 3_600, Some(&eps)), "a reload changed a noisy value");
            assert_ne!(first, publish(&counts, g, 0, now, Some(&other)), "the noise does not depend on the key");
            let offsets: Vec<f64> = shown(&first).into_iter().map(|v| v.unwrap() as f64 - 40.0).collect();
            let n = offsets.len() as f64;
            let mean = offsets.iter().sum::<f64>() / n;
            let sd = (offsets.iter().map(|o| (o - mean).powi(2)).sum::<f64>() / n).sqrt();
            // Laplace(1/0.5): mean 0, sd sqrt(2)/0.5 = 2.83 (rounding adds about 0.3); 200 draws.
            assert!(mean.abs() < 0.7, "{g:?}: mean {mean}");
            assert!((2.2..3.6).contains(&sd), "{g:?}: sd {sd}");
            assert!(offsets.iter().any(|&o| o != 0.0));
        }
        // Suppressed cells stay suppressed; nothing is negative.
        let small = vec![count(9, "face", "opened", 3), count(10, "face", "opened", 1)];
        let tight = Noise::new(0.05, &key);
        assert!(publish(&small, Granularity::Hour, 0, day, Some(&tight)).iter().all(|c| c.count.is_suppressed()));
        let zeroish: Vec<PassageCount> = (0..50).map(|d| count(d * 24 + 1, "pin", "opened", 11)).collect();
        assert!(shown(&publish(&zeroish, Granularity::Day, 0, 51 * day, Some(&tight))).iter().all(|v| v.unwrap() >= 0));
        assert!(!format!("{tight:?}").contains('7'), "the key is printed");
    }

    proptest! {
        #[test]
        fn no_small_value_is_shown_or_derivable(cells in proptest::collection::vec((0i64..24, 0usize..2, 0i64..40), 0..40)) {
            let methods = ["face", "pin"];
            let counts: Vec<_> = cells.iter().map(|&(h, m, n)| count(h, methods[m], "opened", n)).collect();
            let hours = publish(&counts, Granularity::Hour, 0, NOW, None);
            let days = publish(&counts, Granularity::Day, 0, NOW, None);
            for c in hours.iter().chain(&days) {
                if let Published::Count(n) = c.count {
                    prop_assert!(!(1..=SMALL_CELL_MAX).contains(&n));
                }
            }
            for day in &days {
                let group = hours.iter().filter(|h| h.method == day.method);
                let (visible, any_hidden): (i64, bool) = group.fold((0, false), |(s, any), h| match h.count {
                    Published::Count(n) => (s + n, any),
                    Published::Suppressed => (s, true),
                });
                if let Published::Count(total) = day.count {
                    let derived = total - visible;
                    prop_assert!(!(1..=SMALL_CELL_MAX).contains(&derived), "derived {}", derived);
                    prop_assert_eq!(any_hidden, derived != 0);
                }
            }
            // A published cell never changes later, whenever it is asked again (only closed days are shown).
            let spread: Vec<_> = cells.iter().map(|&(h, m, n)| count(h * 5, methods[m], "opened", n)).collect();
            let (early, late) = (3 * 86_400 + 7 * 3_600, 5 * 86_400 + 1);
            for g in [Granularity::Hour, Granularity::Day] {
                let (first, second) = (publish(&spread, g, 0, early, None), publish(&spread, g, 0, late, None));
                for cell in &first {
                    prop_assert!(second.contains(cell), "{:?} changed", cell);
                }
            }
            // The raw total is preserved wherever nothing is hidden.
            let raw: i64 = counts.iter().map(|c| c.count).sum();
            let published: i64 = days.iter().map(|d| if let Published::Count(n) = d.count { n } else { 0 }).sum();
            prop_assert!(published <= raw);
        }
    }
}
