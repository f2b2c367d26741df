//! `facegate doctor`: one command that checks, in order, what an installer gets wrong, and says what to do
//! for each failure: the config, the models, the camera (numbers only), the GPIO pins, the relay (on request),
//! the keys, the clock, free disk, the broker and the certificates.
//!
//! It reads and probes; it changes nothing but the relay, and that only with `--relay-test` after asking. It
//! never writes or prints a pixel: the camera check reports the frame's size, brightness and sharpness.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::capture::{DecodeLimits, FrameSource, ReplaySource};
use crate::config::{Backend, CaptureConfig, Config, ConfigError, RawConfig};
use crate::protect::keys::{self, Form, RootKind};
use crate::vision::aim::AimView;
use crate::vision::enrol::QualityGate;
use crate::vision::model::{self, ModelSpec};

/// `facegate doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also toggle the relay for one second (asks first: the door opens).
    #[arg(long)]
    pub relay_test: bool,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Works, but needs attention.
    Warn,
    /// Wrong: the gate will not work as installed.
    Fail,
    /// Not applicable here (or not asked for).
    Skip,
}

/// One check: what was looked at, what was found, and what to do.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>, fix: Option<String>) -> Check {
    Check { name, status, detail: detail.into(), fix }
}

/// Runs every check; exit status 0 only when none failed.
pub fn run(config_path: Option<&Path>, models: Option<&Path>, args: &DoctorArgs) -> Result<std::process::ExitCode> {
    let checks = checks(config_path, models, args);
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if args.json {
        println!("{}", serde_json::json!({ "ok": failed == 0, "failed": failed, "checks": checks }));
    } else {
        for c in &checks {
            let status = match c.status {
                Status::Ok => "ok",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            println!("{status:<5} {:<8} {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("{:<14} -> {fix}", "");
            }
        }
        match failed {
            0 => println!("all checks passed"),
            n => println!("{n} check(s) failed: fix them in the order shown, then run `facegate doctor` again"),
        }
    }
    Ok(if failed == 0 { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}

/// Every check, in the order an installer would fix them.
pub fn checks(config_path: Option<&Path>, models: Option<&Path>, args: &DoctorArgs) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(config) = config_check(config_path, models, &mut out) else { return out };
    out.extend(model_checks(&config));
    out.push(camera_check(&config));
    out.push(relay_check(&config, args.relay_test));
    out.extend(key_checks(&config));
    out.push(clock_check());
    out.push(disk_check(&config));
    out.extend(compound_checks(&config));
    out.push(portal_check(&config));
    out
}

/// The config parses and every value is valid; each pin named twice is its own failure.
fn config_check(path: Option<&Path>, models: Option<&Path>, out: &mut Vec<Check>) -> Option<Config> {
    let installed = Path::new(super::INSTALLED_CONFIG);
    let path = path.map(Path::to_path_buf).or_else(|| installed.is_file().then(|| installed.to_path_buf()));
    let raw = match &path {
        Some(path) => RawConfig::read(path),
        None => Ok(RawConfig::default()),
    };
    let shown = path.as_ref().map_or("(built-in defaults)".to_owned(), |p| p.display().to_string());
    let edit = Some(format!("edit {shown}: the message names the key and what it accepts"));
    let (mut config, reused) = match raw.and_then(RawConfig::validate_listing_pin_reuse) {
        Ok(parsed) => parsed,
        Err(e) => {
            out.push(check("config", Status::Fail, e.to_string(), edit));
            return None;
        }
    };
    out.push(check("config", Status::Ok, format!("{shown}: parsed, every value valid"), None));
    if let Some(dir) = models {
        config.models_dir = dir.to_path_buf();
    }
    let pins: Vec<String> = config.hardware.pin_uses().iter().map(|(key, pin)| format!("{key}={pin}")).collect();
    for e in &reused {
        let fix = match e {
            ConfigError::PinReused { key, first, .. } => {
                format!("wire one of {first} and {key} to a free GPIO and set it in {shown}")
            }
            _ => "give each device its own GPIO".to_owned(),
        };
        out.push(check("pins", Status::Fail, e.to_string(), Some(fix)));
    }
    if reused.is_empty() {
        let probed = match config.hardware.backend {
            Backend::Simulated => "simulated backend: not probed".to_owned(),
            Backend::Gpio if Path::new("/dev/gpiochip0").exists() => "GPIO character device present".to_owned(),
            Backend::Gpio => {
                out.push(check(
                    "pins",
                    Status::Fail,
                    "no /dev/gpiochip0: this is not a Raspberry Pi, or the GPIO driver is off",
                    Some("run on the Pi, or set hardware.backend = \"simulated\" for a bench".into()),
                ));
                return Some(config);
            }
        };
        out.push(check("pins", Status::Ok, format!("each used once ({}); {probed}", pins.join(", ")), None));
    }
    Some(config)
}

fn model_checks(config: &Config) -> Vec<Check> {
    let mut specs: Vec<ModelSpec> = vec![model::YUNET, model::SFACE];
    if config.gate.live_threshold.is_some() {
        specs.extend([crate::vision::liveness::MINIFAS_V2, crate::vision::liveness::MINIFAS_V1SE]);
    }
    specs
        .into_iter()
        .map(|spec| match model::read_verified(&config.models_dir, spec) {
            Ok(bytes) => {
                check("models", Status::Ok, format!("{}: sha256 right ({} bytes)", spec.file_name, bytes.len()), None)
            }
            Err(e) => check(
                "models",
                Status::Fail,
                format!("{e:#}"),
                Some(format!(
                    "run `{}` (it fetches and verifies the files), or pass --models DIR",
                    model::FETCH_COMMAND
                )),
            ),
        })
        .collect()
}

/// Opens the camera (or the replay folder), reads a few frames, and reports size, rate, brightness and
/// sharpness: numbers only.
fn camera_check(config: &Config) -> Check {
    let opened: Result<Box<dyn FrameSource>, String> = match &config.capture {
        CaptureConfig::Replay { dir } => ReplaySource::open(dir, DecodeLimits::default())
            .map(|s| Box::new(s) as Box<dyn FrameSource>)
            .map_err(|e| e.to_string()),
        CaptureConfig::Camera { index } => crate::capture::open_camera(*index, config.fps()).map_err(|e| e.to_string()),
    };
    let fix_open =
        || Some("check the camera's cable and `capture` in the config (`v4l2-ctl --list-devices`)".to_owned());
    let mut source = match opened {
        Ok(source) => source,
        Err(e) => return check("camera", Status::Fail, e, fix_open()),
    };
    let started = Instant::now();
    let mut frames = Vec::new();
    for _ in 0..5 {
        match source.next_frame() {
            Ok(frame) => frames.push(frame),
            Err(e) => return check("camera", Status::Fail, format!("opened, but no frame: {e}"), fix_open()),
        }
    }
    let rate = match &config.capture {
        CaptureConfig::Replay { .. } => format!("replay at {} frames/s", config.fps()),
        CaptureConfig::Camera { .. } => format!("{:.1} frames/s", 4.0 / started.elapsed().as_secs_f64().max(1e-3)),
    };
    let Some(frame) = frames.last() else { return check("camera", Status::Fail, "no frame", fix_open()) };
    let view = AimView::of(frame, None, &QualityGate::default());
    let detail = format!(
        "{}x{}, {rate}, brightness {:.0}/255, sharpness {:.0}",
        frame.width(),
        frame.height(),
        view.brightness,
        view.sharpness
    );
    let (status, fix) = match view.scene_issue() {
        Some(issue) => (Status::Warn, Some(issue.fix().to_owned())),
        None => (Status::Ok, None),
    };
    check("camera", status, detail, fix)
}

/// With `--relay-test`, asks and then opens the door for one second.
fn relay_check(config: &Config, asked: bool) -> Check {
    if !asked {
        return check("relay", Status::Skip, "not toggled (add --relay-test to open the door for 1 s)", None);
    }
    eprint!("toggle the relay on GPIO {}? the door opens for 1 s [y/N] ", config.hardware.relay_bcm);
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if !answer.trim().eq_ignore_ascii_case("y") {
        return check("relay", Status::Skip, "not toggled (declined)", None);
    }
    let hw = &config.hardware;
    let relay: Result<Box<dyn crate::devices::Relay>, String> = match hw.backend {
        Backend::Gpio => crate::devices::GpioRelay::open(hw.relay_bcm.get(), hw.relay_active_high)
            .map(|r| Box::new(r) as Box<dyn crate::devices::Relay>)
            .map_err(|e| e.to_string()),
        Backend::Simulated => Ok(Box::new(crate::devices::SimulatedRelay::new(crate::devices::RelayLog::default()))),
    };
    let fix = || Some(format!("check the relay's wiring to GPIO {} and hardware.relay_active_high", hw.relay_bcm));
    let mut relay = match relay {
        Ok(relay) => relay,
        Err(e) => return check("relay", Status::Fail, e, fix()),
    };
    let toggled = relay.set_unlocked(true).and_then(|()| {
        std::thread::sleep(Duration::from_secs(1));
        relay.set_unlocked(false)
    });
    match toggled {
        Ok(()) if !relay.is_unlocked() => {
            check("relay", Status::Ok, format!("toggled: {}; locked again", relay.describe()), None)
        }
        Ok(()) => check("relay", Status::Fail, "it reports unlocked after the test", fix()),
        Err(e) => check("relay", Status::Fail, e.to_string(), fix()),
    }
}

fn mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o777)
}

