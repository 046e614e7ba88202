//! Refused deliveries: the last [`REFUSALS_KEPT`] are kept, for people to see on
//! `/deliveries` and `/setup`. Written in batches (see `server::refusals`), never on the
//! request path.

use chrono::{DateTime, Utc};
use sea_orm::ColumnTrait;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::entities::{deliveries, refused_deliveries};
use super::{Db, DbError};

/// How many refused deliveries are kept; older ones are deleted as new ones arrive.
pub const REFUSALS_KEPT: i64 = 200;

/// Longest text kept of a refusal's reason and of the forge-supplied fields.
const REASON_CHARS: usize = 1000;
const FIELD_CHARS: usize = 200;

/// A refused delivery to record: never its body nor its headers.
#[derive(Debug, Clone)]
pub struct NewRefusal {
    pub forge: String,
    pub status: u16,
    pub reason: String,
    pub event: Option<String>,
    pub delivery_id: Option<String>,
    pub source: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// The newest delivery of a forge, accepted or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastDelivery {
    Accepted { at: DateTime<Utc> },
    Refused { at: DateTime<Utc>, status: u16, reason: String },
}

impl Db {
    /// Records `batch` in one transaction and deletes what is older than the last
    /// [`REFUSALS_KEPT`].
    pub async fn record_refusals(&self, batch: Vec<NewRefusal>) -> Result<(), DbError> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows = batch.into_iter().map(|refusal| refused_deliveries::ActiveModel {
            id: NotSet,
            forge: Set(super::clean(&refusal.forge, FIELD_CHARS)),
            status: Set(i32::from(refusal.status)),
            reason: Set(super::clean(&refusal.reason, REASON_CHARS)),
            event: Set(refusal.event.map(|e| super::clean(&e, FIELD_CHARS))),
            delivery_id: Set(refusal.delivery_id.map(|d| super::clean(&d, FIELD_CHARS))),
            source: Set(refusal.source.map(|s| super::clean(&s, FIELD_CHARS))),
            received_at: Set(refusal.received_at),
        });
        let txn = self.conn.begin().await?;
        refused_deliveries::Entity::insert_many(rows).exec(&txn).await?;
        let newest: Option<i64> = refused_deliveries::Entity::find()
            .select_only()
            .column_as(refused_deliveries::Column::Id.max(), "id")
            .into_tuple()
            .one(&txn)
            .await?
            .flatten();
        if let Some(newest) = newest {
            refused_deliveries::Entity::delete_many()
                .filter(refused_deliveries::Column::Id.lte(newest - REFUSALS_KEPT))
                .exec(&txn)
                .await?;
        }
        Ok(txn.commit().await?)
    }

    /// The newest refused deliveries, newest first.
    pub async fn recent_refusals(&self, limit: u64) -> Result<Vec<refused_deliveries::Model>, DbError> {
        let newest_first = refused_deliveries::Entity::find().order_by_desc(refused_deliveries::Column::Id);
        Ok(newest_first.limit(limit).all(&self.conn).await?)
    }

    /// The newest delivery for `forge`, accepted or refused; `None` when none arrived.
    pub async fn last_delivery(&self, forge: &str) -> Result<Option<LastDelivery>, DbError> {
        let accepted = deliveries::Entity::find()
            .filter(deliveries::Column::Forge.eq(forge))
            .order_by_desc(deliveries::Column::Id)
            .one(&self.conn)
            .await?
            .map(|d| d.received_at);
        let refused = refused_deliveries::Entity::find()
            .filter(refused_deliveries::Column::Forge.eq(forge))
            .order_by_desc(refused_deliveries::Column::Id)
            .one(&self.conn)
            .await?;
        Ok(match (accepted, refused) {
            (Some(at), Some(refused)) if at >= refused.received_at => Some(LastDelivery::Accepted { at }),
            (_, Some(refused)) => Some(LastDelivery::Refused {
                at: refused.received_at,
                status: u16::try_from(refused.status).unwrap_or_default(),
                reason: refused.reason,
            }),
            (Some(at), None) => Some(LastDelivery::Accepted { at }),
            (None, None) => None,
        })
    }
}
