//! Tasks by ended status, kept by the database as tasks change status (issue 20).
//!
//! `/metrics` reports tasks by status; counting them grouped by status read every entry of
//! an index, 120 ms with a million tasks. Tasks that ended are nearly all of them and are
//! counted here, in `task_totals`, by triggers on `tasks` — a status change from any code
//! path (or by hand) keeps the count, with nothing for each statement to remember. Tasks
//! still in the queue, running or waiting for an answer are few and are counted from
//! `tasks` when read. Inserts need no trigger, since a task is always created `queued`:
//! an insert trigger would cost intake's writer a statement journal on every new task.
//!
//! The first migration whose statements differ by database: SQLite's triggers carry their
//! statements, PostgreSQL's call a PL/pgSQL function.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The statuses a task ends in, each a row of `task_totals`. Must stay in step with
/// `TaskStatus::is_active` (the others are counted from `tasks`).
const ENDED: [&str; 6] = ["done", "no_changes", "failed", "cancelled", "rejected", "expired"];

const SQLITE_TRIGGERS: [&str; 2] = [
    "CREATE TRIGGER tasks_count_status AFTER UPDATE OF status ON tasks \
     WHEN OLD.status IS NOT NEW.status BEGIN \
     UPDATE task_totals SET n = n - 1 WHERE status = OLD.status; \
     UPDATE task_totals SET n = n + 1 WHERE status = NEW.status; \
     END",
    "CREATE TRIGGER tasks_uncount_deleted AFTER DELETE ON tasks BEGIN \
     UPDATE task_totals SET n = n - 1 WHERE status = OLD.status; \
     END",
];

const POSTGRES_TRIGGERS: [&str; 3] = [
    "CREATE FUNCTION task_totals_follow() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
     UPDATE task_totals SET n = n - 1 WHERE status = OLD.status; \
     IF TG_OP = 'UPDATE' THEN UPDATE task_totals SET n = n + 1 WHERE status = NEW.status; END IF; \
     RETURN NULL; \
     END $$",
    "CREATE TRIGGER tasks_count_status AFTER UPDATE OF status ON tasks FOR EACH ROW \
     WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION task_totals_follow()",
    "CREATE TRIGGER tasks_uncount_deleted AFTER DELETE ON tasks FOR EACH ROW \
     EXECUTE FUNCTION task_totals_follow()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        conn.execute_unprepared(
            "CREATE TABLE task_totals (status VARCHAR NOT NULL PRIMARY KEY, n BIGINT NOT NULL)",
        )
        .await?;
        for status in ENDED {
            conn.execute_unprepared(&format!(
                "INSERT INTO task_totals (status, n) SELECT '{status}', COUNT(*) FROM tasks WHERE status = '{status}'"
            ))
            .await?;
        }
        let triggers: &[&str] = match conn.get_database_backend() {
            DbBackend::Postgres => &POSTGRES_TRIGGERS,
            _ => &SQLITE_TRIGGERS,
        };
        for trigger in triggers {
            conn.execute_unprepared(trigger).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        let drops: &[&str] = match conn.get_database_backend() {
            DbBackend::Postgres => &[
                "DROP TRIGGER tasks_count_status ON tasks",
                "DROP TRIGGER tasks_uncount_deleted ON tasks",
                "DROP FUNCTION task_totals_follow()",
            ],
            _ => &["DROP TRIGGER tasks_count_status", "DROP TRIGGER tasks_uncount_deleted"],
        };
        for statement in drops.iter().chain(&["DROP TABLE task_totals"]) {
            conn.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
