//! What tests/it/fake_forge/ needs from the test harness, for the executor benchmark:
//! the webhook secrets and a signed delivery.

use crate::payload::sign;

/// The secret of the fake forge's GitHub dialect (a benchmark value, not a credential).
pub const GITHUB_SECRET: &str = "github bench secret";
/// The secret of the fake forge's Gitea dialect.
pub const GITEA_SECRET: &str = "gitea bench secret";

/// A signed webhook delivery: body and headers.
pub struct Delivery {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("bench-exec-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Delivery {
    /// A GitHub delivery signed with [`GITHUB_SECRET`].
    pub fn github(event: &str, body: Vec<u8>) -> Delivery {
        let signature = format!("sha256={}", sign(GITHUB_SECRET.as_bytes(), &body));
        let headers = vec![
            ("content-type".into(), "application/json".into()),
            ("x-github-event".into(), event.into()),
            ("x-github-delivery".into(), new_id()),
            ("x-hub-signature-256".into(), signature),
        ];
        Delivery { body, headers }
    }

    /// A Gitea delivery signed with [`GITEA_SECRET`].
    pub fn gitea(event: &str, event_type: &str, body: Vec<u8>) -> Delivery {
        let signature = sign(GITEA_SECRET.as_bytes(), &body);
        let headers = vec![
            ("content-type".into(), "application/json".into()),
            ("x-gitea-event".into(), event.into()),
            ("x-gitea-event-type".into(), event_type.into()),
            ("x-gitea-delivery".into(), new_id()),
            ("x-gitea-signature".into(), signature),
        ];
        Delivery { body, headers }
    }
}
