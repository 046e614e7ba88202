//! The intake rules, written once: what recording a delivery writes, given the trigger
//! rules' decision — insert the delivery (or see a duplicate), read the issue's context,
//! queue a task, join the active one (its instructions appended), cancel it, remember the
//! label, store the outcome. The dashboard's cancel (`Db::cancel_task`) runs the cancel
//! rule too.
//!
//! The rules run over an [`IntakeStore`], the few statements they need, which has two
//! implementations: [`sea::SeaStore`] (sea-orm, any connection or transaction: PostgreSQL,
//! an in-memory SQLite) and [`sqlite::SqliteStore`] (rusqlite, on the group-commit writer's
//! thread, statements prepared once). The store is an async trait because the sea-orm
//! path must await; the rusqlite store's methods never wait, so the writer thread runs the
//! very same rules with `now_or_never` — one poll, no executor, no allocation — instead of
//! keeping a second, synchronous copy of them in step.

pub(super) mod sea;
pub(super) mod sqlite;
#[cfg(test)]
mod tests;

use sea_orm::DbErr;

use super::entities::task_status::TaskStatus;
use super::limits::{self, clean};
use super::{IssueKey, NewDelivery, Outcome, Recorded};
use crate::config::RepoName;
use crate::forge::IssueNumber;
use crate::trigger::{Decision, IssueContext, PushedCommit, TaskRequest};

/// The timeline kind of an event that changes no status.
pub const NOTE: &str = "note";

/// The statements the intake rules need. Text arrives cleaned ([`limits`]).
pub(super) trait IntakeStore {
    /// What [`IntakeStore::claim_delivery`] hands to [`IntakeStore::store_outcome`]: the
    /// row id of a delivery inserted as pending, or nothing when the store writes the
    /// delivery only with its outcome.
    type Claim;
    /// Claims the delivery unless it is a duplicate (by delivery id, or by the comment or
    /// review it carries); `None` for a duplicate. Nothing can record the same delivery
    /// between the claim and its outcome: either the claim inserted the row (the unique
    /// indexes make a concurrent transaction wait), or the transaction holds the write
    /// lock from its start (the SQLite writer).
    async fn claim_delivery(&self, row: &DeliveryRow<'_>) -> Result<Option<Self::Claim>, DbErr>;
    /// The issue's active task and trigger-label state.
    async fn issue_context(&self, key: &IssueKey) -> Result<IssueContext, DbErr>;
    /// The pull request forgehand pushed commit `sha` to, and what it knows of its pushes.
    async fn pushed_commit(
        &self,
        forge: &str,
        repo: &RepoName,
        sha: &str,
    ) -> Result<Option<PushedCommit>, DbErr>;
    /// The issue's active task, read again after a lost insert race.
    async fn active_task(&self, key: &IssueKey) -> Result<Option<i64>, DbErr>;
    /// Queues a task; `None` when the issue has an active task (the partial unique index).
    async fn insert_task(&self, row: TaskRow<'_>) -> Result<Option<i64>, DbErr>;
    /// Appends a timeline line; `kind` is a status name or [`NOTE`].
    async fn add_event(&self, task_id: i64, kind: &str, message: &str) -> Result<(), DbErr>;
    /// Moves a task through `TaskEvent::Cancel` (guarded by its legal sources); whether it did.
    async fn cancel(&self, task_id: i64, error: &str) -> Result<bool, DbErr>;
    /// Flags a task so that its executor stops it.
    async fn request_cancel(&self, task_id: i64) -> Result<(), DbErr>;
    /// A task's status, instructions and those kept for its follow-up.
    async fn instructions(&self, task_id: i64) -> Result<Option<Instructions>, DbErr>;
    async fn set_instructions(&self, task_id: i64, text: &str) -> Result<(), DbErr>;
    async fn set_pending_instructions(&self, task_id: i64, text: &str, by: &str) -> Result<(), DbErr>;
    /// Stores `answers` (JSON) on a task that waits for an answer, and queues it if it was
    /// `needs_input`; false when the task no longer waits.
    async fn answer(&self, task_id: i64, answers: &str) -> Result<bool, DbErr>;
    /// Remembers whether the issue carries the trigger label now.
    async fn set_label_state(&self, key: &IssueKey, present: bool) -> Result<(), DbErr>;
    /// Stores the claimed delivery's outcome, and counts it (the SQLite writer counts its
    /// whole batch at once instead: `sqlite::count_outcomes`).
    async fn store_outcome(
        &self,
        claim: Self::Claim,
        row: &DeliveryRow<'_>,
        outcome: Outcome,
        reason: &str,
        task_id: Option<i64>,
    ) -> Result<(), DbErr>;
}

/// A delivery as stored, its text cleaned.
pub(super) struct DeliveryRow<'a> {
    pub forge: &'a str,
    pub delivery_id: String,
    pub event_key: Option<&'a str>,
    pub event: String,
    pub action: Option<String>,
    pub repo: Option<String>,
    pub number: Option<IssueNumber>,
    pub sender: Option<String>,
}

impl<'a> DeliveryRow<'a> {
    pub fn of(d: &'a NewDelivery) -> DeliveryRow<'a> {
        DeliveryRow {
            forge: &d.forge,
            delivery_id: clean(&d.delivery_id, limits::DELIVERY_ID),
            event_key: d.event_key.as_deref(),
            event: clean(&d.event, limits::EVENT_NAME),
            action: d.action.as_deref().map(|a| clean(a, limits::ACTION)),
            repo: d.repo.as_ref().map(|r| clean(r.as_str(), limits::REPO)),
            number: d.number,
            sender: d.sender.as_deref().map(|s| clean(s, limits::LOGIN)),
        }
    }
}

/// A new queued task as stored, its text cleaned.
pub(super) struct TaskRow<'a> {
    pub forge: &'a str,
    pub repo: &'a str,
    pub number: i64,
    pub kind: &'static str,
    pub trigger: &'static str,
    pub requested_by: String,
    pub title: String,
    pub instructions: String,
    pub clone_url: String,
    pub branch: Option<String>,
    pub profile: Option<String>,
    pub source: Option<&'static str>,
    pub priority: i32,
    pub feedback_ref: Option<String>,
}

impl<'a> TaskRow<'a> {
    pub fn of(forge: &'a str, r: &'a TaskRequest) -> TaskRow<'a> {
        TaskRow {
            forge,
            repo: r.repo.as_str(),
            number: i64::from(r.number),
            kind: r.kind.as_str(),
            trigger: r.trigger.as_str(),
            requested_by: clean(&r.requested_by, limits::LOGIN),
            title: clean(&r.title, limits::TITLE),
            instructions: clean(&r.instructions, limits::INSTRUCTIONS),
            clone_url: clean(&r.clone_url, limits::CLONE_URL),
            branch: r.branch.as_deref().map(|b| clean(b, limits::BRANCH)),
            profile: r.routing.profile.clone(),
            source: r.routing.source.map(|s| s.as_str()),
            priority: r.routing.priority,
            feedback_ref: r.feedback_ref.as_deref().map(|f| clean(f, limits::BRANCH)),
        }
    }
}

