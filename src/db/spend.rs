//! What tasks spent, from the cost each records (`tasks.cost_usd`), per UTC day and month:
//! what budget caps are checked against.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use sea_orm::ConnectionTrait;

use super::entities::tasks::{self, Column};
use super::{Db, DbError};

/// Spend since the start of the UTC day and of the UTC month, in US dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    pub day: f64,
    pub month: f64,
}

/// Spend over all repositories, and per repository (`owner/name` in lower case).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpendReport {
    pub total: Spend,
    pub by_repo: Vec<(String, Spend)>,
}

impl SpendReport {
    /// The spend of `repo` (any case); nothing spent when it has no row.
    pub fn repo(&self, repo: &str) -> Spend {
        let repo = repo.to_ascii_lowercase();
        self.by_repo.iter().find(|(name, _)| *name == repo).map(|(_, spend)| *spend).unwrap_or_default()
    }
}

/// The start of `now`'s UTC day and UTC month.
pub fn periods(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let day = Utc.from_utc_datetime(&now.date_naive().and_hms_opt(0, 0, 0).expect("midnight exists"));
    let first = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).expect("the 1st exists");
    let month = Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0).expect("midnight exists"));
    (day, month)
}

impl Db {
    /// Remembers the status comment posted on a queued task that has none yet (no lease
    /// to fence it: the task waits); false when it had one or is no longer queued.
    pub async fn record_waiting_comment(&self, task_id: i64, comment_id: u64) -> Result<bool, DbError> {
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let done = tasks::Entity::update_many()
            .col_expr(Column::StatusCommentId, Expr::value(Some(comment_id as i64)))
            .filter(Column::Id.eq(task_id))
            .filter(Column::Status.eq(super::TaskStatus::Queued))
            .filter(Column::StatusCommentId.is_null())
            .exec(&self.conn)
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// Marks the queued tasks (of `repo`, or all) as waiting for `reason`, a spent budget;
    /// the ids of those not marked so before (see [`super::queries::mark_waiting`]).
    pub async fn mark_budget_wait(&self, repo: Option<&str>, reason: &str) -> Result<Vec<i64>, DbError> {
        use sea_orm::TransactionTrait;
        let txn = self.conn.begin().await?;
        let ids = super::queries::mark_waiting(&txn, repo, reason).await?;
        if !ids.is_empty() {
            // Once per wait, in the transaction that starts it: the sinks hear it once too.
            let payload = serde_json::json!({ "reason": reason, "tasks": ids });
            super::notify::enqueue(&txn, super::notify::NotifyEvent::BudgetReached, None, repo, payload)
                .await?;
        }
        txn.commit().await?;
        Ok(ids)
    }

    /// What tasks spent this UTC day and month: a task's cost counts in the period it was
    /// last recorded in (its end, or its last change while it runs).
    pub async fn spend(&self, now: DateTime<Utc>) -> Result<SpendReport, DbError> {
        let (day, month) = periods(now);
        let backend = self.conn.get_database_backend();
        let sql = "SELECT LOWER(repo) AS repo, \
                   SUM(CASE WHEN COALESCE(finished_at, updated_at) >= ? THEN cost_usd ELSE 0 END) AS day, \
                   SUM(cost_usd) AS month FROM tasks \
                   WHERE cost_usd IS NOT NULL AND COALESCE(finished_at, updated_at) >= ? GROUP BY LOWER(repo)";
        let statement = super::queries::statement(backend, sql, vec![day.into(), month.into()]);
        let rows = self.conn.query_all_raw(statement).await?;
        let mut report = SpendReport::default();
        for row in rows {
            let repo: String = row.try_get("", "repo")?;
            let spend = Spend {
                day: row.try_get::<Option<f64>>("", "day")?.unwrap_or(0.0),
                month: row.try_get::<Option<f64>>("", "month")?.unwrap_or(0.0),
            };
            report.total.day += spend.day;
            report.total.month += spend.month;
            report.by_repo.push((repo, spend));
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_at_utc_midnight_and_the_first() {
        let now = Utc.with_ymd_and_hms(2026, 12, 5, 23, 59, 1).unwrap();
        let (day, month) = periods(now);
        assert_eq!(day, Utc.with_ymd_and_hms(2026, 12, 5, 0, 0, 0).unwrap());
        assert_eq!(month, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
    }
}
