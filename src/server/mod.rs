//! The HTTP edge: routes, shared state, and the small handlers that need no module of
//! their own.

pub mod api;
pub mod attempts;
pub mod auth;
pub mod client;
pub mod edge;
pub mod identity;
pub mod metrics;
pub mod pages;
pub mod refusals;
pub mod session;
pub mod test_delivery;
pub mod transcript;
pub mod webhook;
pub mod wizard;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::config::Settings;
use crate::db::Db;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The contents of [`AppState`].
pub struct Inner {
    /// The settings in force; the setup wizard replaces them (see [`AppState::settings`]).
    current_settings: tokio::sync::watch::Sender<Arc<Settings>>,
    pub db: Db,
    pub admin_token: auth::AdminToken,
    /// Wakes the executor when intake queues a task.
    pub wake: Arc<tokio::sync::Notify>,
    /// Dashboard sessions.
    pub sessions: session::Sessions,
    /// Wrong admin tokens per client, however presented.
    pub attempts: attempts::Attempts,
    /// The last proxy seen forwarding without being trusted.
    pub forwarding: client::Forwarding,
    /// Connections that may be reading a form body at once.
    pub form_readers: edge::FormReaders,
    /// The setup wizard's unsaved answers, per session.
    pub drafts: wizard::Drafts,
    /// Webhook timing and answers, for `/metrics`.
    pub intake: metrics::IntakeMetrics,
    /// The dashboard's figures, shared by the page loads of one second.
    pub overview: crate::db::dashboard::OverviewCache,
    /// Whom each forge's token belongs to, for forges without `bot_login`.
    pub identities: Arc<identity::Identities>,
    /// Refused deliveries on their way to the database.
    pub refusals: refusals::Refusals,
    /// The cleanup's counters and the last measurement of `data_dir` (`/metrics`, `/setup`).
    pub cleanup: Arc<crate::executor::cleanup::CleanupState>,
    /// The address the server listens on, once bound (the setup page's test delivery
    /// goes there).
    pub local_addr: std::sync::OnceLock<std::net::SocketAddr>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Wraps the shared state.
    pub fn new(settings: Settings, db: Db, admin_token: auth::AdminToken) -> AppState {
        let wake = Arc::new(tokio::sync::Notify::new());
        let form_readers = edge::FormReaders::new(settings.server.max_connections);
        let (current_settings, _) = tokio::sync::watch::channel(Arc::new(settings));
        AppState(Arc::new(Inner {
            current_settings,
            refusals: refusals::Refusals::start(db.clone()),
            db,
            admin_token,
            wake,
            sessions: Default::default(),
            attempts: Default::default(),
            forwarding: Default::default(),
            form_readers,
            drafts: Default::default(),
            intake: Default::default(),
            overview: Default::default(),
            identities: Default::default(),
            cleanup: Default::default(),
            local_addr: Default::default(),
        }))
    }

    /// The settings in force now. Read them once per request or task step and keep the
    /// `Arc`: a reload swaps in new settings without changing the ones in hand.
    pub fn settings(&self) -> Arc<Settings> {
        self.current_settings.borrow().clone()
    }

    /// Replaces the settings in force: the next request, and the executor's next claim,
    /// use the new ones. Queued and running tasks are not touched.
    pub fn replace_settings(&self, settings: Settings) {
        self.current_settings.send_replace(Arc::new(settings));
    }

    /// Notified on every [`AppState::replace_settings`].
    pub fn watch_settings(&self) -> tokio::sync::watch::Receiver<Arc<Settings>> {
        self.current_settings.subscribe()
    }
}

/// Every route forgehand serves.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/tasks", get(api::list_tasks))
        .route("/api/tasks/{id}", get(api::get_task))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_admin));
    Router::new()
        .route(
            "/webhooks/{forge}",
            post(webhook::receive)
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track_intake)),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/readyz", get(readyz))
        .merge(api)
        .merge(dashboard(state.clone()))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge::guard))
        .layer(axum::middleware::from_fn(session::security_headers))
        .with_state(state)
}

/// The pages: login and static files for anyone, the rest for a session.
fn dashboard(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(pages::dashboard))
        .route("/live", get(pages::dashboard_live))
        .route("/tasks/{id}", get(pages::task_page))
        .route("/tasks/{id}/stream", get(pages::task_stream))
        .route("/tasks/{id}/cancel", post(pages::cancel))
        .route("/tasks/{id}/retry", post(pages::retry))
        .route("/queue/hold", post(pages::hold_queue))
        .route("/queue/release", post(pages::release_queue))
        .route("/deliveries", get(pages::deliveries_page))
        .route("/audit", get(pages::audit_page))
        .route("/setup", get(pages::setup_page))
        .route("/setup/check", post(pages::setup_check))
        .route("/setup/test-delivery", post(pages::setup_test_delivery))
        .route("/setup/wizard", get(wizard::start))
        .route("/setup/wizard/{step}", get(wizard::show).post(wizard::submit))
        .route_layer(axum::middleware::from_fn_with_state(state, session::require_session));
    Router::new()
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/static/app.css", get(pages::style))
        .route("/static/app.js", get(pages::script))
        .route("/favicon.ico", get(pages::favicon))
        .merge(pages)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    match state.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
        }
    }
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({ "error": "no such endpoint" })))
}

/// Records an operator action in the audit log. A failure is logged, not shown: the
/// action itself already happened.
pub async fn audit(state: &AppState, actor: &str, action: &str, target: &str, detail: &str, peer: &str) {
    let entry = crate::db::audit::NewAuditEntry { actor, action, target, detail, peer };
    if let Err(err) = state.db.audit(entry).await {
        tracing::error!(error = %err, action, "cannot append to the audit log");
    }
}
