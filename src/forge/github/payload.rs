//! The webhook events only GitHub sends: `pull_request_review`, `check_suite`, `check_run`.

use serde::Deserialize;

use crate::forge::OwnEvent;
use crate::forge::event::{ForgeEvent, ReviewVerdict};
use crate::forge::payload::{
    CheckFacts, RepoPayload, ReviewFacts, ReviewPayload, UserPayload, acted_by_field, null_as_empty,
    when_acted_on,
};

#[derive(Deserialize)]
struct Review {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default, deserialize_with = "null_as_empty")]
    body: String,
    state: String,
}

/// A check suite (one app's checks on a commit) or a check run (one check).
#[derive(Deserialize)]
struct Check {
    id: u64,
    head_sha: String,
    /// Check runs have a name; a suite is named by its app.
    #[serde(default, deserialize_with = "null_as_empty")]
    name: String,
    #[serde(default)]
    app: Option<App>,
    #[serde(default, deserialize_with = "null_as_empty")]
    conclusion: String,
}

#[derive(Deserialize)]
struct App {
    #[serde(default, deserialize_with = "null_as_empty")]
    name: String,
}

#[derive(Deserialize)]
struct CheckPayload {
    action: String,
    #[serde(alias = "check_run")]
    check_suite: Check,
    repository: RepoPayload,
    sender: UserPayload,
}

/// Parses GitHub's own events; `None` for the others.
pub fn parse_own_event(event: &str, json: &[u8]) -> OwnEvent {
    match event {
        "pull_request_review" => Some(when_acted_on(event, json, &["submitted"], review_event)),
        "check_suite" | "check_run" => {
            Some(when_acted_on(event, json, &["completed"], |payload| check_event(event, payload)))
        }
        _ => None,
    }
}

acted_by_field!(CheckPayload);

fn check_event(event: &str, payload: CheckPayload) -> ForgeEvent {
    let check = payload.check_suite;
    let name = match check.app {
        Some(app) if check.name.is_empty() => app.name,
        _ => check.name,
    };
    let facts = CheckFacts {
        key: format!("{event}:{}", check.id),
        head_sha: check.head_sha,
        name,
        conclusion: check.conclusion,
    };
    facts.into_event(payload.repository, payload.sender)
}

fn review_event(payload: ReviewPayload<Review>) -> ForgeEvent {
    payload.into_event(|review, _| {
        let verdict = match review.state.to_ascii_lowercase().as_str() {
            "approved" => ReviewVerdict::Approved,
            "changes_requested" => ReviewVerdict::ChangesRequested,
            _ => ReviewVerdict::Commented,
        };
        ReviewFacts { review_key: review.id.map(|id| id.to_string()), verdict, body: review.body }
    })
}
