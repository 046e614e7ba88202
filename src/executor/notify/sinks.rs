//! What each sink kind receives, and how it is sent. The payloads are documented in
//! docs/configuration.md ("Notification payloads"); a test checks them field by field.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::config::Settings;
use crate::config::notify::{SinkKind, SinkSettings, SmtpSecurity};
use crate::db::notify::ClaimedNotification;

/// The header carrying the HMAC-SHA256 of a webhook body.
pub const SIGNATURE_HEADER: &str = "X-Forgehand-Signature-256";
/// The header carrying the delivery id (the same on every retry).
pub const DELIVERY_HEADER: &str = "X-Forgehand-Delivery";
/// The header carrying the event name.
pub const EVENT_HEADER: &str = "X-Forgehand-Event";

/// Sends notifications; one HTTP client for every webhook and Slack sink, built on the
/// first send: a TLS client loads the system's certificates, memory an instance without
/// webhook sinks should not hold.
pub struct Sender {
    timeout: Duration,
    http: std::sync::OnceLock<reqwest::Client>,
}

impl Sender {
    /// A sender whose attempts each take at most `notify.timeout_secs`.
    pub fn new(settings: &Settings) -> Sender {
        Sender {
            timeout: Duration::from_secs(settings.notify.timeout_secs),
            http: std::sync::OnceLock::new(),
        }
    }

    fn http(&self) -> anyhow::Result<&reqwest::Client> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("forgehand/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(self.http.get_or_init(|| http))
    }

    /// One attempt: `Ok` when the sink accepted the notification.
    pub async fn send(
        &self,
        settings: &Settings,
        sink: &SinkSettings,
        claimed: &ClaimedNotification,
    ) -> anyhow::Result<()> {
        let body = body(settings, claimed);
        match sink.kind {
            SinkKind::Webhook => {
                let raw = serde_json::to_vec(&body)?;
                let signature = crate::forge::signature::sign(sink.secret.expose_secret().as_bytes(), &raw);
                let request = self
                    .http()?
                    .post(sink.url.expose_secret())
                    .header("Content-Type", "application/json")
                    .header(SIGNATURE_HEADER, format!("sha256={signature}"))
                    .header(DELIVERY_HEADER, claimed.delivery_key())
                    .header(EVENT_HEADER, &claimed.kind)
                    .body(raw);
                self.post(request).await
            }
            SinkKind::Slack => {
                let text = slack_text(&body);
                let request = self
                    .http()?
                    .post(sink.url.expose_secret())
                    .header(DELIVERY_HEADER, claimed.delivery_key())
                    .json(&serde_json::json!({ "text": text }));
                self.post(request).await
            }
            SinkKind::Email => send_mail(settings, sink, claimed, &body).await,
        }
    }

    async fn post(&self, request: reqwest::RequestBuilder) -> anyhow::Result<()> {
        // without_url: the URL of a sink may carry its token.
        let answer = request.send().await.map_err(|err| anyhow!("{}", err.without_url()))?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let text = answer.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        bail!("the receiver answered {status}: {}", text.trim())
    }
}

/// The JSON every sink is built from: the stored event, its delivery id, and the task's
/// dashboard link (from `server.public_url`).
pub fn body(settings: &Settings, claimed: &ClaimedNotification) -> Value {
    let mut body = claimed.payload.clone();
    if let Some(object) = body.as_object_mut() {
        object.insert("delivery_id".into(), claimed.delivery_key().into());
        let base = settings.server.public_url.trim_end_matches('/');
        if let Some(task) = object.get_mut("task").and_then(Value::as_object_mut) {
            let id = task.get("id").and_then(Value::as_i64).unwrap_or_default();
            task.insert("url".into(), format!("{base}/tasks/{id}").into());
        }
    }
    body
}

/// The one-line message of Slack and the mail's subject, with `<url|text>` links.
pub fn slack_text(body: &Value) -> String {
    line(body, true)
}

