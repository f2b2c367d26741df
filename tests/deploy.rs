//! Deployment artefacts checked for real: the example config parses and validates, and the systemd unit's
//! sandbox scores an exposure of at most 2.0 in `systemd-analyze security --offline=true`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn the_example_config_is_valid() {
    let config = facegate::config::RawConfig::read(&repo("deploy/facegate.toml")).unwrap().validate().unwrap();
    assert!(config.hardware.gpio);
    assert_ne!(config.database.parent(), config.master_key.parent(), "key beside the data");
}

#[test]
fn the_systemd_unit_exposure_is_at_most_2() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(repo("deploy/facegate.service"))
        .output()
        .expect("systemd-analyze is missing: install Debian's systemd (CI runs deploy/dev-setup.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{text}"));
    let score: f32 = line.split(':').nth(1).and_then(|s| s.split_whitespace().next()).unwrap().parse().unwrap();
    eprintln!("{}", line.trim());
    assert!(score <= 2.0, "{line}");
}
