//! Webhook intake: verification, every refusal with its status, recording, duplicates.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn github_label_event_queues_one_task() {
    let app = TestApp::spawn().await;
    let delivery = Delivery::github("issues", fixture("github/issues_labeled.json"));
    let answer = app.deliver("github", delivery.clone()).await;
    assert_eq!((answer.status, answer.outcome()), (202, "task_created"), "{}", answer.text);

    let tasks = app.tasks().await;
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(answer.json["task_id"], task.id);
    assert_eq!(
        (task.forge.as_str(), task.repo.as_str(), task.number),
        ("github", "octo-org/hello-world", 42)
    );
    assert_eq!(
        (task.status.as_str(), task.kind.as_str(), task.trigger.as_str()),
        ("queued", "implement", "label")
    );
    assert_eq!(task.requested_by, "alice");
    assert_eq!(task.clone_url, "https://github.com/octo-org/hello-world.git");

    let deliveries = app.deliveries().await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].delivery_id, delivery.id());
    assert_eq!((deliveries[0].outcome.as_str(), deliveries[0].task_id), ("task_created", Some(task.id)));
    assert_eq!((deliveries[0].event.as_str(), deliveries[0].action.as_deref()), ("issues", Some("labeled")));
}

#[tokio::test]
async fn gitea_label_event_queues_one_task() {
    let app = TestApp::spawn().await;
    let delivery = Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_updated.json"));
    let answer = app.deliver("gitea", delivery).await;
    assert_eq!((answer.status, answer.outcome()), (202, "task_created"), "{}", answer.text);
    let tasks = app.tasks().await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        (tasks[0].forge.as_str(), tasks[0].repo.as_str(), tasks[0].number),
        ("gitea", "acme/widgets", 42)
    );
}

#[tokio::test]
async fn forgejo_headers_are_read_first() {
    let app = TestApp::spawn().await;
    let body = fixture("gitea/issues_label_updated.json");
    let signature = forgehand::forge::signature::sign(GITEA_SECRET.as_bytes(), &body);
    let delivery = Delivery { body, headers: vec![("content-type".into(), "application/json".into())] }
        .add_header("x-forgejo-event", "issues")
        .add_header("x-forgejo-delivery", "forgejo-1")
        .add_header("x-forgejo-signature", &signature)
        // Stale GitHub-style copies must not win over Forgejo's own headers.
        .add_header("x-github-event", "push")
        .add_header("x-hub-signature-256", "sha256=00");
    let answer = app.deliver("gitea", delivery).await;
    assert_eq!((answer.status, answer.outcome()), (202, "task_created"), "{}", answer.text);
    assert_eq!(app.deliveries().await[0].delivery_id, "forgejo-1");
}

#[tokio::test]
async fn form_encoded_deliveries_are_accepted() {
    let app = TestApp::spawn().await;
    let json = fixture("github/issues_labeled.json");
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&json).unwrap())
        .finish();
    let delivery = Delivery::github("issues", body.into_bytes())
        .set_header("content-type", Some("application/x-www-form-urlencoded"));
    let answer = app.deliver("github", delivery).await;
    assert_eq!((answer.status, answer.outcome()), (202, "task_created"), "{}", answer.text);
}

#[tokio::test]
async fn a_redelivery_is_answered_duplicate_and_records_nothing() {
    let app = TestApp::spawn().await;
    let delivery = Delivery::github("issues", fixture("github/issues_labeled.json"));
    assert_eq!(app.deliver("github", delivery.clone()).await.status, 202);
    let again = app.deliver("github", delivery.clone()).await;
    assert_eq!((again.status, again.outcome()), (200, "duplicate"), "{}", again.text);
    assert_eq!(app.tasks().await.len(), 1);
    assert_eq!(app.deliveries().await.len(), 1);
    // The same id from another forge is a different delivery.
    let gitea = Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_updated.json"))
        .set_header("x-gitea-delivery", Some(&delivery.id()));
    assert_eq!(app.deliver("gitea", gitea).await.status, 202);
    assert_eq!(app.deliveries().await.len(), 2);
}

