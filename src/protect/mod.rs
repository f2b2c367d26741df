//! Protect: what makes a stored template cancelable and unreadable.
//!
//! [`transform`] holds the keyed, renewable rotation that turns an [`crate::embed::Embedding`] into a
//! [`ProtectedTemplate`]; [`seal`] holds AES-256-GCM sealing of templates and the wrapping of per-resident
//! data keys (and the device transform key) under the master key; [`pin`] holds the peppered argon2id PIN
//! verifiers. All pure (no file, database or clock access): [`crate::keys`] and [`crate::store`] do the I/O.
//! Nothing here prints or serialises a secret.

pub mod pin;
pub mod seal;
pub mod transform;

/// 32 secret bytes, wiped on drop, never printed: the storage inside every key type of this module, which
/// stay distinct types so a data key can never be passed where a transform key is expected.
#[derive(Clone, zeroize::ZeroizeOnDrop)]
struct Secret32([u8; 32]);

impl Secret32 {
    fn random() -> Self {
        use rand::Rng;
        let mut secret = Self([0u8; 32]);
        rand::rng().fill(&mut secret.0);
        secret
    }
}

pub use pin::{pin_verifier, verify_pin, Pin, PinError, PinPepper};
pub use seal::{
    open_message, open_template, seal_message, seal_template, unwrap_key, unwrap_transform_key, wrap_key,
    wrap_transform_key, AeadKey, SealError, Sealed, TemplateContext,
};
pub use transform::{ProtectedTemplate, Renewal, Rotation, TransformId, TransformKey};
