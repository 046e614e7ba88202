//! `agent.sandbox = "bubblewrap"`: the agent works in its worktree and sees nothing else of
//! forgehand's (config, database, mirrors, home directory).

use std::path::Path;

use crate::executor::{BRANCH, Setup, remote_file};
use crate::fake_forge::Dialect;
use crate::faults::Scene;
use crate::harness::poll_until;

/// A scene whose agent runs sandboxed (in `commit` mode: it runs git itself) and
/// reports in PROBE.json whether it could read each of `probes(scene)`.
async fn sandboxed_scene(setup: Setup, probes: impl Fn(&Scene) -> Vec<std::path::PathBuf>) -> Scene {
    let scene = Scene::new(setup, &[], "").await;
    let list: Vec<String> = probes(&scene).iter().map(|p| p.display().to_string()).collect();
    let text = std::fs::read_to_string(&scene.config).unwrap();
    // The agent's log goes where a sandboxed agent can write: its own checkout's .git.
    let log = format!("FAKE_CLAUDE_LOG = \"{}\"", scene.log.display());
    let probe = format!(
        "FAKE_CLAUDE_PROBE = \"{}\", FAKE_CLAUDE_LOG = \".git/agent.log\", FAKE_CLAUDE_PIDFILE = \".git/agent.pid\"",
        list.join(",")
    );
    let pidfile = format!("FAKE_CLAUDE_PIDFILE = \"{}\"", scene.dir.path().join("agent.pid").display());
    let text = text.replacen(&format!(", {pidfile}"), "", 1);
    let text = text.replacen(&log, &probe, 1);
    let text = text.replacen("[agent]\n", "[agent]\nsandbox = \"bubblewrap\"\n", 1);
    std::fs::write(&scene.config, text).unwrap();
    scene
}

#[tokio::test]
async fn a_sandboxed_agent_cannot_read_the_config_or_the_database_but_makes_its_pull_request() {
    let home = std::env::var("HOME").unwrap();
    let scene = sandboxed_scene(Setup::new(Dialect::Github).mode("commit"), |scene| {
        let data = scene.dir.path().join("data");
        vec![
            scene.config.clone(),
            data.join("forgehand.db"),
            data.clone(),
            data.join("workspaces/mirrors/github+octo-org+hello-world.git"),
            data.join("transcripts"),
            scene.dir.path().to_path_buf(),
            Path::new(&home).to_path_buf(),
        ]
    })
    .await;
    let daemon = scene.start(&[]).await;
    let id = scene.label(&daemon).await;
    scene.assert_done_once(id).await;

    let (probe, _) =
        remote_file(&scene.remote, BRANCH, "PROBE.json").expect("the agent wrote in its worktree");
    let probe: serde_json::Value = serde_json::from_str(&probe).unwrap();
    let seen = |path: &Path| probe["paths"][path.display().to_string()].as_str().unwrap().to_owned();
    let data = scene.dir.path().join("data");
    for hidden in [&scene.config, &data.join("forgehand.db"), &data.join("transcripts"), Path::new(&home)] {
        assert!(
            seen(hidden).starts_with("refused: "),
            "the agent could read {}: {probe:#}",
            hidden.display()
        );
    }
    // Of data_dir, only the way to the worktree, the mirror objects it borrows and the
    // task's question directory exists.
    assert_eq!(seen(scene.dir.path()), "listed: data", "{probe:#}");
    // And the directory where the task's question (`forgehand mcp`) may be written.
    assert_eq!(seen(&data), "listed: questions,workspaces", "{probe:#}");
    let mirror = data.join("workspaces/mirrors/github+octo-org+hello-world.git");
    assert_eq!(seen(&mirror), "listed: objects", "{probe:#}");
    assert_eq!((probe["home"].as_str(), probe["home_writable"].as_bool()), (Some("/home/agent"), Some(true)));
    assert!(scene.dir.path().join("data/agent-home/.probe").is_file(), "HOME is data_dir/agent-home");
    // git worked inside the sandbox (it reads the base through the mirror's objects).
    let repo = git2::Repository::open_bare(&scene.remote).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_ref(&format!("refs/heads/{BRANCH}")).unwrap();
    let authors: Vec<String> =
        walk.map(|oid| repo.find_commit(oid.unwrap()).unwrap().author().name().unwrap().to_owned()).collect();
    assert!(authors.iter().any(|a| a == "fake-claude"), "the agent's own commit: {authors:?}");
}

#[tokio::test]
async fn a_sandbox_that_cannot_start_stops_forgehand_at_startup_saying_why() {
    let scene = sandboxed_scene(Setup::new(Dialect::Github), |_| Vec::new()).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_forgehand"))
        .args(["--config", scene.config.to_str().unwrap(), "serve"])
        .env_clear()
        .env("PATH", "/nonexistent")
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(said.contains("agent.sandbox = \"bubblewrap\" but bwrap is not installed"), "{said}");
}

/// Processes whose working directory is under `dir`.
fn processes_in(dir: &Path) -> Vec<u32> {
    let prefix = dir.display().to_string();
    let entries = std::fs::read_dir("/proc").unwrap();
    let pids = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|pid| {
        std::fs::read_link(format!("/proc/{pid}/cwd"))
            .is_ok_and(|cwd| cwd.to_string_lossy().starts_with(&prefix))
    })
    .collect()
}

#[tokio::test]
async fn a_hanging_sandboxed_agent_is_stopped_at_the_timeout_with_its_children() {
    let mut setup = Setup::new(Dialect::Github).mode("hang");
    setup.timeout_secs = 2;
    let scene = sandboxed_scene(setup, |_| Vec::new()).await;
    let daemon = scene.start(&[]).await;
    let id = scene.label(&daemon).await;
    let tasks = scene.dir.path().join("data/workspaces/tasks");
    // bwrap, the agent and its `sleep 1000`.
    let ran = poll_until(std::time::Duration::from_secs(60), || processes_in(&tasks).len() >= 3).await;
    assert!(ran, "the sandboxed agent never ran");
    let task = scene.wait_task(id, |t| !["queued", "running"].contains(&t.status.as_str())).await;
    assert_eq!(task.status, "failed", "{task:?}");
    assert!(task.error.as_deref().unwrap().contains("did not finish in time"), "{task:?}");
    assert_eq!(processes_in(&tasks), Vec::<u32>::new(), "a sandboxed process outlived the timeout");
}
