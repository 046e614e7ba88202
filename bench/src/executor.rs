//! Executor overhead with the stand-in agent (tests/agent/fake-claude) and the fake forge
//! of the test suite: generated repositories (10,000 files with 20,000 commits and with
//! 200; in a full run also 100,000 files with 200,000 commits), the first task on each
//! (the clone) and the next ones (warm mirror), from the webhook to the agent's start, and
//! from the agent's end to the pull request (commit, push, PR). The depths show whether a
//! task's cost follows the history's. Beside each first task, `git clone --mirror` of the
//! same repository over the same transport, and the peak memory of both.

#[path = "../../tests/it/fake_forge/mod.rs"]
mod fake_forge;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::procs::{self, TempDir};
use fake_forge::FakeForge;

/// A generated repository: its name on the fake forge, its commits and files.
#[derive(Debug, Clone, Copy)]
pub struct RepoSpec {
    pub name: &'static str,
    pub commits: usize,
    pub files: usize,
}

/// The repositories of a quick run; a full run adds `HUGE`.
pub const REPOS: [RepoSpec; 2] = [
    RepoSpec { name: "octo-org/deep", commits: 20_000, files: 10_000 },
    RepoSpec { name: "octo-org/shallow", commits: 200, files: 10_000 },
];
/// The big repository of a full run.
pub const HUGE: RepoSpec = RepoSpec { name: "octo-org/huge", commits: 200_000, files: 100_000 };

const ADMIN_TOKEN: &str = "bench-admin-token-not-a-secret";

/// What the executor benchmark measured.
#[derive(Debug, Clone, Default)]
pub struct ExecFigures {
    pub generate_secs: f64,
    /// One per repository, in the order of `REPOS` (then `HUGE`).
    pub repos: Vec<RepoFigures>,
}

/// The tasks run on one repository.
#[derive(Debug, Clone)]
pub struct RepoFigures {
    pub spec: RepoSpec,
    /// `git clone --mirror` of the repository over `file://`: time and peak RSS (KiB) of
    /// its process tree.
    pub git_mirror_ms: f64,
    pub git_mirror_peak_kib: u64,
    /// `git clone` with its checkout (what a person does to get the files): milliseconds.
    pub git_clone_ms: f64,
    /// Peak RSS (KiB) of forgehand's process tree (the daemon and the git it runs) from the
    /// first task's webhook to its agent's start.
    pub first_task_peak_kib: u64,
    /// Webhook sent → agent process started, first task (clone) then the next ones.
    pub start_ms: Vec<f64>,
    /// Agent process ended → pull request open on the fake forge, per task.
    pub publish_ms: Vec<f64>,
}

