//! The link's side of the compound key's renewal ([`super::epoch`]): this gate's secrets as kept in its key
//! folder, renewing after its own revocations (or on `facegate compound rekey`), taking renewals and
//! grants, and granting the epochs a gate that was left out lacks.
//!
//! Owns the compound's secret files of this gate: `compound.key` (epoch 0, from `facegate compound add-gate`),
//! `epochs.key` (every later epoch) and `member.key` (the seed of the gate's member key), each sealed under
//! the device's key root like every key file. It never writes a secret in clear and never keeps the new
//! secret of a renewal it makes: it takes it back from its own share, in the broker's order, like every gate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;

use super::envelope::{Announcement, CompoundKeys, EnvelopeError};
use super::epoch::{self, Epoch, EpochError, Keyring, MemberKey, Order, ShareKind};
use super::link::{Apply, Link};
use crate::protect::keys::{self, KeyError, KeyWrap, MasterKeyFile};
use crate::protect::AeadKey;

/// The compound-state key holding the epoch in force at the last applied sequence.
const EPOCH: &str = "epoch";
/// How often a gate left out of a renewal announces its member key again.
const ASK_AGAIN: Duration = Duration::from_secs(30);
/// The compound-state key set when this gate owes the compound a renewal.
pub const RENEWAL_DUE: &str = "renewal_due";

/// Why the compound's secrets could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A key file.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The keyring.
    #[error(transparent)]
    Epoch(#[from] EpochError),
}

/// This gate's compound secrets: every epoch it holds and its member key, and where they are kept.
pub struct CompoundSecrets {
    compound: String,
    keyring: Keyring,
    member: MemberKey,
    epochs_file: PathBuf,
    wrap: KeyWrap,
}

impl std::fmt::Debug for CompoundSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompoundSecrets").field("compound", &self.compound).field("keyring", &self.keyring).finish()
    }
}

impl CompoundSecrets {
    /// Reads the secrets of `compound` beside `secret` (the `compound.key` file); makes the member key the
    /// first time.
    pub fn load(compound: &str, secret: &Path, wrap: &KeyWrap) -> Result<Self, SecretsError> {
        let first = MasterKeyFile::new(secret.to_path_buf(), wrap.clone()).load()?;
        let dir = secret.parent().unwrap_or(Path::new("."));
        let mut keyring = Keyring::new(first);
        let epochs_file = dir.join("epochs.key");
        if let Some(encoded) = keys::read_secret(&epochs_file, wrap)? {
            keyring.add_encoded(&encoded)?;
        }
        let member = MemberKey::from_seed(MasterKeyFile::new(dir.join("member.key"), wrap.clone()).load_or_create()?);
        Ok(Self { compound: compound.to_owned(), keyring, member, epochs_file, wrap: wrap.clone() })
    }

    /// The keys every announcement is sealed and opened with.
    pub fn keys(&self) -> CompoundKeys {
        CompoundKeys::from_keyring(&self.keyring, &self.compound)
    }

    /// This gate's member key.
    pub fn member(&self) -> &MemberKey {
        &self.member
    }

    /// Adds epochs (encoded as in a grant) and keeps them; returns those that were new.
    fn add_encoded(&mut self, encoded: &[u8]) -> Result<Vec<Epoch>, SecretsError> {
        let mut keyring = self.keyring.clone();
        let added = keyring.add_encoded(encoded)?;
        if !added.is_empty() {
            // Kept before it is used: a message sealed under an epoch must never outlive its key.
            keys::write_secret(&self.epochs_file, &self.wrap, &keyring.encode_after(0))?;
            self.keyring = keyring;
        }
        Ok(added)
    }
}

/// The newest message on each subject matching `filter`: member keys, or the grants to this gate. `None`
/// when the broker did not answer.
async fn latest_on(stream: &jetstream::stream::Stream, filter: String) -> Option<Vec<(String, Vec<u8>)>> {
    let config = consumer::pull::OrderedConfig {
        filter_subject: filter,
        deliver_policy: consumer::DeliverPolicy::LastPerSubject,
        ..Default::default()
    };
    let read = async {
        let mut messages = stream.create_consumer(config).await.ok()?.messages().await.ok()?;
        let mut out = Vec::new();
        // An empty selection delivers nothing: the short wait ends the read.
        while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_millis(300), messages.next()).await {
            let pending = message.info().map(|i| i.pending).unwrap_or(0);
            out.push((message.subject.to_string(), message.payload.to_vec()));
            if pending == 0 {
                break;
            }
        }
        Some(out)
    };
    tokio::time::timeout(Duration::from_secs(3), read).await.ok().flatten()
}

impl Link {
    /// The epoch in force where the link resumes (kept with the applied sequence).
    pub(super) async fn load_epoch(&mut self) {
        if let Ok(Ok(Some(epoch))) = self.registry.call(|r| r.store().compound_state(EPOCH)).await {
            self.epoch = Epoch::try_from(epoch).unwrap_or(0);
        }
    }

