//! Sealing: AES-256-GCM for protected templates at rest, and the key hierarchy's wrapping of per-resident
//! data keys under the device master key.
//!
//! Pure functions over bytes (the nonce comes from the OS random source); no file or database access. Every
//! seal uses a fresh random 96-bit nonce. The associated data binds a template to its resident, version and
//! transform, and a wrapped key to its resident, so no ciphertext can be moved to another row. Keys and
//! plaintexts live in zeroizing types.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::Rng;
use zeroize::Zeroizing;

use super::transform::{ProtectedTemplate, TransformId, TransformKey};
use crate::vision::embed::EMBEDDING_DIM;

/// Length of a nonce.
pub const NONCE_LEN: usize = 12;

/// A 256-bit AES key (the device master key, or a resident's data key). Wiped on drop; no `Debug` of bytes.
#[derive(Clone)]
pub struct AeadKey(super::Secret32);

impl AeadKey {
    /// Wraps 32 secret bytes.
    pub fn from_bytes(mut bytes: [u8; 32]) -> Self {
        Self(super::Secret32::from_array(&mut bytes))
    }

    /// Copies a 32-byte key from a (zeroizing) buffer without an intermediate copy; `None` for another length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        super::Secret32::from_slice(bytes).map(Self)
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        Self(super::Secret32::random())
    }

    /// The key bytes (only for wrapping it, or for writing the master key file).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0 .0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&*self.0 .0).into())
    }
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AeadKey").finish_non_exhaustive()
    }
}

/// Errors of sealing and opening.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The ciphertext does not authenticate: wrong key, tampered bytes, or a row moved to another resident.
    #[error(
        "the sealed data does not authenticate: wrong key, tampered data, or a row that belongs to another resident"
    )]
    Authentication,
    /// The stored bytes have an impossible shape.
    #[error("the sealed data is malformed ({0})")]
    Malformed(&'static str),
    /// Encryption failed (cannot happen for these sizes; reported rather than unwrapped).
    #[error("encryption failed")]
    Encrypt,
}

/// Nonce and ciphertext (with its 16-byte tag) of one sealed value.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The random nonce used.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the GCM tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed").field("ciphertext_len", &self.ciphertext.len()).finish_non_exhaustive()
    }
}

/// Where a sealed template belongs; bound into its associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateContext<'a> {
    /// The resident's pseudonymous id.
    pub resident_id: &'a str,
    /// Template version (increments at each re-enrolment).
    pub version: u32,
    /// The transform the template was made under.
    pub transform: TransformId,
}

impl TemplateContext<'_> {
    /// Unambiguous associated data: a label, then length-prefixed fields.
    fn associated_data(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(b"facegate template v1\0");
        push_str(&mut aad, self.resident_id);
        aad.extend_from_slice(&self.version.to_be_bytes());
        aad.extend_from_slice(&self.transform.0.to_be_bytes());
        aad
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn fresh_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill(&mut nonce);
    nonce
}

fn seal_with_nonce(key: &AeadKey, nonce: [u8; NONCE_LEN], plaintext: &[u8], aad: &[u8]) -> Result<Sealed, SealError> {
    let ciphertext = key
        .cipher()
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
        .map_err(|_| SealError::Encrypt)?;
    Ok(Sealed { nonce, ciphertext })
}

fn open(key: &AeadKey, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    key.cipher()
        .decrypt(Nonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad })
        .map(Zeroizing::new)
        .map_err(|_| SealError::Authentication)
}

/// Seals a protected template under a resident's data key.
pub fn seal_template(
    template: &ProtectedTemplate,
    key: &AeadKey,
    context: TemplateContext<'_>,
) -> Result<Sealed, SealError> {
    if template.transform() != context.transform {
        return Err(SealError::Malformed("template made under another transform than the context names"));
    }
    let mut plaintext = Zeroizing::new(Vec::with_capacity(EMBEDDING_DIM * 4));
    for v in template.as_slice() {
        plaintext.extend_from_slice(&v.to_le_bytes());
    }
    seal_with_nonce(key, fresh_nonce(), &plaintext, &context.associated_data())
}

