//! Trigger decisions: any parsable event, in any issue context, gives a decision without
//! panicking; a task is only ever created for a named repository.
#![no_main]

use std::sync::OnceLock;

use forgehand::config::{ForgeKind, ForgeSettings, Settings, WebhookSecrets};
use forgehand::forge::payload::parse;
use forgehand::trigger::{Decision, IssueContext, decide};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

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
    }
}

const EVENTS: [&str; 6] =
    ["issues", "issue_comment", "pull_request_review", "pull_request_rejected", "pull_request_approved", "ping"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else { return };
    let kind = if selector & 1 == 0 { ForgeKind::Github } else { ForgeKind::Gitea };
    let event_name = EVENTS[usize::from(selector >> 1) % EVENTS.len()];
    let Ok(event) = parse(kind, event_name, json) else { return };
    let settings = settings();
    let contexts = [
        IssueContext::default(),
        IssueContext { active_task: Some(7), label_was_present: Some(true) },
        IssueContext { active_task: None, label_was_present: Some(false) },
    ];
    for ctx in &contexts {
        let decision = decide(&event, &forge(kind), &settings.trigger, &settings.git.branch_prefix, ctx);
        if let Decision::Create(request) = &decision {
            assert!(event.repo().is_some(), "a task without a repository: {request:?}");
        }
    }
});
