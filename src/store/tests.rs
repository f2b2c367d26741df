//! The store's unit tests: real SQLite files in temporary folders.

use super::*;
use crate::policy::consent::Stamp;
use crate::protect::{Rotation, TransformKey};
use crate::vision::embed::{Embedding, EMBEDDING_DIM};

/// A master key of the first generation (before any rotation).
fn gen0(master: &AeadKey) -> KeysInUse<'_> {
    KeysInUse { master, generation: KeyGeneration(0) }
}

fn consent(now: i64) -> ConsentRecord {
    ConsentRecord {
        notice_version: "2026-11".into(),
        notice_sha256: "ab".repeat(32),
        purpose: "gate entry only".into(),
        channel: "kiosk".into(),
        granted_at: now,
    }
}

fn embedding(seed: usize) -> Embedding {
    let raw: Vec<f32> = (0..EMBEDDING_DIM).map(|i| ((i * 7 + seed * 13) as f32 * 0.37).sin()).collect();
    Embedding::from_raw(&raw).unwrap()
}

fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    bytes
}

#[test]
fn enrol_match_revoke_and_nothing_plain_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("facegate.sqlite");
    let mut store = Store::open(&db).unwrap();
    let master = AeadKey::generate();
    let rotation = Rotation::from_key(&TransformKey::from_bytes([5; 32]));
    let (e1, e2) = (embedding(1), embedding(2));
    let (t1, t2) = (rotation.protect(&e1), rotation.protect(&e2));
    for (id, t) in [("r1", &t1), ("r2", &t2)] {
        store.add_resident(id, Some("3-401"), 100).unwrap();
        assert!(matches!(store.store_template(id, t, gen0(&master), 100), Err(StoreError::NoConsent(_))));
        store.grant_consent(id, &consent(100), ChangeOrigin::Local).unwrap();
        assert_eq!(store.store_template(id, t, gen0(&master), 101).unwrap(), 1);
    }
    let LiveTemplates { templates: live, failures } = store.live_templates(&master, rotation.id()).unwrap();
    assert!(failures.is_empty());
    assert_eq!(live.len(), 2);
    assert_eq!(live[0].1.as_slice(), t1.as_slice());

    // Neither the embedding's nor the protected template's float bytes are anywhere in the files.
    let on_disk = all_bytes(dir.path());
    for values in [e1.as_slice(), t1.as_slice()] {
        for v in values.iter().filter(|v| v.abs() > 1e-3) {
            assert!(!on_disk.windows(4).any(|w| w == v.to_le_bytes()), "float {v} found on disk");
        }
    }
    for magic in [&[0xFFu8, 0xD8, 0xFF][..], b"\x89PNG"] {
        assert!(!on_disk.windows(magic.len()).any(|w| w == magic));
    }

    // Wrong master key: a clear error per row, nothing panics.
    let LiveTemplates { templates: live, failures } =
        store.live_templates(&AeadKey::generate(), rotation.id()).unwrap();
    assert!(live.is_empty() && failures.len() == 2);

    let wrapped_before: Vec<u8> =
        store.conn.query_row("SELECT ciphertext FROM wrapped_keys WHERE resident_id = 'r1'", [], |r| r.get(0)).unwrap();
    let next = AeadKey::generate();
    let next_transform = TransformKey::from_bytes([6; 32]);
    let next_rotation = Rotation::from_key(&next_transform);
    let renewal = rotation.renewal_to(&next_rotation);
    let rekey = Rekey {
        generation: KeyGeneration(0),
        old_master: &master,
        new_master: &next,
        new_transform: &next_transform,
        renewal: &renewal,
    };
    let receipt = store.revoke_and_shred("r1", 200, &rekey).unwrap();
    assert_eq!(receipt.deleted.len(), 3, "{receipt:?}");
    assert_eq!(receipt.verification_code.len(), 16);
    // Everything left is wrapped under the new master key only, and carried to the new transform.
    assert!(store.live_templates(&master, next_rotation.id()).unwrap().templates.is_empty());
    let live = store.live_templates(&next, next_rotation.id()).unwrap().templates;
    assert_eq!(live.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), vec!["r2"]);
    assert!((live[0].1.cosine(&next_rotation.protect(&e2)) - 1.0).abs() < 1e-5);
    // The shredded wrapped key is nowhere in the files (secure_delete + WAL checkpoint).
    let on_disk = all_bytes(dir.path());
    assert!(!on_disk.windows(wrapped_before.len()).any(|w| w == wrapped_before.as_slice()));
    // 2 consents, 2 enrolments, the revocation and its key rotation.
    assert_eq!(store.verify_audit_chain().unwrap(), 6);
    store.integrity_check().unwrap();
}

fn from_compound(generation: u32, version: u32) -> ChangeOrigin {
    ChangeOrigin::Compound(Stamp { generation, version })
}

