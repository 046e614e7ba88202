//! The setup wizard through the real router: access, CSRF, precise refusals, the file it
//! writes (0600, with a backup, loadable), and the new settings in force without a restart.

use std::os::unix::fs::PermissionsExt;

use forgehand::forge::signature::sign;

use crate::dashboard::{Browser, FormBody, client};
use crate::fake_forge::FakeForge;
use crate::harness::*;

const AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agent/fake-claude");

impl Browser {
    /// POSTs a wizard form with the session's CSRF token: status, Location, body.
    pub(crate) async fn step(&self, step: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        let mut pairs = vec![("csrf", self.csrf.as_str())];
        pairs.extend_from_slice(form);
        let response = self
            .client
            .post(format!("{}/setup/wizard/{step}", self.base))
            .header("cookie", &self.cookie)
            .form_body(&pairs)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let location =
            response.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        (status, location, response.text().await.unwrap())
    }
}

/// The text of the element with `id`, e.g. the secret shown once.
fn element_text(page: &str, id: &str) -> Option<String> {
    let start = page.find(&format!("id=\"{id}\""))?;
    let text = &page[start..];
    let text = &text[text.find('>')? + 1..];
    Some(text[..text.find('<')?].to_owned())
}

#[tokio::test]
async fn the_wizard_needs_a_session_and_the_csrf_token() {
    let app = TestApp::spawn().await;
    let anonymous = client();
    for path in ["/setup/wizard", "/setup/wizard/forge", "/setup/wizard/review"] {
        let response = anonymous.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(
            (response.status().as_u16(), response.headers()["location"].to_str().unwrap()),
            (303, "/login")
        );
    }
    for step in ["forge", "review"] {
        let response = anonymous
            .post(format!("{}/setup/wizard/{step}", app.base))
            .form_body(&[("csrf", "x"), ("name", "evil")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{step}");
    }
    let browser = Browser::login(&app).await;
    assert_eq!(browser.get("/setup/wizard").await.0, 303, "a fresh draft, then the first step");
    assert_eq!(browser.get("/setup/wizard/forge").await.0, 200);
    let forged = browser.post("/setup/wizard/forge", &[("name", "evil"), ("kind", "github")]).await;
    assert_eq!(forged.0, 403, "no CSRF token");
    let wrong = browser.post("/setup/wizard/review", &[("csrf", "not-the-token")]).await;
    assert_eq!(wrong.0, 403);
    let (_, page) = browser.get("/setup/wizard/review").await;
    assert!(
        !page.contains("id=\"preview\""),
        "the review step stays locked until the steps before it are done"
    );
}

#[tokio::test]
async fn the_wizard_adds_a_forge_that_takes_webhooks_at_once() {
    let forge = FakeForge::gitea().await;
    forge.add_repo("acme/widgets", "https://fake.invalid/acme/widgets.git", "main");
    let app = TestApp::spawn().await;
    let browser = Browser::login(&app).await;
    let config = app.config_path();
    let original = std::fs::read_to_string(&config).unwrap();
    let mut pages = Vec::new();

    assert_eq!(browser.get("/setup/wizard").await.0, 303);
    let (status, first) = browser.get("/setup/wizard/forge").await;
    assert_eq!(status, 200);
    pages.push(first);
    // Step 1, with a bad name and API URL first.
    let (status, _, page) = browser
        .step(
            "forge",
            &[
                ("public_url", "http://fh.test"),
                ("name", "Bad Name"),
                ("kind", "gitea"),
                ("api_url", "ftp://x"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        page.contains("must be 1-64 characters of a-z") && page.contains("is not an http(s) URL"),
        "{page}"
    );
    let taken = browser
        .step(
            "forge",
            &[
                ("public_url", "http://fh.test"),
                ("name", "gitea"),
                ("kind", "gitea"),
                ("api_url", forge.base_url()),
            ],
        )
        .await;
    assert!(taken.0 == 400 && taken.2.contains("configured already"), "{}", taken.2);
    let (status, next, _) = browser
        .step(
            "forge",
            &[
                ("public_url", "http://fh.test/"),
                ("name", "work"),
                ("kind", "gitea"),
                ("api_url", forge.base_url()),
            ],
        )
        .await;
    assert_eq!((status, next.as_str()), (303, "/setup/wizard/token"));

    // Step 2: a wrong token and a bad repository are refused with what is wrong.
    let (status, _, page) = browser.step("token", &[("token", "wrong"), ("repo", "acme/widgets")]).await;
    assert_eq!(status, 400);
    assert!(page.contains("The token does not work"), "{page}");
    let (status, _, page) = browser.step("token", &[("token", forge.token()), ("repo", "widgets")]).await;
    assert!(status == 400 && page.contains("as owner/name"), "{page}");
    assert!(!page.contains(forge.token()), "the typed token is not echoed back");
    let (status, next, _) =
        browser.step("token", &[("token", forge.token()), ("repo", "acme/widgets")]).await;
    assert_eq!((status, next.as_str()), (303, "/setup/wizard/webhook"));

    // Step 3: a secret is needed; a generated one is shown exactly once.
    let (status, _, page) = browser.step("webhook", &[("action", "continue")]).await;
    assert!(status == 400 && page.contains("Generate a webhook secret first"), "{page}");
    let (_, page) = browser.get("/setup/wizard/webhook").await;
    assert!(page.contains("http://fh.test/webhooks/work") && page.contains("Issue label"), "{page}");
    assert!(page.contains(&format!("The token authenticates as {}.", forge.bot_login())), "{page}");
    assert!(page.contains("write permission on acme/widgets"), "{page}");
    assert_eq!(browser.step("webhook", &[("action", "generate")]).await.1, "/setup/wizard/webhook");
    let (_, page) = browser.get("/setup/wizard/webhook").await;
    let secret = element_text(&page, "new-secret").expect("the new secret is shown");
    assert_eq!(secret.len(), 64);
    let (_, again) = browser.get("/setup/wizard/webhook").await;
    assert!(!again.contains(&secret) && again.contains("shown once"), "the secret is shown once only");
    pages.push(again);
    assert_eq!(browser.step("webhook", &[("action", "continue")]).await.1, "/setup/wizard/trigger");

    // Steps 4 and 5.
    let (status, _, page) = browser.step("trigger", &[("label", " "), ("command", "two words")]).await;
    assert!(
        status == 400 && page.contains("Trigger label: ") && page.contains("Trigger command: "),
        "{page}"
    );
    assert_eq!(
        browser.step("trigger", &[("label", "robot"), ("command", "/robot")]).await.1,
        "/setup/wizard/agent"
    );
    let agent = |command: &'static str, concurrent: &'static str| {
        [("agent_command", command), ("max_concurrent", concurrent), ("timeout_secs", "900")]
    };
    let (status, _, page) = browser.step("agent", &agent("no-such-claude-here", "3")).await;
    assert!(status == 400 && page.contains("is not on forgehand"), "{page}");
    let (status, _, page) = browser.step("agent", &agent(AGENT, "zero")).await;
    assert!(status == 400 && page.contains("whole number from 1 to 64"), "{page}");
    assert_eq!(browser.step("agent", &agent(AGENT, "3")).await.1, "/setup/wizard/review");

    // Step 6: the preview masks every secret; nothing is written before saving.
    let (_, review) = browser.get("/setup/wizard/review").await;
    assert!(review.contains("2.1.0-fake (Claude Code)"), "the agent's --version is shown");
    assert!(review.contains("name = &#34;work&#34;") && review.contains("********"), "{review}");
    pages.push(review);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    let before = deliver_to_work(&app, &secret).await;
    assert_eq!(before.status(), 404, "no forge `work` before saving");

    let (status, _, done) = browser.step("review", &[]).await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("Saved and applied") && !done.contains("Restart forgehand"), "{done}");
    pages.push(done);

    // The file: 0600, the old one kept, loadable as the daemon loads it.
    let mode = |p: &std::path::Path| p.metadata().unwrap().permissions().mode() & 0o777;
    let backup = config.with_file_name("forgehand.toml.bak");
    assert_eq!((mode(&config), mode(&backup)), (0o600, 0o600));
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
    let loaded = forgehand::config::Settings::load_with_env(Some(&config), Default::default()).unwrap();
    let work = loaded.forge("work").unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(work.token.expose_secret(), forge.token());
    assert_eq!(work.webhook_secret.0[0].expose_secret(), secret);
    assert_eq!(
        (work.bot_login.as_str(), loaded.trigger.label.as_str()),
        (forge.bot_login().as_str(), "robot")
    );
    assert_eq!((loaded.executor.max_concurrent, loaded.executor.timeout_secs), (3, 900));
    assert_eq!(loaded.forge("github").unwrap().webhook_secret.0.len(), 2, "other forges are kept");

    // In force without a restart: the new forge, its secret and the new label.
    let answer = deliver_to_work(&app, &secret).await;
    assert_eq!(answer.status(), 200);
    let json: serde_json::Value = answer.json().await.unwrap();
    assert!(json["reason"].as_str().unwrap().contains("\"robot\""), "{json}");
    let (_, setup) = browser.get("/setup").await;
    assert!(setup.contains("http://fh.test/webhooks/work"), "the setup page shows the new settings");
    pages.push(setup);
    for page in &pages {
        for secret in [forge.token(), secret.as_str(), GITHUB_SECRET, GITEA_SECRET] {
            assert!(!page.contains(secret), "a secret in a page:\n{page}");
        }
    }

    // The audit log names the keys the save changed, and secrets only as "set".
    let filter = forgehand::db::audit::AuditFilter {
        action: Some("config_save".into()),
        limit: 5,
        ..Default::default()
    };
    let saves = app.db.audit_list(&filter).await.unwrap();
    assert_eq!(saves.len(), 1, "{saves:?}");
    let detail = &saves[0].detail;
    for key in [
        "forges[work].api_url",
        "forges[work].token: set",
        "forges[work].webhook_secret: set",
        "trigger.label",
        "executor.max_concurrent",
    ] {
        assert!(detail.contains(key), "{key} missing from {detail}");
    }
    for secret in [forge.token(), secret.as_str()] {
        assert!(!detail.contains(secret), "a secret in the audit log: {detail}");
    }
}

#[tokio::test]
async fn a_configured_forge_keeps_its_secrets_and_a_broken_file_is_left_alone() {
    let forge = FakeForge::github().await;
    forge.add_repo("octo/app", "https://fake.invalid/octo/app.git", "main");
    let profiles =
        "[[agents]]\nname = \"opus\"\nmodel = \"opus-x\"\nmax_concurrent = 1\nfallback = \"default\"\n";
    let app = TestApp::spawn_with(&format!("{}{profiles}", forge.config_toml("fake"))).await;
    let browser = Browser::login(&app).await;
    browser.get("/setup/wizard?forge=fake").await;
    let answers =
        [("public_url", "https://fh.example.com"), ("kind", "github"), ("api_url", forge.base_url())];
    assert_eq!(browser.step("forge", &answers).await.0, 303);
    let (_, page) = browser.get("/setup/wizard/token").await;
    assert!(
        page.contains("replace it (leave empty to keep it)"),
        "the configured token shows as set: {page}"
    );
    assert_eq!(
        browser.step("token", &[("token", ""), ("repo", "octo/app")]).await.0,
        303,
        "the token in force is tested"
    );
    let (_, page) = browser.get("/setup/wizard/webhook").await;
    assert!(page.contains("Replace with a new secret") && !page.contains("id=\"new-secret\""), "{page}");
    assert_eq!(
        browser.step("webhook", &[("action", "continue")]).await.0,
        303,
        "the configured secret is kept"
    );
    assert_eq!(browser.step("trigger", &[("label", "forgehand"), ("command", "/forgehand")]).await.0, 303);
    let (_, page) = browser.get("/setup/wizard/agent").await;
    assert!(
        page.contains("<tr><td>opus</td><td>claude</td><td>opus-x</td><td>1</td><td>default</td></tr>"),
        "the agent step lists the profiles: {page}"
    );
    assert!(page.contains("More profiles are <code>[[agents]]</code> entries"), "{page}");
    let agent = [("agent_command", AGENT), ("max_concurrent", "2"), ("timeout_secs", "600")];
    assert_eq!(browser.step("agent", &agent).await.0, 303);

    // Someone broke the file by hand meanwhile: it is reported, and left as it is.
    let config = app.config_path();
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, "[server\n").unwrap();
    let (status, _, page) = browser.step("review", &[]).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("is not valid TOML"), "{page}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "[server\n");
    assert!(!config.with_file_name("forgehand.toml.bak").exists());

    std::fs::write(&config, &original).unwrap();
    let (status, _, page) = browser.step("review", &[]).await;
    assert_eq!(status, 200, "{page}");
    let loaded = forgehand::config::Settings::load_with_env(Some(&config), Default::default()).unwrap();
    let fake = loaded.forge("fake").unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(fake.webhook_secret.0[0].expose_secret(), GITHUB_SECRET, "the secret was kept as it was");
    assert_eq!(fake.token.expose_secret(), forge.token());
    assert_eq!(loaded.server.public_url, "https://fh.example.com");
    let opus = loaded.profile("opus").expect("the wizard kept the profile");
    assert_eq!(
        (opus.model.as_str(), opus.max_concurrent, opus.fallback.as_deref()),
        ("opus-x", Some(1), Some("default"))
    );
    let answer = app.deliver("fake", Delivery::github("issues", fixture("github/issues_labeled.json"))).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
}

async fn deliver_to_work(app: &TestApp, secret: &str) -> reqwest::Response {
    deliver_signed(&app.base, "work", secret).await
}

/// The Gitea label delivery for acme/widgets#42, signed with `secret`, sent to `forge`.
async fn deliver_signed(base: &str, forge: &str, secret: &str) -> reqwest::Response {
    let body = fixture("gitea/issues_label_updated.json");
    let signature = sign(secret.as_bytes(), &body);
    let delivery = Delivery::gitea("issues", "issue_label", body)
        .set_header("x-gitea-signature", Some(&signature))
        .set_header("x-hub-signature-256", Some(&format!("sha256={signature}")));
    let mut request =
        reqwest::Client::new().post(format!("{base}/webhooks/{forge}")).body(delivery.body.clone());
    for (name, value) in &delivery.headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

/// An app with its executor on and no forge at all, as on first start.
async fn bare_app(dir: tempfile::TempDir) -> TestApp {
    let text = format!(
        r#"
data_dir = "{data}"
{database}
[server]
listen = "127.0.0.1:0"
[auth]
admin_token = "{ADMIN_TOKEN}"
[executor]
poll_interval_secs = 1
retry_base_secs = 1
shutdown_grace_secs = 1
[agent]
command = "{AGENT}"
[git]
author_name = "forgehand-test"
author_email = "forgehand@test"
"#,
        data = dir.path().join("data").display(),
        database = database_section().await,
    );
    TestApp::spawn_config(dir, &text).await
}

/// Runs every step for a new Gitea forge named `gitea` on `forge`; answers its secret.
async fn wizard_adds_gitea(browser: &Browser, forge: &FakeForge, repo: &str) -> String {
    browser.get("/setup/wizard").await;
    let answers = [
        ("public_url", "http://forgehand.test"),
        ("name", "gitea"),
        ("kind", "gitea"),
        ("api_url", forge.base_url()),
    ];
    assert_eq!(browser.step("forge", &answers).await.1, "/setup/wizard/token");
    assert_eq!(
        browser.step("token", &[("token", forge.token()), ("repo", repo)]).await.1,
        "/setup/wizard/webhook"
    );
    browser.step("webhook", &[("action", "generate")]).await;
    let (_, page) = browser.get("/setup/wizard/webhook").await;
    let secret = element_text(&page, "new-secret").expect("the new secret is shown");
    assert_eq!(browser.step("webhook", &[("action", "continue")]).await.1, "/setup/wizard/trigger");
    assert_eq!(
        browser.step("trigger", &[("label", "forgehand"), ("command", "/forgehand")]).await.1,
        "/setup/wizard/agent"
    );
    let agent = [("agent_command", AGENT), ("max_concurrent", "1"), ("timeout_secs", "120")];
    assert_eq!(browser.step("agent", &agent).await.1, "/setup/wizard/review");
    let (status, _, page) = browser.step("review", &[]).await;
    assert!(status == 200 && page.contains("Saved and applied"), "{page}");
    secret
}

#[tokio::test]
async fn after_the_wizard_the_executor_runs_tasks_of_the_new_forge() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote.git");
    crate::executor::bare_remote(&remote);
    let forge = FakeForge::gitea().await;
    forge.add_repo("acme/widgets", &format!("file://{}", remote.display()), "main");
    forge.add_issue("acme/widgets", 42, "Add a --verbose flag", "Please.", &["forgehand"], "alice");
    forge.set_permission("acme/widgets", "alice", "write");
    forge.set_permission("acme/widgets", &forge.bot_login(), "admin");
    let app = bare_app(dir).await;
    let browser = Browser::login(&app).await;
    let (_, dashboard) = browser.get("/").await;
    assert!(
        dashboard.contains("id=\"no-forge\"") && dashboard.contains("href=\"/setup/wizard\""),
        "{dashboard}"
    );

    let secret = wizard_adds_gitea(&browser, &forge, "acme/widgets").await;
    let (_, dashboard) = browser.get("/").await;
    assert!(!dashboard.contains("id=\"no-forge\""), "the new forge is in force on the dashboard too");
    let body = fixture("gitea/issues_label_updated.json");
    let signature = sign(secret.as_bytes(), &body);
    let delivery = Delivery::gitea("issues", "issue_label", body)
        .set_header("x-gitea-signature", Some(&signature))
        .set_header("x-hub-signature-256", Some(&format!("sha256={signature}")));
    let answer = app.deliver("gitea", delivery).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let id = answer.json["task_id"].as_i64().unwrap();
    let long = std::time::Duration::from_secs(60);
    let task = app.wait_task(id, long, |t| !["queued", "running"].contains(&t.status.as_str())).await;
    assert_eq!(task.status, "done", "{task:?}");
    assert!(task.pr_url.is_some(), "{task:?}");
}

#[tokio::test]
async fn the_real_daemon_started_without_a_config_keeps_what_the_wizard_wrote() {
    use crate::process::start;
    let forge = FakeForge::gitea().await;
    forge.add_repo("acme/widgets", "https://fake.invalid/acme/widgets.git", "main");
    let dir = tempfile::tempdir().unwrap();
    let env = [("FORGEHAND__SERVER__LISTEN", "127.0.0.1:0"), ("FORGEHAND__EXECUTOR__ENABLED", "false")];
    let mut daemon = start(dir.path(), &[], &env).await;
    let token = std::fs::read_to_string(dir.path().join("data/admin_token")).unwrap();
    let browser = Browser::login_at(&daemon.base, token.trim()).await;
    let secret = wizard_adds_gitea(&browser, &forge, "acme/widgets").await;
    let written = dir.path().join("data/forgehand.toml");
    assert_eq!(written.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!dir.path().join("data/forgehand.toml.bak").exists(), "there was no file before");

    daemon.child.kill().await.unwrap();
    let again = start(dir.path(), &[], &env).await;
    let answer = deliver_signed(&again.base, "gitea", &secret).await;
    assert_eq!(answer.status(), 202, "the forge survived the restart");
}

/// GitHub as an App, on an Enterprise Server (`/api/v3`): the wizard explains the App's
/// permissions and events, tries the id and key live and names the step that fails (a key
/// of another App, a wrong id, a repository it is not installed on, a permission it lacks),
/// never shows the key again, and writes `app_id` and `private_key` in place of `token`.
#[tokio::test]
async fn the_wizard_connects_github_as_an_app_and_names_the_step_that_fails() {
    use crate::fake_forge::app::app_key;
    use secrecy::ExposeSecret;

    let forge = FakeForge::github_enterprise().await;
    forge.enable_app(4242, "forgehand-app", &[("octo-org/one", 7)]);
    for repo in ["octo-org/one", "octo-org/other"] {
        forge.add_repo(repo, &format!("https://fake.invalid/{repo}.git"), "main");
    }
    let pem = forge.with_app(|app| app.private_key_pem.clone());
    let key_line = pem.lines().nth(1).unwrap().to_owned();
    let (other_pem, _) = app_key();
    let app = TestApp::spawn().await;
    let browser = Browser::login(&app).await;
    let mut pages = Vec::new();

    browser.get("/setup/wizard").await;
    let answers = [
        ("public_url", "http://fh.test"),
        ("name", "ghe"),
        ("kind", "github"),
        ("api_url", forge.base_url()),
    ];
    assert_eq!(browser.step("forge", &answers).await.1, "/setup/wizard/token");
    let (_, page) = browser.get("/setup/wizard/token").await;
    for said in [
        "a GitHub App",
        "Contents: read &#38; write",
        "Issues: read &#38; write",
        "Pull requests: read &#38; write",
        "Metadata: read",
        "http://fh.test/webhooks/ghe",
        "Issue comment",
        "Pull request review",
    ] {
        assert!(page.contains(said), "{said:?} missing in {page}");
    }
    let session = &browser;
    let try_app = |id: &'static str, key: String, repo: &'static str| async move {
        let form = [("auth", "app"), ("app_id", id), ("private_key", key.as_str()), ("repo", repo)];
        session.step("token", &form).await
    };

    let failing = [
        (
            "4242",
            other_pem.clone(),
            "octo-org/one",
            "GitHub did not accept the App&#39;s JWT at http://127.0.0.1",
        ),
        (
            "4243",
            pem.clone(),
            "octo-org/one",
            "either the App id 4243 and the private key do not belong together",
        ),
        ("4242", "-----BEGIN oops".to_owned(), "octo-org/one", "Private key: not a PEM private key"),
        ("x", pem.clone(), "octo-org/one", "App ID: not a number"),
        ("4242", pem.clone(), "octo-org/other", "is installed (1 installations) but not on octo-org/other"),
    ];
    for (id, key, repo, said) in failing {
        let (status, _, page) = try_app(id, key, repo).await;
        assert!(status == 400 && page.contains(said), "{said:?} missing ({status}) in {page}");
        pages.push(page);
    }
    forge.with_app(|app| {
        app.permissions = serde_json::json!({ "contents": "read", "issues": "write", "metadata": "read" })
    });
    let (status, _, page) = try_app("4242", pem.clone(), "octo-org/one").await;
    assert_eq!(status, 400);
    assert!(
        page.contains("lacks Contents: write (it has read), Pull requests: write (it has none)"),
        "{page}"
    );
    pages.push(page);
    forge.with_app(|app| {
        app.permissions =
            serde_json::json!({ "contents": "write", "issues": "write", "pull_requests": "write" })
    });

    // Pasted from a browser: CRLF line ends.
    let (status, next, _) = try_app("4242", pem.replace('\n', "\r\n"), "octo-org/one").await;
    assert_eq!((status, next.as_str()), (303, "/setup/wizard/webhook"));
    let (_, page) = browser.get("/setup/wizard/webhook").await;
    assert!(
        page.contains("The App&#39;s JWT works: the App is forgehand-app[bot].")
            || page.contains("The App's JWT works: the App is forgehand-app[bot]."),
        "{page}"
    );
    assert!(page.contains("octo-org/one is in installation 7"), "{page}");
    assert!(page.contains("Subscribe to events") && page.contains("<strong>Check run</strong>"), "{page}");
    pages.push(page);
    let (_, page) = browser.get("/setup/wizard/token").await;
    assert!(page.contains("Private key <span class=\"badge s-done\">set</span>"), "{page}");
    pages.push(page);

    browser.step("webhook", &[("action", "generate")]).await;
    assert_eq!(browser.step("webhook", &[("action", "continue")]).await.1, "/setup/wizard/trigger");
    assert_eq!(
        browser.step("trigger", &[("label", "forgehand"), ("command", "/forgehand")]).await.1,
        "/setup/wizard/agent"
    );
    let agent = [("agent_command", AGENT), ("max_concurrent", "2"), ("timeout_secs", "600")];
    assert_eq!(browser.step("agent", &agent).await.1, "/setup/wizard/review");
    let (_, review) = browser.get("/setup/wizard/review").await;
    assert!(
        review.contains("app_id = 4242") && review.contains("private_key = &#34;********&#34;"),
        "{review}"
    );
    pages.push(review);
    let (status, _, done) = browser.step("review", &[]).await;
    assert!(status == 200 && done.contains("Saved and applied"), "{done}");

    let loaded =
        forgehand::config::Settings::load_with_env(Some(&app.config_path()), Default::default()).unwrap();
    let ghe = loaded.forge("ghe").unwrap();
    assert_eq!(
        (ghe.app_id, ghe.token.expose_secret(), ghe.bot_login.as_str()),
        (Some(4242), "", "forgehand-app[bot]")
    );
    assert_eq!(ghe.api_url, forge.base_url());
    assert!(ghe.app_private_key().unwrap().expose_secret().contains(&key_line));
    for page in &pages {
        assert!(!page.contains(&key_line), "the key is in a page:\n{page}");
    }
    let filter = forgehand::db::audit::AuditFilter {
        action: Some("config_save".into()),
        limit: 5,
        ..Default::default()
    };
    let detail = app.db.audit_list(&filter).await.unwrap()[0].detail.clone();
    assert!(detail.contains("forges[ghe].private_key: set") && !detail.contains(&key_line), "{detail}");
    assert!(forge.unexpected().is_empty(), "calls outside /api/v3: {:?}", forge.unexpected());
}
