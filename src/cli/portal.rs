//! `facegate account` (staff accounts of the portal) and `facegate signage` (the printable notice).

use std::io::{BufRead, IsTerminal, Read};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use zeroize::Zeroizing;

use super::residents::{open_registry, StoreArgs};
use crate::config::Config;
use crate::portal::auth::{hash_password, Role};
use crate::portal::i18n::{t, Lang};
use crate::portal::views::{notice_items, NoticeFacts};
use crate::store::unix_now;

/// A staff role, on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    /// Counts and enrolment codes.
    Manager,
    /// The no-retention report.
    Auditor,
    /// Guard calls, remote release (audited with a reason), visitor passes on the spot.
    Guard,
    /// The camera's aiming figures while installing.
    Installer,
}

/// `facegate account`
#[derive(Debug, Args)]
pub struct AccountArgs {
    /// Database and key.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Sign-in name.
    #[arg(long)]
    pub name: String,
    /// What the account may see.
    #[arg(long, value_enum)]
    pub role: RoleArg,
}

/// Creates or resets a staff account; the password is read without echo (or from standard input).
pub fn account(config: &Config, args: &AccountArgs) -> Result<std::process::ExitCode> {
    let name = args.name.trim();
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_alphanumeric() || "._-@".contains(c)) {
        bail!("an account name is 1-64 letters, digits and . _ - @");
    }
    let password = Zeroizing::new(if std::io::stdin().is_terminal() {
        rpassword::prompt_password("password (12 characters or more): ").context("reading the password")?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().take(1024).read_line(&mut line).context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    });
    let hash = hash_password(&password)?;
    let role = match args.role {
        RoleArg::Manager => Role::Manager,
        RoleArg::Auditor => Role::Auditor,
        RoleArg::Guard => Role::Guard,
        RoleArg::Installer => Role::Installer,
    };
    let mut registry = open_registry(config, &args.store, true)?;
    registry.store_mut().add_account(name, role, &hash, unix_now())?;
    println!(
        "account {name} ({}) set; sign in at https://<this device>:{}/login",
        role.as_str(),
        config.portal.listen.port()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// `facegate signage`
#[derive(Debug, Args)]
pub struct SignageArgs {
    /// Language: en or zh.
    #[arg(long, default_value = "en")]
    pub lang: String,
}

/// Prints the notice to post at the gate (PIPL Art. 26), from the config.
pub fn signage(config: &Config, args: &SignageArgs) -> Result<std::process::ExitCode> {
    let lang = Lang::from_tag(&args.lang);
    println!("{}", t(lang, "signage"));
    println!();
    for item in notice_items(lang, &notice_facts(config)) {
        println!("- {item}");
    }
    if config.portal.enabled {
        let wrap = super::residents::key_wrap(config, &config.master_key)?;
        let fingerprint = crate::portal::ensure_certificate(&config.portal.cert, &config.portal.key, &wrap)?;
        println!();
        println!("{} {fingerprint}", t(lang, "signage_fingerprint"));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `facegate portal fingerprint`
#[derive(Debug, clap::Subcommand)]
pub enum PortalCommand {
    /// Print the SHA-256 fingerprint of the portal's certificate (made now if there is none), to put on the
    /// signage and compare with what staff's browsers show.
    Fingerprint,
}

/// Runs `facegate portal ...`.
pub fn portal(config: &Config, command: &PortalCommand) -> Result<std::process::ExitCode> {
    match command {
        PortalCommand::Fingerprint => {
            let wrap = super::residents::key_wrap(config, &config.master_key)?;
            println!("{}", crate::portal::ensure_certificate(&config.portal.cert, &config.portal.key, &wrap)?);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// What the notice says, from the config.
pub fn notice_facts(config: &Config) -> NoticeFacts {
    crate::portal::notice_facts(config)
}
