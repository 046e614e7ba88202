//! The dashboard through the real router: sessions, CSRF, escaping, actions, headers.

use serde_json::json;

use crate::harness::*;

const XSS: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

/// Sends a form as a browser does (reqwest's `form` needs a feature we do without).
pub trait FormBody {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        self.header("content-type", "application/x-www-form-urlencoded").body(body)
    }
}

/// A client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A logged-in browser: its cookie header and the CSRF token its pages carry.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub cookie: String,
    pub csrf: String,
}

impl Browser {
    pub async fn login(app: &TestApp) -> Browser {
        Browser::login_at(&app.base, ADMIN_TOKEN).await
    }

    /// Logs in to the forgehand at `base` with `token`.
    pub async fn login_at(base: &str, token: &str) -> Browser {
        let client = client();
        let response =
            client.post(format!("{base}/login")).form_body(&[("token", token)]).send().await.unwrap();
        assert_eq!(response.status(), 303);
        let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let mut browser = Browser { client, base: base.to_owned(), cookie, csrf: String::new() };
        let (status, page) = browser.get("/").await;
        assert_eq!(status, 200, "{page}");
        browser.csrf = csrf_of(&page);
        browser
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// POSTs a form; answers the status and the Location header.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form_body(form)
            .send()
            .await
            .unwrap();
        let location =
            response.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        (response.status().as_u16(), location)
    }
}

pub fn csrf_of(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("the page has a CSRF field") + 19;
    page[start..].split('"').next().unwrap().to_owned()
}

async fn queue_task(app: &TestApp, number: i64, title: &str) -> i64 {
    let body = edited("github/issues_labeled.json", "/issue/number", json!(number));
    let mut payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
    payload["issue"]["title"] = json!(title);
    let answer =
        app.deliver("github", Delivery::github("issues", serde_json::to_vec(&payload).unwrap())).await;
    assert_eq!(answer.outcome(), "task_created", "{}", answer.text);
    app.tasks().await.into_iter().find(|t| t.number == number).unwrap().id
}

#[tokio::test]
async fn every_page_needs_a_session() {
    let app = TestApp::spawn().await;
    let id = queue_task(&app, 7, "a task").await;
    let client = client();
    for path in
        ["/", "/live", &format!("/tasks/{id}"), &format!("/tasks/{id}/stream"), "/deliveries", "/setup"]
    {
        let response = client.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()["location"], "/login", "{path}");
    }
    for path in [format!("/tasks/{id}/cancel"), format!("/tasks/{id}/retry")] {
        let response =
            client.post(format!("{}{path}", app.base)).form_body(&[("csrf", "x")]).send().await.unwrap();
        assert_eq!(response.status(), 303, "{path}");
    }
    let forged =
        client.get(format!("{}/", app.base)).header("cookie", "forgehand_session=guess").send().await;
    assert_eq!(forged.unwrap().status(), 303);
    assert_eq!(client.get(format!("{}/api/tasks", app.base)).send().await.unwrap().status(), 401);
    for open in ["/login", "/static/app.css", "/static/app.js", "/healthz"] {
        assert_eq!(client.get(format!("{}{open}", app.base)).send().await.unwrap().status(), 200, "{open}");
    }
    assert_eq!(app.tasks().await[0].status, "queued");
}

#[tokio::test]
async fn login_exchanges_the_token_for_a_strict_cookie() {
    let app = TestApp::spawn().await;
    let client = client();
    let wrong =
        client.post(format!("{}/login", app.base)).form_body(&[("token", "guess")]).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await.unwrap().contains("not the admin token"));

    let right =
        client.post(format!("{}/login", app.base)).form_body(&[("token", ADMIN_TOKEN)]).send().await.unwrap();
    assert_eq!(right.status(), 303);
    let cookie = right.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("forgehand_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "public_url is http: {cookie}");
    assert!(!cookie.contains(ADMIN_TOKEN));

    let browser = Browser::login(&app).await;
    assert_ne!(browser.cookie, cookie.split(';').next().unwrap(), "each login gets a new session id");
    let api =
        browser.client.get(format!("{}/api/tasks", app.base)).header("cookie", &browser.cookie).send().await;
    assert_eq!(api.unwrap().status(), 200, "the API takes the session too");

    assert_eq!(browser.post("/logout", &[("csrf", "wrong")]).await.0, 403);
    assert_eq!(browser.post("/logout", &[("csrf", &browser.csrf)]).await, (303, "/login".to_owned()));
    assert_eq!(browser.get("/").await.0, 303, "the session ended");
}

