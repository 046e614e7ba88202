//! The JSON API: tasks, newest first, for scripts and the dashboard.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::db::{TaskFilter, TaskStatus};

const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 500;

/// Query string of `GET /api/tasks`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    repo: Option<String>,
    forge: Option<String>,
    /// Return tasks with an id below this one: pass the previous page's `next_before`.
    before: Option<i64>,
    limit: Option<u64>,
}

/// `GET /api/tasks`.
pub async fn list_tasks(State(state): State<AppState>, Query(query): Query<ListQuery>) -> Response {
    let status = match query.status.as_deref().filter(|s| !s.is_empty()).map(str::parse::<TaskStatus>) {
        Some(Err(message)) => return error(StatusCode::BAD_REQUEST, &message),
        Some(Ok(status)) => Some(status),
        None => None,
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let filter = TaskFilter {
        status,
        repo: query.repo.filter(|r| !r.is_empty()),
        forge: query.forge.filter(|f| !f.is_empty()),
        before: query.before,
        limit,
    };
    match state.db.list_tasks(&filter).await {
        Ok(tasks) => {
            let next_before = (tasks.len() as u64 == limit).then(|| tasks.last().map(|t| t.id)).flatten();
            Json(json!({ "tasks": tasks, "next_before": next_before })).into_response()
        }
        Err(err) => database_error(err),
    }
}

/// `GET /api/tasks/{id}`: the task, its timeline, its steps (setup, agent runs, checks)
/// and the deliveries behind it.
pub async fn get_task(State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    let (task, events) = match state.db.task(id).await {
        Ok(Some(found)) => found,
        Ok(None) => return error(StatusCode::NOT_FOUND, &format!("no task {id}")),
        Err(err) => return database_error(err),
    };
    let steps = match state.db.task_steps(id).await {
        Ok(steps) => steps,
        Err(err) => return database_error(err),
    };
    match state.db.deliveries_of_task(id).await {
        Ok(deliveries) => {
            Json(json!({ "task": task, "events": events, "steps": steps, "deliveries": deliveries }))
                .into_response()
        }
        Err(err) => database_error(err),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn database_error(err: crate::db::DbError) -> Response {
    tracing::error!(error = %err, "API query failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "the database did not answer; try again")
}
