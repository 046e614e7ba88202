//! The audit log: operator actions, append-only, hash-chained. Each entry stores the
//! SHA-256 of the previous entry's hash and its own fields ([`entry_hash`]), so editing or
//! deleting a past row breaks the chain at that row; `audit_head` holds the hash and count
//! of the last entry, so deleting the newest rows shows too. Appends are serialised by the
//! update of `audit_head`'s one row (a row lock on PostgreSQL, the writer lock on SQLite),
//! so instances appending at once still make one chain.

use chrono::{DateTime, DurationRound, Utc};
use sea_orm::{ConnectionTrait, DbErr, TransactionTrait, Value};
use sha2::{Digest, Sha256};

use super::queries::statement;
use super::{Db, DbError, clean};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An action about to be recorded. Never put a secret in any field: say "set" or
/// "changed" instead.
#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry<'a> {
    /// Who: `admin` (the dashboard's token), `cli:<user>`, or `anonymous` for a failed login.
    pub actor: &'a str,
    /// What, e.g. `login`, `login_failed`, `task_cancel`, `config_save`.
    pub action: &'a str,
    /// On what, e.g. `task 12`, `repo octo-org/hello-world`.
    pub target: &'a str,
    /// More, e.g. the configuration keys a save changed.
    pub detail: &'a str,
    /// The client address, when the action came over HTTP.
    pub peer: &'a str,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub peer: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor: Option<String>,
    /// Only entries with a smaller id (newest first).
    pub before: Option<i64>,
    pub limit: u64,
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainCheck {
    /// Every entry links to the one before and hashes to what it says; `entries` in all.
    Intact { entries: u64 },
    /// The first entry that does not check out (`id` 0: the head, past the last row).
    Broken { id: i64, reason: String },
}

