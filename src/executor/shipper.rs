//! Ships the agent's transcript file into the database while the agent runs, so that the
//! dashboard of every instance can show it live.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::Db;

/// How often new transcript lines reach the database.
const EVERY: Duration = Duration::from_millis(500);
/// Most bytes shipped as one chunk.
const CHUNK: u64 = 256 * 1024;

/// A running shipper.
pub struct Shipper {
    stop: watch::Sender<bool>,
    work: JoinHandle<()>,
}

impl Shipper {
    /// Starts shipping `path`, the transcript of task `task_id`.
    pub fn start(db: Db, task_id: i64, path: PathBuf) -> Shipper {
        let (stop, mut stopped) = watch::channel(false);
        let work = tokio::spawn(async move {
            let mut offset = match db.transcript_end(task_id).await {
                Ok(end) => end,
                Err(err) => return tracing::warn!(error = %err, "cannot ship the transcript"),
            };
            loop {
                let last = *stopped.borrow();
                offset = ship(&db, task_id, &path, offset).await;
                if last {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(EVERY) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
        Shipper { stop, work }
    }

    /// Ships what is left and stops.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.work.await;
    }
}

/// Ships the complete lines after `offset`; returns the new offset.
async fn ship(db: &Db, task_id: i64, path: &std::path::Path, mut offset: u64) -> u64 {
    loop {
        let read_path = path.to_owned();
        let lines = tokio::task::spawn_blocking(move || complete_lines(&read_path, offset)).await;
        let Ok(Ok(Some(lines))) = lines else { return offset };
        let len = lines.len() as u64;
        if let Err(err) = db.append_transcript(task_id, offset, lines).await {
            tracing::warn!(error = %err, "cannot ship the transcript; trying again");
            return offset;
        }
        offset += len;
    }
}

/// Up to [`CHUNK`] bytes of complete lines after `offset`, if there are any.
fn complete_lines(path: &std::path::Path, offset: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.take(CHUNK).read_to_end(&mut bytes)?;
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
        // A line longer than a chunk: ship it whole once it is complete.
        return Ok((bytes.len() as u64 == CHUNK).then_some(bytes));
    };
    bytes.truncate(end + 1);
    Ok(Some(bytes))
}
