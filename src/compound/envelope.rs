//! What the compound's gates tell each other, and how it is sealed. Pure: values in, bytes out.
//!
//! Every announcement is sealed end to end under a key derived from the compound's shared secret of one
//! epoch ([`super::epoch`]: renewed after every revocation), bound to the compound, the epoch and the broker
//! subject it travels on, so the broker (and anyone who copies its disk)
//! sees ciphertext, and a message moved to another subject does not open. Subjects name a resident only by a
//! keyed pseudonym, and each gate writes only under its own name (`facegate.<compound>.<gate>.…`, which the
//! broker enforces per certificate): a stolen certificate can replay only that gate's own messages. Every
//! template and tombstone carries the resident's [`Stamp`] (consent generation and change), and counts a
//! per-gate serial, so a gate refuses anything older than what it knows. A template travels under the compound's transform (derived from the same secret, never
//! a device's own), so no gate's local transform or embedding ever leaves it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::epoch::{Epoch, Keyring, Share};
use super::wire::{Wire, WireShare};
use crate::policy::consent::{ConsentRecord, ShredReason, Stamp};
use crate::policy::passage::{EntryMethod, PassageCount, PassageOutcome};
use crate::protect::seal::NONCE_LEN;
use crate::protect::{self, AeadKey, ProtectedTemplate, Rotation, SealError, Sealed, TransformKey};
use crate::vision::embed::EMBEDDING_DIM;

/// First bytes of every payload: the format version; the epoch follows (4 bytes, big-endian).
const MAGIC: &[u8; 4] = b"FGC3";
/// The format before epochs: read as epoch 0, never written (a stream from before the upgrade still opens).
const MAGIC_V2: &[u8; 4] = b"FGC2";
/// A template's values, base64 in the sealed JSON (512 bytes of f32).
const TEMPLATE_BYTES: usize = EMBEDDING_DIM * 4;
/// Room for the sealed JSON of any announcement but counts, so the buffer never reallocates (a reallocation
/// would leave an unwiped copy of the template behind).
const PLAINTEXT_ROOM: usize = 4096;

/// Why an announcement was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Not a facegate compound message, or a format this version does not know.
    #[error("not a facegate compound message (or a newer format); upgrade every gate of the compound together")]
    Format,
    /// The seal did not open: another compound's secret, a tampered message, or one moved to another subject.
    #[error("the message does not open with this compound's secret: another compound, tampering, or a moved message")]
    Seal(#[from] SealError),
    /// It opened but its content is not valid.
    #[error("the message opened but is malformed ({0}); the sending gate runs an incompatible version")]
    Content(&'static str),
    /// Sealed under an epoch of the compound key this gate does not hold (yet).
    #[error("sealed under epoch {0} of the compound key, which this gate does not hold")]
    UnknownEpoch(Epoch),
    /// It opened, but under an epoch a renewal of the compound key had replaced where it stands.
    #[error("sealed under epoch {sealed} of the compound key, replaced by epoch {in_force} before it was sent (an earlier key used after a renewal)")]
    Superseded {
        /// The epoch it was sealed under.
        sealed: Epoch,
        /// The epoch in force where it stands.
        in_force: Epoch,
    },
}

/// What one gate tells the others.
#[derive(Debug)]
pub enum Announcement {
    /// A resident enrolled (or re-enrolled) at `origin`: their consent and template, under the compound's
    /// transform.
    Template {
        /// The gate that enrolled them.
        origin: String,
        /// Pseudonymous id.
        resident: String,
        /// The separate consent they gave there.
        consent: ConsentRecord,
        /// The template under [`CompoundKeys::rotation`].
        template: ProtectedTemplate,
        /// Its place in the resident's order of changes.
        stamp: Stamp,
    },
    /// A tombstone: the resident revoked consent (or moved out) at `origin`; every gate shreds.
    Shred {
        /// The gate where it happened.
        origin: String,
        /// Pseudonymous id.
        resident: String,
        /// Revoked or moved out.
        reason: ShredReason,
        /// Its place in the resident's order of changes.
        stamp: Stamp,
    },
    /// A gate's hourly passage counts (method and outcome per hour; nobody in them).
    Counts {
        /// The gate counted.
        origin: String,
        /// Its cells.
        counts: Vec<PassageCount>,
        /// Raised by the gate at every report: an earlier report replayed is refused.
        serial: u64,
    },
    /// A gate's member key, to which new compound secrets are sealed (sealed under the newest epoch it holds).
    Member {
        /// The gate.
        origin: String,
        /// Its X25519 public key.
        public: [u8; 32],
    },
    /// A renewal of the compound key: the secret of `epoch` (one more than the epoch it is sealed under),
    /// sealed to each member gate.
    Renewal {
        /// The renewing gate.
        origin: String,
        /// The new epoch.
        epoch: Epoch,
        /// One per member gate.
        shares: Vec<Share>,
    },
    /// Every epoch after the one it is sealed under, up to `epoch`, for one gate that was left out of a
    /// renewal (it joined, or its member key was not announced yet).
    Grant {
        /// The granting gate.
        origin: String,
        /// The gate it is for.
        gate: String,
        /// The newest epoch in it.
        epoch: Epoch,
        /// The epochs, sealed to that gate.
        share: Share,
    },
}

impl Announcement {
    /// The gate that sent it.
    pub fn origin(&self) -> &str {
        match self {
            Self::Template { origin, .. }
            | Self::Shred { origin, .. }
            | Self::Counts { origin, .. }
            | Self::Member { origin, .. }
            | Self::Renewal { origin, .. }
            | Self::Grant { origin, .. } => origin,
        }
    }
}

/// The keys every gate of one compound derives from the shared secret (`facegate compound init`): the
/// subject-naming key and the compound transform from epoch 0's, a sealing key from every epoch's.
pub struct CompoundKeys {
    compound: String,
    seals: BTreeMap<Epoch, AeadKey>,
    names: AeadKey,
    rotation: Rotation,
}

impl std::fmt::Debug for CompoundKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompoundKeys").field("compound", &self.compound).finish_non_exhaustive()
    }
}

