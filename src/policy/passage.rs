//! Passage: the only facts kept of someone coming in: how (the entry method) and whether the gate opened,
//! counted per hour. Pure domain types; the store converts them at its edge, the compound parses them from
//! the network. They can never carry who passed: there is no field for it.

use serde::{Deserialize, Serialize};

/// How a person came in (the only detail a passage count keeps besides the hour and the outcome). Serialised
/// (JSON, the compound's count reports) by its stored name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
// Variants in the order of their stored names, so sorting by either gives the same order.
pub enum EntryMethod {
    /// Face match.
    Face,
    /// Opened by the guard.
    Guard,
    /// Resident PIN.
    Pin,
    /// Visitor QR pass.
    VisitorPass,
}

impl std::fmt::Display for EntryMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EntryMethod {
    /// Every method, in a fixed order.
    pub const ALL: [Self; 4] = [Self::Face, Self::Guard, Self::Pin, Self::VisitorPass];

    /// The method with this stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Face => "face",
            Self::Pin => "pin",
            Self::VisitorPass => "visitor_pass",
            Self::Guard => "guard",
        }
    }
}

/// Whether the gate opened. Serialised by its stored name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassageOutcome {
    /// The gate opened.
    Opened,
    /// Refused (no match, wrong PIN, invalid pass).
    Refused,
}

impl std::fmt::Display for PassageOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PassageOutcome {
    /// Both outcomes.
    pub const ALL: [Self; 2] = [Self::Opened, Self::Refused];

    /// The outcome with this stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Refused => "refused",
        }
    }
}

/// One pre-aggregated count: how many passages of one kind in one hour. No identity, ever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassageCount {
    /// Start of the hour (Unix seconds, UTC).
    pub hour_start: i64,
    /// How.
    pub method: EntryMethod,
    /// Whether the gate opened.
    pub outcome: PassageOutcome,
    /// How many.
    pub count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_parse_back_and_match_serde() {
        for m in EntryMethod::ALL {
            assert_eq!(EntryMethod::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_string(&m).ok(), Some(format!("\"{m}\"")));
        }
        for o in PassageOutcome::ALL {
            assert_eq!(PassageOutcome::parse(o.as_str()), Some(o));
            assert_eq!(serde_json::to_string(&o).ok(), Some(format!("\"{o}\"")));
        }
        assert!(EntryMethod::ALL.windows(2).all(|w| w[0] < w[1] && w[0].as_str() < w[1].as_str()));
        assert!(PassageOutcome::ALL.windows(2).all(|w| w[0] < w[1] && w[0].as_str() < w[1].as_str()));
        assert_eq!(EntryMethod::parse("Face"), None);
        assert_eq!(PassageOutcome::parse(""), None);
    }
}
