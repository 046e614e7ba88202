//! Deliveries index only what is looked up, since every index costs intake a B-tree page
//! in every commit (docs/benchmarks.md, issue 20): the comment or review a delivery carries
//! (`event_key`) and the task it created or joined (`task_id`) only where set — most
//! deliveries carry neither; lookups are by value (`event_key = ?`, `task_id = ?`), which
//! both databases match to the partial indexes, and the unique index still refuses a second
//! delivery of the same comment. No index on `received_at`: retention finds old deliveries
//! by id (`db::retention::old_deliveries`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const EVENT_KEY: &str = "deliveries_forge_event_key";
const TASK_ID: &str = "deliveries_task_id";
const RECEIVED_AT: &str = "deliveries_received_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        conn.execute_unprepared(&format!("DROP INDEX {EVENT_KEY}")).await?;
        conn.execute_unprepared(&format!(
            "CREATE UNIQUE INDEX {EVENT_KEY} ON deliveries (forge, event_key) WHERE event_key IS NOT NULL"
        ))
        .await?;
        conn.execute_unprepared(&format!("DROP INDEX {TASK_ID}")).await?;
        conn.execute_unprepared(&format!(
            "CREATE INDEX {TASK_ID} ON deliveries (task_id) WHERE task_id IS NOT NULL"
        ))
        .await?;
        conn.execute_unprepared(&format!("DROP INDEX {RECEIVED_AT}")).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        conn.execute_unprepared(&format!("DROP INDEX {EVENT_KEY}")).await?;
        conn.execute_unprepared(&format!("CREATE UNIQUE INDEX {EVENT_KEY} ON deliveries (forge, event_key)"))
            .await?;
        conn.execute_unprepared(&format!("DROP INDEX {TASK_ID}")).await?;
        conn.execute_unprepared(&format!("CREATE INDEX {TASK_ID} ON deliveries (task_id)")).await?;
        conn.execute_unprepared(&format!("CREATE INDEX {RECEIVED_AT} ON deliveries (received_at)")).await?;
        Ok(())
    }
}
