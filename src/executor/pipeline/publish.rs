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
        for change in &commit.changes {
            let sha = match change.object {
                Some(id) if !change.known && uploaded.insert(id) => {
                    Some(upload(forge, task, worktree, id, &change.path).await?)
                }
                other => other.map(|id| id.to_string()),
            };
            entries.push(TreeEntry { path: change.path.clone(), mode: change.mode.clone(), sha });
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

/// Uploads blob `id` (at `path`); the error names the file.
async fn upload(
    forge: &dyn Forge,
    task: &tasks::Model,
    worktree: &Worktree,
    id: git2::Oid,
    path: &str,
) -> Step<String> {
    let (tree, name) = (worktree.clone(), path.to_owned());
    let content = blocking(move || tree.blob(id, &name)).await?;
    let sha = forge.create_blob(&task.repo_name(), &content).await.map_err(|err| ForgeError {
        operation: format!("uploading {path} ({} bytes) to {}", content.len(), task.repo_name()),
        ..err
    })?;
    if sha != id.to_string() {
        return Err(mismatch(&format!("the blob GitHub stored for {path}"), &sha, &id.to_string()));
    }
    Ok(sha)
}

fn mismatch(what: &str, got: &str, want: &str) -> super::Failure {
    super::Failure::Permanent {
        reason: format!("making the commits through the API: {what} is {got}, not {want} as in the checkout"),
        partial_branch: None,
    }
}
