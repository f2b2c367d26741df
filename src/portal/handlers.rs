//! The portal's routes: who may call each, what it reads or changes, and the page it answers with.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tower_sessions::Session;

use super::auth::{self, Role};
use super::i18n::{t, tf, Lang};
use super::views::{self, csrf_field, error_line, layout};
use super::PortalState;
use crate::policy::consent::ConsentRecord;
use crate::policy::counts::{self, Granularity};
use crate::policy::rfc3339;
use crate::protect::Pin;
use crate::registry::Registry;
use crate::store::unix_now;
use crate::vision::enrol::{DeskProgress, QualityGate};

type Shared = State<Arc<PortalState>>;

/// Everything the portal keeps about a browser, in server memory only.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SessionData {
    csrf: String,
    lang: Option<Lang>,
    staff: Option<(String, Role)>,
    flow: Flow,
}

/// Where a resident is in the set-up.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
enum Flow {
    #[default]
    None,
    /// A valid enrolment code was entered.
    Code { code_id: i64, unit: String },
    /// Consent given (or PIN only chosen); the resident now exists.
    Resident { id: String, face: bool, job: Option<u64>, enrolled: bool },
}

const SESSION_KEY: &str = "fg";

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

/// The session's data (created with a CSRF token on first use) and the page language.
async fn open(session: &Session, headers: &HeaderMap, query: Option<&LangQuery>) -> (SessionData, Lang) {
    let mut data: SessionData = session.get(SESSION_KEY).await.ok().flatten().unwrap_or_default();
    let mut changed = false;
    if data.csrf.is_empty() {
        data.csrf = auth::new_csrf_token();
        changed = true;
    }
    if let Some(lang) = query.and_then(|q| q.lang.as_deref()) {
        data.lang = Some(Lang::from_tag(lang));
        changed = true;
    }
    let lang = data.lang.unwrap_or_else(|| {
        Lang::from_tag(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("en"))
    });
    if changed {
        save(session, &data).await;
    }
    (data, lang)
}

async fn save(session: &Session, data: &SessionData) {
    if let Err(e) = session.insert(SESSION_KEY, data).await {
        tracing::warn!("portal session: {e}");
    }
}

fn page(status: StatusCode, markup: Markup) -> Response {
    (status, markup).into_response()
}

fn frame<'a>(data: &'a SessionData, lang: Lang, path: &'a str) -> views::Frame<'a> {
    views::Frame { lang, path, csrf: &data.csrf, staff: data.staff.as_ref().map(|(name, _)| name.as_str()) }
}

fn message(data: &SessionData, lang: Lang, status: StatusCode, key: &str) -> Response {
    page(status, layout(&frame(data, lang, "/"), t(lang, key), html! { p { a href="/" { (t(lang, "title")) } } }))
}

/// Runs `job` on the registry's owner (the daemon's one registry) and awaits its reply; `None` (logged) when
/// the owner has stopped.
async fn registry<T: Send + 'static>(
    state: &PortalState,
    job: impl FnOnce(&mut Registry) -> T + Send + 'static,
) -> Option<T> {
    match state.registry.call(job).await {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!("portal: {e}");
            None
        }
    }
}

/// Runs CPU-bound work that is not the registry's (argon2id, the audit's file scan) off the async workers.
async fn blocking<T: Send + 'static>(
    state: &Arc<PortalState>,
    work: impl FnOnce(&PortalState) -> T + Send + 'static,
) -> Option<T> {
    let state = state.clone();
    match tokio::task::spawn_blocking(move || work(&state)).await {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!("portal task failed: {e}");
            None
        }
    }
}

fn server_error(data: &SessionData, lang: Lang) -> Response {
    message(data, lang, StatusCode::INTERNAL_SERVER_ERROR, "bad_request")
}

pub(super) fn routes() -> Router<Arc<PortalState>> {
    Router::new()
        .route("/", get(home))
        .route("/style.css", get(style))
        .route("/signage", get(signage))
        .route("/resident", get(resident_code_page).post(resident_code))
        .route("/resident/consent", get(consent_page).post(consent))
        .route("/resident/enrol", get(enrol_page).post(enrol_start))
        .route("/resident/enrol/status", get(enrol_status))
        .route("/resident/pin", get(pin_page).post(pin_set))
        .route("/revoke", get(revoke_page).post(revoke))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/manager", get(manager))
        .route("/manager/counts.csv", get(manager_csv))
        .route("/manager/codes", post(issue_code))
        .route("/manager/codes/{id}/cancel", post(cancel_code))
        .route("/manager/residents/{id}/revoke", post(manager_revoke))
        .route("/auditor", get(auditor))
        .route("/auditor/report.json", get(auditor_report))
        .fallback(not_found)
}

