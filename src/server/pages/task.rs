//! `/tasks/{id}`: one task with its timeline, deliveries and live transcript; cancel and
//! retry.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::Utc;
use serde::Deserialize;

use super::deliveries::{DeliveryRow, delivery_row};
use super::{CsrfForm, Refusal, TaskRow, database_error, error_page, render, task_row, time};
use crate::db::dashboard::{RETRYABLE, Retried};
use crate::db::entities::{breakers, task_events, task_steps, tasks};
use crate::db::queries::HOLD_ALL;
use crate::db::{StepPhase, TaskStatus};
use crate::server::AppState;
use crate::server::session::{CurrentSession, check_csrf};
use crate::server::transcript::{self, Entry, Kind};

/// A task as its page shows it.
pub struct TaskView {
    pub row: TaskRow,
    pub kind: String,
    pub branch: Option<String>,
    pub attempt: i32,
    pub turns: Option<i32>,
    /// The agent profile and model the task ran with, e.g. `opus (claude-opus-4-1)`.
    pub agent: Option<String>,
    pub created: String,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub error: Option<String>,
    /// The agent's question, and the link to it on the issue.
    pub question: Option<String>,
    pub question_url: Option<String>,
    pub wait_reason: Option<String>,
    pub result_text: Option<String>,
    pub cancel_requested: bool,
    pub can_cancel: bool,
    pub can_retry: bool,
}

/// One setup or check command, or one agent run, as the page's "Phases" list shows it.
pub struct StepRow {
    pub attempt: i32,
    /// `setup`, `agent`, `fix round 1`, `checks`, `checks after fix round 1`.
    pub phase: String,
    pub command: Option<String>,
    pub passed: bool,
    pub outcome: String,
    pub duration: String,
    pub output: Option<String>,
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
    steps: Vec<StepRow>,
    /// The steps come from more than one attempt: each says which.
    several_attempts: bool,
    deliveries: Vec<DeliveryRow>,
    entries: Vec<Entry>,
    truncated: bool,
    /// How much of the transcript comes before the lines shown, e.g. `6.5 MB`.
    left_out: String,
    shown_lines: usize,
    stream_url: Option<String>,
    notice: Option<&'static str>,
    /// When the cleanup removed the timeline, steps and transcript (`[storage]`).
    detail_removed: Option<String>,
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
    // Held queues are said on the page of every task they keep waiting.
    let (holds, breakers) = if task.status == TaskStatus::Queued {
        (state.db.holds().await.unwrap_or_default(), state.db.breakers().await.unwrap_or_default())
    } else {
        (Vec::new(), Vec::new())
    };
    let steps = match state.db.task_steps(id).await {
        Ok(rows) => rows,
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
    let active = task.status.is_active();
    let page = TaskPage {
        csrf: Some(session.csrf),
        task: task_view(&state, &task, &holds, &breakers),
        events: events.iter().map(event_row).collect(),
        several_attempts: steps.iter().any(|step| step.attempt != steps[0].attempt),
        steps: steps.iter().map(step_row).collect(),
        deliveries: deliveries.iter().map(delivery_row).collect(),
        entries: chunk.entries,
        truncated: chunk.truncated,
        left_out: transcript::size(left_out),
        shown_lines: chunk.lines,
        stream_url: active
            .then(|| format!("/tasks/{id}/stream?from={}&status={}", chunk.offset, task.status)),
        notice: notice(query.done.as_deref()),
        detail_removed: task.detail_removed_at.map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string()),
    };
    render(StatusCode::OK, &page)
}

/// Why a queued task waits, when it runs next and how many attempts it has left — said
/// once, in place of the error it repeats.
fn waiting(task: &tasks::Model, max_attempts: u32, now: chrono::DateTime<Utc>) -> Option<String> {
    let reason = task.wait_reason.as_deref().filter(|_| task.status == TaskStatus::Queued.as_str())?;
    let next = match task.next_attempt_at {
        Some(at) if at > now => {
            format!("next attempt at {} (in {})", time(at), super::duration(at - now))
        }
        _ => "next attempt as soon as an agent is free".to_owned(),
    };
    let left = max_attempts.saturating_sub(task.attempt.max(0) as u32);
    let attempts = if left == 1 { "attempt" } else { "attempts" };
    Some(format!("{reason}. {next}; {left} {attempts} left of {max_attempts}."))
}

/// Why a queued task waits for a hold (`forgehand hold`), if one holds its repository.
fn held(task: &tasks::Model, holds: &[(String, String)]) -> Option<String> {
    let (scope, by) =
        holds.iter().find(|(scope, _)| scope == HOLD_ALL || scope.eq_ignore_ascii_case(&task.repo))?;
    let (what, release) = if scope == HOLD_ALL {
        ("the whole queue".to_owned(), "forgehand release".to_owned())
    } else {
        (format!("the queue of {scope}"), format!("forgehand release {scope}"))
    };
    Some(format!("{what} is held (by {by}); it runs after `{release}`"))
}

