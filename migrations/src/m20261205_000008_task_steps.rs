//! `task_steps`: the phases of a task as they end — each setup and check command with its
//! result, duration and the tail of its output, and each agent run — for the task page,
//! the status comment's checklist and the checks counts. And `tasks.checks_result`: how the
//! checks of a task's pull request came out (`passed`, `fixed`, `failing`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TaskSteps {
    Table,
    Id,
    TaskId,
    Attempt,
    Phase,
    Round,
    Command,
    Passed,
    Outcome,
    DurationMs,
    Output,
    EndedAt,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    ChecksResult,
}

const TASK_INDEX: &str = "task_steps_task_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Table::create()
            .table(TaskSteps::Table)
            .col(big_pk_auto(TaskSteps::Id))
            .col(big_integer(TaskSteps::TaskId))
            .col(integer(TaskSteps::Attempt))
            .col(string(TaskSteps::Phase))
            .col(integer(TaskSteps::Round))
            .col(text_null(TaskSteps::Command))
            .col(boolean(TaskSteps::Passed))
            .col(text(TaskSteps::Outcome))
            .col(big_integer(TaskSteps::DurationMs))
            .col(text_null(TaskSteps::Output))
            .col(timestamp_with_time_zone(TaskSteps::EndedAt))
            .to_owned();
        manager.create_table(table).await?;
        let index =
            Index::create().name(TASK_INDEX).table(TaskSteps::Table).col(TaskSteps::TaskId).to_owned();
        manager.create_index(index).await?;
        let column =
            Table::alter().table(Tasks::Table).add_column(string_null(Tasks::ChecksResult)).to_owned();
        manager.alter_table(column).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let column = Table::alter().table(Tasks::Table).drop_column(Tasks::ChecksResult).to_owned();
        manager.alter_table(column).await?;
        manager.drop_table(Table::drop().table(TaskSteps::Table).to_owned()).await
    }
}
