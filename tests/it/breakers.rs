//! Circuit breakers: the real Claude Code CLI meets an overloaded model (HTTP 529), the
//! default profile's breaker opens, the task and the next one run on the fallback profile,
//! and after the cool-down one trial task on the default profile closes the breaker again.
//! Without a fallback, tasks wait with the reason on their page. Exactly one of many
//! concurrent claimers gets a half-open breaker's trial, on SQLite and on PostgreSQL.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use forgehand::config::BreakerSettings;
use forgehand::db::BreakerState;
use forgehand::db::entities::{breakers, tasks};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use crate::fake_forge::Dialect;
use crate::harness::*;
use crate::model_server::{Behaviour, Turn};
use crate::real_claude::{Options, World};

const LONG: Duration = Duration::from_secs(90);

fn script_agent() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agent/script-agent").display().to_string()
}

/// Labels issue `n` on the fake GitHub and returns its task.
async fn label(world: &World, n: u64) -> i64 {
    world.forge.add_issue(world.repo, n, &format!("Issue {n}"), "Do it.", &["forgehand"], "alice");
    let body = edited("github/issues_labeled.json", "/issue/number", json!(n));
    let answer = world.app.deliver("github", Delivery::github("issues", body)).await;
    assert!(["task_created", "coalesced"].contains(&answer.outcome()), "{}", answer.text);
    answer.json["task_id"].as_i64().unwrap()
}

async fn ended(world: &World, id: i64) -> tasks::Model {
    world.app.wait_task(id, LONG, |t| !["queued", "running"].contains(&t.status.as_str())).await
}

async fn breaker(world: &World, profile: &str) -> breakers::Model {
    let breakers = world.app.db.breakers().await.unwrap();
    breakers.into_iter().find(|b| b.profile == profile).expect("the breaker has a row")
}

async fn metrics(world: &World) -> String {
    reqwest::get(format!("{}/metrics", world.app.base)).await.unwrap().text().await.unwrap()
}

/// Moves the breaker's opening back by two hours: its cool-down is over.
async fn cool_down(world: &World, profile: &str) {
    breakers::Entity::update_many()
        .col_expr(breakers::Column::OpenedAt, Expr::value(Some(Utc::now() - chrono::Duration::hours(2))))
        .filter(breakers::Column::Profile.eq(profile))
        .exec(world.app.db.connection_for_tests())
        .await
        .unwrap();
}

async fn events(world: &World, id: i64) -> Vec<String> {
    let (_, events) = world.app.db.task(id).await.unwrap().unwrap();
    events.into_iter().map(|e| e.message).collect()
}

#[tokio::test]
async fn an_overloaded_model_opens_the_breaker_tasks_fall_back_and_a_trial_closes_it() {
    let mut options = Options::new(Dialect::Github);
    options.agent_extra = "fallback = \"backup\"".into();
    options.extra = format!(
        "[breaker]\nfailures = 1\ncooldown_secs = 3600\n\
         [[agents]]\nname = \"backup\"\nkind = \"command\"\ncommand = \"{}\"\nargs = []\n",
        script_agent()
    );
    let then = Box::new(Behaviour::Script(vec![
        Turn::write("VERBOSE.md", "The CLI takes --verbose.\n"),
        Turn::text("Added VERBOSE.md."),
    ]));
    let world = World::start(options, Behaviour::FailFirst { status: 529, times: 1, then }).await;

    // The real CLI meets 529: a provider failure. The breaker opens (failures = 1) and the
    // task is retried on the fallback at once, its attempt not counted.
    let first = world.finished(world.deliver_label().await).await;
    assert_eq!(first.status, "done", "{first:?}");
    assert_eq!((first.agent_profile.as_deref(), first.attempt), (Some("backup"), 1), "{first:?}");
    let said = events(&world, first.id).await;
    let rerouted = "retrying on the fallback profile \"backup\", the attempt not counted: \
                    the model API is unavailable (HTTP 529 overloaded)";
    assert!(said.iter().any(|m| m == rerouted), "{said:#?}");
    let open = breaker(&world, "default").await;
    assert_eq!(BreakerState::parse(&open.state), BreakerState::Open, "{open:?}");
    assert_eq!(open.last_error.as_deref(), Some("the model API is unavailable (HTTP 529 overloaded)"));
    assert_eq!(world.model.turn_requests().len(), 1, "one model call, answered 529");
    let text = metrics(&world).await;
    assert!(text.contains("forgehand_breaker_open{profile=\"default\"} 1\n"), "{text}");
    assert!(text.contains("forgehand_breaker_open{profile=\"backup\"} 0\n"), "{text}");
    let browser = crate::dashboard::Browser::login(&world.app).await;
    let (_, page) = browser.get("/").await;
    assert!(
        page.contains("Circuit breaker of agent profile default: open for")
            && page.contains("last error: the model API is unavailable (HTTP 529 overloaded)")
            && page.contains("its tasks run on backup"),
        "{page}"
    );

    // While it is open, a new task goes straight to the fallback: the model is not asked.
    let second = ended(&world, label(&world, 43).await).await;
    assert_eq!(second.status, "done", "{second:?}");
    assert_eq!(
        (second.agent_profile.as_deref(), second.fallback_from.as_deref(), second.attempt),
        (Some("backup"), Some("default"), 1)
    );
    let said = events(&world, second.id).await;
    let note = "the circuit breaker of profile \"default\" is open: runs on its fallback \"backup\"";
    assert!(said.iter().any(|m| m == note), "{said:#?}");
    assert_eq!(world.model.turn_requests().len(), 1, "the open breaker kept the task off the model");
    // The pull request and the task page name the profile and model that ran, and why.
    let pull = world
        .forge
        .pulls(world.repo)
        .into_iter()
        .find(|p| second.pr_url.as_deref() == Some(p.html_url.as_str()));
    let body = pull.expect("the second task's pull request").body;
    assert!(body.contains("agent `backup` (the CLI's default model), the fallback of `default`"), "{body}");
    let (_, page) = browser.get(&format!("/tasks/{}", second.id)).await;
    let shown = r#"<dd id="agent">backup (the CLI&#39;s default model), the fallback of default</dd>"#;
    assert!(page.contains(shown), "{page}");

    // The cool-down is over: one trial task runs on the default profile, the model
    // answers, and the breaker closes.
    cool_down(&world, "default").await;
    let third = ended(&world, label(&world, 44).await).await;
    assert_eq!(third.status, "done", "{third:?}");
    assert_eq!((third.agent_profile.as_deref(), third.fallback_from.as_deref()), (Some("default"), None));
    let said = events(&world, third.id).await;
    assert!(said.iter().any(|m| m.starts_with("trial run: the circuit breaker")), "{said:#?}");
    let closed = breaker(&world, "default").await;
    assert_eq!((BreakerState::parse(&closed.state), closed.failures), (BreakerState::Closed, 0));
    let text = metrics(&world).await;
    assert!(text.contains("forgehand_breaker_open{profile=\"default\"} 0\n"), "{text}");
    assert!(world.model.turn_requests().len() >= 2, "the trial asked the model");
}

