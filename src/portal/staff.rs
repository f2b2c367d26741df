//! The staff's pages: sign-in and sign-out, the property manager's counts, enrolment codes and revocation on
//! a household's behalf, and the auditor's no-retention report.
//!
//! Owns who may see what ([`Staff`] per handler) and the sign-in (argon2id off the async workers, lockout
//! recorded in the store). It must never show a passage identity, an hourly row of the store or anything
//! biometric: the manager sees only published (suppressed) counts, units and pseudonymous ids.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::auth::{self, Role};
use super::error::PortalError;
use super::i18n::{t, tf, Lang};
use super::session::{page, Auditor, Button, Checked, CsrfForm, Flow, FormVisit, Manager, Staff, StaffMember, Visit};
use super::views::{self, csrf_field, error_line, layout};
use super::PortalState;
use crate::audit::sign::{AuditSigner, SignError};
use crate::policy::counts::{self, Granularity, PublishedCell};
use crate::policy::rfc3339;
use crate::registry::{Registry, RegistryError};
use crate::store::{unix_now, EnrolmentCodeSummary, ResidentSummary, RevocationReceipt, StoreError};

type Shared = State<Arc<PortalState>>;
type Answer = Result<Response, PortalError>;

pub(super) fn routes() -> Router<Arc<PortalState>> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/manager", get(manager))
        .route("/manager/counts.csv", get(manager_csv))
        .route("/manager/codes", post(issue_code))
        .route("/manager/codes/{id}/cancel", post(cancel_code))
        .route("/manager/residents/{id}/revoke", post(manager_revoke))
        .route("/auditor", get(auditor))
        .route("/auditor/report.json", get(auditor_report))
}

// ---- sign-in -----------------------------------------------------------------------------------------------

fn login_markup(visit: &Visit, error: Option<&str>) -> Markup {
    let lang = visit.lang;
    layout(
        &visit.frame("/login"),
        t(lang, "login_heading"),
        html! {
            (error_line(error))
            form method="post" action="/login" {
                (csrf_field(&visit.data.csrf))
                p { label { (t(lang, "login_name")) br; input id="name" name="name" autocomplete="username" required; } }
                p { label { (t(lang, "login_password")) br; input id="password" name="password" type="password" autocomplete="current-password" required; } }
                button id="login-submit" type="submit" { (t(lang, "login_submit")) }
            }
        },
    )
}

async fn login_page(FormVisit(visit): FormVisit) -> Response {
    page(StatusCode::OK, login_markup(&visit, None))
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    name: String,
    password: String,
}

impl CsrfForm for LoginForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn login(
    State(state): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut visit: Visit,
    Checked(form): Checked<LoginForm>,
) -> Answer {
    let bad = t(visit.lang, "login_bad");
    if !state.throttle.allow(peer.ip()) {
        return Ok(page(StatusCode::TOO_MANY_REQUESTS, login_markup(&visit, Some(bad))));
    }
    let name = form.name.trim().to_owned();
    let Some(role) = sign_in(&state, name.clone(), Zeroizing::new(form.password)).await? else {
        return Ok(page(StatusCode::UNAUTHORIZED, login_markup(&visit, Some(bad))));
    };
    // A new session id at sign-in (no fixation) and a new CSRF token.
    visit.session.cycle_id().await?;
    visit.data.staff = Some(StaffMember { name, role });
    visit.data.csrf = auth::new_csrf_token();
    visit.data.flow = Flow::None;
    visit.save().await?;
    Ok(Redirect::to(match role {
        Role::Manager => "/manager",
        Role::Auditor => "/auditor",
        Role::Guard => "/guard",
        Role::Installer => "/installer",
    })
    .into_response())
}

