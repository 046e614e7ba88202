//! `[notify]`: where notifications go (`[[notify.sinks]]`) and how the outbox behaves.
//! Sink URLs hold tokens and SMTP passwords are passwords: both are secrets, masked in
//! every output and overridable with `FORGEHAND__NOTIFY__SINKS__<NAME>__<KEY>`.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{ConfigError, MASK, RepoName, is_http_url};

/// The prefix of the environment variables that set a sink's secrets.
pub const SINK_ENV_PREFIX: &str = "FORGEHAND__NOTIFY__SINKS__";

/// `[notify]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// Days a sent (or given up) notification is kept in the outbox.
    pub retention_days: u32,
    /// Attempts per notification and sink before it is given up.
    pub max_attempts: u32,
    /// The wait after the first failure, in milliseconds; doubled after each further one.
    pub backoff_first_ms: u64,
    /// The longest wait between two attempts, in seconds.
    pub backoff_max_secs: u64,
    /// Seconds one attempt may take (connect, send, answer).
    pub timeout_secs: u64,
    /// `[[notify.sinks]]`.
    #[serde(default)]
    pub sinks: Vec<SinkSettings>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            retention_days: 30,
            max_attempts: 12,
            backoff_first_ms: 1000,
            backoff_max_secs: 3600,
            timeout_secs: 10,
            sinks: Vec::new(),
        }
    }
}

/// The events a sink can subscribe to, by their names in `events = [...]`.
pub const EVENT_NAMES: &[&str] = &[
    "task_done",
    "task_failed",
    "task_needs_input",
    "task_expired",
    "budget_reached",
    "breaker_opened",
    "breaker_closed",
    "daemon_recovered",
];

/// What a sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Webhook,
    Slack,
    Email,
}

/// How a mail sink talks to its SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required), usually port 587.
    #[default]
    Starttls,
    /// TLS from the first byte, usually port 465.
    Tls,
    /// No encryption: only for a relay on the same machine.
    None,
}

/// One `[[notify.sinks]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSettings {
    /// A name of its own: shown on the dashboard, part of the delivery id and of the
    /// environment variables that set its secrets.
    pub name: String,
    pub kind: SinkKind,
    /// Which events it receives (see [`EVENT_NAMES`]).
    pub events: Vec<String>,
    /// Only events of these repositories (`owner/name`); empty: all.
    #[serde(default)]
    pub repos: Vec<RepoName>,
    /// Webhook and Slack: where to POST. Often holds a token, hence a secret.
    #[serde(default = "empty_secret", serialize_with = "serialize_secret")]
    pub url: SecretString,
    /// Webhook: the HMAC-SHA256 key of `X-Forgehand-Signature-256`.
    #[serde(default = "empty_secret", serialize_with = "serialize_secret")]
    pub secret: SecretString,
    /// Email: the SMTP server.
    #[serde(default)]
    pub smtp_host: String,
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub smtp_security: SmtpSecurity,
    #[serde(default)]
    pub smtp_user: String,
    #[serde(default = "empty_secret", serialize_with = "serialize_secret")]
    pub smtp_password: SecretString,
    /// Email: the sender and the recipients.
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: Vec<String>,
}

impl SinkSettings {
    /// Whether this sink takes `event` about a task of `repo` (`None`: not about a task).
    pub fn wants(&self, event: &str, repo: Option<&str>) -> bool {
        self.events.iter().any(|e| e == event)
            && (self.repos.is_empty()
                || repo.is_none_or(|repo| self.repos.iter().any(|r| r.as_str().eq_ignore_ascii_case(repo))))
    }

    /// The secrets of this sink, to scrub from whatever an error message quotes; the URL
    /// also without its scheme and host, as a receiver echoing its request path shows it.
    pub fn secrets(&self) -> Vec<&str> {
        let url = self.url.expose_secret();
        let path = url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..]));
        let mut secrets: Vec<&str> = [&self.url, &self.secret, &self.smtp_password]
            .into_iter()
            .map(|s| s.expose_secret())
            .chain(path.filter(|p| p.len() > 1))
            .filter(|s| !s.is_empty())
            .collect();
        // Longest first: the whole URL is replaced before its path is looked for.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
    }
}

fn empty_secret() -> SecretString {
    SecretString::from("")
}

fn serialize_secret<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if secret.expose_secret().is_empty() { "" } else { MASK })
}

/// The upper-case form of a sink name in environment variables (`-` becomes `_`).
pub fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// Applies `FORGEHAND__NOTIFY__SINKS__<NAME>__<KEY>` to the sink named NAME.
pub fn apply_env(
    sinks: &mut [SinkSettings],
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    for (var, value) in vars {
        let rest = &var[SINK_ENV_PREFIX.len()..];
        let Some(sink) = sinks.iter_mut().find(|s| rest.starts_with(&format!("{}__", env_name(&s.name))))
        else {
            problems.push(format!(
                "{var}: no [[notify.sinks]] entry matches; the part after {SINK_ENV_PREFIX} must be a sink name in capitals (- becomes _)"
            ));
            continue;
        };
        let key = &rest[env_name(&sink.name).len() + 2..];
        match key {
            "URL" => sink.url = SecretString::from(value),
            "SECRET" => sink.secret = SecretString::from(value),
            "SMTP_PASSWORD" => sink.smtp_password = SecretString::from(value),
            "SMTP_USER" => sink.smtp_user = value,
            _ => problems
                .push(format!("{var}: unknown sink key {key}; use URL, SECRET, SMTP_USER or SMTP_PASSWORD")),
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(problems)) }
}

/// What is wrong with `[notify]`, one line each.
pub fn problems(notify: &NotifySettings) -> Vec<String> {
    let mut problems = Vec::new();
    if notify.max_attempts == 0 {
        problems.push("notify.max_attempts: must be at least 1".into());
    }
    if notify.timeout_secs == 0 {
        problems.push("notify.timeout_secs: must be at least 1".into());
    }
    let mut names = std::collections::HashSet::new();
    for (i, sink) in notify.sinks.iter().enumerate() {
        let at = format!("notify.sinks[{i}] ({})", sink.name);
        if !super::is_forge_name(&sink.name) {
            problems.push(format!("{at}: name must be 1-64 of a-z, 0-9, - and _"));
        }
        if !names.insert(sink.name.clone()) {
            problems.push(format!("{at}: another sink has this name; give each its own"));
        }
        if sink.events.is_empty() {
            problems.push(format!("{at}: events is empty; list some of {}", EVENT_NAMES.join(", ")));
        }
        for event in &sink.events {
            if !EVENT_NAMES.contains(&event.as_str()) {
                problems.push(format!("{at}: unknown event {event:?}; use {}", EVENT_NAMES.join(", ")));
            }
        }
        match sink.kind {
            SinkKind::Webhook | SinkKind::Slack => {
                if !is_http_url(sink.url.expose_secret()) {
                    problems.push(format!(
                        "{at}: url must be an http(s) URL (set it in the file or with {SINK_ENV_PREFIX}{}__URL)",
                        env_name(&sink.name)
                    ));
                }
                if sink.kind == SinkKind::Webhook && sink.secret.expose_secret().is_empty() {
                    problems.push(format!(
                        "{at}: a webhook sink needs a secret to sign with (secret, or {SINK_ENV_PREFIX}{}__SECRET)",
                        env_name(&sink.name)
                    ));
                }
            }
            SinkKind::Email => {
                if sink.smtp_host.is_empty() || sink.from.is_empty() || sink.to.is_empty() {
                    problems.push(format!("{at}: an email sink needs smtp_host, from and to"));
                }
            }
        }
    }
    problems
}
