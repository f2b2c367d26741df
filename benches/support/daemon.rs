//! What the benches that run the release daemon share.

use std::path::PathBuf;

/// The `Environment=` settings of the systemd unit, so the daemon is measured as deployed.
pub fn unit_environment() -> Vec<(String, String)> {
    let unit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/facegate.service");
    let unit = std::fs::read_to_string(unit).expect("deploy/facegate.service");
    unit.lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}
