//! The notification sender: fans outbox events out to the sinks that want them, then
//! delivers each with retries and exponential backoff (`[notify]`). Claims are leases in
//! the database (`db::notify`), so a sender killed mid-send loses nothing (its next life
//! frees its claims; another instance takes them when the lease runs out) and two
//! instances never send the same delivery at once. Delivery is at least once: a crash
//! after the sink accepted and before `sent` was recorded sends again, with the same
//! delivery id for the receiver to drop.

pub mod sinks;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::config::Settings;
use crate::config::notify::SinkSettings;
use crate::db::Db;
use crate::db::notify::ClaimedNotification;

/// The crash point between the task's change (committed with its notification) and the send.
pub const FAILPOINT: &str = "notify_before_send";

/// How often the outbox is looked at when nothing wakes the sender (other instances'
/// events on PostgreSQL, retries coming due).
const POLL: Duration = Duration::from_secs(1);

/// How often old notifications are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Runs the sender until `stop` turns true. Does nothing when no sink is configured
/// (events are still written: a sink added later does not see them, they are pruned).
pub async fn run(settings: Arc<Settings>, db: Db, mut stop: watch::Receiver<bool>) {
    let instance = super::instance_name(&settings);
    let suffix = crate::token::generate_token().ok().and_then(|t| t.get(..12).map(str::to_owned));
    let owner = format!("{instance}/notify-{}", suffix.unwrap_or_default());
    match db.release_notification_claims(&format!("{instance}/notify-")).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(claims = n, "notifications interrupted by the last stop will be sent again"),
        Err(err) => tracing::warn!(error = %err, "cannot free the notification claims of the last run"),
    }
    let sender = sinks::Sender::new(&settings);
    let wake = db.outbox_wake();
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(tokio::time::Instant::now());
            if let Err(err) = db.prune_notifications(settings.notify.retention_days).await {
                tracing::warn!(error = %err, "cannot prune old notifications");
            }
        }
        if let Err(err) = pass(&settings, &db, &sender, &owner, &stop).await {
            tracing::warn!(error = %err, "the notification outbox cannot be read; trying again");
        }
        let pause = match db.next_notification_due().await {
            Ok(Some(due)) => (due - Utc::now()).to_std().unwrap_or_default().min(POLL),
            _ => POLL,
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause.max(Duration::from_millis(20))) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// Fans out what is new, then sends what is due, until nothing is.
async fn pass(
    settings: &Settings,
    db: &Db,
    sender: &sinks::Sender,
    owner: &str,
    stop: &watch::Receiver<bool>,
) -> Result<(), crate::db::DbError> {
    for event in db.pending_notify_events(100).await? {
        let wanted: Vec<&str> = settings
            .notify
            .sinks
            .iter()
            .filter(|sink| sink.wants(&event.kind, event.repo.as_deref()))
            .map(|sink| sink.name.as_str())
            .collect();
        db.fan_out_notification(event.id, &wanted).await?;
    }
    let lease = chrono::Duration::seconds(settings.notify.timeout_secs as i64 * 2 + 10);
    while !*stop.borrow() {
        let Some(claimed) = db.claim_notification(owner, lease).await? else { break };
        crate::failpoint::hit(FAILPOINT);
        deliver(settings, db, sender, owner, &claimed).await?;
    }
    Ok(())
}

/// One attempt at one delivery, and its record.
async fn deliver(
    settings: &Settings,
    db: &Db,
    sender: &sinks::Sender,
    owner: &str,
    claimed: &ClaimedNotification,
) -> Result<(), crate::db::DbError> {
    let key = claimed.delivery_key();
    let span = tracing::info_span!("notify", sink = %claimed.sink, event = %claimed.kind, delivery = %key);
    let _entered = span.enter();
    let Some(sink) = settings.notify.sinks.iter().find(|s| s.name == claimed.sink) else {
        let error = format!("no sink named {} is configured any more", claimed.sink);
        return db.notification_failed(claimed.delivery_id, owner, &error, None).await;
    };
    let attempt = sender.send(settings, sink, claimed);
    match attempt.await {
        Ok(()) => {
            if db.notification_sent(claimed.delivery_id, owner).await? {
                tracing::info!(attempts = claimed.attempts + 1, "notification delivered");
            }
            Ok(())
        }
        Err(err) => {
            let error = mask(sink, &err);
            let attempts = claimed.attempts as u32 + 1;
            let retry_at =
                (attempts < settings.notify.max_attempts).then(|| Utc::now() + backoff(settings, attempts));
            match retry_at {
                Some(at) => {
                    tracing::warn!(error = %error, attempts, retry_at = %at, "notification not delivered; retrying")
                }
                None => tracing::error!(error = %error, attempts, "notification not delivered; giving up"),
            }
            db.notification_failed(claimed.delivery_id, owner, &error, retry_at).await
        }
    }
}

/// The wait after the `failures`-th failure: `backoff_first_ms`, doubled each time, at
/// most `backoff_max_secs`.
pub fn backoff(settings: &Settings, failures: u32) -> chrono::Duration {
    let first = settings.notify.backoff_first_ms as f64;
    let ms = first * 2f64.powi(failures.saturating_sub(1).min(30) as i32);
    let capped = ms.min(settings.notify.backoff_max_secs as f64 * 1000.0);
    chrono::Duration::milliseconds(capped as i64)
}

/// `err` as it may be stored and shown: every secret of the sink replaced.
fn mask(sink: &SinkSettings, err: &anyhow::Error) -> String {
    let mut text = format!("{err:#}");
    for secret in sink.secrets() {
        text = text.replace(secret, crate::config::MASK);
    }
    text
}
