//! The resident's pages: the enrolment code, consent, the capture at the gate camera, the PIN, and
//! revocation with a code.
//!
//! Owns the set-up's order (each step checks the session's [`Flow`]) and what each step writes through the
//! registry's owner. It must never receive, show or keep an image or an embedding: the capture runs on the
//! gate camera, and this module sees only progress counts and, once, the finished embedding it hands on.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::auth;
use super::error::PortalError;
use super::i18n::{t, tf};
use super::session::{page, Button, Checked, CsrfForm, Flow, FormVisit, Step, Visit, MAX_ENROL_ATTEMPTS};
use super::views::{self, csrf_field, error_line, layout};
use super::PortalState;
use crate::policy::consent::ConsentRecord;
use crate::protect::{Pin, PinError};
use crate::registry::{Registry, RegistryError};
use crate::store::{unix_now, RevocationReceipt};
use crate::vision::embed::Embedding;
use crate::vision::enrol::{DeskProgress, QualityGate};

type Shared = State<Arc<PortalState>>;
type Answer = Result<Response, PortalError>;

pub(super) fn routes() -> Router<Arc<PortalState>> {
    Router::new()
        .route("/resident", get(code_page).post(code))
        .route("/resident/consent", get(consent_page).post(consent))
        .route("/resident/enrol", get(enrol_page).post(enrol_start))
        .route("/resident/enrol/status", get(enrol_status))
        .route("/resident/pin", get(pin_page).post(pin_set))
        .route("/revoke", get(revoke_page).post(revoke))
}

// ---- the enrolment code ------------------------------------------------------------------------------------

/// An enrolment code (at `/resident`) or a revocation code (at `/revoke`).
#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    code: String,
}

impl CsrfForm for CodeForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn code_markup(visit: &Visit, error: Option<&str>) -> Markup {
    let lang = visit.lang;
    layout(
        &visit.frame("/resident"),
        t(lang, "resident_start"),
        html! {
            p { (t(lang, "home_intro")) }
            (error_line(error))
            form method="post" action="/resident" {
                (csrf_field(&visit.data.csrf))
                label { (t(lang, "code_label")) br; input id="code" name="code" autocomplete="off" required; }
                " " button id="code-submit" type="submit" { (t(lang, "continue")) }
            }
        },
    )
}

async fn code_page(FormVisit(visit): FormVisit) -> Response {
    page(StatusCode::OK, code_markup(&visit, None))
}

async fn code(
    State(state): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut visit: Visit,
    Checked(form): Checked<CodeForm>,
) -> Answer {
    let bad = t(visit.lang, "code_bad");
    // Codes are guessable only by brute force; the same per-address limit as sign-in stops that.
    if !state.throttle.allow(peer.ip()) {
        return Ok(page(StatusCode::TOO_MANY_REQUESTS, code_markup(&visit, Some(bad))));
    }
    let hash = auth::code_hash(&form.code);
    let found = state.try_call(move |r| r.store().usable_enrolment_code(&hash, unix_now())).await?;
    let Some((code_id, unit)) = found else {
        return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, code_markup(&visit, Some(bad))));
    };
    visit.data.flow = Flow::Code { code_id, unit };
    visit.save().await?;
    Ok(Redirect::to("/resident/consent").into_response())
}

// ---- consent -----------------------------------------------------------------------------------------------

fn consent_markup(state: &PortalState, visit: &Visit, error: Option<&str>) -> Markup {
    let lang = visit.lang;
    layout(
        &visit.frame("/resident/consent"),
        t(lang, "notice_heading"),
        html! {
            (views::notice(lang, &state.settings.notice))
            (error_line(error))
            form method="post" action="/resident/consent" {
                (csrf_field(&visit.data.csrf))
                p { label { input id="consent" type="checkbox" name="consent" value="yes"; " " (t(lang, "consent_checkbox")) } }
                button id="consent-face" type="submit" name="choice" value="face" { (t(lang, "consent_submit")) }
                " "
                button id="consent-pin-only" type="submit" name="choice" value="pin" { (t(lang, "consent_decline")) }
            }
        },
    )
}

async fn consent_page(State(state): Shared, visit: Visit) -> Answer {
    if !matches!(visit.data.flow, Flow::Code { .. }) {
        return Err(PortalError::WrongStep);
    }
    Ok(page(StatusCode::OK, consent_markup(&state, &visit, None)))
}

/// Which button was pressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Choice {
    /// Face entry (needs the box ticked).
    Face,
    /// PIN only.
    Pin,
}

