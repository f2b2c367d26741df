//! The resident administration commands: consent, enroll, revoke, residents, pin, move-out, expire.
//!
//! Each opens the registry (database + master key), does one thing, and prints ids, statuses and receipts.
//! Never prints an embedding, a template, a key or a PIN.

use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::capture::{decode_file, DecodeLimits, Frame};
use crate::config::{CaptureConfig, Config};
use crate::policy::consent::ConsentRecord;
use crate::protect::keys::KeyWrap;
use crate::protect::Pin;
use crate::registry::{MasterKeySource, Registry};
use crate::store::{unix_now, OutboxKind, ResidentSummary, RevocationReceipt};
use crate::vision::enrol::{EnrolmentSession, FrameVerdict, QualityGate};
use crate::vision::liveness::LivenessModel;
use crate::vision::pipeline::FacePipeline;

/// The environment variable that, when set, holds the master passphrase (instead of a key file).
pub const PASSPHRASE_ENV: &str = "FACEGATE_MASTER_PASSPHRASE";

/// Where the database and the master key are.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The database (default: `store.database` in the config, /var/lib/facegate/facegate.sqlite).
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// The master key file (default: `store.master_key`, /var/lib/facegate-keys/master.key); created on first use,
    /// sealed under FACEGATE_MASTER_PASSPHRASE when that is set.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A command about one resident.
#[derive(Debug, Args)]
pub struct ResidentArgs {
    /// Database and key.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The resident's pseudonymous id.
    #[arg(long)]
    pub resident: String,
}

/// `facegate revoke`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["resident", "unit"])))]
pub struct RevokeArgs {
    /// Database and key.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The resident's pseudonymous id.
    #[arg(long)]
    pub resident: Option<String>,
    /// The resident's unit (when the household lost its revocation code or its id): revoked when exactly one
    /// resident of the unit can withdraw; otherwise they are listed, to name one with --resident.
    #[arg(long)]
    pub unit: Option<String>,
}

/// `facegate pin`
#[derive(Debug, Args)]
pub struct PinArgs {
    /// Database and key.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The resident's pseudonymous id.
    #[arg(long)]
    pub resident: String,
    /// The keypad code typed before the PIN (6-8 digits, unique per resident). Leave it out to get a random
    /// one, which is better: a code anyone can guess (a unit number) halves what stands between a guesser and
    /// the door.
    #[arg(long)]
    pub code: Option<String>,
}

/// `facegate residents`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Database and key.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `facegate consent`
#[derive(Debug, Args)]
pub struct ConsentArgs {
    /// Database and key.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The resident's pseudonymous id (default: a fresh random one, printed).
    #[arg(long)]
    pub resident: Option<String>,
    /// Unit label (e.g. "3-401"), for a new resident.
    #[arg(long)]
    pub unit: Option<String>,
    /// The exact face-entry notice the resident was shown (its sha256 is recorded).
    #[arg(long, value_name = "FILE")]
    pub notice: PathBuf,
    /// The notice's version label.
    #[arg(long)]
    pub notice_version: String,
    /// How consent was given.
    #[arg(long, default_value = "kiosk")]
    pub channel: String,
    /// The purpose consented to.
    #[arg(long, default_value = "opening the compound gate by face")]
    pub purpose: String,
}

/// `facegate enroll`
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// Database and key.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The resident's pseudonymous id (their separate consent must be recorded first).
    #[arg(long)]
    pub resident: String,
    /// Good frames to average (default: `enrolment.frames`, 3).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Capture from this camera (default: the configured camera) instead of photos.
    #[arg(long, value_name = "INDEX", num_args = 0..=1, default_missing_value = "-1", allow_negative_numbers = true)]
    pub camera: Option<i64>,
    /// Give up on the camera after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Photos of the resident (read in memory, never copied). Each must pass the same quality and liveness
    /// checks as a camera frame; the first good ones are used, so give a few spare.
    pub images: Vec<PathBuf>,
}

fn date(t: i64) -> String {
    crate::policy::rfc3339(t).chars().take(10).collect()
}

/// Root would create (or rotate) files the daemon's own user cannot read: the gate would then fail at its
/// next start. When the database folder belongs to another user, commands must run as that user.
pub(super) fn refuse_root_on_service_store(db: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let folder = db.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if let Ok(meta) = std::fs::metadata(folder) {
        if meta.uid() != 0 {
            let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
                .ok()
                .flatten()
                .map_or_else(|| meta.uid().to_string(), |u| u.name);
            bail!(
                "{} belongs to {owner}; run this as that user (e.g. `sudo -u {owner} facegate ...`), so the daemon can still read what is written",
                folder.display()
            );
        }
    }
    Ok(())
}

