//! The dashboard in real headless Chromium (Debian `chromium`, driven by playwright-core
//! from tests/browser): log in, watch a webhook's task appear, follow its transcript,
//! cancel it. Screenshots land in target/screenshots/.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::harness::*;

const XSS: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails with what to install when a piece is missing: a skipped browser test would hide
/// a broken dashboard.
fn require_tools() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install it with `apt-get install -y --no-install-recommends chromium`"
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "node is missing: install Node.js 20 or newer");
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `(cd tests/browser && npm ci)`"
    );
}

fn transcript_line(value: serde_json::Value) -> String {
    format!("{value}\n")
}

#[tokio::test]
async fn a_person_follows_a_task_in_chromium() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let app = TestApp::spawn_config(dir, &config_text(&data_dir, "").await).await;
    std::fs::create_dir_all(data_dir.join("transcripts")).unwrap();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");

    let mut child = tokio::process::Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .args([&app.base, ADMIN_TOKEN, shots.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot start node");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut task_id, mut offset) = (0, 0u64);
    let mut said = Vec::new();

    let conversation = async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            said.push(line.clone());
            match line.as_str() {
                "READY" => {
                    let body = edited("github/issues_labeled.json", "/issue/title", json!(XSS));
                    let answer = app.deliver("github", Delivery::github("issues", body)).await;
                    assert_eq!(answer.outcome(), "task_created", "{}", answer.text);
                    task_id = app.tasks().await[0].id;
                    stdin.write_all(format!("TASK {task_id}\n").as_bytes()).await.unwrap();
                }
                "TASK_OPEN" => {
                    let lines =
                        transcript_line(json!({"type":"system","subtype":"init","model":"claude-test"}))
                            + &transcript_line(json!({"type":"assistant","message":{"content":[
                            {"type":"text","text":"Adding the flag, then running the tests."},
                            {"type":"tool_use","id":"t1","name":"Bash","input":{"command":"cargo test"}}]}}));
                    app.db.append_transcript(task_id, offset, lines.clone().into_bytes()).await.unwrap();
                    offset += lines.len() as u64;
                }
                "TOOL_SEEN" => {
                    let line = transcript_line(json!({"type":"user","message":{"content":[
                        {"type":"tool_result","tool_use_id":"t1","content":"test result: ok. 3 passed"}]}}));
                    app.db.append_transcript(task_id, offset, line.clone().into_bytes()).await.unwrap();
                    offset += line.len() as u64;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), conversation)
        .await
        .unwrap_or_else(|_| panic!("the browser script did not finish in 120 s; it said {said:?}"));
    let status = child.wait().await.unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).await.unwrap();
    assert!(status.success(), "the browser script failed ({status}): {stderr}\nstdout: {said:?}");
    assert_eq!(said.last().map(String::as_str), Some("OK"), "{said:?} {stderr}");
    let task = &app.tasks().await[0];
    assert_eq!(task.status, "cancelled");
    for shot in ["03-dashboard-live", "04-task-transcript", "05-task-cancelled"] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png was not saved");
    }
}

