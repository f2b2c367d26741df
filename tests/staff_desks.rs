//! The guard's and the installer's pages over real HTTPS, served by the real daemon (replay camera of a live
//! person, simulated relay, the keypad, scanner and bench buttons on its standard input):
//! - the guard sees a guard-call press live, releases the door with a reason (written to the audit chain with
//!   the staff account before the door opens; counted as a guard passage), issues a visitor pass whose QR
//!   code is on screen, and that pass then opens the gate;
//! - the installer's aiming page shows the faces the camera sees as boxes and figures, and no response
//!   carries image data or more than a few hundred numbers.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::{client, start_gate_typed, Gate, MANAGER};
use common::portal::{assert_clean, csrf, get, login, post};
use facegate::policy::passage::{EntryMethod, PassageOutcome};
use facegate::store::{Store, REMOTE_RELEASE};
use reqwest::StatusCode;

const GUARD: (&str, &str) = ("grd", "guard-password-1");
const INSTALLER: (&str, &str) = ("ins", "installer-password-1");

fn add_account(gate: &Gate, (name, password): (&str, &str), role: &str) {
    gate.cli(&["account", "--name", name, "--role", role], Some(&format!("{password}\n")));
}

fn opened(db: &Path, method: EntryMethod) -> i64 {
    Store::open(db)
        .unwrap()
        .passage_counts(0, i64::MAX)
        .unwrap()
        .iter()
        .filter(|c| c.method == method && c.outcome == PassageOutcome::Opened)
        .map(|c| c.count)
        .sum()
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_guard_sees_a_call_releases_with_a_reason_in_the_audit_chain_and_issues_a_pass_that_opens() {
    // A live person nobody enrolled: the camera runs, nobody is admitted by face.
    let mut gate = start_gate_typed(&common::nuaa_frames("live", "0004")[..4], |_| String::new());
    add_account(&gate, GUARD, "guard");
    let db = gate.dir.path().join("data/facegate.sqlite");
    let guard = client(&gate, false);
    login(&guard, &gate, GUARD);
    let manager = client(&gate, false);
    login(&manager, &gate, MANAGER);
    for path in ["/guard", "/guard/release"] {
        assert_eq!(get(&manager, &gate, path).0, StatusCode::FORBIDDEN, "{path} as a manager");
        assert_eq!(get(&client(&gate, false), &gate, path).0, StatusCode::SEE_OTHER, "{path} anonymous");
    }
    let (status, page) = get(&guard, &gate, "/guard");
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"no-calls\"") && page.contains("http-equiv=\"refresh\""), "{page}");

    // A press of the guard-call button shows on the page (which gate, when), and nothing else about anyone.
    let pressed = Instant::now();
    gate.type_line("!guard");
    gate.wait_for_log("guard called", pressed, Duration::from_secs(10));
    let (_, page) = get(&guard, &gate, "/guard");
    assert_eq!(page.matches("<tr class=\"call\">").count(), 1, "{page}");
    assert!(page.contains("<td>gate</td>") && page.contains(" s ago"), "{page}");
    assert_clean("/guard", &page);

    // A release needs a reason; with one, the audit chain has it (and the account) and the gate opens and
    // counts a guard passage.
    let (_, form) = get(&guard, &gate, "/guard/release");
    let token = csrf(&form);
    let (status, _) = post(&guard, &gate, "/guard/release", &[("csrf", &token), ("reason", "ok")]);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(opened(&db, EntryMethod::Guard), 0);
    let (status, _) = post(&guard, &gate, "/guard/release", &[("csrf", "forged"), ("reason", "a delivery")]);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let released = Instant::now();
    let (status, _) =
        post(&guard, &gate, "/guard/release", &[("csrf", &token), ("reason", "parcel delivery for the office")]);
    assert_eq!(status, StatusCode::SEE_OTHER);
    gate.wait_for_log("method=\"guard\" outcome=\"opened\"", released, Duration::from_secs(10));
    wait_until("the guard passage counted", Duration::from_secs(10), || opened(&db, EntryMethod::Guard) == 1);
    let events = Store::open(&db).unwrap().audit_events(&[REMOTE_RELEASE]).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].subject, "staff:grd reason:parcel delivery for the office");
    assert_eq!(Store::open(&db).unwrap().verify_audit_chain().unwrap(), events[0].seq as usize);
    let (_, page) = get(&guard, &gate, "/guard?released=1");
    assert!(page.contains("id=\"released\""));

    // A visitor pass on the spot: its QR code is drawn on the page (vector squares, no image), and the pass
    // opens the gate once.
    let token = csrf(&get(&guard, &gate, "/guard").1);
    let (status, page) = post(&guard, &gate, "/guard/pass", &[("csrf", &token)]);
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<svg") && !page.contains("<img"), "{page}");
    let at = page.find("id=\"pass-text\">").unwrap() + 15;
    let pass = page[at..at + page[at..].find('<').unwrap()].to_owned();
    assert!(pass.starts_with("FGP1:"), "{pass}");
    // (That it opens only once is the pass's own rule, tested with the passes; here: the desk's pass opens.)
    let scanned = Instant::now();
    gate.type_line(&pass);
    gate.wait_for_log("method=\"visitor_pass\" outcome=\"opened\"", scanned, Duration::from_secs(10));
    wait_until("the pass counted", Duration::from_secs(10), || opened(&db, EntryMethod::VisitorPass) == 1);
}