async fn not_found(session: Session, headers: HeaderMap) -> Response {
    let (data, lang) = open(&session, &headers, None).await;
    message(&data, lang, StatusCode::NOT_FOUND, "not_found")
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], views::STYLE).into_response()
}

async fn home(session: Session, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let (data, lang) = open(&session, &headers, Some(&q)).await;
    let body = html! {
        p { (t(lang, "home_intro")) }
        ul {
            li { a id="to-resident" href="/resident" { (t(lang, "resident_start")) } }
            li { a id="to-revoke" href="/revoke" { (t(lang, "resident_revoke")) } }
            li { a id="to-login" href="/login" { (t(lang, "staff_login")) } }
            li { a id="to-signage" href="/signage" { (t(lang, "signage")) } }
        }
    };
    page(StatusCode::OK, layout(&frame(&data, lang, "/"), t(lang, "title"), body))
}

async fn signage(State(state): Shared, session: Session, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let (data, lang) = open(&session, &headers, Some(&q)).await;
    let body = html! { (views::notice(lang, &state.settings.notice)) };
    page(StatusCode::OK, layout(&frame(&data, lang, "/signage"), t(lang, "signage"), body))
}

// ---- residents -------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    code: String,
}

fn code_page(data: &SessionData, lang: Lang, error: Option<&str>) -> Markup {
    layout(
        &frame(data, lang, "/resident"),
        t(lang, "resident_start"),
        html! {
            p { (t(lang, "home_intro")) }
            (error_line(error))
            form method="post" action="/resident" {
                (csrf_field(&data.csrf))
                label { (t(lang, "code_label")) br; input id="code" name="code" autocomplete="off" required; }
                " " button id="code-submit" type="submit" { (t(lang, "continue")) }
            }
        },
    )
}

async fn resident_code_page(session: Session, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let (data, lang) = open(&session, &headers, Some(&q)).await;
    page(StatusCode::OK, code_page(&data, lang, None))
}

async fn resident_code(
    State(state): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let (mut data, lang) = open(&session, &headers, None).await;
    if !auth::csrf_ok(&data.csrf, &form.csrf) {
        return message(&data, lang, StatusCode::BAD_REQUEST, "bad_request");
    }
    // Codes are guessable only by brute force; the same per-address limit as sign-in stops that.
    if !state.throttle.allow(peer.ip()) {
        return page(StatusCode::TOO_MANY_REQUESTS, code_page(&data, lang, Some(t(lang, "code_bad"))));
    }
    let hash = auth::code_hash(&form.code);
    let found = registry(&state, move |r| r.store().usable_enrolment_code(&hash, unix_now())).await;
    match found {
        Some(Ok(Some((code_id, unit)))) => {
            data.flow = Flow::Code { code_id, unit };
            save(&session, &data).await;
            Redirect::to("/resident/consent").into_response()
        }
        Some(Ok(None)) => page(StatusCode::UNPROCESSABLE_ENTITY, code_page(&data, lang, Some(t(lang, "code_bad")))),
        _ => server_error(&data, lang),
    }
}

fn consent_markup(state: &PortalState, data: &SessionData, lang: Lang, error: Option<&str>) -> Markup {
    layout(
        &frame(data, lang, "/resident/consent"),
        t(lang, "notice_heading"),
        html! {
            (views::notice(lang, &state.settings.notice))
            (error_line(error))
            form method="post" action="/resident/consent" {
                (csrf_field(&data.csrf))
                p { label { input id="consent" type="checkbox" name="consent" value="yes"; " " (t(lang, "consent_checkbox")) } }
                button id="consent-face" type="submit" name="choice" value="face" { (t(lang, "consent_submit")) }
                " "
                button id="consent-pin-only" type="submit" name="choice" value="pin" { (t(lang, "consent_decline")) }
            }
        },
    )
}

async fn consent_page(
    State(state): Shared,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let (data, lang) = open(&session, &headers, Some(&q)).await;
    if !matches!(data.flow, Flow::Code { .. }) {
        return Redirect::to("/resident").into_response();
    }
    page(StatusCode::OK, consent_markup(&state, &data, lang, None))
}

#[derive(Deserialize)]
struct ConsentForm {
    csrf: String,
    consent: Option<String>,
    choice: String,
}

