//! A task's checkout under `tasks/`: made to borrow the mirror's objects, then committed
//! in, summarized and pushed.

use std::fs;
use std::path::{Path, PathBuf};

use git2::{ErrorCode, Repository};

use super::errors::{Context as _, Scrub};
use super::mirror::{callbacks, display_url};
use super::{GitCredentials, Identity, Leftovers, WorkspaceError};

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

/// Makes the repository at `path` (new, or recycled and scrubbed) read its objects from
/// the mirror and point `origin` at the real remote.
pub(super) fn attach_to_mirror(
    path: &Path,
    mirror: &Path,
    clone_url: &str,
    scrub: Scrub<'_>,
) -> Result<Repository, WorkspaceError> {
    let action = || "creating the task repository".to_owned();
    let mirror_name = mirror.file_name().unwrap_or_default().to_string_lossy();
    // Relative to tasks/task-<id>/.git/objects, so moving the data directory keeps it
    // working; libgit2 and git both accept alternates starting with "."
    let alternate = format!("../../../../mirrors/{mirror_name}/objects\n");
    let alternates = path.join(".git/objects/info/alternates");
    fs::write(alternates, alternate).context(scrub, action)?;
    // Reopened: alternates are read when the repository is opened.
    let repo = Repository::open(path).context(scrub, action)?;
    repo.remote("origin", clone_url).context(scrub, action)?;
    Ok(repo)
}

