//! Questions: the agent may ask one, and the task waits in `needs_input` for a person's
//! answer. The task keeps the question, when it was asked, how many it asked, the answers
//! that arrived (JSON, `[{"by": login, "text": …}]`) and the question comment's id; a
//! waiting task is active, so the one-active-task-per-issue index now covers it too.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Question,
    QuestionCommentId,
    AskedAt,
    QuestionsAsked,
    Answers,
}

/// The index before this migration, and after: a new name, so that no connection's idea
/// of the old index survives the change.
const OLD_INDEX: &str = "tasks_one_active_per_issue";
const INDEX: &str = "tasks_one_active_or_waiting_per_issue";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        let columns = [
            text_null(Tasks::Question),
            big_integer_null(Tasks::QuestionCommentId),
            timestamp_with_time_zone_null(Tasks::AskedAt),
            integer(Tasks::QuestionsAsked).default(0).to_owned(),
            text_null(Tasks::Answers),
        ];
        for mut column in columns {
            manager
                .alter_table(Table::alter().table(Tasks::Table).add_column(&mut column).to_owned())
                .await?;
        }
        active_index(manager, OLD_INDEX, INDEX, "'queued', 'running', 'needs_input'").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        active_index(manager, INDEX, OLD_INDEX, "'queued', 'running'").await?;
        for column in
            [Tasks::Question, Tasks::QuestionCommentId, Tasks::AskedAt, Tasks::QuestionsAsked, Tasks::Answers]
        {
            manager.alter_table(Table::alter().table(Tasks::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}

/// Replaces the one-active-task-per-issue index `old` by `new`, over `statuses`.
async fn active_index(
    manager: &SchemaManager<'_>,
    old: &str,
    new: &str,
    statuses: &str,
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared(&format!(
        "CREATE UNIQUE INDEX {new} ON tasks (forge, repo, number) WHERE status IN ({statuses})"
    ))
    .await?;
    db.execute_unprepared(&format!("DROP INDEX {old}")).await?;
    Ok(())
}
