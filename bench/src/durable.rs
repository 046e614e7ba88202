//! The durable ceiling: the least a webhook receiver that never loses a delivery must do.
//! It verifies the HMAC, parses the payload, inserts one row per delivery into SQLite
//! (WAL, `synchronous=FULL`) with group commit on one writer thread, and answers only
//! after the batch's commit. forgehand's intake does this and more (trigger rules, tasks,
//! duplicates, refusals); the ratio between the two is the cost of that more.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// Most deliveries one transaction commits (forgehand's writer uses the same bound).
const MAX_BATCH: usize = 128;

/// One delivery's row.
struct Row {
    delivery_id: String,
    event: String,
    action: String,
    repo: String,
    number: Option<i64>,
    sender: String,
    done: oneshot::Sender<bool>,
}

#[derive(Clone)]
struct Ceiling {
    secret: Arc<[u8]>,
    queue: mpsc::Sender<Row>,
}

/// Serves `POST /webhooks/{forge}` on an ephemeral loopback port with its database in
/// `dir`, and prints `listening <addr>` on stdout once it accepts connections.
pub async fn serve(secret: String, dir: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir)?;
    let conn = open(&dir.join("durable.db"))?;
    let (queue, receiver) = mpsc::channel(1024);
    // Named as forgehand's writer, so that the CPU figures split both servers alike.
    std::thread::Builder::new()
        .name(crate::procs::WRITER_THREAD.into())
        .spawn(move || write(conn, receiver))?;
    let state = Ceiling { secret: secret.into_bytes().into(), queue };
    let app = Router::new()
        .route("/webhooks/{forge}", post(receive))
        .layer(DefaultBodyLimit::max(26_214_400))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn open(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS deliveries (id INTEGER PRIMARY KEY, delivery_id TEXT NOT NULL UNIQUE,
           event TEXT NOT NULL, action TEXT NOT NULL, repo TEXT NOT NULL, number INTEGER, sender TEXT NOT NULL);",
    )?;
    Ok(conn)
}

async fn receive(State(ceiling): State<Ceiling>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !crate::payload::verify(&ceiling.secret, &body, header("x-hub-signature-256")) {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else { return StatusCode::BAD_REQUEST };
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let (done, answer) = oneshot::channel();
    let row = Row {
        delivery_id: header("x-github-delivery").to_owned(),
        event: header("x-github-event").to_owned(),
        action: text(&payload["action"]),
        repo: text(&payload["repository"]["full_name"]),
        number: payload["issue"]["number"].as_i64(),
        sender: text(&payload["sender"]["login"]),
        done,
    };
    if ceiling.queue.send(row).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match answer.await {
        Ok(true) => StatusCode::OK,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The writer thread: takes what waits (up to `MAX_BATCH`), commits it, answers each.
fn write(mut conn: rusqlite::Connection, mut receiver: mpsc::Receiver<Row>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        let committed = commit(&mut conn, &batch).is_ok();
        for row in batch.drain(..) {
            let _ = row.done.send(committed);
        }
    }
}

fn commit(conn: &mut rusqlite::Connection, batch: &[Row]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO deliveries (delivery_id, event, action, repo, number, sender) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT DO NOTHING",
        )?;
        for row in batch {
            insert.execute(rusqlite::params![
                row.delivery_id,
                row.event,
                row.action,
                row.repo,
                row.number,
                row.sender
            ])?;
        }
    }
    tx.commit()
}
