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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_apply_the_same_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (path, by_writer) = migrated(dir.path(), "writer.db").await;
    let (_, by_sea) = migrated(dir.path(), "sea.db").await;
    let writer = Writer::start(path).unwrap();
    let mut answers = (Vec::new(), Vec::new());
    for (id, decide, claim_after) in SCRIPT {
        answers.0.push(writer.record(delivery(id), Box::new(decide)).await.unwrap());
        let txn = by_sea.begin().await.unwrap();
        answers.1.push(record(&sea::SeaStore(&txn), &delivery(id), decide).await.unwrap());
        txn.commit().await.unwrap();
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
