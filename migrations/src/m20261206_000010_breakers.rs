//! Circuit breakers: one row per agent profile whose runs failed for a provider reason,
//! shared by every instance using the database; and which profile a task fell back from.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Breakers {
    Table,
    Profile,
    State,
    Failures,
    WindowStartedAt,
    OpenedAt,
    TrialAt,
    LastError,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    FallbackFrom,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let breakers = Table::create()
            .table(Breakers::Table)
            .col(string(Breakers::Profile).primary_key())
            .col(string(Breakers::State))
            .col(integer(Breakers::Failures))
            .col(timestamp_with_time_zone_null(Breakers::WindowStartedAt))
            .col(timestamp_with_time_zone_null(Breakers::OpenedAt))
            .col(timestamp_with_time_zone_null(Breakers::TrialAt))
            .col(string_null(Breakers::LastError))
            .col(big_integer(Breakers::Version))
            .col(timestamp_with_time_zone(Breakers::UpdatedAt))
            .to_owned();
        manager.create_table(breakers).await?;
        let column = string_null(Tasks::FallbackFrom);
        manager.alter_table(Table::alter().table(Tasks::Table).add_column(column).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let drop = Table::alter().table(Tasks::Table).drop_column(Tasks::FallbackFrom).to_owned();
        manager.alter_table(drop).await?;
        manager.drop_table(Table::drop().table(Breakers::Table).to_owned()).await
    }
}
