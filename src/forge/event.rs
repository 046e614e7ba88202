//! forgehand's own view of a webhook: the few facts it acts on, the same for every forge.

use super::IssueNumber;
use crate::config::RepoName;

/// A commit id cut to the seven characters people read; whole when it is shorter, or
/// when the seventh byte is not a character boundary (ids come from payloads).
pub fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// The repository an event happened in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// `owner/name`.
    pub full_name: RepoName,
    /// Where the executor clones from.
    pub clone_url: String,
}

/// The account that caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub login: String,
    /// The forge marks the account as a bot (GitHub `type: Bot`, or a `[bot]` login).
    pub is_bot: bool,
}

/// An issue or pull request, as the event saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub number: IssueNumber,
    pub title: String,
    /// Label names after the change the event reports.
    pub labels: Vec<String>,
    pub is_open: bool,
    pub is_pull_request: bool,
}

/// What happened to an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueChange {
    /// GitHub: this label was added.
    Labeled(String),
    /// GitHub: this label was removed.
    Unlabeled(String),
    /// Gitea/Forgejo: labels changed; only the new set is known.
    LabelsUpdated,
    /// Gitea/Forgejo: every label was removed.
    LabelsCleared,
    Closed,
    /// Opened, possibly with labels already on it.
    Opened,
    /// Anything else (opened, edited, ...).
    Other,
}

/// What a pull-request review asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewVerdict {
    Approved,
    ChangesRequested,
    Commented,
}

/// A webhook payload reduced to what forgehand acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgeEvent {
    Ping,
    Issue {
        action: String,
        change: IssueChange,
        repo: Repo,
        issue: Issue,
        sender: Actor,
    },
    Comment {
        action: String,
        comment_id: Option<u64>,
        repo: Repo,
        issue: Issue,
        body: String,
        sender: Actor,
    },
    Review {
        action: String,
        /// Identifies the review across replays: GitHub's review id, or for Gitea (which
        /// sends none) the pull request, head commit and a digest of the text.
        review_key: Option<String>,
        repo: Repo,
        pr_number: IssueNumber,
        pr_title: String,
        pr_open: bool,
        head_ref: String,
        /// The head branch lives in the repository itself, not in a fork.
        head_in_repo: bool,
        verdict: ReviewVerdict,
        body: String,
        sender: Actor,
    },
    /// A check, commit status or workflow run on a commit finished.
    Check {
        /// Identifies the check across replays: the kind and id the forge gave it
        /// (`check_suite:12`, `status:7`, ...).
        check_key: String,
        repo: Repo,
        /// The commit checked.
        head_sha: String,
        /// What people call the check (a check run's or workflow's name, a status context).
        name: String,
        /// How it ended, as the forge says: `failure`, `timed_out`, `error`, `success`, ...
        conclusion: String,
        sender: Actor,
    },
    /// An event forgehand never acts on (push, release, ...).
    Unsupported {
        event: String,
        action: Option<String>,
    },
}

impl ForgeEvent {
    /// The payload's `action`, if it has one.
    pub fn action(&self) -> Option<&str> {
        match self {
            ForgeEvent::Ping => None,
            ForgeEvent::Issue { action, .. }
            | ForgeEvent::Comment { action, .. }
            | ForgeEvent::Review { action, .. } => Some(action),
            // Check events that arrive here are all completed: the conclusion says more.
            ForgeEvent::Check { conclusion, .. } => Some(conclusion),
            ForgeEvent::Unsupported { action, .. } => action.as_deref(),
        }
    }

    /// What the delivery carries that a replay with a new delivery id still carries.
    pub fn event_key(&self) -> Option<String> {
        match self {
            ForgeEvent::Comment { action, comment_id: Some(id), .. } => {
                Some(format!("comment:{id}:{action}"))
            }
            ForgeEvent::Review { action, review_key: Some(key), .. } => {
                Some(format!("review:{key}:{action}"))
            }
            ForgeEvent::Check { check_key, conclusion, .. } => Some(format!("{check_key}:{conclusion}")),
            _ => None,
        }
    }

    /// The repository, for events that name one.
    pub fn repo(&self) -> Option<&Repo> {
        match self {
            ForgeEvent::Issue { repo, .. }
            | ForgeEvent::Comment { repo, .. }
            | ForgeEvent::Review { repo, .. }
            | ForgeEvent::Check { repo, .. } => Some(repo),
            ForgeEvent::Ping | ForgeEvent::Unsupported { .. } => None,
        }
    }

    /// The issue or pull-request number the event is about.
    pub fn number(&self) -> Option<IssueNumber> {
        match self {
            ForgeEvent::Issue { issue, .. } | ForgeEvent::Comment { issue, .. } => Some(issue.number),
            ForgeEvent::Review { pr_number, .. } => Some(*pr_number),
            ForgeEvent::Ping | ForgeEvent::Check { .. } | ForgeEvent::Unsupported { .. } => None,
        }
    }

    /// Who caused the event.
    pub fn sender(&self) -> Option<&Actor> {
        match self {
            ForgeEvent::Issue { sender, .. }
            | ForgeEvent::Comment { sender, .. }
            | ForgeEvent::Review { sender, .. }
            | ForgeEvent::Check { sender, .. } => Some(sender),
            ForgeEvent::Ping | ForgeEvent::Unsupported { .. } => None,
        }
    }

    /// The commit a check event is about; its pull request is found by it.
    pub fn head_sha(&self) -> Option<&str> {
        match self {
            ForgeEvent::Check { head_sha, .. } => Some(head_sha),
            _ => None,
        }
    }

    /// For label changes: whether the issue carries `label` afterwards.
    pub fn label_present_after(&self, label: &str) -> Option<bool> {
        match self {
            ForgeEvent::Issue { change, issue, .. } => match change {
                IssueChange::Labeled(_)
                | IssueChange::Unlabeled(_)
                | IssueChange::LabelsUpdated
                | IssueChange::Opened => Some(issue.labels.iter().any(|l| l == label)),
                IssueChange::LabelsCleared => Some(false),
                IssueChange::Closed | IssueChange::Other => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_shas_never_split_a_character() {
        assert_eq!(super::short_sha("9c2f4e1b7a3d"), "9c2f4e1");
        assert_eq!(super::short_sha("abc"), "abc");
        assert_eq!(super::short_sha("abcdefé1"), "abcdefé1");
    }
}
