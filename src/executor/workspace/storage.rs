//! What the workspaces hold on disk, and the cleanup of what nothing uses any more:
//! mirrors unused for a while (cloned again on the next task) and recycled checkouts
//! beyond a disk budget (the least recently put aside first).
//!
//! A mirror counts as used while any checkout in `tasks/` borrows its objects (a running
//! task, one waiting for an answer, a failed one kept for inspection) and for as long as
//! `mirror_days` after its last sync, which touches [`USED_MARKER`]. Deleting renames first
//! (under the mirror's lock, into `trash/`), so a task on this instance never sees half a
//! mirror or half a spare: it finds the whole one or none and clones or checks out afresh.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::{Duration, SystemTime};

use super::errors::{Context as _, Scrub};
use super::{WorkspaceError, Workspaces, remove_dir_if_present};

/// The file in a mirror whose modification time is its last use.
pub(super) const USED_MARKER: &str = "forgehand-used";

/// How many files and directories and how many bytes (on disk).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Entries: mirrors, checkouts, files, depending on what is counted.
    pub count: u64,
    /// Bytes on disk (allocated blocks).
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

/// What the workspaces hold, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkspaceUsage {
    pub mirrors: Tally,
    pub spares: Tally,
    /// Task checkouts: running, waiting for an answer, kept after a failure.
    pub tasks: Tally,
    /// Whether the walk stopped at its limit (the figures are then lower bounds).
    pub partial: bool,
}

impl Workspaces {
    /// Deletes the mirrors no checkout borrows from and not synced for `unused_for`;
    /// with `dry_run` only counts them.
    pub fn prune_mirrors(&self, unused_for: Duration, dry_run: bool) -> Result<Tally, WorkspaceError> {
        let scrub = self.scrub();
        self.empty_trash()?;
        let mut removed = Tally::default();
        for mirror in subdirs(&self.root.join("mirrors"), scrub)? {
            let Some(name) = mirror.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
            if !name.ends_with(".git") || !self.mirror_is_idle(&mirror, &name, unused_for)? {
                continue;
            }
            let lock = self.mirror_lock(&mirror);
            let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            // Again under the lock: a task may have synced or attached since.
            if !self.mirror_is_idle(&mirror, &name, unused_for)? {
                continue;
            }
            let bytes = disk_usage(&mirror, u64::MAX).bytes;
            if dry_run || self.throw_away(&mirror, &name)? {
                tracing::info!(mirror = %name, bytes, dry_run, "removing a mirror unused for {} days", unused_for.as_secs() / 86_400);
                removed.add(bytes);
            }
        }
        Ok(removed)
    }

    /// Deletes recycled checkouts, oldest first, until they take at most `budget` bytes;
    /// with `dry_run` only counts them.
    pub fn prune_spares(&self, budget: u64, dry_run: bool) -> Result<Tally, WorkspaceError> {
        let scrub = self.scrub();
        self.empty_trash()?;
        let mut spares = Vec::new();
        for shelf in subdirs(&self.root.join("spares"), scrub)? {
            for spare in subdirs(&shelf, scrub)? {
                let modified =
                    fs::metadata(&spare).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                spares.push((modified, disk_usage(&spare, u64::MAX).bytes, spare));
            }
        }
        let mut total: u64 = spares.iter().map(|(_, bytes, _)| bytes).sum();
        spares.sort();
        let mut removed = Tally::default();
        for (_, bytes, spare) in spares {
            if total <= budget {
                break;
            }
            let name = spare.file_name().unwrap_or_default().to_string_lossy().into_owned();
            // A spare a task took meanwhile cannot be renamed: it is no longer a spare.
            if dry_run || self.throw_away(&spare, &name)? {
                total -= bytes;
                removed.add(bytes);
            }
        }
        Ok(removed)
    }

    /// What `mirrors/`, `spares/` and `tasks/` hold, walking at most `max_entries` files.
    pub fn usage(&self, max_entries: u64) -> WorkspaceUsage {
        let mut usage = WorkspaceUsage::default();
        let mut left = max_entries;
        let mut tally = |dirs: Vec<PathBuf>, into: &mut Tally, partial: &mut bool| {
            for dir in dirs {
                let walked = disk_usage(&dir, left);
                left = left.saturating_sub(walked.count);
                *partial |= left == 0;
                into.add(walked.bytes);
            }
        };
        let scrub = self.scrub();
        let list = |dir: &str| subdirs(&self.root.join(dir), scrub).unwrap_or_default();
        let spares: Vec<PathBuf> =
            list("spares").iter().flat_map(|s| subdirs(s, scrub).unwrap_or_default()).collect();
        tally(list("mirrors"), &mut usage.mirrors, &mut usage.partial);
        tally(spares, &mut usage.spares, &mut usage.partial);
        tally(list("tasks"), &mut usage.tasks, &mut usage.partial);
        usage
    }

