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
//! Nothing here ever deletes objects from a mirror: task repositories depend on them.
//! Everything blocks; callers run it inside `tokio::task::spawn_blocking`. Credentials
//! reach git2 only through the credential callback, never a URL or a config file.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use git2::{
    AutotagOption, Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions, FetchPrune, RemoteCallbacks,
    Repository,
};
use secrecy::{ExposeSecret, SecretString};

mod recycle;

const MIRROR_REFSPEC: &str = "+refs/heads/*:refs/heads/*";
const SLUG_MAX: usize = 40;
/// Leaves room for the `.git.partial` suffix within the usual 255-byte file name limit.
const MIRROR_NAME_MAX: usize = 240;

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
}

/// What went wrong in a workspace. Messages never carry a token or the local path of the
/// data directory (it reads `<workspaces>` instead).
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// A git operation failed.
    #[error("{action}: {message}")]
    Git {
        /// What forgehand was doing, e.g. `fetching https://github.com/o/r.git`.
        action: String,
        /// git2's message.
        message: String,
        /// git2's error class, kept to tell transient failures apart.
        class: ErrorClass,
        /// git2's error code.
        code: ErrorCode,
    },
    /// A file system operation failed.
    #[error("{action}: {message}")]
    Io {
        /// What forgehand was doing.
        action: String,
        /// The operating system's message.
        message: String,
    },
    /// The branch to start from is not in the mirror.
    #[error("the branch {0} does not exist on the remote")]
    MissingBranch(String),
    /// The name cannot be a git branch.
    #[error("{0:?} is not a valid branch name")]
    InvalidBranch(String),
    /// The repository key cannot become a directory name.
    #[error("the repository key {0:?} cannot name a mirror")]
    InvalidRepoKey(String),
    /// The clone URL is unusable (unsupported scheme, or credentials inside it).
    #[error("the clone URL {url} is not usable: {reason}")]
    InvalidUrl {
        /// The URL without any credentials.
        url: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The remote (or git2, for a non-fast-forward update) refused the push.
    #[error("the remote refused the push of {branch}: {message}")]
    PushRejected {
        /// The branch pushed.
        branch: String,
        /// The remote's status message.
        message: String,
    },
}

impl WorkspaceError {
    /// True for failures worth retrying later (network, I/O, server errors); false for
    /// authentication failures, missing branches, bad URLs and refused pushes.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Git { class, code, message, .. } => git_error_is_transient(*class, *code, message),
            Self::Io { .. } => true,
            _ => false,
        }
    }

    fn redacted(self, redactor: &Redactor<'_>) -> Self {
        let clean = |text: String| redactor.clean(text);
        match self {
            Self::Git { action, message, class, code } => {
                Self::Git { action: clean(action), message: clean(message), class, code }
            }
            Self::Io { action, message } => Self::Io { action: clean(action), message: clean(message) },
            Self::PushRejected { branch, message } => Self::PushRejected { branch, message: clean(message) },
            other => other,
        }
    }
}

fn git_error_is_transient(class: ErrorClass, code: ErrorCode, message: &str) -> bool {
    use ErrorCode as C;
    if matches!(code, C::Auth | C::Certificate | C::NotFound | C::InvalidSpec | C::NotFastForward) {
        return false;
    }
    match class {
        ErrorClass::Http => {
            http_status(message).is_none_or(|status| status >= 500 || status == 408 || status == 429)
        }
        ErrorClass::Net | ErrorClass::Os | ErrorClass::Ssl | ErrorClass::Zlib => true,
        _ => false,
    }
}

/// The status in libgit2's "unexpected http status code: 403".
fn http_status(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

/// Adds "what we were doing" to git2 and I/O errors.
trait Context<T> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T, WorkspaceError>;
}

impl<T> Context<T> for Result<T, git2::Error> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T, WorkspaceError> {
        self.map_err(|error| WorkspaceError::Git {
            action: action(),
            message: error.message().to_owned(),
            class: error.class(),
            code: error.code(),
        })
    }
}

impl<T> Context<T> for Result<T, std::io::Error> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T, WorkspaceError> {
        self.map_err(|error| WorkspaceError::Io { action: action(), message: error.to_string() })
    }
}

/// Scrubs the token and the workspaces root out of error messages.
struct Redactor<'a> {
    token: Option<&'a str>,
    roots: Vec<String>,
}

impl<'a> Redactor<'a> {
    fn new(root: &Path, creds: Option<&'a GitCredentials>) -> Self {
        let token = creds.map(|c| c.token.expose_secret()).filter(|t| !t.is_empty());
        let mut roots: Vec<String> = [fs::canonicalize(root).ok(), std::path::absolute(root).ok()]
            .into_iter()
            .flatten()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p.len() > 1)
            .collect();
        // The longer form first, so a prefix never leaves half a path behind.
        roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
        roots.dedup();
        Redactor { token, roots }
    }

    fn clean(&self, mut text: String) -> String {
        if let Some(token) = self.token {
            text = text.replace(token, "<token>");
        }
        for root in &self.roots {
            text = text.replace(root.as_str(), "<workspaces>");
        }
        text
    }
}

/// The git workspaces under `<data_dir>/workspaces`.
#[derive(Debug)]
pub struct Workspaces {
    root: PathBuf,
    /// One lock per mirror, so two tasks on one repository never fetch into it at once.
    mirror_locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
}

impl Workspaces {
    /// Workspaces rooted at `root` (normally `<data_dir>/workspaces`); nothing is created
    /// until it is needed.
    pub fn new(root: PathBuf) -> Workspaces {
        Workspaces { root, mirror_locks: Mutex::default() }
    }

    /// Ensures the bare mirror for `repo_key` (e.g. `github/octo-org/hello-world`) exists
    /// under `root/mirrors/`: cloned the first time, fetched incrementally (pruning
    /// deleted branches) afterwards. Returns the mirror's path.
    pub fn sync_mirror(
        &self,
        repo_key: &str,
        clone_url: &str,
        creds: Option<&GitCredentials>,
    ) -> Result<PathBuf, WorkspaceError> {
        self.sync(repo_key, clone_url, creds).map_err(|e| e.redacted(&Redactor::new(&self.root, creds)))
    }

    fn sync(
        &self,
        repo_key: &str,
        clone_url: &str,
        creds: Option<&GitCredentials>,
    ) -> Result<PathBuf, WorkspaceError> {
        check_url(clone_url)?;
        let path = self.mirror_path(repo_key)?;
        let lock = self.mirror_lock(&path);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        match Repository::open_bare(&path) {
            Ok(mirror) => fetch_mirror(&mirror, clone_url, creds)?,
            // Only what is certainly not a repository is replaced: running tasks read
            // the mirror's objects.
            Err(error) if error.code() == ErrorCode::NotFound => {
                clone_mirror(&path, repo_key, clone_url, creds)?
            }
            Err(error) => Err(error).context(|| format!("opening the mirror of {repo_key}"))?,
        }
        Ok(path)
    }

    /// Prepares the working directory `root/tasks/task-<id>` on `spec.branch`, after
    /// syncing the mirror. A directory left by an earlier attempt is replaced.
    pub fn prepare(&self, spec: &PrepareSpec<'_>) -> Result<Worktree, WorkspaceError> {
        self.prepare_task(spec).map_err(|e| e.redacted(&Redactor::new(&self.root, spec.creds)))
    }

