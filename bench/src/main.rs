//! `forgehand-bench`: the benchmarks behind `make bench`. It starts the release forgehand
//! binary, the HMAC-only ceiling (this binary, `ceiling`) and adnanh/webhook when installed,
//! replays pre-signed GitHub deliveries at them over loopback, checks that every delivery
//! forgehand answered 2xx is in its database, measures its footprint, and writes a report.

mod ceiling;
mod dashboard;
mod db;
mod durable;
mod executor;
mod harness;
mod load;
mod payload;
mod procs;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use load::{RunResult, Target};
use payload::Template;
use procs::{Server, TempDir, ThreadCpu};

/// The secret every server under test shares; a benchmark value, not a credential.
const SECRET: &str = "forgehand-bench-webhook-secret";

/// forgehand's benchmarks.
#[derive(Debug, Parser)]
#[command(name = "forgehand-bench")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve the ceiling (HMAC check, 200, nothing else) on an ephemeral loopback port.
    Ceiling,
    /// Serve the durable ceiling (HMAC, parse, one group-committed SQLite insert, 200 after
    /// the commit) on an ephemeral loopback port, its database in `dir`.
    DurableCeiling {
        #[arg(long)]
        dir: PathBuf,
    },
}

/// What to run and where to write the report.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The release forgehand binary.
    #[arg(long, default_value = "target/release/forgehand")]
    forgehand: PathBuf,
    /// The recorded GitHub payload the deliveries are made from.
    #[arg(long, default_value = "tests/data/github/issues_labeled.json")]
    payload: PathBuf,
    /// Where to write the Markdown report (notes after its marker line are kept).
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Runs per measurement; medians and p99 are taken over them.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Most requests per run with the 3 KB payload (the 200 KB payload gets a tenth).
    /// Enough for a run at 16 or 64 connections to last a second or two: runs of 2,000
    /// lasted 0.2 s and their ratios moved by ±0.3 from one run to the next.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Longest run, in seconds; a run stops at whichever bound comes first.
    #[arg(long, default_value_t = 4)]
    run_secs: u64,
    /// Deliveries sent for the RSS-after-load figure.
    #[arg(long, default_value_t = 100_000)]
    footprint_deliveries: u64,
    /// Longest time spent on those deliveries, in seconds.
    #[arg(long, default_value_t = 150)]
    footprint_secs: u64,
    /// Tasks in the database for the start-to-ready figure.
    #[arg(long, default_value_t = 1_000_000)]
    startup_tasks: u64,
    /// Database sizes (tasks) of the dashboard and scale-curve figures.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 100_000, 1_000_000])]
    scale_sizes: Vec<u64>,
    /// Requests per dashboard page and size; median and p99 are over them.
    #[arg(long, default_value_t = 200)]
    page_requests: usize,
    /// Tasks run one after the other on the generated repository (the first clones it);
    /// 0 skips the executor benchmark.
    #[arg(long, default_value_t = 4)]
    executor_tasks: usize,
    /// The stand-in agent the executor benchmark runs.
    #[arg(long, default_value = "tests/agent/fake-claude")]
    agent: PathBuf,
    /// Another forgehand binary (e.g. the previous release) measured beside this one in
    /// the same intake runs, as `before`.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// A short run (about 3 minutes): one repeat, fewer requests, smaller databases.
    #[arg(long)]
    quick: bool,
    /// Runs one section only and prints its figures instead of writing the report
    /// (`dashboard`: the dashboard pages and scale curve at `--scale-sizes`).
    #[arg(long, value_enum)]
    only: Option<Section>,
    /// The connection counts of the intake runs (all of them by default), e.g. `16` to
    /// profile one.
    #[arg(long, value_delimiter = ',', default_values_t = CONNECTIONS)]
    connections: Vec<usize>,
}

/// A part of the benchmarks that `--only` can run alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    Dashboard,
    /// The executor figures (with the 200,000-commit repository unless `--quick`).
    Executor,
    /// The intake runs of forgehand, the durable ceiling and `--compare`.
    Intake,
}

