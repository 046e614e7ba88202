//! The admin token: configured, or generated on first start and kept in `data_dir`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::AppState;
use super::attempts::{Client, Verdict};
use crate::token::generate_token;

/// File in `data_dir` holding a generated admin token.
pub const TOKEN_FILE: &str = "admin_token";

/// The admin token, kept only as a digest so that comparisons take the same time whatever
/// the guess.
pub struct AdminToken {
    digest: [u8; 32],
}

/// Where the admin token came from.
pub enum TokenSource {
    Configured,
    /// Read from this file, written by an earlier start.
    Stored(PathBuf),
    /// Generated now and written to this file; the token is shown once.
    Generated(PathBuf, SecretString),
}

impl AdminToken {
    /// Wraps a token.
    pub fn new(token: &SecretString) -> AdminToken {
        AdminToken { digest: Sha256::digest(token.expose_secret().as_bytes()).into() }
    }

    /// Whether `candidate` is the admin token.
    pub fn matches(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        // Comparing digests: timing reveals nothing about the token itself.
        digest == self.digest
    }
}

/// The configured token, else the stored one, else a new one written with mode 0600.
pub fn load_or_generate(
    configured: &SecretString,
    data_dir: &Path,
) -> std::io::Result<(AdminToken, TokenSource)> {
    if !configured.expose_secret().is_empty() {
        return Ok((AdminToken::new(configured), TokenSource::Configured));
    }
    let path = data_dir.join(TOKEN_FILE);
    if let Ok(stored) = std::fs::read_to_string(&path) {
        let stored = SecretString::from(stored.trim().to_owned());
        if !stored.expose_secret().is_empty() {
            return Ok((AdminToken::new(&stored), TokenSource::Stored(path)));
        }
    }
    let token = SecretString::from(generate_token()?);
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
    file.write_all(token.expose_secret().as_bytes())?;
    file.sync_all()?;
    Ok((AdminToken::new(&token), TokenSource::Generated(path, token)))
}

/// Refuses requests without `Authorization: Bearer <admin token>` or a dashboard session.
/// Bearer tokens count against the client's address like logins do.
pub async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = presented else {
        if super::session::session_of(&state, request.headers()).is_some() {
            return next.run(request).await;
        }
        return unauthorized(
            "send Authorization: Bearer <admin token> (auth.admin_token, or data_dir/admin_token)",
        );
    };
    let client =
        Client::Address(super::client::client_ip(&request, &state.settings().server.trusted_proxies));
    match state.attempts.try_token(client, "bearer", || state.admin_token.matches(token.trim())) {
        Verdict::Admin => next.run(request).await,
        Verdict::Wrong => unauthorized("the bearer token is not the admin token"),
        Verdict::Locked => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(serde_json::json!({ "error": "too many wrong admin tokens from your address; wait a minute" })),
            )
                .into_response();
            response.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("60"));
            response
        }
    }
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}
