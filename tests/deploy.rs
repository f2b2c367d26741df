//! Deployment artefacts checked for real: the example config parses and validates, the systemd unit's
//! sandbox scores an exposure of at most 2.0 in `systemd-analyze security --offline=true`, the install and
//! maintainer scripts parse, and the Debian package metadata ships the binary, the unit and the config.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn the_example_config_is_valid() {
    let config = facegate::config::RawConfig::read(&repo("deploy/facegate.toml")).unwrap().validate().unwrap();
    assert_eq!(config.hardware.backend, facegate::config::Backend::Gpio);
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

/// The scripts that install, package and purge; none of them runs in the tests (they need root).
const SCRIPTS: [&str; 6] = [
    "deploy/install.sh",
    "deploy/build-deb.sh",
    "deploy/setup-system.sh",
    "deploy/debian/postinst",
    "deploy/debian/prerm",
    "deploy/debian/postrm",
];

#[test]
fn the_install_and_maintainer_scripts_parse() {
    for script in SCRIPTS {
        let text = std::fs::read_to_string(repo(script)).unwrap();
        // dpkg runs the #!/bin/sh ones with dash: check them with sh as well as bash.
        let shells: &[&str] = if text.starts_with("#!/bin/sh") { &["bash", "sh"] } else { &["bash"] };
        for shell in shells {
            let out = Command::new(shell).arg("-n").arg(repo(script)).output().unwrap();
            assert!(out.status.success(), "{shell} -n {script}: {}", String::from_utf8_lossy(&out.stderr));
        }
        if script.starts_with("deploy/debian/") {
            // cargo-deb puts the systemd enable/stop fragments there; without it the unit is never handled.
            assert!(text.contains("#DEBHELPER#"), "{script} lacks the #DEBHELPER# token");
        }
    }
    // setup-system creates the groups the unit asks for; one it misses would stop the unit at start.
    let unit = std::fs::read_to_string(repo("deploy/facegate.service")).unwrap();
    let unit_groups: Vec<&str> =
        unit.lines().filter_map(|l| l.strip_prefix("SupplementaryGroups=")).flat_map(str::split_whitespace).collect();
    let setup = std::fs::read_to_string(repo("deploy/setup-system.sh")).unwrap();
    let created: Vec<&str> = setup
        .lines()
        .find_map(|l| l.strip_prefix("DEVICE_GROUPS="))
        .expect("DEVICE_GROUPS= in setup-system.sh")
        .trim_matches('"')
        .split_whitespace()
        .collect();
    assert_eq!(created, unit_groups, "setup-system.sh DEVICE_GROUPS vs the unit's SupplementaryGroups=");

    let postrm = std::fs::read_to_string(repo("deploy/debian/postrm")).unwrap();
    let key = postrm.find(r#"destroy "$KEY_DIR""#).expect("postrm destroys the key folder");
    let data = postrm.find(r#"destroy "$DATA_DIR""#).expect("postrm destroys the database folder");
    assert!(key < data, "purge must destroy the master key before the database");
}

#[test]
fn the_debian_package_ships_the_binary_the_unit_and_the_config() {
    let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(repo("Cargo.toml")).unwrap()).unwrap();
    let deb = manifest
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("deb"))
        .expect("[package.metadata.deb] in Cargo.toml");
    let assets: Vec<(&str, &str)> =
        deb["assets"].as_array().unwrap().iter().map(|a| (a[0].as_str().unwrap(), a[1].as_str().unwrap())).collect();
    let ships = |src: &str, dest: &str| assets.contains(&(src, dest));
    assert!(ships("target/release/facegate", "usr/bin/"), "{assets:?}");
    assert!(ships("deploy/facegate.toml", "etc/facegate/facegate.toml"), "{assets:?}");
    let conf_files = deb["conf-files"].as_array().unwrap();
    assert!(conf_files.iter().any(|c| c.as_str() == Some("/etc/facegate/facegate.toml")), "not a conffile");

    // cargo-deb finds the unit as <unit-scripts>/<unit-name>.service: the very file the exposure test scores.
    let units = &deb["systemd-units"];
    let unit = format!("{}{}.service", units["unit-scripts"].as_str().unwrap(), units["unit-name"].as_str().unwrap());
    assert_eq!(repo(&unit), repo("deploy/facegate.service"));
    assert_eq!(units["enable"].as_bool(), Some(true));
    assert_eq!(units["start"].as_bool(), Some(false), "the gate must not start before it is wired and configured");
    let scripts = deb["maintainer-scripts"].as_str().unwrap();
    for name in ["postinst", "prerm", "postrm"] {
        assert!(repo(scripts).join(name).is_file(), "{scripts}{name}");
    }

    // The example config must find the models where the package puts them.
    let config: toml::Table = toml::from_str(&std::fs::read_to_string(repo("deploy/facegate.toml")).unwrap()).unwrap();
    let models_dir = config["models"]["dir"].as_str().unwrap().trim_start_matches('/');
    for model in [facegate::vision::model::YUNET, facegate::vision::model::SFACE] {
        assert!(
            ships(&format!("models/{}", model.file_name), &format!("{models_dir}/")),
            "{} not shipped",
            model.file_name
        );
    }
    // Every committed asset exists (a rename would otherwise only fail at `cargo deb`); the build output and
    // the fetched models are not committed.
    for (src, _) in &assets {
        let fetched = src.starts_with("target/") || (src.starts_with("models/") && *src != "models/README.md");
        assert!(fetched || repo(src).is_file(), "asset {src} is missing");
    }
}
