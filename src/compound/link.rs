//! The gate's link to the compound's broker (NATS with JetStream): announces this device's enrolments,
//! revocations and counts, applies the other gates' in broker order, and tells the face path whether it may
//! match.
//!
//! It holds no registry: it sends jobs to the daemon's registry owner ([`crate::registry::owner`]) and awaits
//! them, so what it applies is matchable (or shredded) in the same gallery the gate reads. Every announcement
//! is sealed by [`super::envelope`] before it leaves, and only sealed templates, tombstones and hourly counts
//! ever do. It never blocks the other ways in: the
//! keypad, passes and the guard never ask it anything.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use super::envelope::{inbox_prefix, Announcement, CompoundKeys, EnvelopeError};
use super::epoch::Epoch;
pub use super::health::LinkHealth;
use super::outbox::Queued;
use super::renewal::CompoundSecrets;
use super::stream::{stream_config, JunkTally, StreamWatch};
use crate::policy::consent::{ShredReason, Standing};
use crate::registry::owner::{OwnerError, RegistryHandle};
use crate::registry::{FromCompound, RegistryError};
use crate::store::unix_now;

/// The compound-state key holding the last broker sequence applied.
const APPLIED: &str = "applied_seq";

/// Errors of the link; each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The client could not be set up (certificate files, broker address).
    #[error("cannot set up the compound link to {broker}: {reason}; check [compound] broker, ca, cert and key")]
    Setup {
        /// The broker address.
        broker: String,
        /// Why.
        reason: String,
    },
    /// The client refused the settings (a certificate or key that does not load, a bad address).
    #[error("cannot connect the compound link to {broker}: {source}; check [compound] broker, ca, cert and key")]
    Connect {
        /// The broker address.
        broker: String,
        /// The client's error.
        source: async_nats::ConnectError,
    },
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The registry's owner has stopped.
    #[error(transparent)]
    Owner(#[from] OwnerError),
}

/// Where and how a gate joins its compound (`[compound]` in the config).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkSettings {
    /// This gate's name (unique in the compound).
    pub gate: String,
    /// The broker, e.g. `tls://gate-a.local:4222`.
    pub broker: String,
    /// The compound CA's certificate (the broker's certificate must chain to it).
    pub ca: PathBuf,
    /// This gate's client certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Face matching stops when the broker has not been heard from for this long.
    pub offline_limit: Duration,
    /// How often this gate's counts are sent.
    pub counts_every: Duration,
}

/// Why an announcement could not be applied.
pub(super) enum Apply {
    /// Try again later (the store is busy or failed): the sequence is not advanced.
    Retry(String),
    /// Sealed under, or renewing to, an epoch of the compound key this gate was not given: it waits for a
    /// grant (the sequence is not advanced; nothing after it is skipped).
    LeftOut,
}

pub(super) struct Link {
    pub(super) settings: LinkSettings,
    pub(super) keys: Arc<CompoundKeys>,
    /// Every epoch of the compound key held, and the member key (the only copy in the process).
    pub(super) secrets: CompoundSecrets,
    /// The epoch in force at the last applied sequence.
    pub(super) epoch: Epoch,
    /// Grants owed to gates that hold less (gate, the epoch it holds, its member key).
    pub(super) grants_due: Vec<(String, Epoch, [u8; 32])>,
    /// The epoch this gate was left out of, while it waits for a grant.
    pub(super) left_out: Option<Epoch>,
    /// When this gate's member key was last announced (stored by the broker) since the link started.
    pub(super) member_announced: Option<std::time::Instant>,
    pub(super) registry: RegistryHandle,
    /// Raised by the registry's owner after every change: the outbox may hold something new.
    changes: tokio::sync::watch::Receiver<u64>,
    pub(super) health: Arc<LinkHealth>,
    applied: u64,
    /// The broker's last sequence at the latest (re)connection: applied up to here means caught up.
    target: Option<u64>,
    face_was_allowed: bool,
    /// Connections the client made so far (a change means a reconnection).
    connects: u64,
    /// The counts last sent.
    pub(super) last_counts: Option<Vec<crate::policy::passage::PassageCount>>,
    /// Whether the outbox may hold entries to send (checked at start, after other connections' commits, and
    /// until a pass drains it).
    pub(super) outbox_dirty: bool,
    /// Whether the stream exists (made or found once); after that the link only reads its state.
    stream_ready: bool,
    /// Whether "broker not answering" was logged since it last answered (logged once per outage).
    broker_unreachable_logged: bool,
    /// The stream's settings and room, as last logged.
    watch: StreamWatch,
    /// Messages that did not open, per gate name.
    pub(super) junk: JunkTally,
}

