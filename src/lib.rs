//! forgehand: a self-hosted daemon that turns labelled GitHub and Gitea/Forgejo issues
//! into pull requests written by the Claude Code CLI.
//!
//! Errors: `anyhow` inside startup and commands, a `thiserror` enum where a caller
//! branches on the kind (config, payloads, signatures), and an HTTP error type at the edge
//! whose messages are safe to send back.

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod executor;
pub mod failpoint;
pub mod footprint;
pub mod forge;
pub mod server;
pub mod telemetry;
pub mod token;
pub mod trigger;