#[tokio::test]
async fn a_form_without_the_csrf_token_is_refused() {
    let app = TestApp::spawn().await;
    let id = queue_task(&app, 8, "keep me").await;
    let browser = Browser::login(&app).await;
    assert_eq!(browser.post(&format!("/tasks/{id}/cancel"), &[]).await.0, 403);
    assert_eq!(browser.post(&format!("/tasks/{id}/cancel"), &[("csrf", "forged")]).await.0, 403);
    assert_eq!(browser.post(&format!("/tasks/{id}/retry"), &[("csrf", "")]).await.0, 403);
    assert_eq!(app.tasks().await.len(), 1);
    assert_eq!(app.tasks().await[0].status, "queued");
}

#[tokio::test]
async fn a_hostile_title_renders_inert() {
    let app = TestApp::spawn().await;
    let id = queue_task(&app, 9, XSS).await;
    let browser = Browser::login(&app).await;
    for path in ["/".to_owned(), "/live".to_owned(), format!("/tasks/{id}"), "/deliveries".to_owned()] {
        let (status, page) = browser.get(&path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!page.contains("<script>alert"), "{path}: {page}");
        assert!(!page.contains("<img src=x"), "{path}");
        if path != "/deliveries" {
            assert!(
                page.contains(
                    "&#60;script&#62;alert(1)&#60;/script&#62;&#60;img src=x onerror=alert(2)&#62;"
                ),
                "{path}"
            );
        }
    }
}