impl RunArgs {
    /// Applies `--quick`.
    fn effective(mut self) -> RunArgs {
        if self.quick {
            self.repeats = 1;
            self.requests = self.requests.min(1000);
            self.run_secs = self.run_secs.min(3);
            self.footprint_deliveries = self.footprint_deliveries.min(20_000);
            self.footprint_secs = self.footprint_secs.min(30);
            self.startup_tasks = self.startup_tasks.min(100_000);
            self.scale_sizes = vec![10_000, 100_000];
            self.page_requests = self.page_requests.min(50);
            self.executor_tasks = self.executor_tasks.min(3);
        }
        self
    }
}

/// The open-loop rate of the latency goal (p99 < 10 ms at 1,000 requests/s).
pub const FIXED_RATE: f64 = 1000.0;
/// Connections the fixed-rate runs spread their requests over.
pub const FIXED_RATE_CONNECTIONS: usize = 32;

/// Connection counts every intake figure is measured at.
const CONNECTIONS: [usize; 3] = [1, 16, 64];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Ceiling) => {
            let secret = std::env::var("FORGEHAND_BENCH_SECRET").unwrap_or_else(|_| SECRET.to_owned());
            ceiling::serve(secret).await
        }
        Some(Cmd::DurableCeiling { dir }) => {
            let secret = std::env::var("FORGEHAND_BENCH_SECRET").unwrap_or_else(|_| SECRET.to_owned());
            durable::serve(secret, dir).await
        }
        None if cli.run.only == Some(Section::Dashboard) => only_dashboard(cli.run.effective()).await,
        None if cli.run.only == Some(Section::Executor) => only_executor(cli.run.effective()).await,
        None if cli.run.only == Some(Section::Intake) => only_intake(cli.run.effective()).await,
        None => run(cli.run.effective()).await,
    }
}

