//! Queries behind the dashboard pages: figures, filtered task and delivery pages, and the
//! actions people take there (retry). Every list is keyset-paginated on the id so that a
//! page costs the same with a million rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, SqlErr, Statement,
};

use super::entities::{deliveries, tasks};
use super::{Db, DbError, TaskStatus, clean, limits, queries};

/// Which tasks the dashboard lists.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    pub status: Option<TaskStatus>,
    pub repo: Option<String>,
    pub forge: Option<String>,
    /// Part of the title, any case.
    pub text: Option<String>,
    /// Only tasks with a smaller id (newest first).
    pub before: Option<i64>,
    pub limit: u64,
}

/// Which deliveries the dashboard lists.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub outcome: Option<String>,
    pub forge: Option<String>,
    pub before: Option<i64>,
    pub limit: u64,
}

/// One page of a list, and the `before` value of the next page if there is one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub next_before: Option<i64>,
}

/// Tasks finished in a period, by final status, with their cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finished {
    pub done: i64,
    pub failed: i64,
    pub no_changes: i64,
    pub cancelled: i64,
    pub rejected: i64,
    /// Questions nobody answered in time.
    pub expired: i64,
    pub cost_usd: f64,
}

impl Finished {
    /// Share of done tasks among those that ran to an end (cancelled ones left out), if any.
    pub fn success_rate(&self) -> Option<f64> {
        let ended = self.done + self.failed + self.no_changes + self.rejected;
        (ended > 0).then(|| self.done as f64 / ended as f64)
    }
}

/// The figures at the top of the dashboard.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    pub queued: u64,
    /// Tasks waiting for an answer to the agent's question.
    pub needs_input: u64,
    /// Running tasks, oldest first.
    pub running: Vec<tasks::Model>,
    pub today: Finished,
    pub week: Finished,
    /// Median time from queueing to a pull request over the last 7 days (at most the
    /// latest 2,000).
    pub median_to_pr: Option<chrono::Duration>,
    /// Pull requests of the last 7 days by how their checks came out.
    pub checks_week: super::ChecksCounts,
}

/// How old the overview a page shows may be: every page load within this time after a
/// computation shows that computation's figures.
pub const OVERVIEW_MAX_AGE: Duration = Duration::from_secs(1);

/// The overview, computed at most once per `max_age` and shared by every page load in
/// between. Aggregating the week's tasks takes about 10 ms with a million tasks; a
/// dashboard polled every 2 s by several people would pay it on every load.
#[derive(Debug)]
pub struct OverviewCache {
    max_age: Duration,
    slot: tokio::sync::Mutex<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    /// When the cached overview's computation started, and the overview.
    overview: Option<(Instant, Arc<Overview>)>,
    /// When the last computation failed, and why.
    failure: Option<(Instant, String)>,
}

impl Default for OverviewCache {
    fn default() -> Self {
        OverviewCache::new(OVERVIEW_MAX_AGE)
    }
}

impl OverviewCache {
    /// A cache whose overview is at most `max_age` old (counted from the start of its
    /// computation).
    pub fn new(max_age: Duration) -> Self {
        OverviewCache { max_age, slot: Default::default() }
    }

    /// The overview of `db`, computed now if the cached one is too old.
    pub async fn get(&self, db: &Db) -> Result<Arc<Overview>, DbError> {
        self.get_or_compute(|| db.overview(Utc::now())).await
    }

    /// The cached overview, or the one `compute` makes when it is missing or too old.
    /// Concurrent callers wait for one computation instead of each running their own, and
    /// share its failure too: with the database down, waiting page loads fail together
    /// instead of each waiting for its own timeout in turn.
    pub async fn get_or_compute<F, Fut>(&self, compute: F) -> Result<Arc<Overview>, DbError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Overview, DbError>>,
    {
        let asked = Instant::now();
        let mut slot = self.slot.lock().await;
        if let Some((at, overview)) = &slot.overview
            && at.elapsed() < self.max_age
        {
            return Ok(overview.clone());
        }
        if let Some((failed, why)) = &slot.failure
            && *failed >= asked
        {
            return Err(DbError::custom(why.clone()));
        }
        let started = Instant::now();
        match compute().await {
            Ok(overview) => {
                let overview = Arc::new(overview);
                *slot = Slot { overview: Some((started, overview.clone())), failure: None };
                Ok(overview)
            }
            Err(err) => {
                slot.failure = Some((Instant::now(), err.to_string()));
                Err(err)
            }
        }
    }

