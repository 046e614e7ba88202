//! The HTTP edge under hostile clients: slow headers, slow bodies, too many connections.
//! Each test checks that a real signed delivery still gets through.

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

/// Sends a real signed delivery and checks it is queued within `within`.
async fn assert_delivery_succeeds(app: &TestApp, within: Duration) -> Duration {
    let started = Instant::now();
    let delivery = Delivery::github("issues", fixture("github/issues_labeled.json"));
    let answer = tokio::time::timeout(within, app.deliver("github", delivery))
        .await
        .unwrap_or_else(|_| panic!("a real delivery took longer than {within:?}"));
    assert_eq!((answer.status, answer.outcome()), (202, "task_created"), "{}", answer.text);
    started.elapsed()
}

/// Writes `bytes` one at a time, `pause` apart, until the server closes the connection;
/// returns how long the connection stayed open and what the server sent back.
async fn drip(stream: TcpStream, bytes: Vec<u8>, pause: Duration) -> (Duration, String) {
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        (started.elapsed(), String::from_utf8_lossy(&answer).into_owned())
    });
    for byte in bytes.iter().cycle() {
        if reader.is_finished() || write.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    reader.await.unwrap()
}

#[tokio::test]
async fn slow_headers_are_cut_off_while_real_deliveries_pass() {
    let app = spawn_server_with("header_timeout_secs = 2").await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    stream.write_all(b"POST /webhooks/github HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let slowloris = tokio::spawn(drip(stream, b"x-padding: aaaaaaaa".to_vec(), Duration::from_millis(500)));

    let took = assert_delivery_succeeds(&app, Duration::from_secs(2)).await;
    let (open_for, answer) = slowloris.await.unwrap();
    eprintln!("slow headers: cut off after {open_for:?}; a real delivery meanwhile took {took:?}");
    assert!(open_for >= Duration::from_millis(1500), "cut off too early: {open_for:?}");
    assert!(open_for < Duration::from_secs(5), "a client dripping headers was served for {open_for:?}");
    assert!(!answer.contains("202"), "the slow request was served: {answer}");
    assert_eq!(app.deliveries().await.len(), 1);
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_408() {
    let app = spawn_server_with("body_timeout_secs = 2").await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let head = "POST /webhooks/github HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                x-github-event: issues\r\nx-github-delivery: slow-1\r\n\
                x-hub-signature-256: sha256=00\r\ncontent-length: 4000\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    let slow_body = tokio::spawn(drip(stream, b"\"a\": 1, ".to_vec(), Duration::from_millis(500)));

    let took = assert_delivery_succeeds(&app, Duration::from_secs(2)).await;
    let (open_for, answer) = slow_body.await.unwrap();
    eprintln!("slow body: answered after {open_for:?}; a real delivery meanwhile took {took:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "expected 408, got {answer:?}");
    assert!(answer.contains("server.body_timeout_secs (2 s)"), "{answer}");
    assert!(open_for >= Duration::from_millis(1500), "answered too early: {open_for:?}");
    assert!(open_for < Duration::from_secs(5), "a body dripping in was read for {open_for:?}");
    let deliveries = app.deliveries().await;
    assert_eq!(deliveries.len(), 1, "the slow delivery was recorded");
    assert_ne!(deliveries[0].delivery_id, "slow-1");
}

#[tokio::test]
async fn connections_over_the_limit_wait_until_one_closes() {
    let app = spawn_server_with("max_connections = 3\nheader_timeout_secs = 60").await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(address(&app)).await.unwrap());
    }
    // Every slot is held by an idle connection: the delivery waits in the backlog.
    let delivery = Delivery::github("issues", fixture("github/issues_labeled.json"));
    let mut pending = Box::pin(app.deliver("github", delivery));
    let waited = tokio::time::timeout(Duration::from_millis(1500), &mut pending).await;
    assert!(waited.is_err(), "a connection over max_connections was served: {waited:?}");

    drop(idle.pop());
    let freed = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(3), pending)
        .await
        .expect("the waiting delivery was not served once a connection closed");
    eprintln!("connection limit: the waiting delivery was served {:?} after a slot freed", freed.elapsed());
    assert_eq!((answer.status, answer.outcome()), (202, "task_created"), "{}", answer.text);
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let app = TestApp::spawn().await;
    let body = fixture("github/issues_labeled.json");
    let delivery = Delivery::github("issues", body.clone());
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let mut head = format!(
        "POST /webhooks/github HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in &delivery.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // "100 Continue" comes when the handler starts reading the body: the request is in flight.
    let mut continued = [0u8; 25];
    stream.read_exact(&mut continued).await.unwrap();
    assert!(continued.starts_with(b"HTTP/1.1 100 Continue"), "{:?}", String::from_utf8_lossy(&continued));

    let db = app.db.clone();
    let stopping = tokio::spawn(app.stop());
    stream.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.trim_start().starts_with("HTTP/1.1 202"),
        "the request in flight was not finished: {answer}"
    );
    tokio::time::timeout(Duration::from_secs(10), stopping).await.unwrap().unwrap();
    assert_eq!(db.recent_deliveries(10).await.unwrap().len(), 1);
}

