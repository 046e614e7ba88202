//! The database: entities, query functions, and [`Db`], the one facade the rest of
//! forgehand uses. SQLite by default, PostgreSQL by URL; the same code runs on both.

mod answers;
pub mod audit;
pub mod breakers;
pub mod dashboard;
pub mod entities;
mod error;
mod intake;
mod lease;
pub mod limits;
pub mod notify;
pub mod queries;
mod questions;
mod refusals;
pub mod retention;
mod spend;
mod steps;
pub mod transcripts;
mod wal_writes;
mod writer;

pub use answers::{Answer, append_answer, parse_answers};
pub use breakers::{BreakerChange, BreakerState};
pub use entities::task_status::{Ending, IllegalTransition, TaskEvent, TaskStatus};
pub use error::DbError;
pub use lease::{Beat, Lease, PullRef, RunEnd, RunRecord};
pub use limits::clean;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, TransactionTrait,
};
use secrecy::ExposeSecret;
use tokio::sync::{Notify, watch};

pub use refusals::{LastDelivery, NewRefusal, REFUSALS_KEPT};
pub use spend::{Spend, SpendReport};
pub use steps::{ChecksCounts, ChecksResult, NewStep, StepPhase};

use crate::config::{RepoName, Settings};
use crate::forge::IssueNumber;
use crate::trigger::{Decision, IssueContext, TaskRequest};
use entities::{deliveries, task_events, tasks};

/// The PostgreSQL channel on which instances announce queued tasks.
pub const TASK_CHANNEL: &str = "forgehand_tasks";

/// The file name of the default SQLite database inside `data_dir`.
pub const SQLITE_FILE: &str = "forgehand.db";

/// Identifies an issue or pull request across forges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IssueKey {
    pub forge: String,
    pub repo: RepoName,
    pub number: IssueNumber,
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
    pub repo: Option<RepoName>,
    pub number: Option<IssueNumber>,
    /// For check events: the commit checked, by which the pull request is found.
    pub head_sha: Option<String>,
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
    /// A comment answered the question a task waits on; the task is queued again.
    Answered,
}

impl Outcome {
    /// The name stored in the database and answered to the forge.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::TaskCreated => "task_created",
            Outcome::Ignored => "ignored",
            Outcome::Coalesced => "coalesced",
            Outcome::CancelledTask => "cancelled_task",
            Outcome::Answered => "answered",
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
    /// Woken after a commit that put a notification in the outbox (this instance's sender).
    outbox: Arc<Notify>,
    /// Passes this process's executor made looking for a task (`Db::count_claim_pass`).
    claims: Arc<std::sync::atomic::AtomicU64>,
}