#[tokio::test]
async fn without_a_fallback_tasks_wait_with_the_reason_until_the_trial() {
    let mut options = Options::new(Dialect::Github);
    options.max_attempts = 1;
    options.extra = "[breaker]\nfailures = 1\ncooldown_secs = 3600\n".into();
    let then = Box::new(Behaviour::Script(vec![
        Turn::write("VERBOSE.md", "The CLI takes --verbose.\n"),
        Turn::text("Added VERBOSE.md."),
    ]));
    let world = World::start(options, Behaviour::FailFirst { status: 529, times: 1, then }).await;
    let first = world.finished(world.deliver_label().await).await;
    assert_eq!(first.status, "failed", "no fallback, no attempt left: {first:?}");
    assert_eq!(BreakerState::parse(&breaker(&world, "default").await.state), BreakerState::Open);

    let id = label(&world, 43).await;
    let browser = crate::dashboard::Browser::login(&world.app).await;
    // The claim skips it, and its page says why.
    let deadline = tokio::time::Instant::now() + LONG;
    let page = loop {
        let (_, page) = browser.get(&format!("/tasks/{id}")).await;
        if page.contains("its tasks wait in the queue") || tokio::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        page.contains("Circuit breaker of agent profile default: open for")
            && page
                .contains("its tasks wait in the queue; it runs when the breaker lets a trial task through"),
        "{page}"
    );
    // Several claims later it still waits.
    assert!(claims_go_on(&world.app.db, 3).await, "the executor stopped claiming");
    let waiting = world.app.db.task(id).await.unwrap().unwrap().0;
    assert_eq!((waiting.status.as_str(), waiting.attempt), ("queued", 0), "{waiting:?}");

    cool_down(&world, "default").await;
    let done = ended(&world, id).await;
    assert_eq!(done.status, "done", "{done:?}");
    assert_eq!(BreakerState::parse(&breaker(&world, "default").await.state), BreakerState::Closed);
}

#[tokio::test]
async fn exactly_one_of_many_claimers_gets_a_half_open_trial() {
    let app = TestApp::spawn().await;
    let rules = BreakerSettings { failures: 1, window_secs: 60, cooldown_secs: 600 };
    let change = app.db.record_breaker_run("opus", Some("HTTP 529"), &rules).await.unwrap().unwrap();
    assert_eq!((change.from, change.to), (BreakerState::Closed, BreakerState::Open));
    assert!(!app.db.take_breaker_trial("opus", &rules).await.unwrap(), "still cooling down");
    breakers::Entity::update_many()
        .col_expr(breakers::Column::OpenedAt, Expr::value(Some(Utc::now() - chrono::Duration::hours(2))))
        .exec(app.db.connection_for_tests())
        .await
        .unwrap();
    let takers = (0..8).map(|_| {
        let (db, rules) = (app.db.clone(), rules.clone());
        tokio::spawn(async move { db.take_breaker_trial("opus", &rules).await.unwrap() })
    });
    let mut won = 0;
    for taker in takers {
        won += usize::from(taker.await.unwrap());
    }
    assert_eq!(won, 1, "one trial, whoever asks");
    let row = app.db.breakers().await.unwrap().pop().unwrap();
    assert_eq!(BreakerState::parse(&row.state), BreakerState::HalfOpen);
    let closed = app.db.record_breaker_run("opus", None, &rules).await.unwrap().unwrap();
    assert_eq!((closed.from, closed.to), (BreakerState::HalfOpen, BreakerState::Closed));
}

