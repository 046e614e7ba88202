//! Notifications end to end: a real receiver (axum on 127.0.0.1:0) for webhook and Slack
//! sinks with the signature checked, a real SMTP server (Python's aiosmtpd), retries,
//! `kill -9` between the task's change and the send, and several instances sharing one
//! outbox.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use forgehand::db::notify::NotifyEvent;
use forgehand::db::{Ending, RunEnd};
use serde_json::Value;

use crate::harness::*;

const HOOK_SECRET: &str = "notify-hook-secret-s3cr3t";
/// Part of the sinks' URLs, as a Slack token would be: it must never show.
const URL_TOKEN: &str = "T000-url-token-B000";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

/// A local HTTP receiver: records every request, fails the first `fail_first` with 500
/// (echoing the URL, as a careless server might), and notices the same delivery id
/// arriving while it is still being answered.
#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    got: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicUsize>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    overlaps: Arc<AtomicUsize>,
    delay: Duration,
    arrived: Arc<tokio::sync::Notify>,
}

impl Receiver {
    pub async fn start(fail_first: usize, delay: Duration) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            base: format!("http://{}", listener.local_addr().unwrap()),
            got: Arc::default(),
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
            in_flight: Arc::default(),
            overlaps: Arc::default(),
            delay,
            arrived: Arc::default(),
        };
        let app = axum::Router::new().fallback(receive).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    /// Waits until `done` holds for what arrived, for at most `within`.
    pub async fn wait(&self, within: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.arrived.notified();
            let got = self.got.lock().unwrap().clone();
            if done(&got) {
                return got;
            }
            assert!(tokio::time::Instant::now() < deadline, "the receiver never got there: {got:#?}");
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    pub fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn receive(
    State(r): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let id = headers.get("x-forgehand-delivery").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if !r.in_flight.lock().unwrap().insert(id.clone()) {
        r.overlaps.fetch_add(1, Ordering::SeqCst);
    }
    tokio::time::sleep(r.delay).await;
    let failing = r.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    r.got.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
        at: Instant::now(),
    });
    r.in_flight.lock().unwrap().remove(&id);
    r.arrived.notify_waiters();
    if failing {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("down for maintenance ({uri})"))
    } else {
        (StatusCode::OK, "ok".into())
    }
}

fn sinks(receiver: &Receiver, events: &str) -> String {
    format!(
        r#"
[notify]
backoff_first_ms = 50
backoff_max_secs = 1
[[notify.sinks]]
name = "hook"
kind = "webhook"
events = [{events}]
url = "{base}/hook/{URL_TOKEN}"
secret = "{HOOK_SECRET}"
[[notify.sinks]]
name = "chat"
kind = "slack"
events = [{events}]
repos = ["octo-org/hello-world"]
url = "{base}/chat/{URL_TOKEN}"
"#,
        base = receiver.base
    )
}

