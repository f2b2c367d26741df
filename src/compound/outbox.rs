//! What this gate's outbox announces: each queued change read as an announcement, inside the registry's
//! owner (the template carried to the compound's transform there, never formed as an embedding). A template
//! entry announces the resident's current state with its current stamp; a tombstone, the stamp it was
//! queued with. It sends nothing itself: the link does.

use super::envelope::{Announcement, CompoundKeys};
use crate::policy::consent::{ShredReason, Standing};
use crate::registry::{Registry, RegistryError};
use crate::store::OutboxKind;

/// One queued change.
pub(super) struct Queued {
    /// Its outbox sequence.
    pub seq: i64,
    /// Its kind.
    pub kind: OutboxKind,
    /// What to announce (`None`: nothing any more, e.g. a template revoked since, whose tombstone follows).
    pub announcement: Option<Announcement>,
    /// Whether announcing it makes this gate renew the compound key (a revocation made here).
    pub renews: bool,
}

/// The oldest `limit` entries of the outbox, as announcements of gate `gate`.
pub(super) fn announcements(
    r: &mut Registry,
    gate: &str,
    keys: &CompoundKeys,
    limit: usize,
) -> Result<Vec<Queued>, RegistryError> {
    // The outbox may name a resident another process (the CLI) just enrolled: the gallery must hold them
    // before their template is read from it, or the entry would pass for revoked.
    r.reload_if_changed()?;
    let entries = r.store().outbox(limit)?;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let announcement = match entry.kind {
                OutboxKind::Template => {
                    let template = r.template_under(&entry.resident_id, keys.rotation());
                    let consent = r.store().live_consent(&entry.resident_id).ok().flatten();
                    let standing = r.store().standing(&entry.resident_id).ok().flatten();
                    match (template, consent, standing) {
                        (Some(template), Some(consent), Some(Standing { stamp, ended: None })) => {
                            Some(Announcement::Template {
                                origin: gate.to_owned(),
                                resident: entry.resident_id.clone(),
                                consent,
                                template,
                                stamp,
                            })
                        }
                        _ => None,
                    }
                }
                OutboxKind::Revoked | OutboxKind::MovedOut => Some(Announcement::Shred {
                    origin: gate.to_owned(),
                    resident: entry.resident_id.clone(),
                    reason: if entry.kind == OutboxKind::MovedOut {
                        ShredReason::MovedOut
                    } else {
                        ShredReason::Revoked
                    },
                    stamp: entry.stamp,
                }),
            };
            Queued { seq: entry.seq, kind: entry.kind, announcement, renews: entry.renews }
        })
        .collect())
}