/// The root, every key file's form and mode, the key folder's mode, and keys apart from the data.
fn key_checks(config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let root = &config.keys;
    let key_dir = config.master_key.parent().unwrap_or(Path::new(".")).to_path_buf();
    match root.kind {
        RootKind::File => out.push(check(
            "keys",
            Status::Warn,
            format!("root: {}", root.describe()),
            Some(
                "set [keys] root = \"tpm\" (or \"pi-otp\") and run `facegate keys migrate` (hardware/README.md)".into(),
            ),
        )),
        _ => out.push(check("keys", Status::Ok, format!("root: {}", root.describe()), None)),
    }
    if let Some(m) = mode(&key_dir).filter(|m| m & 0o077 != 0) {
        out.push(check(
            "keys",
            Status::Fail,
            format!("{} is mode {m:o}: others may list the keys", key_dir.display()),
            Some(format!("chmod 700 {}", key_dir.display())),
        ));
    }
    for entry in keys::inventory(&key_dir) {
        if let Some(m) = mode(&entry.path).filter(|m| m & 0o077 != 0) {
            out.push(check(
                "keys",
                Status::Fail,
                format!("{} is mode {m:o}: group or others may read a key", entry.path.display()),
                Some(format!("chmod 600 {} (and check who copied it)", entry.path.display())),
            ));
        }
        if entry.form == Form::Clear && root.kind != RootKind::File {
            out.push(check(
                "keys",
                Status::Fail,
                format!("{} is in clear under the {:?} root", entry.path.display(), root.kind),
                Some("run `facegate keys migrate`".into()),
            ));
        }
    }
    match keys::ensure_apart(&config.master_key, &config.database) {
        Ok(()) => {
            out.push(check("keys", Status::Ok, format!("key folder {} apart from the data", key_dir.display()), None))
        }
        Err(e) => {
            out.push(check("keys", Status::Fail, e.to_string(), Some("move the key folder off the data folder".into())))
        }
    }
    out
}