    /// Forgets the cached overview, so that the next page shows a change made from the
    /// dashboard at once.
    pub async fn invalidate(&self) {
        self.slot.lock().await.overview = None;
    }
}

/// What a retry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    Queued(i64),
    /// Another task for the issue is queued or running.
    AlreadyActive(Option<i64>),
    /// The task is not in a status that can be retried.
    NotRetryable(String),
    NotFound,
}

/// Statuses a person may retry from.
pub const RETRYABLE: [TaskStatus; 5] = [
    TaskStatus::Failed,
    TaskStatus::Cancelled,
    TaskStatus::NoChanges,
    TaskStatus::Rejected,
    TaskStatus::Expired,
];

/// Running tasks shown at most; more than that is a misconfiguration worth no page.
const MAX_RUNNING_SHOWN: u64 = 200;
/// The most recent pull requests the median is taken over.
const MAX_MEDIAN_SAMPLES: u64 = 2_000;
/// Statuses a task ends in.
const ENDED: [TaskStatus; 6] = [
    TaskStatus::Done,
    TaskStatus::Failed,
    TaskStatus::NoChanges,
    TaskStatus::Cancelled,
    TaskStatus::Rejected,
    TaskStatus::Expired,
];

impl Db {
    /// One page of tasks, newest first.
    pub async fn dashboard_tasks(&self, query: &TaskQuery) -> Result<Page<tasks::Model>, DbError> {
        let mut select = tasks::Entity::find().order_by_desc(tasks::Column::Id).limit(query.limit + 1);
        if let Some(status) = query.status {
            select = select.filter(tasks::Column::Status.eq(status));
        }
        if let Some(repo) = &query.repo {
            select = select.filter(tasks::Column::Repo.eq(repo));
        }
        if let Some(forge) = &query.forge {
            select = select.filter(tasks::Column::Forge.eq(forge));
        }
        if let Some(text) = &query.text {
            let pattern = format!("%{}%", like_escape(&text.to_lowercase()));
            select = select.filter(
                Expr::expr(Func::lower(Expr::col(tasks::Column::Title)))
                    .like(sea_orm::sea_query::LikeExpr::new(pattern).escape('\\')),
            );
        }
        if let Some(before) = query.before {
            select = select.filter(tasks::Column::Id.lt(before));
        }
        let rows = select.all(&self.conn).await?;
        Ok(page(rows, query.limit, |t| t.id))
    }

    /// One page of deliveries, newest first.
    pub async fn dashboard_deliveries(
        &self,
        query: &DeliveryQuery,
    ) -> Result<Page<deliveries::Model>, DbError> {
        let mut select =
            deliveries::Entity::find().order_by_desc(deliveries::Column::Id).limit(query.limit + 1);
        if let Some(outcome) = &query.outcome {
            select = select.filter(deliveries::Column::Outcome.eq(outcome));
        }
        if let Some(forge) = &query.forge {
            select = select.filter(deliveries::Column::Forge.eq(forge));
        }
        if let Some(before) = query.before {
            select = select.filter(deliveries::Column::Id.lt(before));
        }
        let rows = select.all(&self.conn).await?;
        Ok(page(rows, query.limit, |d| d.id))
    }

    /// The dashboard's figures; "today" starts at `midnight` (UTC).
    pub async fn overview(&self, now: DateTime<Utc>) -> Result<Overview, DbError> {
        let db = &self.conn;
        let queued =
            tasks::Entity::find().filter(tasks::Column::Status.eq(TaskStatus::Queued)).count(db).await?;
        let needs_input =
            tasks::Entity::find().filter(tasks::Column::Status.eq(TaskStatus::NeedsInput)).count(db).await?;
        let running = tasks::Entity::find()
            .filter(tasks::Column::Status.eq(TaskStatus::Running))
            .order_by_asc(tasks::Column::Id)
            .limit(MAX_RUNNING_SHOWN)
            .all(db)
            .await?;
        let midnight = now.date_naive().and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or(now);
        let week_ago = now - chrono::Duration::days(7);
        Ok(Overview {
            queued,
            needs_input,
            running,
            today: self.finished_since(midnight).await?,
            week: self.finished_since(week_ago).await?,
            median_to_pr: self.median_to_pr(week_ago).await?,
            checks_week: self.checks_counts(Some(week_ago)).await?,
        })
    }

