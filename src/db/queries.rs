//! Query functions that take any connection, so they compose inside a transaction.

use chrono::Utc;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TryInsertResult,
};

use super::entities::{deliveries, label_states, task_events, tasks};
use super::{IssueKey, TaskFilter, TaskStatus, clean};
use crate::trigger::{IssueContext, TaskRequest};

/// Inserts a delivery unless one with the same forge and id, or carrying the same comment
/// or review, exists; returns its row id, or `None` for a duplicate.
pub async fn insert_delivery(
    db: &impl ConnectionTrait,
    row: deliveries::ActiveModel,
) -> Result<Option<i64>, DbErr> {
    // No conflict target: either unique index (delivery id, event key) makes a duplicate.
    let on_conflict = OnConflict::new().do_nothing().to_owned();
    match deliveries::Entity::insert(row).on_conflict(on_conflict).try_insert().exec(db).await? {
        TryInsertResult::Inserted(done) => Ok(Some(done.last_insert_id)),
        TryInsertResult::Conflicted | TryInsertResult::Empty => Ok(None),
    }
}

/// Records what a delivery led to.
pub async fn set_delivery_outcome(
    db: &impl ConnectionTrait,
    id: i64,
    outcome: &str,
    reason: &str,
    task_id: Option<i64>,
) -> Result<(), DbErr> {
    deliveries::Entity::update_many()
        .col_expr(deliveries::Column::Outcome, Expr::value(outcome))
        .col_expr(deliveries::Column::Reason, Expr::value(clean(reason, 2000)))
        .col_expr(deliveries::Column::TaskId, Expr::value(task_id))
        .filter(deliveries::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// What the database knows about an issue: its active task and trigger-label state.
pub async fn issue_context(db: &impl ConnectionTrait, key: &IssueKey) -> Result<IssueContext, DbErr> {
    let active_task = active_task(db, key).await?.map(|task| task.id);
    let label_was_present =
        label_states::Entity::find_by_id((key.forge.clone(), key.repo.clone(), key.number))
            .one(db)
            .await?
            .map(|state| state.present);
    Ok(IssueContext { active_task, label_was_present })
}

/// The queued or running task for an issue, if any.
pub async fn active_task(db: &impl ConnectionTrait, key: &IssueKey) -> Result<Option<tasks::Model>, DbErr> {
    tasks::Entity::find()
        .filter(tasks::Column::Forge.eq(&key.forge))
        .filter(tasks::Column::Repo.eq(&key.repo))
        .filter(tasks::Column::Number.eq(key.number))
        .filter(tasks::Column::Status.is_in(TaskStatus::ACTIVE.map(TaskStatus::as_str)))
        .one(db)
        .await
}

/// Remembers whether the issue carries the trigger label now.
pub async fn set_label_state(db: &impl ConnectionTrait, key: &IssueKey, present: bool) -> Result<(), DbErr> {
    let row = label_states::ActiveModel {
        forge: Set(key.forge.clone()),
        repo: Set(key.repo.clone()),
        number: Set(key.number),
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

/// The predicate of the `tasks_one_active_per_issue` index, word for word.
const ACTIVE_TASK_PREDICATE: &str = "status IN ('queued', 'running')";

/// Queues a task; `None` when another task for the issue became active first (the
/// database's one-active-task-per-issue index decides).
pub async fn insert_task(
    db: &impl ConnectionTrait,
    forge: &str,
    request: &TaskRequest,
) -> Result<Option<i64>, DbErr> {
    let now = Utc::now();
    let row = tasks::ActiveModel {
        forge: Set(forge.to_owned()),
        repo: Set(request.repo.clone()),
        number: Set(i64::from(request.number)),
        kind: Set(request.kind.as_str().to_owned()),
        trigger: Set(request.trigger.as_str().to_owned()),
        requested_by: Set(clean(&request.requested_by, 200)),
        title: Set(clean(&request.title, 1000)),
        instructions: Set(clean(&request.instructions, 65_536)),
        clone_url: Set(clean(&request.clone_url, 2000)),
        status: Set(TaskStatus::Queued.as_str().to_owned()),
        attempt: Set(0),
        branch: Set(request.branch.as_deref().map(|b| clean(b, 255))),
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

/// The timeline kind of an event that changes no status.
pub const NOTE: &str = "note";

/// Appends a line to a task's timeline: `kind` is the new status, or [`NOTE`].
pub async fn add_task_event(
    db: &impl ConnectionTrait,
    task_id: i64,
    kind: &str,
    message: &str,
) -> Result<(), DbErr> {
    let row = task_events::ActiveModel {
        task_id: Set(task_id),
        at: Set(Utc::now()),
        status: Set(kind.to_owned()),
        message: Set(clean(message, 4000)),
        ..Default::default()
    };
    task_events::Entity::insert(row).exec_without_returning(db).await?;
    Ok(())
}

/// Cancels a queued task at once; asks a running one to stop. Returns the status after.
pub async fn cancel_task(db: &impl ConnectionTrait, task_id: i64, reason: &str) -> Result<TaskStatus, DbErr> {
    let now = Utc::now();
    let cancelled = tasks::Entity::update_many()
        .col_expr(tasks::Column::Status, Expr::value(TaskStatus::Cancelled.as_str()))
        .col_expr(tasks::Column::Error, Expr::value(clean(reason, 2000)))
        .col_expr(tasks::Column::FinishedAt, Expr::value(now))
        .col_expr(tasks::Column::UpdatedAt, Expr::value(now))
        .filter(tasks::Column::Id.eq(task_id))
        .filter(tasks::Column::Status.eq(TaskStatus::Queued.as_str()))
        .exec(db)
        .await?;
    if cancelled.rows_affected == 1 {
        add_task_event(db, task_id, TaskStatus::Cancelled.as_str(), &format!("cancelled: {reason}")).await?;
        return Ok(TaskStatus::Cancelled);
    }
    tasks::Entity::update_many()
        .col_expr(tasks::Column::CancelRequested, Expr::value(true))
        .col_expr(tasks::Column::UpdatedAt, Expr::value(now))
        .filter(tasks::Column::Id.eq(task_id))
        .exec(db)
        .await?;
    add_task_event(db, task_id, NOTE, &format!("cancel requested: {reason}")).await?;
    Ok(TaskStatus::Running)
}

/// Tasks matching `filter`, newest first.
pub async fn list_tasks(db: &impl ConnectionTrait, filter: &TaskFilter) -> Result<Vec<tasks::Model>, DbErr> {
    let mut query = tasks::Entity::find().order_by_desc(tasks::Column::Id).limit(filter.limit);
    if let Some(status) = filter.status {
        query = query.filter(tasks::Column::Status.eq(status.as_str()));
    }
    if let Some(repo) = &filter.repo {
        query = query.filter(tasks::Column::Repo.eq(repo));
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
