//! Faults on the real `forgehand` binary: `kill -9` in a burst of deliveries and at each
//! step of a task, then a restart; the task must still finish exactly once.
//!
//! The steps are hit deterministically: the stand-in agent waits for a file while the
//! daemon is killed ("during the agent"), and `FORGEHAND_FAILPOINT` (src/failpoint.rs)
//! aborts the daemon at the other steps.

use std::collections::HashMap;
use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::executor::{BRANCH, Setup, bare_remote, config, remote_file};
use crate::fake_forge::{Dialect, FakeForge};
use crate::harness::*;
use crate::process::start_via;

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
    run_via(cwd, &[], args, env).await
}

/// Like [`run`], with `wrapper` running the binary (see `process::start_via`).
pub async fn run_via(cwd: &Path, wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Running {
    let daemon = start_via(cwd, wrapper, args, env).await;
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
    let connection = db.connection_for_tests();
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
    agent_started(&scene).await;
    daemon.child.start_kill().unwrap();
    assert_eq!(daemon.child.wait().await.unwrap().signal(), Some(libc::SIGKILL));
    // The orphaned first agent is released too: it finds its output closed and dies
    // without touching the next attempt's checkout.
    std::fs::write(&release, "").unwrap();

    let _restarted = scene.start(&[]).await;
    scene.assert_done_once(id).await;
    assert_eq!(scene.agent_runs().len(), 2, "one killed run, one complete run");
}

/// Waits until the stand-in agent has started its first run.
async fn agent_started(scene: &Scene) {
    assert!(poll_until(LONG, || !scene.agent_runs().is_empty()).await, "the agent never started");
}

/// A field of `/proc/<pid>/status` in KiB, e.g. `VmHWM` (the peak resident set).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn healthy(daemon: &Running) {
    let answer = reqwest::get(format!("{}/healthz", daemon.base)).await.unwrap();
    assert_eq!(answer.status(), 200, "the daemon stopped answering");
}

/// Ends a scene whose task failed: the reason, on the row and in the one status comment.
async fn assert_failed(scene: &Scene, id: i64, reason: &str) -> String {
    let task = scene.wait_task(id, |t| !["queued", "running"].contains(&t.status.as_str())).await;
    assert_eq!(task.status, "failed", "{task:?}");
    let error = task.error.clone().unwrap();
    assert!(error.contains(reason), "{error}");
    scene.labels_settled("forgehand:failed").await;
    let comments = scene.bot_comments();
    assert_eq!(comments.len(), 1, "{comments:#?}");
    assert!(comments[0].starts_with("❌ forgehand could not finish: "), "{comments:#?}");
    assert!(comments[0].contains(reason), "{comments:#?}");
    assert!(scene.forge.pulls(REPO).is_empty());
    error
}

#[tokio::test]
async fn an_agent_printing_100_mb_keeps_the_daemon_small() {
    let scene =
        Scene::new(Setup::new(Dialect::Github).mode("flood"), &[("FAKE_CLAUDE_FLOOD_MB", "100")], "").await;
    let daemon = scene.start(&[]).await;
    let pid = daemon.child.id().unwrap();
    let before = proc_kib(pid, "VmHWM");
    let id = scene.label(&daemon).await;
    let task = scene.wait_task(id, |t| !["queued", "running"].contains(&t.status.as_str())).await;
    assert_eq!(task.status, "no_changes", "{task:?}");
    scene.labels_settled("forgehand:done").await;
    let peak = proc_kib(pid, "VmHWM");
    healthy(&daemon).await;
    eprintln!(
        "flood: daemon peak RSS {} MiB before the task, {} MiB after 100 MB of output",
        before / 1024,
        peak / 1024
    );
    assert!(peak < before + 64 * 1024, "peak RSS grew from {before} KiB to {peak} KiB");
    let transcript = scene.dir.path().join(format!("data/transcripts/task-{id}.jsonl"));
    assert!(std::fs::metadata(transcript).unwrap().len() <= 32 * 1024 * 1024, "the transcript is capped");
    assert_eq!(
        scene.bot_comments()[0].lines().next().unwrap(),
        format!("ℹ️ forgehand found nothing to change ([task #{id}](http://forgehand.test/tasks/{id})).")
    );
}

#[tokio::test]
async fn an_agent_printing_invalid_utf8_still_ends_its_task() {
    let scene = Scene::new(Setup::new(Dialect::Github).mode("garbage"), &[], "").await;
    let daemon = scene.start(&[]).await;
    let id = scene.label(&daemon).await;
    let task = scene.wait_task(id, |t| !["queued", "running"].contains(&t.status.as_str())).await;
    assert_eq!(
        (task.status.as_str(), task.result_text.as_deref()),
        ("no_changes", Some("Survived the garbage"))
    );
    scene.labels_settled("forgehand:done").await;
    assert!(scene.bot_comments()[0].contains("Survived the garbage"), "{:?}", scene.bot_comments());
    healthy(&daemon).await;
}

