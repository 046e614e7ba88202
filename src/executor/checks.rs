//! A repository's setup and check commands (see `config::repo`): command lines run by
//! `sh -c` in the task's worktree with the agent's environment rules (an allow-listed
//! environment, never a forge token), inside the agent's sandbox when one is configured,
//! each with a time limit and its output kept only as a bounded tail.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use crate::config::{AgentKind, Settings};

/// How much of a command's output (stdout and stderr, interleaved) is kept.
pub const OUTPUT_TAIL_BYTES: usize = 64 << 10;
/// How much of a failing command's output the agent is shown in a fix round.
const PROMPT_TAIL_CHARS: usize = 4000;
/// How much of a failing command's output is posted on the issue or the pull request.
pub const POSTED_TAIL_CHARS: usize = 1200;
/// How long the output of a finished command may take to drain.
const DRAIN: Duration = Duration::from_secs(5);

/// The phase a command ran in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Setup,
    Check,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandEnd {
    Exited(i32),
    Signalled(i32),
    TimedOut(Duration),
    Cancelled,
    NotStarted(String),
}

/// One finished setup or check command.
#[derive(Debug, Clone)]
pub struct CommandRun {
    pub phase: Phase,
    pub command: String,
    pub end: CommandEnd,
    pub duration: Duration,
    /// 0: the checks after the agent's first run; n: after fix round n.
    pub round: u32,
    /// The last [`OUTPUT_TAIL_BYTES`] of its output, the worktree's path replaced by `.`.
    pub output: String,
}

impl CommandRun {
    /// Exited with status 0.
    pub fn passed(&self) -> bool {
        self.end == CommandEnd::Exited(0)
    }

    /// `exit 1`, `timed out after 600s`, ….
    pub fn how_it_ended(&self) -> String {
        match &self.end {
            CommandEnd::Exited(code) => format!("exit {code}"),
            CommandEnd::Signalled(signal) => format!("killed by signal {signal}"),
            CommandEnd::TimedOut(limit) => format!("timed out after {}s", limit.as_secs()),
            CommandEnd::Cancelled => "stopped: the task was cancelled".to_owned(),
            CommandEnd::NotStarted(why) => format!("could not start: {why}"),
        }
    }

    /// The last `chars` characters of the output.
    pub fn tail(&self, chars: usize) -> &str {
        let skip = self.output.chars().count().saturating_sub(chars);
        let start = self.output.char_indices().nth(skip).map_or(self.output.len(), |(i, _)| i);
        &self.output[start..]
    }

    /// The command, how it ended and the end of its output, as a Markdown block.
    pub fn failure_text(&self, chars: usize) -> String {
        let tail = self.tail(chars).trim_end();
        let output = if tail.is_empty() {
            "(no output)".to_owned()
        } else {
            format!("the end of its output:\n\n```\n{}\n```", tail.replace("```", "`\u{200b}``"))
        };
        format!("`{}` ({}); {output}", self.command, self.how_it_ended())
    }
}

/// Where and how commands run.
pub struct Runner<'a> {
    pub settings: &'a Settings,
    pub cwd: &'a Path,
    pub timeout: Duration,
    pub cancel: watch::Receiver<bool>,
}

impl Runner<'_> {
    /// Runs `commands` in order; setup stops at the first failure, checks all run.
    pub async fn run_all(&self, phase: Phase, commands: &[String], round: u32) -> Vec<CommandRun> {
        let mut runs = Vec::new();
        for command in commands {
            let run = self.run(phase, command, round).await;
            tracing::info!(?phase, command, end = %run.how_it_ended(), secs = run.duration.as_secs_f32(), "command ran");
            let stop = (phase == Phase::Setup && !run.passed()) || run.end == CommandEnd::Cancelled;
            runs.push(run);
            if stop {
                break;
            }
        }
        runs
    }

    /// Runs one command line to its end.
    pub async fn run(&self, phase: Phase, command: &str, round: u32) -> CommandRun {
        let started = Instant::now();
        let tail = Arc::new(Mutex::new(Tail::default()));
        let end = match self.spawn(command) {
            Ok(child) => self.supervise(child, &tail).await,
            Err(why) => CommandEnd::NotStarted(why),
        };
        let bytes = std::mem::take(&mut tail.lock().unwrap_or_else(PoisonError::into_inner).bytes);
        let output = String::from_utf8_lossy(&bytes).replace(&*self.cwd.to_string_lossy(), ".");
        CommandRun { phase, command: command.to_owned(), end, duration: started.elapsed(), round, output }
    }

    fn spawn(&self, command: &str) -> Result<tokio::process::Child, String> {
        let args = ["-c".to_owned(), command.to_owned()];
        let (program, args) = super::sandbox::confine(self.settings, self.cwd, "sh", &args)?;
        let parent =
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        let extra: Vec<(String, String)> =
            self.settings.agent.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        // The generic allow-list: no model provider's keys, whatever the agent's kind.
        let env = super::agent::agent_env(AgentKind::Command, parent, &extra);
        tokio::process::Command::new(&program)
            .args(&args)
            .current_dir(self.cwd)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| format!("{program}: {err}"))
    }

    async fn supervise(&self, mut child: tokio::process::Child, tail: &Arc<Mutex<Tail>>) -> CommandEnd {
        let pgid = child.id().and_then(|pid| i32::try_from(pid).ok()).unwrap_or(0);
        let readers = [
            child.stdout.take().map(|out| tokio::spawn(pump(out, tail.clone()))),
            child.stderr.take().map(|err| tokio::spawn(pump(err, tail.clone()))),
        ];
        let mut cancel = self.cancel.clone();
        let end = tokio::select! {
            status = child.wait() => match status {
                Ok(status) => exit_end(status),
                Err(err) => CommandEnd::NotStarted(err.to_string()),
            },
            () = tokio::time::sleep(self.timeout) => CommandEnd::TimedOut(self.timeout),
            _ = cancel.wait_for(|stop| *stop) => CommandEnd::Cancelled,
        };
        // Whatever it left running (a server, `sleep &`) would hold the pipes open.
        kill_group(pgid);
        let _ = child.wait().await;
        for reader in readers.into_iter().flatten() {
            let _ = tokio::time::timeout(DRAIN, reader).await;
        }
        end
    }
}

