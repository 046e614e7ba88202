//! GitHub's (and GitHub Enterprise Server's) REST API through octocrab.
//!
//! octocrab does the authentication (the token as a bearer), the base URI, the timeouts and
//! the HTTP stack. The calls go through its raw request methods (`_get`, `_post`, ...)
//! rather than its typed handlers, for three reasons:
//! - one implementation of [`Forge`](crate::forge::client::Forge) serves GitHub and Gitea
//!   ([`RestForge`]): their routes and bodies are the same up to the [`Api`] table, and
//!   octocrab's handlers exist only for GitHub, so using them would mean a second copy;
//! - octocrab's models require every field GitHub documents (its `Author` alone has 17),
//!   so an answer missing one the daemon never reads (an older Enterprise Server, a proxy)
//!   would fail the call, and its `RepoPermission` cannot read the permission endpoint's
//!   answer at all (see the fake forge's self-test); [`super::super::models`] read only the
//!   fields forgehand uses;
//! - its `all_pages` follows `Link` headers without a bound, where forgehand stops at
//!   `MAX_PAGES`; and errors of both forges are classified in one place, from the raw status
//!   and rate-limit headers ([`Answer`]).

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use axum::http::Method;
use http_body_util::BodyExt;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::config::ForgeSettings;
use crate::forge::client::{Answer, ForgeError, ForgeResult};
use crate::forge::rest::{Api, RestForge, Transport};

/// Sends GitHub API requests through octocrab.
pub struct Octocrab {
    client: octocrab::Octocrab,
    /// `api_url`, to name it when it cannot be reached.
    base: String,
}

impl Octocrab {
    /// A transport for `settings.api_url` authenticated with `settings.token`.
    pub fn new(settings: &ForgeSettings) -> anyhow::Result<Octocrab> {
        let mut builder = octocrab::Octocrab::builder()
            .base_uri(settings.api_url.as_str())
            .with_context(|| format!("forges: api_url {:?} is not a valid URL", settings.api_url))?
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)));
        let token = settings.token.expose_secret();
        if !token.is_empty() {
            builder = builder.personal_token(token.to_owned());
        }
        let client = builder.build().context("cannot build the GitHub client")?;
        Ok(Octocrab { client, base: settings.api_url.clone() })
    }
}

#[async_trait]
impl Transport for Octocrab {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        operation: &str,
    ) -> ForgeResult<Answer> {
        let client = &self.client;
        let response = match method {
            Method::GET => client._get(path).await,
            Method::POST => client._post(path, body).await,
            Method::PATCH => client._patch(path, body).await,
            Method::DELETE => client._delete(path, body).await,
            _ => unreachable!("only GET, POST, PATCH and DELETE are used"),
        }
        .map_err(|e| ForgeError::unreachable(operation, &self.base, &e))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| ForgeError::unreachable(operation, &self.base, &e))?;
        let body = body.to_bytes();
        Ok(Answer { status: parts.status, headers: parts.headers, body: body.to_vec() })
    }
}

/// A GitHub client: the shared REST routes over GitHub's table and octocrab.
pub fn connect(api: &'static Api, settings: &ForgeSettings) -> anyhow::Result<RestForge> {
    if settings.app_id.is_some() {
        return Ok(RestForge::new(api, Box::new(super::app::AppTransport::new(settings)?)));
    }
    Ok(RestForge::new(api, Box::new(Octocrab::new(settings)?)))
}
