//! Agent profiles and the fair queue: which profile (and model) a task runs with, its
//! priority, and holds on the queue.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    AgentProfile,
    AgentSource,
    AgentModel,
    Priority,
}

#[derive(DeriveIden)]
enum QueueHolds {
    Table,
    Scope,
    HeldBy,
    HeldAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        let columns = [
            string_null(Tasks::AgentProfile),
            string_null(Tasks::AgentSource),
            string_null(Tasks::AgentModel),
            integer(Tasks::Priority).default(0).to_owned(),
        ];
        for column in columns {
            manager.alter_table(Table::alter().table(Tasks::Table).add_column(column).to_owned()).await?;
        }
        let holds = Table::create()
            .table(QueueHolds::Table)
            .col(string(QueueHolds::Scope).primary_key())
            .col(string(QueueHolds::HeldBy))
            .col(timestamp_with_time_zone(QueueHolds::HeldAt))
            .to_owned();
        manager.create_table(holds).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(QueueHolds::Table).to_owned()).await?;
        for column in [Tasks::AgentProfile, Tasks::AgentSource, Tasks::AgentModel, Tasks::Priority] {
            manager.alter_table(Table::alter().table(Tasks::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
