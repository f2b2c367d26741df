//! The device's audit-signing key (ed25519) and signed reports that anyone can verify offline.
//!
//! The key lives in the key folder, apart from the database, created on first use (mode 0600). A signed
//! report is `{"report": ..., "public_key": hex, "signature": hex}`; the signature covers the report in
//! canonical JSON (object keys sorted, no spaces), so re-serialising a parsed report gives the same bytes.
//! The secret key is wiped on drop and never printed.

use std::path::{Path, PathBuf};

use data_encoding::HEXLOWER;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::protect::keys::{self, KeyWrap};

/// The signing key's file name inside the key folder.
pub const SIGNING_KEY_FILE: &str = "audit-signing.key";

/// Errors of signing and verifying.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key file could not be opened under the device's key root.
    #[error("audit signing key {}: {source}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: keys::KeyError,
    },
    /// The key file is not a key.
    #[error("audit signing key {}: {len} bytes, expected 32; restore it from the backup of the key folder", path.display())]
    KeyLength {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The report file is not a signed report.
    #[error("not a signed facegate audit report: {0}")]
    Malformed(String),
    /// A report that does not serialise (a bug).
    #[error("the report cannot be serialised: {0}")]
    Json(#[source] serde_json::Error),
    /// The signature does not match the report and key.
    #[error("the signature does not match: the report was altered, or signed by another key")]
    BadSignature,
    /// The report was signed by a different key than the one expected.
    #[error("signed by key {found}, not by the expected {expected}")]
    WrongKey {
        /// Fingerprint of the key in the report.
        found: String,
        /// Fingerprint the verifier expected.
        expected: String,
    },
}

/// The device's signing key. No `Debug`, no `Clone`: it is wiped on drop (ed25519-dalek's `ZeroizeOnDrop`).
pub struct AuditSigner {
    key: SigningKey,
}

impl AuditSigner {
    /// Loads `<key_dir>/audit-signing.key` (sealed under the device's key root), creating it on first use.
    pub fn load_or_create(key_dir: &Path, wrap: &KeyWrap) -> Result<Self, SignError> {
        let path = key_dir.join(SIGNING_KEY_FILE);
        match keys::read_secret(&path, wrap).map_err(|source| SignError::Key { path: path.clone(), source })? {
            Some(bytes) => {
                let secret: &[u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| SignError::KeyLength { path: path.clone(), len: bytes.len() })?;
                Ok(Self { key: SigningKey::from_bytes(secret) })
            }
            None => Self::rotate(key_dir, wrap),
        }
    }

    /// Makes a fresh signing key and replaces the old one (whose reports still verify against its public key,
    /// which they carry; a verifier who pinned the old fingerprint must be given the new one).
    pub fn rotate(key_dir: &Path, wrap: &KeyWrap) -> Result<Self, SignError> {
        use rand::RngCore;
        let path = key_dir.join(SIGNING_KEY_FILE);
        let mut secret = Zeroizing::new([0u8; 32]);
        crate::protect::secret_rng().fill_bytes(secret.as_mut());
        keys::write_secret(&path, wrap, secret.as_ref()).map_err(|source| SignError::Key { path, source })?;
        Ok(Self { key: SigningKey::from_bytes(&secret) })
    }

    /// The public key, hex.
    pub fn public_key_hex(&self) -> String {
        HEXLOWER.encode(self.key.verifying_key().as_bytes())
    }

    /// Signs a report (any serialisable value).
    pub fn sign<T: Serialize>(&self, report: &T) -> Result<SignedReport, SignError> {
        let value = serde_json::to_value(report).map_err(SignError::Json)?;
        let signature = self.key.sign(&canonical(&value));
        Ok(SignedReport {
            report: value,
            public_key: self.public_key_hex(),
            signature: HEXLOWER.encode(&signature.to_bytes()),
        })
    }
}

/// A report with its signature and the public key that made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignedReport {
    /// The report itself.
    pub report: serde_json::Value,
    /// ed25519 public key, hex.
    pub public_key: String,
    /// ed25519 signature over the canonical JSON of `report`, hex.
    pub signature: String,
}

impl SignedReport {
    /// Checks the signature; with `expected_key` (hex or fingerprint), also that this device's key signed it.
    pub fn verify(&self, expected_key: Option<&str>) -> Result<(), SignError> {
        let bad = |what: &str| SignError::Malformed(what.to_owned());
        let key_bytes: [u8; 32] = HEXLOWER
            .decode(self.public_key.as_bytes())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("public_key is not 32 bytes of hex"))?;
        let signature: [u8; 64] = HEXLOWER
            .decode(self.signature.as_bytes())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("signature is not 64 bytes of hex"))?;
        if let Some(expected) = expected_key {
            let expected = expected.trim().to_ascii_lowercase();
            let found = fingerprint(&self.public_key);
            if expected != self.public_key && expected != found {
                return Err(SignError::WrongKey { found, expected });
            }
        }
        let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| bad("public_key is not an ed25519 key"))?;
        key.verify(&canonical(&self.report), &Signature::from_bytes(&signature)).map_err(|_| SignError::BadSignature)
    }
}

/// A short, printable fingerprint of a public key (hex): the first 16 bytes of its SHA-256, in hex.
pub fn fingerprint(public_key_hex: &str) -> String {
    let digest = Sha256::digest(public_key_hex.as_bytes());
    HEXLOWER.encode(&digest[..16])
}

/// JSON with object keys sorted and no whitespace (serde_json's map is ordered by key without the
/// `preserve_order` feature).
fn canonical(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_report_verifies_and_any_change_breaks_it() {
        let dir = tempfile::tempdir().unwrap();
        let signer = AuditSigner::load_or_create(dir.path(), &KeyWrap::Plain).unwrap();
        let signed =
            signer.sign(&serde_json::json!({"passed": true, "checks": [{"id": "scan", "status": "pass"}]})).unwrap();
        signed.verify(None).unwrap();
        signed.verify(Some(&fingerprint(&signer.public_key_hex()))).unwrap();
        // Through a file and back: same bytes signed.
        let text = serde_json::to_string_pretty(&signed).unwrap();
        let parsed: SignedReport = serde_json::from_str(&text).unwrap();
        parsed.verify(None).unwrap();
        let mut altered = parsed.clone();
        altered.report["passed"] = serde_json::json!(false);
        assert!(matches!(altered.verify(None), Err(SignError::BadSignature)));
        // The same key is used on the next load; another device's key is refused when one is expected.
        let again = AuditSigner::load_or_create(dir.path(), &KeyWrap::Plain).unwrap();
        assert_eq!(again.public_key_hex(), signer.public_key_hex());
        let other = AuditSigner::load_or_create(tempfile::tempdir().unwrap().path(), &KeyWrap::Plain).unwrap();
        let by_other = other.sign(&serde_json::json!({"passed": true})).unwrap();
        assert!(matches!(by_other.verify(Some(&signer.public_key_hex())), Err(SignError::WrongKey { .. })));
        let mut junk = signed;
        junk.signature = "zz".into();
        assert!(matches!(junk.verify(None), Err(SignError::Malformed(_))));
    }

    #[test]
    fn a_damaged_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SIGNING_KEY_FILE), b"short").unwrap();
        let err = AuditSigner::load_or_create(dir.path(), &KeyWrap::Plain).err().unwrap();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path().join(SIGNING_KEY_FILE), std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = AuditSigner::load_or_create(dir.path(), &KeyWrap::Plain).err().unwrap();
        assert!(err.to_string().contains("expected 32"), "{err}");
    }
}
