//! Tasks that wait for an answer hold no slot and no process, so nothing runs for them:
//! every `executor.poll_interval_secs` this loop ends the questions nobody answered in
//! `executor.question_timeout_hours` (`expired`, with a comment) and closes the question
//! of a task cancelled while it waited (label removed or issue closed). Any instance may
//! do either; the database lets exactly one act on each task.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Context;
use super::finish::{post_status, prune_workspaces};
use super::report::Status;
use crate::db::entities::tasks;

/// Looks after waiting tasks until `stop`.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_secs(ctx.settings.executor.poll_interval_secs);
    loop {
        tidy(&ctx).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One pass: expire overdue questions, close those of cancelled tasks.
pub async fn tidy(ctx: &Context) {
    let hours = ctx.settings.executor.question_timeout_hours;
    let error = format!("nobody answered the question in {hours} hours");
    let timeout = chrono::Duration::hours(i64::try_from(hours).unwrap_or(i64::MAX / 3_600_000));
    let expired = ctx.db.expire_questions(timeout, &error).await.unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot expire unanswered questions");
        Vec::new()
    });
    for task in &expired {
        tracing::info!(task = task.id, "the question went unanswered; the task expired");
        close(ctx, task, &Status::Expired { hours }).await;
    }
    let cancelled = ctx.db.take_cancelled_questions().await.unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot read the tasks cancelled while waiting");
        Vec::new()
    });
    for task in &cancelled {
        let reason = task.error.clone().unwrap_or_else(|| "cancelled".to_owned());
        close(ctx, task, &Status::Cancelled { reason: &reason }).await;
    }
    if !(expired.is_empty() && cancelled.is_empty()) {
        prune_workspaces(ctx).await;
    }
}

/// Says on the issue how a waiting task ended and takes its question label off.
async fn close(ctx: &Context, task: &tasks::Model, status: &Status<'_>) {
    let _ = std::fs::remove_dir_all(super::questions::question_dir(&ctx.settings.data_dir, task.id));
    let Some(forge) = ctx.forges.get(&task.forge) else { return };
    post_status(ctx, forge.as_ref(), task, status).await;
    let label = &ctx.settings.labels.question;
    if let Err(err) = forge.remove_label(&task.repo_name(), task.issue_number(), label).await {
        tracing::warn!(error = %err, "cannot remove the question label");
    }
}
