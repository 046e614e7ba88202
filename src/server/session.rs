//! Browser sessions: the login page exchanges the admin token for a session cookie, every
//! page checks it, and every form that changes something carries the session's CSRF
//! token. Sessions live in memory: a restart logs people out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Form;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::attempts::{Client, Verdict};
use super::pages;

/// The cookie carrying the session id.
pub const SESSION_COOKIE: &str = "forgehand_session";
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The cookie by which a browser that logged in before is known at `/login` (see
/// [`super::attempts::Client::Device`]).
pub const DEVICE_COOKIE: &str = "forgehand_device";
/// How long a browser keeps its device cookie (400 days, the most browsers allow).
const DEVICE_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

/// The value of every response's Content-Security-Policy: no inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Live sessions.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

#[derive(Clone)]
struct Session {
    csrf: String,
    expires: Instant,
}

/// The session of the request, put in its extensions by [`require_session`].
#[derive(Clone, Debug)]
pub struct CurrentSession {
    /// The token every state-changing form of this session must send back.
    pub csrf: String,
}

impl Sessions {
    fn create(&self) -> std::io::Result<String> {
        let id = crate::token::generate_token()?;
        let csrf = crate::token::generate_token()?;
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        live.retain(|_, s| s.expires > now);
        live.insert(id.clone(), Session { csrf, expires: now + SESSION_TTL });
        Ok(id)
    }

    fn get(&self, id: &str) -> Option<CurrentSession> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let session = live.get(id).filter(|s| s.expires > Instant::now())?;
        Some(CurrentSession { csrf: session.csrf.clone() })
    }

    fn remove(&self, id: &str) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// Whether the session `session` was read from is still live (not logged out, not
    /// expired): long-lived responses ask this as they go.
    pub fn alive(&self, session: &CurrentSession) -> bool {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        live.values().any(|s| s.csrf == session.csrf && s.expires > now)
    }
}

/// The session a request's cookie names, if it is live.
pub fn session_of(state: &AppState, headers: &HeaderMap) -> Option<CurrentSession> {
    let id = cookie(headers, SESSION_COOKIE)?;
    state.sessions.get(&id)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Lets requests with a live session through, with [`CurrentSession`] in their
/// extensions; sends the others to the login page.
pub async fn require_session(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    match session_of(&state, request.headers()) {
        Some(session) => {
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        None => Redirect::to("/login").into_response(),
    }
}

/// Whether `presented` is the session's CSRF token; a refusal page otherwise.
pub fn check_csrf(session: &CurrentSession, presented: &str) -> Result<(), pages::Refusal> {
    let expected: [u8; 32] = Sha256::digest(session.csrf.as_bytes()).into();
    let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    if !presented.is_empty() && expected == got {
        return Ok(());
    }
    Err(pages::Refusal {
        status: StatusCode::FORBIDDEN,
        heading: "Form expired",
        message: "This form did not carry a valid security token. Reload the page and try again.".into(),
    })
}

/// Adds the security headers to every response.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: Option<String>,
    error: Option<&'static str>,
}

/// `GET /login`.
pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if session_of(&state, &headers).is_some() {
        return Redirect::to("/").into_response();
    }
    pages::render(StatusCode::OK, &LoginPage { csrf: None, error: None })
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /login`: a new session for the admin token, a refusal otherwise. Wrong tokens
/// count against the client (its device cookie, else its address) together with wrong
/// Bearer tokens.
pub async fn login(State(state): State<AppState>, request: Request) -> Response {
    let trusted = state.settings().server.trusted_proxies.clone();
    let ip = super::client::client_ip(&request, &trusted);
    let peer = ip.to_string();
    let address = Client::Address(ip);
    let known_device = cookie(request.headers(), DEVICE_COOKIE).and_then(|id| state.attempts.device(&id));
    let Ok(Form(form)) = Form::<LoginForm>::from_request(request, &()).await else {
        return pages::error_page(StatusCode::BAD_REQUEST, "Bad login form", "Send the form from /login.");
    };
    let client = known_device.unwrap_or(address);
    match state.attempts.try_token(client, "login", || state.admin_token.matches(form.token.trim())) {
        Verdict::Admin => super::audit(&state, "admin", "login", "dashboard", "", &peer).await,
        Verdict::Locked => {
            super::audit(
                &state,
                "anonymous",
                "login_failed",
                "dashboard",
                "locked: too many attempts",
                &peer,
            )
            .await;
            return too_many_attempts();
        }
        Verdict::Wrong => {
            super::audit(&state, "anonymous", "login_failed", "dashboard", "wrong token", &peer).await;
            let page = LoginPage {
                csrf: None,
                error: Some(
                    "That is not the admin token (auth.admin_token, or the file data_dir/admin_token).",
                ),
            };
            return pages::render(StatusCode::UNAUTHORIZED, &page);
        }
    }
    let created = state.sessions.create().and_then(|id| {
        let device = if known_device.is_some() { None } else { Some(state.attempts.new_device()?) };
        Ok((id, device))
    });
    let (id, device) = match created {
        Ok(created) => created,
        Err(err) => {
            tracing::error!(error = %err, "cannot create a session id");
            return pages::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Login failed", "Try again.");
        }
    };
    let secure = if state.settings().server.public_url.starts_with("https://") { "; Secure" } else { "" };
    let max_age = SESSION_TTL.as_secs();
    let mut cookies =
        vec![format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")];
    if let Some(device) = device {
        let max_age = DEVICE_TTL.as_secs();
        cookies.push(format!(
            "{DEVICE_COOKIE}={device}; Path=/login; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ));
    }
    see_other("/", cookies)
}

/// `POST /logout`.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Form<pages::CsrfForm>,
) -> Response {
    let Some(session) = session_of(&state, &headers) else {
        return Redirect::to("/login").into_response();
    };
    if let Err(refused) = check_csrf(&session, &form.csrf) {
        return refused.into_response();
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        state.sessions.remove(&id);
        state.drafts.forget(&session);
    }
    super::audit(&state, "admin", "logout", "dashboard", "", "").await;
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    see_other("/login", vec![expired])
}

fn see_other(to: &str, cookies: Vec<String>) -> Response {
    let mut response = Redirect::to(to).into_response();
    for value in cookies.iter().filter_map(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn too_many_attempts() -> Response {
    let mut response = pages::error_page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many login attempts",
        "Too many wrong tokens from your address. Wait a minute, then try again.",
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    response
}
