//! Trigger flows through the real router: comments, reviews, cancelling, Gitea's label sets.

use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn command_comments_on_issues_and_pull_requests() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            "github",
            Delivery::github("issue_comment", fixture("github/issue_comment_issue.json")),
            42,
            "implement",
            "please also update the README",
        ),
        (
            "github",
            Delivery::github("issue_comment", fixture("github/issue_comment_pr.json")),
            43,
            "follow_up",
            "rename the flag to --loud",
        ),
        (
            "gitea",
            Delivery::gitea("issue_comment", "issue_comment", fixture("gitea/issue_comment_issue.json")),
            42,
            "implement",
            "please also update the README",
        ),
        (
            "gitea",
            Delivery::gitea("issue_comment", "pull_request_comment", fixture("gitea/issue_comment_pr.json")),
            43,
            "follow_up",
            "rename the flag to --loud",
        ),
    ];
    for (forge, delivery, number, kind, instructions) in cases {
        let answer = app.deliver(forge, delivery).await;
        assert_eq!(answer.status, 202, "{forge} {kind}: {}", answer.text);
        let task = app.tasks().await.into_iter().find(|t| t.forge == forge && t.number == number).unwrap();
        assert_eq!(
            (task.kind.as_str(), task.trigger.as_str(), task.instructions.as_str()),
            (kind, "comment", instructions)
        );
    }
    let plain = app
        .deliver("github", Delivery::github("issue_comment", fixture("github/issue_comment_plain.json")))
        .await;
    assert_eq!((plain.status, plain.outcome()), (200, "ignored"));
    assert_eq!(plain.json["reason"], "the comment does not start with /forgehand");
}

#[tokio::test]
async fn change_requests_on_forgehands_pull_requests_queue_follow_ups() {
    let app = TestApp::spawn().await;
    let github = app
        .deliver(
            "github",
            Delivery::github("pull_request_review", fixture("github/pull_request_review.json")),
        )
        .await;
    assert_eq!(github.status, 202, "{}", github.text);
    let gitea = Delivery::gitea(
        "pull_request_rejected",
        "pull_request_review_rejected",
        fixture("gitea/pull_request_rejected.json"),
    );
    assert_eq!(app.deliver("gitea", gitea).await.status, 202);
    for task in app.tasks().await {
        assert_eq!((task.kind.as_str(), task.trigger.as_str(), task.number), ("follow_up", "review", 43));
        assert_eq!(task.branch.as_deref(), Some("forgehand/issue-42-add-a-verbose-flag-to-the-cli"));
        assert_eq!(task.instructions, "Please add a test for the new flag");
    }
    let mut foreign: serde_json::Value =
        serde_json::from_slice(&fixture("github/pull_request_review.json")).unwrap();
    foreign["pull_request"]["head"]["ref"] = json!("feature/x");
    foreign["review"]["id"] = json!(1);
    let foreign = serde_json::to_vec(&foreign).unwrap();
    let answer = app.deliver("github", Delivery::github("pull_request_review", foreign)).await;
    assert_eq!(answer.outcome(), "ignored");
    assert!(answer.json["reason"].as_str().unwrap().contains("not forgehand's"));
}

#[tokio::test]
async fn removing_the_label_cancels_the_queued_task() {
    let app = TestApp::spawn().await;
    let created =
        app.deliver("github", Delivery::github("issues", fixture("github/issues_labeled.json"))).await;
    let removed =
        app.deliver("github", Delivery::github("issues", fixture("github/issues_unlabeled.json"))).await;
    assert_eq!((removed.status, removed.outcome()), (200, "cancelled_task"), "{}", removed.text);
    assert_eq!(removed.json["task_id"], created.json["task_id"]);
    let task = &app.tasks().await[0];
    assert_eq!(task.status, "cancelled");
    assert!(task.finished_at.is_some());
    let again =
        app.deliver("github", Delivery::github("issues", fixture("github/issues_unlabeled.json"))).await;
    assert!(again.json["reason"].as_str().unwrap().contains("no queued or running task"));
    // Labelling again starts a fresh task.
    assert_eq!(
        app.deliver("github", Delivery::github("issues", fixture("github/issues_labeled.json"))).await.status,
        202
    );
    assert_eq!(app.tasks().await.len(), 2);
}

#[tokio::test]
async fn closing_the_issue_asks_a_running_task_to_stop() {
    let app = TestApp::spawn().await;
    let created = app
        .deliver(
            "gitea",
            Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_updated.json")),
        )
        .await;
    let id = created.json["task_id"].as_i64().unwrap();
    set_status(&app, id, "running").await;
    let closed =
        app.deliver("gitea", Delivery::gitea("issues", "issues", fixture("gitea/issues_closed.json"))).await;
    assert_eq!(closed.outcome(), "cancelled_task", "{}", closed.text);
    let task = &app.tasks().await[0];
    assert_eq!((task.status.as_str(), task.cancel_requested), ("running", true));
}

