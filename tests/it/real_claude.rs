//! The real Claude Code CLI (pinned in tests/claude) as forgehand's agent, against the
//! scripted model server: proves the flags, the output parsing and the failure handling
//! that a stand-in cannot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::executor::{BRANCH, bare_remote, remote_file};
use crate::fake_forge::{Dialect, FakeForge};
use crate::harness::*;
use crate::model_server::{Behaviour, ModelServer, Turn};
use crate::real_codex::{codex_binary, codex_env};

const LONG: Duration = Duration::from_secs(90);
/// The version pinned in tests/claude/package.json.
const PINNED_VERSION: &str = "2.1.332";

/// The CLI under test: `FORGEHAND_TEST_CLAUDE` (what `make agent-compat` sets for each
/// version), else the pinned one; missing means `cd tests/claude && npm ci` was not run.
pub fn claude_binary() -> PathBuf {
    let path = match std::env::var_os("FORGEHAND_TEST_CLAUDE") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/claude/node_modules/@anthropic-ai/claude-code-linux-x64/claude"),
    };
    assert!(
        path.is_file(),
        "the Claude Code CLI is missing at {}: run `(cd tests/claude && npm ci --no-audit --no-fund \
         --ignore-scripts)` or `make test`",
        path.display()
    );
    path
}

/// The version of the CLI under test: `FORGEHAND_TEST_CLAUDE_VERSION` with
/// `FORGEHAND_TEST_CLAUDE`, else the pinned one.
fn expected_version() -> String {
    std::env::var("FORGEHAND_TEST_CLAUDE_VERSION").unwrap_or_else(|_| PINNED_VERSION.to_owned())
}

