//! The registry's unit tests: a real SQLite file and key file in temporary folders.

use super::*;
use crate::store::OutboxKind;
use crate::vision::embed::EMBEDDING_DIM;
use credentials::USED_PASS_MARGIN_SECS;

fn consent(now: i64) -> ConsentRecord {
    ConsentRecord {
        notice_version: "2026-11".into(),
        notice_sha256: "cd".repeat(32),
        purpose: "opening the compound gate".into(),
        channel: "kiosk".into(),
        granted_at: now,
    }
}

/// Unit vectors along separate axes, with a personal wobble: distinct people score ~0.
fn face(person: usize, wobble: f32) -> Embedding {
    let mut raw = vec![0.0f32; EMBEDDING_DIM];
    raw[person % EMBEDDING_DIM] = 1.0;
    raw[(person + 64) % EMBEDDING_DIM] = wobble;
    Embedding::from_raw(&raw).unwrap()
}

fn open(dir: &Path) -> Registry {
    open_at(dir, 1_000)
}

/// A registry opened at `now` with one resident, `r-9`, whose keypad code is 340112 and PIN 4071.
fn with_a_pin(dir: &Path, now: i64) -> Registry {
    let mut registry = open_at(dir, now);
    registry.record_consent("r-9", None, &consent(1), 1).unwrap();
    registry.set_pin("r-9", Some("340112"), &Pin::parse("4071").unwrap(), 2).unwrap();
    registry
}

fn open_at(dir: &Path, now: i64) -> Registry {
    let key = MasterKeySource::file(dir.join("keys/master.key"));
    Registry::open(&dir.join("data/facegate.sqlite"), &key, RegistryPolicy::default(), now).unwrap()
}

