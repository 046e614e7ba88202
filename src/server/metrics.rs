//! `GET /metrics` in the Prometheus text format, open like `/healthz`: no secret and no
//! per-repository label, so its size does not grow with use.
//!
//! Task and delivery figures come from the database, so every instance sharing it
//! reports the same; intake timing and webhook answers are this process's since it
//! started (refused deliveries never reach the database).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::db::{BreakerState, TaskStatus};
use crate::executor::cleanup::CleanupStats;

/// Upper bounds of the intake histogram's buckets, in seconds.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// The delivery outcomes reported; anything else counts as `other`.
const OUTCOMES: [&str; 5] = ["task_created", "ignored", "coalesced", "cancelled_task", "answered"];
/// The window the task duration quantiles are taken over.
const DURATION_WINDOW_HOURS: i64 = 24;

/// How long webhook requests took and what they were answered, in this process.
#[derive(Default)]
pub struct IntakeMetrics {
    /// Requests per bucket (not cumulative; summed when rendered).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    by_code: Mutex<BTreeMap<u16, u64>>,
}

impl IntakeMetrics {
    fn observe(&self, seconds: f64, code: StatusCode) {
        if let Some(i) = BUCKETS.iter().position(|le| seconds <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        *self.by_code.lock().unwrap_or_else(|e| e.into_inner()).entry(code.as_u16()).or_default() += 1;
    }

    fn render(&self, out: &mut String) {
        family(
            out,
            "forgehand_intake_duration_seconds",
            "histogram",
            "Time to answer a webhook request (this process).",
        );
        let mut cumulative = 0;
        for (le, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "forgehand_intake_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "forgehand_intake_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "forgehand_intake_duration_seconds_sum {sum}");
        let _ = writeln!(out, "forgehand_intake_duration_seconds_count {count}");
        family(
            out,
            "forgehand_webhook_responses_total",
            "counter",
            "Webhook requests by HTTP status answered (this process).",
        );
        for (code, n) in self.by_code.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "forgehand_webhook_responses_total{{code=\"{code}\"}} {n}");
        }
    }
}

