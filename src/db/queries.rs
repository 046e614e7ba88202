//! Query functions that take any connection, so they compose inside a transaction.
//! Those that change tasks are for the facade (`Db`, `Lease`) only; `insert_task` stays
//! public for the integration test that stages a race with it.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, TryInsertResult, Value,
};

use super::entities::task_status::{Ending, TaskEvent, TaskStatus};
use super::entities::{deliveries, label_states, task_events, tasks};
use super::intake::{DeliveryRow, Instructions, TaskRow};
use super::limits::{self, clean};
use super::{IssueKey, TaskFilter};
use crate::config::RepoName;
use crate::forge::IssueNumber;
use crate::trigger::{IssueContext, PushedCommit, TaskRequest};

pub use super::intake::NOTE;

/// Inserts a delivery unless one with the same forge and id, or carrying the same comment
/// or review, exists; returns its row id, or `None` for a duplicate.
pub(super) async fn insert_delivery(
    db: &impl ConnectionTrait,
    d: &DeliveryRow<'_>,
) -> Result<Option<i64>, DbErr> {
    let row = deliveries::ActiveModel {
        forge: Set(d.forge.to_owned()),
        delivery_id: Set(d.delivery_id.clone()),
        event_key: Set(d.event_key.map(str::to_owned)),
        event: Set(d.event.clone()),
        action: Set(d.action.clone()),
        repo: Set(d.repo.clone()),
        number: Set(d.number.map(i64::from)),
        sender: Set(d.sender.clone()),
        received_at: Set(Utc::now()),
        outcome: Set("pending".to_owned()),
        reason: Set(String::new()),
        ..Default::default()
    };
    // No conflict target: either unique index (delivery id, event key) makes a duplicate.
    let on_conflict = OnConflict::new().do_nothing().to_owned();
    match deliveries::Entity::insert(row).on_conflict(on_conflict).try_insert().exec(db).await? {
        TryInsertResult::Inserted(done) => Ok(Some(done.last_insert_id)),
        TryInsertResult::Conflicted | TryInsertResult::Empty => Ok(None),
    }
}

/// Records what a delivery led to; `reason` arrives cleaned.
pub(super) async fn set_delivery_outcome(
    db: &impl ConnectionTrait,
    id: i64,
    outcome: &str,
    reason: &str,
    task_id: Option<i64>,
) -> Result<(), DbErr> {
    deliveries::Entity::update_many()
        .col_expr(deliveries::Column::Outcome, Expr::value(outcome))
        .col_expr(deliveries::Column::Reason, Expr::value(reason))
        .col_expr(deliveries::Column::TaskId, Expr::value(task_id))
        .filter(deliveries::Column::Id.eq(id))
        .exec(db)
        .await?;
    let count = Statement::from_sql_and_values(
        db.get_database_backend(),
        count_deliveries_sql(db.get_database_backend()),
        [outcome.into(), delivery_total_shard(id).into(), 1i64.into()],
    );
    db.execute_raw(count).await?;
    Ok(())
}

/// Adds a number of deliveries to `delivery_totals` for an outcome and shard (migration
/// 15); the parameters are the outcome, the shard and the number.
pub(super) fn count_deliveries_sql(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => {
            "INSERT INTO delivery_totals (outcome, shard, n) VALUES ($1, $2, $3) \
             ON CONFLICT (outcome, shard) DO UPDATE SET n = delivery_totals.n + excluded.n"
        }
        _ => {
            "INSERT INTO delivery_totals (outcome, shard, n) VALUES (?1, ?2, ?3) \
             ON CONFLICT (outcome, shard) DO UPDATE SET n = delivery_totals.n + excluded.n"
        }
    }
}

/// The `delivery_totals` row a delivery counts on: spread so that instances recording
/// at the same time seldom wait on one row's lock.
pub(super) fn delivery_total_shard(delivery_row: i64) -> i32 {
    delivery_row.rem_euclid(8) as i32
}

/// What the database knows about an issue: its active task and trigger-label state.
pub async fn issue_context(db: &impl ConnectionTrait, key: &IssueKey) -> Result<IssueContext, DbErr> {
    // Label state first: under PostgreSQL's read committed, a concurrent delivery that
    // committed in between is then seen by the second read too, as the active task, and
    // this delivery joins it instead of being told the label was already there.
    let label_was_present =
        label_states::Entity::find_by_id((key.forge.clone(), key.repo.to_string(), i64::from(key.number)))
            .one(db)
            .await?
            .map(|state| state.present);
    let active = active_task(db, key).await?;
    let awaiting_answer = active.as_ref().is_some_and(awaits_answer);
    Ok(IssueContext {
        active_task: active.map(|task| task.id),
        label_was_present,
        awaiting_answer,
        pushed: None,
    })
}