#[tokio::test]
async fn cancel_then_retry_from_the_task_page() {
    let app = TestApp::spawn().await;
    let id = queue_task(&app, 10, "cancel me").await;
    let browser = Browser::login(&app).await;
    let (_, page) = browser.get(&format!("/tasks/{id}")).await;
    assert!(page.contains("Cancel task"));
    assert!(!page.contains(">Retry<"));
    let csrf = csrf_of(&page);

    let cancelled = browser.post(&format!("/tasks/{id}/cancel"), &[("csrf", &csrf)]).await;
    assert_eq!(cancelled, (303, format!("/tasks/{id}?done=cancelled")));
    assert_eq!(app.db.task(id).await.unwrap().unwrap().0.status, "cancelled");
    let (_, page) = browser.get(&cancelled.1).await;
    assert!(page.contains("The task is cancelled."));
    assert!(page.contains(">Retry<"));

    let (status, location) = browser.post(&format!("/tasks/{id}/retry"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    let new_id: i64 = location.trim_start_matches("/tasks/").split('?').next().unwrap().parse().unwrap();
    assert_ne!(new_id, id);
    let (new, events) = app.db.task(new_id).await.unwrap().unwrap();
    assert_eq!((new.status.as_str(), new.number, new.title.as_str()), ("queued", 10, "cancel me"));
    assert!(events[0].message.contains(&format!("retry of task {id}")), "{events:?}");

    // One active task per issue: a second retry points at the queued one.
    let again = browser.post(&format!("/tasks/{id}/retry"), &[("csrf", &csrf)]).await;
    assert_eq!(again, (303, format!("/tasks/{new_id}?done=active")));
    assert_eq!(app.tasks().await.len(), 2);
    // A queued task cannot be retried.
    assert_eq!(browser.post(&format!("/tasks/{new_id}/retry"), &[("csrf", &csrf)]).await.0, 409);
}

#[tokio::test]
async fn unknown_pages_and_tasks_get_friendly_404s() {
    let app = TestApp::spawn().await;
    let browser = Browser::login(&app).await;
    let (status, page) = browser.get("/tasks/424242").await;
    assert_eq!(status, 404);
    assert!(page.contains("There is no task 424242"));
    assert_eq!(browser.get("/tasks/abc").await.0, 404);
    assert_eq!(browser.get("/?status=bogus").await.0, 400);
    assert_eq!(browser.get("/?before=x").await.0, 400);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    let client = client();
    for path in ["/login", "/", "/healthz", "/nowhere", "/static/app.css"] {
        let response = client.get(format!("{}{path}", app.base)).send().await.unwrap();
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
    let css = client.get(format!("{}/static/app.css", app.base)).send().await.unwrap();
    assert!(css.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
    // Browsers ask for it on every page, logged in or not.
    let icon = client.get(format!("{}/favicon.ico", app.base)).send().await.unwrap();
    assert_eq!(
        (icon.status().as_u16(), icon.headers()["content-type"].to_str().unwrap()),
        (200, "image/x-icon")
    );
    assert_eq!(&icon.bytes().await.unwrap()[..4], b"\0\0\x01\0", "an ICO file");
}

#[tokio::test]
async fn wrong_tokens_are_rate_limited() {
    let app = TestApp::spawn().await;
    let client = client();
    let login = |token: &'static str| {
        client.post(format!("{}/login", app.base)).form_body(&[("token", token)]).send()
    };
    for _ in 0..5 {
        assert_eq!(login("guess").await.unwrap().status(), 401);
    }
    let limited = login(ADMIN_TOKEN).await.unwrap();
    assert_eq!(limited.status(), 429, "even the right token waits out the window");
    assert_eq!(limited.headers()["retry-after"], "60");
    assert!(limited.text().await.unwrap().contains("Wait a minute"));
}

#[tokio::test]
async fn the_dashboard_shows_figures_filters_and_pages() {
    let app = TestApp::spawn().await;
    for n in 1..=3 {
        queue_task(&app, 100 + n, &format!("Fix bug number {n}")).await;
    }
    let browser = Browser::login(&app).await;
    let (_, page) = browser.get("/").await;
    assert!(page.contains("data-testid=\"queued\">3<"), "{page}");
    assert!(page.contains("href=\"https://github.com/octo-org/hello-world/issues/101\""));
    let (_, filtered) = browser.get("/?q=NUMBER+2").await;
    assert!(filtered.contains("Fix bug number 2") && !filtered.contains("Fix bug number 1"));
    let (_, none) = browser.get("/?q=%25").await;
    assert!(none.contains("No task matches"), "a % is matched literally");
    let (_, deliveries) = browser.get("/deliveries?outcome=task_created").await;
    assert_eq!(deliveries.matches("o-task_created\">task_created").count(), 3);
    let (_, setup) = browser.get("/setup").await;
    assert!(setup.contains("/webhooks/github") && !setup.contains(GITHUB_SECRET));
}

#[tokio::test]
async fn the_transcript_renders_for_a_person() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let app = TestApp::spawn_config(dir, &config_text(&data_dir, "").await).await;
    let id = queue_task(&app, 11, "with a transcript").await;
    let lines = [
        json!({"type":"system","subtype":"init","model":"claude-test"}),
        json!({"type":"assistant","message":{"content":[{"type":"text","text":"I will <b>read</b> it."},
            {"type":"tool_use","id":"t1","name":"Read","input":{"file_path":"src/lib.rs"}}]}}),
        json!({"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":"no such file"}]}}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    app.db.append_transcript(id, 0, text.into_bytes()).await.unwrap();
    let browser = Browser::login(&app).await;
    let (_, page) = browser.get(&format!("/tasks/{id}")).await;
    assert!(page.contains("Session started (claude-test)"));
    assert!(page.contains("I will &#60;b&#62;read&#60;/b&#62; it."));
    assert!(page.contains("<details class=\"entry tool error\" data-tool-id=\"t1\">"), "{page}");
    assert!(page.contains("Read src/lib.rs") && page.contains("no such file"));
    assert!(page.contains(&format!("data-stream=\"/tasks/{id}/stream?from=")), "a queued task streams");
}

#[tokio::test]
async fn a_long_transcript_shows_its_last_lines_and_says_what_was_left_out() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let app = TestApp::spawn_config(dir, &config_text(&data_dir, "").await).await;
    let id = queue_task(&app, 14, "a long transcript").await;
    let lines: Vec<String> = (0..6_000)
        .map(|i| format!("{}\n", json!({"type":"assistant","message":{"content":[{"type":"text","text":format!("line {i} end")}]}})))
        .collect();
    let text = lines.concat().into_bytes();
    // Chunks that cut lines in two, more of them than one query reads.
    for (n, chunk) in text.chunks(4_000).enumerate() {
        app.db.append_transcript(id, (n * 4_000) as u64, chunk.to_vec()).await.unwrap();
    }
    let browser = Browser::login(&app).await;
    let (_, page) = browser.get(&format!("/tasks/{id}")).await;
    assert!(page.contains("line 5999 end") && page.contains("line 1000 end"), "the last 5,000 lines");
    assert!(!page.contains("line 999 end") && !page.contains("line 0 end"), "not one more");
    let left_out = forgehand::server::transcript::size(lines[..1_000].concat().len() as u64);
    let note = format!("The first {left_out} of the transcript are left out; below are its last 5000 lines.");
    assert!(page.contains(&note), "{note}");
    let from = page.split("stream?from=").nth(1).unwrap().split(|c: char| !c.is_ascii_digit()).next();
    assert_eq!(from, Some(text.len().to_string().as_str()), "the stream goes on after the end");

    // The stream from the beginning reads every chunk, batch after batch, to the end.
    let response = browser
        .client
        .get(format!("{}/tasks/{id}/stream?from=0&status=queued", app.base))
        .header("cookie", &browser.cookie)
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut event = String::new();
    while !event.contains("\n\n") {
        event.push_str(&String::from_utf8_lossy(&body.next().await.unwrap().unwrap()));
    }
    assert!(event.contains(&format!("id: {}", text.len())), "{}", &event[..event.len().min(300)]);
}

