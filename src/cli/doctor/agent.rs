//! The agent: the program exists, its version, and a dry run in a scratch repository
//! started exactly as a task starts it (`executor::launch`: same arguments, environment,
//! sandbox and permissions), which must leave an edited file behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Finding;
use crate::config::Settings;
use crate::executor::agent::{self, AgentOutcome, AgentRun};
use crate::executor::launch;

/// Longest a dry run may take (less when `executor.timeout_secs` is shorter).
pub const DRY_RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// Most turns a dry run may use (fewer when `agent.max_turns` is lower).
const DRY_RUN_TURNS: u32 = 10;
/// The file the dry run asks the agent to create.
const DRY_RUN_FILE: &str = "FORGEHAND_DOCTOR.md";

/// The agent program and its version, then (unless `skip_run`) the dry run.
pub async fn check_agent(settings: &Settings, skip_run: bool) -> Vec<Finding> {
    let agent = &settings.agent;
    let kind = format!("{:?}", agent.kind).to_lowercase();
    let name = format!("agent.command {:?} (kind {kind})", agent.command);
    let found = match crate::server::wizard::checks::check_agent(&agent.command).await {
        Ok(found) => found,
        Err(err) => {
            return vec![
                Finding::fail(format!("{name}: {err}")),
                Finding::skip("agent dry run: not run: the agent program cannot be started"),
            ];
        }
    };
    let version = if found.version.is_empty() { "(it printed none)".to_owned() } else { found.version };
    let place =
        if agent.command.contains('/') { String::new() } else { format!("{}, ", found.path.display()) };
    let mut findings = vec![Finding::ok(format!("{name}: {place}version {version}"))];
    findings.push(if skip_run {
        Finding::skip(
            "agent dry run: skipped (--skip-agent-run); without it doctor makes the agent edit a file in a \
             scratch repository, which costs one model call",
        )
    } else {
        dry_run(settings).await
    });
    findings
}

/// Runs the agent in a scratch repository and checks that it changed a file there.
pub async fn dry_run(settings: &Settings) -> Finding {
    let scratch = match Scratch::create() {
        Ok(scratch) => scratch,
        Err(err) => {
            return Finding::fail(format!("agent dry run: cannot prepare a scratch repository: {err}"));
        }
    };
    let limit = DRY_RUN_TIMEOUT.min(Duration::from_secs(settings.executor.timeout_secs));
    let started = Instant::now();
    let run = start(settings, &scratch, limit).await;
    let took = format!("{:.2} s", started.elapsed().as_secs_f64());
    let run = match run {
        Ok(run) => run,
        Err(err) => return Finding::fail(format!("agent dry run: the agent could not be started: {err}")),
    };
    match agent::outcome(&run) {
        AgentOutcome::Success => edited(&scratch, &run, &took),
        AgentOutcome::TimedOut(_) => Finding::fail(format!(
            "agent dry run: did not finish within {} s (the dry run's limit); check that the agent reaches \
             its model (agent.env), then run doctor again",
            limit.as_secs()
        )),
        outcome => Finding::fail(format!(
            "agent dry run: failed after {took}: {}{}",
            outcome.reason(),
            stderr_hint(&run)
        )),
    }
}

async fn start(settings: &Settings, scratch: &Scratch, limit: Duration) -> Result<AgentRun, String> {
    let prompt = format!(
        "Create a file named {DRY_RUN_FILE} containing the line \"forgehand doctor\". This is a check \
         that you can edit files here (a scratch repository): change nothing else."
    );
    let mut request = launch::request(&settings.agent, &prompt, None);
    request.max_turns = request.max_turns.min(DRY_RUN_TURNS);
    let transcript = scratch.root.join("transcript.jsonl");
    let mut spec = launch::spec(settings, &request, scratch.repo.clone(), transcript);
    spec.timeout = limit;
    // Nobody cancels a dry run; the sender lives until it ends.
    let (_cancel, stop) = tokio::sync::watch::channel(false);
    launch::run(settings, spec, stop).await
}

/// OK when the run left a change in the scratch repository.
fn edited(scratch: &Scratch, run: &AgentRun, took: &str) -> Finding {
    match scratch.changed_files() {
        Ok(files) if !files.is_empty() => Finding::ok(format!(
            "agent dry run: edited {} in a scratch repository in {took}, started as a task starts it \
             (same arguments, environment, sandbox and permissions)",
            files.join(", ")
        )),
        Ok(_) => Finding::fail(format!(
            "agent dry run: the agent finished in {took} but changed no file (asked to create {DRY_RUN_FILE}); \
             check its permissions (agent.allowed_tools, agent.args){}",
            stderr_hint(run)
        )),
        Err(err) => Finding::fail(format!("agent dry run: cannot read the scratch repository: {err}")),
    }
}

/// The last line the agent wrote to stderr, if any. The agent never sees forge tokens or
/// webhook secrets (its environment is filtered), so none can be quoted here.
fn stderr_hint(run: &AgentRun) -> String {
    let last = run.stderr_tail.lines().map(str::trim).rfind(|line| !line.is_empty());
    match last {
        Some(line) => format!(" (its stderr ended with: {})", agent::one_line(line)),
        None => String::new(),
    }
}

/// A temporary directory holding a git repository with one commit; removed on drop.
struct Scratch {
    root: PathBuf,
    repo: PathBuf,
    /// The one commit it starts with.
    base: git2::Oid,
}

impl Scratch {
    fn create() -> Result<Scratch, String> {
        let token = crate::token::generate_token().map_err(|e| format!("no randomness: {e}"))?;
        let root = std::env::temp_dir().join(format!("forgehand-doctor-{}", &token[..16]));
        let repo = root.join("repo");
        std::fs::create_dir_all(&repo).map_err(|e| format!("creating {}: {e}", repo.display()))?;
        let base = first_commit(&repo);
        // Built before checking `base`, so that a failed commit still removes the directory.
        let scratch = Scratch { root, repo, base: *base.as_ref().unwrap_or(&git2::Oid::ZERO_SHA1) };
        base.map_err(|e| format!("git in {}: {e}", scratch.repo.display()))?;
        Ok(scratch)
    }

    /// Files that differ from the first commit (committed or not, new files included).
    fn changed_files(&self) -> Result<Vec<String>, git2::Error> {
        let repo = git2::Repository::open(&self.repo)?;
        let base = repo.find_commit(self.base)?.tree()?;
        let mut options = git2::DiffOptions::new();
        options.include_untracked(true).recurse_untracked_dirs(true);
        let diff = repo.diff_tree_to_workdir_with_index(Some(&base), Some(&mut options))?;
        let files = diff.deltas().filter_map(|d| d.new_file().path().map(|p| p.display().to_string()));
        Ok(files.take(5).collect())
    }
}

/// `dir` as a git repository with a README in its first commit; that commit's id.
fn first_commit(dir: &Path) -> Result<git2::Oid, git2::Error> {
    let repo = git2::Repository::init(dir)?;
    std::fs::write(dir.join("README.md"), "A scratch repository of forgehand doctor.\n")
        .map_err(|e| git2::Error::from_str(&e.to_string()))?;
    let mut index = repo.index()?;
    index.add_path(Path::new("README.md"))?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let who = git2::Signature::now("forgehand doctor", "doctor@forgehand.invalid")?;
    repo.commit(Some("HEAD"), &who, &who, "Scratch repository", &tree, &[])
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
