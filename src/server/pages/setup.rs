//! `/setup`: what each forge needs on its side, and a live check of its token.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::{database_error, duration, error_page, render};
use crate::config::{ForgeSettings, RepoName};
use crate::db::LastDelivery;
use crate::executor::cleanup::{DataDirUsage, human_bytes};
use crate::executor::workspace::Tally;
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
    /// A GitHub App's id, when the forge connects as one (its key is then set).
    pub app_id: Option<u64>,
    /// forgehand's own account on the forge (its events never trigger), and whether it is
    /// known: configured as `bot_login`, or learned from the token.
    pub account: String,
    pub account_known: bool,
    /// What became of the newest delivery for this forge, if one arrived.
    pub last_delivery: Option<LastSeen>,
}

/// The newest delivery of a forge, in a sentence.
pub struct LastSeen {
    pub refused: bool,
    pub text: String,
}

fn last_seen(forge: &str, last: LastDelivery) -> LastSeen {
    let ago = |at: chrono::DateTime<chrono::Utc>| format!("{} ago", duration(chrono::Utc::now() - at));
    match last {
        LastDelivery::Accepted { at } => LastSeen {
            refused: false,
            text: format!("The last delivery for {forge} was accepted, {}.", ago(at)),
        },
        LastDelivery::Refused { at, status, reason } => LastSeen {
            refused: true,
            text: format!("The last delivery for {forge} was refused ({status}, {}): {reason}.", ago(at)),
        },
    }
}

/// What testing a forge's token found.
pub struct TokenCheck {
    pub forge: String,
    pub ok: bool,
    pub lines: Vec<String>,
}

/// What sending a test delivery to a forge's endpoint came to.
pub struct DeliveryTest {
    pub forge: String,
    pub ok: bool,
    pub lines: Vec<String>,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    csrf: Option<String>,
    check: Option<TokenCheck>,
    sent: Option<DeliveryTest>,
    forges: Vec<ForgeSetup>,
    label: String,
    command: String,
    agent: String,
    max_concurrent: usize,
    timeout: String,
    /// A warning about a proxy forwarding without being trusted.
    untrusted_proxy: Option<String>,
    /// What `data_dir` holds, by kind.
    storage: Vec<StorageRow>,
    storage_note: String,
}

/// One kind of what `data_dir` holds.
pub struct StorageRow {
    pub id: &'static str,
    pub kind: String,
    pub count: String,
    pub size: String,
}

fn storage_rows(usage: &DataDirUsage, data_dir: &std::path::Path) -> (Vec<StorageRow>, String) {
    let row = |id, kind: &str, count: String, bytes: u64| StorageRow {
        id,
        kind: kind.to_owned(),
        count,
        size: human_bytes(bytes),
    };
    let tally = |id, kind: &str, t: Tally| row(id, kind, t.count.to_string(), t.bytes);
    let database = match usage.database.kind {
        "postgres" => StorageRow {
            id: "storage-database",
            kind: "Database (PostgreSQL, external; pg_database_size)".into(),
            count: "-".into(),
            size: usage.database.bytes.map_or_else(|| "unknown".into(), human_bytes),
        },
        _ if usage.database_files.count > 0 => {
            tally("storage-database", "Database (SQLite file, WAL and shared memory)", usage.database_files)
        }
        _ => row(
            "storage-database",
            "Database (SQLite, outside data_dir)",
            "-".into(),
            usage.database.bytes.unwrap_or(0),
        ),
    };
    let ws = &usage.workspaces;
    let rows = vec![
        database,
        tally("storage-mirrors", "Repository mirrors", ws.mirrors),
        tally("storage-spares", "Spare checkouts (recycled)", ws.spares),
        tally("storage-tasks", "Task checkouts (running, waiting, kept after failure)", ws.tasks),
        tally("storage-transcripts", "Transcript files", usage.transcripts),
    ];
    let partial = if ws.partial { " The walk stopped early: sizes are at least these." } else { "" };
    let note = format!(
        "{} as measured {} ago (measured after each cleanup, or when older than 5 minutes).{partial}",
        data_dir.display(),
        duration(chrono::Utc::now() - usage.measured_at)
    );
    (rows, note)
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
        app_id: forge.app_id,
        account,
        account_known,
        last_delivery: None,
    }
}

