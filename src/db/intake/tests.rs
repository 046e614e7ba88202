//! The same deliveries through both stores leave the same rows.

use migrations::{Migrator, MigratorTrait};
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder, TransactionTrait};

use super::*;
use crate::db::entities::{deliveries, task_events, tasks};
use crate::db::{queries, sqlite_options, writer::Writer};
use crate::trigger::{TaskKind, TriggerKind};

fn delivery(id: &str) -> NewDelivery {
    NewDelivery {
        forge: "github".into(),
        delivery_id: id.into(),
        event_key: None,
        event: "issue_comment".into(),
        action: Some("created".into()),
        repo: Some("octo-org/hello-world".into()),
        number: Some(42.into()),
        head_sha: None,
        sender: Some("alice\0".into()),
        label_present: Some(true),
    }
}

fn create(_: &IssueContext) -> Decision {
    Decision::Create(TaskRequest {
        kind: TaskKind::Implement,
        trigger: TriggerKind::Comment,
        repo: "octo-org/hello-world".into(),
        clone_url: "https://example.com/octo-org/hello-world.git".into(),
        number: 42.into(),
        title: "x".repeat(limits::TITLE + 5),
        requested_by: "alice".into(),
        instructions: "first".into(),
        branch: None,
        routing: Default::default(),
        feedback_ref: None,
    })
}

fn join(context: &IssueContext) -> Decision {
    let task_id = context.active_task.expect("an active task");
    Decision::Coalesce { task_id, instructions: Some("more".into()) }
}

fn cancel(context: &IssueContext) -> Decision {
    let task_id = context.active_task.expect("an active task");
    Decision::Cancel { task_id, reason: "the label was removed".into() }
}

type Decider = fn(&IssueContext) -> Decision;

/// Queued: created, a duplicate, joined twice (one lost insert race), cancelled. Then
/// again, then claimed: joined (kept for a follow-up), asked to stop.
const SCRIPT: [(&str, Decider, bool); 9] = [
    ("d-1", create, false),
    ("d-1", create, false),
    ("d-2", create, false),
    ("d-3", join, false),
    ("d-4", cancel, false),
    ("d-5", create, true),
    ("d-6", join, false),
    ("d-7", create, false),
    ("d-8", cancel, false),
];

async fn migrated(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, DatabaseConnection) {
    let path = dir.join(name);
    let options = sqlite_options(format!("sqlite://{}", path.display()), Some(path.clone()));
    let conn = sea_orm::Database::connect(options).await.unwrap();
    Migrator::up(&conn, None).await.unwrap();
    (path, conn)
}

/// A database for the writer and one for the sea-orm store, migrated, in a directory
/// that lives as long as the first value.
async fn both_stores() -> (tempfile::TempDir, Writer, DatabaseConnection, DatabaseConnection) {
    let dir = tempfile::tempdir().unwrap();
    let (path, by_writer) = migrated(dir.path(), "writer.db").await;
    let (_, by_sea) = migrated(dir.path(), "sea.db").await;
    let writer = Writer::start(path).unwrap();
    (dir, writer, by_writer, by_sea)
}

/// What the rows say, without times.
async fn rows(conn: &DatabaseConnection) -> Vec<String> {
    let mut out = Vec::new();
    for t in tasks::Entity::find().order_by_asc(tasks::Column::Id).all(conn).await.unwrap() {
        out.push(format!(
            "task {} {} {:?} {:?} {:?} {} {:?} {}",
            t.id,
            t.status,
            t.instructions,
            t.pending_instructions,
            t.pending_requested_by,
            t.cancel_requested,
            t.error,
            t.title.len()
        ));
    }
    for e in task_events::Entity::find().order_by_asc(task_events::Column::Id).all(conn).await.unwrap() {
        out.push(format!("event {} {} {}", e.task_id, e.status, e.message));
    }
    for d in deliveries::Entity::find().order_by_asc(deliveries::Column::Id).all(conn).await.unwrap() {
        out.push(format!(
            "delivery {} {:?} {} {} {:?}",
            d.delivery_id, d.sender, d.outcome, d.reason, d.task_id
        ));
    }
    out
}