#[test]
fn a_template_carried_through_the_compound_transform_matches_at_another_gate_until_revoked() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut gate_a, mut gate_b) = (open(a_dir.path()), open(b_dir.path()));
    assert_ne!(gate_a.transform_id(), gate_b.transform_id(), "each device has its own transform");
    let compound = Rotation::from_key(&TransformKey::from_bytes([9; 32]));
    gate_a.set_replicated(true);
    gate_a.record_consent("r-1", None, &consent(1_000), 1_000).unwrap();
    gate_a.enrol("r-1", &face(1, 0.1), 1_000).unwrap();
    assert!(gate_a.template_under("r-2", &compound).is_none());
    let travelling = gate_a.template_under("r-1", &compound).unwrap();
    assert_eq!(travelling.transform(), compound.id());

    // Consent opened generation 1 at gate A; the enrolment is its first change.
    let s = |generation, version| Stamp { generation, version };
    assert_eq!(gate_a.store().standing("r-1").unwrap().map(|k| k.stamp), Some(s(1, 1)));
    let stored = gate_b.import_from_compound("r-1", &consent(1_000), &travelling, s(1, 1), &compound, 1_001).unwrap();
    assert!(matches!(stored, FromCompound::Applied(ref r) if r.version == 1), "{stored:?}");
    assert!(gate_b.store().outbox(10).unwrap().is_empty(), "an imported enrolment was queued again");
    let again = gate_b.import_from_compound("r-1", &consent(1_000), &travelling, s(1, 1), &compound, 1_001).unwrap();
    assert!(matches!(again, FromCompound::Same), "{again:?}");
    let found = gate_b.identify(&face(1, 0.12)).unwrap();
    assert_eq!(found.resident_id, "r-1");
    assert!(found.score > 0.99, "{}", found.score);
    assert!(gate_b.identify(&face(2, 0.1)).is_none());

    gate_b.set_replicated(true);
    let shredded = gate_b.shred_from_compound("r-1", ShredReason::Revoked, s(1, 2), 1_002).unwrap();
    assert!(matches!(shredded, FromCompound::Applied(Some(_))), "{shredded:?}");
    assert!(gate_b.identify(&face(1, 0.12)).is_none());
    let echoed: Vec<_> = gate_b.store().outbox(10).unwrap().into_iter().map(|e| (e.kind, e.stamp)).collect();
    assert_eq!(echoed, [(OutboxKind::Revoked, s(1, 2))], "the tombstone is echoed under gate B's name");
    assert!(matches!(
        gate_b.shred_from_compound("r-1", ShredReason::Revoked, s(1, 2), 1_003).unwrap(),
        FromCompound::Same
    ));
    // A tombstone for a resident never held here is remembered: the template it ended, replayed, is refused.
    let never = gate_b.shred_from_compound("never-here", ShredReason::Revoked, s(3, 2), 1_003).unwrap();
    assert!(matches!(never, FromCompound::Applied(None)), "{never:?}");
    let replayed =
        gate_b.import_from_compound("never-here", &consent(1), &travelling, s(3, 1), &compound, 1_004).unwrap();
    assert!(matches!(replayed, FromCompound::Older(_)), "{replayed:?}");
    assert!(gate_b.identify(&face(1, 0.12)).is_none());
    // The revoked template replayed: refused, whatever the consent's time says.
    let replayed = gate_b.import_from_compound("r-1", &consent(2_000), &travelling, s(1, 1), &compound, 1_004).unwrap();
    assert!(matches!(replayed, FromCompound::Older(k) if k.stamp == s(1, 2)), "{replayed:?}");
    assert!(gate_b.identify(&face(1, 0.12)).is_none());
    // A new consent generation is taken; the old tombstone replayed after it is refused.
    let fresh = gate_b.import_from_compound("r-1", &consent(900), &travelling, s(2, 1), &compound, 1_005).unwrap();
    assert!(matches!(fresh, FromCompound::Applied(_)), "{fresh:?}");
    assert_eq!(gate_b.identify(&face(1, 0.12)).unwrap().resident_id, "r-1");
    let replayed = gate_b.shred_from_compound("r-1", ShredReason::Revoked, s(1, 2), 1_006).unwrap();
    assert!(matches!(replayed, FromCompound::Older(k) if k.stamp == s(2, 1)), "{replayed:?}");
    assert_eq!(gate_b.identify(&face(1, 0.12)).unwrap().resident_id, "r-1", "a replayed tombstone shredded her");
    // Gate A revokes generation 2 and the resident consents again there (generation 3); gate B missed the
    // revocation and hears of generation 3 first: what it held of generation 2 is shredded, then replaced.
    let receipt = gate_b.store().audit_events(&["revoke (from the compound)"]).unwrap().len();
    let third = gate_b.import_from_compound("r-1", &consent(1_100), &travelling, s(3, 1), &compound, 1_007).unwrap();
    assert!(matches!(third, FromCompound::Applied(_)), "{third:?}");
    assert_eq!(gate_b.store().audit_events(&["revoke (from the compound)"]).unwrap().len(), receipt + 1);
    assert_eq!(gate_b.store().standing("r-1").unwrap().map(|k| k.stamp), Some(s(3, 1)));
    assert_eq!(gate_b.identify(&face(1, 0.12)).unwrap().resident_id, "r-1");
}

#[test]
fn consent_enrol_identify_revoke() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let mut registry = open(dir.path());
    assert!(matches!(registry.enrol("r-1", &face(1, 0.1), 1_000), Err(RegistryError::NoConsent(_))));
    registry.record_consent("r-1", Some("3-401"), &consent(1_000), 1_000).unwrap();
    registry.record_consent("r-2", None, &consent(1_000), 1_000).unwrap();
    assert_eq!(registry.enrol("r-1", &face(1, 0.1), 1_001).unwrap().version, 1);
    assert_eq!(registry.enrol("r-2", &face(2, 0.1), 1_001).unwrap().version, 1);
    // r-2 enrolling again is a re-enrolment, not a duplicate of itself.
    assert_eq!(registry.enrol("r-2", &face(2, -0.1), 1_002).unwrap().version, 2);
    // A third resident with r-1's face is refused.
    registry.record_consent("r-3", None, &consent(1_000), 1_000).unwrap();
    assert!(matches!(registry.enrol("r-3", &face(1, 0.05), 1_003), Err(RegistryError::Duplicate { .. })));

    assert_eq!(registry.identify(&face(1, 0.0)).unwrap().resident_id, "r-1");
    assert_eq!(registry.identify(&face(7, 0.0)), None, "a stranger gets no match, not the nearest");

    // A fresh process sees the same gallery.
    drop(registry);
    let mut registry = open(dir.path());
    assert_eq!(registry.gallery_len(), 2);
    assert!(registry.load_failures().is_empty());
    let receipt = registry.revoke("r-1", 2_000).unwrap();
    assert!(receipt.deleted.contains(&"template data key (crypto-shredded)"), "{receipt:?}");
    assert_eq!(registry.identify(&face(1, 0.0)), None);
    assert!(matches!(registry.enrol("r-1", &face(1, 0.1), 2_001), Err(RegistryError::NoConsent(_))));
    drop(registry);
    assert_eq!(open(dir.path()).identify(&face(1, 0.0)), None);
}

