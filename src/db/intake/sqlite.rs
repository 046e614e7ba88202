//! The intake store on rusqlite, for the group-commit writer's thread (`db::writer`):
//! each statement is prepared once and cached on the writer's connection, and every
//! method returns without waiting, so the rules run to their end in one poll.

use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, params};
use sea_orm::DbErr;

use super::{DeliveryRow, Instructions, IntakeStore, TaskRow};
use crate::config::RepoName;
use crate::db::entities::task_status::{TaskEvent, TaskStatus};
use crate::db::{IssueKey, Outcome, queries};
use crate::forge::IssueNumber;
use crate::trigger::{IssueContext, PushedCommit};

/// The intake statements on the writer's connection, inside its batch transaction, with
/// the batch's timestamp.
pub(in crate::db) struct SqliteStore<'a> {
    pub conn: &'a Connection,
    pub now: &'a str,
}

pub(in crate::db) fn db_err(err: rusqlite::Error) -> DbErr {
    DbErr::Custom(format!("SQLite: {err}"))
}

/// `TaskEvent::Cancel` as a statement: its target and its legal sources from the table.
static CANCEL: LazyLock<String> = LazyLock::new(|| {
    let event = TaskEvent::Cancel;
    format!(
        "UPDATE tasks SET status = '{}', error = ?1, finished_at = ?2, updated_at = ?2 \
         WHERE id = ?3 AND status IN ({})",
        event.target().as_str(),
        queries::status_list(event.sources()),
    )
});

/// The issue's trigger-label state and active task, in one statement.
static ISSUE_CONTEXT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT (SELECT present FROM label_states WHERE forge = ?1 AND repo = ?2 AND number = ?3), \
         (SELECT id FROM tasks WHERE forge = ?1 AND repo = ?2 AND number = ?3 AND {}), \
         (SELECT 1 FROM tasks WHERE forge = ?1 AND repo = ?2 AND number = ?3 AND {})",
        queries::ACTIVE_TASK_PREDICATE,
        queries::AWAITS_ANSWER_PREDICATE
    )
});

/// Whether a delivery with this id, or carrying this comment or review, is recorded.
pub(in crate::db) const SEEN_DELIVERY: &str = "SELECT EXISTS (SELECT 1 FROM deliveries WHERE forge = ?1 AND delivery_id = ?2) \
     OR (?3 IS NOT NULL AND EXISTS (SELECT 1 FROM deliveries WHERE forge = ?1 AND event_key = ?3))";

/// `TaskEvent::Answer` as a statement (see `queries::answer_statement`).
static ANSWER: LazyLock<String> = LazyLock::new(queries::answer_statement);

/// A queued task, unless the issue has an active one: the partial unique index decides,
/// its predicate spelled out so that SQLite matches the index. No `RETURNING`: SQLite runs
/// it as a trigger, which makes the statement keep a statement journal (a copy of every
/// page it changes); the row id is read from the connection instead.
static INSERT_TASK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO tasks (forge, repo, number, kind, trigger, requested_by, title, instructions, \
         clone_url, status, attempt, branch, cancel_requested, created_at, updated_at, agent_profile, priority, agent_source, \
         feedback_ref) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, '{}', 0, ?10, 0, ?11, ?11, ?12, ?13, ?14, ?15) \
         ON CONFLICT (forge, repo, number) WHERE {} DO NOTHING",
        TaskStatus::Queued.as_str(),
        queries::ACTIVE_TASK_PREDICATE
    )
});

