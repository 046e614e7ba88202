//! The executor's side of the circuit breakers (`db::breakers`): a finished run counts
//! against its profile's breaker, and the claim sends tasks past open breakers to their
//! fallback profiles, or lets a half-open breaker's one trial through.

use chrono::Utc;

use super::Context;
use super::agent::{AgentRun, provider_failure};
use crate::config::{DEFAULT_PROFILE, Settings};
use crate::db::breakers::{self, BreakerChange, BreakerState};
use crate::db::entities::tasks;
use crate::db::queries::ClaimLimits;
use crate::db::{DbError, TaskStatus};

/// Counts `run` of `task` against its profile's breaker; the provider failure's reason
/// when it was one.
pub async fn observe(ctx: &Context, task: &tasks::Model, run: &AgentRun) -> Option<String> {
    let profile = task.agent_profile.as_deref().unwrap_or(DEFAULT_PROFILE);
    let failure = provider_failure(run);
    match ctx.db.record_breaker_run(profile, failure.as_deref(), &ctx.settings.breaker).await {
        Ok(Some(change)) if change.from != change.to => changed(&change),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, profile, "cannot record the run on the circuit breaker"),
    }
    failure
}

/// A breaker's state changed: logged here, and the place to hook notifications in.
pub fn changed(change: &BreakerChange) {
    let (profile, error) = (&change.profile, change.last_error.as_deref().unwrap_or(""));
    let (from, to) = (change.from.as_str(), change.to.as_str());
    match change.to {
        BreakerState::Open => {
            tracing::warn!(profile, from, to, last_error = error, "circuit breaker opened")
        }
        BreakerState::HalfOpen => {
            tracing::info!(profile, from, to, "circuit breaker half-open: one trial task")
        }
        BreakerState::Closed => tracing::info!(profile, from, to, "circuit breaker closed"),
    }
}

/// Claims the next task: first, for each breaker whose cool-down is over, its one trial
/// task on its own profile; then any task, past open breakers to their fallbacks.
pub async fn claim(ctx: &Context, limits: ClaimLimits) -> Result<Option<tasks::Model>, DbError> {
    let (db, settings) = (&ctx.db, &ctx.settings);
    let rows = db.breakers().await?;
    let now = Utc::now();
    for row in rows.iter().filter(|row| breakers::take_trial(row, &settings.breaker, now).is_some()) {
        // One statement decides who has the trial, whichever instance asks.
        if !db.take_breaker_trial(&row.profile, &settings.breaker).await? {
            continue;
        }
        let trial = ClaimLimits { only_profile: Some(row.profile.clone()), ..limits.clone() };
        match db.claim_next(&ctx.owner, ctx.lease_length(), &trial).await? {
            Some(task) => {
                changed(&BreakerChange {
                    profile: row.profile.clone(),
                    from: BreakerState::parse(&row.state),
                    to: BreakerState::HalfOpen,
                    last_error: row.last_error.clone(),
                });
                let note =
                    format!("trial run: the circuit breaker of profile {:?} is half-open", row.profile);
                let _ = ctx.lease(task.id).add_event(TaskStatus::Running, &note).await;
                return Ok(Some(task));
            }
            None => db.give_back_breaker_trial(&row.profile).await?,
        }
    }
    let blocking: Vec<&str> =
        rows.iter().filter(|row| breakers::blocks(row)).map(|row| row.profile.as_str()).collect();
    let (routes, blocked) = plan(settings, &blocking);
    let limits = ClaimLimits { routes, blocked, ..limits };
    let task = db.claim_next(&ctx.owner, ctx.lease_length(), &limits).await?;
    if let Some(task) = &task
        && let Some(from) = &task.fallback_from
    {
        let to = task.agent_profile.as_deref().unwrap_or(DEFAULT_PROFILE);
        let note = format!("the circuit breaker of profile {from:?} is open: runs on its fallback {to:?}");
        tracing::info!(task = task.id, from, to, "task sent to a fallback profile");
        let _ = ctx.lease(task.id).add_event(TaskStatus::Running, &note).await;
    }
    Ok(task)
}

/// For profiles whose breakers block: where their tasks go (profile, fallback), and
/// those whose tasks wait.
pub fn plan(settings: &Settings, blocking: &[&str]) -> (Vec<(String, String)>, Vec<String>) {
    let fallback_of = |name: &str| settings.profile(name).and_then(|profile| profile.fallback);
    let (mut routes, mut blocked) = (Vec::new(), Vec::new());
    for profile in blocking {
        match breakers::route(profile, fallback_of, blocking) {
            Some(to) => routes.push(((*profile).to_owned(), to)),
            None => blocked.push((*profile).to_owned()),
        }
    }
    (routes, blocked)
}
