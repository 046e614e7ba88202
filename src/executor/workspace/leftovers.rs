//! What setup and check commands leave in a worktree (dependency folders, build output,
//! generated files): recorded around each command phase, kept out of the commit unless
//! the agent changed it afterwards.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{Oid, Repository, Status, StatusOptions};

use super::errors::{Context as _, Scrub};
use super::{WorkspaceError, Worktree};

/// What an uncommitted path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// A file with this content.
    File(Oid),
    /// A directory git does not track at all (its contents are not looked at).
    Dir,
    /// Nothing: a tracked file that was deleted.
    Gone,
}

/// The worktree's uncommitted paths (ignored ones aside) and what each holds.
pub type Snapshot = BTreeMap<String, PathState>;

/// Paths that commands, not the agent, changed, and what they left there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers(BTreeMap<String, PathState>);

impl Leftovers {
    /// Records what changed between `before` and `after` a phase of commands.
    pub fn record(&mut self, before: &Snapshot, after: &Snapshot) {
        for (path, state) in after {
            if before.get(path) != Some(state) {
                self.0.insert(path.clone(), *state);
            }
        }
    }

    /// The recorded paths, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The recorded paths that still hold what the commands left (the agent did not touch
    /// them since), without a directory's trailing `/`.
    pub(super) fn untouched(&self, root: &Path) -> Vec<String> {
        self.0
            .iter()
            .filter(|(path, state)| state_of(root, path) == **state)
            .map(|(path, _)| path.trim_end_matches('/').to_owned())
            .collect()
    }
}

impl Worktree {
    /// The uncommitted paths now (ignored files aside: they are never committed).
    pub fn snapshot(&self) -> Result<Snapshot, WorkspaceError> {
        let scrub = Scrub::new(self.path.parent().and_then(Path::parent).unwrap_or(&self.path), None);
        let action = || format!("listing the changes on {}", self.branch);
        let repo = Repository::open(&self.path).context(scrub, action)?;
        let mut options = StatusOptions::new();
        options.include_untracked(true).recurse_untracked_dirs(false).include_ignored(false);
        let statuses = repo.statuses(Some(&mut options)).context(scrub, action)?;
        let mut snapshot = Snapshot::new();
        for entry in statuses.iter() {
            let Ok(path) = entry.path() else { continue };
            if entry.status() == Status::CURRENT {
                continue;
            }
            snapshot.insert(path.to_owned(), state_of(&self.path, path));
        }
        Ok(snapshot)
    }
}

fn state_of(root: &Path, path: &str) -> PathState {
    let full = root.join(path.trim_end_matches('/'));
    match std::fs::symlink_metadata(&full) {
        Ok(meta) if meta.is_dir() => PathState::Dir,
        Ok(_) => Oid::hash_file(git2::ObjectType::Blob, &full).map_or(PathState::Gone, PathState::File),
        Err(_) => PathState::Gone,
    }
}