fn derive(secret: &AeadKey, label: &str, compound: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    let info = format!("facegate compound {label} v1\0{compound}");
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = Hkdf::<Sha256>::new(Some(b"facegate compound"), secret.as_bytes()).expand(info.as_bytes(), &mut out);
    out
}

impl CompoundKeys {
    /// Derives the keys of `compound` from its first secret alone (epoch 0).
    pub fn derive(secret: &AeadKey, compound: &str) -> Self {
        Self::from_keyring(&Keyring::new(secret.clone()), compound)
    }

    /// Derives the keys of `compound` from every epoch in `keyring`. Names and the transform stay those of
    /// epoch 0 (subjects and templates in the stream stay valid); only the sealing key is renewed.
    pub fn from_keyring(keyring: &Keyring, compound: &str) -> Self {
        let first = keyring.get(0).cloned().unwrap_or_else(AeadKey::generate);
        let names = AeadKey::from_bytes(derive(&first, "names", compound));
        let transform = TransformKey::from_bytes(derive(&first, "transform", compound));
        let seals = keyring
            .epochs()
            .map(|(epoch, secret)| (epoch, AeadKey::from_bytes(derive(secret, "seal", compound))))
            .collect();
        Self { compound: compound.to_owned(), seals, names, rotation: Rotation::from_key(&transform) }
    }

    /// The newest epoch held: what this gate seals under.
    pub fn latest(&self) -> Epoch {
        self.seals.keys().next_back().copied().unwrap_or(0)
    }

    /// Whether the secret of `epoch` is held.
    pub fn holds(&self, epoch: Epoch) -> bool {
        self.seals.contains_key(&epoch)
    }

    /// The compound's name.
    pub fn compound(&self) -> &str {
        &self.compound
    }

    /// The transform templates travel under (the same at every gate of the compound).
    pub fn rotation(&self) -> &Rotation {
        &self.rotation
    }

    /// The broker stream holding the compound's announcements.
    pub fn stream(&self) -> String {
        stream_name(&self.compound)
    }

    /// Every subject of the compound.
    pub fn subjects(&self) -> String {
        format!("facegate.{}.>", self.compound)
    }

    /// Every subject `gate` may publish on (the broker allows its certificate nothing else of the compound).
    pub fn gate_subjects(&self, gate: &str) -> String {
        gate_subjects(&self.compound, gate)
    }

