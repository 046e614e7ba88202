//! Gitea and Forgejo: everything forgehand knows about them is here or in this folder: their
//! webhook headers and own events, their REST API's differences from GitHub's, and what the
//! setup pages say about them.

mod client;
mod payload;

use std::sync::Arc;

use super::client::Forge;
use super::rest::{Api, DraftStyle, FindPull, LabelsBy};
use super::{Dialect, GitUser, SetupFacts, WebhookHeaders};
use crate::config::{ForgeKind, ForgeSettings, Permission};

/// Gitea's facts outside its REST API.
pub static DIALECT: Dialect = Dialect {
    name: "Gitea / Forgejo",
    // Gitea and Forgejo also send GitHub-style copies; their own headers come first.
    headers: WebhookHeaders {
        event: &["x-forgejo-event", "x-gitea-event", "x-github-event"],
        delivery: &["x-forgejo-delivery", "x-gitea-delivery", "x-github-delivery"],
        signature: &["x-forgejo-signature", "x-gitea-signature", "x-hub-signature-256"],
    },
    verify_signature: super::signature::verify,
    parse_own_event: payload::parse_own_event,
    git_user: GitUser::BotLoginOr("forgehand"),
    setup: SetupFacts {
        default_api_url: "",
        api_hint: "https://HOST/api/v1",
        hosted: None,
        token_advice: "A token with <code>write:repository</code> and <code>write:issue</code>; make the bot an admin of the repositories so it can read collaborators' permissions.",
        webhook_steps: "Repository → Settings → Webhooks → Add webhook → Gitea (or Forgejo). HTTP method POST; under “Trigger on”, choose “Custom events” and tick:",
        events_choice: "Custom events",
        events: &["Issues", "Issue label", "Issue comment", "Pull request reviewed", "Status"],
        loopback_warning: "Gitea delivers to loopback addresses only when its app.ini allows it: [webhook] ALLOWED_HOST_LIST = loopback (or external,loopback).",
    },
    co_author_email,
    connect,
};

/// The address Gitea's API shows: the public one, or its placeholder when the user keeps
/// theirs private; the placeholder's default form when the API shows none.
fn co_author_email(user: &super::client::UserInfo, api_url: &str) -> String {
    match user.email.as_deref().filter(|email| !email.is_empty()) {
        Some(email) => email.to_owned(),
        None => format!("{}@noreply.{}", user.login.to_lowercase(), super::host_of(api_url)),
    }
}

/// How Gitea's REST API differs from GitHub's.
static API: Api = Api {
    kind: ForgeKind::Gitea,
    page_size_param: "limit",
    // Gitea's default `[api] MAX_RESPONSE_ITEMS`.
    page_size: 50,
    issues_only: "&type=issues",
    labels: LabelsBy::Id,
    color_prefix: "#",
    duplicate_pull_status: 409,
    // Gitea marks drafts by a title prefix.
    draft: DraftStyle::TitlePrefix("WIP: "),
    permissions: &[
        ("owner", Permission::Admin),
        ("admin", Permission::Admin),
        ("write", Permission::Write),
        ("read", Permission::Read),
    ],
    // Gitea tells a collaborator's permission only to admins of the repository.
    permission_forbidden_hint: Some(
        "Gitea shows permissions only to repository admins: make the bot account an admin of",
    ),
    find_pull: FindPull::BaseHeadRoute,
    check_runs: false,
    review_replies: false,
};

fn connect(settings: &ForgeSettings) -> anyhow::Result<Arc<dyn Forge>> {
    Ok(Arc::new(client::connect(&API, settings)?))
}