/// `d` recorded through the writer and, in a transaction of its own, through the sea-orm
/// store on `by_sea`: what each answered.
async fn record_on_both(
    writer: &Writer,
    by_sea: &DatabaseConnection,
    d: &NewDelivery,
    decide: Decider,
) -> (Recorded, Recorded) {
    let written = writer.record(d.clone(), Box::new(decide)).await.unwrap();
    let txn = by_sea.begin().await.unwrap();
    let by_rules = record(&sea::SeaStore(&txn), d, decide).await.unwrap();
    txn.commit().await.unwrap();
    (written, by_rules)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_apply_the_same_rules() {
    let (_dir, writer, by_writer, by_sea) = both_stores().await;
    let mut answers = (Vec::new(), Vec::new());
    for (id, decide, claim_after) in SCRIPT {
        let (written, by_rules) = record_on_both(&writer, &by_sea, &delivery(id), decide).await;
        answers.0.push(written);
        answers.1.push(by_rules);
        if claim_after {
            let until = chrono::Utc::now() + chrono::Duration::minutes(5);
            for conn in [&by_writer, &by_sea] {
                queries::claim_next(conn, "me", until, &Default::default())
                    .await
                    .unwrap()
                    .expect("a queued task");
            }
        }
    }
    assert_eq!(answers.0, answers.1);
    assert_eq!(answers.0[1], Recorded::Duplicate);
    let (written, sea) = (rows(&by_writer).await, rows(&by_sea).await);
    assert_eq!(written, sea);
    // Task 3: the insert that lost the race to task 1 used up id 2.
    let tasks: Vec<_> = written.iter().filter(|r| r.starts_with("task ")).collect();
    assert_eq!(
        tasks,
        [
            "task 1 cancelled \"first\\n\\n@alice: first\\n\\nmore\" None None false Some(\"the label was removed\") 1000",
            "task 3 running \"first\" Some(\"more\\n\\n@alice: first\") Some(\"alice\") true None 1000",
        ]
    );
}

fn ignore(_: &IssueContext) -> Decision {
    Decision::Ignore("not a trigger".into())
}

/// A redelivery of the same comment under a new delivery id is a duplicate on both stores;
/// deliveries that carry no comment never collide (the partial unique index of migration 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_comment_under_a_new_delivery_id_is_a_duplicate() {
    let (_dir, writer, by_writer, by_sea) = both_stores().await;
    let keyed = |id: &str| NewDelivery { event_key: Some("comment:77".into()), ..delivery(id) };
    let script = [keyed("k-1"), keyed("k-2"), delivery("n-1"), delivery("n-2")];
    let mut answers = (Vec::new(), Vec::new());
    for d in script {
        let (written, by_rules) = record_on_both(&writer, &by_sea, &d, ignore).await;
        answers.0.push(written);
        answers.1.push(by_rules);
    }
    assert_eq!(answers.0, answers.1);
    let duplicates: Vec<bool> = answers.0.iter().map(|a| *a == Recorded::Duplicate).collect();
    assert_eq!(duplicates, [false, true, false, false]);
    assert_eq!(rows(&by_writer).await, rows(&by_sea).await);
}

/// The writer's duplicate check and a task's deliveries find their rows through indexes,
/// the partial ones included, never by reading the table.
#[tokio::test]
async fn delivery_lookups_use_their_indexes() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    let dir = tempfile::tempdir().unwrap();
    let (_, conn) = migrated(dir.path(), "plan.db").await;
    let plan = |sql: &str, values: Vec<sea_orm::Value>| {
        let statement =
            Statement::from_sql_and_values(DbBackend::Sqlite, format!("EXPLAIN QUERY PLAN {sql}"), values);
        let conn = &conn;
        async move {
            let rows = conn.query_all_raw(statement).await.unwrap();
            rows.iter().map(|row| row.try_get::<String>("", "detail").unwrap()).collect::<Vec<_>>().join("\n")
        }
    };
    let seen = plan(sqlite::SEEN_DELIVERY, vec!["github".into(), "d-1".into(), "comment:1".into()]).await;
    assert!(seen.contains("deliveries_forge_delivery_id"), "{seen}");
    assert!(seen.contains("deliveries_forge_event_key"), "{seen}");
    let of_task = plan("SELECT id FROM deliveries WHERE task_id = ?1 ORDER BY id", vec![7i64.into()]).await;
    assert!(of_task.contains("deliveries_task_id"), "{of_task}");
    for detail in [&seen, &of_task] {
        assert!(!detail.contains("SCAN deliveries"), "{detail}");
    }
    // Retention, without an index on received_at: a range of ids, bounded by the first
    // delivery received after the cutoff.
    let old = format!("SELECT d.id {} ORDER BY d.id LIMIT 1000", crate::db::retention::old_deliveries());
    let cutoff = sea_orm::Value::from(chrono::Utc::now());
    let retention = plan(&old, vec![cutoff.clone(), cutoff]).await;
    assert!(retention.contains("SEARCH d USING INTEGER PRIMARY KEY (rowid<?)"), "{retention}");
}

/// An event that leaves the trigger label as it was writes no label state; one that
/// changes it does, on both stores. An issue that never carried it has no row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_label_state_is_not_written_again() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    let (_dir, writer, by_writer, by_sea) = both_stores().await;
    let state = |conn: &DatabaseConnection| {
        let conn = conn.clone();
        async move {
            let sql = "SELECT present, updated_at FROM label_states WHERE number = 42";
            let row = conn.query_one_raw(Statement::from_string(DbBackend::Sqlite, sql)).await.unwrap();
            let row = row.expect("a label state");
            (row.try_get::<bool>("", "present").unwrap(), row.try_get::<String>("", "updated_at").unwrap())
        }
    };
    let marked = "2000-01-01T00:00:00Z";
    let mark = format!("UPDATE label_states SET updated_at = '{marked}'");
    record_on_both(&writer, &by_sea, &delivery("l-1"), ignore).await;
    for conn in [&by_writer, &by_sea] {
        conn.execute_unprepared(&mark).await.unwrap();
    }
    record_on_both(&writer, &by_sea, &delivery("l-2"), ignore).await;
    for conn in [&by_writer, &by_sea] {
        assert_eq!(state(conn).await, (true, marked.to_owned()));
    }
    let removed = NewDelivery { label_present: Some(false), ..delivery("l-3") };
    record_on_both(&writer, &by_sea, &removed, ignore).await;
    for conn in [&by_writer, &by_sea] {
        let (present, updated_at) = state(conn).await;
        assert!(!present);
        assert_ne!(updated_at, marked);
    }
    let unlabelled = NewDelivery { label_present: Some(false), number: Some(43.into()), ..delivery("l-4") };
    record_on_both(&writer, &by_sea, &unlabelled, ignore).await;
    for conn in [&by_writer, &by_sea] {
        let sql = "SELECT COUNT(*) AS n FROM label_states";
        let row = conn.query_one_raw(Statement::from_string(DbBackend::Sqlite, sql)).await.unwrap().unwrap();
        assert_eq!(row.try_get::<i64>("", "n").unwrap(), 1);
    }
}