async fn consent(
    State(state): Shared,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Response {
    let (mut data, lang) = open(&session, &headers, None).await;
    if !auth::csrf_ok(&data.csrf, &form.csrf) {
        return message(&data, lang, StatusCode::BAD_REQUEST, "bad_request");
    }
    let Flow::Code { code_id, unit } = data.flow.clone() else {
        return Redirect::to("/resident").into_response();
    };
    let face = form.choice == "face";
    if face && form.consent.as_deref() != Some("yes") {
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            consent_markup(&state, &data, lang, Some(t(lang, "consent_needed"))),
        );
    }
    let notice_text = views::notice_items(lang, &state.settings.notice).join("\n");
    let version = state.settings.notice.version.clone();
    let created = registry(&state, move |registry| -> Result<Option<String>, String> {
        let now = unix_now();
        if !registry.store_mut().use_enrolment_code(code_id, now).map_err(|e| e.to_string())? {
            return Ok(None);
        }
        let id = format!("r-{}", data_encoding::HEXLOWER.encode(&rand::random::<[u8; 5]>()));
        if face {
            let record = ConsentRecord {
                notice_version: version,
                notice_sha256: format!("{:x}", Sha256::digest(notice_text.as_bytes())),
                purpose: "gate entry".into(),
                channel: "portal".into(),
                granted_at: now,
            };
            registry.record_consent(&id, Some(&unit), &record, now).map_err(|e| e.to_string())?;
        } else {
            registry.store_mut().add_resident(&id, Some(&unit), now).map_err(|e| e.to_string())?;
        }
        Ok(Some(id))
    })
    .await;
    match created {
        Some(Ok(Some(id))) => {
            data.flow = Flow::Resident { id, face, job: None, enrolled: false };
            save(&session, &data).await;
            Redirect::to(if face { "/resident/enrol" } else { "/resident/pin" }).into_response()
        }
        Some(Ok(None)) => {
            data.flow = Flow::None;
            save(&session, &data).await;
            page(StatusCode::UNPROCESSABLE_ENTITY, code_page(&data, lang, Some(t(lang, "code_bad"))))
        }
        Some(Err(e)) => {
            tracing::error!("portal consent: {e}");
            server_error(&data, lang)
        }
        None => server_error(&data, lang),
    }
}

fn enrol_markup(data: &SessionData, lang: Lang, error: Option<&str>) -> Markup {
    layout(
        &frame(data, lang, "/resident/enrol"),
        t(lang, "enrol_heading"),
        html! {
            p { (t(lang, "enrol_explain")) }
            (error_line(error))
            form method="post" action="/resident/enrol" {
                (csrf_field(&data.csrf))
                button id="enrol-start" type="submit" { (t(lang, "enrol_start")) }
            }
        },
    )
}

/// The resident's id when they consented to face entry and have not enrolled yet.
fn face_resident(data: &SessionData) -> Option<(String, Option<u64>)> {
    match &data.flow {
        Flow::Resident { id, face: true, job, enrolled: false } => Some((id.clone(), *job)),
        _ => None,
    }
}

