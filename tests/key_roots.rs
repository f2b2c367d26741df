//! Issue 18: keys a thief cannot lift. A device's data and key folders copied to another machine (another
//! TPM, another board's OTP key) open nothing: no template, no PIN verifier, no pass key, no compound secret,
//! no signing or TLS key; the device itself restarts and admits its residents. The same copy of a `file`
//! root device opens everything, and the audit says so. Real TPM code against Debian's `swtpm`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use facegate::audit::sign::AuditSigner;
use facegate::audit::{run_audit, AuditScope, Status};
use facegate::capture::DecodeLimits;
use facegate::policy::consent::ConsentRecord;
use facegate::policy::decide::PinCheck;
use facegate::protect::keys::root::{OtpSource, RootSettings};
use facegate::protect::keys::{self, KeyError, KeyWrap, RootError, RootKind};
use facegate::protect::Pin;
use facegate::registry::{MasterKeySource, Registry, RegistryPolicy};
use facegate::vision::embed::Embedding;

use common::tpm::SoftTpm;

const NOW: i64 = 1_790_000_000;

/// A device's two folders, as on the card.
struct Card {
    _root: tempfile::TempDir,
    data: PathBuf,
    keys: PathBuf,
}

impl Card {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let (data, keys) = (root.path().join("data"), root.path().join("keys"));
        std::fs::create_dir_all(&data).unwrap();
        Self { _root: root, data, keys }
    }

    fn db(&self) -> PathBuf {
        self.data.join("facegate.sqlite")
    }

    fn master(&self, wrap: KeyWrap) -> MasterKeySource {
        MasterKeySource { file: self.keys.join("master.key"), wrap }
    }

    /// Both folders copied byte for byte (what `dd` of the card, or a backup of it, gives).
    fn copy(&self) -> Card {
        let copy = Card::new();
        for (from, to) in [(&self.data, &copy.data), (&self.keys, &copy.keys)] {
            let status =
                std::process::Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(to).status();
            assert!(status.unwrap().success());
        }
        copy
    }
}

fn consent() -> ConsentRecord {
    ConsentRecord {
        notice_version: "2026-12".into(),
        notice_sha256: "ab".repeat(32),
        purpose: "opening the compound gate".into(),
        channel: "kiosk".into(),
        granted_at: NOW,
    }
}

fn embed(photo: &Path) -> Embedding {
    common::pipeline().read_file(photo, DecodeLimits::default()).unwrap().embedding
}

