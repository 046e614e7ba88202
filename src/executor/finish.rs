//! Recording how a task ended: its row (fenced by the lease), its timeline, its status
//! comment and its labels.

use std::time::Duration;

use chrono::Utc;

use super::Context;
use super::checklist::checklist;
use super::guard::StopReason;
use super::outcome::{Failure, Success};
use super::report::{Status, question_comment, status_comment};
use crate::db::entities::{task_steps, tasks};
use crate::db::{PullRef, RunEnd, TaskStatus, clean, limits};
use crate::forge::client::Forge;

/// Writes the end of a task and tells the issue.
pub async fn record(
    ctx: &Context,
    task: &tasks::Model,
    result: Result<Success, Failure>,
    stop: Option<StopReason>,
) {
    let result = match (result, stop) {
        // The agent was stopped from outside; its failure is the stop's doing.
        (Err(_), Some(StopReason::LostLease)) | (Err(Failure::Stopped), _) => {
            return stopped(ctx, task, stop).await;
        }
        (Err(_), Some(StopReason::Shutdown)) => return stopped(ctx, task, stop).await,
        (Err(Failure::Asked { question }), _) => return asked(ctx, task, question.as_deref()).await,
        (result, _) => result,
    };
    let ending = Ending::of(ctx, task, result);
    let lease = ctx.lease(task.id);
    match lease.end(ending.run_end()).await {
        Ok(true) => {}
        Ok(false) => return tracing::warn!("the task was taken over before its end was recorded"),
        Err(err) => {
            return tracing::error!(error = %err, "cannot record the task's end; its lease will expire");
        }
    }
    let _ = lease.add_event(ending.status, &ending.message).await;
    tracing::info!(status = ending.status.as_str(), message = %ending.message, "task ended");
    let fresh = reload(ctx, task).await;
    if ending.status != TaskStatus::Queued {
        queue_pending(ctx, &fresh).await;
    }
    if let Some(forge) = ctx.forges.get(&task.forge) {
        post_status(ctx, forge.as_ref(), &fresh, &ending.comment()).await;
        set_labels(ctx, forge.as_ref(), &fresh, ending.status).await;
    }
    if ending.status != TaskStatus::Queued {
        prune_workspaces(ctx).await;
    }
}

/// The run ended to wait for an answer: the task goes to `needs_input` (no slot, no
/// process; the checkout is kept), a new question is posted on the issue to the person who
/// asked for the task, the question label replaces the working label.
async fn asked(ctx: &Context, task: &tasks::Model, question: Option<&str>) {
    let lease = ctx.lease(task.id);
    match lease.end(RunEnd::Ask { question }).await {
        Ok(true) => {}
        Ok(false) => return tracing::warn!("the task was taken over before its question was recorded"),
        Err(err) => return tracing::error!(error = %err, "cannot record the question; the lease will expire"),
    }
    let message = match question {
        Some(question) => format!("asked: {question}"),
        None => "no answer could be used; waiting on".to_owned(),
    };
    let _ = lease.add_event(TaskStatus::NeedsInput, &message).await;
    tracing::info!(new_question = question.is_some(), "task waits for an answer");
    let Some(forge) = ctx.forges.get(&task.forge) else { return };
    let fresh = reload(ctx, task).await;
    if let Some(question) = question {
        let body = question_comment(task.id, &task_url(ctx, task.id), &task.requested_by, question);
        match forge.create_comment(&task.repo_name(), task.issue_number(), &body).await {
            Ok(id) => {
                let _ = ctx.db.record_question_comment(task.id, id).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot post the question");
                let _ = lease.add_note(&format!("could not post the question: {err}")).await;
            }
        }
    }
    let hours = ctx.settings.executor.question_timeout_hours;
    post_status(ctx, forge.as_ref(), &fresh, &Status::NeedsInput { requested_by: &task.requested_by, hours })
        .await;
    let (repo, number, labels) = (task.repo_name(), task.issue_number(), &ctx.settings.labels);
    if let Err(err) = forge.add_label(&repo, number, &labels.question).await {
        tracing::warn!(error = %err, "cannot set the question label");
    }
    if let Err(err) = forge.remove_label(&repo, number, &labels.working).await {
        tracing::warn!(error = %err, "cannot remove the working label");
    }
}

