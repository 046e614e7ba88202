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