/// What the device holds, and the secrets in clear that no copy may reveal.
struct Planted {
    probes: Vec<(String, Embedding)>,
    pin: (String, String),
    pass: String,
    secrets: Vec<(&'static str, Vec<u8>)>,
}

/// Residents enrolled from the shared photos (a probe of each from another photo), a PIN, a visitor pass, and
/// every key file of a compound gate with its portal and audit key, under `wrap`.
fn plant(card: &Card, wrap: &KeyWrap) -> Planted {
    let mut registry = Registry::open(&card.db(), &card.master(wrap.clone()), RegistryPolicy::default(), NOW).unwrap();
    let mut probes = Vec::new();
    for (i, (_, photos)) in common::people_with(2).into_iter().take(3).enumerate() {
        let id = format!("r-{i}");
        registry.record_consent(&id, None, &consent(), NOW).unwrap();
        registry.enrol(&id, &embed(&photos[0]), NOW).unwrap();
        probes.push((id, embed(&photos[1])));
    }
    let code = registry.set_pin("r-0", None, &Pin::parse("4071").unwrap(), NOW).unwrap();
    let (_, pass) = registry.issue_pass(NOW, NOW + 3_600, NOW).unwrap();
    drop(registry);
    // A gate's compound files as `facegate keys migrate` leaves them: sealed under the root.
    let compound_secret: [u8; 32] = rand::random();
    keys::write_secret(&card.keys.join("compound/compound.key"), wrap, &compound_secret).unwrap();
    let gate_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    keys::write_secret(&card.keys.join("compound/gate.key"), wrap, gate_key.as_bytes()).unwrap();
    AuditSigner::load_or_create(&card.keys, wrap).unwrap();
    facegate::portal::ensure_certificate(&card.keys.join("portal-cert.pem"), &card.keys.join("portal-key.pem"), wrap)
        .unwrap();
    let mut secrets = vec![("compound secret", compound_secret.to_vec()), ("gate key", gate_key.into_bytes())];
    for (what, file) in
        [("master key", "master.key"), ("audit signing key", "audit-signing.key"), ("portal key", "portal-key.pem")]
    {
        secrets.push((what, keys::read_secret(&card.keys.join(file), wrap).unwrap().unwrap().to_vec()));
    }
    Planted { probes, pin: (code, "4071".into()), pass, secrets }
}

/// Everything a thief holding `copy` can try: each wrap they can make (none, an empty passphrase, and the
/// root of the machine they have, if it gives them any key) must open no key file and no registry, and no
/// file of the copy may hold a secret in clear.
fn assert_opens_nothing(copy: &Card, theirs: Result<KeyWrap, KeyError>, planted: &Planted) {
    let mut wraps = vec![KeyWrap::Plain, KeyWrap::Passphrase(zeroize::Zeroizing::new(String::new()))];
    match theirs {
        Ok(wrap) => wraps.push(wrap),
        Err(e) => assert!(
            matches!(&e, KeyError::Root(RootError::Foreign { .. })) && e.to_string().contains("another TPM"),
            "a foreign TPM must refuse the sealed key, saying why: {e}"
        ),
    }
    for wrap in &wraps {
        for entry in keys::inventory(&copy.keys) {
            let opened = keys::read_secret(&entry.path, wrap);
            assert!(opened.is_err(), "{} opened under {wrap:?} on the thief's machine", entry.path.display());
        }
        let opened = Registry::open(&copy.db(), &copy.master(wrap.clone()), RegistryPolicy::default(), NOW);
        assert!(opened.is_err(), "the copied registry opened under {wrap:?}");
    }
    for entry in walkdir::WalkDir::new(copy.data.parent().unwrap()).into_iter().filter_map(Result::ok) {
        if !entry.file_type().is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        for (what, secret) in &planted.secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
                "the {what} is in clear in {}",
                entry.path().display()
            );
        }
    }
}

/// The device, restarted with its own root: every resident admitted, the PIN and the pass accepted.
fn assert_device_admits(card: &Card, settings: &RootSettings, planted: &Planted) {
    let wrap = settings.open(&card.keys, None).unwrap();
    let mut registry = Registry::open(&card.db(), &card.master(wrap.clone()), RegistryPolicy::default(), NOW).unwrap();
    assert!(registry.load_failures().is_empty());
    for (id, probe) in &planted.probes {
        let found = registry.identify(probe).map(|m| m.resident_id);
        assert_eq!(found.as_deref(), Some(id.as_str()), "resident {id} not admitted after the restart");
    }
    let (code, pin) = &planted.pin;
    let check = registry.check_pin(code, &Pin::parse(pin).unwrap(), Instant::now(), NOW + 1).unwrap();
    assert_eq!(check, PinCheck::Accepted);
    assert!(registry.check_pass(&planted.pass, NOW + 2).unwrap().is_ok(), "the visitor pass no longer opens");
    for file in ["compound/compound.key", "compound/gate.key", "audit-signing.key", "portal-key.pem"] {
        keys::read_secret(&card.keys.join(file), &wrap).unwrap().unwrap();
    }
    let mut scope = AuditScope::new(card.db(), card.keys.clone(), wrap, 365 * 86_400);
    scope.unit_files.clear();
    let report = run_audit(&scope, NOW);
    let check = report.checks.iter().find(|c| c.id == "keys").unwrap();
    assert_eq!(check.status, Status::Pass, "{:?}", check.details);
}

fn tpm_settings(tpm: &SoftTpm, pcrs: Vec<u8>) -> RootSettings {
    RootSettings { kind: RootKind::Tpm, tpm_tcti: tpm.tcti(), tpm_pcrs: pcrs, ..RootSettings::default() }
}

#[test]
fn a_card_copied_to_another_tpm_opens_nothing_and_the_device_still_admits_its_residents() {
    let (device_tpm, thief_tpm) = (SoftTpm::start(), SoftTpm::start());
    let card = Card::new();
    let ours = tpm_settings(&device_tpm, Vec::new());
    let wrap = ours.open(&card.keys, None).unwrap();
    assert!(card.keys.join("root.tpm").is_file());
    let planted = plant(&card, &wrap);
    drop(wrap);
    assert!(
        keys::inventory(&card.keys).iter().all(|e| e.form == keys::Form::Root),
        "{:?}",
        keys::inventory(&card.keys)
    );

    let copy = card.copy();
    assert_opens_nothing(&copy, tpm_settings(&thief_tpm, Vec::new()).open(&copy.keys, None), &planted);
    assert_device_admits(&card, &ours, &planted);
}

