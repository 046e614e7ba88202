//! The ceiling: the least a webhook receiver can do (read the body, verify the HMAC,
//! answer), with no database. forgehand's intake is measured against it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// Serves `POST /webhooks/{forge}` on an ephemeral loopback port and prints
/// `listening <addr>` on stdout once it accepts connections.
pub async fn serve(secret: String) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/webhooks/{forge}", post(receive))
        .layer(DefaultBodyLimit::max(26_214_400))
        .with_state(secret.into_bytes().into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn receive(State(secret): State<std::sync::Arc<[u8]>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok()).unwrap_or("");
    if crate::payload::verify(&secret, &body, signature) { StatusCode::OK } else { StatusCode::UNAUTHORIZED }
}
