//! Budget caps: a spent daily cap keeps the next task `queued` with its reason on the task
//! page and, once, on the issue; raising the cap (a restart with the new configuration)
//! starts it.

use std::time::Duration;

use chrono::Utc;
use forgehand::db::entities::tasks;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use crate::executor::{Setup, World};
use crate::fake_forge::{Dialect, FakeForge};
use crate::harness::*;

const LONG: Duration = Duration::from_secs(60);
const REASON: &str = "the budget for today ($1.00 a day) is spent; it starts after midnight UTC or when \
                      budget.daily_usd / budget.monthly_usd is raised";

/// What the bot said on issue 43.
fn bot_comments(forge: &FakeForge, repo: &str) -> Vec<String> {
    let bot = forge.bot_login();
    forge.comments(repo, 43).into_iter().filter(|c| c.user == bot).map(|c| c.body).collect()
}

/// What the bot said on issue 43, once `done` holds of it (or after [`LONG`]).
async fn said_when(forge: &FakeForge, repo: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let told = bot_comments(forge, repo);
        if done(&told) || tokio::time::Instant::now() > deadline {
            return told;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_spent_daily_cap_keeps_the_next_task_waiting_until_it_is_raised() {
    let mut setup = Setup::new(Dialect::Github);
    setup.extra = "[budget]\ndaily_usd = 1.0\n".into();
    let world = World::start(setup).await;
    let first = world.finished(world.deliver_label().await).await;
    assert_eq!(first.status, "done", "{first:?}");
    // What the first task spent, as its run would have recorded it.
    tasks::Entity::update_many()
        .col_expr(tasks::Column::CostUsd, Expr::value(Some(2.5)))
        .col_expr(tasks::Column::FinishedAt, Expr::value(Some(Utc::now())))
        .filter(tasks::Column::Id.eq(first.id))
        .exec(world.app.db.connection_for_tests())
        .await
        .unwrap();

    world.forge.add_issue(world.repo, 43, "Issue 43", "Do it.", &["forgehand"], "alice");
    let body = edited("github/issues_labeled.json", "/issue/number", json!(43));
    let answer = world.deliver(Delivery::github("issues", body)).await;
    let id = answer.json["task_id"].as_i64().unwrap();
    let waiting = world.app.wait_task(id, LONG, |t| t.wait_reason.as_deref() == Some(REASON)).await;
    assert_eq!((waiting.status.as_str(), waiting.attempt), ("queued", 0), "{waiting:?}");
    let bot = world.forge.bot_login();
    let said = |forge: &crate::fake_forge::FakeForge| {
        forge
            .comments(world.repo, 43)
            .into_iter()
            .filter(|c| c.user == bot)
            .map(|c| c.body)
            .collect::<Vec<_>>()
    };
    // The wait is marked on the task before it is said on the issue.
    let told = said_when(&world.forge, world.repo, |told| !told.is_empty()).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].starts_with(&format!("⏸️ forgehand has not started this yet: {REASON}")), "{told:?}");
    let browser = crate::dashboard::Browser::login(&world.app).await;
    let (_, page) = browser.get(&format!("/tasks/{id}")).await;
    assert!(page.contains("the budget for today ($1.00 a day) is spent"), "{page}");
    let (_, dashboard) = browser.get("/").await;
    assert!(dashboard.contains("Budget: All repositories: spent $2.50 of $1.00 today"), "{dashboard}");
    // Claims go on: the task still waits, and nothing more is said.
    assert!(claims_go_on(&world.app.db, 3).await, "the executor stopped claiming");
    let still = world.app.db.task(id).await.unwrap().unwrap().0;
    assert_eq!((still.status.as_str(), still.attempt), ("queued", 0));
    assert_eq!(said(&world.forge), told, "said once, not on every poll");

    // The operator raises the cap: after the restart the task starts and ends.
    let config = std::fs::read_to_string(world.app.config_path()).unwrap();
    let World { app, forge, .. } = world;
    let dir = app.stop().await;
    let app = TestApp::spawn_config(dir, &config.replace("daily_usd = 1.0", "daily_usd = 10.0")).await;
    let done = app.wait_task(id, LONG, |t| !["queued", "running"].contains(&t.status.as_str())).await;
    assert_eq!((done.status.as_str(), done.wait_reason.as_deref()), ("done", None), "{done:?}");
    // The end is recorded before the status comment is edited.
    let told =
        said_when(&forge, "octo-org/hello-world", |told| told.iter().any(|c| c.starts_with("✅"))).await;
    assert_eq!(told.len(), 1, "the same status comment, edited: {told:?}");
    assert!(told[0].starts_with("✅ forgehand opened pull request"), "{told:?}");
}