#[tokio::test]
async fn ping_and_events_we_never_act_on_are_recorded_as_ignored() {
    let app = TestApp::spawn().await;
    let ping = app.deliver("github", Delivery::github("ping", fixture("github/ping.json"))).await;
    assert_eq!((ping.status, ping.outcome()), (200, "ignored"), "{}", ping.text);
    let push = app.deliver("gitea", Delivery::gitea("push", "push", fixture("gitea/push.json"))).await;
    assert_eq!((push.status, push.outcome()), (200, "ignored"));
    assert_eq!(push.json["reason"], "event push is not one forgehand acts on");
    let unknown = app.deliver("github", Delivery::github("star", br#"{"action":"created"}"#.to_vec())).await;
    assert_eq!(
        (unknown.status, unknown.json["reason"].as_str()),
        (200, Some("event star/created is not one forgehand acts on"))
    );
    assert!(app.tasks().await.is_empty());
    assert_eq!(app.deliveries().await.len(), 3);
}

/// Sends `delivery` and checks the refusal: status, message, and nothing recorded.
async fn assert_refused(app: &TestApp, forge: &str, delivery: Delivery, status: u16, message: &str) {
    let answer = app.deliver(forge, delivery).await;
    assert_eq!(answer.status, status, "{}", answer.text);
    assert!(answer.error().contains(message), "expected {message:?} in {:?}", answer.error());
    assert!(app.tasks().await.is_empty(), "a refused delivery created a task");
    assert!(app.deliveries().await.is_empty(), "a refused delivery was recorded");
    let health = app.client.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(health.status(), 200, "the server stopped answering");
}

fn labeled() -> Delivery {
    Delivery::github("issues", fixture("github/issues_labeled.json"))
}

#[tokio::test]
async fn refusals_of_authentication() {
    let app = TestApp::spawn().await;
    assert_refused(&app, "nope", labeled(), 404, "no forge named \"nope\"").await;
    assert_refused(&app, "unsigned", labeled(), 403, "has no webhook_secret configured").await;
    assert_refused(
        &app,
        "github",
        labeled().set_header("x-hub-signature-256", None),
        401,
        "missing signature",
    )
    .await;
    let other_body = format!("sha256={}", forgehand::forge::signature::sign(GITHUB_SECRET.as_bytes(), b"{}"));
    let forged = labeled().set_header("x-hub-signature-256", Some(&other_body));
    assert_refused(&app, "github", forged, 401, "matches none of the webhook secrets").await;
    let wrong_secret = format!(
        "sha256={}",
        forgehand::forge::signature::sign(b"guess", &fixture("github/issues_labeled.json"))
    );
    assert_refused(
        &app,
        "github",
        labeled().set_header("x-hub-signature-256", Some(&wrong_secret)),
        401,
        "matches none",
    )
    .await;
    let twice = labeled().add_header("x-hub-signature-256", "sha256=00");
    assert_refused(&app, "github", twice, 400, "sent more than once").await;
    assert_refused(
        &app,
        "github",
        labeled().set_header("x-hub-signature-256", Some("sha256=xyz")),
        401,
        "not hexadecimal",
    )
    .await;
    // GitHub's endpoint does not read Gitea's signature header.
    let gitea_style = labeled().set_header("x-hub-signature-256", None).add_header("x-gitea-signature", "00");
    assert_refused(&app, "github", gitea_style, 401, "X-Hub-Signature-256").await;
}

#[tokio::test]
async fn gitea_without_a_secret_sends_empty_signatures_which_are_missing() {
    let app = TestApp::spawn().await;
    let delivery = Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_updated.json"))
        .set_header("x-gitea-signature", Some(""))
        .set_header("x-hub-signature-256", Some("sha256="));
    assert_refused(&app, "gitea", delivery, 401, "missing signature").await;
}

#[tokio::test]
async fn refusals_of_malformed_requests() {
    let app = TestApp::spawn().await;
    assert_refused(
        &app,
        "github",
        labeled().set_header("x-github-event", None),
        400,
        "missing the X-GitHub-Event header",
    )
    .await;
    assert_refused(
        &app,
        "github",
        labeled().set_header("x-github-delivery", Some("")),
        400,
        "missing the X-GitHub-Delivery header",
    )
    .await;
    assert_refused(
        &app,
        "github",
        labeled().set_header("content-type", Some("text/plain")),
        415,
        "text/plain",
    )
    .await;
    assert_refused(&app, "github", labeled().set_header("content-type", None), 415, "application/json").await;
    let form = Delivery::github("issues", b"zen=1&x=2".to_vec())
        .set_header("content-type", Some("application/x-www-form-urlencoded"));
    assert_refused(&app, "github", form, 400, "no payload field").await;
    let broken_form = Delivery::github("issues", b"payload=%7B%22action".to_vec())
        .set_header("content-type", Some("application/x-www-form-urlencoded"));
    assert_refused(&app, "github", broken_form, 400, "malformed issues payload").await;
    let truncated = fixture("github/issues_labeled.json")[..100].to_vec();
    assert_refused(&app, "github", Delivery::github("issues", truncated), 400, "malformed issues payload")
        .await;
    let wrong_type = edited("github/issues_labeled.json", "/issue/number", json!("42"));
    assert_refused(&app, "github", Delivery::github("issues", wrong_type), 400, "at issue.number").await;
    let negative = edited("github/issues_labeled.json", "/issue/number", json!(-1));
    assert_refused(&app, "github", Delivery::github("issues", negative), 400, "issue.number").await;
    let no_repo = edited("gitea/issue_comment_issue.json", "/repository", json!(null));
    assert_refused(
        &app,
        "gitea",
        Delivery::gitea("issue_comment", "issue_comment", no_repo),
        400,
        "repository",
    )
    .await;
    let mut invalid_utf8 = fixture("github/issues_labeled.json");
    let at = invalid_utf8.windows(7).position(|w| w == b"Add a -").unwrap();
    invalid_utf8[at] = 0xff;
    assert_refused(&app, "github", Delivery::github("issues", invalid_utf8), 400, "malformed").await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let app = TestApp::spawn().await;
    let huge = vec![b' '; 65_537];
    assert_refused(&app, "github", Delivery::github("issues", huge), 413, "max_body_bytes").await;
    // Without a Content-Length header the limit holds while reading.
    let stream = futures_stream(vec![vec![b' '; 40_000], vec![b' '; 40_000]]);
    let answer = app
        .client
        .post(format!("{}/webhooks/github", app.base))
        .header("x-github-event", "issues")
        .header("x-github-delivery", "chunked")
        .header("x-hub-signature-256", "sha256=00")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 413);
    assert!(app.deliveries().await.is_empty());
}

fn futures_stream(chunks: Vec<Vec<u8>>) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::iter(chunks.into_iter().map(Ok))
}

