//! Deliveries, tasks, their events, and the trigger-label state of each issue.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    Forge,
    Repo,
    Number,
    Kind,
    Trigger,
    RequestedBy,
    Title,
    Instructions,
    CloneUrl,
    Status,
    Attempt,
    Branch,
    PrUrl,
    Error,
    CancelRequested,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
    CostUsd,
    Turns,
    AgentSessionId,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    Forge,
    DeliveryId,
    EventKey,
    Event,
    Action,
    Repo,
    Number,
    Sender,
    ReceivedAt,
    Outcome,
    Reason,
    TaskId,
}

#[derive(DeriveIden)]
enum TaskEvents {
    Table,
    Id,
    TaskId,
    At,
    Status,
    Message,
}

#[derive(DeriveIden)]
enum LabelStates {
    Table,
    Forge,
    Repo,
    Number,
    Present,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(tasks_table()).await?;
        manager.create_table(deliveries_table()).await?;
        manager.create_table(task_events_table()).await?;
        manager.create_table(label_states_table()).await?;
        for index in indexes() {
            manager.create_index(index).await?;
        }
        // One active (queued or running) task per issue or PR, enforced by the database so
        // that concurrent deliveries, and later several instances, cannot both start one.
        // Partial indexes read the same on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX tasks_one_active_per_issue ON tasks (forge, repo, number) \
                 WHERE status IN ('queued', 'running')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            LabelStates::Table.into_iden(),
            TaskEvents::Table.into_iden(),
            Deliveries::Table.into_iden(),
            Tasks::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

fn tasks_table() -> TableCreateStatement {
    Table::create()
        .table(Tasks::Table)
        .col(big_pk_auto(Tasks::Id))
        .col(string(Tasks::Forge))
        .col(string(Tasks::Repo))
        .col(big_integer(Tasks::Number))
        .col(string(Tasks::Kind))
        .col(string(Tasks::Trigger))
        .col(string(Tasks::RequestedBy))
        .col(text(Tasks::Title))
        .col(text(Tasks::Instructions))
        .col(text(Tasks::CloneUrl))
        .col(string(Tasks::Status))
        .col(integer(Tasks::Attempt).default(0))
        .col(string_null(Tasks::Branch))
        .col(text_null(Tasks::PrUrl))
        .col(text_null(Tasks::Error))
        .col(boolean(Tasks::CancelRequested).default(false))
        .col(timestamp_with_time_zone(Tasks::CreatedAt))
        .col(timestamp_with_time_zone(Tasks::UpdatedAt))
        .col(timestamp_with_time_zone_null(Tasks::StartedAt))
        .col(timestamp_with_time_zone_null(Tasks::FinishedAt))
        .col(double_null(Tasks::CostUsd))
        .col(integer_null(Tasks::Turns))
        .col(string_null(Tasks::AgentSessionId))
        .to_owned()
}

fn deliveries_table() -> TableCreateStatement {
    Table::create()
        .table(Deliveries::Table)
        .col(big_pk_auto(Deliveries::Id))
        .col(string(Deliveries::Forge))
        .col(string(Deliveries::DeliveryId))
        .col(string_null(Deliveries::EventKey))
        .col(string(Deliveries::Event))
        .col(string_null(Deliveries::Action))
        .col(string_null(Deliveries::Repo))
        .col(big_integer_null(Deliveries::Number))
        .col(string_null(Deliveries::Sender))
        .col(timestamp_with_time_zone(Deliveries::ReceivedAt))
        .col(string(Deliveries::Outcome))
        .col(text(Deliveries::Reason))
        .col(big_integer_null(Deliveries::TaskId))
        .foreign_key(
            ForeignKey::create()
                .from(Deliveries::Table, Deliveries::TaskId)
                .to(Tasks::Table, Tasks::Id)
                .on_delete(ForeignKeyAction::SetNull),
        )
        .to_owned()
}

fn task_events_table() -> TableCreateStatement {
    Table::create()
        .table(TaskEvents::Table)
        .col(big_pk_auto(TaskEvents::Id))
        .col(big_integer(TaskEvents::TaskId))
        .col(timestamp_with_time_zone(TaskEvents::At))
        .col(string(TaskEvents::Status))
        .col(text(TaskEvents::Message))
        .foreign_key(
            ForeignKey::create()
                .from(TaskEvents::Table, TaskEvents::TaskId)
                .to(Tasks::Table, Tasks::Id)
                .on_delete(ForeignKeyAction::Cascade),
        )
        .to_owned()
}

fn label_states_table() -> TableCreateStatement {
    Table::create()
        .table(LabelStates::Table)
        .col(string(LabelStates::Forge))
        .col(string(LabelStates::Repo))
        .col(big_integer(LabelStates::Number))
        .col(boolean(LabelStates::Present))
        .col(timestamp_with_time_zone(LabelStates::UpdatedAt))
        .primary_key(Index::create().col(LabelStates::Forge).col(LabelStates::Repo).col(LabelStates::Number))
        .to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("deliveries_forge_delivery_id")
            .table(Deliveries::Table)
            .col(Deliveries::Forge)
            .col(Deliveries::DeliveryId)
            .unique()
            .to_owned(),
        // A replayed Gitea delivery gets a new id; the comment or review it carries does not.
        Index::create()
            .name("deliveries_forge_event_key")
            .table(Deliveries::Table)
            .col(Deliveries::Forge)
            .col(Deliveries::EventKey)
            .unique()
            .to_owned(),
        Index::create()
            .name("deliveries_task_id")
            .table(Deliveries::Table)
            .col(Deliveries::TaskId)
            .to_owned(),
        Index::create()
            .name("tasks_status_id")
            .table(Tasks::Table)
            .col(Tasks::Status)
            .col(Tasks::Id)
            .to_owned(),
        Index::create().name("tasks_repo_id").table(Tasks::Table).col(Tasks::Repo).col(Tasks::Id).to_owned(),
        Index::create()
            .name("tasks_issue")
            .table(Tasks::Table)
            .col(Tasks::Forge)
            .col(Tasks::Repo)
            .col(Tasks::Number)
            .to_owned(),
        Index::create()
            .name("task_events_task_id")
            .table(TaskEvents::Table)
            .col(TaskEvents::TaskId)
            .col(TaskEvents::Id)
            .to_owned(),
    ]
}