#[tokio::test]
async fn a_short_transcript_is_shown_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let app = TestApp::spawn_config(dir, &config_text(&data_dir, "").await).await;
    let id = queue_task(&app, 15, "a short transcript").await;
    let lines: String = (0..3)
        .map(|i| format!("{}\n", json!({"type":"assistant","message":{"content":[{"type":"text","text":format!("line {i} end")}]}})))
        .collect();
    app.db.append_transcript(id, 0, lines.into_bytes()).await.unwrap();
    let browser = Browser::login(&app).await;
    let (_, page) = browser.get(&format!("/tasks/{id}")).await;
    assert!(page.contains("line 0 end") && page.contains("line 2 end"), "{page}");
    assert!(!page.contains("left out"), "nothing was left out");
}

#[tokio::test]
async fn the_figures_show_a_new_task_within_their_age_bound() {
    let app = TestApp::spawn().await;
    queue_task(&app, 120, "the first task").await;
    let browser = Browser::login(&app).await;
    let (_, page) = browser.get("/").await;
    assert!(page.contains("data-testid=\"queued\">1<"), "{page}");
    queue_task(&app, 121, "the second task").await;
    let queued_at = std::time::Instant::now();
    let (_, live) = browser.get("/live").await;
    assert!(live.contains("the second task"), "the table is never cached: {live}");
    let bound = forgehand::db::dashboard::OVERVIEW_MAX_AGE + std::time::Duration::from_secs(2);
    loop {
        let (_, live) = browser.get("/live").await;
        if live.contains("data-testid=\"queued\">2<") {
            break;
        }
        assert!(queued_at.elapsed() < bound, "the figures are older than their bound: {live}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_https_public_url_makes_the_cookie_secure() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("data"), "").await.replace(
        "max_body_bytes = 65536",
        "max_body_bytes = 65536\npublic_url = \"https://forgehand.example.com\"",
    );
    let app = TestApp::spawn_config(dir, &text).await;
    let response = client()
        .post(format!("{}/login", app.base))
        .form_body(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}

#[tokio::test]
async fn cancelling_a_running_task_asks_it_to_stop() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel};
    let app = TestApp::spawn().await;
    let id = queue_task(&app, 12, "running").await;
    let mut running = app.db.task(id).await.unwrap().unwrap().0.into_active_model();
    running.status = Set(forgehand::db::TaskStatus::Running);
    running.started_at = Set(Some(chrono::Utc::now()));
    running.update(app.db.connection_for_tests()).await.unwrap();
    let browser = Browser::login(&app).await;
    let (_, page) = browser.get("/").await;
    assert!(page.contains("1 / 2"), "agents running vs max_concurrent");
    let asked = browser.post(&format!("/tasks/{id}/cancel"), &[("csrf", &browser.csrf)]).await;
    assert_eq!(asked, (303, format!("/tasks/{id}?done=cancel_requested")));
    let task = app.db.task(id).await.unwrap().unwrap().0;
    assert_eq!((task.status.as_str(), task.cancel_requested), ("running", true));
    let (_, page) = browser.get(&asked.1).await;
    assert!(page.contains("Cancel requested") && !page.contains("Cancel task"));
}

