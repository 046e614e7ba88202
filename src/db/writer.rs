//! Group commit for intake on SQLite: one writer thread, with its own SQLite connection,
//! records waiting deliveries in a single transaction (again with a savepoint each when
//! one of them fails, so that only that one is refused), and answers
//! every caller only after that transaction committed. One fsync then serves a whole
//! batch instead of one delivery.
//!
//! The thread runs the statements itself (prepared once, cached), so a delivery costs two
//! thread hand-offs (in, answered) instead of a round trip to a database worker thread per
//! statement: on a busy machine each hand-off waits for a core, and that wait, not SQLite,
//! was what limited intake. It decides each delivery (`Decide`, owned by the item) against
//! what the transaction holds, so items see each other's writes exactly as consecutive
//! transactions would.

use std::path::PathBuf;

use chrono::{SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use sea_orm::DbErr;
use tokio::sync::{mpsc, oneshot};

use super::{IssueKey, NewDelivery, Outcome, Recorded, TaskStatus, clean};
use crate::trigger::{Decision, IssueContext, TaskRequest};

/// Most deliveries committed together. Larger batches save little once the fsync is
/// shared, and make the first caller of a batch wait longer.
const MAX_BATCH: usize = 128;

/// Deliveries waiting for the writer; senders wait beyond this (back-pressure).
const QUEUE: usize = 1024;

/// What the trigger rules make of a delivery, given what the database knows about its
/// issue. Owned, so that the writer thread decides without a round trip to the request.
pub(super) type Decide = Box<dyn Fn(&IssueContext) -> Decision + Send + Sync>;

/// One delivery on its way through the writer.
struct Item {
    delivery: NewDelivery,
    decide: Decide,
    done: oneshot::Sender<Result<Recorded, DbErr>>,
}

/// A handle on the writer thread; the thread ends when the last handle is dropped.
#[derive(Clone, Debug)]
pub(super) struct Writer {
    queue: mpsc::Sender<Item>,
}

impl Writer {
    /// Starts the writer thread on the SQLite file at `path` (already created; its schema
    /// may be migrated after this returns: statements are prepared on first use).
    pub(super) fn start(path: PathBuf) -> std::io::Result<Writer> {
        let (queue, receiver) = mpsc::channel(QUEUE);
        std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || run(&path, receiver))?;
        Ok(Writer { queue })
    }

    /// Records `delivery` in the next batch; returns once that batch committed.
    pub(super) async fn record(&self, delivery: NewDelivery, decide: Decide) -> Result<Recorded, DbErr> {
        let (done, answer) = oneshot::channel();
        self.queue.send(Item { delivery, decide, done }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> DbErr {
    DbErr::Custom("the database writer stopped; restart forgehand".into())
}

fn db_err(err: rusqlite::Error) -> DbErr {
    DbErr::Custom(format!("SQLite: {err}"))
}

/// Opens the writer's connection with the settings of the pool's (see `sqlite_options`).
fn open(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // The pool already put the file in WAL mode, which persists. FULL: a commit is on disk
    // before forgehand answers the forge.
    // temp_store: in a batch run again, each delivery's savepoint copies the pages it
    // changes to a sub-journal, which otherwise spills to a temporary file (a third of the
    // writer's time in perf when every delivery had one).
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn run(path: &std::path::Path, mut receiver: mpsc::Receiver<Item>) {
    let mut conn = match open(path) {
        Ok(conn) => Some(conn),
        Err(err) => {
            tracing::error!(error = %err, path = %path.display(), "the intake writer cannot open the database");
            None
        }
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(item) = receiver.blocking_recv() {
        batch.push(item);
        while batch.len() < MAX_BATCH
            && let Ok(item) = receiver.try_recv()
        {
            batch.push(item);
        }
        let items = std::mem::take(&mut batch);
        match conn.as_mut() {
            Some(conn) => write_batch(conn, items),
            None => fail_all(items, "the intake writer could not open the database file; see the log"),
        }
    }
}

/// Records `items` in one transaction and answers them once it committed. The items run
/// without savepoints first; when one fails, that transaction is rolled back and the batch
/// runs again with a savepoint per item, so that only the failing one is refused.
fn write_batch(conn: &mut Connection, items: Vec<Item>) {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::AutoSi, false);
    let outcome = match run_batch(conn, &items, &now, false) {
        Ok(None) => run_batch(conn, &items, &now, true),
        other => other,
    };
    match outcome {
        Ok(Some(results)) => {
            for (item, result) in items.into_iter().zip(results) {
                let _ = item.done.send(result);
            }
        }
        Ok(None) => fail_all(items, "a delivery failed even on its own"),
        Err(err) => fail_all(items, &err),
    }
}

/// Every item's result once the transaction committed; `None` when an item failed
/// without `isolated` (the transaction is then rolled back); `Err` when the transaction
/// could not begin or commit.
fn run_batch(
    conn: &mut Connection,
    items: &[Item],
    now: &str,
    isolated: bool,
) -> Result<Option<Vec<Result<Recorded, DbErr>>>, String> {
    let txn = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|err| err.to_string())?;
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let result = if isolated {
            record_item(&txn, &item.delivery, &item.decide, now)
        } else {
            steps(&txn, &item.delivery, &item.decide, now)
        };
        if result.is_err() && !isolated {
            // Dropping the transaction rolls it back.
            return Ok(None);
        }
        results.push(result);
    }
    txn.commit().map_err(|err| err.to_string())?;
    Ok(Some(results))
}

fn committed_err(err: &str) -> DbErr {
    DbErr::Custom(format!("the batch of deliveries could not be committed: {err}"))
}

fn fail_all(items: Vec<Item>, err: &str) {
    for item in items {
        let _ = item.done.send(Err(committed_err(err)));
    }
}

/// One item inside its own savepoint, so that its failure leaves the rest of the batch.
fn record_item(
    conn: &Connection,
    delivery: &NewDelivery,
    decide: &Decide,
    now: &str,
) -> Result<Recorded, DbErr> {
    conn.execute_batch("SAVEPOINT delivery").map_err(db_err)?;
    match steps(conn, delivery, decide, now) {
        Ok(recorded) => {
            conn.execute_batch("RELEASE delivery").map_err(db_err)?;
            Ok(recorded)
        }
        Err(err) => {
            conn.execute_batch("ROLLBACK TO delivery; RELEASE delivery").map_err(db_err)?;
            Err(err)
        }
    }
}

fn steps(conn: &Connection, delivery: &NewDelivery, decide: &Decide, now: &str) -> Result<Recorded, DbErr> {
    let Some(row_id) = insert_delivery(conn, delivery, now).map_err(db_err)? else {
        return Ok(Recorded::Duplicate);
    };
    let key = super::issue_key(delivery);
    let context = match &key {
        Some(key) => issue_context(conn, key).map_err(db_err)?,
        None => IssueContext::default(),
    };
    let (outcome, reason, task_id) = apply(conn, delivery, key.as_ref(), decide(&context), now)?;
    if let (Some(key), Some(present)) = (&key, delivery.label_present) {
        set_label_state(conn, key, present, now).map_err(db_err)?;
    }
    conn.prepare_cached("UPDATE deliveries SET outcome = ?1, reason = ?2, task_id = ?3 WHERE id = ?4")
        .and_then(|mut s| s.execute(params![outcome.as_str(), clean(&reason, 2000), task_id, row_id]))
        .map_err(db_err)?;
    Ok(Recorded::Outcome { outcome, reason, task_id })
}

/// Inserts the delivery unless one with the same forge and id, or carrying the same
/// comment or review, exists (either unique index); its row id, `None` for a duplicate.
fn insert_delivery(conn: &Connection, d: &NewDelivery, now: &str) -> rusqlite::Result<Option<i64>> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO deliveries (forge, delivery_id, event_key, event, action, repo, number, sender, \
         received_at, outcome, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', '') \
         ON CONFLICT DO NOTHING RETURNING id",
    )?;
    insert
        .query_row(
            params![
                d.forge,
                clean(&d.delivery_id, 200),
                d.event_key,
                clean(&d.event, 100),
                d.action.as_deref().map(|a| clean(a, 100)),
                d.repo.as_deref().map(|r| clean(r, 300)),
                d.number,
                d.sender.as_deref().map(|s| clean(s, 200)),
                now,
            ],
            |row| row.get(0),
        )
        .optional()
}

/// The issue's trigger-label state and active task, in one statement.
fn issue_context(conn: &Connection, key: &IssueKey) -> rusqlite::Result<IssueContext> {
    let mut read = conn.prepare_cached(
        "SELECT (SELECT present FROM label_states WHERE forge = ?1 AND repo = ?2 AND number = ?3), \
         (SELECT id FROM tasks WHERE forge = ?1 AND repo = ?2 AND number = ?3 \
          AND status IN ('queued', 'running'))",
    )?;
    read.query_row(params![key.forge, key.repo, key.number], |row| {
        Ok(IssueContext { label_was_present: row.get(0)?, active_task: row.get(1)? })
    })
}

fn set_label_state(conn: &Connection, key: &IssueKey, present: bool, now: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO label_states (forge, repo, number, present, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (forge, repo, number) DO UPDATE SET present = excluded.present, updated_at = excluded.updated_at",
    )?
    .execute(params![key.forge, key.repo, key.number, present, now])?;
    Ok(())
}

/// Applies the decision, as `super::apply_decision` does on the other backends.
fn apply(
    conn: &Connection,
    delivery: &NewDelivery,
    key: Option<&IssueKey>,
    decision: Decision,
    now: &str,
) -> Result<(Outcome, String, Option<i64>), DbErr> {
    let by = delivery.sender.as_deref().unwrap_or("unknown");
    match decision {
        Decision::Ignore(reason) => Ok((Outcome::Ignored, reason, None)),
        Decision::Create(request) => match insert_task(conn, &delivery.forge, &request, now)
            .map_err(db_err)?
        {
            Some(id) => {
                add_event(conn, id, TaskStatus::Queued.as_str(), &super::queued_message(delivery, by), now)?;
                Ok((Outcome::TaskCreated, super::queued_reason(id), Some(id)))
            }
            None => {
                let active = match key {
                    Some(key) => issue_context(conn, key).map_err(db_err)?.active_task,
                    None => None,
                };
                let text = &request.instructions;
                let addition = (!text.is_empty()).then(|| format!("@{}: {text}", request.requested_by));
                coalesce(conn, active, delivery, by, addition, now)
            }
        },
        Decision::Coalesce { task_id, instructions } => {
            coalesce(conn, Some(task_id), delivery, by, instructions, now)
        }
        Decision::Cancel { task_id, reason } => {
            let status = cancel_task(conn, task_id, &reason, now)?;
            Ok((Outcome::CancelledTask, super::cancelled_reason(task_id, status, &reason), Some(task_id)))
        }
    }
}

fn coalesce(
    conn: &Connection,
    task_id: Option<i64>,
    delivery: &NewDelivery,
    by: &str,
    instructions: Option<String>,
    now: &str,
) -> Result<(Outcome, String, Option<i64>), DbErr> {
    let Some(task_id) = task_id else {
        return Err(DbErr::Custom("a task for this issue appeared and vanished during the delivery".into()));
    };
    if let Some(text) = instructions {
        add_instructions(conn, task_id, by, &text).map_err(db_err)?;
    }
    add_event(conn, task_id, super::queries::NOTE, &super::joined_message(delivery, by), now)?;
    Ok((Outcome::Coalesced, super::coalesced_reason(task_id), Some(task_id)))
}

/// Queues a task; `None` when another task for the issue is active (the partial unique
/// index decides; its predicate is literal so that SQLite matches the index).
fn insert_task(conn: &Connection, forge: &str, r: &TaskRequest, now: &str) -> rusqlite::Result<Option<i64>> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO tasks (forge, repo, number, kind, trigger, requested_by, title, instructions, clone_url, \
         status, attempt, branch, cancel_requested, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', 0, ?10, 0, ?11, ?11) \
         ON CONFLICT (forge, repo, number) WHERE status IN ('queued', 'running') DO NOTHING RETURNING id",
    )?;
    insert
        .query_row(
            params![
                forge,
                r.repo,
                i64::from(r.number),
                r.kind.as_str(),
                r.trigger.as_str(),
                clean(&r.requested_by, 200),
                clean(&r.title, 1000),
                clean(&r.instructions, 65_536),
                clean(&r.clone_url, 2000),
                r.branch.as_deref().map(|b| clean(b, 255)),
                now,
            ],
            |row| row.get(0),
        )
        .optional()
}