    fn prepare_task(&self, spec: &PrepareSpec<'_>) -> Result<Worktree, WorkspaceError> {
        let start = match &spec.start {
            BranchStart::FromBase(base) => base.as_str(),
            BranchStart::Existing => spec.branch,
        };
        check_branch(spec.branch)?;
        check_branch(start)?;
        let started = std::time::Instant::now();
        let mirror = self.sync(spec.repo_key, spec.clone_url, spec.creds)?;
        let synced = started.elapsed();
        let base = mirror_head(&mirror, start)?;
        self.remove(spec.task_id)?;
        let path = self.task_path(spec.task_id);
        let check_out_here = || {
            let repo = attach_to_mirror(&path, &mirror, spec.clone_url)?;
            check_out(&repo, spec.branch, start, base)
        };
        let recycled = self.take_spare(&mirror, &path)
            && match check_out_here() {
                Ok(()) => true,
                Err(error) => {
                    // A checkout the agent left unusable (a broken index, odd file types).
                    tracing::warn!(task_id = spec.task_id, error = %error, "cannot reuse a checkout; creating one");
                    self.remove(spec.task_id)?;
                    false
                }
            };
        if !recycled {
            Repository::init(&path).context(|| "creating the task repository".to_owned())?;
            check_out_here()?;
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

    /// The message of the commit at the head of `branch` in the mirror, if the branch exists.
    pub fn mirror_head_message(
        &self,
        repo_key: &str,
        branch: &str,
    ) -> Result<Option<String>, WorkspaceError> {
        let path = self.mirror_path(repo_key)?;
        let Ok(mirror) = Repository::open_bare(&path) else { return Ok(None) };
        let Ok(reference) = mirror.find_reference(&format!("refs/heads/{branch}")) else { return Ok(None) };
        Ok(reference.peel_to_commit().ok().and_then(|c| c.message().ok().map(str::to_owned)))
    }

    /// Removes the directory of task `task_id`, if there is one.
    pub fn remove_task(&self, task_id: i64) -> Result<(), WorkspaceError> {
        self.remove(task_id).map_err(|e| e.redacted(&Redactor::new(&self.root, None)))
    }

    fn remove(&self, task_id: i64) -> Result<(), WorkspaceError> {
        let path = self.task_path(task_id);
        remove_dir_if_present(&path, || format!("removing the directory of task {task_id}"))?;
        Ok(())
    }

    /// Keeps the `max` most recently modified task directories and deletes the others;
    /// returns how many were deleted.
    pub fn prune_tasks(&self, max: usize) -> Result<usize, WorkspaceError> {
        self.prune(max).map_err(|e| e.redacted(&Redactor::new(&self.root, None)))
    }

    fn prune(&self, max: usize) -> Result<usize, WorkspaceError> {
        let mut tasks = self.task_dirs()?;
        // Newest first; the name breaks ties so the order never depends on read_dir.
        tasks.sort_by(|a, b| b.cmp(a));
        for (_, name) in tasks.iter().skip(max) {
            let path = self.root.join("tasks").join(name);
            remove_dir_if_present(&path, || format!("removing the directory {name}"))?;
        }
        Ok(tasks.len().saturating_sub(max))
    }

    /// The task directories with their modification times.
    fn task_dirs(&self) -> Result<Vec<(std::time::SystemTime, String)>, WorkspaceError> {
        let action = || "listing the task directories".to_owned();
        let entries = match fs::read_dir(self.root.join("tasks")) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            entries => entries.context(action)?,
        };
        let mut tasks = Vec::new();
        for entry in entries {
            let entry = entry.context(action)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let metadata = entry.metadata().context(action)?;
            if name.starts_with("task-") && metadata.is_dir() {
                tasks.push((metadata.modified().context(action)?, name));
            }
        }
        Ok(tasks)
    }

    fn task_path(&self, task_id: i64) -> PathBuf {
        self.root.join("tasks").join(format!("task-{task_id}"))
    }

    fn mirror_path(&self, repo_key: &str) -> Result<PathBuf, WorkspaceError> {
        Ok(self.root.join("mirrors").join(mirror_dir_name(repo_key)?))
    }

    fn mirror_lock(&self, path: &Path) -> Arc<Mutex<()>> {
        let mut locks = self.mirror_locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(path.to_path_buf()).or_default().clone()
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

/// A task's checkout: an ordinary repository whose `origin` is the real remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    /// The working directory.
    pub path: PathBuf,
    /// The branch checked out.
    pub branch: String,
    /// The commit the branch started at.
    pub base: git2::Oid,
}

/// What a task changed, for pull request bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSummary {
    /// Commits on HEAD that the base does not have.
    pub commits: usize,
    /// Paths that differ between the base and HEAD, sorted.
    pub files: Vec<String>,
}

fn check_branch(branch: &str) -> Result<(), WorkspaceError> {
    if git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
        Ok(())
    } else {
        Err(WorkspaceError::InvalidBranch(branch.to_owned()))
    }
}

fn mirror_head(mirror: &Path, branch: &str) -> Result<git2::Oid, WorkspaceError> {
    let repo = Repository::open_bare(mirror).context(|| "opening the mirror".to_owned())?;
    let reference = repo.find_reference(&format!("refs/heads/{branch}"));
    match reference.ok().and_then(|r| r.target()) {
        Some(oid) => Ok(oid),
        None => Err(WorkspaceError::MissingBranch(branch.to_owned())),
    }
}

/// Makes the repository at `path` (new, or recycled and scrubbed) read its objects from
/// the mirror and point `origin` at the real remote.
fn attach_to_mirror(path: &Path, mirror: &Path, clone_url: &str) -> Result<Repository, WorkspaceError> {
    let action = || "creating the task repository".to_owned();
    let mirror_name = mirror.file_name().unwrap_or_default().to_string_lossy();
    // Relative to tasks/task-<id>/.git/objects, so moving the data directory keeps it
    // working; libgit2 and git both accept alternates starting with "."
    let alternate = format!("../../../../mirrors/{mirror_name}/objects\n");
    let alternates = path.join(".git/objects/info/alternates");
    fs::write(alternates, alternate).context(action)?;
    // Reopened: alternates are read when the repository is opened.
    let repo = Repository::open(path).context(action)?;
    repo.remote("origin", clone_url).context(action)?;
    Ok(repo)
}

/// Puts `branch` at `base`, records the mirror's `start` as `origin/<start>`, and checks
/// the branch out.
fn check_out(repo: &Repository, branch: &str, start: &str, base: git2::Oid) -> Result<(), WorkspaceError> {
    let action = || format!("checking out {branch}");
    let commit = repo.find_commit(base).context(action)?;
    let mut local = repo.branch(branch, &commit, true).context(action)?;
    let tracking = format!("refs/remotes/origin/{start}");
    repo.reference(&tracking, base, true, "forgehand: from the mirror").context(action)?;
    if start == branch {
        local.set_upstream(Some(&format!("origin/{branch}"))).context(action)?;
    }
    repo.set_head(&format!("refs/heads/{branch}")).context(action)?;
    let mut checkout = git2::build::CheckoutBuilder::new();
    // Untracked and ignored files only exist in a recycled checkout: the last task's.
    checkout.force().remove_untracked(true).remove_ignored(true);
    repo.checkout_head(Some(&mut checkout)).context(action)
}

impl Worktree {
    /// Commits every uncommitted change (new, modified and deleted files; ignored files
    /// stay out) as `identity`. Returns the new commit, or `None` when nothing changed.
    /// Commits the agent made itself stay as they are.
    pub fn commit_all(
        &self,
        message: &str,
        identity: &Identity,
    ) -> Result<Option<git2::Oid>, WorkspaceError> {
        self.commit(message, identity).map_err(|e| self.redacted(e, None))
    }