#[tokio::test]
async fn the_setup_page_tests_a_forge_token_live() {
    use crate::fake_forge::FakeForge;
    for forge in [FakeForge::github().await, FakeForge::gitea().await] {
        forge.add_repo("acme/widgets", "https://fake.invalid/acme/widgets.git", "main");
        forge.set_permission("acme/widgets", &forge.bot_login(), "admin");
        let app = TestApp::spawn_with(&forge.config_toml("fake")).await;
        let browser = Browser::login(&app).await;
        let (_, page) = browser.get("/setup").await;
        assert!(page.contains("/webhooks/fake") && !page.contains(forge.token()));

        let form = [("csrf", browser.csrf.as_str()), ("forge", "fake"), ("repo", "acme/widgets")];
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
        let login = forge.bot_login();
        assert!(page.contains(&format!("The token authenticates as {login}.")), "{page}");
        assert!(page.contains(&format!("{login} has admin permission on acme/widgets.")), "{page}");
        assert!(!page.contains(forge.token()));

        let refused = browser.post("/setup/check", &[("forge", "fake"), ("repo", "")]).await;
        assert_eq!(refused.0, 403, "the check needs the CSRF token");
        let unknown = browser.post("/setup/check", &[("csrf", &browser.csrf), ("forge", "nope")]).await;
        assert_eq!(unknown.0, 400);
    }
}

#[tokio::test]
async fn the_setup_page_sends_a_test_delivery_to_its_own_endpoint() {
    let app = TestApp::spawn().await;
    let browser = Browser::login(&app).await;
    let (_, page) = browser.get("/setup").await;
    assert!(page.contains("id=\"send-test-github\"") && page.contains("id=\"send-test-gitea\""), "{page}");
    let send = |forge: &'static str| {
        let form = [("csrf", browser.csrf.as_str()), ("forge", forge)];
        let request = browser.client.post(format!("{}/setup/test-delivery", app.base));
        request.header("cookie", &browser.cookie).form_body(&form).send()
    };
    for forge in ["github", "gitea"] {
        let page = send(forge).await.unwrap().text().await.unwrap();
        let answer = format!("/webhooks/{forge} answered 200: ignored");
        assert!(page.contains(&answer) && page.contains("starts no task"), "{forge}: {page}");
    }
    let page = send("unsigned").await.unwrap().text().await.unwrap();
    assert!(page.contains("has no webhook_secret"), "{page}");
    let recorded = app.db.recent_deliveries(10).await.unwrap();
    assert_eq!(recorded.len(), 2, "both test deliveries are recorded: {recorded:?}");
    assert!(recorded.iter().all(|d| d.outcome == "ignored" && d.delivery_id.starts_with("test-")));
    assert!(app.tasks().await.is_empty(), "a test delivery starts no task");
    let refused = browser.post("/setup/test-delivery", &[("forge", "github")]).await;
    assert_eq!(refused.0, 403, "it needs the CSRF token");
}

