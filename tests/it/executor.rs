//! The executor end to end: signed webhook → task → stand-in agent in a real checkout →
//! push to a real bare remote → pull request and status comment on the fake forge.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::fake_forge::{Dialect, FakeForge};
use crate::harness::*;

const LONG: Duration = Duration::from_secs(60);
const AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agent/fake-claude");

/// How a test wants the executor and the stand-in agent.
pub struct Setup {
    dialect: Dialect,
    mode: &'static str,
    pub timeout_secs: u64,
    pub max_concurrent: usize,
    pub hold_ms: u64,
    /// A database shared with other instances (default: a fresh one).
    pub database_url: Option<String>,
    pub poll_secs: u64,
    pub lease_secs: u64,
    pub executor_enabled: bool,
    /// More configuration, appended to the file.
    pub extra: String,
    /// More keys of `[git]`.
    pub git_extra: String,
    /// More entries of the agent's environment table: `, KEY = 'value'` each.
    pub agent_env: String,
    /// Changes the bare remote before the forge serves it.
    pub seed: Option<fn(&Path)>,
    /// GitHub: forgehand connects as GitHub App 4242 (`forgehand-app[bot]`), installed on
    /// the repository as installation 77.
    pub app: bool,
    /// The remote is served over smart HTTP and demands credentials (`World::git_http`).
    pub git_http: bool,
}

impl Setup {
    pub fn new(dialect: Dialect) -> Setup {
        Setup {
            dialect,
            mode: "edit",
            timeout_secs: 60,
            max_concurrent: 2,
            hold_ms: 0,
            database_url: None,
            poll_secs: 1,
            // Long enough that a loaded machine (SQLite lock waits, starved timers) never
            // loses a lease by accident; the tests about expiry set their own.
            lease_secs: 15,
            executor_enabled: true,
            extra: String::new(),
            git_extra: String::new(),
            agent_env: String::new(),
            seed: None,
            app: false,
            git_http: false,
        }
    }

    pub fn mode(mut self, mode: &'static str) -> Setup {
        self.mode = mode;
        self
    }
}

/// A forgehand with its executor, a fake forge, and a bare remote holding `main`.
pub struct World {
    pub app: TestApp,
    pub forge: FakeForge,
    pub remote: PathBuf,
    pub repo: &'static str,
    pub log: PathBuf,
    pidfile: PathBuf,
    setup_dialect: Dialect,
    /// The HTTP server in front of the remote, when `Setup::git_http`.
    pub git_http: Option<crate::git_http::GitHttp>,
}

impl World {
    pub async fn start(setup: Setup) -> World {
        let dir = tempfile::tempdir().unwrap();
        let forge = match setup.dialect {
            Dialect::Github => FakeForge::github().await,
            Dialect::Gitea => FakeForge::gitea().await,
        };
        let repo = match setup.dialect {
            Dialect::Github => "octo-org/hello-world",
            Dialect::Gitea => "acme/widgets",
        };
        if setup.app {
            forge.enable_app(4242, "forgehand-app", &[(repo, 77)]);
        }
        let remote = dir.path().join("remote.git");
        bare_remote(&remote);
        if let Some(seed) = setup.seed {
            seed(&remote);
        }
        let git_http = match setup.git_http {
            true => Some(crate::git_http::GitHttp::start(dir.path().to_owned()).await),
            false => None,
        };
        forge.add_repo(repo, &format!("file://{}", remote.display()), "main");
        if let Some(server) = &git_http {
            forge.serve_clone_url(repo, &format!("{}/remote.git", server.url));
        }
        forge.add_issue(
            repo,
            42,
            "Add a --verbose flag to the CLI",
            "The CLI needs --verbose.",
            &["forgehand"],
            "alice",
        );
        forge.set_permission(repo, "alice", "write");
        // Gitea shows a collaborator's permission only to repository admins.
        forge.set_permission(repo, &forge.bot_login(), "admin");
        let (log, pidfile) = (dir.path().join("agent.log"), dir.path().join("agent.pid"));
        let config = config(&dir, &forge, &setup, &log, &pidfile).await;
        let app = TestApp::spawn_config(dir, &config).await;
        World { app, forge, remote, repo, log, pidfile, setup_dialect: setup.dialect, git_http }
    }

