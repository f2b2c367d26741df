//! Enrols and revokes residents in a loop, as fast as the store allows, until killed. Used by the
//! crash-safety test (`tests/residents.rs`), which kills it at random points and then checks the database.
//!
//! Usage: `registry_churn DB KEY_FILE SEED`. Residents `c-0`..`c-11` each have a synthetic face (a unit
//! vector on their own axis), so the duplicate check never refuses them; real faces are tested elsewhere.

use std::path::PathBuf;

use anyhow::{Context, Result};
use facegate::policy::consent::ConsentRecord;
use facegate::registry::{MasterKeySource, Registry, RegistryPolicy};
use facegate::vision::embed::{Embedding, EMBEDDING_DIM};
use rand::{Rng, SeedableRng};

/// The synthetic face of churn resident `i`.
fn face(i: usize) -> Result<Embedding> {
    let mut raw = vec![0.0f32; EMBEDDING_DIM];
    raw[i % EMBEDDING_DIM] = 1.0;
    Embedding::from_raw(&raw).context("unit vector")
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let db = PathBuf::from(args.next().context("DB")?);
    let key = PathBuf::from(args.next().context("KEY_FILE")?);
    let seed: u64 = args.next().context("SEED")?.parse()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut registry = Registry::open(&db, &MasterKeySource::file(key), RegistryPolicy::default(), 1)?;
    let mut ops = 0u64;
    loop {
        let i = rng.random_range(0..12usize);
        let id = format!("c-{i}");
        let now = 1_000 + i64::try_from(ops)?;
        let summary = registry.store().residents()?;
        let entry = summary.iter().find(|r| r.id == id);
        if entry.is_some_and(|r| r.template_version.is_some()) {
            registry.revoke(&id, now)?;
        } else {
            if entry.is_none_or(|r| r.consent_granted_at.is_none()) {
                let consent = ConsentRecord {
                    notice_version: "churn".into(),
                    notice_sha256: "00".repeat(32),
                    purpose: "gate".into(),
                    channel: "test".into(),
                    granted_at: now,
                };
                registry.record_consent(&id, None, &consent, now)?;
            }
            registry.enrol(&id, &face(i)?, now)?;
        }
        ops += 1;
        println!("{ops}");
    }
}
