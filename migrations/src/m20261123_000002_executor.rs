//! What the executor needs on a task: its lease, its retry schedule, and where it reports.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    LeaseOwner,
    LeaseExpiresAt,
    NextAttemptAt,
    WaitReason,
    StatusCommentId,
    PrNumber,
    ResultText,
    PendingInstructions,
    PendingRequestedBy,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        let columns = [
            string_null(Tasks::LeaseOwner),
            timestamp_with_time_zone_null(Tasks::LeaseExpiresAt),
            timestamp_with_time_zone_null(Tasks::NextAttemptAt),
            text_null(Tasks::WaitReason),
            big_integer_null(Tasks::StatusCommentId),
            integer_null(Tasks::PrNumber),
            text_null(Tasks::ResultText),
            text_null(Tasks::PendingInstructions),
            string_null(Tasks::PendingRequestedBy),
        ];
        for column in columns {
            manager.alter_table(Table::alter().table(Tasks::Table).add_column(column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            Tasks::LeaseOwner,
            Tasks::LeaseExpiresAt,
            Tasks::NextAttemptAt,
            Tasks::WaitReason,
            Tasks::StatusCommentId,
            Tasks::PrNumber,
            Tasks::ResultText,
            Tasks::PendingInstructions,
            Tasks::PendingRequestedBy,
        ];
        for column in columns {
            manager.alter_table(Table::alter().table(Tasks::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