    /// The label webhook for issue 42, as the forge sends it.
    fn labeled(&self) -> (String, Delivery) {
        match self.setup_dialect {
            Dialect::Github => {
                ("github".into(), Delivery::github("issues", fixture("github/issues_labeled.json")))
            }
            Dialect::Gitea => (
                "gitea".into(),
                Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_updated.json")),
            ),
        }
    }

    /// The task of the labelled issue: the delivery's, or the one the startup sweep
    /// (which reads the labelled issues of every installed repository) queued first.
    pub async fn deliver_label(&self) -> i64 {
        let (forge, delivery) = self.labeled();
        let answer = self.app.deliver(&forge, delivery).await;
        let swept = answer.status == 200 && answer.outcome() == "coalesced";
        assert!(answer.status == 202 || swept, "{}", answer.text);
        answer.json["task_id"].as_i64().unwrap()
    }

    pub async fn deliver(&self, delivery: Delivery) -> crate::harness::Answer {
        let forge = if self.setup_dialect == Dialect::Github { "github" } else { "gitea" };
        self.app.deliver(forge, delivery).await
    }

    /// Waits until task `id` ended and the forge shows it: forgehand records the end first,
    /// then edits the status comment, then sets the labels.
    pub async fn finished(&self, id: i64) -> forgehand::db::entities::tasks::Model {
        let task =
            self.app.wait_task(id, LONG, |t| !["queued", "running"].contains(&t.status.as_str())).await;
        let wanted = match task.status.as_str() {
            "done" | "no_changes" => Some("forgehand:done"),
            "failed" => Some("forgehand:failed"),
            _ => None,
        };
        let (repo, number) = (self.repo, task.number as u64);
        let settled = self
            .forge
            .wait_until(
                |state| {
                    let labels = state.labels_of(repo, number);
                    !labels.iter().any(|l| l == "forgehand:working")
                        && wanted.is_none_or(|w| labels.iter().any(|l| l == w))
                },
                LONG,
            )
            .await;
        assert!(settled, "the labels of #{number} never settled: {:?}", self.forge.labels(repo, number));
        task
    }

    pub fn bot_comments(&self, number: u64) -> Vec<String> {
        let bot = self.forge.bot_login();
        self.forge.comments(self.repo, number).into_iter().filter(|c| c.user == bot).map(|c| c.body).collect()
    }

    /// One entry per agent run, in start order.
    pub fn agent_runs(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e.get("argv").is_some())
            .collect()
    }
}

pub async fn config(
    dir: &tempfile::TempDir,
    forge: &FakeForge,
    setup: &Setup,
    log: &Path,
    pidfile: &Path,
) -> String {
    let name = match setup.dialect {
        Dialect::Github => "github",
        Dialect::Gitea => "gitea",
    };
    format!(
        r#"
data_dir = "{data}"
{database}
[server]
listen = "127.0.0.1:0"
public_url = "http://forgehand.test"
[auth]
admin_token = "{ADMIN_TOKEN}"
[executor]
enabled = {enabled}
max_concurrent = {max_concurrent}
timeout_secs = {timeout}
lease_secs = {lease}
poll_interval_secs = {poll}
retry_base_secs = 1
shutdown_grace_secs = 1
[agent]
command = "{AGENT}"
env = {{ FAKE_CLAUDE_MODE = "{mode}", FAKE_CLAUDE_LOG = "{log}", FAKE_CLAUDE_PIDFILE = "{pidfile}", FAKE_CLAUDE_HOLD_MS = "{hold}"{agent_env} }}
[git]
author_name = "forgehand-test"
author_email = "forgehand@test"
{git_extra}
{forge}
{extra}"#,
        data = dir.path().join("data").display(),
        database = match &setup.database_url {
            Some(url) => format!("[database]\nurl = \"{url}\"\n"),
            None => database_section().await,
        },
        enabled = setup.executor_enabled,
        lease = setup.lease_secs,
        poll = setup.poll_secs,
        max_concurrent = setup.max_concurrent,
        timeout = setup.timeout_secs,
        mode = setup.mode,
        log = log.display(),
        pidfile = pidfile.display(),
        hold = setup.hold_ms,
        forge = forge.config_toml(name),
        extra = setup.extra,
        git_extra = setup.git_extra,
        agent_env = setup.agent_env,
    )
}

