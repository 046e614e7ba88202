//! The agent process: a coding agent CLI (Claude Code, Codex, any program) run in a
//! worktree. What differs between CLIs lives in [`profile`] and its modules.
//!
//! [`run`] starts the program in its own process group with a scrubbed environment,
//! reads its output line by line as it arrives (into a capped transcript file and an
//! optional live event channel), and stops the whole group on timeout, on cancellation
//! and after the program exits. [`outcome`] turns the finished run into a verdict with a
//! reason that is safe to post on an issue.

pub mod claude;
pub mod codex;
pub mod command;
mod env;
mod process;
pub mod profile;
mod stream;
pub mod verdict;

pub use env::agent_env;
pub use profile::launch;
pub use stream::VERDICT_TYPE;
pub use verdict::{AgentOutcome, outcome, provider_failure, resume_refused};

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::config::{AgentKind, PromptVia};
use process::{ProcessGroup, Stop, feed_stdin, spawn, supervise};
use stream::{Pump, Transcript};

/// Longest stdout line kept in memory; the rest of a longer line is dropped.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// How much of the agent's stderr is kept for diagnostics.
pub const STDERR_TAIL_BYTES: usize = 64 << 10;

/// Longest summary or preview carried by an [`AgentEvent`], in characters.
pub const PREVIEW_CHARS: usize = 200;

/// What forgehand asks of one run, whatever the CLI.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub prompt: &'a str,
    pub max_turns: u32,
    /// Empty: the CLI's default model.
    pub model: &'a str,
    /// The session to continue (a follow-up).
    pub resume: Option<&'a str>,
    pub allowed_tools: &'a [String],
    /// `agent.args`.
    pub extra: &'a [String],
    pub prompt_via: PromptVia,
    /// The agent runs inside `agent.sandbox = "bubblewrap"`: the default permissions may
    /// be wider (see [`claude::default_allowed_tools`]).
    pub sandboxed: bool,
    /// Claude Code's `--mcp-config` JSON that starts `forgehand mcp` (the `ask_question`
    /// tool); `None`: the agent gets no tool to ask with.
    pub mcp_config: Option<&'a str>,
    /// Claude Code's `--max-budget-usd`.
    pub max_budget_usd: Option<f64>,
    /// Claude Code's `--fallback-model` (empty: none).
    pub fallback_model: &'a str,
}

impl<'a> Request<'a> {
    /// A request with the defaults: 50 turns, the CLI's model, no resume, no extras.
    pub fn new(prompt: &'a str) -> Request<'a> {
        Request {
            prompt,
            max_turns: 50,
            model: "",
            resume: None,
            allowed_tools: &[],
            extra: &[],
            prompt_via: PromptVia::Stdin,
            sandboxed: false,
            mcp_config: None,
            max_budget_usd: None,
            fallback_model: "",
        }
    }
}

/// How to start the CLI: the arguments after the program, and what to write to its stdin
/// (`None`: stdin is `/dev/null`).
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub args: Vec<String>,
    pub stdin: Option<String>,
}

/// What to run. `program` + `args` exactly ([`launch`] produces `args` and `stdin`).
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Which CLI this is: decides how its output is read.
    pub kind: AgentKind,
    pub program: String,
    pub args: Vec<String>,
    /// Written to the program's stdin, which is then closed; `None`: `/dev/null`.
    pub stdin: Option<String>,
    pub cwd: PathBuf,
    /// The whole environment of the agent (see [`agent_env`]); nothing else is inherited.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL when the agent is stopped.
    pub kill_grace: Duration,
    /// Raw stdout lines are appended here (a resumed run may share the file); the file
    /// never grows past `max_transcript_bytes`.
    pub transcript_path: PathBuf,
    pub max_transcript_bytes: u64,
    /// Directories a sandboxed agent may write besides its worktree (where `forgehand mcp`
    /// leaves the question), bound at the same path.
    pub writable: Vec<PathBuf>,
}

