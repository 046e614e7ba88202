//! `breakers`: each agent profile's circuit breaker, shared by all instances.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "breakers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub profile: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// Provider failures counted in the window that started at `window_started_at`.
    pub failures: i32,
    pub window_started_at: Option<DateTimeUtc>,
    /// When the breaker last opened.
    pub opened_at: Option<DateTimeUtc>,
    /// When the half-open breaker let its one trial task through.
    pub trial_at: Option<DateTimeUtc>,
    /// The last provider failure's reason (never stderr: see `breakers::provider_failure`).
    pub last_error: Option<String>,
    /// Bumped by every write: a write applies only to the version it read.
    #[serde(skip)]
    pub version: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
