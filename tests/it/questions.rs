//! The agent asks, a person answers on the issue, the work resumes: the stand-in agent
//! starts `forgehand mcp` from the `--mcp-config` it was given and calls `ask_question`
//! over real MCP stdio; the fake forge (both dialects) carries the question and answers.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::executor::{BRANCH, Setup, bare_remote, config};
use crate::fake_forge::{Dialect, FakeForge, Webhook};
use crate::harness::*;

const LONG: Duration = Duration::from_secs(60);
const FORGEHAND: &str = env!("CARGO_BIN_EXE_forgehand");
const QUESTION: &str = "Should the flag be -v or --verbose?";

struct World {
    app: TestApp,
    forge: FakeForge,
    repo: &'static str,
    log: PathBuf,
    name: &'static str,
    config: String,
}

impl World {
    /// Issue 42 makes the stand-in agent ask (its body says `[ask]`); issue 43 does not.
    async fn start(dialect: Dialect, executor_extra: &str) -> World {
        World::start_with(dialect, executor_extra, "").await
    }

    async fn start_with(dialect: Dialect, executor_extra: &str, agent_extra: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let (forge, repo, name) = match dialect {
            Dialect::Github => (FakeForge::github().await, "octo-org/hello-world", "github"),
            Dialect::Gitea => (FakeForge::gitea().await, "acme/widgets", "gitea"),
        };
        let remote = dir.path().join("remote.git");
        bare_remote(&remote);
        forge.add_repo(repo, &format!("file://{}", remote.display()), "main");
        forge.add_issue(
            repo,
            42,
            "Add a --verbose flag to the CLI",
            "The CLI needs a flag. [ask]",
            &[],
            "alice",
        );
        forge.add_issue(repo, 43, "Fix the typo", "Teh typo.", &[], "alice");
        forge.set_permission(repo, "alice", "write");
        forge.set_permission(repo, &forge.bot_login(), "admin");
        let log = dir.path().join("agent.log");
        let mut setup = Setup::new(dialect).mode("ask");
        setup.max_concurrent = 1;
        let text = config(&dir, &forge, &setup, &log, &dir.path().join("agent.pid")).await;
        let text = text
            .replace("[agent]\n", &format!("[agent]\nforgehand_command = \"{FORGEHAND}\"\n{agent_extra}\n"))
            .replace("[executor]\n", &format!("[executor]\n{executor_extra}\n"));
        let app = TestApp::spawn_config(dir, &text).await;
        World { app, forge, repo, log, name, config: text }
    }

    async fn send(&self, hook: Webhook) -> Answer {
        self.app.deliver(self.name, hook.delivery()).await
    }

    /// Labels issue `n` and returns its task.
    async fn label(&self, n: u64) -> i64 {
        let answer = self.send(self.forge.label_issue(self.repo, n, "forgehand", "alice")).await;
        assert_eq!(answer.status, 202, "{}", answer.text);
        answer.json["task_id"].as_i64().unwrap()
    }

    async fn status(&self, id: i64, status: &str) -> forgehand::db::entities::tasks::Model {
        self.app.wait_task(id, LONG, |t| t.status == status).await
    }

    async fn labels_settle(&self, n: u64, has: &str, lacks: &str) {
        let (repo, has_l, lacks_l) = (self.repo, has.to_owned(), lacks.to_owned());
        let settled = self
            .forge
            .wait_until(
                move |s| {
                    let labels = s.labels_of(repo, n);
                    labels.contains(&has_l) && !labels.contains(&lacks_l)
                },
                LONG,
            )
            .await;
        assert!(settled, "labels of #{n}: {:?}", self.forge.labels(self.repo, n));
    }

    fn bot_comments(&self, n: u64) -> Vec<String> {
        let bot = self.forge.bot_login();
        self.forge.comments(self.repo, n).into_iter().filter(|c| c.user == bot).map(|c| c.body).collect()
    }

    /// The agent runs on issue 42 (the others are left out), in start order.
    fn runs_on_42(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e.get("argv").is_some())
            .filter(|e| e["argv"].to_string().contains("Add a --verbose flag") || e["resume"].is_string())
            .collect()
    }

    /// Waits until the task asked and the forge shows the question.
    async fn asked(&self, id: i64) {
        let task = self.status(id, "needs_input").await;
        assert_eq!(task.question.as_deref(), Some(QUESTION));
        assert_eq!(task.questions_asked, 1);
        self.labels_settle(42, "forgehand:question", "forgehand:working").await;
        let comments = self.bot_comments(42);
        let question =
            comments.iter().find(|c| c.contains("has a question")).expect("the question was posted");
        assert!(question.starts_with("@alice, forgehand's agent has a question"), "{question}");
        assert!(question.contains(&format!("> {QUESTION}")), "{question}");
        assert!(comments.iter().any(|c| c.contains("waiting for an answer")), "{comments:?}");
        assert!(self.forge.pulls(self.repo).is_empty(), "no pull request while waiting");
    }
}

