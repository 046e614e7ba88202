//! `/`: the overview and the task list, and `/live`, its part the page swaps in.

use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::{
    PAGE_SIZE, Refusal, TaskRow, database_error, duration, non_empty, query_string, render, task_row,
};
use crate::db::dashboard::{Overview, TaskQuery};
use crate::db::queries::HOLD_ALL;
use crate::db::{DbError, TaskStatus};
use crate::server::AppState;
use crate::server::session::CurrentSession;

/// Query string of `/` and its live part.
#[derive(Deserialize, Default)]
pub struct DashboardQuery {
    status: Option<String>,
    repo: Option<String>,
    forge: Option<String>,
    q: Option<String>,
    before: Option<String>,
}

/// The figures and the table: the part of `/` that refreshes itself.
pub struct Live {
    pub queued: u64,
    /// Tasks waiting for an answer to the agent's question.
    pub needs_input: u64,
    pub running: Vec<(i64, String, String)>,
    pub max_concurrent: usize,
    pub done_today: i64,
    pub failed_today: i64,
    pub no_changes_today: i64,
    pub success_rate: String,
    pub median_to_pr: String,
    pub cost_today: String,
    pub cost_week: String,
    /// Pull requests of the last 7 days whose checks passed first time, after fix rounds,
    /// or not at all.
    pub checks_passed: i64,
    pub checks_fixed: i64,
    pub checks_failing: i64,
    /// Queues held by `forgehand hold`: what, and who held it.
    pub holds: Vec<(String, String)>,
    /// Notification sinks whose deliveries fail: name, retrying, given up, last error
    /// (masked when it was stored).
    pub failing_sinks: Vec<(String, i64, i64, String)>,
    pub rows: Vec<TaskRow>,
    pub next_page: Option<String>,
    pub filtered: bool,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    csrf: Option<String>,
    live: Live,
    live_url: Option<String>,
    statuses: Vec<&'static str>,
    forges: Vec<String>,
    status: String,
    repo: String,
    forge: String,
    q: String,
}

#[derive(Template)]
#[template(path = "dashboard_live.html")]
struct LivePart {
    live: Live,
}

struct Filters {
    status: Option<String>,
    repo: Option<String>,
    forge: Option<String>,
    q: Option<String>,
    before: Option<i64>,
}

fn filters(query: DashboardQuery) -> Result<(Filters, TaskQuery), Refusal> {
    let bad =
        |m: &str| Refusal { status: StatusCode::BAD_REQUEST, heading: "Bad filter", message: m.to_owned() };
    let status = non_empty(query.status);
    let parsed = match status.as_deref().map(str::parse::<TaskStatus>) {
        Some(Err(message)) => return Err(bad(&message)),
        Some(Ok(s)) => Some(s),
        None => None,
    };
    let before = match non_empty(query.before).map(|b| b.parse::<i64>()) {
        Some(Err(_)) => return Err(bad("`before` must be a task id (a whole number).")),
        Some(Ok(b)) => Some(b),
        None => None,
    };
    let f = Filters {
        status,
        repo: non_empty(query.repo),
        forge: non_empty(query.forge),
        q: non_empty(query.q),
        before,
    };
    let q = TaskQuery {
        status: parsed,
        repo: f.repo.clone(),
        forge: f.forge.clone(),
        text: f.q.clone(),
        before,
        limit: PAGE_SIZE,
    };
    Ok((f, q))
}

async fn live(state: &AppState, f: &Filters, query: &TaskQuery) -> Result<Live, DbError> {
    let now = Utc::now();
    let overview: Arc<Overview> = state.overview.get(&state.db).await?;
    let page = state.db.dashboard_tasks(query).await?;
    let holds = state.db.holds().await?;
    let failing_sinks = state
        .db
        .sink_health()
        .await?
        .into_iter()
        .map(|h| (h.sink, h.failing, h.given_up, h.last_error.unwrap_or_default()))
        .collect();
    let pairs = [("status", &f.status), ("repo", &f.repo), ("forge", &f.forge), ("q", &f.q)];
    let next_page = page.next_before.map(|b| format!("/?{}", query_string(&pairs, Some(b))));
    Ok(Live {
        queued: overview.queued,
        needs_input: overview.needs_input,
        running: overview
            .running
            .iter()
            .map(|t| (t.id, t.repo.clone(), t.started_at.map(|s| duration(now - s)).unwrap_or_default()))
            .collect(),
        max_concurrent: state.settings().executor.max_concurrent,
        done_today: overview.today.done,
        failed_today: overview.today.failed,
        no_changes_today: overview.today.no_changes,
        success_rate: overview
            .week
            .success_rate()
            .map(|r| format!("{:.0}%", r * 100.0))
            .unwrap_or("–".into()),
        median_to_pr: overview.median_to_pr.map(duration).unwrap_or("–".into()),
        cost_today: format!("${:.2}", overview.today.cost_usd),
        cost_week: format!("${:.2}", overview.week.cost_usd),
        checks_passed: overview.checks_week.passed,
        checks_fixed: overview.checks_week.fixed,
        checks_failing: overview.checks_week.failing,
        holds: holds
            .into_iter()
            .map(|(scope, by)| (if scope == HOLD_ALL { "the whole queue".to_owned() } else { scope }, by))
            .collect(),
        failing_sinks,
        rows: page.rows.iter().map(|t| task_row(state, t, now)).collect(),
        next_page,
        filtered: f.status.is_some() || f.repo.is_some() || f.forge.is_some() || f.q.is_some(),
    })
}

/// `GET /`.
pub async fn dashboard(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Query(query): Query<DashboardQuery>,
) -> Response {
    let (f, query) = match filters(query) {
        Ok(parsed) => parsed,
        Err(refused) => return refused.into_response(),
    };
    let live = match live(&state, &f, &query).await {
        Ok(live) => live,
        Err(err) => return database_error(err),
    };
    let pairs = [("status", &f.status), ("repo", &f.repo), ("forge", &f.forge), ("q", &f.q)];
    // Only the first page updates itself: a later page would shift under the reader.
    let live_url = f.before.is_none().then(|| format!("/live?{}", query_string(&pairs, None)));
    let page = DashboardPage {
        csrf: Some(session.csrf),
        live,
        live_url,
        statuses: TaskStatus::ALL.iter().map(|s| s.as_str()).collect(),
        forges: state.settings().forges.iter().map(|f| f.name.clone()).collect(),
        status: f.status.unwrap_or_default(),
        repo: f.repo.unwrap_or_default(),
        forge: f.forge.unwrap_or_default(),
        q: f.q.unwrap_or_default(),
    };
    render(StatusCode::OK, &page)
}

/// `GET /live`: the figures and table of `/`, for the page to swap in.
pub async fn dashboard_live(State(state): State<AppState>, Query(query): Query<DashboardQuery>) -> Response {
    let (f, query) = match filters(query) {
        Ok(parsed) => parsed,
        Err(refused) => return refused.into_response(),
    };
    match live(&state, &f, &query).await {
        Ok(live) => {
            let mut response = render(StatusCode::OK, &LivePart { live });
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(err) => database_error(err),
    }
}
