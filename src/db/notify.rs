//! The notification outbox. An event is written by [`enqueue`] inside the transaction that
//! makes it true (a task's end, an expired question, a crash found at start), so it exists
//! exactly when the change does. A sender then fans each event out to one delivery per
//! sink that wants it and claims deliveries one at a time with a lease: a crashed sender's
//! claim runs out and another takes it over, and two senders never hold the same delivery.

use chrono::{DateTime, Duration, DurationRound, Utc};
use sea_orm::{ConnectionTrait, DbErr, TransactionTrait, Value};

use super::entities::tasks;
use super::queries::statement;
use super::{Db, DbError};

/// What a notification tells about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    /// A task opened or updated its pull request.
    TaskDone,
    /// A task failed for good.
    TaskFailed,
    /// A task asked a question and waits for an answer.
    TaskNeedsInput,
    /// A question was not answered in time; the task ended.
    TaskExpired,
    /// A spending budget was reached (budgets enqueue it through [`enqueue`]).
    BudgetReached,
    /// A circuit breaker opened.
    BreakerOpened,
    /// A circuit breaker closed again.
    BreakerClosed,
    /// The daemon started after a crash and found tasks its last life left running.
    DaemonRecovered,
}

impl NotifyEvent {
    /// Every event, in the order of `config::notify::EVENT_NAMES`.
    pub const ALL: [NotifyEvent; 8] = [
        NotifyEvent::TaskDone,
        NotifyEvent::TaskFailed,
        NotifyEvent::TaskNeedsInput,
        NotifyEvent::TaskExpired,
        NotifyEvent::BudgetReached,
        NotifyEvent::BreakerOpened,
        NotifyEvent::BreakerClosed,
        NotifyEvent::DaemonRecovered,
    ];

    /// The name in `events = [...]`, the payload and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::TaskDone => "task_done",
            NotifyEvent::TaskFailed => "task_failed",
            NotifyEvent::TaskNeedsInput => "task_needs_input",
            NotifyEvent::TaskExpired => "task_expired",
            NotifyEvent::BudgetReached => "budget_reached",
            NotifyEvent::BreakerOpened => "breaker_opened",
            NotifyEvent::BreakerClosed => "breaker_closed",
            NotifyEvent::DaemonRecovered => "daemon_recovered",
        }
    }

    /// The event named `name`.
    pub fn parse(name: &str) -> Option<NotifyEvent> {
        NotifyEvent::ALL.into_iter().find(|event| event.as_str() == name)
    }
}

/// A delivery a sender claimed: the event it carries and the sink it goes to.
#[derive(Debug, Clone)]
pub struct ClaimedNotification {
    pub delivery_id: i64,
    pub event_id: i64,
    pub sink: String,
    pub kind: String,
    pub repo: Option<String>,
    /// The stored JSON (see `docs/configuration.md`, "Notification payloads").
    pub payload: serde_json::Value,
    /// Attempts made before this one.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

impl ClaimedNotification {
    /// The id receivers dedupe on: the same for every attempt of this event to this sink.
    pub fn delivery_key(&self) -> String {
        format!("{}-{}", self.event_id, self.sink)
    }
}

/// How a sink fared lately, for the dashboard.
#[derive(Debug, Clone)]
pub struct SinkHealth {
    pub sink: String,
    /// Deliveries waiting for a retry after at least one failure.
    pub failing: i64,
    /// Deliveries given up.
    pub given_up: i64,
    /// The newest error (already masked by the sender).
    pub last_error: Option<String>,
}

/// An event not fanned out yet.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub id: i64,
    pub kind: String,
    pub repo: Option<String>,
}

