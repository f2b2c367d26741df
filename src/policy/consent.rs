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
