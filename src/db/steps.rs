//! The phases of a task as each ends (`task_steps`), and how its pull request's checks
//! came out (`tasks.checks_result`): for the task page, the status comment's checklist,
//! the overview and `/metrics`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Value};

use super::entities::task_steps;
use super::entities::tasks::{self, Column, TaskStatus};
use super::limits::{self, clean};
use super::{Db, DbError, Lease, queries};

/// What a step was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepPhase {
    Setup,
    Agent,
    Check,
}

impl StepPhase {
    /// The name stored in `task_steps.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepPhase::Setup => "setup",
            StepPhase::Agent => "agent",
            StepPhase::Check => "check",
        }
    }

    /// The phase stored as `name`, if it is one.
    pub fn parse(name: &str) -> Option<StepPhase> {
        [StepPhase::Setup, StepPhase::Agent, StepPhase::Check].into_iter().find(|p| p.as_str() == name)
    }
}

/// A step that just ended.
#[derive(Debug, Clone, Copy)]
pub struct NewStep<'a> {
    /// The task's attempt.
    pub attempt: i32,
    pub phase: StepPhase,
    /// 0: the agent's first run and the checks after it; n: fix round n.
    pub round: u32,
    pub command: Option<&'a str>,
    pub passed: bool,
    /// `exit 1`, `timed out after 600s`; for an agent run its turns and cost.
    pub outcome: &'a str,
    pub duration: Duration,
    /// The output's tail (only the last [`limits::STEP_OUTPUT`] characters are kept).
    pub output: Option<&'a str>,
}

/// How the checks of a task's pull request came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksResult {
    /// Every check passed after the agent's first run.
    Passed,
    /// Some failed at first and passed after fix rounds.
    Fixed,
    /// Some still failed after the last fix round.
    Failing,
}

impl ChecksResult {
    /// The name stored in `tasks.checks_result`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksResult::Passed => "passed",
            ChecksResult::Fixed => "fixed",
            ChecksResult::Failing => "failing",
        }
    }
}

/// Pull requests by how their checks came out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksCounts {
    pub passed: i64,
    pub fixed: i64,
    pub failing: i64,
}

impl Db {
    /// The steps of task `task_id`, in the order they ended.
    pub async fn task_steps(&self, task_id: i64) -> Result<Vec<task_steps::Model>, DbError> {
        Ok(task_steps::Entity::find()
            .filter(task_steps::Column::TaskId.eq(task_id))
            .order_by_asc(task_steps::Column::Id)
            .all(&self.conn)
            .await?)
    }

    /// Done tasks with a pull request, finished since `since` (every time when `None`), by
    /// how their checks came out; tasks of repositories without checks are not counted.
    pub async fn checks_counts(&self, since: Option<DateTime<Utc>>) -> Result<ChecksCounts, DbError> {
        let mut select = tasks::Entity::find()
            .select_only()
            .column(Column::ChecksResult)
            .column_as(Expr::col(Column::Id).count(), "n")
            .filter(Column::Status.eq(TaskStatus::Done))
            .filter(Column::ChecksResult.is_not_null());
        if let Some(since) = since {
            select = select.filter(Column::FinishedAt.gte(since));
        }
        let rows: Vec<(Option<String>, i64)> =
            select.group_by(Column::ChecksResult).into_tuple().all(&self.conn).await?;
        let mut counts = ChecksCounts::default();
        for (result, n) in rows {
            match result.as_deref() {
                Some("passed") => counts.passed += n,
                Some("fixed") => counts.fixed += n,
                Some("failing") => counts.failing += n,
                _ => {}
            }
        }
        Ok(counts)
    }
}

impl Lease<'_> {
    /// Records a step that ended. Not fenced: history is written even after the lease ended.
    pub async fn add_step(&self, step: &NewStep<'_>) -> Result<(), DbError> {
        let output = step.output.map(|text| clean(tail(text, limits::STEP_OUTPUT), limits::STEP_OUTPUT));
        let row = task_steps::ActiveModel {
            task_id: Set(self.task_id()),
            attempt: Set(step.attempt),
            phase: Set(step.phase.as_str().to_owned()),
            round: Set(i32::try_from(step.round).unwrap_or(i32::MAX)),
            command: Set(step.command.map(|c| clean(c, limits::STEP_TEXT))),
            passed: Set(step.passed),
            outcome: Set(clean(step.outcome, limits::STEP_TEXT)),
            duration_ms: Set(i64::try_from(step.duration.as_millis()).unwrap_or(i64::MAX)),
            output: Set(output),
            ended_at: Set(Utc::now()),
            ..Default::default()
        };
        task_steps::Entity::insert(row).exec(&self.db().conn).await?;
        Ok(())
    }

    /// Records how the checks of the pull request about to be opened came out; false
    /// when the lease is lost.
    pub async fn record_checks_result(&self, result: ChecksResult) -> Result<bool, DbError> {
        let value = Value::from(Some(result.as_str().to_owned()));
        Ok(queries::update_owned(
            &self.db().conn,
            self.task_id(),
            self.owner(),
            vec![(Column::ChecksResult, value)],
        )
        .await?)
    }
}

/// The last `chars` characters of `text`.
fn tail(text: &str, chars: usize) -> &str {
    let skip = text.chars().count().saturating_sub(chars);
    text.char_indices().nth(skip).map_or("", |(i, _)| &text[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_end_on_character_boundaries() {
        assert_eq!(tail("héllo", 3), "llo");
        assert_eq!(tail("héllo", 4), "éllo");
        assert_eq!(tail("ab", 5), "ab");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn phases_read_back_as_stored() {
        for phase in [StepPhase::Setup, StepPhase::Agent, StepPhase::Check] {
            assert_eq!(StepPhase::parse(phase.as_str()), Some(phase));
        }
        assert_eq!(StepPhase::parse("deploy"), None);
    }
}
