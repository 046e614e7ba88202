//! Verified pull requests: a repository's `.forgehand.toml` (or the operator's `[[repos]]`)
//! runs setup before the stand-in agent and checks after it, resumes the agent to fix
//! failing checks, and the pull request carries the evidence. Real processes, a real bare
//! remote, the fake forge in both dialects.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dashboard::Browser;
use crate::executor::{BRANCH, Setup, config, remote_file};
use crate::fake_forge::{Dialect, FakeForge};
use crate::harness::*;

const LONG: Duration = Duration::from_secs(60);
/// Fails until the agent writes "right" into ANSWER.txt; its output is what the stand-in
/// agent (mode "fix") needs to see to get it right.
const ANSWER_CHECK: &str = "grep -q right ANSWER.txt || { echo 'ANSWER.txt must say right'; exit 1; }";

struct World {
    app: TestApp,
    forge: FakeForge,
    remote: PathBuf,
    repo: &'static str,
    log: PathBuf,
    dialect: Dialect,
}

impl World {
    /// A forgehand whose repository holds `files` on `main`, with `operator` appended to
    /// its configuration.
    async fn start(dialect: Dialect, mode: &'static str, files: &[(&str, &str)], operator: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let forge = match dialect {
            Dialect::Github => FakeForge::github().await,
            Dialect::Gitea => FakeForge::gitea().await,
        };
        let repo = match dialect {
            Dialect::Github => "octo-org/hello-world",
            Dialect::Gitea => "acme/widgets",
        };
        let remote = dir.path().join("remote.git");
        remote_with(&remote, files);
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
        forge.set_permission(repo, &forge.bot_login(), "admin");
        let (log, pidfile) = (dir.path().join("agent.log"), dir.path().join("agent.pid"));
        let setup = Setup::new(dialect).mode(mode);
        let text = format!(
            "{}\n{}",
            config(&dir, &forge, &setup, &log, &pidfile).await,
            operator.replace("REPO", repo)
        );
        let app = TestApp::spawn_config(dir, &text).await;
        World { app, forge, remote, repo, log, dialect }
    }

    /// Delivers the label webhook for #42 and waits until the task ended and the forge shows it.
    async fn run_task(&self) -> forgehand::db::entities::tasks::Model {
        let (name, delivery) = match self.dialect {
            Dialect::Github => ("github", Delivery::github("issues", fixture("github/issues_labeled.json"))),
            Dialect::Gitea => (
                "gitea",
                Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_updated.json")),
            ),
        };
        let answer = self.app.deliver(name, delivery).await;
        assert_eq!(answer.status, 202, "{}", answer.text);
        let id = answer.json["task_id"].as_i64().unwrap();
        let task =
            self.app.wait_task(id, LONG, |t| !["queued", "running"].contains(&t.status.as_str())).await;
        let repo = self.repo;
        let settled = self
            .forge
            .wait_until(|state| !state.labels_of(repo, 42).iter().any(|l| l == "forgehand:working"), LONG)
            .await;
        assert!(settled, "the working label stayed: {:?}", self.forge.labels(repo, 42));
        task
    }

    fn status_comment(&self) -> String {
        let bot = self.forge.bot_login();
        let mut comments: Vec<String> = self
            .forge
            .comments(self.repo, 42)
            .into_iter()
            .filter(|c| c.user == bot)
            .map(|c| c.body)
            .collect();
        assert_eq!(comments.len(), 1, "{comments:?}");
        comments.remove(0)
    }

    /// The prompt and `--resume` value of each agent run, in start order.
    fn agent_runs(&self) -> Vec<(String, Option<String>)> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e.get("argv").is_some())
            .map(|e| {
                let argv: Vec<String> =
                    e["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect();
                let prompt =
                    argv.iter().position(|a| a == "-p").map(|i| argv[i + 1].clone()).unwrap_or_default();
                (prompt, e["resume"].as_str().map(str::to_owned))
            })
            .collect()
    }
}