/// Whether the system clock is synchronised (passes, counts and certificates depend on it).
fn clock_check() -> Check {
    if Path::new("/run/systemd/timesync/synchronized").exists() {
        return check("clock", Status::Ok, "synchronised (systemd-timesyncd)", None);
    }
    let asked = std::process::Command::new("timedatectl").args(["show", "-p", "NTPSynchronized", "--value"]).output();
    let fix = Some("enable time synchronisation: `sudo timedatectl set-ntp true` (systemd-timesyncd)".to_owned());
    match asked {
        Ok(out) if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "yes" => {
            check("clock", Status::Ok, "synchronised", None)
        }
        Ok(out) if out.status.success() => check("clock", Status::Warn, "not synchronised", fix),
        _ => check("clock", Status::Warn, "cannot tell whether the clock is synchronised (no timedatectl answer)", fix),
    }
}

/// Free space where the database lives.
fn disk_check(config: &Config) -> Check {
    let dir = config.database.parent().filter(|d| d.exists()).unwrap_or(Path::new("/"));
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let free = s.blocks_available().saturating_mul(s.fragment_size());
            let mib = free / (1 << 20);
            let detail = format!("{mib} MiB free at {}", dir.display());
            let fix = Some("free space on the card (old logs: `journalctl --vacuum-size=100M`)".to_owned());
            match mib {
                0..100 => check("disk", Status::Fail, detail, fix),
                100..1024 => check("disk", Status::Warn, detail, fix),
                _ => check("disk", Status::Ok, detail, None),
            }
        }
        Err(e) => check("disk", Status::Warn, format!("cannot read free space at {}: {e}", dir.display()), None),
    }
}