/// Removes old task directories (thousands of files each) off the async threads; those
/// of tasks waiting to resume stay.
pub async fn prune_workspaces(ctx: &Context) {
    let (workspaces, keep) = (ctx.workspaces.clone(), ctx.settings.executor.keep_failed_workspaces);
    let spare = match ctx.db.waiting_task_ids().await {
        Ok(ids) => ids,
        Err(err) => {
            return tracing::warn!(error = %err, "cannot read the waiting tasks; not pruning workspaces");
        }
    };
    match tokio::task::spawn_blocking(move || workspaces.prune_tasks(keep, &spare)).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "cannot prune old workspaces"),
        Err(err) => tracing::warn!(error = %err, "pruning old workspaces stopped"),
    }
}

/// Comments and reviews that arrived while the task ran get their own follow-up.
async fn queue_pending(ctx: &Context, task: &tasks::Model) {
    if task.pending_instructions.is_none() {
        return;
    }
    let lease = ctx.lease(task.id);
    match lease.queue_pending_follow_up(task).await {
        Ok(Some(id)) => {
            tracing::info!(follow_up = id, "queued a follow-up for what arrived during the run");
            ctx.wake.notify_one();
            ctx.db.announce_task().await;
        }
        Ok(None) => {
            let note = "what arrived during the run was dropped: there is no pull request to follow up";
            let _ = lease.add_note(note).await;
        }
        Err(err) => tracing::error!(error = %err, "cannot queue the follow-up"),
    }
}

/// The task's row as stored now (status comment id, PR).
async fn reload(ctx: &Context, task: &tasks::Model) -> tasks::Model {
    ctx.db.task(task.id).await.ok().flatten().map(|(t, _)| t).unwrap_or_else(|| task.clone())
}

/// A task stopped from outside: on shutdown it goes back to the queue; a lost lease means
/// another executor owns it now, so nothing is said.
async fn stopped(ctx: &Context, task: &tasks::Model, stop: Option<StopReason>) {
    // Anything but a shutdown means the lease was found lost: the task is not ours to touch.
    if stop != Some(StopReason::Shutdown) {
        return tracing::warn!("another executor took this task over");
    }
    if let Err(err) = ctx.lease(task.id).release().await {
        tracing::error!(error = %err, "cannot requeue the stopped task; the next start will");
    }
    tracing::info!(task = task.id, "task stopped by shutdown; requeued");
}

/// The end of a task, decided.
struct Ending {
    status: TaskStatus,
    success: Option<Success>,
    failure: Option<Failure>,
    error: Option<String>,
    message: String,
    wait: chrono::Duration,
    attempt: i32,
    max_attempts: u32,
    follow_up: bool,
    /// The fallback profile a provider failure sends the task to, or the profile the
    /// repository's file chose.
    reroute: Option<String>,
    /// Who chose `reroute` when it is not a fallback (`file`).
    reroute_source: Option<&'static str>,
}

impl Ending {
    fn of(ctx: &Context, task: &tasks::Model, result: Result<Success, Failure>) -> Ending {
        let max_attempts = ctx.settings.executor.max_attempts;
        let mut ending = Ending {
            status: TaskStatus::Done,
            success: None,
            failure: None,
            error: None,
            message: String::new(),
            wait: chrono::Duration::zero(),
            attempt: task.attempt,
            max_attempts,
            follow_up: task.kind == "follow_up",
            reroute: None,
            reroute_source: None,
        };
        match result {
            Ok(Success::Done { ref pr_url, .. }) => ending.message = format!("done: {pr_url}"),
            Ok(Success::NoChanges { .. }) => {
                ending.status = TaskStatus::NoChanges;
                ending.message = "no changes: the agent changed nothing".into();
            }
            Err(ref failure) => ending.fail(ctx, task, failure),
        }
        match result {
            Ok(success) => ending.success = Some(success),
            Err(failure) => ending.failure = Some(failure),
        }
        ending
    }