#[test]
fn re_enrolment_after_revocation_gives_an_unlinkable_template() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = open(dir.path());
    for (id, person) in [("r-1", 1), ("r-2", 2)] {
        registry.record_consent(id, None, &consent(0), 0).unwrap();
        registry.enrol(id, &face(person, 0.1), 0).unwrap();
    }
    let before = registry.protect(&face(1, 0.1));
    registry.revoke("r-1", 5).unwrap();
    // The same face now protects to an unrelated template: what was stored before cannot be linked to
    // what a re-enrolment stores (keyed rotations of one vector under independent keys).
    let after = registry.protect(&face(1, 0.1));
    assert_ne!(before.transform(), after.transform());
    assert!(before.cosine(&after).abs() < 0.45, "cosine {}", before.cosine(&after));
    // Everyone else was carried over and still matches.
    assert_eq!(registry.identify(&face(2, 0.1)).unwrap().resident_id, "r-2");
    registry.record_consent("r-1", None, &consent(6), 6).unwrap();
    assert_eq!(registry.enrol("r-1", &face(1, 0.1), 6).unwrap().version, 1);
    assert_eq!(registry.identify(&face(1, 0.1)).unwrap().resident_id, "r-1");
}

#[test]
fn a_wrong_master_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    drop(open(dir.path()));
    std::fs::write(dir.path().join("keys/master.key"), [9u8; 32]).unwrap();
    let err = Registry::open(
        &dir.path().join("data/facegate.sqlite"),
        &MasterKeySource::file(dir.path().join("keys/master.key")),
        RegistryPolicy::default(),
        5,
    )
    .unwrap_err();
    assert!(err.to_string().contains("master key does not open"), "{err}");
}

#[test]
fn a_visitor_pass_opens_once_inside_its_window_and_survives_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let mut registry = open(dir.path());
    let (pass, text) = registry.issue_pass(2_000, 5_600, 1_000).unwrap();
    assert_eq!(registry.check_pass(&text, 1_500).unwrap(), Err(PassError::NotYetValid));
    // A revocation elsewhere rotates the master key; the pass key is re-wrapped, passes keep working.
    registry.record_consent("r-1", None, &consent(1_000), 1_000).unwrap();
    registry.enrol("r-1", &face(1, 0.1), 1_000).unwrap();
    registry.revoke("r-1", 1_900).unwrap();
    drop(registry);
    let mut registry = open(dir.path());
    assert_eq!(registry.check_pass(&text, 2_000).unwrap(), Ok(pass));
    assert_eq!(registry.check_pass(&text, 2_001).unwrap(), Err(PassError::AlreadyUsed));
    drop(registry);
    // Single use holds across a restart.
    let mut registry = open(dir.path());
    assert_eq!(registry.check_pass(&text, 2_002).unwrap(), Err(PassError::AlreadyUsed));
    let (_, late) = registry.issue_pass(2_000, 3_000, 1_000).unwrap();
    assert_eq!(registry.check_pass(&late, 3_000).unwrap(), Err(PassError::Expired));
    let (_, cancelled) = registry.issue_pass(2_000, 3_000, 1_000).unwrap();
    registry.cancel_pass(&cancelled, 2_100).unwrap();
    assert_eq!(registry.check_pass(&cancelled, 2_200).unwrap(), Err(PassError::AlreadyUsed));
    assert!(matches!(registry.issue_pass(0, 8 * 86_400, 0), Err(RegistryError::Pass(PassError::BadWindow))));

    // Another installation's pass is refused.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("data")).unwrap();
    let (_, foreign) = open(other.path()).issue_pass(2_000, 5_000, 1_000).unwrap();
    assert_eq!(registry.check_pass(&foreign, 2_500).unwrap(), Err(PassError::BadSignature));
    // Used passes are forgotten a week after they expire (on both clocks): no lasting trace of visits.
    let rows = registry.store().used_pass_count().unwrap();
    assert_eq!(rows, 2);
    registry.check_pass("FGP1:garbage", 6_000).unwrap().unwrap_err();
    let (_, fresh) = registry.issue_pass(6_000, 7_000, 6_000).unwrap();
    registry.check_pass(&fresh, 6_000).unwrap().unwrap();
    assert_eq!(registry.store().used_pass_count().unwrap(), 3, "kept within the margin");
    drop(registry);
    let later = 7_000 + USED_PASS_MARGIN_SECS + 1;
    let mut registry = open_at(dir.path(), later);
    let (_, fresh) = registry.issue_pass(later, later + 60, later).unwrap();
    registry.check_pass(&fresh, later).unwrap().unwrap();
    assert_eq!(registry.store().used_pass_count().unwrap(), 1);
}

