//! What the link watches of the broker's stream: its settings (as the gates made it), its room (a flood
//! fills it), and messages on it that do not open (junk, counted per gate name). It tells `LinkHealth` when
//! this gate's announcements cannot be kept, and logs each change once. It never deletes anything (no gate
//! may): clearing is the administrator's (`admin.rs`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream;

use super::envelope::{CompoundKeys, EnvelopeError};
use super::health::{LinkHealth, Unstored};

/// The stream's limits: room for every gate's word on 10,000 residents several times over. When full, the
/// broker refuses new messages instead of dropping old ones (a dropped tombstone would revive a face), and
/// every gate stops matching faces past the offline limit until an administrator clears it.
pub const STREAM_MAX_MESSAGES: i64 = 200_000;
/// See [`STREAM_MAX_MESSAGES`].
pub const STREAM_MAX_BYTES: i64 = 192 * 1024 * 1024;
/// The largest message (a counts report of 40 days fits many times).
pub const STREAM_MAX_MESSAGE_SIZE: i32 = 1024 * 1024;
/// Free room below which the stream counts as full: a template announcement needs about 1.5 KiB.
const STREAM_HEADROOM_BYTES: u64 = 4 * 1024;
/// At most one summary of refused messages per this period (a flood must not flood the log too).
const JUNK_LOG_EVERY: Duration = Duration::from_secs(10);

/// The compound's stream: one message per subject (each gate's latest word on each resident, its latest
/// counts), on disk, bounded (see [`STREAM_MAX_MESSAGES`]), refusing new messages when full rather than
/// dropping old ones. Deleting or purging is left to the administrator's certificate.
pub fn stream_config(keys: &CompoundKeys) -> stream::Config {
    stream::Config {
        name: keys.stream(),
        subjects: vec![keys.subjects()],
        max_messages_per_subject: 1,
        max_messages: STREAM_MAX_MESSAGES,
        max_bytes: STREAM_MAX_BYTES,
        max_message_size: STREAM_MAX_MESSAGE_SIZE,
        discard: stream::DiscardPolicy::New,
        storage: stream::StorageType::File,
        // No gate may delete or purge: the broker's permissions refuse it to every gate's certificate. The
        // stream's own deny flags would also refuse it to the administrator for good (JetStream never lets them
        // be lifted), leaving no way to clear a flood but deleting the whole stream.
        deny_delete: false,
        deny_purge: false,
        ..Default::default()
    }
}

/// Why the stream cannot keep the compound's announcements, if it cannot: configured otherwise than
/// `wanted` (each setting that protects a tombstone is compared), or full.
pub fn stream_trouble(wanted: &stream::Config, found: &stream::Config, state: &stream::State) -> Option<String> {
    let mut differs = Vec::new();
    let mut compare = |name: &'static str, same: bool| {
        if !same {
            differs.push(name);
        }
    };
    compare("subjects", found.subjects == wanted.subjects);
    compare("max_messages_per_subject", found.max_messages_per_subject == wanted.max_messages_per_subject);
    compare("max_messages", found.max_messages == wanted.max_messages);
    compare("max_bytes", found.max_bytes == wanted.max_bytes);
    compare("max_age", found.max_age == wanted.max_age);
    compare("discard", found.discard == wanted.discard);
    compare("storage", found.storage == wanted.storage);
    compare("deny_delete", found.deny_delete == wanted.deny_delete);
    compare("deny_purge", found.deny_purge == wanted.deny_purge);
    compare("allow_rollup", found.allow_rollup == wanted.allow_rollup);
    compare("sealed", found.sealed == wanted.sealed);
    if !differs.is_empty() {
        return Some(format!("its stream's settings were changed: {}", differs.join(", ")));
    }
    let messages_full = u64::try_from(found.max_messages).is_ok_and(|max| state.messages >= max);
    let bytes_full =
        u64::try_from(found.max_bytes).is_ok_and(|max| state.bytes.saturating_add(STREAM_HEADROOM_BYTES) >= max);
    (messages_full || bytes_full)
        .then(|| format!("its stream is full: {} messages, {} bytes", state.messages, state.bytes))
}