#[derive(Deserialize)]
struct ConsentForm {
    csrf: String,
    consent: Option<String>,
    choice: Choice,
}

impl CsrfForm for ConsentForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn consent(State(state): Shared, mut visit: Visit, Checked(form): Checked<ConsentForm>) -> Answer {
    let Flow::Code { code_id, unit } = visit.data.flow.clone() else { return Err(PortalError::WrongStep) };
    let face = form.choice == Choice::Face;
    if face && form.consent.as_deref() != Some("yes") {
        let error = Some(t(visit.lang, "consent_needed"));
        return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, consent_markup(&state, &visit, error)));
    }
    // The record keeps the hash of the exact notice this visitor read, in their language.
    let record = face.then(|| ConsentRecord {
        notice_version: state.settings.notice.version.clone(),
        notice_sha256: format!(
            "{:x}",
            Sha256::digest(views::notice_items(visit.lang, &state.settings.notice).join("\n").as_bytes())
        ),
        purpose: "gate entry".into(),
        channel: "portal".into(),
        granted_at: 0,
    });
    let created = state.try_call(move |registry| create_resident(registry, code_id, &unit, record)).await?;
    let Some(id) = created else {
        // The code was spent (or cancelled) since it was entered.
        visit.data.flow = Flow::None;
        visit.save().await?;
        return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, code_markup(&visit, Some(t(visit.lang, "code_bad")))));
    };
    let step = if face { Step::FaceConsented { attempts: 0 } } else { Step::PinOnly };
    visit.data.flow = Flow::Resident { id, step };
    visit.save().await?;
    Ok(Redirect::to(if face { "/resident/enrol" } else { "/resident/pin" }).into_response())
}

/// Spends the code and creates the resident, with their consent record when they chose face entry; `None`
/// when the code is no longer usable. One job, so a spent code and a resident never disagree.
fn create_resident(
    registry: &mut Registry,
    code_id: i64,
    unit: &str,
    consent: Option<ConsentRecord>,
) -> Result<Option<String>, PortalError> {
    let now = unix_now();
    if !registry.store_mut().use_enrolment_code(code_id, now)? {
        return Ok(None);
    }
    let id = format!("r-{}", data_encoding::HEXLOWER.encode(&rand::random::<[u8; 5]>()));
    match consent {
        Some(record) => registry.record_consent(&id, Some(unit), &ConsentRecord { granted_at: now, ..record }, now)?,
        None => registry.store_mut().add_resident(&id, Some(unit), now)?,
    }
    Ok(Some(id))
}

// ---- enrolment at the gate camera --------------------------------------------------------------------------

fn enrol_markup(visit: &Visit, error: Option<&str>) -> Markup {
    let lang = visit.lang;
    layout(
        &visit.frame("/resident/enrol"),
        t(lang, "enrol_heading"),
        html! {
            p { (t(lang, "enrol_explain")) }
            (error_line(error))
            form method="post" action="/resident/enrol" {
                (csrf_field(&visit.data.csrf))
                button id="enrol-start" type="submit" { (t(lang, "enrol_start")) }
            }
        },
    )
}

async fn enrol_page(visit: Visit) -> Answer {
    visit.data.flow.awaiting_face()?;
    Ok(page(StatusCode::OK, enrol_markup(&visit, None)))
}

async fn enrol_start(State(state): Shared, mut visit: Visit, Checked(_): Checked<Button>) -> Answer {
    let (id, _, attempts) = visit.data.flow.awaiting_face()?;
    let id = id.to_owned();
    if attempts >= MAX_ENROL_ATTEMPTS {
        return needs_staff(&state, visit, id).await;
    }
    let Some(desk) = &state.desk else {
        let error = Some(t(visit.lang, "enrol_failed"));
        return Ok(page(StatusCode::SERVICE_UNAVAILABLE, enrol_markup(&visit, error)));
    };
    let settings = &state.settings;
    let Ok(job) =
        desk.start(settings.enrol_frames, QualityGate::default(), settings.live_threshold, settings.enrol_timeout)
    else {
        return Ok(page(StatusCode::CONFLICT, enrol_markup(&visit, Some(t(visit.lang, "busy")))));
    };
    visit.data.flow = Flow::Resident { id, step: Step::Capturing { job, attempts: attempts + 1 } };
    visit.save().await?;
    Ok(Redirect::to("/resident/enrol/status").into_response())
}

