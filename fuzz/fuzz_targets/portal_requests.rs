//! The portal's forms, paths, query strings, cookies and headers, through `portal::router` with
//! `tower::ServiceExt::oneshot` (no network), on a real SQLite file and the real registry owner. Visitors
//! come anonymous, with a garbage cookie, or with a session set up once: a manager's, an auditor's, and a
//! resident's who entered an enrolment code; `CSRF` in a body or query stands for that session's token, so
//! forms get past the check. Whatever comes: an answer, never a server error, always the security headers.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use facegate::audit::AuditScope;
use facegate::portal::auth::{code_hash, hash_password, Role};
use facegate::portal::views::NoticeFacts;
use facegate::portal::{router, PortalSettings, PortalState};
use facegate::registry::owner::{OwnerSettings, RegistryOwner};
use facegate::registry::{MasterKeySource, Registry, RegistryPolicy};
use facegate::store::unix_now;
use facegate::vision::enrol::EnrolmentDesk;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const ROUTES: &[&str] = &[
    "/",
    "/style.css",
    "/signage",
    "/metrics",
    "/login",
    "/logout",
    "/manager",
    "/manager/counts.csv",
    "/manager/codes",
    "/manager/codes/{}/cancel",
    "/manager/residents/{}/revoke",
    "/auditor",
    "/auditor/report.json",
    "/resident",
    "/resident/consent",
    "/resident/enrol",
    "/resident/enrol/status",
    "/resident/pin",
    "/revoke",
    "/guard",
    "/guard/release",
    "/guard/pass",
    "/installer",
];

#[derive(Arbitrary, Debug)]
struct Visit {
    post: bool,
    route: u8,
    tail: String,
    query: String,
    body: Vec<u8>,
    form_type: bool,
    who: u8,
    cookie: String,
    language: String,
    peer: [u8; 2],
}

/// A session made once, as a browser makes it.
struct Session {
    cookie: String,
    csrf: String,
}

struct Portal {
    runtime: tokio::runtime::Runtime,
    app: Router,
    sessions: Vec<Session>,
    _owner: RegistryOwner,
    _dir: tempfile::TempDir,
}

fn csrf_of(html: &str) -> String {
    html.find("name=\"csrf\" value=\"").map(|at| html[at + 19..at + 51].to_owned()).unwrap_or_default()
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Option<String>, String) {
    let mut request = request;
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 50_000))));
    let response = app.clone().oneshot(request).await.expect("the router is infallible");
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("a body");
    (status, cookie, String::from_utf8_lossy(&body).into_owned())
}

/// Signs in (or enters a code) as a browser would; returns the session's cookie and token.
async fn session(app: &Router, page: &str, form: &str) -> Session {
    let (_, cookie, html) = send(app, Request::get(page).body(Body::empty()).expect("request")).await;
    let cookie = cookie.expect("a form page makes a session");
    let csrf = csrf_of(&html);
    let request = Request::post(page)
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}&{form}")))
        .expect("request");
    let (status, _, _) = send(app, request).await;
    assert!(status.is_redirection(), "setting up {page}: {status}");
    Session { cookie, csrf }
}

static PORTAL: LazyLock<Portal> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let keys = dir.path().join("keys");
    let db = dir.path().join("data/facegate.sqlite");
    let now = unix_now();
    let mut registry =
        Registry::open(&db, &MasterKeySource::file(keys.join("master.key")), RegistryPolicy::default(), now)
            .expect("a registry");
    for (name, role) in [("morgan", Role::Manager), ("ada", Role::Auditor)] {
        let hash = hash_password("fuzzing-password-1").expect("hash");
        registry.store_mut().add_account(name, role, &hash, now).expect("account");
    }
    registry.store_mut().add_enrolment_code(&code_hash("FUZZ-CODE-0001"), "unit 1", now, now + 86_400).expect("code");
    let owner = RegistryOwner::spawn(registry, OwnerSettings::default()).expect("the registry's owner");
    let settings = PortalSettings {
        listen: "127.0.0.1:0".parse().expect("address"),
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
        // No camera offers frames here: a capture gives up at once instead of holding the input past 1 s.
        enrol_timeout: Duration::from_millis(20),
        live_threshold: facegate::vision::liveness::DEFAULT_LIVE_THRESHOLD,
        code_valid: Duration::from_secs(3600),
        audit: AuditScope::new(db, keys, facegate::protect::keys::KeyWrap::Plain, 365 * 86_400),
    };
    let desk = Arc::new(EnrolmentDesk::default());
    let app = router(Arc::new(PortalState::new(settings, owner.handle(), Some(desk))));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let sessions = runtime.block_on(async {
        vec![
            session(&app, "/login", "name=morgan&password=fuzzing-password-1").await,
            session(&app, "/login", "name=ada&password=fuzzing-password-1").await,
            session(&app, "/resident", "code=FUZZ-CODE-0001").await,
        ]
    });
    Portal { runtime, app, sessions, _owner: owner, _dir: dir }
});

fn request(portal: &Portal, visit: &Visit) -> Option<Request<Body>> {
    let route = ROUTES.get(usize::from(visit.route)).copied();
    let mut uri = match route {
        Some(route) => route.replace("{}", &visit.tail),
        None => format!("/{}", visit.tail),
    };
    let session = match visit.who % 5 {
        1..=3 => portal.sessions.get(usize::from(visit.who % 5) - 1),
        _ => None,
    };
    let token = session.map_or("", |s| s.csrf.as_str());
    if !visit.query.is_empty() {
        uri = format!("{uri}?{}", visit.query.replace("CSRF", token));
    }
    let body = String::from_utf8_lossy(&visit.body).replace("CSRF", token);
    let mut builder = if visit.post { Request::post(uri) } else { Request::get(uri) };
    if visit.form_type {
        builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    if !visit.language.is_empty() {
        builder = builder.header(header::ACCEPT_LANGUAGE, visit.language.as_str());
    }
    match (session, visit.who % 5) {
        (Some(session), _) => builder = builder.header(header::COOKIE, session.cookie.as_str()),
        (None, 4) => builder = builder.header(header::COOKIE, visit.cookie.as_str()),
        _ => {}
    }
    let mut request = builder.body(Body::from(body)).ok()?;
    // Addresses from the LAN, so the per-address limits are exercised too.
    let peer = SocketAddr::from(([192, 168, visit.peer[0], visit.peer[1]], 50_000));
    request.extensions_mut().insert(ConnectInfo(peer));
    Some(request)
}

fuzz_target!(init: { LazyLock::force(&PORTAL); }, |visit: Visit| {
    let portal = &*PORTAL;
    // Not an HTTP request at all (hyper refuses it before the router): nothing to try.
    let Some(request) = request(portal, &visit) else { return };
    let response = portal.runtime.block_on(portal.app.clone().oneshot(request)).expect("the router is infallible");
    let status = response.status();
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{visit:?}");
    let headers = response.headers();
    assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY), "no CSP on {status} for {visit:?}");
    assert_eq!(headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()), Some(&b"no-store"[..]));
});
