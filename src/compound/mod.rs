//! Several gates of one compound: enrol once, enter at every gate, revoke everywhere.
//!
//! The gates share a NATS broker with JetStream (one gate can host it; `deploy/broker/`). Only sealed
//! templates, tombstones (revocations, move-outs) with the consent state, and hourly counts cross the
//! network, sealed end to end under the compound's shared secret ([`envelope`]); gates authenticate to the
//! broker with certificates from the compound's own CA ([`certs`]). [`link`] runs inside the daemon:
//! it announces this device's changes from the store's outbox (written in the same transaction as the
//! change), applies the other gates' in broker order, and stops face matching when the broker has been
//! silent past the offline limit or after a reconnection until every missed announcement is applied.
//!
//! It never sends an image, an embedding, a device's own transform or anything about a passage but hourly
//! counts.

pub mod admin;
pub mod certs;
pub mod envelope;
pub mod epoch;
pub mod health;
pub mod link;
mod outbox;
mod publish;
mod wire;
pub mod renewal;
pub mod stream;

pub use envelope::{valid_name, Announcement, CompoundKeys, EnvelopeError};
pub use health::LinkHealth;
pub use link::LinkSettings;
