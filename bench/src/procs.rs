//! The servers under test, each a separate process on loopback.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running server and where it listens.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// From spawn to the moment it announced it was listening.
    pub ready_after: Duration,
}

impl Server {
    /// The resident set size now, in KiB, from /proc/<pid>/status.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// The anonymous part of it (heap, stacks): the process's own memory, without the
    /// pages of the binary and libraries it maps from files.
    pub fn rss_anon_kib(&self) -> Option<u64> {
        self.status_kib("RssAnon:")
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        let line = status.lines().find(|line| line.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Waits (up to 60 s) until the server has no child processes left: webhook answers,
    /// then runs its command, so a fast run leaves forks behind that would otherwise take
    /// the CPU from the next server's run.
    /// Then waits until the server itself has used no CPU for 250 ms: the Go runtime goes
    /// on reaping and collecting for seconds after a burst of commands. Returns the child
    /// processes left when the minute ran out.
    pub async fn wait_until_idle(&self) -> usize {
        let Some(pid) = self.child.id() else { return 0 };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = (cpu_ticks(pid), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let children = children_of(pid);
            let ticks = cpu_ticks(pid);
            if children > 0 || ticks != last.0 {
                last = (ticks, Instant::now());
            } else if last.1.elapsed() >= Duration::from_millis(250) {
                return 0;
            }
            if Instant::now() > deadline {
                return children;
            }
        }
    }

    /// Stops the server with SIGKILL: whatever it answered 2xx must already be on disk.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under the system's temp dir.
    pub fn new(label: &str) -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("forgehand-bench-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a forgehand config for `dir`: SQLite there, no executor, one GitHub forge.
pub fn forgehand_config(dir: &Path, secret: &str) -> anyhow::Result<PathBuf> {
    let config = format!(
        r#"data_dir = "{data}"

[server]
listen = "127.0.0.1:0"

[auth]
admin_token = "bench-admin-token-not-a-secret"

[executor]
enabled = false

[[forges]]
name = "github"
kind = "github"
api_url = "http://127.0.0.1:9"
token = "bench"
webhook_secret = "{secret}"
bot_login = "forgehand-bot"
"#,
        data = dir.join("data").display()
    );
    let path = dir.join("forgehand.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// Starts forgehand and waits for its JSON `forgehand listening` line.
pub async fn start_forgehand(binary: &Path, config: &Path) -> anyhow::Result<Server> {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["--log-format", "json", "--config"])
        .arg(config)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = listening_addr(&line) {
                return Ok(addr);
            }
        }
        bail!("forgehand exited before it listened")
    })
    .await
    .context("forgehand did not listen within 60 s")??;
    let ready_after = started.elapsed();
    // Keep draining its log so that it never blocks on a full pipe; with
    // FORGEHAND_BENCH_LOG set, into that file (to see where a figure's time went).
    let mut keep = std::env::var_os("FORGEHAND_BENCH_LOG")
        .and_then(|path| std::fs::OpenOptions::new().create(true).append(true).open(path).ok());
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(file) = keep.as_mut() {
                use std::io::Write as _;
                let _ = writeln!(file, "{line}");
            }
        }
    });
    Ok(Server { child, addr, ready_after })
}

fn listening_addr(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = value.get("fields").unwrap_or(&value);
    (fields.get("message")?.as_str()? == "forgehand listening")
        .then(|| fields.get("addr")?.as_str().map(str::to_owned))?
}

/// Starts the ceiling (this binary, `ceiling` subcommand).
pub async fn start_ceiling(secret: &str) -> anyhow::Result<Server> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("ceiling");
    start_bench_server(command, secret).await
}

/// Starts the durable ceiling (this binary, `durable-ceiling`) with its database in `dir`.
pub async fn start_durable_ceiling(dir: &Path, secret: &str) -> anyhow::Result<Server> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("durable-ceiling").arg("--dir").arg(dir);
    start_bench_server(command, secret).await
}

/// Starts a server of this binary and waits for its `listening <addr>` line.
async fn start_bench_server(mut command: Command, secret: &str) -> anyhow::Result<Server> {
    let started = Instant::now();
    let mut child =
        command.env("FORGEHAND_BENCH_SECRET", secret).stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let line = lines.next_line().await?.context("the ceiling exited before it listened")?;
    let addr =
        line.strip_prefix("listening ").context("the ceiling printed something unexpected")?.to_owned();
    Ok(Server { child, addr, ready_after: started.elapsed() })
}