fn unix_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Runs `tasks` tasks one after the other on each generated repository (`huge`: also on
/// `HUGE`, two tasks).
pub async fn run(binary: &Path, agent: &Path, tasks: usize, huge: bool) -> anyhow::Result<ExecFigures> {
    let dir = TempDir::new("executor")?;
    let generating = Instant::now();
    let mut specs: Vec<(RepoSpec, usize)> = REPOS.iter().map(|spec| (*spec, tasks)).collect();
    if huge {
        specs.push((HUGE, tasks.min(2)));
    }
    let forge = FakeForge::github().await;
    let mut remotes = Vec::new();
    for (spec, tasks) in &specs {
        let remote = dir.0.join(format!("{}.git", spec.name.replace('/', "-")));
        generate_repo(&remote, spec)?;
        forge.add_repo(spec.name, &format!("file://{}", remote.display()), "main");
        for n in 1..=*tasks as u64 {
            forge.add_issue(spec.name, n, &format!("Benchmark issue {n}"), "Change something.", &[], "alice");
        }
        forge.set_permission(spec.name, "alice", "write");
        forge.set_permission(spec.name, &forge.bot_login(), "admin");
        remotes.push(remote);
    }
    let generate_secs = generating.elapsed().as_secs_f64();
    eprintln!("executor: {} repositories generated in {generate_secs:.1} s", specs.len());
    let mut mirrors = Vec::new();
    for ((spec, _), remote) in specs.iter().zip(&remotes) {
        let (ms, peak) = git_clone(remote, &dir.0.join("git-mirror"), true).await?;
        eprintln!("executor: {} git clone --mirror {ms:.0} ms, peak RSS {} KiB", spec.name, peak);
        let (clone_ms, _) = git_clone(remote, &dir.0.join("git-clone"), false).await?;
        eprintln!("executor: {} git clone (with its checkout) {clone_ms:.0} ms", spec.name);
        mirrors.push((ms, peak, clone_ms));
    }

    let marks = dir.0.join("agent-marks");
    let wrapper = write_wrapper(&dir.0, agent)?;
    let config = dir.0.join("forgehand.toml");
    std::fs::write(&config, config_text(&dir.0, &wrapper, &marks, &forge.config_toml("github")))?;
    let server = procs::start_forgehand(binary, &config).await?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let pid = server.child.id().context("forgehand has exited")?;
    let mut run =
        Run { forge: &forge, client: &client, addr: &server.addr, marks: &marks, agent_runs: 0, pid };
    let mut repos = Vec::new();
    for ((spec, tasks), (git_mirror_ms, git_mirror_peak_kib, git_clone_ms)) in specs.iter().zip(mirrors) {
        let mut figures = RepoFigures {
            spec: *spec,
            git_mirror_ms,
            git_mirror_peak_kib,
            git_clone_ms,
            first_task_peak_kib: 0,
            start_ms: Vec::new(),
            publish_ms: Vec::new(),
        };
        run.tasks_on(spec.name, *tasks, &mut figures).await?;
        repos.push(figures);
    }
    server.kill().await;
    Ok(ExecFigures { generate_secs, repos })
}

/// `git clone [--mirror]` of `remote` into `into` (removed after): milliseconds and the
/// peak RSS of git's process tree, sampled as forgehand's is.
async fn git_clone(remote: &Path, into: &Path, mirror: bool) -> anyhow::Result<(f64, u64)> {
    let _ = std::fs::remove_dir_all(into);
    let began = Instant::now();
    let mut child = tokio::process::Command::new("git")
        .args(if mirror { &["clone", "--mirror", "--quiet"][..] } else { &["clone", "--quiet"][..] })
        .arg(format!("file://{}", remote.display()))
        .arg(into)
        .spawn()
        .context("cannot run git clone")?;
    let sampler = procs::PeakSampler::start(child.id().context("git exited at once")?);
    let status = child.wait().await?;
    let ms = began.elapsed().as_secs_f64() * 1000.0;
    let peak = sampler.stop().await;
    if !status.success() {
        bail!("git clone failed ({status})");
    }
    let _ = std::fs::remove_dir_all(into);
    Ok((ms, peak))
}

/// What a series of tasks needs.
struct Run<'a> {
    forge: &'a FakeForge,
    client: &'a reqwest::Client,
    addr: &'a str,
    marks: &'a Path,
    /// Agent runs so far, over every repository.
    agent_runs: usize,
    /// forgehand's process id.
    pid: u32,
}

impl Run<'_> {
    /// Labels issues 1..=tasks of `repo` one after the other, each once the last is done.
    async fn tasks_on(&mut self, repo: &str, tasks: usize, figures: &mut RepoFigures) -> anyhow::Result<()> {
        for n in 1..=tasks {
            let sampler = (n == 1).then(|| procs::PeakSampler::start(self.pid));
            let hook = self.forge.label_issue(repo, n as u64, "forgehand", "alice").delivery();
            let sent = unix_ns();
            let mut request =
                self.client.post(format!("http://{}/webhooks/github", self.addr)).body(hook.body);
            for (name, value) in hook.headers {
                request = request.header(name, value);
            }
            let answer: serde_json::Value = request.send().await?.json().await?;
            let task = answer["task_id"].as_i64().with_context(|| format!("no task queued: {answer}"))?;
            self.agent_runs += 1;
            let started = wait_for_mark(self.marks, "start", self.agent_runs).await?;
            if let Some(sampler) = sampler {
                figures.first_task_peak_kib = sampler.stop().await;
            }
            let ended = wait_for_mark(self.marks, "end", self.agent_runs).await?;
            let opened =
                self.forge.wait_until(|s| s.pulls_of(repo).len() >= n, Duration::from_secs(120)).await;
            let published = unix_ns();
            if !opened {
                bail!("task {task} opened no pull request within 120 s");
            }
            wait_done(self.client, self.addr, task).await?;
            figures.start_ms.push(started.saturating_sub(sent) as f64 / 1e6);
            figures.publish_ms.push(published.saturating_sub(ended) as f64 / 1e6);
            eprintln!(
                "executor: {repo} task {n}: webhook → agent start {:.0} ms, agent end → PR {:.0} ms",
                figures.start_ms[n - 1],
                figures.publish_ms[n - 1]
            );
        }
        Ok(())
    }
}