/// A bare repository whose `main` holds README.md and `files`.
fn remote_with(path: &Path, files: &[(&str, &str)]) {
    let repo = git2::Repository::init_bare(path).unwrap();
    let mut tree = repo.treebuilder(None).unwrap();
    for (name, content) in [("README.md", "# hello\n")].iter().chain(files) {
        tree.insert(name, repo.blob(content.as_bytes()).unwrap(), 0o100644).unwrap();
    }
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let sig = git2::Signature::now("upstream", "upstream@test").unwrap();
    repo.commit(Some("refs/heads/main"), &sig, &sig, "initial", &tree, &[]).unwrap();
    repo.set_head("refs/heads/main").unwrap();
}

fn repo_file(setup: &str, checks: &str, fix_rounds: u32) -> String {
    format!(
        "setup = [{setup:?}]\nchecks = [{checks:?}]\nfix_rounds = {fix_rounds}\ninstructions = \"Keep answers short.\"\n"
    )
}

async fn fixed_in_one_round(dialect: Dialect) {
    // Setup leaves a dependency folder, a generated file and a rewritten tracked file.
    let setup =
        "mkdir -p deps && echo dep > deps/lib.txt && echo gen > generated.txt && echo rewritten > README.md";
    let file = repo_file(setup, ANSWER_CHECK, 2);
    let world = World::start(dialect, "fix", &[(".forgehand.toml", &file)], "").await;
    world.forge.comment_as(world.repo, 42, "bob", "Please keep the -v short flag working.");
    let task = world.run_task().await;
    assert_eq!(task.status, "done", "{task:?}");

    let runs = world.agent_runs();
    assert_eq!(runs.len(), 2, "the agent ran once and was resumed once: {runs:?}");
    assert!(runs[0].0.contains("Instructions for this repository:\n\nKeep answers short."), "{}", runs[0].0);
    assert!(
        runs[0].0.contains(
            "Comments on the issue, oldest first:\n\n@bob wrote:\nPlease keep the -v short flag working."
        ),
        "the issue's thread is in the prompt: {}",
        runs[0].0
    );
    assert!(!runs[0].0.contains("forgehand is working"), "forgehand's own comment is not: {}", runs[0].0);
    assert!(runs[0].1.is_none());
    let (fix_prompt, resumed) = &runs[1];
    assert!(resumed.is_some(), "the fix round resumes the session");
    assert!(
        fix_prompt.contains("fix round 1 of 2") && fix_prompt.contains("ANSWER.txt must say right"),
        "{fix_prompt}"
    );
    assert_eq!((task.turns, task.cost_usd), (Some(4), Some(0.0246)), "both runs are counted");

    let pulls = world.forge.pulls(world.repo);
    assert_eq!(pulls.len(), 1);
    let (pull, body) = (&pulls[0], &pulls[0].body);
    assert!(!pull.draft && !pull.title.starts_with("WIP"), "{pull:?}");
    assert!(body.contains("| Command | Result | Duration | Round |"), "{body}");
    assert!(body.contains(&format!("| `{setup}` | ✅ pass |")), "{body}");
    let check = ANSWER_CHECK.replace('|', "\\|");
    assert!(
        body.contains(&format!("| `{check}` | ❌ fail (exit 1) |")) && body.contains(" | 0 |\n"),
        "{body}"
    );
    assert!(body.contains(&format!("| `{check}` | ✅ pass |")) && body.contains(" | 1 |\n"), "{body}");
    assert!(!body.contains("still fail"), "{body}");
    assert!(body.starts_with("Wrote right to ANSWER.txt"), "the last run's summary: {body}");

    let (answer, _) =
        remote_file(&world.remote, BRANCH, "ANSWER.txt").expect("the agent's file is committed");
    assert_eq!(answer, "right\n");
    assert!(remote_file(&world.remote, BRANCH, "deps/lib.txt").is_none(), "setup's folder was committed");
    assert!(remote_file(&world.remote, BRANCH, "generated.txt").is_none(), "setup's file was committed");
    assert_eq!(remote_file(&world.remote, BRANCH, "README.md").unwrap().0, "# hello\n");
    world.assert_checklist_told_the_story(pull.number, &check).await;
    world.assert_phases_are_shown_and_counted(task.id).await;
}

