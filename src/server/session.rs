//! Browser sessions: the login page exchanges the admin token for a session cookie, every
//! page checks it, and every form that changes something carries the session's CSRF
//! token. Sessions live in memory: a restart logs people out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::pages;

/// The cookie carrying the session id.
pub const SESSION_COOKIE: &str = "forgehand_session";
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed logins allowed per client address within [`LOGIN_WINDOW`].
pub const MAX_FAILED_LOGINS: usize = 5;
/// The window failed logins are counted in.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// The value of every response's Content-Security-Policy: no inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Live sessions and recent failed logins.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
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

    /// Whether `client` has used up its failed logins for now.
    fn locked_out(&self, client: IpAddr) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        failures.retain(|_, times| {
            times.retain(|t| now.duration_since(*t) < LOGIN_WINDOW);
            !times.is_empty()
        });
        failures.get(&client).is_some_and(|times| times.len() >= MAX_FAILED_LOGINS)
    }

    fn record_failure(&self, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.entry(client).or_default().push(Instant::now());
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

/// `POST /login`: a new session for the admin token, a refusal otherwise.
pub async fn login(State(state): State<AppState>, request: Request) -> Response {
    let client = client_ip(&request, &state.settings().server.trusted_proxies);
    if state.sessions.locked_out(client) {
        return too_many_attempts();
    }
    let Ok(Form(form)) = Form::<LoginForm>::from_request(request, &()).await else {
        return pages::error_page(StatusCode::BAD_REQUEST, "Bad login form", "Send the form from /login.");
    };
    if !state.admin_token.matches(form.token.trim()) {
        state.sessions.record_failure(client);
        tracing::warn!(%client, "dashboard login with a wrong token");
        let page = LoginPage {
            csrf: None,
            error: Some("That is not the admin token (auth.admin_token, or the file data_dir/admin_token)."),
        };
        return pages::render(StatusCode::UNAUTHORIZED, &page);
    }
    let id = match state.sessions.create() {
        Ok(id) => id,
        Err(err) => {
            tracing::error!(error = %err, "cannot create a session id");
            return pages::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Login failed", "Try again.");
        }
    };
    let secure = if state.settings().server.public_url.starts_with("https://") { "; Secure" } else { "" };
    let max_age = SESSION_TTL.as_secs();
    let cookie =
        format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    see_other("/", Some(cookie))
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
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    see_other("/login", Some(expired))
}

fn see_other(to: &str, cookie: Option<String>) -> Response {
    let mut response = Redirect::to(to).into_response();
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
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

/// The address failed logins are counted against: the connection's peer, or, when the
/// peer is a trusted proxy, the right-most `X-Forwarded-For` address that is not one
/// (entries further left are whatever the client sent). IPv6 clients count per /64,
/// the block one host usually has.
fn client_ip(request: &Request, trusted_proxies: &[IpAddr]) -> IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let client = if trusted_proxies.contains(&peer) {
        forwarded_for(request.headers(), trusted_proxies)
    } else {
        None
    };
    rate_key(client.unwrap_or(peer))
}

/// The right-most `X-Forwarded-For` address that is not a trusted proxy.
pub(crate) fn forwarded_for(headers: &HeaderMap, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.into_iter().rev() {
        let ip = hop.parse::<IpAddr>().ok()?;
        if !trusted_proxies.contains(&ip) {
            return Some(ip);
        }
    }
    None
}

fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: &[&str]) -> Request {
        let mut builder = Request::builder().uri("/login");
        for value in forwarded {
            builder = builder.header("x-forwarded-for", *value);
        }
        let mut request = builder.body(axum::body::Body::empty()).unwrap();
        request.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        request
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_peer_counts_unless_it_is_a_trusted_proxy() {
        let proxy = [ip("10.0.0.2")];
        assert_eq!(client_ip(&request("198.51.100.9:5000", &["203.0.113.7"]), &[]), ip("198.51.100.9"));
        assert_eq!(client_ip(&request("198.51.100.9:5000", &["203.0.113.7"]), &proxy), ip("198.51.100.9"));
        assert_eq!(client_ip(&request("10.0.0.2:5000", &["203.0.113.7"]), &proxy), ip("203.0.113.7"));
        assert_eq!(client_ip(&request("10.0.0.2:5000", &[]), &proxy), ip("10.0.0.2"));
    }

    #[test]
    fn a_forged_left_part_of_the_header_is_ignored() {
        let proxies = [ip("10.0.0.2"), ip("10.0.0.3")];
        let chained = request("10.0.0.2:1", &["1.2.3.4, 203.0.113.7", "10.0.0.3"]);
        assert_eq!(client_ip(&chained, &proxies), ip("203.0.113.7"));
        let garbage = request("10.0.0.2:1", &["1.2.3.4, not-an-ip"]);
        assert_eq!(client_ip(&garbage, &proxies), ip("10.0.0.2"), "an unreadable hop: the proxy counts");
    }

    #[test]
    fn ipv6_clients_count_per_64_block() {
        let a = client_ip(&request("[2001:db8:1:2::1]:1", &[]), &[]);
        let b = client_ip(&request("[2001:db8:1:2:ffff::9]:1", &[]), &[]);
        let other = client_ip(&request("[2001:db8:1:3::1]:1", &[]), &[]);
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(client_ip(&request("[::ffff:192.0.2.1]:1", &[]), &[]), ip("192.0.2.1"));
    }
}