/// A bare repository with one commit on `main`.
pub fn bare_remote(path: &Path) {
    let repo = git2::Repository::init_bare(path).unwrap();
    let blob = repo.blob(b"# hello\n").unwrap();
    let mut tree = repo.treebuilder(None).unwrap();
    tree.insert("README.md", blob, 0o100644).unwrap();
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let sig = git2::Signature::now("upstream", "upstream@test").unwrap();
    repo.commit(Some("refs/heads/main"), &sig, &sig, "initial", &tree, &[]).unwrap();
    repo.set_head("refs/heads/main").unwrap();
}

/// The file `name` on `branch` of the bare remote, and the branch head's author.
pub fn remote_file(remote: &Path, branch: &str, name: &str) -> Option<(String, String)> {
    let repo = git2::Repository::open_bare(remote).unwrap();
    let commit = repo.find_reference(&format!("refs/heads/{branch}")).ok()?.peel_to_commit().ok()?;
    let entry = commit.tree().ok()?.get_path(Path::new(name)).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    Some((
        String::from_utf8_lossy(blob.content()).into_owned(),
        commit.author().name().unwrap_or("").to_owned(),
    ))
}

pub const BRANCH: &str = "forgehand/issue-42-add-a-verbose-flag-to-the-cli";

async fn happy_path(dialect: Dialect) {
    let world = World::start(Setup::new(dialect)).await;
    let id = world.deliver_label().await;
    let task = world.finished(id).await;
    assert_eq!(task.status, "done", "{task:?}");
    assert_eq!((task.turns, task.cost_usd), (Some(3), Some(0.0123)));
    assert_eq!(task.branch.as_deref(), Some(BRANCH));

    let pulls = world.forge.pulls(world.repo);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let pull = &pulls[0];
    assert_eq!((pull.head.as_str(), pull.base.as_str()), (BRANCH, "main"));
    assert_eq!(pull.title, "Add a --verbose flag to the CLI");
    assert!(pull.body.contains("Closes #42"), "{}", pull.body);
    assert!(pull.body.contains("3 turns · $0.0123"), "{}", pull.body);
    assert!(pull.body.contains(&format!("[task #{id}](http://forgehand.test/tasks/{id})")), "{}", pull.body);
    assert_eq!(task.pr_url.as_deref(), Some(pull.html_url.as_str()));

    let (content, author) =
        remote_file(&world.remote, BRANCH, "FORGEHAND_DEMO.md").expect("the branch was pushed");
    assert!(content.starts_with("You are working in a git checkout of the repository"), "{content}");
    assert_eq!(author, "forgehand-test");

    let comments = world.bot_comments(42);
    assert_eq!(comments.len(), 1, "one status comment, edited in place: {comments:?}");
    assert!(comments[0].contains(&format!("opened pull request [#{}]", pull.number)), "{}", comments[0]);
    let labels = world.forge.labels(world.repo, 42);
    assert!(
        labels.contains(&"forgehand:done".to_owned()) && !labels.contains(&"forgehand:working".to_owned()),
        "{labels:?}"
    );

    // The agent saw no token, and no forgehand variable.
    let runs = world.agent_runs();
    assert_eq!(runs.len(), 1);
    let names: Vec<&str> =
        runs[0]["env_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(names.iter().all(|n| !n.starts_with("FORGEHAND") && !n.contains("TOKEN")), "{names:?}");
    assert!(runs[0]["argv"].as_array().unwrap().contains(&json!("--max-turns")));
    assert!(world.forge.unexpected().is_empty(), "{:?}", world.forge.unexpected());
}

#[tokio::test]
async fn a_labelled_github_issue_becomes_a_pull_request() {
    happy_path(Dialect::Github).await;
}

#[tokio::test]
async fn a_labelled_gitea_issue_becomes_a_pull_request() {
    happy_path(Dialect::Gitea).await;
}

#[tokio::test]
async fn nothing_to_change_opens_no_pull_request() {
    let world = World::start(Setup::new(Dialect::Github).mode("nothing")).await;
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!(task.status, "no_changes");
    assert!(world.forge.pulls(world.repo).is_empty());
    let comments = world.bot_comments(42);
    assert!(
        comments[0].contains("found nothing to change") && comments[0].contains("> Nothing to change"),
        "{comments:?}"
    );
    assert!(world.forge.labels(world.repo, 42).contains(&"forgehand:done".to_owned()));
}

#[tokio::test]
async fn a_failing_agent_fails_the_task_and_says_so() {
    let world = World::start(Setup::new(Dialect::Gitea).mode("fail")).await;
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!(task.status, "failed");
    assert_eq!(task.attempt, 1, "a reported failure is not retried");
    let comments = world.bot_comments(42);
    assert!(
        comments[0].starts_with("❌ forgehand could not finish: the agent reported an error"),
        "{comments:?}"
    );
    let labels = world.forge.labels(world.repo, 42);
    assert!(
        labels.contains(&"forgehand:failed".to_owned()) && !labels.contains(&"forgehand:working".to_owned())
    );
    assert!(world.forge.pulls(world.repo).is_empty());
}

#[tokio::test]
async fn a_hanging_agent_is_stopped_at_the_timeout_with_its_children() {
    let mut setup = Setup::new(Dialect::Github).mode("hang");
    setup.timeout_secs = 1;
    let world = World::start(setup).await;
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!(task.status, "failed");
    assert!(task.error.as_deref().unwrap().contains("did not finish in time"), "{task:?}");
    assert_child_gone(&world.pidfile);
    assert!(world.bot_comments(42)[0].contains("did not finish in time"));
}

fn assert_child_gone(pidfile: &Path) {
    let pid: i32 = std::fs::read_to_string(pidfile).unwrap().trim().parse().unwrap();
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.split_whitespace().nth(2).is_none_or(|state| state != "Z"))
        .unwrap_or(false);
    assert!(!alive, "the agent's child {pid} outlived it");
}