/// Intake results: (payload, connections, target) → one result per repeat.
pub type Intake = BTreeMap<(usize, usize, &'static str), Vec<RunResult>>;

/// Everything the report shows.
pub struct Figures {
    pub args: RunArgs,
    pub intake: Intake,
    pub payload_names: Vec<&'static str>,
    pub targets: Vec<&'static str>,
    pub webhook_missing: bool,
    /// Each server at `FIXED_RATE` requests/s (3 KB): latency from when each was due.
    pub fixed_rate: Vec<(&'static str, RunResult)>,
    pub idle_rss_kib: u64,
    /// Its anonymous part (RssAnon).
    pub idle_rss_anon_kib: u64,
    pub rss_samples: Vec<(u64, u64)>,
    /// forgehand's rate over the footprint deliveries (3 KB, 64 connections, long run).
    pub sustained_rps: f64,
    pub recorded: (i64, i64),
    pub answered: (u64, u64),
    pub startup_ms: Vec<f64>,
    pub startup_rss_kib: u64,
    pub scale: Vec<dashboard::ScalePoint>,
    pub executor: Option<executor::ExecFigures>,
    pub binary_bytes: u64,
    pub started_at: String,
    pub took: Duration,
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let began = Instant::now();
    let started_at = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    if !args.forgehand.is_file() {
        bail!(
            "{} does not exist: build it with `cargo build --release` (or run `make bench`)",
            args.forgehand.display()
        );
    }
    let templates = templates(&args)?;

    let dir = TempDir::new("intake")?;
    let config = procs::forgehand_config(&dir.0, SECRET)?;
    let forgehand = procs::start_forgehand(&args.forgehand, &config).await?;
    tokio::time::sleep(Duration::from_secs(1)).await; // let it settle before the idle figure
    let idle_rss_kib = forgehand.rss_kib().unwrap_or(0);
    let idle_rss_anon_kib = forgehand.rss_anon_kib().unwrap_or(0);
    let ceiling = procs::start_ceiling(SECRET).await?;
    let durable = procs::start_durable_ceiling(&dir.0.join("durable"), SECRET).await?;
    let webhook = procs::start_webhook(&dir.0, SECRET).await?;
    let before_dir = TempDir::new("before")?;
    let before = match &args.compare {
        Some(binary) => {
            let config = procs::forgehand_config(&before_dir.0, SECRET)?;
            Some(procs::start_forgehand(binary, &config).await?)
        }
        None => None,
    };
    let mut targets = vec![
        target("forgehand", &forgehand, "/webhooks/github"),
        target("durable", &durable, "/webhooks/github"),
        target("ceiling", &ceiling, "/webhooks/github"),
    ];
    if let Some(before) = &before {
        targets.push(target("before", before, "/webhooks/github"));
    }
    if let Some(webhook) = &webhook {
        targets.push(target("webhook", webhook, "/hooks/github"));
    }

    let mut serial = 0u64;
    let mut answered = (0u64, 0u64);
    let intake = intake_runs(&args, &templates, &targets, webhook.as_ref(), &mut serial, &mut answered).await;
    let fixed_rate =
        fixed_rate_runs(&args, &templates[0], &targets, webhook.as_ref(), &mut serial, &mut answered).await;
    drop(ceiling);
    drop(durable);
    drop(webhook);
    drop(before);

    let (rss_samples, sustained_rps) =
        footprint_load(&args, &templates[0], &targets[0], &forgehand, &mut serial, &mut answered).await;
    forgehand.kill().await;
    let recorded = db::counts(&dir.0.join("data").join("forgehand.db")).await?;
    let (startup_ms, startup_rss_kib) = startup(&args).await?;
    let scale = dashboard::run(
        &args.forgehand,
        &templates[0],
        &args.scale_sizes,
        args.page_requests,
        args.requests,
        &mut serial,
    )
    .await?;
    let executor = match args.executor_tasks {
        0 => None,
        tasks => Some(executor::run(&args.forgehand, &args.agent, tasks, !args.quick).await?),
    };
    let figures = Figures {
        binary_bytes: std::fs::metadata(&args.forgehand)?.len(),
        payload_names: templates.iter().map(|t| t.name).collect(),
        targets: targets.iter().map(|t| t.name).collect(),
        webhook_missing: procs::which("webhook").is_none(),
        args,
        intake,
        fixed_rate,
        idle_rss_kib,
        idle_rss_anon_kib,
        rss_samples,
        sustained_rps,
        recorded,
        answered,
        startup_ms,
        startup_rss_kib,
        scale,
        executor,
        started_at,
        took: began.elapsed(),
    };
    let text = report::render(&figures);
    println!("{text}");
    report::write(&figures.args.out, &text)?;
    eprintln!("wrote {}", figures.args.out.display());
    if figures.recorded.0 != figures.answered.0 as i64 || figures.recorded.1 != figures.answered.1 as i64 {
        bail!(
            "forgehand answered {} deliveries 2xx ({} tasks) but its database holds {} ({} tasks)",
            figures.answered.0,
            figures.answered.1,
            figures.recorded.0,
            figures.recorded.1
        );
    }
    Ok(())
}

/// Every intake run: each payload at each connection count, `repeats` times, the servers
/// taking turns within a repeat so that they share the machine's noise.
async fn intake_runs(
    args: &RunArgs,
    templates: &[Template],
    targets: &[Target],
    webhook: Option<&Server>,
    serial: &mut u64,
    answered: &mut (u64, u64),
) -> Intake {
    let mut intake = Intake::new();
    for (index, template) in templates.iter().enumerate() {
        let requests = if index == 0 { args.requests } else { (args.requests / 10).max(1) };
        for &connections in &args.connections {
            for repeat in 0..args.repeats {
                for target in targets {
                    let deliveries: Vec<_> = (0..requests)
                        .map(|i| template.delivery(SECRET.as_bytes(), *serial + i as u64))
                        .collect();
                    *serial += requests as u64;
                    let cpu_before = target.pid.map(ThreadCpu::of);
                    let mut result =
                        load::run(target, deliveries, connections, Duration::from_secs(args.run_secs)).await;
                    result.cpu =
                        target.pid.zip(cpu_before).map(|(pid, before)| ThreadCpu::of(pid).since(before));
                    settle(webhook).await;
                    eprintln!(
                        "{:>6} {:>2} conns run {} {:>9}: {:>7.0} req/s, {} ok, {} failed",
                        template.name,
                        connections,
                        repeat + 1,
                        target.name,
                        result.rps(),
                        result.ok,
                        result.failed
                    );
                    if target.name == "forgehand" {
                        answered.0 += result.ok as u64;
                        answered.1 += result.accepted as u64;
                    }
                    intake.entry((index, connections, target.name)).or_default().push(result);
                }
            }
        }
    }
    intake
}

/// The intake payloads: the recorded 3 KB one and the same padded to 200 KB.
fn templates(args: &RunArgs) -> anyhow::Result<[Template; 2]> {
    let recorded =
        std::fs::read(&args.payload).with_context(|| format!("cannot read {}", args.payload.display()))?;
    Ok([Template::small(&recorded)?, Template::padded(&recorded, 200_000)?])
}

/// `--only intake`: forgehand, the durable ceiling and `--compare` (no webhook, no bare
/// ceiling) in the intake runs; the ratios printed, no report written.
async fn only_intake(args: RunArgs) -> anyhow::Result<()> {
    let templates = templates(&args)?;
    let dir = TempDir::new("intake")?;
    let config = procs::forgehand_config(&dir.0, SECRET)?;
    let forgehand = procs::start_forgehand(&args.forgehand, &config).await?;
    let durable = procs::start_durable_ceiling(&dir.0.join("durable"), SECRET).await?;
    let before_dir = TempDir::new("before")?;
    let before = match &args.compare {
        Some(binary) => {
            Some(procs::start_forgehand(binary, &procs::forgehand_config(&before_dir.0, SECRET)?).await?)
        }
        None => None,
    };
    let mut targets = vec![
        target("forgehand", &forgehand, "/webhooks/github"),
        target("durable", &durable, "/webhooks/github"),
    ];
    if let Some(before) = &before {
        targets.push(target("before", before, "/webhooks/github"));
    }
    let (mut serial, mut answered) = (0, (0, 0));
    let intake = intake_runs(&args, &templates, &targets, None, &mut serial, &mut answered).await;
    println!("{}", report::intake_ratios(&intake, &templates.map(|t| t.name)));
    Ok(())
}

/// `--only dashboard`: the dashboard pages at each size, printed, no report written.
async fn only_dashboard(args: RunArgs) -> anyhow::Result<()> {
    let recorded =
        std::fs::read(&args.payload).with_context(|| format!("cannot read {}", args.payload.display()))?;
    let template = Template::small(&recorded)?;
    let mut serial = 0;
    let scale = dashboard::run(
        &args.forgehand,
        &template,
        &args.scale_sizes,
        args.page_requests,
        args.requests,
        &mut serial,
    )
    .await?;
    println!("| tasks | page | median ms | p99 ms |\n|---:|---|---:|---:|");
    for point in &scale {
        for page in &point.pages {
            println!("| {} | {} | {:.2} | {:.2} |", point.tasks, page.name, page.median_ms, page.p99_ms);
        }
    }
    Ok(())
}

/// `--only executor`: the executor table, printed, no report written.
async fn only_executor(args: RunArgs) -> anyhow::Result<()> {
    let figures =
        executor::run(&args.forgehand, &args.agent, args.executor_tasks.max(2), !args.quick).await?;
    println!("{}", report::executor_text(&figures));
    Ok(())
}

fn target(name: &'static str, server: &Server, path: &str) -> Target {
    let addr = &server.addr;
    Target {
        name,
        url: format!("http://{addr}{path}"),
        warm_url: format!("http://{addr}/"),
        pid: server.child.id(),
    }
}

/// Sends up to `footprint_deliveries` 3 KB deliveries at 64 connections, sampling RSS.
async fn footprint_load(
    args: &RunArgs,
    template: &Template,
    target: &Target,
    forgehand: &Server,
    serial: &mut u64,
    answered: &mut (u64, u64),
) -> (Vec<(u64, u64)>, f64) {
    let deadline = Instant::now() + Duration::from_secs(args.footprint_secs);
    let mut samples = vec![(answered.0, forgehand.rss_kib().unwrap_or(0))];
    let mut sent = 0;
    let began = Instant::now();
    while sent < args.footprint_deliveries && Instant::now() < deadline {
        let chunk = 10_000.min(args.footprint_deliveries - sent);
        let deliveries: Vec<_> =
            (0..chunk).map(|i| template.delivery(SECRET.as_bytes(), *serial + i)).collect();
        *serial += chunk;
        let result =
            load::run(target, deliveries, 64, deadline.saturating_duration_since(Instant::now())).await;
        sent += result.sent as u64;
        answered.0 += result.ok as u64;
        answered.1 += result.accepted as u64;
        samples.push((answered.0, forgehand.rss_kib().unwrap_or(0)));
        eprintln!("footprint: {} deliveries recorded, RSS {} KiB", answered.0, samples.last().unwrap().1);
    }
    let rate = sent as f64 / began.elapsed().as_secs_f64().max(1e-9);
    eprintln!("footprint: {sent} deliveries at 64 connections, {rate:.0} req/s sustained");
    (samples, rate)
}

/// Start-to-ready times (ms) with a database of `startup_tasks` tasks, and the RSS then.
async fn startup(args: &RunArgs) -> anyhow::Result<(Vec<f64>, u64)> {
    let dir = TempDir::new("startup")?;
    let config = procs::forgehand_config(&dir.0, SECRET)?;
    migrate(&args.forgehand, &config).await?;
    let filling = Instant::now();
    db::fill_tasks(&dir.0.join("data").join("forgehand.db"), args.startup_tasks).await?;
    eprintln!("startup: {} tasks inserted in {:.1} s", args.startup_tasks, filling.elapsed().as_secs_f64());
    let mut times = Vec::new();
    let mut rss = 0;
    for _ in 0..args.repeats.max(5) {
        let server = procs::start_forgehand(&args.forgehand, &config).await?;
        times.push(server.ready_after.as_secs_f64() * 1000.0);
        rss = server.rss_kib().unwrap_or(0);
        server.kill().await;
    }
    Ok((times, rss))
}

pub(crate) async fn migrate(binary: &Path, config: &Path) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(binary)
        .arg("--config")
        .arg(config)
        .arg("migrate")
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    if !status.success() {
        bail!("`forgehand migrate` failed ({status})");
    }
    Ok(())
}

/// Each target for `run_secs` at `FIXED_RATE` requests/s with 3 KB deliveries.
async fn fixed_rate_runs(
    args: &RunArgs,
    template: &Template,
    targets: &[Target],
    webhook: Option<&Server>,
    serial: &mut u64,
    answered: &mut (u64, u64),
) -> Vec<(&'static str, RunResult)> {
    let requests = (FIXED_RATE * args.run_secs as f64) as usize;
    let mut results = Vec::new();
    for target in targets {
        let deliveries: Vec<_> =
            (0..requests).map(|i| template.delivery(SECRET.as_bytes(), *serial + i as u64)).collect();
        *serial += requests as u64;
        let result = load::run_at_rate(target, deliveries, FIXED_RATE_CONNECTIONS, FIXED_RATE).await;
        settle(webhook).await;
        eprintln!(
            "  3 KB at {FIXED_RATE} req/s {:>9}: {} ok, {} failed",
            target.name, result.ok, result.failed
        );
        if target.name == "forgehand" {
            answered.0 += result.ok as u64;
            answered.1 += result.accepted as u64;
        }
        results.push((target.name, result));
    }
    results
}

/// Lets webhook's commands of the last run finish before the next server's run starts.
async fn settle(webhook: Option<&Server>) {
    if let Some(webhook) = webhook {
        let left = webhook.wait_until_idle().await;
        if left > 0 {
            eprintln!("webhook still runs {left} commands after 60 s; measuring on");
        }
    }
}
