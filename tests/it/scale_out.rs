//! Several instances sharing one database: each task runs once, a dead instance's task is
//! taken over, a stalled one cannot push or post after losing its lease. On PostgreSQL
//! (FORGEHAND_TEST_POSTGRES) this is the deployment of docs/deployment.md; on SQLite the
//! instances share one file on one machine, which the same guarantees cover.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::executor::{BRANCH, Setup, bare_remote, config};
use crate::fake_forge::{Dialect, FakeForge};
use crate::harness::*;
use crate::process::{send, start};

const REPO: &str = "octo-org/hello-world";
const LONG: Duration = Duration::from_secs(120);

/// A fake GitHub with `issues` labelled issues, a bare remote, and a shared database.
struct Cluster {
    forge: FakeForge,
    database: String,
    _remote_dir: tempfile::TempDir,
    remote: PathBuf,
    log: PathBuf,
}

impl Cluster {
    async fn new(issues: u64) -> Cluster {
        let remote_dir = tempfile::tempdir().unwrap();
        let remote = remote_dir.path().join("remote.git");
        bare_remote(&remote);
        let forge = FakeForge::github().await;
        forge.add_repo(REPO, &format!("file://{}", remote.display()), "main");
        forge.set_permission(REPO, "alice", "write");
        for n in 1..=issues {
            forge.add_issue(REPO, n, &format!("Issue {n}"), "", &["forgehand"], "alice");
        }
        let database = shared_database(remote_dir.path()).await;
        let log = remote_dir.path().join("agent.log");
        Cluster { forge, database, _remote_dir: remote_dir, remote, log }
    }

    fn setup(&self) -> Setup {
        let mut setup = Setup::new(Dialect::Github);
        setup.database_url = Some(self.database.clone());
        setup
    }

    /// The config of one more instance, in its own directory.
    async fn instance_config(&self, dir: &tempfile::TempDir, setup: &Setup) -> String {
        config(dir, &self.forge, setup, &self.log, &dir.path().join("agent.pid")).await
    }

    async fn instance(&self, setup: &Setup) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let text = self.instance_config(&dir, setup).await;
        TestApp::spawn_config(dir, &text).await
    }

    /// How many agent runs worked on issue `n`.
    fn runs_for(&self, n: u64) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let needle = format!("Resolve issue #{n}:");
        text.lines().filter(|l| l.contains(&needle)).count()
    }
}

fn labeled(n: u64) -> Delivery {
    Delivery::github("issues", edited("github/issues_labeled.json", "/issue/number", json!(n)))
}

async fn wait_all_done(app: &TestApp, count: usize) -> Vec<forgehand::db::entities::tasks::Model> {
    wait_all_done_within(app, count, LONG).await
}

async fn wait_all_done_within(
    app: &TestApp,
    count: usize,
    within: Duration,
) -> Vec<forgehand::db::entities::tasks::Model> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let tasks = app.tasks().await;
        if tasks.len() == count && tasks.iter().all(|t| t.status == "done") {
            return tasks;
        }
        assert!(tokio::time::Instant::now() < deadline, "not all done: {}", summary(&tasks));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many tasks there are, and the ones not done (issue, status, error).
fn summary(tasks: &[forgehand::db::entities::tasks::Model]) -> String {
    let pending: Vec<_> = tasks
        .iter()
        .filter(|t| t.status != "done")
        .map(|t| (t.number, t.status.as_str(), t.error.as_deref().unwrap_or("")))
        .collect();
    format!("{} tasks; not done: {pending:?}", tasks.len())
}

