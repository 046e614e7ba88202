//! One sea-orm entity per table; see `migrations/` for the schema itself.

pub mod breakers;
pub mod deliveries;
pub mod label_states;
pub mod refused_deliveries;
pub mod task_events;
pub mod task_status;
pub mod task_steps;
pub mod tasks;
pub mod transcript_chunks;
