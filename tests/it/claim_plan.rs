//! The claim statement's plan and cost with many queued tasks, on the database the suite
//! runs on (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN (ANALYZE, BUFFERS)` on PostgreSQL,
//! rolled back). `FORGEHAND_CLAIM_PLAN_TASKS` sets how many (default 10,000; the figures in
//! design.md were taken at 100,000 with `--nocapture`).

use forgehand::db::queries::{ClaimLimits, claim_statement};
use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};

use crate::harness::*;

fn how_many() -> u32 {
    std::env::var("FORGEHAND_CLAIM_PLAN_TASKS").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000)
}

/// Queued tasks of two profiles over 100 repositories, one in a thousand running, in one
/// `INSERT … SELECT`.
async fn fill(conn: &sea_orm::DatabaseConnection, tasks: u32) {
    let sql = format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {tasks}) \
         INSERT INTO tasks (forge, repo, number, kind, trigger, requested_by, title, instructions, \
         clone_url, status, attempt, cancel_requested, created_at, updated_at, priority, questions_asked, agent_profile) \
         SELECT 'github', 'o/repo-' || (x % 100), x, 'implement', 'label', 'alice', 't', '', 'file:///r', \
         CASE WHEN x % 1000 = 0 THEN 'running' ELSE 'queued' END, 0, false, \
         '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', CASE WHEN x % 10 = 0 THEN 10 ELSE 0 END, 0, \
         CASE WHEN x % 2 = 0 THEN 'opus' ELSE NULL END FROM c"
    );
    let started = std::time::Instant::now();
    conn.execute_unprepared(&sql).await.unwrap();
    println!("filled {tasks} tasks in {:?}", started.elapsed());
}

/// The plan of `claim` as the database explains it, one line per row.
async fn explain(conn: &sea_orm::DatabaseConnection, mut claim: sea_orm::Statement) -> Vec<String> {
    let backend = conn.get_database_backend();
    let txn = conn.begin().await.unwrap();
    claim.sql = match backend {
        DbBackend::Postgres => format!("EXPLAIN (ANALYZE, BUFFERS) {}", claim.sql),
        _ => format!("EXPLAIN QUERY PLAN {}", claim.sql),
    };
    let rows = txn.query_all_raw(claim).await.unwrap();
    // EXPLAIN ANALYZE runs the UPDATE: nothing of it is kept.
    txn.rollback().await.unwrap();
    rows.iter()
        .map(|row| match backend {
            DbBackend::Postgres => row.try_get::<String>("", "QUERY PLAN").unwrap(),
            _ => format!(
                "{} {} {}",
                row.try_get::<i64>("", "id").unwrap(),
                row.try_get::<i64>("", "parent").unwrap(),
                row.try_get::<String>("", "detail").unwrap()
            ),
        })
        .collect()
}

/// The claim among many queued tasks with a breaker's route, a blocked profile, a capped
/// repository and profile and repository limits: what the database plans and how long a
/// claim takes. No step of the plan reads all of `tasks` row by row.
#[tokio::test]
async fn the_claim_statement_plan_at_many_queued_tasks() {
    let app = TestApp::spawn().await;
    let conn = app.db.connection_for_tests();
    let tasks = how_many();
    fill(conn, tasks).await;
    let limits = ClaimLimits {
        profiles: vec![("sonnet".into(), 50), ("default".into(), 40)],
        repos: vec![("o/repo-1".into(), 2)],
        routes: vec![("opus".into(), "sonnet".into())],
        blocked: vec!["haiku".into()],
        capped_repos: vec!["o/repo-2".into()],
        only_profile: None,
    };
    let lease = chrono::Utc::now() + chrono::Duration::minutes(5);
    let claim = claim_statement(conn.get_database_backend(), "me/1", lease, &limits);
    println!("statement:\n{}\nvalues: {:?}", claim.sql, claim.values);
    let plan = explain(conn, claim).await;
    println!("plan at {tasks} tasks:\n{}", plan.join("\n"));
    for round in 0..5 {
        let started = std::time::Instant::now();
        let task = app.db.claim_next("me/1", chrono::Duration::minutes(5), &limits).await.unwrap().unwrap();
        println!("claim {round}: task {} (priority {}) in {:?}", task.id, task.priority, started.elapsed());
        assert_eq!(task.priority, 10, "priority first");
    }
    let full_scan = |line: &&String| {
        // SQLite: `SCAN t` without an index; PostgreSQL: a sequential scan of the tasks.
        (line.contains("SCAN t") && !line.contains("INDEX")) || line.contains("Seq Scan on tasks")
    };
    let scans: Vec<&String> = plan.iter().filter(full_scan).collect();
    assert!(scans.is_empty(), "the claim reads every task: {scans:?}\n{}", plan.join("\n"));
}