async fn enrol_status(State(state): Shared, visit: Visit) -> Answer {
    let (id, Some(job), _) = visit.data.flow.awaiting_face()? else { return Err(PortalError::WrongStep) };
    let id = id.to_owned();
    let Some(desk) = state.desk.clone() else { return Ok(Redirect::to("/resident/enrol").into_response()) };
    match desk.progress(job) {
        DeskProgress::Capturing { good, needed, hint } => {
            let lang = visit.lang;
            let body = html! {
                (views::refresh(1))
                p id="progress" { (tf(lang, "enrol_progress", &[("good", &good.to_string()), ("needed", &needed.to_string())])) }
                @if let Some(hint) = hint { p id="hint" { (hint) } }
            };
            Ok(page(StatusCode::OK, layout(&visit.frame("/resident/enrol/status"), t(lang, "enrol_heading"), body)))
        }
        DeskProgress::Complete(embedding) => finish_enrolment(&state, visit, id, embedding).await,
        DeskProgress::Failed(reason) => Ok(enrol_failed(&visit, &reason.to_string())),
    }
}

/// The enrolment page again, saying why the capture did not enrol; the resident may start again.
fn enrol_failed(visit: &Visit, reason: &str) -> Response {
    let error = format!("{}: {reason}", t(visit.lang, "enrol_failed"));
    page(StatusCode::OK, enrol_markup(visit, Some(&error)))
}

/// Enrols the finished capture and issues the revocation code with it, so a resident who closes the tab now
/// can still withdraw (and the manager can revoke by unit).
async fn finish_enrolment(state: &PortalState, mut visit: Visit, id: String, embedding: Embedding) -> Answer {
    let revocation = auth::new_code(4);
    let revocation_hash = auth::code_hash(&revocation);
    let resident = id.clone();
    let enrolled = state
        .try_call(move |r| -> Result<(), RegistryError> {
            r.enrol(&resident, &embedding, unix_now())?;
            Ok(r.store_mut().set_revocation_code(&resident, &revocation_hash)?)
        })
        .await;
    match enrolled {
        Ok(()) => {}
        // A face that already opens the gate as someone else. Saying so would tell whoever holds a code whether
        // the person in front of the camera lives here: the office sorts it out in person.
        Err(PortalError::Registry(RegistryError::Duplicate { .. })) => {
            tracing::info!("portal: an enrolment matched another resident's face; handed to the management office");
            return needs_staff(state, visit, id).await;
        }
        Err(e) => return Err(e),
    }
    visit.data.flow = Flow::Resident { id, step: Step::FaceEnrolled };
    visit.save().await?;
    let notice = Some(t(visit.lang, "enrol_done"));
    Ok(page(StatusCode::OK, pin_markup(&visit, notice, Some(&revocation), None)))
}

/// Ends face enrolment from the portal for this household: the manager's page shows "needs staff", and the
/// resident is told only that the office will help, and may set a PIN meanwhile. The same answer whatever the
/// reason (a face that matches someone, or too many captures), so it tells nobody whose face is enrolled.
async fn needs_staff(state: &PortalState, mut visit: Visit, id: String) -> Answer {
    let resident = id.clone();
    state.try_call(move |r| r.store_mut().mark_needs_staff(&resident, unix_now())).await?;
    visit.data.flow = Flow::Resident { id, step: Step::PinOnly };
    visit.save().await?;
    let notice = Some(t(visit.lang, "enrol_needs_staff"));
    Ok(page(StatusCode::OK, pin_markup(&visit, notice, None, None)))
}

// ---- the PIN -----------------------------------------------------------------------------------------------

fn pin_markup(visit: &Visit, notice: Option<&str>, revocation: Option<&str>, error: Option<&str>) -> Markup {
    let lang = visit.lang;
    layout(
        &visit.frame("/resident/pin"),
        t(lang, "pin_heading"),
        html! {
            @if let Some(n) = notice { p.ok id="enrolled" { (n) } }
            @if let Some(code) = revocation {
                p { (t(lang, "enrol_revocation")) }
                p.code id="revocation-code" { (code) }
            }
            (error_line(error))
            form method="post" action="/resident/pin" {
                (csrf_field(&visit.data.csrf))
                p { label { (t(lang, "pin_label")) br; input id="pin" name="pin" type="password" inputmode="numeric" autocomplete="new-password" required; } }
                p { label { (t(lang, "pin_again")) br; input id="pin2" name="pin2" type="password" inputmode="numeric" autocomplete="new-password" required; } }
                button id="pin-submit" type="submit" { (t(lang, "pin_set")) }
            }
        },
    )
}

