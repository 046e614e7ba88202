//! Faults on the real `forgehand` binary: `kill -9` in a burst of deliveries and at each
//! step of a task, then a restart; the task must still finish exactly once.
//!
//! The steps are hit deterministically: the stand-in agent waits for a file while the
//! daemon is killed ("during the agent"), and `FORGEHAND_FAILPOINT` (src/failpoint.rs)
//! aborts the daemon at the other steps.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::executor::{BRANCH, Setup, bare_remote, config, remote_file};
use crate::fake_forge::{Dialect, FakeForge};
use crate::harness::*;
use crate::process::start;

const LONG: Duration = Duration::from_secs(90);
const REPO: &str = "octo-org/hello-world";

/// A running daemon whose output is read all along (a full pipe would stop it).
pub struct Running {
    pub child: tokio::process::Child,
    pub base: String,
    /// Every line it printed after it started listening.
    #[allow(dead_code)] // read by the tests that look at the log
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Starts the real binary in `cwd` with `args` and `env`, and keeps reading its output.
pub async fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    let daemon = start(cwd, args, env).await;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (mut stdout, kept) = (daemon.stdout, lines.clone());
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    Running { child: daemon.child, base: daemon.base, lines }
}

/// Signs and sends `delivery` to the daemon; the status (0 when the connection failed)
/// and the JSON answer.
pub async fn post(client: &reqwest::Client, base: &str, delivery: &Delivery) -> (u16, serde_json::Value) {
    let mut request = client.post(format!("{base}/webhooks/github")).body(delivery.body.clone());
    for (name, value) in &delivery.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(serde_json::Value::Null))
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// The database of the config at `path`, opened by the test itself.
pub async fn open_db(path: &Path) -> forgehand::db::Db {
    let settings = forgehand::config::Settings::load_with_env(Some(path), Default::default()).unwrap();
    forgehand::db::Db::connect(&settings).await.unwrap()
}

/// Delivery ids recorded more than zero times, with their counts.
async fn delivery_counts(db: &forgehand::db::Db) -> HashMap<String, i64> {
    let connection = db.connection();
    let sql = "SELECT delivery_id, COUNT(*) AS n FROM deliveries GROUP BY delivery_id";
    let rows = connection
        .query_all_raw(Statement::from_string(connection.get_database_backend(), sql))
        .await
        .unwrap();
    rows.iter()
        .map(|row| (row.try_get::<String>("", "delivery_id").unwrap(), row.try_get::<i64>("", "n").unwrap()))
        .collect()
}

#[tokio::test]
async fn kill_9_in_a_burst_of_2000_deliveries_loses_none_answered_2xx() {
    const TOTAL: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forgehand.toml");
    std::fs::write(&path, config_text(&dir.path().join("data"), "").await).unwrap();
    let args = ["--config", path.to_str().unwrap()];
    let mut daemon = run(dir.path(), &args, &[]).await;

    // One delivery per issue, so each accepted one also makes exactly one task.
    let deliveries: Vec<Delivery> = (1..=TOTAL)
        .map(|n| Delivery::github("issues", edited("github/issues_labeled.json", "/issue/number", json!(n))))
        .collect();
    let client = reqwest::Client::new();
    let base = daemon.base.clone();
    let mut answers = futures_util::stream::iter(deliveries.iter().cloned())
        .map(|delivery| {
            let (client, base) = (client.clone(), base.clone());
            async move { (delivery.id(), post(&client, &base, &delivery).await.0) }
        })
        .buffer_unordered(32);
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    while let Some((id, status)) = answers.next().await {
        match status {
            202 => accepted.push(id),
            0 => {}
            other => refused.push((id, other)),
        }
        if accepted.len() == TOTAL as usize / 2 && daemon.child.id().is_some() {
            daemon.child.start_kill().unwrap();
        }
    }
    drop(answers);
    let status = daemon.child.wait().await.unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert!(refused.is_empty(), "answers other than 202 or a cut connection: {refused:?}");
    assert!(accepted.len() < TOTAL as usize, "the kill came after the last answer");

    let restarted = run(dir.path(), &args, &[]).await;
    let db = open_db(&path).await;
    let counts = delivery_counts(&db).await;
    for id in &accepted {
        assert_eq!(counts.get(id), Some(&1), "delivery {id} was answered 202: recorded once?");
    }
    assert!(counts.values().all(|&n| n == 1), "a delivery recorded twice");

    // The forge redelivers everything: what was recorded is a duplicate, the rest is new.
    let answers: Vec<(u16, serde_json::Value)> = futures_util::stream::iter(deliveries.iter())
        .map(|delivery| post(&client, &restarted.base, delivery))
        .buffered(32)
        .collect()
        .await;
    for (delivery, (status, json)) in deliveries.iter().zip(&answers) {
        let expected = if counts.contains_key(&delivery.id()) { 200 } else { 202 };
        assert_eq!(*status, expected, "redelivery of {}: {json}", delivery.id());
    }
    let counts = delivery_counts(&db).await;
    assert_eq!(counts.len(), TOTAL as usize);
    assert!(counts.values().all(|&n| n == 1), "a delivery recorded twice");
    let tasks =
        db.list_tasks(&forgehand::db::TaskFilter { limit: 10_000, ..Default::default() }).await.unwrap();
    let mut numbers: Vec<i64> = tasks.iter().map(|t| t.number).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!((tasks.len(), numbers.len()), (TOTAL as usize, TOTAL as usize), "one task per issue");
    eprintln!(
        "burst: {} of {TOTAL} answered 202 before kill -9, {} recorded at restart",
        accepted.len(),
        answers.iter().filter(|(s, _)| *s == 200).count()
    );
}

