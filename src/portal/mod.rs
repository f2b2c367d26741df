//! The web portal on the compound's LAN: residents consent, enrol at the gate camera, set a PIN and revoke;
//! property managers see anonymized counts and issue enrolment codes; auditors get the signed no-retention
//! report. HTTPS only (rustls; a self-signed certificate is made on first run unless one is configured).
//!
//! Owns routing, sessions (in memory, `__Host-` cookie, Secure, HttpOnly, SameSite=Strict, 30 min idle), CSRF
//! tokens on every form, staff accounts (argon2id) with login throttling per account and per address, and the
//! security headers. It must never receive, show or export an image, an embedding or a passage identity: the
//! enrolment page only starts a capture on the gate camera and shows a count of good frames.
//!
//! This file owns the state every request shares, the routing of the public pages, the layers and the
//! HTTPS server; `session` the extractors, `resident`, `staff`, `guard` and `installer` the pages of each
//! audience, `metrics` the health figures for Prometheus, `error` what a failed request answers.

pub mod auth;
mod error;
pub mod guard;
pub mod i18n;
mod installer;
pub mod metrics;
mod resident;
mod session;
mod staff;
pub mod views;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;

use crate::audit::AuditScope;
use crate::protect::keys::{self, KeyWrap};
use crate::registry::owner::RegistryHandle;
use crate::registry::Registry;
use crate::vision::enrol::EnrolmentDesk;
pub use error::PortalError;
use i18n::t;
use session::{page, Visit};
use views::{layout, NoticeFacts};

/// What the notice and the signage say, from `[portal]` and the retention setting.
pub fn notice_facts(config: &crate::config::Config) -> NoticeFacts {
    let p = &config.portal;
    NoticeFacts {
        operator: p.operator.clone(),
        contact: p.contact.clone(),
        held_on: p.templates_held_on.clone(),
        max_unused_days: config.registry.max_unused_secs / 86_400,
        version: p.notice_version.clone(),
    }
}

/// How long one capture at the enrolment desk may take before it fails (the household may try again, up to
/// the limit of captures per code).
pub const ENROL_TIMEOUT: Duration = Duration::from_secs(60);

/// Portal settings, from `[portal]` and the rest of the config.
#[derive(Clone, Debug)]
pub struct PortalSettings {
    /// Address to listen on (LAN).
    pub listen: SocketAddr,
    /// Certificate and key (PEM); made and kept in the key folder when absent.
    pub cert: PathBuf,
    /// See `cert`.
    pub key: PathBuf,
    /// Whether browsers trust `cert` (the installer configured one from the compound's CA): only then is HSTS
    /// sent, since pinning browsers to a self-signed certificate would lock staff out when it is replaced.
    pub cert_trusted: bool,
    /// What the notice and signage say.
    pub notice: NoticeFacts,
    /// Local time zone of counts, seconds east of UTC.
    pub utc_offset_secs: i64,
    /// Epsilon of the Laplace noise on published counts (`None`: exact).
    pub count_noise_epsilon: Option<f64>,
    /// Good frames per enrolment.
    pub enrol_frames: usize,
    /// How long one capture at the desk may take ([`ENROL_TIMEOUT`] in the daemon).
    pub enrol_timeout: Duration,
    /// Live-score threshold at enrolment.
    pub live_threshold: f32,
    /// How long an enrolment code stays valid.
    pub code_valid: Duration,
    /// What the auditor's page checks.
    pub audit: AuditScope,
}

impl PortalSettings {
    /// How the device's key files are sealed (the portal's TLS key among them): the audit scope's, held once.
    pub fn key_wrap(&self) -> &KeyWrap {
        &self.audit.wrap
    }
}

