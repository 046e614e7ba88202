//! `refused_deliveries`: the last deliveries forgehand refused, without body or headers.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "refused_deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The forge the URL named (possibly one that is not configured).
    pub forge: String,
    /// The HTTP status forgehand answered.
    pub status: i32,
    pub reason: String,
    pub event: Option<String>,
    pub delivery_id: Option<String>,
    /// The sender's address (behind a trusted proxy: the client it names).
    pub source: Option<String>,
    pub received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
