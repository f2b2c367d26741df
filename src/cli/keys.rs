//! `facegate keys status|migrate|rotate`: which root holds which secret, moving a device onto a hardware
//! root, and renewing each secret.
//!
//! Prints paths, roots and fingerprints; never a key byte.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use super::residents::{key_wrap, open_registry, StoreArgs, PASSPHRASE_ENV};
use crate::audit::sign::{fingerprint, AuditSigner};
use crate::config::Config;
use crate::protect::keys::{self, Form, KeyWrap, MasterKeyFile, RootKind};
use crate::store::unix_now;

/// `facegate keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Which root holds the key-encryption key, and how each secret is kept.
    Status(StatusArgs),
    /// Seals every key file still in clear (or under a passphrase) under the configured hardware root, and
    /// destroys the old copies. Stop the daemon first; set `[keys] root` before.
    Migrate(StoreArgs),
    /// Renews one secret.
    Rotate(RotateArgs),
}

/// `facegate keys status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The master key file (default: `store.master_key`).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `facegate keys rotate`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("secret").required(true).multiple(false)))]
pub struct RotateArgs {
    /// The visitor-pass key: every pass issued before stops opening the gate.
    #[arg(long, group = "secret")]
    pub pass_key: bool,
    /// The audit signing key: give auditors the new fingerprint.
    #[arg(long, group = "secret")]
    pub audit_key: bool,
    /// The portal's self-signed certificate and key: update the signage, restart the daemon.
    #[arg(long, group = "secret")]
    pub portal_cert: bool,
    /// The master key and the transform (as every revocation does).
    #[arg(long, group = "secret")]
    pub master: bool,
    /// Database and key.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Runs `facegate keys ...`.
pub fn keys(config: &Config, command: &KeysCommand) -> Result<std::process::ExitCode> {
    match command {
        KeysCommand::Status(args) => status(config, args),
        KeysCommand::Migrate(args) => migrate(config, args),
        KeysCommand::Rotate(args) => rotate(config, args),
    }
}

fn key_dir_of(file: &Path) -> PathBuf {
    file.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The secrets kept in the database, each wrapped under the master key.
const IN_DATABASE: [(&str, &str); 5] = [
    ("templates", "sealed per resident under data keys"),
    ("data keys", "wrapped under the master key"),
    ("transform key", "wrapped under the master key"),
    ("PIN pepper, visitor-pass key, count-noise key", "wrapped under the master key"),
    ("PIN verifiers", "argon2id, peppered"),
];

fn status(config: &Config, args: &StatusArgs) -> Result<std::process::ExitCode> {
    let key_file = args.key_file.clone().unwrap_or_else(|| config.master_key.clone());
    let key_dir = key_dir_of(&key_file);
    let root = &config.keys;
    let files = keys::inventory(&key_dir);
    // Opening the root proves it still gives the key back (another board, changed PCRs: said here).
    let opens = key_wrap(config, &key_file).and_then(|wrap| {
        for entry in files.iter().filter(|e| e.form != Form::Clear || wrap.kind() == RootKind::File) {
            keys::read_secret(&entry.path, &wrap).with_context(|| entry.path.display().to_string())?;
        }
        Ok(())
    });
    if args.json {
        let out = json!({
            "root": root.kind.name(),
            "root_holder": root.describe(),
            "keys_on_card": root.kind.keys_on_card() || files.iter().any(|e| e.form == Form::Clear),
            "opens": opens.is_ok(),
            "error": opens.as_ref().err().map(|e| format!("{e:#}")),
            "files": files.iter().map(|e| json!({"path": e.path, "form": e.form.describe()})).collect::<Vec<_>>(),
            "in_database": IN_DATABASE.iter().map(|(what, how)| json!({"secret": what, "kept": how})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("key root: {} ({})", root.kind.name(), root.describe());
        if root.kind.keys_on_card() {
            println!("WARNING: {}", keys::root::KEYS_ON_CARD);
        }
        for entry in &files {
            println!("  {:<48} {}", entry.path.display(), entry.form.describe());
        }
        for (what, how) in IN_DATABASE {
            println!("  {:<48} in the database, {how}", what);
        }
        match &opens {
            Ok(()) => println!("every key file opens under this root"),
            Err(e) => println!("ERROR: {e:#}"),
        }
    }
    Ok(if opens.is_ok() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::from(1) })
}

fn migrate(config: &Config, args: &StoreArgs) -> Result<std::process::ExitCode> {
    let key_file = args.key_file.clone().unwrap_or_else(|| config.master_key.clone());
    let key_dir = key_dir_of(&key_file);
    if config.keys.kind == RootKind::File {
        bail!("`[keys] root` is file: set it to tpm or pi-otp (or passphrase) in the config, then run this again");
    }
    // No rotation may run while the files are re-sealed.
    let _lock = MasterKeyFile::new(key_file.clone(), KeyWrap::Plain).lock()?;
    let target = key_wrap(config, &key_file)?;
    let passphrase = std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty()).map(zeroize::Zeroizing::new);
    let mut moved = Vec::new();
    for entry in keys::inventory(&key_dir) {
        let source = match (entry.form, &passphrase) {
            (Form::Clear, _) => KeyWrap::Plain,
            (Form::Passphrase, Some(p)) if target.kind() != RootKind::Passphrase => KeyWrap::Passphrase(p.clone()),
            (Form::Passphrase, None) => {
                bail!("{} is sealed under a passphrase: set {PASSPHRASE_ENV} to move it", entry.path.display())
            }
            // Already under the target: check that it opens, leave it.
            _ => {
                keys::read_secret(&entry.path, &target).with_context(|| entry.path.display().to_string())?;
                continue;
            }
        };
        let secret = keys::read_secret(&entry.path, &source)?
            .with_context(|| format!("{} vanished while migrating", entry.path.display()))?;
        // Written aside and renamed over the old file, whose bytes are overwritten first.
        keys::write_secret(&entry.path, &target, &secret)?;
        moved.push(entry.path);
    }
    for path in &moved {
        println!("sealed under the {} root: {}", target.kind().name(), path.display());
    }
    println!(
        "{} key file(s) moved; the clear copies were overwritten and replaced. On flash, old blocks can survive \
         in the card's controller: a card that ever held clear keys should be replaced once the device is migrated.",
        moved.len()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

fn rotate(config: &Config, args: &RotateArgs) -> Result<std::process::ExitCode> {
    let key_file = args.store.key_file.clone().unwrap_or_else(|| config.master_key.clone());
    let key_dir = key_dir_of(&key_file);
    if args.pass_key {
        let mut registry = open_registry(config, &args.store, false)?;
        registry.rotate_pass_key(unix_now())?;
        println!("the visitor-pass key is new: every pass issued before now no longer opens the gate; issue new ones");
    } else if args.master {
        let mut registry = open_registry(config, &args.store, false)?;
        let carried = registry.rotate_keys(unix_now())?;
        println!("the master key and the transform are new; {carried} template(s) carried over");
    } else if args.audit_key {
        let wrap = key_wrap(config, &key_file)?;
        let signer = AuditSigner::rotate(&key_dir, &wrap)?;
        println!(
            "the audit signing key is new: {} (fingerprint); give it to auditors. Reports signed before still \
             verify against the key they carry.",
            fingerprint(&signer.public_key_hex())
        );
    } else if args.portal_cert {
        if config.portal.cert_trusted {
            bail!(
                "the portal's certificate {} was issued by your CA (`portal.cert`): have it re-issued there",
                config.portal.cert.display()
            );
        }
        let wrap = key_wrap(config, &key_file)?;
        let fingerprint = crate::portal::renew_certificate(&config.portal.cert, &config.portal.key, &wrap)?;
        println!("the portal's certificate is new: {fingerprint}; update the signage and restart the daemon");
    }
    Ok(std::process::ExitCode::SUCCESS)
}
