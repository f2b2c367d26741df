//! The `tpm` key root: the key-encryption key sealed in a TPM 2.0 (an SPI module on the Pi's header, or
//! Debian's `swtpm` in tests), through `tss-esapi`.
//!
//! Owns the TPM conversation and nothing else: it never writes a file (the caller keeps the returned state)
//! and never holds the key-encryption key longer than it takes to hand it back. The sealed object lives
//! under a primary key the TPM derives from its own storage seed, so the state it returns opens in that TPM
//! and no other: a copied card, or a card moved to another board, gives the TPM a blob it refuses to load.
//! Every command runs in a session salted with that primary key and with parameter encryption, so the key
//! never crosses the SPI bus in clear.

use std::str::FromStr;

use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{KeyHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, EccPoint, EccScheme, KeyDerivationFunctionScheme, KeyedHashScheme, PcrSelectionList,
    PcrSelectionListBuilder, PcrSlot, Private, Public, PublicBuilder, PublicEccParametersBuilder,
    PublicKeyedHashParameters, SensitiveData, SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Context, TctiNameConf};
use zeroize::Zeroizing;

use super::root::{Kek, KeyRoot, RootError, RootKind};
use crate::protect::AeadKey;

const STATE_MAGIC: &[u8; 4] = b"FGT1";

/// A TPM 2.0 reached through a TCTI (`device:/dev/tpmrm0` on a Pi; `swtpm:host=127.0.0.1,port=P` in tests),
/// optionally binding the sealed key to PCR values (sha256 bank) measured at boot.
#[derive(Clone, Debug)]
pub struct TpmRoot {
    tcti: String,
    pcrs: Vec<u8>,
}

impl TpmRoot {
    /// The TPM at `tcti`; `pcrs` (0..=23) bind the key to those PCRs' values at sealing time.
    pub fn new(tcti: impl Into<String>, pcrs: Vec<u8>) -> Self {
        Self { tcti: tcti.into(), pcrs }
    }