/// Queues #42's task through a real delivery, claims it and ends it `done` with a pull
/// request, as an executor does; the instant the end was committed.
async fn finish_a_task(app: &TestApp) -> (i64, Instant) {
    let answer =
        app.deliver("github", Delivery::github("issues", fixture("github/issues_labeled.json"))).await;
    let id = answer.json["task_id"].as_i64().expect("a task");
    let claimed = app
        .db
        .claim_next("test/owner", chrono::Duration::minutes(5), &Default::default())
        .await
        .unwrap()
        .expect("the queued task");
    assert_eq!(claimed.id, id);
    let lease = app.db.lease(id, "test/owner", chrono::Duration::minutes(5));
    let pull =
        forgehand::db::PullRef { number: 7.into(), url: "https://github.com/octo-org/hello-world/pull/7" };
    let end = RunEnd::Final { ending: Ending::Done, error: None, pull: Some(pull) };
    assert!(lease.end(end).await.unwrap());
    (id, Instant::now())
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn a_finished_task_reaches_the_webhook_signed_and_slack_as_one_line_with_links() {
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let app = TestApp::spawn_with(&sinks(&receiver, r#""task_done", "task_failed""#)).await;
    let (id, ended) = finish_a_task(&app).await;

    let got = receiver.wait(Duration::from_secs(20), |got| got.len() >= 2).await;
    let latency = got.iter().map(|r| r.at.duration_since(ended)).max().unwrap();
    eprintln!("notification latency, task end committed -> both sinks received: {latency:?}");
    let hook = got.iter().find(|r| r.path.starts_with("/hook/")).expect("the webhook");
    let signature = header(hook, "x-forgehand-signature-256");
    let secrets = [secrecy::SecretString::from(HOOK_SECRET)];
    forgehand::forge::signature::verify(&secrets, &hook.body, signature).expect("a valid signature");
    let body: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(body["event"], "task_done");
    assert_eq!(header(hook, "x-forgehand-event"), "task_done");
    assert_eq!(body["delivery_id"], header(hook, "x-forgehand-delivery"));
    assert_eq!(body["task"]["id"], id);
    assert_eq!(body["task"]["repo"], "octo-org/hello-world");
    assert_eq!(body["task"]["number"], 42);
    assert_eq!(body["task"]["status"], "done");
    assert_eq!(body["task"]["pr_url"], "https://github.com/octo-org/hello-world/pull/7");
    assert_eq!(body["task"]["url"], format!("http://127.0.0.1:8080/tasks/{id}"));
    assert_eq!(body["task"]["issue_url"], "https://github.com/octo-org/hello-world/issues/42");

    let chat = got.iter().find(|r| r.path.starts_with("/chat/")).expect("the Slack message");
    let text = serde_json::from_slice::<Value>(&chat.body).unwrap()["text"].as_str().unwrap().to_owned();
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(text.contains(&format!("task #{id} on octo-org/hello-world#42")), "{text}");
    assert!(text.contains("<https://github.com/octo-org/hello-world/pull/7|PR #7>"), "{text}");
    assert!(text.contains(&format!("<http://127.0.0.1:8080/tasks/{id}|task #{id}>")), "{text}");
    assert!(text.contains("<https://github.com/octo-org/hello-world/issues/42|issue #42>"), "{text}");
    for r in &got {
        let raw = String::from_utf8_lossy(&r.body);
        for secret in [HOOK_SECRET, URL_TOKEN, ADMIN_TOKEN, GITHUB_SECRET] {
            assert!(!raw.contains(secret), "a secret in a notification: {raw}");
        }
    }
    // Delivered once each: nothing more comes.
    assert_eq!(receiver.all().len(), 2);
}

#[tokio::test]
async fn a_receiver_failing_three_times_then_accepting_gets_it_with_one_delivery_id() {
    let receiver = Receiver::start(3, Duration::ZERO).await;
    let extra = sinks(&receiver, r#""task_done""#)
        .replace("repos = [\"octo-org/hello-world\"]", "repos = [\"someone/else\"]");
    let app = TestApp::spawn_with(&extra).await;
    finish_a_task(&app).await;

    let got = receiver.wait(Duration::from_secs(30), |got| got.len() >= 4).await;
    assert!(got.iter().all(|r| r.path.starts_with("/hook/")), "the Slack sink filters on another repo");
    let ids: HashSet<&str> = got.iter().map(|r| header(r, "x-forgehand-delivery")).collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same delivery id: {ids:?}");
    // Backoff: each wait is at least as long as the one before (50, 100, 200 ms).
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(45) && gaps[2] >= Duration::from_millis(190), "{gaps:?}");
    // Woken when the retry is due, not by the one-second poll.
    assert!(gaps[0] < Duration::from_millis(600), "{gaps:?}");
    let settled = poll_db(&app, |health| health.is_empty()).await;
    assert!(settled, "the sink is healthy again once delivered");
    assert_eq!(receiver.all().len(), 4);
}

async fn poll_db(app: &TestApp, done: impl Fn(&[forgehand::db::notify::SinkHealth]) -> bool) -> bool {
    for _ in 0..200 {
        if done(&app.db.sink_health().await.unwrap()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test]
async fn a_sink_that_keeps_failing_shows_on_the_dashboard_with_its_error_masked() {
    let receiver = Receiver::start(usize::MAX, Duration::ZERO).await;
    let app = TestApp::spawn_with(&sinks(&receiver, r#""task_done""#)).await;
    finish_a_task(&app).await;
    receiver.wait(Duration::from_secs(20), |got| got.len() >= 4).await;
    assert!(poll_db(&app, |h| h.iter().any(|h| h.sink == "hook")).await);

    let browser = crate::dashboard::Browser::login(&app).await;
    let (status, page) = browser.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("Notification sink <strong>hook</strong> is failing"), "{page}");
    assert!(page.contains("the receiver answered 500"), "{page}");
    assert!(!page.contains(URL_TOKEN), "the sink's URL token shows on the dashboard");
    for h in app.db.sink_health().await.unwrap() {
        assert!(
            !h.last_error.unwrap_or_default().contains(URL_TOKEN),
            "the stored error holds the URL token"
        );
    }
}

/// A local SMTP server (aiosmtpd, plain SMTP) writing each message it gets to `out`.
async fn smtp_server(out: &std::path::Path) -> (tokio::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script = r#"
import sys, time
from aiosmtpd.controller import Controller
class Keep:
    async def handle_DATA(self, server, session, envelope):
        with open(sys.argv[2], "ab") as f:
            f.write(envelope.content + b"\n.\n")
        return "250 kept"
c = Controller(Keep(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
while True:
    time.sleep(60)
"#;
    let mut child = tokio::process::Command::new("/usr/bin/python3")
        .args(["-c", script, &port.to_string(), out.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("/usr/bin/python3 with aiosmtpd (scripts/test.sh installs python3-aiosmtpd)");
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap();
    assert_eq!(ready.as_deref(), Some("ready"), "aiosmtpd did not start (is python3-aiosmtpd installed?)");
    (child, port)
}

#[tokio::test]
async fn a_mail_sink_sends_the_notification_over_smtp() {
    let dir = tempfile::tempdir().unwrap();
    let mailbox = dir.path().join("mailbox");
    let (_server, port) = smtp_server(&mailbox).await;
    let extra = format!(
        r#"
[[notify.sinks]]
name = "mail"
kind = "email"
events = ["task_done"]
smtp_host = "127.0.0.1"
smtp_port = {port}
smtp_security = "none"
from = "forgehand <forgehand@example.com>"
to = ["ops@example.com"]
"#
    );
    let app = TestApp::spawn_with(&extra).await;
    let (id, _) = finish_a_task(&app).await;
    let arrived =
        poll_until(Duration::from_secs(20), || std::fs::read(&mailbox).is_ok_and(|m| !m.is_empty())).await;
    assert!(arrived, "no mail arrived");
    let mail = String::from_utf8_lossy(&std::fs::read(&mailbox).unwrap()).to_string();
    assert!(mail.contains("To: ops@example.com"), "{mail}");
    assert!(mail.contains(&format!("forgehand task #{id} on octo-org/hello-world#42")), "{mail}");
    assert!(mail.contains("Pull request: https://github.com/octo-org/hello-world/pull/7"), "{mail}");
    assert!(mail.contains("-mail@forgehand>"), "the delivery id as Message-ID, to dedupe on: {mail}");
}

#[tokio::test]
async fn kill_9_between_the_task_change_and_the_send_sends_after_restart() {
    use std::os::unix::process::ExitStatusExt;
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let scene = crate::faults::Scene::new(
        crate::executor::Setup::new(crate::fake_forge::Dialect::Github),
        &[],
        &sinks(&receiver, r#""task_done""#),
    )
    .await;
    let mut daemon =
        scene.start(&[(forgehand::failpoint::VARIABLE, forgehand::executor::notify::FAILPOINT)]).await;
    let id = scene.label(&daemon).await;
    let status =
        tokio::time::timeout(Duration::from_secs(120), daemon.child.wait()).await.expect("no crash").unwrap();
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status}");
    let task = scene.wait_task(id, |_| true).await;
    assert_eq!(task.status, "done", "the task ended before the crash: {task:?}");
    assert!(receiver.all().is_empty(), "nothing was sent before the crash");

    let _restarted = scene.start(&[]).await;
    let got = receiver.wait(Duration::from_secs(30), |got| got.len() >= 2).await;
    for r in &got {
        let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let text = String::from_utf8_lossy(&r.body);
        assert!(body["task"]["id"] == id || text.contains(&format!("task #{id}")), "{text}");
    }
}

/// Three instances share one outbox (PostgreSQL in the PostgreSQL run; an SQLite file
/// otherwise): every event reaches the receiver, and no delivery is ever being sent by two
/// of them at once.
#[tokio::test]
async fn three_instances_deliver_every_event_and_never_the_same_one_at_once() {
    const EVENTS: usize = 30;
    let receiver = Receiver::start(0, Duration::from_millis(15)).await;
    let dir = tempfile::tempdir().unwrap();
    let url = shared_database(dir.path()).await;
    let text = config_text_on(
        &dir.path().join("data"),
        &format!("[database]\nurl = \"{url}\"\n"),
        &sinks(&receiver, r#""budget_reached""#),
    );
    let path = dir.path().join("forgehand.toml");
    std::fs::write(&path, text).unwrap();
    let settings =
        Arc::new(forgehand::config::Settings::load_with_env(Some(&path), Default::default()).unwrap());
    let first = forgehand::app::open_database(&settings).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut senders = Vec::new();
    for _ in 0..3 {
        let db = forgehand::db::Db::connect(&settings).await.unwrap();
        senders.push(tokio::spawn(forgehand::executor::notify::run(settings.clone(), db, stopped.clone())));
    }
    for n in 0..EVENTS {
        let detail = serde_json::json!({ "budget": format!("budget-{n}") });
        first.enqueue_notification(NotifyEvent::BudgetReached, None, detail).await.unwrap();
    }
    let got = receiver.wait(Duration::from_secs(60), |got| got.len() >= EVENTS * 2).await;
    let ids: HashSet<&str> = got.iter().map(|r| header(r, "x-forgehand-delivery")).collect();
    assert_eq!(ids.len(), EVENTS * 2, "every event to both sinks");
    assert_eq!(receiver.overlaps.load(Ordering::SeqCst), 0, "a delivery was sent by two instances at once");
    let _ = stop.send(true);
    for sender in senders {
        sender.await.unwrap();
    }
    assert_eq!(receiver.all().len(), EVENTS * 2, "none was sent twice");
}

/// At start an instance finds the tasks its last life left running: it crashed, and the
/// sinks that asked for `daemon_recovered` hear which tasks it requeued.
#[tokio::test]
async fn a_start_after_a_crash_tells_the_sinks_which_tasks_were_requeued() {
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let app = TestApp::spawn_with(&sinks(&receiver, r#""daemon_recovered""#)).await;
    let answer =
        app.deliver("github", Delivery::github("issues", fixture("github/issues_labeled.json"))).await;
    let id = answer.json["task_id"].as_i64().unwrap();
    let lease = chrono::Duration::minutes(5);
    app.db.claim_next("host:1234/dead", lease, &Default::default()).await.unwrap().expect("the task");

    let (requeued, failed) = app.db.requeue_abandoned(Some("host:1234/"), 3).await.unwrap();
    assert_eq!((requeued, failed), (vec![id], vec![]));
    let got = receiver.wait(Duration::from_secs(20), |got| got.len() >= 2).await;
    let hook = got.iter().find(|r| r.path.starts_with("/hook/")).unwrap();
    let body: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(body["event"], "daemon_recovered");
    assert_eq!(body["requeued"], serde_json::json!([id]));
    let chat = got.iter().find(|r| r.path.starts_with("/chat/")).unwrap();
    let text = String::from_utf8_lossy(&chat.body);
    assert!(text.contains("forgehand daemon recovered: failed: [], requeued: ["), "{text}");
    // A start with nothing left running is no crash: nothing more is sent.
    app.db.requeue_abandoned(Some("host:1234/"), 3).await.unwrap();
    assert_eq!(app.db.pending_notify_events(10).await.unwrap().len(), 0);
}
