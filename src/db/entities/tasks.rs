//! `tasks`: one unit of work on an issue or pull request.

use sea_orm::entity::prelude::*;
use serde::Serialize;

use crate::config::RepoName;
use crate::forge::IssueNumber;

pub use super::task_status::TaskStatus;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub forge: String,
    pub repo: String,
    pub number: i64,
    pub kind: String,
    pub trigger: String,
    pub requested_by: String,
    pub title: String,
    pub instructions: String,
    pub clone_url: String,
    pub status: TaskStatus,
    pub attempt: i32,
    pub branch: Option<String>,
    pub pr_url: Option<String>,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub cost_usd: Option<f64>,
    pub turns: Option<i32>,
    pub agent_session_id: Option<String>,
    /// The executor instance running the task, and until when its claim holds.
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTimeUtc>,
    /// A retry waits until then.
    pub next_attempt_at: Option<DateTimeUtc>,
    /// Why the task waits (rate limit, forge down), for people.
    pub wait_reason: Option<String>,
    /// The status comment forgehand edits through the task's life.
    pub status_comment_id: Option<i64>,
    pub pr_number: Option<i32>,
    /// The agent's final text.
    pub result_text: Option<String>,
    /// Comments and reviews that arrived while the task ran: the next run's instructions.
    pub pending_instructions: Option<String>,
    pub pending_requested_by: Option<String>,
    /// How the checks of the task's pull request came out: `passed` (first time),
    /// `fixed` (after fix rounds), `failing`; none when the repository has no checks.
    pub checks_result: Option<String>,
    /// The agent's last question, kept after it was answered.
    pub question: Option<String>,
    /// The comment that asked it on the issue.
    pub question_comment_id: Option<i64>,
    /// When the task began to wait for an answer; `None` once nothing is awaited.
    pub asked_at: Option<DateTimeUtc>,
    /// How many questions the agent asked in this task.
    pub questions_asked: i32,
    /// The answers that arrived since the last question, as JSON (`[Answer]`).
    pub answers: Option<String>,
    /// The agent profile the task was routed to (`None`: `default`, or the repository's
    /// choice once its file is read), and the model its last run used.
    pub agent_profile: Option<String>,
    /// Who chose `agent_profile`: `request` (comment, label) or `repository`.
    pub agent_source: Option<String>,
    pub agent_model: Option<String>,
    /// Higher runs first; 0 unless a label or `p=N` says otherwise.
    pub priority: i32,
    /// The commit forgehand last pushed for this task (a failing check on it is its own).
    pub pushed_sha: Option<String>,
    /// What a follow-up answers: a review's id (`review`), or the head commit whose checks
    /// failed (`checks`).
    pub feedback_ref: Option<String>,
    /// The profile the task was routed to when its breaker sent the task's current
    /// attempt to `agent_profile`, its fallback; `None` when it runs where it was routed.
    pub fallback_from: Option<String>,
    /// When the cleanup removed the task's timeline, steps and transcript (`[storage]`
    /// `task_detail_days`); the row itself stays.
    pub detail_removed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The repository, `owner/name`, as its forge named it (stored from a `RepoName`).
    pub fn repo_name(&self) -> RepoName {
        RepoName::from(self.repo.clone())
    }

    /// The issue or pull request the task works on, as forges number them.
    pub fn issue_number(&self) -> IssueNumber {
        // Stored from an `IssueNumber` (`TaskRequest::number`), so it always fits.
        IssueNumber::new(self.number as u32)
    }

    /// The pull request the task opened or pushed to, if it fits an issue number.
    pub fn pull_number(&self) -> Option<IssueNumber> {
        self.pr_number.and_then(|n| IssueNumber::try_from(i64::from(n)).ok())
    }
}

/// `tasks.pr_number` is a 32-bit column: a pull request's number as stored there.
pub fn pr_number_column(number: IssueNumber) -> i32 {
    number.get() as i32
}
