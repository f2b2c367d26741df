//! One owner of residents and keys in the daemon (issue 16), shown on real processes: the daemon with its
//! portal over real HTTPS, the CLI beside it on the same database, a second gate over a real nats-server.
//!
//! - Two residents enrolled, one revoked with the CLI while the daemon runs, the other revoked on the portal
//!   (it used to answer 500: the portal's copy of the master key had been rotated away), and a third enrolled
//!   on the portal after another CLI revocation (it used to be "enrolled" under a deleted key, never
//!   matchable) admitted by the gate within 2 s.
//! - 300 interleaved changes from the CLI, the portal and a second gate: afterwards the daemon's gallery is
//!   exactly the residents with live consent and a template, every row opens, `facegate audit` passes, and no
//!   master key the daemon held before is left anywhere in its memory (`/proc/PID/mem`).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::compound::{nats_server, Broker, COMPOUND, FACE_OPENED};
use common::daemon::{client, facegate, free_port, household_client, start_gate, start_gate_with, Gate, MANAGER};
use common::portal::{between, csrf, get, login, post, resident_enrols, token};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;

fn notice(dir: &Path) -> PathBuf {
    let path = dir.join("notice.txt");
    std::fs::write(&path, "Face entry at the gate: a protected template, never a photo.").unwrap();
    path
}

/// `facegate consent` + `facegate enroll` of `photos` for `resident`; whether the enrolment succeeded (a photo
/// set may fail the quality or liveness bar: that is a refusal, not an error).
fn cli_enrols(gate: &Gate, resident: &str, photos: &[PathBuf], notice: &Path) -> bool {
    gate.cli(
        &[
            "consent",
            "--resident",
            resident,
            "--unit",
            "9-909",
            "--notice",
            notice.to_str().unwrap(),
            "--notice-version",
            "1",
        ],
        None,
    );
    let mut args = vec!["enroll".to_owned(), "--resident".into(), resident.into()];
    args.extend(photos.iter().map(|p| p.display().to_string()));
    facegate(Some(&gate.config()), &args.iter().map(String::as_str).collect::<Vec<_>>(), None).status.success()
}

