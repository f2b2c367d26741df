//! `[models]`, `[store]` and `[audit]`: where facegate's files live, with the installed layout as defaults.
//!
//! Owns the rule that the portal's and the compound's key files default to the master key's folder, so the
//! secrets stay together and apart from the database. Never checks that a file exists or opens one: the
//! command that needs a file reports its absence in its own terms.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[models]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModels {
    /// Folder holding the ONNX files.
    pub dir: Option<PathBuf>,
}

/// `[store]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// The SQLite database file.
    pub database: Option<PathBuf>,
    /// The master key file (32 bytes, mode 0600, not in the database's folder).
    pub master_key: Option<PathBuf>,
}

/// `[audit]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Folders or files scanned for images and embeddings besides the data and key folders (a log folder, a
    /// backup target).
    pub scan_paths: Option<Vec<PathBuf>>,
    /// Whether the audit also scans where the system keeps what processes threw away (the journal, the
    /// coredump folder, /tmp, /var/tmp, swap). On by default; off only where those hold others' data.
    pub system_places: Option<bool>,
}

/// `models.dir`, or the installed models.
pub(super) fn models_dir(raw: RawModels) -> PathBuf {
    raw.dir.unwrap_or_else(crate::vision::model::default_models_dir)
}

/// `store.database` and `store.master_key`, or the installed ones (two folders: see the package's layout).
pub(super) fn store(raw: RawStore) -> (PathBuf, PathBuf) {
    (
        raw.database.unwrap_or_else(|| PathBuf::from("/var/lib/facegate/facegate.sqlite")),
        raw.master_key.unwrap_or_else(|| PathBuf::from("/var/lib/facegate-keys/master.key")),
    )
}

/// The folder of the master key, where the other secrets default to.
pub(super) fn key_dir(master_key: &Path) -> PathBuf {
    master_key.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
