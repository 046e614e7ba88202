//! Reads and fills forgehand's SQLite file directly.

use std::path::Path;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};

async fn open(file: &Path) -> anyhow::Result<DatabaseConnection> {
    Ok(Database::connect(format!("sqlite://{}?mode=rwc", file.display())).await?)
}

/// (deliveries, tasks) rows in the database file.
pub async fn counts(file: &Path) -> anyhow::Result<(i64, i64)> {
    let conn = open(file).await?;
    let count = async |table: &str| -> anyhow::Result<i64> {
        let sql = format!("SELECT COUNT(*) AS n FROM {table}");
        let row = conn.query_one_raw(Statement::from_string(DbBackend::Sqlite, sql)).await?;
        Ok(row.map(|row| row.try_get::<i64>("", "n")).transpose()?.unwrap_or(0))
    };
    let counts = (count("deliveries").await?, count("tasks").await?);
    conn.close().await?;
    Ok(counts)
}

/// Adds `n` finished tasks in one statement (a recursive counter), so that a database of a
/// million tasks takes seconds to make.
pub async fn fill_tasks(file: &Path, n: u64) -> anyhow::Result<()> {
    let conn = open(file).await?;
    let sql = format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) \
         INSERT INTO tasks (forge, repo, number, kind, trigger, requested_by, title, instructions, \
         clone_url, status, attempt, cancel_requested, created_at, updated_at) \
         SELECT 'github', 'octo-org/repo-' || (x % 100), x, 'issue', 'label', 'alice', \
         'Issue number ' || x, '', 'https://github.com/octo-org/hello-world.git', 'done', 1, 0, \
         '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00' FROM c"
    );
    conn.execute_unprepared(&sql).await?;
    conn.close().await?;
    Ok(())
}
