//! The forges' real payloads through the real intake: GitHub's own webhook examples
//! (npm `@octokit/webhooks-examples`, pinned in tests/octokit) and fixtures of every event
//! a Gitea/Forgejo repository webhook sends (tests/data/gitea/events). Every one is
//! answered 2xx; the trigger examples, adapted, create or join the right task.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::*;

/// Where `npm ci` in tests/octokit puts the examples.
fn examples_dir() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/octokit/node_modules/@octokit/webhooks-examples");
    assert!(
        dir.join("api.github.com/index.json").is_file(),
        "GitHub's webhook examples are missing at {}: run `(cd tests/octokit && npm ci --no-audit --no-fund \
         --ignore-scripts)` or `make test`",
        dir.display()
    );
    dir
}

/// One example: the variant it comes from (`api.github.com`, `ghes-35`), its event and body.
struct Example {
    variant: String,
    event: String,
    body: Value,
}

/// Every example of every event of every variant in the package.
fn github_examples() -> Vec<Example> {
    let dir = examples_dir();
    let mut variants: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name == "api.github.com" || name.starts_with("ghes-"))
        .collect();
    variants.sort();
    let mut examples = Vec::new();
    for variant in variants {
        let index: Vec<Value> =
            serde_json::from_slice(&std::fs::read(dir.join(&variant).join("index.json")).unwrap()).unwrap();
        for event in index {
            let name = event["name"].as_str().unwrap().to_owned();
            for body in event["examples"].as_array().unwrap() {
                examples.push(Example { variant: variant.clone(), event: name.clone(), body: body.clone() });
            }
        }
    }
    examples
}

fn describe(event: &str, body: &Value) -> String {
    match body["action"].as_str() {
        Some(action) => format!("{event}.{action}"),
        None => event.to_owned(),
    }
}

#[tokio::test]
async fn every_github_example_is_answered_2xx() {
    let app = TestApp::spawn().await;
    let examples = github_examples();
    let in_variant = |v: &str| examples.iter().filter(|e| e.variant == v).count();
    // The pinned package's sizes: a new pin that drops examples must be noticed.
    assert_eq!(in_variant("api.github.com"), 329);
    assert_eq!(examples.len(), 726, "api.github.com and ghes-31 .. ghes-35");
    let mut refused = Vec::new();
    let (mut ignored, mut duplicates) = (0, 0);
    for example in &examples {
        let body = serde_json::to_vec(&example.body).unwrap();
        let answer = app.deliver("github", Delivery::github(&example.event, body)).await;
        if !(200..300).contains(&answer.status) {
            let name = describe(&example.event, &example.body);
            refused.push(format!("{} {name}: {} {}", example.variant, answer.status, answer.text));
        } else if answer.outcome() == "duplicate" {
            // The GHES variants repeat some comments and reviews of api.github.com.
            duplicates += 1;
        } else if answer.outcome() == "ignored" {
            ignored += 1;
            assert!(!answer.json["reason"].as_str().unwrap_or_default().is_empty(), "{}", answer.text);
        }
    }
    assert!(refused.is_empty(), "{} examples refused:\n{}", refused.len(), refused.join("\n"));
    assert!(ignored > 500, "most examples are not triggers ({ignored} ignored)");
    let recorded = app.deliveries().await;
    assert_eq!(recorded.len() + duplicates, examples.len(), "every delivery is recorded");
    let pinned =
        recorded.iter().find(|d| d.event == "issues" && d.action.as_deref() == Some("pinned")).unwrap();
    assert_eq!(pinned.outcome, "ignored");
}

/// The first api.github.com example of `event` with `action`.
fn github_example(event: &str, action: &str) -> Value {
    let found = github_examples()
        .into_iter()
        .find(|e| e.variant == "api.github.com" && e.event == event && e.body["action"] == action);
    found.unwrap_or_else(|| panic!("no {event}.{action} example")).body
}

/// Makes `body` come from a person, on an open issue of `repo` with `number`.
fn from_a_person(mut body: Value, repo: Option<&Value>, number: Option<u64>) -> Value {
    body["sender"]["login"] = json!("alice");
    body["sender"]["type"] = json!("User");
    if let Some(repo) = repo {
        body["repository"] = repo.clone();
    }
    if let Some(issue) = body.get_mut("issue") {
        issue["state"] = json!("open");
        issue.as_object_mut().unwrap().remove("pull_request");
        if let Some(number) = number {
            issue["number"] = json!(number);
        }
    }
    body
}