async fn enrol_page(session: Session, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let (data, lang) = open(&session, &headers, Some(&q)).await;
    if face_resident(&data).is_none() {
        return Redirect::to("/resident").into_response();
    }
    page(StatusCode::OK, enrol_markup(&data, lang, None))
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn enrol_start(
    State(state): Shared,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (mut data, lang) = open(&session, &headers, None).await;
    if !auth::csrf_ok(&data.csrf, &form.csrf) {
        return message(&data, lang, StatusCode::BAD_REQUEST, "bad_request");
    }
    if face_resident(&data).is_none() {
        return Redirect::to("/resident").into_response();
    }
    let Some(desk) = &state.desk else {
        return page(StatusCode::SERVICE_UNAVAILABLE, enrol_markup(&data, lang, Some(t(lang, "enrol_failed"))));
    };
    let settings = &state.settings;
    match desk.start(settings.enrol_frames, QualityGate::default(), settings.live_threshold, ENROL_TIMEOUT) {
        Ok(job) => {
            if let Flow::Resident { job: slot, .. } = &mut data.flow {
                *slot = Some(job);
            }
            save(&session, &data).await;
            Redirect::to("/resident/enrol/status").into_response()
        }
        Err(_) => page(StatusCode::CONFLICT, enrol_markup(&data, lang, Some(t(lang, "busy")))),
    }
}

const ENROL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

async fn enrol_status(State(state): Shared, session: Session, headers: HeaderMap) -> Response {
    let (mut data, lang) = open(&session, &headers, None).await;
    let Some((id, Some(job))) = face_resident(&data) else {
        return Redirect::to("/resident").into_response();
    };
    let Some(desk) = state.desk.clone() else { return Redirect::to("/resident/enrol").into_response() };
    let progress = desk.progress(job);
    let failed = |data: &SessionData, reason: &str| {
        page(StatusCode::OK, enrol_markup(data, lang, Some(&format!("{}: {reason}", t(lang, "enrol_failed")))))
    };
    match progress {
        DeskProgress::Capturing { good, needed, hint } => {
            let body = html! {
                (views::refresh(1))
                p id="progress" { (tf(lang, "enrol_progress", &[("good", &good.to_string()), ("needed", &needed.to_string())])) }
                @if let Some(hint) = hint { p id="hint" { (hint) } }
            };
            page(StatusCode::OK, layout(&frame(&data, lang, "/resident/enrol/status"), t(lang, "enrol_heading"), body))
        }
        DeskProgress::Complete(embedding) => {
            let resident = id.clone();
            // The revocation code is issued with the enrolment itself: a resident who closes the tab now can
            // still withdraw (and the manager can revoke by unit).
            let revocation = auth::new_code(4);
            let revocation_hash = auth::code_hash(&revocation);
            let enrolled = registry(&state, move |r| -> Result<(), String> {
                r.enrol(&resident, &embedding, unix_now()).map_err(|e| e.to_string())?;
                r.store_mut().set_revocation_code(&resident, &revocation_hash).map_err(|e| e.to_string())
            })
            .await;
            match enrolled {
                Some(Ok(())) => {
                    if let Flow::Resident { enrolled, job, .. } = &mut data.flow {
                        *enrolled = true;
                        *job = None;
                    }
                    save(&session, &data).await;
                    page(StatusCode::OK, pin_markup(&data, lang, Some(t(lang, "enrol_done")), Some(&revocation), None))
                }
                Some(Err(reason)) => failed(&data, &reason),
                None => server_error(&data, lang),
            }
        }
        DeskProgress::Failed(reason) => failed(&data, &reason),
    }
}

fn pin_markup(
    data: &SessionData,
    lang: Lang,
    notice: Option<&str>,
    revocation: Option<&str>,
    error: Option<&str>,
) -> Markup {
    layout(
        &frame(data, lang, "/resident/pin"),
        t(lang, "pin_heading"),
        html! {
            @if let Some(n) = notice { p.ok id="enrolled" { (n) } }
            @if let Some(code) = revocation {
                p { (t(lang, "enrol_revocation")) }
                p.code id="revocation-code" { (code) }
            }
            (error_line(error))
            form method="post" action="/resident/pin" {
                (csrf_field(&data.csrf))
                p { label { (t(lang, "pin_label")) br; input id="pin" name="pin" type="password" inputmode="numeric" autocomplete="new-password" required; } }
                p { label { (t(lang, "pin_again")) br; input id="pin2" name="pin2" type="password" inputmode="numeric" autocomplete="new-password" required; } }
                button id="pin-submit" type="submit" { (t(lang, "pin_set")) }
            }
        },
    )
}

/// The resident who may set a PIN now: consented and (for face entry) enrolled, or PIN only.
fn pin_resident(data: &SessionData) -> Option<(String, bool)> {
    match &data.flow {
        Flow::Resident { id, face, enrolled, .. } if !*face || *enrolled => Some((id.clone(), *enrolled)),
        _ => None,
    }
}

async fn pin_page(session: Session, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let (data, lang) = open(&session, &headers, Some(&q)).await;
    let Some((_, enrolled)) = pin_resident(&data) else { return Redirect::to("/resident").into_response() };
    page(StatusCode::OK, pin_markup(&data, lang, enrolled.then(|| t(lang, "enrol_done")), None, None))
}

#[derive(Deserialize)]
struct PinForm {
    csrf: String,
    pin: String,
    pin2: String,
}

async fn pin_set(State(state): Shared, session: Session, headers: HeaderMap, Form(form): Form<PinForm>) -> Response {
    let (mut data, lang) = open(&session, &headers, None).await;
    if !auth::csrf_ok(&data.csrf, &form.csrf) {
        return message(&data, lang, StatusCode::BAD_REQUEST, "bad_request");
    }
    let Some((id, enrolled)) = pin_resident(&data) else { return Redirect::to("/resident").into_response() };
    if form.pin != form.pin2 {
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            pin_markup(&data, lang, None, None, Some(t(lang, "pin_mismatch"))),
        );
    }
    let pin = match Pin::parse(&form.pin) {
        Ok(pin) => pin,
        Err(e) => {
            return page(StatusCode::UNPROCESSABLE_ENTITY, pin_markup(&data, lang, None, None, Some(&e.to_string())))
        }
    };
    // An enrolled resident got their revocation code with the enrolment; a PIN-only resident gets it now.
    let revocation = (!enrolled).then(|| auth::new_code(4));
    let revocation_hash = revocation.as_deref().map(auth::code_hash);
    let result = registry(&state, move |registry| -> Result<String, String> {
        use rand::Rng;
        let taken = registry.store().keypad_codes().map_err(|e| e.to_string())?;
        let mut rng = rand::rng();
        let keypad = (0..1000)
            .map(|_| rng.random_range(1000..10_000).to_string())
            .find(|c| !taken.contains(c))
            .ok_or("no free keypad code")?;
        registry.set_pin(&id, &keypad, &pin, unix_now()).map_err(|e| e.to_string())?;
        if let Some(hash) = revocation_hash {
            registry.store_mut().set_revocation_code(&id, &hash).map_err(|e| e.to_string())?;
        }
        Ok(keypad)
    })
    .await;
    match result {
        Some(Ok(keypad)) => {
            data.flow = Flow::None;
            save(&session, &data).await;
            let body = html! {
                p id="keypad" { (tf(lang, "done_keypad", &[("code", &keypad)])) }
                @if let Some(revocation) = &revocation {
                    p { (t(lang, "done_revocation")) }
                    p.code id="revocation-code" { (revocation) }
                } @else {
                    p { (t(lang, "done_revocation_kept")) }
                }
                p { a href="/revoke" { (t(lang, "resident_revoke")) } }
            };
            page(StatusCode::OK, layout(&frame(&data, lang, "/"), t(lang, "done_heading"), body))
        }
        Some(Err(e)) => page(StatusCode::UNPROCESSABLE_ENTITY, pin_markup(&data, lang, None, None, Some(&e))),
        None => server_error(&data, lang),
    }
}

