//! The periodic cleanup (`[storage]`): deliveries, finished tasks' detail and transcript
//! files past their retention, mirrors unused for `mirror_days`, recycled checkouts beyond
//! `spare_checkouts_mb`. Started by `App` on every instance (every `cleanup_interval_secs`,
//! the first a minute after start) and by `forgehand cleanup [--dry-run]`.
//!
//! Safe with several instances on one database: rows go in bounded batches that count
//! what they actually deleted (`db::retention`); files only under this instance's own
//! `data_dir`, and never a mirror a checkout borrows from (`workspace/storage.rs`).

mod usage;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use chrono::Utc;
use tokio::sync::watch;

use super::workspace::{Tally, Workspaces, disk_usage};
use crate::config::Settings;
use crate::db::Db;
use crate::db::retention::DetailPruned;
pub use usage::{CleanupState, DataDirUsage};

/// The first cleanup after start waits this long (or the interval, when shorter).
const FIRST_RUN: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// What one cleanup removed (or, dry, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub dry_run: bool,
    pub deliveries: u64,
    pub refusals: u64,
    pub detail: DetailPruned,
    pub transcript_files: Tally,
    pub mirrors: Tally,
    pub spares: Tally,
}

/// Runs one cleanup with `settings`; a part that fails is logged and the others still run.
pub async fn run_once(settings: &Settings, db: &Db, dry_run: bool) -> Report {
    let storage = &settings.storage;
    let mut report = Report { dry_run, ..Report::default() };
    if let Some(before) = cutoff(storage.delivery_days) {
        report.deliveries = logged(db.prune_deliveries(before, dry_run).await, "deliveries");
        report.refusals = logged(db.prune_refusals(before, dry_run).await, "refused deliveries");
    }
    if let Some(before) = cutoff(storage.task_detail_days) {
        report.detail = logged(db.prune_task_detail(before, dry_run).await, "finished tasks' detail");
        report.transcript_files = prune_transcripts(settings, db, storage.task_detail_days, dry_run).await;
    }
    let workspaces = Arc::new(Workspaces::new(settings.data_dir.join("workspaces")));
    if storage.mirror_days > 0 {
        let (ws, unused) = (workspaces.clone(), DAY * storage.mirror_days);
        report.mirrors = logged(blocking(move || ws.prune_mirrors(unused, dry_run)).await, "mirrors");
    }
    if storage.spare_checkouts_mb > 0 {
        let budget = storage.spare_checkouts_mb.saturating_mul(1 << 20);
        report.spares =
            logged(blocking(move || workspaces.prune_spares(budget, dry_run)).await, "spare checkouts");
    }
    report
}

/// Runs the cleanup every `storage.cleanup_interval_secs` until `stop`, with the settings
/// in force at each run; refreshes `state` (the setup page's figures) after each.
pub async fn run(
    db: Db,
    mut settings: watch::Receiver<Arc<Settings>>,
    state: Arc<CleanupState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut wait = FIRST_RUN;
    loop {
        let interval = Duration::from_secs(settings.borrow().storage.cleanup_interval_secs);
        if !interval.is_zero() {
            wait = wait.min(interval);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait), if !interval.is_zero() => {}
            changed = settings.changed() => { if changed.is_err() { return } continue }
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        wait = interval;
        let current = settings.borrow().clone();
        let report = run_once(&current, &db, false).await;
        state.stats.record(&report);
        tracing::info!(%report, "cleanup done");
        state.refresh(&current, &db).await;
    }
}

/// Counts of what the cleanups of this process removed, for `/metrics`.
#[derive(Debug, Default)]
pub struct CleanupStats {
    pub runs: AtomicU64,
    /// Rows or entries per kind, in [`CleanupStats::KINDS`] order.
    pub removed: [AtomicU64; 8],
    /// Bytes of the file kinds (transcript files, mirrors, spare checkouts).
    pub bytes: [AtomicU64; 3],
}

impl CleanupStats {
    /// The kinds counted in `removed`; the last three also in `bytes`.
    pub const KINDS: [&'static str; 8] = [
        "deliveries",
        "refused_deliveries",
        "task_events",
        "task_steps",
        "transcript_chunks",
        "transcript_files",
        "mirrors",
        "spare_checkouts",
    ];

    /// Adds what `report` removed.
    pub fn record(&self, report: &Report) {
        if report.dry_run {
            return;
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        let d = &report.detail;
        let files = [report.transcript_files, report.mirrors, report.spares];
        let rows = [report.deliveries, report.refusals, d.events, d.steps, d.transcript_chunks];
        let counts = rows.into_iter().chain(files.iter().map(|t| t.count));
        for (counter, n) in self.removed.iter().zip(counts) {
            counter.fetch_add(n, Ordering::Relaxed);
        }
        for (counter, tally) in self.bytes.iter().zip(files) {
            counter.fetch_add(tally.bytes, Ordering::Relaxed);
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.detail;
        write!(
            f,
            "deliveries {}, refused deliveries {}, finished tasks' detail {} (timeline rows {}, steps {}, \
             transcript chunks {}), transcript files {}, mirrors {}, spare checkouts {}",
            self.deliveries,
            self.refusals,
            d.tasks,
            d.events,
            d.steps,
            d.transcript_chunks,
            files(self.transcript_files),
            files(self.mirrors),
            files(self.spares),
        )
    }
}

/// `3 (1.2 MiB)`.
pub fn files(tally: Tally) -> String {
    format!("{} ({})", tally.count, human_bytes(tally.bytes))
}

/// Bytes for people: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Deletes `data_dir/transcripts/task-<id>.jsonl` files untouched for `days`, except an
/// active task's (a question may wait longer than that).
async fn prune_transcripts(settings: &Settings, db: &Db, days: u32, dry_run: bool) -> Tally {
    let active = match db.active_task_ids().await {
        Ok(active) => active,
        Err(err) => return logged::<Tally, _>(Err(err), "transcript files"),
    };
    let dir = settings.data_dir.join("transcripts");
    let removed = blocking(move || {
        let mut removed = Tally::default();
        for (id, path) in transcript_files(&dir) {
            let old = modified(&path).elapsed().is_ok_and(|age| age > DAY * days);
            if !old || active.contains(&id) {
                continue;
            }
            let bytes = disk_usage(&path, 1).bytes;
            if dry_run || std::fs::remove_file(&path).is_ok() {
                removed.count += 1;
                removed.bytes += bytes;
            }
        }
        Ok::<_, std::io::Error>(removed)
    })
    .await;
    logged(removed, "transcript files")
}

/// The transcript files in `dir` with their tasks' ids.
fn transcript_files(dir: &Path) -> Vec<(i64, std::path::PathBuf)> {
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    entries
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("task-")?.strip_suffix(".jsonl")?.parse().ok()?;
            Some((id, entry.path()))
        })
        .collect()
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).and_then(|m| m.modified()).unwrap_or_else(|_| SystemTime::now())
}

fn cutoff(days: u32) -> Option<chrono::DateTime<Utc>> {
    (days > 0).then(|| Utc::now() - chrono::Duration::days(i64::from(days)))
}

/// The value, or the default after logging why this part of the cleanup did not run.
fn logged<T: Default, E: fmt::Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "cleanup: cannot remove old {what}; trying again at the next run");
        T::default()
    })
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static, E: fmt::Display + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|err| err.to_string()),
        Err(err) => Err(err.to_string()),
    }
}
