//! The server-rendered dashboard, one file per page: overview and task list
//! ([`dashboard`]), task page with its live transcript ([`task`]), deliveries
//! ([`deliveries`]), setup status ([`setup`]), and the static CSS and JS they use
//! ([`assets`]). This file holds what they share: rendering, error pages and the view
//! helpers. Every page needs a session (see [`super::session`]); every text is escaped by
//! the templates.

mod assets;
mod audit;
mod dashboard;
mod deliveries;
mod holds;
mod setup;
mod task;

pub use assets::{asset_version, favicon, script, style};
pub use audit::audit_page;
pub use dashboard::{dashboard, dashboard_live};
pub use deliveries::{DeliveryRow, deliveries_page};
pub use holds::{hold_queue, release_queue};
pub use setup::{setup_check, setup_page, setup_test_delivery};
pub use task::{cancel, retry, task_page, task_stream};

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::AppState;
use crate::db::entities::tasks;
use crate::db::{DbError, TaskStatus};
use crate::forge::IssueNumber;

const PAGE_SIZE: u64 = 50;

/// A form whose only field is the CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// Renders a template as an HTML response.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered\n").into_response()
        }
    }
}

/// A friendly error page.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub csrf: Option<String>,
    pub status: u16,
    pub heading: String,
    pub message: String,
}

/// An error page with `status`.
pub fn error_page(status: StatusCode, heading: &str, message: &str) -> Response {
    let page = ErrorPage {
        csrf: None,
        status: status.as_u16(),
        heading: heading.to_owned(),
        message: message.to_owned(),
    };
    render(status, &page)
}

/// A page refusing a request, small enough to return in a `Result`.
pub struct Refusal {
    pub status: StatusCode,
    pub heading: &'static str,
    pub message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error_page(self.status, self.heading, &self.message)
    }
}

pub(super) fn database_error(err: DbError) -> Response {
    tracing::error!(error = %err, "dashboard query failed");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Database unavailable",
        "The database did not answer. Try again in a moment.",
    )
}

/// Unknown paths outside the API.
pub async fn not_found_page() -> Response {
    error_page(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.")
}

/// A task as a table row shows it.
pub struct TaskRow {
    pub id: i64,
    pub status: TaskStatus,
    pub title: String,
    pub forge: String,
    pub repo: String,
    pub number: IssueNumber,
    pub issue_url: Option<String>,
    pub pr_url: Option<String>,
    pub trigger: String,
    pub who: String,
    pub age: String,
    pub duration: String,
    pub cost: String,
}

fn task_row(state: &AppState, task: &tasks::Model, now: DateTime<Utc>) -> TaskRow {
    TaskRow {
        id: task.id,
        status: task.status,
        title: task.title.clone(),
        forge: task.forge.clone(),
        repo: task.repo.clone(),
        number: task.issue_number(),
        issue_url: issue_url(state, task),
        pr_url: task.pr_url.as_deref().and_then(web_url),
        trigger: task.trigger.clone(),
        who: task.requested_by.clone(),
        age: ago(now - task.created_at),
        duration: task_duration(task, now),
        cost: cost(task.cost_usd),
    }
}

/// The issue's web page: github.com for the public GitHub API, else the clone URL's host.
fn issue_url(state: &AppState, task: &tasks::Model) -> Option<String> {
    let settings = state.settings();
    let forge = settings.forges.iter().find(|f| f.name == task.forge);
    let hosted = forge.and_then(|f| crate::forge::dialect(f.kind).hosted_web(&f.api_url));
    let base = match hosted {
        Some(web) => web.to_owned(),
        None => {
            let url = web_url(&task.clone_url)?;
            let (scheme, rest) = url.split_once("://")?;
            let host = rest.split('/').next()?.rsplit('@').next()?;
            format!("{scheme}://{host}")
        }
    };
    Some(format!("{base}/{}/issues/{}", task.repo, task.issue_number()))
}

/// `url` when it is an http(s) address: nothing else becomes a link.
fn web_url(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")).then(|| url.to_owned())
}

fn task_duration(task: &tasks::Model, now: DateTime<Utc>) -> String {
    match (task.started_at, task.finished_at) {
        (Some(start), Some(end)) if task.status != TaskStatus::Running => duration(end - start),
        (Some(start), _) if task.status == TaskStatus::Running => format!("{} so far", duration(now - start)),
        _ => String::new(),
    }
}

/// `3d 4h`, `1h 05m`, `2m 03s`, `7s`.
pub fn duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

fn ago(d: chrono::Duration) -> String {
    format!("{} ago", duration(d).split(' ').next().unwrap_or_default())
}

fn cost(c: Option<f64>) -> String {
    c.map(|c| format!("${c:.2}")).unwrap_or_default()
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn query_string(pairs: &[(&str, &Option<String>)], before: Option<i64>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        if let Some(value) = value {
            query.append_pair(key, value);
        }
    }
    if let Some(before) = before {
        query.append_pair("before", &before.to_string());
    }
    query.finish()
}