impl World {
    /// The status comment ends as the checklist of the phases, and was edited as each
    /// phase ended (the fake forge logs every edit).
    async fn assert_checklist_told_the_story(&self, pr: u64, check: &str) {
        let comment = self.status_comment();
        let check = check.replace("\\|", "|");
        let expected = [
            "- ✅ setup: 1 command, ".to_owned(),
            "- ✅ agent: 2 turns · $0.0123, ".to_owned(),
            format!("- ❌ checks fail: `{check}` (exit 1)\n- ✅ fix round 1: 2 turns · $0.0123, "),
            "- ✅ checks pass after fix round 1: 1 command, ".to_owned(),
            format!("- ✅ pull request #{pr}\n\n<!-- forgehand:task:"),
        ];
        let mut at = 0;
        for line in &expected {
            let found = comment[at..].find(line.as_str());
            assert!(found.is_some(), "{line:?} missing (in order) in\n{comment}");
            at += found.unwrap();
        }
        let edits: Vec<String> = self
            .forge
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.path.contains("/issues/comments/"))
            .filter_map(|r| r.body["body"].as_str().map(str::to_owned))
            .collect();
        for now in [
            "- ⏳ running the setup",
            "- ⏳ the agent is working",
            "- ⏳ running the checks",
            "- ⏳ fix round 1 of 2: the agent is fixing the failing checks",
            "- ⏳ running the checks after fix round 1",
        ] {
            assert!(edits.iter().any(|e| e.contains(now)), "no edit said {now:?}: {edits:#?}");
        }
    }

    /// The task page lists every phase with its output; the API carries the steps; the
    /// overview and /metrics count the pull request as fixed.
    async fn assert_phases_are_shown_and_counted(&self, task_id: i64) {
        let browser = Browser::login(&self.app).await;
        let (status, page) = browser.get(&format!("/tasks/{task_id}")).await;
        assert_eq!(status, 200);
        assert!(page.contains("<h2>Phases</h2>"), "{page}");
        assert_eq!(page.matches("<strong>checks</strong>").count(), 1, "one check in round 0");
        assert!(page.contains("<strong>checks after fix round 1</strong>"), "{page}");
        assert!(page.contains("<strong>fix round 1</strong>"), "{page}");
        assert!(
            page.contains("<details open><summary>output</summary><pre>ANSWER.txt must say right"),
            "{page}"
        );
        let (_, api) = self.app.api(&format!("/api/tasks/{task_id}")).await;
        let phases: Vec<&str> =
            api["steps"].as_array().unwrap().iter().map(|s| s["phase"].as_str().unwrap()).collect();
        assert_eq!(phases, ["setup", "agent", "check", "agent", "check"]);
        let stored = self.app.db.task(task_id).await.unwrap().unwrap().0;
        assert_eq!(stored.checks_result.as_deref(), Some("fixed"));
        let (_, dashboard) = browser.get("/").await;
        assert!(
            dashboard.contains(
                r#"data-testid="checks"><span class="t-done">0</span> · <span class="t-no_changes">1</span>"#
            ),
            "{dashboard}"
        );
        let (_, metrics) = browser.get("/metrics").await;
        assert!(metrics.contains("forgehand_pull_requests_checks{result=\"fixed\"} 1\n"), "{metrics}");
    }
}

#[tokio::test]
async fn github_failing_checks_are_fixed_by_resuming_the_agent() {
    fixed_in_one_round(Dialect::Github).await;
}

#[tokio::test]
async fn gitea_failing_checks_are_fixed_by_resuming_the_agent() {
    fixed_in_one_round(Dialect::Gitea).await;
}

