//! The properties the fuzz targets check, shared with the replay of `fuzz/seeds/` in the
//! test suite (`tests/it/fuzz_replay.rs`), which runs them without cargo-fuzz.
// Each fuzz target uses one of these.
#![allow(dead_code)]

use std::sync::OnceLock;

use forgehand::config::{ForgeKind, ForgeSettings, Settings, WebhookSecrets};
use forgehand::executor::workspace::branch_name;
use forgehand::forge::payload::parse;
use forgehand::forge::signature::{sign, verify};
use forgehand::trigger::{Decision, IssueContext, decide, parse_command};
use secrecy::SecretString;

/// Branch names: any issue title gives a valid git reference under the prefix.
pub fn branch(number: u32, title: &str) {
    let branch = branch_name("forgehand/", number.into(), title);
    assert!(branch.starts_with("forgehand/issue-"), "{branch:?}");
    assert!(git2::Reference::is_valid_name(&format!("refs/heads/{branch}")), "{branch:?} is not a valid ref");
    assert!(branch.len() <= 255, "{} bytes", branch.len());
}

/// Command parsing: instructions come back trimmed, only for comments that start with the
/// command as a whole word.
pub fn command(body: &str) {
    if let Some(instructions) = parse_command(body, "/forgehand") {
        assert_eq!(instructions, instructions.trim());
        assert!(body.trim_start().starts_with("/forgehand"));
        assert!(body.len() >= instructions.len() + "/forgehand".len());
    }
}

const PAYLOAD_EVENTS: [&str; 8] = [
    "issues",
    "issue_comment",
    "pull_request_review",
    "pull_request_approved",
    "pull_request_rejected",
    "pull_request_comment",
    "ping",
    "star",
];

/// Payload parsing: any bytes under any event name give an event or an error, never a
/// panic or a stack overflow. The first byte picks the forge and the event.
pub fn payload(data: &[u8]) {
    let Some((&selector, json)) = data.split_first() else { return };
    let kind = if selector & 1 == 0 { ForgeKind::Github } else { ForgeKind::Gitea };
    let event = PAYLOAD_EVENTS[usize::from(selector >> 1) % PAYLOAD_EVENTS.len()];
    if let Err(err) = parse(kind, event, json) {
        assert!(!err.to_string().is_empty());
    }
}

/// Signature verification: never panics, and a body signed with a secret verifies. The
/// first byte says where the secret ends.
pub fn signature(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else { return };
    let split = usize::from(split).min(rest.len());
    let (secret, body) = rest.split_at(split);
    let secret = String::from_utf8_lossy(secret).into_owned();
    let secrets = [SecretString::from(secret.clone())];
    // Arbitrary text as the signature header.
    let _ = verify(&secrets, body, &String::from_utf8_lossy(body));
    let good = sign(secret.as_bytes(), body);
    assert!(verify(&secrets, body, &good).is_ok());
    assert!(verify(&secrets, body, &format!("sha256={good}")).is_ok());
    if !body.is_empty() {
        assert!(verify(&secrets, &body[1..], &good).is_err(), "a signature verified another body");
    }
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings::load_with_env(None, Default::default()).expect("the defaults load"))
}

fn forge(kind: ForgeKind) -> ForgeSettings {
    ForgeSettings {
        name: "fuzz".into(),
        kind,
        api_url: "https://forge.invalid/api".into(),
        token: SecretString::from(String::new()),
        webhook_secret: WebhookSecrets(vec![SecretString::from("secret".to_owned())]),
        bot_login: "forgehand-bot".into(),
        app_id: None,
        private_key: SecretString::from(String::new()),
    }
}

const TRIGGER_EVENTS: [&str; 10] = [
    "issues",
    "issue_comment",
    "pull_request_review",
    "pull_request_rejected",
    "pull_request_approved",
    "ping",
    "check_run",
    "check_suite",
    "workflow_run",
    "status",
];

/// Trigger decisions: any parsable event, in any issue context, gives a decision without
/// panicking; a task is only ever created for a named repository.
pub fn trigger(data: &[u8]) {
    let Some((&selector, json)) = data.split_first() else { return };
    let kind = if selector & 1 == 0 { ForgeKind::Github } else { ForgeKind::Gitea };
    let event_name = TRIGGER_EVENTS[usize::from(selector >> 1) % TRIGGER_EVENTS.len()];
    let Ok(event) = parse(kind, event_name, json) else { return };
    let settings = settings();
    let contexts = [
        IssueContext::default(),
        IssueContext {
            active_task: Some(7),
            label_was_present: Some(true),
            awaiting_answer: false,
            pushed: None,
        },
        IssueContext {
            active_task: None,
            label_was_present: Some(false),
            awaiting_answer: false,
            pushed: None,
        },
    ];
    let rules = forgehand::trigger::Rules { branch_prefix: &settings.git.branch_prefix, ci: &settings.ci };
    for ctx in &contexts {
        let decision = decide(&event, &forge(kind), &settings.trigger, &rules, ctx);
        if let Decision::Create(request) = &decision {
            assert!(event.repo().is_some(), "a task without a repository: {request:?}");
        }
    }
}