/// Writes an event into the outbox on `db`, which should be the transaction making the
/// event true. `repo` (`owner/name`) is what sinks' `repos` filters look at; `payload` is
/// a JSON object merged into the body every sink receives.
pub async fn enqueue(
    db: &impl ConnectionTrait,
    event: NotifyEvent,
    task_id: Option<i64>,
    repo: Option<&str>,
    payload: serde_json::Value,
) -> Result<(), DbErr> {
    let mut body = serde_json::json!({ "event": event.as_str(), "at": Utc::now().to_rfc3339() });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), payload) {
        body.extend(extra);
    }
    let sql = "INSERT INTO notify_events (kind, task_id, repo, payload, fanned_out, created_at) \
               VALUES (?, ?, ?, ?, ?, ?)";
    let values: Vec<Value> = vec![
        event.as_str().into(),
        task_id.into(),
        repo.map(str::to_owned).into(),
        body.to_string().into(),
        false.into(),
        Utc::now().into(),
    ];
    db.execute_raw(statement(db.get_database_backend(), sql, values)).await?;
    Ok(())
}

/// Enqueues `event` about task `task_id` as it is now on `db` (call it after the change).
pub(super) async fn enqueue_task(
    db: &impl ConnectionTrait,
    event: NotifyEvent,
    task_id: i64,
) -> Result<(), DbErr> {
    use sea_orm::EntityTrait;
    let Some(task) = tasks::Entity::find_by_id(task_id).one(db).await? else { return Ok(()) };
    enqueue(db, event, Some(task.id), Some(&task.repo), serde_json::json!({ "task": task_facts(&task) }))
        .await
}

/// The facts of a task a notification carries. No instructions, answers or transcripts:
/// they are the requester's words, not the operator's to broadcast.
fn task_facts(task: &tasks::Model) -> serde_json::Value {
    let web = task.clone_url.trim_end_matches(".git").trim_end_matches('/');
    let issue_url =
        if web.starts_with("http") { Some(format!("{web}/issues/{}", task.number)) } else { None };
    serde_json::json!({
        "id": task.id,
        "forge": task.forge,
        "repo": task.repo,
        "number": task.number,
        "title": task.title,
        "kind": task.kind,
        "status": task.status.as_str(),
        "requested_by": task.requested_by,
        "error": task.error,
        "question": task.question,
        "pr_url": task.pr_url,
        "pr_number": task.pr_number,
        "issue_url": issue_url,
        "cost_usd": task.cost_usd,
    })
}