#[tokio::test]
async fn removing_the_label_stops_a_running_agent() {
    let world = World::start(Setup::new(Dialect::Github).mode("hang")).await;
    let id = world.deliver_label().await;
    world.app.wait_task(id, LONG, |t| t.status == "running").await;
    wait_for_file(&world.pidfile).await;
    let removed = world.deliver(Delivery::github("issues", fixture("github/issues_unlabeled.json"))).await;
    assert_eq!(removed.outcome(), "cancelled_task", "{}", removed.text);
    let task = world.finished(id).await;
    assert_eq!(task.status, "cancelled", "{task:?}");
    assert_child_gone(&world.pidfile);
    assert!(world.bot_comments(42)[0].starts_with("⏹️ forgehand stopped"), "{:?}", world.bot_comments(42));
    assert!(!world.forge.labels(world.repo, 42).contains(&"forgehand:working".to_owned()));
}

async fn wait_for_file(path: &Path) {
    assert!(poll_until(LONG, || path.exists()).await, "{} never appeared", path.display());
}

#[tokio::test]
async fn a_failed_pull_request_call_is_retried_without_a_second_run_or_pull() {
    let world = World::start(Setup::new(Dialect::Github)).await;
    // The forge fails right after the push, as if forgehand had crashed between the two.
    let pulls_path = format!("/repos/{}/pulls", world.repo);
    world.forge.fail_next("POST", &pulls_path, 502, &[], 1);
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!((task.status.as_str(), task.attempt), ("done", 2), "{task:?}");
    assert_eq!(world.forge.pulls(world.repo).len(), 1);
    assert_eq!(world.agent_runs().len(), 1, "the second attempt reused the pushed branch");
}

