//! The HTTP edge under hostile clients: slow headers, slow bodies, too many connections.
//! Each test checks that a real signed delivery still gets through.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::harness::*;

/// An app whose `[server]` section also carries `server_keys`.
async fn spawn_server_with(server_keys: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("data"), "").await;
    let text = text.replacen("[server]\n", &format!("[server]\n{server_keys}\n"), 1);
    TestApp::spawn_config(dir, &text).await
}

fn address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Sends a real signed delivery and checks it is queued within `within`.
async fn assert_delivery_succeeds(app: &TestApp, within: Duration) -> Duration {
    let started = Instant::now();
    let delivery = Delivery::github("issues", fixture("github/issues_labeled.json"));
    let answer = tokio::time::timeout(within, app.deliver("github", delivery))
        .await
        .unwrap_or_else(|_| panic!("a real delivery took longer than {within:?}"));
    assert_eq!((answer.status, answer.outcome()), (202, "task_created"), "{}", answer.text);
    started.elapsed()
}

/// Writes `bytes` one at a time, `pause` apart, until the server closes the connection;
/// returns how long the connection stayed open and what the server sent back.
async fn drip(stream: TcpStream, bytes: Vec<u8>, pause: Duration) -> (Duration, String) {
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        (started.elapsed(), String::from_utf8_lossy(&answer).into_owned())
    });
    for byte in bytes.iter().cycle() {
        if reader.is_finished() || write.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    reader.await.unwrap()
}

#[tokio::test]
async fn slow_headers_are_cut_off_while_real_deliveries_pass() {
    let app = spawn_server_with("header_timeout_secs = 2").await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    stream.write_all(b"POST /webhooks/github HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let slowloris = tokio::spawn(drip(stream, b"x-padding: aaaaaaaa".to_vec(), Duration::from_millis(500)));

    let took = assert_delivery_succeeds(&app, Duration::from_secs(2)).await;
    let (open_for, answer) = slowloris.await.unwrap();
    eprintln!("slow headers: cut off after {open_for:?}; a real delivery meanwhile took {took:?}");
    assert!(open_for >= Duration::from_millis(1500), "cut off too early: {open_for:?}");
    assert!(open_for < Duration::from_secs(5), "a client dripping headers was served for {open_for:?}");
    assert!(!answer.contains("202"), "the slow request was served: {answer}");
    assert_eq!(app.deliveries().await.len(), 1);
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_408() {
    let app = spawn_server_with("body_timeout_secs = 2").await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let head = "POST /webhooks/github HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                x-github-event: issues\r\nx-github-delivery: slow-1\r\n\
                x-hub-signature-256: sha256=00\r\ncontent-length: 4000\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    let slow_body = tokio::spawn(drip(stream, b"\"a\": 1, ".to_vec(), Duration::from_millis(500)));

    let took = assert_delivery_succeeds(&app, Duration::from_secs(2)).await;
    let (open_for, answer) = slow_body.await.unwrap();
    eprintln!("slow body: answered after {open_for:?}; a real delivery meanwhile took {took:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "expected 408, got {answer:?}");
    assert!(answer.contains("server.body_timeout_secs (2 s)"), "{answer}");
    assert!(open_for >= Duration::from_millis(1500), "answered too early: {open_for:?}");
    assert!(open_for < Duration::from_secs(5), "a body dripping in was read for {open_for:?}");
    let deliveries = app.deliveries().await;
    assert_eq!(deliveries.len(), 1, "the slow delivery was recorded");
    assert_ne!(deliveries[0].delivery_id, "slow-1");
}

#[tokio::test]
async fn connections_over_the_limit_wait_until_one_closes() {
    let app = spawn_server_with("max_connections = 3\nheader_timeout_secs = 60").await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(address(&app)).await.unwrap());
    }
    // Every slot is held by an idle connection: the delivery waits in the backlog.
    let delivery = Delivery::github("issues", fixture("github/issues_labeled.json"));
    let mut pending = Box::pin(app.deliver("github", delivery));
    let waited = tokio::time::timeout(Duration::from_millis(1500), &mut pending).await;
    assert!(waited.is_err(), "a connection over max_connections was served: {waited:?}");

    drop(idle.pop());
    let freed = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(3), pending)
        .await
        .expect("the waiting delivery was not served once a connection closed");
    eprintln!("connection limit: the waiting delivery was served {:?} after a slot freed", freed.elapsed());
    assert_eq!((answer.status, answer.outcome()), (202, "task_created"), "{}", answer.text);
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let app = TestApp::spawn().await;
    let body = fixture("github/issues_labeled.json");
    let delivery = Delivery::github("issues", body.clone());
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let mut head = format!(
        "POST /webhooks/github HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in &delivery.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // "100 Continue" comes when the handler starts reading the body: the request is in flight.
    let mut continued = [0u8; 25];
    stream.read_exact(&mut continued).await.unwrap();
    assert!(continued.starts_with(b"HTTP/1.1 100 Continue"), "{:?}", String::from_utf8_lossy(&continued));

    let db = app.db.clone();
    let stopping = tokio::spawn(app.stop());
    stream.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.trim_start().starts_with("HTTP/1.1 202"),
        "the request in flight was not finished: {answer}"
    );
    tokio::time::timeout(Duration::from_secs(10), stopping).await.unwrap().unwrap();
    assert_eq!(db.recent_deliveries(10).await.unwrap().len(), 1);
}
