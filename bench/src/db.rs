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

/// Adds `n` tasks, one every 10 s of history up to now, in one statement: mostly done,
/// some failed or without changes, a few cancelled, 1 in 50 still queued (each on its own
/// issue, so the one-active-task-per-issue index holds). Dates are written as forgehand
/// writes them (RFC 3339, UTC).
pub async fn fill_history(file: &Path, n: u64) -> anyhow::Result<()> {
    let conn = open(file).await?;
    let now = chrono::Utc::now().timestamp();
    let sql = format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}), \
         t(x, at, status) AS (SELECT x, strftime('%Y-%m-%dT%H:%M:%S+00:00', {now} - ({n} - x) * 10, 'unixepoch'), \
           CASE WHEN x % 50 = 7 THEN 'queued' WHEN x % 20 = 3 THEN 'failed' WHEN x % 20 = 5 THEN 'no_changes' \
           WHEN x % 100 = 9 THEN 'cancelled' ELSE 'done' END FROM c) \
         INSERT INTO tasks (forge, repo, number, kind, trigger, requested_by, title, instructions, \
         clone_url, status, attempt, cancel_requested, created_at, updated_at, started_at, finished_at, pr_url) \
         SELECT 'github', 'octo-org/repo-' || (x % 100), x, 'implement', 'label', 'alice', \
         'Issue number ' || x, '', 'https://github.com/octo-org/hello-world.git', status, 1, 0, at, at, \
         CASE WHEN status = 'queued' THEN NULL ELSE at END, CASE WHEN status = 'queued' THEN NULL ELSE at END, \
         CASE WHEN status = 'done' THEN 'https://github.com/octo-org/repo/pull/' || x END FROM t"
    );
    conn.execute_unprepared(&sql).await?;
    // forgehand creates every task queued and its triggers count the ones that end; rows
    // inserted ended are counted the way migration 17 seeded them.
    conn.execute_unprepared(
        "UPDATE task_totals SET n = (SELECT COUNT(*) FROM tasks WHERE status = task_totals.status)",
    )
    .await?;
    conn.close().await?;
    Ok(())
}

/// Adds `n` deliveries, one a second of history up to now, in one statement: one in ten
/// created a task (linked to task `x / 10`, which `fill_history` made), the others ignored.
pub async fn fill_deliveries(file: &Path, n: u64) -> anyhow::Result<()> {
    let conn = open(file).await?;
    let now = chrono::Utc::now().timestamp();
    let sql = format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) \
         INSERT INTO deliveries (forge, delivery_id, event_key, event, action, repo, number, sender, received_at, \
         outcome, reason, task_id) \
         SELECT 'github', 'filled-' || x, NULL, 'issues', 'labeled', 'octo-org/repo-' || (x / 10 % 100), x / 10, \
         'alice', strftime('%Y-%m-%dT%H:%M:%S+00:00', {now} - ({n} - x), 'unixepoch'), \
         CASE WHEN x % 10 = 0 THEN 'task_created' ELSE 'ignored' END, 'filled by the benchmark', \
         CASE WHEN x % 10 = 0 THEN x / 10 END FROM c"
    );
    conn.execute_unprepared(&sql).await?;
    conn.close().await?;
    Ok(())
}

/// Gives task `task_id` a transcript of `lines` stream-json lines, in 64 KiB chunks as the
/// executor ships them.
pub async fn fill_transcript(file: &Path, task_id: u64, lines: u64) -> anyhow::Result<()> {
    let conn = open(file).await?;
    let mut text = Vec::new();
    for i in 0..lines {
        let line = serde_json::json!({
            "type": "assistant",
            "message": {"content": [{"type": "text", "text": format!("Step {i}: reading src/lib.rs and checking the tests around line {i}.")}]}
        });
        serde_json::to_writer(&mut text, &line)?;
        text.push(b'\n');
    }
    let mut offset = 0usize;
    for chunk in text.chunks(65_536) {
        let statement = Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO transcript_chunks (task_id, byte_offset, data) VALUES (?, ?, ?)",
            [(task_id as i64).into(), (offset as i64).into(), chunk.to_vec().into()],
        );
        conn.execute_raw(statement).await?;
        offset += chunk.len();
    }
    conn.close().await?;
    Ok(())
}
