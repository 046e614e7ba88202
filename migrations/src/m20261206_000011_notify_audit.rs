//! Notifications and the audit log (issue 19).
//!
//! - `notify_events`: the outbox. A row is written in the same transaction as the task
//!   change it tells about; `fanned_out` turns true once a sender made its deliveries.
//! - `notify_deliveries`: one row per event and sink, claimed with a lease by the sender
//!   that sends it (several instances on PostgreSQL never send the same row at once),
//!   retried with backoff, `sent` or given up (`failed`) in the end.
//! - `audit_log`: operator actions, each carrying the SHA-256 of the previous entry;
//!   `audit_head` (one row) is the lock appends take and the hash of the last entry.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum NotifyEvents {
    Table,
    Id,
    Kind,
    TaskId,
    Repo,
    Payload,
    FannedOut,
    CreatedAt,
}

#[derive(DeriveIden)]
enum NotifyDeliveries {
    Table,
    Id,
    EventId,
    Sink,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseOwner,
    LeaseExpiresAt,
    LastError,
    SentAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    Actor,
    Action,
    Target,
    Detail,
    Peer,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditHead {
    Table,
    Id,
    Entries,
    LastHash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let events = Table::create()
            .table(NotifyEvents::Table)
            .col(big_pk_auto(NotifyEvents::Id))
            .col(string(NotifyEvents::Kind))
            .col(big_integer_null(NotifyEvents::TaskId))
            .col(string_null(NotifyEvents::Repo))
            .col(text(NotifyEvents::Payload))
            .col(boolean(NotifyEvents::FannedOut))
            .col(timestamp_with_time_zone(NotifyEvents::CreatedAt))
            .to_owned();
        manager.create_table(events).await?;
        let pending = Index::create()
            .name("notify_events_fanned_out")
            .table(NotifyEvents::Table)
            .col(NotifyEvents::FannedOut)
            .to_owned();
        manager.create_index(pending).await?;

        let deliveries = Table::create()
            .table(NotifyDeliveries::Table)
            .col(big_pk_auto(NotifyDeliveries::Id))
            .col(big_integer(NotifyDeliveries::EventId))
            .col(string(NotifyDeliveries::Sink))
            .col(string(NotifyDeliveries::Status))
            .col(integer(NotifyDeliveries::Attempts))
            .col(timestamp_with_time_zone(NotifyDeliveries::NextAttemptAt))
            .col(string_null(NotifyDeliveries::LeaseOwner))
            .col(timestamp_with_time_zone_null(NotifyDeliveries::LeaseExpiresAt))
            .col(text_null(NotifyDeliveries::LastError))
            .col(timestamp_with_time_zone_null(NotifyDeliveries::SentAt))
            .col(timestamp_with_time_zone(NotifyDeliveries::CreatedAt))
            .to_owned();
        manager.create_table(deliveries).await?;
        let one_per_sink = Index::create()
            .name("notify_deliveries_event_sink")
            .table(NotifyDeliveries::Table)
            .col(NotifyDeliveries::EventId)
            .col(NotifyDeliveries::Sink)
            .unique()
            .to_owned();
        manager.create_index(one_per_sink).await?;
        let due = Index::create()
            .name("notify_deliveries_status_due")
            .table(NotifyDeliveries::Table)
            .col(NotifyDeliveries::Status)
            .col(NotifyDeliveries::NextAttemptAt)
            .to_owned();
        manager.create_index(due).await?;

        let audit = Table::create()
            .table(AuditLog::Table)
            .col(big_pk_auto(AuditLog::Id))
            .col(timestamp_with_time_zone(AuditLog::At))
            .col(string(AuditLog::Actor))
            .col(string(AuditLog::Action))
            .col(string(AuditLog::Target))
            .col(text(AuditLog::Detail))
            .col(string(AuditLog::Peer))
            .col(string(AuditLog::PrevHash))
            .col(string(AuditLog::Hash))
            .to_owned();
        manager.create_table(audit).await?;
        let head = Table::create()
            .table(AuditHead::Table)
            .col(integer(AuditHead::Id).primary_key())
            .col(big_integer(AuditHead::Entries))
            .col(string(AuditHead::LastHash))
            .to_owned();
        manager.create_table(head).await?;
        let genesis = Query::insert()
            .into_table(AuditHead::Table)
            .columns([AuditHead::Id, AuditHead::Entries, AuditHead::LastHash])
            .values_panic([1.into(), 0i64.into(), "0".repeat(64).into()])
            .to_owned();
        manager.exec_stmt(genesis).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditHead::Table.into_iden(),
            AuditLog::Table.into_iden(),
            NotifyDeliveries::Table.into_iden(),
            NotifyEvents::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