#[test]
fn replicated_changes_are_queued_in_their_transaction_and_received_tombstones_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("facegate.sqlite")).unwrap();
    let master = AeadKey::generate();
    let rotation = Rotation::from_key(&TransformKey::from_bytes([5; 32]));
    let next = AeadKey::generate();
    let next_transform = TransformKey::from_bytes([6; 32]);
    let renewal = rotation.renewal_to(&Rotation::from_key(&next_transform));
    let rekey = Rekey {
        generation: KeyGeneration(0),
        old_master: &master,
        new_master: &next,
        new_transform: &next_transform,
        renewal: &renewal,
    };
    for id in ["local", "received", "standalone"] {
        store.add_resident(id, None, 100).unwrap();
        store.grant_consent(id, &consent(100), ChangeOrigin::Local).unwrap();
    }
    // Not replicated: nothing queued.
    store.store_template("standalone", &rotation.protect(&embedding(3)), gen0(&master), 100).unwrap();
    assert!(store.outbox(10).unwrap().is_empty());
    store.set_replicated(true);
    store.store_template("local", &rotation.protect(&embedding(1)), gen0(&master), 101).unwrap();
    store
        .store_template_from("received", &rotation.protect(&embedding(2)), gen0(&master), 101, from_compound(4, 1))
        .unwrap();
    store.revoke_and_shred("local", 102, &rekey).unwrap();
    let queued: Vec<(OutboxKind, String, Stamp)> =
        store.outbox(10).unwrap().into_iter().map(|e| (e.kind, e.resident_id, e.stamp)).collect();
    // Consent opened generation 1, the enrolment was its first change, the revocation its second.
    assert_eq!(
        queued,
        [
            (OutboxKind::Template, "local".into(), Stamp { generation: 1, version: 1 }),
            (OutboxKind::Revoked, "local".into(), Stamp { generation: 1, version: 2 })
        ]
    );
    // Only the revocation made here makes the gate renew the compound key when it is announced.
    let renews: Vec<bool> = store.outbox(10).unwrap().iter().map(|e| e.renews).collect();
    assert_eq!(renews, [false, true]);
    let ended = |stamp, reason| Some(Standing { stamp, ended: Some(reason) });
    assert_eq!(store.standing("local").unwrap(), ended(Stamp { generation: 1, version: 2 }, ShredReason::Revoked));
    assert_eq!(
        store.standing("received").unwrap(),
        Some(Standing { stamp: Stamp { generation: 4, version: 1 }, ended: None })
    );
    let receipt = store
        .shred_from_compound(
            "received",
            ShredReason::MovedOut,
            103,
            from_compound(4, 2),
            &Rekey {
                generation: KeyGeneration(1),
                old_master: &next,
                new_master: &master,
                new_transform: &TransformKey::from_bytes([5; 32]),
                renewal: &Rotation::from_key(&next_transform).renewal_to(&rotation),
            },
        )
        .unwrap();
    assert!(receipt.deleted.contains(&"sealed face template"));
    // A tombstone received is echoed under this gate's name, with the stamp it came with.
    let echo = store.outbox(10).unwrap().pop().unwrap();
    assert_eq!(
        (echo.kind, echo.resident_id.as_str(), echo.stamp),
        (OutboxKind::MovedOut, "received", Stamp { generation: 4, version: 2 })
    );
    assert!(!echo.renews, "an echo of another gate's tombstone renewed the compound key");
    assert_eq!(store.standing("received").unwrap(), ended(Stamp { generation: 4, version: 2 }, ShredReason::MovedOut));
    assert_eq!(store.last_revocation("received").unwrap(), Some(103));
    let first = store.outbox(1).unwrap()[0].seq;
    store.outbox_done(first).unwrap();
    assert_eq!(store.outbox(10).unwrap()[0].kind, OutboxKind::Revoked);
    // A consent given again opens the next generation.
    store.grant_consent("local", &consent(104), ChangeOrigin::Local).unwrap();
    assert_eq!(
        store.standing("local").unwrap(),
        Some(Standing { stamp: Stamp { generation: 2, version: 0 }, ended: None })
    );
    assert!(
        store.audit_events(&["enrol (from the compound)", "expire (moved out) (from the compound)"]).unwrap().len()
            == 2
    );
    // A word announced again (a replay displaced it, or it crossed a renewal) renews nothing either, and the
    // outbox says so after a restart: the link kept this in memory before, and a re-announced echo renewed
    // (tests/key_roots.rs shows it end to end).
    for entry in store.outbox(10).unwrap() {
        store.outbox_done(entry.seq).unwrap();
    }
    assert!(store.announce_again("received", 105).unwrap());
    drop(store);
    let store = Store::open(&dir.path().join("facegate.sqlite")).unwrap();
    let again: Vec<(OutboxKind, bool)> = store.outbox(10).unwrap().iter().map(|e| (e.kind, e.renews)).collect();
    assert_eq!(again, [(OutboxKind::MovedOut, false)]);
}

