//! `/setup`: what each forge needs on its side, and a live check of its token.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::{duration, error_page, render};
use crate::config::ForgeSettings;
use crate::server::AppState;
use crate::server::identity::Identity;
use crate::server::session::{CurrentSession, check_csrf};

/// What a forge needs on its side, for the setup page.
pub struct ForgeSetup {
    pub name: String,
    pub kind: &'static str,
    pub api_url: String,
    pub webhook_url: String,
    pub events: String,
    pub secret_set: bool,
    pub token_set: bool,
    /// forgehand's own account on the forge (its events never trigger), and whether it is
    /// known: configured as `bot_login`, or learned from the token.
    pub account: String,
    pub account_known: bool,
}

/// What testing a forge's token found.
pub struct TokenCheck {
    pub forge: String,
    pub ok: bool,
    pub lines: Vec<String>,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    csrf: Option<String>,
    check: Option<TokenCheck>,
    forges: Vec<ForgeSetup>,
    label: String,
    command: String,
    agent: String,
    max_concurrent: usize,
    timeout: String,
}

/// The account line of a forge: its `bot_login`, or what asking the forge found.
fn account(forge: &ForgeSettings, identity: Option<Identity>) -> (String, bool) {
    if !forge.bot_login.is_empty() {
        return (format!("{} (forges[].bot_login)", forge.bot_login), true);
    }
    match identity {
        Some(Identity::Known(login)) => (format!("{login} (the token's account)"), true),
        Some(Identity::Unknown(why)) => {
            (format!("unknown: the forge could not say ({why}); check the token or set bot_login"), false)
        }
        None => ("not asked yet".to_owned(), false),
    }
}

fn forge_setup(public_url: &str, forge: &ForgeSettings, identity: Option<Identity>) -> ForgeSetup {
    use secrecy::ExposeSecret;
    let (account, account_known) = account(forge, identity);
    let dialect = crate::forge::dialect(forge.kind);
    let (kind, events) = (dialect.name, dialect.setup.events_line());
    ForgeSetup {
        name: forge.name.clone(),
        kind,
        api_url: forge.api_url.clone(),
        webhook_url: format!("{}/webhooks/{}", public_url.trim_end_matches('/'), forge.name),
        events,
        secret_set: !forge.webhook_secret.is_empty(),
        token_set: !forge.token.expose_secret().is_empty(),
        account,
        account_known,
    }
}

/// `GET /setup`: what each forge needs, from the running configuration; no secret shown.
pub async fn setup_page(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
) -> Response {
    setup_with(&state, session, None)
}

/// The token test form.
#[derive(Deserialize)]
pub struct CheckForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    forge: String,
    #[serde(default)]
    repo: String,
}

/// `POST /setup/check`: tries the forge's token live: who it authenticates as, and its
/// permission on a repository the person names.
pub async fn setup_check(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Form(form): Form<CheckForm>,
) -> Response {
    if let Err(refused) = check_csrf(&session, &form.csrf) {
        return refused.into_response();
    }
    let settings = state.settings();
    let Some(forge) = settings.forges.iter().find(|f| f.name == form.forge) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Unknown forge",
            "Pick a forge listed on the setup page.",
        );
    };
    let repo = Some(form.repo.trim()).filter(|r| !r.is_empty());
    let check = match crate::server::wizard::checks::check_token(forge, repo).await {
        Ok(report) => TokenCheck { forge: forge.name.clone(), ok: true, lines: report.lines() },
        Err(message) => TokenCheck { forge: forge.name.clone(), ok: false, lines: vec![message] },
    };
    setup_with(&state, session, Some(check))
}

fn setup_with(state: &AppState, session: CurrentSession, check: Option<TokenCheck>) -> Response {
    let settings = state.settings();
    let page = SetupPage {
        csrf: Some(session.csrf),
        check,
        forges: (settings.forges.iter())
            .map(|f| forge_setup(&settings.server.public_url, f, state.identities.get(&f.name)))
            .collect(),
        label: settings.trigger.label.clone(),
        command: settings.trigger.command.clone(),
        agent: settings.agent.command.clone(),
        max_concurrent: settings.executor.max_concurrent,
        timeout: duration(chrono::Duration::seconds(settings.executor.timeout_secs as i64)),
    };
    render(StatusCode::OK, &page)
}