#[test]
fn a_card_moved_to_another_board_opens_nothing_under_its_otp_key() {
    let boards = tempfile::tempdir().unwrap();
    let board = |name: &str| RootSettings {
        kind: RootKind::PiOtp,
        otp: OtpSource::StandIn(boards.path().join(name)),
        ..RootSettings::default()
    };
    let card = Card::new();
    let wrap = board("ours").open(&card.keys, None).unwrap();
    let planted = plant(&card, &wrap);
    drop(wrap);
    let copy = card.copy();
    // Another board's device key gives a key-encryption key, just not this device's.
    let theirs = board("theirs").open(&copy.keys, None);
    assert!(theirs.is_ok());
    assert_opens_nothing(&copy, theirs, &planted);
    assert_device_admits(&card, &board("ours"), &planted);
}

#[test]
fn a_file_root_card_copied_opens_everything_and_the_audit_warns() {
    let card = Card::new();
    let planted = plant(&card, &KeyWrap::Plain);
    let copy = card.copy();
    // What the stolen-card test forbids, the file root allows: the copy matches every resident.
    let registry = Registry::open(&copy.db(), &copy.master(KeyWrap::Plain), RegistryPolicy::default(), NOW).unwrap();
    for (id, probe) in &planted.probes {
        assert_eq!(registry.identify(probe).map(|m| m.resident_id).as_deref(), Some(id.as_str()));
    }
    let secret = keys::read_secret(&copy.keys.join("compound/compound.key"), &KeyWrap::Plain).unwrap().unwrap();
    assert_eq!(secret.as_slice(), planted.secrets[0].1.as_slice());
    let mut scope = AuditScope::new(card.db(), card.keys.clone(), KeyWrap::Plain, 365 * 86_400);
    scope.unit_files.clear();
    let report = run_audit(&scope, NOW);
    let check = report.checks.iter().find(|c| c.id == "keys").unwrap();
    assert_eq!(check.status, Status::Warn);
    assert!(check.details[0].contains("keys are on the card"), "{:?}", check.details);
    assert!(check.details.iter().any(|d| d.contains("master.key") && d.contains("in clear")), "{:?}", check.details);
}

#[test]
fn a_key_bound_to_pcrs_is_refused_once_they_change() {
    use std::str::FromStr;
    use tss_esapi::handles::PcrHandle;
    use tss_esapi::interface_types::algorithm::HashingAlgorithm;
    use tss_esapi::structures::{Digest, DigestValues};
    let tpm = SoftTpm::start();
    let card = Card::new();
    let settings = tpm_settings(&tpm, vec![16]);
    let kek = settings.open(&card.keys, None).unwrap();
    keys::write_secret(&card.keys.join("master.key"), &kek, &[7u8; 32]).unwrap();
    assert!(keys::read_secret(&card.keys.join("master.key"), &settings.open(&card.keys, None).unwrap()).is_ok());
    // Unbound settings are refused rather than silently re-sealing.
    let err = tpm_settings(&tpm, Vec::new()).open(&card.keys, None).unwrap_err();
    assert!(err.to_string().contains("tpm_pcrs"), "{err}");
    // What a changed boot chain does: extend the PCR.
    let mut ctx = tss_esapi::Context::new(tss_esapi::TctiNameConf::from_str(&tpm.tcti()).unwrap()).unwrap();
    let mut values = DigestValues::new();
    values.set(HashingAlgorithm::Sha256, Digest::try_from(vec![0x42u8; 32]).unwrap());
    ctx.execute_with_nullauth_session(|ctx| ctx.pcr_extend(PcrHandle::Pcr16, values)).unwrap();
    drop(ctx);
    let err = settings.open(&card.keys, None).unwrap_err();
    assert!(matches!(&err, KeyError::Root(RootError::Refused { .. })), "{err}");
    assert!(err.to_string().contains("PCRs"), "{err}");
}

