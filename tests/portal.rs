//! The portal over real HTTPS, served by the real daemon (`facegate run` with `[portal] enabled`), with a real
//! SQLite file, the real models and a replay camera of a live person (NUAA webcam frames):
//! - an authorization matrix: every route x anonymous, a resident in set-up, a manager, an auditor -> the
//!   expected status, and no page carrying a biometric value or a passage identity;
//! - the whole story: a manager issues a code; the resident consents, enrols at the gate camera, sets a PIN;
//!   the gate admits them; the manager's counts show the entry suppressed; the resident revokes and gets a
//!   receipt; the auditor's report shows the deletion with the receipt's code and a clean scan.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{client, start_gate, AUDITOR, BIN, MANAGER};
use common::portal::{assert_clean, between, get, issue_code, location, login, post, token};
use reqwest::StatusCode;

#[test]
fn every_route_answers_each_role_as_it_should_and_carries_no_biometric_data() {
    let gate = start_gate(&common::nuaa_frames("live", "0004")[..4]);
    let anon = client(&gate, false);
    let manager = client(&gate, false);
    login(&manager, &gate, MANAGER);
    let auditor = client(&gate, false);
    login(&auditor, &gate, AUDITOR);
    // A resident holding a valid code, in set-up (consent page reachable, nothing else).
    let resident = client(&gate, false);
    let code = issue_code(&manager, &gate, "7-702");
    let rt = token(&resident, &gate);
    assert_eq!(post(&resident, &gate, "/resident", &[("csrf", &rt), ("code", &code)]).0, StatusCode::SEE_OTHER);

    use StatusCode as S;
    let (ok, see, forbidden) = (S::OK, S::SEE_OTHER, S::FORBIDDEN);
    // (method, path, anonymous, resident, manager, auditor)
    let matrix: &[(&str, &str, [StatusCode; 4])] = &[
        ("GET", "/", [ok, ok, ok, ok]),
        ("GET", "/style.css", [ok, ok, ok, ok]),
        ("GET", "/signage", [ok, ok, ok, ok]),
        ("GET", "/resident", [ok, ok, ok, ok]),
        ("GET", "/resident/consent", [see, ok, see, see]),
        ("GET", "/resident/enrol", [see, see, see, see]),
        ("GET", "/resident/enrol/status", [see, see, see, see]),
        ("GET", "/resident/pin", [see, see, see, see]),
        ("GET", "/revoke", [ok, ok, ok, ok]),
        ("GET", "/login", [ok, ok, ok, ok]),
        ("GET", "/manager", [see, see, ok, forbidden]),
        ("GET", "/manager/counts.csv", [see, see, ok, forbidden]),
        ("POST", "/manager/codes", [see, see, ok, forbidden]),
        ("POST", "/manager/codes/999/cancel", [see, see, see, forbidden]),
        ("POST", "/manager/residents/r-nobody/revoke", [see, see, S::NOT_FOUND, forbidden]),
        ("GET", "/auditor", [see, see, forbidden, ok]),
        ("GET", "/auditor/report.json", [see, see, forbidden, ok]),
        ("POST", "/resident/enrol", [see, see, see, see]),
        ("POST", "/resident/pin", [see, see, see, see]),
        ("GET", "/no/such/page", [S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND]),
    ];
    let roles = [("anonymous", &anon), ("resident", &resident), ("manager", &manager), ("auditor", &auditor)];
    let mut checked = 0;
    for (method, path, expected) in matrix {
        for ((role, c), want) in roles.iter().zip(expected) {
            let (status, body) = if *method == "GET" {
                get(c, &gate, path)
            } else {
                let token = token(c, &gate);
                post(c, &gate, path, &[("csrf", &token), ("unit", "9-901"), ("pin", "4071"), ("pin2", "4071")])
            };
            assert_eq!(status, *want, "{method} {path} as {role}: {body}");
            assert_clean(path, &body);
            checked += 1;
        }
    }
    // A form without the session's CSRF token is refused, whoever sends it.
    for (role, c) in &roles[1..] {
        let (status, _) = post(c, &gate, "/logout", &[("csrf", "0000")]);
        assert_eq!(status, S::BAD_REQUEST, "logout without the token as {role}");
    }
    let (status, _) = post(&manager, &gate, "/manager/codes", &[("csrf", "forged"), ("unit", "1-101")]);
    assert_eq!(status, S::BAD_REQUEST);
    // The session cookie is Secure, HttpOnly, SameSite=Strict and host-only; every page forbids framing and
    // scripts from anywhere.
    let response = client(&gate, false).get(format!("{}/login", gate.base)).send().unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in ["__Host-facegate=", "Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let csp = response.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    eprintln!("{checked} route x role checks");
    assert_eq!(checked, matrix.len() * 4);
}

#[test]
fn staff_logins_are_throttled_and_locked_after_repeated_failures() {
    let gate = start_gate(&common::nuaa_frames("live", "0004")[..2]);
    let c = client(&gate, false);
    let t = token(&c, &gate);
    for i in 0..5 {
        let (status, body) =
            post(&c, &gate, "/login", &[("csrf", &t), ("name", MANAGER.0), ("password", "wrong-password-x")]);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
    }
    // Locked now: even the right password is refused (from a fresh client, before the address limit).
    let fresh = client(&gate, false);
    let t = token(&fresh, &gate);
    let (status, _) = post(&fresh, &gate, "/login", &[("csrf", &t), ("name", MANAGER.0), ("password", MANAGER.1)]);
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a locked account signed in");
    // The address limit: 10 attempts a minute from one address, then 429 whatever the account.
    let mut last = StatusCode::OK;
    for _ in 0..6 {
        last = post(&fresh, &gate, "/login", &[("csrf", &t), ("name", AUDITOR.0), ("password", "nope-nope-nope")]).0;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

/// The portal from the code to the auditor, over HTTPS with the real daemon and a replay camera of NUAA
/// subject 0003's live frames.
#[test]
fn a_resident_enrols_is_admitted_counted_suppressed_then_revokes_and_the_auditor_sees_the_deletion() {
    let gate = start_gate(&common::nuaa_frames("live", "0003"));
    let manager = client(&gate, false);
    login(&manager, &gate, MANAGER);
    let code = issue_code(&manager, &gate, "3-401");

    let resident = client(&gate, false);
    let t = token(&resident, &gate);
    let (status, _) = post(&resident, &gate, "/resident", &[("csrf", &t), ("code", &code.to_lowercase())]);
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, notice) = get(&resident, &gate, "/resident/consent");
    assert_eq!(status, StatusCode::OK);
    assert!(notice.contains("Riverside Gardens management") && notice.contains("never a photo"), "{notice}");
    // Consent is explicit: the box must be ticked.
    let (status, body) = post(&resident, &gate, "/resident/consent", &[("csrf", &t), ("choice", "face")]);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) =
        post(&resident, &gate, "/resident/consent", &[("csrf", &t), ("choice", "face"), ("consent", "yes")]);
    assert_eq!(status, StatusCode::SEE_OTHER);
    // The code is spent.
    let other = client(&gate, false);
    let ot = token(&other, &gate);
    assert_eq!(post(&other, &gate, "/resident", &[("csrf", &ot), ("code", &code)]).0, StatusCode::UNPROCESSABLE_ENTITY);

    // Enrolment at the gate camera: the page only shows progress, never an image.
    assert_eq!(post(&resident, &gate, "/resident/enrol", &[("csrf", &t)]).0, StatusCode::SEE_OTHER);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut polls = 0;
    let revocation = loop {
        let (status, _, body) = location(&resident, &gate, "/resident/enrol/status");
        polls += 1;
        assert_clean("/resident/enrol/status", &body);
        assert_eq!(status, StatusCode::OK, "{body}");
        if body.contains("id=\"revocation-code\"") {
            // The revocation code comes with the enrolment itself, before the PIN step.
            assert!(body.contains("enrolled and protected") && body.contains("id=\"pin\""), "{body}");
            break between(&body, "id=\"revocation-code\">", "<").to_owned();
        }
        assert!(body.contains("Good frames") && !body.contains("Enrolment did not complete"), "{body}");
        assert!(Instant::now() < deadline, "enrolment did not complete: {body}");
        std::thread::sleep(Duration::from_millis(300));
    };
    eprintln!("enrolled after {polls} status polls");
    let (status, body) = get(&resident, &gate, "/resident/pin");
    assert!(status == StatusCode::OK && body.contains("enrolled and protected"), "{body}");
    assert!(!body.contains("revocation-code"), "the revocation code is shown once: {body}");
    let (status, done) = post(&resident, &gate, "/resident/pin", &[("csrf", &t), ("pin", "4071"), ("pin2", "4071")]);
    assert_eq!(status, StatusCode::OK, "{done}");
    let keypad = between(&done, "At the keypad type: ", " #").to_owned();
    assert!(done.contains("revocation code shown when your face was enrolled"), "{done}");
    assert!(keypad.len() == 4 && revocation.len() == 19, "{keypad} {revocation}");

    // The gate now admits the resident's face; the manager sees the entry only as a suppressed count.
    let deadline = Instant::now() + Duration::from_secs(40);
    let days = loop {
        let (_, body) = get(&manager, &gate, "/manager");
        assert_clean("/manager", &body);
        let days = between(&body, "id=\"table-days\"", "</table>").to_owned();
        if days.contains("face") {
            break days;
        }
        assert!(Instant::now() < deadline, "no face entry counted: {body}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(days.contains("opened") && days.contains("not shown (1-10)"), "{days}");
    assert!(!days.contains("r-"), "a resident id on the manager's page: {days}");
    let (_, csv) = get(&manager, &gate, "/manager/counts.csv");
    assert!(csv.starts_with("start_utc,method,outcome,count\n") && csv.contains("face,opened,suppressed"), "{csv}");
    let (_, enrolled) = get(&manager, &gate, "/manager");
    assert!(enrolled.contains("Residents with face entry: 1"));

    // Revocation with the code: a receipt at once.
    let anyone = client(&gate, false);
    let at = token(&anyone, &gate);
    let (status, receipt) = post(&anyone, &gate, "/revoke", &[("csrf", &at), ("code", &revocation)]);
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert!(receipt.contains("sealed face template") && receipt.contains("PIN verifier"), "{receipt}");
    let verification = between(&receipt, "id=\"verification-code\">", "<").to_owned();
    assert_eq!(verification.len(), 16);
    // The code cannot be used twice.
    assert_eq!(
        post(&anyone, &gate, "/revoke", &[("csrf", &at), ("code", &revocation)]).0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (_, after) = get(&manager, &gate, "/manager");
    assert!(after.contains("Residents with face entry: 0"));

    // The auditor: a clean scan, and the deletion with the receipt's code; the signed report verifies offline.
    let auditor = client(&gate, false);
    login(&auditor, &gate, AUDITOR);
    let (status, report) = get(&auditor, &gate, "/auditor");
    assert_eq!(status, StatusCode::OK);
    assert!(report.contains("id=\"result\" class=\"pass\""), "{report}");
    assert!(between(&report, "id=\"check-files\"", "</tr>").contains("PASS"), "{report}");
    assert!(between(&report, "id=\"deletions\"", "</table>").contains(&verification), "{report}");
    let (status, json) = get(&auditor, &gate, "/auditor/report.json");
    assert_eq!(status, StatusCode::OK);
    let saved = gate.dir.path().join("audit.json");
    std::fs::write(&saved, json).unwrap();
    let out = Command::new(BIN).args(["audit", "verify", saved.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the report PASSED"));
}
