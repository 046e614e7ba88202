//! What `data_dir` holds, by kind, for the setup page: measured after each cleanup and
//! on demand when that measurement is older than [`FRESH`], walking at most
//! [`MAX_ENTRIES`] files so that a huge `data_dir` never holds the page for long.

use std::sync::Mutex;

use secrecy::ExposeSecret;
use std::time::{Duration, Instant};

use super::{CleanupStats, transcript_files};
use crate::config::Settings;
use crate::db::Db;
use crate::db::retention::DatabaseSize;
use crate::executor::workspace::{Tally, WorkspaceUsage, Workspaces, disk_usage};

/// How long a measurement is shown before the page measures again.
pub const FRESH: Duration = Duration::from_secs(300);
/// Most files and directories one measurement looks at.
pub const MAX_ENTRIES: u64 = 200_000;

/// What `data_dir` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDirUsage {
    pub database: DatabaseSize,
    /// The SQLite files in `data_dir` (database, WAL, shared memory); none on PostgreSQL
    /// or with a SQLite file elsewhere.
    pub database_files: Tally,
    pub workspaces: WorkspaceUsage,
    /// `data_dir/transcripts`: the agents' transcripts as written while they ran.
    pub transcripts: Tally,
    /// When it was measured.
    pub measured_at: chrono::DateTime<chrono::Utc>,
}

/// The cleanup's counters and the last measurement of `data_dir`, shared by the cleanup
/// task, `/metrics` and the setup page.
#[derive(Debug, Default)]
pub struct CleanupState {
    pub stats: CleanupStats,
    last: Mutex<Option<(Instant, DataDirUsage)>>,
}

impl CleanupState {
    /// The last measurement if fresh, else a new one.
    pub async fn usage(&self, settings: &Settings, db: &Db) -> DataDirUsage {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match last {
            Some((at, usage)) if at.elapsed() < FRESH => usage,
            _ => self.refresh(settings, db).await,
        }
    }

    /// Measures `data_dir` now and keeps the result.
    pub async fn refresh(&self, settings: &Settings, db: &Db) -> DataDirUsage {
        let usage = measure(settings, db).await;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), usage.clone()));
        usage
    }
}

async fn measure(settings: &Settings, db: &Db) -> DataDirUsage {
    let database = db.database_size().await.unwrap_or(DatabaseSize { kind: "unknown", bytes: None });
    let data_dir = settings.data_dir.clone();
    let sqlite_here = database.kind == "sqlite" && settings.database.url.expose_secret().is_empty();
    let walked = tokio::task::spawn_blocking(move || {
        let workspaces = Workspaces::new(data_dir.join("workspaces")).usage(MAX_ENTRIES);
        let mut transcripts = Tally::default();
        for (_, path) in transcript_files(&data_dir.join("transcripts")) {
            transcripts.count += 1;
            transcripts.bytes += disk_usage(&path, 1).bytes;
        }
        let mut database_files = Tally::default();
        for suffix in ["", "-wal", "-shm"].iter().filter(|_| sqlite_here) {
            let file = data_dir.join(format!("{}{suffix}", crate::db::SQLITE_FILE));
            if file.exists() {
                database_files.count += 1;
                database_files.bytes += disk_usage(&file, 1).bytes;
            }
        }
        (workspaces, transcripts, database_files)
    })
    .await;
    let (workspaces, transcripts, database_files) = walked.unwrap_or_default();
    DataDirUsage { database, database_files, workspaces, transcripts, measured_at: chrono::Utc::now() }
}