/// The newest task that pushed commit ?3 to repository ?2 of forge ?1: its title,
/// requester, clone URL and pull request (`NULL` before it was opened).
pub(super) const PUSHED_COMMIT: &str = "SELECT t.title, t.requested_by, t.clone_url, \
     COALESCE(t.pr_number, CASE WHEN t.kind = 'follow_up' THEN t.number END) \
     FROM tasks t WHERE t.forge = ?1 AND t.repo = ?2 AND t.pushed_sha = ?3 ORDER BY t.id DESC LIMIT 1";

/// For pull request ?3 of repository ?2 of forge ?1: the last commit forgehand pushed to
/// it, its check-fix tasks so far, and the check-fix task for commit ?4, if any.
pub(super) const PULL_PUSHES: &str = "SELECT \
     (SELECT u.pushed_sha FROM tasks u WHERE u.forge = ?1 AND u.repo = ?2 \
       AND (u.number = ?3 OR u.pr_number = ?3) AND u.pushed_sha IS NOT NULL ORDER BY u.id DESC LIMIT 1), \
     (SELECT COUNT(*) FROM tasks u WHERE u.forge = ?1 AND u.repo = ?2 AND u.number = ?3 AND u.trigger = 'checks'), \
     (SELECT MAX(u.id) FROM tasks u WHERE u.forge = ?1 AND u.repo = ?2 AND u.number = ?3 \
       AND u.trigger = 'checks' AND u.feedback_ref = ?4)";

/// What forgehand knows of commit `sha` in `repo`: the pull request it pushed it to.
pub async fn pushed_commit(
    db: &impl ConnectionTrait,
    forge: &str,
    repo: &RepoName,
    sha: &str,
) -> Result<Option<PushedCommit>, DbErr> {
    let backend = db.get_database_backend();
    let values = vec![forge.into(), repo.as_str().into(), sha.into()];
    let Some(row) = db.query_one_raw(statement(backend, PUSHED_COMMIT, values)).await? else {
        return Ok(None);
    };
    let Some(Ok(number)) = row.try_get_by_index::<Option<i64>>(3)?.map(IssueNumber::try_from) else {
        return Ok(None);
    };
    let pull = i64::from(number);
    let values = vec![forge.into(), repo.as_str().into(), pull.into(), sha.into()];
    let pushes = db.query_one_raw(statement(backend, PULL_PUSHES, values)).await?;
    let (newest, rounds, fixed_by) = match pushes {
        Some(r) => {
            (r.try_get_by_index::<Option<String>>(0)?, r.try_get_by_index::<i64>(1)?, r.try_get_by_index(2)?)
        }
        None => (None, 0, None),
    };
    let task = (row.try_get_by_index(0)?, row.try_get_by_index(1)?, row.try_get_by_index(2)?);
    Ok(Some(pushed(sha, number, task, (newest, rounds, fixed_by))))
}

/// What both stores read for `pushed_commit`, put together: the pushing task's title,
/// requester and clone URL, and the pull request's last pushed commit, check-fix rounds and
/// the fix of `sha`, if any.
pub(super) fn pushed(
    sha: &str,
    pull: IssueNumber,
    (pull_title, requested_by, clone_url): (String, String, String),
    (last_pushed, rounds, fixed_by): (Option<String>, i64, Option<i64>),
) -> PushedCommit {
    PushedCommit {
        pull,
        pull_title,
        requested_by,
        clone_url,
        newest: last_pushed.as_deref() == Some(sha),
        fix_rounds: rounds.try_into().unwrap_or(u32::MAX),
        fixed_by,
    }
}

/// Whether a comment on the task's issue answers its question: the task waits for an
/// answer, or is queued with one and has not resumed yet.
fn awaits_answer(task: &tasks::Model) -> bool {
    task.status == TaskStatus::NeedsInput || (task.status == TaskStatus::Queued && task.asked_at.is_some())
}

/// The predicate of [`awaits_answer`], for statements written out by hand.
pub(super) const AWAITS_ANSWER_PREDICATE: &str =
    "(status = 'needs_input' OR (status = 'queued' AND asked_at IS NOT NULL))";

/// Stores `answers` on a task that awaits an answer, moving a `needs_input` one through
/// `TaskEvent::Answer`; whether the task awaited one.
pub(super) async fn answer(db: &impl ConnectionTrait, task_id: i64, answers: &str) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let sql = answer_statement();
    let values = vec![answers.into(), Utc::now().into(), task_id.into()];
    Ok(db.execute_raw(statement(backend, &sql, values)).await?.rows_affected() == 1)
}

/// The statement of [`answer`]: `?` answers, `?` now, `?` task id.
pub(super) fn answer_statement() -> String {
    let event = TaskEvent::Answer;
    format!(
        "UPDATE tasks SET answers = ?, updated_at = ?, next_attempt_at = NULL, \
         status = CASE WHEN status IN ({}) THEN '{}' ELSE status END \
         WHERE id = ? AND {AWAITS_ANSWER_PREDICATE}",
        status_list(event.sources()),
        event.target().as_str()
    )
}

