//! The database: entities, query functions, and [`Db`], the one facade the rest of
//! forgehand uses. SQLite by default, PostgreSQL by URL; the same code runs on both.

pub mod dashboard;
pub mod entities;
pub mod queries;
pub mod transcripts;
mod writer;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveValue::Set, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    TransactionTrait,
};
use secrecy::ExposeSecret;
use tokio::sync::{Notify, watch};

use crate::config::Settings;
use crate::trigger::{Decision, IssueContext};
use entities::{deliveries, task_events, tasks};

/// The PostgreSQL channel on which instances announce queued tasks.
pub const TASK_CHANNEL: &str = "forgehand_tasks";

/// The file name of the default SQLite database inside `data_dir`.
pub const SQLITE_FILE: &str = "forgehand.db";

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Running,
    Done,
    NoChanges,
    Failed,
    Cancelled,
    Rejected,
}

impl TaskStatus {
    /// Statuses of a task that is still to run or running: at most one per issue.
    pub const ACTIVE: [TaskStatus; 2] = [TaskStatus::Queued, TaskStatus::Running];
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Done,
        TaskStatus::NoChanges,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::Rejected,
    ];

    /// The name stored in the database and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Done => "done",
            TaskStatus::NoChanges => "no_changes",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Rejected => "rejected",
        }
    }
}

impl FromStr for TaskStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        TaskStatus::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| {
            let names: Vec<_> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown status {s:?}; use one of {}", names.join(", "))
        })
    }
}

/// Identifies an issue or pull request across forges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IssueKey {
    pub forge: String,
    pub repo: String,
    pub number: i64,
}

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub repo: Option<String>,
    pub forge: Option<String>,
    /// Only tasks with a smaller id (keyset pagination, newest first).
    pub before: Option<i64>,
    pub limit: u64,
}

/// A verified delivery about to be recorded.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub forge: String,
    pub delivery_id: String,
    /// The comment or review carried, so that a replay with a new id is still a duplicate.
    pub event_key: Option<String>,
    pub event: String,
    pub action: Option<String>,
    pub repo: Option<String>,
    pub number: Option<u32>,
    pub sender: Option<String>,
    /// For label events: whether the issue carries the trigger label afterwards.
    pub label_present: Option<bool>,
}

/// What recording a delivery led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The delivery id was seen before; nothing new was written.
    Duplicate,
    Outcome {
        outcome: Outcome,
        reason: String,
        task_id: Option<i64>,
    },
}

/// The fate of a recorded delivery, as stored in `deliveries.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    TaskCreated,
    Ignored,
    Coalesced,
    CancelledTask,
}

impl Outcome {
    /// The name stored in the database and answered to the forge.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::TaskCreated => "task_created",
            Outcome::Ignored => "ignored",
            Outcome::Coalesced => "coalesced",
            Outcome::CancelledTask => "cancelled_task",
        }
    }
}

/// The database facade.
#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
    /// SQLite's group-commit writer thread for intake; PostgreSQL records each delivery in
    /// its own transaction (several instances may write, and row locks must stay short).
    writer: Option<writer::Writer>,
}

impl Db {
    /// Connects to the configured database, creating the SQLite file when none is set.
    pub async fn connect(settings: &Settings) -> Result<Db, DbErr> {
        let url = settings.database.url.expose_secret();
        let mut options = if url.is_empty() {
            let path = settings.data_dir.join(SQLITE_FILE);
            sqlite_options(format!("sqlite://{}", path.display()), Some(path))
        } else if url.starts_with("sqlite:") {
            sqlite_options(url.to_owned(), None)
        } else {
            ConnectOptions::new(url.to_owned())
        };
        options
            .max_connections(settings.database.max_connections)
            // Under Gitea's 5 s webhook deadline: a 503 it can show beats a timeout.
            .acquire_timeout(Duration::from_secs(3))
            .sqlx_logging(false);
        let conn = Database::connect(options).await.map_err(|err| redact(err, url))?;
        let writer = match sqlite_file(&conn).await? {
            Some(path) => Some(writer::Writer::start(path).map_err(|err| {
                DbErr::Custom(format!("cannot start the SQLite intake writer thread: {err}"))
            })?),
            None => None,
        };
        Ok(Db { conn, writer })
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        Migrator::up(&self.conn, None).await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.ping().await
    }

