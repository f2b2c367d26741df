//! The compound key's epochs. The secret the gates seal announcements under is renewed after every
//! revocation (and on `facegate compound rekey`): the renewing gate draws a fresh secret and seals it to each
//! member gate's X25519 key (HPKE, RFC 9180, base mode), so whoever holds an earlier secret, or copied the
//! broker's disk, cannot follow. Every gate takes the renewals in the broker's order, and from the position
//! where an epoch begins a message sealed under an earlier one is refused.
//!
//! Owns the keyring (every epoch's secret this gate holds), the gate's member key, the sealing and opening of
//! a new secret for one member, and the rule of stream order. Pure: values in, values out; the link persists
//! and publishes. It never derives a secret from the one before (anyone holding that one could follow) and
//! never shows a secret in `Debug`.

use std::collections::BTreeMap;

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::protect::AeadKey;

/// An epoch of the compound key: 0 is the secret `facegate compound init` made; each renewal adds one.
pub type Epoch = u32;

/// Length of one epoch's entry in the keyring's encoding.
const ENTRY: usize = 4 + 32;

/// Why a keyring or a share was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EpochError {
    /// The keyring's bytes are not a list of epochs and secrets.
    #[error(
        "the compound keyring is damaged; copy the compound folder again (`facegate compound add-gate`) and restart"
    )]
    Damaged,
    /// Two different secrets for one epoch.
    #[error("epoch {0} of the compound key arrived with another secret than the one held; refused")]
    Conflict(Epoch),
    /// A share did not open with this gate's member key.
    #[error("a share of the compound key does not open with this gate's member key")]
    Share,
    /// A member's public key is not an X25519 key.
    #[error("a member gate's public key is malformed")]
    PublicKey,
}

/// Every epoch's secret this gate holds. Wiped on drop (each secret is an [`AeadKey`]).
#[derive(Clone)]
pub struct Keyring {
    epochs: BTreeMap<Epoch, AeadKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("epochs", &self.epochs.keys().collect::<Vec<_>>()).finish()
    }
}

impl Keyring {
    /// A keyring holding only epoch 0, the compound's first secret.
    pub fn new(first: AeadKey) -> Self {
        Self { epochs: BTreeMap::from([(0, first)]) }
    }

    /// The newest epoch held.
    pub fn latest(&self) -> Epoch {
        self.epochs.keys().next_back().copied().unwrap_or(0)
    }

    /// The secret of `epoch`, if held.
    pub fn get(&self, epoch: Epoch) -> Option<&AeadKey> {
        self.epochs.get(&epoch)
    }

    /// Every epoch held, oldest first.
    pub fn epochs(&self) -> impl Iterator<Item = (Epoch, &AeadKey)> {
        self.epochs.iter().map(|(e, k)| (*e, k))
    }

    /// Adds `epoch`; `Ok(false)` if it was already held with the same secret. A different secret for a held
    /// epoch is refused: every gate takes the first renewal in the broker's order, so two cannot both be right.
    pub fn insert(&mut self, epoch: Epoch, secret: AeadKey) -> Result<bool, EpochError> {
        match self.epochs.get(&epoch) {
            Some(held) if held.as_bytes() == secret.as_bytes() => Ok(false),
            Some(_) => Err(EpochError::Conflict(epoch)),
            None => {
                self.epochs.insert(epoch, secret);
                Ok(true)
            }
        }
    }

    /// The epochs after `after`, encoded (what a grant carries, and what the keyring file holds with
    /// `after = 0`: epoch 0 has its own file).
    pub fn encode_after(&self, after: Epoch) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.epochs.len() * ENTRY));
        for (epoch, secret) in self.epochs.range(after.saturating_add(1)..) {
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(secret.as_bytes());
        }
        out
    }

    /// Adds every epoch in `encoded` (see [`Keyring::encode_after`]); returns those that were new.
    pub fn add_encoded(&mut self, encoded: &[u8]) -> Result<Vec<Epoch>, EpochError> {
        if !encoded.len().is_multiple_of(ENTRY) {
            return Err(EpochError::Damaged);
        }
        let mut added = Vec::new();
        for entry in encoded.chunks_exact(ENTRY) {
            let epoch = Epoch::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
            let secret = AeadKey::from_slice(&entry[4..]).ok_or(EpochError::Damaged)?;
            if epoch == 0 {
                return Err(EpochError::Damaged);
            }
            if self.insert(epoch, secret)? {
                added.push(epoch);
            }
        }
        Ok(added)
    }
}

