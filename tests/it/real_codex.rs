//! The real OpenAI Codex CLI (pinned in tests/codex) as forgehand's agent
//! (`kind = "codex"`), against the scripted model server's Responses API: proves the
//! `codex exec --json` arguments, the event parsing, resume and failure handling.

use std::path::{Path, PathBuf};

use crate::executor::{BRANCH, remote_file};
use crate::fake_forge::Dialect;
use crate::model_server::{Behaviour, ModelServer, Turn};
use crate::real_claude::{Cli, Options, World, follow_up_with};

const VERSION: &str = "0.169.0";
/// How Codex offers the `ask_question` tool of the MCP server `forgehand`: the tool
/// `ask_question` of the namespace `mcp__forgehand` (see `model_server`).
const CODEX_TOOL: &str = "mcp__forgehand/ask_question";
const LONG: std::time::Duration = std::time::Duration::from_secs(90);

/// The pinned CLI; missing means `cd tests/codex && npm ci` was not run.
pub fn codex_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/codex/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex");
    assert!(
        path.is_file(),
        "the pinned Codex CLI is missing at {}: run `(cd tests/codex && npm ci --no-audit --no-fund \
         --ignore-scripts)` or `make test`",
        path.display()
    );
    path
}

/// Points the CLI at `model` through a `CODEX_HOME` of its own under `home` (the model
/// provider, no retries of its own, no analytics) and gives it a key.
pub fn codex_env(home: &Path, model: &ModelServer) -> Vec<(String, String)> {
    let codex_home = home.join(".codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    let config = format!(
        r#"model = "gpt-scripted"
model_provider = "scripted"

[model_providers.scripted]
name = "scripted model server"
base_url = "{url}/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false
"#,
        url = model.url
    );
    std::fs::write(codex_home.join("config.toml"), config).unwrap();
    [
        ("HOME", home.display().to_string()),
        ("CODEX_HOME", codex_home.display().to_string()),
        ("OPENAI_API_KEY", "sk-test-not-a-key".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

/// Codex with its own sandbox off: the tests run as root in a container, where its
/// Landlock sandbox may not be available (see docs/agents.md).
fn codex_options(dialect: Dialect) -> Options {
    let mut options = Options::with_cli(dialect, Cli::Codex);
    options.args = vec!["--dangerously-bypass-approvals-and-sandbox".into()];
    options
}

#[tokio::test]
async fn the_real_codex_cli_turns_an_issue_into_a_pull_request() {
    let script = vec![
        Turn::shell("printf 'The CLI takes --quiet.\\n' > VERBOSE.md"),
        Turn::shell("sed -i 's/--quiet/--verbose/' VERBOSE.md"),
        Turn::text("Added VERBOSE.md documenting --verbose."),
    ];
    let world = World::start(codex_options(Dialect::Github), Behaviour::Script(script)).await;
    let id = world.deliver_label().await;
    let task = world.finished(id).await;
    assert_eq!(task.status, "done", "{task:?}");

    let (content, author) = remote_file(&world.remote, BRANCH, "VERBOSE.md").expect("the branch was pushed");
    assert_eq!(content, "The CLI takes --verbose.\n");
    assert_eq!(author, "forgehand-test");
    let pulls = world.forge.pulls(world.repo);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(pulls[0].body.contains("Added VERBOSE.md documenting --verbose."), "{}", pulls[0].body);

    let turns = world.model.turn_requests();
    assert_eq!(turns.len(), 3, "one model request per turn");
    let first = turns[0]["input"].to_string();
    assert!(first.contains("Add a --verbose flag to the CLI") && first.contains("The CLI needs --verbose."));
    let other: Vec<String> = (world.model.requests().into_iter())
        .filter(|r| r.method != "POST" || !r.path.starts_with("/v1/responses"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(other.is_empty(), "the CLI called more than the Responses API: {other:?}");

    let transcript = world.transcript(id);
    let thread = transcript.iter().find(|l| l["type"] == "thread.started").expect("thread.started");
    assert_eq!(task.agent_session_id.as_deref(), thread["thread_id"].as_str());
    let commands = transcript.iter().filter(|l| l["item"]["type"] == "command_execution");
    assert!(commands.filter(|l| l["type"] == "item.completed").all(|l| l["item"]["exit_code"] == 0));
    assert_eq!(transcript.last().unwrap()["type"], "turn.completed");
}

/// The help text of `codex <args> --help`.
fn help(args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(codex_binary())
        .args(args)
        .arg("--help")
        .env_clear()
        .env("HOME", home.path())
        .env("CODEX_HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_pinned_codex_knows_every_flag_forgehand_passes() {
    let version = std::process::Command::new(codex_binary()).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("codex-cli {VERSION}"));
    use forgehand::executor::agent::{Request, codex};
    for resume in [None, Some("0199-abc")] {
        let launch = codex::launch(&Request { model: "gpt-5", resume, ..Request::new("x") });
        let command: Vec<&str> =
            launch.args.iter().take_while(|a| !a.starts_with('-')).map(String::as_str).collect();
        let text = help(&command);
        let flags = launch.args.iter().filter(|a| a.starts_with('-') && a.len() > 1);
        for flag in flags {
            let listed = text.lines().any(|l| l.trim_start().split([',', ' ']).any(|word| word == flag));
            assert!(
                listed,
                "`codex {}` does not list {flag}; see src/executor/agent/codex.rs",
                command.join(" ")
            );
        }
        assert!(text.contains("`-` is used"), "the prompt can come from stdin");
    }
}

#[tokio::test]
async fn a_codex_follow_up_resumes_the_thread() {
    let script = vec![
        Turn::shell("printf 'The CLI takes --quiet.\\n' > VERBOSE.md"),
        Turn::text("Wrote VERBOSE.md."),
        Turn::shell("sed -i 's/--quiet/--verbose/' VERBOSE.md"),
        Turn::text("Renamed the flag."),
    ];
    let (world, [first, second]) = follow_up_with(codex_options(Dialect::Github), script, |_| {}).await;
    assert_eq!(second.status, "done", "{second:?}");
    assert_eq!(second.agent_session_id, first.agent_session_id, "the same thread went on");
    assert_eq!(remote_file(&world.remote, BRANCH, "VERBOSE.md").unwrap().0, "The CLI takes --verbose.\n");
    let requests = world.model.turn_requests();
    assert_eq!(requests.len(), 4);
    let history = requests[2]["input"].to_string();
    assert!(history.contains("Wrote VERBOSE.md.") && history.contains("Add a --verbose flag"), "{history}");
}

#[tokio::test]
async fn a_codex_follow_up_whose_thread_is_gone_starts_afresh() {
    let script = vec![
        Turn::shell("printf 'The CLI takes --quiet.\\n' > VERBOSE.md"),
        Turn::text("Wrote VERBOSE.md."),
        Turn::shell("sed -i 's/--quiet/--verbose/' VERBOSE.md"),
        Turn::text("Renamed the flag."),
    ];
    let (world, [first, second]) = follow_up_with(codex_options(Dialect::Github), script, |world| {
        let sessions = world.data.parent().unwrap().join("home/.codex/sessions");
        std::fs::remove_dir_all(&sessions).unwrap();
    })
    .await;
    // A fresh thread starts the script over: its first turn rewrites what is there already.
    assert_ne!(second.status, "failed", "{second:?}");
    assert_ne!(second.agent_session_id, first.agent_session_id);
    let fresh = world.model.turn_requests()[2]["input"].to_string();
    assert!(!fresh.contains("Wrote VERBOSE.md."), "a fresh thread carries no history: {fresh}");
}

#[tokio::test]
async fn a_rejected_codex_request_fails_at_once() {
    let world = World::start(codex_options(Dialect::Gitea), Behaviour::Status(400)).await;
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!((task.status.as_str(), task.attempt), ("failed", 1), "{task:?}");
    // Codex passes a 400's body on without its status: the body's message is the reason.
    let reason = "the agent reported an error (turn_failed: scripted: scripted 400)";
    assert_eq!(task.error.as_deref(), Some(reason));
    assert!(world.bot_comments()[0].contains(reason), "{:?}", world.bot_comments());
    let failed = world.transcript(task.id).pop().unwrap();
    assert_eq!(failed["type"], "turn.failed");
    assert!(failed["error"]["message"].as_str().unwrap().contains("scripted 400"), "{failed}");
    assert!(world.forge.pulls(world.repo).is_empty());
}

#[tokio::test]
async fn an_overloaded_model_under_codex_is_retried_by_forgehand_then_reported() {
    let mut options = codex_options(Dialect::Github);
    options.max_attempts = 2;
    let world = World::start(options, Behaviour::Status(529)).await;
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!((task.status.as_str(), task.attempt), ("failed", 2), "{task:?}");
    let reason = "the model API is unavailable (HTTP 529 overloaded) (gave up after 2 attempts)";
    assert_eq!(task.error.as_deref(), Some(reason));
    assert_eq!(
        world.model.turn_requests().len(),
        2,
        "one model call per attempt: Codex's own retries are off"
    );
    assert!(world.bot_comments()[0].contains(reason), "{:?}", world.bot_comments());
    let comments = world.bot_comments().concat();
    assert!(!comments.contains("127.0.0.1"), "the model API's address is not posted: {comments}");
}

/// Codex gets `forgehand mcp` as an MCP server (`-c mcp_servers.forgehand.…`), calls
/// `ask_question`, waits in `needs_input`, and finishes in the resumed thread after the answer.
#[tokio::test]
async fn the_real_codex_cli_asks_a_question_and_finishes_after_the_answer() {
    const QUESTION: &str = "Should the flag be -v or --verbose?";
    let mut options = codex_options(Dialect::Github);
    options.agent_extra = format!("forgehand_command = \"{}\"", env!("CARGO_BIN_EXE_forgehand"));
    let ask = Turn::Tools(vec![(CODEX_TOOL.into(), serde_json::json!({"question": QUESTION}))]);
    let script = vec![
        ask,
        Turn::text("I asked which flag to use."),
        Turn::shell("printf 'The CLI takes --verbose.\\n' > VERBOSE.md"),
        Turn::text("Added VERBOSE.md, as answered."),
    ];
    let world = World::start(options, Behaviour::Script(script)).await;
    let id = world.deliver_label().await;
    let waiting = world.app.wait_task(id, LONG, |t| t.status != "queued" && t.status != "running").await;
    let tools: Vec<String> = world.model.turn_requests()[0]["tools"]
        .as_array()
        .map(|t| t.iter().filter(|t| t.to_string().contains("forgehand")).map(|t| t.to_string()).collect())
        .unwrap_or_default();
    assert_eq!(tools.len(), 1, "Codex was offered forgehand's MCP server once: {tools:?}");
    assert!(tools[0].contains("\"name\":\"ask_question\""), "{tools:?}");
    assert_eq!(waiting.status, "needs_input", "{waiting:?}");
    assert_eq!(waiting.question.as_deref(), Some(QUESTION));

    world.answer_then_done(id, "Use --verbose, please.").await;
    let resumed = world.model.turn_requests().last().unwrap()["input"].to_string();
    assert!(
        resumed.contains("I asked which flag to use.") && resumed.contains("Use --verbose, please."),
        "{resumed}"
    );
}
