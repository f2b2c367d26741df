//! The guard's page: guard-call presses live (which gate, when), a remote release with a reason, and a visitor
//! pass issued on the spot with its QR code on screen.
//!
//! Owns the guard's side of [`crate::gate::GuardDesk`]. Each release is written to the audit chain (staff
//! account and reason) before the gate is asked to open, so no release goes unaccounted; the gate then decides
//! and counts it as a guard passage, as the guard's own button. It must never show who called or who passed
//! (the desk holds only times and the gate's name) nor open the door itself.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::error::PortalError;
use super::i18n::{t, tf, Lang};
use super::session::{page, Button, Checked, CsrfForm, Guard, Staff};
use super::views::{csrf_field, error_line, layout, refresh};
use super::PortalState;
use crate::policy::rfc3339;
use crate::store::unix_now;

type Shared = State<Arc<PortalState>>;
type Answer = Result<Response, PortalError>;

/// How long a pass issued at the guard's desk is valid.
pub const DESK_PASS_VALID_SECS: i64 = 2 * 3_600;

/// The longest reason kept in the audit chain, in characters.
pub const MAX_REASON_CHARS: usize = 200;

pub(super) fn routes() -> Router<Arc<PortalState>> {
    Router::new()
        .route("/guard", get(guard_page))
        .route("/guard/release", get(release_page).post(release))
        .route("/guard/pass", post(issue_pass))
}

#[derive(Deserialize)]
struct GuardQuery {
    released: Option<u8>,
}

async fn guard_page(State(state): Shared, Staff { visit, .. }: Staff<Guard>, query: Query<GuardQuery>) -> Answer {
    let lang = visit.lang;
    let offset = state.settings.utc_offset_secs;
    let now = unix_now();
    let (gate, calls) = match &state.guard {
        Some(desk) => (desk.gate().to_owned(), desk.calls(now)),
        None => (String::new(), Vec::new()),
    };
    let time = |at: i64| rfc3339(at + offset).chars().skip(11).take(8).collect::<String>();
    let body = html! {
        // Calls appear without script: the page reloads itself every 2 s (it holds no form field to lose).
        (refresh(2))
        @if query.released == Some(1) { p.ok id="released" { (t(lang, "guard_released")) } }
        @if state.guard.is_none() { p.error { (t(lang, "guard_no_gate")) } }
        h2 { (t(lang, "guard_calls")) }
        @if calls.is_empty() {
            p id="no-calls" { (t(lang, "guard_no_calls")) }
        } @else {
            table id="calls" {
                tr { th { (t(lang, "guard_call_time")) } th { (t(lang, "guard_call_gate")) } th { (t(lang, "guard_call_ago")) } }
                @for call in &calls {
                    tr.call { td { (time(call.at)) } td { (call.gate) } td { (tf(lang, "guard_seconds_ago", &[("n", &(now - call.at).max(0).to_string())])) } }
                }
            }
        }
        p { a id="to-release" href="/guard/release" { (tf(lang, "guard_release_link", &[("gate", &gate)])) } }
        form method="post" action="/guard/pass" {
            (csrf_field(&visit.data.csrf))
            button id="issue-pass" type="submit" { (t(lang, "guard_pass_issue")) }
        }
    };
    Ok(page(StatusCode::OK, layout(&visit.frame("/guard"), t(lang, "guard_heading"), body)))
}

fn release_markup(lang: Lang, visit: &super::session::Visit, error: Option<&str>) -> Markup {
    layout(
        &visit.frame("/guard/release"),
        t(lang, "guard_release_heading"),
        html! {
            (error_line(error))
            form method="post" action="/guard/release" {
                (csrf_field(&visit.data.csrf))
                p { label { (t(lang, "guard_reason")) br;
                    input id="reason" name="reason" required minlength="3" maxlength=(MAX_REASON_CHARS) size="60";
                } }
                p { small { (t(lang, "guard_reason_hint")) } }
                button id="release" type="submit" { (t(lang, "guard_release_submit")) }
            }
            p { a id="back" href="/guard" { (t(lang, "guard_back")) } }
        },
    )
}