/// Attack 7 of the outside review: a board with no RTC steps its clock. Before, a step forward cleared PIN
/// lockouts (they were wall-clock times), and a used pass forgotten at its expiry opened again once the clock
/// stepped back into its window. Lockouts now run on the monotonic clock; used ids are kept a margin past
/// expiry on both clocks.
#[test]
fn wall_clock_steps_neither_clear_a_lockout_nor_reopen_a_used_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = with_a_pin(dir.path(), 10_000);
    let t0 = Instant::now();
    let wrong = Pin::parse("5806").unwrap();
    for _ in 0..5 {
        registry.check_pin("340112", &wrong, t0, 10_000).unwrap();
    }
    let right = Pin::parse("4071").unwrap();
    let a_day_later = 10_000 + 86_400;
    assert!(
        matches!(registry.check_pin("340112", &right, t0, a_day_later).unwrap(), PinCheck::LockedOut(_)),
        "a wall clock a day ahead cleared the lockout"
    );

    let (_, text) = registry.issue_pass(10_000, 13_600, 10_000).unwrap();
    assert!(registry.check_pass(&text, 10_100).unwrap().is_ok());
    // The clock jumps 100 days ahead (any check then forgets what it may), then back into the window.
    registry.check_pass("FGP1:garbage", 10_000 + 100 * 86_400).unwrap().unwrap_err();
    assert_eq!(registry.check_pass(&text, 10_200).unwrap(), Err(PassError::AlreadyUsed), "a used pass opened again");
}

