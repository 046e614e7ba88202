//! Fewer pages written per delivery (issue 20).
//!
//! On SQLite each B-tree a commit changes is a 4 KiB page in the write-ahead log, and the
//! log's write and fsync were most of intake's commit (docs/benchmarks.md). Two of the
//! B-trees a delivery changed held nothing a query needs:
//! - `tasks_status_finished` held every task, queued ones included (`finished_at` NULL),
//!   so each new task wrote a page of it; its readers all ask for `finished_at >= ?`, which
//!   a partial index of the finished tasks serves (both databases prove the `IS NOT NULL`).
//! - `label_states` was a rowid table beside the index of its primary key: on SQLite it
//!   becomes `WITHOUT ROWID`, the primary key's B-tree holding the rows, one B-tree instead
//!   of two. PostgreSQL keeps its table: its heap and index pages are not this cost.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `label_states` rebuilt with the same columns and key, `WITHOUT ROWID` or not (SQLite
/// cannot change that of an existing table).
fn rebuild_label_states(options: &str) -> [String; 4] {
    [
        format!(
            "CREATE TABLE label_states_new (\"forge\" varchar NOT NULL, \"repo\" varchar NOT NULL, \
             \"number\" integer NOT NULL, \"present\" boolean NOT NULL, \
             \"updated_at\" timestamp_with_timezone_text NOT NULL, \
             PRIMARY KEY (\"forge\", \"repo\", \"number\")){options}"
        ),
        "INSERT INTO label_states_new (forge, repo, number, present, updated_at) \
         SELECT forge, repo, number, present, updated_at FROM label_states"
            .to_owned(),
        "DROP TABLE label_states".to_owned(),
        "ALTER TABLE label_states_new RENAME TO label_states".to_owned(),
    ]
}

/// The index of tasks by status and end, covering (the figures count and sum without
/// reading a row); `filter` is its `WHERE`, if any.
fn tasks_status_finished(filter: &str) -> [String; 2] {
    [
        "DROP INDEX tasks_status_finished".to_owned(),
        format!("CREATE INDEX tasks_status_finished ON tasks (status, finished_at, cost_usd){filter}"),
    ]
}

async fn run(manager: &SchemaManager<'_>, statements: impl IntoIterator<Item = String>) -> Result<(), DbErr> {
    for statement in statements {
        manager.get_connection().execute_unprepared(&statement).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, tasks_status_finished(" WHERE finished_at IS NOT NULL")).await?;
        if manager.get_database_backend() == DbBackend::Sqlite {
            run(manager, rebuild_label_states(" WITHOUT ROWID")).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Sqlite {
            run(manager, rebuild_label_states("")).await?;
        }
        run(manager, tasks_status_finished("")).await
    }
}