    /// The gate whose subjects `subject` belongs to, if it is one of the compound's.
    pub fn gate_of<'s>(&self, subject: &'s str) -> Option<&'s str> {
        let rest = subject.strip_prefix("facegate.")?.strip_prefix(self.compound.as_str())?.strip_prefix('.')?;
        rest.split('.').next().filter(|gate| valid_name(gate))
    }

    /// The subject of a resident's latest state (template or tombstone) as `gate` announced it, named by a
    /// keyed pseudonym.
    pub fn resident_subject(&self, gate: &str, resident: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.names.as_bytes()).unwrap_or_else(|_| {
            // HMAC takes keys of any length; this cannot happen.
            unreachable!("HMAC-SHA256 accepts a 32-byte key")
        });
        mac.update(resident.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("facegate.{}.{gate}.resident.{}", self.compound, data_encoding::HEXLOWER.encode(&tag[..16]))
    }

    /// The subject of a gate's latest counts.
    pub fn counts_subject(&self, gate: &str) -> String {
        format!("facegate.{}.{gate}.counts", self.compound)
    }

    /// The subject an announcement travels on.
    pub fn subject_of(&self, announcement: &Announcement) -> String {
        match announcement {
            Announcement::Template { origin, resident, .. } | Announcement::Shred { origin, resident, .. } => {
                self.resident_subject(origin, resident)
            }
            Announcement::Counts { origin, .. } => self.counts_subject(origin),
            Announcement::Member { origin, .. } => format!("facegate.{}.{origin}.member", self.compound),
            Announcement::Renewal { origin, epoch, .. } => {
                format!("facegate.{}.{origin}.renewal.{epoch}", self.compound)
            }
            Announcement::Grant { origin, gate, .. } => format!("facegate.{}.{origin}.grant.{gate}", self.compound),
        }
    }

    /// The subjects of every gate's member key.
    pub fn member_subjects(&self) -> String {
        format!("facegate.{}.*.member", self.compound)
    }

    /// The subjects of the grants to `gate`.
    pub fn grant_subjects(&self, gate: &str) -> String {
        format!("facegate.{}.*.grant.{gate}", self.compound)
    }

    fn aad(&self, subject: &str, epoch: Option<Epoch>) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64 + subject.len());
        match epoch {
            Some(_) => aad.extend_from_slice(b"facegate compound message v3\0"),
            None => aad.extend_from_slice(b"facegate compound message v2\0"),
        }
        aad.extend_from_slice(self.compound.as_bytes());
        aad.push(0);
        aad.extend_from_slice(subject.as_bytes());
        if let Some(epoch) = epoch {
            aad.push(0);
            aad.extend_from_slice(&epoch.to_be_bytes());
        }
        aad
    }

    /// Seals an announcement for its subject ([`CompoundKeys::subject_of`]) under the newest epoch held.
    pub fn seal(&self, announcement: &Announcement) -> Result<(String, Vec<u8>), EnvelopeError> {
        self.seal_under(self.latest(), announcement)
    }

    /// Seals an announcement under `epoch` (a grant goes under the epoch its gate holds).
    pub fn seal_under(&self, epoch: Epoch, announcement: &Announcement) -> Result<(String, Vec<u8>), EnvelopeError> {
        let key = self.seals.get(&epoch).ok_or(EnvelopeError::UnknownEpoch(epoch))?;
        let subject = self.subject_of(announcement);
        let mut encoded = Zeroizing::new([0u8; TEMPLATE_BYTES * 2]);
        let wire = match announcement {
            Announcement::Template { origin, resident, consent, template, stamp } => {
                if template.transform() != self.rotation.id() {
                    return Err(EnvelopeError::Content("template not under the compound transform"));
                }
                let mut raw = Zeroizing::new([0u8; TEMPLATE_BYTES]);
                for (chunk, v) in raw.chunks_exact_mut(4).zip(template.as_slice()) {
                    chunk.copy_from_slice(&v.to_le_bytes());
                }
                let len = data_encoding::BASE64.encode_len(TEMPLATE_BYTES);
                data_encoding::BASE64.encode_mut(&raw[..], &mut encoded[..len]);
                let text = std::str::from_utf8(&encoded[..len]).map_err(|_| EnvelopeError::Content("base64"))?;
                Wire::Template {
                    origin: origin.clone(),
                    resident: resident.clone(),
                    notice_version: consent.notice_version.clone(),
                    notice_sha256: consent.notice_sha256.clone(),
                    purpose: consent.purpose.clone(),
                    channel: consent.channel.clone(),
                    granted_at: consent.granted_at,
                    generation: stamp.generation,
                    version: stamp.version,
                    template: Cow::Borrowed(text),
                }
            }
            Announcement::Shred { origin, resident, reason, stamp } => {
                let (origin, resident) = (origin.clone(), resident.clone());
                let (generation, version) = (stamp.generation, stamp.version);
                match reason {
                    ShredReason::MovedOut => Wire::MovedOut { origin, resident, generation, version },
                    _ => Wire::Revoked { origin, resident, generation, version },
                }
            }
            Announcement::Counts { origin, counts, serial } => Wire::Counts {
                origin: origin.clone(),
                serial: *serial,
                cells: counts
                    .iter()
                    .map(|c| (c.hour_start, c.method.as_str().to_owned(), c.outcome.as_str().to_owned(), c.count))
                    .collect(),
            },
            Announcement::Member { origin, public } => {
                Wire::Member { origin: origin.clone(), public: data_encoding::HEXLOWER.encode(public) }
            }
            Announcement::Renewal { origin, epoch, shares } => Wire::Renewal {
                origin: origin.clone(),
                epoch: *epoch,
                shares: shares.iter().map(WireShare::from_share).collect(),
            },
            Announcement::Grant { origin, gate, epoch, share } => Wire::Grant {
                origin: origin.clone(),
                gate: gate.clone(),
                epoch: *epoch,
                share: WireShare::from_share(share),
            },
        };
        let mut plaintext = Zeroizing::new(Vec::with_capacity(PLAINTEXT_ROOM));
        serde_json::to_writer(&mut *plaintext, &wire).map_err(|_| EnvelopeError::Content("encoding"))?;
        let sealed = protect::seal_message(key, &plaintext, &self.aad(&subject, Some(epoch)))?;
        Ok((subject, framed(epoch, &sealed)))
    }

    /// Seals `plaintext` as a gate holding `epoch` would send it on `subject`: how the fuzz target reaches the
    /// JSON behind the seal (anyone holding the compound key can send any). Only in fuzzing builds.
    #[cfg(fuzzing)]
    pub fn seal_plaintext(&self, subject: &str, epoch: Epoch, plaintext: &[u8]) -> Option<Vec<u8>> {
        let key = self.seals.get(&epoch)?;
        let sealed = protect::seal_message(key, plaintext, &self.aad(subject, Some(epoch))).ok()?;
        Some(framed(epoch, &sealed))
    }

    /// The epoch a payload says it is sealed under (before opening it).
    pub fn epoch_of(payload: &[u8]) -> Result<Epoch, EnvelopeError> {
        if payload.starts_with(MAGIC_V2) {
            return Ok(0);
        }
        let body = payload.strip_prefix(MAGIC).ok_or(EnvelopeError::Format)?;
        let epoch = body.get(..4).ok_or(EnvelopeError::Format)?;
        Ok(Epoch::from_be_bytes([epoch[0], epoch[1], epoch[2], epoch[3]]))
    }

    /// Opens a payload received on `subject`, checking that it belongs there. Returns the epoch it was sealed
    /// under with it: whether that epoch is still in force where the message stands is the link's to judge.
    pub fn open(&self, subject: &str, payload: &[u8]) -> Result<(Epoch, Announcement), EnvelopeError> {
        let (epoch, body, aad) = if let Some(body) = payload.strip_prefix(MAGIC_V2) {
            (0, body, self.aad(subject, None))
        } else {
            let epoch = Self::epoch_of(payload)?;
            (epoch, &payload[MAGIC.len() + 4..], self.aad(subject, Some(epoch)))
        };
        let key = self.seals.get(&epoch).ok_or(EnvelopeError::UnknownEpoch(epoch))?;
        if body.len() < NONCE_LEN {
            return Err(EnvelopeError::Format);
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let sealed =
            Sealed { nonce: nonce.try_into().map_err(|_| EnvelopeError::Format)?, ciphertext: ciphertext.to_vec() };
        let plaintext = protect::open_message(key, &sealed, &aad)?;
        let wire: Wire<'_> = serde_json::from_slice(&plaintext).map_err(|_| EnvelopeError::Content("json"))?;
        let announcement = self.announcement_of(wire, epoch)?;
        // The subject is chosen by the sender and bound by the seal; it must also be the right one (the
        // sender's own, for this resident), so the broker's one-message-per-subject keeps exactly each gate's
        // latest word on each resident.
        if !valid_name(announcement.origin()) {
            return Err(EnvelopeError::Content("gate name"));
        }
        if self.subject_of(&announcement) != subject {
            return Err(EnvelopeError::Content("announcement on another resident's or gate's subject"));
        }
        Ok((epoch, announcement))
    }

    /// The domain value of an opened message sealed under `epoch` (names parsed here, never stored raw).
    fn announcement_of(&self, wire: Wire<'_>, epoch: Epoch) -> Result<Announcement, EnvelopeError> {
        Ok(match wire {
            Wire::Template {
                origin,
                resident,
                notice_version,
                notice_sha256,
                purpose,
                channel,
                granted_at,
                generation,
                version,
                template,
            } => {
                let mut raw = Zeroizing::new([0u8; TEMPLATE_BYTES + 4]);
                let len = data_encoding::BASE64
                    .decode_len(template.len())
                    .map_err(|_| EnvelopeError::Content("template encoding"))?;
                if len > raw.len() {
                    return Err(EnvelopeError::Content("template length"));
                }
                let n = data_encoding::BASE64
                    .decode_mut(template.as_bytes(), &mut raw[..len])
                    .map_err(|_| EnvelopeError::Content("template encoding"))?;
                if n != TEMPLATE_BYTES {
                    return Err(EnvelopeError::Content("template length"));
                }
                let mut values = Zeroizing::new([0.0f32; EMBEDDING_DIM]);
                for (v, chunk) in values.iter_mut().zip(raw.chunks_exact(4)) {
                    *v = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                }
                let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
                if !(0.99..=1.01).contains(&norm) {
                    return Err(EnvelopeError::Content("template is not a unit vector"));
                }
                let template = ProtectedTemplate::from_values(&values[..], self.rotation.id())
                    .ok_or(EnvelopeError::Content("template values"))?;
                let consent = ConsentRecord { notice_version, notice_sha256, purpose, channel, granted_at };
                Announcement::Template { origin, resident, consent, template, stamp: Stamp { generation, version } }
            }
            Wire::Revoked { origin, resident, generation, version } => Announcement::Shred {
                origin,
                resident,
                reason: ShredReason::Revoked,
                stamp: Stamp { generation, version },
            },
            Wire::MovedOut { origin, resident, generation, version } => Announcement::Shred {
                origin,
                resident,
                reason: ShredReason::MovedOut,
                stamp: Stamp { generation, version },
            },
            Wire::Counts { origin, serial, cells } => Announcement::Counts {
                origin,
                serial,
                counts: cells
                    .into_iter()
                    .map(|(hour_start, method, outcome, count)| {
                        // Names from the network are parsed here; a kind this version does not know is refused,
                        // never stored as a new kind.
                        Ok(PassageCount {
                            hour_start,
                            method: EntryMethod::parse(&method).ok_or(EnvelopeError::Content("entry method"))?,
                            outcome: PassageOutcome::parse(&outcome)
                                .ok_or(EnvelopeError::Content("passage outcome"))?,
                            count,
                        })
                    })
                    .collect::<Result<_, EnvelopeError>>()?,
            },
            Wire::Member { origin, public } => {
                let bytes = data_encoding::HEXLOWER
                    .decode(public.as_bytes())
                    .map_err(|_| EnvelopeError::Content("member key encoding"))?;
                let public = bytes.try_into().map_err(|_| EnvelopeError::Content("member key length"))?;
                Announcement::Member { origin, public }
            }
            Wire::Renewal { origin, epoch: renewed, shares } => {
                if Some(renewed) != epoch.checked_add(1) {
                    return Err(EnvelopeError::Content("a renewal not to the next epoch"));
                }
                let shares = shares.into_iter().map(WireShare::into_share).collect::<Result<_, _>>()?;
                Announcement::Renewal { origin, epoch: renewed, shares }
            }
            Wire::Grant { origin, gate, epoch: newest, share } => {
                if newest <= epoch || !valid_name(&gate) {
                    return Err(EnvelopeError::Content("a grant of no later epoch"));
                }
                Announcement::Grant { origin, gate, epoch: newest, share: share.into_share()? }
            }
        })
    }
}

