//! The red-team findings of issue 22, each reproduced against the real server over real
//! sockets: stalled form bodies, token guessing, the wizard's stored token, and the
//! smaller items (streams after logout, CL+TE, file modes).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::harness::*;

/// An app whose `[server]` section also carries `server_keys`.
async fn spawn_server_with(server_keys: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("data"), "").await;
    let text = text.replacen("[server]\n", &format!("[server]\n{server_keys}\n"), 1);
    TestApp::spawn_config(dir, &text).await
}

fn address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Sends `head` (headers and the start of a body that never completes) and reads until
/// the server closes; how long that took and the status line, or `None` when the server
/// still held the connection after `give_up`.
async fn stall(
    app: &TestApp,
    head: &'static str,
    sent: tokio::sync::mpsc::Sender<()>,
    give_up: Duration,
) -> Option<(Duration, String)> {
    let mut stream = TcpStream::connect(address(app)).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let _ = sent.send(()).await;
    let mut answer = Vec::new();
    match tokio::time::timeout(give_up, stream.read_to_end(&mut answer)).await {
        Ok(_) => {
            let status = String::from_utf8_lossy(&answer)
                .lines()
                .next()
                .unwrap_or("(closed without an answer)")
                .to_owned();
            Some((started.elapsed(), status))
        }
        Err(_) => None,
    }
}

const STALLED_LOGOUT: &str = "POST /logout HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                              Content-Length: 100\r\n\r\ncsrf=";

#[tokio::test]
async fn stalled_form_bodies_neither_hold_their_slots_nor_starve_deliveries() {
    let (slots, body_timeout) = (8, Duration::from_secs(3));
    let app = spawn_server_with("max_connections = 8\nbody_timeout_secs = 3\nheader_timeout_secs = 30").await;
    // Twice as many stalled clients as slots: the ones over the limit queue in the
    // backlog ahead of the delivery.
    let attackers = 2 * slots;
    let (sent, mut all_sent) = tokio::sync::mpsc::channel(attackers);
    let app = std::sync::Arc::new(app);
    let stalled: Vec<_> = (0..attackers)
        .map(|_| {
            let (app, sent) = (app.clone(), sent.clone());
            tokio::spawn(async move { stall(&app, STALLED_LOGOUT, sent, body_timeout * 4).await })
        })
        .collect();
    for _ in 0..attackers {
        all_sent.recv().await.unwrap();
    }

    let started = Instant::now();
    let delivery = Delivery::github("issues", fixture("github/issues_labeled.json"));
    let answer = tokio::time::timeout(body_timeout, app.deliver("github", delivery))
        .await
        .expect("a signed delivery was not answered within the body timeout while form bodies stalled");
    let delivery_took = started.elapsed();
    assert_eq!((answer.status, answer.outcome()), (202, "task_created"), "{}", answer.text);

    let mut longest = Duration::ZERO;
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for client in stalled {
        let (open_for, status) =
            client.await.unwrap().expect("a stalled client was still held after 4 body timeouts");
        assert!(status.starts_with("HTTP/1.1 408") || status.starts_with("HTTP/1.1 503"), "{status}");
        longest = longest.max(open_for);
        *statuses.entry(status).or_default() += 1;
    }
    eprintln!(
        "stalled form bodies: {attackers} clients, {slots} slots, body timeout {body_timeout:?}: \
         the delivery took {delivery_took:?}; the longest stalled client was cut off after {longest:?}; {statuses:?}"
    );
    assert!(longest < body_timeout + Duration::from_millis(1500), "a stalled body was read for {longest:?}");
}

