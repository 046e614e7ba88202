//! Retention: deliveries found by age without a scan, and finished tasks whose detail is
//! still stored found without reading every old task each time the cleanup runs.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    DetailRemovedAt,
}

const DELIVERIES_INDEX: &str = "deliveries_received_at";
const TASKS_INDEX: &str = "tasks_detail_kept";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut column = timestamp_with_time_zone_null(Tasks::DetailRemovedAt);
        manager.alter_table(Table::alter().table(Tasks::Table).add_column(&mut column).to_owned()).await?;
        let conn = manager.get_connection();
        conn.execute_unprepared(&format!("CREATE INDEX {DELIVERIES_INDEX} ON deliveries (received_at)"))
            .await?;
        // Partial: only finished tasks that still have detail, so the index stays small.
        conn.execute_unprepared(&format!(
            "CREATE INDEX {TASKS_INDEX} ON tasks (finished_at) \
             WHERE detail_removed_at IS NULL AND finished_at IS NOT NULL"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        conn.execute_unprepared(&format!("DROP INDEX {TASKS_INDEX}")).await?;
        conn.execute_unprepared(&format!("DROP INDEX {DELIVERIES_INDEX}")).await?;
        manager
            .alter_table(Table::alter().table(Tasks::Table).drop_column(Tasks::DetailRemovedAt).to_owned())
            .await
    }
}
