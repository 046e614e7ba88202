//! The webhook events only Gitea and Forgejo send: one event per review verdict, and
//! `status` (a commit status set, by Actions or any CI).

use serde::Deserialize;

use crate::forge::OwnEvent;
use crate::forge::event::{ForgeEvent, ReviewVerdict};
use crate::forge::payload::{
    CheckFacts, PullPayload, RepoPayload, ReviewFacts, ReviewPayload, UserPayload, null_as_empty, read,
    when_acted_on,
};

#[derive(Deserialize)]
struct Review {
    #[serde(default, deserialize_with = "null_as_empty")]
    content: String,
}

/// A commit status: Gitea sends no action, only the state it was set to.
#[derive(Deserialize)]
struct StatusPayload {
    id: u64,
    sha: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    context: String,
    state: String,
    repository: RepoPayload,
    sender: UserPayload,
}

/// Parses Gitea's own events; `None` for the others.
pub fn parse_own_event(event: &str, json: &[u8]) -> OwnEvent {
    if event == "status" {
        return Some(read::<StatusPayload>(event, json).map(|status| {
            let facts = CheckFacts {
                key: format!("status:{}", status.id),
                head_sha: status.sha,
                name: status.context,
                conclusion: status.state,
            };
            facts.into_event(status.repository, status.sender)
        }));
    }
    let verdict = match event {
        "pull_request_approved" => ReviewVerdict::Approved,
        "pull_request_rejected" => ReviewVerdict::ChangesRequested,
        "pull_request_comment" => ReviewVerdict::Commented,
        _ => return None,
    };
    Some(when_acted_on(event, json, &["reviewed"], |payload: ReviewPayload<Review>| {
        review_event(payload, verdict)
    }))
}

fn review_event(mut payload: ReviewPayload<Review>, verdict: ReviewVerdict) -> ForgeEvent {
    // Gitea has no "submitted" action; "reviewed" is its equivalent.
    if payload.action == "reviewed" {
        payload.action = "submitted".to_owned();
    }
    payload.into_event(|review, pull| ReviewFacts {
        review_key: Some(review_key(pull, &review.content)),
        verdict,
        body: review.content,
    })
}

/// Gitea reviews carry no id: the same review on the same commit is the same event.
fn review_key(pull: &PullPayload, content: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = hex::encode(Sha256::digest(content.as_bytes()));
    format!("{}:{}:{}", pull.number, pull.head.sha, &digest[..16])
}