/// This gate's member key: new compound secrets are sealed to its public half. Wiped on drop.
pub struct MemberKey {
    seed: AeadKey,
    private: <X25519HkdfSha256 as Kem>::PrivateKey,
    public: [u8; 32],
}

impl std::fmt::Debug for MemberKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberKey").field("public", &data_encoding::HEXLOWER.encode(&self.public)).finish()
    }
}

impl MemberKey {
    /// The key derived from its stored 32-byte seed (RFC 9180's DeriveKeyPair).
    pub fn from_seed(seed: AeadKey) -> Self {
        let (private, public) = X25519HkdfSha256::derive_keypair(seed.as_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&public.to_bytes());
        Self { seed, private, public: bytes }
    }

    /// The seed, to be kept in the gate's key folder (sealed under its key root).
    pub fn seed(&self) -> &AeadKey {
        &self.seed
    }

    /// The public half, announced to the other gates.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }
}

/// What a share is for: the info string binds it to the compound, the member and the purpose, so a share
/// cannot be moved to another gate, epoch or message kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareKind {
    /// The secret of a renewal to `epoch`.
    Renewal,
    /// A grant of every epoch up to `epoch` to a gate that was left out.
    Grant,
}

/// One member's sealed copy of a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    /// The member gate it is for.
    pub gate: String,
    /// HPKE's encapsulated key.
    pub enc: [u8; 32],
    /// The sealed secret.
    pub sealed: Vec<u8>,
}

fn info(kind: ShareKind, compound: &str, gate: &str, epoch: Epoch) -> Vec<u8> {
    let label = match kind {
        ShareKind::Renewal => "renewal",
        ShareKind::Grant => "grant",
    };
    format!("facegate compound key {label} v1\0{compound}\0{gate}\0{epoch}").into_bytes()
}

/// Seals `secret` to the member `gate` whose public key is `public`.
pub fn seal_share(
    public: &[u8; 32],
    kind: ShareKind,
    compound: &str,
    gate: &str,
    epoch: Epoch,
    secret: &[u8],
) -> Result<Share, EpochError> {
    let public = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(public).map_err(|_| EpochError::PublicKey)?;
    let (enc, sealed) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &public,
        &info(kind, compound, gate, epoch),
        secret,
        b"",
        // The ephemeral secret opens the share: drawn from the kernel, not left in a generator's buffer.
        &mut crate::protect::secret_rng(),
    )
    .map_err(|_| EpochError::PublicKey)?;
    let mut enc_bytes = [0u8; 32];
    enc_bytes.copy_from_slice(&enc.to_bytes());
    Ok(Share { gate: gate.to_owned(), enc: enc_bytes, sealed })
}

/// Opens a share sealed to this gate (`gate`, holding `member`).
pub fn open_share(
    member: &MemberKey,
    kind: ShareKind,
    compound: &str,
    gate: &str,
    epoch: Epoch,
    share: &Share,
) -> Result<Zeroizing<Vec<u8>>, EpochError> {
    let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(&share.enc).map_err(|_| EpochError::Share)?;
    hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &member.private,
        &enc,
        &info(kind, compound, gate, epoch),
        &share.sealed,
        b"",
    )
    .map(Zeroizing::new)
    .map_err(|_| EpochError::Share)
}

