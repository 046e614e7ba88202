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
}

impl RunResult {
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
    let deliveries = Arc::new(deliveries);
    let next = Arc::new(AtomicUsize::new(0));
    // Every connection is open before the clock starts: connection setup is not intake.
    let ready = Arc::new(Barrier::new(connections + 1));
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (deliveries, next, ready, target) =
                (deliveries.clone(), next.clone(), ready.clone(), target.clone());
            tokio::spawn(async move {
                let client = connect(&target.warm_url).await;
                ready.wait().await;
                worker(&client, &target.url, &deliveries, &next, Instant::now() + max_time).await
            })
        })
        .collect();
    ready.wait().await;
    let start = Instant::now();
    let mut total = RunResult::default();
    for worker in workers {
        let part = worker.await.expect("a load worker panicked");
        total.sent += part.sent;
        total.ok += part.ok;
        total.accepted += part.accepted;
        total.failed += part.failed;
        total.latencies_us.extend(part.latencies_us);
    }
    total.elapsed = start.elapsed();
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
    deadline: Instant,
) -> RunResult {
    let mut result = RunResult::default();
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if index >= deliveries.len() || Instant::now() >= deadline {
            return result;
        }
        let delivery = &deliveries[index];
        let started = Instant::now();
        let answer = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-github-event", "issues")
            .header("x-github-delivery", &delivery.id)
            .header("x-hub-signature-256", &delivery.signature)
            .body(delivery.body.clone())
            .send()
            .await;
        result.sent += 1;
        let status = match answer {
            Ok(response) => {
                let status = response.status();
                // Read the whole answer so the connection is reused.
                let _ = response.bytes().await;
                Some(status)
            }
            Err(_) => None,
        };
        result.latencies_us.push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        match status {
            Some(status) if status.is_success() => {
                result.ok += 1;
                if status == reqwest::StatusCode::ACCEPTED {
                    result.accepted += 1;
                }
            }
            _ => result.failed += 1,
        }
    }
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
