//! What the portal keeps about a browser (in server memory only) and the extractors every handler starts
//! from: [`Visit`] (session and page language), [`Staff`] (a signed-in staff member of one role) and
//! [`Checked`] (a posted form whose CSRF token matched).
//!
//! Owns the shape of the session, including the resident's set-up [`Flow`], whose states are only the valid
//! ones. It must never keep in a session anything biometric, a PIN or a code in clear beyond the one request
//! that shows it.

use std::marker::PhantomData;

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::Markup;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use super::auth::{self, Role};
use super::error::PortalError;
use super::i18n::Lang;
use super::views;

const SESSION_KEY: &str = "fg";

/// Everything the portal keeps about a browser.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct SessionData {
    pub(super) csrf: String,
    pub(super) lang: Option<Lang>,
    pub(super) staff: Option<StaffMember>,
    pub(super) flow: Flow,
}

impl SessionData {
    /// Gives the session its CSRF token if it has none; true if it did (the session must then be saved).
    fn ensure_csrf(&mut self) -> bool {
        let missing = self.csrf.is_empty();
        if missing {
            self.csrf = auth::new_csrf_token();
        }
        missing
    }
}

/// Who signed in, and as what.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct StaffMember {
    pub(super) name: String,
    pub(super) role: Role,
}

/// Captures one household code may start at the gate camera: enough for a resident whose first try fails,
/// too few to test other people's faces one after another.
pub(super) const MAX_ENROL_ATTEMPTS: u8 = 3;

/// Where a resident is in the set-up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Flow {
    /// Not in a set-up.
    #[default]
    None,
    /// A valid enrolment code was entered; consent is next.
    Code { code_id: i64, unit: String },
    /// Consent given (or PIN only chosen): the resident `id` now exists.
    Resident { id: String, step: Step },
}

/// A resident's step after consent. Only these four exist: a PIN-only resident never captures or enrols,
/// and a capture ends either enrolled or (failed) still capturing, ready to start again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Step {
    /// Declined face entry: the PIN is next.
    PinOnly,
    /// Consented to face entry; `attempts` captures started so far.
    FaceConsented { attempts: u8 },
    /// Capture job `job` on the gate camera was started (it may since have failed: starting again is allowed
    /// up to [`MAX_ENROL_ATTEMPTS`]).
    Capturing { job: u64, attempts: u8 },
    /// The face template is enrolled: the PIN is next.
    FaceEnrolled,
}

impl Flow {
    /// The resident who consented to face entry and has not enrolled yet, their capture job if started, and
    /// how many captures they started.
    pub(super) fn awaiting_face(&self) -> Result<(&str, Option<u64>, u8), PortalError> {
        match self {
            Self::Resident { id, step: Step::FaceConsented { attempts } } => Ok((id, None, *attempts)),
            Self::Resident { id, step: Step::Capturing { job, attempts } } => Ok((id, Some(*job), *attempts)),
            _ => Err(PortalError::WrongStep),
        }
    }

    /// The resident who may set a PIN now, and whether their face is enrolled.
    pub(super) fn awaiting_pin(&self) -> Result<(&str, bool), PortalError> {
        match self {
            Self::Resident { id, step: Step::PinOnly } => Ok((id, false)),
            Self::Resident { id, step: Step::FaceEnrolled } => Ok((id, true)),
            _ => Err(PortalError::WrongStep),
        }
    }
}

/// The session's data, or a fresh one when there is none or it does not read (a stale shape after an
/// upgrade only restarts the set-up).
async fn load(session: &Session) -> SessionData {
    match session.get(SESSION_KEY).await {
        Ok(data) => data.unwrap_or_default(),
        Err(_) => {
            tracing::warn!("portal: a session did not read; starting it afresh");
            SessionData::default()
        }
    }
}

fn header_lang(headers: &HeaderMap) -> Lang {
    Lang::from_tag(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("en"))
}

/// The session's data and page language as they are, creating nothing (for error pages).
pub(super) async fn peek(session: &Session, headers: &HeaderMap) -> (SessionData, Lang) {
    let data = load(session).await;
    let lang = data.lang.unwrap_or_else(|| header_lang(headers));
    (data, lang)
}

/// The page header's facts from a session.
pub(super) fn frame<'a>(data: &'a SessionData, lang: Lang, path: &'a str) -> views::Frame<'a> {
    views::Frame { lang, path, csrf: &data.csrf, staff: data.staff.as_ref().map(|s| s.name.as_str()) }
}

