//! The audit log: what operators do lands in one hash chain, `forgehand audit verify`
//! finds an edited or deleted entry, concurrent appends keep one chain, and no secret is
//! ever written.

use std::process::Output;

use forgehand::db::audit::{AuditFilter, ChainCheck, NewAuditEntry};
use sea_orm::ConnectionTrait;

use crate::dashboard::{Browser, FormBody, client};
use crate::harness::*;

const BINARY: &str = env!("CARGO_BIN_EXE_forgehand");

async fn cli(app: &TestApp, args: &[&str]) -> Output {
    tokio::process::Command::new(BINARY)
        .arg("--config")
        .arg(app.config_path())
        .args(args)
        .env("USER", "carol")
        .output()
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test]
async fn scripted_actions_make_a_chain_that_verifies_and_an_edited_row_is_named() {
    let app = TestApp::spawn().await;
    // A wrong token, then the right one.
    let wrong = client()
        .post(format!("{}/login", app.base))
        .form_body(&[("token", "guessed-wrong-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let browser = Browser::login(&app).await;
    // Cancel a queued task, retry it.
    let answer =
        app.deliver("github", Delivery::github("issues", fixture("github/issues_labeled.json"))).await;
    let id = answer.json["task_id"].as_i64().unwrap();
    let (status, _) = browser.post(&format!("/tasks/{id}/cancel"), &[("csrf", &browser.csrf)]).await;
    assert_eq!(status, 303);
    let (status, _) = browser.post(&format!("/tasks/{id}/retry"), &[("csrf", &browser.csrf)]).await;
    assert_eq!(status, 303);
    // The command line holds and releases the queue.
    assert!(cli(&app, &["hold", "octo-org/hello-world"]).await.status.success());
    assert!(cli(&app, &["release", "octo-org/hello-world"]).await.status.success());
    let (status, _) = browser.post("/logout", &[("csrf", &browser.csrf)]).await;
    assert_eq!(status, 303);

    let entries = app.db.audit_list(&AuditFilter { limit: 100, ..Default::default() }).await.unwrap();
    let actions: Vec<&str> = entries.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["login_failed", "login", "task_cancel", "task_retry", "hold", "release", "logout"]);
    assert_eq!(entries.last().unwrap().peer, "127.0.0.1", "a failed login names its address");
    assert_eq!(entries[1].actor, "cli:carol");
    assert_eq!(entries[1].target, "octo-org/hello-world");
    for e in &entries {
        let all = format!("{e:?}");
        for secret in [ADMIN_TOKEN, "guessed-wrong-token", GITHUB_SECRET] {
            assert!(!all.contains(secret), "a secret in the audit log: {all}");
        }
    }

    let verified = cli(&app, &["audit", "verify"]).await;
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains("intact: 7 entries"), "{}", text(&verified));
    let listed = cli(&app, &["audit", "list", "--action", "task_cancel"]).await;
    assert!(text(&listed).contains(&format!("admin task_cancel task {id}")), "{}", text(&listed));
    assert_eq!(text(&listed).lines().count(), 1, "{}", text(&listed));

    // Someone with database access makes the cancel look like another task's.
    let cancel = entries.iter().find(|e| e.action == "task_cancel").unwrap();
    let conn = app.db.connection_for_tests();
    conn.execute_unprepared(&format!("UPDATE audit_log SET target = 'task 999' WHERE id = {}", cancel.id))
        .await
        .unwrap();
    let broken = cli(&app, &["audit", "verify"]).await;
    assert!(!broken.status.success());
    assert!(text(&broken).contains(&format!("BROKEN at entry {}", cancel.id)), "{}", text(&broken));
    assert_eq!(
        app.db.audit_verify().await.unwrap(),
        ChainCheck::Broken {
            id: cancel.id,
            reason: "its fields do not hash to its stored hash: it was edited".into()
        }
    );
    let browser = Browser::login(&app).await;
    let (_, page) = browser.get("/audit").await;
    assert!(page.contains(&format!("The chain is broken at entry {}", cancel.id)), "{page}");
}

#[tokio::test]
async fn deleting_an_entry_or_the_newest_ones_breaks_the_chain() {
    let app = TestApp::spawn().await;
    for n in 0..4 {
        let target = format!("thing {n}");
        app.db
            .audit(NewAuditEntry { actor: "admin", action: "test", target: &target, ..Default::default() })
            .await
            .unwrap();
    }
    let entries = app.db.audit_list(&AuditFilter { limit: 10, ..Default::default() }).await.unwrap();
    let conn = app.db.connection_for_tests();
    conn.execute_unprepared(&format!("DELETE FROM audit_log WHERE id = {}", entries[0].id)).await.unwrap();
    let check = app.db.audit_verify().await.unwrap();
    assert!(matches!(check, ChainCheck::Broken { id: 0, .. }), "the newest entry deleted: {check:?}");
    conn.execute_unprepared(&format!("DELETE FROM audit_log WHERE id = {}", entries[2].id)).await.unwrap();
    let check = app.db.audit_verify().await.unwrap();
    assert!(matches!(check, ChainCheck::Broken { id, .. } if id == entries[1].id), "{check:?}");
}

#[tokio::test]
async fn instances_appending_at_once_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let url = shared_database(dir.path()).await;
    let text = config_text_on(&dir.path().join("data"), &format!("[database]\nurl = \"{url}\"\n"), "");
    let path = dir.path().join("forgehand.toml");
    std::fs::write(&path, text).unwrap();
    let settings = forgehand::config::Settings::load_with_env(Some(&path), Default::default()).unwrap();
    let first = forgehand::app::open_database(&settings).await.unwrap();
    let mut appenders = Vec::new();
    for instance in 0..3 {
        let db = forgehand::db::Db::connect(&settings).await.unwrap();
        appenders.push(tokio::spawn(async move {
            for n in 0..20 {
                let target = format!("instance {instance} entry {n}");
                db.audit(NewAuditEntry {
                    actor: "admin",
                    action: "test",
                    target: &target,
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        }));
    }
    for appender in appenders {
        appender.await.unwrap();
    }
    assert_eq!(first.audit_verify().await.unwrap(), ChainCheck::Intact { entries: 60 });
}

#[tokio::test]
async fn the_audit_page_filters_by_action_and_actor() {
    let app = TestApp::spawn().await;
    for _ in 0..2 {
        let wrong = client()
            .post(format!("{}/login", app.base))
            .form_body(&[("token", "nope")])
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
    }
    let browser = Browser::login(&app).await;
    let (status, page) = browser.get("/audit?action=login_failed").await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("<td>login_failed</td>").count(), 2, "{page}");
    assert!(!page.contains("<td>login</td>"), "{page}");
    assert!(page.contains("checks out"), "{page}");
    let (_, page) = browser.get("/audit?actor=admin").await;
    assert_eq!(page.matches("<td>login</td>").count(), 1, "{page}");
    assert!(!page.contains("<td>login_failed</td>"), "{page}");
    let (status, _) =
        client().get(format!("{}/audit", app.base)).send().await.map(|r| (r.status().as_u16(), ())).unwrap();
    assert_eq!(status, 303, "the page needs a session");
}