    fn commit(&self, message: &str, identity: &Identity) -> Result<Option<git2::Oid>, WorkspaceError> {
        let action = || format!("committing on {}", self.branch);
        let repo = self.open()?;
        let mut index = repo.index().context(action)?;
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).context(action)?;
        index.update_all(["*"], None).context(action)?;
        index.write().context(action)?;
        let tree = repo.find_tree(index.write_tree().context(action)?).context(action)?;
        let head = repo.head().and_then(|h| h.peel_to_commit()).context(action)?;
        if head.tree_id() == tree.id() {
            return Ok(None);
        }
        let signature = git2::Signature::now(&identity.name, &identity.email).context(action)?;
        let oid =
            repo.commit(Some("HEAD"), &signature, &signature, message, &tree, &[&head]).context(action)?;
        Ok(Some(oid))
    }

    /// Makes `identity` the author of commits made in this checkout with plain `git`
    /// (the agent's), through the task repository's own config.
    pub fn set_identity(&self, identity: &Identity) -> Result<(), WorkspaceError> {
        let action = || "setting the commit identity".to_owned();
        let set = || -> Result<(), git2::Error> {
            let mut config = Repository::open(&self.path)?.config()?.open_level(git2::ConfigLevel::Local)?;
            config.set_str("user.name", &identity.name)?;
            config.set_str("user.email", &identity.email)
        };
        set().context(action).map_err(|e| self.redacted(e, None))
    }

    /// True when HEAD is no longer the commit the branch started at.
    pub fn has_new_commits(&self) -> Result<bool, WorkspaceError> {
        let head = self.open().and_then(|repo| head_id(&repo));
        Ok(head.map_err(|e| self.redacted(e, None))? != self.base)
    }

    /// The commits on HEAD since the base, and the files they change.
    pub fn summary(&self) -> Result<ChangeSummary, WorkspaceError> {
        self.summarize().map_err(|e| self.redacted(e, None))
    }

    fn summarize(&self) -> Result<ChangeSummary, WorkspaceError> {
        let action = || format!("summarizing the changes on {}", self.branch);
        let repo = self.open()?;
        let head = head_id(&repo)?;
        let mut walk = repo.revwalk().context(action)?;
        walk.push(head).context(action)?;
        walk.hide(self.base).context(action)?;
        let commits = walk.collect::<Result<Vec<_>, _>>().context(action)?.len();
        let tree = |oid| repo.find_commit(oid).and_then(|c| c.tree());
        let (old, new) = (tree(self.base).context(action)?, tree(head).context(action)?);
        let diff = repo.diff_tree_to_tree(Some(&old), Some(&new), None).context(action)?;
        let mut files: Vec<String> = diff
            .deltas()
            .filter_map(|d| d.new_file().path().or_else(|| d.old_file().path()))
            .map(|path| path.to_string_lossy().into_owned())
            .collect();
        files.sort();
        files.dedup();
        Ok(ChangeSummary { commits, files })
    }

    /// Pushes HEAD to `refs/heads/<branch>` on `origin`, authenticating with `creds`
    /// through the credential callback. Without `force`, a remote branch that moved on
    /// is a [`WorkspaceError::PushRejected`], as is any update the remote refuses.
    pub fn push(&self, creds: Option<&GitCredentials>, force: bool) -> Result<(), WorkspaceError> {
        self.push_head(creds, force).map_err(|e| self.redacted(e, creds))
    }

    fn push_head(&self, creds: Option<&GitCredentials>, force: bool) -> Result<(), WorkspaceError> {
        let repo = self.open()?;
        let mut remote = repo.find_remote("origin").context(|| "finding the origin remote".to_owned())?;
        let url = display_url(remote.url().unwrap_or_default());
        let plus = if force { "+" } else { "" };
        let refspec = format!("{plus}HEAD:refs/heads/{}", self.branch);
        let mut refused = None;
        let mut callbacks = callbacks(creds);
        callbacks.push_update_reference(|_refname, status| {
            if let Some(message) = status {
                refused = Some(message.to_owned());
            }
            Ok(())
        });
        let mut options = git2::PushOptions::new();
        options.remote_callbacks(callbacks);
        let pushed = remote.push(&[refspec], Some(&mut options));
        drop(options);
        match (pushed, refused) {
            (Err(error), _) if error.code() == ErrorCode::NotFastForward => {
                Err(self.rejected(error.message()))
            }
            (Err(error), _) => Err(error).context(|| format!("pushing {} to {url}", self.branch)),
            (Ok(()), Some(message)) => Err(self.rejected(&message)),
            (Ok(()), None) => {
                tracing::info!(branch = %self.branch, force, "pushed");
                Ok(())
            }
        }
    }

    fn rejected(&self, message: &str) -> WorkspaceError {
        WorkspaceError::PushRejected { branch: self.branch.clone(), message: message.to_owned() }
    }

    fn open(&self) -> Result<Repository, WorkspaceError> {
        Repository::open(&self.path).context(|| format!("opening the checkout of {}", self.branch))
    }

    /// Scrubs like [`Workspaces`] does; the root is two levels above the task directory.
    fn redacted(&self, error: WorkspaceError, creds: Option<&GitCredentials>) -> WorkspaceError {
        let root = self.path.parent().and_then(Path::parent).unwrap_or(&self.path);
        error.redacted(&Redactor::new(root, creds))
    }
}

fn head_id(repo: &Repository) -> Result<git2::Oid, WorkspaceError> {
    let head = repo.head().and_then(|h| h.peel_to_commit());
    Ok(head.context(|| "reading HEAD".to_owned())?.id())
}

/// Clones into a sibling `.partial` directory renamed at the end, so a crash mid-clone
/// never leaves something that looks like a mirror.
fn clone_mirror(
    path: &Path,
    repo_key: &str,
    clone_url: &str,
    creds: Option<&GitCredentials>,
) -> Result<(), WorkspaceError> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    remove_dir_if_present(path, || format!("removing the broken mirror of {repo_key}"))?;
    remove_dir_if_present(&partial, || format!("removing a partial mirror of {repo_key}"))?;
    let result = init_and_fetch(&partial, clone_url, creds);
    if result.is_err() {
        let _ = fs::remove_dir_all(&partial);
    }
    result?;
    fs::rename(&partial, path).context(|| format!("storing the mirror of {repo_key}"))?;
    tracing::info!(repo = repo_key, url = %display_url(clone_url), "cloned a mirror");
    Ok(())
}

fn init_and_fetch(
    path: &Path,
    clone_url: &str,
    creds: Option<&GitCredentials>,
) -> Result<(), WorkspaceError> {
    let url = display_url(clone_url);
    let mirror = Repository::init_bare(path).context(|| format!("creating a mirror of {url}"))?;
    mirror
        .remote_with_fetch("origin", clone_url, MIRROR_REFSPEC)
        .context(|| format!("configuring the mirror of {url}"))?;
    fetch_mirror(&mirror, clone_url, creds)
}

fn fetch_mirror(
    mirror: &Repository,
    clone_url: &str,
    creds: Option<&GitCredentials>,
) -> Result<(), WorkspaceError> {
    let url = display_url(clone_url);
    let mut remote = mirror.find_remote("origin").context(|| format!("opening the mirror of {url}"))?;
    if remote.url().ok() != Some(clone_url) {
        // The forge's clone URL changed (a renamed repository, a new host name).
        mirror
            .remote_set_url("origin", clone_url)
            .context(|| format!("updating the mirror's URL to {url}"))?;
        remote = mirror.find_remote("origin").context(|| format!("opening the mirror of {url}"))?;
    }
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks(creds)).prune(FetchPrune::On).download_tags(AutotagOption::None);
    remote
        .fetch(&[MIRROR_REFSPEC], Some(&mut options), Some("forgehand: sync"))
        .context(|| format!("fetching {url}"))
}