/// Errors starting the portal (a request's errors are [`PortalError`]).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS material could not be read or made.
    #[error("portal TLS ({path}): {reason}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The address could not be bound or the server failed.
    #[error("portal server on {addr}: {reason}; is another service on that port?")]
    Serve {
        /// Where.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Shared by every request.
pub struct PortalState {
    settings: PortalSettings,
    registry: RegistryHandle,
    desk: Option<Arc<EnrolmentDesk>>,
    /// Sign-ins, codes and revocations: ten a minute per address.
    throttle: auth::Throttle,
    /// Every request: a person's browsing stays far below it, a flood from one address does not.
    requests: auth::Throttle,
    /// What `/metrics` reads, when a token is configured.
    metrics: Option<metrics::MetricsSource>,
    /// The gate's guard desk: calls and remote releases (`None`: no gate in this process).
    guard: Option<Arc<crate::gate::GuardDesk>>,
    /// The camera's aiming figures (`None`: no camera).
    aiming: Option<Arc<crate::vision::aim::AimingDesk>>,
}

impl PortalState {
    /// A handle to the registry's owner (the portal holds no registry of its own: every change goes through
    /// the daemon's one owner, so keys and gallery never disagree), and the gate's enrolment desk (`None`: no
    /// camera, so no enrolment from the portal).
    pub fn new(settings: PortalSettings, registry: RegistryHandle, desk: Option<Arc<EnrolmentDesk>>) -> Self {
        Self {
            settings,
            registry,
            desk,
            throttle: auth::Throttle::default(),
            requests: auth::Throttle::per_minute(REQUESTS_PER_MINUTE),
            metrics: None,
            guard: None,
            aiming: None,
        }
    }

    /// Serves the guard's page from the gate's `guard` desk and the aiming page from its camera's `aiming` desk.
    pub fn with_desks(
        mut self,
        guard: Arc<crate::gate::GuardDesk>,
        aiming: Option<Arc<crate::vision::aim::AimingDesk>>,
    ) -> Self {
        self.guard = Some(guard);
        self.aiming = aiming;
        self
    }

    /// Serves `/metrics` from `source` (without it the route answers 404).
    pub fn with_metrics(mut self, source: metrics::MetricsSource) -> Self {
        self.metrics = Some(source);
        self
    }

    /// Runs `job` on the registry's owner (the daemon's one registry) and awaits its reply.
    async fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Registry) -> T + Send + 'static,
    ) -> Result<T, PortalError> {
        Ok(self.registry.call(job).await?)
    }

    /// [`Self::call`] for a job that can fail: one `?` for both the owner's and the job's error.
    async fn try_call<T: Send + 'static, E: Into<PortalError> + Send + 'static>(
        &self,
        job: impl FnOnce(&mut Registry) -> Result<T, E> + Send + 'static,
    ) -> Result<T, PortalError> {
        self.call(job).await?.map_err(Into::into)
    }

    /// Runs CPU-bound work that is not the registry's (argon2id, the audit's file scan) off the async workers.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&PortalState) -> T + Send + 'static,
    ) -> Result<T, PortalError> {
        let state = self.clone();
        Ok(tokio::task::spawn_blocking(move || work(&state)).await?)
    }
}

fn routes() -> Router<Arc<PortalState>> {
    Router::new()
        .route("/", get(home))
        .route("/style.css", get(style))
        .route("/signage", get(signage))
        .route("/metrics", get(metrics::metrics))
        .merge(resident::routes())
        .merge(staff::routes())
        .merge(guard::routes())
        .merge(installer::routes())
        .fallback(not_found)
}

async fn not_found(_: Visit) -> PortalError {
    PortalError::NotFound
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], views::STYLE).into_response()
}

async fn home(visit: Visit) -> Response {
    let lang = visit.lang;
    let body = html! {
        p { (t(lang, "home_intro")) }
        ul {
            li { a id="to-resident" href="/resident" { (t(lang, "resident_start")) } }
            li { a id="to-revoke" href="/revoke" { (t(lang, "resident_revoke")) } }
            li { a id="to-login" href="/login" { (t(lang, "staff_login")) } }
            li { a id="to-signage" href="/signage" { (t(lang, "signage")) } }
        }
    };
    page(StatusCode::OK, layout(&visit.frame("/"), t(lang, "title"), body))
}

async fn signage(axum::extract::State(state): axum::extract::State<Arc<PortalState>>, visit: Visit) -> Response {
    // The fingerprint lets staff check, on a printed sign, that the portal they reach is this gate's.
    let fingerprint = cert_fingerprint(&state.settings.cert).ok();
    let body = html! {
        (views::notice(visit.lang, &state.settings.notice))
        @if let Some(f) = fingerprint { p id="fingerprint" { (t(visit.lang, "signage_fingerprint")) " " code { (f) } } }
    };
    page(StatusCode::OK, layout(&visit.frame("/signage"), t(visit.lang, "signage"), body))
}

/// Requests per minute one address may make (a page is two: itself and the style sheet).
pub const REQUESTS_PER_MINUTE: u32 = 120;

/// Sessions held at most. A session is made only when a form needs one (or a visitor picks a language), lives
/// 30 minutes idle, and past this bound the least used go first: a flood cannot grow the process without end.
pub const MAX_SESSIONS: u64 = 1_000;

/// The router (also what the tests serve).
pub fn router(state: Arc<PortalState>) -> Router {
    use tower_sessions::cookie::SameSite;
    use tower_sessions::{Expiry, SessionManagerLayer};
    let sessions = SessionManagerLayer::new(tower_sessions_moka_store::MokaStore::new(Some(MAX_SESSIONS)))
        .with_name("__Host-facegate")
        .with_secure(true)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(tower_sessions::cookie::time::Duration::minutes(30)));
    // Error pages inside the sessions (they read the visitor's language), headers outermost (every answer).
    // The per-address limit sits outside the sessions: a refused request costs no session.
    routes()
        .with_state(state.clone())
        .layer(axum::middleware::from_fn(error::error_pages))
        .layer(sessions)
        .layer(axum::middleware::from_fn_with_state(state.clone(), limit_requests))
        .layer(axum::middleware::map_response_with_state(state, security_headers))
}