impl Db {
    /// What this instance's sender waits on: woken after each commit that enqueued.
    pub fn outbox_wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.outbox.clone()
    }

    /// Wakes this instance's sender: a transaction that enqueued committed.
    pub(super) fn outbox_written(&self) {
        self.outbox.notify_one();
    }

    /// Writes `event` to the outbox in a transaction of its own (for events that are not
    /// part of a task change).
    pub async fn enqueue_notification(
        &self,
        event: NotifyEvent,
        repo: Option<&str>,
        payload: serde_json::Value,
    ) -> Result<(), DbError> {
        enqueue(&self.conn, event, None, repo, payload).await?;
        self.outbox_written();
        Ok(())
    }

    /// Events no sender fanned out yet, oldest first.
    pub async fn pending_notify_events(&self, limit: u64) -> Result<Vec<PendingEvent>, DbError> {
        let sql = format!(
            "SELECT id, kind, repo FROM notify_events WHERE fanned_out = ? ORDER BY id LIMIT {limit}"
        );
        let rows = self.conn.query_all_raw(statement(self.backend(), &sql, vec![false.into()])).await?;
        let events = rows
            .iter()
            .map(|row| {
                Ok(PendingEvent {
                    id: row.try_get("", "id")?,
                    kind: row.try_get("", "kind")?,
                    repo: row.try_get("", "repo")?,
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        Ok(events)
    }

    /// Makes one delivery of `event_id` per sink in `sinks` and marks the event fanned out,
    /// in one transaction; running twice (two instances) makes no second delivery.
    pub async fn fan_out_notification(&self, event_id: i64, sinks: &[&str]) -> Result<(), DbError> {
        let txn = self.conn.begin().await?;
        let backend = self.backend();
        let now = Utc::now();
        for sink in sinks {
            let sql = "INSERT INTO notify_deliveries (event_id, sink, status, attempts, next_attempt_at, created_at) \
                       VALUES (?, ?, 'pending', 0, ?, ?) ON CONFLICT (event_id, sink) DO NOTHING";
            let values = vec![event_id.into(), (*sink).into(), now.into(), now.into()];
            txn.execute_raw(statement(backend, sql, values)).await?;
        }
        let sql = "UPDATE notify_events SET fanned_out = ? WHERE id = ?";
        txn.execute_raw(statement(backend, sql, vec![true.into(), event_id.into()])).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Claims the next due delivery for `owner` until `lease` from now. One guarded update
    /// per candidate: of two senders racing for a row, exactly one changes it.
    pub async fn claim_notification(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedNotification>, DbError> {
        let backend = self.backend();
        let now = Utc::now();
        let free = "status = 'pending' AND next_attempt_at <= ? AND (lease_expires_at IS NULL OR lease_expires_at < ?)";
        let sql = format!("SELECT id FROM notify_deliveries WHERE {free} ORDER BY id LIMIT 8");
        let rows = self.conn.query_all_raw(statement(backend, &sql, vec![now.into(), now.into()])).await?;
        for row in rows {
            let id: i64 = row.try_get("", "id")?;
            let sql = format!(
                "UPDATE notify_deliveries SET lease_owner = ?, lease_expires_at = ? WHERE id = ? AND {free}"
            );
            let values = vec![owner.into(), (now + lease).into(), id.into(), now.into(), now.into()];
            if self.conn.execute_raw(statement(backend, &sql, values)).await?.rows_affected() == 1 {
                return Ok(self.claimed(id).await?);
            }
        }
        Ok(None)
    }

    async fn claimed(&self, id: i64) -> Result<Option<ClaimedNotification>, DbErr> {
        let sql = "SELECT d.id, d.event_id, d.sink, d.attempts, e.kind, e.repo, e.payload, e.created_at \
                   FROM notify_deliveries d JOIN notify_events e ON e.id = d.event_id WHERE d.id = ?";
        let Some(row) = self.conn.query_one_raw(statement(self.backend(), sql, vec![id.into()])).await?
        else {
            return Ok(None);
        };
        let payload: String = row.try_get("", "payload")?;
        Ok(Some(ClaimedNotification {
            delivery_id: row.try_get("", "id")?,
            event_id: row.try_get("", "event_id")?,
            sink: row.try_get("", "sink")?,
            kind: row.try_get("", "kind")?,
            repo: row.try_get("", "repo")?,
            payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
            attempts: row.try_get("", "attempts")?,
            created_at: row.try_get("", "created_at")?,
        }))
    }

    /// Records that a claimed delivery was accepted by its sink; false when the claim was
    /// lost meanwhile (the delivery may then be sent again: at least once).
    pub async fn notification_sent(&self, id: i64, owner: &str) -> Result<bool, DbError> {
        let sql = "UPDATE notify_deliveries SET status = 'sent', sent_at = ?, attempts = attempts + 1, \
                   lease_owner = NULL, lease_expires_at = NULL, last_error = NULL WHERE id = ? AND lease_owner = ?";
        let values = vec![Utc::now().into(), id.into(), owner.into()];
        Ok(self.conn.execute_raw(statement(self.backend(), sql, values)).await?.rows_affected() == 1)
    }

    /// Records a failed attempt with its (masked) `error`: due again at `retry_at`, or
    /// given up (`failed`) when `retry_at` is `None`.
    pub async fn notification_failed(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), DbError> {
        let status = if retry_at.is_some() { "pending" } else { "failed" };
        let sql = "UPDATE notify_deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?, \
                   lease_owner = NULL, lease_expires_at = NULL, last_error = ? WHERE id = ? AND lease_owner = ?";
        let error = super::clean(error, super::limits::ERROR);
        let values = vec![
            status.into(),
            retry_at.unwrap_or_else(Utc::now).into(),
            error.into(),
            id.into(),
            owner.into(),
        ];
        self.conn.execute_raw(statement(self.backend(), sql, values)).await?;
        Ok(())
    }

    /// Frees the claims an earlier life of this instance held (owners starting with
    /// `prefix`): it was killed while sending, and waiting for the lease is pointless.
    pub async fn release_notification_claims(&self, prefix: &str) -> Result<u64, DbError> {
        let sql = "UPDATE notify_deliveries SET lease_owner = NULL, lease_expires_at = NULL \
                   WHERE status = 'pending' AND lease_owner LIKE ?";
        let pattern = format!("{}%", prefix.replace('%', "\\%").replace('_', "\\_"));
        let sql = format!("{sql} ESCAPE '\\'");
        Ok(self
            .conn
            .execute_raw(statement(self.backend(), &sql, vec![pattern.into()]))
            .await?
            .rows_affected())
    }

    /// When the next pending delivery can be claimed, if any: due, and its lease (another
    /// sender's) run out.
    pub async fn next_notification_due(&self) -> Result<Option<DateTime<Utc>>, DbError> {
        let sql = "SELECT MIN(CASE WHEN lease_expires_at IS NOT NULL AND lease_expires_at > next_attempt_at \
                   THEN lease_expires_at ELSE next_attempt_at END) AS due \
                   FROM notify_deliveries WHERE status = 'pending'";
        let row = self.conn.query_one_raw(statement(self.backend(), sql, vec![])).await?;
        Ok(row.and_then(|row| row.try_get::<Option<DateTime<Utc>>>("", "due").ok().flatten()))
    }

    /// Deletes delivered and given-up notifications older than `days`, and their events.
    pub async fn prune_notifications(&self, days: u32) -> Result<u64, DbError> {
        let cutoff = (Utc::now() - Duration::days(i64::from(days)))
            .duration_trunc(Duration::seconds(1))
            .unwrap_or_else(|_| Utc::now());
        let backend = self.backend();
        let sql = "DELETE FROM notify_deliveries WHERE status IN ('sent', 'failed') AND created_at < ?";
        let deleted =
            self.conn.execute_raw(statement(backend, sql, vec![cutoff.into()])).await?.rows_affected();
        let sql = "DELETE FROM notify_events WHERE fanned_out = ? AND created_at < ? AND NOT EXISTS \
                   (SELECT 1 FROM notify_deliveries d WHERE d.event_id = notify_events.id)";
        self.conn.execute_raw(statement(backend, sql, vec![true.into(), cutoff.into()])).await?;
        Ok(deleted)
    }

    /// Sinks with deliveries failing or given up, with the newest error.
    pub async fn sink_health(&self) -> Result<Vec<SinkHealth>, DbError> {
        let sql = "SELECT sink, \
                   CAST(SUM(CASE WHEN status = 'pending' AND attempts > 0 THEN 1 ELSE 0 END) AS BIGINT) AS failing, \
                   CAST(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS BIGINT) AS given_up \
                   FROM notify_deliveries WHERE last_error IS NOT NULL GROUP BY sink ORDER BY sink";
        let rows = self.conn.query_all_raw(statement(self.backend(), sql, vec![])).await?;
        let mut health = Vec::new();
        for row in rows {
            let sink: String = row.try_get("", "sink")?;
            let sql = "SELECT last_error FROM notify_deliveries WHERE sink = ? AND last_error IS NOT NULL \
                       ORDER BY id DESC LIMIT 1";
            let last =
                self.conn.query_one_raw(statement(self.backend(), sql, vec![sink.clone().into()])).await?;
            let last_error = last.map(|row| row.try_get("", "last_error")).transpose()?;
            let failing: i64 = row.try_get::<Option<i64>>("", "failing")?.unwrap_or(0);
            let given_up: i64 = row.try_get::<Option<i64>>("", "given_up")?.unwrap_or(0);
            if failing + given_up > 0 {
                health.push(SinkHealth { sink, failing, given_up, last_error });
            }
        }
        Ok(health)
    }

    pub(super) fn backend(&self) -> sea_orm::DbBackend {
        self.conn.get_database_backend()
    }
}

#[cfg(test)]
mod tests {
    use super::NotifyEvent;

    #[test]
    fn every_event_has_the_name_sinks_subscribe_with() {
        let names: Vec<&str> = NotifyEvent::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(names, crate::config::notify::EVENT_NAMES);
        for event in NotifyEvent::ALL {
            assert_eq!(NotifyEvent::parse(event.as_str()), Some(event));
        }
    }
}