#[tokio::test]
async fn a_new_user_runs_the_setup_wizard_in_chromium() {
    use crate::fake_forge::FakeForge;
    require_tools();
    let forge = FakeForge::gitea().await;
    forge.add_repo("acme/widgets", "https://fake.invalid/acme/widgets.git", "main");
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = \"{}\"\n{}\n[server]\nlisten = \"127.0.0.1:0\"\n[auth]\nadmin_token = \"{ADMIN_TOKEN}\"\n[executor]\nenabled = false\n",
        dir.path().join("data").display(),
        database_section().await
    );
    let app = TestApp::spawn_config(dir, &config).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agent/fake-claude");
    let run = tokio::process::Command::new("node")
        .arg(browser_dir().join("wizard.mjs"))
        .args([&app.base, ADMIN_TOKEN, shots.to_str().unwrap(), forge.base_url(), forge.token()])
        .arg(&agent)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the wizard script did not finish in 120 s")
        .expect("cannot start node");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the wizard script failed: {stderr}\nstdout: {stdout}");
    assert_eq!(stdout.lines().last(), Some("OK"), "{stdout} {stderr}");
    let secret = stdout.lines().find_map(|l| l.strip_prefix("SECRET ")).expect("the script saw the secret");

    // The file it wrote, loaded as the daemon loads it.
    let written =
        forgehand::config::Settings::load_with_env(Some(&app.config_path()), Default::default()).unwrap();
    let home = written.forge("home").expect("the forge is in the file");
    use secrecy::ExposeSecret;
    assert_eq!((home.api_url.as_str(), home.token.expose_secret()), (forge.base_url(), forge.token()));
    assert_eq!(home.webhook_secret.0[0].expose_secret(), secret);
    assert_eq!((written.trigger.label.as_str(), written.executor.max_concurrent), ("robot", 3));
    assert_eq!(written.agent.command, agent.to_str().unwrap());
    // And in force: a delivery signed with the secret the page showed is taken.
    let body = fixture("gitea/issues_label_updated.json");
    let signature = forgehand::forge::signature::sign(secret.as_bytes(), &body);
    let delivery = Delivery::gitea("issues", "issue_label", body)
        .set_header("x-gitea-signature", Some(&signature))
        .set_header("x-hub-signature-256", Some(&format!("sha256={signature}")));
    let answer = app.deliver("home", delivery).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.text.contains("robot"), "the new trigger label is in force: {}", answer.text);
    for shot in ["11-setup-empty", "14-wizard-webhook", "16-wizard-review", "17-wizard-saved"] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png was not saved");
    }
}

#[tokio::test]
async fn github_is_connected_as_an_app_in_the_wizard_in_chromium() {
    use crate::fake_forge::FakeForge;
    require_tools();
    let forge = FakeForge::github_enterprise().await;
    forge.enable_app(4242, "forgehand-app", &[("octo-org/one", 7)]);
    forge.add_repo("octo-org/one", "https://fake.invalid/octo-org/one.git", "main");
    let dir = tempfile::tempdir().unwrap();
    // The key as a path on forgehand's machine, the other way to give it.
    let pem = dir.path().join("app.pem");
    std::fs::write(&pem, forge.with_app(|app| app.private_key_pem.clone())).unwrap();
    let app = TestApp::spawn().await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let run = tokio::process::Command::new("node")
        .arg(browser_dir().join("wizard-app.mjs"))
        .args([&app.base, ADMIN_TOKEN, shots.to_str().unwrap(), forge.base_url(), "4242"])
        .arg(&pem)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the wizard script did not finish in 120 s")
        .expect("cannot start node");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the wizard script failed: {stderr}\nstdout: {stdout}");
    assert_eq!(stdout.lines().last(), Some("OK"), "{stdout} {stderr}");
    for shot in ["19-wizard-app-refused", "20-wizard-app-checked"] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png was not saved");
    }
    let issued = forge.with_app(|app| app.issued.len());
    assert_eq!(issued, 1, "one installation token, for the check that passed");
}

#[tokio::test]
async fn a_person_sees_a_refused_delivery_and_sends_a_test_one_in_chromium() {
    require_tools();
    let app = TestApp::spawn().await;
    let wrong = Delivery::github("issues", fixture("github/issues_labeled.json"))
        .set_header("x-hub-signature-256", Some(&format!("sha256={}", "0".repeat(64))));
    assert_eq!(app.deliver("github", wrong).await.status, 401);
    assert_eq!(app.wait_refusals(1).await[0].status, 401);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let run = tokio::process::Command::new("node")
        .arg(browser_dir().join("deliveries.mjs"))
        .args([&app.base, ADMIN_TOKEN, shots.to_str().unwrap()])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the deliveries script did not finish in 120 s")
        .expect("cannot start node");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the deliveries script failed: {stderr}\nstdout: {stdout}");
    assert_eq!(stdout.lines().last(), Some("OK"), "{stdout} {stderr}");
    for shot in
        ["20-deliveries-refused", "21-setup-refused", "22-setup-test-delivery", "23-deliveries-after-test"]
    {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png was not saved");
    }
}