/// The queued or running task for an issue, if any.
pub async fn active_task(db: &impl ConnectionTrait, key: &IssueKey) -> Result<Option<tasks::Model>, DbErr> {
    tasks::Entity::find()
        .filter(tasks::Column::Forge.eq(&key.forge))
        .filter(tasks::Column::Repo.eq(key.repo.as_str()))
        .filter(tasks::Column::Number.eq(i64::from(key.number)))
        .filter(tasks::Column::Status.is_in(TaskStatus::ACTIVE))
        .one(db)
        .await
}

/// Remembers whether the issue carries the trigger label now.
pub(super) async fn set_label_state(
    db: &impl ConnectionTrait,
    key: &IssueKey,
    present: bool,
) -> Result<(), DbErr> {
    let row = label_states::ActiveModel {
        forge: Set(key.forge.clone()),
        repo: Set(key.repo.to_string()),
        number: Set(i64::from(key.number)),
        present: Set(present),
        updated_at: Set(Utc::now()),
    };
    let on_conflict = OnConflict::columns([
        label_states::Column::Forge,
        label_states::Column::Repo,
        label_states::Column::Number,
    ])
    .update_columns([label_states::Column::Present, label_states::Column::UpdatedAt])
    .to_owned();
    label_states::Entity::insert(row).on_conflict(on_conflict).exec_without_returning(db).await?;
    Ok(())
}

/// The predicate of the `tasks_one_active_or_waiting_per_issue` index, word for word (a test checks
/// it against [`TaskStatus::ACTIVE`]).
pub(super) const ACTIVE_TASK_PREDICATE: &str = "status IN ('queued', 'running', 'needs_input')";

/// `'a', 'b'`: statuses as SQL literals, for statements written out by hand.
pub(super) fn status_list(statuses: impl Iterator<Item = TaskStatus>) -> String {
    statuses.map(|status| format!("'{}'", status.as_str())).collect::<Vec<_>>().join(", ")
}

/// Queues a task; `None` when another task for the issue became active first (the
/// database's one-active-task-per-issue index decides).
pub async fn insert_task(
    db: &impl ConnectionTrait,
    forge: &str,
    request: &TaskRequest,
) -> Result<Option<i64>, DbErr> {
    insert_task_row(db, TaskRow::of(forge, request)).await
}