/// One hostile or broken delivery from tests/data/bad/cases.json; the file's `about`
/// field documents every key.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BadCase {
    name: String,
    forge: String,
    dialect: Option<String>,
    #[serde(default = "issues_event")]
    event: String,
    event_type: Option<String>,
    body_file: Option<String>,
    body_inline: Option<String>,
    generator: Option<String>,
    #[serde(default)]
    set: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    remove: Vec<String>,
    truncate: Option<i64>,
    append: Option<String>,
    prepend_hex: Option<String>,
    prepend_field: Option<String>,
    raw_hex: Option<String>,
    raw_text: Option<String>,
    #[serde(default)]
    raw_unquoted: bool,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    drop_headers: Vec<String>,
    #[serde(default)]
    strip_other_signatures: bool,
    #[serde(default = "signed")]
    sign: serde_json::Value,
    sign_secret: Option<String>,
    #[serde(default)]
    chunked: bool,
    delivery_id: Option<String>,
    #[serde(default)]
    repeat: bool,
    expect_status: u16,
}

fn issues_event() -> String {
    "issues".into()
}

fn signed() -> serde_json::Value {
    serde_json::Value::Bool(true)
}

/// The test app's `server.max_body_bytes`.
const BODY_LIMIT: usize = 65536;

impl BadCase {
    fn gitea_dialect(&self) -> bool {
        self.dialect.as_deref().unwrap_or(&self.forge) == "gitea"
    }

    fn body(&self) -> Vec<u8> {
        let mut json = None;
        let mut body = if let Some(file) = &self.body_file {
            json = Some(serde_json::from_slice::<serde_json::Value>(&fixture(file)).unwrap());
            Vec::new()
        } else {
            self.body_inline.clone().unwrap_or_default().into_bytes()
        };
        if let Some(json) = json.as_mut() {
            for (pointer, value) in &self.set {
                set_pointer(json, pointer, value.clone());
            }
            for pointer in &self.remove {
                let (parent, key) = pointer.rsplit_once('/').unwrap();
                json.pointer_mut(parent).and_then(|p| p.as_object_mut()).unwrap().remove(key);
            }
        }
        if let Some(generator) = &self.generator {
            body = generate(generator, json.as_mut());
        } else if let Some(json) = json {
            body = serde_json::to_vec(&json).unwrap();
        }
        self.edit_bytes(body)
    }