/// Days until a PEM certificate expires.
fn days_left(cert: &Path) -> Result<i64, String> {
    let pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| format!("{}: {e}", cert.display()))?;
    let cert_parsed = pem.parse_x509().map_err(|e| format!("{}: {e}", cert.display()))?;
    let not_after = cert_parsed.validity().not_after.timestamp();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    Ok((not_after - now) / 86_400)
}

fn certificate(name: &'static str, what: &str, cert: &Path, renew: &str) -> Check {
    match days_left(cert) {
        Ok(days) if days < 0 => {
            check(name, Status::Fail, format!("{what} expired {} day(s) ago", -days), Some(renew.into()))
        }
        Ok(days) if days < 30 => {
            check(name, Status::Warn, format!("{what} expires in {days} day(s)"), Some(renew.into()))
        }
        Ok(days) => check(name, Status::Ok, format!("{what} valid for {days} more day(s)"), None),
        Err(e) => check(name, Status::Fail, e, Some(renew.into())),
    }
}

/// The broker reachable with this gate's certificate, and that certificate's validity.
fn compound_checks(config: &Config) -> Vec<Check> {
    let Some(compound) = &config.compound else {
        return vec![check("broker", Status::Skip, "not in a compound", None)];
    };
    let link = &compound.link;
    let reissue = "issue it again: `facegate compound add-gate` in the compound folder, copied to this gate";
    let mut out = vec![certificate("broker", "this gate's certificate", &link.cert, reissue)];
    let wrap = crate::cli::residents::key_wrap(config, &config.master_key);
    let reached = wrap.map_err(|e| e.to_string()).and_then(|wrap| {
        let tls = crate::compound::certs::client_tls(link, &wrap).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let client = async_nats::ConnectOptions::new()
                .tls_client_config(tls)
                .require_tls(true)
                .connection_timeout(Duration::from_secs(3))
                .connect(link.broker.as_str())
                .await
                .map_err(|e| e.to_string())?;
            tokio::time::timeout(Duration::from_secs(3), client.flush())
                .await
                .map_err(|_| "no answer".to_owned())?
                .map_err(|e| e.to_string())
        })
    });
    out.push(match reached {
        Ok(()) => check("broker", Status::Ok, format!("{} answers this gate's certificate", link.broker), None),
        Err(e) => check(
            "broker",
            Status::Fail,
            format!("{}: {e}", link.broker),
            Some("check [compound] broker, the network, and that nats-server runs (deploy/broker/README.md)".into()),
        ),
    });
    out
}

fn portal_check(config: &Config) -> Check {
    if !config.portal.enabled {
        return check("portal", Status::Skip, "portal off", None);
    }
    let cert: PathBuf = config.portal.cert.clone();
    if !cert.exists() {
        return check("portal", Status::Ok, "its certificate is made at the first start", None);
    }
    certificate("portal", "the portal's certificate", &cert, "run `facegate keys rotate --portal-cert`")
}
