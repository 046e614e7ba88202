//! `forgehand doctor`, the real binary as a user runs it: against fake forges (real HTTP
//! servers), the stand-in agent and the real Claude Code CLI, a real SQLite file.

use std::path::Path;
use std::process::Output;

use tokio::process::Command;

use crate::fake_forge::{BOT_LOGIN, FakeForge, TOKEN};
use crate::harness::*;
use crate::model_server::{Behaviour, ModelServer, Turn};

const BINARY: &str = env!("CARGO_BIN_EXE_forgehand");
const AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agent/fake-claude");
const REPO: &str = "acme-corp/doctor-demo";

/// Runs `forgehand --config <dir>/forgehand.toml doctor <args>` with `config` as the file.
async fn doctor(dir: &Path, config: &str, args: &[&str]) -> (Option<i32>, Vec<String>, String) {
    let path = dir.join("forgehand.toml");
    std::fs::write(&path, config).unwrap();
    let output: Output = Command::new(BINARY)
        .args(["--config", path.to_str().unwrap(), "doctor"])
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    for secret in [TOKEN, GITHUB_SECRET, GITEA_SECRET, "wrong-token-value"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{secret} printed:\n{stdout}{stderr}");
    }
    (output.status.code(), stdout.lines().map(str::to_owned).collect(), stderr)
}

fn line<'a>(lines: &'a [String], start: &str) -> &'a str {
    lines.iter().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no line {start:?} in {lines:#?}"))
}

fn forge_entry(forge: &FakeForge, name: &str, token: &str, secret: &str) -> String {
    format!(
        "[[forges]]\nname = \"{name}\"\nkind = \"{}\"\napi_url = \"{}\"\ntoken = \"{token}\"\nwebhook_secret = \"{secret}\"\n",
        match forge.dialect() {
            crate::fake_forge::Dialect::Github => "github",
            crate::fake_forge::Dialect::Gitea => "gitea",
        },
        forge.base_url()
    )
}

#[tokio::test]
async fn doctor_passes_a_good_setup_and_runs_the_agent_as_a_task_would() {
    let dir = tempfile::tempdir().unwrap();
    let forge = FakeForge::github().await;
    forge.add_repo(REPO, "file:///nowhere.git", "main");
    let log = dir.path().join("agent.log");
    let config = format!(
        "data_dir = \"{data}\"\n{database}\n[trigger]\nrepos = [\"{REPO}\"]\n[agent]\ncommand = \"{AGENT}\"\n\
         env = {{ FAKE_CLAUDE_LOG = \"{log}\" }}\n{forge}",
        data = dir.path().join("data").display(),
        database = database_section().await,
        log = log.display(),
        forge = forge_entry(&forge, "github", TOKEN, GITHUB_SECRET),
    );
    let (code, lines, stderr) = doctor(dir.path(), &config, &[]).await;
    assert_eq!(code, Some(0), "{lines:#?}\n{stderr}");
    let api = forge.base_url();
    line(&lines, "OK   data_dir ");
    assert!(line(&lines, "OK   database ").ends_with("opened, migrations applied, takes writes"));
    line(&lines, &format!("OK   forge github ({api}): the token works; it belongs to {BOT_LOGIN}"));
    line(&lines, &format!("OK   forge github: {BOT_LOGIN} has write permission on {REPO}"));
    line(&lines, "OK   forge github: a webhook secret is set");
    line(
        &lines,
        "OK   forge github: server.public_url http://127.0.0.1:8080 and the forge are both on this machine",
    );
    assert!(line(&lines, "OK   agent.command ").ends_with("version 2.1.0-fake (Claude Code)"), "{lines:#?}");
    let dry = line(&lines, "OK   agent dry run: edited FORGEHAND_DEMO.md in a scratch repository in ");
    assert!(dry.contains(" s, started as a task starts it"), "{dry}");
    assert_eq!(lines.last().unwrap(), "doctor: nothing stops tasks; 0 warnings.");
    assert_eq!(lines[0], format!("configuration: {}", dir.path().join("forgehand.toml").display()));
    assert!(lines[1..].iter().all(|l| l.starts_with("OK ") || l.starts_with("doctor:")), "{lines:#?}");

    // The dry run got a task's permissions (the defaults: acceptEdits and the tool set).
    let run: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&log).unwrap().lines().next().unwrap()).unwrap();
    let argv: Vec<&str> = run["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let mode = argv.iter().position(|a| *a == "--permission-mode").expect("no --permission-mode");
    assert_eq!(argv[mode + 1], "acceptEdits");
    assert!(argv.contains(&"--allowedTools"), "{argv:?}");
    assert!(!Path::new(run["cwd"].as_str().unwrap()).exists(), "the scratch repository was left behind");

    let (code, lines, _) =
        doctor(dir.path(), &config, &["--skip-agent-run", "--repo", "octo-org/other"]).await;
    assert_eq!(code, Some(1), "{lines:#?}");
    line(&lines, "SKIP agent dry run: skipped (--skip-agent-run)");
    line(&lines, "FAIL forge github: octo-org/other not found, or the token cannot see it");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        2,
        "the agent ran despite --skip-agent-run"
    );
}