fn add_event(conn: &Connection, task_id: i64, status: &str, message: &str, now: &str) -> Result<(), DbErr> {
    conn.prepare_cached("INSERT INTO task_events (task_id, at, status, message) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut s| s.execute(params![task_id, now, status, clean(message, 4000)]))
        .map_err(db_err)?;
    Ok(())
}

/// Cancels a queued task at once; asks a running one to stop (`queries::cancel_task`).
fn cancel_task(conn: &Connection, task_id: i64, reason: &str, now: &str) -> Result<TaskStatus, DbErr> {
    let cancelled = conn
        .prepare_cached(
            "UPDATE tasks SET status = 'cancelled', error = ?1, finished_at = ?2, updated_at = ?2 \
             WHERE id = ?3 AND status = 'queued'",
        )
        .and_then(|mut s| s.execute(params![clean(reason, 2000), now, task_id]))
        .map_err(db_err)?;
    if cancelled == 1 {
        add_event(conn, task_id, TaskStatus::Cancelled.as_str(), &format!("cancelled: {reason}"), now)?;
        return Ok(TaskStatus::Cancelled);
    }
    conn.prepare_cached("UPDATE tasks SET cancel_requested = 1, updated_at = ?1 WHERE id = ?2")
        .and_then(|mut s| s.execute(params![now, task_id]))
        .map_err(db_err)?;
    add_event(conn, task_id, super::queries::NOTE, &format!("cancel requested: {reason}"), now)?;
    Ok(TaskStatus::Running)
}

/// Instructions for an active task: a queued one gets them in its own run, a running one
/// keeps them for a follow-up (`queries::add_instructions`).
fn add_instructions(conn: &Connection, task_id: i64, by: &str, text: &str) -> rusqlite::Result<()> {
    let task: Option<(String, String, Option<String>)> = conn
        .prepare_cached("SELECT status, instructions, pending_instructions FROM tasks WHERE id = ?1")?
        .query_row(params![task_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let Some((status, instructions, pending)) = task else { return Ok(()) };
    let append = |existing: Option<&str>| match existing {
        Some(existing) if !existing.is_empty() => clean(&format!("{existing}\n\n{text}"), 65_536),
        _ => clean(text, 65_536),
    };
    if status == TaskStatus::Queued.as_str() {
        conn.prepare_cached("UPDATE tasks SET instructions = ?1 WHERE id = ?2")?
            .execute(params![append(Some(&instructions)), task_id])?;
    } else {
        conn.prepare_cached(
            "UPDATE tasks SET pending_instructions = ?1, pending_requested_by = ?2 WHERE id = ?3",
        )?
        .execute(params![append(pending.as_deref()), clean(by, 200), task_id])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use migrations::{Migrator, MigratorTrait};
    use sea_orm::{Database, EntityTrait, PaginatorTrait};

    use super::*;
    use crate::db::Outcome;
    use crate::db::entities::deliveries;

    fn delivery(id: &str) -> NewDelivery {
        NewDelivery {
            forge: "github".into(),
            delivery_id: id.into(),
            event_key: None,
            event: "issues".into(),
            action: Some("labeled".into()),
            repo: Some("octo-org/hello-world".into()),
            number: Some(42),
            sender: Some("alice".into()),
            label_present: Some(false),
        }
    }

    fn ignore(_: &IssueContext) -> Decision {
        Decision::Ignore("not a trigger".into())
    }

    /// Joining a task that does not exist breaks the foreign key of its event.
    fn broken(_: &IssueContext) -> Decision {
        Decision::Coalesce { task_id: 987_654_321, instructions: None }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_failing_delivery_leaves_the_rest_of_its_batch_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writer.db");
        let conn = Database::connect(super::super::sqlite_options(
            format!("sqlite://{}", path.display()),
            Some(path.clone()),
        ))
        .await
        .unwrap();
        Migrator::up(&conn, None).await.unwrap();
        let writer = Writer::start(path.clone()).unwrap();

        let calls = (0..40).map(|i| {
            let writer = writer.clone();
            async move {
                let id = if i == 39 { "d-0".to_owned() } else { format!("d-{i}") };
                if i == 7 {
                    writer.record(delivery(&id), Box::new(broken)).await
                } else {
                    writer.record(delivery(&id), Box::new(ignore)).await
                }
            }
        });
        let results = futures_util::future::join_all(calls).await;

        assert!(results[7].is_err(), "the broken delivery must fail: {:?}", results[7]);
        let ignored = results
            .iter()
            .filter(|r| matches!(r, Ok(Recorded::Outcome { outcome: Outcome::Ignored, .. })))
            .count();
        let duplicates = results.iter().filter(|r| matches!(r, Ok(Recorded::Duplicate))).count();
        assert_eq!((ignored, duplicates), (38, 1), "{results:?}");
        assert_eq!(deliveries::Entity::find().count(&conn).await.unwrap(), 38);
        // The failed delivery left nothing behind: a redelivery is recorded, not a duplicate.
        let again = writer.record(delivery("d-7"), Box::new(ignore)).await.unwrap();
        assert!(matches!(again, Recorded::Outcome { outcome: Outcome::Ignored, .. }), "{again:?}");
    }
}
