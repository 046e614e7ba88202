//! `task_steps`: the phases of a task as each ends (setup and check commands, agent runs).

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "task_steps")]
pub struct Model {
    #[sea_orm(primary_key)]
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub task_id: i64,
    /// The task's attempt the step belongs to.
    pub attempt: i32,
    /// `setup`, `agent` or `check`.
    pub phase: String,
    /// 0: the agent's first run and the checks after it; n: fix round n.
    pub round: i32,
    /// The command line (none for an agent run).
    pub command: Option<String>,
    pub passed: bool,
    /// `exit 1`, `timed out after 600s`; for an agent run its turns and cost.
    pub outcome: String,
    pub duration_ms: i64,
    /// The tail of the command's output, the worktree's path replaced by `.`.
    pub output: Option<String>,
    pub ended_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
