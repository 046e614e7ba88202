//! Feedback loops: the commit forgehand last pushed for a task (so that a failing check on
//! a pull request's head is known to be on forgehand's own push) and what a follow-up
//! answers (the review's id, or the head commit whose checks failed).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    PushedSha,
    FeedbackRef,
}

const INDEX: &str = "tasks_pushed_sha";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        for mut column in [string_null(Tasks::PushedSha), string_null(Tasks::FeedbackRef)] {
            manager
                .alter_table(Table::alter().table(Tasks::Table).add_column(&mut column).to_owned())
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX {INDEX} ON tasks (pushed_sha) WHERE pushed_sha IS NOT NULL"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(&format!("DROP INDEX {INDEX}")).await?;
        for column in [Tasks::PushedSha, Tasks::FeedbackRef] {
            manager.alter_table(Table::alter().table(Tasks::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
