//! How a task starts its agent under the settings in force: the request (permissions,
//! model, turns, `agent.args`), the process (program, arguments, stdin, scrubbed
//! environment, timeout) and the sandbox. The pipeline and `forgehand doctor`'s dry run
//! both start the agent through here, so the dry run proves what a task will meet.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use super::agent::{self, AgentRun, AgentSpec, Request};
use crate::config::{AgentSettings, Sandbox, Settings};

/// Most bytes a run's transcript file may grow to.
pub const MAX_TRANSCRIPT_BYTES: u64 = 32 * 1024 * 1024;

/// What a task asks of the agent configured in `agent`: `prompt`, continuing `resume`.
pub fn request<'a>(agent: &'a AgentSettings, prompt: &'a str, resume: Option<&'a str>) -> Request<'a> {
    // `mcp_config` is the task's: the pipeline sets it (see `questions::mcp_config`).
    Request {
        prompt,
        max_turns: agent.max_turns,
        model: &agent.model,
        resume,
        allowed_tools: &agent.allowed_tools,
        extra: &agent.args,
        prompt_via: agent.prompt_via,
        sandboxed: agent.sandbox == Sandbox::Bubblewrap,
        mcp_config: None,
        max_budget_usd: agent.max_budget_usd,
        fallback_model: agent.fallback_model.as_deref().unwrap_or_default(),
    }
}

/// The process that runs `request` in `cwd`: the configured program with the arguments
/// and stdin its CLI takes, forgehand's environment filtered for the agent plus
/// `agent.env`, and the task timeout. The sandbox is applied by [`run`].
pub fn spec(settings: &Settings, request: &Request, cwd: PathBuf, transcript_path: PathBuf) -> AgentSpec {
    let agent = &settings.agent;
    let launch = agent::launch(agent.kind, request);
    let extra: Vec<(String, String)> = agent.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let parent =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    AgentSpec {
        kind: agent.kind,
        program: agent.command.clone(),
        args: launch.args,
        stdin: launch.stdin,
        cwd,
        env: agent::agent_env(agent.kind, parent, &extra),
        timeout: Duration::from_secs(settings.executor.timeout_secs),
        kill_grace: Duration::from_secs(5),
        transcript_path,
        max_transcript_bytes: MAX_TRANSCRIPT_BYTES,
        writable: Vec::new(),
    }
}

/// Runs `spec` inside the configured sandbox until it ends or `stop` turns true. The
/// error says why the agent could not be started at all.
pub async fn run(
    settings: &Settings,
    spec: AgentSpec,
    stop: watch::Receiver<bool>,
) -> Result<AgentRun, String> {
    let spec = super::sandbox::apply(settings, spec)?;
    agent::run(&spec, stop, None).await.map_err(|err| err.to_string())
}