/// The device's key wrap: the configured root opened over the key folder of `key_file` (with the passphrase
/// from the environment for the `passphrase` root).
pub(super) fn key_wrap(config: &Config, key_file: &std::path::Path) -> Result<KeyWrap> {
    let passphrase = std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty()).map(Zeroizing::new);
    let key_dir = key_file.parent().map_or_else(|| std::path::PathBuf::from("."), std::path::Path::to_path_buf);
    config
        .keys
        .open(&key_dir, passphrase)
        .with_context(|| format!("opening the key root ({})", config.keys.kind.name()))
}

/// Only `consent`, `pass issue` and the daemon (`run`) may create the database and the master key; the other
/// commands need an existing one, so a mistyped path is an error rather than a fresh empty store.
pub(super) fn open_registry(config: &Config, args: &StoreArgs, may_create: bool) -> Result<Registry> {
    let db = args.db.clone().unwrap_or_else(|| config.database.clone());
    refuse_root_on_service_store(&db)?;
    if !may_create && !db.exists() {
        bail!(
            "no resident database at {}: the first `facegate consent` creates it (or point --db / store.database at it)",
            db.display()
        );
    }
    let file = args.key_file.clone().unwrap_or_else(|| config.master_key.clone());
    let key = MasterKeySource { wrap: key_wrap(config, &file)?, file };
    let mut registry = Registry::open(&db, &key, config.registry, unix_now())
        .with_context(|| format!("opening the resident registry {}", db.display()))?;
    // In a compound, every local enrolment and revocation is queued for the other gates in its own
    // transaction; the daemon's link sends it.
    registry.set_replicated(config.compound.is_some());
    for failure in registry.load_failures() {
        eprintln!("warning: {failure}");
    }
    Ok(registry)
}

