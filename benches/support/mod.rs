//! What several benches share: a device with many enrolled residents, made through the real registry.

use std::path::Path;

use facegate::policy::consent::ConsentRecord;
use facegate::registry::{MasterKeySource, Registry, RegistryPolicy};
use facegate::vision::embed::{Embedding, EMBEDDING_DIM};
use rand::{Rng, SeedableRng};

/// Enrols `count` residents (random unit vectors, sealed and stored through the real registry, so the
/// gallery, keys and SQLite file are the real ones) in `dir/data` with the key in `dir/keys`.
pub fn enrol_residents(dir: &Path, count: usize) {
    let key = MasterKeySource::file(dir.join("keys/master.key"));
    let now = 1_790_000_000;
    let mut registry =
        Registry::open(&dir.join("data/facegate.sqlite"), &key, RegistryPolicy::default(), now).expect("registry");
    let consent = ConsentRecord {
        notice_version: "2026-11".into(),
        notice_sha256: "ab".repeat(32),
        purpose: "opening the compound gate".into(),
        channel: "kiosk".into(),
        granted_at: now,
    };
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
    for i in 0..count {
        let id = format!("r{i:05}");
        registry.record_consent(&id, Some("unit"), &consent, now).expect("consent");
        let raw: Vec<f32> = (0..EMBEDDING_DIM).map(|_| rng.random::<f32>() - 0.5).collect();
        let embedding = Embedding::from_raw(&raw).expect("non-zero");
        registry.enrol(&id, &embedding, now).expect("enrol");
    }
    assert_eq!(registry.gallery_len(), count);
}