/// The broker's stream of this compound, as the link last saw it.
type BrokerStream = stream::Stream;
/// The link's reader of the stream, from its last applied sequence.
type Messages = Option<consumer::pull::Ordered>;

/// Runs the link until `stop` completes, applying what it receives through the daemon's registry owner.
pub async fn run(
    settings: LinkSettings,
    secrets: CompoundSecrets,
    tls: rustls::ClientConfig,
    registry: RegistryHandle,
    health: Arc<LinkHealth>,
    stop: impl Future<Output = ()>,
) -> Result<(), LinkError> {
    let keys = secrets.keys();
    let client = connect(&settings, &keys, tls).await?;
    let js = jetstream::new(client.clone());
    let applied =
        registry.call(|r| r.store().compound_state(APPLIED)).await?.map_err(RegistryError::from)?.unwrap_or(0);
    let changes = registry.changes();
    let beat_every = (settings.offline_limit / 10).clamp(Duration::from_millis(250), Duration::from_secs(5));
    let counts_every = settings.counts_every;
    let mut link = Link {
        settings,
        keys: Arc::new(keys),
        secrets,
        epoch: 0,
        grants_due: Vec::new(),
        left_out: None,
        member_announced: None,
        registry,
        changes,
        health,
        applied: u64::try_from(applied).unwrap_or(0),
        target: None,
        face_was_allowed: false,
        connects: 0,
        last_counts: None,
        outbox_dirty: true,
        stream_ready: false,
        broker_unreachable_logged: false,
        watch: StreamWatch::default(),
        junk: JunkTally::default(),
    };
    link.load_epoch().await;
    tracing::info!(gate = %link.settings.gate, broker = %link.settings.broker, "compound link starting; faces wait for the first synchronisation");

    let mut beat = interval(beat_every);
    let mut outbox = interval(Duration::from_millis(200));
    let mut counts = interval(counts_every);
    let mut messages: Messages = None;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = beat.tick() => link.on_beat(&client, &js, &mut messages).await,
            message = next_message(&mut messages) => {
                if link.on_message(message, &client, &mut messages).await {
                    beat.reset_immediately();
                }
            }
            _ = outbox.tick() => {
                if link.observe_connection(&client) {
                    messages = None;
                    beat.reset_immediately();
                }
                link.log_face_permission();
                link.send_outbox(&js).await;
            }
            _ = counts.tick() => link.send_counts(&js).await,
        }
    }
    drop(messages);
    // Never hold the daemon's shutdown on an unreachable broker.
    let _ = tokio::time::timeout(Duration::from_secs(2), client.drain()).await;
    Ok(())
}

/// A timer that, when the link was busy, waits a whole period again rather than firing a burst.
fn interval(period: Duration) -> tokio::time::Interval {
    let mut timer = tokio::time::interval(period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// The client: mutual TLS with the gate's certificate, reconnecting forever, never waiting long on a call.
async fn connect(
    settings: &LinkSettings,
    keys: &CompoundKeys,
    tls: rustls::ClientConfig,
) -> Result<async_nats::Client, LinkError> {
    async_nats::ConnectOptions::new()
        .name(format!("facegate {}/{}", keys.compound(), settings.gate))
        // The broker lets each gate read only replies under its own prefix.
        .custom_inbox_prefix(inbox_prefix(keys.compound(), &settings.gate))
        .tls_client_config(tls)
        .require_tls(true)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(u64::try_from(attempts).unwrap_or(u64::MAX).saturating_mul(200).min(2_000))
        })
        .ping_interval(Duration::from_secs(10))
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(5)))
        .connect(settings.broker.as_str())
        .await
        .map_err(|source| LinkError::Connect { broker: settings.broker.clone(), source })
}

