//! Refused deliveries: recorded without body or secret headers, bounded, shown on
//! `/deliveries` and `/setup`, never slowing accepted deliveries; the migration that adds
//! them upgrades a database of the previous schema.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::dashboard::Browser;
use crate::harness::*;
use forgehand::db::REFUSALS_KEPT;

const MARKER: &str = "BODY-MARKER-never-stored";

fn wrongly_signed() -> Delivery {
    let body = edited("github/issues_labeled.json", "/issue/title", json!(MARKER));
    Delivery::github("issues", body)
        .set_header("x-hub-signature-256", Some(&format!("sha256={}", "0".repeat(64))))
        .set_header("authorization", Some("Bearer secret-in-a-header"))
}

#[tokio::test]
async fn a_refused_delivery_is_recorded_without_body_or_headers_and_shown() {
    let app = TestApp::spawn().await;
    let answer = app.deliver("github", wrongly_signed()).await;
    assert_eq!(answer.status, 401, "{}", answer.text);
    assert_eq!(
        app.deliver("githbu", Delivery::github("issues", fixture("github/ping.json"))).await.status,
        404
    );

    let refused = app.wait_refusals(2).await;
    let (typo, signature) = (&refused[0], &refused[1]);
    assert_eq!((typo.forge.as_str(), typo.status), ("githbu", 404));
    assert!(typo.reason.contains("no forge named \"githbu\""), "{typo:?}");
    assert_eq!(
        (signature.forge.as_str(), signature.status, signature.event.as_deref()),
        ("github", 401, Some("issues"))
    );
    assert!(signature.reason.contains("matches none of the webhook secrets"), "{signature:?}");
    assert!(signature.delivery_id.as_deref().is_some_and(|id| id.starts_with("test-")), "{signature:?}");
    assert_eq!(signature.source.as_deref(), Some("127.0.0.1"));
    let stored = format!("{refused:?}");
    for secret in [MARKER, "secret-in-a-header", GITHUB_SECRET, "sha256="] {
        assert!(!stored.contains(secret), "{secret} was stored: {stored}");
    }
    assert!(app.deliveries().await.is_empty(), "a refused delivery is not an accepted one");

    let browser = Browser::login(&app).await;
    let (_, page) = browser.get("/deliveries").await;
    assert!(
        page.contains("id=\"refused\"") && page.contains("githbu") && page.contains("127.0.0.1"),
        "{page}"
    );
    let (_, page) = browser.get("/deliveries?forge=github").await;
    assert!(!page.contains("githbu"), "the forge filter applies to refusals too");
    let (_, setup) = browser.get("/setup").await;
    assert!(
        setup.contains("The last delivery for github was refused (401, ")
            && setup.contains("the signature matches none of the webhook secrets"),
        "{setup}"
    );
    assert!(setup.contains("No delivery for gitea has arrived yet."), "{setup}");
    let accepted =
        app.deliver("github", Delivery::github("issues", fixture("github/issues_labeled.json"))).await;
    assert_eq!(accepted.status, 202);
    let (_, setup) = browser.get("/setup").await;
    assert!(setup.contains("The last delivery for github was accepted"), "{setup}");
}

#[tokio::test]
async fn only_the_last_refusals_are_kept_whatever_arrives() {
    let app = TestApp::spawn().await;
    let mut sent = 0;
    while sent < 3 * REFUSALS_KEPT {
        let (status, _) = post_unsigned(&app, "github").await;
        assert_eq!(status, 401);
        sent += 1;
    }
    app.wait_refusals(REFUSALS_KEPT as usize).await;
    // The queue may have dropped some of a burst; a refusal sent after it drained is kept.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert_eq!(post_unsigned(&app, "the-last-one").await.0, 404);
        tokio::time::sleep(forgehand::server::refusals::PACE).await;
        let newest = app.db.recent_refusals(1).await.unwrap();
        if newest[0].forge == "the-last-one" {
            break;
        }
        assert!(Instant::now() < deadline, "a refusal after the burst was never recorded");
    }
    let kept = app.db.recent_refusals(10_000).await.unwrap();
    assert_eq!(kept.len() as i64, REFUSALS_KEPT, "the table is bounded");
}