/// Times every webhook request (wraps `POST /webhooks/{forge}`).
pub async fn track_intake(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    state.intake.observe(started.elapsed().as_secs_f64(), response.status());
    response
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let since = chrono::Utc::now() - chrono::Duration::hours(DURATION_WINDOW_HOURS);
    let counts = match state.db.metric_counts(since).await {
        Ok(counts) => counts,
        Err(err) => {
            tracing::warn!(error = %err, "metrics: database unreachable");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response();
        }
    };
    let settings = state.settings();
    let mut out = String::with_capacity(4096);
    let tasks: BTreeMap<_, _> = counts.tasks.into_iter().collect();
    family(&mut out, "forgehand_tasks", "gauge", "Tasks by status (every instance sharing the database).");
    for status in TaskStatus::ALL {
        let n = tasks.get(status.as_str()).copied().unwrap_or(0);
        let _ = writeln!(out, "forgehand_tasks{{status=\"{}\"}} {n}", status.as_str());
    }
    render_deliveries(&mut out, counts.deliveries);
    family(&mut out, "forgehand_agents_running", "gauge", "Tasks running now (every instance).");
    let running = tasks.get(TaskStatus::Running.as_str()).copied().unwrap_or(0);
    let _ = writeln!(out, "forgehand_agents_running {running}");
    family(
        &mut out,
        "forgehand_agents_max",
        "gauge",
        "executor.max_concurrent of this instance (0: executor disabled).",
    );
    let max = if settings.executor.enabled { settings.executor.max_concurrent } else { 0 };
    let _ = writeln!(out, "forgehand_agents_max {max}");
    render_durations(&mut out, counts.recent_durations, counts.finished_recent);
    family(
        &mut out,
        "forgehand_questions_asked_total",
        "counter",
        "Questions agents asked with ask_question (every task; answers are forgehand_deliveries_total{outcome=\"answered\"}).",
    );
    let _ = writeln!(out, "forgehand_questions_asked_total {}", counts.questions_asked);
    family(
        &mut out,
        "forgehand_pull_requests_checks",
        "gauge",
        "Pull requests whose checks passed first time (passed), after fix rounds (fixed) or not at all (failing).",
    );
    for (result, n) in
        [("passed", counts.checks.passed), ("fixed", counts.checks.fixed), ("failing", counts.checks.failing)]
    {
        let _ = writeln!(out, "forgehand_pull_requests_checks{{result=\"{result}\"}} {n}");
    }
    family(
        &mut out,
        "forgehand_claim_passes_total",
        "counter",
        "Passes of this process's executor looking for a queued task to start, whether it found one or not.",
    );
    let _ = writeln!(out, "forgehand_claim_passes_total {}", state.db.claims_run());
    render_breakers(&mut out, &state, &settings).await;
    state.intake.render(&mut out);
    render_cleanup(&mut out, &state.cleanup.stats);
    let content_type = [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")];
    (content_type, out).into_response()
}

/// Each configured profile's circuit breaker: open (1) or not, half-open (1) or not.
async fn render_breakers(out: &mut String, state: &AppState, settings: &crate::config::Settings) {
    let rows = match state.db.breakers().await {
        Ok(rows) => rows,
        Err(err) => return tracing::warn!(error = %err, "metrics: cannot read the circuit breakers"),
    };
    let state_of = |profile: &str| {
        let row = rows.iter().find(|row| row.profile == profile);
        row.map(|row| BreakerState::parse(&row.state)).unwrap_or(BreakerState::Closed)
    };
    let profiles = settings.profile_names();
    for (name, wanted, help) in [
        (
            "forgehand_breaker_open",
            BreakerState::Open,
            "1 while the agent profile's circuit breaker is open.",
        ),
        (
            "forgehand_breaker_half_open",
            BreakerState::HalfOpen,
            "1 while the agent profile's circuit breaker lets its one trial task through.",
        ),
    ] {
        family(out, name, "gauge", help);
        for profile in &profiles {
            let value = u8::from(state_of(profile) == wanted);
            let _ = writeln!(out, "{name}{{profile=\"{profile}\"}} {value}");
        }
    }
}

/// What this process's cleanups removed (`[storage]`).
fn render_cleanup(out: &mut String, stats: &CleanupStats) {
    family(out, "forgehand_cleanup_runs_total", "counter", "Cleanups run (this process).");
    let _ = writeln!(out, "forgehand_cleanup_runs_total {}", stats.runs.load(Ordering::Relaxed));
    family(
        out,
        "forgehand_cleanup_removed_total",
        "counter",
        "Rows, files and directories the cleanup removed, by kind (this process).",
    );
    for (kind, n) in CleanupStats::KINDS.iter().zip(&stats.removed) {
        let _ =
            writeln!(out, "forgehand_cleanup_removed_total{{kind=\"{kind}\"}} {}", n.load(Ordering::Relaxed));
    }
    family(
        out,
        "forgehand_cleanup_removed_bytes_total",
        "counter",
        "Bytes on disk the cleanup freed, by kind (this process).",
    );
    let file_kinds = &CleanupStats::KINDS[CleanupStats::KINDS.len() - stats.bytes.len()..];
    for (kind, n) in file_kinds.iter().zip(&stats.bytes) {
        let _ = writeln!(
            out,
            "forgehand_cleanup_removed_bytes_total{{kind=\"{kind}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn render_deliveries(out: &mut String, rows: Vec<(String, i64)>) {
    let mut by_outcome: BTreeMap<&str, i64> = OUTCOMES.iter().map(|o| (*o, 0)).collect();
    for (outcome, n) in &rows {
        let key = OUTCOMES.iter().find(|o| *o == outcome).copied().unwrap_or("other");
        *by_outcome.entry(key).or_default() += n;
    }
    family(
        out,
        "forgehand_deliveries_total",
        "counter",
        "Webhook deliveries recorded, by outcome (every instance).",
    );
    for (outcome, n) in by_outcome {
        let _ = writeln!(out, "forgehand_deliveries_total{{outcome=\"{outcome}\"}} {n}");
    }
}

fn render_durations(out: &mut String, mut seconds: Vec<f64>, finished: u64) {
    seconds.sort_by(f64::total_cmp);
    family(
        out,
        "forgehand_task_duration_seconds",
        "gauge",
        "Start-to-end time of the tasks finished in the last 24 hours (at most the latest 2000), by quantile.",
    );
    for q in [0.5, 0.9, 0.99] {
        let value = quantile(&seconds, q).map(|v| format!("{v:.3}")).unwrap_or_else(|| "NaN".into());
        let _ = writeln!(out, "forgehand_task_duration_seconds{{quantile=\"{q}\"}} {value}");
    }
    family(out, "forgehand_tasks_finished_recent", "gauge", "Tasks finished in the last 24 hours.");
    let _ = writeln!(out, "forgehand_tasks_finished_recent {finished}");
}

/// The `q` quantile of sorted `values` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(((last as f64) * q).round() as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), Some(51.0));
        assert_eq!(quantile(&values, 0.99), Some(99.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn the_intake_histogram_is_cumulative() {
        let metrics = IntakeMetrics::default();
        metrics.observe(0.003, StatusCode::OK);
        metrics.observe(0.2, StatusCode::UNAUTHORIZED);
        metrics.observe(30.0, StatusCode::OK);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("forgehand_intake_duration_seconds_bucket{le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("forgehand_intake_duration_seconds_bucket{le=\"0.25\"} 2\n"), "{out}");
        assert!(out.contains("forgehand_intake_duration_seconds_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("forgehand_intake_duration_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("forgehand_webhook_responses_total{code=\"401\"} 1\n"), "{out}");
        assert!(out.contains("forgehand_webhook_responses_total{code=\"200\"} 2\n"), "{out}");
    }
}