/// Where a message stands against the epoch in force at its place in the broker's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Sealed under the epoch in force.
    InForce,
    /// Sealed under a later epoch (its renewal came earlier but was not seen, e.g. cleared with a removed
    /// gate's messages): the sender held it, so it is in force from here on.
    Later,
    /// Sealed under an epoch a renewal already replaced: refused.
    Superseded,
}

/// The rule of stream order: a message counts only when sealed under the epoch in force where it stands.
pub fn order(sealed_under: Epoch, in_force: Epoch) -> Order {
    match sealed_under.cmp(&in_force) {
        std::cmp::Ordering::Equal => Order::InForce,
        std::cmp::Ordering::Greater => Order::Later,
        std::cmp::Ordering::Less => Order::Superseded,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::compound::envelope::{Announcement, CompoundKeys, EnvelopeError};
    use crate::policy::passage::{EntryMethod, PassageCount, PassageOutcome};

    #[test]
    fn a_share_opens_only_for_its_member_epoch_and_kind() {
        let (a, b) = (MemberKey::from_seed(AeadKey::generate()), MemberKey::from_seed(AeadKey::generate()));
        let secret = AeadKey::generate();
        let share = seal_share(&a.public(), ShareKind::Renewal, "maple-court", "gate-a", 3, secret.as_bytes()).unwrap();
        assert!(!share.sealed.windows(32).any(|w| w == secret.as_bytes()), "the secret travels in clear");
        let opened = open_share(&a, ShareKind::Renewal, "maple-court", "gate-a", 3, &share).unwrap();
        assert_eq!(&opened[..], secret.as_bytes());
        let refused = [
            open_share(&b, ShareKind::Renewal, "maple-court", "gate-a", 3, &share),
            open_share(&a, ShareKind::Renewal, "maple-court", "gate-b", 3, &share),
            open_share(&a, ShareKind::Renewal, "maple-court", "gate-a", 4, &share),
            open_share(&a, ShareKind::Grant, "maple-court", "gate-a", 3, &share),
            open_share(&a, ShareKind::Renewal, "oak-yard", "gate-a", 3, &share),
        ];
        assert!(refused.iter().all(|r| r == &Err(EpochError::Share)), "{refused:?}");
        // The same seed gives the same key (it is kept as a seed); another seed another key.
        let again = MemberKey::from_seed(AeadKey::from_bytes(*a.seed().as_bytes()));
        assert_eq!(again.public(), a.public());
        assert_ne!(a.public(), b.public());
        assert!(!format!("{a:?}").contains(&data_encoding::HEXLOWER.encode(a.seed().as_bytes())));
    }

    #[test]
    fn the_keyring_round_trips_refuses_a_second_secret_for_an_epoch_and_grants_what_is_missing() {
        let mut ring = Keyring::new(AeadKey::generate());
        assert_eq!(ring.latest(), 0);
        let (one, two) = (AeadKey::generate(), AeadKey::generate());
        assert!(ring.insert(1, one.clone()).unwrap());
        assert!(ring.insert(2, two.clone()).unwrap());
        assert!(!ring.insert(1, one.clone()).unwrap());
        assert_eq!(ring.insert(1, AeadKey::generate()), Err(EpochError::Conflict(1)));
        assert_eq!(ring.latest(), 2);
        let file = ring.encode_after(0);
        assert_eq!(file.len(), 2 * ENTRY, "epoch 0 has its own file");
        let mut copy = Keyring::new(AeadKey::from_bytes(*ring.get(0).unwrap().as_bytes()));
        assert_eq!(copy.add_encoded(&file).unwrap(), vec![1, 2]);
        assert_eq!(copy.get(2).unwrap().as_bytes(), two.as_bytes());
        // A grant to a gate that holds epoch 1 carries epoch 2 only.
        let mut late = Keyring::new(AeadKey::generate());
        late.insert(1, one).unwrap();
        assert_eq!(late.add_encoded(&ring.encode_after(1)).unwrap(), vec![2]);
        assert_eq!(copy.add_encoded(&file[..ENTRY + 3]), Err(EpochError::Damaged));
        let mut zero = vec![0u8; ENTRY];
        zero[4] = 1;
        assert_eq!(copy.add_encoded(&zero), Err(EpochError::Damaged), "epoch 0 arrived in a grant");
        assert!(!format!("{ring:?}").contains(&data_encoding::HEXLOWER.encode(two.as_bytes())));
    }

    fn counts() -> Announcement {
        let cell =
            PassageCount { hour_start: 3600, method: EntryMethod::Pin, outcome: PassageOutcome::Opened, count: 12 };
        Announcement::Counts { origin: "gate-a".into(), counts: vec![cell], serial: 1 }
    }

    #[test]
    fn each_epoch_seals_apart_and_the_epoch_is_bound_to_the_message() {
        let first = AeadKey::from_bytes([1; 32]);
        let old = CompoundKeys::derive(&first, "maple-court");
        let mut ring = Keyring::new(first);
        ring.insert(1, AeadKey::generate()).unwrap();
        let renewed = CompoundKeys::from_keyring(&ring, "maple-court");
        assert_eq!((old.latest(), renewed.latest()), (0, 1));
        // Subjects and the transform do not change with the epoch: the stream's templates stay valid.
        assert_eq!(old.rotation().id(), renewed.rotation().id());
        assert_eq!(old.resident_subject("gate-a", "r-1"), renewed.resident_subject("gate-a", "r-1"));
        let (subject, payload) = renewed.seal(&counts()).unwrap();
        assert_eq!(CompoundKeys::epoch_of(&payload).unwrap(), 1);
        assert_eq!(renewed.open(&subject, &payload).unwrap().0, 1);
        assert_eq!(old.open(&subject, &payload).unwrap_err(), EnvelopeError::UnknownEpoch(1));
        // Relabelled as epoch 0, it does not open under epoch 0's key.
        let mut relabelled = payload.clone();
        relabelled[4..8].copy_from_slice(&0u32.to_be_bytes());
        assert!(matches!(renewed.open(&subject, &relabelled), Err(EnvelopeError::Seal(_))));
        // What the old key sealed still opens with the keyring, as epoch 0 (the link judges its place).
        let (subject, payload) = old.seal(&counts()).unwrap();
        assert_eq!(renewed.open(&subject, &payload).unwrap().0, 0);
        // A renewal travels under the epoch before the one it brings, and only to the next epoch.
        let member = MemberKey::from_seed(AeadKey::generate());
        let share = seal_share(&member.public(), ShareKind::Renewal, "maple-court", "gate-b", 2, &[7; 32]).unwrap();
        let renewal = |epoch| Announcement::Renewal { origin: "gate-b".into(), epoch, shares: vec![share.clone()] };
        let (subject, payload) = renewed.seal(&renewal(2)).unwrap();
        assert_eq!(subject, "facegate.maple-court.gate-b.renewal.2");
        match renewed.open(&subject, &payload).unwrap() {
            (1, Announcement::Renewal { epoch: 2, shares, .. }) => assert_eq!(shares, vec![share.clone()]),
            other => panic!("{other:?}"),
        }
        let (subject, payload) = renewed.seal(&renewal(5)).unwrap();
        assert!(matches!(renewed.open(&subject, &payload), Err(EnvelopeError::Content(_))));
        let (subject, payload) =
            renewed.seal(&Announcement::Member { origin: "gate-c".into(), public: member.public() }).unwrap();
        assert_eq!(subject, "facegate.maple-court.gate-c.member");
        assert!(
            matches!(renewed.open(&subject, &payload).unwrap().1, Announcement::Member { public, .. } if public == member.public())
        );
    }

    #[test]
    fn only_the_epoch_in_force_or_a_later_one_counts() {
        assert_eq!(order(4, 4), Order::InForce);
        assert_eq!(order(5, 4), Order::Later);
        assert_eq!(order(3, 4), Order::Superseded);
        assert_eq!(order(0, 1), Order::Superseded);
    }
}
