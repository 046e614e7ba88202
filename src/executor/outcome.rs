//! How a task's steps ended, as the pipeline reports it and `finish` records it.

use std::time::Duration;

use super::workspace::WorkspaceError;
use crate::db::DbError;
use crate::forge::IssueNumber;
use crate::forge::client::{ErrorKind, ForgeError};

/// How a task ended well.
#[derive(Debug, Clone, PartialEq)]
pub enum Success {
    /// A pull request was opened (or, for a follow-up, new commits pushed to it).
    Done {
        pr_number: IssueNumber,
        pr_url: String,
    },
    NoChanges {
        agent_text: String,
    },
}

/// How a task ended otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Worth another attempt, after `after` if the forge said.
    Transient {
        reason: String,
        after: Option<Duration>,
    },
    Permanent {
        reason: String,
        partial_branch: Option<String>,
    },
    /// The model provider failed the run (overloaded, 5xx, rate limit, credentials, no
    /// connection: `agent::provider_failure`): retried on the profile's fallback without
    /// counting the attempt, or like [`Failure::Transient`] where there is none.
    Provider {
        reason: String,
    },
    /// Not a failure: the repository's file chose agent `profile`; the task goes back to
    /// the queue on it, the attempt given back, so that the claim applies that profile's
    /// limit and breaker.
    Switch {
        profile: String,
        reason: String,
    },
    /// The person behind the trigger may not trigger, or the issue is not workable.
    Rejected {
        reason: String,
    },
    Cancelled {
        reason: String,
    },
    /// A stop from outside (shutdown, lease lost): `finish` decides what to do.
    Stopped,
    /// Not a failure: the run ended to wait for a person's answer (`needs_input`), to the
    /// agent's new `question`, or (`None`) still to the last one, as no answer that came
    /// may be used.
    Asked {
        question: Option<String>,
    },
}

impl From<ForgeError> for Failure {
    fn from(err: ForgeError) -> Failure {
        match err.kind {
            ErrorKind::Transient { retry_after } => {
                Failure::Transient { reason: err.to_string(), after: retry_after }
            }
            _ => Failure::Permanent { reason: err.to_string(), partial_branch: None },
        }
    }
}

impl From<WorkspaceError> for Failure {
    fn from(err: WorkspaceError) -> Failure {
        if err.is_transient() {
            Failure::Transient { reason: err.to_string(), after: None }
        } else {
            Failure::Permanent { reason: err.to_string(), partial_branch: None }
        }
    }
}

impl From<DbError> for Failure {
    fn from(err: DbError) -> Failure {
        Failure::Transient { reason: format!("the database failed: {err}"), after: None }
    }
}