/// A config for `card` with `[keys]` as given (the portal's files in the key folder by default).
fn config_for(card: &Card, keys_section: &str) -> PathBuf {
    let path = card.data.parent().unwrap().join("facegate.toml");
    let text = format!(
        "[audit]\nsystem_places = false\n[store]\ndatabase = \"{}\"\nmaster_key = \"{}\"\n[keys]\n{keys_section}\n",
        card.db().display(),
        card.keys.join("master.key").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn one_command_moves_a_file_root_device_onto_the_tpm_and_destroys_the_clear_keys() {
    let tpm = SoftTpm::start();
    let card = Card::new();
    let planted = plant(&card, &KeyWrap::Plain);
    let config = config_for(&card, &format!("root = \"tpm\"\ntpm_tcti = \"{}\"", tpm.tcti()));
    // Before the move, the daemon and the CLI refuse a clear key under a hardware root, saying what to run.
    let refused = common::daemon::facegate(Some(&config), &["residents"], None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("facegate keys migrate"), "{stderr}");
    let out = common::daemon::facegate(Some(&config), &["keys", "migrate"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("5 key file(s) moved"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        keys::inventory(&card.keys).iter().all(|e| e.form == keys::Form::Root),
        "{:?}",
        keys::inventory(&card.keys)
    );
    // No clear copy left anywhere on the card (the old files were overwritten, then replaced).
    let copy = card.copy();
    let thief = SoftTpm::start();
    assert_opens_nothing(&copy, tpm_settings(&thief, Vec::new()).open(&copy.keys, None), &planted);
    assert_device_admits(&card, &tpm_settings(&tpm, Vec::new()), &planted);
    let status = common::daemon::facegate(Some(&config), &["keys", "status", "--json"], None);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!((status["root"].as_str(), status["opens"].as_bool()), (Some("tpm"), Some(true)), "{status}");
    assert_eq!(status["keys_on_card"].as_bool(), Some(false), "{status}");
}

#[test]
fn a_pass_issued_before_the_pass_key_rotates_is_refused_after_it_even_by_a_running_daemon() {
    let card = Card::new();
    let config = config_for(&card, "root = \"file\"");
    let master = card.master(KeyWrap::Plain);
    // The daemon's registry, open throughout.
    let mut daemon = Registry::open(&card.db(), &master, RegistryPolicy::default(), NOW).unwrap();
    let (_, old) = daemon.issue_pass(NOW, NOW + 86_400, NOW).unwrap();
    let (_, spare) = daemon.issue_pass(NOW, NOW + 86_400, NOW).unwrap();
    assert!(daemon.check_pass(&old, NOW + 1).unwrap().is_ok());
    let out = common::daemon::facegate(Some(&config), &["keys", "rotate", "--pass-key"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("every pass issued before now no longer opens"));
    daemon.reload().unwrap();
    let refused = daemon.check_pass(&spare, NOW + 2).unwrap();
    assert!(refused.is_err(), "a pass signed with the old key still opens after the rotation");
    let (_, fresh) = daemon.issue_pass(NOW, NOW + 86_400, NOW + 3).unwrap();
    assert!(daemon.check_pass(&fresh, NOW + 4).unwrap().is_ok());
    // A fresh process agrees.
    drop(daemon);
    let mut again = Registry::open(&card.db(), &master, RegistryPolicy::default(), NOW + 5).unwrap();
    assert!(again.check_pass(&spare, NOW + 6).unwrap().is_err());
}

#[test]
fn the_audit_key_and_the_portal_certificate_rotate() {
    let card = Card::new();
    let config = config_for(&card, "root = \"file\"");
    let before = AuditSigner::load_or_create(&card.keys, &KeyWrap::Plain).unwrap().public_key_hex();
    let out = common::daemon::facegate(Some(&config), &["keys", "rotate", "--audit-key"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = AuditSigner::load_or_create(&card.keys, &KeyWrap::Plain).unwrap().public_key_hex();
    assert_ne!(before, after);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&facegate::audit::sign::fingerprint(&after)));
    let (cert, key) = (card.keys.join("portal-cert.pem"), card.keys.join("portal-key.pem"));
    let first = facegate::portal::ensure_certificate(&cert, &key, &KeyWrap::Plain).unwrap();
    let out = common::daemon::facegate(Some(&config), &["keys", "rotate", "--portal-cert"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = facegate::portal::cert_fingerprint(&cert).unwrap();
    assert_ne!(first, second);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&second));
}

/// The compound key is renewed after a revocation. A copy of the earlier key (a stolen gate's, or one with
/// the broker's disk) opens nothing sent after it, and what it seals is refused, even published with a
/// certificate the broker accepts; before the renewal the same forgery is taken (which is why it matters).
/// A gate whose folder predates the renewal is granted the new epochs; `compound rekey` renews at once.
#[test]
fn a_revocation_renews_the_compound_key_so_an_earlier_copy_opens_and_forges_nothing_after() {
    use common::compound::{compound_status, facegate as cli, wait_applied, Broker, Gate, Thief, COMPOUND};
    use facegate::compound::envelope::inbox_prefix;
    use facegate::compound::{Announcement, CompoundKeys, EnvelopeError};
    use std::time::Duration;

    common::compound::nats_server();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let compound = root.join("compound");
    let dir = compound.to_str().unwrap();
    let port = common::daemon::free_port();
    let listen = format!("127.0.0.1:{port}");
    let store = root.join("broker-store");
    let install = compound.join("broker");
    let init = ["compound", "init", "--dir", dir, "--name", COMPOUND, "--listen", &listen];
    let more = ["--install-dir", install.to_str().unwrap(), "--store-dir", store.to_str().unwrap()];
    cli(&[&init[..], &more[..]].concat(), None);
    for gate in ["gate-a", "gate-b", "gate-c", "gate-d"] {
        cli(&["compound", "add-gate", "--dir", dir, "--gate", gate], None);
    }
    let mut broker = Broker { conf: compound.join("broker/nats-server.conf"), port, child: None };
    broker.start();
    let mut gates = common::compound::gates_started(root, &compound, port, &["gate-a", "gate-b", "gate-c"], 2);
    // The thief: the compound key as `compound init` made it, and a certificate the broker accepts (gate D's,
    // issued but never installed).
    let first: [u8; 32] = std::fs::read(compound.join("compound.key")).unwrap().try_into().unwrap();
    let old = CompoundKeys::derive(&facegate::protect::AeadKey::from_bytes(first), COMPOUND);
    let thief = Thief::connect(&compound.join("gates/gate-d"), port, &inbox_prefix(COMPOUND, "gate-d"));
    thief.capture(&old.stream());
    let forge = |resident: &str| {
        let dim = facegate::vision::embed::EMBEDDING_DIM;
        let values: Vec<f32> = (0..dim).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 } / (dim as f32).sqrt()).collect();
        let template = facegate::protect::ProtectedTemplate::from_values(&values, old.rotation().id()).unwrap();
        let consent = ConsentRecord {
            notice_version: "1".into(),
            notice_sha256: "ab".repeat(32),
            purpose: "opening the compound's gates".into(),
            channel: "kiosk".into(),
            granted_at: NOW,
        };
        let stamp = facegate::policy::consent::Stamp { generation: 1, version: 1 };
        let origin = "gate-d".to_owned();
        let forged = Announcement::Template { origin, resident: resident.into(), consent, template, stamp };
        let (subject, payload) = old.seal(&forged).unwrap();
        thief.publish(&subject, payload).unwrap()
    };
    let known = |gate: &Gate, resident: &str| common::compound::template_version(gate, resident).is_some();

    // Before any revocation the copied key is as good as a gate's: a forged enrolment is taken.
    let seq = forge("r-forged-1");
    wait_applied(&gates[1], seq);
    assert!(known(&gates[1], "r-forged-1"), "control: the forgery under the key in force was not taken");

    // r-1 enrols at gate A and revokes there: gate A renews the key, both gates take the renewal.
    let notice = root.join("notice.txt");
    std::fs::write(&notice, "Face entry at the gates of Maple Court.").unwrap();
    let enrol = |gate: &Gate, resident: &str, subject: &str| {
        let n = notice.to_str().unwrap();
        gate.cli(&["consent", "--resident", resident, "--notice", n, "--notice-version", "1"], None);
        let photos: Vec<String> = common::nuaa_frames("live", subject)
            .into_iter()
            .step_by(4)
            .take(8)
            .map(|p| p.display().to_string())
            .collect();
        let mut args = vec!["enroll", "--resident", resident];
        args.extend(photos.iter().map(String::as_str));
        let since = Instant::now();
        gate.cli(&args, None);
        since
    };
    let since = enrol(&gates[0], "r-1", "0001");
    gates[1].wait_for("enrolment from the compound stored", since, Duration::from_secs(10));
    let revoked = Instant::now();
    gates[0].cli(&["revoke", "--resident", "r-1"], None);
    for gate in &gates[..2] {
        gate.wait_for("compound key renewed", revoked, Duration::from_secs(10));
        assert_eq!(compound_status(gate)["key_epoch"], 1, "{}", gate.name);
    }
    // The renewal opens with the old key (it is sealed under it), but holds no share the thief could open:
    // only the member gates' (A and B), none for gate D.
    let renewals = thief.captured_on(&format!("facegate.{COMPOUND}.gate-a.renewal.1"));
    match old.open(&format!("facegate.{COMPOUND}.gate-a.renewal.1"), &renewals[0]).unwrap().1 {
        Announcement::Renewal { shares, .. } => {
            let names: Vec<&str> = shares.iter().map(|s| s.gate.as_str()).collect();
            assert_eq!(names, ["gate-a", "gate-b"]);
        }
        other => panic!("{other:?}"),
    }

    // After the renewal the same forgery is refused.
    let forged = Instant::now();
    let seq = forge("r-forged-2");
    wait_applied(&gates[1], seq);
    assert!(!known(&gates[1], "r-forged-2"), "a forgery under the earlier key was taken after the renewal");
    assert!(!gates[1].lines_since("replaced by epoch 1", forged).is_empty(), "no refusal logged");

    // What is sent after it does not open with the earlier key: r-2's enrolment.
    let since = enrol(&gates[0], "r-2", "0002");
    gates[1].wait_for("enrolment from the compound stored", since, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let r2 = thief.captured_on(&old.resident_subject("gate-a", "r-2"));
    assert!(!r2.is_empty());
    for payload in &r2 {
        let opened = old.open(&old.resident_subject("gate-a", "r-2"), payload).map(|(epoch, _)| epoch);
        assert_eq!(opened, Err(EnvelopeError::UnknownEpoch(1)), "the earlier key opens r-2's template");
    }
    // ... while what was sent before it still does (the reason a key copy matters).
    let r1 = thief.captured_on(&old.resident_subject("gate-a", "r-1"));
    assert!(old.open(&old.resident_subject("gate-a", "r-1"), &r1[0]).is_ok());

    // Gate C joins now with the folder `add-gate` made (epoch 0 only): it is granted epoch 1 and takes r-2.
    let joined = Instant::now();
    gates[2].start();
    gates[2].wait_for("were granted", joined, Duration::from_secs(60));
    gates[2].wait_for("face matching on", joined, Duration::from_secs(60));
    assert!(known(&gates[2], "r-2") && !known(&gates[2], "r-forged-2") && !known(&gates[2], "r-1"));

    // `compound rekey` renews at once, without a revocation; every gate follows.
    let rekeyed = Instant::now();
    gates[1].cli(&["compound", "rekey"], None);
    for gate in &gates {
        gate.wait_for("epoch=2", rekeyed, Duration::from_secs(10));
        assert_eq!(compound_status(gate)["key_epoch"], 2, "{}", gate.name);
    }

    // A replay of gate B's echo of r-1's tombstone (sealed under an epoch replaced since) makes gate B
    // announce its word again. That is no revocation: it renews nothing. Before, each such replay (or an echo
    // that crossed a renewal) made gate B renew the compound key, so a replayer could force renewals at will.
    let echo = thief.captured_on(&old.resident_subject("gate-b", "r-1"));
    assert!(!echo.is_empty(), "gate B did not echo r-1's tombstone");
    let as_b = Thief::connect(&compound.join("gates/gate-b"), port, &inbox_prefix(COMPOUND, "gate-b"));
    let replayed = Instant::now();
    let seq = as_b.publish(&old.resident_subject("gate-b", "r-1"), echo[0].clone()).unwrap();
    wait_applied(&gates[1], seq);
    gates[1].wait_for("announced to the compound kind=revoked", replayed, Duration::from_secs(10));
    // Several heartbeats (0.3 s each here): a renewal owed would have been announced by then.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        gates[1].lines_since("renewal of the compound key announced", replayed).is_empty(),
        "a re-announcement renewed"
    );
    for gate in &gates {
        assert_eq!(compound_status(gate)["key_epoch"], 2, "{}", gate.name);
    }
    for gate in &mut gates {
        gate.stop();
    }
    broker.stop();
}
