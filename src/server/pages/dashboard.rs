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
use crate::db::{BreakerState, DbError, TaskStatus};
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
    /// Circuit breakers that are not closed, said as a sentence each.
    pub breakers: Vec<String>,
    /// The agent profiles, when `[[agents]]` adds any: each with its model, running tasks
    /// against its own limit, fallback and breaker, a sentence each.
    pub profiles: Vec<String>,
    /// Spend today and this month against each cap configured, a sentence each.
    pub budgets: Vec<String>,
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

/// One sentence per agent profile (none with `[agent]` alone): model, running tasks and
/// its limit, fallback, breaker state.
fn profile_lines(
    settings: &crate::config::Settings,
    running: &[crate::db::entities::tasks::Model],
    breakers: &[crate::db::entities::breakers::Model],
) -> Vec<String> {
    if settings.agents.is_empty() {
        return Vec::new();
    }
    let default = crate::config::DEFAULT_PROFILE;
    settings
        .profile_names()
        .into_iter()
        .filter_map(|name| {
            let agent = settings.profile(name)?;
            let busy =
                running.iter().filter(|t| t.agent_profile.as_deref().unwrap_or(default) == name).count();
            let model =
                if agent.model.is_empty() { "the CLI's default model".to_owned() } else { agent.model };
            let limit =
                agent.max_concurrent.map_or("no limit of its own".to_owned(), |n| format!("at most {n}"));
            let fallback = agent.fallback.map(|f| format!(", falls back to {f}")).unwrap_or_default();
            let state = breakers
                .iter()
                .find(|b| b.profile == name)
                .map_or(crate::db::BreakerState::Closed, |b| crate::db::BreakerState::parse(&b.state));
            Some(format!("{name} ({model}): {busy} running, {limit}{fallback}; breaker {}", state.as_str()))
        })
        .collect()
}

async fn live(state: &AppState, f: &Filters, query: &TaskQuery) -> Result<Live, DbError> {
    let now = Utc::now();
    let overview: Arc<Overview> = state.overview.get(&state.db).await?;
    let page = state.db.dashboard_tasks(query).await?;
    let holds = state.db.holds().await?;
    let breakers = state.db.breakers().await?;
    let budgets = budget_lines(&state.settings(), &state.db).await?;
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
        breakers: {
            let blocking: Vec<&str> = breakers
                .iter()
                .filter(|b| crate::db::breakers::blocks(b))
                .map(|b| b.profile.as_str())
                .collect();
            let settings = state.settings();
            breakers.iter().filter_map(|b| breaker_line(&settings, b, &blocking, now)).collect()
        },
        profiles: profile_lines(&state.settings(), &overview.running, &breakers),
        budgets,
        failing_sinks,
        rows: page.rows.iter().map(|t| task_row(state, t, now)).collect(),
        next_page,
        filtered: f.status.is_some() || f.repo.is_some() || f.forge.is_some() || f.q.is_some(),
    })
}

/// A breaker that is not closed, in words: its state, since when, its last error and
/// where its profile's tasks go meanwhile. Its error is forgehand's own reason, never
/// the CLI's stderr, so it carries no secret.
pub fn breaker_line(
    settings: &crate::config::Settings,
    breaker: &crate::db::entities::breakers::Model,
    blocking: &[&str],
    now: chrono::DateTime<Utc>,
) -> Option<String> {
    let state = BreakerState::parse(&breaker.state);
    let since = match state {
        BreakerState::Closed => return None,
        BreakerState::Open => breaker.opened_at,
        BreakerState::HalfOpen => breaker.trial_at,
    };
    let what = if state == BreakerState::Open { "open" } else { "half-open (one trial task runs)" };
    let since = since.map(|at| format!(" for {}", duration(now - at))).unwrap_or_default();
    let error = breaker.last_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default();
    let fallback_of = |name: &str| settings.profile(name).and_then(|p| p.fallback);
    let goes = match crate::db::breakers::route(&breaker.profile, fallback_of, blocking) {
        Some(to) => format!("its tasks run on {to}"),
        None => "its tasks wait in the queue".to_owned(),
    };
    Some(format!("Circuit breaker of agent profile {}: {what}{since}{error}; {goes}.", breaker.profile))
}

/// Spend against each configured cap (`[budget]`, `[[repos]]` `budget_*_usd`); none
/// without caps (the spend is then not read).
async fn budget_lines(
    settings: &crate::config::Settings,
    db: &crate::db::Db,
) -> Result<Vec<String>, DbError> {
    let global = (settings.budget.daily_usd, settings.budget.monthly_usd);
    let repos =
        settings.repos.iter().filter(|r| r.budget_daily_usd.is_some() || r.budget_monthly_usd.is_some());
    // What, its spend, and its daily and monthly caps.
    type Cap = (String, crate::db::Spend, (Option<f64>, Option<f64>));
    let mut caps: Vec<Cap> = Vec::new();
    let wanted = global != (None, None) || repos.clone().next().is_some();
    if !wanted {
        return Ok(Vec::new());
    }
    let spend = db.spend(Utc::now()).await?;
    if global != (None, None) {
        caps.push(("All repositories".to_owned(), spend.total, global));
    }
    for entry in repos {
        caps.push((
            entry.name.clone(),
            spend.repo(&entry.name),
            (entry.budget_daily_usd, entry.budget_monthly_usd),
        ));
    }
    let part = |spent: f64, cap: Option<f64>, period: &str| match cap {
        Some(cap) => format!("${spent:.2} of ${cap:.2} {period}"),
        None => format!("${spent:.2} {period}"),
    };
    Ok(caps
        .into_iter()
        .map(|(what, spent, (day, month))| {
            format!(
                "{what}: spent {}, {} (UTC).",
                part(spent.day, day, "today"),
                part(spent.month, month, "this month")
            )
        })
        .collect())
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
