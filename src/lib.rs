//! facegate: a privacy-first face gate for residential compounds.
//!
//! The modules in the order the data flows, one line each (ARCHITECTURE.md has the whole map):
//!
//! - [`capture`]: frames from a camera or a replayed folder, decoded into wiping buffers.
//! - [`vision`]: detect, align, embed and liveness on the ONNX models; the pipeline, enrolment quality, QR.
//! - [`protect`]: the cancelable transform, AES-256-GCM sealing, PIN verifiers, visitor passes, the key file,
//!   process hardening.
//! - [`policy`]: the pure core: matching thresholds, the door's decisions, passage counts and their suppression.
//! - [`devices`]: relay, lights, Wiegand, contacts, keypad, pass scanner, each real and simulated.
//! - [`store`]: the SQLite file: residents, consent, sealed templates, PINs, passes, counts, audit log.
//! - [`registry`]: the one owner of residents and keys in a process, and the gallery snapshot it publishes.
//! - [`gate`]: the running gate: the daemon that wires it all (`facegate run`), camera, readers, the door task,
//!   events.
//! - [`compound`]: several gates of one compound over a NATS broker.
//! - [`portal`]: the residents' and staff's web pages.
//! - [`audit`]: the auditor's checks of the no-retention guarantees, and signed reports.
//! - [`config`]: the TOML file, validated into typed settings.
//! - [`cli`]: the command line, and the demo.
//!
//! Invariants kept by every module (see ARCHITECTURE.md): no frame, crop or image is ever written to disk,
//! logs or network; a plaintext embedding lives only in memory, in a type that wipes it on drop and cannot
//! print it.

pub mod capture;
pub mod vision;
pub mod protect;
pub mod policy;
pub mod devices;
pub mod store;
pub mod registry;
pub mod gate;
pub mod compound;
pub mod portal;
pub mod audit;
pub mod config;
pub mod cli;