#[tokio::test]
async fn three_instances_run_every_task_exactly_once() {
    const ISSUES: u64 = 300;
    let cluster = Cluster::new(ISSUES).await;
    let setup = cluster.setup();
    let instances =
        [cluster.instance(&setup).await, cluster.instance(&setup).await, cluster.instance(&setup).await];
    // 300 tasks delivered round-robin, each also redelivered (new id) through the next
    // instance, as a forge's "redeliver" would: one task per issue must come of it.
    let mut sends = Vec::new();
    for n in 1..=ISSUES {
        let first = n as usize % instances.len();
        sends.push(instances[first].deliver("github", labeled(n)));
        sends.push(instances[(first + 1) % instances.len()].deliver("github", labeled(n)));
    }
    // 64 in flight at once: a burst, but one the pools (8 connections per instance) can
    // serve within the 3 s intake deadline even on a loaded two-core machine.
    use futures_util::StreamExt;
    let answers: Vec<_> = futures_util::stream::iter(sends).buffer_unordered(64).collect().await;
    assert!(
        answers.iter().all(|a| a.status == 202 || a.status == 200),
        "{:?}",
        answers.iter().find(|a| a.status >= 300)
    );
    // Exactly one task per issue, whether a delivery or the startup sweep created it.
    let tasks = wait_all_done_within(&instances[0], ISSUES as usize, Duration::from_secs(600)).await;
    assert_eq!(cluster.forge.pulls(REPO).len(), ISSUES as usize, "one pull request per issue");
    for n in 1..=ISSUES {
        assert_eq!(cluster.runs_for(n), 1, "issue {n} ran once");
    }
    let mut owners = std::collections::HashSet::new();
    for task in &tasks {
        let (_, events) = instances[0].db.task(task.id).await.unwrap().unwrap();
        let starts: Vec<_> = events.iter().filter(|e| e.message.starts_with("attempt ")).collect();
        assert_eq!(starts.len(), 1, "task {} started once: {starts:?}", task.id);
        owners.insert(starts[0].message.rsplit(' ').next().unwrap().to_owned());
    }
    assert_eq!(owners.len(), 3, "the work was shared by all three: {owners:?}");
}

#[tokio::test]
async fn a_task_queued_on_one_instance_starts_at_once_on_another() {
    let cluster = Cluster::new(2).await;
    let mut intake_only = cluster.setup();
    intake_only.executor_enabled = false;
    let mut worker = cluster.setup();
    // On PostgreSQL the worker must be woken by LISTEN/NOTIFY: its poll is far too slow.
    worker.poll_secs = if on_postgres() { 120 } else { 1 };
    let front = cluster.instance(&intake_only).await;
    let back = cluster.instance(&worker).await;
    for n in 1..=2 {
        // After the first task the worker is surely idle, waiting: only a notification
        // wakes it in time for the second.
        let answer = front.deliver("github", labeled(n)).await;
        let id = answer.json["task_id"].as_i64().unwrap();
        let task = back.wait_task(id, Duration::from_secs(30), |t| t.status == "done").await;
        assert_eq!(task.attempt, 1);
    }
}

/// Writes a config for the real binary and returns its path.
async fn binary_config(cluster: &Cluster, dir: &tempfile::TempDir, setup: &Setup) -> PathBuf {
    let path = dir.path().join("forgehand.toml");
    std::fs::write(&path, cluster.instance_config(dir, setup).await).unwrap();
    path
}

async fn wait_agent_started(log: &Path) {
    let started = || std::fs::read_to_string(log).unwrap_or_default().contains("\"argv\"");
    assert!(poll_until(LONG, started).await, "the agent never started");
}