#[tokio::test]
async fn the_transcript_stream_sends_new_entries_and_resumes_where_it_stopped() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let app = TestApp::spawn_config(dir, &config_text(&data_dir, "").await).await;
    let id = queue_task(&app, 13, "streamed").await;
    let first =
        format!("{}\n", json!({"type":"assistant","message":{"content":[{"type":"text","text":"first"}]}}));
    app.db.append_transcript(id, 0, first.clone().into_bytes()).await.unwrap();
    let browser = Browser::login(&app).await;

    let open = |last_event_id: Option<String>| {
        let mut request = browser
            .client
            .get(format!("{}/tasks/{id}/stream?from=0&status=queued", app.base))
            .header("cookie", &browser.cookie);
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        request.send()
    };
    let response = open(None).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") {
        text.push_str(&String::from_utf8_lossy(&body.next().await.unwrap().unwrap()));
    }
    assert!(text.contains("event: entries") && text.contains("first"), "{text}");
    assert!(text.contains(&format!("id: {}", first.len())), "{text}");
    drop(body);

    // Resumed after the first line: only the second one comes.
    let second =
        format!("{}\n", json!({"type":"assistant","message":{"content":[{"type":"text","text":"second"}]}}));
    app.db.append_transcript(id, first.len() as u64, second.clone().into_bytes()).await.unwrap();
    let mut body = open(Some(first.len().to_string())).await.unwrap().bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") {
        text.push_str(&String::from_utf8_lossy(&body.next().await.unwrap().unwrap()));
    }
    assert!(text.contains("second") && !text.contains("first"), "{text}");
    drop(body);

    // The status event ends the stream when the task ends.
    app.db.cancel_from_dashboard(id, "test").await.unwrap();
    let mut body = open(Some((first.len() + second.len()).to_string())).await.unwrap().bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(text.contains("event: status\ndata: cancelled"), "{text}");
}

#[tokio::test]
async fn metrics_are_open_bounded_and_count_what_happened() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel};
    let app = TestApp::spawn().await;
    let first = queue_task(&app, 21, "one").await;
    queue_task(&app, 22, "two").await;
    let push = app.deliver("gitea", Delivery::gitea("push", "push", fixture("gitea/push.json"))).await;
    assert_eq!(push.outcome(), "ignored");
    let forged = Delivery::github("issues", fixture("github/issues_labeled.json"))
        .set_header("x-hub-signature-256", Some("sha256=00"));
    assert_eq!(app.deliver("github", forged).await.status, 401);
    let mut done = app.db.task(first).await.unwrap().unwrap().0.into_active_model();
    let end = chrono::Utc::now();
    done.status = Set(forgehand::db::TaskStatus::Done);
    done.started_at = Set(Some(end - chrono::Duration::seconds(90)));
    done.finished_at = Set(Some(end));
    done.update(app.db.connection_for_tests()).await.unwrap();

    let response = client().get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(response.status(), 200, "no session or token needed");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    for line in [
        "forgehand_tasks{status=\"queued\"} 1",
        "forgehand_tasks{status=\"done\"} 1",
        "forgehand_tasks{status=\"failed\"} 0",
        "forgehand_deliveries_total{outcome=\"task_created\"} 2",
        "forgehand_deliveries_total{outcome=\"ignored\"} 1",
        "forgehand_agents_running 0",
        "forgehand_agents_max 0",
        "forgehand_claim_passes_total 0",
        "forgehand_task_duration_seconds{quantile=\"0.5\"} 90.000",
        "forgehand_tasks_finished_recent 1",
        "forgehand_intake_duration_seconds_count 4",
        "forgehand_webhook_responses_total{code=\"401\"} 1",
        "forgehand_webhook_responses_total{code=\"202\"} 2",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(value == "NaN" || value.parse::<f64>().is_ok(), "{line}");
        let labels = name.split_once('{').map(|(_, l)| l).unwrap_or("");
        assert!(!labels.contains("repo") && !labels.contains("forge"), "no per-repository labels: {line}");
    }
    for secret in [GITHUB_SECRET, GITEA_SECRET, ADMIN_TOKEN, "octo-org", "Hello-World"] {
        assert!(!text.contains(secret), "{secret} in /metrics");
    }
}