/// What a revocation destroyed, when, and the code an auditor can check: the same for the resident and for the
/// manager revoking on a household's behalf.
fn receipt_table(lang: Lang, receipt: &crate::store::RevocationReceipt) -> Markup {
    html! {
        table id="receipt" {
            tr { th { (t(lang, "receipt_time")) } td { (rfc3339(receipt.revoked_at)) } }
            tr { th { (t(lang, "receipt_deleted")) } td { ul { @for item in &receipt.deleted { li { (item) } } } } }
            tr { th { (t(lang, "receipt_code")) } td.code id="verification-code" { (receipt.verification_code) } }
        }
    }
}

fn revoke_markup(data: &SessionData, lang: Lang, error: Option<&str>) -> Markup {
    layout(
        &frame(data, lang, "/revoke"),
        t(lang, "revoke_heading"),
        html! {
            (error_line(error))
            form method="post" action="/revoke" {
                (csrf_field(&data.csrf))
                label { (t(lang, "revoke_label")) br; input id="revocation" name="code" autocomplete="off" required; }
                " " button id="revoke-submit" type="submit" { (t(lang, "revoke_submit")) }
            }
        },
    )
}

async fn revoke_page(session: Session, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let (data, lang) = open(&session, &headers, Some(&q)).await;
    page(StatusCode::OK, revoke_markup(&data, lang, None))
}

async fn revoke(
    State(state): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let (data, lang) = open(&session, &headers, None).await;
    if !auth::csrf_ok(&data.csrf, &form.csrf) {
        return message(&data, lang, StatusCode::BAD_REQUEST, "bad_request");
    }
    if !state.throttle.allow(peer.ip()) {
        return page(StatusCode::TOO_MANY_REQUESTS, revoke_markup(&data, lang, Some(t(lang, "revoke_bad"))));
    }
    let hash = auth::code_hash(&form.code);
    let receipt = registry(&state, move |registry| -> Result<Option<crate::store::RevocationReceipt>, String> {
        let Some(id) = registry.store().resident_for_revocation_code(&hash).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        registry.revoke(&id, unix_now()).map(Some).map_err(|e| e.to_string())
    })
    .await;
    match receipt {
        Some(Ok(Some(receipt))) => {
            let body = receipt_table(lang, &receipt);
            page(StatusCode::OK, layout(&frame(&data, lang, "/revoke"), t(lang, "receipt_heading"), body))
        }
        Some(Ok(None)) => {
            page(StatusCode::UNPROCESSABLE_ENTITY, revoke_markup(&data, lang, Some(t(lang, "revoke_bad"))))
        }
        Some(Err(e)) => {
            tracing::error!("portal revoke: {e}");
            server_error(&data, lang)
        }
        None => server_error(&data, lang),
    }
}

// ---- staff -----------------------------------------------------------------------------------------------

fn login_markup(data: &SessionData, lang: Lang, error: Option<&str>) -> Markup {
    layout(
        &frame(data, lang, "/login"),
        t(lang, "login_heading"),
        html! {
            (error_line(error))
            form method="post" action="/login" {
                (csrf_field(&data.csrf))
                p { label { (t(lang, "login_name")) br; input id="name" name="name" autocomplete="username" required; } }
                p { label { (t(lang, "login_password")) br; input id="password" name="password" type="password" autocomplete="current-password" required; } }
                button id="login-submit" type="submit" { (t(lang, "login_submit")) }
            }
        },
    )
}

async fn login_page(session: Session, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let (data, lang) = open(&session, &headers, Some(&q)).await;
    page(StatusCode::OK, login_markup(&data, lang, None))
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    name: String,
    password: String,
}