/// A page with a status.
pub(super) fn page(status: StatusCode, markup: Markup) -> Response {
    (status, markup).into_response()
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

/// Any visitor: their session and the page language (`?lang=` sticks to the session; otherwise
/// `Accept-Language`). Reading a page makes no session: a visitor gets one when a page shows a form
/// ([`FormVisit`]) or they pick a language, so a flood of plain requests stores nothing.
pub(super) struct Visit {
    pub(super) session: Session,
    pub(super) data: SessionData,
    pub(super) lang: Lang,
}

impl Visit {
    /// Writes the session's data back.
    pub(super) async fn save(&self) -> Result<(), PortalError> {
        Ok(self.session.insert(SESSION_KEY, &self.data).await?)
    }

    /// The page header's facts for `path`.
    pub(super) fn frame<'a>(&'a self, path: &'a str) -> views::Frame<'a> {
        frame(&self.data, self.lang, path)
    }
}

async fn session_of<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<Session, PortalError> {
    Session::from_request_parts(parts, state).await.map_err(|_| PortalError::NoSessionLayer)
}

impl<S: Send + Sync> FromRequestParts<S> for Visit {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PortalError> {
        let session = session_of(parts, state).await?;
        let mut data = load(&session).await;
        let mut changed = false;
        // A malformed query is ignored: the language is a preference, not part of the request.
        let asked = Query::<LangQuery>::try_from_uri(&parts.uri).ok().and_then(|Query(q)| q.lang);
        if let Some(tag) = asked {
            data.lang = Some(Lang::from_tag(&tag));
            // A session made for a language alone gets its form token at once, as every session has one.
            data.ensure_csrf();
            changed = true;
        }
        let lang = data.lang.unwrap_or_else(|| header_lang(&parts.headers));
        let visit = Self { session, data, lang };
        if changed {
            visit.save().await?;
        }
        Ok(visit)
    }
}

/// A visit to a page that shows a form: the session is made now (if it was not) and holds the form's CSRF
/// token.
pub(super) struct FormVisit(pub(super) Visit);

impl<S: Send + Sync> FromRequestParts<S> for FormVisit {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PortalError> {
        let mut visit = Visit::from_request_parts(parts, state).await?;
        if visit.data.ensure_csrf() {
            visit.save().await?;
        }
        Ok(Self(visit))
    }
}

/// A staff role as a type, so a handler's signature says who may call it.
pub(super) trait StaffRole: Send + Sync + 'static {
    /// The role it stands for.
    const ROLE: Role;
}

/// The property manager (see [`Role::Manager`]).
pub(super) struct Manager;

impl StaffRole for Manager {
    const ROLE: Role = Role::Manager;
}

/// The auditor (see [`Role::Auditor`]).
pub(super) struct Auditor;

impl StaffRole for Auditor {
    const ROLE: Role = Role::Auditor;
}

/// The guard (see [`Role::Guard`]).
pub(super) struct Guard;

impl StaffRole for Guard {
    const ROLE: Role = Role::Guard;
}

/// The installer (see [`Role::Installer`]).
pub(super) struct Installer;

impl StaffRole for Installer {
    const ROLE: Role = Role::Installer;
}

/// A visit by a staff member signed in as `R`: anyone else is sent to sign in (anonymous) or refused (403).
pub(super) struct Staff<R> {
    pub(super) visit: Visit,
    role: PhantomData<R>,
}

impl<S: Send + Sync, R: StaffRole> FromRequestParts<S> for Staff<R> {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PortalError> {
        let visit = Visit::from_request_parts(parts, state).await?;
        match &visit.data.staff {
            Some(staff) if staff.role == R::ROLE => Ok(Self { visit, role: PhantomData }),
            Some(_) => Err(PortalError::Forbidden),
            None => Err(PortalError::SignIn),
        }
    }
}

/// A form that carries the session's CSRF token in its `csrf` field.
pub(super) trait CsrfForm: DeserializeOwned + Send {
    /// The submitted token.
    fn csrf(&self) -> &str;
}

/// A posted form whose CSRF token matched the session's (otherwise 400, whoever sent it). Put it last, after
/// [`Staff`], so a stranger is sent to sign in before their form is looked at.
pub(super) struct Checked<F>(pub(super) F);

impl<S: Send + Sync, F: CsrfForm> FromRequest<S> for Checked<F> {
    type Rejection = PortalError;

    async fn from_request(request: Request, state: &S) -> Result<Self, PortalError> {
        let (mut parts, body) = request.into_parts();
        let expected = load(&session_of(&mut parts, state).await?).await.csrf;
        let Form(form) = Form::<F>::from_request(Request::from_parts(parts, body), state).await?;
        if !auth::csrf_ok(&expected, form.csrf()) {
            return Err(PortalError::Csrf);
        }
        Ok(Self(form))
    }
}

/// A form of nothing but the CSRF token (sign-out, buttons).
#[derive(Deserialize)]
pub(super) struct Button {
    csrf: String,
}

impl CsrfForm for Button {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident(step: Step) -> Flow {
        Flow::Resident { id: "r-0a1b2c3d4e".into(), step }
    }

    #[test]
    fn every_flow_survives_the_session_store_and_opens_only_its_own_pages() {
        let flows = [
            Flow::None,
            Flow::Code { code_id: 7, unit: "7-702".into() },
            resident(Step::PinOnly),
            resident(Step::FaceConsented { attempts: 0 }),
            resident(Step::Capturing { job: 3, attempts: 1 }),
            resident(Step::FaceEnrolled),
        ];
        for flow in &flows {
            // tower-sessions keeps session data as JSON values.
            let data = SessionData { flow: flow.clone(), ..SessionData::default() };
            let back: SessionData = serde_json::from_value(serde_json::to_value(&data).unwrap()).unwrap();
            assert_eq!(&back.flow, flow);
        }
        let face: Vec<_> = flows.iter().map(|f| f.awaiting_face().ok().map(|(_, job, _)| job)).collect();
        assert_eq!(face, [None, None, None, Some(None), Some(Some(3)), None]);
        let pin: Vec<_> = flows.iter().map(|f| f.awaiting_pin().ok().map(|(_, enrolled)| enrolled)).collect();
        assert_eq!(pin, [None, None, Some(false), None, None, Some(true)]);
    }
}