    fn edit_bytes(&self, mut body: Vec<u8>) -> Vec<u8> {
        let raw = match (&self.raw_hex, &self.raw_text) {
            (Some(hex_bytes), _) => Some(hex::decode(hex_bytes).unwrap()),
            (_, Some(text)) => Some(text.clone().into_bytes()),
            _ => None,
        };
        if let Some(raw) = raw {
            let raw = if self.raw_unquoted { raw } else { [b"\"".as_slice(), &raw, b"\""].concat() };
            body = replace_bytes(&body, b"\"@@RAW@@\"", &raw);
        }
        if let Some(field) = &self.prepend_field {
            let at = body.iter().position(|b| *b == b'{').unwrap() + 1;
            body.splice(at..at, field.bytes());
        }
        match self.truncate {
            Some(n) if n < 0 => body.truncate(body.len() - n.unsigned_abs() as usize),
            Some(n) => body.truncate(n as usize),
            None => {}
        }
        if let Some(tail) = &self.append {
            body.extend_from_slice(tail.as_bytes());
        }
        if let Some(head) = &self.prepend_hex {
            body.splice(0..0, hex::decode(head).unwrap());
        }
        body
    }

    fn delivery(&self) -> Delivery {
        let body = self.body();
        let mut delivery = if self.gitea_dialect() {
            Delivery::gitea(&self.event, self.event_type.as_deref().unwrap_or(&self.event), body)
        } else {
            Delivery::github(&self.event, body)
        };
        let signature_names: &[&str] = if self.gitea_dialect() {
            &["x-gitea-signature", "x-hub-signature-256"]
        } else {
            &["x-hub-signature-256"]
        };
        if let Some(hex_digest) = self.signature(&delivery.body) {
            for name in signature_names {
                let value = if *name == "x-gitea-signature" {
                    hex_digest.clone()
                } else {
                    format!("sha256={hex_digest}")
                };
                delivery = delivery.set_header(name, Some(&value));
            }
            if self.sign == "twice" {
                let first = delivery.header(signature_names[0]).unwrap();
                delivery = delivery.add_header(signature_names[0], &first);
            }
        } else {
            for name in signature_names {
                delivery = delivery.set_header(name, None);
            }
        }
        if let Some(id) = &self.delivery_id {
            for name in ["x-github-delivery", "x-gitea-delivery"] {
                if delivery.header(name).is_some() {
                    delivery = delivery.set_header(name, Some(id));
                }
            }
        }
        if self.strip_other_signatures {
            for name in signature_names {
                delivery = delivery.set_header(name, None);
            }
        }
        for name in &self.drop_headers {
            delivery = delivery.set_header(name, None);
        }
        for (name, value) in &self.headers {
            delivery = delivery.set_header(name, Some(value));
        }
        delivery
    }

    /// The hex signature `sign` asks for, or `None` for no signature header at all.
    fn signature(&self, body: &[u8]) -> Option<String> {
        let secret = match self.sign_secret.as_deref().unwrap_or(&self.forge) {
            "gitea" => GITEA_SECRET,
            _ => GITHUB_SECRET,
        };
        let sign = |key: &str, body: &[u8]| forgehand::forge::signature::sign(key.as_bytes(), body);
        Some(match &self.sign {
            serde_json::Value::Bool(false) => return None,
            serde_json::Value::Bool(true) => sign(secret, body),
            serde_json::Value::String(mode) => match mode.as_str() {
                "twice" => sign(secret, body),
                "wrong" => sign("not the secret", body),
                "other_body" => sign(secret, b"{}"),
                "empty_secret" => sign("", body),
                "truncated" => sign(secret, body)[..40].to_owned(),
                "trailing_newline" => sign(secret, &[body, b"\n"].concat()),
                other => panic!("{}: unknown sign mode {other:?}", self.name),
            },
            other => panic!("{}: sign must be true, false or a mode, not {other}", self.name),
        })
    }
}

/// Sets `pointer` in `json`, adding the last key to its object when it is missing.
fn set_pointer(json: &mut serde_json::Value, pointer: &str, value: serde_json::Value) {
    if let Some(slot) = json.pointer_mut(pointer) {
        *slot = value;
        return;
    }
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = json.pointer_mut(parent).and_then(|p| p.as_object_mut());
    parent.unwrap_or_else(|| panic!("{pointer}: no object to add to")).insert(key.into(), value);
}

