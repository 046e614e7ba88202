//! Agent profiles and the fair queue: routing by label, comment and repository, a
//! profile's own concurrency limit, and priority order.

use forgehand::db::queries::ClaimLimits;
use forgehand::trigger::{Routing, TaskKind, TaskRequest, TriggerKind};
use serde_json::json;

use crate::executor::{Setup, World};
use crate::fake_forge::Dialect;
use crate::harness::*;

const LONG: std::time::Duration = std::time::Duration::from_secs(60);

const PROFILES: &str = r#"
[[agents]]
name = "opus"
model = "opus-x"
[[agents]]
name = "solo"
max_concurrent = 1
[[agents]]
name = "cheap"
max_budget_usd = 0.01
fallback_model = "haiku-y"
"#;

fn setup(extra: &str) -> Setup {
    let mut setup = Setup::new(Dialect::Github);
    setup.extra = format!("{PROFILES}{extra}");
    setup
}

/// Queues issue `n` labelled with `labels` (the trigger label first) and returns its task.
async fn label(world: &World, n: u64, labels: &[&str]) -> i64 {
    world.forge.add_issue(world.repo, n, &format!("Issue {n}"), "", labels, "alice");
    let body = edited("github/issues_labeled.json", "/issue/number", json!(n));
    let names: Vec<_> = labels.iter().map(|l| json!({ "name": l })).collect();
    let body = edited_bytes(body, "/issue/labels", json!(names));
    let answer = world.deliver(Delivery::github("issues", body)).await;
    // The startup sweep may have queued the labelled issue first: then the delivery joins it.
    assert!(["task_created", "coalesced"].contains(&answer.outcome()), "{}", answer.text);
    answer.json["task_id"].as_i64().unwrap()
}

fn edited_bytes(body: Vec<u8>, pointer: &str, value: serde_json::Value) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    *json.pointer_mut(pointer).unwrap() = value;
    serde_json::to_vec(&json).unwrap()
}

#[tokio::test]
async fn a_label_routes_to_its_profile_and_the_pull_request_names_it() {
    let world = World::start(setup("")).await;
    world.forge.add_issue(world.repo, 42, "Add a --verbose flag to the CLI", "", &[], "alice");
    let id = label(&world, 7, &["forgehand", "forgehand:opus"]).await;
    let task = world.finished(id).await;
    assert_eq!(task.status, "done", "{task:?}");
    assert_eq!((task.agent_profile.as_deref(), task.agent_model.as_deref()), (Some("opus"), Some("opus-x")));
    let argv = world.agent_runs()[0]["argv"].clone();
    let args: Vec<&str> = argv.as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.windows(2).any(|w| w == ["--model", "opus-x"]), "{args:?}");
    let pull = &world.forge.pulls(world.repo)[0];
    assert!(pull.body.contains("agent `opus` (model `opus-x`)"), "{}", pull.body);
    let browser = crate::dashboard::Browser::login(&world.app).await;
    let (_, page) = browser.get(&format!("/tasks/{id}")).await;
    assert!(page.contains(r#"<dd id="agent">opus (opus-x)</dd>"#), "{page}");
    let (_, dashboard) = browser.get("/").await;
    for line in [
        "Agent profile opus (opus-x): 0 running, no limit of its own; breaker closed",
        "Agent profile solo (",
    ] {
        assert!(dashboard.contains(line), "{line:?} not on the dashboard: {dashboard}");
    }
    assert!(dashboard.contains("0 running, at most 1; breaker closed"), "{dashboard}");
}

#[tokio::test]
async fn a_label_naming_no_profile_starts_nothing_and_says_which_exist() {
    let world = World::start(setup("")).await;
    world.forge.add_issue(world.repo, 42, "Add a --verbose flag to the CLI", "", &[], "alice");
    world.forge.add_issue(world.repo, 8, "Issue 8", "", &["forgehand", "forgehand:gpt9"], "alice");
    let body = edited("github/issues_labeled.json", "/issue/number", json!(8));
    let body =
        edited_bytes(body, "/issue/labels", json!([{ "name": "forgehand" }, { "name": "forgehand:gpt9" }]));
    let answer = world.deliver(Delivery::github("issues", body)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer
            .text
            .contains("no agent profile is named \\\"gpt9\\\"; the profiles are default, opus, solo, cheap"),
        "{}",
        answer.text
    );
}

/// The repository's `[[repos]]` entry routes its tasks to `solo`, which runs one at a time
/// although the executor could run three.
#[tokio::test]
async fn a_profile_never_runs_more_than_its_max_concurrent() {
    let mut setup = setup("[[repos]]\nname = \"octo-org/hello-world\"\nagent = \"solo\"\n");
    setup.hold_ms = 400;
    setup.max_concurrent = 3;
    let world = World::start(setup).await;
    world.forge.add_issue(world.repo, 42, "Add a --verbose flag to the CLI", "", &[], "alice");
    let mut ids = Vec::new();
    for n in 1..=3u64 {
        ids.push(label(&world, n, &["forgehand"]).await);
    }
    let mut spans = Vec::new();
    for id in ids {
        let task = world.finished(id).await;
        assert_eq!((task.status.as_str(), task.agent_profile.as_deref()), ("done", Some("solo")));
        spans.push((task.started_at.unwrap(), task.finished_at.unwrap()));
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "two solo tasks overlapped: {spans:?}");
    }
}

