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

/// The portal's router in this process (`router()` and `oneshot`, no TLS, no daemon), over a real SQLite file,
/// the real registry owner and a real enrolment desk; the test offers the desk its camera frames (the
/// hardware edge).
pub mod in_process {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{header, Request, StatusCode};
    use axum::Router;
    use facegate::audit::AuditScope;
    use facegate::portal::auth::{code_hash, hash_password, Role};
    use facegate::portal::views::NoticeFacts;
    use facegate::portal::{router, PortalSettings, PortalState};
    use facegate::registry::owner::{OwnerSettings, RegistryHandle, RegistryOwner};
    use facegate::registry::{MasterKeySource, Registry, RegistryPolicy};
    use facegate::store::unix_now;
    use facegate::vision::enrol::EnrolmentDesk;
    use tower::ServiceExt;

    pub const MANAGER: (&str, &str) = ("morgan", "manager-password-1");
    pub const AUDITOR: (&str, &str) = ("ada", "auditor-password-1");

    pub struct Bench {
        pub dir: tempfile::TempDir,
        pub db: PathBuf,
        pub handle: RegistryHandle,
        pub desk: Arc<EnrolmentDesk>,
        owner: Option<RegistryOwner>,
        app: Router,
    }

    impl Bench {
        /// A fresh database with one manager and one auditor, its registry owner, and the portal on them.
        pub fn new() -> Self {
            Self::with_enrol_timeout(facegate::portal::ENROL_TIMEOUT)
        }

        /// [`Bench::new`] with captures at the desk failing after `enrol_timeout`.
        pub fn with_enrol_timeout(enrol_timeout: Duration) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let keys = dir.path().join("keys");
            let db = dir.path().join("data/facegate.sqlite");
            let now = unix_now();
            let mut registry =
                Registry::open(&db, &MasterKeySource::file(keys.join("master.key")), RegistryPolicy::default(), now)
                    .unwrap();
            for ((name, password), role) in [(MANAGER, Role::Manager), (AUDITOR, Role::Auditor)] {
                registry.store_mut().add_account(name, role, &hash_password(password).unwrap(), now).unwrap();
            }
            let owner = RegistryOwner::spawn(registry, OwnerSettings::default()).unwrap();
            let handle = owner.handle();
            let desk = Arc::new(EnrolmentDesk::default());
            let settings = PortalSettings {
                listen: "127.0.0.1:0".parse().unwrap(),
                cert: keys.join("portal.crt"),
                key: keys.join("portal.key"),
                cert_trusted: false,
                notice: NoticeFacts {
                    operator: "Riverside Gardens management".into(),
                    contact: "office@example.org".into(),
                    held_on: "the gate device".into(),
                    max_unused_days: 365,
                    version: "2025-1".into(),
                },
                utc_offset_secs: 8 * 3600,
                count_noise_epsilon: None,
                enrol_frames: 3,
                enrol_timeout,
                live_threshold: facegate::vision::liveness::DEFAULT_LIVE_THRESHOLD,
                code_valid: Duration::from_secs(3600),
                audit: AuditScope::new(db.clone(), keys, facegate::protect::keys::KeyWrap::Plain, 365 * 86_400),
            };
            let app = router(Arc::new(PortalState::new(settings, handle.clone(), Some(desk.clone()))));
            Self { dir, db, handle, desk, owner: Some(owner), app }
        }

        /// A browser of its own (own cookie, own address).
        pub fn browser(&self, last_octet: u8) -> Browser {
            Browser { app: self.app.clone(), cookie: None, peer: SocketAddr::from(([192, 168, 7, last_octet], 50_000)) }
        }

        /// A browser at `peer`.
        pub fn browser_at(&self, peer: SocketAddr) -> Browser {
            Browser { app: self.app.clone(), cookie: None, peer }
        }

        /// An enrolment code for `unit`, as the manager's page would issue it.
        pub async fn add_code(&self, code: &str, unit: &str) {
            let (hash, unit) = (code_hash(code), unit.to_owned());
            let now = unix_now();
            self.handle
                .call(move |r| r.store_mut().add_enrolment_code(&hash, &unit, now, now + 3600))
                .await
                .unwrap()
                .unwrap();
        }

        /// Stops the registry's owner, as the daemon does at shutdown.
        pub async fn stop_registry(&mut self) {
            let owner = self.owner.take().unwrap();
            tokio::task::spawn_blocking(move || owner.stop()).await.unwrap();
        }
    }

    /// What came back.
    #[derive(Debug)]
    pub struct Answer {
        pub status: StatusCode,
        pub location: String,
        pub body: String,
    }

    /// Keeps the session cookie between requests, as a browser does.
    pub struct Browser {
        app: Router,
        cookie: Option<String>,
        peer: SocketAddr,
    }

    fn form_encode(form: &[(&str, &str)]) -> String {
        let enc = |s: &str| {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        };
        form.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
    }

    impl Browser {
        async fn send(&mut self, request: axum::http::request::Builder, body: Body) -> Answer {
            let mut request = request.body(body).unwrap();
            if let Some(cookie) = &self.cookie {
                request.headers_mut().insert(header::COOKIE, cookie.parse().unwrap());
            }
            request.extensions_mut().insert(ConnectInfo(self.peer));
            let response = self.app.clone().oneshot(request).await.unwrap();
            if let Some(set) = response.headers().get(header::SET_COOKIE) {
                self.cookie = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
            }
            let status = response.status();
            let location =
                response.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            Answer { status, location, body: String::from_utf8(body.to_vec()).unwrap() }
        }

        pub async fn get(&mut self, path: &str) -> Answer {
            self.send(Request::get(path), Body::empty()).await
        }

        pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
            let request = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            self.send(request, Body::from(form_encode(form))).await
        }

        /// Whether the portal has given this browser a session.
        pub fn has_session(&self) -> bool {
            self.cookie.is_some()
        }

        /// This browser's CSRF token.
        pub async fn token(&mut self) -> String {
            super::csrf(&self.get("/login").await.body)
        }

        pub async fn sign_in(&mut self, (name, password): (&str, &str)) {
            let token = self.token().await;
            let answer = self.post("/login", &[("csrf", &token), ("name", name), ("password", password)]).await;
            assert_eq!(answer.status, StatusCode::SEE_OTHER, "{answer:?}");
        }
    }
}