/// Callbacks that answer a credential request once; a second request means the forge
/// refused the token, and asking again would only repeat the refusal.
fn callbacks(creds: Option<&GitCredentials>) -> RemoteCallbacks<'_> {
    let mut callbacks = RemoteCallbacks::new();
    let Some(creds) = creds else {
        return callbacks;
    };
    let mut offered = false;
    callbacks.credentials(move |_url, _username, allowed| {
        if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            return Err(auth_error("the remote wants credentials other than a token"));
        }
        if offered {
            return Err(auth_error("the remote refused the credentials"));
        }
        offered = true;
        Cred::userpass_plaintext(&creds.username, creds.token.expose_secret())
    });
    callbacks
}

fn auth_error(message: &str) -> git2::Error {
    git2::Error::new(ErrorCode::Auth, ErrorClass::Http, message)
}

fn remove_dir_if_present(path: &Path, action: impl FnOnce() -> String) -> Result<bool, WorkspaceError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            // Build tools leave read-only directories behind (Go's module cache, for one).
            make_dirs_writable(path);
            fs::remove_dir_all(path).context(action).map(|()| true)
        }
        Err(error) => Err(error).context(action),
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

/// Refuses what git2 cannot use here (ssh, unknown schemes) and URLs carrying a password,
/// which would end up in the mirror's config.
fn check_url(url: &str) -> Result<(), WorkspaceError> {
    let refuse = |reason| Err(WorkspaceError::InvalidUrl { url: display_url(url), reason });
    let Some((scheme, rest)) = url.split_once("://") else {
        let scp_like = url.find(':').is_some_and(|c| url.find('/').is_none_or(|s| c < s));
        return match () {
            () if url.is_empty() => refuse("it is empty"),
            () if scp_like => refuse("ssh is not supported; use an https URL"),
            () => Ok(()),
        };
    };
    if !["https", "http", "file", "git"].contains(&scheme.to_ascii_lowercase().as_str()) {
        return refuse("only https, http, git and file URLs are supported");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            refuse("it carries credentials; configure a token instead")
        }
        _ => Ok(()),
    }
}

/// The URL without any user information, for messages and logs.
fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{path}")
}

/// One directory name per key, injectively: `/` becomes `+`, anything outside
/// `[A-Za-z0-9._-]` (and a leading `.`) becomes `%XX`, so no key can climb out of
/// `mirrors/` or collide with another.
fn mirror_dir_name(repo_key: &str) -> Result<String, WorkspaceError> {
    let mut name = String::with_capacity(repo_key.len() + 4);
    for (i, byte) in repo_key.bytes().enumerate() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => name.push(byte.into()),
            b'.' if i > 0 => name.push('.'),
            b'/' => name.push('+'),
            _ => write!(name, "%{byte:02X}").expect("writing to a String"),
        }
    }
    if name.is_empty() || name.len() > MIRROR_NAME_MAX {
        return Err(WorkspaceError::InvalidRepoKey(repo_key.to_owned()));
    }
    name.push_str(".git");
    Ok(name)
}

/// `<prefix>issue-<n>-<slug>`, the slug made of the title's ASCII letters and digits
/// (lowercased), other runs becoming one `-`, at most 40 characters; no slug part when
/// the title has no such characters. A valid ref name for any title whenever
/// `<prefix>issue-1` is one.
pub fn branch_name(prefix: &str, number: u32, title: &str) -> String {
    let slug = slug(title);
    if slug.is_empty() { format!("{prefix}issue-{number}") } else { format!("{prefix}issue-{number}-{slug}") }
}

fn slug(title: &str) -> String {
    let mut slug = String::new();
    let mut gap = false;
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !slug.is_empty() {
                slug.push('-');
            }
            gap = false;
            slug.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    truncate_slug(slug)
}