    /// Not borrowed by any checkout and last synced longer than `unused_for` ago.
    fn mirror_is_idle(
        &self,
        mirror: &Path,
        name: &str,
        unused_for: Duration,
    ) -> Result<bool, WorkspaceError> {
        let used = last_used(mirror);
        let old = used.elapsed().is_ok_and(|age| age > unused_for);
        Ok(old && !self.borrowed_mirrors()?.contains(name))
    }

    /// The names of the mirrors the checkouts in `tasks/` borrow objects from.
    fn borrowed_mirrors(&self) -> Result<HashSet<String>, WorkspaceError> {
        let mut names = HashSet::new();
        for task in subdirs(&self.root.join("tasks"), self.scrub())? {
            let Ok(alternates) = fs::read_to_string(task.join(".git/objects/info/alternates")) else {
                continue;
            };
            for line in alternates.lines() {
                if let Some(name) = line.trim_end_matches("/objects").rsplit('/').next() {
                    names.insert(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    /// Moves `path` into `trash/` and deletes it there; false when it was gone already.
    fn throw_away(&self, path: &Path, name: &str) -> Result<bool, WorkspaceError> {
        let scrub = self.scrub();
        let trash = self.root.join("trash");
        fs::create_dir_all(&trash).context(scrub, || "creating workspaces/trash".to_owned())?;
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let target = trash.join(format!("{name}-{}-{nanos}", std::process::id()));
        match fs::rename(path, &target) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error).context(scrub, || format!("moving {name} to workspaces/trash")),
        }
        remove_dir_if_present(&target, scrub, || format!("deleting {name}"))?;
        Ok(true)
    }

    /// Deletes what an interrupted cleanup left in `trash/`.
    fn empty_trash(&self) -> Result<(), WorkspaceError> {
        let scrub = self.scrub();
        for left in subdirs(&self.root.join("trash"), scrub)? {
            remove_dir_if_present(&left, scrub, || "emptying workspaces/trash".to_owned())?;
        }
        Ok(())
    }
}

/// When a mirror was last synced: its marker, else its last fetch, else the directory.
fn last_used(mirror: &Path) -> SystemTime {
    [USED_MARKER, "FETCH_HEAD", "."]
        .iter()
        .find_map(|name| fs::metadata(mirror.join(name)).and_then(|m| m.modified()).ok())
        .unwrap_or_else(SystemTime::now)
}

/// Marks `mirror` as used now.
pub(super) fn touch_used(mirror: &Path) {
    let marker = mirror.join(USED_MARKER);
    let touched = fs::File::create(&marker).and_then(|file| file.set_modified(SystemTime::now()));
    if let Err(error) = touched {
        tracing::warn!(error = %error, "cannot mark a mirror as used; it may be deleted and cloned again");
    }
}

/// The directories in `dir` (none when it does not exist), sorted.
fn subdirs(dir: &Path, scrub: Scrub<'_>) -> Result<Vec<PathBuf>, WorkspaceError> {
    let action = || format!("listing {}", dir.display());
    let entries = match fs::read_dir(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        entries => entries.context(scrub, action)?,
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.context(scrub, action)?;
        // file_type does not follow symbolic links.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The bytes on disk under `path` (never following symbolic links) and how many entries
/// were looked at, stopping after `max_entries`.
pub fn disk_usage(path: &Path, max_entries: u64) -> Tally {
    use std::os::unix::fs::MetadataExt;
    let mut tally = Tally::default();
    let mut pending = vec![path.to_path_buf()];
    while let Some(next) = pending.pop() {
        if tally.count >= max_entries {
            break;
        }
        let Ok(meta) = fs::symlink_metadata(&next) else { continue };
        tally.add(meta.blocks() * 512);
        if meta.is_dir() {
            pending.extend(fs::read_dir(&next).into_iter().flatten().flatten().map(|e| e.path()));
        }
    }
    tally
}