/// `GET /setup`: what each forge needs, from the running configuration; no secret shown.
pub async fn setup_page(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
) -> Response {
    setup_with(&state, session, None, None, StatusCode::OK).await
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
    let repo = match Some(form.repo.trim()).filter(|r| !r.is_empty()).map(RepoName::parse).transpose() {
        Ok(repo) => repo,
        Err(problem) => {
            let check = TokenCheck { forge: forge.name.clone(), ok: false, lines: vec![problem] };
            return setup_with(&state, session, Some(check), None, StatusCode::BAD_REQUEST).await;
        }
    };
    let checked = match (forge.app_id, repo.as_ref()) {
        // An App is checked the way the wizard and doctor check it.
        (Some(_), Some(repo)) => crate::server::wizard::checks::check_app(forge, repo).await,
        _ => crate::server::wizard::checks::check_token(forge, repo.as_ref()).await,
    };
    let check = match checked {
        Ok(report) => TokenCheck { forge: forge.name.clone(), ok: true, lines: report.lines() },
        Err(message) => TokenCheck { forge: forge.name.clone(), ok: false, lines: vec![message] },
    };
    setup_with(&state, session, Some(check), None, StatusCode::OK).await
}

/// The test delivery form.
#[derive(Deserialize)]
pub struct TestDeliveryForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    forge: String,
}

/// `POST /setup/test-delivery`: signs a test delivery with the forge's secret and sends
/// it to this server's own webhook endpoint; shows what it answered.
pub async fn setup_test_delivery(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Form(form): Form<TestDeliveryForm>,
) -> Response {
    if let Err(refused) = check_csrf(&session, &form.csrf) {
        return refused.into_response();
    }
    let settings = state.settings();
    let (Some(forge), Some(addr)) = (settings.forge(&form.forge), state.local_addr.get()) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Unknown forge",
            "Pick a forge listed on the setup page.",
        );
    };
    let base = crate::server::test_delivery::local_base(*addr);
    let sent = match crate::server::test_delivery::send(forge, &base).await {
        Ok(sent) => DeliveryTest { forge: forge.name.clone(), ok: sent.accepted(), lines: sent.lines() },
        Err(message) => DeliveryTest { forge: forge.name.clone(), ok: false, lines: vec![message] },
    };
    setup_with(&state, session, None, Some(sent), StatusCode::OK).await
}

async fn setup_with(
    state: &AppState,
    session: CurrentSession,
    check: Option<TokenCheck>,
    sent: Option<DeliveryTest>,
    status: StatusCode,
) -> Response {
    let settings = state.settings();
    let mut forges = Vec::new();
    for forge in &settings.forges {
        let mut setup = forge_setup(&settings.server.public_url, forge, state.identities.get(&forge.name));
        setup.last_delivery = match state.db.last_delivery(&forge.name).await {
            Ok(last) => last.map(|last| last_seen(&forge.name, last)),
            Err(err) => return database_error(err),
        };
        forges.push(setup);
    }
    let usage = state.cleanup.usage(&settings, &state.db).await;
    let (storage, storage_note) = storage_rows(&usage, &settings.data_dir);
    let page = SetupPage {
        csrf: Some(session.csrf),
        check,
        sent,
        forges,
        label: settings.trigger.label.clone(),
        command: settings.trigger.command.clone(),
        agent: settings.agent.command.clone(),
        max_concurrent: settings.executor.max_concurrent,
        timeout: duration(chrono::Duration::seconds(settings.executor.timeout_secs as i64)),
        untrusted_proxy: state.forwarding.last_untrusted().map(|proxy| untrusted_proxy_warning(&proxy)),
        storage,
        storage_note,
    };
    render(status, &page)
}

/// What the setup page says about a proxy forwarding without being trusted.
pub fn untrusted_proxy_warning(proxy: &crate::server::client::UntrustedProxy) -> String {
    let ago = proxy.last_seen.elapsed().unwrap_or_default().as_secs();
    format!(
        "Requests from {address} carry X-Forwarded-For (last {ago} s ago), but {address} is not in \
         server.trusted_proxies: every client behind it counts as {address}, so wrong admin tokens sent \
         by anyone there lock out everyone there who has not logged in from their browser before. \
         If {address} is your reverse proxy, add it to server.trusted_proxies.",
        address = proxy.address
    )
}