/// A bare repository with the spec's files and commits on `main`, written by
/// `git fast-import` in one stream.
fn generate_repo(remote: &Path, spec: &RepoSpec) -> anyhow::Result<()> {
    let (files, commits) = (spec.files, spec.commits);
    let init = Command::new("git").args(["init", "--quiet", "--bare", "-b", "main"]).arg(remote).status()?;
    if !init.success() {
        bail!("git init failed ({init})");
    }
    let mut stream = Vec::with_capacity(files * 120 + commits * 200);
    let inline = |stream: &mut Vec<u8>, path: &str, content: &str| {
        let _ = write!(stream, "M 100644 inline {path}\ndata {}\n{content}\n", content.len());
    };
    let commit = |stream: &mut Vec<u8>, n: usize| {
        let message = format!("Change {n}");
        let _ = write!(
            stream,
            "commit refs/heads/main\ncommitter Bench <bench@example.com> {} +0000\ndata {}\n{message}\n",
            1_700_000_000 + n,
            message.len()
        );
    };
    commit(&mut stream, 0);
    // A hundred files a directory, whatever the size.
    let path = |f: usize| format!("src/m{:04}/f{f:06}.txt", f % (files / 100).max(1));
    for f in 0..files {
        inline(&mut stream, &path(f), &format!("file {f}\nversion 0\n"));
    }
    for n in 1..commits {
        commit(&mut stream, n);
        let f = n % files;
        inline(&mut stream, &path(f), &format!("file {f}\nversion {n}\n"));
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(remote)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .context("cannot run git fast-import")?;
    child.stdin.take().context("git's stdin is piped")?.write_all(&stream)?;
    let status = child.wait()?;
    if !status.success() {
        bail!("git fast-import failed ({status})");
    }
    Ok(())
}

/// The agent command: records when the stand-in agent starts and ends, in ns since the
/// epoch, one line each.
fn write_wrapper(dir: &Path, agent: &Path) -> anyhow::Result<std::path::PathBuf> {
    let agent =
        std::fs::canonicalize(agent).with_context(|| format!("no stand-in agent at {}", agent.display()))?;
    let path = dir.join("agent.sh");
    let script = format!(
        "#!/bin/sh\nprintf 'start %s\\n' \"$(date +%s%N)\" >> \"$BENCH_AGENT_MARKS\"\n\"{}\" \"$@\"\nrc=$?\n\
         printf 'end %s\\n' \"$(date +%s%N)\" >> \"$BENCH_AGENT_MARKS\"\nexit $rc\n",
        agent.display()
    );
    std::fs::write(&path, script)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

fn config_text(dir: &Path, wrapper: &Path, marks: &Path, forge: &str) -> String {
    format!(
        r#"data_dir = "{data}"

[server]
listen = "127.0.0.1:0"

[auth]
admin_token = "{ADMIN_TOKEN}"

[executor]
max_concurrent = 1
poll_interval_secs = 1
sweep_interval_secs = 0

[agent]
command = "{wrapper}"
env = {{ FAKE_CLAUDE_MODE = "edit", BENCH_AGENT_MARKS = "{marks}" }}

{forge}"#,
        data = dir.join("data").display(),
        wrapper = wrapper.display(),
        marks = marks.display(),
    )
}

/// The time (ns since the epoch) of the `n`th `kind` line in `marks`, once written.
async fn wait_for_mark(marks: &Path, kind: &str, n: usize) -> anyhow::Result<u128> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let text = std::fs::read_to_string(marks).unwrap_or_default();
        let found = text.lines().filter_map(|l| l.strip_prefix(kind)).nth(n - 1);
        if let Some(ns) = found.and_then(|v| v.trim().parse().ok()) {
            return Ok(ns);
        }
        if Instant::now() > deadline {
            bail!("the agent of task {n} did not {kind} within 900 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until task `id` is no longer queued or running.
async fn wait_done(client: &reqwest::Client, addr: &str, id: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let task: serde_json::Value = client
            .get(format!("http://{addr}/api/tasks/{id}"))
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .send()
            .await?
            .json()
            .await?;
        let status = task["status"].as_str().or_else(|| task["task"]["status"].as_str()).unwrap_or("");
        if !matches!(status, "queued" | "running" | "") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("task {id} still {status:?} after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
