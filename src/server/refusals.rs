//! Refused deliveries, recorded so that people can see them (`/deliveries`, `/setup`)
//! without costing intake anything.
//!
//! The webhook handler hands a refusal over with `try_send` on a bounded queue and answers
//! at once: it never waits for the database. One task writes what is queued, in one
//! transaction per batch, at most once per [`PACE`], and the database keeps only the last
//! [`crate::db::REFUSALS_KEPT`]. A flood of bad deliveries therefore costs at most one
//! short write a second — accepted deliveries keep the database to themselves otherwise —
//! and fills neither memory (the queue holds [`QUEUE`]) nor the disk; refusals beyond the
//! queue are counted and logged, not stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::db::{Db, NewRefusal};

/// Refusals waiting to be written; more are counted and dropped.
pub const QUEUE: usize = 256;
/// The least time between two writes.
pub const PACE: Duration = Duration::from_secs(1);

/// Hands refusals to the writer task.
pub struct Refusals {
    queue: mpsc::Sender<NewRefusal>,
    dropped: Arc<AtomicU64>,
}

impl Refusals {
    /// Starts the writer task (on the current tokio runtime).
    pub fn start(db: Db) -> Refusals {
        let (queue, received) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write(db, received, dropped.clone()));
        Refusals { queue, dropped }
    }

    /// Queues `refusal` for recording, without waiting.
    pub fn note(&self, refusal: NewRefusal) {
        if self.queue.try_send(refusal).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn write(db: Db, mut received: mpsc::Receiver<NewRefusal>, dropped: Arc<AtomicU64>) {
    while let Some(first) = received.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = received.try_recv() {
            batch.push(more);
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            tracing::warn!(
                lost,
                "refused deliveries came faster than they are recorded; these were only logged"
            );
        }
        if let Err(err) = db.record_refusals(batch).await {
            tracing::warn!(error = %err, "cannot record refused deliveries");
        }
        tokio::time::sleep(PACE).await;
    }
}