/// The stream's trouble as last logged, so each change is logged once.
#[derive(Debug, Default)]
pub(super) struct StreamWatch {
    trouble: Option<String>,
}

impl StreamWatch {
    /// Compares the stream with what the compound needs; raises or clears [`Unstored::Stream`].
    pub(super) fn check(
        &mut self,
        wanted: &stream::Config,
        found: &stream::Config,
        state: &stream::State,
        health: &LinkHealth,
        limit: Duration,
    ) {
        let trouble = stream_trouble(wanted, found, state);
        match &trouble {
            Some(_) => health.unstored(Unstored::Stream),
            None => health.stored(Unstored::Stream),
        }
        if trouble != self.trouble {
            match &trouble {
                Some(why) => tracing::error!(
                    ?limit,
                    "the compound's broker cannot keep announcements ({why}): faces stop past the offline limit; \
                     see deploy/broker/README.md, \"A full or altered stream\""
                ),
                None => tracing::info!("the compound's broker keeps announcements again"),
            }
            self.trouble = trouble;
        }
    }
}

/// Messages that did not open, per gate whose subject they came on, summarised at most every
/// [`JUNK_LOG_EVERY`].
#[derive(Debug, Default)]
pub(super) struct JunkTally {
    since_summary: BTreeMap<String, u64>,
    logged: Option<Instant>,
}

impl JunkTally {
    /// Counts one message that did not open on `gate`'s subjects (`None`: outside any gate's).
    pub(super) fn count(&mut self, gate: Option<&str>, error: &EnvelopeError) {
        *self.since_summary.entry(gate.unwrap_or("(no gate)").to_owned()).or_default() += 1;
        if self.logged.is_some_and(|at| at.elapsed() < JUNK_LOG_EVERY) {
            return;
        }
        self.logged = Some(Instant::now());
        let per_gate: Vec<String> = self.since_summary.iter().map(|(gate, n)| format!("{gate}: {n}")).collect();
        tracing::warn!(
            last = %error,
            "compound messages that do not open refused ({}); a gate whose subjects carry them may have had its \
             certificate taken: `facegate compound remove-gate` revokes it",
            per_gate.join(", ")
        );
        self.since_summary.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::protect::AeadKey;

    #[test]
    fn an_altered_or_full_stream_is_trouble_and_the_wanted_one_is_not() {
        let keys = CompoundKeys::derive(&AeadKey::from_bytes([1; 32]), "maple-court");
        let wanted = stream_config(&keys);
        // As the broker reports it.
        let state = |messages: u64, bytes: u64| -> stream::State {
            serde_json::from_value(serde_json::json!({
                "messages": messages, "bytes": bytes, "first_seq": 1, "first_ts": "2026-12-01T00:00:00Z",
                "last_seq": messages, "last_ts": "2026-12-01T00:00:00Z", "consumer_count": 2
            }))
            .unwrap()
        };
        assert_eq!(stream_trouble(&wanted, &wanted, &state(10, 10_000)), None);
        let mut edited = wanted.clone();
        edited.max_age = Duration::from_secs(60);
        edited.discard = stream::DiscardPolicy::Old;
        let why = stream_trouble(&wanted, &edited, &state(10, 10_000)).unwrap();
        assert!(why.contains("max_age") && why.contains("discard"), "{why}");
        let full = u64::try_from(STREAM_MAX_BYTES).unwrap() - 100;
        assert!(stream_trouble(&wanted, &wanted, &state(10, full)).unwrap().contains("full"));
        let many = u64::try_from(STREAM_MAX_MESSAGES).unwrap();
        assert!(stream_trouble(&wanted, &wanted, &state(many, 10_000)).unwrap().contains("full"));
        assert!(!wanted.deny_purge && wanted.max_messages_per_subject == 1);
    }
}
