//! `facegate compound init|add-gate`: the compound's CA, broker configuration, gate certificates and
//! shared secret.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::compound::certs::{self, BrokerPlan};

/// `facegate compound`
#[derive(Debug, Subcommand)]
pub enum CompoundCommand {
    /// Create a compound in an empty folder: its CA, the shared secret that seals announcements end to end,
    /// and the broker's certificate and NATS configuration (`broker/`). Keep the folder offline.
    Init(InitArgs),
    /// Issue a gate's client certificate; writes `gates/<GATE>/` to copy into that gate's key folder.
    AddGate(AddGateArgs),
}

/// `facegate compound init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The compound folder to create (holds the CA key: keep it offline).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The compound's name (a-z, 0-9, '-').
    #[arg(long)]
    pub name: String,
    /// A host name or address gates use to reach the broker (repeat for several; default localhost,
    /// 127.0.0.1).
    #[arg(long = "broker-host", value_name = "HOST")]
    pub broker_hosts: Vec<String>,
    /// Where the broker listens.
    #[arg(long, default_value = "0.0.0.0:4222")]
    pub listen: String,
    /// Where the broker's certificate files will be installed on the broker host.
    #[arg(long, value_name = "DIR", default_value = "/etc/nats/facegate")]
    pub install_dir: PathBuf,
    /// Where the broker keeps its durable store on the broker host.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/nats/facegate")]
    pub store_dir: PathBuf,
}

/// `facegate compound add-gate`
#[derive(Debug, Args)]
pub struct AddGateArgs {
    /// The compound folder made by `facegate compound init`.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The gate's name (a-z, 0-9, '-'), unique in the compound.
    #[arg(long)]
    pub gate: String,
}

/// Runs a `compound` subcommand.
pub fn run(command: &CompoundCommand) -> Result<std::process::ExitCode> {
    match command {
        CompoundCommand::Init(args) => {
            let mut plan = BrokerPlan {
                listen: args.listen.clone(),
                install_dir: args.install_dir.clone(),
                store_dir: args.store_dir.clone(),
                ..BrokerPlan::default()
            };
            if !args.broker_hosts.is_empty() {
                plan.hosts.clone_from(&args.broker_hosts);
            }
            let files = certs::init(&args.dir, &args.name, &plan)?;
            println!("compound {} created in {}", args.name, args.dir.display());
            for file in files {
                println!("  {}", file.display());
            }
            println!("next: `facegate compound add-gate --dir {} --gate NAME` for each gate;", args.dir.display());
            println!("      install broker/ on the broker host (deploy/broker/README.md)");
        }
        CompoundCommand::AddGate(args) => {
            let out = certs::add_gate(&args.dir, &args.gate)?;
            let name = certs::compound_name(&args.dir)?;
            println!("gate {} of compound {name}: {}", args.gate, out.display());
            println!("copy that folder to the gate as <key folder>/compound (owner facegate, mode 0700), then add:");
            println!("[compound]\nname = \"{name}\"\ngate = \"{}\"\nbroker = \"tls://BROKER-HOST:4222\"", args.gate);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
