//! `deliveries`: every accepted webhook delivery and what forgehand made of it.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub forge: String,
    pub delivery_id: String,
    /// The comment or review the delivery carries, e.g. `comment:123:created`.
    pub event_key: Option<String>,
    pub event: String,
    pub action: Option<String>,
    pub repo: Option<String>,
    pub number: Option<i64>,
    pub sender: Option<String>,
    pub received_at: DateTimeUtc,
    pub outcome: String,
    pub reason: String,
    pub task_id: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