#[test]
fn wrong_pins_back_off_and_revocation_removes_the_pin() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = open(dir.path());
    registry.record_consent("r-9", None, &consent(1), 1).unwrap();
    registry.record_consent("r-8", None, &consent(1), 1).unwrap();
    let pin = |p: &str| Pin::parse(p).unwrap();
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert!(matches!(registry.set_pin("r-9", Some("340112"), &pin("1111"), 2), Err(RegistryError::Pin(_))));
    assert!(matches!(registry.set_pin("r-9", Some("3401"), &pin("4071"), 2), Err(RegistryError::KeypadCode)));
    registry.set_pin("r-9", Some("340112"), &pin("4071"), 2).unwrap();
    assert!(matches!(registry.set_pin("r-8", Some("340112"), &pin("5093"), 2), Err(RegistryError::Store(_))));
    let random = registry.set_pin("r-8", None, &pin("5093"), 2).unwrap();
    assert!(random.len() == 6 && random != "340112", "{random}");
    assert_eq!(registry.check_pin("340112", &pin("4071"), at(10), 10).unwrap(), PinCheck::Accepted);
    // Another resident's revocation rotates the master key; PINs keep working (their pepper is stable).
    registry.revoke("r-8", 10).unwrap();
    assert_eq!(registry.check_pin("340112", &pin("4071"), at(10), 10).unwrap(), PinCheck::Accepted);
    drop(registry);
    let mut registry = open(dir.path());
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert_eq!(registry.check_pin("340112", &pin("4071"), at(10), 10).unwrap(), PinCheck::Accepted);
    assert_eq!(registry.check_pin("999999", &pin("4071"), at(10), 10).unwrap(), PinCheck::Rejected, "unknown code");
    for t in 11..16 {
        assert_eq!(registry.check_pin("340112", &pin("9999"), at(t), t as i64).unwrap(), PinCheck::Rejected);
    }
    // Five wrong in a row: even the right PIN waits 30 s, then works.
    assert_eq!(
        registry.check_pin("340112", &pin("4071"), at(16), 16).unwrap(),
        PinCheck::LockedOut(Duration::from_secs(29))
    );
    assert_eq!(registry.check_pin("340112", &pin("4071"), at(45), 45).unwrap(), PinCheck::Accepted);
    // Attempts during a lockout are refused unchecked; after it, one more wrong PIN doubles the wait.
    for t in 50..55 {
        assert_eq!(registry.check_pin("340112", &pin("9999"), at(t), t as i64).unwrap(), PinCheck::Rejected);
    }
    assert_eq!(
        registry.check_pin("340112", &pin("4071"), at(60), 60).unwrap(),
        PinCheck::LockedOut(Duration::from_secs(24))
    );
    assert_eq!(registry.check_pin("340112", &pin("9999"), at(84), 84).unwrap(), PinCheck::Rejected);
    assert_eq!(
        registry.check_pin("340112", &pin("4071"), at(90), 90).unwrap(),
        PinCheck::LockedOut(Duration::from_secs(54))
    );
    let receipt = registry.revoke("r-9", 200).unwrap();
    assert!(receipt.deleted.contains(&"PIN verifier"), "{receipt:?}");
    assert_eq!(registry.check_pin("340112", &pin("4071"), at(300), 300).unwrap(), PinCheck::Rejected);
}

/// Attack 1 of the outside review: before, a code nobody held was never counted or locked, so its answers
/// differed from a real code's (a real one said "locked out" after five failures) and a guesser could try the
/// commonest PINs on every code. Now every typed code is counted the same way.
#[test]
fn an_unknown_code_locks_exactly_like_a_residents_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = with_a_pin(dir.path(), 1_000);
    let t0 = Instant::now();
    let wrong = Pin::parse("5806").unwrap();
    let answers = |registry: &mut Registry, code: &str| -> Vec<PinCheck> {
        (0..7).map(|i| registry.check_pin(code, &wrong, t0 + Duration::from_secs(i), 5).unwrap()).collect()
    };
    let known = answers(&mut registry, "340112");
    let unknown = answers(&mut registry, "777041");
    assert_eq!(known, unknown, "a code that exists must answer like one that does not");
    assert!(matches!(unknown[5], PinCheck::LockedOut(_)), "{unknown:?}");
}

/// Attack 1: the keypad-wide budget. Before, failures spread over many codes never slowed anything; now,
/// once the budget is spent, even a resident's right PIN on a fresh code waits, and the guard is alarmed.
#[test]
fn failures_across_many_codes_spend_the_keypads_budget_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = with_a_pin(dir.path(), 1_000);
    let t0 = Instant::now();
    let wrong = Pin::parse("5806").unwrap();
    let budget = PinBudget::default();
    for i in 0..budget.per_hour {
        let code = format!("{:06}", 500_000 + i);
        let challenge = registry.pin_challenge(&code, t0).unwrap();
        let (check, attempt) = challenge.verify(&wrong);
        assert_eq!(check, PinCheck::Rejected);
        let alarm = registry.record_pin_attempt(attempt.unwrap(), t0, 1_000).unwrap();
        assert_eq!(alarm.is_some(), i + 1 == budget.per_hour, "alarm exactly when the budget is spent ({i})");
    }
    let right = Pin::parse("4071").unwrap();
    assert!(matches!(registry.check_pin("340112", &right, t0, 1_000).unwrap(), PinCheck::LockedOut(_)));
    // A restart does not refund the budget: the failures were counted per hour in the store.
    drop(registry);
    let mut registry = open(dir.path());
    assert!(matches!(registry.check_pin("340112", &right, Instant::now(), 1_100).unwrap(), PinCheck::LockedOut(_)));
}

