//! A store opened on a damaged or tampered SQLite file: a real database seeded once (residents with consent,
//! sealed templates, PINs, passes, codes, counts, the audit chain, the compound outbox), then, per input,
//! either rows rewritten with hostile values (wrong types, extremes, huge or empty text and blobs, NULLs:
//! what a tampering hand or a bad sector gives) or bytes of the file overwritten. The gate then starts on it
//! (`Registry::open`: keys, gallery, passes) and the portal's and auditor's reads run: each answers or says
//! what is wrong, never a panic.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use arbitrary::{Arbitrary, Unstructured};
use facegate::audit::cells::scan_database;
use facegate::audit::faces::FaceCheck;
use facegate::policy::consent::ConsentRecord;
use facegate::policy::passage::{EntryMethod, PassageOutcome};
use facegate::protect::Pin;
use facegate::registry::{MasterKeySource, Registry, RegistryPolicy};
use facegate::vision::embed::{Embedding, EMBEDDING_DIM};
use libfuzzer_sys::fuzz_target;
use rusqlite::types::Value;

const NOW: i64 = 1_780_000_000;

struct Seed {
    dir: tempfile::TempDir,
    bytes: Vec<u8>,
    /// Every (table, column) of the schema.
    columns: Vec<(String, String)>,
}

static SEED: LazyLock<Seed> = LazyLock::new(|| {
    // In memory where the system has it: each input writes and syncs a copy of the database.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("a temporary folder");
    let db = dir.path().join("seed.sqlite");
    let key = MasterKeySource::file(dir.path().join("keys/master.key"));
    let mut registry = Registry::open(&db, &key, RegistryPolicy::default(), NOW).expect("a registry");
    for (i, id) in ["r-1", "r-2", "r-3"].iter().enumerate() {
        let consent = ConsentRecord {
            notice_version: "1".into(),
            notice_sha256: "ab".repeat(32),
            purpose: "opening the compound's gates".into(),
            channel: "kiosk".into(),
            granted_at: NOW,
        };
        registry.record_consent(id, Some("unit 1"), &consent, NOW).expect("consent");
        // Pseudo-random directions: unrelated faces, far below the match threshold from one another.
        let mut state = 0x9E37_79B9_u32.wrapping_mul(i as u32 + 1);
        let raw: Vec<f32> = (0..EMBEDDING_DIM)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        let embedding = Embedding::from_raw(&raw).expect("a unit vector");
        registry.enrol(id, &embedding, NOW).expect("enrolment");
        registry.set_pin(id, None, &Pin::parse("482913").expect("a PIN"), NOW).expect("PIN");
    }
    registry.revoke("r-3", NOW + 10).expect("revocation");
    registry.issue_pass(NOW, NOW + 3600, NOW).expect("a pass");
    let store = registry.store_mut();
    store.add_enrolment_code(&[7; 32], "unit 2", NOW, NOW + 3600).expect("code");
    for method in [EntryMethod::Face, EntryMethod::Pin, EntryMethod::VisitorPass] {
        store.count_passage(NOW, method, PassageOutcome::Opened).expect("count");
    }
    drop(registry);
    let conn = rusqlite::Connection::open(&db).expect("the seed");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").expect("checkpoint");
    let mut columns = Vec::new();
    {
        let mut tables = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").expect("tables");
        let names: Vec<String> = tables.query_map([], |r| r.get(0)).expect("tables").flatten().collect();
        for table in names {
            let mut info = conn.prepare(&format!("PRAGMA table_info(\"{table}\")")).expect("columns");
            for column in info.query_map([], |r| r.get::<_, String>(1)).expect("columns").flatten() {
                columns.push((table.clone(), column));
            }
        }
    }
    drop(conn);
    let bytes = std::fs::read(&db).expect("the seed's bytes");
    Seed { dir, bytes, columns }
});

/// A value a tampering hand might write.
#[derive(Arbitrary, Debug)]
enum Hostile {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Huge(u16),
}

#[derive(Arbitrary, Debug)]
enum Damage {
    /// `UPDATE table SET column = value` on one row (by rowid order) or all.
    Cell { column: u16, row: Option<u8>, value: Hostile },
    /// A row deleted.
    Delete { column: u16, row: u8 },
    /// Bytes of the file overwritten.
    Bytes { at: u32, with: Vec<u8> },
}

fn damage(path: &PathBuf, seed: &Seed, damages: &[Damage]) {
    let mut bytes = seed.bytes.clone();
    let mut cells = Vec::new();
    for d in damages {
        match d {
            Damage::Bytes { at, with } => {
                let at = *at as usize % bytes.len();
                let end = (at + with.len()).min(bytes.len());
                bytes[at..end].copy_from_slice(&with[..end - at]);
            }
            other => cells.push(other),
        }
    }
    std::fs::write(path, &bytes).expect("the damaged copy");
    let Ok(conn) = rusqlite::Connection::open(path) else { return };
    for d in cells {
        let (column, row) = match d {
            Damage::Cell { column, row, .. } => (*column, row.map(i64::from)),
            Damage::Delete { column, row } => (*column, Some(i64::from(*row))),
            Damage::Bytes { .. } => continue,
        };
        let (table, name) = &seed.columns[usize::from(column) % seed.columns.len()];
        let which = match row {
            Some(n) => format!("WHERE rowid = (SELECT rowid FROM \"{table}\" ORDER BY rowid LIMIT 1 OFFSET {n})"),
            None => String::new(),
        };
        // WITHOUT ROWID tables refuse the rowid form: those changes simply do not happen.
        let _ = match d {
            Damage::Cell { value, .. } => {
                let value = match value {
                    Hostile::Null => Value::Null,
                    Hostile::Integer(i) => Value::Integer(*i),
                    Hostile::Real(r) => Value::Real(*r),
                    Hostile::Text(t) => Value::Text(t.clone()),
                    Hostile::Blob(b) => Value::Blob(b.clone()),
                    Hostile::Huge(n) => Value::Blob(vec![0xA5; usize::from(*n) * 64]),
                };
                conn.execute(&format!("UPDATE \"{table}\" SET \"{name}\" = ?1 {which}"), [value])
            }
            _ => conn.execute(&format!("DELETE FROM \"{table}\" {which}"), []),
        };
    }
}

fuzz_target!(init: { LazyLock::force(&SEED); }, |data: &[u8]| {
    let seed = &*SEED;
    let mut input = Unstructured::new(data);
    let Ok(damages) = Vec::<Damage>::arbitrary(&mut input) else { return };
    let path = seed.dir.path().join("damaged.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    damage(&path, seed, &damages);
    let key = MasterKeySource::file(seed.dir.path().join("keys/master.key"));
    if let Ok(mut registry) = Registry::open(&path, &key, RegistryPolicy::default(), NOW + 60) {
        let _ = registry.gallery_len();
        let _ = registry.check_pin("0001", &Pin::parse("482913").expect("a PIN"), std::time::Instant::now(), NOW + 60);
        let _ = registry.expire(NOW + 400 * 86_400);
        let store = registry.store();
        let _ = store.integrity_check();
        let _ = store.residents();
        let _ = store.passage_counts(0, i64::MAX);
        let _ = store.compound_passage_counts(0, i64::MAX);
        let _ = store.enrolment_codes();
        let _ = store.verify_audit_chain();
        let _ = store.outbox(100);
        let _ = store.orphan_counts();
        let _ = store.enrolment_counts();
        let _ = store.standing("r-1");
        let _ = store.live_consent("r-2");
    }
    let _ = scan_database(&path, &FaceCheck::load(None));
});