#[tokio::test]
async fn a_read_only_users_command_is_rejected() {
    let world = World::start(Setup::new(Dialect::Github)).await;
    world.forge.set_permission(world.repo, "bob", "read");
    let mut comment: serde_json::Value =
        serde_json::from_slice(&fixture("github/issue_comment_issue.json")).unwrap();
    comment["sender"]["login"] = json!("bob");
    comment["comment"]["user"]["login"] = json!("bob");
    let answer =
        world.deliver(Delivery::github("issue_comment", serde_json::to_vec(&comment).unwrap())).await;
    let task = world.finished(answer.json["task_id"].as_i64().unwrap()).await;
    assert_eq!(task.status, "rejected");
    assert!(task.error.as_deref().unwrap().contains("@bob has read permission"), "{task:?}");
    assert!(world.agent_runs().is_empty(), "the agent never ran");
    // The comment comes after the task's end is recorded.
    let (repo, bot) = (world.repo, world.forge.bot_login());
    let said = world.forge.wait_until(|s| s.comments_of(repo, 42).iter().any(|c| c.user == bot), LONG).await;
    assert!(said, "no comment on the issue");
    assert!(world.bot_comments(42)[0].starts_with("🚫 forgehand did not start"));
    assert_nothing_written_before_the_permission_check(&world.forge);
}

/// The permission is read before forgehand says anything on the issue: no "working"
/// comment or label for a task that does not start.
fn assert_nothing_written_before_the_permission_check(forge: &crate::fake_forge::FakeForge) {
    let requests = forge.requests();
    let asked =
        requests.iter().position(|r| r.path.contains("/permission")).expect("the permission was read");
    let writes: Vec<_> = requests[..asked].iter().filter(|r| r.method != "GET").map(|r| &r.path).collect();
    assert!(writes.is_empty(), "written before the permission check: {writes:?}");
    let working =
        requests.iter().any(|r| r.path.ends_with("/labels") && r.body.to_string().contains(":working"));
    assert!(!working, "the working label was set on a task that did not start");
}

#[tokio::test]
async fn a_review_on_forgehands_pull_request_pushes_to_it() {
    let world = World::start(Setup::new(Dialect::Github)).await;
    let first = world.finished(world.deliver_label().await).await;
    assert_eq!(first.status, "done");
    let pull = world.forge.pulls(world.repo).remove(0);
    let head_before = remote_head(&world.remote, BRANCH);

    let mut review: serde_json::Value =
        serde_json::from_slice(&fixture("github/pull_request_review.json")).unwrap();
    review["pull_request"]["number"] = json!(pull.number);
    review["pull_request"]["head"]["ref"] = json!(BRANCH);
    let answer =
        world.deliver(Delivery::github("pull_request_review", serde_json::to_vec(&review).unwrap())).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let follow_up = world.finished(answer.json["task_id"].as_i64().unwrap()).await;
    assert_eq!(follow_up.status, "done", "{follow_up:?}");

    assert_eq!(world.forge.pulls(world.repo).len(), 1, "still one pull request");
    let repo = git2::Repository::open_bare(&world.remote).unwrap();
    let head_after = remote_head(&world.remote, BRANCH);
    assert!(repo.graph_descendant_of(head_after, head_before).unwrap(), "new commits on top of the old ones");
    let runs = world.agent_runs();
    assert_eq!(runs[1]["resume"], runs_session(&first), "the follow-up resumed the first session");
    let answered = world.bot_comments(pull.number);
    assert!(answered.iter().any(|c| c.contains("pushed the requested changes")), "{answered:?}");
}

fn runs_session(task: &forgehand::db::entities::tasks::Model) -> serde_json::Value {
    json!(task.agent_session_id.clone().unwrap())
}

fn remote_head(remote: &Path, branch: &str) -> git2::Oid {
    let repo = git2::Repository::open_bare(remote).unwrap();
    repo.find_reference(&format!("refs/heads/{branch}")).unwrap().target().unwrap()
}