fn replace_bytes(body: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at =
        body.windows(from.len()).position(|w| w == from).expect("the @@RAW@@ placeholder is in the body");
    [&body[..at], to, &body[at + from.len()..]].concat()
}

/// A body built in code: too big or too deep to keep in a file.
fn generate(generator: &str, json: Option<&mut serde_json::Value>) -> Vec<u8> {
    let (kind, size) = generator.split_once(':').unwrap_or((generator, "0"));
    let size: usize = size.parse().unwrap();
    let nested_arrays = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    match kind {
        "oversize" => {
            let head = r#"{"action":"labeled","padding":""#;
            let pad = "a".repeat(BODY_LIMIT + 1 - head.len() - 2);
            format!("{head}{pad}\"}}").into_bytes()
        }
        "nested_arrays" => nested_arrays(size).into_bytes(),
        "nested_objects" => format!("{}1{}", r#"{"a":"#.repeat(size), "}".repeat(size)).into_bytes(),
        "nested_title" | "nested_ignored" => {
            let json = json.expect("a body_file to nest into");
            let pointer = if kind == "nested_title" { "/issue/title" } else { "/issue/extra" };
            set_pointer(json, pointer, "@@RAW@@".into());
            let body = serde_json::to_vec(json).unwrap();
            replace_bytes(&body, b"\"@@RAW@@\"", nested_arrays(size).as_bytes())
        }
        "huge_title" => {
            let json = json.expect("a body_file for the title");
            set_pointer(json, "/issue/title", "x".repeat(size).into());
            serde_json::to_vec(json).unwrap()
        }
        "many_labels" => {
            let json = json.expect("a body_file for the labels");
            let labels: Vec<_> = (0..size).map(|i| serde_json::json!({ "name": format!("l{i}") })).collect();
            set_pointer(json, "/issue/labels", labels.into());
            serde_json::to_vec(json).unwrap()
        }
        other => panic!("unknown generator {other:?}"),
    }
}

/// Sends `delivery` to `forge`, as one chunked stream when `chunked` (no Content-Length).
async fn send_case(app: &TestApp, forge: &str, delivery: Delivery, chunked: bool) -> Answer {
    if !chunked {
        return app.deliver(forge, delivery).await;
    }
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        delivery.body.chunks(8192).map(|c| Ok(c.to_vec())).collect();
    let mut request = app
        .client
        .post(format!("{}/webhooks/{forge}", app.base))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)));
    for (name, value) in &delivery.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Answer { status, json, text }
}