/// Tasks by status as a GROUP BY over every task counts them, sorted.
async fn counted_by_status(app: &TestApp) -> Vec<(String, i64)> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = app.db.connection_for_tests();
    let sql = "SELECT status, CAST(COUNT(*) AS BIGINT) AS n FROM tasks GROUP BY status ORDER BY status";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter().map(|row| (row.try_get("", "status").unwrap(), row.try_get("", "n").unwrap())).collect()
}

/// What `/metrics` reports as `forgehand_tasks`, zeros left out, sorted.
async fn metrics_by_status(app: &TestApp) -> Vec<(String, i64)> {
    let text = client().get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    let mut counts: Vec<(String, i64)> = text
        .lines()
        .filter_map(|line| line.strip_prefix("forgehand_tasks{status=\""))
        .map(|rest| rest.split_once("\"} ").unwrap())
        .map(|(status, n)| (status.to_owned(), n.parse().unwrap()))
        .filter(|(_, n)| *n != 0)
        .collect();
    counts.sort();
    counts
}

/// Tasks that ended are counted by the database's triggers (migration 17), seeded from
/// the tasks a database of the previous release holds; every way a status changes — the
/// dashboard's cancel and retry, an `UPDATE` by hand, a deleted row — keeps `/metrics`
/// equal to counting every task.
#[tokio::test]
async fn the_task_counts_follow_every_status_change_from_the_previous_release_on() {
    use sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().unwrap();
    let (url, old) = database_migrated_to(dir.path(), migrations_before("task_totals")).await;
    for (number, status) in [(1, "done"), (2, "done"), (3, "failed"), (4, "no_changes"), (5, "queued")] {
        old.execute_unprepared(&format!(
            "INSERT INTO tasks (forge, repo, number, kind, trigger, requested_by, title, instructions, clone_url, \
             status, created_at, updated_at) VALUES ('github', 'octo-org/old', {number}, 'issue', 'label', 'alice', \
             'old', 'old', 'https://example.invalid/old.git', '{status}', '2026-11-30 10:00:00+00:00', \
             '2026-11-30 10:00:00+00:00')"
        ))
        .await
        .unwrap();
    }
    old.close().await.unwrap();
    let config = config_text_on(&dir.path().join("data"), &format!("[database]\nurl = \"{url}\"\n"), "");
    let app = TestApp::spawn_config(dir, &config).await;
    let owned = |counts: &[(&str, i64)]| counts.iter().map(|(s, n)| (s.to_string(), *n)).collect::<Vec<_>>();
    assert_eq!(
        metrics_by_status(&app).await,
        owned(&[("done", 2), ("failed", 1), ("no_changes", 1), ("queued", 1)]),
        "seeded from the tasks already there"
    );
    let db = app.db.connection_for_tests();
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT status FROM task_totals",
        ))
        .await
        .unwrap();
    let mut kept: Vec<String> = rows.iter().map(|row| row.try_get("", "status").unwrap()).collect();
    kept.sort();
    let mut ended: Vec<String> = forgehand::db::TaskStatus::ALL
        .into_iter()
        .filter(|status| !status.is_active())
        .map(|status| status.as_str().to_owned())
        .collect();
    ended.sort();
    assert_eq!(kept, ended, "every status is counted one way: kept in task_totals or counted when read");

    let queued = queue_task(&app, 31, "to cancel").await;
    app.db.cancel_from_dashboard(queued, "test").await.unwrap();
    let failed = app.tasks().await.into_iter().find(|t| t.status.as_str() == "failed").unwrap().id;
    assert!(matches!(
        app.db.retry_task(failed, "alice").await.unwrap(),
        forgehand::db::dashboard::Retried::Queued(_)
    ));
    for by_hand in [
        "UPDATE tasks SET status = 'rejected' WHERE number = 4",
        "UPDATE tasks SET status = 'expired' WHERE number = 5",
        "UPDATE tasks SET title = 'renamed' WHERE number = 1",
        "DELETE FROM tasks WHERE number = 2",
    ] {
        db.execute_unprepared(by_hand).await.unwrap();
    }
    let counted = counted_by_status(&app).await;
    assert_eq!(
        counted,
        owned(&[
            ("cancelled", 1),
            ("done", 1),
            ("expired", 1),
            ("failed", 1),
            ("queued", 1),
            ("rejected", 1)
        ])
    );
    assert_eq!(metrics_by_status(&app).await, counted);
}

