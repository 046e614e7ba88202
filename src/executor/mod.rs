//! The executor: claims queued tasks, prepares a git workspace, runs the agent, pushes,
//! opens the pull request and reports on the issue.

pub mod agent;
pub mod prompt;
pub mod report;
pub mod workspace;