/// Puts a commit by someone else on `branch` of the bare remote.
fn push_foreign_commit(remote: &Path, branch: &str) -> git2::Oid {
    let repo = git2::Repository::open_bare(remote).unwrap();
    let main = repo.find_reference("refs/heads/main").unwrap().peel_to_commit().unwrap();
    let blob = repo.blob(b"someone else's work\n").unwrap();
    let mut tree = repo.treebuilder(Some(&main.tree().unwrap())).unwrap();
    tree.insert("OTHER.md", blob, 0o100644).unwrap();
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let sig = git2::Signature::now("someone", "someone@test").unwrap();
    let name = format!("refs/heads/{branch}");
    repo.commit(Some(&name), &sig, &sig, "someone else's commit", &tree, &[&main]).unwrap()
}

#[tokio::test]
async fn a_push_rejected_because_the_branch_moved_fails_clearly_and_keeps_the_other_work() {
    let release = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&release).unwrap();
    let scene =
        Scene::new(Setup::new(Dialect::Github), &[("FAKE_CLAUDE_WAIT_FOR", release.to_str().unwrap())], "")
            .await;
    let daemon = scene.start(&[]).await;
    let id = scene.label(&daemon).await;
    agent_started(&scene).await;
    let theirs = push_foreign_commit(&scene.remote, BRANCH);
    std::fs::write(&release, "").unwrap();

    assert_failed(&scene, id, "the remote refused the push").await;
    let repo = git2::Repository::open_bare(&scene.remote).unwrap();
    let head = repo.find_reference(&format!("refs/heads/{BRANCH}")).unwrap().target().unwrap();
    assert_eq!(head, theirs, "the other commit was not overwritten");
    assert_eq!(scene.agent_runs().len(), 1, "a refused push is not retried");
    healthy(&daemon).await;
}

#[tokio::test]
async fn a_remote_that_disappears_fails_the_task_clearly() {
    let release = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&release).unwrap();
    let scene =
        Scene::new(Setup::new(Dialect::Github), &[("FAKE_CLAUDE_WAIT_FOR", release.to_str().unwrap())], "")
            .await;
    let daemon = scene.start(&[]).await;
    let id = scene.label(&daemon).await;
    agent_started(&scene).await;
    std::fs::remove_dir_all(&scene.remote).unwrap();
    std::fs::write(&release, "").unwrap();

    // Whether a remote is gone for good or for a moment cannot be told: retried, then given up.
    let error = assert_failed(&scene, id, "(gave up after 3 attempts)").await;
    assert!(error.contains("remote.git") && error.contains("No such file or directory"), "{error}");
    assert_eq!(scene.agent_runs().len(), 1, "the later attempts stop at the fetch");
    healthy(&daemon).await;
}

/// Holds the database's write lock (SQLite) or an exclusive lock on the intake tables
/// (PostgreSQL) from another connection for `hold`, while `during` runs.
async fn with_database_locked<T>(config: &Path, hold: Duration, during: impl Future<Output = T>) -> T {
    use sea_orm::TransactionTrait;
    let db = open_db(config).await;
    let txn = db.connection_for_tests().begin().await.unwrap();
    let lock = if on_postgres() {
        "LOCK TABLE deliveries, tasks IN ACCESS EXCLUSIVE MODE"
    } else {
        // Any write takes SQLite's one write lock until the transaction ends.
        "UPDATE tasks SET updated_at = updated_at"
    };
    txn.execute_unprepared(lock).await.unwrap();
    let release = async {
        tokio::time::sleep(hold).await;
        txn.rollback().await.unwrap();
    };
    tokio::join!(during, release).0
}

