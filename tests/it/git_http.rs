//! A git remote over smart HTTP (`git http-backend` behind a small server) that demands
//! Basic credentials, as GitHub does, and records every user and password it was given, so
//! that tests can check what forgehand pushed with.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

/// A running smart-HTTP git server over the bare repositories under a root directory.
pub struct GitHttp {
    /// `http://127.0.0.1:PORT`: a repository `x.git` under the root is at `{url}/x.git`.
    pub url: String,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

#[derive(Clone)]
struct Served {
    root: PathBuf,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl GitHttp {
    pub async fn start(root: PathBuf) -> GitHttp {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Served { root, seen: seen.clone() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new().fallback(serve).with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        GitHttp { url, seen }
    }

    /// Every `(user, password)` a request carried, in order.
    pub fn credentials(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(openssl::base64::decode_block(value.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

async fn serve(
    State(served): State<Served>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((user, password)) = basic(&headers).filter(|(_, p)| !p.is_empty()) else {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"git\"")],
            "credentials needed",
        )
            .into_response();
    };
    served.seen.lock().unwrap().push((user.clone(), password));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", &served.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("REQUEST_METHOD", method.as_str())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", &user)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child.wait_with_output().await.unwrap();
    let _ = writer.await;
    cgi_response(&output.stdout)
}

/// The HTTP response a CGI program's output describes.
fn cgi_response(out: &[u8]) -> Response {
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let split = split.or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, gap)) = split else { return (StatusCode::BAD_GATEWAY, "no CGI headers").into_response() };
    let mut status = StatusCode::OK;
    let mut builder = Response::builder();
    for line in String::from_utf8_lossy(&out[..at]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value.split(' ').next().and_then(|s| s.parse().ok()).unwrap_or(StatusCode::OK);
        } else {
            builder = builder.header(name, value);
        }
    }
    builder.status(status).body(axum::body::Body::from(out[at + gap..].to_vec())).unwrap()
}