#[test]
fn unused_templates_expire_and_moved_out_residents_are_shredded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let mut registry = open(dir.path());
    let day = 86_400;
    for (id, person) in [("old", 1), ("busy", 2), ("leaver", 3)] {
        registry.record_consent(id, None, &consent(0), 0).unwrap();
        registry.enrol(id, &face(person, 0.0), 0).unwrap();
    }
    // "busy" matched two years in; "old" never since enrolment.
    assert!(registry.store_mut().note_used("busy", 730 * day).unwrap());
    assert!(!registry.store_mut().note_used("busy", 731 * day).unwrap(), "touched at most monthly");
    let receipt = registry.move_out("leaver", 800 * day).unwrap();
    assert!(receipt.deleted.contains(&"residency (moved out)"));
    let expired = registry.expire(3 * 365 * day + 2 * day).unwrap();
    assert_eq!(expired.iter().map(|r| r.resident_id.as_str()).collect::<Vec<_>>(), vec!["old"]);
    assert_eq!(registry.gallery_len(), 1);
    assert_eq!(registry.identify(&face(2, 0.0)).unwrap().resident_id, "busy");
    let summary = registry.store().residents().unwrap();
    let old = summary.iter().find(|r| r.id == "old").unwrap();
    assert!(old.template_version.is_none() && old.consent_granted_at.is_none());
    assert_eq!(registry.store().orphan_counts().unwrap(), (0, 0, 0));
    // transform key created, 3 consents, 3 enrolments, move-out and expiry each with its key rotation.
    assert_eq!(registry.store().verify_audit_chain().unwrap(), 1 + 3 + 3 + 2 + 2);
}

#[test]
fn key_rotation_rewraps_and_renews_everything() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let mut registry = open(dir.path());
    registry.record_consent("r-1", None, &consent(0), 0).unwrap();
    registry.enrol("r-1", &face(1, 0.0), 0).unwrap();
    let before = std::fs::read(dir.path().join("keys/master.key")).unwrap();
    let old_transform = registry.transform_id();
    assert_eq!(registry.rotate_keys(10).unwrap(), 1);
    assert_ne!(registry.transform_id(), old_transform);
    drop(registry);
    assert_ne!(std::fs::read(dir.path().join("keys/master.key")).unwrap(), before);
    assert!(!dir.path().join("keys/master.key.next").exists());
    let registry = open(dir.path());
    assert_eq!(registry.identify(&face(1, 0.0)).unwrap().resident_id, "r-1");
}

#[test]
fn an_interrupted_rotation_is_finished_or_undone_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let key_path = dir.path().join("keys/master.key");
    let mut registry = open(dir.path());
    registry.record_consent("r-1", None, &consent(0), 0).unwrap();
    registry.enrol("r-1", &face(1, 0.0), 0).unwrap();
    let file = MasterKeyFile::new(key_path.clone(), KeyWrap::Plain);

    // Crash after staging, before the database committed: the stale `.next` is discarded.
    file.stage_next(&AeadKey::generate()).unwrap();
    drop(registry);
    let registry = open(dir.path());
    assert!(!dir.path().join("keys/master.key.next").exists());
    assert_eq!(registry.gallery_len(), 1);

    // Crash after the database committed under the new key, before the rename: `.next` is promoted.
    let old = file.load_or_create().unwrap();
    let new = AeadKey::generate();
    let new_transform = TransformKey::generate();
    let renewal = registry.gallery().rotation().renewal_to(&Rotation::from_key(&new_transform));
    let generation = registry.key_generation();
    file.stage_next(&new).unwrap();
    drop(registry);
    let rekey =
        Rekey { generation, old_master: &old, new_master: &new, new_transform: &new_transform, renewal: &renewal };
    Store::open(&dir.path().join("data/facegate.sqlite")).unwrap().rotate_keys(&rekey, 5, &[]).unwrap();
    let registry = open(dir.path());
    assert_eq!(registry.identify(&face(1, 0.0)).unwrap().resident_id, "r-1");
    assert_eq!(std::fs::read(&key_path).unwrap(), new.as_bytes());
}