    async fn finished_since(&self, since: DateTime<Utc>) -> Result<Finished, DbError> {
        let rows: Vec<(TaskStatus, i64, Option<f64>)> = tasks::Entity::find()
            .select_only()
            .column(tasks::Column::Status)
            .column_as(Expr::col(tasks::Column::Id).count(), "n")
            .column_as(Expr::col(tasks::Column::CostUsd).sum(), "cost")
            // Naming the statuses lets both databases range-scan (status, finished_at).
            .filter(tasks::Column::Status.is_in(ENDED))
            .filter(tasks::Column::FinishedAt.gte(since))
            .group_by(tasks::Column::Status)
            .into_tuple()
            .all(&self.conn)
            .await?;
        let mut finished = Finished::default();
        for (status, n, cost) in rows {
            finished.cost_usd += cost.unwrap_or(0.0);
            match status {
                TaskStatus::Done => finished.done += n,
                TaskStatus::Failed => finished.failed += n,
                TaskStatus::NoChanges => finished.no_changes += n,
                TaskStatus::Cancelled => finished.cancelled += n,
                TaskStatus::Rejected => finished.rejected += n,
                TaskStatus::Expired => finished.expired += n,
                TaskStatus::Queued | TaskStatus::Running | TaskStatus::NeedsInput => {}
            }
        }
        Ok(finished)
    }

    async fn median_to_pr(&self, since: DateTime<Utc>) -> Result<Option<chrono::Duration>, DbError> {
        let rows: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = tasks::Entity::find()
            .select_only()
            .column(tasks::Column::CreatedAt)
            .column(tasks::Column::FinishedAt)
            .filter(tasks::Column::FinishedAt.gte(since))
            .filter(tasks::Column::Status.eq(TaskStatus::Done))
            .filter(tasks::Column::PrUrl.is_not_null())
            .order_by_desc(tasks::Column::FinishedAt)
            .limit(MAX_MEDIAN_SAMPLES)
            .into_tuple()
            .all(&self.conn)
            .await?;
        let mut durations: Vec<_> =
            rows.into_iter().filter_map(|(created, finished)| Some(finished? - created)).collect();
        durations.sort();
        Ok(durations.get(durations.len() / 2).copied())
    }

    /// Queues a new task with the fields of task `id`, which must have ended.
    pub async fn retry_task(&self, id: i64, by: &str) -> Result<Retried, DbError> {
        let db = &self.conn;
        let Some(old) = tasks::Entity::find_by_id(id).one(db).await? else {
            return Ok(Retried::NotFound);
        };
        if !RETRYABLE.contains(&old.status) {
            return Ok(Retried::NotRetryable(old.status.as_str().to_owned()));
        }
        let key =
            super::IssueKey { forge: old.forge.clone(), repo: old.repo_name(), number: old.issue_number() };
        if let Some(active) = queries::active_task(db, &key).await? {
            return Ok(Retried::AlreadyActive(Some(active.id)));
        }
        let now = Utc::now();
        let row = tasks::ActiveModel {
            forge: Set(old.forge.clone()),
            repo: Set(old.repo.clone()),
            number: Set(old.number),
            kind: Set(old.kind.clone()),
            trigger: Set(old.trigger.clone()),
            requested_by: Set(old.requested_by.clone()),
            title: Set(old.title.clone()),
            instructions: Set(old.instructions.clone()),
            clone_url: Set(old.clone_url.clone()),
            status: Set(TaskStatus::Queued),
            attempt: Set(0),
            // A follow-up works on its pull request's branch; an issue task finds its own.
            branch: Set(if old.kind == "follow_up" { old.branch.clone() } else { None }),
            cancel_requested: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        let new_id = match tasks::Entity::insert(row).exec(db).await {
            Ok(done) => done.last_insert_id,
            // The one-active-task-per-issue index: someone queued one in the meantime.
            Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return Ok(Retried::AlreadyActive(None));
            }
            Err(err) => return Err(err.into()),
        };
        let message = format!("queued from the dashboard by {by} as a retry of task {id}");
        queries::add_task_event(
            db,
            new_id,
            TaskStatus::Queued.as_str(),
            &clean(&message, limits::DASHBOARD_NOTE),
        )
        .await?;
        queries::add_task_event(db, id, queries::NOTE, &format!("retried as task {new_id}")).await?;
        Ok(Retried::Queued(new_id))
    }

