//! The real `forgehand` binary: first start with no config, broken configs, and kill -9.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::harness::*;

const BINARY: &str = env!("CARGO_BIN_EXE_forgehand");

/// A running daemon and what it printed.
pub struct Daemon {
    pub child: Child,
    pub stdout: Lines<BufReader<ChildStdout>>,
    pub base: String,
    /// Lines printed before the server said it listens.
    pub printed: Vec<String>,
}

fn command(cwd: &Path, args: &[&str]) -> Command {
    command_for(BINARY, cwd, args)
}

fn command_for(program: &str, cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    command
}

/// Starts `forgehand --log-format json serve` and waits until it listens.
pub async fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
    start_via(cwd, &[], args, env).await
}

/// Like [`start`], with `wrapper` (a program and its arguments, e.g. `unshare ...`)
/// running the binary; the wrapper must end by executing it.
pub async fn start_via(cwd: &Path, wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Daemon {
    let mut all_args = vec!["--log-format", "json"];
    all_args.extend_from_slice(args);
    all_args.push("serve");
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = command_for(program, cwd, rest);
            command.arg(BINARY).args(&all_args);
            command
        }
        None => command(cwd, &all_args),
    };
    command.envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = command.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line)
                && json["message"] == "forgehand listening"
            {
                return json["addr"].as_str().unwrap().to_owned();
            }
            printed.push(line);
        }
        panic!("forgehand exited before listening: {printed:?}")
    })
    .await
    .expect("forgehand did not start listening within 30 s");
    Daemon { child, stdout, base: format!("http://{addr}"), printed }
}

/// The `released_kib` of the daemon's "start-up code released from memory" line.
async fn released_kib(daemon: &mut Daemon) -> u64 {
    let wait = async {
        while let Some(line) = daemon.stdout.next_line().await.unwrap() {
            let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if json["message"] == "start-up code released from memory" {
                return json["released_kib"].as_u64().unwrap();
            }
        }
        panic!("forgehand exited before it released its start-up code")
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.expect("no release within 30 s")
}

async fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("forgehand.toml");
    std::fs::write(&path, config_text(&dir.join("data"), "").await).unwrap();
    path
}

pub async fn send(base: &str, delivery: Delivery) -> u16 {
    let mut request = reqwest::Client::new().post(format!("{base}/webhooks/github")).body(delivery.body);
    for (name, value) in delivery.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn a_delivery_answered_2xx_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path()).await;
    let config = config.to_str().unwrap();
    let mut daemon = start(dir.path(), &["--config", config], &[]).await;

    // A burst in flight; the process dies the moment the first one is answered.
    let (answered_tx, mut answered_rx) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..40 {
        let base = daemon.base.clone();
        let answered = answered_tx.clone();
        tokio::spawn(async move {
            let body = edited("github/issues_labeled.json", "/issue/number", serde_json::json!(500 + n));
            let delivery = Delivery::github("issues", body);
            let id = delivery.id();
            let status = send(&base, delivery).await;
            let _ = answered.send((id, status));
        });
    }
    drop(answered_tx);
    let (first_id, first_status) = answered_rx.recv().await.unwrap();
    daemon.child.start_kill().unwrap();
    assert_eq!(first_status, 202);
    let mut accepted = vec![first_id];
    while let Some((id, status)) = answered_rx.recv().await {
        if status == 202 {
            accepted.push(id);
        }
    }
    daemon.child.wait().await.unwrap();

    let restarted = start(dir.path(), &["--config", config], &[]).await;
    let settings =
        forgehand::config::Settings::load_with_env(Some(Path::new(config)), Default::default()).unwrap();
    let db = forgehand::db::Db::connect(&settings).await.unwrap();
    let recorded: std::collections::HashSet<String> =
        db.recent_deliveries(1000).await.unwrap().into_iter().map(|d| d.delivery_id).collect();
    for id in &accepted {
        assert!(recorded.contains(id), "delivery {id} was answered 202 but is not recorded");
    }
    let response = reqwest::Client::new()
        .get(format!("{}/api/tasks?limit=500", restarted.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let tasks: serde_json::Value = response.json().await.unwrap();
    let recorded = tasks["tasks"].as_array().unwrap().len();
    assert!(recorded >= accepted.len(), "{} deliveries answered 202, only {recorded} tasks", accepted.len());

    let listed =
        command(dir.path(), &["--config", config, "tasks", "list", "--status", "queued", "--limit", "100"])
            .output()
            .await
            .unwrap();
    let table = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.status.success());
    assert_eq!(table.lines().filter(|l| l.contains("octo-org/hello-world")).count(), recorded, "{table}");
}