/// `facegate consent`
pub fn consent(config: &Config, args: &ConsentArgs) -> Result<std::process::ExitCode> {
    let mut notice = Vec::new();
    std::fs::File::open(&args.notice)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut notice))
        .with_context(|| format!("reading the notice {}", args.notice.display()))?;
    if notice.is_empty() {
        bail!("the notice {} is empty; record consent against the exact text shown", args.notice.display());
    }
    let resident = args.resident.clone().unwrap_or_else(|| {
        use rand::Rng;
        let bytes: [u8; 5] = rand::rng().random();
        format!("r-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    });
    let at = unix_now();
    let record = ConsentRecord {
        notice_version: args.notice_version.clone(),
        notice_sha256: format!("{:x}", Sha256::digest(&notice)),
        purpose: args.purpose.clone(),
        channel: args.channel.clone(),
        granted_at: at,
    };
    let mut registry = open_registry(config, &args.store, true)?;
    registry.record_consent(&resident, args.unit.as_deref(), &record, at)?;
    if args.store.json {
        println!(
            "{}",
            json!({"resident": resident, "notice_version": record.notice_version,
                   "notice_sha256": record.notice_sha256, "purpose": record.purpose,
                   "channel": record.channel, "granted_at": at})
        );
    } else {
        println!(
            "consent recorded: resident {resident}, notice {} (sha256 {}), purpose {:?}, via {}",
            record.notice_version,
            &record.notice_sha256[..16],
            record.purpose,
            record.channel
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `facegate enroll`
pub fn enroll(config: &Config, args: &EnrollArgs) -> Result<std::process::ExitCode> {
    let mut registry = open_registry(config, &args.store, false)?;
    // Check consent before loading any model or touching a face.
    if !registry.store().has_live_consent(&args.resident)? {
        bail!(crate::registry::RegistryError::NoConsent(args.resident.clone()));
    }
    let pipeline = super::load_pipeline(config)?;
    let liveness = LivenessModel::load(&config.models_dir).with_context(|| {
        format!(
            "enrolment needs the liveness models (so that nobody is enrolled from a photo); install them in {}/pad",
            config.models_dir.display()
        )
    })?;
    let needed = args.frames.unwrap_or(config.enrol_frames).clamp(1, 20);
    let mut session = EnrolmentSession::new(needed, QualityGate::default(), config.live_threshold());
    if args.images.is_empty() {
        let index = match (args.camera, &config.capture) {
            (Some(i), _) if i >= 0 => u32::try_from(i).unwrap_or(0),
            (_, CaptureConfig::Camera { index }) => *index,
            _ => bail!("give photos of the resident, or --camera [INDEX] to capture live"),
        };
        let mut camera = crate::capture::open_camera(index, config.fps())?;
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        println!("look at the camera ({})", camera.describe());
        while !session.is_complete() {
            if Instant::now() > deadline {
                bail!(
                    "no {needed} good frames within {} s; try again in better light, facing the camera",
                    args.timeout
                );
            }
            let frame = camera.next_frame()?;
            offer(&pipeline, &liveness, &mut session, &frame, "frame");
        }
    } else {
        for path in &args.images {
            if session.is_complete() {
                break;
            }
            match decode_file(path, DecodeLimits::default()) {
                Ok(frame) => offer(&pipeline, &liveness, &mut session, &frame, &path.display().to_string()),
                Err(e) => eprintln!("{}: {e}", path.display()),
            }
        }
    }
    let Some(embedding) = session.finish() else {
        bail!(
            "fewer than {needed} good, live photos of one face; nothing was stored. Add sharper, frontal photos \
             taken of the resident in person (a photo of a photo or of a screen is refused)"
        );
    };
    let receipt = registry.enrol(&args.resident, &embedding, unix_now())?;
    drop(embedding);
    if args.store.json {
        println!(
            "{}",
            json!({"resident": receipt.resident_id, "template_version": receipt.version,
                   "matchable_residents": registry.gallery_len()})
        );
    } else {
        println!(
            "enrolled {}: cancelable template v{} sealed; {} resident(s) matchable",
            receipt.resident_id,
            receipt.version,
            registry.gallery_len()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn offer(
    pipeline: &FacePipeline,
    liveness: &LivenessModel,
    session: &mut EnrolmentSession,
    frame: &Frame,
    label: &str,
) {
    match session.offer_frame(pipeline, liveness, frame) {
        Ok(FrameVerdict::Accepted(n)) => eprintln!("{label}: good ({n})"),
        Ok(FrameVerdict::Rejected(issue)) => eprintln!("{label}: not used: {issue}"),
        Ok(FrameVerdict::Inconsistent) => eprintln!("{label}: a different face from the earlier frames; starting over"),
        Err(e) => eprintln!("{label}: {e}"),
    }
}

fn print_receipt(receipt: &RevocationReceipt, announced: Option<bool>, as_json: bool) {
    let compound = announced.map(|done| if done { "announced" } else { "queued" });
    if as_json {
        println!(
            "{}",
            json!({"resident": receipt.resident_id, "revoked_at": receipt.revoked_at,
                   "deleted": receipt.deleted, "verification_code": receipt.verification_code,
                   "compound": compound})
        );
    } else {
        println!("receipt for resident {} ({}):", receipt.resident_id, date(receipt.revoked_at));
        for item in &receipt.deleted {
            println!("  deleted: {item}");
        }
        println!("  verification code: {}", receipt.verification_code);
        match announced {
            Some(true) => {
                println!("  every gate of the compound was told to shred it (the broker holds the tombstone)")
            }
            Some(false) => println!(
                "  the other gates will be told as soon as the broker is reachable (queued); until then they stop \
                 matching faces once past their offline limit"
            ),
            None => {}
        }
    }
}

/// `facegate revoke`
pub fn revoke(config: &Config, args: &RevokeArgs) -> Result<std::process::ExitCode> {
    let mut registry = open_registry(config, &args.store, false)?;
    let resident = match (&args.resident, &args.unit) {
        (Some(id), _) => id.clone(),
        (None, Some(unit)) => {
            // Whoever can still withdraw: a live consent, a template or a PIN.
            let found: Vec<ResidentSummary> = registry
                .store()
                .residents()?
                .into_iter()
                .filter(|r| r.unit_label.as_deref() == Some(unit.as_str()) && r.moved_out_at.is_none())
                .filter(|r| r.consent_granted_at.is_some() || r.template_version.is_some() || r.has_pin)
                .collect();
            match found.as_slice() {
                [] => {
                    bail!("nobody in unit {unit} can withdraw (no consent, template or PIN); see `facegate residents`")
                }
                [one] => one.id.clone(),
                several => {
                    for r in several {
                        println!("{}", summary_json(r));
                    }
                    bail!("{} residents of unit {unit} can withdraw: name one with --resident", several.len());
                }
            }
        }
        (None, None) => bail!("name the resident (--resident) or the unit (--unit)"),
    };
    let receipt = registry.revoke(&resident, unix_now())?;
    let announced = config.compound.as_ref().map(|_| wait_until_announced(&registry, &resident));
    print_receipt(&receipt, announced, args.store.json);
    Ok(std::process::ExitCode::SUCCESS)
}

/// In a compound, the daemon's link sends the tombstone queued with the revocation; the receipt says whether
/// the broker has it (every gate then shreds) or it is still queued (the broker is unreachable: it is sent
/// when it is back, and gates stop matching faces once past their offline limit).
fn wait_until_announced(registry: &Registry, resident: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let pending = registry
            .store()
            .outbox(10_000)
            .map(|entries| entries.iter().any(|e| e.resident_id == resident && e.kind != OutboxKind::Template))
            .unwrap_or(true);
        if !pending {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `facegate move-out`
pub fn move_out(config: &Config, args: &ResidentArgs) -> Result<std::process::ExitCode> {
    let mut registry = open_registry(config, &args.store, false)?;
    let receipt = registry.move_out(&args.resident, unix_now())?;
    let announced = config.compound.as_ref().map(|_| wait_until_announced(&registry, &args.resident));
    print_receipt(&receipt, announced, args.store.json);
    Ok(std::process::ExitCode::SUCCESS)
}

/// `facegate expire`
pub fn expire(config: &Config, args: &StoreArgs) -> Result<std::process::ExitCode> {
    let mut registry = open_registry(config, args, false)?;
    let receipts = registry.expire(unix_now())?;
    if !args.json {
        println!("{} template(s) expired", receipts.len());
    }
    for receipt in &receipts {
        // Retention is counted per device: an expiry here is not announced to the compound.
        print_receipt(receipt, None, args.json);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `facegate residents`
pub fn list(config: &Config, args: &ListArgs) -> Result<std::process::ExitCode> {
    let registry = open_registry(config, &args.store, false)?;
    let residents = registry.store().residents()?;
    if args.store.json {
        for r in &residents {
            println!("{}", summary_json(r));
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    println!("{:<24} {:<10} {:<22} {:<20} {:<4}", "resident", "unit", "consent", "face template", "pin");
    for r in &residents {
        let consent = match (r.consent_granted_at, r.consent_revoked_at, r.moved_out_at) {
            (_, _, Some(at)) => format!("moved out {}", date(at)),
            (Some(at), _, _) => format!("live since {}", date(at)),
            (None, Some(at), _) => format!("withdrawn {}", date(at)),
            (None, None, None) => "none".to_owned(),
        };
        let face = match (r.template_version, r.enrolled_at) {
            (Some(v), Some(at)) => format!("v{v} since {}", date(at)),
            _ => "-".to_owned(),
        };
        println!(
            "{:<24} {:<10} {:<22} {:<20} {:<4}",
            r.id,
            r.unit_label.as_deref().unwrap_or("-"),
            consent,
            face,
            if r.has_pin { "yes" } else { "no" }
        );
    }
    println!("{} resident(s), {} matchable by face", residents.len(), registry.gallery_len());
    Ok(std::process::ExitCode::SUCCESS)
}

fn summary_json(r: &ResidentSummary) -> serde_json::Value {
    json!({
        "resident": r.id,
        "unit": r.unit_label,
        "consent": if r.consent_granted_at.is_some() { "live" } else if r.consent_revoked_at.is_some() { "withdrawn" } else { "none" },
        "consent_granted_at": r.consent_granted_at,
        "consent_revoked_at": r.consent_revoked_at,
        "template_version": r.template_version,
        "enrolled_at": r.enrolled_at,
        "has_pin": r.has_pin,
        "moved_out_at": r.moved_out_at,
    })
}

/// `facegate pin`: reads the PIN without echo from a terminal, or one line from a pipe.
pub fn pin(config: &Config, args: &PinArgs) -> Result<std::process::ExitCode> {
    let typed = Zeroizing::new(if std::io::stdin().is_terminal() {
        rpassword::prompt_password("new PIN (4-8 digits): ").context("reading the PIN")?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().take(64).read_line(&mut line).context("reading the PIN from standard input")?;
        line
    });
    let pin = Pin::parse(&typed)?;
    let mut registry = open_registry(config, &args.store, false)?;
    let code = registry.set_pin(&args.resident, args.code.as_deref(), &pin, unix_now())?;
    println!("PIN set for resident {} (keypad: {code} # PIN #)", args.resident);
    Ok(std::process::ExitCode::SUCCESS)
}