    fn fail(&mut self, ctx: &Context, task: &tasks::Model, failure: &Failure) {
        let (status, reason) = match failure {
            Failure::Switch { profile, reason } => {
                self.reroute = Some(profile.clone());
                self.reroute_source = Some("file");
                (TaskStatus::Queued, reason.clone())
            }
            Failure::Provider { reason } if ctx.settings.agent.fallback.is_some() => {
                self.reroute = ctx.settings.agent.fallback.clone();
                (TaskStatus::Queued, reason.clone())
            }
            Failure::Provider { reason } if (task.attempt as u32) < self.max_attempts => {
                self.wait = chrono::Duration::from_std(backoff(ctx, task.attempt))
                    .unwrap_or(chrono::Duration::minutes(15));
                (TaskStatus::Queued, reason.clone())
            }
            Failure::Provider { reason } => {
                (TaskStatus::Failed, format!("{reason} (gave up after {} attempts)", task.attempt))
            }
            Failure::Transient { reason, after } if (task.attempt as u32) < self.max_attempts => {
                self.wait = chrono::Duration::from_std(after.unwrap_or_else(|| backoff(ctx, task.attempt)))
                    .unwrap_or(chrono::Duration::minutes(15));
                (TaskStatus::Queued, reason.clone())
            }
            Failure::Transient { reason, .. } => {
                (TaskStatus::Failed, format!("{reason} (gave up after {} attempts)", task.attempt))
            }
            Failure::Permanent { reason, .. } => (TaskStatus::Failed, reason.clone()),
            Failure::Rejected { reason } => (TaskStatus::Rejected, reason.clone()),
            Failure::Cancelled { reason } => (TaskStatus::Cancelled, reason.clone()),
            Failure::Stopped => (TaskStatus::Queued, "stopped".to_owned()),
            // `record` takes a question before deciding an ending.
            Failure::Asked { .. } => (TaskStatus::Queued, "waiting for an answer".to_owned()),
        };
        self.status = status;
        self.message = match (status, &self.reroute) {
            (TaskStatus::Queued, Some(_)) if self.reroute_source.is_some() => reason.clone(),
            (TaskStatus::Queued, Some(fallback)) => {
                format!("retrying on the fallback profile {fallback:?}, the attempt not counted: {reason}")
            }
            (TaskStatus::Queued, None) => format!("retrying in {}s: {reason}", self.wait.num_seconds()),
            _ => format!("{}: {reason}", status.as_str()),
        };
        // Cleaned here, not only when stored: the status comment shows it too.
        self.error = Some(clean(&reason, limits::ERROR));
    }

    /// What the task row records of this end.
    fn run_end(&self) -> RunEnd<'_> {
        let error = self.error.as_deref();
        match self.status.ending() {
            Some(ending) => {
                let pull = match &self.success {
                    Some(Success::Done { pr_number, pr_url }) => {
                        Some(PullRef { number: *pr_number, url: pr_url })
                    }
                    _ => None,
                };
                RunEnd::Final { ending, error, pull }
            }
            None => match &self.reroute {
                Some(profile) => RunEnd::Reroute {
                    profile,
                    reason: error.unwrap_or_default(),
                    source: self.reroute_source,
                },
                None => RunEnd::Retry { due: Utc::now() + self.wait, reason: error.unwrap_or_default() },
            },
        }
    }

    fn comment(&self) -> Status<'_> {
        let reason = self.error.as_deref().unwrap_or_default();
        match (&self.success, &self.failure) {
            (Some(Success::Done { pr_number, pr_url }), _) => {
                Status::Done { pr_number: *pr_number, pr_url, follow_up: self.follow_up }
            }
            (Some(Success::NoChanges { agent_text }), _) => Status::NoChanges { agent_text },
            (_, Some(Failure::Switch { .. })) => Status::Waiting { reason },
            (_, Some(Failure::Permanent { partial_branch, .. })) if self.status == TaskStatus::Failed => {
                Status::Failed { reason, partial_branch: partial_branch.as_deref() }
            }
            _ => match self.status {
                TaskStatus::Queued => Status::Retrying {
                    attempt: self.attempt,
                    max_attempts: self.max_attempts,
                    reason,
                    wait: self.wait.to_std().unwrap_or_default(),
                },
                TaskStatus::Rejected => Status::Rejected { reason },
                TaskStatus::Cancelled => Status::Cancelled { reason },
                _ => Status::Failed { reason, partial_branch: None },
            },
        }
    }
}

