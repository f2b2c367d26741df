//! Why a config file is refused: [`ConfigError`], and the small checks every section shares.
//!
//! Every message names the dotted key and says what would be accepted, because the reader is an installer
//! at a gate with only the log. The parser's and the file system's own errors stay attached as sources
//! (shown by `{:#}`), never flattened into strings. Nothing here knows any section's keys or defaults.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use super::pins::BcmPin;

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}; check the path and that the service user may read it")]
    Read {
        /// The file.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML, has an unknown key, or a value of the wrong type or outside its fixed choices.
    #[error("config file {path}{}", at_key(key))]
    Parse {
        /// The file.
        path: PathBuf,
        /// The dotted key the parser stopped at (empty when the TOML itself is broken).
        key: String,
        /// The parser's error: the line, the value and what was expected. Boxed: it is several times
        /// the size of the other variants, and every `Result` here would grow to it.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A key holds a value outside its range, or one that contradicts another key.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// The dotted key.
        key: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// Two keys name the same GPIO pin: two devices would drive or read one wire.
    #[error("config key `{key}`: BCM {pin} is already used by `{first}`; give each device a pin of its own")]
    PinReused {
        /// The key naming the pin a second time.
        key: &'static str,
        /// The pin.
        pin: BcmPin,
        /// The key that named it first.
        first: &'static str,
    },
}

/// The parser's key path as a sentence part; the parser's own message (the source) then says what the key
/// accepts. serde_path_to_error writes `.` for the document itself.
fn at_key(key: &str) -> String {
    if key.is_empty() || key == "." {
        " is not valid TOML".to_owned()
    } else {
        format!(", key `{key}`")
    }
}

/// A refusal of `key`.
pub(super) fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

/// `value` if it lies in `range`, else a refusal naming the key and the range.
pub(super) fn in_range<T>(key: &'static str, value: T, range: RangeInclusive<T>) -> Result<T, ConfigError>
where
    T: PartialOrd + Display,
{
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(key, format!("{value} is not in {}..={}", range.start(), range.end())))
    }
}

/// `value` unless `ok` is false; `allowed` names the interval in the refusal, e.g. `(0, 1]`. Floats get
/// this instead of [`in_range`] because their intervals are often open, and a NaN must fail.
pub(super) fn float_in<T: Display>(key: &'static str, value: T, ok: bool, allowed: &str) -> Result<T, ConfigError> {
    if ok {
        Ok(value)
    } else {
        Err(invalid(key, format!("{value} is not in {allowed}")))
    }
}