#[tokio::test]
async fn first_start_with_no_config_creates_database_and_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = start(dir.path(), &[], &[("FORGEHAND__SERVER__LISTEN", "127.0.0.1:0")]).await;
    let data = dir.path().join("data");
    assert!(data.join("forgehand.db").is_file());
    let token_file = data.join("admin_token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    // Not a terminal (as under systemd): the token is not printed, its file is named.
    let shown = daemon.printed.join("\n");
    assert!(shown.contains("generated an admin token and stored it in data/admin_token"), "{shown}");
    assert!(!shown.contains(&token), "the token reached the output: {shown}");
    // Once started, the code only start-up ran is released from memory; the daemon goes on
    // serving (the pages it needs come back) through the request below.
    let released = released_kib(&mut daemon).await;
    assert!(released >= 1024, "start-up code resident after start: {released} KiB");

    let api = reqwest::Client::new()
        .get(format!("{}/api/tasks", daemon.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);

    // SIGTERM stops it cleanly.
    let pid = daemon.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(10), daemon.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    let mut rest = Vec::new();
    while let Ok(Some(line)) = daemon.stdout.next_line().await {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l.contains("forgehand stopped")), "{rest:?}");

    // The second start reuses the stored token.
    let again = start(dir.path(), &[], &[("FORGEHAND__SERVER__LISTEN", "127.0.0.1:0")]).await;
    let shown = again.printed.join("\n");
    assert!(!shown.contains("generated") && !shown.contains(&token), "{shown}");
    let login = format!("the admin token is in data/admin_token; log in with it at {}/login", again.base);
    assert!(shown.contains(&login), "every start says where the token is and where to log in: {shown}");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);
}

#[tokio::test]
async fn a_broken_config_fails_at_once_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let cases = [
        ("[executor]\nmax_concurent = 2\n", "max_concurent"),
        ("[server]\nlisten = \"nowhere\"\n", "server.listen"),
        ("[trigger]\nmin_permission = \"owner\"\n", "owner"),
        (
            "[[forges]]\nname = \"GitHub\"\nkind = \"github\"\napi_url = \"https://api.github.com\"\n",
            "forges[0].name",
        ),
    ];
    for (text, key) in cases {
        std::fs::write(&path, text).unwrap();
        let output = command(dir.path(), &["--config", path.to_str().unwrap()]).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
        assert!(!dir.path().join("data").exists(), "a broken config still created data_dir");
    }
    let missing =
        command(dir.path(), &["--config", "/no/such/file.toml", "check-config"]).output().await.unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/file.toml"));
}

#[tokio::test]
async fn check_config_masks_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path()).await;
    let output = command(dir.path(), &["--config", config.to_str().unwrap(), "check-config"])
        .env("FORGEHAND__FORGES__GITEA__TOKEN", "gitea-token-value")
        .output()
        .await
        .unwrap();
    // The test config cannot work (no tokens): check-config says so, still masking.
    assert_eq!(output.status.code(), Some(1));
    let shown = String::from_utf8(output.stdout).unwrap() + &String::from_utf8(output.stderr).unwrap();
    for secret in [GITHUB_SECRET, GITEA_SECRET, ADMIN_TOKEN, "gitea-token-value", "an old secret"] {
        assert!(!shown.contains(secret), "{secret} shown in:\n{shown}");
    }
    assert!(shown.contains("webhook_secret = [\n    \"********\",\n    \"********\",\n]"), "{shown}");
    assert!(shown.contains("name = \"gitea\""));
}

