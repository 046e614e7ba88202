//! Gitea's and Forgejo's REST API (`/api/v1`) through reqwest.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::config::ForgeSettings;
use crate::forge::client::{Answer, ForgeError, ForgeResult};
use crate::forge::rest::{Api, RestForge, Transport};

/// The scheme of the `Authorization` header: `token <token>`.
const AUTH_SCHEME: &str = "token";

/// Sends Gitea API requests through reqwest.
pub struct Http {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl Http {
    /// A transport for `settings.api_url` (ending in `/api/v1`) authenticated with `settings.token`.
    pub fn new(settings: &ForgeSettings) -> anyhow::Result<Http> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("forgehand/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the Gitea client")?;
        Ok(Http {
            http,
            base: settings.api_url.trim_end_matches('/').to_owned(),
            token: settings.token.clone(),
        })
    }
}

#[async_trait]
impl Transport for Http {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        operation: &str,
    ) -> ForgeResult<Answer> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        let token = self.token.expose_secret();
        if !token.is_empty() {
            request = request.header("authorization", format!("{AUTH_SCHEME} {token}"));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable =
            |e: reqwest::Error| ForgeError::unreachable(operation, &self.base, &e.without_url());
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(unreachable)?;
        Ok(Answer { status, headers, body: body.to_vec() })
    }
}

/// A Gitea client: the shared REST routes over Gitea's table and reqwest.
pub fn connect(api: &'static Api, settings: &ForgeSettings) -> anyhow::Result<RestForge> {
    Ok(RestForge::new(api, Box::new(Http::new(settings)?)))
}