async fn login(
    State(state): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let (mut data, lang) = open(&session, &headers, None).await;
    if !auth::csrf_ok(&data.csrf, &form.csrf) {
        return message(&data, lang, StatusCode::BAD_REQUEST, "bad_request");
    }
    if !state.throttle.allow(peer.ip()) {
        return page(StatusCode::TOO_MANY_REQUESTS, login_markup(&data, lang, Some(t(lang, "login_bad"))));
    }
    let name = form.name.trim().to_owned();
    let password = zeroize::Zeroizing::new(form.password);
    let outcome = sign_in(&state, name, password).await;
    match outcome {
        Some(Ok(Some(role))) => {
            // A new session id at sign-in (no fixation) and a new CSRF token.
            if let Err(e) = session.cycle_id().await {
                tracing::warn!("portal session: {e}");
            }
            data.staff = Some((form.name.trim().to_owned(), role));
            data.csrf = auth::new_csrf_token();
            data.flow = Flow::None;
            save(&session, &data).await;
            Redirect::to(match role {
                Role::Manager => "/manager",
                Role::Auditor => "/auditor",
            })
            .into_response()
        }
        Some(Ok(None)) => page(StatusCode::UNAUTHORIZED, login_markup(&data, lang, Some(t(lang, "login_bad")))),
        _ => server_error(&data, lang),
    }
}

/// Checks a staff sign-in: the account is read by the registry's owner, the password verified (argon2id) on a
/// blocking thread, and the outcome recorded by the owner again, so the owner never spends a hash's time.
async fn sign_in(
    state: &Arc<PortalState>,
    name: String,
    password: zeroize::Zeroizing<String>,
) -> Option<Result<Option<Role>, String>> {
    let lookup = name.clone();
    let account = match registry(state, move |r| r.store().account(&lookup)).await? {
        Ok(account) => account,
        Err(e) => return Some(Err(e.to_string())),
    };
    let now = unix_now();
    let Some(account) = account else {
        let _ = blocking(state, move |_| auth::verify_password(&password, auth::dummy_hash())).await;
        return Some(Ok(None));
    };
    let hash = account.password_hash.clone();
    let verified = blocking(state, move |_| auth::verify_password(&password, &hash)).await?;
    // A locked account is refused whatever the password, and the attempt still costs the hash.
    let good = verified && account.locked_until <= now;
    let lock = auth::lock_until(account.failed_attempts + 1, now);
    let recorded =
        registry(state, move |r| r.store_mut().record_login(&name, good, if good { None } else { lock })).await?;
    Some(recorded.map(|()| if good { Role::parse(&account.role) } else { None }).map_err(|e| e.to_string()))
}

async fn logout(session: Session, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    let (data, lang) = open(&session, &headers, None).await;
    if !auth::csrf_ok(&data.csrf, &form.csrf) {
        return message(&data, lang, StatusCode::BAD_REQUEST, "bad_request");
    }
    let _ = session.flush().await;
    Redirect::to("/").into_response()
}

/// The answer for anyone but a signed-in `role`: sign-in (anonymous) or 403 (another role); `None` lets
/// the request through.
fn refuse_unless(data: &SessionData, lang: Lang, role: Role) -> Option<Response> {
    match &data.staff {
        Some((_, r)) if *r == role => None,
        Some(_) => Some(message(data, lang, StatusCode::FORBIDDEN, "forbidden")),
        None => Some(Redirect::to("/login").into_response()),
    }
}

type Published = (Vec<counts::PublishedCell>, Vec<counts::PublishedCell>, i64);

/// Published day and hour cells for the manager (never an hourly row of the store itself).
async fn published(state: &PortalState) -> Option<Result<Published, String>> {
    let offset = state.settings.utc_offset_secs;
    registry(state, move |r| published_from(r, offset)).await
}

fn published_from(registry: &Registry, offset: i64) -> Result<Published, String> {
    let now = unix_now();
    let today = counts::day_start(now, offset);
    let store = registry.store();
    let days = store.compound_passage_counts(today - 13 * 86_400, today + 86_400).map_err(|e| e.to_string())?;
    let hours = store.compound_passage_counts(now - 24 * 3_600, now + 3_600).map_err(|e| e.to_string())?;
    let (templates, _) = store.enrolment_counts().map_err(|e| e.to_string())?;
    Ok((
        counts::publish(&days, Granularity::Day, offset),
        counts::publish(&hours, Granularity::Hour, offset),
        templates,
    ))
}

