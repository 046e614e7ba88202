//! `[storage]`: how long forgehand keeps what it stores, in the database and in
//! `data_dir`, and how often it cleans up (see `executor::cleanup`). 0 keeps forever.

use serde::{Deserialize, Serialize};

/// `[storage]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Days accepted and refused deliveries are kept (never one that points at a task
    /// still active); 0 keeps them forever.
    pub delivery_days: u32,
    /// Days a finished task keeps its detail (timeline, steps, transcript, in the database
    /// and as a file); the task row stays. 0 keeps it forever.
    pub task_detail_days: u32,
    /// Days a repository's mirror may go unused before it is deleted (cloned again on next
    /// use); 0 keeps mirrors forever.
    pub mirror_days: u32,
    /// Megabytes the recycled checkouts of all repositories may take together; the least
    /// recently put aside go first. 0: no budget.
    pub spare_checkouts_mb: u64,
    /// Seconds between two cleanups (the first runs a minute after start); 0: never on
    /// its own (`forgehand cleanup` still works).
    pub cleanup_interval_secs: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            delivery_days: 30,
            task_detail_days: 90,
            mirror_days: 30,
            spare_checkouts_mb: 2048,
            cleanup_interval_secs: 3600,
        }
    }
}