impl IntakeStore for SqliteStore<'_> {
    /// Nothing: the delivery is inserted once, with its outcome. The writer's transaction
    /// holds the write lock from its start, so no other connection can insert it between
    /// the check and the insert. (A pending row updated later cost an `UPDATE` per delivery
    /// that moved the row in two indexes.)
    type Claim = ();

    async fn claim_delivery(&self, d: &DeliveryRow<'_>) -> Result<Option<()>, DbErr> {
        let mut read = self.conn.prepare_cached(SEEN_DELIVERY).map_err(db_err)?;
        let seen: bool =
            read.query_row(params![d.forge, d.delivery_id, d.event_key], |row| row.get(0)).map_err(db_err)?;
        Ok((!seen).then_some(()))
    }

    async fn issue_context(&self, key: &IssueKey) -> Result<IssueContext, DbErr> {
        let mut read = self.conn.prepare_cached(&ISSUE_CONTEXT).map_err(db_err)?;
        read.query_row(params![key.forge, key.repo.as_str(), i64::from(key.number)], |row| {
            let awaiting: Option<i64> = row.get(2)?;
            Ok(IssueContext {
                label_was_present: row.get(0)?,
                active_task: row.get(1)?,
                awaiting_answer: awaiting.is_some(),
                pushed: None,
            })
        })
        .map_err(db_err)
    }

    async fn pushed_commit(
        &self,
        forge: &str,
        repo: &RepoName,
        sha: &str,
    ) -> Result<Option<PushedCommit>, DbErr> {
        let mut read = self.conn.prepare_cached(queries::PUSHED_COMMIT).map_err(db_err)?;
        let found = read
            .query_row(params![forge, repo.as_str(), sha], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                ))
            })
            .optional()
            .map_err(db_err)?;
        let Some((title, requested_by, clone_url, Some(pull))) = found else { return Ok(None) };
        let Ok(number) = IssueNumber::try_from(pull) else { return Ok(None) };
        let mut read = self.conn.prepare_cached(queries::PULL_PUSHES).map_err(db_err)?;
        let pushes = read
            .query_row(params![forge, repo.as_str(), pull, sha], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .map_err(db_err)?;
        Ok(Some(queries::pushed(sha, number, (title, requested_by, clone_url), pushes)))
    }

    async fn active_task(&self, key: &IssueKey) -> Result<Option<i64>, DbErr> {
        Ok(self.issue_context(key).await?.active_task)
    }

    async fn insert_task(&self, r: TaskRow<'_>) -> Result<Option<i64>, DbErr> {
        let mut insert = self.conn.prepare_cached(&INSERT_TASK).map_err(db_err)?;
        let params = params![
            r.forge,
            r.repo,
            r.number,
            r.kind,
            r.trigger,
            r.requested_by,
            r.title,
            r.instructions,
            r.clone_url,
            r.branch,
            self.now,
            r.profile,
            r.priority,
            r.source,
            r.feedback_ref,
        ];
        let inserted = insert.execute(params).map_err(db_err)?;
        Ok((inserted == 1).then(|| self.conn.last_insert_rowid()))
    }

    async fn add_event(&self, task_id: i64, kind: &str, message: &str) -> Result<(), DbErr> {
        self.conn
            .prepare_cached("INSERT INTO task_events (task_id, at, status, message) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut s| s.execute(params![task_id, self.now, kind, message]))
            .map_err(db_err)?;
        Ok(())
    }

    async fn cancel(&self, task_id: i64, error: &str) -> Result<bool, DbErr> {
        let changed = self
            .conn
            .prepare_cached(&CANCEL)
            .and_then(|mut s| s.execute(params![error, self.now, task_id]))
            .map_err(db_err)?;
        Ok(changed == 1)
    }

    async fn request_cancel(&self, task_id: i64) -> Result<(), DbErr> {
        self.conn
            .prepare_cached("UPDATE tasks SET cancel_requested = 1, updated_at = ?1 WHERE id = ?2")
            .and_then(|mut s| s.execute(params![self.now, task_id]))
            .map_err(db_err)?;
        Ok(())
    }

    async fn instructions(&self, task_id: i64) -> Result<Option<Instructions>, DbErr> {
        type Row = (String, String, Option<String>, Option<String>);
        let row: Option<Row> = self
            .conn
            .prepare_cached(
                "SELECT status, instructions, pending_instructions, answers FROM tasks WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![task_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
                    .optional()
            })
            .map_err(db_err)?;
        let Some((status, instructions, pending, answers)) = row else { return Ok(None) };
        let status = status.parse().map_err(DbErr::Type)?;
        Ok(Some(Instructions { status, instructions, pending, answers }))
    }

    async fn set_instructions(&self, task_id: i64, text: &str) -> Result<(), DbErr> {
        self.conn
            .prepare_cached("UPDATE tasks SET instructions = ?1 WHERE id = ?2")
            .and_then(|mut s| s.execute(params![text, task_id]))
            .map_err(db_err)?;
        Ok(())
    }

    async fn set_pending_instructions(&self, task_id: i64, text: &str, by: &str) -> Result<(), DbErr> {
        self.conn
            .prepare_cached(
                "UPDATE tasks SET pending_instructions = ?1, pending_requested_by = ?2 WHERE id = ?3",
            )
            .and_then(|mut s| s.execute(params![text, by, task_id]))
            .map_err(db_err)?;
        Ok(())
    }

    async fn answer(&self, task_id: i64, answers: &str) -> Result<bool, DbErr> {
        let changed = self
            .conn
            .prepare_cached(&ANSWER)
            .and_then(|mut s| s.execute(params![answers, self.now, task_id]))
            .map_err(db_err)?;
        Ok(changed == 1)
    }

    async fn set_label_state(&self, key: &IssueKey, present: bool) -> Result<(), DbErr> {
        self.conn
            .prepare_cached(
                "INSERT INTO label_states (forge, repo, number, present, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (forge, repo, number) DO UPDATE SET present = excluded.present, \
                 updated_at = excluded.updated_at",
            )
            .and_then(|mut s| s.execute(params![key.forge, key.repo.as_str(), i64::from(key.number), present, self.now]))
            .map_err(db_err)?;
        Ok(())
    }

    async fn store_outcome(
        &self,
        _claim: (),
        d: &DeliveryRow<'_>,
        outcome: Outcome,
        reason: &str,
        task_id: Option<i64>,
    ) -> Result<(), DbErr> {
        // No conflict clause: the claim found no duplicate under the same write lock.
        let mut insert = self
            .conn
            .prepare_cached(
                "INSERT INTO deliveries (forge, delivery_id, event_key, event, action, repo, number, sender, \
                 received_at, outcome, reason, task_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .map_err(db_err)?;
        insert
            .execute(params![
                d.forge,
                d.delivery_id,
                d.event_key,
                d.event,
                d.action,
                d.repo,
                d.number.map(i64::from),
                d.sender,
                self.now,
                outcome.as_str(),
                reason,
                task_id
            ])
            .map_err(db_err)?;
        // Counted by the writer, once per outcome for its whole batch (`count_outcomes`).
        Ok(())
    }
}

/// Counts the outcomes of a batch's recorded deliveries, one statement per outcome
/// instead of one per delivery (what `IntakeStore::store_outcome` does elsewhere).
pub(in crate::db) fn count_outcomes(
    conn: &Connection,
    outcomes: impl IntoIterator<Item = Outcome>,
) -> Result<(), DbErr> {
    let mut counts: Vec<(Outcome, i64)> = Vec::new();
    for outcome in outcomes {
        match counts.iter_mut().find(|(counted, _)| *counted == outcome) {
            Some((_, n)) => *n += 1,
            None => counts.push((outcome, 1)),
        }
    }
    let mut count =
        conn.prepare_cached(queries::count_deliveries_sql(sea_orm::DbBackend::Sqlite)).map_err(db_err)?;
    for (outcome, n) in counts {
        // One shard: on SQLite a single writer counts, with nobody to wait for.
        count.execute(params![outcome.as_str(), 0, n]).map_err(db_err)?;
    }
    Ok(())
}
