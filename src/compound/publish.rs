//! What the link sends on its own: this gate's hourly counts, and every announcement published with the
//! broker's acknowledgement awaited (a refusal or no answer counts as not stored, so faces stop past the
//! offline limit here too).
//!
//! Owns the counts' serial in the compound state. It never sends a passage but as an hourly count, and never
//! publishes anything unsealed: every payload comes from [`super::envelope`].

use std::time::Duration;

use async_nats::jetstream;

use super::envelope::Announcement;
use super::health::Unstored;
use super::link::Link;
use crate::store::unix_now;

/// The compound-state key holding the serial of this gate's last counts report.
const COUNTS_SERIAL: &str = "counts_serial";
/// Counts older than this are not sent (the manager pages show two weeks).
const COUNTS_HORIZON_SECS: i64 = 40 * 86_400;

impl Link {
    /// The serial of this gate's last counts report.
    pub(super) async fn counts_serial(&self) -> Option<u64> {
        let serial = self.registry.call(|r| r.store().compound_state(COUNTS_SERIAL)).await.ok()?.ok()??;
        u64::try_from(serial).ok()
    }

    /// Sends this gate's hourly counts when they changed since the last report, numbered before they are
    /// sent.
    pub(super) async fn send_counts(&mut self, js: &jetstream::Context) {
        let now = unix_now();
        let counts =
            match self.registry.call(move |r| r.store().passage_counts(now - COUNTS_HORIZON_SECS, now + 3_600)).await {
                Ok(Ok(counts)) => counts,
                Ok(Err(e)) => {
                    tracing::warn!("compound counts: {e}");
                    return;
                }
                Err(e) => {
                    tracing::warn!("compound counts: {e}");
                    return;
                }
            };
        // Unchanged counts are not sent again: every message makes every gate write its sequence.
        if self.last_counts.as_ref() == Some(&counts) {
            return;
        }
        // Numbered before it is sent, so a report is never sent twice under one serial.
        let next = self.counts_serial().await.unwrap_or(0).saturating_add(1);
        let value = i64::try_from(next).unwrap_or(i64::MAX);
        match self.registry.call(move |r| r.store_mut().set_compound_state(COUNTS_SERIAL, value)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return tracing::warn!("compound counts: {e}"),
            Err(e) => return tracing::warn!("compound counts: {e}"),
        }
        let announcement = Announcement::Counts { origin: self.settings.gate.clone(), counts, serial: next };
        if self.publish(js, &announcement).await {
            if let Announcement::Counts { counts, .. } = announcement {
                self.last_counts = Some(counts);
            }
        }
    }

    /// Publishes and waits for the broker's acknowledgement. A refusal (full stream, permissions) or no
    /// answer counts as not stored: past the offline limit, faces stop here too.
    pub(super) async fn publish(&mut self, js: &jetstream::Context, announcement: &Announcement) -> bool {
        match self.keys.seal(announcement) {
            Ok(sealed) => self.publish_sealed(js, sealed).await,
            Err(e) => {
                tracing::error!("cannot seal an announcement: {e}");
                false
            }
        }
    }

    /// Publishes a sealed announcement (see [`Link::publish`]).
    pub(super) async fn publish_sealed(&mut self, js: &jetstream::Context, sealed: (String, Vec<u8>)) -> bool {
        if !self.health.connected() {
            return false;
        }
        let (subject, payload) = sealed;
        let sent = tokio::time::timeout(Duration::from_secs(2), async {
            js.publish(subject, payload.into()).await.map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())
        })
        .await;
        match sent {
            Ok(Ok(_ack)) => {
                self.health.heard();
                self.health.stored(Unstored::Refused);
                true
            }
            Ok(Err(e)) => {
                if self.health.unstored_for().is_none() {
                    tracing::warn!("the compound's broker refused an announcement ({e}); kept for the next try");
                }
                self.health.unstored(Unstored::Refused);
                false
            }
            Err(_) => {
                tracing::debug!("compound publish timed out; kept for the next try");
                self.health.unstored(Unstored::Refused);
                false
            }
        }
    }
}
