//! The HTTP edge: routes, shared state, and the small handlers that need no module of
//! their own.

pub mod api;
pub mod auth;
pub mod webhook;

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
    pub settings: Settings,
    pub db: Db,
    pub admin_token: auth::AdminToken,
    /// Wakes the executor when intake queues a task.
    pub wake: Arc<tokio::sync::Notify>,
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
        AppState(Arc::new(Inner { settings, db, admin_token, wake }))
    }
}

/// Every route forgehand serves.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/tasks", get(api::list_tasks))
        .route("/api/tasks/{id}", get(api::get_task))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_admin));
    Router::new()
        .route("/webhooks/{forge}", post(webhook::receive))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(api)
        .fallback(not_found)
        .with_state(state)
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