/// Checks that never pass, set by the operator's `[[repos]]` (the repository has no file).
async fn hopeless(dialect: Dialect) {
    let operator =
        "[[repos]]\nname = \"REPO\"\nchecks = [\"echo never passes; exit 4\", \"true\"]\nfix_rounds = 2\n";
    let world = World::start(dialect, "edit", &[], operator).await;
    let task = world.run_task().await;
    assert_eq!(task.status, "done", "{task:?}");
    let runs = world.agent_runs();
    assert_eq!(runs.len(), 3, "1 + fix_rounds runs");
    assert!(runs[1].1.is_some() && runs[1].1 == runs[2].1, "{runs:?}");
    assert!(runs[2].0.contains("fix round 2 of 2"), "{}", runs[2].0);

    let pulls = world.forge.pulls(world.repo);
    assert_eq!(pulls.len(), 1);
    assert!(pulls[0].draft, "{:?}", pulls[0]);
    let body = &pulls[0].body;
    assert!(body.contains("⚠️ **These checks still fail**"), "{body}");
    assert!(
        body.contains(
            "- `echo never passes; exit 4` (exit 4); the end of its output:\n\n```\nnever passes\n```"
        ),
        "{body}"
    );
    assert_eq!(body.matches("| `true` | ✅ pass |").count(), 3, "{body}");
    assert!(!body.contains("- `true`"), "{body}");
    let comment = world.status_comment();
    assert!(
        comment.contains("- ❌ checks fail: `echo never passes; exit 4` (exit 4)\n- ✅ fix round 2: "),
        "{comment}"
    );
    assert_eq!(comment.matches("❌ checks fail").count(), 3, "{comment}");
    let stored = world.app.db.task(task.id).await.unwrap().unwrap().0;
    assert_eq!(stored.checks_result.as_deref(), Some("failing"));
}

#[tokio::test]
async fn github_hopeless_checks_open_a_draft_listing_them() {
    hopeless(Dialect::Github).await;
}

#[tokio::test]
async fn gitea_hopeless_checks_open_a_draft_listing_them() {
    hopeless(Dialect::Gitea).await;
}

#[tokio::test]
async fn failing_checks_with_on_failing_checks_fail_open_no_pull_request() {
    let operator =
        "[[repos]]\nname = \"REPO\"\nchecks = [\"exit 9\"]\nfix_rounds = 0\non_failing_checks = \"fail\"\n";
    let world = World::start(Dialect::Gitea, "edit", &[], operator).await;
    let task = world.run_task().await;
    assert_eq!(task.status, "failed", "{task:?}");
    assert_eq!(world.agent_runs().len(), 1);
    assert!(world.forge.pulls(world.repo).is_empty());
    let comment = world.status_comment();
    assert!(
        comment.contains("the checks still fail after 0 fix round(s): `exit 9` (exit 9); no pull request"),
        "{comment}"
    );
    assert!(remote_file(&world.remote, BRANCH, "FORGEHAND_DEMO.md").is_some(), "the work was pushed");
}

#[tokio::test]
async fn a_failing_setup_fails_the_task_with_its_output() {
    let file = "setup = [\"echo installing; echo 'no such package' >&2; exit 7\", \"touch never-ran\"]\n";
    let world = World::start(Dialect::Github, "edit", &[(".forgehand.toml", file)], "").await;
    let task = world.run_task().await;
    assert_eq!(task.status, "failed", "{task:?}");
    assert!(world.agent_runs().is_empty(), "the agent never ran");
    let comment = world.status_comment();
    assert!(
        comment.starts_with("❌ forgehand could not finish ([task #")
            && comment.contains(
                "the setup command `echo installing; echo 'no such package' >&2; exit 7` (exit 7); the end of its output:\n\n```\ninstalling\nno such package\n```"
            ),
        "{comment}"
    );
    // The working label goes before the failed one comes: wait for the second call too.
    let repo = world.repo;
    let failed = world
        .forge
        .wait_until(|state| state.labels_of(repo, 42).iter().any(|l| l == "forgehand:failed"), LONG)
        .await;
    assert!(failed, "no failed label: {:?}", world.forge.labels(repo, 42));
}

#[tokio::test]
async fn a_repository_file_with_a_bad_key_fails_with_its_line() {
    let file = "checks = [\"true\"]\nchekcs = [\"true\"]\n";
    let world = World::start(Dialect::Gitea, "edit", &[(".forgehand.toml", file)], "").await;
    let task = world.run_task().await;
    assert_eq!(task.status, "failed");
    assert!(world.agent_runs().is_empty());
    let comment = world.status_comment();
    assert!(comment.contains(".forgehand.toml line 2 (chekcs): unknown field `chekcs`"), "{comment}");
    assert!(comment.contains("Fix .forgehand.toml on the branch main"), "{comment}");
}