/// Puts `branch` at `base`, records the mirror's `start` as `origin/<start>`, and checks
/// the branch out. A new, empty directory (`fresh`) is filled by the `git` program when
/// there is one: on a tree of 100,000 files it is several times faster than libgit2.
pub(super) fn check_out(
    repo: &Repository,
    branch: &str,
    start: &str,
    base: git2::Oid,
    fresh: bool,
    scrub: Scrub<'_>,
) -> Result<(), WorkspaceError> {
    let action = || format!("checking out {branch}");
    let commit = repo.find_commit(base).context(scrub, action)?;
    let mut local = repo.branch(branch, &commit, true).context(scrub, action)?;
    let tracking = format!("refs/remotes/origin/{start}");
    repo.reference(&tracking, base, true, "forgehand: from the mirror").context(scrub, action)?;
    if start == branch {
        local.set_upstream(Some(&format!("origin/{branch}"))).context(scrub, action)?;
    }
    repo.set_head(&format!("refs/heads/{branch}")).context(scrub, action)?;
    if let Some(git) = super::cli::git_program() {
        let path = repo.workdir().unwrap_or_else(|| repo.path());
        super::cli::check_out(git, path, branch).context(scrub, action)?;
        if !fresh {
            super::cli::clean(git, path).context(scrub, action)?;
        }
        return Ok(());
    }
    let mut checkout = git2::build::CheckoutBuilder::new();
    // Untracked and ignored files only exist in a recycled checkout: the last task's.
    checkout.force().remove_untracked(true).remove_ignored(true);
    repo.checkout_head(Some(&mut checkout)).context(scrub, action)
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
        self.commit_all_except(message, identity, &Leftovers::default())
    }

    /// [`Worktree::commit_all`], leaving out what setup and check commands left that the
    /// agent did not change since (those paths stay as HEAD has them).
    pub fn commit_all_except(
        &self,
        message: &str,
        identity: &Identity,
        leftovers: &Leftovers,
    ) -> Result<Option<git2::Oid>, WorkspaceError> {
        let scrub = self.scrub();
        let action = || format!("committing on {}", self.branch);
        let repo = self.open()?;
        let mut index = repo.index().context(scrub, action)?;
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).context(scrub, action)?;
        index.update_all(["*"], None).context(scrub, action)?;
        index.write().context(scrub, action)?;
        let head = repo.head().and_then(|h| h.peel_to_commit()).context(scrub, action)?;
        let keep_out = leftovers.untouched(&self.path);
        if !keep_out.is_empty() {
            repo.reset_default(Some(head.as_object()), keep_out.iter()).context(scrub, action)?;
            index = repo.index().context(scrub, action)?;
        }
        let tree = repo.find_tree(index.write_tree().context(scrub, action)?).context(scrub, action)?;
        if head.tree_id() == tree.id() {
            return Ok(None);
        }
        let signature = git2::Signature::now(&identity.name, &identity.email).context(scrub, action)?;
        let Some(key) = identity.signing_key.as_deref() else {
            let oid = repo
                .commit(Some("HEAD"), &signature, &signature, message, &tree, &[&head])
                .context(scrub, action)?;
            return Ok(Some(oid));
        };
        let buffer = repo
            .commit_create_buffer(&signature, &signature, message, &tree, &[&head])
            .context(scrub, action)?;
        let content = std::str::from_utf8(&buffer)
            .map_err(|_| WorkspaceError::Signing("the commit message is not UTF-8".into()))?;
        let armored = super::signing::ssh_sign(key, content)?;
        let oid = repo.commit_signed(content, &armored, None).context(scrub, action)?;
        let mut branch = repo.head().context(scrub, action)?;
        branch.set_target(oid, "forgehand: signed commit").context(scrub, action)?;
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
        set().context(self.scrub(), action)
    }

    /// True when HEAD is no longer the commit the branch started at.
    pub fn has_new_commits(&self) -> Result<bool, WorkspaceError> {
        Ok(head_id(&self.open()?, self.scrub())? != self.base)
    }

    /// The commit HEAD points at, as hex.
    pub fn head(&self) -> Result<String, WorkspaceError> {
        Ok(head_id(&self.open()?, self.scrub())?.to_string())
    }

    /// The commits on HEAD since the base, and the files they change.
    pub fn summary(&self) -> Result<ChangeSummary, WorkspaceError> {
        let scrub = self.scrub();
        let action = || format!("summarizing the changes on {}", self.branch);
        let repo = self.open()?;
        let head = head_id(&repo, scrub)?;
        let mut walk = repo.revwalk().context(scrub, action)?;
        walk.push(head).context(scrub, action)?;
        walk.hide(self.base).context(scrub, action)?;
        let commits = walk.collect::<Result<Vec<_>, _>>().context(scrub, action)?.len();
        let tree = |oid| repo.find_commit(oid).and_then(|c| c.tree());
        let (old, new) = (tree(self.base).context(scrub, action)?, tree(head).context(scrub, action)?);
        let diff = repo.diff_tree_to_tree(Some(&old), Some(&new), None).context(scrub, action)?;
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
        let scrub = self.scrub().with(creds);
        let repo = self.open()?;
        let mut remote =
            repo.find_remote("origin").context(scrub, || "finding the origin remote".to_owned())?;
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
                Err(scrub.push_rejected(&self.branch, error.message()))
            }
            (Err(error), _) => Err(error).context(scrub, || format!("pushing {} to {url}", self.branch)),
            (Ok(()), Some(message)) => Err(scrub.push_rejected(&self.branch, &message)),
            (Ok(()), None) => {
                tracing::info!(branch = %self.branch, force, "pushed");
                Ok(())
            }
        }
    }

    pub(super) fn open(&self) -> Result<Repository, WorkspaceError> {
        Repository::open(&self.path)
            .context(self.scrub(), || format!("opening the checkout of {}", self.branch))
    }

    /// Scrubs like [`super::Workspaces`] does; the root is two levels above the task
    /// directory.
    pub(super) fn scrub(&self) -> Scrub<'_> {
        let root = self.path.parent().and_then(Path::parent).unwrap_or(&self.path);
        Scrub::new(root, None)
    }
}

pub(super) fn head_id(repo: &Repository, scrub: Scrub<'_>) -> Result<git2::Oid, WorkspaceError> {
    let head = repo.head().and_then(|h| h.peel_to_commit());
    Ok(head.context(scrub, || "reading HEAD".to_owned())?.id())
}
