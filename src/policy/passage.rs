//! Passage: the only facts kept of someone coming in: how (the entry method) and whether the gate opened,
//! counted per hour. Pure domain types; the store converts them at its edge, the compound parses them from
//! the network. They can never carry who passed: there is no field for it.

/// How a person came in (the only detail a passage count keeps besides the hour and the outcome).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryMethod {
    /// Face match.
    Face,
    /// Resident PIN.
    Pin,
    /// Visitor QR pass.
    VisitorPass,
    /// Opened by the guard.
    Guard,
}

impl EntryMethod {
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

/// Whether the gate opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PassageOutcome {
    /// The gate opened.
    Opened,
    /// Refused (no match, wrong PIN, invalid pass).
    Refused,
}

impl PassageOutcome {
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
    /// `EntryMethod::as_str`.
    pub method: String,
    /// `PassageOutcome::as_str`.
    pub outcome: String,
    /// How many.
    pub count: i64,
}