/// A `POST /login` whose headers are sent now and whose body (a wrong token) is sent when
/// `go` fires; the status line of the answer.
async fn login_in_two_parts(
    app: &TestApp,
    sent: tokio::sync::mpsc::Sender<()>,
    mut go: tokio::sync::watch::Receiver<bool>,
) -> String {
    let body = "token=guess";
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(address(app)).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    sent.send(()).await.unwrap();
    go.wait_for(|go| *go).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn wrong_tokens_are_counted_once_per_client_however_presented_and_however_concurrent() {
    let app = std::sync::Arc::new(spawn_server_with("").await);
    // 25 logins send their headers, wait, then all send a wrong token at once.
    let (sent, mut all_sent) = tokio::sync::mpsc::channel(25);
    let (go, wait) = tokio::sync::watch::channel(false);
    let logins: Vec<_> = (0..25)
        .map(|_| {
            let (app, sent, wait) = (app.clone(), sent.clone(), wait.clone());
            tokio::spawn(async move { login_in_two_parts(&app, sent, wait).await })
        })
        .collect();
    for _ in 0..25 {
        all_sent.recv().await.unwrap();
    }
    go.send(true).unwrap();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for login in logins {
        *statuses.entry(login.await.unwrap()).or_default() += 1;
    }
    let expected =
        [("HTTP/1.1 401 Unauthorized".to_owned(), 5), ("HTTP/1.1 429 Too Many Requests".to_owned(), 20)];
    assert_eq!(statuses, expected.into_iter().collect(), "exactly five wrong tokens are compared");

    // The API's Bearer header shares the count: no more guesses there, not even the
    // right token is compared until the window has passed.
    let bearer =
        |token: &'static str| app.client.get(format!("{}/api/tasks", app.base)).bearer_auth(token).send();
    for token in ["guess-1", "guess-2", ADMIN_TOKEN] {
        let refused = bearer(token).await.unwrap();
        assert_eq!(
            (refused.status().as_u16(), &refused.headers()["retry-after"]),
            (429, &"60".parse().unwrap())
        );
    }
}

#[tokio::test]
async fn wrong_bearer_tokens_lock_the_login_too_but_not_a_browser_that_logged_in_before() {
    let app = spawn_server_with("").await;
    let client = crate::dashboard::client();
    let login = |token: &'static str, device: Option<&str>| {
        let mut request = client.post(format!("{}/login", app.base));
        if let Some(device) = device {
            request = request.header("cookie", device);
        }
        crate::dashboard::FormBody::form_body(request, &[("token", token)]).send()
    };
    // The admin logged in from this browser before: it keeps a device cookie for /login.
    let first = login(ADMIN_TOKEN, None).await.unwrap();
    assert_eq!(first.status(), 303);
    let device = first
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("forgehand_device="))
        .expect("a successful login hands out a device cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/login"] {
        assert!(device.contains(flag), "{flag} missing in {device}");
    }
    let device = device.split(';').next().unwrap().to_owned();

    let setup = |session: String| client.get(format!("{}/setup", app.base)).header("cookie", session).send();
    let session = first.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = setup(session.clone()).await.unwrap().text().await.unwrap();
    assert!(!page.contains("untrusted-proxy"), "{page}");

    // Someone else behind the same address (a proxy not in trusted_proxies) guesses
    // through the API.
    for n in 0..5 {
        let answer = app
            .client
            .get(format!("{}/api/tasks", app.base))
            .header("x-forwarded-for", "203.0.113.9")
            .bearer_auth(format!("guess-{n}"))
            .send();
        assert_eq!(answer.await.unwrap().status(), 401);
    }
    assert_eq!(login("guess-6", None).await.unwrap().status(), 429, "the form shares the API's count");
    assert_eq!(login(ADMIN_TOKEN, None).await.unwrap().status(), 429, "a new browser waits like anyone");
    let returning = login(ADMIN_TOKEN, Some(&device)).await.unwrap();
    assert_eq!(returning.status(), 303, "the admin's own browser is not locked out by others' guesses");
    assert_eq!(returning.headers()["location"], "/");
    let forged = login(ADMIN_TOKEN, Some("forgehand_device=made-up")).await.unwrap();
    assert_eq!(forged.status(), 429, "a device cookie forgehand did not hand out counts for nothing");

    // The setup page says why, and what to do.
    let page = setup(session).await.unwrap().text().await.unwrap();
    assert!(
        page.contains("id=\"untrusted-proxy\"")
            && page.contains("Requests from 127.0.0.1 carry X-Forwarded-For")
            && page.contains("add it to server.trusted_proxies"),
        "{page}"
    );
}