    /// Cancels a queued task at once, or asks a running one to stop; `None` when the
    /// task does not exist, else the status after.
    pub async fn cancel_from_dashboard(&self, id: i64, reason: &str) -> Result<Option<TaskStatus>, DbError> {
        let db = &self.conn;
        let Some(task) = tasks::Entity::find_by_id(id).one(db).await? else {
            return Ok(None);
        };
        if !task.status.is_active() {
            return Ok(Some(task.status));
        }
        Ok(Some(super::intake::sea::cancel_task(db, id, reason).await?))
    }
}

fn page<T>(mut rows: Vec<T>, limit: u64, id: impl Fn(&T) -> i64) -> Page<T> {
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_before = if more { rows.last().map(id) } else { None };
    Page { rows, next_before }
}

/// Makes `%`, `_` and `\` in user text match themselves in a LIKE pattern.
fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The figures `/metrics` exposes that live in the database (every instance's).
#[derive(Debug, Clone, Default)]
pub struct MetricCounts {
    /// Tasks by status.
    pub tasks: Vec<(String, i64)>,
    /// Deliveries by outcome.
    pub deliveries: Vec<(String, i64)>,
    /// Seconds from start to end of the latest tasks finished recently, unsorted.
    pub recent_durations: Vec<f64>,
    /// Tasks finished recently, all of them.
    pub finished_recent: u64,
    /// Pull requests by how their checks came out (every time).
    pub checks: super::ChecksCounts,
    /// Questions agents asked, over every task.
    pub questions_asked: i64,
}

type Time = DateTime<Utc>;

/// Recently finished tasks the duration quantiles are taken over, at most: the latest
/// 2,000 put about 20 above the 99th percentile, and reading each costs a row lookup.
const MAX_DURATION_SAMPLES: u64 = 2_000;

impl Db {
    /// Tasks by status, deliveries by outcome, and the run time of tasks finished since
    /// `since` (at most the latest [`MAX_DURATION_SAMPLES`]).
    pub async fn metric_counts(&self, since: DateTime<Utc>) -> Result<MetricCounts, DbError> {
        let db = &self.conn;
        let tasks = self.tasks_by_status().await?;
        // Counted by intake as each delivery is recorded (migration 15): the figure stays a
        // counter when old deliveries are deleted, and reading it does not scan them.
        let totals = Statement::from_string(
            db.get_database_backend(),
            "SELECT outcome, CAST(SUM(n) AS BIGINT) AS n FROM delivery_totals GROUP BY outcome",
        );
        let deliveries = db
            .query_all_raw(totals)
            .await?
            .into_iter()
            .map(|row| Ok((row.try_get::<String>("", "outcome")?, row.try_get::<i64>("", "n")?)))
            .collect::<Result<Vec<_>, DbErr>>()?;
        let (recent_durations, finished_recent) = self.recent_durations(since).await?;
        let checks = self.checks_counts(None).await?;
        let asked: Option<Option<i64>> = tasks::Entity::find()
            .select_only()
            .column_as(Expr::col(tasks::Column::QuestionsAsked).sum(), "asked")
            .filter(tasks::Column::QuestionsAsked.gt(0))
            .into_tuple()
            .one(db)
            .await?;
        let questions_asked = asked.flatten().unwrap_or(0);
        Ok(MetricCounts { tasks, deliveries, recent_durations, finished_recent, checks, questions_asked })
    }

    /// Start-to-end seconds of the latest tasks finished since `since` (at most
    /// [`MAX_DURATION_SAMPLES`]), and how many finished since then in all.
    ///
    /// One ordered range per ended status, each stopped at the sample size: a single query
    /// over every ended status must sort the whole day's tasks (and read each row) before
    /// it can keep the latest; the count reads the (status, finished_at) index alone.
    async fn recent_durations(&self, since: DateTime<Utc>) -> Result<(Vec<f64>, u64), DbError> {
        let mut spans: Vec<(Time, Option<Time>)> = Vec::new();
        for status in ENDED {
            let rows: Vec<(Option<Time>, Option<Time>)> = tasks::Entity::find()
                .select_only()
                .column(tasks::Column::FinishedAt)
                .column(tasks::Column::StartedAt)
                .filter(tasks::Column::Status.eq(status))
                .filter(tasks::Column::FinishedAt.gte(since))
                .order_by_desc(tasks::Column::FinishedAt)
                .limit(MAX_DURATION_SAMPLES)
                .into_tuple()
                .all(&self.conn)
                .await?;
            spans.extend(rows.into_iter().filter_map(|(end, start)| Some((end?, start))));
        }
        spans.sort_unstable_by_key(|(end, _)| std::cmp::Reverse(*end));
        spans.truncate(MAX_DURATION_SAMPLES as usize);
        let durations = spans
            .into_iter()
            .filter_map(|(end, start)| Some((end - start?).num_milliseconds() as f64 / 1000.0))
            .filter(|seconds| *seconds >= 0.0)
            .collect();
        let finished = tasks::Entity::find()
            .filter(tasks::Column::Status.is_in(ENDED))
            .filter(tasks::Column::FinishedAt.gte(since))
            .count(&self.conn)
            .await?;
        Ok((durations, finished))
    }

    /// Tasks by status: those that ended as the database's triggers counted them
    /// (`task_totals`, migration 17), the active ones counted now. Grouping every task by
    /// status read a million index entries at a million tasks.
    async fn tasks_by_status(&self) -> Result<Vec<(String, i64)>, DbError> {
        let db = &self.conn;
        let totals = Statement::from_string(db.get_database_backend(), "SELECT status, n FROM task_totals");
        let mut counts = db
            .query_all_raw(totals)
            .await?
            .into_iter()
            .map(|row| Ok((row.try_get::<String>("", "status")?, row.try_get::<i64>("", "n")?)))
            .collect::<Result<Vec<_>, DbErr>>()?;
        let active: Vec<(String, i64)> = tasks::Entity::find()
            .select_only()
            .column(tasks::Column::Status)
            .column_as(Expr::col(tasks::Column::Id).count(), "n")
            .filter(tasks::Column::Status.is_in(TaskStatus::ACTIVE))
            .group_by(tasks::Column::Status)
            .into_tuple()
            .all(db)
            .await?;
        counts.extend(active);
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A computation that counts its runs and reports the count as the queued figure.
    async fn counting(runs: &AtomicU64) -> Result<Overview, DbError> {
        Ok(Overview { queued: runs.fetch_add(1, Ordering::SeqCst) + 1, ..Default::default() })
    }

    #[tokio::test]
    async fn the_overview_is_computed_once_per_max_age_and_after_invalidate() {
        let runs = AtomicU64::new(0);
        let cache = OverviewCache::new(Duration::from_secs(3600));
        assert_eq!(cache.get_or_compute(|| counting(&runs)).await.unwrap().queued, 1);
        assert_eq!(
            cache.get_or_compute(|| counting(&runs)).await.unwrap().queued,
            1,
            "served from the cache"
        );
        cache.invalidate().await;
        assert_eq!(cache.get_or_compute(|| counting(&runs)).await.unwrap().queued, 2);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_old_or_failed_overview_is_computed_again() {
        let runs = AtomicU64::new(0);
        let cache = OverviewCache::new(Duration::ZERO);
        assert_eq!(cache.get_or_compute(|| counting(&runs)).await.unwrap().queued, 1);
        assert_eq!(cache.get_or_compute(|| counting(&runs)).await.unwrap().queued, 2, "too old at once");
        let failed = cache.get_or_compute(|| async { Err(DbError::custom("down")) }).await;
        assert!(failed.is_err());
        let cache = OverviewCache::new(Duration::from_secs(3600));
        assert!(cache.get_or_compute(|| async { Err(DbError::custom("down")) }).await.is_err());
        assert_eq!(cache.get_or_compute(|| counting(&runs)).await.unwrap().queued, 3, "errors are not kept");
    }

    #[tokio::test]
    async fn callers_waiting_on_a_failing_computation_share_its_failure() {
        let runs = AtomicU64::new(0);
        let cache = OverviewCache::new(Duration::from_secs(3600));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let failing = cache.get_or_compute(|| async {
            let _ = released.await;
            Err(DbError::custom("the database is down"))
        });
        let waiting = async {
            tokio::task::yield_now().await; // after the failing one holds the slot
            cache.get_or_compute(|| counting(&runs)).await
        };
        let release = async {
            for _ in 0..3 {
                tokio::task::yield_now().await; // after the waiting one asked
            }
            let _ = release.send(());
        };
        let (failed, waited, ()) = tokio::join!(failing, waiting, release);
        assert!(failed.is_err());
        assert!(waited.unwrap_err().to_string().contains("the database is down"));
        assert_eq!(runs.load(Ordering::SeqCst), 0, "the waiting caller ran no computation of its own");
        // A caller that comes after the failure tries again.
        assert_eq!(cache.get_or_compute(|| counting(&runs)).await.unwrap().queued, 1);
    }
}
