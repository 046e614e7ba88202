//! The task facade for executors: claiming a task, and a [`Lease`] — a task id and the
//! owner that claimed it — through which every change of a claimed task goes. Each write
//! is fenced by `lease_owner = owner` (an executor whose task was taken over changes
//! nothing), and each status change takes its target and its legal sources from the
//! transition table (`entities::task_status`).

use chrono::{DateTime, Duration, Utc};
use sea_orm::Value;

use super::entities::task_status::{Ending, TaskEvent, TaskStatus};
use super::entities::tasks::{self, Column};
use super::limits::{self, clean};
use super::notify::{self, NotifyEvent};
use super::{Db, DbError, queries};
use sea_orm::ConnectionTrait as _;

/// The PostgreSQL advisory lock key that serialises claims over instances.
const CLAIM_LOCK: i64 = 0x666f_7267_6568;
use crate::forge::IssueNumber;

/// A claim on a running task: its id and its owner, `<instance>/<random>`.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    db: &'a Db,
    task_id: i64,
    owner: &'a str,
    length: Duration,
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// The lease was extended.
    Held,
    /// The lease was extended, and someone asked the task to stop.
    CancelRequested,
    /// The task is no longer ours: another executor took it over.
    Lost,
}

/// What an agent run produced, kept on the task.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunRecord<'a> {
    pub session_id: Option<&'a str>,
    pub turns: Option<u32>,
    pub cost_usd: Option<f64>,
    pub result_text: Option<&'a str>,
}

/// The pull request a task opened or pushed to.
#[derive(Debug, Clone, Copy)]
pub struct PullRef<'a> {
    pub number: IssueNumber,
    pub url: &'a str,
}

