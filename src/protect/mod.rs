//! Protect: what makes a stored template cancelable and unreadable.
//!
//! [`transform`] holds the keyed, renewable rotation that turns an [`crate::embed::Embedding`] into a
//! [`ProtectedTemplate`]; [`seal`] holds AES-256-GCM sealing of templates and the wrapping of per-resident
//! data keys under the device master key. Both are pure (no file, database or clock access); key storage
//! and the database come later, in their own modules. Nothing here prints or serialises a secret.

pub mod seal;
pub mod transform;

pub use seal::{open_template, seal_template, unwrap_key, wrap_key, AeadKey, SealError, Sealed, TemplateContext};
pub use transform::{ProtectedTemplate, Rotation, TransformId, TransformKey};