fn exit_end(status: std::process::ExitStatus) -> CommandEnd {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => CommandEnd::Exited(code),
        (None, Some(signal)) => CommandEnd::Signalled(signal),
        (None, None) => CommandEnd::Exited(-1),
    }
}

fn kill_group(pgid: i32) {
    // kill(-1) and kill(0) would reach far more than the command's group.
    if pgid > 1 {
        // SAFETY: kill(2) has no memory effects; a negative pid names the command's group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// The newest bytes of a command's output.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * OUTPUT_TAIL_BYTES {
            let excess = self.bytes.len() - OUTPUT_TAIL_BYTES;
            self.bytes.drain(..excess);
        }
    }
}

async fn pump(mut from: impl AsyncRead + Unpin, tail: Arc<Mutex<Tail>>) {
    let mut buf = vec![0; 16 * 1024];
    while let Ok(read @ 1..) = from.read(&mut buf).await {
        tail.lock().unwrap_or_else(PoisonError::into_inner).push(&buf[..read]);
    }
    let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
    let excess = tail.bytes.len().saturating_sub(OUTPUT_TAIL_BYTES);
    tail.bytes.drain(..excess);
}

/// What the agent is told when it is resumed to fix failing checks.
pub fn fix_prompt(failing: &[&CommandRun], round: u32, rounds: u32) -> String {
    let mut text = format!(
        "The repository's checks fail after your changes (fix round {round} of {rounds}). Fix the code so \
         that every check passes; do not skip, weaken or delete the checks. forgehand runs them again \
         when you finish.\n\nFailing checks:\n"
    );
    for run in failing {
        text.push_str(&format!("\n- {}\n", run.failure_text(PROMPT_TAIL_CHARS)));
    }
    text.push_str("\nFinish with a short summary of the whole change, as before.\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> Settings {
        let mut settings = Settings::load_with_env(None, Default::default()).unwrap();
        settings.data_dir = dir.to_path_buf();
        settings
    }

    #[tokio::test]
    async fn commands_end_with_their_status_output_and_time_limit() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        let (_stop, cancel) = watch::channel(false);
        let runner = Runner { settings: &settings, cwd: dir.path(), timeout: Duration::from_secs(2), cancel };
        let ok = runner.run(Phase::Check, "echo out; echo err >&2; pwd", 0).await;
        assert!(ok.passed(), "{ok:?}");
        assert!(
            ok.output.contains("out") && ok.output.contains("err") && ok.output.contains(".\n"),
            "{ok:?}"
        );
        let failed = runner.run(Phase::Check, "seq 1 100000; exit 3", 1).await;
        assert_eq!(failed.end, CommandEnd::Exited(3));
        assert!(failed.output.len() <= OUTPUT_TAIL_BYTES && failed.output.ends_with("100000\n"));
        assert!(
            failed.failure_text(20).starts_with("`seq 1 100000; exit 3` (exit 3); the end of its output:")
        );
        let hung = runner.run(Phase::Setup, "sleep 100 & sleep 100", 0).await;
        assert_eq!(hung.end, CommandEnd::TimedOut(Duration::from_secs(2)));
        assert!(hung.duration < Duration::from_secs(10), "{hung:?}");
    }

    #[tokio::test]
    async fn setup_stops_at_the_first_failure_and_checks_all_run() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        let (_stop, cancel) = watch::channel(false);
        let runner = Runner { settings: &settings, cwd: dir.path(), timeout: Duration::from_secs(5), cancel };
        let commands = ["false".to_owned(), "true".to_owned()];
        assert_eq!(runner.run_all(Phase::Setup, &commands, 0).await.len(), 1);
        let checks = runner.run_all(Phase::Check, &commands, 0).await;
        assert_eq!(checks.iter().map(CommandRun::passed).collect::<Vec<_>>(), [false, true]);
        let prompt = fix_prompt(&[&checks[0]], 1, 2);
        assert!(
            prompt.contains("fix round 1 of 2") && prompt.contains("- `false` (exit 1); (no output)"),
            "{prompt}"
        );
    }
}
