//! The one integration test binary: every capability through the real router, on a real
//! SQLite file, and the real `forgehand` binary where processes matter.

mod fake_forge;
mod fake_forge_selftest;
mod harness;

mod api;
mod executor;
mod hardening;
mod intake;
mod process;
mod storage;
mod triggers;
