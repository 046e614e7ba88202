//! Retention: deleting what is older than `[storage]` says, in bounded batches, so that a
//! table of millions of rows never takes a long lock or a huge transaction. Every batch is
//! one statement of its own; running it twice, or on two instances at once, deletes each
//! row once and counts it once (a count is what the statements actually deleted).
//!
//! Never deleted: a delivery that points at an active task, an active task's detail, and
//! task rows themselves (the dashboard's history and figures read them).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Value};

use super::entities::task_status::TaskStatus;
use super::queries::{ACTIVE_TASK_PREDICATE, statement, status_list};
use super::{Db, DbError};

/// Rows deleted by one statement.
pub const BATCH_ROWS: u64 = 1000;
/// Transcript chunks deleted by one statement (each up to 256 KiB).
const BATCH_CHUNKS: u64 = 50;
/// Finished tasks whose detail is removed together.
const BATCH_TASKS: u64 = 100;

/// What the detail of finished tasks came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetailPruned {
    /// Tasks whose detail was removed (marked `detail_removed_at`).
    pub tasks: u64,
    /// Timeline rows (`task_events`).
    pub events: u64,
    /// Phase rows (`task_steps`).
    pub steps: u64,
    /// Stored transcript chunks.
    pub transcript_chunks: u64,
}

/// Which database, and how large it is when that is cheap to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSize {
    /// `sqlite` or `postgres`.
    pub kind: &'static str,
    pub bytes: Option<u64>,
}

/// The deliveries received before the cutoff (bound twice) that no active task needs.
/// They are found by id, which grows with time, so that intake keeps no index on
/// `received_at` (a B-tree page less in every commit, migration 16): the first delivery
/// received at or after the cutoff bounds the scan. A delivery stamped before the cutoff but
/// recorded after that one (a clock set back) waits for a later run.
pub(crate) fn old_deliveries() -> String {
    let active = status_list(TaskStatus::ACTIVE.into_iter());
    format!(
        "FROM deliveries d LEFT JOIN tasks t ON t.id = d.task_id \
         WHERE d.id < COALESCE((SELECT id FROM deliveries WHERE received_at >= ? ORDER BY id LIMIT 1), {}) \
         AND d.received_at < ? AND (t.id IS NULL OR t.status NOT IN ({active}))",
        i64::MAX
    )
}

impl Db {
    /// Deletes the deliveries received before `before`, except those pointing at an
    /// active task; with `dry_run` counts them.
    pub async fn prune_deliveries(&self, before: DateTime<Utc>, dry_run: bool) -> Result<u64, DbError> {
        let matching = old_deliveries();
        let values = vec![before.into(), before.into()];
        if dry_run {
            return self.count(&format!("SELECT COUNT(*) AS n {matching}"), values).await;
        }
        // On PostgreSQL instances share the work instead of waiting on each other's rows.
        let skip = if self.backend() == DbBackend::Postgres { " FOR UPDATE OF d SKIP LOCKED" } else { "" };
        let sql = format!(
            "DELETE FROM deliveries WHERE id IN (SELECT d.id {matching} ORDER BY d.id LIMIT {BATCH_ROWS}{skip})"
        );
        self.delete_in_batches(&sql, values).await
    }

    /// Deletes the refused deliveries received before `before`; with `dry_run` counts them.
    pub async fn prune_refusals(&self, before: DateTime<Utc>, dry_run: bool) -> Result<u64, DbError> {
        let matching = "FROM refused_deliveries WHERE received_at < ?";
        if dry_run {
            return self.count(&format!("SELECT COUNT(*) AS n {matching}"), vec![before.into()]).await;
        }
        let sql =
            format!("DELETE FROM refused_deliveries WHERE id IN (SELECT id {matching} LIMIT {BATCH_ROWS})");
        self.delete_in_batches(&sql, vec![before.into()]).await
    }

