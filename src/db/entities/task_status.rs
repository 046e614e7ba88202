//! Where a task stands ([`TaskStatus`], the `tasks.status` column) and the one table of
//! legal moves between statuses ([`TRANSITIONS`]). Every statement that changes a task's
//! status takes its target and its `WHERE status IN (…)` guard from this table (see
//! `TaskEvent::target` and `TaskEvent::sources`), so a move the table does not list
//! cannot happen.
//!
//! # Adding a status
//! A waiting status such as `needs_input` (the agent asked a question; a person's answer
//! queues the task again) is a change to this file only:
//! 1. add the variant to [`TaskStatus`] with its `string_value` and to [`TaskStatus::ALL`];
//! 2. add the events that lead into and out of it to [`TaskEvent`] and [`TaskEvent::ALL`]
//!    (e.g. `Ask`: running → needs_input, `Answer`: needs_input → queued);
//! 3. add those rows to [`TRANSITIONS`] (and `Cancel` from the new status, if people may
//!    cancel a waiting task), and the same rows to the test's `expected`.
//!
//! Whether the new status counts as active (at most one per issue) is [`TaskStatus::ACTIVE`];
//! changing that set also needs a migration of the one-active-task-per-issue index (now
//! `tasks_one_active_or_waiting_per_issue`),
//! whose predicate is spelled out in `queries::ACTIVE_TASK_PREDICATE`.

use std::str::FromStr;

use sea_orm::entity::prelude::*;

/// Where a task stands; stored as its snake_case name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize, serde::Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "done")]
    Done,
    #[sea_orm(string_value = "no_changes")]
    NoChanges,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
    #[sea_orm(string_value = "rejected")]
    Rejected,
    /// The agent asked a question; a person's answer on the issue queues the task again.
    #[sea_orm(string_value = "needs_input")]
    NeedsInput,
    /// The question went unanswered for `executor.question_timeout_hours`.
    #[sea_orm(string_value = "expired")]
    Expired,
}

/// Something that happens to a task and may change its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskEvent {
    /// An executor takes the task (and its lease).
    Claim,
    /// The run ended for good.
    Finish(Ending),
    /// A transient failure: back to the queue until a due time; the attempt counts.
    Retry,
    /// The daemon shuts down: back to the queue, the attempt given back.
    Release,
    /// The lease expired (its executor is gone) and attempts are left.
    Expire,
    /// A cancel that takes effect at once (a running task is asked to stop instead, and
    /// ends with `Finish(Ending::Cancelled)`).
    Cancel,
    /// The agent asked a question: the run ends and the task waits for an answer, holding
    /// no executor slot.
    Ask,
    /// A person answered: back to the queue, to resume the agent's session.
    Answer,
    /// Nobody answered in time.
    Unanswered,
}

/// How a run ended for good: the statuses [`TaskEvent::Finish`] leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ending {
    Done,
    NoChanges,
    Failed,
    Rejected,
    Cancelled,
}

/// The legal transitions, `(from, event, to)`; nothing else is.
pub const TRANSITIONS: &[(TaskStatus, TaskEvent, TaskStatus)] = {
    use Ending as E;
    use TaskEvent::*;
    use TaskStatus::*;
    &[
        (Queued, Claim, Running),
        (Queued, Cancel, Cancelled),
        (Running, Finish(E::Done), Done),
        (Running, Finish(E::NoChanges), NoChanges),
        (Running, Finish(E::Failed), Failed),
        (Running, Finish(E::Rejected), Rejected),
        (Running, Finish(E::Cancelled), Cancelled),
        (Running, Retry, Queued),
        (Running, Release, Queued),
        (Running, Expire, Queued),
        (Running, Ask, NeedsInput),
        (NeedsInput, Answer, Queued),
        (NeedsInput, Unanswered, Expired),
        (NeedsInput, Cancel, Cancelled),
    ]
};

/// A move [`TRANSITIONS`] does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} task cannot take the event {event:?}")]
pub struct IllegalTransition {
    pub from: TaskStatus,
    pub event: TaskEvent,
}

impl TaskStatus {
    /// Statuses of a task that is still to run, running or waiting for an answer: at most
    /// one per issue.
    pub const ACTIVE: [TaskStatus; 3] = [TaskStatus::Queued, TaskStatus::Running, TaskStatus::NeedsInput];
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 9] = [
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::NeedsInput,
        TaskStatus::Done,
        TaskStatus::NoChanges,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::Rejected,
        TaskStatus::Expired,
    ];

    /// The name stored in the database and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Done => "done",
            TaskStatus::NoChanges => "no_changes",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Rejected => "rejected",
            TaskStatus::NeedsInput => "needs_input",
            TaskStatus::Expired => "expired",
        }
    }

    /// Whether the task is still to run, running or waiting for an answer.
    pub fn is_active(self) -> bool {
        TaskStatus::ACTIVE.contains(&self)
    }

    /// How a run ends in this status, if one can ([`TaskEvent::Finish`] leads here).
    pub fn ending(self) -> Option<Ending> {
        TaskEvent::ALL.into_iter().find_map(|event| match event {
            TaskEvent::Finish(ending) if event.target() == self => Some(ending),
            _ => None,
        })
    }

    /// The status after `event`, if [`TRANSITIONS`] allows it.
    pub fn apply(self, event: TaskEvent) -> Result<TaskStatus, IllegalTransition> {
        TRANSITIONS
            .iter()
            .find(|(from, on, _)| *from == self && *on == event)
            .map(|(_, _, to)| *to)
            .ok_or(IllegalTransition { from: self, event })
    }
}