/// With one place, a high-priority task queued last runs before a low one queued earlier.
#[tokio::test]
async fn higher_priority_runs_first() {
    let mut setup = setup("");
    setup.hold_ms = 600;
    setup.max_concurrent = 1;
    let world = World::start(setup).await;
    world.forge.add_issue(world.repo, 42, "Add a --verbose flag to the CLI", "", &[], "alice");
    let first = label(&world, 1, &["forgehand"]).await;
    world.app.wait_task(first, LONG, |t| t.status.as_str() == "running").await;
    let low = label(&world, 2, &["forgehand", "forgehand:priority-low"]).await;
    let high = label(&world, 3, &["forgehand", "forgehand:priority-high"]).await;
    let (low, high) = (world.finished(low).await, world.finished(high).await);
    assert_eq!((low.priority, high.priority), (-10, 10));
    assert!(high.started_at < low.started_at, "high {:?} vs low {:?}", high.started_at, low.started_at);
}

/// The stand-in agent reports $0.0123 for its run: over `cheap`'s $0.01, so the task fails
/// and says what was spent; Claude Code is told the cap and the fallback model.
#[tokio::test]
async fn a_run_over_its_budget_fails_the_task_with_the_spend() {
    let world = World::start(setup("")).await;
    world.forge.add_issue(world.repo, 42, "Add a --verbose flag to the CLI", "", &[], "alice");
    let id = label(&world, 9, &["forgehand", "forgehand:cheap"]).await;
    let task = world.finished(id).await;
    assert_eq!(task.status, "failed", "{task:?}");
    let error = task.error.unwrap_or_default();
    assert!(error.contains("spent $0.0123, more than its profile's max_budget_usd of $0.0100"), "{error}");
    let argv = world.agent_runs()[0]["argv"].clone();
    let args: Vec<&str> = argv.as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.windows(2).any(|w| w == ["--max-budget-usd", "0.01"]), "{args:?}");
    assert!(args.windows(2).any(|w| w == ["--fallback-model", "haiku-y"]), "{args:?}");
    assert!(world.forge.pulls(world.repo).is_empty());
}

/// Commits `path` = `content` on top of `main` in the bare repository `remote`.
fn commit_on_main(remote: &std::path::Path, path: &str, content: &str) {
    let repo = git2::Repository::open_bare(remote).unwrap();
    let parent = repo.find_reference("refs/heads/main").unwrap().peel_to_commit().unwrap();
    let mut tree = repo.treebuilder(Some(&parent.tree().unwrap())).unwrap();
    tree.insert(path, repo.blob(content.as_bytes()).unwrap(), 0o100644).unwrap();
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let sig = git2::Signature::now("someone", "someone@test").unwrap();
    repo.commit(Some("refs/heads/main"), &sig, &sig, "a person's change", &tree, &[&parent]).unwrap();
}

