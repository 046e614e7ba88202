//! The dashboard and the scale curve: for each database size, a fresh database filled with
//! that many tasks (one every 10 s of history, so the last day and week hold the same
//! number of tasks whatever the size) and ten times as many deliveries, the latency of the pages people open, and intake
//! throughput on that database.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::load::{self, Target, quantile};
use crate::payload::Template;
use crate::procs::{self, TempDir};
use crate::{SECRET, db};

/// The admin token of every benchmark config (a benchmark value, not a credential).
const ADMIN_TOKEN: &str = "bench-admin-token-not-a-secret";

/// Deliveries in the database for each task in it (most deliveries start nothing).
pub const DELIVERIES_PER_TASK: u64 = 10;

/// Lines in the transcript of the newest task.
pub const TRANSCRIPT_LINES: u64 = 50_000;

/// Latency of one page over repeated sequential requests.
#[derive(Debug, Clone)]
pub struct PageTiming {
    pub name: &'static str,
    pub median_ms: f64,
    pub p99_ms: f64,
}

/// Everything measured at one database size.
#[derive(Debug, Clone)]
pub struct ScalePoint {
    pub tasks: u64,
    pub fill_secs: f64,
    pub pages: Vec<PageTiming>,
    pub intake_rps: f64,
    pub intake_p99_ms: f64,
}

/// Measures every size in `sizes`; `requests` GETs per page, `deliveries` for intake.
pub async fn run(
    binary: &Path,
    template: &Template,
    sizes: &[u64],
    requests: usize,
    deliveries: usize,
    serial: &mut u64,
) -> anyhow::Result<Vec<ScalePoint>> {
    let mut points = Vec::new();
    for &tasks in sizes {
        let dir = TempDir::new(&format!("scale-{tasks}"))?;
        let config = procs::forgehand_config(&dir.0, SECRET)?;
        crate::migrate(binary, &config).await?;
        let file = dir.0.join("data").join("forgehand.db");
        let filling = Instant::now();
        db::fill_history(&file, tasks).await?;
        db::fill_deliveries(&file, tasks * DELIVERIES_PER_TASK).await?;
        db::fill_transcript(&file, tasks, TRANSCRIPT_LINES).await?;
        let fill_secs = filling.elapsed().as_secs_f64();
        let server = procs::start_forgehand(binary, &config).await?;
        let pages = measure_pages(&server.addr, tasks, requests).await?;
        let target = Target {
            name: "forgehand",
            url: format!("http://{}/webhooks/github", server.addr),
            warm_url: format!("http://{}/", server.addr),
            pid: None,
        };
        let batch: Vec<_> =
            (0..deliveries).map(|i| template.delivery(SECRET.as_bytes(), *serial + i as u64)).collect();
        *serial += deliveries as u64;
        let result = load::run(&target, batch, 16, Duration::from_secs(10)).await;
        let mut latencies = result.latencies_us.clone();
        latencies.sort_unstable();
        server.kill().await;
        eprintln!(
            "scale: {tasks} tasks (filled in {fill_secs:.1} s): intake {:.0} req/s; {}",
            result.rps(),
            pages
                .iter()
                .map(|p| format!("{} {:.1}/{:.1} ms", p.name, p.median_ms, p.p99_ms))
                .collect::<Vec<_>>()
                .join(", ")
        );
        points.push(ScalePoint {
            tasks,
            fill_secs,
            pages,
            intake_rps: result.rps(),
            intake_p99_ms: f64::from(quantile(&latencies, 0.99)) / 1000.0,
        });
    }
    Ok(points)
}

/// The pages measured, with the URL path of each (`{last}` is the newest task's id).
fn pages(last: u64) -> Vec<(&'static str, String)> {
    vec![
        ("/", "/".into()),
        ("/?status=failed", "/?status=failed".into()),
        ("/?q=text", "/?q=number%20999".into()),
        ("/api/tasks", "/api/tasks".into()),
        ("/api/tasks?status=queued", "/api/tasks?status=queued".into()),
        ("task page, 50k-line transcript", format!("/tasks/{last}")),
        ("/deliveries", "/deliveries".into()),
        ("/deliveries?outcome=task_created", "/deliveries?outcome=task_created".into()),
        ("/metrics", "/metrics".into()),
    ]
}

async fn measure_pages(addr: &str, tasks: u64, requests: usize) -> anyhow::Result<Vec<PageTiming>> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let cookie = login(&client, addr).await?;
    let mut timings = Vec::new();
    for (name, path) in pages(tasks) {
        let url = format!("http://{addr}{path}");
        let mut latencies = Vec::with_capacity(requests);
        for _ in 0..requests + 1 {
            let started = Instant::now();
            let response = client
                .get(&url)
                .header("cookie", &cookie)
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            if !status.is_success() {
                bail!(
                    "GET {path} answered {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                );
            }
        }
        latencies.remove(0); // the first request warms the page cache
        latencies.sort_by(f64::total_cmp);
        timings.push(PageTiming {
            name,
            median_ms: quantile(&latencies, 0.5),
            p99_ms: quantile(&latencies, 0.99),
        });
    }
    Ok(timings)
}

/// Logs in to the dashboard with the admin token; the session cookie.
async fn login(client: &reqwest::Client, addr: &str) -> anyhow::Result<String> {
    let response = client
        .post(format!("http://{addr}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await?;
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .with_context(|| {
            format!("the dashboard login answered {} without a session cookie", response.status())
        })?;
    Ok(cookie)
}
