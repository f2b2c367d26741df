//! The portal as a browser-like client uses it: CSRF tokens, forms, staff sign-in, a resident's whole set-up.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;

use super::daemon::Gate;

pub fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 32].to_owned()
}

pub fn text(response: Response) -> (StatusCode, String) {
    let status = response.status();
    (status, response.text().unwrap())
}

pub fn get(c: &Client, gate: &Gate, path: &str) -> (StatusCode, String) {
    text(c.get(format!("{}{path}", gate.base)).send().unwrap())
}

pub fn post(c: &Client, gate: &Gate, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
    text(c.post(format!("{}{path}", gate.base)).form(form).send().unwrap())
}

/// The CSRF token of this client's session.
pub fn token(c: &Client, gate: &Gate) -> String {
    csrf(&get(c, gate, "/login").1)
}

pub fn login(c: &Client, gate: &Gate, (name, password): (&str, &str)) {
    let token = token(c, gate);
    let (status, body) = post(c, gate, "/login", &[("csrf", &token), ("name", name), ("password", password)]);
    assert!(status == StatusCode::SEE_OTHER || status == StatusCode::OK, "{status}: {body}");
}

/// A manager's fresh enrolment code for `unit`.
pub fn issue_code(c: &Client, gate: &Gate, unit: &str) -> String {
    let token = csrf(&get(c, gate, "/manager").1);
    let (status, body) = post(c, gate, "/manager/codes", &[("csrf", &token), ("unit", unit)]);
    assert_eq!(status, StatusCode::OK, "{body}");
    let at = body.find("id=\"issued-code\">").expect("the issued code") + 17;
    body[at..at + 14].to_owned()
}

/// Nothing a page returns may look like an embedding (a run of many decimals), carry an image, or name a
/// resident (a passage identity or any id) outside the auditor's deletion list.
pub fn assert_clean(path: &str, body: &str) {
    let floats = body
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .filter(|w| w.contains('.') && w.len() >= 7 && w.parse::<f64>().is_ok_and(|v| v.abs() < 1.0))
        .count();
    assert!(floats < 8, "{path}: {floats} long decimals");
    for marker in ["data:image", "\u{FFFD}PNG", "JFIF", "base64,"] {
        assert!(!body.contains(marker), "{path}: {marker}");
    }
}

pub fn location(c: &Client, gate: &Gate, path: &str) -> (StatusCode, String, String) {
    let response = c.get(format!("{}{path}", gate.base)).send().unwrap();
    let to = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let (status, body) = text(response);
    (status, to, body)
}

pub fn between<'a>(body: &'a str, start: &str, end: &str) -> &'a str {
    let at = body.find(start).unwrap_or_else(|| panic!("{start:?} not in {body}")) + start.len();
    &body[at..at + body[at..].find(end).unwrap()]
}

/// A household's whole set-up on the portal with a code for `unit`: consent to face entry, enrolment at the
/// gate camera (whoever it sees now), the revocation code that comes with the enrolment. Returns the code and
/// the instant the enrolment was reported complete.
pub fn resident_enrols(manager: &Client, gate: &Gate, unit: &str) -> (String, Instant) {
    let code = issue_code(manager, gate, unit);
    let resident = super::daemon::household_client(gate);
    let t = token(&resident, gate);
    assert_eq!(post(&resident, gate, "/resident", &[("csrf", &t), ("code", &code)]).0, StatusCode::SEE_OTHER);
    let (status, _) =
        post(&resident, gate, "/resident/consent", &[("csrf", &t), ("choice", "face"), ("consent", "yes")]);
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(post(&resident, gate, "/resident/enrol", &[("csrf", &t)]).0, StatusCode::SEE_OTHER);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, body) = location(&resident, gate, "/resident/enrol/status");
        assert_eq!(status, StatusCode::OK, "{body}");
        if body.contains("id=\"revocation-code\"") {
            return (between(&body, "id=\"revocation-code\">", "<").to_owned(), Instant::now());
        }
        assert!(!body.contains("Enrolment did not complete"), "{body}");
        assert!(Instant::now() < deadline, "enrolment did not complete: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