#[tokio::test]
async fn a_repository_file_cannot_go_past_the_operator() {
    let operator = "[repo_config]\nallow = [\"checks\", \"fix_rounds\"]\nmax_fix_rounds = 1\n";
    let file = "checks = [\"true\"]\nsetup = [\"true\"]\n";
    let world = World::start(Dialect::Github, "edit", &[(".forgehand.toml", file)], operator).await;
    let task = world.run_task().await;
    assert_eq!(task.status, "failed");
    assert!(world.agent_runs().is_empty());
    let comment = world.status_comment();
    assert!(
        comment.contains(".forgehand.toml line 2: setup: the operator does not let repository files set it (repo_config.allow is [checks, fix_rounds])"),
        "{comment}"
    );
}

#[tokio::test]
async fn a_repository_file_cannot_ask_for_more_fix_rounds_than_allowed() {
    let world = World::start(Dialect::Gitea, "edit", &[(".forgehand.toml", "fix_rounds = 9\n")], "").await;
    let task = world.run_task().await;
    assert_eq!(task.status, "failed");
    let comment = world.status_comment();
    assert!(
        comment.contains(
            "line 1: fix_rounds: 9 is more than the operator allows (repo_config.max_fix_rounds = 5)"
        ),
        "{comment}"
    );
}

#[tokio::test]
async fn a_follow_up_runs_setup_and_checks_too() {
    let file = repo_file("echo installing", ANSWER_CHECK, 2);
    let world = World::start(Dialect::Github, "fix", &[(".forgehand.toml", &file)], "").await;
    assert_eq!(world.run_task().await.status, "done");
    let pull = world.forge.pulls(world.repo).remove(0);

    // Someone changes the answer on the branch; the follow-up (told the check) puts it right.
    commit_on_branch(&world.remote, BRANCH, "ANSWER.txt", "maybe\n");
    let mut review: serde_json::Value =
        serde_json::from_slice(&fixture("github/pull_request_review.json")).unwrap();
    review["pull_request"]["number"] = serde_json::json!(pull.number);
    review["pull_request"]["head"]["ref"] = serde_json::json!(BRANCH);
    let delivery = Delivery::github("pull_request_review", serde_json::to_vec(&review).unwrap());
    let answer = world.app.deliver("github", delivery).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let id = answer.json["task_id"].as_i64().unwrap();
    let follow_up =
        world.app.wait_task(id, LONG, |t| !["queued", "running"].contains(&t.status.as_str())).await;
    assert_eq!((follow_up.kind.as_str(), follow_up.status.as_str()), ("follow_up", "done"), "{follow_up:?}");

    let runs = world.agent_runs();
    assert_eq!(runs.len(), 3, "two runs for the issue, one for the review: {runs:?}");
    assert!(runs[2].0.contains("Pull request #") && runs[2].1.is_some(), "{:?}", runs[2]);
    assert!(runs[2].0.contains("forgehand runs these checks after you finish"), "{}", runs[2].0);
    let steps = world.app.db.task_steps(id).await.unwrap();
    let phases: Vec<(&str, i32, bool)> =
        steps.iter().map(|s| (s.phase.as_str(), s.round, s.passed)).collect();
    assert_eq!(phases, [("setup", 0, true), ("agent", 0, true), ("check", 0, true)]);
    assert_eq!(follow_up.checks_result.as_deref(), Some("passed"));
    assert_eq!(remote_file(&world.remote, BRANCH, "ANSWER.txt").unwrap().0, "right\n");
    assert_eq!(world.forge.pulls(world.repo).len(), 1, "still one pull request");
}

/// Commits `path` = `content` on top of `branch` in the bare repository `remote`.
fn commit_on_branch(remote: &Path, branch: &str, path: &str, content: &str) {
    let repo = git2::Repository::open_bare(remote).unwrap();
    let reference = format!("refs/heads/{branch}");
    let parent = repo.find_reference(&reference).unwrap().peel_to_commit().unwrap();
    let mut tree = repo.treebuilder(Some(&parent.tree().unwrap())).unwrap();
    tree.insert(path, repo.blob(content.as_bytes()).unwrap(), 0o100644).unwrap();
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let sig = git2::Signature::now("someone", "someone@test").unwrap();
    repo.commit(Some(&reference), &sig, &sig, "a person's change", &tree, &[&parent]).unwrap();
}

