//! The administrator's repair on the broker, with the certificate of the compound folder's `admin/`: clearing
//! what a removed gate left on the stream (a flood of junk, or replays), which no gate's certificate may do.
//!
//! It never opens an announcement (it holds no secret it would need) and never touches another gate's
//! subjects.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;

use super::certs::{self, CertError};
use super::envelope::{gate_subjects, stream_name};

/// Why the repair could not be done; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The compound folder could not be read.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The gate still has a certificate the broker accepts: it could fill its subjects again at once.
    #[error("gate {0} is still a member: run `facegate compound remove-gate --gate {0}` and reload the broker first")]
    StillMember(String),
    /// The broker could not be reached with the administrator's certificate.
    #[error("cannot reach the broker {broker} as administrator: {reason}; check the address and that the broker runs the configuration of this compound folder")]
    Connect {
        /// The broker's address.
        broker: String,
        /// Why.
        reason: String,
    },
    /// The broker refused a step.
    #[error("the broker refused to {step}: {reason}")]
    Broker {
        /// What was being done.
        step: &'static str,
        /// The broker's answer.
        reason: String,
    },
}

/// Deletes every message under `gate`'s subjects (the gate must have been removed). Returns how many
/// messages were deleted.
pub async fn clear_gate(dir: &Path, broker: &str, gate: &str) -> Result<u64, AdminError> {
    let compound = certs::compound_name(dir)?;
    if certs::gates(dir)?.iter().any(|g| g.name == gate) {
        return Err(AdminError::StillMember(gate.to_owned()));
    }
    let admin = dir.join("admin");
    let connect = |reason: String| AdminError::Connect { broker: broker.to_owned(), reason };
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(admin.join("ca.pem"))
        .add_client_certificate(admin.join("gate.pem"), admin.join("gate.key"))
        .require_tls(true)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(5)))
        .connect(broker)
        .await
        .map_err(|e| connect(e.to_string()))?;
    let js = jetstream::new(client);
    let step = |step: &'static str| move |e: String| AdminError::Broker { step, reason: e };
    let stream = js.get_stream(stream_name(&compound)).await.map_err(|e| step("read the stream")(e.to_string()))?;
    let purged = stream
        .purge()
        .filter(gate_subjects(&compound, gate))
        .await
        .map_err(|e| step("purge the gate's subjects")(e.to_string()))?;
    Ok(purged.purged)
}
