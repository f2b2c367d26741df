//! The faults a gate meets (issue 20), each injected into the real daemon (the binary, simulated hardware, a
//! replay camera, its real SQLite file), and each ending the same way: the door locked, the daemon serving again
//! within 10 s of the fault ending (a guard's release opens the door), and "nothing lost" checked, not assumed:
//! every passage the gate opened for is in the counts exactly once, every revocation that printed a receipt stays
//! revoked.
//!
//! - the database locked by another process for 30 s;
//! - the disk full while passages are counted and while a revocation commits (a tmpfs; needs root, as CI has);
//! - the camera missing at start, then gone and back (the replay folder empty, filled, removed and restored);
//! - the wall clock stepped an hour back and two forward (libfaketime, as an NTP step does);
//! - SIGTERM at random moments of `facegate enroll` and `facegate revoke`;
//! - the compound's broker killed in the middle of a burst of revocations, and restarted on its store;
//! - the models folder missing at start, and put in place while the daemon runs;
//! - a damaged QR code held to the camera that panics the third-party decoder on every frame (a fuzzing
//!   finding).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{facegate, start_gate_typed, start_gate_typed_env, start_gate_typed_models, Gate};
use facegate::policy::passage::{EntryMethod, PassageOutcome};
use facegate::store::{ResidentSummary, Store};

const GUARD_OPENED: &str = "method=\"guard\" outcome=\"opened\"";
const PIN_OPENED: &str = "method=\"pin\" outcome=\"opened\"";
const FACE_OPENED: &str = "method=\"face\" outcome=\"opened\"";
const CODE: &str = "340112";
const PIN: &str = "482913";
/// How long a gate may take to serve again once a fault ends.
const BACK_WITHIN: Duration = Duration::from_secs(10);

/// The guard's release: the door opens within `within` and locks again after its pulse. Returns how long the
/// opening took to come.
fn guard_release(gate: &mut Gate, within: Duration) -> Duration {
    let since = Instant::now();
    gate.type_line("!release");
    let opened = gate.wait_for_log(GUARD_OPENED, since, within);
    gate.wait_for_log("simulated relay: locked", opened, Duration::from_secs(12));
    opened - since
}

/// A resident's code and PIN on the keypad: the door opens within `within` and locks again.
fn pin_entry(gate: &mut Gate, within: Duration) -> Duration {
    let since = Instant::now();
    gate.type_line(&format!("{CODE}#{PIN}#"));
    let opened = gate.wait_for_log(PIN_OPENED, since, within);
    gate.wait_for_log("simulated relay: locked", opened, Duration::from_secs(12));
    opened - since
}

/// Stops the daemon with SIGTERM and checks that it left the door locked.
fn stop_locked(gate: &mut Gate) {
    let status = gate.stop();
    assert!(status.success(), "the daemon ended with {status}");
    gate.wait_for_log("gate stopped, door locked", Instant::now() - Duration::from_secs(60), Duration::from_secs(5));
    let relay = gate.last_log("simulated relay:").unwrap_or_default();
    assert!(!relay.ends_with("unlocked"), "the door was left unlocked: {relay}");
}

/// Passages opened by `method` in the store, over all hours.
fn opened(db: &Path, method: EntryMethod) -> i64 {
    counted(db, method, PassageOutcome::Opened)
}

fn counted(db: &Path, method: EntryMethod, outcome: PassageOutcome) -> i64 {
    Store::open(db)
        .unwrap()
        .passage_counts(0, i64::MAX)
        .unwrap()
        .iter()
        .filter(|c| c.method == method && c.outcome == outcome)
        .map(|c| c.count)
        .sum()
}

