//! The server-rendered dashboard: overview and task list, task page with its live
//! transcript, deliveries, setup status, and the static CSS and JS they use. Every page
//! needs a session (see [`super::session`]); every text is escaped by the templates.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::AppState;
use super::session::{CurrentSession, check_csrf};
use super::transcript::{self, Entry, Kind};
use crate::config::ForgeSettings;
use crate::db::TaskStatus;
use crate::db::dashboard::{DeliveryQuery, Overview, RETRYABLE, Retried, TaskQuery};
use crate::db::entities::{deliveries, task_events, tasks};

const PAGE_SIZE: u64 = 50;
const STYLE: &str = include_str!("../../static/app.css");
const SCRIPT: &str = include_str!("../../static/app.js");

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

fn database_error(err: sea_orm::DbErr) -> Response {
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

// ---------------------------------------------------------------- static files

/// A short digest of the static files, so that their URLs change when they do.
pub fn asset_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{STYLE}{SCRIPT}").as_bytes());
        hex::encode(&digest[..6])
    })
}

/// `GET /static/app.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /static/app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        // URLs carry the version: a changed file gets a new URL.
        (header::CACHE_CONTROL, "public, max-age=604800, immutable"),
    ];
    (headers, body).into_response()
}

// ---------------------------------------------------------------- view helpers

/// A task as a table row shows it.
pub struct TaskRow {
    pub id: i64,
    pub status: String,
    pub title: String,
    pub forge: String,
    pub repo: String,
    pub number: i64,
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
        status: task.status.clone(),
        title: task.title.clone(),
        forge: task.forge.clone(),
        repo: task.repo.clone(),
        number: task.number,
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
    Some(format!("{base}/{}/issues/{}", task.repo, task.number))
}

/// `url` when it is an http(s) address: nothing else becomes a link.
fn web_url(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")).then(|| url.to_owned())
}

fn task_duration(task: &tasks::Model, now: DateTime<Utc>) -> String {
    match (task.started_at, task.finished_at) {
        (Some(start), Some(end)) if task.status != "running" => duration(end - start),
        (Some(start), _) if task.status == "running" => format!("{} so far", duration(now - start)),
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

// ---------------------------------------------------------------- dashboard

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
    pub running: Vec<(i64, String, String)>,
    pub max_concurrent: usize,
    pub done_today: i64,
    pub failed_today: i64,
    pub no_changes_today: i64,
    pub success_rate: String,
    pub median_to_pr: String,
    pub cost_today: String,
    pub cost_week: String,
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

async fn live(state: &AppState, f: &Filters, query: &TaskQuery) -> Result<Live, sea_orm::DbErr> {
    let now = Utc::now();
    let overview: Arc<Overview> = state.overview.get(&state.db).await?;
    let page = state.db.dashboard_tasks(query).await?;
    let pairs = [("status", &f.status), ("repo", &f.repo), ("forge", &f.forge), ("q", &f.q)];
    let next_page = page.next_before.map(|b| format!("/?{}", query_string(&pairs, Some(b))));
    Ok(Live {
        queued: overview.queued,
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

// ---------------------------------------------------------------- task page

/// A task as its page shows it.
pub struct TaskView {
    pub row: TaskRow,
    pub kind: String,
    pub branch: Option<String>,
    pub attempt: i32,
    pub turns: Option<i32>,
    pub created: String,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub error: Option<String>,
    pub wait_reason: Option<String>,
    pub result_text: Option<String>,
    pub cancel_requested: bool,
    pub can_cancel: bool,
    pub can_retry: bool,
}

/// One line of the timeline.
pub struct EventRow {
    pub at: String,
    pub status: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    csrf: Option<String>,
    task: TaskView,
    events: Vec<EventRow>,
    deliveries: Vec<DeliveryRow>,
    entries: Vec<Entry>,
    truncated: bool,
    /// How much of the transcript comes before the lines shown, e.g. `6.5 MB`.
    left_out: String,
    shown_lines: usize,
    stream_url: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "entries.html")]
struct EntriesPart {
    entries: Vec<Entry>,
}

/// Query string of `/tasks/{id}`.
#[derive(Deserialize, Default)]
pub struct TaskQueryString {
    done: Option<String>,
}

fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "cancelled" => "The task is cancelled.",
        "cancel_requested" => "Cancel requested: the agent stops within a few seconds.",
        "retried" => "Queued as a new task.",
        "active" => "Another task for this issue is already queued or running: it was left as is.",
        "ended" => "The task had already ended: nothing to cancel.",
        _ => return None,
    })
}

fn task_id(raw: &str) -> Result<i64, Refusal> {
    raw.parse::<i64>().map_err(|_| Refusal {
        status: StatusCode::NOT_FOUND,
        heading: "No such task",
        message: format!("{:?} is not a task number.", raw.chars().take(40).collect::<String>()),
    })
}

fn no_such_task(id: i64) -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "No such task",
        &format!("There is no task {id}. It may never have existed."),
    )
}