/// The claim statement alone: an open breaker's tasks are claimed onto the fallback (and
/// count against the fallback's limit), a blocked profile's tasks stay queued, and a
/// trial claims only its own profile's task.
#[tokio::test]
async fn the_claim_sends_tasks_past_open_breakers() {
    use crate::profiles::{claim_all, queued};
    use forgehand::db::queries::ClaimLimits;
    let app = TestApp::spawn().await;
    for (n, profile) in [(1, Some("opus")), (2, Some("opus")), (3, Some("haiku")), (4, None)] {
        app.db.queue_task("github", &queued("a/r", n, profile, 0), "queued").await.unwrap();
    }
    let trial = ClaimLimits { only_profile: Some("haiku".into()), ..Default::default() };
    assert_eq!(claim_all(&app.db, &trial).await, [3], "a trial takes its own profile's task only");
    let limits = ClaimLimits {
        profiles: vec![("sonnet".into(), 1)],
        routes: vec![("opus".into(), "sonnet".into())],
        blocked: vec!["default".into()],
        ..Default::default()
    };
    // opus's tasks run on sonnet, one at a time (sonnet's limit); default's wait.
    assert_eq!(claim_all(&app.db, &limits).await, [1]);
    let tasks = app.tasks().await;
    let one = tasks.iter().find(|t| t.number == 1).unwrap();
    assert_eq!((one.agent_profile.as_deref(), one.fallback_from.as_deref()), (Some("sonnet"), Some("opus")));
    let two = tasks.iter().find(|t| t.number == 2).unwrap();
    assert_eq!((two.status.as_str(), two.agent_profile.as_deref()), ("queued", Some("opus")));
    assert_eq!(claim_all(&app.db, &ClaimLimits::default()).await, [2, 4], "breakers closed: all run");
    let two = app.tasks().await.into_iter().find(|t| t.number == 2).unwrap();
    assert_eq!((two.agent_profile.as_deref(), two.fallback_from), (Some("opus"), None));
}

/// The claim statement among 10,000 queued tasks of two profiles and 100 repositories, with
/// a breaker's route, a blocked profile, a capped repository and limits: it takes routed tasks
/// (their fallback recorded). With `--nocapture` it prints what each claim took (the figures
/// in design.md were taken at 100,000 with `TASKS` raised).
#[tokio::test]
async fn the_claim_takes_routed_tasks_among_many_past_blocks_and_caps() {
    const TASKS: u32 = 10_000;
    use forgehand::db::queries::ClaimLimits;
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn().await;
    let conn = app.db.connection_for_tests();
    let sql = format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {TASKS}) \
         INSERT INTO tasks (forge, repo, number, kind, trigger, requested_by, title, instructions, \
         clone_url, status, attempt, cancel_requested, created_at, updated_at, priority, questions_asked, agent_profile) \
         SELECT 'github', 'o/repo-' || (x % 100), x, 'implement', 'label', 'alice', 't', '', 'file:///r', \
         'queued', 0, false, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', 0, 0, \
         CASE WHEN x % 2 = 0 THEN 'opus' ELSE NULL END FROM c"
    );
    let started = std::time::Instant::now();
    conn.execute_unprepared(&sql).await.unwrap();
    println!("filled {TASKS} queued tasks in {:?}", started.elapsed());
    let limits = ClaimLimits {
        profiles: vec![("sonnet".into(), 50)],
        repos: vec![("o/repo-1".into(), 2)],
        routes: vec![("opus".into(), "sonnet".into())],
        blocked: vec!["default".into()],
        capped_repos: vec!["o/repo-2".into()],
        only_profile: None,
    };
    for round in 0..5 {
        let started = std::time::Instant::now();
        let task = app.db.claim_next("me/1", chrono::Duration::minutes(5), &limits).await.unwrap().unwrap();
        println!("claim {round}: task {} in {:?}", task.id, started.elapsed());
        assert_eq!(task.fallback_from.as_deref(), Some("opus"));
    }
    let started = std::time::Instant::now();
    let spend = app.db.spend(Utc::now()).await.unwrap();
    println!("spend read in {:?} ({} repositories)", started.elapsed(), spend.by_repo.len());
}