    /// Proves the database takes writes (a read-only file, a full disk, a role without
    /// INSERT fail here): one row written in a transaction that is then rolled back.
    pub async fn check_writable(&self) -> Result<(), DbErr> {
        use sea_orm::ActiveModelTrait;
        let txn = self.conn.begin().await?;
        let probe = entities::label_states::ActiveModel {
            forge: Set("forgehand-doctor".to_owned()),
            repo: Set("forgehand/doctor".to_owned()),
            number: Set(0),
            present: Set(false),
            updated_at: Set(Utc::now()),
        };
        probe.insert(&txn).await?;
        txn.rollback().await
    }

    /// Records a verified delivery and whatever `decide` makes of it, committed before this
    /// returns: a delivery answered 2xx is never lost. On SQLite the commit is shared with
    /// the deliveries arriving meanwhile (see `writer`).
    pub async fn record_delivery(
        &self,
        delivery: NewDelivery,
        decide: impl Fn(&IssueContext) -> Decision + Send + Sync + 'static,
    ) -> Result<Recorded, DbErr> {
        if let Some(writer) = &self.writer {
            return writer.record(delivery, Box::new(decide)).await;
        }
        let txn = self.conn.begin().await?;
        let Some(started) = start_record(&txn, &delivery).await? else {
            txn.rollback().await?;
            return Ok(Recorded::Duplicate);
        };
        let recorded = finish_record(&txn, &delivery, &started, decide(&started.context)).await?;
        txn.commit().await?;
        Ok(recorded)
    }

    /// Tasks matching `filter`, newest first.
    pub async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<tasks::Model>, DbErr> {
        queries::list_tasks(&self.conn, filter).await
    }

    /// One task with its timeline.
    pub async fn task(&self, id: i64) -> Result<Option<(tasks::Model, Vec<task_events::Model>)>, DbErr> {
        queries::task_with_events(&self.conn, id).await
    }

    /// The deliveries that created or joined a task.
    pub async fn deliveries_of_task(&self, task_id: i64) -> Result<Vec<deliveries::Model>, DbErr> {
        queries::deliveries_of_task(&self.conn, task_id).await
    }

    /// The most recent deliveries, newest first.
    pub async fn recent_deliveries(&self, limit: u64) -> Result<Vec<deliveries::Model>, DbErr> {
        queries::recent_deliveries(&self.conn, limit).await
    }

    /// Wakes the executors of every instance sharing this PostgreSQL database: a task was
    /// queued. On SQLite (one instance) the in-process wake is enough.
    pub async fn announce_task(&self) {
        if self.conn.get_database_backend() != DbBackend::Postgres {
            return;
        }
        let notify = format!("SELECT pg_notify('{TASK_CHANNEL}', '')");
        if let Err(err) = self.conn.execute_unprepared(&notify).await {
            tracing::warn!(error = %err, "cannot notify other instances; they will find the task by polling");
        }
    }