#[tokio::test]
async fn gitea_label_edits_start_a_task_only_when_the_trigger_label_is_new() {
    let app = TestApp::spawn().await;
    let label_set = || Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_updated.json"));
    let first = app.deliver("gitea", label_set()).await;
    assert_eq!(first.outcome(), "task_created");
    assert_eq!(app.deliver("gitea", label_set()).await.outcome(), "coalesced");
    set_status(&app, first.json["task_id"].as_i64().unwrap(), "done").await;
    // Another label edit while the trigger label stays on must not start the issue again.
    let edit = app.deliver("gitea", label_set()).await;
    assert_eq!(edit.outcome(), "ignored");
    assert!(edit.json["reason"].as_str().unwrap().contains("already on the issue"), "{}", edit.text);
    // Removing the label and adding it back does.
    let cleared = app
        .deliver(
            "gitea",
            Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_cleared.json")),
        )
        .await;
    assert_eq!(cleared.outcome(), "ignored");
    assert_eq!(app.deliver("gitea", label_set()).await.outcome(), "task_created");
    assert_eq!(app.tasks().await.len(), 2);
}

/// Label states a database of the previous release holds still decide after migration 18
/// (on SQLite `label_states` is rebuilt `WITHOUT ROWID`; `tasks_status_finished` becomes
/// an index of finished tasks only), and new ones are written to the rebuilt table.
#[tokio::test]
async fn label_states_from_the_release_before_fewer_intake_pages_still_decide() {
    use sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().unwrap();
    let (url, old) = database_migrated_to(dir.path(), migrations_before("intake_pages")).await;
    old.execute_unprepared(
        "INSERT INTO label_states (forge, repo, number, present, updated_at) \
         VALUES ('gitea', 'acme/widgets', 42, TRUE, '2026-11-30 10:00:00+00:00')",
    )
    .await
    .unwrap();
    old.close().await.unwrap();
    let config = config_text_on(&dir.path().join("data"), &format!("[database]\nurl = \"{url}\"\n"), "");
    let app = TestApp::spawn_config(dir, &config).await;

    let label_set = || Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_updated.json"));
    let edit = app.deliver("gitea", label_set()).await;
    assert_eq!(edit.outcome(), "ignored", "{}", edit.text);
    assert!(edit.json["reason"].as_str().unwrap().contains("already on the issue"), "{}", edit.text);
    let cleared = Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_cleared.json"));
    assert_eq!(app.deliver("gitea", cleared).await.outcome(), "ignored");
    assert_eq!(app.deliver("gitea", label_set()).await.outcome(), "task_created");

    let db = sea_orm::Database::connect(&url).await.unwrap();
    let text = |sql: &'static str| {
        let db = db.clone();
        async move {
            let row = db.query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql));
            let row = row.await.unwrap().expect("one row");
            row.try_get_by_index::<String>(0).unwrap()
        }
    };
    let (index, without_rowid) = if on_postgres() {
        (text("SELECT indexdef FROM pg_indexes WHERE indexname = 'tasks_status_finished'").await, None)
    } else {
        let wr = text("SELECT CAST(wr AS TEXT) FROM pragma_table_list WHERE name = 'label_states'").await;
        (text("SELECT sql FROM sqlite_master WHERE name = 'tasks_status_finished'").await, Some(wr))
    };
    assert!(index.contains("WHERE") && index.contains("finished_at IS NOT NULL"), "{index}");
    assert!(without_rowid.is_none_or(|wr| wr == "1"), "label_states is WITHOUT ROWID on SQLite");
}

#[tokio::test]
async fn events_from_bots_and_other_repositories_are_ignored() {
    let app = TestApp::spawn_with("[trigger]\nrepos = [\"octo-org/hello-world\"]\n").await;
    let bot =
        app.deliver("github", Delivery::github("issues", fixture("github/issues_labeled_by_bot.json"))).await;
    assert_eq!(bot.outcome(), "ignored");
    assert!(bot.json["reason"].as_str().unwrap().contains("bot account"));
    let own = edited("github/issues_labeled.json", "/sender/login", json!("forgehand-bot"));
    let own = app.deliver("github", Delivery::github("issues", own)).await;
    assert!(own.json["reason"].as_str().unwrap().contains("own account"), "{}", own.text);
    let other = app
        .deliver(
            "gitea",
            Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_updated.json")),
        )
        .await;
    assert_eq!(other.json["reason"], "repository acme/widgets is not in trigger.repos");
    assert!(app.tasks().await.is_empty());
    assert_eq!(app.deliveries().await.len(), 3);
}

