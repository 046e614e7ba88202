//! The JSON API and health endpoints.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz"] {
        let response = app.client.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn the_api_needs_the_admin_token() {
    let app = TestApp::spawn().await;
    let url = format!("{}/api/tasks", app.base);
    let none = app.client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = app.client.get(&url).bearer_auth("guess").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(!wrong.text().await.unwrap().contains(ADMIN_TOKEN));
    assert_eq!(app.api("/api/tasks").await.0, 200);
}

#[tokio::test]
async fn tasks_are_listed_newest_first_with_filters_and_pages() {
    let app = TestApp::spawn().await;
    for n in 1..=5 {
        let body = edited("github/issues_labeled.json", "/issue/number", json!(n));
        app.deliver("github", Delivery::github("issues", body)).await;
    }
    app.deliver(
        "gitea",
        Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_updated.json")),
    )
    .await;
    app.deliver("github", Delivery::github("issues", fixture("github/issues_unlabeled.json"))).await;

    let (status, all) = app.api("/api/tasks").await;
    assert_eq!(status, 200);
    let numbers: Vec<i64> =
        all["tasks"].as_array().unwrap().iter().map(|t| t["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [42, 5, 4, 3, 2, 1]);

    let (_, gitea) = app.api("/api/tasks?repo=acme/widgets").await;
    assert_eq!(gitea["tasks"].as_array().unwrap().len(), 1);
    let (_, queued) = app.api("/api/tasks?status=queued&forge=github").await;
    assert_eq!(queued["tasks"].as_array().unwrap().len(), 5);

    let (_, first) = app.api("/api/tasks?limit=4").await;
    assert_eq!(first["tasks"].as_array().unwrap().len(), 4);
    let next = first["next_before"].as_i64().unwrap();
    let (_, second) = app.api(&format!("/api/tasks?limit=4&before={next}")).await;
    let rest: Vec<i64> =
        second["tasks"].as_array().unwrap().iter().map(|t| t["number"].as_i64().unwrap()).collect();
    assert_eq!(rest, [2, 1]);
    assert!(second["next_before"].is_null());

    let (status, bad) = app.api("/api/tasks?status=finished").await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("queued, running"));
}

#[tokio::test]
async fn one_task_with_its_timeline_and_deliveries() {
    let app = TestApp::spawn().await;
    let created =
        app.deliver("github", Delivery::github("issues", fixture("github/issues_labeled.json"))).await;
    app.deliver("github", Delivery::github("issue_comment", fixture("github/issue_comment_issue.json")))
        .await;
    let id = created.json["task_id"].as_i64().unwrap();
    let (status, body) = app.api(&format!("/api/tasks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["task"]["id"], id);
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["status"], "queued");
    assert!(events[1]["message"].as_str().unwrap().contains("joined this task"));
    let outcomes: Vec<&str> =
        body["deliveries"].as_array().unwrap().iter().map(|d| d["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["task_created", "coalesced"]);
    assert_eq!(app.api("/api/tasks/999").await.0, 404);
}
