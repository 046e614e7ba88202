//! `label_states`: whether an issue carried the trigger label when last seen, so that a
//! Gitea label event (which only lists the labels after the change) can tell a new label
//! from an old one.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "label_states")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub forge: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub repo: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub number: i64,
    pub present: bool,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