#[tokio::test]
async fn a_killed_instances_task_is_finished_by_another_after_its_lease() {
    let cluster = Cluster::new(1).await;
    let mut setup = cluster.setup();
    setup.hold_ms = 1500;
    setup.lease_secs = 4;
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(&cluster, &dir, &setup).await;
    let mut doomed = start(dir.path(), &["--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(send(&doomed.base, labeled(1)).await, 202);
    wait_agent_started(&cluster.log).await;
    doomed.child.start_kill().unwrap();
    doomed.child.wait().await.unwrap();

    let survivor = cluster.instance(&setup).await;
    let tasks = wait_all_done(&survivor, 1).await;
    assert_eq!(tasks[0].attempt, 2, "{:?}", tasks[0]);
    assert_eq!(cluster.forge.pulls(REPO).len(), 1);
    let bot = cluster.forge.bot_login();
    let comments: Vec<_> = cluster.forge.comments(REPO, 1).into_iter().filter(|c| c.user == bot).collect();
    assert_eq!(comments.len(), 1, "one status comment, edited by both: {comments:?}");
}

#[tokio::test]
async fn an_instance_that_lost_its_lease_neither_pushes_nor_posts() {
    let cluster = Cluster::new(1).await;
    let mut setup = cluster.setup();
    setup.hold_ms = 5000;
    setup.lease_secs = 4;
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(&cluster, &dir, &setup).await;
    let mut stalled = start(dir.path(), &["--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(send(&stalled.base, labeled(1)).await, 202);
    wait_agent_started(&cluster.log).await;
    let pid = stalled.child.id().unwrap().to_string();
    signal(&pid, "-STOP");

    // Another instance takes the task over once the lease expired, and finishes it.
    let taker = cluster.instance(&setup).await;
    wait_all_done(&taker, 1).await;
    // The taker records the end, then edits its comment and sets the labels: wait for the
    // labels, its last write, so that every later write is the stalled instance's.
    let settled = cluster
        .forge
        .wait_until(
            |state| {
                let labels = state.labels_of(REPO, 1);
                labels.iter().any(|l| l == "forgehand:done")
                    && !labels.iter().any(|l| l == "forgehand:working")
            },
            LONG,
        )
        .await;
    assert!(settled, "the taker never set its labels: {:?}", cluster.forge.labels(REPO, 1));
    let head = git2::Repository::open_bare(&cluster.remote)
        .unwrap()
        .find_reference(&format!("refs/heads/{BRANCH_1}"))
        .unwrap()
        .target()
        .unwrap();
    let comments_before = cluster.forge.comments(REPO, 1);
    let requests_before = cluster.forge.requests().len();

    // The stalled instance wakes up with its agent's work done; it must notice and stop.
    signal(&pid, "-CONT");
    let noticed = tokio::time::timeout(LONG, async {
        while let Ok(Some(line)) = stalled.stdout.next_line().await {
            if line.contains("taken over") || line.contains("took this task over") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(noticed, "the stalled instance never noticed it lost the task");
    let after = git2::Repository::open_bare(&cluster.remote)
        .unwrap()
        .find_reference(&format!("refs/heads/{BRANCH_1}"))
        .unwrap()
        .target()
        .unwrap();
    assert_eq!(after, head, "the stalled instance pushed");
    assert_eq!(cluster.forge.comments(REPO, 1), comments_before, "the stalled instance posted");
    let writes: Vec<_> = cluster.forge.requests()[requests_before..]
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "the stalled instance wrote to the forge: {writes:?}");
    assert_eq!(cluster.forge.pulls(REPO).len(), 1);
}

const BRANCH_1: &str = "forgehand/issue-1-issue-1";

fn signal(pid: &str, which: &str) {
    assert!(std::process::Command::new("kill").args([which, pid]).status().unwrap().success());
}

#[test]
fn the_branch_of_issue_1_is_what_the_tests_expect() {
    assert_eq!(forgehand::executor::workspace::branch_name("forgehand/", 1.into(), "Issue 1"), BRANCH_1);
    assert_ne!(BRANCH, BRANCH_1);
}

/// PostgreSQL goes down in the middle of a burst and comes back: every delivery answered
/// 2xx is recorded with its task, the others were answered 503, and intake recovers
/// without a restart.
#[tokio::test]
async fn a_postgres_restart_mid_burst_loses_no_accepted_delivery() {
    use sea_orm::ConnectionTrait;
    let pg =
        std::sync::Arc::new(tokio::task::spawn_blocking(crate::pg_server::PgServer::start).await.unwrap());
    let admin = sea_orm::Database::connect(format!("{}/postgres", pg.url())).await.unwrap();
    admin.execute_unprepared("CREATE DATABASE outage").await.unwrap();
    admin.close().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = format!("[database]\nurl = \"{}/outage\"\n", pg.url());
    let text = config_text_on(&dir.path().join("data"), &database, "");
    let app = std::sync::Arc::new(TestApp::spawn_config(dir, &text).await);

    let burst = |from: u64, count: u64| {
        let app = app.clone();
        async move {
            let sends = (from..from + count).map(|n| {
                let app = app.clone();
                async move {
                    let delivery = labeled(n);
                    let id = delivery.id();
                    (id, app.deliver("github", delivery).await)
                }
            });
            futures_util::future::join_all(sends).await
        }
    };
    // The server stops while a burst is in flight; more arrive while it is down; then it
    // starts again and a last burst arrives.
    let in_flight = tokio::spawn(burst(1, 150));
    let stopped = tokio::task::spawn_blocking({
        let pg = pg.clone();
        move || pg.down()
    });
    let mut answers = in_flight.await.unwrap();
    stopped.await.unwrap();
    let during = burst(500, 20).await;
    assert!(
        during.iter().all(|(_, a)| a.status == 503),
        "{:?}",
        during.iter().map(|(_, a)| a.status).collect::<Vec<_>>()
    );
    tokio::task::spawn_blocking({
        let pg = pg.clone();
        move || pg.up()
    })
    .await
    .unwrap();
    answers.extend(during);
    answers.extend(burst(1000, 50).await);

    let accepted: Vec<&String> = answers.iter().filter(|(_, a)| a.status == 202).map(|(id, _)| id).collect();
    for (id, answer) in &answers {
        assert!(
            answer.status == 202 || (answer.status == 503 && answer.error().contains("redeliver it")),
            "{id}: {} {}",
            answer.status,
            answer.text
        );
    }
    assert!(answers[170..].iter().all(|(_, a)| a.status == 202), "intake recovered without a restart");
    let recorded: std::collections::HashMap<String, Option<i64>> =
        app.deliveries().await.into_iter().map(|d| (d.delivery_id, d.task_id)).collect();
    for id in &accepted {
        assert!(
            matches!(recorded.get(*id), Some(Some(_))),
            "delivery {id} was answered 202 but is not recorded with its task"
        );
    }
    assert_eq!(
        app.tasks().await.len(),
        recorded.len(),
        "no delivery without its task, no task without its delivery"
    );
}

/// A task run by one instance shows its transcript on another instance's dashboard.
#[tokio::test]
async fn every_instance_shows_the_transcript_of_any_task() {
    let cluster = Cluster::new(1).await;
    let mut intake_only = cluster.setup();
    intake_only.executor_enabled = false;
    let front = cluster.instance(&intake_only).await;
    let back = cluster.instance(&cluster.setup()).await;
    let id = front.deliver("github", labeled(1)).await.json["task_id"].as_i64().unwrap();
    back.wait_task(id, LONG, |t| t.status == "done").await;
    let browser = crate::dashboard::Browser::login(&front).await;
    let (status, page) = browser.get(&format!("/tasks/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("I will record the request in FORGEHAND_DEMO.md."), "{page}");
}

/// The agent of `three_instances_never_pass_a_profile_or_repository_limit`: marks its start
/// and end (profile, worktree, nanoseconds) in `$MARK_LOG`, one short appended line each.
const MARKING_AGENT: &str = r#"#!/bin/sh
cat >/dev/null
echo "start $PROFILE_MARK $(pwd) $(date +%s%N)" >> "$MARK_LOG"
sleep 0.3
echo "end $PROFILE_MARK $(pwd) $(date +%s%N)" >> "$MARK_LOG"
"#;

/// The most runs in progress at once per key, from `(key, start, end)` intervals.
fn most_at_once(runs: &[(String, u128, u128)]) -> std::collections::BTreeMap<String, usize> {
    let mut events: Vec<(u128, i32, &str)> = Vec::new();
    for (key, start, end) in runs {
        events.push((*start, 1, key));
        events.push((*end, -1, key));
    }
    // At equal times an end comes first: the next run starts only after a run ended.
    events.sort();
    let (mut now, mut most) = (std::collections::BTreeMap::new(), std::collections::BTreeMap::new());
    for (_, change, key) in events {
        let n: &mut i64 = now.entry(key.to_owned()).or_default();
        *n += i64::from(change);
        let best: &mut usize = most.entry(key.to_owned()).or_default();
        *best = (*best).max(*n as usize);
    }
    most
}

/// Three instances on one database, 36 tasks over three repositories and three profiles,
/// each instance able to run four at once: as the agents saw it, no profile ever ran more
/// than its `max_concurrent` and no repository more than its `max_running`, while tasks did
/// run side by side; and a half-open breaker lets exactly one trial run, alone.
#[tokio::test]
async fn three_instances_never_pass_a_profile_or_repository_limit() {
    let cluster = Cluster::new(0).await;
    let dir = cluster._remote_dir.path();
    let (script, marks) = (dir.join("marking-agent.sh"), dir.join("marks.log"));
    std::fs::write(&script, MARKING_AGENT).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let repos = [
        (REPO, cluster.remote.clone()),
        ("octo-org/second", dir.join("second.git")),
        ("octo-org/third", dir.join("third.git")),
    ];
    for (repo, remote) in &repos[1..] {
        bare_remote(remote);
        cluster.forge.add_repo(repo, &format!("file://{}", remote.display()), "main");
        cluster.forge.set_permission(repo, "alice", "write");
    }
    let profile = |name: &str, limit: &str| {
        format!(
            "[[agents]]\nname = \"{name}\"\nkind = \"command\"\ncommand = \"{}\"\n{limit}env = {{ PROFILE_MARK = \"{name}\", MARK_LOG = \"{}\" }}\n",
            script.display(),
            marks.display()
        )
    };
    let mut setup = cluster.setup();
    setup.max_concurrent = 4;
    setup.extra = [
        profile("default", ""),
        profile("solo", "max_concurrent = 1\n"),
        profile("pair", "max_concurrent = 2\n"),
        "[[repos]]\nname = \"octo-org/hello-world\"\nmax_running = 2\n".into(),
        "[[repos]]\nname = \"octo-org/second\"\nmax_running = 1\n".into(),
    ]
    .concat();
    let instances =
        [cluster.instance(&setup).await, cluster.instance(&setup).await, cluster.instance(&setup).await];
    let profiles = ["solo", "pair", "default"];
    let mut ids = std::collections::HashMap::new();
    for n in 1..=12u64 {
        for (r, (repo, remote)) in repos.iter().enumerate() {
            cluster.forge.add_issue(repo, n, &format!("Issue {n}"), "", &["forgehand"], "alice");
            let request = forgehand::trigger::TaskRequest {
                clone_url: format!("file://{}", remote.display()),
                ..crate::profiles::queued(repo, n as u32, Some(profiles[n as usize % 3]), 0)
            };
            let request = forgehand::trigger::TaskRequest {
                routing: forgehand::trigger::Routing {
                    source: Some(forgehand::trigger::RoutedBy::Request),
                    ..request.routing
                },
                ..request
            };
            let id = instances[(n as usize + r) % 3]
                .db
                .queue_task("github", &request, "queued")
                .await
                .unwrap()
                .unwrap();
            ids.insert(id, repo.to_string());
        }
    }
    let tasks = all_ended(&instances[0], 36).await;
    assert_eq!(tasks.len(), 36);
    let runs = marked_runs(&marks, &ids);
    assert_eq!(runs.len(), 36, "every task's agent ran once");
    let by = |key: fn(&Run) -> String| {
        most_at_once(&runs.iter().map(|run| (key(run), run.2, run.3)).collect::<Vec<_>>())
    };
    let (by_profile, by_repo) = (by(|run| run.0.clone()), by(|run| run.1.clone()));
    let everything = by(|_| "all".to_owned());
    println!("most at once: by profile {by_profile:?}, by repository {by_repo:?}, in all {everything:?}");
    assert_eq!(by_profile["solo"], 1, "{by_profile:?}");
    assert!(by_profile["pair"] <= 2, "{by_profile:?}");
    assert!(by_repo["octo-org/hello-world"] <= 2, "{by_repo:?}");
    assert_eq!(by_repo["octo-org/second"], 1, "{by_repo:?}");
    assert!(everything["all"] >= 3, "the instances ran tasks side by side: {everything:?}");

    // The breaker of `pair` (no fallback) opens; four `pair` tasks wait. When its cool-down
    // is over, exactly one of them runs, alone, as the trial, whichever instance claims;
    // its success closes the breaker and the others follow, two at a time.
    use forgehand::db::entities::breakers;
    use sea_orm::{EntityTrait, sea_query::Expr};
    let rules = forgehand::config::BreakerSettings { failures: 1, window_secs: 60, cooldown_secs: 600 };
    let opened = instances[0].db.record_breaker_run("pair", Some("HTTP 529"), &rules).await.unwrap().unwrap();
    assert_eq!(opened.to, forgehand::db::BreakerState::Open);
    let since = runs.iter().map(|run| run.3).max().unwrap();
    let mut trial_ids = Vec::new();
    for n in 13..=16u64 {
        cluster.forge.add_issue(REPO, n, &format!("Issue {n}"), "", &["forgehand"], "alice");
        let request = forgehand::trigger::TaskRequest {
            clone_url: format!("file://{}", cluster.remote.display()),
            ..crate::profiles::queued(REPO, n as u32, Some("pair"), 0)
        };
        let id =
            instances[n as usize % 3].db.queue_task("github", &request, "queued").await.unwrap().unwrap();
        ids.insert(id, REPO.to_owned());
        trial_ids.push(id);
    }
    breakers::Entity::update_many()
        .col_expr(
            breakers::Column::OpenedAt,
            Expr::value(Some(chrono::Utc::now() - chrono::Duration::hours(2))),
        )
        .exec(instances[0].db.connection_for_tests())
        .await
        .unwrap();
    all_ended(&instances[0], 40).await;
    let mut after: Vec<Run> = marked_runs(&marks, &ids).into_iter().filter(|run| run.2 > since).collect();
    after.sort_by_key(|run| run.2);
    assert_eq!(after.len(), 4, "{after:?}");
    let trial = &after[0];
    assert!(after[1..].iter().all(|run| run.2 >= trial.3), "a second task ran during the trial: {after:?}");
    let mut trials = 0;
    for id in trial_ids {
        let (_, events) = instances[1].db.task(id).await.unwrap().unwrap();
        trials += events
            .iter()
            .filter(|e| e.message.contains("circuit breaker of profile \"pair\" is half-open"))
            .count();
    }
    assert_eq!(trials, 1, "one trial run");
    let row = instances[2].db.breakers().await.unwrap().into_iter().find(|b| b.profile == "pair").unwrap();
    assert_eq!(forgehand::db::BreakerState::parse(&row.state), forgehand::db::BreakerState::Closed);
}

/// One agent run as the marks show it: profile, repository, start and end (ns).
type Run = (String, String, u128, u128);

/// The runs in the marks log; `repos`: each task id's repository.
fn marked_runs(marks: &Path, repos: &std::collections::HashMap<i64, String>) -> Vec<Run> {
    let text = std::fs::read_to_string(marks).unwrap();
    let (mut starts, mut runs) = (std::collections::HashMap::new(), Vec::new());
    for line in text.lines() {
        let [what, profile, cwd, at] = line.split(' ').collect::<Vec<_>>()[..] else { panic!("{line}") };
        let id: i64 =
            cwd.split("task-").nth(1).and_then(|rest| rest.split('/').next()).unwrap().parse().unwrap();
        let at: u128 = at.parse().unwrap();
        if what == "start" {
            assert!(starts.insert(id, (profile.to_owned(), at)).is_none(), "task {id} ran twice at once");
        } else {
            let (profile, start) = starts.remove(&id).unwrap();
            runs.push((profile, repos[&id].clone(), start, at));
        }
    }
    runs
}

/// Waits until `count` tasks exist and all ended.
async fn all_ended(app: &TestApp, count: usize) -> Vec<forgehand::db::entities::tasks::Model> {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let tasks = app.tasks().await;
        if tasks.len() == count && tasks.iter().all(|t| ["done", "no_changes"].contains(&t.status.as_str())) {
            return tasks;
        }
        assert!(tokio::time::Instant::now() < deadline, "not all ended: {}", summary(&tasks));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