/// How a run ends, as [`Lease::end`] writes it.
#[derive(Debug, Clone, Copy)]
pub enum RunEnd<'a> {
    /// For good, with the reason of a failure, rejection or cancel.
    Final { ending: Ending, error: Option<&'a str>, pull: Option<PullRef<'a>> },
    /// Back to the queue after a transient failure, due at `due`.
    Retry { due: DateTime<Utc>, reason: &'a str },
    /// Back to the queue at once on another agent `profile` (a provider failure's
    /// fallback), the attempt given back.
    /// `source`: who chose the profile when it is not a fallback (`file`: the repository's
    /// `.forgehand.toml`).
    Reroute { profile: &'a str, reason: &'a str, source: Option<&'a str> },
    /// Waiting for an answer (`needs_input`): to a new `question`, or (`None`) still to the
    /// last one, the answers that came being ignored. The attempt is given back.
    Ask { question: Option<&'a str> },
}

impl Db {
    /// Claims the next queued task that is due (see [`queries::claim_next`]), for `owner`,
    /// for `length`. On PostgreSQL claims are serialised by an advisory lock, so that a
    /// profile's or repository's running count cannot be read stale by two instances.
    pub async fn claim_next(
        &self,
        owner: &str,
        length: Duration,
        limits: &queries::ClaimLimits,
    ) -> Result<Option<tasks::Model>, DbError> {
        if self.conn.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(queries::claim_next(&self.conn, owner, Utc::now() + length, limits).await?);
        }
        let txn = sea_orm::TransactionTrait::begin(&self.conn).await?;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({CLAIM_LOCK})")).await?;
        let claimed = queries::claim_next(&txn, owner, Utc::now() + length, limits).await?;
        txn.commit().await?;
        Ok(claimed)
    }

    /// Counts one pass of this process's executor looking for a task to start (whether it
    /// found one, or budgets, breakers and limits held every queued task back).
    pub fn count_claim_pass(&self) {
        self.claims.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The passes [`Db::count_claim_pass`] counted: what shows that the executor goes on
    /// looking while a task stays queued.
    pub fn claims_run(&self) -> u64 {
        self.claims.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Holds the queue of repository `scope` (`owner/name`) or, with
    /// [`queries::HOLD_ALL`], all of it: its queued tasks wait until [`Db::release_hold`].
    /// False when it was already held.
    pub async fn hold(&self, scope: &str, by: &str) -> Result<bool, DbError> {
        Ok(queries::hold(&self.conn, scope, by).await?)
    }

    /// Ends a hold; false when there was none.
    pub async fn release_hold(&self, scope: &str) -> Result<bool, DbError> {
        Ok(queries::release_hold(&self.conn, scope).await?)
    }

    /// The holds in force: scope and who held it.
    pub async fn holds(&self) -> Result<Vec<(String, String)>, DbError> {
        Ok(queries::holds(&self.conn).await?)
    }

    /// The lease `owner` holds on `task_id` (from [`Db::claim_next`]), renewed for
    /// `length` by each heartbeat.
    pub fn lease<'a>(&'a self, task_id: i64, owner: &'a str, length: Duration) -> Lease<'a> {
        Lease { db: self, task_id, owner, length }
    }

    /// Puts running tasks whose lease expired (or, with `owner_prefix`, that an earlier
    /// life of this instance held) back in the queue, or fails them when their attempts are
    /// used up. Returns the ids requeued and the ids failed.
    pub async fn requeue_abandoned(
        &self,
        owner_prefix: Option<&str>,
        max_attempts: u32,
    ) -> Result<(Vec<i64>, Vec<i64>), DbError> {
        let txn = sea_orm::TransactionTrait::begin(&self.conn).await?;
        let (requeued, failed) = queries::requeue_abandoned(&txn, owner_prefix, max_attempts).await?;
        for id in &failed {
            notify::enqueue_task(&txn, NotifyEvent::TaskFailed, *id).await?;
        }
        // Tasks this instance's last life left running: it did not stop, it crashed.
        if owner_prefix.is_some() && !(requeued.is_empty() && failed.is_empty()) {
            let detail = serde_json::json!({ "requeued": requeued, "failed": failed });
            notify::enqueue(&txn, NotifyEvent::DaemonRecovered, None, None, detail).await?;
        }
        txn.commit().await?;
        if !failed.is_empty() || owner_prefix.is_some() {
            self.outbox_written();
        }
        Ok((requeued, failed))
    }

    /// Puts every task `owner` runs back in the queue without counting the attempt: the
    /// daemon is shutting down, not failing. Returns how many.
    pub async fn release_all(&self, owner: &str) -> Result<u64, DbError> {
        Ok(queries::release_owned(&self.conn, owner, None).await?)
    }
}

impl Lease<'_> {
    /// The task this lease is on.
    pub fn task_id(&self) -> i64 {
        self.task_id
    }

    /// The executor that holds it.
    pub(super) fn owner(&self) -> &str {
        self.owner
    }

    pub(super) fn db(&self) -> &Db {
        self.db
    }

    /// Extends the lease and reads whether a cancel was requested.
    pub async fn heartbeat(&self) -> Result<Beat, DbError> {
        let until = Utc::now() + self.length;
        Ok(match queries::heartbeat(&self.db.conn, self.task_id, self.owner, until).await? {
            None => Beat::Lost,
            Some(true) => Beat::CancelRequested,
            Some(false) => Beat::Held,
        })
    }

    /// Records the branch the task works on; false when the lease is lost.
    pub async fn record_branch(&self, branch: &str) -> Result<bool, DbError> {
        self.update(vec![(Column::Branch, Value::from(Some(clean(branch, limits::BRANCH))))]).await
    }

    /// Records what the agent run produced; false when the lease is lost.
    pub async fn record_run(&self, run: &RunRecord<'_>) -> Result<bool, DbError> {
        self.update(vec![
            (Column::AgentSessionId, Value::from(run.session_id.map(str::to_owned))),
            (Column::Turns, Value::from(run.turns.map(|n| n as i32))),
            (Column::CostUsd, Value::from(run.cost_usd)),
            (Column::ResultText, Value::from(run.result_text.map(|t| clean(t, limits::RESULT_TEXT)))),
        ])
        .await
    }

    /// Records the commit just pushed, by which a failing check is known to be on
    /// forgehand's own push; false when the lease is lost.
    pub async fn record_pushed(&self, sha: &str) -> Result<bool, DbError> {
        self.update(vec![(Column::PushedSha, Value::from(Some(clean(sha, limits::BRANCH))))]).await
    }

    /// Records the agent profile and model the task runs with.
    pub async fn record_agent(&self, profile: &str, model: &str) -> Result<bool, DbError> {
        self.update(vec![
            (Column::AgentProfile, Value::from(Some(clean(profile, limits::LOGIN)))),
            (Column::AgentModel, Value::from(Some(clean(model, limits::LOGIN)))),
        ])
        .await
    }

    /// Remembers the status comment forgehand edits; false when the lease is lost.
    pub async fn record_status_comment(&self, comment_id: u64) -> Result<bool, DbError> {
        self.update(vec![(Column::StatusCommentId, Value::from(Some(comment_id as i64)))]).await
    }

    /// Writes how the run ended and gives the lease up; false when it was already lost.
    pub async fn end(&self, end: RunEnd<'_>) -> Result<bool, DbError> {
        let mut changes = vec![
            (Column::LeaseOwner, Value::from(Option::<String>::None)),
            (Column::LeaseExpiresAt, Value::from(Option::<DateTime<Utc>>::None)),
        ];
        let event = match end {
            RunEnd::Final { ending, error, pull } => {
                changes.push((Column::Error, Value::from(error.map(|e| clean(e, limits::ERROR)))));
                changes.push((Column::FinishedAt, Value::from(Some(Utc::now()))));
                if let Some(pull) = pull {
                    changes.push((Column::PrUrl, Value::from(Some(pull.url.to_owned()))));
                    changes.push((Column::PrNumber, Value::from(Some(tasks::pr_number_column(pull.number)))));
                }
                TaskEvent::Finish(ending)
            }
            RunEnd::Retry { due, reason } => {
                let reason = clean(reason, limits::ERROR);
                changes.push((Column::Error, Value::from(Some(reason.clone()))));
                changes.push((Column::NextAttemptAt, Value::from(Some(due))));
                changes.push((Column::WaitReason, Value::from(Some(reason))));
                TaskEvent::Retry
            }
            RunEnd::Reroute { profile, reason, source } => {
                if let Some(source) = source {
                    changes.push((Column::AgentSource, Value::from(Some(source.to_owned()))));
                }
                let reason = clean(reason, limits::ERROR);
                changes.push((Column::Error, Value::from(Some(reason.clone()))));
                changes.push((Column::NextAttemptAt, Value::from(Option::<DateTime<Utc>>::None)));
                changes.push((Column::WaitReason, Value::from(Some(reason))));
                changes.push((Column::AgentProfile, Value::from(Some(profile.to_owned()))));
                changes.push((Column::FallbackFrom, Value::from(Option::<String>::None)));
                return Ok(queries::reroute_owned(&self.db.conn, self.task_id, self.owner, changes).await?);
            }
            RunEnd::Ask { question } => {
                changes.push((Column::Answers, Value::from(Option::<String>::None)));
                changes.push((Column::AskedAt, Value::from(Some(Utc::now()))));
                if let Some(question) = question {
                    changes.push((Column::Question, Value::from(Some(clean(question, limits::QUESTION)))));
                    changes.push((Column::QuestionCommentId, Value::from(Option::<i64>::None)));
                }
                let txn = sea_orm::TransactionTrait::begin(&self.db.conn).await?;
                let asked =
                    queries::ask_owned(&txn, self.task_id, self.owner, question.is_some(), changes).await?;
                if asked && question.is_some() {
                    notify::enqueue_task(&txn, NotifyEvent::TaskNeedsInput, self.task_id).await?;
                }
                txn.commit().await?;
                self.db.outbox_written();
                return Ok(asked);
            }
        };
        // The notification is written with the change, so it exists exactly when the change does.
        let txn = sea_orm::TransactionTrait::begin(&self.db.conn).await?;
        let ended = queries::transition_owned(&txn, self.task_id, self.owner, event, changes).await?;
        let notice = match event {
            TaskEvent::Finish(Ending::Done) => Some(NotifyEvent::TaskDone),
            TaskEvent::Finish(Ending::Failed) => Some(NotifyEvent::TaskFailed),
            _ => None,
        };
        if ended && let Some(notice) = notice {
            notify::enqueue_task(&txn, notice, self.task_id).await?;
        }
        txn.commit().await?;
        if ended && notice.is_some() {
            self.db.outbox_written();
        }
        Ok(ended)
    }

    /// A resumed task no longer waits: its question is answered; false when the lease is lost.
    pub async fn record_resumed(&self) -> Result<bool, DbError> {
        self.update(vec![(Column::AskedAt, Value::from(Option::<DateTime<Utc>>::None))]).await
    }

    /// Puts the task back in the queue without counting the attempt (shutdown).
    pub async fn release(&self) -> Result<bool, DbError> {
        Ok(queries::release_owned(&self.db.conn, self.owner, Some(self.task_id)).await? == 1)
    }

    /// Appends a line to the task's timeline under `status`. Not fenced: history is
    /// written even after the lease ended.
    pub async fn add_event(&self, status: TaskStatus, message: &str) -> Result<(), DbError> {
        Ok(queries::add_task_event(&self.db.conn, self.task_id, status.as_str(), message).await?)
    }

    /// Appends a note (no status change) to the task's timeline. Not fenced.
    pub async fn add_note(&self, message: &str) -> Result<(), DbError> {
        Ok(queries::add_task_event(&self.db.conn, self.task_id, queries::NOTE, message).await?)
    }

    /// Queues the follow-up that instructions sent during `task`'s run asked for, on the
    /// pull request it worked on; its id. `task` is this lease's task as stored now.
    pub async fn queue_pending_follow_up(&self, task: &tasks::Model) -> Result<Option<i64>, DbError> {
        Ok(queries::queue_pending_follow_up(&self.db.conn, task).await?)
    }

    async fn update(&self, changes: Vec<(Column, Value)>) -> Result<bool, DbError> {
        Ok(queries::update_owned(&self.db.conn, self.task_id, self.owner, changes).await?)
    }
}