/// Moves a task along as the executor would.
async fn set_status(app: &TestApp, id: i64, status: &str) {
    let sql = format!("UPDATE tasks SET status = '{status}' WHERE id = {id}");
    app.db.connection_for_tests().execute_unprepared(&sql).await.unwrap();
}

#[tokio::test]
async fn a_gitea_replay_with_a_new_delivery_id_is_still_a_duplicate() {
    let app = TestApp::spawn().await;
    let comment =
        || Delivery::gitea("issue_comment", "issue_comment", fixture("gitea/issue_comment_issue.json"));
    let first = app.deliver("gitea", comment()).await;
    assert_eq!(first.status, 202);
    set_status(&app, first.json["task_id"].as_i64().unwrap(), "done").await;
    // Gitea's "Replay" sends the same comment under a new delivery id.
    let replay = app.deliver("gitea", comment()).await;
    assert_eq!((replay.status, replay.outcome()), (200, "duplicate"), "{}", replay.text);
    assert_eq!(app.tasks().await.len(), 1);
    assert_eq!(app.deliveries().await.len(), 1);
    // An edit of that comment is another event.
    let edited = edited("gitea/issue_comment_issue.json", "/action", json!("edited"));
    let edit = app.deliver("gitea", Delivery::gitea("issue_comment", "issue_comment", edited)).await;
    assert_eq!(edit.outcome(), "ignored");
}

#[tokio::test]
async fn an_issue_opened_with_the_label_starts_one_task() {
    let app = TestApp::spawn().await;
    let opened =
        edited("github/issues_opened.json", "/issue/labels", json!([{ "id": 1, "name": "forgehand" }]));
    let first = app.deliver("github", Delivery::github("issues", opened)).await;
    assert_eq!(first.outcome(), "task_created", "{}", first.text);
    // GitHub follows with a labeled event for the same label.
    let labeled =
        app.deliver("github", Delivery::github("issues", fixture("github/issues_labeled.json"))).await;
    assert_eq!(labeled.outcome(), "coalesced");
    assert_eq!(app.tasks().await.len(), 1);
}

#[tokio::test]
async fn a_replayed_gitea_review_is_a_duplicate() {
    let app = TestApp::spawn().await;
    let review = || {
        Delivery::gitea(
            "pull_request_rejected",
            "pull_request_review_rejected",
            fixture("gitea/pull_request_rejected.json"),
        )
    };
    let first = app.deliver("gitea", review()).await;
    assert_eq!(first.status, 202);
    set_status(&app, first.json["task_id"].as_i64().unwrap(), "done").await;
    let replay = app.deliver("gitea", review()).await;
    assert_eq!(replay.outcome(), "duplicate", "{}", replay.text);
    // The same words on a new commit are a new review.
    let newer = edited("gitea/pull_request_rejected.json", "/pull_request/head/sha", json!("f".repeat(40)));
    let again = app
        .deliver("gitea", Delivery::gitea("pull_request_rejected", "pull_request_review_rejected", newer))
        .await;
    assert_eq!(again.outcome(), "task_created", "{}", again.text);
}

#[tokio::test]
async fn reviews_on_fork_pull_requests_are_not_forgehands() {
    let app = TestApp::spawn().await;
    let fork = edited(
        "github/pull_request_review.json",
        "/pull_request/head/repo/full_name",
        json!("mallory/hello-world"),
    );
    let answer = app.deliver("github", Delivery::github("pull_request_review", fork)).await;
    assert_eq!(answer.outcome(), "ignored");
    assert!(answer.json["reason"].as_str().unwrap().contains("not forgehand's"), "{}", answer.text);
}

#[tokio::test]
async fn clearing_labels_leaves_a_comment_started_task_alone() {
    let app = TestApp::spawn().await;
    let comment =
        Delivery::gitea("issue_comment", "issue_comment", fixture("gitea/issue_comment_issue.json"));
    assert_eq!(app.deliver("gitea", comment).await.status, 202);
    let cleared = Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_cleared.json"));
    assert_eq!(app.deliver("gitea", cleared).await.outcome(), "ignored");
    assert_eq!(app.tasks().await[0].status, "queued");
}

#[tokio::test]
async fn the_same_label_event_under_a_new_delivery_id_starts_nothing_new() {
    let app = TestApp::spawn().await;
    let first =
        app.deliver("github", Delivery::github("issues", fixture("github/issues_labeled.json"))).await;
    set_status(&app, first.json["task_id"].as_i64().unwrap(), "done").await;
    let replay =
        app.deliver("github", Delivery::github("issues", fixture("github/issues_labeled.json"))).await;
    assert_eq!(replay.outcome(), "ignored", "{}", replay.text);
    assert!(replay.json["reason"].as_str().unwrap().contains("already on the issue"));
    assert_eq!(app.tasks().await.len(), 1);
}