#[test]
fn compound_counts_add_every_gates_latest_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("facegate.sqlite")).unwrap();
    store.count_passage(3_600 * 10 + 5, EntryMethod::Pin, PassageOutcome::Opened).unwrap();
    let cell =
        |count| PassageCount { hour_start: 36_000, method: EntryMethod::Pin, outcome: PassageOutcome::Opened, count };
    assert!(store.set_gate_counts("gate-b", 1, &[cell(4)]).unwrap());
    assert!(store.set_gate_counts("gate-c", 1, &[cell(7)]).unwrap());
    assert!(store.set_gate_counts("gate-b", 2, &[cell(5)]).unwrap()); // a later report replaces the earlier one
    assert!(!store.set_gate_counts("gate-b", 1, &[cell(40)]).unwrap(), "an earlier report replayed");
    assert_eq!(store.passage_counts(0, 100_000).unwrap(), vec![cell(1)]);
    assert_eq!(store.compound_passage_counts(0, 100_000).unwrap(), vec![cell(13)]);
    assert_eq!(store.compound_gates().unwrap(), [("gate-b".to_owned(), 1), ("gate-c".to_owned(), 1)]);
    store.set_compound_state("applied_seq", 42).unwrap();
    assert_eq!(store.compound_state("applied_seq").unwrap(), Some(42));
    assert_eq!(store.compound_state("other").unwrap(), None);
}

#[test]
fn swapped_rows_and_tampered_audit_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("db.sqlite")).unwrap();
    let master = AeadKey::generate();
    let rotation = Rotation::from_key(&TransformKey::from_bytes([6; 32]));
    for (id, seed) in [("a", 1), ("b", 2)] {
        store.add_resident(id, None, 1).unwrap();
        store.grant_consent(id, &consent(1), ChangeOrigin::Local).unwrap();
        store.store_template(id, &rotation.protect(&embedding(seed)), gen0(&master), 2).unwrap();
    }
    // Swap the two sealed templates between residents.
    store
        .conn
        .execute_batch(
            "UPDATE sealed_templates SET resident_id = 'tmp' WHERE resident_id = 'a';
             UPDATE sealed_templates SET resident_id = 'a' WHERE resident_id = 'b';
             UPDATE sealed_templates SET resident_id = 'b' WHERE resident_id = 'tmp';",
        )
        .unwrap_or_else(|_| {
            // Foreign keys forbid 'tmp'; swap the ciphertexts instead.
            store
                .conn
                .execute_batch(
                    "UPDATE sealed_templates SET ciphertext = (SELECT ciphertext FROM sealed_templates WHERE resident_id = 'b'),
                            nonce = (SELECT nonce FROM sealed_templates WHERE resident_id = 'b') WHERE resident_id = 'a';",
                )
                .unwrap()
        });
    let LiveTemplates { templates: live, failures } = store.live_templates(&master, rotation.id()).unwrap();
    assert!(!failures.is_empty(), "a swapped row must not open");
    assert!(live.len() < 2);
    store.conn.execute("UPDATE audit_log SET subject = 'x' WHERE seq = 1", []).unwrap();
    assert!(store.verify_audit_chain().is_err());
}

#[test]
fn passages_are_kept_only_as_hourly_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("db.sqlite")).unwrap();
    let hour = 1_795_510_800; // an hour boundary
    for (at, method, outcome) in [
        (hour + 5, EntryMethod::Face, PassageOutcome::Opened),
        (hour + 1_800, EntryMethod::Face, PassageOutcome::Opened),
        (hour + 3_599, EntryMethod::Pin, PassageOutcome::Refused),
        (hour + 3_600, EntryMethod::Face, PassageOutcome::Opened),
    ] {
        store.count_passage(at, method, outcome).unwrap();
    }
    let counts = store.passage_counts(hour, hour + 7_200).unwrap();
    let row = |h: i64, m: &str, o: &str, n: i64| PassageCount {
        hour_start: h,
        method: EntryMethod::parse(m).unwrap(),
        outcome: PassageOutcome::parse(o).unwrap(),
        count: n,
    };
    assert_eq!(
        counts,
        vec![row(hour, "face", "opened", 2), row(hour, "pin", "refused", 1), row(hour + 3_600, "face", "opened", 1)]
    );
    // The table has no column that could hold an identity or a time finer than the hour.
    let columns: Vec<String> = store
        .conn
        .prepare("SELECT name FROM pragma_table_info('passage_counts')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    assert_eq!(columns, vec!["hour_start", "method", "outcome", "count"]);
}

#[test]
fn a_corrupt_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(err.to_string().contains("db.sqlite"), "{err}");
}