/// A daemon with its executor, the fake GitHub, a bare remote and the stand-in agent.
pub struct Scene {
    pub dir: tempfile::TempDir,
    pub forge: FakeForge,
    pub remote: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Scene {
    /// `agent_env` is added to the agent's environment in the config; `extra` is
    /// appended to the config (TOML sections).
    pub async fn new(setup: Setup, agent_env: &[(&str, &str)], extra: &str) -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let forge = FakeForge::github().await;
        let remote = dir.path().join("remote.git");
        bare_remote(&remote);
        forge.add_repo(REPO, &format!("file://{}", remote.display()), "main");
        forge.add_issue(REPO, 42, "Add a --verbose flag to the CLI", "", &["forgehand"], "alice");
        forge.set_permission(REPO, "alice", "write");
        let (log, pidfile) = (dir.path().join("agent.log"), dir.path().join("agent.pid"));
        let mut text = config(&dir, &forge, &setup, &log, &pidfile).await;
        for (name, value) in agent_env {
            let with = format!("{name} = \"{value}\", FAKE_CLAUDE_MODE = ");
            text = text.replacen("FAKE_CLAUDE_MODE = ", &with, 1);
        }
        text.push_str(extra);
        let config = dir.path().join("forgehand.toml");
        std::fs::write(&config, text).unwrap();
        Scene { dir, forge, remote, config, log }
    }

    pub async fn start(&self, env: &[(&str, &str)]) -> Running {
        run(self.dir.path(), &["--config", self.config.to_str().unwrap()], env).await
    }

    /// Sends the label delivery for #42; the task's id.
    pub async fn label(&self, daemon: &Running) -> i64 {
        let delivery = Delivery::github("issues", fixture("github/issues_labeled.json"));
        let (status, json) = post(&reqwest::Client::new(), &daemon.base, &delivery).await;
        assert_eq!(status, 202, "{json}");
        json["task_id"].as_i64().unwrap()
    }

