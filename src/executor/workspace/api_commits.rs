//! A task's new commits as the forge's Git database API takes them (GitHub: blobs, a
//! tree on the parent's, a commit), and the checkout brought back to what the API made.

use std::collections::HashSet;

use git2::{Delta, Oid, Repository, ResetType, Sort};

use super::errors::Context as _;
use super::mirror::callbacks;
use super::worktree::head_id;
use super::{GitCredentials, WorkspaceError, Worktree};

/// The most commits one publication makes again (each costs at least three calls).
const MAX_COMMITS: usize = 50;
/// The most new files one publication sends (inside tree requests, or one upload each).
const MAX_UPLOADS: usize = 2_000;
/// The largest file the API takes (GitHub refuses blobs over 100 MB).
const MAX_BLOB_BYTES: usize = 100 * 1024 * 1024;

/// A commit on the task's branch that the remote does not have, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCommit {
    pub id: Oid,
    pub message: String,
    /// Its tree: what the API's tree must come out as.
    pub tree: Oid,
    /// Its first parent's tree, which the API's tree is made on.
    pub parent_tree: Oid,
    /// The paths it changes against its (first) parent.
    pub changes: Vec<Change>,
}

/// A path a commit adds, changes or deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    /// The git mode in octal (`100644`, `100755`, `120000`, `160000`); the old one when
    /// deleted.
    pub mode: String,
    /// The blob (or submodule commit) now at `path`; `None` when it was deleted.
    pub object: Option<Oid>,
    /// The remote has the object already (the parent had it at a changed path, or it is
    /// a submodule's commit): no upload.
    pub known: bool,
}

impl Worktree {
    /// The commits HEAD has beyond the base, oldest first, following first parents, with
    /// what each changes. Refuses more than the API calls forgehand allows itself.
    pub fn local_commits(&self) -> Result<Vec<LocalCommit>, WorkspaceError> {
        let scrub = self.scrub();
        let action = || format!("listing the new commits on {}", self.branch);
        let repo = self.open()?;
        let mut walk = repo.revwalk().context(scrub, action)?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE).context(scrub, action)?;
        walk.simplify_first_parent().context(scrub, action)?;
        walk.push(head_id(&repo, scrub)?).context(scrub, action)?;
        walk.hide(self.base).context(scrub, action)?;
        let ids = walk.collect::<Result<Vec<_>, _>>().context(scrub, action)?;
        if ids.len() > MAX_COMMITS {
            return Err(WorkspaceError::NotForApi(format!(
                "{} commits on {}, more than the {MAX_COMMITS} forgehand makes through the API at once; \
                 squash them, or set git.commit_via_api = \"never\"",
                ids.len(),
                self.branch
            )));
        }
        let commits = ids.into_iter().map(|id| commit_changes(&repo, id)).collect::<Result<Vec<_>, _>>();
        let commits = commits.context(scrub, action)?;
        let uploads =
            commits.iter().flat_map(|c| &c.changes).filter(|c| c.object.is_some() && !c.known).count();
        if uploads > MAX_UPLOADS {
            return Err(WorkspaceError::NotForApi(format!(
                "{uploads} new files, more than the {MAX_UPLOADS} forgehand sends through the API at once; \
                 set git.commit_via_api = \"never\""
            )));
        }
        Ok(commits)
    }

    /// The content of blob `id`, for an upload; `path` names it in errors.
    pub fn blob(&self, id: Oid, path: &str) -> Result<Vec<u8>, WorkspaceError> {
        let repo = self.open()?;
        let blob = repo.find_blob(id).context(self.scrub(), || format!("reading {path}"))?;
        if blob.size() > MAX_BLOB_BYTES {
            return Err(WorkspaceError::NotForApi(format!(
                "{path} has {} bytes; GitHub's API takes files up to 100 MB",
                blob.size()
            )));
        }
        Ok(blob.content().to_vec())
    }

    /// Fetches the branch as the API left it and makes it the local branch, so that later
    /// rounds and tasks build on the remote's commits. `head` must be the remote branch's
    /// commit and have the tree HEAD has (the same files, so the working tree stays).
    pub fn adopt(&self, creds: Option<&GitCredentials>, head: &str) -> Result<(), WorkspaceError> {
        let scrub = self.scrub().with(creds);
        let action = || format!("fetching {} as the API made it", self.branch);
        let repo = self.open()?;
        let mut remote = repo.find_remote("origin").context(scrub, action)?;
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
        let mut options = git2::FetchOptions::new();
        options.remote_callbacks(callbacks(creds));
        remote.fetch(&[refspec], Some(&mut options), None).context(scrub, action)?;
        drop(options);
        let fetched = repo
            .find_reference(&format!("refs/remotes/origin/{}", self.branch))
            .and_then(|r| r.peel_to_commit())
            .context(scrub, action)?;
        let local = repo.head().and_then(|h| h.peel_to_commit()).context(scrub, action)?;
        if fetched.id().to_string() != head || fetched.tree_id() != local.tree_id() {
            return Err(WorkspaceError::NotForApi(format!(
                "the branch {} on the remote is at {}, not the commit {head} with the local files",
                self.branch,
                fetched.id()
            )));
        }
        // Same tree: only the branch moves; the index and the files already match it.
        repo.reset(fetched.as_object(), ResetType::Soft, None).context(scrub, action)
    }
}

fn commit_changes(repo: &Repository, id: Oid) -> Result<LocalCommit, git2::Error> {
    let commit = repo.find_commit(id)?;
    let tree = commit.tree()?;
    let parent_tree = commit.parent(0)?.tree()?;
    let mut options = git2::DiffOptions::new();
    // A file that became a link (or back) is one entry, not a deletion and an addition.
    options.include_typechange(true);
    let diff = repo.diff_tree_to_tree(Some(&parent_tree), Some(&tree), Some(&mut options))?;
    // What the parent had at a changed path (a mode change, a file moved back): cheap to
    // know, unlike a walk of the whole parent tree.
    let known: HashSet<Oid> = diff.deltas().map(|d| d.old_file().id()).collect();
    let changes = diff
        .deltas()
        .filter_map(|delta| {
            let deleted = delta.status() == Delta::Deleted;
            let file = if deleted { delta.old_file() } else { delta.new_file() };
            let path = file.path()?.to_string_lossy().into_owned();
            // A deletion names the mode the path had: GitHub requires one on every entry.
            let mode = u32::from(file.mode());
            if deleted {
                return Some(Change { path, mode: format!("{mode:06o}"), object: None, known: true });
            }
            let gitlink = mode == 0o160000;
            let known = gitlink || known.contains(&file.id());
            Some(Change { path, mode: format!("{mode:06o}"), object: Some(file.id()), known })
        })
        .collect();
    let message = String::from_utf8_lossy(commit.message_bytes()).into_owned();
    Ok(LocalCommit { id, message, tree: tree.id(), parent_tree: parent_tree.id(), changes })
}
