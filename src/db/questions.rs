//! Tasks waiting for an answer: the question comment they posted, and the housekeeping of
//! any instance (questions nobody answered in time end `expired`; a task cancelled while
//! it waited has its question closed on the forge). Each change is one guarded statement,
//! so when several instances look at once exactly one acts.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::entities::task_status::{TaskEvent, TaskStatus};
use super::entities::tasks::{self, Column};
use super::notify::{self, NotifyEvent};
use super::{Db, DbError, queries};

/// How many waiting tasks one housekeeping pass looks at.
const BATCH: u64 = 100;

impl Db {
    /// Remembers the comment that asked task `task_id`'s question.
    pub async fn record_question_comment(&self, task_id: i64, comment_id: u64) -> Result<(), DbError> {
        tasks::Entity::update_many()
            .col_expr(Column::QuestionCommentId, Expr::value(Some(comment_id as i64)))
            .filter(Column::Id.eq(task_id))
            .exec(&self.conn)
            .await?;
        Ok(())
    }

    /// Ends the tasks whose question waited longer than `timeout` (`expired`, with
    /// `error`); returns them as they were.
    pub async fn expire_questions(
        &self,
        timeout: Duration,
        error: &str,
    ) -> Result<Vec<tasks::Model>, DbError> {
        let cutoff = Utc::now() - timeout;
        let overdue = tasks::Entity::find()
            .filter(Column::Status.eq(TaskStatus::NeedsInput))
            .filter(Column::AskedAt.lt(cutoff))
            .limit(BATCH)
            .all(&self.conn)
            .await?;
        let mut expired = Vec::new();
        for task in overdue {
            let update = queries::transition(TaskEvent::Unanswered)
                .col_expr(Column::AskedAt, Expr::value(Option::<DateTime<Utc>>::None))
                .col_expr(Column::Error, Expr::value(error))
                .col_expr(Column::FinishedAt, Expr::value(Utc::now()))
                .filter(Column::Id.eq(task.id))
                .filter(Column::AskedAt.lt(cutoff));
            let txn = sea_orm::TransactionTrait::begin(&self.conn).await?;
            if update.exec(&txn).await?.rows_affected == 1 {
                queries::add_task_event(
                    &txn,
                    task.id,
                    TaskStatus::Expired.as_str(),
                    &format!("expired: {error}"),
                )
                .await?;
                notify::enqueue_task(&txn, NotifyEvent::TaskExpired, task.id).await?;
                txn.commit().await?;
                self.outbox_written();
                expired.push(task);
            }
        }
        Ok(expired)
    }

    /// Takes the tasks cancelled while they waited for an answer, whose question is still
    /// open on the forge: each is returned once, to one caller.
    pub async fn take_cancelled_questions(&self) -> Result<Vec<tasks::Model>, DbError> {
        let waiting = tasks::Entity::find()
            .filter(Column::Status.eq(TaskStatus::Cancelled))
            .filter(Column::AskedAt.is_not_null())
            .limit(BATCH)
            .all(&self.conn)
            .await?;
        let mut taken = Vec::new();
        for task in waiting {
            let update = tasks::Entity::update_many()
                .col_expr(Column::AskedAt, Expr::value(Option::<DateTime<Utc>>::None))
                .filter(Column::Id.eq(task.id))
                .filter(Column::AskedAt.is_not_null());
            if update.exec(&self.conn).await?.rows_affected == 1 {
                taken.push(task);
            }
        }
        Ok(taken)
    }

    /// The ids of the tasks whose worktree must be kept for a resume: those waiting for an
    /// answer or queued with one.
    pub async fn waiting_task_ids(&self) -> Result<Vec<i64>, DbError> {
        let ids = tasks::Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(Column::AskedAt.is_not_null())
            .filter(Column::Status.is_in([TaskStatus::NeedsInput, TaskStatus::Queued]))
            .into_tuple()
            .all(&self.conn)
            .await?;
        Ok(ids)
    }
}
