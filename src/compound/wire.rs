//! The compound's messages as they travel, apart from the domain type ([`super::envelope::Announcement`]):
//! names, numbers and base64 as JSON, inside the seal. Parsing a name into a domain value (an entry method,
//! a share's gate) happens at this boundary or in `envelope`, never later.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::envelope::{valid_name, EnvelopeError};
use super::epoch::{Epoch, Share};

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Wire<'a> {
    Template {
        origin: String,
        resident: String,
        notice_version: String,
        notice_sha256: String,
        purpose: String,
        channel: String,
        granted_at: i64,
        generation: u32,
        version: u32,
        #[serde(borrow)]
        template: Cow<'a, str>,
    },
    Revoked {
        origin: String,
        resident: String,
        generation: u32,
        version: u32,
    },
    MovedOut {
        origin: String,
        resident: String,
        generation: u32,
        version: u32,
    },
    Counts {
        origin: String,
        serial: u64,
        cells: Vec<(i64, String, String, i64)>,
    },
    Member {
        origin: String,
        public: String,
    },
    Renewal {
        origin: String,
        epoch: Epoch,
        shares: Vec<WireShare>,
    },
    Grant {
        origin: String,
        gate: String,
        epoch: Epoch,
        share: WireShare,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WireShare {
    gate: String,
    enc: String,
    sealed: String,
}

impl WireShare {
    pub(super) fn from_share(share: &Share) -> Self {
        Self {
            gate: share.gate.clone(),
            enc: data_encoding::BASE64.encode(&share.enc),
            sealed: data_encoding::BASE64.encode(&share.sealed),
        }
    }

    pub(super) fn into_share(self) -> Result<Share, EnvelopeError> {
        let bad = |_| EnvelopeError::Content("key share encoding");
        let enc = data_encoding::BASE64.decode(self.enc.as_bytes()).map_err(bad)?;
        let sealed = data_encoding::BASE64.decode(self.sealed.as_bytes()).map_err(bad)?;
        if !valid_name(&self.gate) || sealed.len() > 4096 {
            return Err(EnvelopeError::Content("key share"));
        }
        Ok(Share { gate: self.gate, enc: enc.try_into().map_err(|_| EnvelopeError::Content("key share"))?, sealed })
    }
}