/// Why a queued task waits for circuit breakers: its profile's is open and no fallback's
/// lets it through.
fn broken(state: &AppState, task: &tasks::Model, breakers: &[breakers::Model]) -> Option<String> {
    let blocking: Vec<&str> =
        breakers.iter().filter(|b| crate::db::breakers::blocks(b)).map(|b| b.profile.as_str()).collect();
    let profile = task.agent_profile.as_deref().unwrap_or(crate::config::DEFAULT_PROFILE);
    let settings = state.settings();
    let fallback_of = |name: &str| settings.profile(name).and_then(|p| p.fallback);
    if !blocking.contains(&profile) || crate::db::breakers::route(profile, fallback_of, &blocking).is_some() {
        return None;
    }
    let breaker = breakers.iter().find(|b| b.profile == profile)?;
    let line = super::dashboard::breaker_line(&settings, breaker, &blocking, Utc::now())?;
    Some(format!(
        "{}; it runs when the breaker lets a trial task through (after breaker.cooldown_secs)",
        line.trim_end_matches('.')
    ))
}

fn task_view(
    state: &AppState,
    task: &tasks::Model,
    holds: &[(String, String)],
    breakers: &[breakers::Model],
) -> TaskView {
    let now = Utc::now();
    let wait_reason = held(task, holds)
        .or_else(|| broken(state, task, breakers))
        .or_else(|| waiting(task, state.settings().executor.max_attempts, now));
    let row = task_row(state, task, now);
    let question_url = task
        .question_comment_id
        .and_then(|id| Some(format!("{}#issuecomment-{id}", row.issue_url.as_deref()?)));
    TaskView {
        row,
        kind: task.kind.clone(),
        branch: task.branch.clone(),
        attempt: task.attempt,
        turns: task.turns,
        agent: task.agent_profile.as_ref().map(|profile| {
            let used = match task.agent_model.as_deref() {
                Some(model) if !model.is_empty() => format!("{profile} ({model})"),
                _ => format!("{profile} (the CLI's default model)"),
            };
            match &task.fallback_from {
                Some(from) => format!("{used}, the fallback of {from}"),
                None => used,
            }
        }),
        created: time(task.created_at),
        started: task.started_at.map(time),
        finished: task.finished_at.map(time),
        error: task.error.clone().filter(|_| wait_reason.is_none()),
        question: task.question.clone(),
        question_url,
        wait_reason,
        result_text: task.result_text.clone(),
        cancel_requested: task.cancel_requested,
        can_cancel: task.status.is_active() && !task.cancel_requested,
        can_retry: RETRYABLE.contains(&task.status),
    }
}

fn step_row(step: &task_steps::Model) -> StepRow {
    let phase = match (StepPhase::parse(&step.phase), step.round) {
        (Some(StepPhase::Setup), _) => "setup".to_owned(),
        (Some(StepPhase::Agent), 0) => "agent".to_owned(),
        (Some(StepPhase::Agent), round) => format!("fix round {round}"),
        (Some(StepPhase::Check), 0) => "checks".to_owned(),
        (Some(StepPhase::Check), round) => format!("checks after fix round {round}"),
        (None, _) => step.phase.clone(),
    };
    StepRow {
        attempt: step.attempt,
        phase,
        command: step.command.clone(),
        passed: step.passed,
        outcome: step.outcome.clone(),
        duration: format!("{:.1}s", step.duration_ms as f64 / 1000.0),
        output: step.output.clone().filter(|text| !text.trim().is_empty()),
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
    /// The session that opened the stream: it ends when the session does.
    session: CurrentSession,
    id: i64,
    offset: u64,
    /// The status the page shows (`None`: one it did not name).
    status: Option<TaskStatus>,
    ended: bool,
    first: bool,
}

/// `GET /tasks/{id}/stream`: server-sent events with the transcript entries written after
/// `from` (`entries`, HTML) and the task's status when it changes (`status`). The
/// stream ends when the task does, or when the session logs out or expires.
pub async fn task_stream(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Path(id): Path<i64>,
    Query(query): Query<StreamQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    // A reconnecting EventSource says how far it got: resume there, not at `from`.
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let offset = resume.unwrap_or(query.from);
    let tail =
        Tail { state, session, id, offset, status: query.status.parse().ok(), ended: false, first: true };
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
        if !tail.state.sessions.alive(&tail.session) {
            return None;
        }
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
        if tail.status != Some(status) {
            tail.ended = !status.is_active();
            tail.status = Some(status);
            return Some(Event::default().event("status").data(status.as_str()));
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
    if let Ok(Some(status)) = &cancelled {
        let detail = format!("status after: {}", status.as_str());
        crate::server::audit(&state, "admin", "task_cancel", &format!("task {id}"), &detail, "").await;
    }
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
    if let Ok(Retried::Queued(new_id)) = &retried {
        let detail = format!("queued as task {new_id}");
        crate::server::audit(&state, "admin", "task_retry", &format!("task {id}"), &detail, "").await;
    }
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
