//! Test harness: a real forgehand on 127.0.0.1:0 with its own temp dir and SQLite file,
//! and signed deliveries built from the payloads in tests/data.

use std::path::{Path, PathBuf};

use forgehand::app::App;
use forgehand::config::Settings;
use forgehand::db::{Db, TaskFilter, entities::deliveries, entities::tasks};
use forgehand::forge::signature::sign;

pub const GITHUB_SECRET: &str = "github test secret";
pub const GITEA_SECRET: &str = "gitea test secret";
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A running forgehand with a GitHub forge (`github`) and a Gitea forge (`gitea`).
pub struct TestApp {
    pub base: String,
    pub db: Db,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    _stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Checks `done` every 20 ms until it holds or `within` has passed; whether it held.
/// For conditions nothing notifies about (files, processes); the caller asserts.
pub async fn poll_until(within: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    true
}

/// Waits until `db`'s executor has run `more` claims from now (each a claim statement that
/// found nothing to start, when a test holds its only task back); whether it did within a
/// minute. What shows that a task left queued stays so over claims, not over time.
pub async fn claims_go_on(db: &Db, more: u64) -> bool {
    let target = db.claims_run() + more;
    poll_until(std::time::Duration::from_secs(60), || db.claims_run() >= target).await
}

/// With `FORGEHAND_TEST_POSTGRES=postgres://USER@HOST:PORT` set, every test app gets a
/// fresh PostgreSQL database there instead of an SQLite file: the suite's one switch.
pub async fn database_section() -> String {
    match fresh_postgres().await {
        Some(url) => format!("[database]\nurl = \"{url}\"\n"),
        None => String::new(),
    }
}

/// A new PostgreSQL database when the suite runs on PostgreSQL.
pub async fn fresh_postgres() -> Option<String> {
    let base = std::env::var("FORGEHAND_TEST_POSTGRES").ok()?;
    let name = format!("forgehand_{}", new_id().replace('-', "_"));
    let admin = sea_orm::Database::connect(format!("{base}/postgres")).await.unwrap();
    use sea_orm::ConnectionTrait;
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
    admin.close().await.unwrap();
    Some(format!("{base}/{name}"))
}

/// A database several instances share: a new PostgreSQL database, or an SQLite file in
/// `dir` when the suite runs on SQLite.
pub async fn shared_database(dir: &Path) -> String {
    match fresh_postgres().await {
        Some(url) => url,
        None => format!("sqlite://{}", dir.join("shared.db").display()),
    }
}

/// A shared database (see [`shared_database`]) with only the first `applied` migrations
/// run, as an older release left it: its URL, for the upgraded app's configuration, and a
/// connection to fill it through.
pub async fn database_migrated_to(dir: &Path, applied: u32) -> (String, sea_orm::DatabaseConnection) {
    use migrations::{Migrator, MigratorTrait};
    let url = shared_database(dir).await;
    let sqlite_url = if url.starts_with("sqlite:") { format!("{url}?mode=rwc") } else { url.clone() };
    let old = sea_orm::Database::connect(&sqlite_url).await.unwrap();
    Migrator::up(&old, Some(applied)).await.unwrap();
    (url, old)
}

/// The migrations the previous release had run: all but the newest.
pub fn previous_release() -> u32 {
    use migrations::{Migrator, MigratorTrait};
    Migrator::migrations().len() as u32 - 1
}

/// How many migrations ran before the one whose name contains `name`: a database of the
/// release before it.
pub fn migrations_before(name: &str) -> u32 {
    use migrations::{Migrator, MigratorTrait};
    let position = Migrator::migrations().iter().position(|m| m.name().contains(name));
    position.unwrap_or_else(|| panic!("no migration named like {name:?}")) as u32
}

/// Whether the suite runs on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("FORGEHAND_TEST_POSTGRES").is_ok()
}

/// The config file every test app starts from; `extra` is appended.
pub async fn config_text(data_dir: &Path, extra: &str) -> String {
    config_text_on(data_dir, &database_section().await, extra)
}

/// The test config with the given `[database]` section (empty: SQLite in `data_dir`).
pub fn config_text_on(data_dir: &Path, database: &str, extra: &str) -> String {
    format!(
        r#"
data_dir = "{data_dir}"
{database}
[server]
listen = "127.0.0.1:0"
max_body_bytes = 65536
[executor]
# Intake tests look at queued tasks; the executor tests start their own.
enabled = false
[auth]
admin_token = "{ADMIN_TOKEN}"
[[forges]]
name = "github"
kind = "github"
api_url = "https://api.github.com"
webhook_secret = ["an old secret", "{GITHUB_SECRET}"]
bot_login = "forgehand-bot"
[[forges]]
name = "gitea"
kind = "gitea"
api_url = "https://gitea.example.com/api/v1"
webhook_secret = "{GITEA_SECRET}"
# With a bot_login, forgehand does not ask these (unreachable) forges who their token is.
bot_login = "forgehand-bot"
[[forges]]
name = "unsigned"
kind = "github"
api_url = "https://api.github.com"
bot_login = "forgehand-bot"
{extra}
"#,
        data_dir = data_dir.display()
    )
}

