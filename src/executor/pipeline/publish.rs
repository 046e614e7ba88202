//! Putting the task's commits on the remote: a git push, or, for a GitHub App
//! (`git.commit_via_api`), the same commits made again through GitHub's Git database API,
//! which GitHub signs as the App, after which the checkout takes the remote's commits.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Context, Step, blocking};
use crate::db::entities::tasks;
use crate::executor::workspace::{GitCredentials, LocalCommit, Worktree};
use crate::forge::client::{Forge, ForgeError, TreeEntry};

/// Puts HEAD on the remote branch (with `force` where an earlier task's branch is
/// replaced); the commit the remote branch is at afterwards.
pub(super) async fn publish(
    ctx: &Arc<Context>,
    task: &tasks::Model,
    worktree: &Worktree,
    creds: Option<GitCredentials>,
    force: bool,
) -> Step<String> {
    let via_api =
        ctx.settings.forge(&task.forge).is_some_and(|forge| ctx.settings.git.commits_via_api(forge));
    let forge = ctx.forges.get(&task.forge).cloned();
    let (true, Some(forge)) = (via_api, forge) else {
        let tree = worktree.clone();
        return blocking(move || {
            tree.push(creds.as_ref(), force)?;
            tree.head()
        })
        .await;
    };
    let tree = worktree.clone();
    let commits = blocking(move || tree.local_commits()).await?;
    let head = through_api(forge.as_ref(), task, worktree, &commits, force).await?;
    let (tree, adopted) = (worktree.clone(), head.clone());
    blocking(move || tree.adopt(creds.as_ref(), &adopted)).await?;
    tracing::info!(branch = %worktree.branch, %head, commits = commits.len(), "made the commits through the API");
    Ok(head)
}

/// Makes `commits` again on the remote, each on the one made before it (the first on the
/// base), and moves the branch to the last; its sha.
async fn through_api(
    forge: &dyn Forge,
    task: &tasks::Model,
    worktree: &Worktree,
    commits: &[LocalCommit],
    force: bool,
) -> Step<String> {
    let repo = task.repo_name();
    let mut parent = worktree.base.to_string();
    let mut uploaded = HashSet::new();
    for commit in commits {
        let mut entries = Vec::with_capacity(commit.changes.len());
        let mut inline_bytes = 0;
        for change in &commit.changes {
            let mut entry = TreeEntry {
                path: change.path.clone(),
                mode: change.mode.clone(),
                sha: change.object.map(|id| id.to_string()),
                content: None,
            };
            if let Some(id) = change.object.filter(|id| !change.known && !uploaded.contains(id)) {
                let (tree, path) = (worktree.clone(), change.path.clone());
                let content = blocking(move || tree.blob(id, &path)).await?;
                match inline(content, &mut inline_bytes) {
                    Ok(text) => (entry.sha, entry.content) = (None, Some(text)),
                    Err(content) => {
                        upload(forge, task, id, &change.path, content).await?;
                        uploaded.insert(id);
                    }
                }
            }
            entries.push(entry);
        }
        // The remote parent has the local parent's tree: checked when it was made.
        let tree = forge.create_tree(&repo, &commit.parent_tree.to_string(), &entries).await?;
        if tree != commit.tree.to_string() {
            return Err(mismatch(
                &format!("the tree GitHub made for commit {}", commit.id),
                &tree,
                &commit.tree.to_string(),
            ));
        }
        parent = forge.create_commit(&repo, &commit.message, &tree, &parent).await?;
    }
    forge.set_branch(&repo, &worktree.branch, &parent, force).await?;
    Ok(parent)
}

/// Text files up to this size go inside the tree request (GitHub writes their blobs):
/// one call fewer each, and GitHub limits how many objects an App may create per minute.
const INLINE_MAX: usize = 64 * 1024;
/// The most text one tree request carries inline.
const INLINE_BUDGET: usize = 1024 * 1024;

/// `content` as text for the tree request when it is UTF-8 and fits, else back.
fn inline(content: Vec<u8>, used: &mut usize) -> Result<String, Vec<u8>> {
    if content.len() > INLINE_MAX || *used + content.len() > INLINE_BUDGET {
        return Err(content);
    }
    let text = String::from_utf8(content).map_err(|err| err.into_bytes())?;
    *used += text.len();
    Ok(text)
}

/// Uploads blob `id` (at `path`); the error names the file.
async fn upload(
    forge: &dyn Forge,
    task: &tasks::Model,
    id: git2::Oid,
    path: &str,
    content: Vec<u8>,
) -> Step<()> {
    let sha = forge.create_blob(&task.repo_name(), &content).await.map_err(|err| ForgeError {
        operation: format!("uploading {path} ({} bytes) to {}", content.len(), task.repo_name()),
        ..err
    })?;
    if sha != id.to_string() {
        return Err(mismatch(&format!("the blob GitHub stored for {path}"), &sha, &id.to_string()));
    }
    Ok(())
}

fn mismatch(what: &str, got: &str, want: &str) -> super::Failure {
    super::Failure::Permanent {
        reason: format!("making the commits through the API: {what} is {got}, not {want} as in the checkout"),
        partial_branch: None,
    }
}