/// What [`IntakeStore::instructions`] reads.
pub(super) struct Instructions {
    pub status: TaskStatus,
    pub instructions: String,
    pub pending: Option<String>,
    /// The answers to the task's question so far (JSON).
    pub answers: Option<String>,
}

/// Records `delivery` and what `decide` makes of it, inside the caller's transaction.
pub(super) async fn record(
    store: &impl IntakeStore,
    delivery: &NewDelivery,
    decide: impl FnOnce(&IssueContext) -> Decision,
) -> Result<Recorded, DbErr> {
    let row = DeliveryRow::of(delivery);
    let Some(claim) = store.claim_delivery(&row).await? else {
        return Ok(Recorded::Duplicate);
    };
    let (key, pushed) = match (issue_key(delivery), &delivery.repo, &delivery.head_sha) {
        (None, Some(repo), Some(sha)) => {
            // A check names a commit, not a pull request: the one forgehand pushed it to.
            let pushed = store.pushed_commit(&delivery.forge, repo, sha).await?;
            let key = pushed.as_ref().map(|p| IssueKey {
                forge: delivery.forge.clone(),
                repo: repo.clone(),
                number: p.pull,
            });
            (key, pushed)
        }
        (key, ..) => (key, None),
    };
    let mut context = match &key {
        Some(key) => store.issue_context(key).await?,
        None => IssueContext::default(),
    };
    context.pushed = pushed;
    let (outcome, reason, task_id) = apply_decision(store, delivery, key.as_ref(), decide(&context)).await?;
    // Most events leave an issue's trigger label as it was: no row to write then. The rules
    // read a missing row as an absent label, so an issue that never had it gets no row.
    if let (Some(key), Some(present)) = (&key, delivery.label_present)
        && context.label_was_present.unwrap_or(false) != present
    {
        store.set_label_state(key, present).await?;
    }
    store.store_outcome(claim, &row, outcome, &clean(&reason, limits::REASON), task_id).await?;
    Ok(Recorded::Outcome { outcome, reason, task_id })
}

fn issue_key(delivery: &NewDelivery) -> Option<IssueKey> {
    Some(IssueKey { forge: delivery.forge.clone(), repo: delivery.repo.clone()?, number: delivery.number? })
}

type Applied = (Outcome, String, Option<i64>);

async fn apply_decision(
    store: &impl IntakeStore,
    delivery: &NewDelivery,
    key: Option<&IssueKey>,
    decision: Decision,
) -> Result<Applied, DbErr> {
    let by = delivery.sender.as_deref().unwrap_or("unknown");
    match decision {
        Decision::Ignore(reason) => Ok((Outcome::Ignored, reason, None)),
        Decision::Create(request) => match store.insert_task(TaskRow::of(&delivery.forge, &request)).await? {
            Some(id) => {
                add_event(store, id, TaskStatus::Queued.as_str(), &queued_message(delivery, by)).await?;
                Ok((Outcome::TaskCreated, queued_reason(id), Some(id)))
            }
            None => {
                let active = match key {
                    Some(key) => store.active_task(key).await?,
                    None => None,
                };
                let text = &request.instructions;
                let addition = (!text.is_empty()).then(|| format!("@{}: {text}", request.requested_by));
                coalesce(store, active, delivery, by, addition).await
            }
        },
        Decision::Coalesce { task_id, instructions } => {
            coalesce(store, Some(task_id), delivery, by, instructions).await
        }
        Decision::Cancel { task_id, reason } => {
            let status = cancel_task(store, task_id, &reason).await?;
            Ok((Outcome::CancelledTask, cancelled_reason(task_id, status, &reason), Some(task_id)))
        }
        Decision::Answer { task_id, by, text } => answer(store, delivery, task_id, &by, &text).await,
    }
}