/// Checks a staff sign-in: the account is read by the registry's owner, the password verified (argon2id) on a
/// blocking thread, and the outcome recorded by the owner again, so the owner never spends a hash's time.
async fn sign_in(
    state: &Arc<PortalState>,
    name: String,
    password: Zeroizing<String>,
) -> Result<Option<Role>, PortalError> {
    let lookup = name.clone();
    let account = state.try_call(move |r| r.store().account(&lookup)).await?;
    let Some(account) = account else {
        // An unknown name costs a hash too, so the time taken does not tell which accounts exist.
        state.blocking(move |_| auth::verify_password(&password, auth::dummy_hash())).await?;
        return Ok(None);
    };
    let now = unix_now();
    let hash = account.password_hash.clone();
    let verified = state.blocking(move |_| auth::verify_password(&password, &hash)).await?;
    // A locked account is refused whatever the password, and the attempt still costs the hash.
    let good = verified && account.locked_until <= now;
    let lock = if good { None } else { auth::lock_until(account.failed_attempts + 1, now) };
    state.try_call(move |r| r.store_mut().record_login(&name, good, lock)).await?;
    if !good {
        return Ok(None);
    }
    Ok(Some(account.role))
}

async fn logout(visit: Visit, Checked(_): Checked<Button>) -> Answer {
    visit.session.flush().await?;
    Ok(Redirect::to("/").into_response())
}

// ---- the property manager ----------------------------------------------------------------------------------

/// Everything the manager's page shows, read in one job so its parts agree.
struct ManagerFacts {
    days: Vec<PublishedCell>,
    hours: Vec<PublishedCell>,
    /// Residents with a way in (a face or a PIN, not said which: that is each household's own choice).
    set_up: usize,
    codes: Vec<EnrolmentCodeSummary>,
    /// Who can still withdraw: a live consent, a template or a PIN.
    revocable: Vec<ResidentSummary>,
}

/// How counts are published: the compound's zone and the optional noise, from the config only.
#[derive(Clone, Copy)]
struct CountRules {
    offset: i64,
    epsilon: Option<f64>,
}

impl CountRules {
    fn of(settings: &super::PortalSettings) -> Self {
        Self { offset: settings.utc_offset_secs, epsilon: settings.count_noise_epsilon }
    }
}

/// Published day cells (the last 14 closed days) and hour cells (the whole of yesterday): never today, never
/// an hourly row of the store itself.
fn published(registry: &Registry, rules: CountRules) -> Result<(Vec<PublishedCell>, Vec<PublishedCell>), StoreError> {
    let CountRules { offset, epsilon } = rules;
    let now = unix_now();
    let today = counts::day_start(now, offset);
    let store = registry.store();
    let days = store.compound_passage_counts(today - 14 * 86_400, today)?;
    let hours = store.compound_passage_counts(today - 86_400, today)?;
    let noise = registry.count_noise(epsilon);
    let noise = noise.as_ref();
    Ok((
        counts::publish(&days, Granularity::Day, offset, now, noise),
        counts::publish(&hours, Granularity::Hour, offset, now, noise),
    ))
}

impl ManagerFacts {
    fn read(registry: &Registry, rules: CountRules) -> Result<Self, StoreError> {
        let (days, hours) = published(registry, rules)?;
        let store = registry.store();
        let codes = store.enrolment_codes()?;
        let revocable: Vec<ResidentSummary> = store
            .residents()?
            .into_iter()
            .filter(|r| r.moved_out_at.is_none())
            .filter(|r| r.consent_granted_at.is_some() || r.template_version.is_some() || r.has_pin)
            .collect();
        let set_up = revocable.iter().filter(|r| r.template_version.is_some() || r.has_pin).count();
        Ok(Self { days, hours, set_up, codes, revocable })
    }
}

/// Labels in the compound's local time: a day `YYYY-MM-DD`, an hour `MM-DD HH:MM`.
fn day_label(offset: i64) -> impl Fn(i64) -> String + Copy {
    move |t| rfc3339(t + offset).chars().take(10).collect()
}