impl TaskEvent {
    /// Every event.
    pub const ALL: [TaskEvent; 13] = [
        TaskEvent::Claim,
        TaskEvent::Finish(Ending::Done),
        TaskEvent::Finish(Ending::NoChanges),
        TaskEvent::Finish(Ending::Failed),
        TaskEvent::Finish(Ending::Rejected),
        TaskEvent::Finish(Ending::Cancelled),
        TaskEvent::Retry,
        TaskEvent::Release,
        TaskEvent::Expire,
        TaskEvent::Cancel,
        TaskEvent::Ask,
        TaskEvent::Answer,
        TaskEvent::Unanswered,
    ];

    /// The statuses this event may happen in: a status-changing statement's guard.
    pub fn sources(self) -> impl Iterator<Item = TaskStatus> {
        TRANSITIONS.iter().filter(move |(_, on, _)| *on == self).map(|(from, _, _)| *from)
    }

    /// The status this event leads to (the table gives each event one target).
    pub fn target(self) -> TaskStatus {
        TRANSITIONS
            .iter()
            .find(|(_, on, _)| *on == self)
            .map(|(_, _, to)| *to)
            .expect("every event has a row in TRANSITIONS (checked by a test)")
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        TaskStatus::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| {
            let names: Vec<_> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown status {s:?}; use one of {}", names.join(", "))
        })
    }
}

/// Compares with the stored name, as people and tests write it.
impl PartialEq<str> for TaskStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for TaskStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lifecycle, written out independently of [`TRANSITIONS`].
    fn expected(from: TaskStatus, event: TaskEvent) -> Option<TaskStatus> {
        use TaskStatus::*;
        match (from, event) {
            (Queued, TaskEvent::Claim) => Some(Running),
            (Queued, TaskEvent::Cancel) => Some(Cancelled),
            (Running, TaskEvent::Finish(ending)) => Some(match ending {
                Ending::Done => Done,
                Ending::NoChanges => NoChanges,
                Ending::Failed => Failed,
                Ending::Rejected => Rejected,
                Ending::Cancelled => Cancelled,
            }),
            (Running, TaskEvent::Retry | TaskEvent::Release | TaskEvent::Expire) => Some(Queued),
            (Running, TaskEvent::Ask) => Some(NeedsInput),
            (NeedsInput, TaskEvent::Answer) => Some(Queued),
            (NeedsInput, TaskEvent::Unanswered) => Some(Expired),
            (NeedsInput, TaskEvent::Cancel) => Some(Cancelled),
            _ => None,
        }
    }

    #[test]
    fn every_status_and_event_pair_follows_the_lifecycle() {
        for from in TaskStatus::ALL {
            for event in TaskEvent::ALL {
                let got = from.apply(event);
                assert_eq!(got.ok(), expected(from, event), "{from} on {event:?}");
                if let Err(illegal) = got {
                    assert_eq!(illegal, IllegalTransition { from, event });
                }
            }
        }
    }

    #[test]
    fn every_event_has_one_target_and_ended_tasks_take_no_event() {
        for event in TaskEvent::ALL {
            let targets: Vec<_> = event.sources().map(|from| from.apply(event).unwrap()).collect();
            assert!(!targets.is_empty(), "{event:?} is never legal");
            assert!(targets.iter().all(|to| *to == event.target()), "{event:?}: {targets:?}");
        }
        for from in TaskStatus::ALL.into_iter().filter(|s| !s.is_active()) {
            assert!(TaskEvent::ALL.iter().all(|e| from.apply(*e).is_err()), "{from} is not final");
        }
        let rows: std::collections::HashSet<_> =
            TRANSITIONS.iter().map(|(from, on, _)| (*from, *on)).collect();
        assert_eq!(rows.len(), TRANSITIONS.len(), "a (status, event) pair is listed twice");
    }

    #[test]
    fn every_status_round_trips_through_its_stored_name() {
        for status in TaskStatus::ALL {
            assert_eq!(status.as_str().parse::<TaskStatus>(), Ok(status));
            assert_eq!(sea_orm::ActiveEnum::to_value(&status), status.as_str());
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(<TaskStatus as sea_orm::Iterable>::iter().count(), TaskStatus::ALL.len());
    }
}