/// A finished agent process.
#[derive(Debug, Clone)]
pub struct AgentRun {
    pub end: AgentEnd,
    /// From the init line, replaced by the result line's if that has one.
    pub session_id: Option<String>,
    pub result: Option<AgentResult>,
    /// The last [`STDERR_TAIL_BYTES`] of stderr, for logs only: never show it to users.
    pub stderr_tail: String,
    /// Bytes this run appended to the transcript file.
    pub transcript_bytes: u64,
    pub duration: Duration,
}

/// How the agent process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentEnd {
    Exited(i32),
    Signalled(i32),
    TimedOut,
    Cancelled,
}

/// The final `result` line of a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentResult {
    pub subtype: String,
    pub is_error: bool,
    pub num_turns: Option<u32>,
    pub total_cost_usd: Option<f64>,
    /// The agent's final text (`result`); empty when the line has none.
    pub text: String,
    pub permission_denials: usize,
    /// Distinct tool names among the permission denials, in order of appearance.
    pub denied_tools: Vec<String>,
    /// `terminal_reason` when present, e.g. `completed`, `max_turns`, `api_error`.
    pub terminal_reason: Option<String>,
    /// The HTTP status of the model API's last failed answer (`api_error_status`).
    pub api_error_status: Option<u16>,
    pub session_id: Option<String>,
}

/// What one stdout line (or one content block of it) says.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    Init {
        session_id: Option<String>,
        model: Option<String>,
    },
    AssistantText(String),
    /// `summary` is one line: the tool and its file path, command or pattern.
    ToolUse {
        name: String,
        summary: String,
    },
    ToolResult {
        is_error: bool,
        preview: String,
    },
    Result(AgentResult),
    /// A line of another type; `system` lines carry their subtype (`system/api_retry`).
    Other(String),
    Unparsable,
}

/// Why the agent could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot start the agent program `{program}`: {message}")]
    Spawn { program: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

/// Runs the agent to its end (exit, timeout or `cancel` turning true) and reports what
/// it said. Whatever the end, no process of its group outlives this call. `events` is
/// unbounded: its receiver must keep up, or drop it to stop live display.
pub async fn run(
    spec: &AgentSpec,
    cancel: watch::Receiver<bool>,
    events: Option<mpsc::UnboundedSender<AgentEvent>>,
) -> Result<AgentRun, AgentError> {
    let transcript = Transcript::open(&spec.transcript_path, spec.max_transcript_bytes).await?;
    let started = Instant::now();
    let mut child = spawn(spec)?;
    let mut group = ProcessGroup::of(&child);
    tracing::debug!(program = %spec.program, pgid = group.pgid, "agent started");
    feed_stdin(&mut child, spec.stdin.clone());
    let mut pump = Pump::new(&mut child, transcript, profile::Reader::new(spec.kind), events);
    let stop = Stop { timeout: spec.timeout, kill_grace: spec.kill_grace, cancel };
    let end = pump.run(supervise(&mut child, group.pgid, stop)).await;
    let end = end.map_err(|source| io_error("cannot wait for the agent", source))?;
    group.disarm();
    Ok(pump.finish(end, started.elapsed()).await)
}

fn io_error(context: &str, source: io::Error) -> AgentError {
    AgentError::Io { context: context.to_owned(), source }
}

/// Collapses whitespace runs (newlines included) and cuts to [`PREVIEW_CHARS`].
pub fn one_line(text: &str) -> String {
    let mut joined = String::new();
    // A char is at most 4 bytes: past this length the cut below is certain.
    for word in text.split_whitespace() {
        if joined.len() > PREVIEW_CHARS * 4 {
            break;
        }
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(word);
    }
    if joined.chars().count() <= PREVIEW_CHARS {
        return joined;
    }
    let mut cut: String = joined.chars().take(PREVIEW_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests;