/// The broker stream holding `compound`'s announcements.
pub fn stream_name(compound: &str) -> String {
    format!("FACEGATE_{}", compound.replace('-', "_").to_ascii_uppercase())
}

/// Every subject `gate` of `compound` may publish on (the broker allows its certificate nothing else of the
/// compound).
pub fn gate_subjects(compound: &str, gate: &str) -> String {
    format!("facegate.{compound}.{gate}.>")
}

/// Where the broker's replies to `gate` go: a prefix only that gate may subscribe to, so no gate reads
/// another's replies.
pub fn inbox_prefix(compound: &str, gate: &str) -> String {
    format!("_INBOX.facegate.{compound}.{gate}")
}

/// A compound or gate name: 1 to 32 of `a-z`, `0-9` and `-` (it becomes part of broker subjects).
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// A sealed message as it goes on the wire: the magic, the epoch it is sealed under, the nonce, the ciphertext.
fn framed(epoch: Epoch, sealed: &protect::Sealed) -> Vec<u8> {
    let mut payload = Vec::with_capacity(MAGIC.len() + 4 + NONCE_LEN + sealed.ciphertext.len());
    payload.extend_from_slice(MAGIC);
    payload.extend_from_slice(&epoch.to_be_bytes());
    payload.extend_from_slice(&sealed.nonce);
    payload.extend_from_slice(&sealed.ciphertext);
    payload
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::protect::TransformId;

    fn keys(secret: u8, compound: &str) -> CompoundKeys {
        CompoundKeys::derive(&AeadKey::from_bytes([secret; 32]), compound)
    }

    fn unit_template(keys: &CompoundKeys, seed: u32) -> ProtectedTemplate {
        let mut values: Vec<f32> = (0..EMBEDDING_DIM).map(|i| ((i as u32 * 7 + seed) % 13) as f32 - 6.0).collect();
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        values.iter_mut().for_each(|v| *v /= norm);
        ProtectedTemplate::from_values(&values, keys.rotation().id()).unwrap()
    }

    fn consent() -> ConsentRecord {
        ConsentRecord {
            notice_version: "2026-11".into(),
            notice_sha256: "ab".repeat(32),
            purpose: "opening the compound's gates".into(),
            channel: "kiosk".into(),
            granted_at: 7,
        }
    }

    fn template_announcement(keys: &CompoundKeys) -> Announcement {
        Announcement::Template {
            origin: "gate-a".into(),
            resident: "r-1".into(),
            consent: consent(),
            template: unit_template(keys, 3),
            stamp: Stamp { generation: 2, version: 1 },
        }
    }

    #[test]
    fn a_template_round_trips_and_its_values_never_appear_in_the_payload() {
        let k = keys(1, "maple-court");
        let original = unit_template(&k, 3);
        let (subject, payload) = k.seal(&template_announcement(&k)).unwrap();
        assert!(subject.starts_with("facegate.maple-court.gate-a.resident."), "{subject}");
        assert_eq!(k.gate_of(&subject), Some("gate-a"));
        assert!(!subject.contains("r-1"), "the subject names the resident: {subject}");
        // A zero says nothing (and matches the header's epoch 0).
        for v in original.as_slice().iter().filter(|v| **v != 0.0) {
            let bytes = v.to_le_bytes();
            assert!(!payload.windows(4).any(|w| w == bytes), "a template value is in the payload");
        }
        assert!(!String::from_utf8_lossy(&payload).contains("r-1"));
        match k.open(&subject, &payload).unwrap().1 {
            Announcement::Template { origin, resident, consent: c, template, stamp } => {
                assert_eq!((origin.as_str(), resident.as_str()), ("gate-a", "r-1"));
                assert_eq!(stamp, Stamp { generation: 2, version: 1 });
                assert_eq!(c, consent());
                assert_eq!(template.as_slice(), original.as_slice());
                assert_eq!(template.transform(), k.rotation().id());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tombstones_and_counts_round_trip() {
        let k = keys(1, "maple-court");
        let tomb = Announcement::Shred {
            origin: "gate-b".into(),
            resident: "r-1".into(),
            reason: ShredReason::MovedOut,
            stamp: Stamp { generation: 2, version: 2 },
        };
        let (subject, payload) = k.seal(&tomb).unwrap();
        assert_eq!(
            subject,
            k.resident_subject("gate-b", "r-1"),
            "a tombstone replaces the gate's earlier word on the same subject"
        );
        assert!(matches!(
            k.open(&subject, &payload).unwrap().1,
            Announcement::Shred { reason: ShredReason::MovedOut, stamp: Stamp { generation: 2, version: 2 }, .. }
        ));
        let counts = vec![PassageCount {
            hour_start: 3600,
            method: EntryMethod::Pin,
            outcome: PassageOutcome::Opened,
            count: 12,
        }];
        let (subject, payload) =
            k.seal(&Announcement::Counts { origin: "gate-c".into(), counts: counts.clone(), serial: 7 }).unwrap();
        assert_eq!(subject, "facegate.maple-court.gate-c.counts");
        match k.open(&subject, &payload).unwrap().1 {
            Announcement::Counts { origin, counts: got, serial } => {
                assert_eq!((origin.as_str(), got, serial), ("gate-c", counts, 7));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn another_compound_a_moved_message_or_a_flipped_bit_does_not_open() {
        let k = keys(1, "maple-court");
        let (subject, payload) = k.seal(&template_announcement(&k)).unwrap();
        assert!(matches!(keys(2, "maple-court").open(&subject, &payload), Err(EnvelopeError::Seal(_))));
        assert!(matches!(keys(1, "oak-yard").open(&subject, &payload), Err(EnvelopeError::Seal(_))));
        assert!(matches!(k.open(&k.resident_subject("gate-a", "r-2"), &payload), Err(EnvelopeError::Seal(_))));
        // Moved to another gate's subject (a certificate may publish only under its own name).
        assert!(matches!(k.open(&k.resident_subject("gate-b", "r-1"), &payload), Err(EnvelopeError::Seal(_))));
        for i in [0, 5, payload.len() / 2, payload.len() - 1] {
            let mut bad = payload.clone();
            bad[i] ^= 0x40;
            assert!(k.open(&subject, &bad).is_err(), "byte {i} flipped still opens");
        }
        assert_eq!(k.open(&subject, b"FGC1").unwrap_err(), EnvelopeError::Format);
        assert_eq!(k.open(&subject, b"").unwrap_err(), EnvelopeError::Format);
    }

    #[test]
    fn a_message_of_the_format_before_epochs_opens_as_epoch_0() {
        let k = keys(1, "maple-court");
        // Sealed as version 2 did: no epoch in the header or the associated data.
        let plaintext = br#"{"kind":"revoked","origin":"gate-a","resident":"r-1","generation":1,"version":2}"#;
        let subject = k.resident_subject("gate-a", "r-1");
        let sealed = protect::seal_message(&k.seals[&0], plaintext, &k.aad(&subject, None)).unwrap();
        let payload = [&MAGIC_V2[..], &sealed.nonce, &sealed.ciphertext].concat();
        assert!(matches!(k.open(&subject, &payload).unwrap(), (0, Announcement::Shred { .. })));
    }

    #[test]
    fn a_template_under_another_transform_is_refused() {
        let k = keys(1, "maple-court");
        let foreign = ProtectedTemplate::from_values(unit_template(&k, 1).as_slice(), TransformId(42)).unwrap();
        let a = Announcement::Template {
            origin: "gate-a".into(),
            resident: "r".into(),
            consent: consent(),
            template: foreign,
            stamp: Stamp::default(),
        };
        assert!(matches!(k.seal(&a), Err(EnvelopeError::Content(_))));
    }

    #[test]
    fn every_gate_derives_the_same_transform_and_subjects() {
        let (a, b) = (keys(1, "maple-court"), keys(1, "maple-court"));
        assert_eq!(a.rotation().id(), b.rotation().id());
        assert_eq!(a.resident_subject("gate-a", "r-1"), b.resident_subject("gate-a", "r-1"));
        assert_eq!(a.gate_subjects("gate-a"), "facegate.maple-court.gate-a.>");
        assert_eq!(a.gate_of("facegate.maple-court.gate-b.counts"), Some("gate-b"));
        assert_eq!(a.gate_of("facegate.oak-yard.gate-b.counts"), None);
        assert_ne!(a.rotation().id(), keys(2, "maple-court").rotation().id());
        assert_eq!(a.stream(), "FACEGATE_MAPLE_COURT");
        assert!(valid_name("gate-a") && !valid_name("Gate A") && !valid_name("") && !valid_name("-x"));
    }
}