/// Waits until the store holds `want` passages opened by `method` (the registry's owner writes counts every few
/// seconds, and later when the database was unwritable).
fn counts_written(db: &Path, method: EntryMethod, want: i64, within: Duration) {
    let deadline = Instant::now() + within;
    while opened(db, method) != want {
        assert!(
            Instant::now() < deadline,
            "{method:?}: {} passages in the store, {want} made, after {within:?}",
            opened(db, method)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn resident(db: &Path, id: &str) -> Option<ResidentSummary> {
    Store::open(db).unwrap().residents().unwrap().into_iter().find(|r| r.id == id)
}

/// A receipted revocation: no template, consent withdrawn.
fn assert_revoked(db: &Path, id: &str) {
    let r = resident(db, id).unwrap_or_else(|| panic!("{id} is gone from the store"));
    assert!(r.template_version.is_none(), "{id} still has a template after a receipted revocation");
    assert!(r.consent_revoked_at.is_some(), "{id}'s consent is not withdrawn after a receipted revocation");
    assert!(!r.has_pin, "{id} still has a PIN after a receipted revocation");
}

fn notice(gate: &Gate) -> String {
    let path = gate.dir.path().join("notice.txt");
    std::fs::write(&path, "Face entry notice (fault tests)").unwrap();
    path.display().to_string()
}

fn consent(gate: &Gate, id: &str) {
    let notice = notice(gate);
    gate.cli(&["consent", "--resident", id, "--notice", &notice, "--notice-version", "faults"], None);
}

fn enroll_args<'a>(id: &'a str, photos: &'a [String]) -> Vec<&'a str> {
    let mut args = vec!["enroll", "--resident", id];
    args.extend(photos.iter().map(String::as_str));
    args
}

fn paths(photos: &[PathBuf]) -> Vec<String> {
    photos.iter().map(|p| p.display().to_string()).collect()
}

fn revoke(gate: &Gate, id: &str) -> Output {
    facegate(Some(&gate.config()), &["revoke", "--resident", id], None)
}

fn has_receipt(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stdout).contains("verification code:")
}

/// A revocation that failed must say why and what to do; a second try, once the fault is over, gives the
/// receipt.
fn revoked_after_retry(gate: &Gate, id: &str, first: &Output) {
    if has_receipt(first) {
        return;
    }
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(!first.status.success() && said.contains("error:"), "no receipt and no error: {said}");
    let again = revoke(gate, id);
    assert!(has_receipt(&again), "the revocation retried after the fault: {}", String::from_utf8_lossy(&again.stderr));
}

/// Another process holds SQLite's exclusive lock for 30 s (a backup tool, an administrator's shell).
#[test]
fn the_database_locked_for_30_s_stops_no_way_in_and_loses_nothing() {
    let mut gate = start_gate_typed(&common::nuaa_frames("live", "0001")[..2], |_| String::new());
    let db = gate.dir.path().join("data/facegate.sqlite");
    consent(&gate, "r-1");
    gate.cli(&["pin", "--resident", "r-1", "--code", CODE], Some(&format!("{PIN}\n")));

    let mut locker = common::hold_exclusive_lock(&db, 30.0);
    let locked_at = Instant::now();
    let guard = guard_release(&mut gate, Duration::from_secs(2));
    // With a passage waiting to be counted, the registry's owner tries to write it every second. Each try
    // used to wait 5 s in SQLite's busy handler, while the keypad's code lookups queued behind it: a resident
    // waited up to 5 s at the door. Three entries, a pulse apart, span several tries.
    let pins: Vec<Duration> = (0..3).map(|_| pin_entry(&mut gate, Duration::from_secs(10))).collect();
    let pin = pins.iter().copied().max().unwrap();
    assert!(pin < Duration::from_secs(1), "a PIN waited on the locked database: {pins:?}");
    // A revocation now waits on the lock, then commits with a receipt or says what to do.
    let revoked = revoke(&gate, "r-1");
    eprintln!(
        "while locked: guard release {guard:?}, PINs {pins:?}; revocation: {}{}",
        String::from_utf8_lossy(&revoked.stdout),
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert!(locked_at.elapsed() < Duration::from_secs(30), "the lock ended before the checks: they showed nothing");
    assert_eq!(opened(&db, EntryMethod::Guard), 0, "a count was written through the lock");

    assert!(locker.wait().unwrap().success());
    let ended = Instant::now();
    let back = guard_release(&mut gate, BACK_WITHIN);
    revoked_after_retry(&gate, "r-1", &revoked);
    counts_written(&db, EntryMethod::Guard, 2, BACK_WITHIN.saturating_sub(ended.elapsed()));
    counts_written(&db, EntryMethod::Pin, 3, Duration::from_secs(1));
    eprintln!("after the lock: a release opened in {back:?}; counts written {:?} after it ended", ended.elapsed());

    stop_locked(&mut gate);
    assert_eq!(opened(&db, EntryMethod::Guard), 2, "guard passages counted twice or lost at shutdown");
    assert_eq!(opened(&db, EntryMethod::Pin), 3);
    assert_revoked(&db, "r-1");
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", at.to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount a tmpfs at {}: this test needs root (CI runs as root)", at.display());
        Self(at.to_path_buf())
    }

    /// Fills the volume to the last byte; returns the filler file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).and_then(|()| file.flush()).is_ok() {}
        while file.write_all(&block[..1]).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").args(["-l", self.0.to_str().unwrap()]).status();
    }
}

