//! Group commit for intake on SQLite: one writer thread, with its own SQLite connection,
//! records waiting deliveries in a single transaction (again with a savepoint each when
//! one of them fails, so that only that one is refused), and answers
//! every caller only after that transaction committed. One fsync then serves a whole
//! batch instead of one delivery.
//!
//! The thread runs the statements itself (prepared once, cached: `intake::sqlite`, under
//! the same rules as every other backend: `intake`), so a delivery costs two
//! thread hand-offs (in, answered) instead of a round trip to a database worker thread per
//! statement: on a busy machine each hand-off waits for a core, and that wait, not SQLite,
//! was what limited intake. It decides each delivery (`Decide`, owned by the item) against
//! what the transaction holds, so items see each other's writes exactly as consecutive
//! transactions would.

use std::path::PathBuf;

use chrono::{SecondsFormat, Utc};
use futures_util::FutureExt as _;
use rusqlite::Connection;
use sea_orm::DbErr;
use tokio::sync::{mpsc, oneshot};

use super::intake;
use super::intake::sqlite::{SqliteStore, count_outcomes, db_err};
use super::wal_writes;
use super::{NewDelivery, Recorded};
use crate::trigger::{Decision, IssueContext};

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

/// Opens the writer's connection with the settings of the pool's (see `sqlite_options`),
/// through the VFS that hands each commit's WAL frames to the file in one write
/// (`wal_writes`), or SQLite's own when that VFS cannot be registered.
fn open(path: &std::path::Path) -> Result<Connection, String> {
    let gathering = wal_writes::register()
        .inspect_err(|err| tracing::warn!(error = %err, "the intake writer writes its WAL frame by frame"))
        .is_ok();
    let conn = if gathering {
        Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), wal_writes::NAME)
    } else {
        Connection::open(path)
    };
    let conn = conn.map_err(|err| err.to_string())?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|err| err.to_string())?;
    // The pool already put the file in WAL mode, which persists. FULL: a commit is on disk
    // before forgehand answers the forge.
    // cache_spill OFF: no page reaches the WAL before its commit (a batch changes a few
    // hundred pages at most), which `wal_writes` relies on.
    // temp_store: in a batch run again, each delivery's savepoint copies the pages it
    // changes to a sub-journal, which otherwise spills to a temporary file (a third of the
    // writer's time in perf when every delivery had one).
    // cache_size: 16 MiB (SQLite's default is 2), grown only as pages are read. Each delivery
    // walks the table and six indexes from root to leaf; at ten million deliveries their
    // inner pages alone outgrow 2 MiB, and every delivery read them again from the file:
    // intake fell to half its rate on such a database (docs/benchmarks.md).
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA cache_spill = OFF; PRAGMA foreign_keys = ON; \
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384;",
    )
    .map_err(|err| err.to_string())?;
    if gathering {
        wal_writes::check_connection(&conn)?;
    }
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
    let recorded = results.iter().filter_map(|result| match result {
        Ok(Recorded::Outcome { outcome, .. }) => Some(*outcome),
        _ => None,
    });
    count_outcomes(&txn, recorded).map_err(|err| err.to_string())?;
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

/// The intake rules (`super::intake`) on the writer's connection. The store never waits,
/// so the rules finish in their first poll.
fn steps(conn: &Connection, delivery: &NewDelivery, decide: &Decide, now: &str) -> Result<Recorded, DbErr> {
    let store = SqliteStore { conn, now };
    intake::record(&store, delivery, |context| decide(context))
        .now_or_never()
        .unwrap_or_else(|| Err(DbErr::Custom("the SQLite intake store waited, which it never should".into())))
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
            number: Some(42.into()),
            head_sha: None,
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
        // Counted once per batch and outcome: neither the failed one nor the duplicate.
        assert_eq!(counted(&path, "ignored"), 38);
        // The failed delivery left nothing behind: a redelivery is recorded, not a duplicate.
        let again = writer.record(delivery("d-7"), Box::new(ignore)).await.unwrap();
        assert!(matches!(again, Recorded::Outcome { outcome: Outcome::Ignored, .. }), "{again:?}");
        assert_eq!(counted(&path, "ignored"), 39);
    }

    /// The deliveries `delivery_totals` counts with `outcome`.
    fn counted(path: &std::path::Path, outcome: &str) -> i64 {
        let conn = Connection::open(path).unwrap();
        conn.query_row(
            "SELECT COALESCE(SUM(n), 0) FROM delivery_totals WHERE outcome = ?1",
            [outcome],
            |row| row.get(0),
        )
        .unwrap()
    }
}