fn line(body: &Value, links: bool) -> String {
    let event = body["event"].as_str().unwrap_or_default();
    let task = &body["task"];
    let link = |url: &Value, text: &str| match (url.as_str(), links) {
        (Some(url), true) => Some(format!("<{}|{}>", url, escape(text))),
        (Some(_), false) => Some(text.to_owned()),
        _ => None,
    };
    if task.is_object() {
        let (id, repo, number) = (
            task["id"].as_i64().unwrap_or(0),
            task["repo"].as_str().unwrap_or(""),
            task["number"].as_i64().unwrap_or(0),
        );
        let title = one_line(task["title"].as_str().unwrap_or(""), 120);
        let what = match event {
            "task_done" => "✅ done".to_owned(),
            "task_failed" => {
                format!("❌ failed: {}", one_line(task["error"].as_str().unwrap_or("unknown error"), 200))
            }
            "task_needs_input" => {
                format!("❓ asks: {}", one_line(task["question"].as_str().unwrap_or(""), 200))
            }
            "task_expired" => "⌛ expired: the question was not answered in time".to_owned(),
            other => other.to_owned(),
        };
        let mut parts =
            vec![format!("forgehand task #{id} on {repo}#{number} “{}” {}", escape(&title), escape(&what))];
        let pr = format!("PR #{}", task["pr_number"].as_i64().unwrap_or(0));
        parts.extend(link(&task["pr_url"], &pr));
        parts.extend(link(&task["url"], &format!("task #{id}")));
        parts.extend(link(&task["issue_url"], &format!("issue #{number}")));
        return parts.join(" · ");
    }
    let detail = body.as_object().map(|o| {
        o.iter()
            .filter(|(k, _)| !["event", "at", "delivery_id"].contains(&k.as_str()))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let icon = match event {
        "budget_reached" => "💸",
        "breaker_opened" => "🔌",
        "breaker_closed" => "🔁",
        _ => "⚠️",
    };
    escape(&format!(
        "{icon} forgehand {}: {}",
        event.replace('_', " "),
        one_line(&detail.unwrap_or_default(), 300)
    ))
}

fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}

/// Slack's three control characters.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

async fn send_mail(
    settings: &Settings,
    sink: &SinkSettings,
    claimed: &ClaimedNotification,
    body: &Value,
) -> anyhow::Result<()> {
    let subject = line(body, false);
    let mut text = format!("{subject}\n\n");
    for (label, pointer) in
        [("Pull request", "/task/pr_url"), ("Task", "/task/url"), ("Issue", "/task/issue_url")]
    {
        if let Some(url) = body.pointer(pointer).and_then(Value::as_str) {
            text.push_str(&format!("{label}: {url}\n"));
        }
    }
    text.push_str(&format!(
        "\nDelivery id: {}\n\n{}\n",
        claimed.delivery_key(),
        serde_json::to_string_pretty(body)?
    ));
    let mut message = Message::builder()
        .from(sink.from.parse().with_context(|| format!("from {:?} is not a mail address", sink.from))?)
        .subject(subject)
        .message_id(Some(format!("<{}@forgehand>", claimed.delivery_key())))
        .header(ContentType::TEXT_PLAIN);
    for to in &sink.to {
        message = message.to(to.parse().with_context(|| format!("to {to:?} is not a mail address"))?);
    }
    let message = message.body(text)?;
    let host = sink.smtp_host.as_str();
    let mut transport = match sink.smtp_security {
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
    }
    .timeout(Some(Duration::from_secs(settings.notify.timeout_secs)));
    if let Some(port) = sink.smtp_port {
        transport = transport.port(port);
    }
    if !sink.smtp_user.is_empty() {
        transport = transport.credentials(Credentials::new(
            sink.smtp_user.clone(),
            sink.smtp_password.expose_secret().to_owned(),
        ));
    }
    transport.build().send(message).await.map_err(|err| anyhow!("SMTP: {err}"))?;
    Ok(())
}
