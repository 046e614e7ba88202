//! What every request passes before its route. Bodies of routes other than
//! `/webhooks/*` are small forms: they are read here, capped at [`FORM_MAX_BYTES`] and
//! within `server.body_timeout_secs`, by at most [`form_readers`] connections at once, so
//! that clients stalling in a form body can never hold the connection slots deliveries
//! need. Webhook bodies are read by their handler under the same timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

use super::AppState;
use super::pages::error_page;

/// The largest body a form route accepts (the wizard's longest form is far smaller).
pub const FORM_MAX_BYTES: usize = 32 * 1024;

/// How many connections may be reading a form body at once: `max_connections` less a
/// quarter (at least one) kept for webhook deliveries.
pub fn form_readers(max_connections: usize) -> usize {
    let kept_for_webhooks = (max_connections / 4).max(1);
    max_connections.saturating_sub(kept_for_webhooks).max(1)
}

/// The permits of [`form_readers`].
pub struct FormReaders(Arc<Semaphore>);

impl FormReaders {
    /// Permits for a server of `max_connections`.
    pub fn new(max_connections: usize) -> FormReaders {
        FormReaders(Arc::new(Semaphore::new(form_readers(max_connections))))
    }
}

/// Notes untrusted proxies, then reads the body of a form route in full (see the module
/// documentation) before handing the request on.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    super::client::note_forwarding(&state, &request);
    if request.uri().path().starts_with("/webhooks/") || request.body().size_hint().exact() == Some(0) {
        return next.run(request).await;
    }
    let Ok(permit) = state.form_readers.0.clone().try_acquire_owned() else {
        busy_warning();
        return closing(error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "forgehand is reading too many other requests right now. Try again in a few seconds.",
        ));
    };
    let timeout_secs = state.settings().server.body_timeout_secs;
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(Duration::from_secs(timeout_secs), to_bytes(body, FORM_MAX_BYTES)).await;
    drop(permit);
    match read {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(err)) if super::webhook::is_length_limit(&err) => closing(error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Form too large",
            &format!("Forms are at most {FORM_MAX_BYTES} bytes. Send the form from its page."),
        )),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "a form body could not be read");
            closing(error_page(
                StatusCode::BAD_REQUEST,
                "Broken form",
                "The form could not be read. Send it again.",
            ))
        }
        Err(_) => {
            tracing::warn!(path = %parts.uri.path(), "a form body was not received within server.body_timeout_secs");
            closing(error_page(
                StatusCode::REQUEST_TIMEOUT,
                "Too slow",
                &format!(
                    "The form was not received within {timeout_secs} s (server.body_timeout_secs). Send it again."
                ),
            ))
        }
    }
}

/// Warns that form bodies are being refused, at most once a minute: under a flood of
/// stalled forms a line per refusal would flood the log instead.
fn busy_warning() {
    static LAST_WARNED: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST_WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
        return;
    }
    *last = Some(std::time::Instant::now());
    tracing::warn!(
        "form bodies are refused (503): every form reader is busy, a quarter of server.max_connections \
         being kept for webhooks; this warning repeats at most once a minute"
    );
}

/// `response`, ending its connection: a body left unread must not be taken for the next
/// request.
pub fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
