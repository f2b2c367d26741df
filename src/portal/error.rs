//! Why a request is not answered with the page it asked for, and what the browser gets instead.
//!
//! Owns [`PortalError`] and the one place that turns it into a response: a redirect (sign in first, start
//! the set-up first) or a status with a short page in the visitor's language (written by [`error_pages`],
//! which can read the session), plus a log line. It must never put an error's own text in a page (those
//! name files, SQL, keys), and never log a resident id, a unit, a keypad code or a form value.

use axum::extract::rejection::FormRejection;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use tower_sessions::Session;

use super::i18n::{t, Lang};
use super::session::{self, SessionData};
use super::views::layout;
use crate::audit::sign::SignError;
use crate::registry::owner::OwnerError;
use crate::registry::RegistryError;
use crate::store::StoreError;

/// Why a portal request did not get its page. The `Display` texts are for the log only and carry no data of
/// their own; the cause stays reachable through `source()`.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// A staff page without a signed-in staff member.
    #[error("not signed in")]
    SignIn,
    /// A staff page for another role.
    #[error("signed in with another role")]
    Forbidden,
    /// A set-up page the resident's session has not reached (or has left).
    #[error("not at this step of the set-up")]
    WrongStep,
    /// No such page or record.
    #[error("no such page or record")]
    NotFound,
    /// A form without the session's CSRF token.
    #[error("the form's CSRF token does not match the session's")]
    Csrf,
    /// A form field out of its range (the browser's own checks were bypassed).
    #[error("a form field is out of range")]
    BadField,
    /// A form that does not parse.
    #[error("the form could not be read")]
    Form(#[from] FormRejection),
    /// The registry's owner did not answer (stopped, or the job panicked).
    #[error("the registry's owner did not answer")]
    Owner(#[from] OwnerError),
    /// The store refused.
    #[error("the store refused")]
    Store(#[from] StoreError),
    /// The registry refused.
    #[error("the registry refused")]
    Registry(#[from] RegistryError),
    /// The session could not be read or written.
    #[error("the session store failed")]
    Session(#[from] tower_sessions::session::Error),
    /// Work moved off the async workers panicked.
    #[error("a background task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The auditor's report could not be signed.
    #[error("the audit report could not be signed")]
    Sign(#[from] SignError),
    /// The session layer is not around the routes (a wiring bug, not the request's fault).
    #[error("the session layer is missing")]
    NoSessionLayer,
    /// The signed report could not be written out.
    #[error("the audit report could not be serialised")]
    Json(#[from] serde_json::Error),
}

/// Marks a response whose body [`error_pages`] replaces with the page in the visitor's language.
#[derive(Clone, Copy, Debug)]
struct ErrorPage {
    key: &'static str,
}

impl PortalError {
    /// The status and the i18n key of the page; `None` for the refusals that redirect.
    fn answer(&self) -> Option<(StatusCode, &'static str)> {
        Some(match self {
            Self::SignIn | Self::WrongStep => return None,
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::Csrf | Self::BadField | Self::Form(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            // The daemon is stopping: worth retrying in a moment, unlike a fault.
            Self::Owner(OwnerError::Gone) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Owner(OwnerError::Panicked)
            | Self::Store(_)
            | Self::Registry(_)
            | Self::Session(_)
            | Self::NoSessionLayer
            | Self::Task(_)
            | Self::Sign(_)
            | Self::Json(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        })
    }

    /// What may be logged of the cause: everything that names no one.
    fn cause(&self) -> String {
        match self {
            Self::Store(e) => store_cause(e),
            Self::Registry(e) => registry_cause(e),
            Self::Owner(e) => e.to_string(),
            Self::Sign(e) => e.to_string(),
            // A form's or a session's (de)serialisation message may quote what was sent or stored.
            Self::Form(e) => format!("rejected with {}", e.status()),
            Self::Session(tower_sessions::session::Error::Store(e)) => e.to_string(),
            Self::Session(tower_sessions::session::Error::SerdeJson(_)) => "session data does not (de)serialise".into(),
            Self::Json(e) => format!("{:?}", e.classify()),
            Self::Task(e) => if e.is_panic() { "panicked" } else { "cancelled" }.into(),
            Self::SignIn
            | Self::Forbidden
            | Self::WrongStep
            | Self::NotFound
            | Self::Csrf
            | Self::BadField
            | Self::NoSessionLayer => String::new(),
        }
    }

    fn log(&self, status: StatusCode) {
        let cause = self.cause();
        if status.is_server_error() {
            tracing::error!(%status, cause, "portal: {self}");
        } else if matches!(self, Self::Csrf | Self::Form(_) | Self::Forbidden) {
            // Refusals worth seeing in a row (forged forms, probing); not the ordinary 404.
            tracing::warn!(%status, cause, "portal: {self}");
        }
    }
}

// Every variant is named (no `_` arm), so a new one must be judged for personal data before it compiles.
fn store_cause(e: &StoreError) -> String {
    match e {
        StoreError::Sqlite { source, .. } => format!("database: {source}"),
        StoreError::Missing { .. } | StoreError::Folder { .. } | StoreError::Damaged { .. } => e.to_string(),
        StoreError::TooNew { .. } | StoreError::StaleKeys { .. } | StoreError::WrongMasterKey { .. } => e.to_string(),
        StoreError::Sealed { source, .. } => format!("a resident's sealed row does not open: {source}"),
        StoreError::UnknownResident(_) => "unknown resident".into(),
        StoreError::NoConsent(_) => "no live consent".into(),
        StoreError::BadResidentId(_) => "not a pseudonymous resident id".into(),
        StoreError::KeypadCodeTaken(_) => "keypad code taken".into(),
        StoreError::DuplicateResident(_) => "resident exists already".into(),
    }
}

fn registry_cause(e: &RegistryError) -> String {
    match e {
        RegistryError::Store(e) => store_cause(e),
        RegistryError::NoConsent(_) => "no live consent".into(),
        RegistryError::Key(_)
        | RegistryError::Duplicate { .. }
        | RegistryError::Gallery(_)
        | RegistryError::Pin(_)
        | RegistryError::KeypadCode
        | RegistryError::Pass(_) => e.to_string(),
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let Some((status, key)) = self.answer() else {
            return Redirect::to(if matches!(self, Self::SignIn) { "/login" } else { "/resident" }).into_response();
        };
        self.log(status);
        // A plain page in English in case no `error_pages` layer is there to write the visitor's.
        let mut response = message(&SessionData::default(), Lang::En, status, key);
        response.extensions_mut().insert(ErrorPage { key });
        response
    }
}

/// A short page: `key`'s text and a link home.
pub(super) fn message(data: &SessionData, lang: Lang, status: StatusCode, key: &str) -> Response {
    let frame = session::frame(data, lang, "/");
    (status, layout(&frame, t(lang, key), html! { p { a href="/" { (t(lang, "title")) } } })).into_response()
}

/// Middleware: rewrites an error's page in the visitor's language and with their session's header (sign-out
/// button), which [`PortalError::into_response`] cannot see. Status and headers stay as they are.
pub(super) async fn error_pages(session: Session, headers: HeaderMap, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let Some(ErrorPage { key }) = response.extensions().get::<ErrorPage>().copied() else { return response };
    let (data, lang) = session::peek(&session, &headers).await;
    let (parts, _) = response.into_parts();
    let (_, body) = message(&data, lang, parts.status, key).into_parts();
    Response::from_parts(parts, body)
}