/// The repository's `.forgehand.toml` says `agent = "opus"`, which `repo_config.agents`
/// allows: a task nobody routed moves to `opus` before its agent starts (one agent run,
/// on `opus`); a task a label routed to `solo` stays there.
#[tokio::test]
async fn the_repository_file_chooses_an_allowed_profile_unless_a_label_did() {
    let world = World::start(setup("[repo_config]\nagents = [\"opus\"]\n")).await;
    commit_on_main(&world.remote, ".forgehand.toml", "agent = \"opus\"\n");
    world.forge.add_issue(world.repo, 42, "Add a --verbose flag to the CLI", "", &[], "alice");
    let id = label(&world, 7, &["forgehand"]).await;
    let task = world.finished(id).await;
    assert_eq!(task.status, "done", "{task:?}");
    assert_eq!((task.agent_profile.as_deref(), task.agent_model.as_deref()), (Some("opus"), Some("opus-x")));
    assert_eq!((task.agent_source.as_deref(), task.attempt), (Some("file"), 1), "the switch is no attempt");
    let runs = world.agent_runs();
    assert_eq!(runs.len(), 1, "the agent ran once, on the file's profile: {runs:?}");
    let args: Vec<&str> = runs[0]["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.windows(2).any(|w| w == ["--model", "opus-x"]), "{args:?}");
    let (_, events) = world.app.db.task(id).await.unwrap().unwrap();
    assert!(
        events.iter().any(|e| e
            .message
            .contains(".forgehand.toml chose the agent profile \"opus\" (routed to \"default\")")),
        "{events:?}"
    );
    let pull = &world.forge.pulls(world.repo)[0];
    assert!(pull.body.contains("agent `opus` (model `opus-x`)"), "{}", pull.body);
    let labelled = label(&world, 8, &["forgehand", "forgehand:solo"]).await;
    let task = world.finished(labelled).await;
    assert_eq!((task.status.as_str(), task.agent_profile.as_deref()), ("done", Some("solo")));
    assert_eq!(world.agent_runs().len(), 2);
}

/// A file naming a profile the operator does not let it choose: said once on the issue
/// and on the task page; the task runs on the profile it was routed to.
#[tokio::test]
async fn a_repository_file_naming_a_profile_it_may_not_choose_is_told_so() {
    let world = World::start(setup("[repo_config]\nagents = [\"opus\"]\n")).await;
    commit_on_main(&world.remote, ".forgehand.toml", "checks = []\nagent = \"solo\"\n");
    world.forge.add_issue(world.repo, 42, "Add a --verbose flag to the CLI", "", &[], "alice");
    let id = label(&world, 7, &["forgehand"]).await;
    let task = world.finished(id).await;
    assert_eq!((task.status.as_str(), task.agent_profile.as_deref()), ("done", Some("default")), "{task:?}");
    let said = ".forgehand.toml line 2: agent = \"solo\": the operator does not let this repository choose that profile (allowed: opus;";
    let comments = world.bot_comments(7);
    assert_eq!(comments.iter().filter(|c| c.contains(said)).count(), 1, "{comments:?}");
    let (_, page) = crate::dashboard::Browser::login(&world.app).await.get(&format!("/tasks/{id}")).await;
    assert!(
        page.contains(
            "(allowed: opus; repo_config.agents or [[repos]] agents); the task runs on &#34;default&#34;"
        ),
        "{page}"
    );
}

pub fn queued(repo: &str, number: u32, profile: Option<&str>, priority: i32) -> TaskRequest {
    TaskRequest {
        kind: TaskKind::Implement,
        trigger: TriggerKind::Label,
        repo: repo.into(),
        clone_url: "file:///r.git".into(),
        number: number.into(),
        title: "t".into(),
        requested_by: "alice".into(),
        instructions: String::new(),
        branch: None,
        routing: Routing { profile: profile.map(str::to_owned), priority, source: None },
        feedback_ref: None,
    }
}

/// Claims until nothing is claimable; the numbers of the tasks claimed, in order.
pub async fn claim_all(db: &forgehand::db::Db, limits: &ClaimLimits) -> Vec<i64> {
    let mut claimed = Vec::new();
    while let Some(task) = db.claim_next("me/1", chrono::Duration::minutes(5), limits).await.unwrap() {
        claimed.push(task.number);
    }
    claimed
}

/// The claim statement alone, many tasks from two repositories: priority first, then a
/// repository with nothing running, then age; `max_running` and holds are never passed.
#[tokio::test]
async fn the_claim_orders_by_priority_then_fairness_then_age() {
    let app = TestApp::spawn().await;
    // a/busy queues 1-6 first; b/quiet queues 7-9 after; 10 is a/busy's but urgent.
    for n in 1..=6 {
        app.db.queue_task("github", &queued("a/busy", n, None, 0), "queued").await.unwrap();
    }
    for n in 7..=9 {
        app.db.queue_task("github", &queued("b/quiet", n, None, 0), "queued").await.unwrap();
    }
    app.db.queue_task("github", &queued("a/busy", 10, None, 5), "queued").await.unwrap();
    let limits = ClaimLimits { repos: vec![("a/busy".into(), 3)], ..Default::default() };
    let claimed = claim_all(&app.db, &limits).await;
    // 10 (priority); 7 (b/quiet has nothing running, a/busy has); then both have tasks
    // running, so age decides: 1, 2 (a/busy reaches max_running = 3), then b/quiet's 8, 9.
    assert_eq!(claimed, [10, 7, 1, 2, 8, 9]);
}

#[tokio::test]
async fn held_tasks_stay_queued_until_released_and_profiles_keep_their_limit() {
    let app = TestApp::spawn().await;
    for (n, profile) in [(1, Some("solo")), (2, Some("solo")), (3, None)] {
        app.db.queue_task("github", &queued("a/busy", n, profile, 0), "queued").await.unwrap();
    }
    app.db.queue_task("github", &queued("b/quiet", 4, None, 0), "queued").await.unwrap();
    let limits = ClaimLimits { profiles: vec![("solo".into(), 1)], ..Default::default() };
    assert!(app.db.hold("*", "test").await.unwrap());
    assert!(!app.db.hold("*", "test").await.unwrap(), "a second hold changes nothing");
    assert!(claim_all(&app.db, &limits).await.is_empty(), "the whole queue is held");
    assert!(app.db.release_hold("*").await.unwrap());
    assert!(app.db.hold("B/Quiet", "test").await.unwrap());
    assert_eq!(claim_all(&app.db, &limits).await, [1, 3], "one solo task at a time; b/quiet held");
    assert_eq!(app.db.holds().await.unwrap(), [("b/quiet".to_owned(), "test".to_owned())]);
    let quiet = app.tasks().await.into_iter().find(|t| t.repo == "b/quiet").unwrap().id;
    let (_, page) = crate::dashboard::Browser::login(&app).await.get(&format!("/tasks/{quiet}")).await;
    assert!(
        page.contains(
            "Waiting: the queue of b/quiet is held (by test); it runs after `forgehand release b/quiet`"
        ),
        "the held task says why: {page}"
    );
    let (_, dashboard) = crate::dashboard::Browser::login(&app).await.get("/").await;
    assert!(dashboard.contains("Held: b/quiet (by test)"), "{dashboard}");
    assert!(app.db.release_hold("b/quiet").await.unwrap());
    assert_eq!(claim_all(&app.db, &limits).await, [4]);
}

/// The dashboard's Hold and Release buttons do what `forgehand hold` and `release` do,
/// behind the session's CSRF token.
#[tokio::test]
async fn the_dashboard_holds_and_releases_a_queue() {
    let app = TestApp::spawn().await;
    let browser = crate::dashboard::Browser::login(&app).await;
    let (_, page) = browser.get("/").await;
    assert!(page.contains(r#"data-testid="hold-button""#), "{page}");
    let csrf = crate::dashboard::csrf_of(&page);
    let (status, _) = browser.post("/queue/hold", &[("csrf", "forged"), ("scope", "a/busy")]).await;
    assert_eq!(status, 403, "a forged token changes nothing");
    assert!(app.db.holds().await.unwrap().is_empty());
    let (status, location) = browser.post("/queue/hold", &[("csrf", &csrf), ("scope", "A/Busy")]).await;
    assert_eq!((status, location.as_str()), (303, "/"));
    assert_eq!(app.db.holds().await.unwrap(), [("a/busy".to_owned(), "the dashboard".to_owned())]);
    let (_, page) = browser.get("/").await;
    assert!(page.contains("Held: a/busy (by the dashboard)"), "{page}");
    let (status, _) = browser.post("/queue/hold", &[("csrf", &csrf), ("scope", "not a repo")]).await;
    assert_eq!(status, 400);
    let (status, _) = browser.post("/queue/hold", &[("csrf", &csrf), ("scope", "")]).await;
    assert_eq!(status, 303);
    assert_eq!(app.db.holds().await.unwrap().len(), 2, "the whole queue too");
    for scope in ["a/busy", ""] {
        let (status, _) = browser.post("/queue/release", &[("csrf", &csrf), ("scope", scope)]).await;
        assert_eq!(status, 303);
    }
    assert!(app.db.holds().await.unwrap().is_empty());
}