/// A listener at an address of the attacker's choosing: records every request head it
/// receives and answers 404.
struct Listener {
    url: String,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Listener {
    async fn start() -> Listener {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = vec![0u8; 16 * 1024];
                let read = stream.read(&mut buffer).await.unwrap_or(0);
                recorded.lock().unwrap().push(String::from_utf8_lossy(&buffer[..read]).into_owned());
                let answer = "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 23\r\nconnection: close\r\n\r\n{\"message\":\"Not Found\"}";
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        Listener { url, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// The problems a wizard page lists, as text.
fn problems(page: &str) -> String {
    page.split("id=\"problems\"")
        .nth(1)
        .map(|rest| rest.split("</ul>").next().unwrap_or(rest))
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn the_wizard_never_sends_a_stored_secret_to_another_address_nor_tells_what_lives_there() {
    use crate::fake_forge::FakeForge;
    let forge = FakeForge::github().await;
    forge.add_repo("octo/app", "https://fake.invalid/octo/app.git", "main");
    let app = TestApp::spawn_with(&forge.config_toml("fake")).await;
    let browser = crate::dashboard::Browser::login(&app).await;
    let listener = Listener::start().await;

    // A stolen session points the configured forge's live check at its own listener
    // and leaves the token empty, hoping the stored one is used.
    browser.get("/setup/wizard?forge=fake").await;
    let elsewhere =
        [("public_url", "http://fh.test"), ("kind", "github"), ("api_url", listener.url.as_str())];
    assert_eq!(browser.step("forge", &elsewhere).await.0, 303);
    let (_, page) = browser.get("/setup/wizard/token").await;
    assert!(
        !page.contains("leave empty to keep it"),
        "the stored token is offered for the new address: {page}"
    );
    let (status, _, page) = browser.step("token", &[("token", ""), ("repo", "octo/app")]).await;
    assert_eq!(status, 400, "{page}");
    assert!(problems(&page).contains("the stored token is not sent to"), "{page}");
    assert_eq!(listener.heads(), Vec::<String>::new(), "the listener was sent a request");

    // A typed token is checked there, and the answer is the same whether something
    // answers 404 or nothing listens at all.
    let (status, _, at_listener) = browser.step("token", &[("token", "typed"), ("repo", "octo/app")]).await;
    assert!(status == 400 && problems(&at_listener).contains("The token does not work at"), "{at_listener}");
    assert_eq!(listener.heads().len(), 1);
    assert!(listener.heads().iter().all(|head| !head.contains(forge.token())));
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let nowhere = format!("http://{closed}");
    let answers = [("public_url", "http://fh.test"), ("kind", "github"), ("api_url", nowhere.as_str())];
    assert_eq!(browser.step("forge", &answers).await.0, 303);
    let (_, _, at_nothing) = browser.step("token", &[("token", "typed"), ("repo", "octo/app")]).await;
    assert_eq!(
        problems(&at_listener).replace(&listener.url, "URL"),
        problems(&at_nothing).replace(&nowhere, "URL"),
        "the check tells a listener from a closed port"
    );

    // A token typed for one address is not carried to the next either.
    let home = [("public_url", "http://fh.test"), ("kind", "github"), ("api_url", forge.base_url())];
    assert_eq!(browser.step("forge", &home).await.0, 303);
    assert_eq!(browser.step("token", &[("token", forge.token()), ("repo", "octo/app")]).await.0, 303);
    assert_eq!(browser.step("forge", &elsewhere).await.0, 303);
    let (status, _, _) = browser.step("token", &[("token", ""), ("repo", "octo/app")]).await;
    assert_eq!(status, 400);
    assert_eq!(listener.heads().len(), 1, "the token typed for the forge went to the listener");

    // Nor is the stored webhook secret kept for another address: a new one is needed.
    let other = FakeForge::github().await;
    other.add_repo("octo/app", "https://fake.invalid/octo/app.git", "main");
    let moved = [("public_url", "http://fh.test"), ("kind", "github"), ("api_url", other.base_url())];
    assert_eq!(browser.step("forge", &moved).await.0, 303);
    assert_eq!(browser.step("token", &[("token", other.token()), ("repo", "octo/app")]).await.0, 303);
    let (status, _, page) = browser.step("webhook", &[("action", "continue")]).await;
    assert!(status == 400 && problems(&page).contains("Generate a webhook secret first"), "{page}");
}

#[tokio::test]
async fn repository_names_typed_in_the_wizard_or_the_setup_check_are_owner_slash_name() {
    use crate::fake_forge::FakeForge;
    let forge = FakeForge::github().await;
    forge.add_repo("octo/app", "https://fake.invalid/octo/app.git", "main");
    let app = TestApp::spawn_with(&forge.config_toml("fake")).await;
    let browser = crate::dashboard::Browser::login(&app).await;
    browser.get("/setup/wizard?forge=fake").await;
    let home = [("public_url", "http://fh.test"), ("kind", "github"), ("api_url", forge.base_url())];
    assert_eq!(browser.step("forge", &home).await.0, 303);
    let before = forge.requests().len();
    for bad in
        ["a/b/../../../../admin/secret", "../secret", "octo/..", "octo/app/", "octo/a%2fb", "octo/ app"]
    {
        let (status, _, page) = browser.step("token", &[("token", ""), ("repo", bad)]).await;
        assert!(
            status == 400 && problems(&page).contains("Name the repository as owner/name"),
            "{bad}: {page}"
        );
        let form = [("csrf", browser.csrf.as_str()), ("forge", "fake"), ("repo", bad)];
        let (status, page) = setup_check(&browser, &form).await;
        assert!(status == 400 && page.contains("Name the repository as owner/name"), "{bad}: {page}");
    }
    assert_eq!(forge.requests().len(), before, "a refused name reached the forge");
    let (status, _, page) = browser.step("token", &[("token", ""), ("repo", "octo/app")]).await;
    assert_eq!(status, 303, "{page}");
    let form = [("csrf", browser.csrf.as_str()), ("forge", "fake"), ("repo", "octo/app")];
    assert_eq!(setup_check(&browser, &form).await.0, 200);
}

async fn setup_check(browser: &crate::dashboard::Browser, form: &[(&str, &str)]) -> (u16, String) {
    use crate::dashboard::FormBody;
    let response = browser
        .client
        .post(format!("{}/setup/check", browser.base))
        .header("cookie", &browser.cookie)
        .form_body(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn an_open_transcript_stream_ends_when_its_session_logs_out() {
    use futures_util::StreamExt;
    let app = spawn_server_with("").await;
    let answer =
        app.deliver("github", Delivery::github("issues", fixture("github/issues_labeled.json"))).await;
    let id = answer.json["task_id"].as_i64().expect("a task was queued");
    let line = |text: &str| {
        format!(
            "{}\n",
            serde_json::json!({"type":"assistant","message":{"content":[{"type":"text","text":text}]}})
        )
    };
    let first = line("before logout");
    app.db.append_transcript(id, 0, first.clone().into_bytes()).await.unwrap();
    let browser = crate::dashboard::Browser::login(&app).await;
    let response = browser
        .client
        .get(format!("{}/tasks/{id}/stream?from=0&status=queued", app.base))
        .header("cookie", &browser.cookie)
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") {
        text.push_str(&String::from_utf8_lossy(&body.next().await.unwrap().unwrap()));
    }
    assert!(text.contains("before logout"), "{text}");

    let (status, location) = browser.post("/logout", &[("csrf", &browser.csrf)]).await;
    assert_eq!((status, location.as_str()), (303, "/login"));
    let logged_out = Instant::now();
    app.db.append_transcript(id, first.len() as u64, line("after logout").into_bytes()).await.unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        let mut rest = String::new();
        while let Some(chunk) = body.next().await {
            rest.push_str(&String::from_utf8_lossy(&chunk.unwrap_or_default()));
        }
        rest
    })
    .await
    .expect("the stream went on for 5 s after its session logged out");
    eprintln!("the stream ended {:?} after logout", logged_out.elapsed());
    assert!(!rest.contains("after logout"), "entries written after logout were streamed: {rest}");
}

/// Sends `request` raw and reads until the server closes; what it answered.
async fn raw_exchange(app: &TestApp, request: &str) -> String {
    let mut stream = TcpStream::connect(address(app)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect(
            "the server kept the connection open after a request with Content-Length and Transfer-Encoding",
        )
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_request_with_both_content_length_and_transfer_encoding_cannot_smuggle_a_second_one() {
    let app = spawn_server_with("").await;
    // A front proxy that believed Content-Length would see one request; the chunked body
    // ends early and the rest looks like a second request on the same connection.
    let smuggled = "GET /api/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer guess\r\n\r\n";
    let body = format!("5\r\ncsrf=\r\n0\r\n\r\n{smuggled}");
    for headers in [
        format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", body.len()),
        format!("Transfer-Encoding: chunked\r\nContent-Length: {}\r\n", body.len()),
    ] {
        let request = format!(
            "POST /logout HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n{headers}\r\n{body}"
        );
        let answer = raw_exchange(&app, &request).await;
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "more than one answer: {answer}");
        assert!(answer.starts_with("HTTP/1.1 303") && !answer.contains("401"), "{answer}");
    }
    // The control: without Content-Length the same bytes are two pipelined requests.
    let request = format!(
        "POST /logout HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\n\r\n{}",
        body.replace("Host: x\r\n", "Host: x\r\nConnection: close\r\n")
    );
    let answer = raw_exchange(&app, &request).await;
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer}");
    assert!(answer.contains("HTTP/1.1 401"), "{answer}");
}
