//! `POST /webhooks/{forge}`: extract, verify, record, answer. Nothing here waits on a forge.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::AppState;
use crate::config::ForgeSettings;
use crate::db::{NewDelivery, NewRefusal, Outcome, Recorded};
use crate::forge::event::ForgeEvent;
use crate::forge::{payload, signature};
use crate::trigger;

/// Why a delivery was refused. Every message says what is wrong and is safe to send back.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no forge named {0:?} is configured; webhook URLs are /webhooks/<forges[].name>")]
    UnknownForge(String),
    #[error(
        "forge {0:?} has no webhook_secret configured, so forgehand refuses every delivery; set forges[].webhook_secret and the same secret in the forge's webhook settings"
    )]
    NoSecret(String),
    #[error("the body exceeds server.max_body_bytes ({0} bytes)")]
    TooLarge(usize),
    #[error(
        "the body was not received within server.body_timeout_secs ({0} s); send it faster or raise the limit"
    )]
    BodyTimeout(u64),
    #[error("the body could not be read: {0}")]
    BodyRead(String),
    #[error(
        "missing signature: no {0} header with a value; set the webhook secret in the forge's webhook settings"
    )]
    MissingSignature(String),
    #[error("the {0} header was sent more than once")]
    RepeatedHeader(String),
    #[error("{0}")]
    BadSignature(signature::SignatureError),
    #[error("missing the {0} header")]
    MissingHeader(String),
    #[error(
        "content type {0:?} is not supported; choose application/json (or application/x-www-form-urlencoded) in the webhook settings"
    )]
    UnsupportedContentType(String),
    #[error("the form-encoded body has no payload field")]
    MissingFormPayload,
    #[error("{0}")]
    Payload(#[from] payload::PayloadError),
    #[error(
        "the delivery could not be recorded in time (forgehand's database is unreachable or overloaded); it is not accepted: redeliver it from the forge's webhook page"
    )]
    Database,
}

