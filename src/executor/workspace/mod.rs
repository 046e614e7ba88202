//! Git workspaces (git2): one bare mirror per repository, one checkout per task.
//!
//! Layout under `<data_dir>/workspaces`:
//! - `mirrors/<repo key>.git`: a bare mirror, fetched with `+refs/heads/*:refs/heads/*`
//!   and pruned, so its branches are the remote's branches;
//! - `tasks/task-<id>`: an ordinary repository with a working tree that borrows the
//!   mirror's objects through a relative `objects/info/alternates` entry (what
//!   `git clone --shared` does). Preparing a task costs one checkout, whatever the depth
//!   of history, and its `origin` is the real remote.
//!
//! Nothing here ever deletes objects from a mirror: task repositories depend on them. A
//! whole mirror is deleted only when no checkout borrows from it (`storage.rs`).
//! Everything blocks; callers run it inside `tokio::task::spawn_blocking`. Credentials
//! reach git2 only through the credential callback, never a URL or a config file.

mod api_commits;
mod branch;
mod cli;
mod errors;
mod leftovers;
mod mirror;
mod recycle;
mod signing;
mod storage;
mod worktree;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use git2::Repository;
use secrecy::SecretString;

pub use api_commits::{Change, LocalCommit};
pub use branch::branch_name;
pub use errors::WorkspaceError;
use errors::{Context as _, Scrub};
pub use leftovers::{Leftovers, PathState, Snapshot};
pub use storage::{Tally, WorkspaceUsage, disk_usage};
pub use worktree::{ChangeSummary, Worktree};

/// Credentials for the forge's git remote: username + token, handed to git2 only through
/// the credential callback (`Cred::userpass_plaintext`), never written into a URL, a
/// config file or the remote's URL on disk.
#[derive(Debug, Clone)]
pub struct GitCredentials {
    /// The user name the forge expects with a token (e.g. `x-access-token` on GitHub).
    pub username: String,
    /// The token; `Debug` never shows it.
    pub token: SecretString,
}

/// Author/committer identity for commits forgehand makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Display name, e.g. `forgehand[bot]`.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// The SSH private key that signs commits, if any.
    pub signing_key: Option<PathBuf>,
}

/// One lock per mirror path, so two tasks on one repository never fetch into it at once
/// and a cleanup never deletes it meanwhile. Shared by every [`Workspaces`] of the process
/// (the executor's and the cleanup's).
static MIRROR_LOCKS: LazyLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = LazyLock::new(Mutex::default);

/// The git workspaces under `<data_dir>/workspaces`.
#[derive(Debug)]
pub struct Workspaces {
    root: PathBuf,
}

impl Workspaces {
    /// Workspaces rooted at `root` (normally `<data_dir>/workspaces`); nothing is created
    /// until it is needed.
    pub fn new(root: PathBuf) -> Workspaces {
        Workspaces { root }
    }

    /// Prepares the working directory `root/tasks/task-<id>` on `spec.branch`, after
    /// syncing the mirror. A directory left by an earlier attempt is replaced.
    pub fn prepare(&self, spec: &PrepareSpec<'_>) -> Result<Worktree, WorkspaceError> {
        let scrub = Scrub::new(&self.root, spec.creds);
        let start = match &spec.start {
            BranchStart::FromBase(base) => base.as_str(),
            BranchStart::Existing => spec.branch,
        };
        branch::check_branch(spec.branch)?;
        branch::check_branch(start)?;
        let started = std::time::Instant::now();
        let mirror = self.sync_mirror(spec.repo_key, spec.clone_url, spec.creds, &[start, spec.branch])?;
        let synced = started.elapsed();
        let base = mirror::mirror_head(&mirror, start, scrub)?;
        self.remove_task(spec.task_id)?;
        let path = self.task_path(spec.task_id);
        let check_out_here = |fresh: bool| {
            let repo = worktree::attach_to_mirror(&path, &mirror, spec.clone_url, scrub)?;
            worktree::check_out(&repo, spec.branch, start, base, fresh, scrub)
        };
        let recycled = self.take_spare(&mirror, &path)
            && match check_out_here(false) {
                Ok(()) => true,
                Err(error) => {
                    // A checkout the agent left unusable (a broken index, odd file types).
                    tracing::warn!(task_id = spec.task_id, error = %error, "cannot reuse a checkout; creating one");
                    self.remove_task(spec.task_id)?;
                    false
                }
            };
        if !recycled {
            Repository::init(&path).context(scrub, || "creating the task repository".to_owned())?;
            check_out_here(true)?;
        }
        tracing::info!(
            task_id = spec.task_id,
            branch = spec.branch,
            %base,
            recycled,
            sync_ms = synced.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "prepared a workspace"
        );
        Ok(Worktree { path, branch: spec.branch.to_owned(), base })
    }

