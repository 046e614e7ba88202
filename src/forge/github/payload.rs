//! The webhook events only GitHub sends: `pull_request_review`.

use serde::Deserialize;

use crate::forge::OwnEvent;
use crate::forge::event::{ForgeEvent, ReviewVerdict};
use crate::forge::payload::{ReviewFacts, ReviewPayload, null_as_empty, read, when_acted_on};

#[derive(Deserialize)]
struct Review {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default, deserialize_with = "null_as_empty")]
    body: String,
    state: String,
}

/// Parses GitHub's own events; `None` for the others.
pub fn parse_own_event(event: &str, json: &[u8]) -> OwnEvent {
    (event == "pull_request_review").then(|| {
        when_acted_on(event, json, &["submitted"], || {
            read::<ReviewPayload<Review>>(event, json).map(review_event)
        })
    })
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