/// Adds an answer to the task's question and queues the task; its author's permission is
/// checked by the executor before the answer reaches the agent.
async fn answer(
    store: &impl IntakeStore,
    delivery: &NewDelivery,
    task_id: i64,
    by: &str,
    text: &str,
) -> Result<Applied, DbErr> {
    let stored = store.instructions(task_id).await?.and_then(|task| task.answers);
    let new = super::answers::Answer { by: clean(by, limits::LOGIN), text: clean(text, limits::ANSWER) };
    let answers = super::answers::append_answer(stored.as_deref(), new);
    if !store.answer(task_id, &answers).await? {
        return Ok((
            Outcome::Ignored,
            format!("task {task_id} no longer waits for an answer"),
            Some(task_id),
        ));
    }
    let message = format!("answered by @{by} (delivery {}); queued to resume", delivery.delivery_id);
    add_event(store, task_id, NOTE, &message).await?;
    Ok((Outcome::Answered, format!("task {task_id}'s question answered; it resumes"), Some(task_id)))
}

async fn coalesce(
    store: &impl IntakeStore,
    task_id: Option<i64>,
    delivery: &NewDelivery,
    by: &str,
    instructions: Option<String>,
) -> Result<Applied, DbErr> {
    let Some(task_id) = task_id else {
        return Err(DbErr::Custom("a task for this issue appeared and vanished during the delivery".into()));
    };
    if let Some(text) = instructions {
        add_instructions(store, task_id, by, &text).await?;
    }
    add_event(store, task_id, NOTE, &joined_message(delivery, by)).await?;
    Ok((Outcome::Coalesced, coalesced_reason(task_id), Some(task_id)))
}

/// Appends a timeline line, cleaned.
pub(super) async fn add_event(
    store: &impl IntakeStore,
    task_id: i64,
    kind: &str,
    message: &str,
) -> Result<(), DbErr> {
    store.add_event(task_id, kind, &clean(message, limits::TIMELINE_MESSAGE)).await
}

/// Cancels a queued task at once; asks a running one to stop. Returns the status after.
pub(super) async fn cancel_task(
    store: &impl IntakeStore,
    task_id: i64,
    reason: &str,
) -> Result<TaskStatus, DbErr> {
    if store.cancel(task_id, &clean(reason, limits::ERROR)).await? {
        add_event(store, task_id, TaskStatus::Cancelled.as_str(), &format!("cancelled: {reason}")).await?;
        return Ok(TaskStatus::Cancelled);
    }
    store.request_cancel(task_id).await?;
    add_event(store, task_id, NOTE, &format!("cancel requested: {reason}")).await?;
    Ok(TaskStatus::Running)
}

/// Adds instructions that arrived for an active task: a queued task gets them in its own
/// run, a running one keeps them for a follow-up run after it.
pub(super) async fn add_instructions(
    store: &impl IntakeStore,
    task_id: i64,
    by: &str,
    text: &str,
) -> Result<(), DbErr> {
    let Some(task) = store.instructions(task_id).await? else {
        return Ok(());
    };
    let append = |existing: Option<&str>| match existing {
        Some(existing) if !existing.is_empty() => {
            clean(&format!("{existing}\n\n{text}"), limits::INSTRUCTIONS)
        }
        _ => clean(text, limits::INSTRUCTIONS),
    };
    if task.status == TaskStatus::Queued {
        store.set_instructions(task_id, &append(Some(&task.instructions))).await
    } else {
        let pending = append(task.pending.as_deref());
        store.set_pending_instructions(task_id, &pending, &clean(by, limits::LOGIN)).await
    }
}

/// The timeline line of a task a delivery queued.
fn queued_message(delivery: &NewDelivery, by: &str) -> String {
    format!("queued by delivery {} ({} by {by})", delivery.delivery_id, delivery.event)
}

/// The timeline line of a delivery that joined a task.
fn joined_message(delivery: &NewDelivery, by: &str) -> String {
    format!("delivery {} ({} by {by}) joined this task", delivery.delivery_id, delivery.event)
}

fn queued_reason(task_id: i64) -> String {
    format!("task {task_id} queued")
}

fn coalesced_reason(task_id: i64) -> String {
    format!("task {task_id} is already queued or running for this issue")
}

fn cancelled_reason(task_id: i64, status: TaskStatus, reason: &str) -> String {
    let what = if status == TaskStatus::Cancelled { "cancelled" } else { "asked to stop" };
    format!("task {task_id} {what}: {reason}")
}