/// The hash of an entry: SHA-256 over the JSON array of the previous hash and the entry's
/// fields, in this order, with the time as RFC 3339 in microseconds (UTC).
pub fn entry_hash(prev_hash: &str, at: DateTime<Utc>, e: &NewAuditEntry<'_>) -> String {
    let canonical = serde_json::json!([
        prev_hash,
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        e.actor,
        e.action,
        e.target,
        e.detail,
        e.peer
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

impl Db {
    /// Appends an entry to the audit log.
    pub async fn audit(&self, entry: NewAuditEntry<'_>) -> Result<(), DbError> {
        let txn = self.conn.begin().await?;
        append(&txn, &entry).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Entries matching `filter`, newest first.
    pub async fn audit_list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, DbError> {
        let mut sql = "SELECT * FROM audit_log WHERE 1 = 1".to_owned();
        let mut values: Vec<Value> = Vec::new();
        if let Some(action) = &filter.action {
            sql.push_str(" AND action = ?");
            values.push(action.clone().into());
        }
        if let Some(actor) = &filter.actor {
            sql.push_str(" AND actor = ?");
            values.push(actor.clone().into());
        }
        if let Some(before) = filter.before {
            sql.push_str(" AND id < ?");
            values.push(before.into());
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", filter.limit.max(1)));
        let rows = self.conn.query_all_raw(statement(self.conn.get_database_backend(), &sql, values)).await?;
        Ok(rows.iter().map(row_entry).collect::<Result<_, DbErr>>()?)
    }

    /// Re-checks the whole chain, oldest first, and the head against the last entry.
    pub async fn audit_verify(&self) -> Result<ChainCheck, DbError> {
        let backend = self.conn.get_database_backend();
        let (mut expected_prev, mut count, mut after) = (GENESIS.to_owned(), 0u64, 0i64);
        loop {
            let sql = "SELECT * FROM audit_log WHERE id > ? ORDER BY id LIMIT 1000";
            let rows = self.conn.query_all_raw(statement(backend, sql, vec![after.into()])).await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let entry = row_entry(row)?;
                if entry.prev_hash != expected_prev {
                    let reason = "its prev_hash is not the hash of the entry before it: an entry before it was deleted, or this one was edited".to_owned();
                    return Ok(ChainCheck::Broken { id: entry.id, reason });
                }
                let fields = NewAuditEntry {
                    actor: &entry.actor,
                    action: &entry.action,
                    target: &entry.target,
                    detail: &entry.detail,
                    peer: &entry.peer,
                };
                if entry_hash(&entry.prev_hash, entry.at, &fields) != entry.hash {
                    let reason = "its fields do not hash to its stored hash: it was edited".to_owned();
                    return Ok(ChainCheck::Broken { id: entry.id, reason });
                }
                expected_prev = entry.hash;
                after = entry.id;
                count += 1;
            }
        }
        let (entries, last_hash) = head(&self.conn).await?;
        if entries != count as i64 || last_hash != expected_prev {
            let reason = format!(
                "the head records {entries} entries ending in {last_hash}, the table has {count} ending in {expected_prev}: the newest entries were deleted or the head was edited"
            );
            return Ok(ChainCheck::Broken { id: 0, reason });
        }
        Ok(ChainCheck::Intact { entries: count })
    }
}

/// Appends `entry` on `db` (a transaction), chained to the last entry.
pub async fn append(db: &impl ConnectionTrait, entry: &NewAuditEntry<'_>) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    // First statement a write: it takes the lock that serialises appends before the head is read.
    let lock = "UPDATE audit_head SET entries = entries + 1 WHERE id = 1";
    db.execute_raw(statement(backend, lock, vec![])).await?;
    let (_, prev) = head(db).await?;
    let cleaned = |s: &str, max| clean(s, max);
    let (actor, action, target, detail, peer) = (
        cleaned(entry.actor, 200),
        cleaned(entry.action, 100),
        cleaned(entry.target, 500),
        cleaned(entry.detail, 4000),
        cleaned(entry.peer, 100),
    );
    let fields =
        NewAuditEntry { actor: &actor, action: &action, target: &target, detail: &detail, peer: &peer };
    let at = Utc::now().duration_trunc(chrono::Duration::microseconds(1)).unwrap_or_else(|_| Utc::now());
    let hash = entry_hash(&prev, at, &fields);
    let sql = "INSERT INTO audit_log (at, actor, action, target, detail, peer, prev_hash, hash) \
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
    let values: Vec<Value> = vec![
        at.into(),
        actor.clone().into(),
        action.clone().into(),
        target.clone().into(),
        detail.clone().into(),
        peer.clone().into(),
        prev.into(),
        hash.clone().into(),
    ];
    db.execute_raw(statement(backend, sql, values)).await?;
    let sql = "UPDATE audit_head SET last_hash = ? WHERE id = 1";
    db.execute_raw(statement(backend, sql, vec![hash.into()])).await?;
    Ok(())
}

async fn head(db: &impl ConnectionTrait) -> Result<(i64, String), DbErr> {
    let sql = "SELECT entries, last_hash FROM audit_head WHERE id = 1";
    let row = db
        .query_one_raw(statement(db.get_database_backend(), sql, vec![]))
        .await?
        .ok_or_else(|| DbErr::Custom("audit_head has no row; run forgehand migrate".into()))?;
    Ok((row.try_get("", "entries")?, row.try_get("", "last_hash")?))
}

fn row_entry(row: &sea_orm::QueryResult) -> Result<AuditEntry, DbErr> {
    Ok(AuditEntry {
        id: row.try_get("", "id")?,
        at: row.try_get("", "at")?,
        actor: row.try_get("", "actor")?,
        action: row.try_get("", "action")?,
        target: row.try_get("", "target")?,
        detail: row.try_get("", "detail")?,
        peer: row.try_get("", "peer")?,
        prev_hash: row.try_get("", "prev_hash")?,
        hash: row.try_get("", "hash")?,
    })
}