#[tokio::test]
async fn never_more_agents_than_max_concurrent() {
    let mut setup = Setup::new(Dialect::Github);
    setup.hold_ms = 700;
    let world = World::start(setup).await;
    // Only issues 1-6 here: a labelled #42 without a task would be queued by the startup
    // sweep once the first delivery names the repository (a seventh agent run).
    world.forge.add_issue(world.repo, 42, "Add a --verbose flag to the CLI", "", &[], "alice");
    let mut ids = Vec::new();
    for n in 1..=6u64 {
        world.forge.add_issue(world.repo, n, &format!("Issue {n}"), "", &["forgehand"], "alice");
        let body = edited("github/issues_labeled.json", "/issue/number", json!(n));
        let answer = world.deliver(Delivery::github("issues", body)).await;
        ids.push(answer.json["task_id"].as_i64().unwrap());
    }
    for id in ids {
        assert_eq!(world.finished(id).await.status, "done");
    }
    let text = std::fs::read_to_string(&world.log).unwrap();
    let mut edges: Vec<(f64, i32)> = Vec::new();
    for line in text.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(started) = entry["started"].as_f64() {
            edges.push((started, 1));
        } else if let Some(ended) = entry["ended"].as_f64() {
            edges.push((ended, -1));
        }
    }
    edges.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (mut now, mut most) = (0, 0);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    assert_eq!(most, 2, "at most two agents at once, and two did overlap");
    // The startup sweep may also pick up the world's own labelled issue: count ours.
    let pulls = world.forge.pulls(world.repo);
    for n in 1..=6u64 {
        let prefix = format!("forgehand/issue-{n}-");
        assert_eq!(pulls.iter().filter(|p| p.head.starts_with(&prefix)).count(), 1, "one PR for #{n}");
    }
}

#[tokio::test]
async fn a_task_interrupted_by_a_restart_is_finished_once() {
    let mut setup = Setup::new(Dialect::Github);
    setup.hold_ms = 3000;
    let world = World::start(setup).await;
    let id = world.deliver_label().await;
    world.app.wait_task(id, LONG, |t| t.status == "running").await;
    wait_for_file(&world.log).await;
    // SIGTERM: the grace period (1 s) is shorter than the agent's work.
    let World { app, forge, remote, repo, log, .. } = world;
    let dir = app.stop().await;
    let interrupted = forgehand::db::Db::connect(&settings_in(&dir)).await.unwrap();
    let (task, _) = interrupted.task(id).await.unwrap().unwrap();
    assert_eq!((task.status.as_str(), task.attempt), ("queued", 0), "requeued without using up an attempt");

    let config = std::fs::read_to_string(dir.path().join("forgehand.toml")).unwrap();
    let app = TestApp::spawn_config(dir, &config).await;
    let task = app.wait_task(id, LONG, |t| t.status == "done").await;
    assert_eq!(task.attempt, 1);
    assert_eq!(forge.pulls(repo).len(), 1);
    assert!(remote_file(&remote, BRANCH, "FORGEHAND_DEMO.md").is_some());
    let starts = std::fs::read_to_string(&log).unwrap().lines().filter(|l| l.contains("\"argv\"")).count();
    assert_eq!(starts, 2, "one interrupted run, one complete run");
}

fn settings_in(dir: &tempfile::TempDir) -> forgehand::config::Settings {
    forgehand::config::Settings::load_with_env(Some(&dir.path().join("forgehand.toml")), Default::default())
        .unwrap()
}

#[tokio::test]
async fn a_gitea_bot_that_cannot_read_permissions_says_what_to_do() {
    let world = World::start(Setup::new(Dialect::Gitea)).await;
    world.forge.set_permission(world.repo, &world.forge.bot_login(), "write");
    let task = world.finished(world.deliver_label().await).await;
    // The forge would not say: that is the token's doing, not a "no" for the person.
    assert_eq!(task.status, "failed");
    let error = task.error.unwrap();
    assert!(error.contains("make the bot account an admin of acme/widgets"), "{error}");
    assert!(error.contains("not a refusal of the person") && error.contains("token"), "{error}");
    assert!(world.agent_runs().is_empty());
    assert_nothing_written_before_the_permission_check(&world.forge);
}

#[tokio::test]
async fn a_permission_endpoint_that_answers_404_fails_the_task_with_a_hint_about_the_token() {
    let world = World::start(Setup::new(Dialect::Github)).await;
    let path = format!("/repos/{}/collaborators/", world.repo);
    world.forge.fail_next("GET", &path, 404, &[], 1);
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!(task.status, "failed", "{task:?}");
    let error = task.error.unwrap();
    assert!(error.contains("cannot check who may trigger") && error.contains("404"), "{error}");
    assert!(error.contains("Contents, Issues and Pull requests"), "the token's scope is named: {error}");
    assert_nothing_written_before_the_permission_check(&world.forge);
}

