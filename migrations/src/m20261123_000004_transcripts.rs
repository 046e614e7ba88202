//! Agent transcripts in the database, so that every instance's dashboard can show them.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TranscriptChunks {
    Table,
    TaskId,
    ByteOffset,
    Data,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Table::create()
            .table(TranscriptChunks::Table)
            .col(big_integer(TranscriptChunks::TaskId))
            .col(big_integer(TranscriptChunks::ByteOffset))
            .col(blob(TranscriptChunks::Data))
            .primary_key(Index::create().col(TranscriptChunks::TaskId).col(TranscriptChunks::ByteOffset))
            .foreign_key(
                ForeignKey::create()
                    .from(TranscriptChunks::Table, TranscriptChunks::TaskId)
                    .to(Tasks::Table, Tasks::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            )
            .to_owned();
        manager.create_table(table).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(TranscriptChunks::Table).to_owned()).await
    }
}