impl TestApp {
    /// Starts an app with the default test configuration.
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with("").await
    }

    /// Starts an app whose config file ends with `extra` (TOML).
    pub async fn spawn_with(extra: &str) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let text = config_text(&dir.path().join("data"), extra).await;
        TestApp::spawn_config(dir, &text).await
    }

    /// Starts an app in `dir` with exactly this configuration.
    pub async fn spawn_config(dir: tempfile::TempDir, config: &str) -> TestApp {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter(filter).try_init();
        let path = dir.path().join("forgehand.toml");
        std::fs::write(&path, config).unwrap();
        let settings = Settings::load_with_env(Some(&path), Default::default()).unwrap();
        let app = App::build(settings).await.unwrap();
        let base = format!("http://{}", app.local_addr());
        let db = app.state().db.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let running = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        TestApp {
            base,
            db,
            client: reqwest::Client::new(),
            _dir: dir,
            _stop: Some(stop),
            running: Some(running),
        }
    }

    /// The config file the app was started with (the one the setup wizard writes).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("forgehand.toml")
    }

    /// Stops the app as SIGTERM would and waits until it has; gives back its directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self._stop.take() {
            let _ = stop.send(());
        }
        if let Some(running) = self.running.take() {
            running.await.unwrap().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self._dir, dir)
    }

    /// Waits until task `id` satisfies `done`; panics with the task after `timeout`.
    pub async fn wait_task(
        &self,
        id: i64,
        timeout: std::time::Duration,
        done: impl Fn(&tasks::Model) -> bool,
    ) -> tasks::Model {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let task = self.db.task(id).await.unwrap().map(|(t, _)| t);
            if let Some(task) = task.filter(|t| done(t)) {
                return task;
            }
            if tokio::time::Instant::now() > deadline {
                let (task, events) = self.db.task(id).await.unwrap().unwrap();
                panic!("task {id} did not get there in {timeout:?}: {task:?}\n{events:#?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// The refused deliveries, newest first, once at least `count` are recorded (they are
    /// written off the request path).
    pub async fn wait_refusals(
        &self,
        count: usize,
    ) -> Vec<forgehand::db::entities::refused_deliveries::Model> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let refusals = self.db.recent_refusals(1000).await.unwrap();
            if refusals.len() >= count {
                return refusals;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {count} refusals recorded",
                refusals.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Sends a delivery to `/webhooks/{forge}`.
    pub async fn deliver(&self, forge: &str, delivery: Delivery) -> Answer {
        let mut request = self.client.post(format!("{}/webhooks/{forge}", self.base)).body(delivery.body);
        for (name, value) in delivery.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Answer { status, json, text }
    }

    /// GET with the admin token.
    pub async fn api(&self, path: &str) -> (u16, serde_json::Value) {
        let response =
            self.client.get(format!("{}{path}", self.base)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Every task, newest first.
    pub async fn tasks(&self) -> Vec<tasks::Model> {
        self.db.list_tasks(&TaskFilter { limit: 10_000, ..Default::default() }).await.unwrap()
    }

    /// Every recorded delivery, newest first.
    pub async fn deliveries(&self) -> Vec<deliveries::Model> {
        self.db.recent_deliveries(10_000).await.unwrap()
    }
}

/// A forge's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: serde_json::Value,
    pub text: String,
}

impl Answer {
    /// The `outcome` field of a 2xx answer.
    pub fn outcome(&self) -> &str {
        self.json["outcome"].as_str().unwrap_or_default()
    }

    /// The `error` field of a refusal.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or_default()
    }
}

/// A delivery under construction: body plus headers.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// Reads a payload from tests/data.
pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(data_path(path)).unwrap_or_else(|e| panic!("tests/data/{path}: {e}"))
}

/// The path of a file in tests/data.
pub fn data_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(path)
}

/// A fresh delivery id.
pub fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Delivery {
    /// A GitHub delivery of `event` with `body`, signed with the test secret, as JSON.
    pub fn github(event: &str, body: Vec<u8>) -> Delivery {
        let signature = format!("sha256={}", sign(GITHUB_SECRET.as_bytes(), &body));
        Delivery {
            body,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-github-event".into(), event.into()),
                ("x-github-delivery".into(), new_id()),
                ("x-hub-signature-256".into(), signature),
                ("user-agent".into(), "GitHub-Hookshot/test".into()),
            ],
        }
    }

    /// A Gitea delivery of `event` (with its fine-grained `event_type`), signed as Gitea
    /// does: bare hex in X-Gitea-Signature, plus the GitHub-style copies.
    pub fn gitea(event: &str, event_type: &str, body: Vec<u8>) -> Delivery {
        let signature = sign(GITEA_SECRET.as_bytes(), &body);
        let id = new_id();
        Delivery {
            body,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-gitea-event".into(), event.into()),
                ("x-gitea-event-type".into(), event_type.into()),
                ("x-gitea-delivery".into(), id.clone()),
                ("x-gitea-signature".into(), signature.clone()),
                ("x-github-event".into(), event.into()),
                ("x-github-delivery".into(), id),
                ("x-hub-signature-256".into(), format!("sha256={signature}")),
            ],
        }
    }

    /// The delivery id header's value.
    pub fn id(&self) -> String {
        self.header("x-gitea-delivery").or_else(|| self.header("x-github-delivery")).unwrap_or_default()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }

    /// Replaces (or, with `None`, removes) every header named `name`.
    pub fn set_header(mut self, name: &str, value: Option<&str>) -> Delivery {
        self.headers.retain(|(n, _)| n != name);
        if let Some(value) = value {
            self.headers.push((name.into(), value.into()));
        }
        self
    }

    /// Adds one more header, keeping any with the same name.
    pub fn add_header(mut self, name: &str, value: &str) -> Delivery {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A JSON payload from tests/data with a JSON pointer replaced by `value`.
pub fn edited(path: &str, pointer: &str, value: serde_json::Value) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(&fixture(path)).unwrap();
    *json.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer} not in {path}")) = value;
    serde_json::to_vec(&json).unwrap()
}