async fn limit_requests(
    axum::extract::State(state): axum::extract::State<Arc<PortalState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    // The device's own tools and checks (127.0.0.1 or ::1) are not limited; every other address is.
    let own = |ip: std::net::IpAddr| ip == std::net::Ipv4Addr::LOCALHOST || ip == std::net::Ipv6Addr::LOCALHOST;
    match peer {
        Some(ip) if !own(ip) && !state.requests.allow(ip) => {
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "60")], "too many requests; wait a minute\n")
                .into_response()
        }
        _ => next.run(request).await,
    }
}

async fn security_headers(
    axum::extract::State(state): axum::extract::State<Arc<PortalState>>,
    mut response: axum::response::Response,
) -> axum::response::Response {
    let headers = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
         base-uri 'none'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CACHE_CONTROL, "no-store");
    if state.settings.cert_trusted {
        set(headers, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    response
}

/// Serves the portal over HTTPS until `shutdown` completes.
pub async fn serve(
    state: Arc<PortalState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let settings = state.settings.clone();
    let tls = tls_config(&settings.cert, &settings.key, settings.key_wrap()).await?;
    match cert_fingerprint(&settings.cert) {
        Ok(fingerprint) => tracing::info!(fingerprint, "portal certificate (SHA-256; also on the signage)"),
        Err(e) => tracing::warn!("portal certificate fingerprint: {e}"),
    }
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(2)));
    });
    tracing::info!(addr = %settings.listen, "portal listening (HTTPS)");
    axum_server::bind_rustls(settings.listen, tls)
        .handle(handle)
        .serve(router(state).into_make_service_with_connect_info::<SocketAddr>())
        .await
        .map_err(|e| ServeError::Serve { addr: settings.listen, reason: e.to_string() })
}

/// The SHA-256 fingerprint of the portal's certificate (the first in the PEM file), as staff compare it with
/// the one on the signage and in their browser: 32 hex pairs joined by colons. Fails if the file holds no
/// certificate.
pub fn cert_fingerprint(cert: &Path) -> Result<String, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use sha2::Digest;
    let der = rustls::pki_types::CertificateDer::from_pem_file(cert)
        .map_err(|e| ServeError::Tls { path: cert.to_path_buf(), reason: e.to_string() })?;
    let digest = sha2::Sha256::digest(der.as_ref());
    Ok(digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
}

/// Makes the certificate (self-signed, owner-only key) if there is none yet, and returns its fingerprint: the
/// signage shows it from the first start.
pub fn ensure_certificate(cert: &Path, key: &Path, wrap: &KeyWrap) -> Result<String, ServeError> {
    if !cert.exists() || !key.exists() {
        make_self_signed(cert, key, wrap)?;
    }
    cert_fingerprint(cert)
}

/// Replaces the self-signed certificate and its key with fresh ones (`facegate keys rotate --portal-cert`);
/// returns the new fingerprint, which the signage must then show.
pub fn renew_certificate(cert: &Path, key: &Path, wrap: &KeyWrap) -> Result<String, ServeError> {
    make_self_signed(cert, key, wrap)?;
    cert_fingerprint(cert)
}

/// Loads the certificate and key, making a self-signed pair (owner-only files) on first run.
async fn tls_config(
    cert: &Path,
    key: &Path,
    wrap: &KeyWrap,
) -> Result<axum_server::tls_rustls::RustlsConfig, ServeError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !cert.exists() || !key.exists() {
        make_self_signed(cert, key, wrap)?;
    }
    let err = |path: &Path, reason: String| ServeError::Tls { path: path.to_path_buf(), reason };
    let cert_pem = std::fs::read(cert).map_err(|e| err(cert, e.to_string()))?;
    // The key is sealed at rest under the device's key root; in clear only in memory, for rustls.
    let key_pem =
        keys::read_secret(key, wrap).map_err(|e| err(key, e.to_string()))?.ok_or_else(|| err(key, "missing".into()))?;
    axum_server::tls_rustls::RustlsConfig::from_pem(cert_pem, key_pem.to_vec())
        .await
        .map_err(|e| err(cert, e.to_string()))
}

fn make_self_signed(cert: &Path, key: &Path, wrap: &KeyWrap) -> Result<(), ServeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |path: &Path, reason: String| ServeError::Tls { path: path.to_path_buf(), reason };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let mut names = vec!["localhost".to_owned(), "facegate.local".to_owned()];
    if !host.is_empty() {
        names.push(host.clone());
        names.push(format!("{host}.local"));
    }
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| err(cert, e.to_string()))?;
    let key_pem = zeroize::Zeroizing::new(certified.signing_key.serialize_pem());
    keys::write_secret(key, wrap, key_pem.as_bytes()).map_err(|e| err(key, e.to_string()))?;
    // The certificate is public (0644).
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(cert, e.to_string()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(cert)
        .map_err(|e| err(cert, e.to_string()))?;
    file.write_all(certified.cert.pem().as_bytes()).map_err(|e| err(cert, e.to_string()))?;
    tracing::info!(cert = %cert.display(), "portal: made a self-signed certificate; install a LAN CA's if you have one");
    Ok(())
}