/// Every number in a page's body (not its head: the style sheet is a file of its own).
fn numbers(body: &str) -> usize {
    let body = &body[body.find("<body").unwrap_or(0)..];
    body.split(|c: char| !(c.is_ascii_digit() || c == '.')).filter(|w| w.chars().any(|c| c.is_ascii_digit())).count()
}

#[test]
fn the_aiming_page_draws_the_faces_as_figures_and_no_response_carries_image_data() {
    let gate = start_gate_typed(&common::nuaa_frames("live", "0003")[..6], |_| String::new());
    add_account(&gate, INSTALLER, "installer");
    let installer = client(&gate, false);
    login(&installer, &gate, INSTALLER);
    let manager = client(&gate, false);
    login(&manager, &gate, MANAGER);
    assert_eq!(get(&manager, &gate, "/installer").0, StatusCode::FORBIDDEN);
    assert_eq!(get(&client(&gate, false), &gate, "/installer").0, StatusCode::SEE_OTHER);

    // The first visit starts the camera describing frames; the next shows them.
    let mut pages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let response = installer.get(format!("{}/installer", gate.base)).send().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let body = response.bytes().unwrap().to_vec();
        pages.push(body.clone());
        let body = String::from_utf8(body).unwrap();
        if body.contains("<tr class=\"face\">") {
            break body;
        }
        assert!(Instant::now() < deadline, "no face on the aiming page:\n{body}");
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("{page}");
    // NUAA webcam frames: 640x480, one person in front of the camera.
    assert!(page.contains("viewBox=\"0 0 640 480\""), "{page}");
    assert!(page.contains("id=\"zone\"") && page.contains("id=\"min-face\""));
    // One person in view (the detector may add a weak second box on some frames): each box has its row.
    let boxes = page.matches("<rect class=\"face\"").count();
    assert!(boxes >= 1 && boxes == page.matches("<tr class=\"face\">").count(), "{page}");
    assert!(page.contains("brightness ") && page.contains("sharpness "));
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        pages.push(installer.get(format!("{}/installer", gate.base)).send().unwrap().bytes().unwrap().to_vec());
    }
    for body in &pages {
        // Binary image signatures, encoded images and any long run of base64 or hex.
        for magic in [&b"\xFF\xD8\xFF"[..], b"\x89PNG", b"GIF8", b"RIFF", b"BM6"] {
            assert!(!body.windows(magic.len()).any(|w| w == magic), "image signature {magic:?}");
        }
        let text = String::from_utf8(body.clone()).unwrap();
        for marker in ["<img", "data:", "base64", "<canvas", "<image", "url("] {
            assert!(!text.contains(marker), "{marker} in the aiming page");
        }
        let longest_run = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='))
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest_run < 64, "a run of {longest_run} base64-like characters");
        let n = numbers(&text);
        assert!(n < 300, "{n} numbers on the aiming page");
        assert_clean("/installer", &text);
    }
    let most = pages.iter().map(|b| numbers(&String::from_utf8_lossy(b))).max().unwrap();
    eprintln!("{} aiming pages, at most {most} numbers each", pages.len());
}