    /// Removes the timeline, steps and stored transcript of tasks that finished before
    /// `before` (the task rows stay); with `dry_run` counts them.
    pub async fn prune_task_detail(
        &self,
        before: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<DetailPruned, DbError> {
        let old = format!(
            "SELECT id FROM tasks WHERE detail_removed_at IS NULL AND finished_at IS NOT NULL \
             AND finished_at < ? AND NOT ({ACTIVE_TASK_PREDICATE})"
        );
        if dry_run {
            return self.count_detail(&old, before).await;
        }
        let mut pruned = DetailPruned::default();
        loop {
            let sql = format!("{old} ORDER BY finished_at LIMIT {BATCH_TASKS}");
            let rows = self.conn.query_all_raw(statement(self.backend(), &sql, vec![before.into()])).await?;
            let ids = rows.iter().map(|row| row.try_get::<i64>("", "id")).collect::<Result<Vec<_>, _>>()?;
            if ids.is_empty() {
                return Ok(pruned);
            }
            self.remove_detail(&ids, &mut pruned).await?;
        }
    }

    /// The ids of the active tasks (whose files the cleanup leaves alone).
    pub async fn active_task_ids(&self) -> Result<HashSet<i64>, DbError> {
        let sql = format!("SELECT id FROM tasks WHERE {ACTIVE_TASK_PREDICATE}");
        let rows = self.conn.query_all_raw(statement(self.backend(), &sql, vec![])).await?;
        Ok(rows.iter().map(|row| row.try_get::<i64>("", "id")).collect::<Result<_, _>>()?)
    }

    /// The database's kind and size (SQLite: its pages; PostgreSQL: `pg_database_size`).
    pub async fn database_size(&self) -> Result<DatabaseSize, DbError> {
        let (kind, sql) = match self.backend() {
            DbBackend::Postgres => {
                ("postgres", "SELECT CAST(pg_database_size(current_database()) AS BIGINT) AS n")
            }
            _ => {
                ("sqlite", "SELECT page_count * page_size AS n FROM pragma_page_count(), pragma_page_size()")
            }
        };
        let bytes = self.count(sql, vec![]).await.ok();
        Ok(DatabaseSize { kind, bytes })
    }

    /// Deletes the detail of the tasks `ids`, a batch per statement, then marks them.
    async fn remove_detail(&self, ids: &[i64], pruned: &mut DetailPruned) -> Result<(), DbError> {
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        let by_id = |table: &str| {
            format!(
                "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE task_id IN ({list}) LIMIT {BATCH_ROWS})"
            )
        };
        pruned.events += self.delete_in_batches(&by_id("task_events"), vec![]).await?;
        pruned.steps += self.delete_in_batches(&by_id("task_steps"), vec![]).await?;
        for id in ids {
            let sql = format!(
                "DELETE FROM transcript_chunks WHERE task_id = {id} AND byte_offset IN \
                 (SELECT byte_offset FROM transcript_chunks WHERE task_id = {id} ORDER BY byte_offset LIMIT {BATCH_CHUNKS})"
            );
            pruned.transcript_chunks += self.delete_in_batches(&sql, vec![]).await?;
        }
        // Only the instance whose update marks a task counts it.
        let sql = format!(
            "UPDATE tasks SET detail_removed_at = ? WHERE id IN ({list}) AND detail_removed_at IS NULL"
        );
        let marked = self.conn.execute_raw(statement(self.backend(), &sql, vec![Utc::now().into()])).await?;
        pruned.tasks += marked.rows_affected();
        Ok(())
    }

    async fn count_detail(&self, old: &str, before: DateTime<Utc>) -> Result<DetailPruned, DbError> {
        let of = |table: &str| format!("SELECT COUNT(*) AS n FROM {table} WHERE task_id IN ({old})");
        Ok(DetailPruned {
            tasks: self.count(&format!("SELECT COUNT(*) AS n FROM ({old}) old"), vec![before.into()]).await?,
            events: self.count(&of("task_events"), vec![before.into()]).await?,
            steps: self.count(&of("task_steps"), vec![before.into()]).await?,
            transcript_chunks: self.count(&of("transcript_chunks"), vec![before.into()]).await?,
        })
    }

    /// Runs the bounded `DELETE` until a run deletes nothing; returns the rows deleted.
    async fn delete_in_batches(&self, sql: &str, values: Vec<Value>) -> Result<u64, DbError> {
        let mut deleted = 0;
        loop {
            let result = self.conn.execute_raw(statement(self.backend(), sql, values.clone())).await?;
            if result.rows_affected() == 0 {
                return Ok(deleted);
            }
            deleted += result.rows_affected();
        }
    }

    async fn count(&self, sql: &str, values: Vec<Value>) -> Result<u64, DbError> {
        let row = self.conn.query_one_raw(statement(self.backend(), sql, values)).await?;
        let n: Option<i64> = row.map(|row| row.try_get("", "n")).transpose()?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }
}
