//! The database facade itself, on whichever backend the suite runs against.

use forgehand::db::queries;
use forgehand::trigger::{TaskKind, TaskRequest, TriggerKind};
use sea_orm::TransactionTrait;

use crate::harness::*;

fn request(number: u32) -> TaskRequest {
    TaskRequest {
        kind: TaskKind::Implement,
        trigger: TriggerKind::Label,
        repo: "o/r".into(),
        clone_url: "file:///r.git".into(),
        number: number.into(),
        title: "t".into(),
        requested_by: "alice".into(),
        instructions: String::new(),
        branch: None,
        routing: Default::default(),
        feedback_ref: None,
    }
}

/// Two transactions race to queue a task for one issue: the index lets one win, and the
/// other learns it without an error (the path SQLite's single writer never takes through
/// the router).
#[tokio::test]
async fn racing_inserts_for_one_issue_make_one_task() {
    let app = TestApp::spawn().await;
    let conn = app.db.connection_for_tests().clone();
    let first = conn.begin().await.unwrap();
    let won = queries::insert_task(&first, "github", &request(7)).await.unwrap();
    assert!(won.is_some());
    let second = tokio::spawn(async move {
        let txn = conn.begin().await.unwrap();
        let lost = queries::insert_task(&txn, "github", &request(7)).await.unwrap();
        txn.commit().await.unwrap();
        lost
    });
    first.commit().await.unwrap();
    assert_eq!(second.await.unwrap(), None);
    // Another issue is not affected.
    assert!(
        queries::insert_task(app.db.connection_for_tests(), "github", &request(8)).await.unwrap().is_some()
    );
    assert_eq!(app.tasks().await.len(), 2);
}
