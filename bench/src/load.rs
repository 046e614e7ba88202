//! The load generator: N keep-alive connections replaying pre-signed deliveries, bounded
//! in request count and in time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Barrier;

use crate::payload::Delivery;

/// Where to send, and which headers the receiver expects.
#[derive(Clone)]
pub struct Target {
    pub name: &'static str,
    pub url: String,
    /// A cheap GET that opens each connection before the clock starts.
    pub warm_url: String,
    /// The server's process, whose threads' CPU time the intake runs read.
    pub pid: Option<u32>,
}

/// What one run measured.
#[derive(Debug, Default, Clone)]
pub struct RunResult {
    pub sent: usize,
    /// 2xx answers, and among them 202 (forgehand: a task was queued).
    pub ok: usize,
    pub accepted: usize,
    pub failed: usize,
    pub elapsed: Duration,
    /// Latency of every answered request, in microseconds.
    pub latencies_us: Vec<u32>,
    /// CPU the server used during the run, when its process is known.
    pub cpu: Option<crate::procs::ThreadCpu>,
}

impl RunResult {
    fn count(&mut self, status: Option<reqwest::StatusCode>) {
        self.sent += 1;
        match status {
            Some(status) if status.is_success() => {
                self.ok += 1;
                if status == reqwest::StatusCode::ACCEPTED {
                    self.accepted += 1;
                }
            }
            _ => self.failed += 1,
        }
    }

    fn add(&mut self, part: RunResult) {
        self.sent += part.sent;
        self.ok += part.ok;
        self.accepted += part.accepted;
        self.failed += part.failed;
        self.latencies_us.extend(part.latencies_us);
    }

    /// Completed requests per second.
    pub fn rps(&self) -> f64 {
        (self.ok + self.failed) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends `deliveries` to `target` over `connections` connections until all are sent or
/// `max_time` has passed.
pub async fn run(
    target: &Target,
    deliveries: Vec<Delivery>,
    connections: usize,
    max_time: Duration,
) -> RunResult {
    drive(target, deliveries, connections, Pace::AsFastAsAnswered { max_time }).await
}

/// Sends `deliveries` to `target` at a fixed `rate` (requests per second) over
/// `connections` connections, the n-th at `start + n / rate`. A request sent late because
/// its connection was still waiting for an answer counts from when it was due, so a
/// server that falls behind shows it (no coordinated omission).
pub async fn run_at_rate(
    target: &Target,
    deliveries: Vec<Delivery>,
    connections: usize,
    rate: f64,
) -> RunResult {
    drive(target, deliveries, connections, Pace::Fixed { rate }).await
}

/// When each connection sends its next request.
#[derive(Clone, Copy)]
enum Pace {
    /// As soon as the previous answer arrived (closed loop), until `max_time` has passed.
    AsFastAsAnswered { max_time: Duration },
    /// The n-th request of the run at `start + n / rate` (open loop).
    Fixed { rate: f64 },
}

async fn drive(target: &Target, deliveries: Vec<Delivery>, connections: usize, pace: Pace) -> RunResult {
    let deliveries = Arc::new(deliveries);
    let next = Arc::new(AtomicUsize::new(0));
    // Every connection is open before the clock starts: connection setup is not intake.
    let (ready, go) = (Arc::new(Barrier::new(connections + 1)), Arc::new(Barrier::new(connections + 1)));
    let start = Arc::new(std::sync::OnceLock::new());
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (deliveries, next, target, start) =
                (deliveries.clone(), next.clone(), target.clone(), start.clone());
            let (ready, go) = (ready.clone(), go.clone());
            tokio::spawn(async move {
                let client = connect(&target.warm_url).await;
                ready.wait().await;
                go.wait().await;
                let start: Instant = *start.get().expect("set before the barrier opens");
                worker(&client, &target.url, &deliveries, &next, start, pace).await
            })
        })
        .collect();
    ready.wait().await;
    let _ = start.set(Instant::now());
    go.wait().await;
    let mut total = RunResult::default();
    for worker in workers {
        total.add(worker.await.expect("a load worker panicked"));
    }
    total.elapsed = start.get().map_or(Duration::ZERO, Instant::elapsed);
    total
}

/// A client holding one open connection, made by a GET on `warm_url`.
async fn connect(warm_url: &str) -> reqwest::Client {
    // One client per worker, one idle connection each: N workers hold N connections.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain HTTP client builds");
    if let Ok(response) = client.get(warm_url).send().await {
        let _ = response.bytes().await;
    }
    client
}

async fn worker(
    client: &reqwest::Client,
    url: &str,
    deliveries: &[Delivery],
    next: &AtomicUsize,
    start: Instant,
    pace: Pace,
) -> RunResult {
    let mut result = RunResult::default();
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(delivery) = deliveries.get(index) else { return result };
        let from = match pace {
            Pace::AsFastAsAnswered { max_time } if start.elapsed() >= max_time => return result,
            Pace::AsFastAsAnswered { .. } => Instant::now(),
            Pace::Fixed { rate } => {
                let due = start + Duration::from_secs_f64(index as f64 / rate);
                // Early: wait, and count from the send (tokio's timer wakes up to 1 ms
                // late, which is not the server's doing). Late, because the previous
                // answer on this connection came after this one was due: count from due.
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                } else {
                    due
                }
            }
        };
        let status = send(client, url, delivery).await;
        result.latencies_us.push(from.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        result.count(status);
    }
}

/// Posts one delivery and reads the whole answer (so the connection is reused); its
/// status, or `None` when the request failed.
async fn send(client: &reqwest::Client, url: &str, delivery: &Delivery) -> Option<reqwest::StatusCode> {
    let answer = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", "issues")
        .header("x-github-delivery", &delivery.id)
        .header("x-hub-signature-256", &delivery.signature)
        .body(delivery.body.clone())
        .send()
        .await
        .ok()?;
    let status = answer.status();
    let _ = answer.bytes().await;
    Some(status)
}

/// The `q` quantile (0..=1) of `sorted`, nearest rank.
pub fn quantile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&values, 0.5), 50);
        assert_eq!(quantile(&values, 0.99), 99);
        assert_eq!(quantile(&values, 1.0), 100);
        assert_eq!(quantile::<u32>(&[], 0.5), 0);
    }
}