async fn post_unsigned(app: &TestApp, forge: &str) -> (u16, Duration) {
    let started = Instant::now();
    let answer = app
        .deliver(forge, Delivery::github("issues", b"{}".to_vec()).set_header("x-hub-signature-256", None))
        .await;
    (answer.status, started.elapsed())
}

/// A flood of refused deliveries beside real ones: every real one is accepted, and no
/// slower than without the flood by more than a little.
#[tokio::test]
async fn a_refusal_flood_does_not_starve_real_deliveries() {
    let app = TestApp::spawn().await;
    let quiet = real_deliveries(&app, 0, 40).await;
    let flood = {
        let (base, client) = (app.base.clone(), reqwest::Client::new());
        tokio::spawn(async move {
            let mut senders = Vec::new();
            for _ in 0..8 {
                let (base, client) = (base.clone(), client.clone());
                senders.push(tokio::spawn(async move {
                    for _ in 0..250 {
                        let sent = client
                            .post(format!("{base}/webhooks/github"))
                            .header("content-type", "application/json")
                            .header("x-github-event", "issues")
                            .header("x-hub-signature-256", format!("sha256={}", "1".repeat(64)))
                            .body("{}")
                            .send()
                            .await;
                        assert_eq!(sent.unwrap().status(), 401);
                    }
                }));
            }
            for sender in senders {
                sender.await.unwrap();
            }
        })
    };
    let loud = real_deliveries(&app, 1000, 40).await;
    flood.await.unwrap();
    let (p_quiet, p_loud) = (percentile(&quiet, 0.95), percentile(&loud, 0.95));
    println!("intake p95 without a flood {p_quiet:?}, during 2000 refused deliveries {p_loud:?}");
    assert!(p_loud < p_quiet * 5 + Duration::from_millis(250), "quiet {p_quiet:?}, flooded {p_loud:?}");
    let kept = app.wait_refusals(1).await.len() as i64;
    assert!(kept <= REFUSALS_KEPT, "{kept} refusals kept");
}

/// Sends `count` labelled issues (numbers from `first`); each must be accepted. Their
/// answer times.
async fn real_deliveries(app: &TestApp, first: u64, count: u64) -> Vec<Duration> {
    let mut times = Vec::new();
    for n in first..first + count {
        let body = edited("github/issues_labeled.json", "/issue/number", json!(n + 1));
        let started = Instant::now();
        let answer = app.deliver("github", Delivery::github("issues", body)).await;
        times.push(started.elapsed());
        assert_eq!(answer.status, 202, "{}", answer.text);
    }
    times
}

fn percentile(times: &[Duration], p: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// A database made by the previous schema (the migrations before this one), with a
/// delivery in it, is upgraded at the next start and keeps what it had.
#[tokio::test]
async fn the_migration_upgrades_a_database_of_the_previous_release() {
    use sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().unwrap();
    let (url, old) = database_migrated_to(dir.path(), previous_release()).await;
    old.execute_unprepared(
        "INSERT INTO deliveries (forge, delivery_id, event, received_at, outcome, reason) \
         VALUES ('github', 'old-1', 'issues', '2026-11-30 10:00:00+00:00', 'ignored', 'from before')",
    )
    .await
    .unwrap();
    old.close().await.unwrap();

    let config = config_text_on(&dir.path().join("data"), &format!("[database]\nurl = \"{url}\"\n"), "");
    let app = TestApp::spawn_config(dir, &config).await;
    assert_eq!(app.deliveries().await[0].delivery_id, "old-1", "the old rows are kept");
    assert!(matches!(
        app.db.last_delivery("github").await.unwrap(),
        Some(forgehand::db::LastDelivery::Accepted { .. })
    ));
    assert_eq!(app.deliver("github", wrongly_signed()).await.status, 401);
    assert_eq!(app.wait_refusals(1).await[0].status, 401, "the new table works");
}