    pub(super) async fn set_epoch(&mut self, epoch: Epoch) {
        if epoch == self.epoch {
            return;
        }
        self.epoch = epoch;
        match self.registry.call(move |r| r.store_mut().set_compound_state(EPOCH, i64::from(epoch))).await {
            Ok(Ok(())) => {}
            // Not fatal: a restart judges again from the last saved epoch; only an own renewal may repeat.
            Ok(Err(e)) => tracing::warn!("cannot save the compound key's epoch: {e}"),
            Err(e) => tracing::warn!("cannot save the compound key's epoch: {e}"),
        }
    }

    async fn renewal_state(&self, due: bool) {
        let set = self.registry.call(move |r| r.store_mut().set_compound_state(RENEWAL_DUE, i64::from(due))).await;
        if !matches!(set, Ok(Ok(()))) {
            tracing::warn!("cannot note the compound key's renewal as due={due}; it is retried");
        }
    }

    /// After this gate announced a revocation: the compound key is renewed at the next heartbeat.
    pub(super) async fn renewal_due(&mut self) {
        self.renewal_state(true).await;
    }

    /// Where an opened message stands in the broker's order. `false`: refused, sealed under an epoch a
    /// renewal replaced before it (a holder of an old secret cannot speak after a renewal); this gate's own
    /// is announced again under the epoch in force.
    pub(super) async fn in_order(&mut self, subject: &str, sealed: Epoch, announcement: &Announcement) -> bool {
        // A member key or a grant from a gate that is behind travels under the epoch it holds.
        if matches!(announcement, Announcement::Member { .. } | Announcement::Grant { .. }) {
            return true;
        }
        match epoch::order(sealed, self.epoch) {
            Order::InForce => true,
            Order::Later => {
                self.set_epoch(sealed).await;
                true
            }
            Order::Superseded if announcement.origin() == self.settings.gate => {
                tracing::info!(
                    sealed,
                    in_force = self.epoch,
                    "an announcement of this gate crossed a renewal of the compound key: announcing it again"
                );
                match announcement {
                    Announcement::Template { resident, .. } | Announcement::Shred { resident, .. } => {
                        let (resident, now) = (resident.clone(), crate::store::unix_now());
                        let queued = self.registry.call(move |r| r.store_mut().announce_again(&resident, now)).await;
                        if matches!(queued, Ok(Ok(true))) {
                            self.outbox_dirty = true;
                        }
                    }
                    Announcement::Counts { .. } => self.last_counts = None,
                    // Another gate's renewal came first; this gate's revocation still owes one.
                    Announcement::Renewal { .. } => self.renewal_state(true).await,
                    Announcement::Member { .. } | Announcement::Grant { .. } => {}
                }
                false
            }
            Order::Superseded => {
                let why = EnvelopeError::Superseded { sealed, in_force: self.epoch };
                self.junk.count(self.keys.gate_of(subject), &why);
                false
            }
        }
    }

    /// A renewal, in order: this gate opens its share and the new epoch is in force from here on. Left out
    /// (no share for this gate), it waits for a grant.
    pub(super) async fn take_renewal(
        &mut self,
        origin: &str,
        epoch: Epoch,
        shares: &[epoch::Share],
    ) -> Result<(), Apply> {
        if !self.keys.holds(epoch) {
            let gate = self.settings.gate.clone();
            let opened = shares.iter().find(|s| s.gate == gate).and_then(|share| {
                epoch::open_share(self.secrets.member(), ShareKind::Renewal, self.keys.compound(), &gate, epoch, share)
                    .ok()
            });
            let Some(secret) = opened else {
                return Err(self.left_out(epoch));
            };
            let mut encoded = zeroize::Zeroizing::new(Vec::with_capacity(36));
            encoded.extend_from_slice(&epoch.to_be_bytes());
            encoded.extend_from_slice(&secret);
            match self.secrets.add_encoded(&encoded) {
                Ok(_) => self.keys = std::sync::Arc::new(self.secrets.keys()),
                Err(SecretsError::Epoch(e)) => {
                    tracing::error!(from = %origin, "{e}");
                    return Ok(());
                }
                Err(e) => return Err(Apply::Retry(e.to_string())),
            }
        }
        self.set_epoch(epoch).await;
        tracing::info!(from = %origin, epoch, "compound key renewed: what the earlier key sealed no longer counts from here");
        Ok(())
    }

    /// A gate's member key, in order: a gate that holds less than this one is granted what it lacks. Only
    /// in step: a gate still reading the stream's history would grant on every old member key it passes.
    pub(super) fn member_seen(&mut self, origin: &str, holds: Epoch, public: [u8; 32]) {
        let in_step = self.health.caught_up.load(std::sync::atomic::Ordering::Acquire);
        if in_step && origin != self.settings.gate && holds < self.keys.latest() {
            let due = (origin.to_owned(), holds, public);
            if !self.grants_due.contains(&due) {
                self.grants_due.push(due);
            }
        }
    }

