//! Everything that speaks a forge's language: payloads, signatures and our normalized events.

pub mod event;
pub mod payload;
pub mod signature;