fn hour_label(offset: i64) -> impl Fn(i64) -> String + Copy {
    move |t| rfc3339(t + offset).chars().skip(5).take(11).collect::<String>().replace('T', " ")
}

async fn manager_page(state: &PortalState, visit: &Visit, issued: Option<&str>) -> Answer {
    let offset = state.settings.utc_offset_secs;
    let rules = CountRules::of(&state.settings);
    let facts = state.try_call(move |r| ManagerFacts::read(r, rules)).await?;
    let lang = visit.lang;
    let body = html! {
        p id="enrolled" { (tf(lang, "manager_enrolled", &[("n", &facts.set_up.to_string())])) }
        h2 { (t(lang, "manager_counts")) }
        h3 { (t(lang, "manager_by_day")) }
        (views::counts_chart(lang, "chart-days", &facts.days, day_label(offset)))
        (views::counts_table(lang, "table-days", &facts.days, day_label(offset)))
        p { a id="csv" href="/manager/counts.csv" { (t(lang, "manager_csv")) } }
        h3 { (t(lang, "manager_by_hour")) }
        (views::counts_chart(lang, "chart-hours", &facts.hours, hour_label(offset)))
        h2 { (t(lang, "manager_codes")) }
        @if let Some(code) = issued { p { (t(lang, "manager_issued")) } p.code id="issued-code" { (code) } }
        form method="post" action="/manager/codes" {
            (csrf_field(&visit.data.csrf))
            label { (t(lang, "manager_unit")) " " input id="unit" name="unit" required maxlength="32"; }
            " " button id="issue" type="submit" { (t(lang, "manager_issue")) }
        }
        (codes_table(lang, &visit.data.csrf, &facts.codes, day_label(offset)))
        h2 { (t(lang, "manager_residents")) }
        (residents_table(lang, &visit.data.csrf, &facts.revocable))
    };
    Ok(page(StatusCode::OK, layout(&visit.frame("/manager"), t(lang, "manager_heading"), body)))
}

fn codes_table(lang: Lang, csrf: &str, codes: &[EnrolmentCodeSummary], day_label: impl Fn(i64) -> String) -> Markup {
    let now = unix_now();
    html! {
        table id="codes" {
            tr { th { "#" } th { (t(lang, "manager_unit")) } th { "issued" } th { "expires" } th { "state" } th {} }
            @for c in codes {
                @let usable = c.used_at.is_none() && c.cancelled_at.is_none() && c.expires_at > now;
                tr {
                    td { (c.id) } td { (c.unit_label) } td { (day_label(c.issued_at)) } td { (day_label(c.expires_at)) }
                    td { @if c.used_at.is_some() { "used" } @else if c.cancelled_at.is_some() { "cancelled" } @else if usable { "open" } @else { "expired" } }
                    td { @if usable {
                        form.inline method="post" action={ "/manager/codes/" (c.id) "/cancel" } {
                            (csrf_field(csrf)) button type="submit" { (t(lang, "manager_cancel")) }
                        }
                    } }
                }
            }
        }
    }
}

/// Units and pseudonymous ids only, with a revoke button each: never whether a household chose face or PIN.
fn residents_table(lang: Lang, csrf: &str, revocable: &[ResidentSummary]) -> Markup {
    html! {
        @if revocable.is_empty() { p { (t(lang, "manager_no_residents")) } } @else {
            table id="residents" {
                tr { th { (t(lang, "manager_unit")) } th { "id" } th {} th {} }
                @for r in revocable {
                    tr {
                        td { (r.unit_label.as_deref().unwrap_or("-")) } td.code { (r.id) }
                        td { @if r.needs_staff { span.needs-staff { (t(lang, "manager_needs_staff")) } } }
                        td { form.inline method="post" action={ "/manager/residents/" (r.id) "/revoke" } {
                            (csrf_field(csrf)) button type="submit" { (t(lang, "manager_revoke")) }
                        } }
                    }
                }
            }
        }
    }
}