#[test]
fn a_passphrase_sealed_key_file_needs_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let db = dir.path().join("data/facegate.sqlite");
    let source = |p: &str| MasterKeySource {
        file: dir.path().join("keys/master.key"),
        wrap: KeyWrap::Passphrase(Zeroizing::new(p.to_owned())),
    };
    let mut registry = Registry::open(&db, &source("correct horse"), RegistryPolicy::default(), 0).unwrap();
    registry.record_consent("r-1", None, &consent(0), 0).unwrap();
    registry.enrol("r-1", &face(1, 0.0), 0).unwrap();
    drop(registry);
    let on_disk = std::fs::read(dir.path().join("keys/master.key")).unwrap();
    assert!(on_disk.starts_with(b"FGK1") && on_disk.len() == 80);
    let err = Registry::open(&db, &source("wrong horse"), RegistryPolicy::default(), 1).unwrap_err();
    assert!(err.to_string().contains("passphrase does not open"), "{err}");
    let err =
        Registry::open(&db, &MasterKeySource::file(dir.path().join("keys/master.key")), RegistryPolicy::default(), 1)
            .unwrap_err();
    assert!(err.to_string().contains("FACEGATE_MASTER_PASSPHRASE"), "{err}");
    let registry = Registry::open(&db, &source("correct horse"), RegistryPolicy::default(), 1).unwrap();
    assert_eq!(registry.gallery_len(), 1);
}

/// Issue 16: a registry whose keys another process rotated (the CLI's `revoke`, a revocation from the
/// compound) must neither commit a template sealed under the deleted master key (an "enrolled" resident
/// nobody can ever match) nor refuse a revocation as `WrongMasterKey`: it refreshes its keys and goes on.
#[test]
fn a_stale_writer_refreshes_its_keys_instead_of_sealing_under_deleted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut portal = open(dir.path());
    for (id, person) in [("r-1", 1), ("r-2", 2)] {
        portal.record_consent(id, None, &consent(0), 0).unwrap();
        portal.enrol(id, &face(person, 0.0), 0).unwrap();
    }
    portal.record_consent("r-3", None, &consent(0), 0).unwrap();
    portal.record_consent("r-4", None, &consent(0), 0).unwrap();
    // Another process (the CLI) revokes r-1: master key and transform rotate under the portal's feet.
    let mut cli = open(dir.path());
    cli.revoke("r-1", 5).unwrap();
    drop(cli);
    // The portal enrols r-3 with what it holds: the row must open for everyone afterwards.
    portal.enrol("r-3", &face(3, 0.0), 6).unwrap();
    // And a revocation on the portal succeeds.
    let receipt = portal.revoke("r-2", 7).unwrap();
    assert!(receipt.deleted.contains(&"template data key (crypto-shredded)"), "{receipt:?}");
    // Once more after another outside rotation: enrolment and identification still line up.
    let mut cli = open(dir.path());
    cli.rotate_keys(8).unwrap();
    drop(cli);
    portal.enrol("r-4", &face(4, 0.0), 9).unwrap();
    let fresh = open(dir.path());
    assert!(fresh.load_failures().is_empty(), "{:?}", fresh.load_failures());
    assert_eq!(fresh.gallery_len(), 2);
    assert_eq!(fresh.identify(&face(3, 0.0)).unwrap().resident_id, "r-3");
    assert_eq!(fresh.identify(&face(4, 0.0)).unwrap().resident_id, "r-4");
    assert_eq!(fresh.identify(&face(2, 0.0)), None);
    assert_eq!(portal.identify(&face(4, 0.0)).unwrap().resident_id, "r-4");
    assert_eq!(portal.identify(&face(1, 0.0)), None);
}

#[test]
fn a_second_process_follows_a_revocation_and_its_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let mut admin = open(dir.path());
    for (id, person) in [("r-1", 1), ("r-2", 2)] {
        admin.record_consent(id, None, &consent(0), 0).unwrap();
        admin.enrol(id, &face(person, 0.0), 0).unwrap();
    }
    let mut gate = open(dir.path());
    assert_eq!(gate.gallery_len(), 2);
    admin.revoke("r-1", 5).unwrap();
    gate.reload().unwrap();
    assert!(gate.load_failures().is_empty(), "{:?}", gate.load_failures());
    assert_eq!(gate.gallery_len(), 1);
    assert_eq!(gate.identify(&face(1, 0.0)), None);
    assert_eq!(gate.identify(&face(2, 0.0)).unwrap().resident_id, "r-2");
}