/// Waits at most 2 s for a broker call: the link's loop must never hang on a broker that stopped answering.
async fn within_2s<T, E: std::fmt::Display>(call: impl Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(2), call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

async fn next_message(
    messages: &mut Option<consumer::pull::Ordered>,
) -> Option<Result<jetstream::Message, consumer::pull::OrderedError>> {
    match messages {
        Some(m) => m.next().await,
        None => std::future::pending().await,
    }
}

impl Link {
    /// The heartbeat: notices reconnections, makes or reads the stream, catches up, and (re)creates the
    /// consumer. Asks the broker nothing while the client has no connection.
    async fn on_beat(&mut self, client: &async_nats::Client, js: &jetstream::Context, messages: &mut Messages) {
        if self.observe_connection(client) {
            // A fresh consumer from this gate's own last sequence: the broker may have restarted and lost the
            // old (ephemeral) one.
            *messages = None;
        }
        if self.health.connected() {
            match self.stream(js).await {
                Ok(stream) => {
                    self.stream_ready = true;
                    self.broker_unreachable_logged = false;
                    self.health.heard();
                    self.check_stream(&stream);
                    self.catch_up_to(&stream, messages).await;
                    self.renewal_beat(js, &stream).await;
                    if messages.is_none() {
                        *messages = self.consumer(&stream).await;
                    }
                }
                Err(e) if !self.broker_unreachable_logged => {
                    self.broker_unreachable_logged = true;
                    tracing::warn!("compound broker not answering ({e}); retrying");
                }
                Err(_) => {}
            }
        }
        self.log_face_permission();
    }

    /// The compound's stream: made the first time (see [`stream_config`]), only read after that. A gate may
    /// create it but never change or delete it (the broker's permissions).
    async fn stream(&self, js: &jetstream::Context) -> Result<BrokerStream, String> {
        if self.stream_ready {
            return within_2s(js.get_stream(self.keys.stream())).await;
        }
        within_2s(js.get_or_create_stream(stream_config(&self.keys))).await
    }

    /// Faces stop past the offline limit while the stream cannot keep this gate's announcements.
    fn check_stream(&mut self, stream: &BrokerStream) {
        let info = stream.cached_info();
        self.watch.check(
            &stream_config(&self.keys),
            &info.config,
            &info.state,
            &self.health,
            self.settings.offline_limit,
        );
    }

    /// Sets the sequence to reach before faces match again, and starts over if the broker lost data.
    async fn catch_up_to(&mut self, stream: &BrokerStream, messages: &mut Messages) {
        let last = stream.cached_info().state.last_sequence;
        if last < self.applied {
            tracing::error!(
                last,
                applied = self.applied,
                "the broker holds fewer announcements than this gate applied (its data was lost or replaced): reading them all again"
            );
            self.set_applied(0).await;
            self.set_epoch(0).await;
            *messages = None;
        }
        if !self.health.caught_up.load(Ordering::Acquire) && self.target.is_none() {
            self.target = Some(last);
        }
        self.check_caught_up();
    }

    /// A reader of the stream from the last applied sequence; `None` (retried at the next beat) on failure.
    async fn consumer(&self, stream: &BrokerStream) -> Messages {
        let config = consumer::pull::OrderedConfig {
            filter_subject: self.keys.subjects(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: self.applied + 1 },
            ..Default::default()
        };
        let created = within_2s(async {
            stream.create_consumer(config).await.map_err(|e| e.to_string())?.messages().await.map_err(|e| e.to_string())
        })
        .await;
        created.map_err(|e| tracing::warn!("compound consumer: {e}; retrying")).ok()
    }

    /// Applies one delivered message in order. Returns whether the client reconnected (the heartbeat should
    /// run at once).
    async fn on_message(
        &mut self,
        message: Option<Result<jetstream::Message, consumer::pull::OrderedError>>,
        client: &async_nats::Client,
        messages: &mut Messages,
    ) -> bool {
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                tracing::warn!("compound messages interrupted ({e}); resuming after the last one applied");
                *messages = None;
                return false;
            }
            None => {
                *messages = None;
                return false;
            }
        };
        if self.observe_connection(client) {
            // Delivered over a new connection: start again from the last applied, with faces off.
            *messages = None;
            return true;
        }
        self.health.heard();
        let (seq, pending) = match message.info() {
            Ok(info) => (info.stream_sequence, info.pending),
            Err(e) => {
                tracing::warn!("compound message without stream info: {e}");
                return false;
            }
        };
        if seq <= self.applied {
            return false;
        }
        let subject = message.subject.to_string();
        match self.apply(&subject, &message.payload).await {
            Ok(()) => {
                self.set_applied(seq).await;
                if pending == 0 {
                    // Nothing more on the broker right now: applied all it held.
                    self.target = Some(seq);
                }
                self.check_caught_up();
                self.log_face_permission();
            }
            Err(Apply::LeftOut) => *messages = None,
            Err(Apply::Retry(why)) => {
                tracing::error!("cannot apply a compound announcement ({why}); retrying from it");
                *messages = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        false
    }

    /// Reads the client's connection state. A new connection (the client counts them) after the first means
    /// announcements may have been missed: faces wait until everything the broker holds is applied. Returns
    /// whether the client has reconnected since the last look.
    fn observe_connection(&mut self, client: &async_nats::Client) -> bool {
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        let was = self.health.connected.swap(connected, Ordering::AcqRel);
        if was && !connected {
            tracing::warn!(
                limit = ?self.settings.offline_limit,
                "compound broker unreachable: faces keep matching until the offline limit, PIN and passes always"
            );
        }
        let connects = client.statistics().connects.load(Ordering::Relaxed);
        if connects == self.connects {
            return false;
        }
        let reconnected = self.connects > 0;
        if reconnected {
            // Whatever was announced meanwhile must be applied before a face is matched again.
            self.health.caught_up.store(false, Ordering::Release);
            self.target = None;
            tracing::info!("compound broker reconnected: applying what was missed before matching faces");
        }
        self.connects = connects;
        reconnected
    }

    async fn set_applied(&mut self, seq: u64) {
        self.applied = seq;
        let value = i64::try_from(seq).unwrap_or(i64::MAX);
        match self.registry.call(move |r| r.store_mut().set_compound_state(APPLIED, value)).await {
            Ok(Ok(())) => {}
            // Not fatal: a restart re-applies from the last saved sequence; every announcement is idempotent.
            Ok(Err(e)) => tracing::warn!("cannot save the compound sequence: {e}"),
            Err(e) => tracing::warn!("cannot save the compound sequence: {e}"),
        }
    }

    fn check_caught_up(&mut self) {
        if let Some(target) = self.target {
            if self.applied >= target && !self.health.caught_up.swap(true, Ordering::AcqRel) {
                self.target = None;
                tracing::info!(applied = self.applied, "caught up with the compound");
            }
        }
    }

    fn log_face_permission(&mut self) {
        let allowed = self.health.face_matching_allowed();
        if allowed != self.face_was_allowed {
            self.face_was_allowed = allowed;
            if allowed {
                tracing::info!("compound link in step: face matching on");
            } else {
                tracing::warn!(
                    limit = ?self.settings.offline_limit,
                    "compound link silent past the offline limit, not caught up, or its announcements not stored: face matching off; PIN, passes and the guard keep working"
                );
            }
        }
    }

    /// Applies one announcement from the broker. One that does not open or is malformed is skipped and
    /// counted against the gate whose subject it came on (a forged message can never shred or enrol anyone);
    /// one older than what this gate knows of the resident is refused and logged, and when it displaced this
    /// gate's own word on the broker, that word is announced again. A store failure is retried.
    async fn apply(&mut self, subject: &str, payload: &[u8]) -> Result<(), Apply> {
        let (sealed, announcement) = match self.keys.open(subject, payload) {
            Ok(opened) => opened,
            // Never skipped: it may be a revocation. If it is junk, clearing the gate that sent it unblocks.
            Err(EnvelopeError::UnknownEpoch(epoch)) if epoch > self.keys.latest() => return Err(self.left_out(epoch)),
            Err(e) => {
                self.junk.count(self.keys.gate_of(subject), &e);
                return Ok(());
            }
        };
        if !self.in_order(subject, sealed, &announcement).await {
            return Ok(());
        }
        let own = announcement.origin() == self.settings.gate;
        let now = unix_now();
        let keys = self.keys.clone();
        let owner_gone = |e: OwnerError| Apply::Retry(e.to_string());
        match announcement {
            Announcement::Template { origin, resident, consent, template, stamp } => {
                let id = resident.clone();
                let imported = self
                    .registry
                    .call(move |r| r.import_from_compound(&resident, &consent, &template, stamp, keys.rotation(), now))
                    .await
                    .map_err(owner_gone)?;
                match imported {
                    Ok(FromCompound::Applied(_)) => {
                        tracing::info!(from = %origin, %stamp, "enrolment from the compound stored")
                    }
                    Ok(FromCompound::Same) => {}
                    Ok(FromCompound::Older(known)) => {
                        self.refuse_older(&origin, "an enrolment", stamp, known, own, id).await?
                    }
                    Err(RegistryError::Store(e)) => return Err(Apply::Retry(e.to_string())),
                    Err(e) => tracing::warn!(from = %origin, "enrolment from the compound refused: {e}"),
                }
            }
            Announcement::Shred { origin, resident, reason, stamp } => {
                let id = resident.clone();
                let shredded = self
                    .registry
                    .call(move |r| r.shred_from_compound(&resident, reason, stamp, now))
                    .await
                    .map_err(owner_gone)?;
                let why = if reason == ShredReason::MovedOut { "moved out" } else { "revoked" };
                match shredded {
                    Ok(FromCompound::Applied(Some(_))) => tracing::info!(
                        from = %origin,
                        reason = why,
                        %stamp,
                        "revocation from the compound: template and key shredded here"
                    ),
                    Ok(FromCompound::Applied(None)) => {
                        tracing::info!(from = %origin, %stamp, "revocation from the compound: nothing held here, remembered")
                    }
                    Ok(FromCompound::Same) => {}
                    Ok(FromCompound::Older(known)) => {
                        self.refuse_older(&origin, "a revocation", stamp, known, own, id).await?
                    }
                    Err(e) => return Err(Apply::Retry(e.to_string())),
                }
            }
            Announcement::Counts { origin, counts, serial } => {
                if own {
                    // This gate's own report coming back; an earlier one (a replay) is replaced at the next send.
                    if self.counts_serial().await.is_some_and(|mine| serial < mine) {
                        tracing::warn!(
                            serial,
                            "an earlier counts report of this gate was replayed: sending the latest again"
                        );
                        self.last_counts = None;
                    }
                    return Ok(());
                }
                let gate = origin.clone();
                let stored = self
                    .registry
                    .call(move |r| r.store_mut().set_gate_counts(&gate, serial, &counts))
                    .await
                    .map_err(owner_gone)?;
                match stored {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(from = %origin, serial, "an earlier counts report refused (a replay)"),
                    Err(e) => return Err(Apply::Retry(e.to_string())),
                }
            }
            Announcement::Member { origin, public } => self.member_seen(&origin, sealed, public),
            Announcement::Renewal { origin, epoch, shares } => self.take_renewal(&origin, epoch, &shares).await?,
            // Read only by the gate it is for, when it was left out (`renewal.rs`).
            Announcement::Grant { .. } => {}
        }
        Ok(())
    }

    /// Logs a refused earlier announcement; when it came on this gate's own subject, it displaced this gate's
    /// latest word there, which is queued to be announced again.
    async fn refuse_older(
        &mut self,
        origin: &str,
        what: &str,
        stamp: crate::policy::consent::Stamp,
        known: Standing,
        own: bool,
        resident: String,
    ) -> Result<(), Apply> {
        let known_state = if known.ended.is_some() { "ended" } else { "live" };
        tracing::warn!(
            from = %origin,
            announced = %stamp,
            known = %known.stamp,
            known_state,
            "{what} from the compound older than what this gate knows refused (a replay, or it crossed a later change)"
        );
        if own {
            let now = unix_now();
            let queued = self
                .registry
                .call(move |r| r.store_mut().announce_again(&resident, now))
                .await
                .map_err(|e| Apply::Retry(e.to_string()))?
                .map_err(|e| Apply::Retry(e.to_string()))?;
            if queued {
                self.outbox_dirty = true;
                tracing::warn!("the replay displaced this gate's word on the broker: announcing it again");
            }
        }
        Ok(())
    }

    /// Sends what this device changed, oldest first; each entry leaves the outbox only once the broker has
    /// stored it (acknowledged), so a broker outage or a crash loses nothing.
    async fn send_outbox(&mut self, js: &jetstream::Context) {
        const BATCH: usize = 32;
        // Read the outbox only when the registry changed since the last look, or the last pass left entries.
        if self.changes.has_changed().unwrap_or(false) {
            self.changes.mark_unchanged();
            self.outbox_dirty = true;
        }
        // Only in step: a gate that has not applied every renewal yet would seal under a key it should not use.
        if !self.outbox_dirty || !self.health.caught_up.load(Ordering::Acquire) {
            return;
        }
        let (gate, keys) = (self.settings.gate.clone(), self.keys.clone());
        // One job: the outbox and, for each entry, what to announce (the template carried to the compound's
        // transform inside the owner, never as an embedding).
        let batch = self.registry.call(move |r| super::outbox::announcements(r, &gate, &keys, BATCH)).await;
        let entries = match batch {
            Ok(Ok(entries)) => entries,
            Ok(Err(e)) => {
                tracing::warn!("compound outbox: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!("compound outbox: {e}");
                return;
            }
        };
        let drained = entries.len() < BATCH;
        for Queued { seq, kind, announcement, renews } in entries {
            if let Some(announcement) = announcement {
                if !self.publish(js, &announcement).await {
                    return;
                }
                tracing::info!(kind = %kind, "announced to the compound");
                // Whoever held the compound key before a revocation made here must not read what follows it.
                // The store says which entries are such revocations: an echo of another gate's, or a word
                // announced again, renews nothing (the outbox survives a restart; a set in memory did not).
                if renews {
                    self.renewal_due().await;
                }
            }
            self.done(seq).await;
        }
        self.outbox_dirty = !drained;
    }

    async fn done(&mut self, seq: i64) {
        match self.registry.call(move |r| r.store_mut().outbox_done(seq)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("compound outbox: {e}"),
            Err(e) => tracing::warn!("compound outbox: {e}"),
        }
    }
}