/// The database's folder fills up while passages are counted and while a revocation commits.
#[test]
fn a_full_disk_keeps_the_counts_in_memory_and_a_revocation_gives_a_receipt_or_an_error() {
    let mut volume = None;
    let mut gate = start_gate_typed(&common::nuaa_frames("live", "0001")[..2], |dir| {
        volume = Some(Tmpfs::mount(&dir.join("data"), "16m"));
        String::new()
    });
    let volume = volume.unwrap();
    let db = gate.dir.path().join("data/facegate.sqlite");
    consent(&gate, "r-1");
    gate.cli(&enroll_args("r-1", &paths(&common::nuaa_frames("live", "0002")[..5])), None);
    // An empty write-ahead log, so that the next write needs new blocks (a log with room would hide the fault).
    let checkpoint = Command::new("python3")
        .args(["-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1], timeout=10).execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone())"])
        .arg(&db)
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(checkpoint.status.success());
    let filler = volume.fill();
    let full_at = Instant::now();

    let guard = guard_release(&mut gate, Duration::from_secs(2));
    guard_release(&mut gate, Duration::from_secs(2));
    gate.wait_for_log("passage counts kept in memory for now", full_at, Duration::from_secs(15));
    let revoked = revoke(&gate, "r-1");
    eprintln!(
        "disk full: a release opened in {guard:?}; revocation: {}{}",
        String::from_utf8_lossy(&revoked.stdout),
        String::from_utf8_lossy(&revoked.stderr)
    );
    if has_receipt(&revoked) {
        assert_revoked(&db, "r-1");
    } else {
        assert!(resident(&db, "r-1").unwrap().template_version.is_some(), "an unreceipted revocation half done");
    }

    std::fs::remove_file(filler).unwrap();
    let ended = Instant::now();
    let back = guard_release(&mut gate, BACK_WITHIN);
    revoked_after_retry(&gate, "r-1", &revoked);
    counts_written(&db, EntryMethod::Guard, 3, BACK_WITHIN.saturating_sub(ended.elapsed()));
    eprintln!("space again: a release opened in {back:?}; counts written {:?} after", ended.elapsed());

    stop_locked(&mut gate);
    assert_eq!(opened(&db, EntryMethod::Guard), 3);
    assert_revoked(&db, "r-1");
    drop(gate);
}

