//! Three gates of one compound over a real NATS broker (Debian's `nats-server`, JetStream on disk, mutual TLS
//! with certificates made by `facegate compound`), each gate a real `facegate run` process with a replay
//! camera, a real SQLite file and the real models. Every gate reaches the broker through a loopback relay the
//! test can cut, as a cable would be.
//!
//! Shown: an enrolment at gate A opens gate C within 2 s; a revocation at gate B stops every gate within 2 s;
//! gate C, cut off while a resident revokes, refuses every face once past the offline limit, refuses the
//! revoked face after it reconnects, and its PIN keypad works throughout; a broker restart and a gate restart
//! lose no revocation; what the broker carried and stored holds no embedding floats, no image, no resident id.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::facegate::policy::passage::{EntryMethod, PassageOutcome};
use common::compound::{
    facegate, nats_server, template_version, wait_applied, Broker, Gate, Relay, Thief, COMPOUND, FACE_OPENED,
    OFFLINE_LIMIT_S,
};
use common::daemon::free_port;

/// Every payload the broker sees on the compound's subjects, as a subscriber with the compound's administrator
/// certificate receives them (a gate's may not subscribe to them).
fn observe(compound: &Path, port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<(String, Vec<u8>)>> {
    let bundle = compound.join("admin");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            use futures_util::StreamExt;
            let client = async_nats::ConnectOptions::new()
                .add_root_certificates(bundle.join("ca.pem"))
                .add_client_certificate(bundle.join("gate.pem"), bundle.join("gate.key"))
                .require_tls(true)
                .retry_on_initial_connect()
                .connect(format!("tls://127.0.0.1:{port}"))
                .await
                .unwrap();
            let mut sub = client.subscribe(format!("facegate.{COMPOUND}.>")).await.unwrap();
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
                    seen.push((message.subject.to_string(), message.payload.to_vec()));
                }
            }
            seen
        })
    })
}

/// Whether a client with this certificate bundle (or none) gets a working connection to the broker.
fn broker_accepts(ca: &Path, client: Option<&Path>, port: u16) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut options = async_nats::ConnectOptions::new()
            .add_root_certificates(ca.to_path_buf())
            .require_tls(true)
            .connection_timeout(Duration::from_secs(3));
        if let Some(bundle) = client {
            options = options.add_client_certificate(bundle.join("gate.pem"), bundle.join("gate.key"));
        }
        match options.connect(format!("tls://127.0.0.1:{port}")).await {
            // The server may close a refused client just after the handshake: ask it something.
            Ok(client) => client.flush().await.is_ok() && client.server_info().server_name.contains(COMPOUND),
            Err(_) => false,
        }
    })
}

fn nuaa(subject: &str, start: usize) -> Vec<PathBuf> {
    common::nuaa_frames("live", subject).into_iter().skip(start).step_by(4).take(8).collect()
}