    fn fail(&self, what: &'static str) -> impl Fn(tss_esapi::Error) -> RootError + '_ {
        move |e| RootError::Tpm { tcti: self.tcti.clone(), what, reason: e.to_string() }
    }

    fn context(&self) -> Result<Context, RootError> {
        let conf = TctiNameConf::from_str(&self.tcti).map_err(self.fail("reading the TCTI"))?;
        Context::new(conf).map_err(self.fail("opening the TPM (is the module wired and `dtoverlay=tpm-slb9670` set?)"))
    }

    /// The storage primary key (ECC P-256, the TCG's SRK template): the TPM derives the same key from its
    /// storage seed every time, so nothing of it is kept on the card.
    fn primary(&self, ctx: &mut Context) -> Result<KeyHandle, RootError> {
        let attributes = ObjectAttributesBuilder::new()
            .with_fixed_tpm(true)
            .with_fixed_parent(true)
            .with_sensitive_data_origin(true)
            .with_user_with_auth(true)
            .with_restricted(true)
            .with_decrypt(true)
            .build()
            .map_err(self.fail("building the primary key's attributes"))?;
        let parameters = PublicEccParametersBuilder::new()
            .with_symmetric(SymmetricDefinitionObject::AES_128_CFB)
            .with_ecc_scheme(EccScheme::Null)
            .with_curve(EccCurve::NistP256)
            .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
            .with_is_decryption_key(true)
            .with_restricted(true)
            .build()
            .map_err(self.fail("building the primary key's parameters"))?;
        let public = PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::Ecc)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes)
            .with_ecc_parameters(parameters)
            .with_ecc_unique_identifier(EccPoint::default())
            .build()
            .map_err(self.fail("building the primary key's template"))?;
        ctx.execute_with_nullauth_session(|ctx| ctx.create_primary(Hierarchy::Owner, public, None, None, None, None))
            .map(|created| created.key_handle)
            .map_err(self.fail("creating the storage primary key"))
    }

    /// A session salted with the primary key, encrypting the command's and the response's first parameter
    /// (the sealed key travels encrypted on the bus).
    fn encrypted_session(
        &self,
        ctx: &mut Context,
        primary: KeyHandle,
        kind: SessionType,
    ) -> Result<AuthSession, RootError> {
        let session = ctx
            .start_auth_session(
                Some(primary),
                None,
                None,
                kind,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(self.fail("starting a session"))?
            .ok_or(RootError::Tpm {
                tcti: self.tcti.clone(),
                what: "starting a session",
                reason: "no handle".into(),
            })?;
        let (attributes, mask) = SessionAttributesBuilder::new().with_decrypt(true).with_encrypt(true).build();
        ctx.tr_sess_set_attributes(session, attributes, mask).map_err(self.fail("setting the session's attributes"))?;
        Ok(session)
    }

    fn selection(&self) -> Result<Option<PcrSelectionList>, RootError> {
        if self.pcrs.is_empty() {
            return Ok(None);
        }
        let slots = self
            .pcrs
            .iter()
            .map(|&n| {
                PcrSlot::try_from(1u32.checked_shl(u32::from(n)).unwrap_or(0))
                    .map_err(|_| RootError::Config(format!("keys.tpm_pcrs: {n} is not a PCR (0..=23)")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        PcrSelectionListBuilder::new()
            .with_selection(HashingAlgorithm::Sha256, &slots)
            .build()
            .map(Some)
            .map_err(self.fail("selecting the PCRs"))
    }

    /// Runs TPM2_PolicyPCR over the PCRs' current values in `session` (a trial session gives the digest the
    /// sealed object is created with; a policy session then authorises the unseal only while they hold).
    fn policy_pcr(
        &self,
        ctx: &mut Context,
        session: AuthSession,
        selection: PcrSelectionList,
    ) -> Result<(), RootError> {
        let policy = PolicySession::try_from(session).map_err(self.fail("opening a policy session"))?;
        ctx.policy_pcr(policy, Digest::default(), selection).map_err(self.fail("binding to the PCRs"))
    }

    fn sealed_template(&self, policy: Option<Digest>) -> Result<Public, RootError> {
        // No `noDA`: wrong authorisations of this object count towards the TPM's dictionary-attack lockout.
        let attributes = ObjectAttributesBuilder::new()
            .with_fixed_tpm(true)
            .with_fixed_parent(true)
            .with_user_with_auth(policy.is_none())
            .with_admin_with_policy(true)
            .with_no_da(false)
            .build()
            .map_err(self.fail("building the sealed object's attributes"))?;
        PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::KeyedHash)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes)
            .with_auth_policy(policy.unwrap_or_default())
            .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
            .with_keyed_hash_unique_identifier(Digest::default())
            .build()
            .map_err(self.fail("building the sealed object's template"))
    }

    fn seal(&self, ctx: &mut Context, kek: &AeadKey) -> Result<Vec<u8>, RootError> {
        let primary = self.primary(ctx)?;
        let policy = match self.selection()? {
            None => None,
            Some(selection) => {
                let trial = self.encrypted_session(ctx, primary, SessionType::Trial)?;
                self.policy_pcr(ctx, trial, selection)?;
                let digest = ctx
                    .policy_get_digest(PolicySession::try_from(trial).map_err(self.fail("reading the policy"))?)
                    .map_err(self.fail("reading the policy digest"))?;
                ctx.flush_context(SessionHandle::from(trial).into()).map_err(self.fail("closing the trial session"))?;
                Some(digest)
            }
        };
        let template = self.sealed_template(policy)?;
        let data = SensitiveData::try_from(kek.as_bytes().to_vec()).map_err(self.fail("preparing the key"))?;
        let session = self.encrypted_session(ctx, primary, SessionType::Hmac)?;
        ctx.set_sessions((Some(session), None, None));
        let created = ctx.create(primary, template, None, Some(data), None, None);
        ctx.clear_sessions();
        ctx.flush_context(SessionHandle::from(session).into()).map_err(self.fail("closing the session"))?;
        let created = created.map_err(self.fail("sealing the key"))?;
        ctx.flush_context(primary.into()).map_err(self.fail("releasing the primary key"))?;
        let public = created.out_public.marshall().map_err(self.fail("encoding the sealed object"))?;
        let private = created.out_private.value().to_vec();
        let mut state = Vec::with_capacity(4 + 1 + 4 + public.len() + private.len() + self.pcrs.len());
        state.extend_from_slice(STATE_MAGIC);
        state.push(u8::try_from(self.pcrs.len()).unwrap_or(0));
        state.extend_from_slice(&self.pcrs);
        for part in [&public, &private] {
            state.extend_from_slice(&u16::try_from(part.len()).unwrap_or(u16::MAX).to_be_bytes());
            state.extend_from_slice(part);
        }
        Ok(state)
    }

    fn unseal(&self, ctx: &mut Context, state: &[u8]) -> Result<AeadKey, RootError> {
        let (pcrs, public, private) = parse_state(state)?;
        if pcrs != self.pcrs.as_slice() {
            return Err(RootError::Config(format!(
                "keys.tpm_pcrs is {:?} but the key was sealed to {:?}; set it back, or run `facegate keys migrate` to re-seal",
                self.pcrs, pcrs
            )));
        }
        let public =
            Public::unmarshall(public).map_err(|_| RootError::State("the sealed object's public part".into()))?;
        let private = Private::try_from(private.to_vec())
            .map_err(|_| RootError::State("the sealed object's private part".into()))?;
        let primary = self.primary(ctx)?;
        // A TPM with another storage seed (another board, another swtpm state) refuses the blob here.
        let object = ctx
            .execute_with_nullauth_session(|ctx| ctx.load(primary, private, public))
            .map_err(|e| RootError::Foreign { tcti: self.tcti.clone(), reason: e.to_string() })?;
        let session = match self.selection()? {
            None => self.encrypted_session(ctx, primary, SessionType::Hmac)?,
            Some(selection) => {
                let policy = self.encrypted_session(ctx, primary, SessionType::Policy)?;
                self.policy_pcr(ctx, policy, selection)?;
                policy
            }
        };
        ctx.set_sessions((Some(session), None, None));
        let unsealed = ctx.unseal(object.into());
        ctx.clear_sessions();
        for handle in [SessionHandle::from(session).into(), object.into(), primary.into()] {
            ctx.flush_context(handle).map_err(self.fail("releasing a handle"))?;
        }
        let unsealed = unsealed.map_err(|e| RootError::Refused { tcti: self.tcti.clone(), reason: e.to_string() })?;
        let bytes = Zeroizing::new(unsealed.value().to_vec());
        AeadKey::from_slice(&bytes)
            .ok_or_else(|| RootError::State(format!("unsealed {} bytes, expected 32", bytes.len())))
    }
}

/// The parts of a TPM state: the PCRs, the sealed object's public and private parts.
type StateParts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// `FGT1 | n | pcrs(n) | len | public | len | private`.
fn parse_state(state: &[u8]) -> Result<StateParts<'_>, RootError> {
    let bad = || RootError::State("not a facegate TPM state (FGT1)".into());
    let rest = state.strip_prefix(STATE_MAGIC).ok_or_else(bad)?;
    let (&n, rest) = rest.split_first().ok_or_else(bad)?;
    let (pcrs, mut rest) = rest.split_at_checked(usize::from(n)).ok_or_else(bad)?;
    let mut part = || -> Result<&[u8], RootError> {
        let (len, tail) = rest.split_at_checked(2).ok_or_else(bad)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (value, tail) = tail.split_at_checked(len).ok_or_else(bad)?;
        rest = tail;
        Ok(value)
    };
    let public = part()?;
    let private = part()?;
    Ok((pcrs, public, private))
}

impl KeyRoot for TpmRoot {
    fn kind(&self) -> RootKind {
        RootKind::Tpm
    }

    fn create(&self) -> Result<(Kek, Vec<u8>), RootError> {
        let mut ctx = self.context()?;
        let kek = AeadKey::generate();
        let state = self.seal(&mut ctx, &kek)?;
        Ok((Kek::new(kek), state))
    }

    fn open(&self, state: &[u8]) -> Result<Kek, RootError> {
        let mut ctx = self.context()?;
        self.unseal(&mut ctx, state).map(Kek::new)
    }

    fn describe(&self) -> String {
        if self.pcrs.is_empty() {
            format!("TPM 2.0 at {}", self.tcti)
        } else {
            format!("TPM 2.0 at {}, bound to PCRs {:?}", self.tcti, self.pcrs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_state_is_refused_not_read_past_its_end() {
        assert!(parse_state(b"FGT1").is_err());
        assert!(parse_state(b"FGT1\x00\x00\x05ab").is_err());
        assert!(parse_state(b"XXXX\x00\x00\x00\x00\x00").is_err());
        let (pcrs, public, private) = parse_state(b"FGT1\x01\x07\x00\x02ab\x00\x01c").unwrap();
        assert_eq!((pcrs, public, private), (&[7u8][..], &b"ab"[..], &b"c"[..]));
    }
}