/// The camera is missing at start (an empty replay folder, as a camera not yet plugged in), appears, goes (the
/// folder is removed) and comes back: the other ways in work meanwhile, face entry begins and resumes on its own.
#[test]
fn the_camera_missing_at_start_or_gone_and_back_pauses_face_entry_only() {
    let frames = common::nuaa_frames("live", "0003");
    let mut gate = start_gate_typed(&[], |_| String::new());
    let db = gate.dir.path().join("data/facegate.sqlite");
    gate.wait_for_log("face entry off", Instant::now() - Duration::from_secs(60), Duration::from_secs(10));
    consent(&gate, "r-3");
    gate.cli(&enroll_args("r-3", &paths(&frames[..5])), None);
    let missing = guard_release(&mut gate, Duration::from_secs(2));
    assert!(gate.last_log(FACE_OPENED).is_none(), "a face opened the door without a camera");

    let replay = gate.dir.path().join("replay");
    for (i, f) in frames[5..10].iter().enumerate() {
        std::fs::copy(f, replay.join(format!("{i:03}.jpg"))).unwrap();
    }
    let appeared = Instant::now();
    let first = gate.wait_for_log(FACE_OPENED, appeared, BACK_WITHIN) - appeared;
    eprintln!("camera missing at start: a release opened in {missing:?}; it appeared: a face admitted in {first:?}");

    let away = gate.dir.path().join("replay-away");
    std::fs::rename(&replay, &away).unwrap();
    let gone = Instant::now();
    gate.wait_for_log("camera down", gone, Duration::from_secs(10));
    let guard = guard_release(&mut gate, Duration::from_secs(2));

    std::fs::rename(&away, &replay).unwrap();
    let ended = Instant::now();
    let camera = gate.wait_for_log("camera back", ended, BACK_WITHIN) - ended;
    let face = gate.wait_for_log(FACE_OPENED, ended, BACK_WITHIN) - ended;
    let back = guard_release(&mut gate, BACK_WITHIN);
    eprintln!("camera gone: a release opened in {guard:?}; back: frames in {camera:?}, a face admitted in {face:?}, a release in {back:?}");

    stop_locked(&mut gate);
    let faces = gate.log.lock().unwrap().iter().filter(|(_, l)| l.contains(FACE_OPENED)).count();
    assert_eq!(opened(&db, EntryMethod::Face), i64::try_from(faces).unwrap(), "face passages lost or doubled");
    assert_eq!(opened(&db, EntryMethod::Guard), 3);
}

/// The hour that `unix` falls in.
fn hour_of(unix: i64) -> i64 {
    unix - unix.rem_euclid(3600)
}

