//! A running task's guard: it keeps the lease alive, watches for a cancel request and for
//! shutdown, and tells the pipeline when it must stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Context;
use crate::db::Beat;

/// Why a task must stop before it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Someone asked (label removed, issue closed).
    Cancelled,
    /// The daemon is shutting down: the task goes back in the queue.
    Shutdown,
    /// Another executor took the task over: do nothing more, say nothing.
    LostLease,
}

const RUNNING: u8 = 0;

/// Keeps a task's lease and reports stops.
pub struct Guard {
    stop: Arc<AtomicU8>,
    stop_tx: watch::Sender<bool>,
    heartbeat: JoinHandle<()>,
}

impl Guard {
    /// Starts the heartbeat for `task_id`.
    pub fn start(ctx: Arc<Context>, task_id: i64, mut shutdown: watch::Receiver<bool>) -> Guard {
        let stop = Arc::new(AtomicU8::new(RUNNING));
        let (stop_tx, _) = watch::channel(false);
        // Three beats per lease, so one lost beat never loses it; and at least every 5 s,
        // since a beat is also how a cancel request reaches the agent.
        let every =
            Duration::from_millis(ctx.settings.executor.lease_secs * 1000 / 3).min(Duration::from_secs(5));
        let heartbeat = {
            let (stop, stop_tx) = (stop.clone(), stop_tx.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = shutdown.wait_for(|down| *down) => {
                            signal(&stop, &stop_tx, StopReason::Shutdown);
                            return;
                        }
                    }
                    if let Some(reason) = beat(&ctx, task_id).await {
                        signal(&stop, &stop_tx, reason);
                        if reason == StopReason::LostLease {
                            return;
                        }
                    }
                }
            })
        };
        Guard { stop, stop_tx, heartbeat }
    }

    /// A receiver that turns true when the task must stop (for the agent).
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }

    /// Why the task must stop, if it must.
    pub fn stop_reason(&self) -> Option<StopReason> {
        match self.stop.load(Ordering::SeqCst) {
            1 => Some(StopReason::Cancelled),
            2 => Some(StopReason::Shutdown),
            3 => Some(StopReason::LostLease),
            _ => None,
        }
    }

    /// Ends the heartbeat.
    pub async fn finish(mut self) {
        self.heartbeat.abort();
        let _ = (&mut self.heartbeat).await;
    }
}

impl Drop for Guard {
    /// A task dropped without finishing (its executor stopped) must not keep its lease
    /// alive: the heartbeat goes with it, so another executor can take the task over.
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

fn signal(stop: &AtomicU8, stop_tx: &watch::Sender<bool>, reason: StopReason) {
    let code = match reason {
        StopReason::Cancelled => 1,
        StopReason::Shutdown => 2,
        StopReason::LostLease => 3,
    };
    // The first reason wins, except that losing the lease overrides everything.
    if stop.compare_exchange(RUNNING, code, Ordering::SeqCst, Ordering::SeqCst).is_err() && code == 3 {
        stop.store(code, Ordering::SeqCst);
    }
    let _ = stop_tx.send(true);
}

async fn beat(ctx: &Context, task_id: i64) -> Option<StopReason> {
    match ctx.lease(task_id).heartbeat().await {
        Ok(Beat::Lost) => {
            tracing::warn!("the task's lease was taken over; stopping without reporting");
            Some(StopReason::LostLease)
        }
        Ok(Beat::CancelRequested) => Some(StopReason::Cancelled),
        Ok(Beat::Held) => None,
        Err(err) => {
            // The lease may still expire; the next beat tries again.
            tracing::warn!(error = %err, "heartbeat failed");
            None
        }
    }
}
