//! Database schema for forgehand, as sea-orm migrations.
//!
//! Every statement here runs unchanged on SQLite and PostgreSQL, except where a migration
//! branches on the backend for what the two spell differently (triggers, in migration 17) or
//! for what only one of them has (`WITHOUT ROWID`, in migration 18).

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_initial;
mod m20261123_000002_executor;
mod m20261123_000003_dashboard;
mod m20261123_000004_transcripts;
mod m20261205_000005_refused_deliveries;
mod m20261205_000006_profiles;
mod m20261205_000007_questions;
mod m20261205_000008_task_steps;
mod m20261206_000009_feedback;
mod m20261206_000010_breakers;
mod m20261206_000011_notify_audit;
mod m20261206_000012_retention;
mod m20261206_000015_metric_totals;
mod m20261206_000016_delivery_indexes;
mod m20261207_000017_task_totals;
mod m20261207_000018_intake_pages;

/// Applies forgehand's migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_initial::Migration),
            Box::new(m20261123_000002_executor::Migration),
            Box::new(m20261123_000003_dashboard::Migration),
            Box::new(m20261123_000004_transcripts::Migration),
            Box::new(m20261205_000005_refused_deliveries::Migration),
            Box::new(m20261205_000006_profiles::Migration),
            Box::new(m20261205_000007_questions::Migration),
            Box::new(m20261205_000008_task_steps::Migration),
            Box::new(m20261206_000009_feedback::Migration),
            Box::new(m20261206_000010_breakers::Migration),
            Box::new(m20261206_000011_notify_audit::Migration),
            Box::new(m20261206_000012_retention::Migration),
            Box::new(m20261206_000015_metric_totals::Migration),
            Box::new(m20261206_000016_delivery_indexes::Migration),
            Box::new(m20261207_000017_task_totals::Migration),
            Box::new(m20261207_000018_intake_pages::Migration),
        ]
    }
}