/// Residents with live consent and a template, as `facegate residents --json` lists them; fails on any row
/// that does not open.
fn live_with_template(config: &Path) -> Vec<String> {
    let out = facegate(Some(config), &["residents", "--json"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("does not open"), "a stored template does not open: {stderr}");
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| !r["consent_granted_at"].is_null() && !r["template_version"].is_null())
        .map(|r| r["resident"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// The fingerprint of the gallery the daemon last published (its log), and of the store's live residents.
fn gallery_matches_store(gate: &Gate) -> (String, String) {
    let logged = gate
        .last_log("fingerprint=")
        .and_then(|l| {
            l.split("fingerprint=")
                .nth(1)
                .map(|f| f.split_whitespace().next().unwrap_or("").trim_matches('"').to_owned())
        })
        .unwrap_or_default();
    let ids = live_with_template(&gate.config());
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    (logged, facegate::registry::snapshot::fingerprint_of(&refs))
}

fn wait_until_gallery_matches_store(gate: &Gate, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let (logged, expected) = gallery_matches_store(gate);
        if logged == expected {
            return live_with_template(&gate.config()).len();
        }
        assert!(Instant::now() < deadline, "the daemon's gallery ({logged}) is not the store's ({expected})");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_cli_and_the_portal_change_residents_under_one_running_daemon() {
    let (b_frames, c_frames) = (common::nuaa_frames("live", "0002"), common::nuaa_frames("live", "0003"));
    let mut gate = start_gate(&b_frames);
    let notice = notice(gate.dir.path());
    let people = common::people_with(8);
    // Two residents enrolled with the CLI while the daemon runs.
    assert!(cli_enrols(&gate, "r-a", &people[0].1[..6], &notice), "resident A did not enrol from photos");
    assert!(cli_enrols(&gate, "r-d", &people[1].1[..6], &notice), "resident D did not enrol from photos");
    // B enrols on the portal, in front of the gate camera; the revocation code comes with the enrolment.
    let manager = client(&gate, false);
    login(&manager, &gate, MANAGER);
    let (b_code, _) = resident_enrols(&manager, &gate, "2-201");

    // The CLI revokes A: master key and transform rotate under the daemon.
    gate.cli(&["revoke", "--resident", "r-a"], None);
    // B revokes on the portal: a receipt, not a 500.
    let anyone = client(&gate, false);
    let t = token(&anyone, &gate);
    let (status, receipt) = post(&anyone, &gate, "/revoke", &[("csrf", &t), ("code", &b_code)]);
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert!(receipt.contains("sealed face template") && receipt.contains("id=\"verification-code\""), "{receipt}");

    // Another CLI revocation, then C enrols on the portal: matchable at the gate within 2 s.
    gate.cli(&["revoke", "--resident", "r-d"], None);
    gate.show(&c_frames);
    std::thread::sleep(Duration::from_secs(2));
    let (_, enrolled_at) = resident_enrols(&manager, &gate, "3-301");
    let opened = gate.wait_for_log(FACE_OPENED, enrolled_at, Duration::from_secs(10));
    let latency = opened.duration_since(enrolled_at);
    eprintln!("portal enrolment to the gate's face admission: {latency:?}");
    assert!(latency <= Duration::from_secs(2), "C was admitted {latency:?} after the enrolment, not within 2 s");
    // Every stored template opens, and the daemon's gallery is exactly the residents with live consent.
    let matchable = wait_until_gallery_matches_store(&gate, Duration::from_secs(5));
    assert_eq!(matchable, 1, "only C is left");
    // The manager still sees who can withdraw (by unit, no biometrics), and could revoke C for the household.
    let (_, page) = get(&manager, &gate, "/manager");
    let residents = between(&page, "id=\"residents\"", "</table>");
    assert!(residents.contains("3-301") && !residents.contains("2-201"), "{residents}");
}

/// Every readable mapping of a process, as (start, bytes).
fn process_memory(pid: u32) -> Vec<(String, u64, Vec<u8>)> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut regions = Vec::new();
    let mut guard_below = false;
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else { continue };
        let name = parts.nth(3).unwrap_or("");
        let after_guard = std::mem::replace(&mut guard_below, perms.starts_with("---"));
        if !perms.starts_with('r') || name == "[vvar]" || name == "[vsyscall]" {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap());
        // Where a leftover key sits says what left it: a thread's stack (anonymous, above a guard page), the
        // allocator's heap or an arena, or a file mapping.
        let what = match name {
            // glibc's per-thread arenas start 64 MiB-aligned; a thread stack sits above its guard page.
            "" if a % (64 << 20) == 0 => format!("a malloc arena, {} KiB", (b - a) / 1024),
            "" if after_guard => format!("anonymous above a guard page (a thread stack?), {} KiB", (b - a) / 1024),
            "" => format!("anonymous, {} KiB", (b - a) / 1024),
            other => other.to_owned(),
        };
        let mut bytes = vec![0u8; usize::try_from(b - a).unwrap()];
        if mem.seek(SeekFrom::Start(a)).is_ok() && mem.read_exact(&mut bytes).is_ok() {
            regions.push((what, a, bytes));
        }
    }
    regions
}

/// Which of `keys` occur anywhere in the process's memory, at any alignment, and where (mapping, address).
fn keys_in_memory(pid: u32, keys: &[[u8; 32]]) -> HashMap<usize, Vec<String>> {
    let mut by_prefix: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        by_prefix.entry(u64::from_le_bytes(key[..8].try_into().unwrap())).or_default().push(i);
    }
    let mut found: HashMap<usize, Vec<String>> = HashMap::new();
    for (what, start, bytes) in process_memory(pid) {
        for at in 0..bytes.len().saturating_sub(31) {
            let prefix = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            if let Some(candidates) = by_prefix.get(&prefix) {
                for &i in candidates {
                    if bytes[at..at + 32] == keys[i] {
                        let context = if std::env::var_os("KEY_CONTEXT").is_some() {
                            let hex = |r: std::ops::Range<usize>| {
                                bytes[r.start.min(bytes.len())..r.end.min(bytes.len())]
                                    .iter()
                                    .map(|b| format!("{b:02x}"))
                                    .collect::<String>()
                            };
                            format!(
                                " before {} key {} after {}",
                                hex(at.saturating_sub(96)..at),
                                hex(at..at + 32),
                                hex(at + 32..at + 272)
                            )
                        } else {
                            String::new()
                        };
                        found.entry(i).or_default().push(format!("{:#x} in {what}{context}", start + at as u64));
                    }
                }
            }
        }
    }
    found
}

/// Every master key the key file held while the test ran (polled every 5 ms), oldest first.
fn watch_keys(file: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<[u8; 32]>> {
    std::thread::spawn(move || {
        let mut seen: Vec<[u8; 32]> = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            if let Ok(bytes) = std::fs::read(&file) {
                if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                    if seen.last() != Some(&key) && key != [0u8; 32] {
                        seen.push(key);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        seen
    })
}

/// Every master key a running daemon held before is gone from its memory as soon as the next one is in use:
/// after a rotation it made itself (a revocation on its portal, carrying the other residents' templates over)
/// and after one another process made under it (a CLI revocation, which the daemon follows). Not left in a
/// stack frame of the thread that rotated, nor in a freed buffer.
#[test]
fn no_master_key_the_daemon_replaced_is_left_in_its_memory() {
    let gate = start_gate(&common::nuaa_frames("live", "0002"));
    let manager = client(&gate, false);
    login(&manager, &gate, MANAGER);
    let notice = notice(gate.dir.path());
    let people = common::people_with(6);
    let ids: Vec<String> = (0..4).map(|i| format!("r-{i}")).collect();
    for (id, (_, photos)) in ids.iter().zip(&people) {
        assert!(cli_enrols(&gate, id, &photos[..5], &notice), "{id} did not enrol from photos");
    }
    let key_file = gate.dir.path().join("keys/master.key");
    let read_key = || <[u8; 32]>::try_from(std::fs::read(&key_file).unwrap().as_slice()).unwrap();
    let mut keys = vec![read_key()];
    for (step, id) in ids.iter().enumerate() {
        let by = if step % 2 == 0 {
            let token_m = csrf(&get(&manager, &gate, "/manager").1);
            let (status, receipt) =
                post(&manager, &gate, &format!("/manager/residents/{id}/revoke"), &[("csrf", &token_m)]);
            assert_eq!(status, StatusCode::OK, "the manager's revocation: {receipt}");
            "the daemon (a revocation on its portal)"
        } else {
            gate.cli(&["revoke", "--resident", id], None);
            "the CLI (the daemon follows)"
        };
        wait_until_gallery_matches_store(&gate, Duration::from_secs(10));
        let now = read_key();
        assert_ne!(Some(&now), keys.last(), "the revocation rotated the master key");
        keys.push(now);
        let found = keys_in_memory(gate.pid(), &keys);
        let current = keys.len() - 1;
        assert!(
            found.contains_key(&current),
            "the current master key is not in the daemon's memory: the scan sees nothing"
        );
        let stale: BTreeMap<usize, &Vec<String>> =
            found.iter().filter(|(&i, _)| i < current).map(|(&i, at)| (i, at)).collect();
        assert!(
            stale.is_empty(),
            "after rotation {} by {by}, master keys the daemon held before are still in its memory (index: where): {stale:?}",
            step + 1
        );
    }
}

#[test]
fn three_hundred_interleaved_changes_leave_one_consistent_registry_and_no_old_key_in_memory() {
    let _ = nats_server();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let compound = root.join("compound");
    let broker_port = free_port();
    let listen = format!("127.0.0.1:{broker_port}");
    let ok = |args: &[&str]| {
        let out = facegate(None, args, None);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (compound_s, store_dir) = (compound.to_str().unwrap(), root.join("broker-store"));
    ok(&[
        "compound",
        "init",
        "--dir",
        compound_s,
        "--name",
        COMPOUND,
        "--listen",
        &listen,
        "--install-dir",
        compound.join("broker").to_str().unwrap(),
        "--store-dir",
        store_dir.to_str().unwrap(),
    ]);
    for gate in ["gate-a", "gate-b"] {
        ok(&["compound", "add-gate", "--dir", compound_s, "--gate", gate]);
    }
    let mut broker = Broker { conf: compound.join("broker/nats-server.conf"), port: broker_port, child: None };
    broker.start();
    let compound_section = |name: &str, dir: &Path| {
        let dest = dir.join("keys/compound");
        std::fs::create_dir_all(&dest).unwrap();
        for file in ["ca.pem", "gate.pem", "gate.key", "compound.key"] {
            std::fs::copy(compound.join("gates").join(name).join(file), dest.join(file)).unwrap();
        }
        format!(
            "[compound]\nname = \"{COMPOUND}\"\ngate = \"{name}\"\ngates = [\"gate-a\", \"gate-b\"]\n\
             broker = \"tls://127.0.0.1:{broker_port}\"\noffline_limit = \"60s\"\ncounts_every = \"5s\"\n"
        )
    };
    let nuaa: Vec<Vec<PathBuf>> =
        ["0001", "0002", "0003", "0004"].iter().map(|s| common::nuaa_frames("live", s)).collect();
    // Gate A: the daemon under test, with its portal; gate B: another gate of the compound.
    let gate_a = Arc::new(Mutex::new(start_gate_with(&nuaa[0], |dir| compound_section("gate-a", dir))));
    let gate_b = start_gate_with(&nuaa[1][..2], |dir| compound_section("gate-b", dir));
    let (a_config, a_pid, a_keys) = {
        let a = gate_a.lock().unwrap();
        (a.config(), a.pid(), a.dir.path().join("keys/master.key"))
    };
    let stop_watching = Arc::new(AtomicBool::new(false));
    let key_watcher = watch_keys(a_keys.clone(), stop_watching.clone());
    let notice_file = notice(root);
    let people = common::people_with(6);
    let ops = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    // Thread 1: the CLI at gate A. Thread 3: the CLI at gate B (announced to A over the broker). Each its
    // own people, so no enrolment is a duplicate of another thread's.
    let cli_worker = |config: PathBuf, prefix: &'static str, faces: Vec<Vec<PathBuf>>, seed: u64, count: usize| {
        let (ops, notice_file) = (ops.clone(), notice_file.clone());
        std::thread::spawn(move || {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut live: Vec<String> = Vec::new();
            let mut faces = faces.into_iter();
            let mut n = 0;
            let run = |args: &[&str], stdin: Option<&str>| {
                let out = facegate(Some(&config), args, stdin);
                assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
            };
            for i in 0..count {
                let id = format!("{prefix}{i}");
                match rng.random_range(0..10) {
                    0..=3 => {
                        if let Some(photos) = faces.next() {
                            run(
                                &[
                                    "consent",
                                    "--resident",
                                    &id,
                                    "--unit",
                                    "1-101",
                                    "--notice",
                                    notice_file.to_str().unwrap(),
                                    "--notice-version",
                                    "1",
                                ],
                                None,
                            );
                            let mut args = vec!["enroll".to_owned(), "--resident".into(), id.clone()];
                            args.extend(photos.iter().map(|p| p.display().to_string()));
                            let out =
                                facegate(Some(&config), &args.iter().map(String::as_str).collect::<Vec<_>>(), None);
                            ops.fetch_add(2, Ordering::SeqCst);
                            n += 2;
                            if out.status.success() {
                                live.push(id);
                            }
                            continue;
                        }
                        run(
                            &[
                                "consent",
                                "--resident",
                                &id,
                                "--notice",
                                notice_file.to_str().unwrap(),
                                "--notice-version",
                                "1",
                            ],
                            None,
                        );
                    }
                    4..=5 => {
                        // A PIN for someone (a keypad code per resident).
                        let target = live.get(rng.random_range(0..live.len().max(1))).cloned().unwrap_or(id.clone());
                        if !live.contains(&target) {
                            run(
                                &[
                                    "consent",
                                    "--resident",
                                    &target,
                                    "--notice",
                                    notice_file.to_str().unwrap(),
                                    "--notice-version",
                                    "1",
                                ],
                                None,
                            );
                            ops.fetch_add(1, Ordering::SeqCst);
                            n += 1;
                        }
                        let code = format!("{}{:05}", if prefix.contains('a') { 5 } else { 6 }, i);
                        run(&["pin", "--resident", &target, "--code", &code], Some("4071\n"));
                    }
                    _ => {
                        if live.is_empty() {
                            run(
                                &[
                                    "consent",
                                    "--resident",
                                    &id,
                                    "--notice",
                                    notice_file.to_str().unwrap(),
                                    "--notice-version",
                                    "1",
                                ],
                                None,
                            );
                        } else {
                            let target = live.swap_remove(rng.random_range(0..live.len()));
                            run(&["revoke", "--resident", &target], None);
                        }
                    }
                }
                ops.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
            n
        })
    };
    let faces_a: Vec<Vec<PathBuf>> = people.iter().step_by(2).take(40).map(|(_, p)| p[..5].to_vec()).collect();
    let faces_b: Vec<Vec<PathBuf>> = people.iter().skip(1).step_by(2).take(40).map(|(_, p)| p[..5].to_vec()).collect();
    let t1 = cli_worker(a_config.clone(), "r-a", faces_a, 1, 95);
    let t3 = cli_worker(gate_b.config(), "r-b", faces_b, 3, 95);

    // Thread 2: the portal at gate A: codes, face enrolments at the camera (the four NUAA people in turn),
    // PIN-only households, revocations by code and by the manager.
    let t2 = {
        let (gate, ops, nuaa) = (gate_a.clone(), ops.clone(), nuaa.clone());
        std::thread::spawn(move || {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
            let manager = client(&gate.lock().unwrap(), false);
            login(&manager, &gate.lock().unwrap(), MANAGER);
            // (revocation code, nuaa index) of the people enrolled on the portal now.
            let mut enrolled: Vec<(String, usize)> = Vec::new();
            let mut n = 0;
            while n < 110 {
                let free: Vec<usize> = (0..4).filter(|k| !enrolled.iter().any(|(_, e)| e == k)).collect();
                let choice = rng.random_range(0..10);
                let g = gate.lock().unwrap();
                if choice < 4 && !free.is_empty() {
                    let k = free[rng.random_range(0..free.len())];
                    drop(g);
                    gate.lock().unwrap().show(&nuaa[k]);
                    let g = gate.lock().unwrap();
                    let (code, _) = resident_enrols(&manager, &g, &format!("4-{n:03}"));
                    enrolled.push((code, k));
                    n += 3; // code issued, consent, enrolment
                } else if choice < 7 && !enrolled.is_empty() {
                    let (code, _) = enrolled.swap_remove(rng.random_range(0..enrolled.len()));
                    let anyone = household_client(&g);
                    let t = token(&anyone, &g);
                    let (status, receipt) = post(&anyone, &g, "/revoke", &[("csrf", &t), ("code", &code)]);
                    assert_eq!(status, StatusCode::OK, "portal revocation: {receipt}");
                    n += 1;
                } else {
                    // A PIN-only household: code, consent without the face, PIN.
                    let token_m = csrf(&get(&manager, &g, "/manager").1);
                    let (status, body) = post(&manager, &g, "/manager/codes", &[("csrf", &token_m), ("unit", "5-505")]);
                    assert_eq!(status, StatusCode::OK, "{body}");
                    let code = between(&body, "id=\"issued-code\">", "<").to_owned();
                    let resident = household_client(&g);
                    let t = token(&resident, &g);
                    assert_eq!(
                        post(&resident, &g, "/resident", &[("csrf", &t), ("code", &code)]).0,
                        StatusCode::SEE_OTHER
                    );
                    assert_eq!(
                        post(&resident, &g, "/resident/consent", &[("csrf", &t), ("choice", "pin")]).0,
                        StatusCode::SEE_OTHER
                    );
                    let pin = format!("{}", 4_000 + rng.random_range(100..999) * 7 % 5_000 + 1_000);
                    let (status, body) =
                        post(&resident, &g, "/resident/pin", &[("csrf", &t), ("pin", &pin), ("pin2", &pin)]);
                    assert!(status == StatusCode::OK || status == StatusCode::UNPROCESSABLE_ENTITY, "{body}");
                    n += 3;
                }
            }
            ops.fetch_add(n, Ordering::SeqCst);
            n
        })
    };
    let (n1, n2, n3) = (t1.join().unwrap(), t2.join().unwrap(), t3.join().unwrap());
    let total = ops.load(Ordering::SeqCst);
    eprintln!("{total} operations ({n1} CLI at A, {n2} portal, {n3} CLI at B) in {:?}", started.elapsed());
    assert!(total >= 300, "only {total} operations");

    // Quiet: gate B's outbox drained, gate A applied it all; the gallery is exactly the store's live residents.
    let gate_a = Arc::try_unwrap(gate_a).ok().unwrap().into_inner().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = facegate(Some(&gate_b.config()), &["compound", "status", "--json"], None);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if status["outbox"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "gate B's outbox did not drain: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let matchable = wait_until_gallery_matches_store(&gate_a, Duration::from_secs(30));
    let listed = facegate(Some(&a_config), &["residents", "--json"], None);
    let residents: Vec<serde_json::Value> =
        String::from_utf8_lossy(&listed.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let revoked =
        residents.iter().filter(|r| !r["consent_revoked_at"].is_null() && r["template_version"].is_null()).count();
    let from_b = residents.iter().filter(|r| r["resident"].as_str().unwrap().starts_with("r-b")).count();
    eprintln!("gate A: {} residents, {matchable} matchable, {revoked} revoked, {from_b} from gate B", residents.len());
    assert!(matchable >= 2 && revoked >= 10 && from_b >= 5, "the run exercised too little");
    // The auditor's check passes.
    let audit = facegate(Some(&a_config), &["audit", "--json"], None);
    assert!(
        audit.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );

    // No master key the daemon held before is left in its memory; the current one is (the scan works).
    stop_watching.store(true, Ordering::SeqCst);
    let keys = key_watcher.join().unwrap();
    let current = <[u8; 32]>::try_from(std::fs::read(&a_keys).unwrap().as_slice()).unwrap();
    let old: Vec<[u8; 32]> = keys.iter().copied().filter(|k| *k != current).collect();
    assert!(old.len() >= 10, "only {} key rotations seen", old.len());
    let mut all = old.clone();
    all.push(current);
    let found = keys_in_memory(gate_a.pid(), &all);
    let stale: BTreeMap<usize, (usize, &Vec<String>)> =
        found.iter().filter(|(&i, _)| i < old.len()).map(|(&i, at)| (i, (old.len() - i, at))).collect();
    eprintln!("memory of the daemon (pid {a_pid}): {} old master keys looked for, {} found", old.len(), stale.len());
    eprintln!("the current master key is at {:?}", found.get(&old.len()));
    assert!(
        found.contains_key(&old.len()),
        "the current master key is not in the daemon's memory: the scan shows nothing"
    );
    assert!(
        stale.is_empty(),
        "old master keys still in the daemon's memory (index: (rotations ago, where)): {stale:?}"
    );
    drop(gate_b);
    drop(gate_a);
    broker.stop();
}