/// The variables that point the CLI at `model` and keep it off the network and out of
/// the user's own `~/.claude`.
pub fn claude_env(home: &Path, model: &ModelServer) -> Vec<(String, String)> {
    [
        ("HOME", home.display().to_string()),
        ("ANTHROPIC_BASE_URL", model.url.clone()),
        ("ANTHROPIC_API_KEY", "sk-ant-test-not-a-key".into()),
        ("DISABLE_TELEMETRY", "1".into()),
        ("DISABLE_AUTOUPDATER", "1".into()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".into()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

/// The agent program a test runs.
pub enum Cli {
    Claude,
    Codex,
    /// `kind = "command"` with this program and `agent.prompt_via`.
    Script {
        path: PathBuf,
        prompt_via: &'static str,
    },
}

/// What a test changes about the run.
pub struct Options {
    pub dialect: Dialect,
    pub cli: Cli,
    pub max_turns: u32,
    pub timeout_secs: u64,
    pub max_attempts: u32,
    /// `agent.args`.
    pub args: Vec<String>,
    /// `agent.allowed_tools`.
    pub allowed_tools: Vec<String>,
    /// Appended to the configuration (`REPO` replaced by the repository's name).
    pub extra: String,
    /// Added to the `[agent]` section.
    pub agent_extra: String,
}

impl Options {
    /// The real Claude Code CLI with no permission settings: forgehand's defaults.
    pub fn new(dialect: Dialect) -> Options {
        Options {
            dialect,
            cli: Cli::Claude,
            max_turns: 10,
            timeout_secs: 60,
            max_attempts: 3,
            args: Vec::new(),
            allowed_tools: Vec::new(),
            extra: String::new(),
            agent_extra: String::new(),
        }
    }

    /// The real Claude Code CLI with file edits and any shell command allowed.
    pub fn any_command(dialect: Dialect) -> Options {
        let args = ["--permission-mode", "acceptEdits", "--allowedTools", "Bash"].map(String::from).to_vec();
        Options { args, ..Options::new(dialect) }
    }

    /// Another agent program, with no `agent.args`.
    pub fn with_cli(dialect: Dialect, cli: Cli) -> Options {
        Options { cli, args: Vec::new(), ..Options::new(dialect) }
    }
}

/// forgehand with a real agent CLI, a fake forge with issue 42, a bare remote and a model.
pub struct World {
    pub app: TestApp,
    pub forge: FakeForge,
    pub model: ModelServer,
    pub remote: PathBuf,
    pub data: PathBuf,
    pub repo: &'static str,
    dialect: Dialect,
}

impl World {
    pub async fn start(options: Options, behaviour: Behaviour) -> World {
        let dir = tempfile::tempdir().unwrap();
        let model = ModelServer::start(behaviour).await;
        let (forge, repo, name) = match options.dialect {
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
            "The CLI needs --verbose.",
            &["forgehand"],
            "alice",
        );
        forge.set_permission(repo, "alice", "write");
        forge.set_permission(repo, &forge.bot_login(), "admin");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let (kind, command, env, prompt_via) = match options.cli {
            Cli::Claude => ("claude", claude_binary(), claude_env(&home, &model), "stdin"),
            Cli::Codex => ("codex", codex_binary(), codex_env(&home, &model), "stdin"),
            Cli::Script { path, prompt_via } => {
                ("command", path, vec![("HOME".to_owned(), home.display().to_string())], prompt_via)
            }
        };
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k} = \"{v}\"")).collect();
        let data = dir.path().join("data");
        let config = format!(
            r#"
data_dir = "{data}"
{database}
[server]
listen = "127.0.0.1:0"
public_url = "http://forgehand.test"
[auth]
admin_token = "{ADMIN_TOKEN}"
[executor]
enabled = true
timeout_secs = {timeout}
max_attempts = {max_attempts}
poll_interval_secs = 1
retry_base_secs = 1
shutdown_grace_secs = 1
[agent]
kind = "{kind}"
command = "{command}"
prompt_via = "{prompt_via}"
args = {args:?}
allowed_tools = {allowed_tools:?}
max_turns = {max_turns}
env = {{ {env} }}
{agent_extra}
[git]
author_name = "forgehand-test"
author_email = "forgehand@test"
{forge}
{extra}"#,
            data = data.display(),
            database = database_section().await,
            timeout = options.timeout_secs,
            max_attempts = options.max_attempts,
            args = options.args,
            allowed_tools = options.allowed_tools,
            command = command.display(),
            max_turns = options.max_turns,
            env = env.join(", "),
            forge = forge.config_toml(name),
            extra = options.extra.replace("REPO", repo),
            agent_extra = options.agent_extra,
        );
        let app = TestApp::spawn_config(dir, &config).await;
        World { app, forge, model, remote, data, repo, dialect: options.dialect }
    }

    pub async fn deliver_label(&self) -> i64 {
        let (forge, delivery) = match self.dialect {
            Dialect::Github => ("github", Delivery::github("issues", fixture("github/issues_labeled.json"))),
            Dialect::Gitea => (
                "gitea",
                Delivery::gitea("issues", "issue_label", fixture("gitea/issues_label_updated.json")),
            ),
        };
        let answer = self.app.deliver(forge, delivery).await;
        assert_eq!(answer.status, 202, "{}", answer.text);
        answer.json["task_id"].as_i64().unwrap()
    }

    /// Task `id` once it ended and its labels settled on the forge.
    pub async fn finished(&self, id: i64) -> forgehand::db::entities::tasks::Model {
        let task =
            self.app.wait_task(id, LONG, |t| !["queued", "running"].contains(&t.status.as_str())).await;
        let (repo, wanted) =
            (self.repo, if task.status == "failed" { "forgehand:failed" } else { "forgehand:done" });
        let settled = self
            .forge
            .wait_until(
                |state| {
                    let labels = state.labels_of(repo, 42);
                    !labels.iter().any(|l| l == "forgehand:working") && labels.iter().any(|l| l == wanted)
                },
                LONG,
            )
            .await;
        assert!(settled, "labels never settled: {:?}", self.forge.labels(repo, 42));
        task
    }

    /// Alice answers the agent's question on #42; the resumed task ends done with the file
    /// the scripts write after the answer.
    pub async fn answer_then_done(&self, id: i64, text: &str) {
        let answer = self.forge.comment_as(self.repo, 42, "alice", text);
        let delivered = self.app.deliver("github", answer.delivery()).await;
        assert_eq!(delivered.json["outcome"], "answered", "{}", delivered.text);
        let task = self.finished(id).await;
        assert_eq!(task.status, "done", "{task:?}");
        assert_eq!(remote_file(&self.remote, BRANCH, "VERBOSE.md").unwrap().0, "The CLI takes --verbose.\n");
    }

    pub fn bot_comments(&self) -> Vec<String> {
        let bot = self.forge.bot_login();
        self.forge.comments(self.repo, 42).into_iter().filter(|c| c.user == bot).map(|c| c.body).collect()
    }

    /// The lines the CLI printed (without the verdict forgehand adds after each run).
    pub fn transcript(&self, id: i64) -> Vec<serde_json::Value> {
        let all = self.transcript_file(id);
        all.into_iter().filter(|line| line["type"] != forgehand::executor::agent::VERDICT_TYPE).collect()
    }

    /// Every line of the transcript file.
    pub fn transcript_file(&self, id: i64) -> Vec<serde_json::Value> {
        let path = self.data.join("transcripts").join(format!("task-{id}.jsonl"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

fn edit_script() -> Vec<Turn> {
    vec![
        Turn::write("VERBOSE.md", "The CLI takes --quiet.\n"),
        Turn::edit("VERBOSE.md", "--quiet", "--verbose"),
        Turn::bash("printf 'ran\\n' > bash.txt"),
        Turn::text("Added VERBOSE.md documenting --verbose."),
    ]
}

/// The real CLI writes a wrong answer, the repository's check fails, forgehand resumes the
/// CLI's session with the failure, and the fixed answer goes into the pull request.
#[tokio::test]
async fn the_real_cli_fixes_a_failing_check_when_resumed() {
    let check = "grep -q right ANSWER.txt || { echo 'ANSWER.txt must say right'; exit 1; }";
    let extra = format!("[[repos]]\nname = \"REPO\"\nchecks = [{check:?}]\nfix_rounds = 1\n");
    let options = Options { extra, ..Options::any_command(Dialect::Gitea) };
    let script = vec![
        Turn::write("ANSWER.txt", "wrong\n"),
        Turn::text("Wrote the answer."),
        Turn::bash("printf 'right\\n' > ANSWER.txt"),
        Turn::text("Fixed the answer."),
    ];
    let world = World::start(options, Behaviour::Script(script)).await;
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!(task.status, "done", "{task:?}");
    assert_eq!(task.checks_result.as_deref(), Some("fixed"), "{task:?}");
    assert_eq!(remote_file(&world.remote, BRANCH, "ANSWER.txt").unwrap().0, "right\n");

    let turns = world.model.turn_requests();
    assert_eq!(turns.len(), 4, "two turns, then two more in the resumed session");
    let resumed = turns[2]["messages"].to_string();
    assert!(resumed.contains("Wrote the answer."), "the fix round continues the session: {resumed}");
    assert!(resumed.contains("ANSWER.txt must say right"), "the check's output reached the model");
    let pulls = world.forge.pulls(world.repo);
    assert_eq!(pulls.len(), 1);
    assert!(!pulls[0].draft && pulls[0].body.starts_with("Fixed the answer."), "{:?}", pulls[0]);
    assert!(
        world.bot_comments()[0].contains("- ✅ checks pass after fix round 1: 1 command"),
        "{:?}",
        world.bot_comments()
    );
}

/// The real CLI calls `mcp__forgehand__ask_question` (served by `forgehand mcp`, which it
/// starts from `--mcp-config`); the task waits for an answer; a person's comment resumes the
/// same session, which finishes the work.
#[tokio::test]
async fn the_real_cli_asks_a_question_and_finishes_after_the_answer() {
    const QUESTION: &str = "Should the flag be -v or --verbose?";
    let agent_extra = format!("forgehand_command = \"{}\"", env!("CARGO_BIN_EXE_forgehand"));
    let options = Options { agent_extra, ..Options::new(Dialect::Github) };
    let ask =
        Turn::Tools(vec![("mcp__forgehand__ask_question".into(), serde_json::json!({"question": QUESTION}))]);
    let script = vec![
        ask,
        Turn::text("I asked which flag to use."),
        Turn::write("VERBOSE.md", "The CLI takes --verbose.\n"),
        Turn::text("Added VERBOSE.md, as answered."),
    ];
    let world = World::start(options, Behaviour::Script(script)).await;
    let id = world.deliver_label().await;
    let waiting = world.app.wait_task(id, LONG, |t| t.status != "queued" && t.status != "running").await;
    assert_eq!(waiting.status, "needs_input", "{waiting:?}");
    assert_eq!(waiting.question.as_deref(), Some(QUESTION));
    let told = world.model.turn_requests()[1]["messages"].to_string();
    assert!(told.contains("end your turn"), "the tool told the model to stop: {told}");
    // The question is posted after the status is committed: wait for it.
    let bot = world.forge.bot_login();
    let quoted = format!("> {QUESTION}");
    let asked = world
        .forge
        .wait_until(
            |s| s.comments_of(world.repo, 42).iter().any(|c| c.user == bot && c.body.contains(&quoted)),
            LONG,
        )
        .await;
    assert!(asked, "{:?}", world.bot_comments());

    world.answer_then_done(id, "Use --verbose, please.").await;
    let turns = world.model.turn_requests();
    assert_eq!(turns.len(), 4, "two turns, then two more in the resumed session");
    let resumed = turns[2]["messages"].to_string();
    assert!(
        resumed.contains("I asked which flag to use.") && resumed.contains("Use --verbose, please."),
        "{resumed}"
    );
    assert_eq!(world.forge.pulls(world.repo).len(), 1);
}

async fn happy_path(dialect: Dialect) {
    let world = World::start(Options::new(dialect), Behaviour::Script(edit_script())).await;
    let id = world.deliver_label().await;
    let task = world.finished(id).await;
    assert_eq!(task.status, "done", "{task:?}");
    assert_eq!(task.turns, Some(4), "{task:?}");
    let cost = task.cost_usd.expect("the result line carries the cost");
    assert!(cost > 0.0, "{task:?}");

    let (content, author) = remote_file(&world.remote, BRANCH, "VERBOSE.md").expect("the branch was pushed");
    assert_eq!(content, "The CLI takes --verbose.\n");
    assert_eq!(author, "forgehand-test");
    assert_eq!(remote_file(&world.remote, BRANCH, "bash.txt").unwrap().0, "ran\n");

    let pulls = world.forge.pulls(world.repo);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(pulls[0].body.contains("Closes #42"), "{}", pulls[0].body);
    assert!(pulls[0].body.contains(&format!("4 turns · ${cost:.4}")), "{}", pulls[0].body);
    assert!(pulls[0].body.contains("Added VERBOSE.md documenting --verbose."), "{}", pulls[0].body);

    // The model saw forgehand's prompt with the issue in it.
    let other: Vec<String> = (world.model.requests().into_iter())
        .filter(|r| r.method != "POST" || !r.path.starts_with("/v1/messages"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(other.is_empty(), "the CLI called more than the Messages API: {other:?}");
    let turns = world.model.turn_requests();
    assert_eq!(turns.len(), 4, "one model request per turn");
    let first = turns[0]["messages"].to_string();
    assert!(first.contains("Add a --verbose flag to the CLI") && first.contains("The CLI needs --verbose."));

    let transcript = world.transcript(id);
    let init =
        transcript.iter().find(|l| l["type"] == "system" && l["subtype"] == "init").expect("init line");
    assert_eq!(init["claude_code_version"], expected_version());
    assert_eq!(init["permissionMode"], "acceptEdits");
    let result = transcript.last().unwrap();
    assert_eq!((result["type"].as_str(), result["is_error"].as_bool()), (Some("result"), Some(false)));
    assert_eq!(task.agent_session_id.as_deref(), init["session_id"].as_str());
}

#[tokio::test]
async fn the_real_cli_turns_a_github_issue_into_a_pull_request() {
    happy_path(Dialect::Github).await;
}

#[tokio::test]
async fn the_real_cli_turns_a_gitea_issue_into_a_pull_request() {
    happy_path(Dialect::Gitea).await;
}

/// Processes whose working directory lies under `dir` (the agent and anything it started).
fn processes_under(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir)))
        .collect()
}

/// The command name of process `pid` (`/proc/PID/comm`).
fn command_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
}

async fn failed_with(
    behaviour: Behaviour,
    options: Options,
) -> (World, forgehand::db::entities::tasks::Model) {
    let world = World::start(options, behaviour).await;
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!(task.status, "failed", "{task:?}");
    assert!(world.forge.pulls(world.repo).is_empty());
    assert!(remote_file(&world.remote, BRANCH, "VERBOSE.md").is_none());
    (world, task)
}

/// Model requests that offer tools: one per turn, and one per attempt when every call fails.
fn api_result(world: &World, task: &forgehand::db::entities::tasks::Model) -> serde_json::Value {
    let transcript = world.transcript(task.id);
    let retries = transcript.iter().filter(|l| l["subtype"] == "api_retry").count();
    assert_eq!(retries, 0, "CLAUDE_CODE_MAX_RETRIES=0 is passed through");
    transcript.last().cloned().unwrap()
}

#[tokio::test]
async fn an_unavailable_model_is_retried_by_forgehand_then_reported() {
    for (status, words) in [(529u16, "overloaded"), (429, "rate limited"), (500, "server error")] {
        let mut options = Options::new(Dialect::Github);
        options.max_attempts = 2;
        let (world, task) = failed_with(Behaviour::Status(status), options).await;
        let reason =
            format!("the model API is unavailable (HTTP {status} {words}) (gave up after 2 attempts)");
        assert_eq!(task.error.as_deref(), Some(reason.as_str()), "{status}: {task:?}");
        assert_eq!(task.attempt, 2, "forgehand retried {status} once");
        assert_eq!(world.model.turn_requests().len(), 2, "one model call per attempt");
        let comments = world.bot_comments();
        assert!(comments[0].starts_with(&format!("❌ forgehand could not finish: {reason}")), "{comments:?}");
        let (_, events) = world.app.db.task(task.id).await.unwrap().unwrap();
        let retried =
            events.iter().any(|e| e.message.starts_with("retrying in 1s: the model API is unavailable"));
        assert!(retried, "{events:#?}");
        let result = api_result(&world, &task);
        assert_eq!(
            (result["is_error"].as_bool(), result["api_error_status"].as_u64()),
            (Some(true), Some(u64::from(status)))
        );
    }
}

#[tokio::test]
async fn an_overloaded_model_recovers_on_forgehand_retry() {
    let then = Box::new(Behaviour::Script(edit_script()));
    let world =
        World::start(Options::new(Dialect::Gitea), Behaviour::FailFirst { status: 529, times: 1, then })
            .await;
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!((task.status.as_str(), task.attempt), ("done", 2), "{task:?}");
    assert_eq!(remote_file(&world.remote, BRANCH, "VERBOSE.md").unwrap().0, "The CLI takes --verbose.\n");
    assert_eq!(world.forge.pulls(world.repo).len(), 1);
}

#[tokio::test]
async fn a_rejected_model_request_fails_at_once() {
    let (world, task) = failed_with(Behaviour::Status(400), Options::new(Dialect::Github)).await;
    let reason = "the model API rejected the request (HTTP 400)";
    assert_eq!((task.error.as_deref(), task.attempt), (Some(reason), 1), "{task:?}");
    assert!(world.bot_comments()[0].starts_with(&format!("❌ forgehand could not finish: {reason}")));
    assert_eq!(api_result(&world, &task)["api_error_status"], 400);
}

#[tokio::test]
async fn permission_denials_fail_the_task_and_are_reported() {
    // The default allows edits and the usual build tools, not any command.
    let options = Options::new(Dialect::Gitea);
    let script = vec![Turn::bash("curl -s http://127.0.0.1:9/"), Turn::text("Fetched it.")];
    let (world, task) = failed_with(Behaviour::Script(script), options).await;
    let reason =
        "the agent was refused permission 1 time (Bash); allow the tools it needs in agent.allowed_tools";
    assert_eq!(task.error.as_deref(), Some(reason), "{task:?}");
    assert!(world.bot_comments()[0].contains(reason), "{:?}", world.bot_comments());
    let result = world.transcript(task.id).pop().unwrap();
    assert_eq!((result["is_error"].as_bool(), result["subtype"].as_str()), (Some(false), Some("success")));
    assert_eq!(result["permission_denials"][0]["tool_name"], "Bash");
    // The CLI calls it a success; the transcript ends with forgehand's word on it.
    let last = world.transcript_file(task.id).pop().unwrap();
    assert_eq!((last["type"].as_str(), last["success"].as_bool()), (Some("forgehand.verdict"), Some(false)));
    let browser = crate::dashboard::Browser::login(&world.app).await;
    let (status, page) = browser.get(&format!("/tasks/{}", task.id)).await;
    assert_eq!(status, 200);
    assert!(page.contains("refused permission 1 time (Bash)"), "the task page names the denial");
    let transcript = &page[page.find("id=\"transcript\"").unwrap()..];
    let ended = transcript.rfind("forgehand: the run failed: the agent was refused permission");
    assert!(ended.is_some_and(|at| !transcript[at..].contains("success")), "{transcript}");
}

#[tokio::test]
async fn allowed_tools_let_listed_tools_run_and_refuse_the_rest() {
    let mut options = Options::new(Dialect::Github);
    options.allowed_tools = vec!["Write".into(), "Edit".into()];
    let script = vec![
        Turn::write("VERBOSE.md", "The CLI takes --verbose.\n"),
        Turn::bash("printf 'ran\\n' > bash.txt"),
        Turn::text("Done."),
    ];
    let world = World::start(options, Behaviour::Script(script)).await;
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!(task.status, "failed", "{task:?}");
    let error = task.error.as_deref().unwrap();
    assert!(error.starts_with("the agent was refused permission 1 time (Bash)"), "{error}");
    // What the allowed tool did is pushed for people to look at; the refused one did nothing.
    let written = remote_file(&world.remote, BRANCH, "VERBOSE.md").map(|(content, _)| content);
    assert_eq!(written.as_deref(), Some("The CLI takes --verbose.\n"));
    assert!(remote_file(&world.remote, BRANCH, "bash.txt").is_none());
    assert!(world.forge.pulls(world.repo).is_empty());
    let transcript = world.transcript(task.id);
    let init = transcript.iter().find(|l| l["subtype"] == "init").unwrap();
    assert_eq!(init["permissionMode"], "default");
    let results: Vec<serde_json::Value> = (transcript.iter().filter(|l| l["type"] == "user"))
        .flat_map(|l| l["message"]["content"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(results.len(), 2, "{results:?}");
    assert_ne!(results[0]["is_error"], true, "Write was allowed: {}", results[0]);
    assert_eq!(results[1]["is_error"], true, "Bash was refused: {}", results[1]);
}

#[tokio::test]
async fn a_timeout_stops_the_cli_and_the_commands_it_started() {
    let mut options = Options::any_command(Dialect::Github);
    options.timeout_secs = 5;
    let script = vec![Turn::bash("(tail -f /dev/null &) ; tail -f /dev/null"), Turn::text("Waited.")];
    let world = World::start(options, Behaviour::Script(script)).await;
    let id = world.deliver_label().await;
    let root = world.data.parent().unwrap().to_owned();
    let tails = || processes_under(&root).into_iter().filter(|pid| command_of(*pid) == "tail").count();
    poll_until(LONG, || tails() >= 2).await;
    assert_eq!(tails(), 2, "the scripted command never started");
    let task = world.finished(id).await;
    assert_eq!(task.status, "failed", "{task:?}\n{:#?}", world.transcript(task.id));
    assert!(task.error.as_deref().unwrap().starts_with("the agent did not finish in time"), "{task:?}");
    poll_until(Duration::from_secs(10), || processes_under(&root).is_empty()).await;
    assert_eq!(processes_under(&root), Vec::<u32>::new(), "the CLI or its commands outlived the timeout");
}

#[tokio::test]
async fn a_model_that_never_stops_ends_at_max_turns() {
    let mut options = Options::any_command(Dialect::Gitea);
    options.max_turns = 2;
    let (world, task) = failed_with(Behaviour::Script(vec![Turn::bash("true")]), options).await;
    let error = task.error.as_deref().unwrap();
    assert!(
        error.starts_with("the agent used all its turns") && error.contains("agent.max_turns"),
        "{error}"
    );
    assert_eq!(world.model.turn_requests().len(), 2, "--max-turns 2 reached the CLI");
    let result = world.transcript(task.id).pop().unwrap();
    assert_eq!(result["subtype"], "error_max_turns");
    assert!(world.bot_comments()[0].contains("agent.max_turns"));
}

#[tokio::test]
async fn a_stalled_model_stream_is_stopped_at_the_timeout() {
    let mut options = Options::new(Dialect::Github);
    options.timeout_secs = 3;
    let (world, task) = failed_with(Behaviour::Stall, options).await;
    assert!(task.error.as_deref().unwrap().starts_with("the agent did not finish in time"), "{task:?}");
    assert!(world.bot_comments()[0].contains("did not finish in time"));
    let root = world.data.parent().unwrap().to_owned();
    poll_until(Duration::from_secs(10), || processes_under(&root).is_empty()).await;
    assert_eq!(processes_under(&root), Vec::<u32>::new(), "the CLI outlived its timeout");
}

/// The options the pinned CLI's `--help` lists, e.g. `-p`, `--print`, `--resume`.
fn listed_options(home: &Path) -> Vec<String> {
    let out = std::process::Command::new(claude_binary())
        .arg("--help")
        .env_clear()
        .env("HOME", home)
        .env("DISABLE_AUTOUPDATER", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let help = String::from_utf8(out.stdout).unwrap();
    let specs = help.lines().map(str::trim_start).filter(|l| l.starts_with('-'));
    let specs = specs.map(|l| l.split("  ").next().unwrap_or_default().to_owned());
    specs
        .flat_map(|spec| {
            spec.split(", ").map(|s| s.split(' ').next().unwrap_or_default().to_owned()).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_pinned_cli_knows_every_flag_forgehand_passes() {
    let home = tempfile::tempdir().unwrap();
    let listed = listed_options(home.path());
    assert!(listed.len() > 20 && listed.contains(&"--print".to_owned()), "{listed:?}");
    use forgehand::executor::agent::{Request, claude};
    let tools = ["Write".to_owned()];
    let request = Request {
        max_turns: 3,
        model: "sonnet",
        resume: Some("id"),
        allowed_tools: &tools,
        ..Request::new("x")
    };
    let ours = claude::args(&request);
    let flags = ours.iter().filter(|a| a.starts_with('-'));
    // --max-turns works but is not in --help: a_model_that_never_stops_ends_at_max_turns
    // proves it (the CLI stops after exactly that many model requests).
    let missing: Vec<&String> = flags.filter(|f| *f != "--max-turns" && !listed.contains(f)).collect();
    assert!(
        missing.is_empty(),
        "Claude Code {} does not list {missing:?}; see src/executor/agent/claude.rs args",
        expected_version()
    );
    for documented in ["--permission-mode", "--allowedTools"] {
        assert!(listed.iter().any(|l| l == documented), "docs/agents.md recommends {documented}");
    }
}

/// A first run that writes VERBOSE.md in one turn; a resumed follow-up (turn 3 onwards)
/// edits it. A fresh session would start over at turn 1 instead.
fn two_part_script() -> Vec<Turn> {
    vec![
        Turn::write("VERBOSE.md", "The CLI takes --quiet.\n"),
        Turn::text("Wrote VERBOSE.md."),
        Turn::edit("VERBOSE.md", "--quiet", "--verbose"),
        Turn::text("Renamed the flag."),
    ]
}

/// Runs the label task, then a review on its pull request; `between` runs in between.
async fn follow_up(between: impl FnOnce(&World)) -> (World, [forgehand::db::entities::tasks::Model; 2]) {
    follow_up_with(Options::new(Dialect::Github), two_part_script(), between).await
}

/// Runs the label task, then a review on its pull request, with `script` across both.
pub async fn follow_up_with(
    options: Options,
    script: Vec<Turn>,
    between: impl FnOnce(&World),
) -> (World, [forgehand::db::entities::tasks::Model; 2]) {
    let world = World::start(options, Behaviour::Script(script)).await;
    let first = world.finished(world.deliver_label().await).await;
    assert_eq!(first.status, "done", "{first:?}");
    between(&world);
    let pull = world.forge.pulls(world.repo).remove(0);
    let mut review: serde_json::Value =
        serde_json::from_slice(&fixture("github/pull_request_review.json")).unwrap();
    review["pull_request"]["number"] = serde_json::json!(pull.number);
    review["pull_request"]["head"]["ref"] = serde_json::json!(BRANCH);
    let review = Delivery::github("pull_request_review", serde_json::to_vec(&review).unwrap());
    let answer = world.app.deliver("github", review).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let second = world.finished(answer.json["task_id"].as_i64().unwrap()).await;
    (world, [first, second])
}

#[tokio::test]
async fn a_review_follow_up_resumes_the_session() {
    let (world, [first, second]) = follow_up(|_| {}).await;
    assert_eq!(second.status, "done", "{second:?}");
    assert_eq!(second.agent_session_id, first.agent_session_id, "the same session went on");
    let content = remote_file(&world.remote, BRANCH, "VERBOSE.md").unwrap().0;
    assert_eq!(content, "The CLI takes --verbose.\n");
    let requests = world.model.turn_requests();
    assert_eq!(requests.len(), 4);
    let history = requests[2]["messages"].to_string();
    assert!(history.contains("Wrote VERBOSE.md.") && history.contains("Add a --verbose flag"), "{history}");
}

#[tokio::test]
async fn a_follow_up_whose_session_is_gone_starts_afresh() {
    let (world, [first, second]) = follow_up(|world| {
        let projects = world.data.parent().unwrap().join("home/.claude/projects");
        std::fs::remove_dir_all(&projects).unwrap();
    })
    .await;
    assert_ne!(second.status, "failed", "{second:?}");
    assert_ne!(second.agent_session_id, first.agent_session_id);
    let requests = world.model.turn_requests();
    let fresh = requests[2]["messages"].to_string();
    assert!(!fresh.contains("Wrote VERBOSE.md."), "a fresh session carries no history: {fresh}");
    let transcript = world.transcript(second.id);
    let refused = &transcript[0];
    assert_eq!(
        (refused["type"].as_str(), refused["subtype"].as_str()),
        (Some("result"), Some("error_during_execution"))
    );
    assert!(refused["errors"].to_string().contains("No conversation found"), "{refused}");
}

#[tokio::test]
async fn the_real_cli_answers_an_inline_review_and_its_thread_gets_a_reply() {
    let world = World::start(Options::new(Dialect::Github), Behaviour::Script(two_part_script())).await;
    let first = world.finished(world.deliver_label().await).await;
    assert_eq!(first.status, "done", "{first:?}");
    let pull = world.forge.pulls(world.repo).remove(0).number;
    let comments = [("VERBOSE.md", 1, "The flag is --verbose, not --quiet.")];
    let review = world.forge.review_with_comments(world.repo, pull, "alice", "commented", "", &comments);
    let answer = world.app.deliver("github", review.delivery()).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let second = world.finished(answer.json["task_id"].as_i64().unwrap()).await;
    assert_eq!(second.status, "done", "{second:?}");
    assert_eq!(remote_file(&world.remote, BRANCH, "VERBOSE.md").unwrap().0, "The CLI takes --verbose.\n");
    // The resumed session's prompt (the third model request) carried the inline comment.
    let prompt = world.model.turn_requests()[2]["messages"].to_string();
    assert!(
        prompt.contains("1. `VERBOSE.md` line 1, @alice:")
            && prompt.contains("> The flag is --verbose, not --quiet."),
        "{prompt}"
    );
    let reply = world.forge.review_comments(world.repo, pull).into_iter().find(|c| c.in_reply_to.is_some());
    let reply = reply.expect("a reply in the thread").body;
    assert!(reply.starts_with("Addressed in `") && reply.ends_with("Renamed the flag."), "{reply}");
}