/// `GET /tasks/{id}`.
pub async fn task_page(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Path(raw): Path<String>,
    Query(query): Query<TaskQueryString>,
) -> Response {
    let id = match task_id(&raw) {
        Ok(id) => id,
        Err(refused) => return refused.into_response(),
    };
    let (task, events) = match state.db.task(id).await {
        Ok(Some(found)) => found,
        Ok(None) => return no_such_task(id),
        Err(err) => return database_error(err),
    };
    let deliveries = match state.db.deliveries_of_task(id).await {
        Ok(rows) => rows,
        Err(err) => return database_error(err),
    };
    // From the database, so that any instance shows what any executor ran.
    let tail = state.db.transcript_tail(id, transcript::MAX_LINES, transcript::MAX_BYTES).await;
    let (chunk, left_out) = match tail {
        Ok((bytes, start)) => (transcript::chunk_of(&bytes, start, None), start),
        Err(err) => {
            tracing::warn!(task = id, error = %err, "cannot read the transcript");
            (transcript::Chunk::default(), 0)
        }
    };
    let active = TaskStatus::ACTIVE.iter().any(|s| s.as_str() == task.status);
    let page = TaskPage {
        csrf: Some(session.csrf),
        task: task_view(&state, &task),
        events: events.iter().map(event_row).collect(),
        deliveries: deliveries.iter().map(delivery_row).collect(),
        entries: chunk.entries,
        truncated: chunk.truncated,
        left_out: transcript::size(left_out),
        shown_lines: chunk.lines,
        stream_url: active
            .then(|| format!("/tasks/{id}/stream?from={}&status={}", chunk.offset, task.status)),
        notice: notice(query.done.as_deref()),
    };
    render(StatusCode::OK, &page)
}

fn task_view(state: &AppState, task: &tasks::Model) -> TaskView {
    let now = Utc::now();
    TaskView {
        row: task_row(state, task, now),
        kind: task.kind.clone(),
        branch: task.branch.clone(),
        attempt: task.attempt,
        turns: task.turns,
        created: time(task.created_at),
        started: task.started_at.map(time),
        finished: task.finished_at.map(time),
        error: task.error.clone(),
        wait_reason: task.wait_reason.clone(),
        result_text: task.result_text.clone(),
        cancel_requested: task.cancel_requested,
        can_cancel: TaskStatus::ACTIVE.iter().any(|s| s.as_str() == task.status) && !task.cancel_requested,
        can_retry: RETRYABLE.iter().any(|s| s.as_str() == task.status),
    }
}

fn event_row(event: &task_events::Model) -> EventRow {
    EventRow { at: time(event.at), status: event.status.clone(), message: event.message.clone() }
}

/// Query string of the transcript stream.
#[derive(Deserialize)]
pub struct StreamQuery {
    #[serde(default)]
    from: u64,
    #[serde(default)]
    status: String,
}

struct Tail {
    state: AppState,
    id: i64,
    offset: u64,
    status: String,
    ended: bool,
    first: bool,
}