/// Cuts to `SLUG_MAX` characters, at the last `-` when there is one, so words stay whole.
fn truncate_slug(mut slug: String) -> String {
    if slug.len() <= SLUG_MAX {
        return slug;
    }
    let whole_word = slug.as_bytes()[SLUG_MAX] == b'-';
    slug.truncate(SLUG_MAX);
    if !whole_word && let Some(dash) = slug.rfind('-') {
        slug.truncate(dash);
    }
    slug.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::build::TreeUpdateBuilder;
    use git2::{FileMode, Oid, Signature};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use tempfile::TempDir;

    /// An upstream bare repository with one commit on `main`, and workspaces beside it.
    struct Fixture {
        tmp: TempDir,
        upstream: PathBuf,
        url: String,
        workspaces: Workspaces,
    }

    fn fixture() -> Fixture {
        let tmp = TempDir::new().unwrap();
        let upstream = tmp.path().join("upstream.git");
        let repo = Repository::init_bare(&upstream).unwrap();
        repo.set_head("refs/heads/main").unwrap();
        let files = [("README.md", "hello\n"), ("src/lib.rs", "pub fn answer() -> u32 { 42 }\n")];
        upstream_commit(&upstream, "main", &files, &[], "initial commit");
        let url = format!("file://{}", upstream.display());
        let workspaces = Workspaces::new(tmp.path().join("data/workspaces"));
        Fixture { tmp, upstream, url, workspaces }
    }

    /// Commits `files` (and deletes `removed`) on `branch` of a bare repository, as
    /// someone else pushing to the forge would.
    fn upstream_commit(
        repo: &Path,
        branch: &str,
        files: &[(&str, &str)],
        removed: &[&str],
        message: &str,
    ) -> Oid {
        let repo = Repository::open_bare(repo).unwrap();
        let refname = format!("refs/heads/{branch}");
        let parent = repo.find_reference(&refname).ok().map(|r| r.peel_to_commit().unwrap());
        let empty = repo.treebuilder(None).unwrap().write().unwrap();
        let baseline = match &parent {
            Some(commit) => commit.tree().unwrap(),
            None => repo.find_tree(empty).unwrap(),
        };
        let mut update = TreeUpdateBuilder::new();
        for (path, content) in files {
            let blob = repo.blob(content.as_bytes()).unwrap();
            update.upsert(*path, blob, FileMode::Blob);
        }
        for path in removed {
            update.remove(*path);
        }
        let tree = repo.find_tree(update.create_updated(&repo, &baseline).unwrap()).unwrap();
        let someone = Signature::now("Someone", "someone@example.com").unwrap();
        let parents: Vec<_> = parent.iter().collect();
        repo.commit(Some(&refname), &someone, &someone, message, &tree, &parents).unwrap()
    }

    fn branch_head(repo: &Path, branch: &str) -> Option<Oid> {
        let repo = Repository::open(repo).unwrap();
        let reference = repo.find_reference(&format!("refs/heads/{branch}")).ok()?;
        reference.target()
    }

    fn origin_url(repo: &Path) -> String {
        let repo = Repository::open(repo).unwrap();
        let remote = repo.find_remote("origin").unwrap();
        remote.url().unwrap().to_owned()
    }

    fn creds(token: &str) -> GitCredentials {
        GitCredentials { username: "x-access-token".into(), token: SecretString::from(token) }
    }

    const KEY: &str = "github/octo-org/hello-world";

    #[test]
    fn first_sync_clones_later_syncs_only_fetch() {
        let f = fixture();
        let mirror = f.workspaces.sync_mirror(KEY, &f.url, None).unwrap();
        assert!(Repository::open_bare(&mirror).unwrap().is_bare());
        assert_eq!(origin_url(&mirror), f.url);
        let main = branch_head(&f.upstream, "main");
        assert_eq!(branch_head(&mirror, "main"), main);
        let inode = fs::metadata(&mirror).unwrap().ino();
        fs::write(mirror.join("marker"), "still the first clone").unwrap();

        let newer = upstream_commit(&f.upstream, "main", &[("a.txt", "a")], &[], "more");
        let feature = upstream_commit(&f.upstream, "feature", &[("b", "b")], &[], "b");
        assert_eq!(f.workspaces.sync_mirror(KEY, &f.url, None).unwrap(), mirror);

        assert_eq!(fs::metadata(&mirror).unwrap().ino(), inode);
        assert!(mirror.join("marker").exists(), "the second sync cloned again");
        assert_eq!(branch_head(&mirror, "main"), Some(newer));
        assert_eq!(branch_head(&mirror, "feature"), Some(feature));
    }

    #[test]
    fn sync_prunes_deleted_branches_and_follows_a_new_url() {
        let f = fixture();
        upstream_commit(&f.upstream, "gone", &[("g", "g")], &[], "g");
        let mirror = f.workspaces.sync_mirror(KEY, &f.url, None).unwrap();
        assert!(branch_head(&mirror, "gone").is_some());
        let upstream = Repository::open_bare(&f.upstream).unwrap();
        upstream.find_reference("refs/heads/gone").unwrap().delete().unwrap();

        // A plain path works as well, and the stored URL follows the one given.
        let path_url = f.upstream.to_str().unwrap();
        f.workspaces.sync_mirror(KEY, path_url, None).unwrap();
        assert_eq!(branch_head(&mirror, "gone"), None);
        assert_eq!(origin_url(&mirror), path_url);
    }

    #[test]
    fn a_failed_first_sync_leaves_nothing_behind() {
        let f = fixture();
        let missing = format!("file://{}", f.tmp.path().join("nope.git").display());
        let err = f.workspaces.sync_mirror(KEY, &missing, None).unwrap_err();
        assert!(err.to_string().starts_with("fetching file://"), "{err}");
        let mirrors = fs::read_dir(f.workspaces.root.join("mirrors")).unwrap();
        assert_eq!(mirrors.count(), 0);
    }

    #[test]
    fn leftovers_of_a_crashed_clone_are_replaced() {
        let f = fixture();
        let mirrors = f.workspaces.root.join("mirrors");
        let name = mirror_dir_name(KEY).unwrap();
        fs::create_dir_all(mirrors.join(&name)).unwrap();
        fs::create_dir_all(mirrors.join(format!("{name}.partial/objects"))).unwrap();

        let mirror = f.workspaces.sync_mirror(KEY, &f.url, None).unwrap();
        assert_eq!(branch_head(&mirror, "main"), branch_head(&f.upstream, "main"));
        assert_eq!(fs::read_dir(&mirrors).unwrap().count(), 1);
    }

    #[test]
    fn repo_keys_stay_inside_mirrors_and_never_collide() {
        let names: Vec<_> = ["a/b-c", "a-b/c", "a+b/c", "../../etc", "..", ".hidden/x"]
            .iter()
            .map(|key| mirror_dir_name(key).unwrap())
            .collect();
        for name in &names {
            assert!(!name.contains('/') && !name.starts_with('.'), "{name}");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(mirror_dir_name(KEY).unwrap(), "github+octo-org+hello-world.git");
        assert!(mirror_dir_name("").is_err());
        assert!(mirror_dir_name(&"x".repeat(300)).is_err());
    }

    #[test]
    fn urls_with_passwords_or_ssh_are_refused() {
        let f = fixture();
        let with_token = "https://x-access-token:ghp_SECRET@github.com/o/r.git";
        let err = f.workspaces.sync_mirror(KEY, with_token, None).unwrap_err();
        assert!(matches!(err, WorkspaceError::InvalidUrl { .. }));
        assert!(!format!("{err} {err:?}").contains("ghp_SECRET"));
        assert!(!err.is_transient());
        for url in ["git@github.com:o/r.git", "ssh://git@github.com/o/r.git", ""] {
            let err = f.workspaces.sync_mirror(KEY, url, None).unwrap_err();
            assert!(matches!(err, WorkspaceError::InvalidUrl { .. }), "{url}");
        }
        assert!(check_url("https://github.com/o/r.git").is_ok());
        assert!(check_url("https://user@github.com/o/r.git").is_ok());
        assert!(check_url("/srv/git/r.git").is_ok());
    }

    #[test]
    fn transient_classification() {
        use ErrorClass as K;
        use ErrorCode as C;
        let cases = [
            (K::Net, C::GenericError, "failed to connect", true),
            (K::Os, C::GenericError, "connection reset by peer", true),
            (K::Http, C::GenericError, "unexpected http status code: 502", true),
            (K::Http, C::GenericError, "unexpected http status code: 429", true),
            (K::Http, C::GenericError, "unexpected http status code: 403", false),
            (K::Http, C::GenericError, "unexpected http status code: 401", false),
            (K::Http, C::GenericError, "unexpected http status code: 404", false),
            (K::Http, C::Auth, "authentication required", false),
            (K::Reference, C::NotFastForward, "non-fastforwardable", false),
            (K::Repository, C::NotFound, "could not find repository", false),
        ];
        for (class, code, message, transient) in cases {
            assert_eq!(git_error_is_transient(class, code, message), transient, "{message}");
        }
        assert!(!WorkspaceError::MissingBranch("main".into()).is_transient());
    }

    #[test]
    fn messages_lose_the_token_and_the_data_dir() {
        let f = fixture();
        let creds = creds("ghp_SECRET");
        let root = std::path::absolute(&f.workspaces.root).unwrap();
        let err = WorkspaceError::Git {
            action: "fetching https://github.com/o/r.git".into(),
            message: format!("token ghp_SECRET at {}/mirrors/x", root.display()),
            class: ErrorClass::Net,
            code: ErrorCode::GenericError,
        };
        let text = err.redacted(&Redactor::new(&f.workspaces.root, Some(&creds))).to_string();
        assert_eq!(text, "fetching https://github.com/o/r.git: token <token> at <workspaces>/mirrors/x");
    }

    const BRANCH: &str = "forgehand/issue-1-fix-the-bug";

    fn spec<'a>(f: &'a Fixture, task_id: i64, start: BranchStart) -> PrepareSpec<'a> {
        PrepareSpec { task_id, repo_key: KEY, clone_url: &f.url, creds: None, branch: BRANCH, start }
    }

    fn from_main() -> BranchStart {
        BranchStart::FromBase("main".into())
    }

    fn bot() -> Identity {
        Identity { name: "forgehand[bot]".into(), email: "bot@forgehand.invalid".into() }
    }

    fn is_clean(repo: &Repository) -> bool {
        let mut options = git2::StatusOptions::new();
        options.include_ignored(false).include_untracked(true);
        repo.statuses(Some(&mut options)).unwrap().is_empty()
    }

    /// Loose objects and packs stored in the task repository itself.
    fn own_objects(worktree: &Path) -> usize {
        let objects = worktree.join(".git/objects");
        let mut count = 0;
        for entry in fs::read_dir(&objects).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != "info" {
                count += fs::read_dir(entry.path()).unwrap().count();
            }
        }
        count
    }

    #[test]
    fn prepare_from_base_starts_a_branch_at_the_head_of_main() {
        let f = fixture();
        let main = upstream_commit(&f.upstream, "main", &[("a.txt", "a")], &[], "more");
        let worktree = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();

        assert_eq!(worktree.path, f.workspaces.root.join("tasks/task-1"));
        assert_eq!((worktree.branch.as_str(), worktree.base), (BRANCH, main));
        let repo = Repository::open(&worktree.path).unwrap();
        assert!(!repo.is_bare());
        assert_eq!(repo.head().unwrap().name().ok(), Some("refs/heads/forgehand/issue-1-fix-the-bug"));
        assert_eq!(repo.head().unwrap().target(), Some(main));
        assert_eq!(origin_url(&worktree.path), f.url);
        let readme = fs::read_to_string(worktree.path.join("README.md")).unwrap();
        assert_eq!(readme, "hello\n");
        assert!(is_clean(&repo));
        assert_eq!(own_objects(&worktree.path), 0, "the object database was copied");
    }

    #[test]
    fn plain_git_works_in_the_checkout() {
        let f = fixture();
        let worktree = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git").args(args).current_dir(&worktree.path).output();
            out.map(|o| (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned()))
        };
        let Ok((ok, log)) = git(&["log", "--format=%s", "origin/main"]) else {
            return; // no git binary here; libgit2 reads the alternates in the other tests
        };
        assert!(ok && log.trim() == "initial commit", "{log}");
        assert!(git(&["fsck", "--connectivity-only"]).unwrap().0);
    }

    #[test]
    fn commit_all_commits_new_modified_and_deleted_files_as_the_identity() {
        let f = fixture();
        let worktree = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();
        let dir = &worktree.path;
        fs::write(dir.join("README.md"), "hello, world\n").unwrap();
        fs::remove_file(dir.join("src/lib.rs")).unwrap();
        fs::create_dir_all(dir.join("docs")).unwrap();
        fs::write(dir.join("docs/new.md"), "new\n").unwrap();
        fs::write(dir.join(".gitignore"), "target/\n").unwrap();
        fs::create_dir_all(dir.join("target")).unwrap();
        fs::write(dir.join("target/junk"), "ignored").unwrap();

        let oid = worktree.commit_all("Fix the bug", &bot()).unwrap().unwrap();

        let repo = Repository::open(dir).unwrap();
        let commit = repo.find_commit(oid).unwrap();
        assert_eq!(commit.message().ok(), Some("Fix the bug"));
        assert_eq!(commit.parent_ids().collect::<Vec<_>>(), [worktree.base]);
        for person in [commit.author(), commit.committer()] {
            assert_eq!(
                (person.name().ok(), person.email().ok()),
                (Some("forgehand[bot]"), Some("bot@forgehand.invalid"))
            );
        }
        let tree = commit.tree().unwrap();
        assert!(tree.get_path(Path::new("target/junk")).is_err(), "ignored file committed");
        assert!(is_clean(&repo));
        assert!(worktree.has_new_commits().unwrap());
        let summary = worktree.summary().unwrap();
        assert_eq!(summary.commits, 1);
        assert_eq!(summary.files, [".gitignore", "README.md", "docs/new.md", "src/lib.rs"]);
    }

    #[test]
    fn a_clean_tree_commits_nothing() {
        let f = fixture();
        let worktree = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();
        assert_eq!(worktree.commit_all("nothing", &bot()).unwrap(), None);
        assert!(!worktree.has_new_commits().unwrap());
        let summary = worktree.summary().unwrap();
        assert_eq!((summary.commits, summary.files.len()), (0, 0));
    }

    #[test]
    fn commits_the_agent_made_are_kept() {
        let f = fixture();
        let worktree = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();
        worktree.set_identity(&bot()).unwrap();
        let repo = Repository::open(&worktree.path).unwrap();
        assert_eq!(repo.config().unwrap().get_string("user.name").unwrap(), "forgehand[bot]");
        fs::write(worktree.path.join("agent.txt"), "by the agent").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("agent.txt")).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        let agent = Signature::now("Claude", "claude@example.com").unwrap();
        let own = repo.commit(Some("HEAD"), &agent, &agent, "agent", &tree, &[&head]).unwrap();

        assert_eq!(worktree.commit_all("leftovers", &bot()).unwrap(), None);
        assert!(worktree.has_new_commits().unwrap());
        fs::write(worktree.path.join("left.txt"), "not committed").unwrap();
        let leftovers = worktree.commit_all("leftovers", &bot()).unwrap().unwrap();
        let parent = repo.find_commit(leftovers).unwrap().parent_id(0).unwrap();
        assert_eq!(parent, own);
        assert_eq!(worktree.summary().unwrap().commits, 2);
    }

    #[test]
    fn preparing_a_task_again_starts_fresh() {
        let f = fixture();
        let first = f.workspaces.prepare(&spec(&f, 3, from_main())).unwrap();
        fs::write(first.path.join("stray.txt"), "from a crashed run").unwrap();
        first.commit_all("half done", &bot()).unwrap();

        let read_only = first.path.join("vendor/pkg");
        fs::create_dir_all(&read_only).unwrap();
        fs::write(read_only.join("mod.go"), "package pkg").unwrap();
        for dir in [&read_only, &first.path.join("vendor")] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
        }

        let second = f.workspaces.prepare(&spec(&f, 3, from_main())).unwrap();
        assert_eq!(second.path, first.path);
        assert!(!second.path.join("stray.txt").exists());
        assert!(!second.path.join("vendor").exists());
        assert!(!second.has_new_commits().unwrap());
    }

    /// Task 1 as an agent might leave it after the daemon committed its work: files
    /// changed, added and ignored, a hook and a config entry planted in `.git`.
    fn finished_task_with_leftovers(f: &Fixture) -> Worktree {
        let first = f.workspaces.prepare(&spec(f, 1, from_main())).unwrap();
        fs::write(first.path.join("README.md"), "changed by task 1\n").unwrap();
        fs::write(first.path.join("new.txt"), "added by task 1\n").unwrap();
        fs::write(first.path.join(".gitignore"), "build/\n").unwrap();
        fs::create_dir_all(first.path.join("build")).unwrap();
        fs::write(first.path.join("build/out.bin"), "ignored output").unwrap();
        let hook = first.path.join(".git/hooks/pre-commit");
        fs::create_dir_all(hook.parent().unwrap()).unwrap();
        fs::write(&hook, "#!/bin/sh\necho planted\n").unwrap();
        let mut config = Repository::open(&first.path).unwrap().config().unwrap();
        config.set_str("core.fsmonitor", "/tmp/planted-command").unwrap();
        // A repository of its own inside the checkout, with a hook of its own.
        let nested = first.path.join("vendor/nested");
        Repository::init(&nested).unwrap();
        fs::write(nested.join(".git/hooks/pre-commit"), "#!/bin/sh\necho planted\n").unwrap();
        first.commit_all("task 1", &bot()).unwrap().unwrap();
        first
    }

    #[test]
    fn the_next_task_reuses_a_recycled_checkout_and_keeps_nothing_of_the_last() {
        let f = fixture();
        let first = finished_task_with_leftovers(&f);
        let untouched = fs::metadata(first.path.join("src/lib.rs")).unwrap().ino();
        f.workspaces.recycle_task(1, KEY, 1).unwrap();
        assert!(!first.path.exists());

        let second = f.workspaces.prepare(&spec(&f, 2, from_main())).unwrap();
        // The same file, not a new one: only what differs from main was written.
        assert_eq!(fs::metadata(second.path.join("src/lib.rs")).unwrap().ino(), untouched);
        assert_eq!(fs::read_to_string(second.path.join("README.md")).unwrap(), "hello\n");
        for gone in ["new.txt", ".gitignore", "build", ".git/hooks/pre-commit", ".forgehand-index", "vendor"]
        {
            assert!(!second.path.join(gone).exists(), "{gone} survived");
        }
        let repo = Repository::open(&second.path).unwrap();
        assert!(repo.config().unwrap().get_string("core.fsmonitor").is_err());
        assert!(is_clean(&repo));
        assert_eq!(head_id(&repo).unwrap(), second.base);
        assert_eq!(repo.branches(None).unwrap().count(), 2, "the task's branch and origin/main");
        // It works like a new checkout: commit and push reach the remote.
        fs::write(second.path.join("fix.txt"), "fixed\n").unwrap();
        second.commit_all("fix", &bot()).unwrap().unwrap();
        second.push(None, false).unwrap();
        assert_eq!(upstream_file(&f, BRANCH, "fix.txt").as_deref(), Some("fixed\n"));
        assert_eq!(upstream_file(&f, BRANCH, "new.txt"), None);
    }

    #[test]
    fn recycling_keeps_at_most_the_given_number_of_checkouts() {
        let f = fixture();
        for id in 1..=3 {
            f.workspaces.prepare(&spec(&f, id, from_main())).unwrap();
        }
        for id in 1..=3 {
            f.workspaces.recycle_task(id, KEY, 2).unwrap();
        }
        let shelf = f.workspaces.root.join("spares").join(mirror_dir_name(KEY).unwrap());
        assert_eq!(fs::read_dir(&shelf).unwrap().count(), 2);
        assert_eq!(fs::read_dir(f.workspaces.root.join("tasks")).unwrap().count(), 0);
        // Recycling a task without a directory is a no-op.
        f.workspaces.recycle_task(9, KEY, 2).unwrap();
        f.workspaces.prepare(&spec(&f, 4, from_main())).unwrap();
        assert_eq!(fs::read_dir(&shelf).unwrap().count(), 1);
    }

    #[test]
    fn a_recycled_checkout_the_agent_broke_is_replaced_by_a_new_one() {
        let f = fixture();
        let first = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();
        first.commit_all("nothing", &bot()).unwrap();
        f.workspaces.recycle_task(1, KEY, 1).unwrap();
        let spare = f.workspaces.root.join("spares").join(mirror_dir_name(KEY).unwrap()).join("task-1");
        fs::write(spare.join(".git/index"), "not an index").unwrap();
        // A second name keeps the old file's inode from being reused by a new file.
        let old_readme = f.tmp.path().join("old-readme");
        fs::hard_link(spare.join("README.md"), &old_readme).unwrap();
        upstream_commit(&f.upstream, "main", &[("src/lib.rs", "pub fn answer() -> u32 { 43 }\n")], &[], "43");

        let second = f.workspaces.prepare(&spec(&f, 2, from_main())).unwrap();
        let lib = fs::read_to_string(second.path.join("src/lib.rs")).unwrap();
        assert!(lib.contains("43"), "{lib}");
        let ino = |path: &Path| fs::metadata(path).unwrap().ino();
        assert_ne!(ino(&second.path.join("README.md")), ino(&old_readme), "a new checkout");
        assert!(is_clean(&Repository::open(&second.path).unwrap()));
    }

    #[test]
    fn a_missing_branch_is_a_permanent_error() {
        let f = fixture();
        for start in [BranchStart::Existing, BranchStart::FromBase("develop".into())] {
            let err = f.workspaces.prepare(&spec(&f, 1, start)).unwrap_err();
            assert!(matches!(err, WorkspaceError::MissingBranch(_)), "{err:?}");
            assert!(!err.is_transient());
        }
        let mut bad = spec(&f, 1, from_main());
        bad.branch = "../evil.lock";
        let err = f.workspaces.prepare(&bad).unwrap_err();
        assert!(matches!(err, WorkspaceError::InvalidBranch(_)), "{err:?}");
    }

    #[test]
    fn remove_and_prune_task_directories() {
        let f = fixture();
        assert_eq!(f.workspaces.prune_tasks(2).unwrap(), 0);
        let now = std::time::SystemTime::now();
        for id in 1..=4 {
            let worktree = f.workspaces.prepare(&spec(&f, id, from_main())).unwrap();
            let age = std::time::Duration::from_secs(60 * (10 - id as u64));
            let dir = fs::File::open(&worktree.path).unwrap();
            dir.set_modified(now - age).unwrap();
        }
        f.workspaces.remove_task(2).unwrap();
        f.workspaces.remove_task(2).unwrap();
        assert_eq!(f.workspaces.prune_tasks(2).unwrap(), 1);

        let tasks = f.workspaces.root.join("tasks");
        let mut left: Vec<_> =
            fs::read_dir(&tasks).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["task-3", "task-4"]);
        assert_eq!(f.workspaces.prune_tasks(0).unwrap(), 2);
        // The mirror survives: the next task only fetches.
        assert!(f.workspaces.prepare(&spec(&f, 5, from_main())).is_ok());
    }

    fn upstream_file(f: &Fixture, branch: &str, path: &str) -> Option<String> {
        let repo = Repository::open_bare(&f.upstream).unwrap();
        let reference = repo.find_reference(&format!("refs/heads/{branch}")).ok()?;
        let tree = reference.peel_to_tree().unwrap();
        let entry = tree.get_path(Path::new(path)).ok()?;
        let blob = entry.to_object(&repo).unwrap().peel_to_blob().unwrap();
        Some(String::from_utf8(blob.content().to_vec()).unwrap())
    }

    /// Prepares task `id` on `BRANCH`, writes `files`, commits and returns the commit.
    fn task_with_change(f: &Fixture, id: i64, start: BranchStart, files: &[(&str, &str)]) -> (Worktree, Oid) {
        let worktree = f.workspaces.prepare(&spec(f, id, start)).unwrap();
        for (path, content) in files {
            fs::write(worktree.path.join(path), content).unwrap();
        }
        let oid = worktree.commit_all("change", &bot()).unwrap().unwrap();
        (worktree, oid)
    }

    #[test]
    fn push_creates_the_branch_upstream() {
        let f = fixture();
        let (worktree, oid) = task_with_change(&f, 1, from_main(), &[("fix.txt", "fixed\n")]);
        fs::remove_file(worktree.path.join("src/lib.rs")).unwrap();
        let second = worktree.commit_all("delete", &bot()).unwrap().unwrap();
        worktree.push(None, false).unwrap();

        assert_eq!(branch_head(&f.upstream, BRANCH), Some(second));
        let repo = Repository::open_bare(&f.upstream).unwrap();
        assert_eq!(repo.find_commit(second).unwrap().parent_id(0).unwrap(), oid);
        assert_eq!(upstream_file(&f, BRANCH, "fix.txt").as_deref(), Some("fixed\n"));
        assert_eq!(upstream_file(&f, BRANCH, "README.md").as_deref(), Some("hello\n"));
        assert_eq!(upstream_file(&f, BRANCH, "src/lib.rs"), None);
        assert_eq!(branch_head(&f.upstream, "main"), Some(worktree.base));
    }

    #[test]
    fn a_follow_up_checks_out_the_existing_branch_and_fast_forwards() {
        let f = fixture();
        let (first, oid) = task_with_change(&f, 1, from_main(), &[("fix.txt", "v1\n")]);
        first.push(None, false).unwrap();

        let (follow_up, newer) = task_with_change(&f, 2, BranchStart::Existing, &[("fix.txt", "v2\n")]);
        assert_eq!(follow_up.base, oid);
        let repo = Repository::open(&follow_up.path).unwrap();
        assert_eq!(repo.find_commit(newer).unwrap().parent_id(0).unwrap(), oid);
        follow_up.push(None, false).unwrap();

        assert_eq!(branch_head(&f.upstream, BRANCH), Some(newer));
        assert_eq!(upstream_file(&f, BRANCH, "fix.txt").as_deref(), Some("v2\n"));
        assert_eq!(follow_up.summary().unwrap().files, ["fix.txt"]);
    }

    #[test]
    fn a_push_over_a_moved_branch_is_refused_unless_forced() {
        let f = fixture();
        let (first, _) = task_with_change(&f, 1, from_main(), &[("fix.txt", "v1\n")]);
        first.push(None, false).unwrap();
        let (follow_up, ours) = task_with_change(&f, 2, BranchStart::Existing, &[("fix.txt", "v2\n")]);
        let theirs = upstream_commit(&f.upstream, BRANCH, &[("human.txt", "h")], &[], "human");

        let err = follow_up.push(None, false).unwrap_err();
        assert!(matches!(err, WorkspaceError::PushRejected { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with(&format!("the remote refused the push of {BRANCH}: ")), "{text}");
        assert!(!err.is_transient());
        assert_eq!(branch_head(&f.upstream, BRANCH), Some(theirs));

        follow_up.push(None, true).unwrap();
        assert_eq!(branch_head(&f.upstream, BRANCH), Some(ours));
    }

    #[test]
    fn an_update_the_remote_refuses_is_reported() {
        let f = fixture();
        let (worktree, _) = task_with_change(&f, 1, from_main(), &[("fix.txt", "v1\n")]);
        // A lock on the ref makes the (local) remote refuse the update with a status.
        let lock = f.upstream.join(format!("refs/heads/{BRANCH}.lock"));
        fs::create_dir_all(lock.parent().unwrap()).unwrap();
        fs::write(&lock, "").unwrap();

        let err = worktree.push(None, false).unwrap_err();
        assert!(matches!(err, WorkspaceError::PushRejected { .. }), "{err:?}");
        assert!(!err.is_transient());
        assert_eq!(branch_head(&f.upstream, BRANCH), None);
    }

    /// Every file under `dir` whose bytes contain `needle`.
    fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let Ok(entries) = fs::read_dir(dir) else {
            return found;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(files_containing(&path, needle));
            } else if let Ok(bytes) = fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(path);
            }
        }
        found
    }

    #[test]
    fn credentials_never_reach_a_config_file() {
        let f = fixture();
        let creds = creds("ghp_NEVER_ON_DISK");
        let mut spec = spec(&f, 1, from_main());
        spec.creds = Some(&creds);
        let worktree = f.workspaces.prepare(&spec).unwrap();
        fs::write(worktree.path.join("fix.txt"), "fixed").unwrap();
        worktree.commit_all("fix", &bot()).unwrap();
        worktree.push(Some(&creds), false).unwrap();

        let mirror = f.workspaces.sync_mirror(KEY, &f.url, Some(&creds)).unwrap();
        assert_eq!(origin_url(&mirror), f.url);
        assert_eq!(origin_url(&worktree.path), f.url);
        assert!(fs::read_to_string(mirror.join("config")).unwrap().contains(&f.url));
        let leaks = files_containing(f.tmp.path(), "ghp_NEVER_ON_DISK");
        assert!(leaks.is_empty(), "{leaks:?}");
    }

    /// A forge on 127.0.0.1 that answers every request with 401, recording the requests.
    struct RefusingForge {
        url: String,
        requests: Arc<Mutex<Vec<String>>>,
    }

    fn refusing_forge() -> RefusingForge {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/octo-org/hello-world.git", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        // Exits with the test process; each request is answered whole, so none hangs.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut request = String::new();
                let mut reader = BufReader::new(&stream);
                while reader.read_line(&mut request).unwrap_or(0) > 2 {}
                seen.lock().unwrap().push(request);
                let response = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"forge\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = stream.write_all(response.as_bytes());
            }
        });
        RefusingForge { url, requests }
    }

    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..4 {
                let c = if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] } else { b'=' };
                out.push(c.into());
            }
        }
        out
    }

    #[test]
    fn a_refused_token_is_a_permanent_error_and_goes_only_through_the_callback() {
        let f = fixture();
        let forge = refusing_forge();
        let creds = creds("ghp_REFUSED");

        let err = f.workspaces.sync_mirror(KEY, &forge.url, Some(&creds)).unwrap_err();

        assert!(!err.is_transient(), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(text.contains(&format!("fetching {}", forge.url)), "{text}");
        assert!(!text.contains("ghp_REFUSED"), "{text}");
        let root = std::path::absolute(&f.workspaces.root).unwrap();
        assert!(!text.contains(root.to_str().unwrap()), "{text}");
        let requests = forge.requests.lock().unwrap();
        let expected = format!("Authorization: Basic {}", base64(b"x-access-token:ghp_REFUSED"));
        assert!(requests.iter().any(|r| r.contains(&expected)), "{requests:?}");
        assert!(requests.iter().all(|r| !r.contains("ghp_REFUSED")));
        assert!(files_containing(f.tmp.path(), "ghp_REFUSED").is_empty());
        assert_eq!(fs::read_dir(f.workspaces.root.join("mirrors")).unwrap().count(), 0);
    }

    #[test]
    fn a_forge_asking_for_credentials_without_any_is_a_permanent_error() {
        let f = fixture();
        let forge = refusing_forge();
        let err = f.workspaces.sync_mirror(KEY, &forge.url, None).unwrap_err();
        assert!(!err.is_transient(), "{err:?}");
    }

    const NASTY_TITLES: &[&str] = &[
        "",
        " ",
        "../../etc/passwd",
        "Ünïcödé 🚀",
        "🚀🚀🚀",
        "tab\tnew\nline\u{7f}\u{0}bell\u{7}",
        "refs/heads/@{-1}",
        "@{",
        "@",
        "branch.lock",
        "x.lock",
        "..",
        "a..b",
        "trailing.",
        "trailing/",
        "/leading",
        "--dashes--",
        "back\\slash",
        "star*question?bracket[colon:caret^tilde~",
        "HEAD",
        "Fix: the `login` page (again) — v2.0!",
    ];

    #[test]
    fn branch_names_are_valid_refs_for_any_title() {
        let long = "word ".repeat(60) + &"x".repeat(300);
        let titles = NASTY_TITLES.iter().copied().chain([long.as_str()]);
        for title in titles {
            for prefix in ["forgehand/", "", "bot-"] {
                let name = branch_name(prefix, 7, title);
                let full = format!("refs/heads/{name}");
                assert!(git2::Reference::is_valid_name(&full), "{title:?} -> {name}");
                assert_eq!(name, branch_name(prefix, 7, title), "not deterministic");
                let limit = format!("{prefix}issue-7").len() + 1 + SLUG_MAX;
                assert!(name.len() <= limit, "{name}");
                assert!(!name.ends_with('-'), "{name}");
            }
        }
    }

    #[test]
    fn branch_name_examples() {
        let name = |title| branch_name("forgehand/", 12, title);
        assert_eq!(name("Fix the login bug"), "forgehand/issue-12-fix-the-login-bug");
        assert_eq!(name("  Crash on `--help`!! "), "forgehand/issue-12-crash-on-help");
        assert_eq!(name("Ünïcödé 🚀"), "forgehand/issue-12-n-c-d");
        assert_eq!(name("🚀"), "forgehand/issue-12");
        assert_eq!(name(""), "forgehand/issue-12");
        let long = "Support configuring the webhook secret through environment variables";
        assert_eq!(name(long), "forgehand/issue-12-support-configuring-the-webhook-secret");
        let exact = "a".repeat(SLUG_MAX) + " tail";
        assert_eq!(slug(&exact), "a".repeat(SLUG_MAX));
        assert_eq!(slug(&"b".repeat(100)), "b".repeat(SLUG_MAX));
    }
}