#[tokio::test]
async fn github_trigger_examples_adapted_create_or_join_the_right_task() {
    let app = TestApp::spawn().await;

    let mut labeled = from_a_person(github_example("issues", "labeled"), None, None);
    labeled["label"] = json!({ "name": "forgehand", "color": "d73a4a" });
    labeled["issue"]["labels"].as_array_mut().unwrap().push(json!({ "name": "forgehand" }));
    let repo = labeled["repository"].clone();
    let (full_name, number) =
        (repo["full_name"].as_str().unwrap().to_owned(), labeled["issue"]["number"].as_u64().unwrap());
    let answer =
        app.deliver("github", Delivery::github("issues", serde_json::to_vec(&labeled).unwrap())).await;
    assert_eq!((answer.status, answer.outcome()), (202, "task_created"), "{}", answer.text);
    let task_id = answer.json["task_id"].as_i64().unwrap();

    // A command on the same issue joins that task.
    let mut comment = from_a_person(github_example("issue_comment", "created"), Some(&repo), Some(number));
    comment["comment"]["body"] = json!("/forgehand also update the README");
    let answer =
        app.deliver("github", Delivery::github("issue_comment", serde_json::to_vec(&comment).unwrap())).await;
    assert_eq!(
        (answer.status, answer.outcome(), answer.json["task_id"].as_i64()),
        (200, "coalesced", Some(task_id)),
        "{}",
        answer.text
    );

    // The same command on another issue starts its own task.
    comment["issue"]["number"] = json!(number + 100);
    comment["comment"]["id"] = json!(comment["comment"]["id"].as_u64().unwrap() + 1);
    let answer =
        app.deliver("github", Delivery::github("issue_comment", serde_json::to_vec(&comment).unwrap())).await;
    assert_eq!((answer.status, answer.outcome()), (202, "task_created"), "{}", answer.text);

    // A review asking for changes on one of forgehand's pull requests starts a follow-up.
    let mut review = from_a_person(github_example("pull_request_review", "submitted"), None, None);
    let review_repo = review["repository"]["full_name"].clone();
    let pull = &mut review["pull_request"];
    pull["state"] = json!("open");
    pull["head"]["ref"] = json!("forgehand/issue-1-spelling");
    pull["head"]["repo"]["full_name"] = review_repo;
    review["review"]["state"] = json!("changes_requested");
    review["review"]["body"] = json!("Please add a test");
    let answer = app
        .deliver("github", Delivery::github("pull_request_review", serde_json::to_vec(&review).unwrap()))
        .await;
    assert_eq!((answer.status, answer.outcome()), (202, "task_created"), "{}", answer.text);

    let tasks = app.tasks().await;
    let summary: Vec<(String, i64, String, String)> =
        tasks.iter().rev().map(|t| (t.repo.clone(), t.number, t.kind.clone(), t.trigger.clone())).collect();
    let pr = review["pull_request"]["number"].as_i64().unwrap();
    let review_repo = review["repository"]["full_name"].as_str().unwrap().to_owned();
    assert_eq!(
        summary,
        [
            (full_name.clone(), number as i64, "implement".into(), "label".into()),
            (full_name, number as i64 + 100, "implement".into(), "comment".into()),
            (review_repo, pr, "follow_up".into(), "review".into()),
        ]
    );
    assert!(tasks[0].instructions.contains("Please add a test"), "{:?}", tasks[0]);
}

/// One Gitea fixture: its headers' event and event type, and its file.
fn gitea_events() -> Vec<(String, String, PathBuf)> {
    let dir = data_path("gitea/events");
    let index: Vec<Value> = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index
        .iter()
        .map(|entry| {
            let field = |key: &str| entry[key].as_str().unwrap().to_owned();
            (field("event"), field("event_type"), dir.join(field("file")))
        })
        .collect()
}

#[tokio::test]
async fn every_gitea_event_is_answered_2xx() {
    let app = TestApp::spawn().await;
    let events = gitea_events();
    let types: std::collections::BTreeSet<&str> = events.iter().map(|(_, t, _)| t.as_str()).collect();
    // Every hook event type a Gitea repository webhook can send (models/webhook HookEventType).
    for wanted in [
        "create",
        "delete",
        "fork",
        "push",
        "issues",
        "issue_assign",
        "issue_label",
        "issue_milestone",
        "issue_comment",
        "pull_request",
        "pull_request_assign",
        "pull_request_label",
        "pull_request_milestone",
        "pull_request_comment",
        "pull_request_review_approved",
        "pull_request_review_rejected",
        "pull_request_review_comment",
        "pull_request_sync",
        "pull_request_review_request",
        "wiki",
        "repository",
        "release",
        "package",
        "status",
        "workflow_run",
        "workflow_job",
    ] {
        assert!(types.contains(wanted), "no fixture of {wanted}");
    }
    let mut refused = Vec::new();
    for (event, event_type, path) in &events {
        let body = std::fs::read(path).unwrap();
        let answer = app.deliver("gitea", Delivery::gitea(event, event_type, body)).await;
        if !(200..300).contains(&answer.status) {
            refused.push(format!(
                "{} ({event}/{event_type}): {} {}",
                path.display(),
                answer.status,
                answer.text
            ));
        }
    }
    assert!(refused.is_empty(), "{} fixtures refused:\n{}", refused.len(), refused.join("\n"));
    assert_eq!(app.deliveries().await.len(), events.len());
}
