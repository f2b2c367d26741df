//! facegate: a privacy-first face gate for residential compounds.
//!
//! The modules follow the data, in reading order: a frame is captured ([`capture`]), faces are found
//! ([`detect`]), the chosen face is aligned ([`align`]) and embedded ([`embed`]); [`pipeline`] strings those
//! steps together over the models that [`model`] loads. [`eval`] measures the path on labelled photos,
//! [`demo`] shows it end to end, [`config`] and [`cli`] are the edges a person touches.
//!
//! Invariants kept by every module (see ARCHITECTURE.md): no frame, crop or image is ever written to disk,
//! logs or network; a plaintext embedding lives only in memory, in a type that wipes it on drop and cannot
//! print it.

pub mod actuate;
pub mod align;
pub mod audit;
pub mod capture;
pub mod cli;
pub mod compound;
pub mod config;
pub mod counts;
pub mod daemon;
pub mod decide;
pub mod demo;
pub mod detect;
pub mod embed;
pub mod enrol;
pub mod eval;
pub mod gate;
pub mod hardening;
pub mod inputs;
pub mod keypad;
pub mod keys;
pub mod liveness;
pub mod matching;
pub mod model;
pub mod pass;
pub mod pipeline;
pub mod portal;
pub mod protect;
pub mod qr;
pub mod registry;
pub mod scanner;
pub mod store;