    /// This gate was not given `epoch`: it announces its member key and waits for a grant.
    pub(super) fn left_out(&mut self, epoch: Epoch) -> Apply {
        if self.left_out != Some(epoch) {
            tracing::error!(
                epoch,
                "this gate was left out of a renewal of the compound key: faces wait until a gate of the compound \
                 grants it (it asks now); if none does, copy the compound folder again (`facegate compound add-gate`)"
            );
            // Its member key, announced at start (and again until stored), is what the other gates grant to.
            self.left_out = Some(epoch);
        }
        Apply::LeftOut
    }

    /// The heartbeat's part: announce the member key, collect grants while left out, send grants owed, and
    /// renew when due (only caught up, so the renewal is sealed under the epoch in force).
    pub(super) async fn renewal_beat(&mut self, js: &jetstream::Context, stream: &jetstream::stream::Stream) {
        // Announced at start (until stored), and again every half minute while left out: the gates that were
        // not in step when it came grant nothing.
        let ask_again = self.left_out.is_some() && self.member_announced.is_some_and(|at| at.elapsed() > ASK_AGAIN);
        if self.member_announced.is_none() || ask_again {
            let member =
                Announcement::Member { origin: self.settings.gate.clone(), public: self.secrets.member().public() };
            if self.publish(js, &member).await {
                self.member_announced = Some(std::time::Instant::now());
            }
        }
        if let Some(waiting) = self.left_out {
            self.collect_grants(stream).await;
            if self.keys.holds(waiting) {
                tracing::info!(epoch = waiting, "the compound key's epochs this gate lacked were granted");
                self.left_out = None;
            }
            return;
        }
        for (gate, holds, public) in std::mem::take(&mut self.grants_due) {
            self.grant(js, &gate, holds, &public).await;
        }
        let due = self.registry.call(|r| r.store().compound_state(RENEWAL_DUE)).await;
        if matches!(due, Ok(Ok(Some(1)))) && self.health.caught_up.load(std::sync::atomic::Ordering::Acquire) {
            self.renew(js, stream).await;
        }
    }

    async fn collect_grants(&mut self, stream: &jetstream::stream::Stream) {
        let gate = self.settings.gate.clone();
        let Some(grants) = latest_on(stream, self.keys.grant_subjects(&gate)).await else { return };
        for (subject, payload) in grants {
            let Ok((_, Announcement::Grant { gate: to, epoch, share, .. })) = self.keys.open(&subject, &payload) else {
                continue;
            };
            let compound = self.keys.compound().to_owned();
            let opened = epoch::open_share(self.secrets.member(), ShareKind::Grant, &compound, &to, epoch, &share);
            if let (true, Ok(encoded)) = (to == gate, opened) {
                match self.secrets.add_encoded(&encoded) {
                    Ok(added) if !added.is_empty() => self.keys = std::sync::Arc::new(self.secrets.keys()),
                    Ok(_) => {}
                    Err(e) => tracing::error!("a grant of the compound key refused: {e}"),
                }
            }
        }
    }

    async fn grant(&mut self, js: &jetstream::Context, gate: &str, holds: Epoch, public: &[u8; 32]) {
        let latest = self.keys.latest();
        let encoded = self.secrets.keyring.encode_after(holds);
        let share = match epoch::seal_share(public, ShareKind::Grant, self.keys.compound(), gate, latest, &encoded) {
            Ok(share) => share,
            Err(e) => return tracing::warn!(to = %gate, "no grant: {e}"),
        };
        let grant =
            Announcement::Grant { origin: self.settings.gate.clone(), gate: gate.to_owned(), epoch: latest, share };
        let sealed = match self.keys.seal_under(holds, &grant) {
            Ok(sealed) => sealed,
            Err(e) => return tracing::warn!(to = %gate, "no grant: {e}"),
        };
        if self.publish_sealed(js, sealed).await {
            tracing::info!(to = %gate, from = holds, to_epoch = latest, "compound key epochs granted to a gate that lacked them");
        }
    }

    /// Draws a new secret and seals it to every member gate whose key the broker holds (this one included).
    async fn renew(&mut self, js: &jetstream::Context, stream: &jetstream::stream::Stream) {
        let Some(announced) = latest_on(stream, self.keys.member_subjects()).await else { return };
        let mut members = vec![(self.settings.gate.clone(), self.secrets.member().public())];
        for (subject, payload) in announced {
            if let Ok((_, Announcement::Member { origin, public })) = self.keys.open(&subject, &payload) {
                if origin != self.settings.gate {
                    members.push((origin, public));
                }
            }
        }
        let epoch = self.keys.latest().saturating_add(1);
        let secret = AeadKey::generate();
        let compound = self.keys.compound().to_owned();
        let shares: Result<Vec<_>, _> = members
            .iter()
            .map(|(gate, public)| {
                epoch::seal_share(public, ShareKind::Renewal, &compound, gate, epoch, secret.as_bytes())
            })
            .collect();
        drop(secret);
        let shares = match shares {
            Ok(shares) => shares,
            Err(e) => return tracing::warn!("no renewal of the compound key: {e}"),
        };
        let renewal = Announcement::Renewal { origin: self.settings.gate.clone(), epoch, shares };
        if self.publish(js, &renewal).await {
            self.renewal_state(false).await;
            tracing::info!(epoch, members = members.len(), "renewal of the compound key announced");
        }
    }
}
