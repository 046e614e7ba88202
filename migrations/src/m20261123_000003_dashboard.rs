//! Indexes the dashboard needs to stay fast with a million tasks: today's and this week's
//! figures read a covering index, and deliveries are filtered by outcome.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Status,
    FinishedAt,
    CostUsd,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    Outcome,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                // Covering: the figures count and sum without reading a row.
                Index::create()
                    .name("tasks_status_finished")
                    .table(Tasks::Table)
                    .col(Tasks::Status)
                    .col(Tasks::FinishedAt)
                    .col(Tasks::CostUsd)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deliveries_outcome_id")
                    .table(Deliveries::Table)
                    .col(Deliveries::Outcome)
                    .col(Deliveries::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("deliveries_outcome_id").table(Deliveries::Table).to_owned())
            .await?;
        manager.drop_index(Index::drop().name("tasks_status_finished").table(Tasks::Table).to_owned()).await
    }
}
