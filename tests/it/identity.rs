//! Self-knowledge: without `bot_login`, forgehand asks each forge whom its token belongs
//! to, shows it on the setup page, and never lets that account trigger.

use std::time::{Duration, Instant};

use crate::dashboard::{Browser, FormBody};
use crate::fake_forge::FakeForge;
use crate::harness::*;

/// The setup page once it says something about forge `fake`'s account matching `wanted`.
async fn setup_page_once(browser: &Browser, wanted: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = browser.get("/setup").await;
        assert_eq!(status, 200);
        if page.contains(wanted) || Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config_without_bot_login(forge: &FakeForge) -> String {
    let config = forge.config_toml("fake");
    let line = format!("bot_login = \"{}\"\n", forge.bot_login());
    assert!(config.contains(&line), "{config}");
    config.replace(&line, "bot_login = \"\"\n")
}

#[tokio::test]
async fn the_tokens_own_account_never_triggers_without_bot_login() {
    let forge = FakeForge::github().await;
    let app = TestApp::spawn_with(&config_without_bot_login(&forge)).await;
    let browser = Browser::login(&app).await;
    let bot = forge.bot_login();
    let page = setup_page_once(&browser, &format!("{bot} (the token")).await;
    assert!(page.contains(&format!("{bot} (the token")), "the setup page names the account: {page}");

    // A person-looking sender (type User) who is the token's own account.
    let mut body: serde_json::Value = serde_json::from_slice(&fixture("github/issues_labeled.json")).unwrap();
    body["sender"]["login"] = serde_json::json!(bot);
    let answer = app.deliver("fake", Delivery::github("issues", serde_json::to_vec(&body).unwrap())).await;
    assert_eq!((answer.status, answer.outcome()), (200, "ignored"), "{}", answer.text);
    assert_eq!(answer.json["reason"], format!("caused by forgehand's own account {bot}"));
    assert!(app.tasks().await.is_empty());

    // Anyone else still triggers (on another issue: this one's label was seen already).
    let other = edited("github/issues_labeled.json", "/issue/number", serde_json::json!(7));
    let answer = app.deliver("fake", Delivery::github("issues", other)).await;
    assert_eq!((answer.status, answer.outcome()), (202, "task_created"), "{}", answer.text);
}

#[tokio::test]
async fn a_github_apps_bot_never_triggers_without_bot_login() {
    let forge = FakeForge::github().await;
    forge.enable_app(4242, "forgehand-app", &[("octo-org/hello-world", 77)]);
    let app = TestApp::spawn_with(&config_without_bot_login(&forge)).await;
    let browser = Browser::login(&app).await;
    let bot = "forgehand-app[bot]";
    assert_eq!(forge.bot_login(), bot);
    let page = setup_page_once(&browser, &format!("{bot} (the")).await;
    assert!(page.contains(&format!("{bot} (the")), "learned from GET /app: {page}");

    // Even sent as a person (type User): the App's own account.
    let mut body: serde_json::Value = serde_json::from_slice(&fixture("github/issues_labeled.json")).unwrap();
    body["sender"]["login"] = serde_json::json!(bot);
    let answer = app.deliver("fake", Delivery::github("issues", serde_json::to_vec(&body).unwrap())).await;
    assert_eq!((answer.status, answer.outcome()), (200, "ignored"), "{}", answer.text);
    assert_eq!(answer.json["reason"], format!("caused by forgehand's own account {bot}"));
    assert!(app.tasks().await.is_empty());

    // The setup page shows the App, not a missing token, and checks it as the wizard does.
    let shown =
        page.split("id=\"app-fake\">").nth(1).unwrap_or_else(|| panic!("no App shown for fake: {page}"));
    assert!(shown.starts_with("App ID <code>4242</code>, private key"), "{page}");
    let form = [("csrf", browser.csrf.as_str()), ("forge", "fake"), ("repo", "octo-org/hello-world")];
    let response = browser
        .client
        .post(format!("{}/setup/check", app.base))
        .header("cookie", &browser.cookie)
        .form_body(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    let said =
        page.split("role=\"status\">").nth(1).unwrap_or(&page).split("</div>").next().unwrap_or_default();
    assert!(said.contains("JWT works: the App is forgehand-app[bot]"), "{said}");
    assert!(page.contains("octo-org/hello-world is in installation 77"), "{page}");
}

#[tokio::test]
async fn a_wrong_token_still_starts_and_says_so() {
    let forge = FakeForge::github().await;
    let config = config_without_bot_login(&forge)
        .replace(&format!("token = \"{}\"", crate::fake_forge::TOKEN), "token = \"wrong\"");
    let app = TestApp::spawn_with(&config).await;
    let browser = Browser::login(&app).await;
    let page = setup_page_once(&browser, "unknown: the forge could not say").await;
    assert!(
        page.contains("unknown: the forge could not say") && page.contains("check forges[].token"),
        "{page}"
    );
    assert!(!page.contains("wrong"), "the token is not shown");
    let (status, _) = browser.get("/").await;
    assert_eq!(status, 200, "the daemon serves");
}