/// `GET /tasks/{id}/stream`: server-sent events with the transcript entries written after
/// `from` (`entries`, HTML) and the task's status when it changes (`status`).
pub async fn task_stream(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(query): Query<StreamQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    // A reconnecting EventSource says how far it got: resume there, not at `from`.
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let offset = resume.unwrap_or(query.from);
    let tail = Tail { state, id, offset, status: query.status, ended: false, first: true };
    let stream = futures_util::stream::unfold(tail, |mut tail| async move {
        let event = next_event(&mut tail).await?;
        Some((Ok::<_, Infallible>(event), tail))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

async fn next_event(tail: &mut Tail) -> Option<Event> {
    loop {
        if tail.ended {
            return None;
        }
        if !tail.first {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tail.first = false;
        let from = tail.offset;
        let (bytes, start) =
            tail.state.db.transcript_bytes(tail.id, from, transcript::MAX_BYTES).await.ok()?;
        let chunk = transcript::chunk_of(&bytes, start, Some(from));
        tail.offset = chunk.offset;
        if !chunk.entries.is_empty() {
            let html = EntriesPart { entries: chunk.entries }.render().ok()?;
            let event = Event::default().event("entries").id(tail.offset.to_string());
            return Some(event.data(html));
        }
        let status = tail.state.db.task(tail.id).await.ok()??.0.status;
        if status != tail.status {
            tail.ended = !TaskStatus::ACTIVE.iter().any(|s| s.as_str() == status);
            tail.status.clone_from(&status);
            return Some(Event::default().event("status").data(status));
        }
    }
}

/// `POST /tasks/{id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = check_csrf(&session, &form.csrf) {
        return refused.into_response();
    }
    let cancelled = state.db.cancel_from_dashboard(id, "cancelled from the dashboard").await;
    state.overview.invalidate().await;
    match cancelled {
        Ok(None) => no_such_task(id),
        Ok(Some(TaskStatus::Cancelled)) => {
            Redirect::to(&format!("/tasks/{id}?done=cancelled")).into_response()
        }
        Ok(Some(TaskStatus::Running)) => {
            Redirect::to(&format!("/tasks/{id}?done=cancel_requested")).into_response()
        }
        Ok(Some(_)) => Redirect::to(&format!("/tasks/{id}?done=ended")).into_response(),
        Err(err) => database_error(err),
    }
}

/// `POST /tasks/{id}/retry`.
pub async fn retry(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = check_csrf(&session, &form.csrf) {
        return refused.into_response();
    }
    let retried = state.db.retry_task(id, "an admin").await;
    state.overview.invalidate().await;
    match retried {
        Ok(Retried::Queued(new_id)) => {
            state.wake.notify_one();
            Redirect::to(&format!("/tasks/{new_id}?done=retried")).into_response()
        }
        Ok(Retried::AlreadyActive(Some(active))) => {
            Redirect::to(&format!("/tasks/{active}?done=active")).into_response()
        }
        Ok(Retried::AlreadyActive(None)) => Redirect::to(&format!("/tasks/{id}?done=active")).into_response(),
        Ok(Retried::NotRetryable(status)) => error_page(
            StatusCode::CONFLICT,
            "Cannot retry",
            &format!(
                "Task {id} is {status}; only failed, cancelled, no_changes and rejected tasks can be retried."
            ),
        ),
        Ok(Retried::NotFound) => no_such_task(id),
        Err(err) => database_error(err),
    }
}

// ---------------------------------------------------------------- deliveries

/// A delivery as a table row shows it.
pub struct DeliveryRow {
    pub id: i64,
    pub received: String,
    pub forge: String,
    pub event: String,
    pub repo: String,
    pub number: Option<i64>,
    pub sender: String,
    pub outcome: String,
    pub reason: String,
    pub task_id: Option<i64>,
}

fn delivery_row(d: &deliveries::Model) -> DeliveryRow {
    let event = match &d.action {
        Some(action) => format!("{} / {action}", d.event),
        None => d.event.clone(),
    };
    DeliveryRow {
        id: d.id,
        received: time(d.received_at),
        forge: d.forge.clone(),
        event,
        repo: d.repo.clone().unwrap_or_default(),
        number: d.number,
        sender: d.sender.clone().unwrap_or_default(),
        outcome: d.outcome.clone(),
        reason: d.reason.clone(),
        task_id: d.task_id,
    }
}

/// Query string of `/deliveries`.
#[derive(Deserialize)]
pub struct DeliveriesQuery {
    outcome: Option<String>,
    forge: Option<String>,
    before: Option<String>,
}

#[derive(Template)]
#[template(path = "deliveries.html")]
struct DeliveriesPage {
    csrf: Option<String>,
    rows: Vec<DeliveryRow>,
    outcomes: Vec<&'static str>,
    forges: Vec<String>,
    outcome: String,
    forge: String,
    next_page: Option<String>,
}

const OUTCOMES: [&str; 5] = ["task_created", "ignored", "coalesced", "cancelled_task", "pending"];

/// `GET /deliveries`.
pub async fn deliveries_page(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Query(query): Query<DeliveriesQuery>,
) -> Response {
    let outcome = non_empty(query.outcome);
    let forge = non_empty(query.forge);
    let before = match non_empty(query.before).map(|b| b.parse::<i64>()) {
        Some(Err(_)) => {
            return error_page(StatusCode::BAD_REQUEST, "Bad filter", "`before` must be a delivery id.");
        }
        Some(Ok(b)) => Some(b),
        None => None,
    };
    let filter = DeliveryQuery { outcome: outcome.clone(), forge: forge.clone(), before, limit: PAGE_SIZE };
    let page = match state.db.dashboard_deliveries(&filter).await {
        Ok(page) => page,
        Err(err) => return database_error(err),
    };
    let pairs = [("outcome", &outcome), ("forge", &forge)];
    let next_page = page.next_before.map(|b| format!("/deliveries?{}", query_string(&pairs, Some(b))));
    let page = DeliveriesPage {
        csrf: Some(session.csrf),
        rows: page.rows.iter().map(delivery_row).collect(),
        outcomes: OUTCOMES.to_vec(),
        forges: state.settings().forges.iter().map(|f| f.name.clone()).collect(),
        outcome: outcome.unwrap_or_default(),
        forge: forge.unwrap_or_default(),
        next_page,
    };
    render(StatusCode::OK, &page)
}

// ---------------------------------------------------------------- setup status

/// What a forge needs on its side, for the setup page.
pub struct ForgeSetup {
    pub name: String,
    pub kind: &'static str,
    pub api_url: String,
    pub webhook_url: String,
    pub events: String,
    pub secret_set: bool,
    pub token_set: bool,
}

/// What testing a forge's token found.
pub struct TokenCheck {
    pub forge: String,
    pub ok: bool,
    pub lines: Vec<String>,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    csrf: Option<String>,
    check: Option<TokenCheck>,
    forges: Vec<ForgeSetup>,
    label: String,
    command: String,
    agent: String,
    max_concurrent: usize,
    timeout: String,
}

fn forge_setup(public_url: &str, forge: &ForgeSettings) -> ForgeSetup {
    use secrecy::ExposeSecret;
    let dialect = crate::forge::dialect(forge.kind);
    let (kind, events) = (dialect.name, dialect.setup.events_line());
    ForgeSetup {
        name: forge.name.clone(),
        kind,
        api_url: forge.api_url.clone(),
        webhook_url: format!("{}/webhooks/{}", public_url.trim_end_matches('/'), forge.name),
        events,
        secret_set: !forge.webhook_secret.is_empty(),
        token_set: !forge.token.expose_secret().is_empty(),
    }
}

/// `GET /setup`: what each forge needs, from the running configuration; no secret shown.
pub async fn setup_page(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
) -> Response {
    setup_with(&state, session, None)
}

/// The token test form.
#[derive(Deserialize)]
pub struct CheckForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    forge: String,
    #[serde(default)]
    repo: String,
}

/// `POST /setup/check`: tries the forge's token live: who it authenticates as, and its
/// permission on a repository the person names.
pub async fn setup_check(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Form(form): Form<CheckForm>,
) -> Response {
    if let Err(refused) = check_csrf(&session, &form.csrf) {
        return refused.into_response();
    }
    let settings = state.settings();
    let Some(forge) = settings.forges.iter().find(|f| f.name == form.forge) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Unknown forge",
            "Pick a forge listed on the setup page.",
        );
    };
    let repo = Some(form.repo.trim()).filter(|r| !r.is_empty());
    let check = match crate::setup::check_token(forge, repo).await {
        Ok(report) => TokenCheck { forge: forge.name.clone(), ok: true, lines: report.lines() },
        Err(message) => TokenCheck { forge: forge.name.clone(), ok: false, lines: vec![message] },
    };
    setup_with(&state, session, Some(check))
}

fn setup_with(state: &AppState, session: CurrentSession, check: Option<TokenCheck>) -> Response {
    let settings = state.settings();
    let page = SetupPage {
        csrf: Some(session.csrf),
        check,
        forges: settings.forges.iter().map(|f| forge_setup(&settings.server.public_url, f)).collect(),
        label: settings.trigger.label.clone(),
        command: settings.trigger.command.clone(),
        agent: settings.agent.command.clone(),
        max_concurrent: settings.executor.max_concurrent,
        timeout: duration(chrono::Duration::seconds(settings.executor.timeout_secs as i64)),
    };
    render(StatusCode::OK, &page)
}