impl Db {
    /// Connects to the configured database, creating the SQLite file when none is set.
    pub async fn connect(settings: &Settings) -> Result<Db, DbError> {
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
                DbError::custom(format!("cannot start the SQLite intake writer thread: {err}"))
            })?),
            None => None,
        };
        Ok(Db { conn, writer, outbox: Arc::new(Notify::new()), claims: Default::default() })
    }

    /// Applies every pending migration. A SQLite file is migrated through a connection of
    /// its own: a pool connection the migrator reads through can keep the snapshot of the
    /// schema before the last migration (seen as a missing column or index afterwards).
    pub async fn migrate(&self) -> Result<(), DbError> {
        let Some(path) = sqlite_file(&self.conn).await? else {
            return Ok(Migrator::up(&self.conn, None).await?);
        };
        let options = sqlite_options(format!("sqlite://{}", path.display()), Some(path));
        let own =
            Database::connect(options.to_owned().max_connections(1).sqlx_logging(false).to_owned()).await?;
        let migrated = Migrator::up(&own, None).await;
        own.close().await?;
        migrated?;
        // The pool's connection read the schema before (to find the file): a statement run
        // to its end notices the change and reloads it, where preparing an upsert against
        // the new index would otherwise fail on the old schema.
        let pool = self.conn.get_sqlite_connection_pool();
        let mut held = Vec::new();
        for _ in 0..pool.size() {
            let Some(mut connection) = pool.try_acquire() else { break };
            sea_orm::sqlx::query("SELECT count(*) FROM sqlite_master")
                .execute(&mut *connection)
                .await
                .map_err(|err| {
                    DbError::custom(format!("cannot refresh the schema after migrating: {err}"))
                })?;
            held.push(connection);
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        Ok(self.conn.ping().await?)
    }

    /// Proves the database takes writes (a read-only file, a full disk, a role without
    /// INSERT fail here): one row written in a transaction that is then rolled back.
    pub async fn check_writable(&self) -> Result<(), DbError> {
        use sea_orm::{ActiveModelTrait, ActiveValue::Set};
        let txn = self.conn.begin().await?;
        let probe = entities::label_states::ActiveModel {
            forge: Set("forgehand-doctor".to_owned()),
            repo: Set("forgehand/doctor".to_owned()),
            number: Set(0),
            present: Set(false),
            updated_at: Set(chrono::Utc::now()),
        };
        probe.insert(&txn).await?;
        Ok(txn.rollback().await?)
    }

    /// Records a verified delivery and whatever `decide` makes of it, committed before this
    /// returns: a delivery answered 2xx is never lost. On SQLite the commit is shared with
    /// the deliveries arriving meanwhile (see `writer`).
    pub async fn record_delivery(
        &self,
        delivery: NewDelivery,
        decide: impl Fn(&IssueContext) -> Decision + Send + Sync + 'static,
    ) -> Result<Recorded, DbError> {
        if let Some(writer) = &self.writer {
            return Ok(writer.record(delivery, Box::new(decide)).await?);
        }
        let txn = self.conn.begin().await?;
        let recorded = intake::record(&intake::sea::SeaStore(&txn), &delivery, decide).await?;
        if recorded == Recorded::Duplicate {
            txn.rollback().await?;
        } else {
            txn.commit().await?;
        }
        Ok(recorded)
    }

    /// Tasks matching `filter`, newest first.
    pub async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<tasks::Model>, DbError> {
        Ok(queries::list_tasks(&self.conn, filter).await?)
    }

    /// One task with its timeline.
    pub async fn task(&self, id: i64) -> Result<Option<(tasks::Model, Vec<task_events::Model>)>, DbError> {
        Ok(queries::task_with_events(&self.conn, id).await?)
    }

    /// The deliveries that created or joined a task.
    pub async fn deliveries_of_task(&self, task_id: i64) -> Result<Vec<deliveries::Model>, DbError> {
        Ok(queries::deliveries_of_task(&self.conn, task_id).await?)
    }

    /// The most recent deliveries, newest first.
    pub async fn recent_deliveries(&self, limit: u64) -> Result<Vec<deliveries::Model>, DbError> {
        Ok(queries::recent_deliveries(&self.conn, limit).await?)
    }

    /// Cancels a queued task at once; asks a running one to stop. Returns the status after.
    pub async fn cancel_task(&self, id: i64, reason: &str) -> Result<TaskStatus, DbError> {
        Ok(intake::sea::cancel_task(&self.conn, id, reason).await?)
    }

    /// Whether the issue ever had a task, in any status.
    pub async fn had_task(&self, key: &IssueKey) -> Result<bool, DbError> {
        Ok(queries::had_task(&self.conn, key).await?)
    }

    /// Queues a task outside intake (the sweep) with `message` as its first timeline line;
    /// `None` when the issue has an active task.
    pub async fn queue_task(
        &self,
        forge: &str,
        request: &TaskRequest,
        message: &str,
    ) -> Result<Option<i64>, DbError> {
        let Some(id) = queries::insert_task(&self.conn, forge, request).await? else { return Ok(None) };
        queries::add_task_event(&self.conn, id, TaskStatus::Queued.as_str(), message).await?;
        Ok(Some(id))
    }

    /// The newest agent session of the task that opened pull request `pr_number`, or of an
    /// earlier follow-up on it, for `--resume`.
    pub async fn last_session_for_pull(
        &self,
        forge: &str,
        repo: &RepoName,
        pr_number: IssueNumber,
    ) -> Result<Option<String>, DbError> {
        Ok(queries::last_session_for_pull(&self.conn, forge, repo, pr_number).await?)
    }

    /// Whether [`Db::announce_task`] tells other instances anything (PostgreSQL only).
    pub fn announces_tasks(&self) -> bool {
        self.conn.get_database_backend() == DbBackend::Postgres
    }

    /// Wakes the executors of every instance sharing this PostgreSQL database: a task was
    /// queued. On SQLite (one instance) the in-process wake is enough.
    pub async fn announce_task(&self) {
        if !self.announces_tasks() {
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

    /// The underlying connection, for tests that arrange rows the facade has no way to
    /// make. Everything else goes through `Db`'s methods and [`Lease`].
    #[doc(hidden)]
    pub fn connection_for_tests(&self) -> &DatabaseConnection {
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
    // Every row read: a statement stepped once and left open would keep its connection's
    // read snapshot (and schema) from before the migrations.
    let rows = conn.query_all_raw(sea_orm::Statement::from_string(DbBackend::Sqlite, sql)).await?;
    let file: Option<String> = rows.first().map(|row| row.try_get("", "file")).transpose()?;
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
