//! Residents end to end, on real photos, a real SQLite file and the real binary: enrolment leaves no face
//! bytes on disk, revocation makes a resident unmatchable and their backed-up row unopenable, damaged
//! databases and keys give clear errors, and killing the process mid-write never leaves an inconsistent store.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use facegate::capture::{decode_file, DecodeLimits};
use facegate::policy::consent::ConsentRecord;
use facegate::protect::{self, AeadKey, Sealed, TemplateContext, TransformId};
use facegate::registry::{MasterKeySource, Registry, RegistryPolicy};
use facegate::store::{unix_now, Store};
use facegate::vision::embed::{Embedding, EMBEDDING_DIM};
use facegate::vision::enrol::{EnrolmentSession, QualityGate};
use facegate::vision::liveness::DEFAULT_LIVE_THRESHOLD;
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_facegate");

/// A device laid out as installed: database and key in separate folders.
struct Device {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Device {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("notice.txt"), "Face entry notice 2026-11: used only to open the gate.\n").unwrap();
        Self { _dir: dir, root }
    }
    fn db(&self) -> PathBuf {
        self.root.join("data/facegate.sqlite")
    }
    fn key(&self) -> PathBuf {
        self.root.join("keys/master.key")
    }
    fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new(BIN);
        command.args(["--models", common::models_dir().to_str().unwrap()]).args(args).args([
            "--db",
            self.db().to_str().unwrap(),
            "--key-file",
            self.key().to_str().unwrap(),
        ]);
        command.env_remove("FACEGATE_MASTER_PASSPHRASE").output().unwrap()
    }
    fn consent(&self, resident: &str) {
        let notice = self.root.join("notice.txt");
        let out = self.cli(&[
            "consent",
            "--resident",
            resident,
            "--notice",
            notice.to_str().unwrap(),
            "--notice-version",
            "2026-11",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    fn enroll(&self, resident: &str, photos: &[PathBuf]) -> Output {
        let mut args = vec!["enroll".to_owned(), "--resident".into(), resident.into()];
        args.extend(photos.iter().map(|p| p.display().to_string()));
        self.cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }
    fn registry(&self) -> Registry {
        Registry::open(&self.db(), &MasterKeySource::file(self.key()), RegistryPolicy::default(), unix_now()).unwrap()
    }
}

/// The embedding `facegate enroll` computes from these photos (same session, same order).
fn enrolment_embedding(photos: &[PathBuf]) -> Embedding {
    let mut session = EnrolmentSession::new(3, QualityGate::default(), DEFAULT_LIVE_THRESHOLD);
    for photo in photos {
        if session.is_complete() {
            break;
        }
        let frame = decode_file(photo, DecodeLimits::default()).unwrap();
        let _ = session.offer_frame(common::pipeline(), common::liveness(), &frame);
    }
    session.finish().expect("three good photos")
}

fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Every encoding of `values` a leak would plausibly use: consecutive pairs as f32 and f64, both byte orders,
/// and the decimal text of the first values.
fn leak_patterns(values: &[f32]) -> Vec<Vec<u8>> {
    let mut patterns = Vec::new();
    for pair in values.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        patterns.push([a.to_le_bytes(), b.to_le_bytes()].concat());
        patterns.push([a.to_be_bytes(), b.to_be_bytes()].concat());
        patterns.push([f64::from(a).to_le_bytes(), f64::from(b).to_le_bytes()].concat());
    }
    for v in values.iter().filter(|v| v.abs() > 0.01).take(8) {
        patterns.push(format!("{v:.6}").into_bytes());
    }
    patterns
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn cli_enrolments_leave_no_face_bytes_on_disk() {
    let device = Device::new();
    let people = common::people_with(4).into_iter().take(3).collect::<Vec<_>>();
    assert_eq!(people.len(), 3);
    for (i, (_, photos)) in people.iter().enumerate() {
        let id = format!("r-{i}");
        device.consent(&id);
        let out = device.enroll(&id, photos);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Everything the device wrote, before anything else opens the database.
    let data_files = files_under(&device.root.join("data"));
    let names: Vec<String> =
        data_files.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert!(
        names.iter().all(|n| [
            "facegate.sqlite",
            "facegate.sqlite-wal",
            "facegate.sqlite-shm",
            "facegate.sqlite-journal"
        ]
        .contains(&n.as_str())),
        "unexpected files beside the database: {names:?}"
    );
    for (path, _) in &data_files {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is readable by others ({mode:o})", path.display());
    }
    let registry = device.registry();
    assert_eq!(registry.gallery_len(), 3);
    let mut scanned = 0;
    for (_, photos) in &people {
        let embedding = enrolment_embedding(photos);
        let template = registry.protect(&embedding);
        // The probe really is what was enrolled: it identifies its resident.
        assert!(registry.identify(&embedding).is_some());
        let patterns = [leak_patterns(embedding.as_slice()), leak_patterns(template.as_slice())].concat();
        for (path, bytes) in &data_files {
            for pattern in &patterns {
                assert!(!contains(bytes, pattern), "face bytes found in {}", path.display());
            }
            for magic in [&[0xFF, 0xD8, 0xFF][..], b"\x89PNG", b"JFIF", b"Exif", b"GIF8", b"RIFF"] {
                assert!(!contains(bytes, magic), "an image signature in {}", path.display());
            }
            scanned += bytes.len();
        }
    }
    assert!(scanned > 3 * 4096, "scanned {scanned} bytes");
    drop(registry);

    // The same face under another id is refused, and nothing is stored for it.
    device.consent("r-again");
    let out = device.enroll("r-again", &people[0].1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("already matches another enrolled resident"), "{stderr}");
    assert_eq!(device.registry().gallery_len(), 3);
}

/// `facegate enroll` given printed photos of a person held up to a webcam (NUAA subject 0002) refuses every
/// one as not live, stores nothing, and says why; the same person's live frames then enrol.
#[test]
fn the_cli_refuses_to_enrol_a_printed_photo() {
    let device = Device::new();
    device.consent("r-print");
    let prints: Vec<PathBuf> = common::nuaa_frames("print", "0002").into_iter().step_by(4).collect();
    let out = device.enroll("r-print", &prints);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "enrolled from printed photos: {stderr}");
    assert!(stderr.contains("does not look like a live face"), "{stderr}");
    assert!(stderr.contains("nothing was stored"), "{stderr}");
    assert_eq!(device.registry().gallery_len(), 0);
    let live: Vec<PathBuf> = common::nuaa_frames("live", "0002").into_iter().step_by(4).collect();
    let out = device.enroll("r-print", &live);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(device.registry().gallery_len(), 1);
}

#[test]
fn a_revoked_resident_no_longer_matches_and_a_backup_of_their_row_cannot_be_opened() {
    let device = Device::new();
    let people = common::people_with(8).into_iter().take(3).collect::<Vec<_>>();
    let mut registry = device.registry();
    for (i, (_, photos)) in people.iter().enumerate() {
        let consent = ConsentRecord {
            notice_version: "2026-11".into(),
            notice_sha256: "ab".repeat(32),
            purpose: "gate".into(),
            channel: "kiosk".into(),
            granted_at: 1,
        };
        registry.record_consent(&format!("r-{i}"), None, &consent, 1).unwrap();
        // r-0 from its first five photos, kept apart from the probes; the others from any of theirs (the first
        // photos of some are not live enough for the liveness check).
        let enrol_from = if i == 0 { &photos[..5] } else { &photos[..] };
        registry.enrol(&format!("r-{i}"), &enrolment_embedding(enrol_from), 2).unwrap();
    }
    // Probes: the photos of r-0 not used for enrolment.
    let probes: Vec<Embedding> = people[0].1[5..]
        .iter()
        .filter_map(|p| common::pipeline().read_file(p, DecodeLimits::default()).ok())
        .map(|r| r.embedding)
        .collect();
    let hits = |registry: &Registry| {
        probes.iter().filter(|p| registry.identify(p).is_some_and(|m| m.resident_id == "r-0")).count()
    };
    assert!(hits(&registry) * 2 >= probes.len(), "r-0 matched {} of {} probes", hits(&registry), probes.len());

    // A backup, as an attacker or a careless admin would keep it, and the master key of that moment.
    drop(registry);
    let backup = device.root.join("backup.sqlite");
    std::fs::copy(device.db(), &backup).unwrap();
    let wal = PathBuf::from(format!("{}-wal", device.db().display()));
    if wal.exists() {
        std::fs::copy(&wal, format!("{}-wal", backup.display())).unwrap();
    }
    let old_master: [u8; 32] = std::fs::read(device.key()).unwrap().try_into().unwrap();

    let mut registry = device.registry();
    let receipt = registry.revoke("r-0", 3).unwrap();
    assert!(receipt.deleted.contains(&"sealed face template"), "{receipt:?}");
    assert_eq!(hits(&registry), 0);
    assert_eq!(hits(&device.registry()), 0, "not matchable after a restart either");
    assert_eq!(device.registry().gallery_len(), 2);

    // The backed-up row of r-0.
    let conn = rusqlite::Connection::open(&backup).unwrap();
    let (version, transform, t_nonce, t_ct): (u32, i64, Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT version, transform_id, nonce, ciphertext FROM sealed_templates WHERE resident_id = 'r-0'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let (k_nonce, k_ct): (Vec<u8>, Vec<u8>) = conn
        .query_row("SELECT nonce, ciphertext FROM wrapped_keys WHERE resident_id = 'r-0'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let sealed_row = Sealed { nonce: t_nonce.try_into().unwrap(), ciphertext: t_ct };
    let wrapped = Sealed { nonce: k_nonce.try_into().unwrap(), ciphertext: k_ct };
    let context = TemplateContext {
        resident_id: "r-0",
        version,
        transform: TransformId(u64::from_be_bytes(transform.to_be_bytes())),
    };
    // Sanity: with the master key of before, the backup opens (so the check below can fail).
    let old_data_key = protect::unwrap_key(&wrapped, &AeadKey::from_bytes(old_master), "r-0").unwrap();
    assert!(protect::open_template(&sealed_row, &old_data_key, context).is_ok());

    // With everything now on the device: every key file and every 32-byte window of the database files.
    let mut candidates: Vec<[u8; 32]> = Vec::new();
    for (_, bytes) in files_under(&device.root.join("keys")).into_iter().chain(files_under(&device.root.join("data"))) {
        for w in bytes.windows(32).step_by(1) {
            candidates.push(w.try_into().unwrap());
        }
    }
    candidates.sort_unstable();
    candidates.dedup();
    assert!(!candidates.contains(&old_master), "the old master key is still on the device");
    for candidate in &candidates {
        let key = AeadKey::from_bytes(*candidate);
        assert!(protect::unwrap_key(&wrapped, &key, "r-0").is_err());
        assert!(protect::open_template(&sealed_row, &key, context).is_err());
    }
    // And with every data key the device can still unwrap (the other residents').
    let master = AeadKey::from_bytes(std::fs::read(device.key()).unwrap().try_into().unwrap());
    let live = Store::open(&device.db()).unwrap();
    drop(live);
    let conn = rusqlite::Connection::open(device.db()).unwrap();
    let mut stmt = conn.prepare("SELECT resident_id, nonce, ciphertext FROM wrapped_keys").unwrap();
    let rows: Vec<(String, Vec<u8>, Vec<u8>)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    for (resident, nonce, ct) in rows {
        let key = protect::unwrap_key(&Sealed { nonce: nonce.try_into().unwrap(), ciphertext: ct }, &master, &resident)
            .unwrap();
        assert!(protect::open_template(&sealed_row, &key, context).is_err());
    }
    eprintln!("tried {} candidate keys from the device; none opens the revoked row", candidates.len() + 2);
}

#[test]
fn damaged_databases_wrong_keys_and_tampered_rows_give_clear_errors() {
    let device = Device::new();
    let people = common::people_with(4).into_iter().take(2).collect::<Vec<_>>();
    for (i, (_, photos)) in people.iter().enumerate() {
        device.consent(&format!("r-{i}"));
        assert!(device.enroll(&format!("r-{i}"), photos).status.success());
    }
    let no_panic = |out: &Output| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr.into_owned()
    };

    // A tampered ciphertext: that resident is reported, the other stays matchable.
    {
        let conn = rusqlite::Connection::open(device.db()).unwrap();
        conn.execute(
            "UPDATE sealed_templates SET ciphertext = substr(ciphertext, 1, 20) || X'00' || substr(ciphertext, 22)
             WHERE resident_id = 'r-1'",
            [],
        )
        .unwrap();
    }
    let out = device.cli(&["residents"]);
    let stderr = no_panic(&out);
    assert!(out.status.success() && stderr.contains("r-1") && stderr.contains("does not open"), "{stderr}");
    let registry = device.registry();
    assert_eq!((registry.gallery_len(), registry.load_failures().len()), (1, 1));
    drop(registry);

    // No database yet: a listing or a revocation says so and creates nothing.
    let other = Device::new();
    for args in [&["residents"][..], &["revoke", "--resident", "r-0"]] {
        let out = other.cli(args);
        let stderr = no_panic(&out);
        assert!(!out.status.success() && stderr.contains("no resident database"), "{stderr}");
    }
    assert!(!other.db().exists() && !other.key().exists());

    // A wrong master key.
    std::fs::create_dir_all(other.root.join("keys")).unwrap();
    std::fs::create_dir_all(other.root.join("data")).unwrap();
    std::fs::copy(device.db(), other.db()).unwrap();
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(other.key()).unwrap();
        f.write_all(&[7u8; 32]).unwrap();
    }
    let out = other.cli(&["residents"]);
    let stderr = no_panic(&out);
    assert!(!out.status.success() && stderr.contains("master key does not open"), "{stderr}");

    // A truncated file and a file of garbage.
    let bytes = std::fs::read(device.db()).unwrap();
    for (what, content) in [("truncated", bytes[..bytes.len() / 2].to_vec()), ("garbage", vec![0x5Au8; 40_960])] {
        std::fs::remove_file(other.key()).unwrap();
        std::fs::copy(device.key(), other.key()).unwrap();
        let _ = std::fs::remove_file(format!("{}-wal", other.db().display()));
        let _ = std::fs::remove_file(format!("{}-shm", other.db().display()));
        std::fs::write(other.db(), &content).unwrap();
        let out = other.cli(&["residents"]);
        let stderr = no_panic(&out);
        assert!(!out.status.success(), "{what}: {stderr}");
        assert!(stderr.contains("facegate.sqlite") && stderr.contains("restore"), "{what}: {stderr}");
    }
    // The original is untouched by all this and still serves the intact resident.
    assert_eq!(device.registry().gallery_len(), 1);
}

/// Consistency after a crash: SQLite's own check, no template without live consent or without its key, no
/// key without its template, the audit chain intact, the registry opens (finishing or undoing a key
/// rotation) and nobody without live consent is matchable.
fn assert_consistent(db: &Path, key: &Path, faces: &dyn Fn(&str) -> Option<Embedding>) {
    let store = Store::open(db).unwrap();
    store.integrity_check().unwrap();
    assert_eq!(store.orphan_counts().unwrap(), (0, 0, 0));
    store.verify_audit_chain().unwrap();
    drop(store);
    let registry = Registry::open(db, &MasterKeySource::file(key), RegistryPolicy::default(), unix_now()).unwrap();
    assert!(registry.load_failures().is_empty(), "{:?}", registry.load_failures());
    for resident in registry.store().residents().unwrap() {
        let Some(face) = faces(&resident.id) else { continue };
        let matched = registry.identify(&face).map(|m| m.resident_id);
        if resident.consent_granted_at.is_none() || resident.template_version.is_none() {
            assert_ne!(matched.as_deref(), Some(resident.id.as_str()), "{} matchable without consent", resident.id);
        } else {
            assert_eq!(matched.as_deref(), Some(resident.id.as_str()));
        }
    }
}

#[test]
fn killing_the_process_during_enrol_and_revoke_never_leaves_an_inconsistent_store() {
    let churn = Path::new(BIN).parent().unwrap().join("examples/registry_churn");
    assert!(
        churn.is_file(),
        "{} is missing: a plain `cargo test` builds the examples (with `--test residents` alone, run `cargo build --examples` first)",
        churn.display()
    );
    let device = Device::new();
    let synthetic = |id: &str| {
        let i: usize = id.strip_prefix("c-")?.parse().ok()?;
        let mut raw = vec![0.0f32; EMBEDDING_DIM];
        raw[i] = 1.0;
        Embedding::from_raw(&raw)
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    let (mut kills, mut ops, mut promoted) = (0, 0u64, 0);
    let started = Instant::now();
    while kills < 120 {
        let mut child = Command::new(&churn)
            .args([device.db().to_str().unwrap(), device.key().to_str().unwrap(), &kills.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.random_range(2_000..120_000)));
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("Error") && !stderr.contains("panicked"), "churn failed on its own: {stderr}");
        ops += String::from_utf8_lossy(&out.stdout).lines().last().and_then(|l| l.parse::<u64>().ok()).unwrap_or(0);
        kills += 1;
        if device.root.join("keys/master.key.next").exists() {
            promoted += 1;
        }
        assert_consistent(&device.db(), &device.key(), &synthetic);
    }
    eprintln!(
        "{kills} kills of the churn process, {ops} enrol/revoke operations committed, {promoted} kills left a staged \
         master key to settle, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(ops > 200, "only {ops} operations ran between kills; the kills did not land mid-work");

    // The real binary, killed during `enroll` and `revoke` of real photos.
    let people = common::people_with(4).into_iter().take(2).collect::<Vec<_>>();
    let photos = |i: usize| people[i].1.clone();
    for i in 0..2 {
        device.consent(&format!("p-{i}"));
    }
    let mut cli_kills = 0;
    for round in 0..24 {
        let i = round % 2;
        let id = format!("p-{i}");
        let enrolled =
            device.registry().store().residents().unwrap().iter().any(|r| r.id == id && r.template_version.is_some());
        let mut args: Vec<String> = vec!["--models".into(), common::models_dir().display().to_string()];
        if enrolled {
            args.extend(["revoke".into(), "--resident".into(), id.clone()]);
        } else {
            if !device.registry().store().has_live_consent(&id).unwrap() {
                device.consent(&id);
            }
            args.extend(["enroll".into(), "--resident".into(), id.clone()]);
            args.extend(photos(i).iter().map(|p| p.display().to_string()));
        }
        args.extend([
            "--db".into(),
            device.db().display().to_string(),
            "--key-file".into(),
            device.key().display().to_string(),
        ]);
        let mut child = Command::new(BIN).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(50..900)));
        let _ = child.kill();
        let _ = child.wait();
        cli_kills += 1;
        let real_faces = |id: &str| {
            let i: usize = id.strip_prefix("p-")?.parse().ok()?;
            Some(enrolment_embedding(&photos(i)))
        };
        assert_consistent(&device.db(), &device.key(), &|id| synthetic(id).or_else(|| real_faces(id)));
    }
    eprintln!("{cli_kills} kills of `facegate enroll`/`facegate revoke`");
}