impl WebhookError {
    fn status(&self) -> StatusCode {
        match self {
            WebhookError::UnknownForge(_) => StatusCode::NOT_FOUND,
            WebhookError::NoSecret(_) => StatusCode::FORBIDDEN,
            WebhookError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            WebhookError::MissingSignature(_) | WebhookError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            WebhookError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebhookError::Database => StatusCode::SERVICE_UNAVAILABLE,
            WebhookError::BodyRead(_)
            | WebhookError::RepeatedHeader(_)
            | WebhookError::MissingHeader(_)
            | WebhookError::MissingFormPayload
            | WebhookError::Payload(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// A verified, parsed delivery.
struct Verified {
    delivery_id: String,
    event_name: String,
    event: ForgeEvent,
}

/// Handles one webhook delivery.
pub async fn receive(
    State(state): State<AppState>,
    Path(forge_name): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let settings = state.settings();
    let source = peer
        .map(|Extension(ConnectInfo(peer))| source(peer.ip(), &headers, &settings.server.trusted_proxies));
    let Some(forge) = settings.forge(&forge_name) else {
        tracing::warn!(forge = %printable(&forge_name), "webhook for an unknown forge");
        let err = WebhookError::UnknownForge(printable(&forge_name));
        state.refusals.note(refusal(&printable(&forge_name), &err, None, None, source));
        return err.into_response();
    };
    let names = &crate::forge::dialect(forge.kind).headers;
    let result = match verify_and_parse(&state, forge, &headers, body).await {
        Ok(verified) => record(&state, forge, verified).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(response) => response,
        Err(err) => {
            let delivery_for_log = first_header(&headers, names.delivery).map(printable).unwrap_or_default();
            tracing::warn!(
                delivery = %delivery_for_log,
                forge = %forge.name,
                status = err.status().as_u16(),
                reason = %err,
                "delivery refused"
            );
            let event = first_header(&headers, names.event).map(printable);
            let delivery = Some(delivery_for_log).filter(|id| !id.is_empty());
            state.refusals.note(refusal(&forge.name, &err, event, delivery, source));
            err.into_response()
        }
    }
}

/// What is kept of a refused delivery: never its body nor its headers but the event and
/// delivery id (forge-supplied text, made printable).
fn refusal(
    forge: &str,
    err: &WebhookError,
    event: Option<String>,
    delivery_id: Option<String>,
    source: Option<String>,
) -> NewRefusal {
    NewRefusal {
        forge: forge.to_owned(),
        status: err.status().as_u16(),
        reason: err.to_string(),
        event,
        delivery_id,
        source,
        received_at: chrono::Utc::now(),
    }
}

/// Who sent it: the peer, or behind a trusted proxy the client it names.
fn source(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpAddr]) -> String {
    let forwarded =
        trusted_proxies.contains(&peer).then(|| super::client::forwarded_for(headers, trusted_proxies));
    forwarded.flatten().unwrap_or(peer).to_string()
}

async fn verify_and_parse(
    state: &AppState,
    forge: &ForgeSettings,
    headers: &HeaderMap,
    body: Body,
) -> Result<Verified, WebhookError> {
    if forge.webhook_secret.is_empty() {
        return Err(WebhookError::NoSecret(forge.name.clone()));
    }
    let dialect = crate::forge::dialect(forge.kind);
    let names = &dialect.headers;
    // An unsigned request is refused before its body is read.
    let signature = signature_header(headers, names.signature)?;
    let server = &state.settings().server;
    let body = read_body(headers, body, server.max_body_bytes, server.body_timeout_secs).await?;
    (dialect.verify_signature)(&forge.webhook_secret.0, &body, signature)
        .map_err(WebhookError::BadSignature)?;
    let event_name = first_header(headers, names.event)
        .ok_or_else(|| WebhookError::MissingHeader(alternatives(names.event)))?;
    let delivery_id = first_header(headers, names.delivery)
        .ok_or_else(|| WebhookError::MissingHeader(alternatives(names.delivery)))?;
    let json = json_payload(headers, &body)?;
    let event = payload::parse(forge.kind, event_name, &json)?;
    // An App's installations changed: what this process knows of them follows at once.
    if forge.app_id.is_some()
        && let Some(change) = crate::forge::github_app::installation_change(event_name, &json)
    {
        crate::forge::github_app::apply_installation_change(forge, &change).await;
    }
    Ok(Verified { delivery_id: delivery_id.to_owned(), event_name: event_name.to_owned(), event })
}

async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout_secs: u64,
) -> Result<axum::body::Bytes, WebhookError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(WebhookError::TooLarge(limit));
    }
    let read = tokio::time::timeout(std::time::Duration::from_secs(timeout_secs), to_bytes(body, limit));
    let Ok(read) = read.await else {
        return Err(WebhookError::BodyTimeout(timeout_secs));
    };
    match read {
        Ok(bytes) => Ok(bytes),
        Err(err) if is_length_limit(&err) => Err(WebhookError::TooLarge(limit)),
        Err(err) => Err(WebhookError::BodyRead(err.to_string())),
    }
}

pub(super) fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The first of `names` present with a non-empty value.
fn first_header<'h>(headers: &'h HeaderMap, names: &[&'static str]) -> Option<&'h str> {
    names.iter().find_map(|name| {
        let value = headers.get(*name)?.to_str().ok()?.trim();
        (!value.is_empty()).then_some(value)
    })
}

fn signature_header<'h>(headers: &'h HeaderMap, names: &[&'static str]) -> Result<&'h str, WebhookError> {
    for name in names {
        let mut values = headers.get_all(*name).iter();
        let Some(value) = values.next() else { continue };
        if values.next().is_some() {
            return Err(WebhookError::RepeatedHeader(canonical(name)));
        }
        let value = value.to_str().unwrap_or("").trim();
        // Gitea sends empty signature headers (and a bare "sha256=") when no secret is set.
        if !value.is_empty() && value != "sha256=" {
            return Ok(value);
        }
    }
    Err(WebhookError::MissingSignature(alternatives(names)))
}

fn json_payload<'b>(headers: &HeaderMap, body: &'b [u8]) -> Result<Cow<'b, [u8]>, WebhookError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(Cow::Borrowed(body)),
        "application/x-www-form-urlencoded" => form_urlencoded::parse(body)
            .find(|(key, _)| key == "payload")
            .map(|(_, value)| Cow::Owned(value.into_owned().into_bytes()))
            .ok_or(WebhookError::MissingFormPayload),
        _ => Err(WebhookError::UnsupportedContentType(printable(&content_type))),
    }
}