    /// The checkout an earlier run of task `task_id` left on `branch` (kept while the task
    /// waited for an answer), if it is still there; `start` is the branch it started from.
    pub fn reopen(&self, task_id: i64, branch: &str, start: &str) -> Option<Worktree> {
        let path = self.task_path(task_id);
        let repo = Repository::open(&path).ok()?;
        let head = repo.head().ok()?;
        if head.shorthand().ok() != Some(branch) {
            return None;
        }
        let base = repo.refname_to_id(&format!("refs/remotes/origin/{start}")).ok()?;
        Some(Worktree { path, branch: branch.to_owned(), base })
    }

    /// Removes the directory of task `task_id`, if there is one.
    pub fn remove_task(&self, task_id: i64) -> Result<(), WorkspaceError> {
        let path = self.task_path(task_id);
        remove_dir_if_present(&path, self.scrub(), || format!("removing the directory of task {task_id}"))?;
        Ok(())
    }

    /// Keeps the `max` most recently modified task directories, and those of the tasks
    /// `spare` (waiting to resume), and deletes the others; returns how many were deleted.
    pub fn prune_tasks(&self, max: usize, spare: &[i64]) -> Result<usize, WorkspaceError> {
        let spared: Vec<String> = spare.iter().map(|id| format!("task-{id}")).collect();
        let mut tasks = self.task_dirs()?;
        tasks.retain(|(_, name)| !spared.contains(name));
        // Newest first; the name breaks ties so the order never depends on read_dir.
        tasks.sort_by(|a, b| b.cmp(a));
        for (_, name) in tasks.iter().skip(max) {
            let path = self.root.join("tasks").join(name);
            remove_dir_if_present(&path, self.scrub(), || format!("removing the directory {name}"))?;
        }
        Ok(tasks.len().saturating_sub(max))
    }

    /// The task directories with their modification times.
    fn task_dirs(&self) -> Result<Vec<(std::time::SystemTime, String)>, WorkspaceError> {
        let scrub = self.scrub();
        let action = || "listing the task directories".to_owned();
        let entries = match fs::read_dir(self.root.join("tasks")) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            entries => entries.context(scrub, action)?,
        };
        let mut tasks = Vec::new();
        for entry in entries {
            let entry = entry.context(scrub, action)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let metadata = entry.metadata().context(scrub, action)?;
            if name.starts_with("task-") && metadata.is_dir() {
                tasks.push((metadata.modified().context(scrub, action)?, name));
            }
        }
        Ok(tasks)
    }

    fn task_path(&self, task_id: i64) -> PathBuf {
        self.root.join("tasks").join(format!("task-{task_id}"))
    }

    /// Makes errors without a token to scrub (the workspaces root only).
    fn scrub(&self) -> Scrub<'_> {
        Scrub::new(&self.root, None)
    }
}

/// What [`Workspaces::prepare`] sets up.
#[derive(Debug, Clone)]
pub struct PrepareSpec<'a> {
    /// The task's id; its directory is `tasks/task-<id>`.
    pub task_id: i64,
    /// Identifies the repository, e.g. `github/octo-org/hello-world`.
    pub repo_key: &'a str,
    /// The remote to fetch from and push to.
    pub clone_url: &'a str,
    /// Credentials for the remote, if it needs any.
    pub creds: Option<&'a GitCredentials>,
    /// The branch the task works on.
    pub branch: &'a str,
    /// Where that branch starts.
    pub start: BranchStart,
}

/// Where a task's branch starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchStart {
    /// A new branch at the head of this branch of the remote (its default branch).
    FromBase(String),
    /// The branch exists on the remote (a follow-up on forgehand's own pull request).
    Existing,
}

/// Deletes `path` and everything under it; false when it was not there.
fn remove_dir_if_present(
    path: &Path,
    scrub: Scrub<'_>,
    action: impl FnOnce() -> String,
) -> Result<bool, WorkspaceError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            // Build tools leave read-only directories behind (Go's module cache, for one).
            make_dirs_writable(path);
            fs::remove_dir_all(path).context(scrub, action).map(|()| true)
        }
        Err(error) => Err(error).context(scrub, action),
    }
}

fn make_dirs_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // file_type does not follow symbolic links, so nothing outside is touched.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_dirs_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests;
