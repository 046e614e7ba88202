//! The static CSS and JS the pages use, served with a version in their URL, and the icon
//! browsers ask for at `/favicon.ico`.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const STYLE: &str = include_str!("../../../static/app.css");
const SCRIPT: &str = include_str!("../../../static/app.js");
const ICON: &[u8] = include_bytes!("../../../static/favicon.ico");

/// A short digest of the static files, so that their URLs change when they do.
pub fn asset_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{STYLE}{SCRIPT}").as_bytes());
        hex::encode(&digest[..6])
    })
}

/// `GET /static/app.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /static/app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /favicon.ico`: asked for by every browser on every page, without a session.
pub async fn favicon() -> Response {
    let headers = [(header::CONTENT_TYPE, "image/x-icon"), (header::CACHE_CONTROL, "public, max-age=86400")];
    (headers, ICON).into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        // URLs carry the version: a changed file gets a new URL.
        (header::CACHE_CONTROL, "public, max-age=604800, immutable"),
    ];
    (headers, body).into_response()
}