/// Starts adnanh/webhook with a payload-hmac-sha256 rule and `true` as the command, or
/// `None` when it is not installed.
pub async fn start_webhook(dir: &Path, secret: &str) -> anyhow::Result<Option<Server>> {
    let Some(binary) = which("webhook") else { return Ok(None) };
    let hooks = serde_json::json!([{
        "id": "github",
        "execute-command": which("true").unwrap_or_else(|| "/bin/true".into()),
        "command-working-directory": dir,
        "trigger-rule": { "match": {
            "type": "payload-hmac-sha256",
            "secret": secret,
            "parameter": { "source": "header", "name": "X-Hub-Signature-256" }
        }}
    }]);
    let hooks_path = dir.join("hooks.json");
    std::fs::write(&hooks_path, serde_json::to_vec_pretty(&hooks)?)?;
    let port = free_port()?;
    let started = Instant::now();
    let child = Command::new(binary)
        .arg("-hooks")
        .arg(&hooks_path)
        .args(["-ip", "127.0.0.1", "-port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        if Instant::now() > deadline {
            bail!("webhook did not listen on {addr} within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Some(Server { child, addr, ready_after: started.elapsed() }))
}

/// The name of the database writer thread, in forgehand and in the durable ceiling.
pub const WRITER_THREAD: &str = "sqlite-writer";

/// CPU time a server used, in nanoseconds, split between its database writer thread and
/// the others.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadCpu {
    pub writer_ns: u64,
    pub other_ns: u64,
}

impl ThreadCpu {
    /// What `pid`'s threads have used so far (threads that ended are not counted: the
    /// servers measured keep theirs).
    pub fn of(pid: u32) -> ThreadCpu {
        let mut cpu = ThreadCpu::default();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return cpu };
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let name = stat.split_once(" (").and_then(|(_, rest)| rest.rsplit_once(") ")).map(|(n, _)| n);
            let ns = on_cpu_ns(&task.path()).unwrap_or_else(|| ticks_of_stat(&stat) * NANOS_PER_TICK);
            if name == Some(WRITER_THREAD) {
                cpu.writer_ns += ns;
            } else {
                cpu.other_ns += ns;
            }
        }
        cpu
    }

    /// The CPU used between `earlier` and `self`.
    pub fn since(self, earlier: ThreadCpu) -> ThreadCpu {
        ThreadCpu {
            writer_ns: self.writer_ns.saturating_sub(earlier.writer_ns),
            other_ns: self.other_ns.saturating_sub(earlier.other_ns),
        }
    }

    /// Adds another run's CPU.
    pub fn add(&mut self, other: ThreadCpu) {
        self.writer_ns += other.writer_ns;
        self.other_ns += other.other_ns;
    }
}

/// Nanoseconds per clock tick of /proc's `stat` CPU times (`USER_HZ`, 100 on Linux).
const NANOS_PER_TICK: u64 = 10_000_000;

/// A thread's time on a CPU in nanoseconds (`schedstat`'s first field, exact where
/// `stat`'s times come in 10 ms ticks); `None` where the kernel keeps no schedstat.
fn on_cpu_ns(task: &Path) -> Option<u64> {
    std::fs::read_to_string(task.join("schedstat")).ok()?.split_whitespace().next()?.parse().ok()
}

/// The user and system CPU time `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    ticks_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// utime + stime of a `/proc/…/stat` line.
fn ticks_of_stat(stat: &str) -> u64 {
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum()
}

/// Samples the resident set of a process and its descendants every 10 ms, keeping the
/// largest sum, until stopped.
pub struct PeakSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl PeakSampler {
    /// Starts sampling `pid`'s process tree.
    pub fn start(pid: u32) -> PeakSampler {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            loop {
                peak = peak.max(tree_rss_kib(pid));
                tokio::select! {
                    _ = &mut stopped => return peak.max(tree_rss_kib(pid)),
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        });
        PeakSampler { stop, task }
    }

    /// Stops sampling; the peak in KiB.
    pub async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0)
    }
}

/// The resident set (KiB) of `pid` and every process below it.
fn tree_rss_kib(pid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    // (pid, parent, resident pages) of every process; `rest` starts at stat's field 3.
    let processes: Vec<(u32, u32, u64)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let rest: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
            Some((p, rest.get(1)?.parse().ok()?, rest.get(21)?.parse().ok()?))
        })
        .collect();
    let mut tree = vec![pid];
    let mut pages = 0;
    while let Some(parent) = tree.pop() {
        for &(child, ppid, resident) in &processes {
            if child == parent {
                pages += resident;
            }
            if ppid == parent {
                tree.push(child);
            }
        }
    }
    pages * 4
}

/// How many processes have `pid` as their parent.
fn children_of(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    let parent_is = |stat: &str| {
        // The fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        rest.split_whitespace().nth(1).and_then(|ppid| ppid.parse::<u32>().ok()) == Some(pid)
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| parent_is(stat))
        .count()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The first `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread named as the writer is counted as the writer, and only it: the test's own
    /// thread waits while the named one spins.
    #[test]
    fn the_writer_threads_cpu_is_told_apart_from_the_others() {
        let pid = std::process::id();
        let start = ThreadCpu::of(pid);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinning = stop.clone();
        let writer = std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || {
                while !spinning.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let used = loop {
            let used = ThreadCpu::of(pid).since(start);
            if used.writer_ns >= 50_000_000 || Instant::now() > deadline {
                break used;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        assert!(used.writer_ns >= 50_000_000, "the spinning writer thread was not counted: {used:?}");
        assert!(used.other_ns < used.writer_ns, "the waiting threads counted as the writer's: {used:?}");
    }
}