/// The pull request's checks fail in CI after forgehand pushed: one follow-up, told the
/// failed check and its log, fixes it; the rounds are capped; a late or foreign failure
/// starts nothing.
async fn ci_failure_is_fixed_once(dialect: Dialect) {
    let world = World::start(dialect, "fix", &[], "[ci]\nfix_rounds = 1\n").await;
    assert_eq!(world.run_task().await.status, "done");
    let (repo, name) = (world.repo, if dialect == Dialect::Github { "github" } else { "gitea" });
    let first = world.forge.branch_sha(repo, BRANCH);
    let log = "running 3 tests\ntest answer ... FAILED\nANSWER.txt must say right\n";

    let failed = world.forge.finish_check(repo, &first, "ci / test", "failure", log);
    let answer = world.app.deliver(name, failed.delivery()).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let id = answer.json["task_id"].as_i64().unwrap();
    let fix = world.app.wait_task(id, LONG, |t| !["queued", "running"].contains(&t.status.as_str())).await;
    assert_eq!(
        (fix.kind.as_str(), fix.trigger.as_str(), fix.status.as_str()),
        ("follow_up", "checks", "done"),
        "{fix:?}"
    );
    let runs = world.agent_runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let prompt = &runs[1].0;
    assert!(
        prompt.contains("### ci / test (failure)") && prompt.contains("ANSWER.txt must say right"),
        "{prompt}"
    );
    assert!(runs[1].1.is_some(), "the fix resumes the session that wrote the change");
    assert_eq!(remote_file(&world.remote, BRANCH, "ANSWER.txt").unwrap().0, "right\n");
    let second = world.forge.branch_sha(repo, BRANCH);
    assert_ne!(first, second);

    // Its own push fails again: ci.fix_rounds = 1 is spent.
    let again = world
        .app
        .deliver(name, world.forge.finish_check(repo, &second, "ci / test", "failure", log).delivery())
        .await;
    assert_eq!(answer_of(&again), ("ignored", true), "{}", again.text);
    assert!(again.text.contains("ci.fix_rounds"), "{}", again.text);
    // A late failure of the old head starts nothing either.
    let late = world
        .app
        .deliver(name, world.forge.finish_check(repo, &first, "lint", "failure", "").delivery())
        .await;
    assert_eq!(answer_of(&late).0, "ignored", "{}", late.text);
    // Someone else pushes: a failure on their commit is theirs.
    commit_on_branch(&world.remote, BRANCH, "NOTES.md", "mine\n");
    let theirs = world.forge.branch_sha(repo, BRANCH);
    let foreign = world
        .app
        .deliver(name, world.forge.finish_check(repo, &theirs, "ci / test", "failure", log).delivery())
        .await;
    assert!(foreign.text.contains("not a commit forgehand pushed"), "{}", foreign.text);
    // A passing check is no news.
    let passed = world
        .app
        .deliver(name, world.forge.finish_check(repo, &second, "docs", "success", "").delivery())
        .await;
    assert!(passed.text.contains("nothing to fix"), "{}", passed.text);
    assert_eq!(world.agent_runs().len(), 2, "no further runs");
}

fn answer_of(answer: &Answer) -> (&str, bool) {
    (answer.json["outcome"].as_str().unwrap_or_default(), answer.status == 200)
}

#[tokio::test]
async fn github_a_failing_check_run_is_fixed_once() {
    ci_failure_is_fixed_once(Dialect::Github).await;
}

#[tokio::test]
async fn gitea_a_failing_commit_status_is_fixed_once() {
    ci_failure_is_fixed_once(Dialect::Gitea).await;
}