#[tokio::test]
async fn labelling_again_after_the_pull_request_was_closed_starts_the_branch_afresh() {
    let world = World::start(Setup::new(Dialect::Github)).await;
    assert_eq!(world.finished(world.deliver_label().await).await.status, "done");
    let first = world.forge.pulls(world.repo).remove(0);
    world.forge.set_closed(world.repo, first.number);
    // Someone takes the label off and puts it back.
    let removed = world.deliver(Delivery::github("issues", fixture("github/issues_unlabeled.json"))).await;
    assert_eq!(removed.outcome(), "ignored", "{}", removed.text);
    let again = world.finished(world.deliver_label().await).await;
    assert_eq!(again.status, "done", "{again:?}");
    let pulls = world.forge.pulls(world.repo);
    assert_eq!(pulls.len(), 2);
    assert_ne!(pulls[1].number, first.number);
    // The branch was replaced, not stacked on the closed pull request's commits.
    let repo = git2::Repository::open_bare(&world.remote).unwrap();
    let head = repo.find_reference(&format!("refs/heads/{BRANCH}")).unwrap().peel_to_commit().unwrap();
    assert_eq!(head.parent_count(), 1);
    assert_eq!(head.parent(0).unwrap().message().unwrap(), "initial");
}

#[tokio::test]
async fn a_rate_limited_forge_is_waited_for_then_the_task_completes() {
    let world = World::start(Setup::new(Dialect::Github)).await;
    let permission = format!("/repos/{}/collaborators/", world.repo);
    world.forge.fail_next("GET", &permission, 429, &[("retry-after", "1")], 1);
    let id = world.deliver_label().await;
    let task = world.finished(id).await;
    assert_eq!((task.status.as_str(), task.attempt), ("done", 2), "{task:?}");
    let (_, events) = world.app.db.task(id).await.unwrap().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.message.starts_with("retrying in 1s: ") && e.message.contains("rate limited")),
        "{events:#?}"
    );
}

#[tokio::test]
async fn a_waiting_task_says_why_once_with_its_next_attempt_and_the_attempts_left() {
    let world = World::start(Setup::new(Dialect::Github)).await;
    let permission = format!("/repos/{}/collaborators/", world.repo);
    world.forge.fail_next("GET", &permission, 429, &[("retry-after", "3600")], 1);
    let id = world.deliver_label().await;
    let task = world.app.wait_task(id, LONG, |t| t.status == "queued" && t.attempt == 1).await;
    let next = task.next_attempt_at.expect("a retry time").format("%Y-%m-%d %H:%M").to_string();
    let browser = crate::dashboard::Browser::login(&world.app).await;
    let (status, page) = browser.get(&format!("/tasks/{id}")).await;
    assert_eq!(status, 200);
    let alerts: Vec<&str> = page.split("<p class=\"alert").skip(1).collect();
    assert_eq!(alerts.len(), 1, "the reason is said once: {alerts:#?}");
    let alert = alerts[0];
    assert!(alert.contains("Waiting: ") && alert.contains("rate limited"), "{alert}");
    assert!(alert.contains(&format!("next attempt at {next}")) && alert.contains("(in 59m"), "{alert}");
    assert!(alert.contains("2 attempts left of 3"), "{alert}");
}

#[tokio::test]
async fn a_command_sent_while_the_agent_runs_becomes_the_next_run() {
    let mut setup = Setup::new(Dialect::Github);
    setup.hold_ms = 1500;
    let world = World::start(setup).await;
    let id = world.deliver_label().await;
    world.app.wait_task(id, LONG, |t| t.status == "running").await;
    wait_for_file(&world.log).await;
    let comment =
        world.deliver(Delivery::github("issue_comment", fixture("github/issue_comment_issue.json"))).await;
    assert_eq!(
        (comment.outcome(), comment.json["task_id"].as_i64()),
        ("coalesced", Some(id)),
        "{}",
        comment.text
    );
    assert_eq!(world.finished(id).await.status, "done");

    let tasks = world.app.tasks().await;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let follow_up = world.finished(tasks[0].id).await;
    assert_eq!((follow_up.kind.as_str(), follow_up.status.as_str()), ("follow_up", "done"), "{follow_up:?}");
    assert_eq!(follow_up.instructions, "@alice: please also update the README");
    assert_eq!(world.forge.pulls(world.repo).len(), 1);
    assert_eq!(world.agent_runs().len(), 2);
}