#[tokio::test]
async fn doctor_names_every_problem_of_a_broken_setup_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeForge::github().await;
    let gitea = FakeForge::gitea().await;
    gitea.add_repo(REPO, "file:///nowhere.git", "main");
    gitea.set_permission(REPO, BOT_LOGIN, "read");
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let config = format!(
        "data_dir = \"{data}\"\n[trigger]\nrepos = [\"{REPO}\"]\n[agent]\ncommand = \"/nonexistent/claude\"\n\
         {github}{gitea}[[forges]]\nname = \"down\"\nkind = \"github\"\napi_url = \"http://127.0.0.1:{closed}\"\n\
         token = \"{TOKEN}\"\nwebhook_secret = \"{GITHUB_SECRET}\"\n",
        data = blocker.join("data").display(),
        github = forge_entry(&github, "github", "wrong-token-value", GITHUB_SECRET),
        gitea = forge_entry(&gitea, "gitea", TOKEN, ""),
    );
    let (code, lines, stderr) = doctor(dir.path(), &config, &[]).await;
    assert_eq!(code, Some(1), "{lines:#?}\n{stderr}");
    let data = blocker.join("data");
    line(
        &lines,
        &format!(
            "FAIL data_dir {} is not writable: creating it: Not a directory (os error 20)",
            data.display()
        ),
    );
    line(&lines, &format!("FAIL database {} (SQLite): ", data.join("forgehand.db").display()));
    line(
        &lines,
        &format!(
            "FAIL forge github ({}): the token does not work: reading the bot account: the forge refused the token (401); check forges[].token",
            github.base_url()
        ),
    );
    line(&lines, "SKIP forge github: permissions not checked: no working token");
    line(
        &lines,
        &format!(
            "FAIL forge gitea: {BOT_LOGIN} has read permission on {REPO}; forgehand needs write to push branches"
        ),
    );
    line(&lines, "FAIL forge gitea: no webhook_secret: every delivery to /webhooks/gitea is refused (403)");
    let down =
        line(&lines, &format!("FAIL forge down (http://127.0.0.1:{closed}): the token does not work: "));
    assert!(down.contains(&format!("127.0.0.1:{closed}: Connection refused (os error 111)")), "{down}");
    line(
        &lines,
        "FAIL agent.command \"/nonexistent/claude\" (kind claude): \"/nonexistent/claude\" is not an executable file",
    );
    line(&lines, "SKIP agent dry run: not run: the agent program cannot be started");
    let summary = lines.last().unwrap();
    assert!(summary.starts_with("doctor: 7 problems would stop tasks (FAIL lines)"), "{summary}\n{lines:#?}");
}

#[tokio::test]
async fn doctor_reports_the_tools_an_agent_was_refused() {
    let dir = tempfile::tempdir().unwrap();
    let forge = FakeForge::github().await;
    let config = format!(
        "data_dir = \"{data}\"\n[agent]\ncommand = \"{AGENT}\"\nenv = {{ FAKE_CLAUDE_MODE = \"denied\" }}\n{forge}",
        data = dir.path().join("data").display(),
        forge = forge_entry(&forge, "github", TOKEN, GITHUB_SECRET),
    );
    let (code, lines, _) = doctor(dir.path(), &config, &[]).await;
    assert_eq!(code, Some(1), "{lines:#?}");
    line(&lines, "WARN forge github: trigger.repos is empty");
    let failed = line(&lines, "FAIL agent dry run: failed after ");
    assert!(
        failed.contains("the agent was refused permission 2 times (Write, Bash); allow the tools it needs in agent.allowed_tools"),
        "{failed}"
    );
}

/// The real Claude Code CLI with no agent settings but its model server: the default
/// permissions let it write the file the dry run asks for.
#[tokio::test]
async fn doctor_dry_run_edits_a_file_with_the_real_claude_cli_and_default_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let forge = FakeForge::github().await;
    let script = vec![Turn::write("FORGEHAND_DOCTOR.md", "forgehand doctor\n"), Turn::text("Created it.")];
    let model = ModelServer::start(Behaviour::Script(script)).await;
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let env: Vec<String> = crate::real_claude::claude_env(&home, &model)
        .into_iter()
        .map(|(k, v)| format!("{k} = \"{v}\""))
        .collect();
    let config = format!(
        "data_dir = \"{data}\"\n[agent]\ncommand = \"{cli}\"\nenv = {{ {env} }}\n{forge}",
        data = dir.path().join("data").display(),
        cli = crate::real_claude::claude_binary().display(),
        env = env.join(", "),
        forge = forge_entry(&forge, "github", TOKEN, GITHUB_SECRET),
    );
    let (code, lines, stderr) = doctor(dir.path(), &config, &[]).await;
    assert_eq!(code, Some(0), "{lines:#?}\n{stderr}");
    line(&lines, "OK   agent dry run: edited FORGEHAND_DOCTOR.md in a scratch repository in ");
    assert!(!model.turn_requests().is_empty(), "the CLI never asked the model server");
}

#[tokio::test]
async fn doctor_says_when_the_database_takes_no_writes() {
    let dir = tempfile::tempdir().unwrap();
    let forge = FakeForge::github().await;
    let file = dir.path().join("data").join("forgehand.db");
    let config = |url: &str| {
        format!(
            "data_dir = \"{data}\"\n[database]\nurl = \"{url}\"\n{forge}",
            data = dir.path().join("data").display(),
            forge = forge_entry(&forge, "github", TOKEN, GITHUB_SECRET),
        )
    };
    let writable = config(&format!("sqlite://{}?mode=rwc", file.display()));
    let (_, lines, _) = doctor(dir.path(), &writable, &["--skip-agent-run"]).await;
    line(&lines, "OK   database sqlite://");
    let read_only = config(&format!("sqlite://{}?mode=ro", file.display()));
    let (code, lines, _) = doctor(dir.path(), &read_only, &["--skip-agent-run"]).await;
    assert_eq!(code, Some(1), "{lines:#?}");
    let failed = line(
        &lines,
        &format!("FAIL database sqlite://{}?mode=ro: opened, but a write failed: ", file.display()),
    );
    assert!(failed.contains("readonly database"), "{failed}");
}
