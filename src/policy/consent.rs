//! Consent: a resident's separate consent to face entry, as given, and why face data is destroyed. Pure
//! domain types; the store keeps them, the compound carries them between gates.

/// A consent to face entry, as given (separately from any other terms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRecord {
    /// Version of the notice shown.
    pub notice_version: String,
    /// sha256 (hex) of the exact notice text shown.
    pub notice_sha256: String,
    /// The purpose consented to.
    pub purpose: String,
    /// How it was given (gate, kiosk, portal...).
    pub channel: String,
    /// When (Unix seconds).
    pub granted_at: i64,
}

/// Why a resident's face data is being destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShredReason {
    /// The resident withdrew consent: template, key and PIN go.
    Revoked,
    /// The template was not used for the retention period: template and key go, consent ends.
    Unused,
    /// The resident moved out: template, key and PIN go.
    MovedOut,
}

/// Where a resident's face entry stands in the compound's order of changes: the consent generation (raised
/// each time consent is given after none was live) and the change within it (raised by every enrolment and
/// by the revocation or move-out that ends it). Counters, never times: the gates' clocks need not agree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// How many consent periods the resident has opened (1 for the first).
    pub generation: u32,
    /// Changes within that consent period (0 at consent, +1 per enrolment and for the end).
    pub version: u32,
}

impl Stamp {
    /// A new consent period after `self` (the last known state).
    pub fn next_generation(self) -> Self {
        Self { generation: self.generation.saturating_add(1), version: 0 }
    }

    /// The next change in the same consent period.
    pub fn next_version(self) -> Self {
        Self { generation: self.generation, version: self.version.saturating_add(1) }
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.generation, self.version)
    }
}

/// A resident's latest state as one gate knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// Its place in the order of changes.
    pub stamp: Stamp,
    /// `None`: consent live (a template may follow); `Some`: ended by a revocation or move-out.
    pub ended: Option<ShredReason>,
}

impl Standing {
    /// The order of states: by stamp, and at an equal stamp an end before a template, so that two gates
    /// that changed the same resident at once settle on the one that protects them (the end).
    fn key(self) -> (Stamp, bool) {
        (self.stamp, self.ended.is_some())
    }
}

/// What a gate does with an announced state, given what it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Later than anything known: apply it.
    Newer,
    /// Already known (the gate's own announcement coming back, or another gate's echo): nothing to do.
    Same,
    /// Earlier than what is known (a replay, or a change that crossed a later one): refuse it.
    Older,
}

/// Compares an announced state with the one known here (`None`: nothing known of this resident).
pub fn judge(known: Option<Standing>, announced: Standing) -> Verdict {
    match known.map(|k| k.key().cmp(&announced.key())) {
        None | Some(std::cmp::Ordering::Less) => Verdict::Newer,
        Some(std::cmp::Ordering::Equal) => Verdict::Same,
        Some(std::cmp::Ordering::Greater) => Verdict::Older,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(generation: u32, version: u32) -> Standing {
        Standing { stamp: Stamp { generation, version }, ended: None }
    }

    fn ended(generation: u32, version: u32) -> Standing {
        Standing { stamp: Stamp { generation, version }, ended: Some(ShredReason::Revoked) }
    }

    #[test]
    fn later_changes_win_replays_lose_and_an_end_wins_a_tie() {
        assert_eq!(judge(None, live(1, 1)), Verdict::Newer);
        assert_eq!(judge(None, ended(1, 2)), Verdict::Newer, "a tombstone for a resident never held is kept");
        // A replayed template after the revocation that ended it.
        assert_eq!(judge(Some(ended(1, 2)), live(1, 1)), Verdict::Older);
        // A replayed tombstone after a re-enrolment under a new consent.
        assert_eq!(judge(Some(live(2, 1)), ended(1, 2)), Verdict::Older);
        assert_eq!(judge(Some(live(1, 1)), ended(1, 2)), Verdict::Newer);
        assert_eq!(judge(Some(ended(1, 2)), live(2, 1)), Verdict::Newer, "a new consent after a revocation");
        assert_eq!(judge(Some(live(1, 1)), live(1, 1)), Verdict::Same);
        assert_eq!(judge(Some(ended(1, 2)), ended(1, 2)), Verdict::Same);
        // Two gates changed the resident at once: the end wins on both sides.
        assert_eq!(judge(Some(live(1, 2)), ended(1, 2)), Verdict::Newer);
        assert_eq!(judge(Some(ended(1, 2)), live(1, 2)), Verdict::Older);
        assert_eq!(Stamp { generation: 1, version: 2 }.next_generation(), Stamp { generation: 2, version: 0 });
    }
}
