//! The intake store on sea-orm: any connection or transaction, PostgreSQL or SQLite.

use sea_orm::{ConnectionTrait, DbErr};

use super::{DeliveryRow, Instructions, IntakeStore, TaskRow};
use crate::config::RepoName;
use crate::db::{IssueKey, Outcome, TaskStatus, queries};
use crate::trigger::{IssueContext, PushedCommit};

/// The intake statements on `C`, usually a transaction.
pub(in crate::db) struct SeaStore<'a, C>(pub &'a C);

/// The cancel rule (`super::cancel_task`) outside intake: the dashboard's cancel.
pub(in crate::db) async fn cancel_task(
    db: &impl ConnectionTrait,
    task_id: i64,
    reason: &str,
) -> Result<TaskStatus, DbErr> {
    super::cancel_task(&SeaStore(db), task_id, reason).await
}

impl<C: ConnectionTrait> IntakeStore for SeaStore<'_, C> {
    /// The pending row's id. The insert comes first so that the transaction holds the
    /// write lock from its start: on SQLite a read-then-write transaction can fail instead
    /// of waiting, and on PostgreSQL a second instance with the same delivery waits on the
    /// unique index.
    type Claim = i64;

    async fn claim_delivery(&self, row: &DeliveryRow<'_>) -> Result<Option<i64>, DbErr> {
        queries::insert_delivery(self.0, row).await
    }

    async fn issue_context(&self, key: &IssueKey) -> Result<IssueContext, DbErr> {
        queries::issue_context(self.0, key).await
    }

    async fn pushed_commit(
        &self,
        forge: &str,
        repo: &RepoName,
        sha: &str,
    ) -> Result<Option<PushedCommit>, DbErr> {
        queries::pushed_commit(self.0, forge, repo, sha).await
    }

    async fn active_task(&self, key: &IssueKey) -> Result<Option<i64>, DbErr> {
        Ok(queries::active_task(self.0, key).await?.map(|task| task.id))
    }

    async fn insert_task(&self, row: TaskRow<'_>) -> Result<Option<i64>, DbErr> {
        queries::insert_task_row(self.0, row).await
    }

    async fn add_event(&self, task_id: i64, kind: &str, message: &str) -> Result<(), DbErr> {
        queries::insert_task_event(self.0, task_id, kind, message).await
    }

    async fn cancel(&self, task_id: i64, error: &str) -> Result<bool, DbErr> {
        queries::cancel_at_once(self.0, task_id, error).await
    }

    async fn request_cancel(&self, task_id: i64) -> Result<(), DbErr> {
        queries::request_cancel(self.0, task_id).await
    }

    async fn instructions(&self, task_id: i64) -> Result<Option<Instructions>, DbErr> {
        queries::instructions(self.0, task_id).await
    }

    async fn set_instructions(&self, task_id: i64, text: &str) -> Result<(), DbErr> {
        queries::set_instructions(self.0, task_id, text).await
    }

    async fn set_pending_instructions(&self, task_id: i64, text: &str, by: &str) -> Result<(), DbErr> {
        queries::set_pending_instructions(self.0, task_id, text, by).await
    }

    async fn answer(&self, task_id: i64, answers: &str) -> Result<bool, DbErr> {
        queries::answer(self.0, task_id, answers).await
    }

    async fn set_label_state(&self, key: &IssueKey, present: bool) -> Result<(), DbErr> {
        queries::set_label_state(self.0, key, present).await
    }

    async fn store_outcome(
        &self,
        row_id: i64,
        _row: &DeliveryRow<'_>,
        outcome: Outcome,
        reason: &str,
        task_id: Option<i64>,
    ) -> Result<(), DbErr> {
        queries::set_delivery_outcome(self.0, row_id, outcome.as_str(), reason, task_id).await
    }
}