#[tokio::test]
async fn every_hostile_delivery_in_the_corpus_gets_its_precise_answer() {
    let manifest: serde_json::Value = serde_json::from_slice(&fixture("bad/cases.json")).unwrap();
    let cases: Vec<BadCase> = serde_json::from_value(manifest["cases"].clone()).unwrap();
    assert!(cases.len() >= 150, "the corpus shrank to {} cases", cases.len());
    let app = TestApp::spawn().await;
    let started = Instant::now();
    let mut failures = Vec::new();
    for case in &cases {
        let delivery = case.delivery();
        if case.repeat {
            let first = app.deliver(&case.forge, delivery.clone()).await;
            assert!(first.status < 300, "{}: the first send failed: {}", case.name, first.text);
        }
        let (tasks_before, before) = (app.tasks().await.len(), app.deliveries().await.len());
        let answer = send_case(&app, &case.forge, delivery, case.chunked).await;
        let message =
            if answer.status >= 400 { answer.error() } else { answer.json["reason"].as_str().unwrap_or("") };
        let mut wrong = Vec::new();
        if answer.status != case.expect_status {
            wrong.push(format!("status {} (expected {})", answer.status, case.expect_status));
        }
        if message.trim().is_empty() {
            wrong.push("no error or reason in the answer".into());
        }
        if app.tasks().await.len() != tasks_before {
            wrong.push("a task was created".into());
        }
        if answer.status >= 400 && app.deliveries().await.len() != before {
            wrong.push("a refused delivery was recorded".into());
        }
        let health = app.client.get(format!("{}/healthz", app.base)).send().await;
        if !health.is_ok_and(|h| h.status() == 200) {
            wrong.push("/healthz stopped answering".into());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {} — {}",
                case.name,
                wrong.join(", "),
                answer.text.chars().take(200).collect::<String>()
            ));
        }
    }
    eprintln!("bad-delivery corpus: {} cases in {:?}", cases.len(), started.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The reconciliation sweep: labelled issues whose webhook never arrived.
// ---------------------------------------------------------------------------------------

mod sweep {
    use std::sync::Arc;
    use std::time::Duration;

    use forgehand::config::Settings;
    use forgehand::executor::{Executor, sweep};

    use crate::executor::{Setup, bare_remote, config};
    use crate::fake_forge::{Dialect, FakeForge};
    use crate::harness::*;

    fn repo_of(dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Github => "octo-org/hello-world",
            Dialect::Gitea => "acme/widgets",
        }
    }

    /// The forge's issues: #1 labelled with a webhook (a task), #2 and #3 labelled without
    /// one, #4 not labelled, #5 labelled but closed, #6 a labelled pull request.
    fn populate(forge: &FakeForge, repo: &str) {
        forge.add_repo(repo, "file:///nonexistent", "main");
        for (n, labels) in
            [(1, &["forgehand"][..]), (2, &["bug", "forgehand"]), (3, &["forgehand"]), (4, &["bug"])]
        {
            forge.add_issue(
                repo,
                n,
                &format!("Issue {n}"),
                "text",
                labels,
                if n == 3 { "carol" } else { "bob" },
            );
        }
        forge.add_issue(repo, 5, "Closed", "text", &["forgehand"], "bob");
        forge.set_closed(repo, 5);
        forge.add_pull(repo, 6, "A pull request", "feature", "main");
        let _ = forge.label_issue(repo, 6, "forgehand", "bob");
    }

    async fn sweep_finds_exactly_the_missed_issues(dialect: Dialect) {
        let forge = match dialect {
            Dialect::Github => FakeForge::github().await,
            Dialect::Gitea => FakeForge::gitea().await,
        };
        let name = if dialect == Dialect::Github { "github" } else { "gitea" };
        let repo = repo_of(dialect);
        populate(&forge, repo);
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "data_dir = \"{}\"\n{}\n[server]\nlisten = \"127.0.0.1:0\"\n[auth]\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             [executor]\nenabled = false\n{}",
            dir.path().join("data").display(),
            database_section().await,
            forge.config_toml(name)
        );
        let path = dir.path().join("sweep.toml");
        std::fs::write(&path, &text).unwrap();
        let settings = Settings::load_with_env(Some(&path), Default::default()).unwrap();
        let app = TestApp::spawn_config(tempfile::tempdir().unwrap(), &text).await;

        // #1 got its webhook; its task ended (cancelled) long ago.
        let labeled = forge.label_issue(repo, 1, "forgehand", "bob");
        let answer = app.deliver(name, labeled.delivery()).await;
        assert_eq!(answer.status, 202, "{}", answer.text);
        let first = answer.json["task_id"].as_i64().unwrap();
        app.db.cancel_task(first, "test").await.unwrap();

        // trigger.repos is empty: the repositories come from recent deliveries.
        let executor = Executor::new(settings, app.db.clone(), Arc::new(tokio::sync::Notify::new())).unwrap();
        assert_eq!(sweep::sweep_once(executor.context()).await, 2, "{:?}", app.tasks().await);
        assert_eq!(sweep::sweep_once(executor.context()).await, 0, "a second sweep queued again");

        let tasks = app.tasks().await;
        let of = |n: i64| tasks.iter().filter(|t| t.number == n).collect::<Vec<_>>();
        assert_eq!(tasks.len(), 3, "{tasks:#?}");
        assert_eq!(of(1).len(), 1, "an issue that had a task got another one");
        for (n, author) in [(2, "bob"), (3, "carol")] {
            let task = of(n);
            assert_eq!(task.len(), 1, "#{n}: {tasks:#?}");
            let task = task[0];
            assert_eq!(
                (task.kind.as_str(), task.trigger.as_str(), task.status.as_str(), task.requested_by.as_str()),
                ("implement", "sweep", "queued", author)
            );
            assert_eq!((task.forge.as_str(), task.repo.as_str()), (name, repo));
            assert_eq!(task.title, format!("Issue {n}"));
            assert_eq!(task.clone_url, "file:///nonexistent");
        }
    }

    #[tokio::test]
    async fn github_sweep_queues_one_task_per_missed_issue() {
        sweep_finds_exactly_the_missed_issues(Dialect::Github).await;
    }

    #[tokio::test]
    async fn gitea_sweep_queues_one_task_per_missed_issue() {
        sweep_finds_exactly_the_missed_issues(Dialect::Gitea).await;
    }

    /// No webhook is ever sent: the startup sweep finds the issue and the task runs to a
    /// pull request.
    #[tokio::test]
    async fn a_missed_label_becomes_a_pull_request_at_startup() {
        let dir = tempfile::tempdir().unwrap();
        let forge = FakeForge::github().await;
        let repo = repo_of(Dialect::Github);
        let remote = dir.path().join("remote.git");
        bare_remote(&remote);
        forge.add_repo(repo, &format!("file://{}", remote.display()), "main");
        forge.add_issue(
            repo,
            42,
            "Add a --verbose flag to the CLI",
            "The CLI needs --verbose.",
            &["forgehand"],
            "alice",
        );
        forge.set_permission(repo, "alice", "write");
        let (log, pidfile) = (dir.path().join("agent.log"), dir.path().join("agent.pid"));
        let text = config(&dir, &forge, &Setup::new(Dialect::Github), &log, &pidfile).await;
        let text = format!("{text}\n[trigger]\nrepos = [\"{repo}\"]\n");
        let app = TestApp::spawn_config(dir, &text).await;

        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let task = loop {
            if let Some(task) = app.tasks().await.into_iter().next() {
                break task;
            }
            assert!(tokio::time::Instant::now() < deadline, "the startup sweep queued nothing");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!((task.number, task.trigger.as_str(), task.requested_by.as_str()), (42, "sweep", "alice"));
        let task = app.wait_task(task.id, Duration::from_secs(60), |t| t.status == "done").await;
        let pulls = forge.pulls(repo);
        assert_eq!(pulls.len(), 1, "{pulls:?}");
        assert_eq!(task.branch.as_deref(), Some(pulls[0].head.as_str()));
        assert_eq!(app.tasks().await.len(), 1);
    }
}