#[tokio::test]
async fn check_config_names_the_file_and_fails_on_what_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path()).await;
    let output =
        command(dir.path(), &["--config", config.to_str().unwrap(), "check-config"]).output().await.unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("configuration: {}", config.display())), "{said}");
    // The database is only named: an SQLite file is not created by checking.
    let database = if on_postgres() { "database: postgres://" } else { "(not created yet)" };
    assert!(said.contains(database), "{said}");
    for expected in [
        "error: forges[2].webhook_secret: not set, so every delivery to /webhooks/unsigned is refused",
        "error: forges[0].token: not set",
        "error: forges[1].api_url: \"https://gitea.example.com/api/v1\" is a placeholder",
        "warning: trigger.repos: empty",
        "errors above: forgehand cannot work with this configuration",
    ] {
        assert!(said.contains(expected), "{expected:?} not in:\n{said}");
    }
    assert!(!dir.path().join("data").exists(), "check-config created data_dir");

    let agent = dir.path().join("agent");
    std::fs::write(&agent, "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fine = format!(
        "data_dir = \"data\"\n[agent]\ncommand = \"{}\"\n[trigger]\nrepos = [\"me/mine\"]\n\
         [[forges]]\nname = \"github\"\nkind = \"github\"\napi_url = \"https://api.github.com\"\n\
         token = \"t\"\nwebhook_secret = \"s\"\n",
        agent.display()
    );
    std::fs::write(&config, fine).unwrap();
    let output =
        command(dir.path(), &["--config", config.to_str().unwrap(), "check-config"]).output().await.unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && said.contains("configuration is valid"), "{said}");
    std::fs::write(&config, "[agent]\ncommand = \"no-such-agent-program\"\n").unwrap();
    let output =
        command(dir.path(), &["--config", config.to_str().unwrap(), "check-config"]).output().await.unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("error: agent.command: \"no-such-agent-program\" is not found on PATH"), "{said}");
}

#[tokio::test]
async fn read_only_commands_create_nothing_and_say_what_they_read() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path(), &["tasks", "list"]).output().await.unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("configuration: no file"), "{said}");
    assert!(said.contains("there is no database at data/forgehand.db"), "{said}");
    let _ = command(dir.path(), &["check-config"]).output().await.unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "a read-only command wrote something");

    let daemon = start(dir.path(), &[], &[("FORGEHAND__SERVER__LISTEN", "127.0.0.1:0")]).await;
    drop(daemon);
    let output = command(dir.path(), &["tasks", "list"]).output().await.unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("database: SQLite, data/forgehand.db"), "{said}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("(no tasks)"));
}

#[tokio::test]
async fn send_test_signs_a_delivery_and_shows_the_daemons_answer() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path()).await;
    let config = config.to_str().unwrap();
    let daemon = start(dir.path(), &["--config", config], &[]).await;
    for forge in ["github", "gitea"] {
        let args = ["--config", config, "send-test", "--forge", forge, "--url", &daemon.base];
        let output = command(dir.path(), &args).output().await.unwrap();
        let shown = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{forge}: {shown}{}", String::from_utf8_lossy(&output.stderr));
        assert!(
            shown.contains(&format!("{}/webhooks/{forge} answered 200: ignored", daemon.base)),
            "{shown}"
        );
    }
    let args = ["--config", config, "send-test", "--forge", "unsigned", "--url", &daemon.base];
    let output = command(dir.path(), &args).output().await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("has no webhook_secret"));
    drop(daemon);
    let output = command(dir.path(), &["--config", config, "send-test", "--url", "http://127.0.0.1:9"])
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(said.contains("cannot reach http://127.0.0.1:9/webhooks/github: Connection refused"), "{said}");
}