async fn record(
    state: &AppState,
    forge: &ForgeSettings,
    verified: Verified,
) -> Result<Response, WebhookError> {
    let Verified { delivery_id, event_name, event } = verified;
    let settings = state.settings();
    let delivery = NewDelivery {
        forge: forge.name.clone(),
        delivery_id: delivery_id.clone(),
        event_key: event.event_key(),
        event: event_name.clone(),
        action: event.action().map(str::to_owned),
        repo: event.repo().map(|r| r.full_name.clone()),
        number: event.number(),
        head_sha: event.head_sha().map(str::to_owned),
        sender: event.sender().map(|s| s.login.clone()),
        label_present: event.label_present_after(&settings.trigger.label),
    };
    let repo = delivery.repo.as_ref().map(|r| r.as_str().to_owned()).unwrap_or_default();
    let log = LogFields {
        delivery: Printable(&delivery_id),
        forge: &forge.name,
        event: Printable(&event_name),
        repo: Printable(&repo),
    };
    // The decision runs in the database writer: it owns what it needs, and decides with
    // the settings this delivery was verified under.
    let forge_name = forge.name.clone();
    let identities = state.identities.clone();
    let decide = move |ctx: &trigger::IssueContext| match settings.forge(&forge_name) {
        Some(forge) => {
            // Without bot_login, the account the forge named for the token is forgehand's own.
            let forge = identities.effective(forge);
            let rules = trigger::Rules { branch_prefix: &settings.git.branch_prefix, ci: &settings.ci };
            let decision = trigger::decide(&event, &forge, &settings.trigger, &rules, ctx);
            trigger::route(decision, &settings)
        }
        None => trigger::Decision::Ignore(format!("forge {forge_name:?} is no longer configured")),
    };
    let recorded = state.db.record_delivery(delivery, decide).await.map_err(|err| {
        tracing::error!(delivery = %log.delivery, forge = log.forge, event = %log.event, repo = %log.repo, error = %err, "cannot record delivery");
        WebhookError::Database
    })?;
    Ok(answer(&delivery_id, recorded, &log, &state.wake, &state.db))
}

/// What every log line about an accepted delivery names. Fields, not a span: a span's
/// fields are formatted when it is created and again in each line's `span` and `spans`,
/// which cost intake a tenth of its rate (docs/benchmarks.md).
struct LogFields<'a> {
    delivery: Printable<'a>,
    forge: &'a str,
    event: Printable<'a>,
    repo: Printable<'a>,
}

fn answer(
    delivery_id: &str,
    recorded: Recorded,
    log: &LogFields<'_>,
    wake: &tokio::sync::Notify,
    db: &crate::db::Db,
) -> Response {
    let LogFields { delivery, forge, event, repo } = log;
    match recorded {
        Recorded::Duplicate => {
            tracing::info!(%delivery, forge, %event, %repo, outcome = "duplicate", "delivery already recorded");
            let body = json!({ "delivery": delivery_id, "outcome": "duplicate", "reason": "this delivery (or the comment or review it carries) was already recorded" });
            (StatusCode::OK, Json(body)).into_response()
        }
        Recorded::Outcome { outcome, reason, task_id } => {
            if matches!(outcome, Outcome::TaskCreated | Outcome::Answered) {
                wake.notify_one();
                if db.announces_tasks() {
                    let db = db.clone();
                    tokio::spawn(async move { db.announce_task().await });
                }
            }
            let task = task_id.map(|id| id.to_string()).unwrap_or_default();
            tracing::info!(%delivery, forge, %event, %repo, outcome = outcome.as_str(), %task, %reason, "delivery recorded");
            let status = if outcome == Outcome::TaskCreated { StatusCode::ACCEPTED } else { StatusCode::OK };
            let body = json!({ "delivery": delivery_id, "outcome": outcome.as_str(), "reason": reason, "task_id": task_id });
            (status, Json(body)).into_response()
        }
    }
}

/// The accepted header names, for a message: `X-Gitea-Event or X-GitHub-Event`.
fn alternatives(names: &[&str]) -> String {
    names.iter().map(|name| canonical(name)).collect::<Vec<_>>().join(" or ")
}

/// A header name as forges document it: `x-hub-signature-256` → `X-Hub-Signature-256`.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
        .replace("Github", "GitHub")
}

/// Forge-supplied text made safe for a log line or an error message: printable, short.
fn printable(text: &str) -> String {
    Printable(text).to_string()
}

/// [`printable`] as it is written, without a `String` of its own (for log fields).
#[derive(Clone, Copy)]
struct Printable<'a>(&'a str);

impl std::fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(120) {
            f.write_char(if c.is_control() { '?' } else { c })?;
        }
        if chars.next().is_some() {
            f.write_char('…')?;
        }
        Ok(())
    }
}