    /// Agent runs started so far (one log line each).
    pub fn agent_runs(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e.get("argv").is_some())
            .collect()
    }

    /// Waits until task `id` satisfies `done`, reading the database directly.
    pub async fn wait_task(
        &self,
        id: i64,
        done: impl Fn(&forgehand::db::entities::tasks::Model) -> bool,
    ) -> forgehand::db::entities::tasks::Model {
        let db = open_db(&self.config).await;
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            let (task, events) = db.task(id).await.unwrap().unwrap();
            if done(&task) {
                return task;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id} never got there: {task:?}\n{events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the issue's labels show the end of the task: no `working`, `wanted` on.
    pub async fn labels_settled(&self, wanted: &str) {
        let settled = self
            .forge
            .wait_until(
                |s| {
                    let labels = s.labels_of(REPO, 42);
                    !labels.iter().any(|l| l == "forgehand:working") && labels.iter().any(|l| l == wanted)
                },
                LONG,
            )
            .await;
        assert!(settled, "labels of #42: {:?}", self.forge.labels(REPO, 42));
    }

    /// The bot's comments on #42.
    pub fn bot_comments(&self) -> Vec<String> {
        let bot = self.forge.bot_login();
        self.forge.comments(REPO, 42).into_iter().filter(|c| c.user == bot).map(|c| c.body).collect()
    }

    /// Checks the end every crash must still reach: done once, one pull request, the
    /// agent's work on the branch once, one status comment that says so.
    pub async fn assert_done_once(&self, id: i64) {
        let task = self.wait_task(id, |t| !["queued", "running"].contains(&t.status.as_str())).await;
        assert_eq!(task.status, "done", "{task:?}");
        self.labels_settled("forgehand:done").await;
        let pulls = self.forge.pulls(REPO);
        assert_eq!(pulls.len(), 1, "{pulls:?}");
        assert_eq!(pulls[0].head, BRANCH);
        assert_eq!(task.pr_number, Some(pulls[0].number as i32));
        let (demo, _) = remote_file(&self.remote, BRANCH, "FORGEHAND_DEMO.md").expect("the agent's file");
        assert_eq!(demo.lines().count(), 1, "the agent's work is on the branch once: {demo:?}");
        let comments = self.bot_comments();
        let expected = format!(
            "✅ forgehand opened pull request [#{n}]({url}) ([task #{id}](http://forgehand.test/tasks/{id})).",
            n = pulls[0].number,
            url = pulls[0].html_url
        );
        assert_eq!(comments.len(), 1, "one status comment: {comments:#?}");
        assert_eq!(comments[0].lines().next().unwrap(), expected, "{comments:#?}");
        let (_, events) = open_db(&self.config).await.task(id).await.unwrap().unwrap();
        assert_eq!(events.iter().filter(|e| e.status == "done").count(), 1, "{events:#?}");
    }
}

/// Crashes the daemon at `step` with the failpoint, restarts it, checks the end; the
/// agent must have run `runs` times in all.
async fn crash_at(step: &str, runs: usize) {
    let scene = Scene::new(Setup::new(Dialect::Github), &[], "").await;
    let mut daemon = scene.start(&[(forgehand::failpoint::VARIABLE, step)]).await;
    let id = scene.label(&daemon).await;
    let status = tokio::time::timeout(LONG, daemon.child.wait()).await.expect("no crash").unwrap();
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{step}: {status}");
    let crashed = scene.wait_task(id, |_| true).await;
    assert_eq!(crashed.status, "running", "{step}: the crash left the task running: {crashed:?}");

    let _restarted = scene.start(&[]).await;
    scene.assert_done_once(id).await;
    assert_eq!(scene.agent_runs().len(), runs, "{step}: agent runs");
}

#[tokio::test]
async fn kill_after_the_fetch_then_restart_finishes_the_task_once() {
    crash_at("after_fetch", 1).await;
}

#[tokio::test]
async fn kill_after_the_commit_then_restart_finishes_the_task_once() {
    // The commit was only local: the agent runs again in a fresh checkout.
    crash_at("after_commit", 2).await;
}

#[tokio::test]
async fn kill_after_the_push_then_restart_finishes_the_task_once() {
    crash_at("after_push", 1).await;
}

#[tokio::test]
async fn kill_after_the_pull_request_was_created_then_restart_finishes_the_task_once() {
    crash_at("after_pull_created", 1).await;
}

#[tokio::test]
async fn kill_9_during_the_agent_then_restart_finishes_the_task_once() {
    let dir_release = tempfile::tempdir().unwrap();
    let release = dir_release.path().join("release-agent");
    let scene =
        Scene::new(Setup::new(Dialect::Github), &[("FAKE_CLAUDE_WAIT_FOR", release.to_str().unwrap())], "")
            .await;
    let mut daemon = scene.start(&[]).await;
    let id = scene.label(&daemon).await;
    let deadline = tokio::time::Instant::now() + LONG;
    while scene.agent_runs().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the agent never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.child.start_kill().unwrap();
    assert_eq!(daemon.child.wait().await.unwrap().signal(), Some(libc::SIGKILL));
    // The orphaned first agent is released too: it finds its output closed and dies
    // without touching the next attempt's checkout.
    std::fs::write(&release, "").unwrap();

    let _restarted = scene.start(&[]).await;
    scene.assert_done_once(id).await;
    assert_eq!(scene.agent_runs().len(), 2, "one killed run, one complete run");
}