/// The fenced block of `lang` in README's section `heading` that contains `needle`.
fn readme_block(heading: &str, lang: &str, needle: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split("\n## ").find(|s| s.starts_with(heading)).expect("the README section");
    let fence = format!("```{lang}\n");
    let blocks = section.split(&fence).skip(1).map(|b| b.split("```").next().unwrap());
    blocks
        .map(str::to_owned)
        .find(|b| b.contains(needle))
        .unwrap_or_else(|| panic!("no {lang} block with {needle}"))
}

/// README's "Try it locally", as written: its config, its signed curl (with openssl), the
/// answer it promises, and the refusal after changing the secret.
#[tokio::test]
async fn the_readme_try_it_locally_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("try.toml"), readme_block("Try it locally", "toml", "try-it-locally"))
        .unwrap();
    let daemon =
        start(dir.path(), &["--config", "try.toml"], &[("FORGEHAND__SERVER__LISTEN", "127.0.0.1:0")]).await;
    let script = readme_block("Try it locally", "sh", "curl").replace("http://127.0.0.1:8080", &daemon.base);
    let run = |script: String| command_for("bash", dir.path(), &["-euc", &script]).output();
    let output = run(script.clone()).await.unwrap();
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{answer}{}", String::from_utf8_lossy(&output.stderr));
    assert!(answer.contains(r#""outcome":"task_created","reason":"task 1 queued","task_id":1"#), "{answer}");
    let wrong = run(script.replace("secret=try-it-locally", "secret=try-it-locallx")).await.unwrap();
    let refused = String::from_utf8_lossy(&wrong.stdout);
    assert!(refused.contains("the signature matches none of the webhook secrets"), "{refused}");
    let db = dir.path().join("data/forgehand.db");
    assert!(db.is_file());
    drop(daemon);
}

/// The daemon as a user runs it: the real binary, a fake GitHub, a bare remote.
#[tokio::test]
async fn the_real_daemon_turns_a_labelled_issue_into_a_pull_request() {
    use crate::executor::{BRANCH, Setup, bare_remote, config, remote_file};
    use crate::fake_forge::{Dialect, FakeForge};
    let dir = tempfile::tempdir().unwrap();
    let forge = FakeForge::github().await;
    let remote = dir.path().join("remote.git");
    bare_remote(&remote);
    let repo = "octo-org/hello-world";
    forge.add_repo(repo, &format!("file://{}", remote.display()), "main");
    forge.add_issue(repo, 42, "Add a --verbose flag to the CLI", "", &["forgehand"], "alice");
    forge.set_permission(repo, "alice", "write");
    let (log, pidfile) = (dir.path().join("agent.log"), dir.path().join("agent.pid"));
    let text = config(&dir, &forge, &Setup::new(Dialect::Github), &log, &pidfile).await;
    let path = dir.path().join("forgehand.toml");
    std::fs::write(&path, text).unwrap();
    let daemon = start(dir.path(), &["--config", path.to_str().unwrap()], &[]).await;

    assert_eq!(
        send(&daemon.base, Delivery::github("issues", fixture("github/issues_labeled.json"))).await,
        202
    );
    let opened = forge.wait_until(|s| !s.pulls_of(repo).is_empty(), Duration::from_secs(60)).await;
    assert!(opened, "no pull request within 60 s");
    assert_eq!(forge.pulls(repo)[0].head, BRANCH);
    assert!(remote_file(&remote, BRANCH, "FORGEHAND_DEMO.md").is_some());
    let bot = forge.bot_login();
    let reported = forge
        .wait_until(
            |s| {
                s.comments_of(repo, 42)
                    .iter()
                    .any(|c| c.user == bot && c.body.contains("opened pull request"))
            },
            Duration::from_secs(30),
        )
        .await;
    assert!(reported, "{:?}", forge.comments(repo, 42));
}