#[test]
fn three_gates_enrol_once_revoke_everywhere_survive_cuts_and_restarts() {
    let nats = nats_server();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let compound = root.join("compound");
    let broker_port = free_port();
    let listen = format!("127.0.0.1:{broker_port}");
    let store_dir = root.join("broker-store");
    facegate(
        &[
            "compound",
            "init",
            "--dir",
            compound.to_str().unwrap(),
            "--name",
            COMPOUND,
            "--listen",
            &listen,
            "--install-dir",
            compound.join("broker").to_str().unwrap(),
            "--store-dir",
            store_dir.to_str().unwrap(),
        ],
        None,
    );
    for gate in ["gate-a", "gate-b", "gate-c"] {
        facegate(&["compound", "add-gate", "--dir", compound.to_str().unwrap(), "--gate", gate], None);
    }
    eprintln!("broker: {} on {listen}", nats.display());
    let mut broker = Broker { conf: compound.join("broker/nats-server.conf"), port: broker_port, child: None };
    broker.start();
    // Mutual TLS: a gate's certificate opens the broker; none, or one from another compound's CA, does not.
    let other = root.join("other-compound");
    facegate(&["compound", "init", "--dir", other.to_str().unwrap(), "--name", "oak-yard"], None);
    facegate(&["compound", "add-gate", "--dir", other.to_str().unwrap(), "--gate", "gate-a"], None);
    let ca = compound.join("ca.pem");
    assert!(broker_accepts(&ca, Some(&compound.join("admin")), broker_port));
    assert!(broker_accepts(&ca, Some(&compound.join("gates/gate-a")), broker_port));
    assert!(!broker_accepts(&ca, None, broker_port), "the broker let in a client without a certificate");
    assert!(!broker_accepts(&ca, Some(&other.join("gates/gate-a")), broker_port), "another compound's gate got in");
    let stop_observing = Arc::new(AtomicBool::new(false));
    let observer = observe(&compound, broker_port, stop_observing.clone());

    let relays: Vec<Relay> = (0..3).map(|_| Relay::new(broker_port)).collect();
    let mut gates: Vec<Gate> = ["gate-a", "gate-b", "gate-c"]
        .into_iter()
        .zip(&relays)
        .map(|(name, relay)| Gate::new(root, name, &compound, relay.port))
        .collect();
    let (x_enrol, x_seen) = (nuaa("0001", 0), nuaa("0001", 2));
    let (y_enrol, y_seen) = (nuaa("0002", 0), nuaa("0002", 2));
    let (z_enrol, z_seen) = (nuaa("0003", 0), nuaa("0003", 2));
    let notice = root.join("notice.txt");
    std::fs::write(&notice, "Face entry at the gates of Maple Court (gates A, B and C hold your template).").unwrap();

    // A keypad resident at gate C (PINs stay on their gate).
    gates[2].cli(
        &[
            "consent",
            "--resident",
            "r-pin",
            "--unit",
            "3-401",
            "--notice",
            notice.to_str().unwrap(),
            "--notice-version",
            "1",
        ],
        None,
    );
    gates[2].cli(&["pin", "--resident", "r-pin", "--code", "340112"], Some("4071\n"));

    let started = Instant::now();
    for gate in &mut gates {
        gate.show(&x_seen);
        gate.start();
    }
    for gate in &gates {
        gate.wait_for("face matching on", started, Duration::from_secs(60));
    }
    gates[2].pin_opens();
    // The consent notice names the devices that hold a template.
    let signage = String::from_utf8(gates[1].cli(&["signage"], None).stdout).unwrap();
    assert!(signage.contains("the 3 gates of this compound (gate-a, gate-b, gate-c)"), "{signage}");

    // 1. Enrol X at gate A: gate C, whose camera sees X, opens within 2 s.
    let enrol = |gate: &Gate, resident: &str, photos: &[PathBuf]| {
        gate.cli(
            &["consent", "--resident", resident, "--notice", notice.to_str().unwrap(), "--notice-version", "1"],
            None,
        );
        let mut args = vec!["enroll".to_owned(), "--resident".into(), resident.into()];
        args.extend(photos.iter().map(|p| p.display().to_string()));
        gate.cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
        Instant::now()
    };
    let enrolled = enrol(&gates[0], "r-x", &x_enrol);
    let opened = gates[2].wait_for(FACE_OPENED, enrolled, Duration::from_secs(10));
    let latency = opened - enrolled;
    eprintln!("enrolled at A -> opened at C in {latency:?}");
    assert!(latency < Duration::from_secs(2), "enrolment at A took {latency:?} to open gate C");
    for gate in &gates[..2] {
        gate.wait_for(FACE_OPENED, enrolled, Duration::from_secs(10));
    }
    let y_at = enrol(&gates[0], "r-y", &y_enrol);
    let z_at = enrol(&gates[0], "r-z", &z_enrol);
    for gate in &gates[1..] {
        let since = y_at.min(z_at) - Duration::from_secs(1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while gate.lines_since("enrolment from the compound stored", since).len() < 2 {
            assert!(Instant::now() < deadline, "{}: Y and Z not stored", gate.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // 2. Revoke X at gate B: no gate opens for X from 2 s on (every camera still sees X).
    // Timed from the moment the command starts (it opens the store, shreds, rotates keys, waits for the
    // broker's acknowledgement).
    let revoked = Instant::now();
    let out = gates[1].cli(&["revoke", "--resident", "r-x", "--json"], None);
    eprintln!("revoke command took {:?}", revoked.elapsed());
    let receipt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(receipt["resident"], "r-x");
    assert_eq!(receipt["compound"], "announced", "{receipt}");
    std::thread::sleep(Duration::from_secs(8));
    for gate in [&gates[0], &gates[2]] {
        let applied = gate.wait_for("revocation from the compound", revoked - Duration::from_secs(1), Duration::ZERO);
        eprintln!(
            "revoke started at B -> shredded at {} after {:?}",
            gate.name,
            applied.saturating_duration_since(revoked)
        );
    }
    for gate in &gates {
        let late = gate.lines_since(FACE_OPENED, revoked + Duration::from_secs(2));
        assert!(late.is_empty(), "{} opened for the revoked X {:?} after the revocation", gate.name, late[0] - revoked);
    }

    // 3. Gate C sees Y (valid) and opens; then its cable is cut and Z revokes at gate B meanwhile.
    gates[2].show(&y_seen);
    let shown_y = Instant::now();
    gates[2].wait_for(FACE_OPENED, shown_y, Duration::from_secs(10));
    relays[2].cut();
    let cut = Instant::now();
    gates[1].cli(&["revoke", "--resident", "r-z"], None);
    gates[0].wait_for("revocation from the compound", cut, Duration::from_secs(5));
    // Past the offline limit: gate C refuses every face (Y is in view and valid), the keypad still opens.
    let off = gates[2].wait_for("face matching off", cut, Duration::from_secs(OFFLINE_LIMIT_S + 10));
    assert!(
        off - cut >= Duration::from_secs(OFFLINE_LIMIT_S) - Duration::from_millis(300),
        "off after {:?}",
        off - cut
    );
    gates[2].pin_opens();
    std::thread::sleep(Duration::from_secs(4));
    let during = gates[2].lines_since(FACE_OPENED, off + Duration::from_millis(500));
    assert!(during.is_empty(), "gate C opened by face while cut off past the limit");
    assert!(
        gates[2].lines_since("revocation from the compound", cut).is_empty(),
        "the cut did not cut: gate C heard the revocation"
    );
    // The camera now sees Z (revoked while C was cut off); the cable comes back.
    gates[2].show(&z_seen);
    std::thread::sleep(Duration::from_secs(2));
    relays[2].restore();
    let restored = Instant::now();
    let applied = gates[2].wait_for("revocation from the compound", restored, Duration::from_secs(15));
    let resumed = gates[2].wait_for("face matching on", restored, Duration::from_secs(15));
    assert!(applied <= resumed, "gate C matched faces again before applying the missed revocation");
    std::thread::sleep(Duration::from_secs(5));
    assert!(gates[2].lines_since(FACE_OPENED, restored).is_empty(), "gate C opened for Z after reconnecting");
    gates[2].pin_opens();
    gates[2].show(&y_seen);
    let back_to_y = Instant::now();
    gates[2].wait_for(FACE_OPENED, back_to_y, Duration::from_secs(10));

    // 4. Durability: gate A and the broker go down; Y revokes at gate B while the broker is down; the broker
    // comes back on its store, then gate A: nobody opens for Y again.
    gates[0].show(&y_seen);
    gates[1].show(&y_seen);
    gates[0].stop();
    broker.stop();
    gates[1].cli(&["revoke", "--resident", "r-y"], None);
    let revoked_y = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    broker.start();
    let broker_back = Instant::now();
    gates[2].wait_for("revocation from the compound", broker_back, Duration::from_secs(15));
    gates[0].start();
    let a_back = Instant::now();
    gates[0].wait_for("revocation from the compound", a_back, Duration::from_secs(60));
    gates[0].wait_for("face matching on", a_back, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(5));
    assert!(gates[0].lines_since(FACE_OPENED, a_back).is_empty(), "gate A opened for Y after its restart");
    assert!(gates[1].lines_since(FACE_OPENED, revoked_y).is_empty(), "gate B opened for Y after revoking it");
    let c_late = gates[2].lines_since(FACE_OPENED, broker_back + Duration::from_secs(2));
    assert!(c_late.is_empty(), "gate C opened for Y after the broker came back");
    // X's revocation, made before the broker restart, also survived it: a gate restarted now has nothing of X.
    for gate in &gates {
        let out = gate.cli(&["residents", "--json"], None);
        let text = String::from_utf8(out.stdout).unwrap();
        let listed: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(listed.len() >= 3, "{}: {text}", gate.name);
        for r in &listed {
            if ["r-x", "r-y", "r-z"].contains(&r["resident"].as_str().unwrap()) {
                assert!(r["template_version"].is_null(), "{}: {r}", gate.name);
            }
        }
    }

    // 5. Counts roll up: gate C's keypad admissions are in gate A's compound-wide cells, not in its own.
    std::thread::sleep(Duration::from_secs(3));
    for gate in &mut gates {
        gate.stop();
    }
    let store_a = facegate::store::Store::open_existing(&gates[0].dir.join("data/facegate.sqlite")).unwrap();
    let pins = |cells: Vec<facegate::policy::passage::PassageCount>| -> i64 {
        cells
            .iter()
            .filter(|c| c.method == EntryMethod::Pin && c.outcome == PassageOutcome::Opened)
            .map(|c| c.count)
            .sum()
    };
    let day = facegate::store::unix_now() - 86_400;
    assert_eq!(pins(store_a.passage_counts(day, day + 2 * 86_400).unwrap()), 0);
    assert!(
        pins(store_a.compound_passage_counts(day, day + 2 * 86_400).unwrap()) >= 3,
        "gate C's counts did not reach A"
    );
    // The installer's view: nothing left to send, sequences applied, the other gates' counts known.
    let status: serde_json::Value =
        serde_json::from_slice(&gates[1].cli(&["compound", "status", "--json"], None).stdout).unwrap();
    assert_eq!(status["outbox"], 0, "{status}");
    assert!(status["applied_sequence"].as_u64().unwrap() > 5, "{status}");
    let reporting: Vec<&str> =
        status["gates_reporting_counts"].as_array().unwrap().iter().map(|g| g["gate"].as_str().unwrap()).collect();
    assert!(reporting.contains(&"gate-c"), "{status}");
    stop_observing.store(true, Ordering::SeqCst);
    let seen = observer.join().unwrap();
    broker.stop();

    // 6. What crossed the broker and what it stored: ciphertext only.
    assert!(seen.iter().any(|(s, _)| s.contains(".resident.")), "the observer saw no announcement");
    let mut stored = Vec::new();
    for entry in walkdir::WalkDir::new(&store_dir).into_iter().filter_map(Result::ok) {
        if entry.file_type().is_file() {
            stored.push((entry.path().display().to_string(), std::fs::read(entry.path()).unwrap()));
        }
    }
    assert!(stored.iter().map(|(_, b)| b.len()).sum::<usize>() > 1_000, "the broker stored nothing?");
    // The scanner finds a plain template when there is one (so its silence below means something).
    let mut plain = vec![0u8; 7];
    // A sum of three uniform draws (an LCG's): spread like a normal sample, as an embedding's components are.
    let mut state = 12_345u64;
    let mut uniform = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    for _ in 0..128 {
        let v = (uniform() + uniform() + uniform()) / 5.0;
        plain.extend_from_slice(&v.to_le_bytes());
    }
    assert!(!facegate::audit::vectors::find_binary_vectors(&plain).is_empty());
    let every_picture = facegate::audit::faces::FaceCheck::Unavailable("every picture counts".into());
    for (what, bytes) in
        seen.iter().map(|(s, b)| (format!("message on {s}"), b)).chain(stored.iter().map(|(p, b)| (p.clone(), b)))
    {
        assert!(facegate::audit::vectors::find_binary_vectors(bytes).is_empty(), "{what}: embedding floats");
        assert!(facegate::audit::scan::find_images(bytes, &every_picture).is_empty(), "{what}: image data");
        for needle in [&b"\xff\xd8\xff"[..], b"\x89PNG", b"r-x", b"r-y", b"r-z", b"r-pin", b"notice_sha256", b"opened"]
        {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{what}: {:?} in clear",
                String::from_utf8_lossy(needle)
            );
        }
    }
    eprintln!("{} messages observed, {} broker files scanned: ciphertext only", seen.len(), stored.len());
}

#[test]
fn a_stolen_gate_certificate_cannot_replay_edit_or_flood_the_compound() {
    let _nats = nats_server();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let compound = root.join("compound");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (dir, install) = (compound.to_str().unwrap(), compound.join("broker"));
    let store_dir = root.join("broker-store");
    facegate(
        &[
            "compound",
            "init",
            "--dir",
            dir,
            "--name",
            COMPOUND,
            "--listen",
            &listen,
            "--install-dir",
            install.to_str().unwrap(),
            "--store-dir",
            store_dir.to_str().unwrap(),
        ],
        None,
    );
    for gate in ["gate-a", "gate-b", "gate-c"] {
        facegate(&["compound", "add-gate", "--dir", dir, "--gate", gate], None);
    }
    // What a thief copies from gate A's SD card.
    let stolen = root.join("stolen");
    std::fs::create_dir_all(&stolen).unwrap();
    for file in ["ca.pem", "gate.pem", "gate.key", "compound.key"] {
        std::fs::copy(compound.join("gates/gate-a").join(file), stolen.join(file)).unwrap();
    }
    let mut broker = Broker { conf: compound.join("broker/nats-server.conf"), port, child: None };
    broker.start();
    let broker_log = || std::fs::read_to_string(broker.log()).unwrap_or_default();
    let mut gates = common::compound::gates_started(root, &compound, port, &["gate-a", "gate-b", "gate-c"], 2);
    let keys = facegate::compound::CompoundKeys::derive(
        &facegate::protect::AeadKey::from_bytes(
            std::fs::read(stolen.join("compound.key")).unwrap().try_into().unwrap(),
        ),
        COMPOUND,
    );
    let thief = Thief::connect(&stolen, port, &facegate::compound::envelope::inbox_prefix(COMPOUND, "gate-a"));
    thief.capture(&keys.stream());

    // Two residents enrol at gate A and revoke there; the second consents and enrols again (generation 2).
    let notice = root.join("notice.txt");
    std::fs::write(&notice, "Face entry at the gates of Maple Court (gates A, B and C hold your template).").unwrap();
    let consent = |gate: &Gate, resident: &str| {
        let n = notice.to_str().unwrap();
        gate.cli(&["consent", "--resident", resident, "--notice", n, "--notice-version", "1"], None);
    };
    // At gate A, each change seen by gate B.
    let enrol = |a: &Gate, b: &Gate, resident: &str, photos: &[PathBuf]| {
        consent(a, resident);
        let mut args = vec!["enroll".to_owned(), "--resident".into(), resident.into()];
        args.extend(photos.iter().map(|p| p.display().to_string()));
        let since = Instant::now();
        a.cli(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
        b.wait_for("enrolment from the compound stored", since, Duration::from_secs(10));
    };
    let revoke = |a: &Gate, b: &Gate, resident: &str| {
        let since = Instant::now();
        a.cli(&["revoke", "--resident", resident], None);
        b.wait_for("revocation from the compound", since, Duration::from_secs(10));
    };
    enrol(&gates[0], &gates[1], "r-1", &nuaa("0001", 0));
    enrol(&gates[0], &gates[1], "r-2", &nuaa("0002", 0));
    revoke(&gates[0], &gates[1], "r-1");
    revoke(&gates[0], &gates[1], "r-2");
    enrol(&gates[0], &gates[1], "r-2", &nuaa("0002", 1));
    assert_eq!(template_version(&gates[1], "r-2"), Some(1), "gate B holds r-2's second enrolment");
    std::thread::sleep(Duration::from_secs(1));
    let on_a = |resident: &str| thief.captured_on(&keys.resident_subject("gate-a", resident));
    let (r1, r2) = (on_a("r-1"), on_a("r-2"));
    // Template and tombstone of r-1; template, tombstone, template of r-2 (a tombstone that crossed a renewal
    // of the compound key is announced again).
    assert!(r1.len() >= 2 && r2.len() >= 3, "{} and {} messages", r1.len(), r2.len());

    // Gate A (whose certificate was taken) is off; the thief replays its old messages.
    gates[0].stop();
    // 1. The revoked r-1's template: gate B refuses it (sealed under a compound key renewed since, and older
    // than the tombstone it holds).
    let replayed = Instant::now();
    let seq = thief.publish(&keys.resident_subject("gate-a", "r-1"), r1[0].clone()).unwrap();
    wait_applied(&gates[1], seq);
    assert!(!gates[1].lines_since("refused", replayed).is_empty(), "gate B logged no refusal");
    assert_eq!(template_version(&gates[1], "r-1"), None, "gate B imported the revoked template again");
    // 2. The r-2 tombstone of generation 1, after r-2 consented again: refused, r-2 still enrolled.
    let replayed = Instant::now();
    let seq = thief.publish(&keys.resident_subject("gate-a", "r-2"), r2[1].clone()).unwrap();
    wait_applied(&gates[1], seq);
    assert_eq!(template_version(&gates[1], "r-2"), Some(1), "a replayed tombstone shredded the re-enrolled r-2");
    assert!(gates[1].lines_since("template and key shredded here", replayed).is_empty());

    // 3. A new gate joins now, while the broker's word of gate A is the thief's: it never takes r-1's revoked
    // face (gate B echoed the tombstone under its own name, which no other certificate can displace).
    gates[2].start();
    let c_started = Instant::now();
    // It holds only the compound key's first epoch (its folder was made before the renewals): gate B grants it
    // the others.
    gates[2].wait_for("face matching on", c_started, Duration::from_secs(60));
    gates[2].wait_for("were granted", c_started, Duration::from_secs(5));
    assert_eq!(template_version(&gates[2], "r-1"), None, "the new gate imported a revoked face");
    // Gate A comes back, finds the replays on its own subjects and announces its word again: r-2 reaches C.
    let a_back = Instant::now();
    gates[0].start();
    gates[0].wait_for("announcing it again", a_back, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(20);
    while template_version(&gates[2], "r-2").is_none() {
        assert!(Instant::now() < deadline, "gate A's word on r-2 never reached the new gate");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(template_version(&gates[2], "r-1"), None);

    // 4. The stream cannot be edited, deleted, purged or have a message deleted with a gate's certificate;
    // nor can a gate publish under another gate's name.
    let stream = keys.stream();
    thief.runtime.block_on(async {
        let mut config = facegate::compound::stream::stream_config(&keys);
        config.max_age = Duration::from_secs(1);
        assert!(thief.js.update_stream(config.clone()).await.is_err(), "a gate certificate updated the stream");
        assert!(thief.js.create_stream(config).await.is_err(), "a gate certificate re-created the stream");
        assert!(thief.js.delete_stream(&stream).await.is_err(), "a gate certificate deleted the stream");
        let handle = thief.js.get_stream(&stream).await.unwrap();
        assert!(handle.purge().await.is_err(), "a gate certificate purged the stream");
        assert!(handle.delete_message(1).await.is_err(), "a gate certificate deleted a message");
    });
    assert!(
        thief.publish(&keys.counts_subject("gate-b"), b"FGC2".to_vec()).is_err(),
        "a gate certificate published under another gate's name"
    );
    let log = broker_log();
    for violation in ["STREAM.UPDATE", "STREAM.DELETE", "STREAM.PURGE", "STREAM.MSG.DELETE", "gate-b.counts"] {
        assert!(log.contains(violation), "no permission violation logged for {violation}:\n{log}");
    }
    let admin = Thief::connect(&compound.join("admin"), port, "_INBOX");
    let info = admin.runtime.block_on(async { admin.js.get_stream(&stream).await.unwrap().cached_info().clone() });
    let wanted = facegate::compound::stream::stream_config(&keys);
    assert_eq!(facegate::compound::stream::stream_trouble(&wanted, &info.config, &info.state), None, "{info:?}");

    // r-4 enrols at gate C: gate B never wrote a word about r-4, so a revocation at B needs a new subject.
    enrol(&gates[2], &gates[1], "r-4", &nuaa("0003", 0));

    // 5. The flood: junk under gate A's name until the broker refuses more. Gates notice (faces stop past the
    // offline limit), a revocation is reported as queued, not announced, and the junk is blamed on gate A.
    let flood = Instant::now();
    let mut junk = 0u32;
    // JetStream counts a message's payload against the stream's bytes: once 64 bytes are refused, no tombstone fits.
    for size in [(1 << 20) - 256, 64 << 10, 1 << 10, 64] {
        loop {
            junk += 1;
            let subject = format!("facegate.{COMPOUND}.gate-a.resident.{junk:032x}");
            match thief.publish(&subject, vec![0x5a; size]) {
                Ok(_) => {}
                // Full for this size; anything else (a slow acknowledgement on a busy machine) is tried again.
                Err(e) if e.contains("maximum") => {
                    eprintln!("junk of {size} bytes refused: {e}");
                    break;
                }
                Err(e) => assert!(junk < 5_000, "the flood never filled the stream: {e}"),
            }
        }
    }
    eprintln!("flood: {junk} junk messages in {:?}", flood.elapsed());
    gates[1].wait_for("its stream is full", flood, Duration::from_secs(10));
    let off = gates[1].wait_for("face matching off", flood, Duration::from_secs(OFFLINE_LIMIT_S + 10));
    eprintln!("gate B: faces off {:?} after the flood began", off - flood);
    gates[1].wait_for("do not open refused (gate-a:", flood, Duration::from_secs(15));
    let out = gates[1].cli(&["revoke", "--resident", "r-4", "--json"], None);
    let receipt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(receipt["compound"], "queued", "{receipt}");
    assert_eq!(template_version(&gates[1], "r-4"), None, "revoking never waits for the broker");

    // 6. The office removes gate A: the broker drops its user at reload, and the stolen certificate is refused.
    facegate(&["compound", "remove-gate", "--dir", dir, "--gate", "gate-a"], None);
    broker.reload();
    let ca = compound.join("ca.pem");
    let deadline = Instant::now() + Duration::from_secs(10);
    while thief.client.connection_state() == async_nats::connection::State::Connected {
        assert!(Instant::now() < deadline, "the removed gate's connection is still open");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!broker_accepts(&ca, Some(&stolen), port), "the removed gate's certificate still connects");
    assert!(broker_accepts(&ca, Some(&compound.join("gates/gate-b")), port));

    // 7. The administrator clears what the removed gate left; the gates match faces again and gate B's queued
    // revocation goes out. A gate can announce its whole word again (gate A's was cleared with the junk).
    let cleared = Instant::now();
    let broker_url = format!("tls://127.0.0.1:{port}");
    let out = facegate(&["compound", "clear-gate", "--dir", dir, "--gate", "gate-a", "--broker", &broker_url], None);
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
    gates[1].wait_for("keeps announcements again", cleared, Duration::from_secs(10));
    gates[1].wait_for("face matching on", cleared, Duration::from_secs(10));
    let drained = |gate: &Gate| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = gate.cli(&["compound", "status", "--json"], None).stdout;
            let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
            if status["outbox"] == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{}: queued announcements never sent: {status}", gate.name);
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    drained(&gates[1]);
    // Gate C applies and echoes B's revocation of r-4; once sent, its whole word can be queued again.
    gates[2].wait_for("template and key shredded here", cleared, Duration::from_secs(10));
    drained(&gates[2]);
    let info = admin.runtime.block_on(async { admin.js.get_stream(&stream).await.unwrap().cached_info().clone() });
    assert_eq!(facegate::compound::stream::stream_trouble(&wanted, &info.config, &info.state), None, "{info:?}");
    let again = Instant::now();
    let out = gates[2].cli(&["compound", "announce-all"], None);
    // Gate C knows r-1 (an end it never held), r-2 (generation 2) and r-4 (revoked at B).
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("3 resident(s) queued"), "{out:?}");
    gates[2].wait_for("announced to the compound", again, Duration::from_secs(10));
    for gate in &mut gates {
        gate.stop();
    }
    broker.stop();
}
