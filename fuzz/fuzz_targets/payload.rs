//! Payload parsing: any bytes under any event name give an event or an error, never a
//! panic or a stack overflow.
#![no_main]

use forgehand::config::ForgeKind;
use forgehand::forge::payload::parse;
use libfuzzer_sys::fuzz_target;

const EVENTS: [&str; 8] = [
    "issues",
    "issue_comment",
    "pull_request_review",
    "pull_request_approved",
    "pull_request_rejected",
    "pull_request_comment",
    "ping",
    "star",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else { return };
    let kind = if selector & 1 == 0 { ForgeKind::Github } else { ForgeKind::Gitea };
    let event = EVENTS[usize::from(selector >> 1) % EVENTS.len()];
    if let Err(err) = parse(kind, event, json) {
        assert!(!err.to_string().is_empty());
    }
});