#[tokio::test]
async fn a_locked_database_delays_or_refuses_deliveries_and_loses_no_task() {
    let release = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&release).unwrap();
    let scene =
        Scene::new(Setup::new(Dialect::Github), &[("FAKE_CLAUDE_WAIT_FOR", release.to_str().unwrap())], "")
            .await;
    let daemon = scene.start(&[]).await;
    let id = scene.label(&daemon).await;
    agent_started(&scene).await;
    let client = reqwest::Client::new();
    let other = |n: u64| {
        scene.forge.add_issue(REPO, n, &format!("Issue {n}"), "", &["forgehand"], "alice");
        Delivery::github("issues", edited("github/issues_labeled.json", "/issue/number", json!(n)))
    };

    // Shorter than the 10 s busy timeout: the delivery waits for the lock, then is recorded.
    let delivery = other(7);
    let (status, json) =
        with_database_locked(&scene.config, Duration::from_secs(3), post(&client, &daemon.base, &delivery))
            .await;
    assert_eq!(status, 202, "{json}");
    if !on_postgres() {
        // Longer: the delivery is refused with 503, so the forge shows it failed, and a
        // redelivery once the lock is gone is recorded.
        let delivery = other(8);
        let during = async {
            let answer = post(&client, &daemon.base, &delivery).await;
            healthy(&daemon).await;
            answer
        };
        let (status, json) = with_database_locked(&scene.config, Duration::from_secs(12), during).await;
        assert_eq!(status, 503, "{json}");
        assert!(json["error"].as_str().unwrap().contains("redeliver it"));
        assert_eq!(post(&client, &daemon.base, &delivery).await.0, 202);
    }
    std::fs::write(&release, "").unwrap();
    scene.assert_done_once(id).await;
    let db = open_db(&scene.config).await;
    let tasks = db.list_tasks(&forgehand::db::TaskFilter { limit: 100, ..Default::default() }).await.unwrap();
    let expected = if on_postgres() { 2 } else { 3 };
    assert_eq!(tasks.len(), expected, "one task per accepted delivery: {tasks:#?}");
    for task in tasks {
        let task = scene.wait_task(task.id, |t| t.status == "done").await;
        assert!(task.pr_number.is_some(), "{task:?}");
    }
    assert_eq!(scene.forge.pulls(REPO).len(), expected);
}

/// Free bytes on the file system holding `path`.
fn free_bytes(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs writes only into `stats`, which lives through the call.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(name.as_ptr(), &mut stats) }, 0, "statvfs {}", path.display());
    stats.f_bavail as u64 * stats.f_frsize as u64
}

#[tokio::test]
async fn a_full_workspace_disk_fails_the_task_clearly_and_the_daemon_lives_on() {
    let release = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&release).unwrap();
    let agent_env = [("FAKE_CLAUDE_WAIT_FOR", release.to_str().unwrap()), ("FAKE_CLAUDE_BLOB_KB", "512")];
    let scene = Scene::new(Setup::new(Dialect::Github), &agent_env, "").await;
    let workspaces = scene.dir.path().join("data/workspaces");
    std::fs::create_dir_all(&workspaces).unwrap();
    // A 4 MiB tmpfs over the workspaces, in a mount namespace of the daemon's own (a user
    // namespace makes this work without privileges where user namespaces are allowed).
    let wrapper = [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "--fork",
        "--kill-child",
        "sh",
        "-c",
        r#"mount -t tmpfs -o size=4m tmpfs "$0" && exec "$@""#,
        workspaces.to_str().unwrap(),
    ];
    let config = scene.config.to_str().unwrap().to_owned();
    let daemon = run_via(scene.dir.path(), &wrapper, &["--config", &config], &[]).await;
    let unshare = daemon.child.id().unwrap();
    let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).unwrap();
    let pid: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let id = scene.label(&daemon).await;
    agent_started(&scene).await;

    // The checkout is there; leave 768 KiB: the agent's 512 KiB file fits, its commit not.
    let inside = PathBuf::from(format!("/proc/{pid}/root{}", workspaces.display()));
    let filler = inside.join("filler");
    let free = free_bytes(&inside);
    assert!(free < 4 << 20, "the workspaces are not on the small tmpfs: {free} bytes free");
    std::fs::write(&filler, vec![0u8; (free - (768 << 10)) as usize]).unwrap();
    std::fs::write(&release, "").unwrap();

    let error = assert_failed(&scene, id, "(gave up after 3 attempts)").await;
    assert!(error.contains("No space left on device"), "{error}");
    assert_eq!(scene.agent_runs().len(), 3);
    healthy(&daemon).await;

    // Space again: the next trigger becomes a pull request.
    std::fs::remove_file(&filler).unwrap();
    let unlabel = Delivery::github("issues", fixture("github/issues_unlabeled.json"));
    assert_eq!(post(&reqwest::Client::new(), &daemon.base, &unlabel).await.0, 200);
    let again = scene.label(&daemon).await;
    assert_ne!(again, id);
    let task = scene.wait_task(again, |t| !["queued", "running"].contains(&t.status.as_str())).await;
    assert_eq!(task.status, "done", "{task:?}");
    assert_eq!(scene.forge.pulls(REPO).len(), 1);
    eprintln!("disk full: {error}");
}