    /// On PostgreSQL, wakes `wake` whenever any instance announces a task, until `stop`
    /// turns true. A lost connection is re-established; what was announced meanwhile is
    /// found by the executors' poll.
    pub async fn listen_for_tasks(&self, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        if self.conn.get_database_backend() != DbBackend::Postgres {
            return;
        }
        let pool = self.conn.get_postgres_connection_pool();
        loop {
            tokio::select! {
                Err(err) = relay_notifications(pool, &wake) => {
                    tracing::warn!(error = %err, "lost the task notifications; reconnecting");
                }
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => wake.notify_one(),
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    }

    /// The underlying connection, for code that composes its own queries.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }
}

/// SQLite the way forgehand needs it, for the default file (`path`) or a `sqlite:` URL.
/// Wakes `wake` on every announcement; returns only when the connection fails.
async fn relay_notifications(
    pool: &sea_orm::sqlx::PgPool,
    wake: &Notify,
) -> Result<(), sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(TASK_CHANNEL).await?;
    tracing::debug!("listening for tasks announced by other instances");
    loop {
        listener.recv().await?;
        wake.notify_one();
    }
}

fn sqlite_options(url: String, path: Option<PathBuf>) -> ConnectOptions {
    let mut options = ConnectOptions::new(url);
    options.map_sqlx_sqlite_opts(move |parsed| {
        let opts = match &path {
            // Set directly: a data_dir with spaces or '?' would not survive a URL.
            Some(path) => SqliteConnectOptions::new().filename(path),
            None => parsed,
        };
        opts.create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before forgehand answers the forge.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
    });
    options
}

/// The file of a SQLite database, which the intake writer opens too; `None` on PostgreSQL
/// and for an in-memory database (intake then uses one transaction per delivery).
async fn sqlite_file(conn: &DatabaseConnection) -> Result<Option<PathBuf>, DbErr> {
    if conn.get_database_backend() != DbBackend::Sqlite {
        return Ok(None);
    }
    let sql = "SELECT file FROM pragma_database_list WHERE name = 'main'";
    let row = conn.query_one_raw(sea_orm::Statement::from_string(DbBackend::Sqlite, sql)).await?;
    let file: Option<String> = row.map(|row| row.try_get("", "file")).transpose()?;
    Ok(file.filter(|file| !file.is_empty()).map(PathBuf::from))
}

/// Database errors can quote the connection URL: never let its password through.
fn redact(err: DbErr, url: &str) -> DbErr {
    let text = err.to_string();
    if url.is_empty() || !text.contains(url) {
        return err;
    }
    DbErr::Custom(text.replace(url, &crate::config::mask_url_password(url)))
}

/// A delivery inserted and not yet decided.
struct Started {
    row_id: i64,
    key: Option<IssueKey>,
    context: IssueContext,
}

/// Inserts the delivery and reads what is known about its issue; `None` for a duplicate.
async fn start_record(txn: &impl ConnectionTrait, delivery: &NewDelivery) -> Result<Option<Started>, DbErr> {
    // The insert comes first so that the transaction holds the write lock from its
    // start: on SQLite a read-then-write transaction can fail instead of waiting.
    let Some(row_id) = queries::insert_delivery(txn, delivery_row(delivery)).await? else {
        return Ok(None);
    };
    let key = issue_key(delivery);
    let context = match &key {
        Some(key) => queries::issue_context(txn, key).await?,
        None => IssueContext::default(),
    };
    Ok(Some(Started { row_id, key, context }))
}

/// Applies the decision and stores the delivery's outcome.
async fn finish_record(
    txn: &impl ConnectionTrait,
    delivery: &NewDelivery,
    started: &Started,
    decision: Decision,
) -> Result<Recorded, DbErr> {
    let key = started.key.as_ref();
    let (outcome, reason, task_id) = apply_decision(txn, delivery, key, decision).await?;
    if let (Some(key), Some(present)) = (key, delivery.label_present) {
        queries::set_label_state(txn, key, present).await?;
    }
    queries::set_delivery_outcome(txn, started.row_id, outcome.as_str(), &reason, task_id).await?;
    Ok(Recorded::Outcome { outcome, reason, task_id })
}

fn delivery_row(delivery: &NewDelivery) -> deliveries::ActiveModel {
    deliveries::ActiveModel {
        forge: Set(delivery.forge.clone()),
        delivery_id: Set(clean(&delivery.delivery_id, 200)),
        event_key: Set(delivery.event_key.clone()),
        event: Set(clean(&delivery.event, 100)),
        action: Set(delivery.action.as_deref().map(|a| clean(a, 100))),
        repo: Set(delivery.repo.as_deref().map(|r| clean(r, 300))),
        number: Set(delivery.number.map(i64::from)),
        sender: Set(delivery.sender.as_deref().map(|s| clean(s, 200))),
        received_at: Set(Utc::now()),
        outcome: Set("pending".to_owned()),
        reason: Set(String::new()),
        ..Default::default()
    }
}

fn issue_key(delivery: &NewDelivery) -> Option<IssueKey> {
    Some(IssueKey {
        forge: delivery.forge.clone(),
        repo: delivery.repo.clone()?,
        number: i64::from(delivery.number?),
    })
}

async fn apply_decision(
    txn: &impl ConnectionTrait,
    delivery: &NewDelivery,
    key: Option<&IssueKey>,
    decision: Decision,
) -> Result<(Outcome, String, Option<i64>), DbErr> {
    let by = delivery.sender.as_deref().unwrap_or("unknown");
    match decision {
        Decision::Ignore(reason) => Ok((Outcome::Ignored, reason, None)),
        Decision::Create(request) => match queries::insert_task(txn, &delivery.forge, &request).await? {
            Some(id) => {
                queries::add_task_event(txn, id, TaskStatus::Queued.as_str(), &queued_message(delivery, by))
                    .await?;
                Ok((Outcome::TaskCreated, queued_reason(id), Some(id)))
            }
            None => {
                let active = match key {
                    Some(key) => queries::active_task(txn, key).await?.map(|t| t.id),
                    None => None,
                };
                let text = &request.instructions;
                let addition = (!text.is_empty()).then(|| format!("@{}: {text}", request.requested_by));
                coalesce(txn, active, delivery, by, addition).await
            }
        },
        Decision::Coalesce { task_id, instructions } => {
            coalesce(txn, Some(task_id), delivery, by, instructions).await
        }
        Decision::Cancel { task_id, reason } => {
            let status = queries::cancel_task(txn, task_id, &reason).await?;
            Ok((Outcome::CancelledTask, cancelled_reason(task_id, status, &reason), Some(task_id)))
        }
    }
}

async fn coalesce(
    txn: &impl ConnectionTrait,
    task_id: Option<i64>,
    delivery: &NewDelivery,
    by: &str,
    instructions: Option<String>,
) -> Result<(Outcome, String, Option<i64>), DbErr> {
    let Some(task_id) = task_id else {
        return Err(DbErr::Custom("a task for this issue appeared and vanished during the delivery".into()));
    };
    if let Some(text) = instructions {
        queries::add_instructions(txn, task_id, by, &text).await?;
    }
    queries::add_task_event(txn, task_id, queries::NOTE, &joined_message(delivery, by)).await?;
    Ok((Outcome::Coalesced, coalesced_reason(task_id), Some(task_id)))
}

/// The timeline line of a task a delivery queued.
fn queued_message(delivery: &NewDelivery, by: &str) -> String {
    format!("queued by delivery {} ({} by {by})", delivery.delivery_id, delivery.event)
}

/// The timeline line of a delivery that joined a task.
fn joined_message(delivery: &NewDelivery, by: &str) -> String {
    format!("delivery {} ({} by {by}) joined this task", delivery.delivery_id, delivery.event)
}

fn queued_reason(task_id: i64) -> String {
    format!("task {task_id} queued")
}

fn coalesced_reason(task_id: i64) -> String {
    format!("task {task_id} is already queued or running for this issue")
}

fn cancelled_reason(task_id: i64, status: TaskStatus, reason: &str) -> String {
    let what = if status == TaskStatus::Cancelled { "cancelled" } else { "asked to stop" };
    format!("task {task_id} {what}: {reason}")
}

/// Makes forge-supplied text safe to store on every backend: PostgreSQL refuses NUL
/// characters, and nothing gains from keeping a 25 MB title.
pub fn clean(text: &str, max_chars: usize) -> String {
    text.chars().filter(|&c| c != '\0').take(max_chars).collect()
}
