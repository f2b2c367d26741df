//! `facegate compound init|add-gate|remove-gate|clear-gate|announce-all|rekey|status`: the compound's CA,
//! broker configuration, gate certificates and shared secret, its renewal, and a gate's view of the compound.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use super::residents::StoreArgs;
use crate::compound::certs::{self, BrokerPlan};
use crate::config::Config;
use crate::store::Store;

/// `facegate compound`
#[derive(Debug, Subcommand)]
pub enum CompoundCommand {
    /// Create a compound in an empty folder: its CA, the shared secret that seals announcements end to end,
    /// and the broker's certificate and NATS configuration (`broker/`). Keep the folder offline.
    Init(InitArgs),
    /// Issue a gate's client certificate (again, if it had one: the old one is revoked); writes
    /// `gates/<GATE>/` to copy into that gate's key folder, and rewrites the broker's configuration.
    AddGate(AddGateArgs),
    /// Revoke a gate's certificate (a gate stolen, lost or retired): rewrites the broker's configuration
    /// without it and deletes its folder here. Install the new configuration on the broker and reload it.
    RemoveGate(AddGateArgs),
    /// After `remove-gate` and a broker reload: delete everything the removed gate left on the broker (a flood
    /// of junk that filled it, replays), with the compound folder's administrator certificate. Then run
    /// `facegate compound announce-all` on the gate if it is issued again.
    ClearGate(ClearGateArgs),
    /// Queue this gate's word on every resident it knows to be announced again (after `clear-gate` removed
    /// what it had announced): the running daemon sends it.
    AnnounceAll(StoreArgs),
    /// Renew the compound key at once (it is renewed after every revocation anyway): after `remove-gate` and
    /// `clear-gate`, so a removed gate's copy of the key opens nothing sent from now on. The running daemon
    /// renews at its next heartbeat.
    Rekey(StoreArgs),
    /// This gate's view of the compound, from its database: changes still waiting for the broker, the last
    /// broker sequence applied, the other gates whose counts arrived. Reads nothing else, sends nothing.
    Status(StoreArgs),
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

/// `facegate compound clear-gate`
#[derive(Debug, Args)]
pub struct ClearGateArgs {
    /// The compound folder made by `facegate compound init` (its `admin/` certificate is used).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The removed gate whose messages to delete.
    #[arg(long)]
    pub gate: String,
    /// The broker, e.g. `tls://gate-a.local:4222`.
    #[arg(long)]
    pub broker: String,
}

/// Runs a `compound` subcommand.
pub fn run(config: &Config, command: &CompoundCommand) -> Result<std::process::ExitCode> {
    match command {
        CompoundCommand::Status(args) => status(config, args)?,
        CompoundCommand::Rekey(args) => {
            let mut store = Store::open_existing(args.db.as_ref().unwrap_or(&config.database))?;
            store.set_compound_state(crate::compound::renewal::RENEWAL_DUE, 1)?;
            println!("the compound key will be renewed by the running daemon at its next heartbeat;");
            println!("`facegate compound status` shows the epoch in force");
        }
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
            let reissued = certs::gates(&args.dir)?.iter().any(|g| g.name == args.gate);
            let out = certs::add_gate(&args.dir, &args.gate)?;
            let name = certs::compound_name(&args.dir)?;
            println!("gate {} of compound {name}: {}", args.gate, out.display());
            if reissued {
                println!("(issued again: its previous certificate is refused once the broker reloads)");
            }
            println!("copy that folder to the gate as <key folder>/compound (owner facegate, mode 0700), then add:");
            println!("[compound]\nname = \"{name}\"\ngate = \"{}\"\nbroker = \"tls://BROKER-HOST:4222\"", args.gate);
            reload_hint(&args.dir);
        }
        CompoundCommand::ClearGate(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let purged = runtime.block_on(crate::compound::admin::clear_gate(&args.dir, &args.broker, &args.gate))?;
            println!("{purged} message(s) under gate {}'s name deleted from the broker", args.gate);
            println!("the gates notice within seconds; if gate {} is issued again, run on it:", args.gate);
            println!("  facegate compound announce-all");
        }
        CompoundCommand::AnnounceAll(args) => {
            let mut store = Store::open_existing(args.db.as_ref().unwrap_or(&config.database))?;
            let queued = store.announce_all(crate::store::unix_now())?;
            println!("{queued} resident(s) queued to be announced again; the running daemon sends them");
        }
        CompoundCommand::RemoveGate(args) => {
            certs::remove_gate(&args.dir, &args.gate)?;
            println!("gate {} removed: its certificate maps to no broker user any more", args.gate);
            reload_hint(&args.dir);
            println!("it also held the compound key: after the reload, `facegate compound clear-gate` here, then");
            println!("`facegate compound rekey` on any gate, so its copy opens nothing sent from then on");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Says how to put the rewritten broker configuration into effect.
fn reload_hint(dir: &std::path::Path) {
    println!(
        "then on the broker host: sudo bash deploy/broker/install-broker.sh {}  (reloads nats-server)",
        dir.join("broker").display()
    );
}

fn status(config: &Config, args: &StoreArgs) -> Result<()> {
    let Some(compound) = &config.compound else {
        bail!("this device is not in a compound: add a [compound] section to its config (deploy/broker/README.md)");
    };
    let store = Store::open_existing(args.db.as_ref().unwrap_or(&config.database))?;
    let outbox = store.outbox(100_000)?;
    let applied = store.compound_state("applied_seq")?.unwrap_or(0);
    let epoch = store.compound_state("epoch")?.unwrap_or(0);
    let renewal_due = store.compound_state(crate::compound::renewal::RENEWAL_DUE)?.unwrap_or(0) == 1;
    let gates = store.compound_gates()?;
    if args.json {
        let gates: Vec<_> =
            gates.iter().map(|(gate, cells)| serde_json::json!({"gate": gate, "cells": cells})).collect();
        println!(
            "{}",
            serde_json::json!({
                "compound": compound.name, "gate": compound.link.gate, "broker": compound.link.broker,
                "offline_limit_s": compound.link.offline_limit.as_secs(), "applied_sequence": applied,
                "outbox": outbox.len(), "gates_reporting_counts": gates,
                "key_epoch": epoch, "key_renewal_due": renewal_due,
            })
        );
        return Ok(());
    }
    println!("compound {}, gate {}, broker {}", compound.name, compound.link.gate, compound.link.broker);
    println!(
        "offline limit {}; last broker sequence applied: {applied}",
        humantime::format_duration(compound.link.offline_limit)
    );
    println!("outbox: {} change(s) waiting for the broker", outbox.len());
    println!(
        "compound key: epoch {epoch} in force{}",
        if renewal_due { "; a renewal is due (the running daemon sends it)" } else { "" }
    );
    if gates.is_empty() {
        println!("no other gate's counts received yet");
    }
    for (gate, cells) in gates {
        println!("counts received from {gate}: {cells} hourly cell(s)");
    }
    Ok(())
}
