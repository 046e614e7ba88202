//! GitHub (and GitHub Enterprise Server): everything forgehand knows about it is here or in
//! this folder: its webhook headers and own events, its REST API's differences, and what
//! the setup pages say about it.

pub mod app;
mod client;
mod payload;

use std::sync::Arc;

use super::client::Forge;
use super::rest::{Api, DraftStyle, FindPull, LabelsBy};
use super::{Dialect, GitUser, Hosted, SetupFacts, WebhookHeaders};
use crate::config::{ForgeKind, ForgeSettings, Permission};

/// GitHub's facts outside its REST API.
pub static DIALECT: Dialect = Dialect {
    name: "GitHub",
    headers: WebhookHeaders {
        event: &["x-github-event"],
        delivery: &["x-github-delivery"],
        signature: &["x-hub-signature-256"],
    },
    verify_signature: super::signature::verify,
    parse_own_event: payload::parse_own_event,
    // GitHub ignores the name that goes with a token, but git needs one.
    git_user: GitUser::Fixed("x-access-token"),
    setup: SetupFacts {
        default_api_url: "https://api.github.com",
        api_hint: "https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server",
        hosted: Some(Hosted { api: "://api.github.com", web: "https://github.com" }),
        token_advice: "A fine-grained token with Contents, Issues and Pull requests read/write on the repositories (a classic token needs <code>repo</code>).",
        webhook_steps: "Repository (or organisation) → Settings → Webhooks → Add webhook. Under “Which events”, choose “Let me select individual events” and tick:",
        events_choice: "Let me select individual events",
        events: &["Issues", "Issue comments", "Pull request reviews", "Check runs"],
        loopback_warning: "GitHub cannot deliver to this address: put forgehand behind a reverse proxy or tunnel, and set the public URL (step 1) to the address GitHub reaches.",
    },
    co_author_email,
    connect,
};

/// GitHub's no-reply address, which it links to the account whatever its e-mail settings
/// (`ID+login@users.noreply.github.com`; Enterprise Server uses its own host).
fn co_author_email(user: &super::client::UserInfo, api_url: &str) -> String {
    let host = match DIALECT.hosted_web(api_url) {
        Some(web) => super::host_of(web),
        None => super::host_of(api_url),
    };
    format!("{}+{}@users.noreply.{host}", user.id, user.login)
}

/// How GitHub's REST API differs from Gitea's.
static API: Api = Api {
    kind: ForgeKind::Github,
    page_size_param: "per_page",
    page_size: 100,
    // GitHub's issue listing has no filter for pull requests: they are dropped after.
    issues_only: "",
    labels: LabelsBy::Name,
    color_prefix: "",
    duplicate_pull_status: 422,
    draft: DraftStyle::Flag,
    permissions: &[
        ("admin", Permission::Admin),
        ("maintain", Permission::Write),
        ("write", Permission::Write),
        ("triage", Permission::Read),
        ("read", Permission::Read),
    ],
    permission_forbidden_hint: None,
    find_pull: FindPull::HeadQuery,
    check_runs: true,
    review_replies: true,
};

fn connect(settings: &ForgeSettings) -> anyhow::Result<Arc<dyn Forge>> {
    Ok(Arc::new(client::connect(&API, settings)?))
}