#[tokio::test]
async fn a_check_that_fails_on_the_base_branch_too_is_not_the_pull_requests_to_fix() {
    let world = World::start(Dialect::Github, "fix", &[], "").await;
    assert_eq!(world.run_task().await.status, "done");
    let repo = world.repo;
    let main = world.forge.branch_sha(repo, "main");
    world.forge.finish_check(repo, &main, "ci / test", "failure", "broken on main\n");
    let head = world.forge.branch_sha(repo, BRANCH);
    let failed = world.forge.finish_check(repo, &head, "ci / test", "failure", "broken on main\n");
    let answer = world.app.deliver("github", failed.delivery()).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let id = answer.json["task_id"].as_i64().unwrap();
    let task = world.app.wait_task(id, LONG, |t| !["queued", "running"].contains(&t.status.as_str())).await;
    assert_eq!(task.status, "cancelled", "{task:?}");
    let error = task.error.unwrap_or_default();
    assert!(error.contains("(\"ci / test\") fail on main too"), "{error}");
    assert_eq!(world.agent_runs().len(), 1, "no agent ran for it");
}

/// A review made only of inline comments: one follow-up whose prompt lists each comment with
/// its file, line, hunk and text; after the push, a reply in each thread (GitHub) or one
/// comment listing them (Gitea) saying which the commit addressed.
async fn inline_review_round(dialect: Dialect) {
    let world = World::start(dialect, "fix", &[], "").await;
    assert_eq!(world.run_task().await.status, "done");
    let repo = world.repo;
    let pull = world.forge.pulls(repo).remove(0).number;
    let name = if dialect == Dialect::Github { "github" } else { "gitea" };
    let comments =
        [("ANSWER.txt", 1, "ANSWER.txt must say right"), ("README.md", 1, "Mention --verbose here.")];
    let review = world.forge.review_with_comments(repo, pull, "alice", "commented", "", &comments);
    let answer = world.app.deliver(name, review.delivery()).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let id = answer.json["task_id"].as_i64().unwrap();
    let task = world.app.wait_task(id, LONG, |t| !["queued", "running"].contains(&t.status.as_str())).await;
    assert_eq!((task.trigger.as_str(), task.status.as_str()), ("review", "done"), "{task:?}");

    let prompt = world.agent_runs().remove(1).0;
    for expected in [
        "address each one:",
        "1. `ANSWER.txt` line 1, @alice:\n```diff\n",
        "> ANSWER.txt must say right",
        "2. `README.md` line 1, @alice:",
    ] {
        assert!(prompt.contains(expected), "{expected:?} missing in {prompt}");
    }
    assert_eq!(remote_file(&world.remote, BRANCH, "ANSWER.txt").unwrap().0, "right\n");
    let head = world.forge.branch_sha(repo, BRANCH);
    let short = &head[..7];
    let bot = world.forge.bot_login();
    match dialect {
        Dialect::Github => {
            let replies: Vec<_> = world
                .forge
                .review_comments(repo, pull)
                .into_iter()
                .filter(|c| c.in_reply_to.is_some())
                .collect();
            assert_eq!(replies.len(), 2, "{replies:?}");
            assert!(replies.iter().all(|r| r.user == bot));
            assert!(replies[0].body.starts_with(&format!("Addressed in `{short}`.")), "{}", replies[0].body);
            assert!(replies[1].body.starts_with(&format!("Not changed in `{short}`")), "{}", replies[1].body);
        }
        Dialect::Gitea => {
            let listed: Vec<_> = world
                .forge
                .comments(repo, pull)
                .into_iter()
                .filter(|c| c.user == bot && c.body.starts_with("On the review's comments:"))
                .collect();
            assert_eq!(listed.len(), 1, "{listed:?}");
            let body = &listed[0].body;
            assert!(body.contains(&format!("- `ANSWER.txt` line 1: Addressed in `{short}`.")), "{body}");
            assert!(body.contains(&format!("- `README.md` line 1: Not changed in `{short}`")), "{body}");
        }
    }
}

#[tokio::test]
async fn github_an_inline_review_is_answered_in_its_threads() {
    inline_review_round(Dialect::Github).await;
}

#[tokio::test]
async fn gitea_an_inline_review_is_answered_on_the_pull_request() {
    inline_review_round(Dialect::Gitea).await;
}