/// Exponential backoff: 30 s, 60 s, 120 s, ... at most 15 minutes.
fn backoff(ctx: &Context, attempt: i32) -> Duration {
    let base = ctx.settings.executor.retry_base_secs;
    let factor = 2u64.saturating_pow(attempt.saturating_sub(1).max(0) as u32);
    Duration::from_secs(base.saturating_mul(factor).min(900))
}

/// The task's page, as linked from the forge.
pub fn task_url(ctx: &Context, task_id: i64) -> String {
    format!("{}/tasks/{task_id}", ctx.settings.server.public_url.trim_end_matches('/'))
}

/// Creates or edits the task's status comment; remembers a new comment's id.
pub async fn post_status(ctx: &Context, forge: &dyn Forge, task: &tasks::Model, status: &Status<'_>) {
    let now = match status {
        Status::Working { now, .. } => *now,
        _ => None,
    };
    let steps = attempt_steps(ctx, task).await;
    let body = status_comment(task.id, &task_url(ctx, task.id), status, &checklist(&steps, now));
    let number = task.issue_number();
    let result = match task.status_comment_id {
        Some(id) => forge.edit_comment(&task.repo_name(), id as u64, &body).await,
        None => match forge.create_comment(&task.repo_name(), number, &body).await {
            Ok(id) => {
                if let Err(err) = ctx.lease(task.id).record_status_comment(id).await {
                    tracing::warn!(error = %err, "cannot remember the status comment");
                }
                Ok(())
            }
            Err(err) => Err(err),
        },
    };
    if let Err(err) = result {
        tracing::warn!(error = %err, "cannot update the status comment");
        let note = format!("could not update the status comment: {err}");
        let _ = ctx.lease(task.id).add_note(&note).await;
    }
}

/// The steps of the task's current attempt; none when they cannot be read (the status
/// comment is then shorter, not missing).
async fn attempt_steps(ctx: &Context, task: &tasks::Model) -> Vec<task_steps::Model> {
    match ctx.db.task_steps(task.id).await {
        Ok(steps) => steps.into_iter().filter(|step| step.attempt == task.attempt).collect(),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the task's steps for its status comment");
            Vec::new()
        }
    }
}

async fn set_labels(ctx: &Context, forge: &dyn Forge, task: &tasks::Model, status: TaskStatus) {
    let labels = &ctx.settings.labels;
    let number = task.issue_number();
    let add = match status {
        TaskStatus::Done | TaskStatus::NoChanges => Some(&labels.done),
        TaskStatus::Failed => Some(&labels.failed),
        _ => None,
    };
    if status == TaskStatus::Queued {
        return;
    }
    if let Err(err) = forge.remove_label(&task.repo_name(), number, &labels.working).await {
        tracing::warn!(error = %err, "cannot remove the working label");
    }
    if let Some(label) = add
        && let Err(err) = forge.add_label(&task.repo_name(), number, label).await
    {
        tracing::warn!(error = %err, "cannot set the status label");
    }
}