pub(super) async fn insert_task_row(db: &impl ConnectionTrait, r: TaskRow<'_>) -> Result<Option<i64>, DbErr> {
    let now = Utc::now();
    let row = tasks::ActiveModel {
        forge: Set(r.forge.to_owned()),
        repo: Set(r.repo.to_owned()),
        number: Set(r.number),
        kind: Set(r.kind.to_owned()),
        trigger: Set(r.trigger.to_owned()),
        requested_by: Set(r.requested_by),
        title: Set(r.title),
        instructions: Set(r.instructions),
        clone_url: Set(r.clone_url),
        status: Set(TaskStatus::Queued),
        attempt: Set(0),
        branch: Set(r.branch),
        agent_profile: Set(r.profile),
        agent_source: Set(r.source.map(str::to_owned)),
        priority: Set(r.priority),
        feedback_ref: Set(r.feedback_ref),
        cancel_requested: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    let on_conflict = OnConflict::columns([tasks::Column::Forge, tasks::Column::Repo, tasks::Column::Number])
        // Literal values: SQLite matches a partial index only when it can prove the WHERE
        // clauses equal, which it cannot do through bound parameters.
        .target_and_where(Expr::cust(ACTIVE_TASK_PREDICATE))
        .do_nothing()
        .to_owned();
    match tasks::Entity::insert(row).on_conflict(on_conflict).try_insert().exec(db).await? {
        TryInsertResult::Inserted(done) => Ok(Some(done.last_insert_id)),
        TryInsertResult::Conflicted | TryInsertResult::Empty => Ok(None),
    }
}

/// Appends a line to a task's timeline: `kind` is the new status, or [`NOTE`].
pub(super) async fn add_task_event(
    db: &impl ConnectionTrait,
    task_id: i64,
    kind: &str,
    message: &str,
) -> Result<(), DbErr> {
    insert_task_event(db, task_id, kind, &clean(message, limits::TIMELINE_MESSAGE)).await
}

/// Appends a timeline line whose message arrives cleaned.
pub(super) async fn insert_task_event(
    db: &impl ConnectionTrait,
    task_id: i64,
    kind: &str,
    message: &str,
) -> Result<(), DbErr> {
    let row = task_events::ActiveModel {
        task_id: Set(task_id),
        at: Set(Utc::now()),
        status: Set(kind.to_owned()),
        message: Set(message.to_owned()),
        ..Default::default()
    };
    task_events::Entity::insert(row).exec_without_returning(db).await?;
    Ok(())
}

/// An update of tasks that moves them through `event`: the target status, and a guard on
/// the statuses the transition table allows it from.
pub(super) fn transition(event: TaskEvent) -> sea_orm::UpdateMany<tasks::Entity> {
    tasks::Entity::update_many()
        .col_expr(tasks::Column::Status, Expr::value(event.target()))
        .col_expr(tasks::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(tasks::Column::Status.is_in(event.sources()))
}

/// `TaskEvent::Cancel` for task `task_id` with `error` (cleaned); whether it happened.
pub(super) async fn cancel_at_once(
    db: &impl ConnectionTrait,
    task_id: i64,
    error: &str,
) -> Result<bool, DbErr> {
    let cancelled = transition(TaskEvent::Cancel)
        .col_expr(tasks::Column::Error, Expr::value(error))
        .col_expr(tasks::Column::FinishedAt, Expr::value(Utc::now()))
        .filter(tasks::Column::Id.eq(task_id))
        .exec(db)
        .await?;
    Ok(cancelled.rows_affected == 1)
}

/// Flags a task so that its executor's heartbeat stops it.
pub(super) async fn request_cancel(db: &impl ConnectionTrait, task_id: i64) -> Result<(), DbErr> {
    tasks::Entity::update_many()
        .col_expr(tasks::Column::CancelRequested, Expr::value(true))
        .col_expr(tasks::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(tasks::Column::Id.eq(task_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Tasks matching `filter`, newest first.
pub async fn list_tasks(db: &impl ConnectionTrait, filter: &TaskFilter) -> Result<Vec<tasks::Model>, DbErr> {
    let mut query = tasks::Entity::find().order_by_desc(tasks::Column::Id).limit(filter.limit);
    if let Some(status) = filter.status {
        query = query.filter(tasks::Column::Status.eq(status));
    }
    if let Some(repo) = &filter.repo {
        query = query.filter(tasks::Column::Repo.eq(repo.as_str()));
    }
    if let Some(forge) = &filter.forge {
        query = query.filter(tasks::Column::Forge.eq(forge));
    }
    if let Some(before) = filter.before {
        query = query.filter(tasks::Column::Id.lt(before));
    }
    query.all(db).await
}

/// One task and its timeline, oldest event first.
pub async fn task_with_events(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<(tasks::Model, Vec<task_events::Model>)>, DbErr> {
    let Some(task) = tasks::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    let events = task_events::Entity::find()
        .filter(task_events::Column::TaskId.eq(id))
        .order_by_asc(task_events::Column::Id)
        .all(db)
        .await?;
    Ok(Some((task, events)))
}

/// The deliveries recorded for a task, oldest first.
pub async fn deliveries_of_task(
    db: &impl ConnectionTrait,
    task_id: i64,
) -> Result<Vec<deliveries::Model>, DbErr> {
    deliveries::Entity::find()
        .filter(deliveries::Column::TaskId.eq(task_id))
        .order_by_asc(deliveries::Column::Id)
        .all(db)
        .await
}

/// The most recent deliveries, newest first.
pub async fn recent_deliveries(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<deliveries::Model>, DbErr> {
    deliveries::Entity::find().order_by_desc(deliveries::Column::Id).limit(limit).all(db).await
}

/// A statement written with `?` (or numbered `?N`) placeholders, numbered for PostgreSQL.
pub(super) fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => {
            let mut numbered = String::with_capacity(sql.len() + 8);
            let mut n = 0;
            let mut chars = sql.chars().peekable();
            while let Some(c) = chars.next() {
                if c != '?' {
                    numbered.push(c);
                } else if chars.peek().is_some_and(char::is_ascii_digit) {
                    numbered.push('$');
                } else {
                    n += 1;
                    numbered.push_str(&format!("${n}"));
                }
            }
            numbered
        }
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// The limits the claim enforces besides "queued and due".
#[derive(Debug, Clone, Default)]
pub struct ClaimLimits {
    /// Agent profiles with their own `max_concurrent`.
    pub profiles: Vec<(String, usize)>,
    /// Repositories (`owner/name`, lower case) with a `max_running`.
    pub repos: Vec<(String, u32)>,
    /// Profiles whose breaker is open, and the fallback their tasks run on instead: the
    /// claimed task's `agent_profile` becomes the fallback, whose limit applies.
    pub routes: Vec<(String, String)>,
    /// Profiles whose breaker is open and that have no usable fallback: their tasks wait.
    pub blocked: Vec<String>,
    /// Claim only a task of this profile, on it (a half-open breaker's trial).
    pub only_profile: Option<String>,
    /// Repositories (`owner/name`, lower case) whose budget is spent: their tasks wait.
    pub capped_repos: Vec<String>,
}

/// The profile a task was routed to, in statements written out by hand.
const PROFILE: &str = "COALESCE(t.agent_profile, 'default')";

/// The profile a task runs on: its own, or the fallback `routes` send it to. Pushes the
/// values of the `?`s it writes onto `values`.
fn routed_profile(routes: &[(String, String)], values: &mut Vec<Value>) -> String {
    if routes.is_empty() {
        return PROFILE.to_owned();
    }
    let mut sql = format!("(CASE {PROFILE}");
    for (from, to) in routes {
        sql.push_str(" WHEN ? THEN ?");
        values.extend([from.as_str().into(), to.as_str().into()]);
    }
    sql.push_str(&format!(" ELSE {PROFILE} END)"));
    sql
}

/// Claims the next queued task that is due: highest priority first, then one of a
/// repository with nothing running, then the oldest; skipping held repositories, profiles
/// whose breaker keeps their tasks waiting, and profiles or repositories at their limit.
/// A task of a profile whose breaker is open is claimed onto its fallback. One
/// statement, so two claimers never get the same task: on PostgreSQL [`super::Db`]
/// serialises claims with an advisory lock (so that the limits hold over instances), and
/// the outer `status IN (queued)` is checked again on the row the UPDATE locks, so a task
/// cancelled meanwhile is not claimed. No `FOR UPDATE SKIP LOCKED` in the subquery: between
/// `LIMIT` and `ORDER BY` it kept PostgreSQL from a top-N sort, and it sorted every queued
/// task (on disk at 100,000; see design.md, "The claim statement").
pub(super) async fn claim_next(
    db: &impl ConnectionTrait,
    owner: &str,
    lease_until: DateTime<Utc>,
    limits: &ClaimLimits,
) -> Result<Option<tasks::Model>, DbErr> {
    let claim = claim_statement(db.get_database_backend(), owner, lease_until, limits);
    let Some(claimed) = db.query_one_raw(claim).await? else { return Ok(None) };
    let id: i64 = claimed.try_get("", "id")?;
    // Ours now (fenced by lease_owner), so reading it back races with nobody.
    tasks::Entity::find_by_id(id).one(db).await
}

/// The one claim statement [`claim_next`] runs, for `backend` (public so that its plan can
/// be shown with `EXPLAIN`).
pub fn claim_statement(
    backend: DbBackend,
    owner: &str,
    lease_until: DateTime<Utc>,
    limits: &ClaimLimits,
) -> Statement {
    let now = Utc::now();
    let (running, queued) = (TaskEvent::Claim.target().as_str(), status_list(TaskEvent::Claim.sources()));
    // Values in the order of their `?`s in the statement.
    let mut values: Vec<Value> = vec![owner.into(), lease_until.into(), now.into(), now.into()];
    let reroute = if limits.routes.is_empty() {
        ", fallback_from = NULL".to_owned()
    } else {
        // The same CASE over the updated row (`tasks`, not `t`).
        let own = "COALESCE(agent_profile, 'default')";
        let mut to = format!("agent_profile = (CASE {own}");
        let mut from = format!(", fallback_from = (CASE {own}");
        for (from_profile, to_profile) in &limits.routes {
            to.push_str(" WHEN ? THEN ?");
            values.extend([from_profile.as_str().into(), to_profile.as_str().into()]);
        }
        for (from_profile, _) in &limits.routes {
            from.push_str(" WHEN ? THEN ?");
            values.extend([from_profile.as_str().into(), from_profile.as_str().into()]);
        }
        format!(", {to} ELSE agent_profile END){from} ELSE NULL END)")
    };
    let join_profile = routed_profile(&limits.routes, &mut values);
    values.push(now.into());
    // Running counts are aggregated once and joined: a correlated count per queued task
    // took minutes at 100,000 queued tasks on SQLite.
    let mut conditions = String::new();
    if !limits.profiles.is_empty() {
        let profile = routed_profile(&limits.routes, &mut values);
        let cases = limits.profiles.iter().map(|_| " WHEN ? THEN ?").collect::<String>();
        for (name, max) in &limits.profiles {
            values.extend([name.as_str().into(), (*max as i64).into()]);
        }
        conditions
            .push_str(&format!(" AND COALESCE(p.n, 0) < (CASE {profile}{cases} ELSE {} END)", i64::MAX));
    }
    if !limits.repos.is_empty() {
        let cases = limits.repos.iter().map(|_| " WHEN ? THEN ?").collect::<String>();
        for (repo, max) in &limits.repos {
            values.extend([repo.as_str().into(), i64::from(*max).into()]);
        }
        conditions
            .push_str(&format!(" AND COALESCE(r.n, 0) < (CASE LOWER(t.repo){cases} ELSE {} END)", i64::MAX));
    }
    if !limits.blocked.is_empty() {
        let marks = limits.blocked.iter().map(|_| "?").collect::<Vec<_>>().join(", ");
        values.extend(limits.blocked.iter().map(|name| Value::from(name.as_str())));
        conditions.push_str(&format!(" AND {PROFILE} NOT IN ({marks})"));
    }
    if !limits.capped_repos.is_empty() {
        let marks = limits.capped_repos.iter().map(|_| "?").collect::<Vec<_>>().join(", ");
        values.extend(limits.capped_repos.iter().map(|repo| Value::from(repo.as_str())));
        conditions.push_str(&format!(" AND LOWER(t.repo) NOT IN ({marks})"));
    }
    if let Some(only) = &limits.only_profile {
        values.push(only.as_str().into());
        conditions.push_str(&format!(" AND {PROFILE} = ?"));
    }
    let sql = format!(
        "UPDATE tasks SET status = '{running}', lease_owner = ?, lease_expires_at = ?, attempt = attempt + 1, \
         started_at = COALESCE(started_at, ?), updated_at = ?, wait_reason = NULL{reroute} \
         WHERE id = (SELECT t.id FROM tasks t \
         LEFT JOIN (SELECT forge, repo, COUNT(*) AS n FROM tasks WHERE status = '{running}' \
         GROUP BY forge, repo) r ON r.forge = t.forge AND r.repo = t.repo \
         LEFT JOIN (SELECT COALESCE(agent_profile, 'default') AS profile, COUNT(*) AS n FROM tasks \
         WHERE status = '{running}' GROUP BY COALESCE(agent_profile, 'default')) p \
         ON p.profile = {join_profile} \
         WHERE t.status IN ({queued}) AND (t.next_attempt_at IS NULL OR t.next_attempt_at <= ?) \
         AND NOT EXISTS (SELECT 1 FROM queue_holds h WHERE h.scope = '*' OR LOWER(h.scope) = LOWER(t.repo)){conditions} \
         ORDER BY t.priority DESC, (CASE WHEN r.n IS NULL THEN 0 ELSE 1 END), t.id LIMIT 1) \
         AND status IN ({queued}) RETURNING id"
    );
    // `RETURNING id`, not `*`: sqlx's SQLite driver caches a statement's columns and read
    // past them when a migration had added a column to the table (it panicked here).
    statement(backend, &sql, values)
}

/// Sets `reason` as the wait reason of the queued tasks (of `repo`, any case, or all) that
/// do not carry it yet; their ids. Each task is returned once per reason, whichever
/// instance asks, so that what is said about the wait is said once.
pub(super) async fn mark_waiting(
    db: &impl ConnectionTrait,
    repo: Option<&str>,
    reason: &str,
) -> Result<Vec<i64>, DbErr> {
    let backend = db.get_database_backend();
    let reason = clean(reason, limits::ERROR);
    let mut values: Vec<Value> = vec![reason.clone().into(), reason.into()];
    let mut sql = "UPDATE tasks SET wait_reason = ? WHERE status = 'queued' \
                   AND (wait_reason IS NULL OR wait_reason <> ?)"
        .to_owned();
    if let Some(repo) = repo {
        sql.push_str(" AND LOWER(repo) = ?");
        values.push(repo.to_ascii_lowercase().into());
    }
    sql.push_str(" RETURNING id");
    let rows = db.query_all_raw(statement(backend, &sql, values)).await?;
    rows.iter().map(|row| row.try_get("", "id")).collect()
}

/// The scope of a hold on the whole queue.
pub const HOLD_ALL: &str = "*";

/// Holds the queue for `scope` (`owner/name`, or [`HOLD_ALL`]); false when it was held.
pub(super) async fn hold(db: &impl ConnectionTrait, scope: &str, by: &str) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let sql =
        "INSERT INTO queue_holds (scope, held_by, held_at) VALUES (?, ?, ?) ON CONFLICT (scope) DO NOTHING";
    let values = vec![scope.to_ascii_lowercase().into(), by.into(), Utc::now().into()];
    Ok(db.execute_raw(statement(backend, sql, values)).await?.rows_affected() == 1)
}

/// Ends the hold on `scope`; false when there was none.
pub(super) async fn release_hold(db: &impl ConnectionTrait, scope: &str) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let sql = "DELETE FROM queue_holds WHERE scope = ?";
    Ok(db
        .execute_raw(statement(backend, sql, vec![scope.to_ascii_lowercase().into()]))
        .await?
        .rows_affected()
        == 1)
}

/// The scopes held now, with who held them.
pub(super) async fn holds(db: &impl ConnectionTrait) -> Result<Vec<(String, String)>, DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(statement(backend, "SELECT scope, held_by FROM queue_holds ORDER BY scope", vec![]))
        .await?;
    rows.iter().map(|row| Ok((row.try_get("", "scope")?, row.try_get("", "held_by")?))).collect()
}

/// Extends a lease. `None` when the task is no longer ours (fenced); otherwise whether a
/// cancel was requested.
pub(super) async fn heartbeat(
    db: &impl ConnectionTrait,
    id: i64,
    owner: &str,
    lease_until: DateTime<Utc>,
) -> Result<Option<bool>, DbErr> {
    let extended = tasks::Entity::update_many()
        .col_expr(tasks::Column::LeaseExpiresAt, Expr::value(lease_until))
        .filter(tasks::Column::Id.eq(id))
        .filter(tasks::Column::LeaseOwner.eq(owner))
        .filter(tasks::Column::Status.eq(TaskStatus::Running))
        .exec(db)
        .await?;
    if extended.rows_affected == 0 {
        return Ok(None);
    }
    let task = tasks::Entity::find_by_id(id).one(db).await?;
    Ok(Some(task.is_some_and(|t| t.cancel_requested)))
}

/// Changes columns of a task the caller still holds the lease of; false when it does not.
/// Only the task facade (`db::lease`) calls it, with typed changes.
pub(super) async fn update_owned(
    db: &impl ConnectionTrait,
    id: i64,
    owner: &str,
    changes: Vec<(tasks::Column, Value)>,
) -> Result<bool, DbErr> {
    let mut update = tasks::Entity::update_many()
        .col_expr(tasks::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(tasks::Column::Id.eq(id))
        .filter(tasks::Column::LeaseOwner.eq(owner));
    for (column, value) in changes {
        update = update.col_expr(column, Expr::value(value));
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// Moves a task the caller holds the lease of through `event`, with `changes`; false when
/// the lease is no longer the caller's.
pub(super) async fn transition_owned(
    db: &impl ConnectionTrait,
    id: i64,
    owner: &str,
    event: TaskEvent,
    changes: Vec<(tasks::Column, Value)>,
) -> Result<bool, DbErr> {
    let mut update =
        transition(event).filter(tasks::Column::Id.eq(id)).filter(tasks::Column::LeaseOwner.eq(owner));
    for (column, value) in changes {
        update = update.col_expr(column, Expr::value(value));
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// `TaskEvent::Ask` for a task the caller holds the lease of, with `changes`; a new
/// question counts and gives the attempt back (asking is not a failed attempt).
pub(super) async fn ask_owned(
    db: &impl ConnectionTrait,
    id: i64,
    owner: &str,
    new_question: bool,
    changes: Vec<(tasks::Column, Value)>,
) -> Result<bool, DbErr> {
    let mut update = transition(TaskEvent::Ask)
        .col_expr(tasks::Column::Attempt, Expr::col(tasks::Column::Attempt).sub(1))
        .filter(tasks::Column::Id.eq(id))
        .filter(tasks::Column::LeaseOwner.eq(owner));
    if new_question {
        update =
            update.col_expr(tasks::Column::QuestionsAsked, Expr::col(tasks::Column::QuestionsAsked).add(1));
    }
    for (column, value) in changes {
        update = update.col_expr(column, Expr::value(value));
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// Puts a task the caller holds back in the queue with the attempt given back (a
/// provider failure sends it to a fallback profile); false when the lease is lost.
pub(super) async fn reroute_owned(
    db: &impl ConnectionTrait,
    id: i64,
    owner: &str,
    changes: Vec<(tasks::Column, Value)>,
) -> Result<bool, DbErr> {
    let mut update = transition(TaskEvent::Retry)
        .col_expr(tasks::Column::Attempt, Expr::col(tasks::Column::Attempt).sub(1))
        .filter(tasks::Column::Id.eq(id))
        .filter(tasks::Column::LeaseOwner.eq(owner));
    for (column, value) in changes {
        update = update.col_expr(column, Expr::value(value));
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// Puts running tasks whose lease expired (or, with `owner_prefix`, that an earlier life of
/// this instance held) back in the queue, or fails them when their attempts are used up.
/// Returns the ids requeued and the ids failed.
pub(super) async fn requeue_abandoned(
    db: &impl ConnectionTrait,
    owner_prefix: Option<&str>,
    max_attempts: u32,
) -> Result<(Vec<i64>, Vec<i64>), DbErr> {
    let mut query = tasks::Entity::find().filter(tasks::Column::Status.eq(TaskStatus::Running));
    query = match owner_prefix {
        Some(prefix) => query.filter(tasks::Column::LeaseOwner.starts_with(prefix)),
        None => query.filter(tasks::Column::LeaseExpiresAt.lt(Utc::now())),
    };
    let (mut requeued, mut failed) = (Vec::new(), Vec::new());
    for task in query.all(db).await? {
        let exhausted = task.attempt >= max_attempts as i32;
        let event = if exhausted { TaskEvent::Finish(Ending::Failed) } else { TaskEvent::Expire };
        let status = event.target();
        let mut update = transition(event)
            .col_expr(tasks::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(tasks::Column::LeaseExpiresAt, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(tasks::Column::Id.eq(task.id));
        if exhausted {
            update = update
                .col_expr(tasks::Column::Error, Expr::value("the executor stopped during every attempt"))
                .col_expr(tasks::Column::FinishedAt, Expr::value(Utc::now()));
        }
        if update.exec(db).await?.rows_affected == 1 {
            let message = if exhausted {
                "failed: its executor stopped and no attempt is left".to_owned()
            } else {
                "requeued: its executor stopped before it finished".to_owned()
            };
            add_task_event(db, task.id, status.as_str(), &message).await?;
            if exhausted { failed.push(task.id) } else { requeued.push(task.id) }
        }
    }
    Ok((requeued, failed))
}

/// The newest agent session of the task that opened pull request `pr_number`, or of an
/// earlier follow-up on it, for `--resume`.
pub async fn last_session_for_pull(
    db: &impl ConnectionTrait,
    forge: &str,
    repo: &RepoName,
    pr_number: IssueNumber,
) -> Result<Option<String>, DbErr> {
    let task = tasks::Entity::find()
        .filter(tasks::Column::Forge.eq(forge))
        .filter(tasks::Column::Repo.eq(repo.as_str()))
        .filter(
            sea_orm::Condition::any()
                .add(tasks::Column::PrNumber.eq(tasks::pr_number_column(pr_number)))
                .add(tasks::Column::Number.eq(i64::from(pr_number))),
        )
        .filter(tasks::Column::AgentSessionId.is_not_null())
        .order_by_desc(tasks::Column::Id)
        .one(db)
        .await?;
    Ok(task.and_then(|t| t.agent_session_id))
}

/// Puts the tasks `owner` is running (or only task `only`) back in the queue without
/// counting the attempt: the daemon is shutting down, not failing.
pub(super) async fn release_owned(
    db: &impl ConnectionTrait,
    owner: &str,
    only: Option<i64>,
) -> Result<u64, DbErr> {
    let mut update = transition(TaskEvent::Release);
    if let Some(id) = only {
        update = update.filter(tasks::Column::Id.eq(id));
    }
    let released = update
        .col_expr(tasks::Column::Attempt, Expr::col(tasks::Column::Attempt).sub(1))
        .col_expr(tasks::Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(tasks::Column::LeaseExpiresAt, Expr::value(Option::<DateTime<Utc>>::None))
        .filter(tasks::Column::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(released.rows_affected)
}

/// A task's status and instructions, for `intake::add_instructions`.
pub(super) async fn instructions(
    db: &impl ConnectionTrait,
    task_id: i64,
) -> Result<Option<Instructions>, DbErr> {
    let task = tasks::Entity::find_by_id(task_id).one(db).await?;
    Ok(task.map(|t| Instructions {
        status: t.status,
        instructions: t.instructions,
        pending: t.pending_instructions,
        answers: t.answers,
    }))
}

pub(super) async fn set_instructions(
    db: &impl ConnectionTrait,
    task_id: i64,
    text: &str,
) -> Result<(), DbErr> {
    tasks::Entity::update_many()
        .col_expr(tasks::Column::Instructions, Expr::value(text))
        .filter(tasks::Column::Id.eq(task_id))
        .exec(db)
        .await?;
    Ok(())
}

pub(super) async fn set_pending_instructions(
    db: &impl ConnectionTrait,
    task_id: i64,
    text: &str,
    by: &str,
) -> Result<(), DbErr> {
    tasks::Entity::update_many()
        .col_expr(tasks::Column::PendingInstructions, Expr::value(text))
        .col_expr(tasks::Column::PendingRequestedBy, Expr::value(by))
        .filter(tasks::Column::Id.eq(task_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Whether the issue ever had a task, in any status.
pub async fn had_task(db: &impl ConnectionTrait, key: &IssueKey) -> Result<bool, DbErr> {
    let count = tasks::Entity::find()
        .filter(tasks::Column::Forge.eq(&key.forge))
        .filter(tasks::Column::Repo.eq(key.repo.as_str()))
        .filter(tasks::Column::Number.eq(i64::from(key.number)))
        .count(db)
        .await?;
    Ok(count > 0)
}

/// Queues the follow-up that instructions sent during `task`'s run asked for, on the pull
/// request the task worked on. Returns its id.
pub(super) async fn queue_pending_follow_up(
    db: &impl ConnectionTrait,
    task: &tasks::Model,
) -> Result<Option<i64>, DbErr> {
    let (Some(instructions), Some(number)) = (task.pending_instructions.clone(), follow_up_target(task))
    else {
        return Ok(None);
    };
    let request = TaskRequest {
        kind: crate::trigger::TaskKind::FollowUp,
        trigger: crate::trigger::TriggerKind::Review,
        repo: task.repo_name(),
        clone_url: task.clone_url.clone(),
        number,
        title: task.title.clone(),
        requested_by: task.pending_requested_by.clone().unwrap_or_else(|| task.requested_by.clone()),
        instructions,
        branch: task.branch.clone(),
        routing: crate::trigger::Routing {
            profile: task.agent_profile.clone(),
            priority: task.priority,
            source: task.agent_source.as_deref().map(|_| crate::trigger::RoutedBy::Request),
        },
        feedback_ref: None,
    };
    let id = insert_task(db, &task.forge, &request).await?;
    if let Some(id) = id {
        let message = format!("queued for what arrived while task {} ran", task.id);
        add_task_event(db, id, TaskStatus::Queued.as_str(), &message).await?;
    }
    Ok(id)
}

/// The pull request a follow-up of `task` works on: the one it opened, or its own.
fn follow_up_target(task: &tasks::Model) -> Option<IssueNumber> {
    match task.kind.as_str() {
        "follow_up" => Some(task.issue_number()),
        _ => task.pull_number(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_predicate_names_the_active_statuses() {
        let listed = status_list(TaskStatus::ACTIVE.into_iter());
        assert_eq!(ACTIVE_TASK_PREDICATE, format!("status IN ({listed})"));
    }
}
