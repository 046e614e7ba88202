//! Recycled checkouts: a finished task's working tree becomes the next task's on the same
//! repository, so preparing a task rewrites only the files that differ from the last one
//! instead of creating every file again, and the old tree is not deleted file by file.
//! On a 10,000-file repository that is the difference between hundreds of milliseconds
//! and seconds (ext4 without a journal scans recently deleted inodes on every create).
//!
//! Only a checkout the daemon has just committed in full is put aside: its index then
//! describes every file, and the next checkout trusts it the way `git checkout -f` does.
//! Everything else in `.git` is deleted and made again, so nothing an agent wrote there
//! (hooks, `core.fsmonitor` or filter commands in the config, alternates, refs) reaches
//! the next task; that checkout is forced and removes untracked and ignored files.
//!
//! Layout: `spares/<mirror name>/task-<id>`, at most `keep` per repository.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use git2::Repository;

use super::errors::{Context as _, Scrub};
use super::mirror::mirror_dir_name;
use super::{WorkspaceError, Workspaces, remove_dir_if_present};

impl Workspaces {
    /// Puts the checkout of task `task_id` aside for the next task on `repo_key`, after
    /// the daemon committed every change in it; deletes it instead when `keep` checkouts
    /// already wait for that repository or it cannot be cleaned.
    pub fn recycle_task(&self, task_id: i64, repo_key: &str, keep: usize) -> Result<(), WorkspaceError> {
        let scrub = self.scrub();
        let path = self.task_path(task_id);
        if !path.is_dir() {
            return Ok(());
        }
        let shelf = self.shelf(OsStr::new(&mirror_dir_name(repo_key)?));
        if count_entries(&shelf) >= keep {
            return self.remove_task(task_id);
        }
        if let Err(error) = scrub_git_dir(&path, scrub) {
            tracing::warn!(task_id, error = %error, "cannot recycle the checkout; deleting it");
            return self.remove_task(task_id);
        }
        let action = || format!("putting the checkout of task {task_id} aside");
        fs::create_dir_all(&shelf).context(scrub, action)?;
        fs::rename(&path, shelf.join(format!("task-{task_id}"))).context(scrub, action)
    }

    /// Moves a recycled checkout of `mirror`'s repository to `path`; false when none waits.
    pub(super) fn take_spare(&self, mirror: &Path, path: &Path) -> bool {
        let Some(name) = mirror.file_name() else { return false };
        let Ok(entries) = fs::read_dir(self.shelf(name)) else { return false };
        // Another task may take the same one first; then its rename fails here.
        entries.flatten().any(|entry| fs::rename(entry.path(), path).is_ok())
    }

    /// Where the recycled checkouts of the mirror named `mirror_name` wait.
    fn shelf(&self, mirror_name: &OsStr) -> PathBuf {
        self.root.join("spares").join(mirror_name)
    }
}

fn count_entries(dir: &Path) -> usize {
    fs::read_dir(dir).map(|entries| entries.count()).unwrap_or(0)
}

/// Deletes everything in `.git` but the index and makes an empty repository around it;
/// [`super::worktree::attach_to_mirror`] gives it its objects and remote again when it is taken.
fn scrub_git_dir(path: &Path, scrub: Scrub<'_>) -> Result<(), WorkspaceError> {
    let action = || "cleaning a checkout for reuse".to_owned();
    let git = path.join(".git");
    // symlink_metadata: a `.git` or an index an agent replaced by a link is never followed.
    if !fs::symlink_metadata(&git).context(scrub, action)?.is_dir() {
        return Err(scrub.io(action(), ".git is not a directory".into()));
    }
    let index = git.join("index");
    let kept = path.join(".forgehand-index");
    let has_index = fs::symlink_metadata(&index).is_ok_and(|m| m.is_file());
    if has_index {
        fs::rename(&index, &kept).context(scrub, action)?;
    }
    remove_dir_if_present(&git, scrub, action)?;
    Repository::init(path).context(scrub, action)?;
    if has_index {
        fs::rename(&kept, &index).context(scrub, action)?;
    }
    Ok(())
}
