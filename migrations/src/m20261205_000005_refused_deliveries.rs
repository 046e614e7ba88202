//! Refused deliveries (wrong signature, unknown forge, …), so that people can see them; the
//! daemon keeps only the last few hundred. And an index to find a forge's newest delivery.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RefusedDeliveries {
    Table,
    Id,
    Forge,
    Status,
    Reason,
    Event,
    DeliveryId,
    Source,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    Forge,
}

const FORGE_INDEX: &str = "deliveries_forge_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Table::create()
            .table(RefusedDeliveries::Table)
            .col(big_pk_auto(RefusedDeliveries::Id))
            .col(string(RefusedDeliveries::Forge))
            .col(integer(RefusedDeliveries::Status))
            .col(text(RefusedDeliveries::Reason))
            .col(string_null(RefusedDeliveries::Event))
            .col(string_null(RefusedDeliveries::DeliveryId))
            .col(string_null(RefusedDeliveries::Source))
            .col(timestamp_with_time_zone(RefusedDeliveries::ReceivedAt))
            .to_owned();
        manager.create_table(table).await?;
        // The setup page's "last delivery for this forge", and /deliveries?forge=….
        let index = Index::create()
            .name(FORGE_INDEX)
            .table(Deliveries::Table)
            .col(Deliveries::Forge)
            .col(Deliveries::Id)
            .to_owned();
        manager.create_index(index).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(FORGE_INDEX).table(Deliveries::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(RefusedDeliveries::Table).to_owned()).await
    }
}
