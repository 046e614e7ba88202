//! Everything that speaks a forge's language: payloads, signatures, our normalized events,
//! and the REST clients.

pub mod client;
pub mod event;
pub mod gitea;
pub mod github;
pub mod payload;
mod rest;
pub mod signature;