// ---------------------------------------------------------------------------------------
// Secrets: a whole scenario on the real binary, then every trace of it searched.
// ---------------------------------------------------------------------------------------

mod secrets {
    use std::path::Path;
    use std::process::Stdio;
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    use tokio::process::Command;

    use crate::executor::{Setup, bare_remote, config};
    use crate::fake_forge::{Dialect, FakeForge, TOKEN};
    use crate::harness::*;

    const WEBHOOK_SECRET: &str = "whsec-Q7vN3pLx0-distinctive";
    const ADMIN: &str = "admtok-9fKz2RwY-distinctive";

    /// Every file under `dir`, recursively.
    fn files(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { found.extend(files(&path)) } else { found.push(path) }
        }
        found
    }

    fn signed(delivery: Delivery) -> Delivery {
        let signature = forgehand::forge::signature::sign(WEBHOOK_SECRET.as_bytes(), &delivery.body);
        delivery.set_header("x-hub-signature-256", Some(&format!("sha256={signature}")))
    }

    #[tokio::test]
    async fn no_secret_reaches_a_log_an_answer_a_comment_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let forge = FakeForge::github().await;
        let repo = "octo-org/hello-world";
        let remote = dir.path().join("remote.git");
        bare_remote(&remote);
        forge.add_repo(repo, &format!("file://{}", remote.display()), "main");
        forge.add_issue(
            repo,
            42,
            "Add a --verbose flag to the CLI",
            "The CLI needs --verbose.",
            &["forgehand"],
            "alice",
        );
        forge.set_permission(repo, "alice", "write");
        let (log, pidfile) = (dir.path().join("agent.log"), dir.path().join("agent.pid"));
        let text = config(&dir, &forge, &Setup::new(Dialect::Github), &log, &pidfile)
            .await
            .replace(ADMIN_TOKEN, ADMIN)
            .replace(GITHUB_SECRET, WEBHOOK_SECRET);
        let config_path = dir.path().join("forgehand.toml");
        std::fs::write(&config_path, &text).unwrap();

        // Started under umask 022, as outside systemd: its files must be private anyway.
        let mut child = Command::new("sh")
            .args(["-c", "umask 022; exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_forgehand")])
            .args(["--log-format", "json", "--config", config_path.to_str().unwrap(), "serve"])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Both pipes are drained all along: a full pipe would block the daemon's logging.
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let stdout_lines = tokio::spawn(async move {
            let (mut lines, mut addr_tx) = (Vec::new(), Some(addr_tx));
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line)
                    && json["message"] == "forgehand listening"
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(json["addr"].as_str().unwrap_or_default().to_owned());
                }
                lines.push(line);
            }
            lines
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr_text = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        let addr = tokio::time::timeout(Duration::from_secs(30), addr_rx)
            .await
            .expect("forgehand did not listen within 30 s")
            .expect("forgehand exited before listening");
        let base = format!("http://{addr}");
        let client = reqwest::Client::new();
        let mut answers = Vec::new();

        // The scenario: refusals, a real label delivery run to a pull request, API reads.
        let labeled = signed(Delivery::github("issues", fixture("github/issues_labeled.json")));
        for (delivery, forge_name) in [
            (labeled.clone().set_header("x-hub-signature-256", Some("sha256=00")), "github"),
            (Delivery::github("issues", b"{".to_vec()), "github"),
            (labeled.clone(), "nope"),
            (labeled.clone(), "github"),
        ] {
            let mut request = client.post(format!("{base}/webhooks/{forge_name}")).body(delivery.body);
            for (name, value) in delivery.headers {
                request = request.header(name, value);
            }
            answers.push(request.send().await.unwrap().text().await.unwrap());
        }
        let id =
            serde_json::from_str::<serde_json::Value>(answers.last().unwrap()).unwrap()["task_id"].as_i64();
        let id = id.unwrap_or_else(|| panic!("the label delivery queued no task: {answers:?}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let answer =
                client.get(format!("{base}/api/tasks/{id}")).bearer_auth(ADMIN).send().await.unwrap();
            let text = answer.text().await.unwrap();
            let done = text.contains("\"done\"");
            answers.push(text);
            if done {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id} did not finish: {}",
                answers.last().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for token in ["wrong-token", ""] {
            let answer = client.get(format!("{base}/api/tasks")).bearer_auth(token).send().await.unwrap();
            answers.push(answer.text().await.unwrap());
        }
        answers.push(
            client
                .get(format!("{base}/api/tasks"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
        // Labels are set after the status comment is edited: wait until the forge settles.
        let settled = forge
            .wait_until(
                |s| s.labels_of(repo, 42).iter().any(|l| l == "forgehand:done"),
                Duration::from_secs(30),
            )
            .await;
        assert!(settled, "the issue never got forgehand:done");

        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
        tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
        let mut lines = stdout_lines.await.unwrap();
        lines.push(stderr_text.await.unwrap());

        let secrets = [TOKEN, WEBHOOK_SECRET, ADMIN];
        let mut places: Vec<(String, Vec<u8>)> = Vec::new();
        places
            .extend(lines.iter().enumerate().map(|(i, l)| (format!("log line {i}"), l.clone().into_bytes())));
        places.extend(
            answers.iter().enumerate().map(|(i, a)| (format!("API answer {i}"), a.clone().into_bytes())),
        );
        for comment in forge.comments(repo, 42) {
            places.push((format!("comment {}", comment.id), comment.body.into_bytes()));
        }
        for pull in forge.pulls(repo) {
            places.push((
                format!("pull request {}", pull.number),
                format!("{}\n{}", pull.title, pull.body).into_bytes(),
            ));
        }
        let data_dir = dir.path().join("data");
        for path in files(&data_dir).into_iter().chain([log.clone()]) {
            places.push((path.display().to_string(), std::fs::read(&path).unwrap_or_default()));
        }
        assert!(lines.len() > 20, "too few log lines to mean anything: {lines:?}");
        // The rows too, whichever database holds them (PostgreSQL keeps no file in data_dir).
        let settings =
            forgehand::config::Settings::load_with_env(Some(&config_path), Default::default()).unwrap();
        let db = forgehand::db::Db::connect(&settings).await.unwrap();
        let filter = forgehand::db::TaskFilter { limit: 1000, ..Default::default() };
        for task in db.list_tasks(&filter).await.unwrap() {
            let events = db.task(task.id).await.unwrap().map(|(_, events)| events);
            places.push((format!("task row {}", task.id), format!("{task:?}\n{events:?}").into_bytes()));
        }
        let deliveries = db.recent_deliveries(1000).await.unwrap();
        assert!(!deliveries.is_empty(), "no delivery rows to search");
        places.push(("delivery rows".into(), format!("{deliveries:?}").into_bytes()));
        // The search itself works: the config file, not searched, holds every secret.
        let config_bytes = std::fs::read(&config_path).unwrap();
        for secret in [WEBHOOK_SECRET, ADMIN, TOKEN] {
            assert!(
                config_bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} not in the config"
            );
        }
        let mut hits = Vec::new();
        for (place, bytes) in &places {
            for secret in secrets {
                if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                    hits.push(format!("{secret:?} in {place}"));
                }
            }
        }
        eprintln!(
            "secrets: searched {} places ({} log lines, {} answers, {} files)",
            places.len(),
            lines.len(),
            answers.len(),
            files(&data_dir).len()
        );
        assert!(hits.is_empty(), "secrets leaked:\n{}", hits.join("\n"));
        assert_private(&data_dir);
    }

    /// `dir` and everything under it is its owner's alone: files 0600 (0700 when
    /// executable), directories 0700.
    fn assert_private(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        fn walk(path: &Path, found: &mut Vec<(std::path::PathBuf, u32)>) {
            let Ok(meta) = std::fs::symlink_metadata(path) else { return };
            found.push((path.to_path_buf(), meta.permissions().mode()));
            if meta.is_dir() {
                for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                    walk(&entry.path(), found);
                }
            }
        }
        let mut found = Vec::new();
        walk(dir, &mut found);
        let open: Vec<String> = found
            .iter()
            .filter(|(_, mode)| mode & 0o077 != 0 && mode & 0o170000 != 0o120000)
            .map(|(path, mode)| format!("{:o} {}", mode & 0o777, path.display()))
            .collect();
        eprintln!("file modes: checked {} files and directories under data_dir", found.len());
        assert!(open.is_empty(), "readable by others:\n{}", open.join("\n"));
        let names: Vec<&str> = found.iter().filter_map(|(p, _)| p.file_name()?.to_str()).collect();
        let expected: &[&str] = if on_postgres() {
            &["transcripts", "workspaces"]
        } else {
            &["forgehand.db", "forgehand.db-wal", "workspaces"]
        };
        for name in expected {
            assert!(names.contains(name), "nothing named {name} under data_dir: {names:?}");
        }
    }
}
