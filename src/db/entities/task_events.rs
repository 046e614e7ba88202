//! `task_events`: the timeline of a task, one row per status change or notable step.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "task_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub task_id: i64,
    pub at: DateTimeUtc,
    pub status: String,
    pub message: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