/// A command on a pull request from a fork, where forgehand cannot push: the task ends
/// `rejected`, and the pull request says why.
async fn fork_command_is_refused_clearly(dialect: Dialect) {
    let world = World::start(dialect, "fix", &[], "").await;
    let repo = world.repo;
    world.forge.add_fork_pull(repo, 50, "main", "mallory/widgets");
    let name = if dialect == Dialect::Github { "github" } else { "gitea" };
    let command = world.forge.comment_as(repo, 50, "alice", "/forgehand fix the typo");
    let answer = world.app.deliver(name, command.delivery()).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let id = answer.json["task_id"].as_i64().unwrap();
    let task = world.app.wait_task(id, LONG, |t| !["queued", "running"].contains(&t.status.as_str())).await;
    assert_eq!(task.status, "rejected", "{task:?}");
    // The status comment is edited after the end is recorded.
    let refusal = "comes from the fork mallory/widgets: forgehand cannot push to a fork's branch";
    let said = world
        .forge
        .wait_until(|s| s.comments_of(repo, 50).iter().any(|c| c.body.contains(refusal)), LONG)
        .await;
    assert!(said, "{:?}", world.forge.comments(repo, 50));
    assert!(world.agent_runs().is_empty(), "no agent ran");
}

#[tokio::test]
async fn github_a_command_on_a_fork_pull_request_is_refused_clearly() {
    fork_command_is_refused_clearly(Dialect::Github).await;
}

#[tokio::test]
async fn gitea_a_command_on_a_fork_pull_request_is_refused_clearly() {
    fork_command_is_refused_clearly(Dialect::Gitea).await;
}

/// Images and files pasted into the issue reach the agent's checkout (never the commit) and
/// are named in the prompt; an oversize one and one on another host are named as skipped,
/// and the other host is never asked.
async fn attachments_reach_the_checkout(dialect: Dialect) {
    let world = World::start(dialect, "look", &[], "[attachments]\nmax_file_bytes = 1000\n").await;
    let repo = world.repo;
    let under = if dialect == Dialect::Github { "/user-attachments/assets" } else { "/attachments" };
    let shot = world.forge.add_attachment(&format!("{under}/5c1e-shot"), &[7u8; 100], "image/png");
    let big = world.forge.add_attachment(&format!("{under}/9d0b-build"), &[1u8; 5000], "application/zip");
    let elsewhere = FakeForge::github().await;
    let foreign = elsewhere.add_attachment("/user-attachments/assets/pixel", b"GIF89a", "image/gif");
    world.forge.set_issue_body(
        repo,
        42,
        &format!("The CLI needs --verbose.\n\n![screenshot]({shot})\n![tracking]({foreign})"),
    );
    world.forge.comment_as(repo, 42, "bob", &format!("The build log: [build.zip]({big})"));

    assert_eq!(world.run_task().await.status, "done");
    let (seen, _) = remote_file(&world.remote, BRANCH, "SEEN.txt").expect("the agent wrote what it saw");
    assert_eq!(seen, "01-5c1e-shot.png 100\n", "only the screenshot, in the checkout");
    assert!(
        remote_file(&world.remote, BRANCH, ".forgehand/attachments/01-5c1e-shot.png").is_none(),
        "never committed"
    );
    let prompt = world.agent_runs().remove(0).0;
    for expected in [
        "- .forgehand/attachments/01-5c1e-shot.png (image/png, 100 bytes), from ".to_owned(),
        format!("- {big}: larger than 1000 bytes"),
        format!("- {foreign}: not on the forge's own host"),
    ] {
        assert!(prompt.contains(&expected), "{expected:?} missing in {prompt}");
    }
    assert!(elsewhere.requests().is_empty(), "another host was asked: {:?}", elsewhere.requests());
}

#[tokio::test]
async fn github_pasted_images_reach_the_checkout_not_the_commit() {
    attachments_reach_the_checkout(Dialect::Github).await;
}

#[tokio::test]
async fn gitea_attachments_reach_the_checkout_not_the_commit() {
    attachments_reach_the_checkout(Dialect::Gitea).await;
}