async fn pin_page(visit: Visit) -> Answer {
    let (_, enrolled) = visit.data.flow.awaiting_pin()?;
    let notice = enrolled.then(|| t(visit.lang, "enrol_done"));
    Ok(page(StatusCode::OK, pin_markup(&visit, notice, None, None)))
}

#[derive(Deserialize)]
struct PinForm {
    csrf: String,
    pin: String,
    pin2: String,
}

impl CsrfForm for PinForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn pin_set(State(state): Shared, mut visit: Visit, Checked(form): Checked<PinForm>) -> Answer {
    let (id, enrolled) = visit.data.flow.awaiting_pin()?;
    let id = id.to_owned();
    let refuse = |visit: &Visit, key: &str| {
        Ok(page(StatusCode::UNPROCESSABLE_ENTITY, pin_markup(visit, None, None, Some(t(visit.lang, key)))))
    };
    if form.pin != form.pin2 {
        return refuse(&visit, "pin_mismatch");
    }
    // The registry checks the strength again; checking here keeps the answer a form error, not a failure.
    let pin = match Pin::parse(&form.pin).and_then(|pin| pin.check_strength().map(|()| pin)) {
        Ok(pin) => pin,
        Err(e) => return refuse(&visit, pin_refusal(&e)),
    };
    // An enrolled resident got their revocation code with the enrolment; a PIN-only resident gets it now.
    let revocation = (!enrolled).then(|| auth::new_code(4));
    let revocation_hash = revocation.as_deref().map(auth::code_hash);
    let keypad = match state.try_call(move |registry| set_pin(registry, &id, &pin, revocation_hash)).await {
        Err(PortalError::Registry(RegistryError::Pin(e))) => return refuse(&visit, pin_refusal(&e)),
        answer => answer?,
    };
    visit.data.flow = Flow::None;
    visit.save().await?;
    let lang = visit.lang;
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
    Ok(page(StatusCode::OK, layout(&visit.frame("/"), t(lang, "done_heading"), body)))
}

/// The i18n key of a PIN the resident must change.
fn pin_refusal(e: &PinError) -> &'static str {
    match e {
        PinError::Weak => "pin_weak",
        PinError::Format | PinError::Damaged => "pin_format",
    }
}

/// Gives the resident a free random keypad code and their PIN (and, for a PIN-only resident, their revocation
/// code) in one job; returns the keypad code.
fn set_pin(
    registry: &mut Registry,
    id: &str,
    pin: &Pin,
    revocation_hash: Option<[u8; 32]>,
) -> Result<String, PortalError> {
    let keypad = registry.set_pin(id, None, pin, unix_now())?;
    if let Some(hash) = revocation_hash {
        registry.store_mut().set_revocation_code(id, &hash)?;
    }
    Ok(keypad)
}

// ---- revocation --------------------------------------------------------------------------------------------

fn revoke_markup(visit: &Visit, error: Option<&str>) -> Markup {
    let lang = visit.lang;
    layout(
        &visit.frame("/revoke"),
        t(lang, "revoke_heading"),
        html! {
            (error_line(error))
            form method="post" action="/revoke" {
                (csrf_field(&visit.data.csrf))
                label { (t(lang, "revoke_label")) br; input id="revocation" name="code" autocomplete="off" required; }
                " " button id="revoke-submit" type="submit" { (t(lang, "revoke_submit")) }
            }
        },
    )
}

async fn revoke_page(FormVisit(visit): FormVisit) -> Response {
    page(StatusCode::OK, revoke_markup(&visit, None))
}

async fn revoke(
    State(state): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    visit: Visit,
    Checked(form): Checked<CodeForm>,
) -> Answer {
    let bad = t(visit.lang, "revoke_bad");
    if !state.throttle.allow(peer.ip()) {
        return Ok(page(StatusCode::TOO_MANY_REQUESTS, revoke_markup(&visit, Some(bad))));
    }
    let hash = auth::code_hash(&form.code);
    let receipt = state
        .try_call(move |registry| -> Result<Option<RevocationReceipt>, RegistryError> {
            let Some(id) = registry.store().resident_for_revocation_code(&hash)? else { return Ok(None) };
            registry.revoke(&id, unix_now()).map(Some)
        })
        .await?;
    let Some(receipt) = receipt else {
        return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, revoke_markup(&visit, Some(bad))));
    };
    let body = views::receipt_table(visit.lang, &receipt);
    Ok(page(StatusCode::OK, layout(&visit.frame("/revoke"), t(visit.lang, "receipt_heading"), body)))
}
