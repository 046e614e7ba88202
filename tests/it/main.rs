//! The one integration test binary: every capability through the real router, on a real
//! SQLite file, and the real `forgehand` binary where processes matter.

mod fake_forge;
mod fake_forge_selftest;
mod harness;
mod model_server;

mod api;
mod attribution;
mod audit;
mod breakers;
mod browser;
mod budgets;
mod claim_plan;
mod command_agent;
mod corpus;
mod dashboard;
mod doctor;
mod executor;
mod faults;
mod fuzz_replay;
mod git_http;
mod github_app;
mod hardening;
mod identity;
mod intake;
mod notify;
mod openapi;
mod pg_server;
mod process;
mod profiles;
mod questions;
mod real_claude;
mod real_codex;
mod refusals;
mod retention;
mod sandbox;
mod scale_out;
mod security;
mod storage;
mod triggers;
mod verified;
mod wizard;