/// Opens a sealed template; fails unless key, bytes and context are exactly those it was sealed with.
pub fn open_template(
    sealed: &Sealed,
    key: &AeadKey,
    context: TemplateContext<'_>,
) -> Result<ProtectedTemplate, SealError> {
    let plaintext = open(key, sealed, &context.associated_data())?;
    if plaintext.len() != EMBEDDING_DIM * 4 {
        return Err(SealError::Malformed("template length"));
    }
    let mut values = Zeroizing::new([0.0f32; EMBEDDING_DIM]);
    for (v, chunk) in values.iter_mut().zip(plaintext.chunks_exact(4)) {
        *v = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    ProtectedTemplate::from_values(&values[..], context.transform).ok_or(SealError::Malformed("template values"))
}

/// Seals a message (AES-256-GCM, fresh random nonce) bound to `aad`; used for what crosses the compound's
/// network, where the caller names the context in `aad`.
pub fn seal_message(key: &AeadKey, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, SealError> {
    seal_with_nonce(key, fresh_nonce(), plaintext, aad)
}

/// Opens a [`seal_message`] sealed under `key` with the same `aad`; the plaintext wipes itself on drop.
pub fn open_message(key: &AeadKey, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    open(key, sealed, aad)
}

/// Wraps (encrypts) a resident's data key under the master key, bound to the resident.
pub fn wrap_key(data_key: &AeadKey, master: &AeadKey, resident_id: &str) -> Result<Sealed, SealError> {
    seal_with_nonce(master, fresh_nonce(), data_key.as_bytes(), &wrap_aad(resident_id))
}

/// Unwraps a resident's data key.
pub fn unwrap_key(wrapped: &Sealed, master: &AeadKey, resident_id: &str) -> Result<AeadKey, SealError> {
    let bytes = open(master, wrapped, &wrap_aad(resident_id))?;
    AeadKey::from_slice(&bytes).ok_or(SealError::Malformed("key length"))
}

/// Wraps the device's transform key under the master key, bound to its transform id.
pub fn wrap_transform_key(key: &TransformKey, master: &AeadKey) -> Result<Sealed, SealError> {
    seal_with_nonce(master, fresh_nonce(), key.as_bytes(), &transform_aad(key.transform_id()))
}

/// Unwraps the transform key stored under `id`; fails on a wrong master key or a row moved under another id.
pub fn unwrap_transform_key(wrapped: &Sealed, master: &AeadKey, id: TransformId) -> Result<TransformKey, SealError> {
    let bytes = open(master, wrapped, &transform_aad(id))?;
    let key = TransformKey::from_slice(&bytes).ok_or(SealError::Malformed("key length"))?;
    if key.transform_id() != id {
        return Err(SealError::Malformed("transform key does not hash to its id"));
    }
    Ok(key)
}

fn transform_aad(id: TransformId) -> Vec<u8> {
    let mut aad = b"facegate transform key v1\0".to_vec();
    aad.extend_from_slice(&id.0.to_be_bytes());
    aad
}

fn wrap_aad(resident_id: &str) -> Vec<u8> {
    let mut aad = b"facegate wrapped data key v1\0".to_vec();
    push_str(&mut aad, resident_id);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protect::transform::{Rotation, TransformKey};
    use crate::vision::embed::Embedding;

    struct CavsVector {
        key: &'static str,
        nonce: &'static str,
        plaintext: &'static str,
        aad: &'static str,
        ciphertext: &'static str,
        tag: &'static str,
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// NIST CAVS AES-GCM vectors, `gcmEncryptExtIV256.rsp` (96-bit IV, 128-bit tag), from
    /// <https://csrc.nist.gov/Projects/cryptographic-algorithm-validation-program/CAVP-TESTING-BLOCK-CIPHER-MODES>
    /// (as also carried by the aes-gcm crate's own tests).
    const CAVS: &[CavsVector] = &[
        CavsVector {
            key: "b52c505a37d78eda5dd34f20c22540ea1b58963cf8e5bf8ffa85f9f2492505b4",
            nonce: "516c33929df5a3284ff463d7",
            plaintext: "",
            aad: "",
            ciphertext: "",
            tag: "bdc1ac884d332457a1d2664f168c76f0",
        },
        CavsVector {
            key: "37ccdba1d929d6436c16bba5b5ff34deec88ed7df3d15d0f4ddf80c0c731ee1f",
            nonce: "5c1b21c8998ed6299006d3f9",
            plaintext: "ad4260e3cdc76bcc10c7b2c06b80b3be948258e5ef20c508a81f51e96a518388",
            aad: "22ed235946235a85a45bc5fad7140bfa",
            ciphertext: "3b335f8b08d33ccdcad228a74700f1007542a4d1e7fc1ebe3f447fe71af29816",
            tag: "1fbf49cc46f458bf6e88f6370975e6d4",
        },
        CavsVector {
            key: "2c11470e6f136bec73351619288f819fb2bbba451857aadfb78384074612778a",
            nonce: "4e6cc2bcc15a46d51e88958d",
            plaintext: "3b3186a02475f536d80d8bd326ecc8b33dd04f66f8ba1d20917952410b05c2ed",
            aad: "05d29369922fdac1a7b37f07953fe175",
            ciphertext: "6380945a08977e87b294b9e412a26aebeeb8960c512439bac36636763cd91c0c",
            tag: "1029a3c4be1d90123c1b404513efde53",
        },
        CavsVector {
            key: "df25ea377c784d743846555a10cfaa044936535649e94da21811bad9cea957b5",
            nonce: "35f5f8e950c1f57ad3dfb1fa",
            plaintext: "98941a807ac8f16eef0b3d3c7bbdfd55d01736c5b3360d92b4358a5a8919380b",
            aad: "28eb4677110ccb6edc8d2013dc8f46ec",
            ciphertext: "24a07532e981aaf3106eab8dfbb2d2078342e2eaee027e148f06aca68f6a1c50",
            tag: "131373ed4a0e3f584ae978d42daa6f3a",
        },
        CavsVector {
            key: "1fded32d5999de4a76e0f8082108823aef60417e1896cf4218a2fa90f632ec8a",
            nonce: "1f3afa4711e9474f32e70462",
            plaintext:
                "06b2c75853df9aeb17befd33cea81c630b0fc53667ff45199c629c8e15dce41e530aa792f796b8138eeab2e86c7b7bee1d40b0",
            aad: "",
            ciphertext:
                "91fbd061ddc5a7fcc9513fcdfdc9c3a7c5d4d64cedf6a9c24ab8a77c36eefbf1c5dc00bc50121b96456c8cd8b6ff1f8b3e480f",
            tag: "30096d340f3d5c42d82a6f475def23eb",
        },
    ];

    #[test]
    fn the_wrapper_passes_nist_cavs_vectors() {
        for (i, v) in CAVS.iter().enumerate() {
            let key = AeadKey::from_bytes(hex(v.key).try_into().unwrap());
            let nonce: [u8; NONCE_LEN] = hex(v.nonce).try_into().unwrap();
            let sealed = seal_with_nonce(&key, nonce, &hex(v.plaintext), &hex(v.aad)).unwrap();
            let mut expected = hex(v.ciphertext);
            expected.extend(hex(v.tag));
            assert_eq!(sealed.ciphertext, expected, "vector {i}");
            assert_eq!(open(&key, &sealed, &hex(v.aad)).unwrap().as_slice(), hex(v.plaintext).as_slice(), "vector {i}");
            let mut tampered = sealed.clone();
            tampered.ciphertext[0] ^= 1;
            assert_eq!(open(&key, &tampered, &hex(v.aad)).unwrap_err(), SealError::Authentication);
        }
    }

    fn template(transform_key: &TransformKey) -> ProtectedTemplate {
        let mut raw = [0.0f32; EMBEDDING_DIM];
        raw[3] = 1.0;
        raw[9] = -0.5;
        Rotation::from_key(transform_key).protect(&Embedding::from_raw(&raw).unwrap())
    }

    #[test]
    fn a_template_opens_only_in_its_own_row_with_its_own_key() {
        let tkey = TransformKey::from_bytes([1; 32]);
        let t = template(&tkey);
        let key = AeadKey::generate();
        let context = TemplateContext { resident_id: "r-1", version: 1, transform: tkey.transform_id() };
        let sealed = seal_template(&t, &key, context).unwrap();
        let opened = open_template(&sealed, &key, context).unwrap();
        assert_eq!(opened.as_slice(), t.as_slice());
        // Fresh nonce each time.
        assert_ne!(seal_template(&t, &key, context).unwrap().nonce, sealed.nonce);
        // Another resident's row, another version, another transform, another key: all refused.
        for wrong in [
            TemplateContext { resident_id: "r-2", ..context },
            TemplateContext { version: 2, ..context },
            TemplateContext { transform: TransformId(7), ..context },
        ] {
            assert_eq!(open_template(&sealed, &key, wrong).unwrap_err(), SealError::Authentication);
        }
        assert_eq!(open_template(&sealed, &AeadKey::generate(), context).unwrap_err(), SealError::Authentication);
        let mut truncated = sealed.clone();
        truncated.ciphertext.truncate(10);
        assert_eq!(open_template(&truncated, &key, context).unwrap_err(), SealError::Authentication);
    }

    #[test]
    fn the_ciphertext_holds_no_float_bytes_of_the_template() {
        let tkey = TransformKey::from_bytes([2; 32]);
        let t = template(&tkey);
        let context = TemplateContext { resident_id: "r", version: 1, transform: tkey.transform_id() };
        let sealed = seal_template(&t, &AeadKey::generate(), context).unwrap();
        for v in t.as_slice().iter().filter(|v| v.abs() > 1e-3) {
            let bytes = v.to_le_bytes();
            assert!(!sealed.ciphertext.windows(4).any(|w| w == bytes));
        }
    }

    #[test]
    fn wrapped_keys_are_bound_to_their_resident_and_master() {
        let (master, data) = (AeadKey::generate(), AeadKey::generate());
        let wrapped = wrap_key(&data, &master, "alice").unwrap();
        assert_eq!(unwrap_key(&wrapped, &master, "alice").unwrap().as_bytes(), data.as_bytes());
        assert_eq!(unwrap_key(&wrapped, &master, "bob").unwrap_err(), SealError::Authentication);
        assert_eq!(unwrap_key(&wrapped, &AeadKey::generate(), "alice").unwrap_err(), SealError::Authentication);
    }
}