#[tokio::test]
async fn the_login_limit_believes_forwarded_for_only_from_a_trusted_proxy() {
    let login = |app: &TestApp, token: &'static str, forwarded: &'static str| {
        client()
            .post(format!("{}/login", app.base))
            .header("x-forwarded-for", forwarded)
            .form_body(&[("token", token)])
            .send()
    };
    // No trusted proxy: the header is ignored, so changing it does not reset the count.
    let direct = TestApp::spawn().await;
    for n in 0..5 {
        let forwarded = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4", "203.0.113.5"][n];
        assert_eq!(login(&direct, "guess", forwarded).await.unwrap().status(), 401);
    }
    assert_eq!(login(&direct, ADMIN_TOKEN, "203.0.113.6").await.unwrap().status(), 429);

    // Behind a trusted proxy (the test client's 127.0.0.1): each client has its own count.
    let dir = tempfile::tempdir().unwrap();
    let config = config_text(&dir.path().join("data"), "")
        .await
        .replace("[server]\n", "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    let proxied = TestApp::spawn_config(dir, &config).await;
    for _ in 0..5 {
        assert_eq!(login(&proxied, "guess", "203.0.113.7").await.unwrap().status(), 401);
    }
    assert_eq!(login(&proxied, ADMIN_TOKEN, "203.0.113.7").await.unwrap().status(), 429);
    let forged = login(&proxied, ADMIN_TOKEN, "198.51.100.1, 203.0.113.7").await.unwrap();
    assert_eq!(forged.status(), 429, "a client cannot escape by prepending addresses");
    assert_eq!(login(&proxied, ADMIN_TOKEN, "203.0.113.8").await.unwrap().status(), 303);
}

#[tokio::test]
async fn delivery_counters_do_not_go_down_when_old_deliveries_are_deleted() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn().await;
    queue_task(&app, 31, "one").await;
    let push = app.deliver("gitea", Delivery::gitea("push", "push", fixture("gitea/push.json"))).await;
    assert_eq!(push.outcome(), "ignored");
    let counted = |text: &str, outcome: &str| {
        let prefix = format!("forgehand_deliveries_total{{outcome=\"{outcome}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).map(str::to_owned)
    };
    let metrics = || async {
        client().get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap()
    };
    let before = metrics().await;
    assert_eq!(counted(&before, "task_created").as_deref(), Some("1"), "{before}");
    assert_eq!(counted(&before, "ignored").as_deref(), Some("1"), "{before}");

    // What a retention sweep does: the rows go, what was counted stays.
    let db = app.db.connection_for_tests();
    db.execute_unprepared("UPDATE deliveries SET task_id = NULL").await.unwrap();
    db.execute_unprepared("DELETE FROM deliveries").await.unwrap();
    let after = metrics().await;
    assert_eq!(counted(&after, "task_created").as_deref(), Some("1"), "{after}");
    assert_eq!(counted(&after, "ignored").as_deref(), Some("1"), "{after}");

    let again = app.deliver("gitea", Delivery::gitea("push", "push", fixture("gitea/push.json"))).await;
    assert_eq!(again.outcome(), "ignored", "a new delivery id, so recorded again");
    assert_eq!(counted(&metrics().await, "ignored").as_deref(), Some("2"));
}