async fn manager_page(state: Arc<PortalState>, data: SessionData, lang: Lang, issued: Option<String>) -> Response {
    let Some(Ok((days, hours, enrolled))) = published(&state).await else { return server_error(&data, lang) };
    let Some(Ok(codes)) = registry(&state, |r| r.store().enrolment_codes()).await else {
        return server_error(&data, lang);
    };
    let Some(Ok(residents)) = registry(&state, |r| r.store().residents()).await else {
        return server_error(&data, lang);
    };
    // Who can still withdraw: a live consent, a template or a PIN. Units and pseudonymous ids only.
    let revocable: Vec<_> = residents
        .into_iter()
        .filter(|r| r.moved_out_at.is_none())
        .filter(|r| r.consent_granted_at.is_some() || r.template_version.is_some() || r.has_pin)
        .collect();
    let offset = state.settings.utc_offset_secs;
    let day_label = move |t: i64| rfc3339(t + offset).chars().take(10).collect::<String>();
    let hour_label = move |t: i64| rfc3339(t + offset).chars().skip(5).take(11).collect::<String>().replace('T', " ");
    let now = unix_now();
    let body = html! {
        p id="enrolled" { (tf(lang, "manager_enrolled", &[("n", &enrolled.to_string())])) }
        h2 { (t(lang, "manager_counts")) }
        h3 { (t(lang, "manager_by_day")) }
        (views::counts_chart(lang, "chart-days", &days, day_label))
        (views::counts_table(lang, "table-days", &days, day_label))
        p { a id="csv" href="/manager/counts.csv" { (t(lang, "manager_csv")) } }
        h3 { (t(lang, "manager_by_hour")) }
        (views::counts_chart(lang, "chart-hours", &hours, hour_label))
        h2 { (t(lang, "manager_codes")) }
        @if let Some(code) = &issued { p { (t(lang, "manager_issued")) } p.code id="issued-code" { (code) } }
        form method="post" action="/manager/codes" {
            (csrf_field(&data.csrf))
            label { (t(lang, "manager_unit")) " " input id="unit" name="unit" required maxlength="32"; }
            " " button id="issue" type="submit" { (t(lang, "manager_issue")) }
        }
        table id="codes" {
            tr { th { "#" } th { (t(lang, "manager_unit")) } th { "issued" } th { "expires" } th { "state" } th {} }
            @for c in &codes {
                @let usable = c.used_at.is_none() && c.cancelled_at.is_none() && c.expires_at > now;
                tr {
                    td { (c.id) } td { (c.unit_label) } td { (day_label(c.issued_at)) } td { (day_label(c.expires_at)) }
                    td { @if c.used_at.is_some() { "used" } @else if c.cancelled_at.is_some() { "cancelled" } @else if usable { "open" } @else { "expired" } }
                    td { @if usable {
                        form.inline method="post" action={ "/manager/codes/" (c.id) "/cancel" } {
                            (csrf_field(&data.csrf)) button type="submit" { (t(lang, "manager_cancel")) }
                        }
                    } }
                }
            }
        }
        h2 { (t(lang, "manager_residents")) }
        @if revocable.is_empty() { p { (t(lang, "manager_no_residents")) } } @else {
            table id="residents" {
                tr { th { (t(lang, "manager_unit")) } th { "id" } th { "face" } th { "PIN" } th {} }
                @for r in &revocable {
                    tr {
                        td { (r.unit_label.as_deref().unwrap_or("-")) } td.code { (r.id) }
                        td { @if r.template_version.is_some() { "yes" } @else { "no" } }
                        td { @if r.has_pin { "yes" } @else { "no" } }
                        td { form.inline method="post" action={ "/manager/residents/" (r.id) "/revoke" } {
                            (csrf_field(&data.csrf)) button type="submit" { (t(lang, "manager_revoke")) }
                        } }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, layout(&frame(&data, lang, "/manager"), t(lang, "manager_heading"), body))
}

async fn manager(State(state): Shared, session: Session, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let (data, lang) = open(&session, &headers, Some(&q)).await;
    if let Some(response) = refuse_unless(&data, lang, Role::Manager) {
        return response;
    }
    manager_page(state, data, lang, None).await
}

async fn manager_csv(State(state): Shared, session: Session, headers: HeaderMap) -> Response {
    let (data, lang) = open(&session, &headers, None).await;
    if let Some(response) = refuse_unless(&data, lang, Role::Manager) {
        return response;
    }
    let Some(Ok((days, _, _))) = published(&state).await else { return server_error(&data, lang) };
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"facegate-counts.csv\""),
        ],
        counts::to_csv(&days),
    )
        .into_response()
}

#[derive(Deserialize)]
struct IssueForm {
    csrf: String,
    unit: String,
}

async fn issue_code(
    State(state): Shared,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<IssueForm>,
) -> Response {
    let (data, lang) = open(&session, &headers, None).await;
    if let Some(response) = refuse_unless(&data, lang, Role::Manager) {
        return response;
    }
    let unit = form.unit.trim().to_owned();
    if !auth::csrf_ok(&data.csrf, &form.csrf) || unit.is_empty() || unit.chars().count() > 32 {
        return message(&data, lang, StatusCode::BAD_REQUEST, "bad_request");
    }
    let code = auth::new_code(3);
    let hash = auth::code_hash(&code);
    let valid = i64::try_from(state.settings.code_valid.as_secs()).unwrap_or(7 * 86_400);
    let stored = registry(&state, move |r| {
        let now = unix_now();
        r.store_mut().add_enrolment_code(&hash, &unit, now, now + valid)
    })
    .await;
    match stored {
        Some(Ok(_)) => manager_page(state, data, lang, Some(code)).await,
        _ => server_error(&data, lang),
    }
}

async fn cancel_code(
    State(state): Shared,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (data, lang) = open(&session, &headers, None).await;
    if let Some(response) = refuse_unless(&data, lang, Role::Manager) {
        return response;
    }
    if !auth::csrf_ok(&data.csrf, &form.csrf) {
        return message(&data, lang, StatusCode::BAD_REQUEST, "bad_request");
    }
    match registry(&state, move |r| r.store_mut().cancel_enrolment_code(id, unix_now())).await {
        Some(Ok(_)) => Redirect::to("/manager").into_response(),
        _ => server_error(&data, lang),
    }
}

/// The manager withdraws a household's face data for them (they lost their revocation code, or abandoned the
/// set-up after enrolling): the same revocation as `/revoke`, with its receipt to hand over.
async fn manager_revoke(
    State(state): Shared,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (data, lang) = open(&session, &headers, None).await;
    if let Some(response) = refuse_unless(&data, lang, Role::Manager) {
        return response;
    }
    if !auth::csrf_ok(&data.csrf, &form.csrf) {
        return message(&data, lang, StatusCode::BAD_REQUEST, "bad_request");
    }
    let receipt = registry(&state, move |r| -> Result<Option<crate::store::RevocationReceipt>, String> {
        if !r.store().resident_exists(&id).map_err(|e| e.to_string())? {
            return Ok(None);
        }
        r.revoke(&id, unix_now()).map(Some).map_err(|e| e.to_string())
    })
    .await;
    match receipt {
        Some(Ok(Some(receipt))) => {
            let body = html! {
                p { (t(lang, "manager_revoked")) }
                (receipt_table(lang, &receipt))
                p { a href="/manager" { (t(lang, "manager_heading")) } }
            };
            page(StatusCode::OK, layout(&frame(&data, lang, "/manager"), t(lang, "receipt_heading"), body))
        }
        Some(Ok(None)) => message(&data, lang, StatusCode::NOT_FOUND, "not_found"),
        Some(Err(e)) => {
            tracing::error!("portal revoke (manager): {e}");
            server_error(&data, lang)
        }
        None => server_error(&data, lang),
    }
}

async fn auditor(State(state): Shared, session: Session, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let (data, lang) = open(&session, &headers, Some(&q)).await;
    if let Some(response) = refuse_unless(&data, lang, Role::Auditor) {
        return response;
    }
    let Some(report) = blocking(&state, |s| crate::audit::run_audit(&s.settings.audit, unix_now())).await else {
        return server_error(&data, lang);
    };
    let body = html! {
        p id="result" class=(if report.passed { "pass" } else { "fail" }) {
            strong { @if report.passed { (t(lang, "result_passed")) } @else { (t(lang, "result_failed")) } }
            " · " (report.generated_at) " · " (report.device)
        }
        table id="checks" {
            @for c in &report.checks {
                @let class = match c.status { crate::audit::Status::Pass => "pass", crate::audit::Status::Warn => "warn", crate::audit::Status::Fail => "fail" };
                tr id={ "check-" (c.id) } {
                    td class=(class) { (class.to_uppercase()) }
                    td { (c.title) ul { @for d in &c.details { li { (d) } } } }
                }
            }
        }
        h2 { (t(lang, "auditor_deletions")) }
        table id="deletions" {
            tr { th { "time" } th { "event" } th { "resident" } th { "receipt code" } }
            @for d in &report.deletions {
                tr { td { (rfc3339(d.at)) } td { (d.event) } td { (d.subject) } td.code { (d.verification_code) } }
            }
        }
        p { a id="download" href="/auditor/report.json" { (t(lang, "auditor_download")) } }
    };
    page(StatusCode::OK, layout(&frame(&data, lang, "/auditor"), t(lang, "auditor_heading"), body))
}

async fn auditor_report(State(state): Shared, session: Session, headers: HeaderMap) -> Response {
    let (data, lang) = open(&session, &headers, None).await;
    if let Some(response) = refuse_unless(&data, lang, Role::Auditor) {
        return response;
    }
    let signed = blocking(&state, |s| {
        let report = crate::audit::run_audit(&s.settings.audit, unix_now());
        crate::audit::sign::AuditSigner::load_or_create(&s.settings.audit.key_dir)
            .and_then(|signer| signer.sign(&report))
            .map_err(|e| e.to_string())
    })
    .await;
    match signed {
        Some(Ok(signed)) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"facegate-audit.json\""),
            ],
            serde_json::to_string_pretty(&signed).unwrap_or_default(),
        )
            .into_response(),
        _ => server_error(&data, lang),
    }
}