async fn release_page(Staff { visit, .. }: Staff<Guard>) -> Response {
    // The session already holds a CSRF token: staff sessions get one at sign-in.
    let lang = visit.lang;
    page(StatusCode::OK, release_markup(lang, &visit, None))
}

#[derive(Deserialize)]
struct ReleaseForm {
    csrf: String,
    reason: String,
}

impl CsrfForm for ReleaseForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A reason as the audit chain keeps it: trimmed, one line, printable, 3 to [`MAX_REASON_CHARS`] characters.
pub fn clean_reason(reason: &str) -> Option<String> {
    let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    let length = reason.chars().count();
    ((3..=MAX_REASON_CHARS).contains(&length) && !reason.chars().any(char::is_control)).then_some(reason)
}

async fn release(State(state): Shared, staff: Staff<Guard>, Checked(form): Checked<ReleaseForm>) -> Answer {
    let visit = staff.visit;
    let lang = visit.lang;
    let Some(reason) = clean_reason(&form.reason) else {
        return Ok(page(StatusCode::BAD_REQUEST, release_markup(lang, &visit, Some(t(lang, "guard_reason_bad")))));
    };
    let Some(desk) = state.guard.clone() else {
        return Ok(page(StatusCode::SERVICE_UNAVAILABLE, release_markup(lang, &visit, Some(t(lang, "guard_no_gate")))));
    };
    let name = visit.data.staff.as_ref().map(|s| s.name.clone()).unwrap_or_default();
    // Accountability first: a release that cannot be written is not made.
    state.try_call(move |r| r.store_mut().audit_remote_release(&name, &reason, unix_now())).await?;
    if let Err(e) = desk.release() {
        tracing::warn!("remote release not made: {e}");
        let message = tf(lang, "guard_release_failed", &[("why", &e.to_string())]);
        return Ok(page(StatusCode::SERVICE_UNAVAILABLE, release_markup(lang, &visit, Some(message.as_str()))));
    }
    Ok(Redirect::to("/guard?released=1").into_response())
}

async fn issue_pass(State(state): Shared, Staff { visit, .. }: Staff<Guard>, Checked(_): Checked<Button>) -> Answer {
    let lang = visit.lang;
    let now = unix_now();
    let (pass, text) = state.try_call(move |r| r.issue_pass(now, now + DESK_PASS_VALID_SECS, now)).await?;
    let qr = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|_| PortalError::BadField)?;
    // The QR code as inline SVG (vector squares drawn from the pass text; no image is made or sent).
    let svg = qr.render::<qrcode::render::svg::Color<'_>>().min_dimensions(240, 240).build();
    let offset = state.settings.utc_offset_secs;
    let until = rfc3339(pass.valid_until + offset).chars().take(16).collect::<String>().replace('T', " ");
    let body = html! {
        div id="pass-qr" { (PreEscaped(svg)) }
        p { (tf(lang, "guard_pass_valid", &[("until", &until)])) }
        p.code id="pass-text" { (text) }
        p { a id="back" href="/guard" { (t(lang, "guard_back")) } }
    };
    Ok(page(StatusCode::OK, layout(&visit.frame("/guard/pass"), t(lang, "guard_pass_heading"), body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_one_printable_line_of_bounded_length() {
        assert_eq!(clean_reason("  delivery \n for  the  office "), Some("delivery for the office".into()));
        assert_eq!(clean_reason("ok"), None);
        assert_eq!(clean_reason(&"x".repeat(MAX_REASON_CHARS)), Some("x".repeat(MAX_REASON_CHARS)));
        assert_eq!(clean_reason(&"x".repeat(MAX_REASON_CHARS + 1)), None);
        assert_eq!(clean_reason("bell\u{7} rings"), None);
        assert_eq!(clean_reason("访客送货"), Some("访客送货".into()));
    }
}
