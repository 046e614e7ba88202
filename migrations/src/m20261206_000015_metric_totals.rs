//! Figures `/metrics` reads without scanning history (issue 20).
//!
//! - `delivery_totals`: deliveries recorded, by outcome, counted by intake in the
//!   transaction that records each one. A counter must not go down when old deliveries
//!   are deleted, and counting ten million rows per scrape took seconds. Each count is
//!   split over a few `shard` rows (the delivery's id modulo 8) so that instances sharing
//!   PostgreSQL do not all wait on one row lock; readers add the shards up. Seeded from
//!   the deliveries already recorded.
//! - `tasks_questions_asked`, `tasks_checks_result`: partial indexes, so that the sum of
//!   questions asked and the pull requests by checks read only the tasks that asked one or
//!   whose checks were watched, not every task.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DeliveryTotals {
    Table,
    Outcome,
    Shard,
    N,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeliveryTotals::Table)
                    .col(string(DeliveryTotals::Outcome))
                    .col(integer(DeliveryTotals::Shard))
                    .col(big_integer(DeliveryTotals::N))
                    .primary_key(Index::create().col(DeliveryTotals::Outcome).col(DeliveryTotals::Shard))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO delivery_totals (outcome, shard, n) \
             SELECT outcome, 0, COUNT(*) FROM deliveries WHERE outcome <> 'pending' GROUP BY outcome",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX tasks_questions_asked ON tasks (questions_asked) WHERE questions_asked > 0",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX tasks_checks_result ON tasks (status, checks_result) WHERE checks_result IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX tasks_checks_result").await?;
        db.execute_unprepared("DROP INDEX tasks_questions_asked").await?;
        manager.drop_table(Table::drop().table(DeliveryTotals::Table).to_owned()).await
    }
}
