//! Everything that speaks a forge's language. Each forge is one folder (`github/`,
//! `gitea/`) holding its [`Dialect`] (webhook headers, own events, git user name, setup
//! facts), its REST API's table ([`rest::Api`]) and its HTTP transport. Shared here: the
//! [`client::Forge`] trait and its errors, the one REST implementation (`rest.rs`) with its
//! answer models (`models.rs`), the payloads every forge sends alike (`payload.rs`),
//! signatures and forgehand's normalized events.
//!
//! Adding a forge: a folder with its `DIALECT` (and, if its REST API has GitHub's shape,
//! an `Api` table; otherwise its own `Forge` implementation behind `DIALECT.connect`), a
//! `ForgeKind` variant (with its name in `ForgeKind::ALL` and `Display`), and its arm in
//! [`dialect`].

pub mod attachments;
pub mod client;
pub mod event;
mod gitea;
mod github;
/// Public so that the integration tests can check every field read against the forges'
/// API descriptions.
pub mod models;
mod number;
pub mod payload;
mod rest;
pub mod signature;

/// A GitHub App's live check and its installation events (`forge::github_app`).
pub use github::app as github_app;
pub use number::IssueNumber;

use std::sync::Arc;

use secrecy::SecretString;

use crate::config::{ForgeKind, ForgeSettings};
use client::Forge;
use event::ForgeEvent;
use payload::PayloadError;
use signature::SignatureError;

/// The facts of a forge kind.
pub fn dialect(kind: ForgeKind) -> &'static Dialect {
    match kind {
        ForgeKind::Github => &github::DIALECT,
        ForgeKind::Gitea => &gitea::DIALECT,
    }
}

/// What differs between forges outside their REST API (that table is [`rest::Api`]).
pub struct Dialect {
    /// How people name the forge: `GitHub`, `Gitea / Forgejo`.
    pub name: &'static str,
    /// The webhook headers to read.
    pub headers: WebhookHeaders,
    /// Checks the signature header's value over the raw body against the configured
    /// secrets (both forges today: [`signature::verify`], HMAC-SHA256 in hex).
    pub verify_signature: VerifySignature,
    /// Parses the events only this forge sends (its review events); `None` for any other
    /// event, which the shared parser then handles.
    pub parse_own_event: fn(event: &str, json: &[u8]) -> OwnEvent,
    /// The user name git sends with the token when pushing.
    pub git_user: GitUser,
    /// What the setup pages tell people about this forge.
    pub setup: SetupFacts,
    /// The address a `Co-authored-by:` trailer names `user` by, on the forge at `api_url`:
    /// one the forge links to that account.
    pub co_author_email: fn(user: &client::UserInfo, api_url: &str) -> String,
    /// Builds the REST client for a configured forge.
    pub connect: fn(&ForgeSettings) -> anyhow::Result<Arc<dyn Forge>>,
}

/// Checks a signature header's value over the raw body against any of the secrets.
pub type VerifySignature = fn(&[SecretString], body: &[u8], signature: &str) -> Result<(), SignatureError>;

/// A forge's own event, parsed; `None` when the event is not one of its own.
pub type OwnEvent = Option<Result<ForgeEvent, PayloadError>>;

/// The header names a forge sends, each list most specific first: the first one present
/// with a value wins.
pub struct WebhookHeaders {
    pub event: &'static [&'static str],
    pub delivery: &'static [&'static str],
    pub signature: &'static [&'static str],
}