async fn manager(State(state): Shared, Staff { visit, .. }: Staff<Manager>) -> Answer {
    manager_page(&state, &visit, None).await
}

async fn manager_csv(State(state): Shared, _: Staff<Manager>) -> Answer {
    let rules = CountRules::of(&state.settings);
    let (days, _) = state.try_call(move |r| published(r, rules)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"facegate-counts.csv\""),
        ],
        counts::to_csv(&days),
    )
        .into_response())
}

#[derive(Deserialize)]
struct IssueForm {
    csrf: String,
    unit: String,
}

impl CsrfForm for IssueForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn issue_code(
    State(state): Shared,
    Staff { visit, .. }: Staff<Manager>,
    Checked(form): Checked<IssueForm>,
) -> Answer {
    let unit = form.unit.trim().to_owned();
    if unit.is_empty() || unit.chars().count() > 32 {
        return Err(PortalError::BadField);
    }
    let code = auth::new_code(3);
    let hash = auth::code_hash(&code);
    let valid = i64::try_from(state.settings.code_valid.as_secs()).unwrap_or(7 * 86_400);
    state
        .try_call(move |r| {
            let now = unix_now();
            r.store_mut().add_enrolment_code(&hash, &unit, now, now + valid)
        })
        .await?;
    manager_page(&state, &visit, Some(&code)).await
}

async fn cancel_code(
    State(state): Shared,
    _: Staff<Manager>,
    id: Result<Path<i64>, PathRejection>,
    Checked(_): Checked<Button>,
) -> Answer {
    // A malformed id names no code: the same answer as an unknown one would deserve, not axum's own text.
    let Path(id) = id.map_err(|_| PortalError::NotFound)?;
    state.try_call(move |r| r.store_mut().cancel_enrolment_code(id, unix_now())).await?;
    Ok(Redirect::to("/manager").into_response())
}

/// The manager withdraws a household's face data for them (they lost their revocation code, or abandoned the
/// set-up after enrolling): the same revocation as `/revoke`, with its receipt to hand over.
async fn manager_revoke(
    State(state): Shared,
    Staff { visit, .. }: Staff<Manager>,
    id: Result<Path<String>, PathRejection>,
    Checked(_): Checked<Button>,
) -> Answer {
    let Path(id) = id.map_err(|_| PortalError::NotFound)?;
    let receipt = state
        .try_call(move |r| -> Result<Option<RevocationReceipt>, RegistryError> {
            if !r.store().resident_exists(&id)? {
                return Ok(None);
            }
            r.revoke(&id, unix_now()).map(Some)
        })
        .await?
        .ok_or(PortalError::NotFound)?;
    let lang = visit.lang;
    let body = html! {
        p { (t(lang, "manager_revoked")) }
        (views::receipt_table(lang, &receipt))
        p { a href="/manager" { (t(lang, "manager_heading")) } }
    };
    Ok(page(StatusCode::OK, layout(&visit.frame("/manager"), t(lang, "receipt_heading"), body)))
}

// ---- the auditor -------------------------------------------------------------------------------------------

async fn auditor(State(state): Shared, Staff { visit, .. }: Staff<Auditor>) -> Answer {
    let report = state.blocking(|s| crate::audit::run_audit(&s.settings.audit, unix_now())).await?;
    let lang = visit.lang;
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
    Ok(page(StatusCode::OK, layout(&visit.frame("/auditor"), t(lang, "auditor_heading"), body)))
}

async fn auditor_report(State(state): Shared, _: Staff<Auditor>) -> Answer {
    let signed = state
        .blocking(|s| -> Result<_, SignError> {
            let report = crate::audit::run_audit(&s.settings.audit, unix_now());
            AuditSigner::load_or_create(&s.settings.audit.key_dir, &s.settings.audit.wrap)?.sign(&report)
        })
        .await??;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"facegate-audit.json\""),
        ],
        serde_json::to_string_pretty(&signed)?,
    )
        .into_response())
}