#[tokio::test]
async fn nul_characters_and_huge_titles_are_stored_safely() {
    let app = TestApp::spawn().await;
    let title = format!("nul\u{0}here {}", "x".repeat(5000));
    let body = edited("github/issues_labeled.json", "/issue/title", json!(title));
    assert_eq!(app.deliver("github", Delivery::github("issues", body)).await.status, 202);
    let task = &app.tasks().await[0];
    assert!(task.title.starts_with("nulhere "), "{}", &task.title[..20]);
    assert_eq!(task.title.chars().count(), 1000);
}

#[tokio::test]
async fn two_hundred_concurrent_deliveries_are_all_recorded() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut handles = Vec::new();
    for n in 0..200 {
        let app = app.clone();
        handles.push(tokio::spawn(async move {
            let body = edited("github/issues_labeled.json", "/issue/number", json!(1000 + n));
            app.deliver("github", Delivery::github("issues", body)).await.status
        }));
    }
    for handle in handles {
        assert_eq!(handle.await.unwrap(), 202);
    }
    assert_eq!(app.deliveries().await.len(), 200);
    assert_eq!(app.tasks().await.len(), 200);
}

#[tokio::test]
async fn concurrent_triggers_on_one_issue_make_exactly_one_task() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut handles = Vec::new();
    for _ in 0..30 {
        let app = app.clone();
        handles
            .push(tokio::spawn(async move { app.deliver("github", labeled()).await.outcome().to_owned() }));
    }
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| *o == "task_created").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "coalesced").count(), 29, "{outcomes:?}");
    assert_eq!(app.tasks().await.len(), 1);
    assert_eq!(app.deliveries().await.len(), 30);
}
