//! Group commit for intake on SQLite: one writer task records waiting deliveries in a
//! single transaction, one savepoint each, and answers every caller only after that
//! transaction committed. One fsync then serves a whole batch instead of one delivery.
//!
//! The caller keeps its `decide` closure (it borrows the request): the writer sends it
//! the issue context read inside the batch, and waits for the decision before the next
//! item, so items see each other's writes exactly as consecutive transactions would.

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use super::{NewDelivery, Recorded};
use crate::trigger::{Decision, IssueContext};

/// Most deliveries committed together. Larger batches save little once the fsync is
/// shared, and make the first caller of a batch wait longer.
const MAX_BATCH: usize = 128;

/// Deliveries waiting for the writer; senders wait beyond this (back-pressure).
const QUEUE: usize = 1024;

/// One delivery on its way through the writer.
struct Item {
    delivery: NewDelivery,
    context: oneshot::Sender<IssueContext>,
    decision: oneshot::Receiver<Decision>,
    done: oneshot::Sender<Result<Recorded, DbErr>>,
}

/// A handle on the writer task; the task ends when the last handle is dropped.
#[derive(Clone, Debug)]
pub(super) struct Writer {
    queue: mpsc::Sender<Item>,
}

impl Writer {
    /// Starts the writer task on `conn`.
    pub(super) fn start(conn: DatabaseConnection) -> Writer {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(conn, receiver));
        Writer { queue }
    }

    /// Records `delivery` in the next batch; returns once that batch committed.
    pub(super) async fn record(
        &self,
        delivery: NewDelivery,
        decide: impl FnOnce(&IssueContext) -> Decision + Send,
    ) -> Result<Recorded, DbErr> {
        let (context_tx, context_rx) = oneshot::channel();
        let (decision_tx, decision_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let item = Item { delivery, context: context_tx, decision: decision_rx, done: done_tx };
        self.queue.send(item).await.map_err(|_| stopped())?;
        // No context comes for a duplicate or a failed item: then there is nothing to decide.
        if let Ok(context) = context_rx.await {
            let _ = decision_tx.send(decide(&context));
        }
        done_rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> DbErr {
    DbErr::Custom("the database writer stopped; restart forgehand".into())
}

async fn run(conn: DatabaseConnection, mut receiver: mpsc::Receiver<Item>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write_batch(&conn, std::mem::take(&mut batch)).await;
    }
}

/// Records `items` in one transaction and answers them once it committed.
async fn write_batch(conn: &DatabaseConnection, items: Vec<Item>) {
    let txn = match conn.begin().await {
        Ok(txn) => txn,
        Err(err) => return fail_all(items.into_iter().map(|item| item.done), &err),
    };
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let result = record_item(&txn, &item.delivery, item.context, item.decision).await;
        results.push((item.done, result));
    }
    match txn.commit().await {
        Ok(()) => {
            for (done, result) in results {
                let _ = done.send(result);
            }
        }
        Err(err) => fail_all(results.into_iter().map(|(done, _)| done), &err),
    }
}

fn fail_all(waiters: impl Iterator<Item = oneshot::Sender<Result<Recorded, DbErr>>>, err: &DbErr) {
    for done in waiters {
        let _ =
            done.send(Err(DbErr::Custom(format!("the batch of deliveries could not be committed: {err}"))));
    }
}

/// One item inside its own savepoint, so that its failure leaves the rest of the batch.
async fn record_item(
    txn: &DatabaseTransaction,
    delivery: &NewDelivery,
    context: oneshot::Sender<IssueContext>,
    decision: oneshot::Receiver<Decision>,
) -> Result<Recorded, DbErr> {
    let savepoint = txn.begin().await?;
    match steps(&savepoint, delivery, context, decision).await {
        Ok(recorded) => {
            savepoint.commit().await?;
            Ok(recorded)
        }
        Err(err) => {
            savepoint.rollback().await?;
            Err(err)
        }
    }
}

async fn steps(
    txn: &DatabaseTransaction,
    delivery: &NewDelivery,
    context: oneshot::Sender<IssueContext>,
    decision: oneshot::Receiver<Decision>,
) -> Result<Recorded, DbErr> {
    let Some(started) = super::start_record(txn, delivery).await? else {
        return Ok(Recorded::Duplicate);
    };
    let gone = || DbErr::Custom("the request went away before its delivery was decided".into());
    context.send(started.context).map_err(|_| gone())?;
    let decision = decision.await.map_err(|_| gone())?;
    super::finish_record(txn, delivery, &started, decision).await
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
            Some(path),
        ))
        .await
        .unwrap();
        Migrator::up(&conn, None).await.unwrap();
        let writer = Writer::start(conn.clone());

        let calls = (0..40).map(|i| {
            let writer = writer.clone();
            async move {
                let id = if i == 39 { "d-0".to_owned() } else { format!("d-{i}") };
                if i == 7 {
                    writer.record(delivery(&id), broken).await
                } else {
                    writer.record(delivery(&id), ignore).await
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
        let again = writer.record(delivery("d-7"), ignore).await.unwrap();
        assert!(matches!(again, Recorded::Outcome { outcome: Outcome::Ignored, .. }), "{again:?}");
    }
}
