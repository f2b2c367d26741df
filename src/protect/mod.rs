//! Protect: what makes a stored template cancelable and unreadable.
//!
//! [`transform`] holds the keyed, renewable rotation that turns an [`crate::vision::embed::Embedding`] into a
//! [`ProtectedTemplate`]; [`seal`] holds AES-256-GCM sealing of templates and the wrapping of per-resident
//! data keys (and the device transform key) under the master key; [`pin`] holds the peppered argon2id PIN
//! verifiers. All pure (no file, database or clock access): [`crate::protect::keys`] and [`crate::store`] do the I/O.
//! Nothing here prints or serialises a secret.

pub mod hardening;
pub mod keys;
pub mod pass;
pub mod pin;
pub mod seal;
pub mod transform;

/// 32 secret bytes, wiped on drop, never printed: the storage inside every key type of this module, which
/// stay distinct types so a data key can never be passed where a transform key is expected.
#[derive(Clone, zeroize::ZeroizeOnDrop)]
// Boxed: moving a key (into a struct, out of a function) moves a pointer, never the 32 bytes, so no stale
// copy of a key is left behind in a stack frame or a moved-from struct for a memory scan to find.
struct Secret32(Box<[u8; 32]>);

/// Randomness for secrets (keys, codes, ephemeral key pairs), straight from the kernel's generator. Never
/// `rand::rng()` for a secret: the thread's generator keeps a 256-byte block of its output in memory and hands
/// it out piece by piece, so a key drawn from it stays in that block, beside the next ones, until the thread
/// happens to draw 256 more bytes; the daemon's registry thread could hold a replaced master key for hours.
/// Panics if the kernel cannot give randomness, as `rand::rng()` does: no key is made without it.
pub(crate) fn secret_rng() -> impl rand::CryptoRng {
    use rand::TryRngCore;
    rand::rngs::OsRng.unwrap_err()
}

impl Secret32 {
    fn random() -> Self {
        use rand::RngCore;
        let mut secret = Self(Box::new([0u8; 32]));
        secret_rng().fill_bytes(&mut secret.0[..]);
        secret
    }

    /// Copies 32 bytes straight into the heap; `None` for any other length.
    fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 32 {
            return None;
        }
        let mut secret = Self(Box::new([0u8; 32]));
        secret.0.copy_from_slice(bytes);
        Some(secret)
    }

    /// Takes an array the caller owns, wiping the caller's copy.
    fn from_array(bytes: &mut [u8; 32]) -> Self {
        let secret = Self(Box::new(*bytes));
        zeroize::Zeroize::zeroize(bytes);
        secret
    }
}

pub use pin::{dummy_verifier, pin_verifier, verify_pin, Pin, PinError, PinPepper};
pub use seal::{
    open_message, open_template, seal_message, seal_template, unwrap_key, unwrap_transform_key, wrap_key,
    wrap_transform_key, AeadKey, SealError, Sealed, TemplateContext,
};
pub use transform::{ProtectedTemplate, Renewal, Rotation, TransformId, TransformKey};