async fn ask_answer_resume(dialect: Dialect) {
    let world = World::start(dialect, "").await;
    let id = world.label(42).await;
    world.asked(id).await;
    let first = world.runs_on_42();
    assert_eq!(first.len(), 1);
    let argv = first[0]["argv"].to_string();
    assert!(argv.contains("--mcp-config") && argv.contains("mcp__forgehand__ask_question"), "{argv}");

    // The waiting task holds no slot: with one slot, another issue's task runs to its end.
    let other = world.label(43).await;
    assert_eq!(world.app.wait_task(other, LONG, |t| t.status == "done").await.number, 43);
    assert_eq!(world.app.db.task(id).await.unwrap().unwrap().0.status, "needs_input");

    // A read-only user's comment is no answer: recorded as ignored, the task waits on.
    world.forge.set_permission(world.repo, "bob", "read");
    let ignored = world.send(world.forge.comment_as(world.repo, 42, "bob", "Use -x.")).await;
    assert_eq!(ignored.json["outcome"], "answered", "{}", ignored.text);
    let note = "the answer by @bob was ignored: @bob has read permission";
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let (task, events) = world.app.db.task(id).await.unwrap().unwrap();
        if task.status == "needs_input" && events.iter().any(|e| e.message.contains(note)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{task:?} {events:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(world.runs_on_42().len(), 1, "the agent did not run for bob's comment");

    let sent = SystemTime::now();
    let answer = world.send(world.forge.comment_as(world.repo, 42, "alice", "Use --verbose, please.")).await;
    assert_eq!(answer.json["outcome"], "answered", "{}", answer.text);
    let task = world.status(id, "done").await;
    world.labels_settle(42, "forgehand:done", "forgehand:question").await;
    let runs = world.runs_on_42();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let session = first.iter().chain(&runs).find_map(|r| r["resume"].as_str()).expect("resumed");
    assert_eq!(task.agent_session_id.as_deref(), Some(session));
    let prompt = runs[1]["argv"].to_string();
    assert!(prompt.contains("@alice answered:") && prompt.contains("Use --verbose, please."), "{prompt}");
    assert!(!prompt.contains("Use -x"), "bob's answer never reaches the agent: {prompt}");
    assert_eq!(runs[1]["cwd"], first[0]["cwd"], "the same worktree");
    let started = runs[1]["started"].as_f64().unwrap();
    let since = started - sent.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
    eprintln!("answer webhook to agent resumed: {:.0} ms", since * 1000.0);
    let pulls: Vec<_> = world.forge.pulls(world.repo).into_iter().filter(|p| p.head == BRANCH).collect();
    assert_eq!(pulls.len(), 1, "{pulls:?}");
}

#[tokio::test]
async fn github_the_agent_asks_and_a_permitted_answer_resumes_it() {
    ask_answer_resume(Dialect::Github).await;
}

#[tokio::test]
async fn gitea_the_agent_asks_and_a_permitted_answer_resumes_it() {
    ask_answer_resume(Dialect::Gitea).await;
}

#[tokio::test]
async fn removing_the_label_while_waiting_cancels_and_closes_the_question() {
    let world = World::start(Dialect::Gitea, "").await;
    let id = world.label(42).await;
    world.asked(id).await;
    let answer = world.send(world.forge.unlabel_issue(world.repo, 42, "forgehand", "alice")).await;
    assert_eq!(answer.json["outcome"], "cancelled_task", "{}", answer.text);
    world.status(id, "cancelled").await;
    let repo = world.repo;
    let closed = world
        .forge
        .wait_until(|s| !s.labels_of(repo, 42).iter().any(|l| l == "forgehand:question"), LONG)
        .await;
    assert!(closed, "{:?}", world.forge.labels(repo, 42));
    assert!(
        world.bot_comments(42).iter().any(|c| c.starts_with("⏹️ forgehand stopped")),
        "{:?}",
        world.bot_comments(42)
    );
    assert_eq!(world.runs_on_42().len(), 1);
}

#[tokio::test]
async fn an_unanswered_question_expires() {
    let world = World::start(Dialect::Github, "question_timeout_hours = 0").await;
    let id = world.label(42).await;
    let task = world.status(id, "expired").await;
    assert!(task.error.as_deref().unwrap().contains("nobody answered the question in 0 hours"), "{task:?}");
    let repo = world.repo;
    let said = world
        .forge
        .wait_until(
            |s| {
                s.comments_of(repo, 42).iter().any(|c| c.body.contains("nobody answered its question"))
                    && !s.labels_of(repo, 42).iter().any(|l| l == "forgehand:question")
            },
            LONG,
        )
        .await;
    assert!(said, "{:?}", world.bot_comments(42));
    assert!(world.bot_comments(42).iter().any(|c| c.contains("has a question")), "asked first");
}

#[tokio::test]
async fn a_question_survives_a_restart() {
    let world = World::start(Dialect::Github, "").await;
    let id = world.label(42).await;
    world.asked(id).await;
    let World { app, forge, repo, log, name, config } = world;
    let dir = app.stop().await;
    let app = TestApp::spawn_config(dir, &config).await;
    let world = World { app, forge, repo, log, name, config };
    assert_eq!(world.app.db.task(id).await.unwrap().unwrap().0.status, "needs_input");
    let answer = world.send(world.forge.comment_as(world.repo, 42, "alice", "/forgehand long, please")).await;
    assert_eq!(answer.json["outcome"], "answered", "{}", answer.text);
    world.status(id, "done").await;
    let runs = world.runs_on_42();
    assert_eq!(runs.len(), 2);
    assert!(
        runs[1]["resume"].is_string() && runs[1]["argv"].to_string().contains("long, please"),
        "{runs:?}"
    );
}

/// A database of the previous schema, with a task in it, is upgraded at the next start: the
/// task keeps its fields and has asked nothing, and a task waiting for an answer counts as
/// the issue's active task (the index covers `needs_input`).
#[tokio::test]
async fn the_migration_upgrades_a_database_of_the_previous_release() {
    use sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().unwrap();
    let (url, old) = database_migrated_to(dir.path(), migrations_before("questions")).await;
    old.execute_unprepared(
        "INSERT INTO tasks (forge, repo, number, kind, trigger, requested_by, title, instructions, clone_url, \
         status, attempt, cancel_requested, created_at, updated_at) VALUES ('github', 'o/r', 7, 'implement', \
         'label', 'alice', 'Old', '', 'file:///r.git', 'done', 1, false, '2026-11-30 10:00:00+00:00', \
         '2026-11-30 10:00:00+00:00')",
    )
    .await
    .unwrap();
    old.close().await.unwrap();

    let config = config_text_on(&dir.path().join("data"), &format!("[database]\nurl = \"{url}\"\n"), "");
    let app = TestApp::spawn_config(dir, &config).await;
    let old_task = app.tasks().await.into_iter().find(|t| t.title == "Old").expect("the old task is kept");
    assert_eq!((old_task.questions_asked, old_task.question.as_deref()), (0, None));

    let conn = app.db.connection_for_tests().clone();
    let request = forgehand::trigger::TaskRequest {
        kind: forgehand::trigger::TaskKind::Implement,
        trigger: forgehand::trigger::TriggerKind::Label,
        repo: "o/r".into(),
        clone_url: "file:///r.git".into(),
        number: 8.into(),
        title: "t".into(),
        requested_by: "alice".into(),
        instructions: String::new(),
        branch: None,
        routing: Default::default(),
        feedback_ref: None,
    };
    let id = forgehand::db::queries::insert_task(&conn, "github", &request).await.unwrap().unwrap();
    conn.execute_unprepared(&format!("UPDATE tasks SET status = 'needs_input' WHERE id = {id}"))
        .await
        .unwrap();
    let second = forgehand::db::queries::insert_task(&conn, "github", &request).await.unwrap();
    assert_eq!(second, None, "a waiting task is the issue's active task");
}

/// Inside bubblewrap the agent's CLI still starts `forgehand mcp` (bound read-only) and
/// the question reaches the executor through the task's question directory.
#[tokio::test]
async fn a_sandboxed_agent_asks_too() {
    if forgehand::executor::sandbox::check_bubblewrap().is_err() {
        eprintln!("skipped: bubblewrap cannot run here");
        return;
    }
    let world = World::start_with(Dialect::Github, "", "sandbox = \"bubblewrap\"").await;
    let id = world.label(42).await;
    world.asked(id).await;
    let answer = world.send(world.forge.comment_as(world.repo, 42, "alice", "Long.")).await;
    assert_eq!(answer.json["outcome"], "answered", "{}", answer.text);
    world.status(id, "done").await;
}

/// Answers that arrive before the task resumes are joined into one prompt (the queue is
/// held so that the first answer cannot be taken alone).
#[tokio::test]
async fn two_answers_before_the_resume_are_joined() {
    let world = World::start(Dialect::Gitea, "").await;
    let id = world.label(42).await;
    world.asked(id).await;
    assert!(world.app.db.hold(world.repo, "test").await.unwrap());
    world.forge.set_permission(world.repo, "carol", "write");
    for (who, text) in [("alice", "Use --verbose."), ("carol", "And say so in the README.")] {
        let answer = world.send(world.forge.comment_as(world.repo, 42, who, text)).await;
        assert_eq!(answer.json["outcome"], "answered", "{}", answer.text);
    }
    assert_eq!(world.status(id, "queued").await.status, "queued", "held: answered but not claimed");
    assert!(world.app.db.release_hold(world.repo).await.unwrap());
    world.status(id, "done").await;
    let runs = world.runs_on_42();
    assert_eq!(runs.len(), 2, "one resumed run for both answers: {runs:?}");
    let prompt = runs[1]["argv"].to_string();
    assert!(prompt.contains("Use --verbose.") && prompt.contains("And say so in the README."), "{prompt}");
    assert!(prompt.contains("@alice answered:") && prompt.contains("@carol answered:"), "{prompt}");
    let metrics = reqwest::get(format!("{}/metrics", world.app.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("forgehand_questions_asked_total 1\n"), "{metrics}");
    assert!(metrics.contains("forgehand_deliveries_total{outcome=\"answered\"} 2\n"), "{metrics}");
}