/// The wall clock steps an hour back, then two forward (a gate that booted without NTP and then got it, or a
/// bad time source): windows and counts must not trip over time going backwards.
#[test]
fn the_wall_clock_stepped_an_hour_back_and_forward_loses_nothing() {
    let libfaketime = Path::new("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1");
    assert!(libfaketime.exists(), "libfaketime is missing: deploy/dev-setup.sh installs Debian's libfaketime");
    let clock = tempfile::tempdir().unwrap();
    let offset = clock.path().join("offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let env = [
        ("LD_PRELOAD", libfaketime.to_str().unwrap()),
        ("FAKETIME_TIMESTAMP_FILE", offset.to_str().unwrap()),
        ("FAKETIME_NO_CACHE", "1"),
        // An NTP step moves the wall clock only; the monotonic clock (timers, the door's pulse) goes on.
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let mut gate = start_gate_typed_env(&common::nuaa_frames("live", "0001")[..2], &env);
    let db = gate.dir.path().join("data/facegate.sqlite");
    consent(&gate, "r-1");
    gate.cli(&["pin", "--resident", "r-1", "--code", CODE], Some(&format!("{PIN}\n")));

    let mut hours = Vec::new();
    let now = facegate::store::unix_now;
    // A wrong PIN first: a failure recorded in the future once the clock goes back.
    let since = Instant::now();
    gate.type_line(&format!("{CODE}#000000#"));
    gate.wait_for_log("method=\"pin\" outcome=\"refused\"", since, Duration::from_secs(5));
    for step in [-3600, 3600] {
        std::fs::write(&offset, format!("{step:+}\n")).unwrap();
        let stepped = Instant::now();
        let before = hour_of(now() + step);
        let back = guard_release(&mut gate, BACK_WITHIN);
        let pin = pin_entry(&mut gate, BACK_WITHIN);
        hours.push((step, before, hour_of(now() + step)));
        eprintln!(
            "clock stepped {step:+} s: a release opened in {back:?}, a PIN in {pin:?}, {:?} after the step",
            stepped.elapsed()
        );
        assert!(stepped.elapsed() < BACK_WITHIN + Duration::from_secs(4), "not serving within 10 s of the step");
    }
    std::fs::write(&offset, "+0\n").unwrap();

    stop_locked(&mut gate);
    assert_eq!(opened(&db, EntryMethod::Guard), 2);
    assert_eq!(opened(&db, EntryMethod::Pin), 2);
    assert_eq!(counted(&db, EntryMethod::Pin, PassageOutcome::Refused), 1);
    // The steps took: each step's passages are counted in the hour the gate's clock said.
    let counts = Store::open(&db).unwrap().passage_counts(0, i64::MAX).unwrap();
    for (step, a, b) in hours {
        assert!(
            counts.iter().any(|c| c.method == EntryMethod::Pin && (c.hour_start == a || c.hour_start == b)),
            "no PIN passage in the hour the clock stepped {step:+} s to: {counts:?}"
        );
    }
}

/// A small deterministic generator for the kill moments (printed, so a failure can be replayed).
fn fractions(seed: u64, n: usize) -> Vec<f64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

/// Runs the binary against the gate's config and sends it SIGTERM after `after` (if still running); returns
/// its output.
fn terminated_after(gate: &Gate, args: &[&str], after: Duration) -> Output {
    let mut child = Command::new(common::daemon::BIN)
        .args(["--config", gate.config().to_str().unwrap(), "--models", common::models_dir().to_str().unwrap()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.try_wait();
    child.wait_with_output().unwrap()
}

/// SIGTERM (a shutdown, systemd stopping a unit, an impatient installer) at random moments of enrolments and
/// revocations made at the CLI beside the running daemon.
#[test]
fn sigterm_at_random_moments_of_enrolment_and_revocation_leaves_no_half_state() {
    const ROUNDS: usize = 10;
    let seed = 20_261_202;
    let mut gate = start_gate_typed(&common::nuaa_frames("live", "0001")[..2], |_| String::new());
    let db = gate.dir.path().join("data/facegate.sqlite");
    let photos = paths(&common::nuaa_frames("live", "0002")[..5]);
    // How long each command takes when left alone, to spread the kills over it.
    consent(&gate, "r-whole");
    let t = Instant::now();
    gate.cli(&enroll_args("r-whole", &photos), None);
    let enrol_takes = t.elapsed();
    let t = Instant::now();
    assert!(has_receipt(&revoke(&gate, "r-whole")));
    let revoke_takes = t.elapsed();
    eprintln!("seed {seed}: enroll takes {enrol_takes:?}, revoke {revoke_takes:?}");

    let moments = fractions(seed, 2 * ROUNDS);
    let mut receipted = vec!["r-whole".to_owned()];
    for i in 0..ROUNDS {
        let id = format!("r-{i}");
        consent(&gate, &id);
        // Moments over the whole run and past its end, so that some finish.
        let out = terminated_after(&gate, &enroll_args(&id, &photos), enrol_takes.mul_f64(1.3 * moments[2 * i]));
        let enrolled = resident(&db, &id).unwrap().template_version.is_some();
        eprintln!(
            "enroll of {id} killed after {:.0} %: finished {}, template {enrolled}",
            moments[2 * i] * 100.0,
            out.status.success()
        );
        if out.status.success() {
            assert!(enrolled, "enroll said done but {id} has no template");
        }
        if !enrolled {
            gate.cli(&enroll_args(&id, &photos), None);
        }
        let out =
            terminated_after(&gate, &["revoke", "--resident", &id], revoke_takes.mul_f64(1.3 * moments[2 * i + 1]));
        eprintln!("revoke of {id} killed after {:.0} %: receipt {}", moments[2 * i + 1] * 130.0, has_receipt(&out));
        if has_receipt(&out) {
            assert_revoked(&db, &id);
        } else {
            // Not told it was done: either state may hold, but a second try must end with a receipt.
            let again = revoke(&gate, &id);
            assert!(has_receipt(&again), "a revocation after a killed one: {}", String::from_utf8_lossy(&again.stderr));
        }
        receipted.push(id);
    }

    let ended = Instant::now();
    let back = guard_release(&mut gate, BACK_WITHIN);
    eprintln!("a release opened {back:?} after the last kill");
    assert!(ended.elapsed() < BACK_WITHIN + Duration::from_secs(4));
    stop_locked(&mut gate);
    for id in &receipted {
        assert_revoked(&db, id);
    }
    assert_eq!(opened(&db, EntryMethod::Guard), 1);
}

/// The compound's residents, their revocations and what each gate holds after the broker was killed.
fn template_at(gate: &common::compound::Gate, id: &str) -> Option<u32> {
    resident(&gate.dir.join("data/facegate.sqlite"), id).and_then(|r| r.template_version)
}

/// Two gates over a real nats-server; the broker is killed (SIGKILL) while gate A announces a burst of
/// revocations, and comes back on its store 2 s later.
#[test]
fn the_broker_killed_mid_publish_loses_no_revocation() {
    use common::compound::{facegate as ok, Broker, Gate as CompoundGate};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let compound = root.join("compound");
    let port = common::daemon::free_port();
    let (dir, listen) = (compound.to_str().unwrap().to_owned(), format!("127.0.0.1:{port}"));
    let (install, store) =
        (compound.join("broker").display().to_string(), root.join("broker-store").display().to_string());
    ok(
        &[
            "compound",
            "init",
            "--dir",
            &dir,
            "--name",
            common::compound::COMPOUND,
            "--listen",
            &listen,
            "--install-dir",
            &install,
            "--store-dir",
            &store,
        ],
        None,
    );
    for gate in ["gate-a", "gate-b"] {
        ok(&["compound", "add-gate", "--dir", &dir, "--gate", gate], None);
    }
    let mut broker = Broker { conf: compound.join("broker/nats-server.conf"), port, child: None };
    broker.start();
    let mut a = CompoundGate::new(root, "gate-a", &compound, port);
    let mut b = CompoundGate::new(root, "gate-b", &compound, port);
    let notice = root.join("notice.txt");
    std::fs::write(&notice, "Face entry at the gates of Maple Court (gates A and B hold your template).").unwrap();
    let notice = notice.display().to_string();
    a.cli(&["consent", "--resident", "r-pin", "--notice", &notice, "--notice-version", "1"], None);
    a.cli(&["pin", "--resident", "r-pin", "--code", "340112"], Some("4071\n"));
    let started = Instant::now();
    for gate in [&mut a, &mut b] {
        gate.show(&[common::astronaut()]);
        gate.start();
    }
    for gate in [&a, &b] {
        gate.wait_for("face matching on", started, Duration::from_secs(60));
    }
    let ids: Vec<String> = (0..4).map(|i| format!("r-{i}")).collect();
    let enrolled = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        a.cli(&["consent", "--resident", id, "--notice", &notice, "--notice-version", "1"], None);
        let photos = paths(&common::nuaa_frames("live", &format!("{:04}", i + 1))[..5]);
        a.cli(&enroll_args(id, &photos), None);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.lines_since("enrolment from the compound stored", enrolled).len() < ids.len() {
        assert!(Instant::now() < deadline, "gate B did not store the four enrolments");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The burst: each revocation renews the compound key and queues a tombstone that the link publishes.
    let config = a.config();
    let burst_at = Instant::now();
    let burst = {
        let ids = ids.clone();
        std::thread::spawn(move || {
            ids.iter()
                .map(|id| facegate(None, &["--config", &config, "revoke", "--resident", id, "--json"], None))
                .collect::<Vec<Output>>()
        })
    };
    // Killed as soon as the broker has acknowledged the first announcement: the rest of the burst (the first
    // revocation's key renewal, the next tombstones) is in flight or still queued.
    a.wait_for("announced to the compound", burst_at, Duration::from_secs(20));
    broker.kill();
    let killed = Instant::now();
    let outs = burst.join().unwrap();
    let mut receipts = 0;
    for (id, out) in ids.iter().zip(&outs) {
        assert!(has_receipt_json(out), "revoke {id} with the broker killed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(template_at(&a, id).is_none(), "{id} revoked at A but its template is still there");
        receipts += 1;
    }
    eprintln!(
        "broker killed; {receipts} receipts: {:?}",
        outs.iter().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).collect::<Vec<_>>()
    );
    // Past the offline limit, faces are off at both gates; the keypad still opens.
    for gate in [&a, &b] {
        gate.wait_for("face matching off", killed, Duration::from_secs(15));
    }
    a.pin_opens();

    broker.start();
    let back = Instant::now();
    for id in &ids {
        let deadline = back + BACK_WITHIN;
        while template_at(&b, id).is_some() {
            assert!(Instant::now() < deadline, "gate B still holds {id}'s template 10 s after the broker came back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let shredded = back.elapsed();
    for gate in [&a, &b] {
        gate.wait_for("face matching on", back, BACK_WITHIN);
    }
    a.pin_opens();
    eprintln!("broker back: gate B shredded all four {shredded:?} after; both gates matching faces again");
    let status: serde_json::Value =
        serde_json::from_slice(&a.cli(&["compound", "status", "--json"], None).stdout).unwrap();
    assert_eq!(status["outbox"], 0, "gate A still has something to send: {status}");

    for gate in [&mut a, &mut b] {
        gate.stop();
        let log = gate.log.lock().unwrap();
        assert!(log.iter().any(|(_, l)| l.contains("gate stopped, door locked")), "{} did not stop cleanly", gate.name);
        let relay = log.iter().rev().find(|(_, l)| l.contains("simulated relay:")).map(|(_, l)| l.clone());
        assert!(!relay.unwrap_or_default().ends_with("unlocked"), "{} left the door unlocked", gate.name);
    }
    for id in &ids {
        assert_revoked(&a.dir.join("data/facegate.sqlite"), id);
        assert!(template_at(&b, id).is_none());
    }
}

fn has_receipt_json(out: &Output) -> bool {
    out.status.success()
        && serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|v| v["verification_code"].is_string())
}

/// The models folder is missing when the daemon starts (a card imaged without it, a mount that came up late):
/// the other ways in work; once the folder is in place face entry begins, without a restart.
#[test]
fn models_missing_at_start_are_loaded_once_they_appear() {
    let place = tempfile::tempdir().unwrap();
    let models = place.path().join("models");
    let frames = common::nuaa_frames("live", "0003");
    let mut gate = start_gate_typed_models(&frames[5..10], &models);
    let db = gate.dir.path().join("data/facegate.sqlite");
    gate.wait_for_log("models unavailable", Instant::now() - Duration::from_secs(60), Duration::from_secs(10));
    consent(&gate, "r-3");
    gate.cli(&enroll_args("r-3", &paths(&frames[..5])), None);
    let guard = guard_release(&mut gate, Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(2));
    assert!(gate.last_log(FACE_OPENED).is_none(), "a face opened the door without models");

    std::os::unix::fs::symlink(common::models_dir(), &models).unwrap();
    let ended = Instant::now();
    let loaded = gate.wait_for_log("face models loaded: face entry on", ended, BACK_WITHIN) - ended;
    let face = gate.wait_for_log(FACE_OPENED, ended, BACK_WITHIN) - ended;
    eprintln!("models missing: a release opened in {guard:?}; in place: loaded after {loaded:?}, a face admitted after {face:?}");

    stop_locked(&mut gate);
    let faces = gate.log.lock().unwrap().iter().filter(|(_, l)| l.contains(FACE_OPENED)).count();
    assert_eq!(opened(&db, EntryMethod::Face), i64::try_from(faces).unwrap(), "face passages lost or doubled");
    assert_eq!(opened(&db, EntryMethod::Guard), 1);
}

/// A damaged QR code held to the camera (the fixture: rqrr 0.11 asserts on it, upstream issue #54; found by
/// fuzzing) panicked the decoder on every frame; since the search's work budget, it is given up before the
/// assertion (`vision::qr`'s unit test still shows the panic contained, without the budget). Either way each
/// frame costs its QR read only; the log gets one warning a minute, not a panic message a frame (which would
/// fill the journal on the SD card), and the other ways in work.
#[test]
fn a_code_that_panics_the_qr_decoder_costs_its_reads_not_the_log() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qr-decoder-panic.png");
    let mut gate = start_gate_typed(&[fixture], |_| String::new());
    let db = gate.dir.path().join("data/facegate.sqlite");
    // 8 frames a second: some 30 frames, each a panic of the decoder, while the gate serves.
    std::thread::sleep(Duration::from_secs(4));
    let release = guard_release(&mut gate, Duration::from_secs(2));
    stop_locked(&mut gate);
    let log = gate.log.lock().unwrap();
    let panics: Vec<&String> = log.iter().map(|(_, l)| l).filter(|l| l.contains("panicked")).collect();
    assert!(panics.is_empty(), "{} panic messages in the log, the first: {}", panics.len(), panics[0]);
    let warnings = log.iter().filter(|(_, l)| l.contains("on a damaged or unusual code")).count();
    assert_eq!(warnings, 1, "not one warning a minute");
    drop(log);
    eprintln!("a code that panics the decoder: one warning; a release opened in {release:?}");
    assert_eq!(opened(&db, EntryMethod::Guard), 1);
}