/// The user name that goes with the token over HTTPS.
pub enum GitUser {
    /// Always this name (GitHub ignores it but wants one).
    Fixed(&'static str),
    /// The forge's `bot_login`, or this name when none is configured.
    BotLoginOr(&'static str),
}

impl GitUser {
    /// The name to push as, for a forge whose bot account is `bot_login` (maybe empty).
    pub fn name(&self, bot_login: &str) -> String {
        match self {
            GitUser::Fixed(name) => (*name).to_owned(),
            GitUser::BotLoginOr(_) if !bot_login.is_empty() => bot_login.to_owned(),
            GitUser::BotLoginOr(fallback) => (*fallback).to_owned(),
        }
    }
}

/// Facts the setup wizard and the setup page show.
pub struct SetupFacts {
    /// The API URL a new forge of this kind starts with; empty when there is no usual one.
    pub default_api_url: &'static str,
    /// What the API URL looks like.
    pub api_hint: &'static str,
    /// What the bot's token needs; HTML (it may name scopes in `<code>`).
    pub token_advice: &'static str,
    /// The public service, whose web pages live on another host than its API.
    pub hosted: Option<Hosted>,
    /// Where the webhook is added, up to the list of events to tick.
    pub webhook_steps: &'static str,
    /// The choice in the webhook form that leads to the event list.
    pub events_choice: &'static str,
    /// The events to tick, as the forge's form names them.
    pub events: &'static [&'static str],
    /// Said when the public URL is a loopback address.
    pub loopback_warning: &'static str,
}

impl SetupFacts {
    /// The choice and the events in one line: `Custom events: Issues, Issue label, ...`.
    pub fn events_line(&self) -> String {
        format!("{}: {}", self.events_choice, self.events.join(", "))
    }
}

/// A hosted service: an API URL containing `api` means web pages at `web`.
pub struct Hosted {
    pub api: &'static str,
    pub web: &'static str,
}

/// The host name of `url`, without port, e.g. `git.example.com` for
/// `https://git.example.com:3000/api/v1`.
pub(crate) fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The `Co-authored-by:` trailer naming `user` on the forge of `settings`.
pub fn co_author_trailer(settings: &ForgeSettings, user: &client::UserInfo) -> String {
    let email = (dialect(settings.kind).co_author_email)(user, &settings.api_url);
    format!("Co-authored-by: {} <{email}>", user.login)
}

impl Dialect {
    /// The web site's base URL when `api_url` is the hosted service's API.
    pub fn hosted_web(&self, api_url: &str) -> Option<&'static str> {
        self.setup.hosted.as_ref().filter(|hosted| api_url.contains(hosted.api)).map(|hosted| hosted.web)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn co_authors_are_named_by_an_address_the_forge_links_to_them() {
        let user = |email: Option<&str>| client::UserInfo {
            id: 583231,
            login: "octocat".into(),
            email: email.map(str::to_owned),
        };
        let forge = |kind, api_url: &str| ForgeSettings {
            name: "f".into(),
            kind,
            api_url: api_url.into(),
            token: String::new().into(),
            webhook_secret: Default::default(),
            bot_login: String::new(),
            app_id: None,
            private_key: String::new().into(),
        };
        let github = forge(ForgeKind::Github, "https://api.github.com");
        assert_eq!(
            co_author_trailer(&github, &user(Some("public@example.com"))),
            "Co-authored-by: octocat <583231+octocat@users.noreply.github.com>"
        );
        let enterprise = forge(ForgeKind::Github, "https://ghe.example.com/api/v3");
        assert_eq!(
            co_author_trailer(&enterprise, &user(None)),
            "Co-authored-by: octocat <583231+octocat@users.noreply.ghe.example.com>"
        );
        let gitea = forge(ForgeKind::Gitea, "https://git.example.com:3000/api/v1");
        assert_eq!(
            co_author_trailer(&gitea, &user(Some("cat@example.com"))),
            "Co-authored-by: octocat <cat@example.com>"
        );
        assert_eq!(
            co_author_trailer(&gitea, &user(Some(""))),
            "Co-authored-by: octocat <octocat@noreply.git.example.com>"
        );
    }

    #[test]
    fn git_user_names() {
        assert_eq!(dialect(ForgeKind::Github).git_user.name("bot"), "x-access-token");
        assert_eq!(dialect(ForgeKind::Gitea).git_user.name("bot"), "bot");
        assert_eq!(dialect(ForgeKind::Gitea).git_user.name(""), "forgehand");
    }

    #[test]
    fn only_the_hosted_api_has_a_separate_web_host() {
        let github = dialect(ForgeKind::Github);
        assert_eq!(github.hosted_web("https://api.github.com"), Some("https://github.com"));
        assert_eq!(github.hosted_web("https://ghe.example.com/api/v3"), None);
        assert_eq!(dialect(ForgeKind::Gitea).hosted_web("https://api.github.com"), None);
    }

    #[test]
    fn every_kind_has_its_own_name() {
        let names: Vec<&str> = ForgeKind::ALL.iter().map(|kind| dialect(*kind).name).collect();
        assert_eq!(names, ["GitHub", "Gitea / Forgejo"]);
        assert_eq!("forgejo".parse::<ForgeKind>().ok(), Some(ForgeKind::Gitea));
        assert!("gitlab".parse::<ForgeKind>().is_err());
    }
}
