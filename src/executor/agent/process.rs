//! The agent's process: started in a group of its own with only the environment it is
//! given, stopped as a whole group on timeout, on cancellation and after it exits.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::{AgentEnd, AgentError, AgentSpec};

/// Starts the program in a process group of its own, with exactly its environment.
pub(super) fn spawn(spec: &AgentSpec) -> Result<Child, AgentError> {
    let spawn_error = |message: String| AgentError::Spawn { program: spec.program.clone(), message };
    if !spec.cwd.is_dir() {
        return Err(spawn_error("its working directory does not exist".to_owned()));
    }
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(name, value)| (name, value)))
        .stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    command.spawn().map_err(|error| spawn_error(spawn_message(&spec.program, &error)))
}

/// Writes `input` to the child's stdin from a task of its own (a program that reads late
/// must not block the output pump), then closes it.
pub(super) fn feed_stdin(child: &mut Child, input: Option<String>) {
    let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) else { return };
    tokio::spawn(async move {
        // A program that exits without reading it all is its own business (EPIPE).
        if let Err(error) = stdin.write_all(input.as_bytes()).await {
            tracing::debug!(%error, "the agent did not read all of its stdin");
        }
    });
}

fn spawn_message(program: &str, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound if program.contains('/') => {
            "the file or its interpreter does not exist; check agent.command".to_owned()
        }
        io::ErrorKind::NotFound => "not found on PATH; set agent.command".to_owned(),
        io::ErrorKind::PermissionDenied => {
            "permission denied; is it executable? check agent.command".to_owned()
        }
        _ if error.raw_os_error() == Some(libc::E2BIG) => {
            "the prompt is too long to pass as a command-line argument".to_owned()
        }
        _ => error.to_string(),
    }
}

/// What ends a run early.
pub(super) struct Stop {
    pub(super) timeout: Duration,
    pub(super) kill_grace: Duration,
    pub(super) cancel: watch::Receiver<bool>,
}

/// Waits for the main process, the timeout or cancellation; then makes sure the whole
/// group is gone.
pub(super) async fn supervise(child: &mut Child, pgid: i32, mut stop: Stop) -> io::Result<AgentEnd> {
    let end = tokio::select! {
        status = child.wait() => {
            // Children it left behind (`sleep 1000 &`) would hold stdout open forever.
            signal_group(pgid, libc::SIGKILL);
            return Ok(exit_end(status?));
        }
        () = tokio::time::sleep(stop.timeout) => AgentEnd::TimedOut,
        () = cancelled(&mut stop.cancel) => AgentEnd::Cancelled,
    };
    signal_group(pgid, libc::SIGTERM);
    let _ = tokio::time::timeout(stop.kill_grace, child.wait()).await;
    signal_group(pgid, libc::SIGKILL);
    child.wait().await?;
    Ok(end)
}

async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|cancelled| *cancelled).await.is_err() {
        // The sender is gone without cancelling: nobody can cancel any more.
        std::future::pending::<()>().await;
    }
}

fn exit_end(status: ExitStatus) -> AgentEnd {
    match (status.code(), status.signal()) {
        (Some(code), _) => AgentEnd::Exited(code),
        (None, Some(signal)) => AgentEnd::Signalled(signal),
        (None, None) => AgentEnd::Exited(-1),
    }
}

/// The agent's process group, killed on drop unless disarmed (e.g. `run` itself dropped).
pub(super) struct ProcessGroup {
    pub(super) pgid: i32,
    armed: bool,
}

impl ProcessGroup {
    pub(super) fn of(child: &Child) -> ProcessGroup {
        let pgid = child.id().and_then(|pid| i32::try_from(pid).ok()).unwrap_or(0);
        ProcessGroup { pgid, armed: true }
    }

    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

fn signal_group(pgid: i32, signal: libc::c_int) {
    // kill(-1) and kill(0) would reach far more than the agent's group.
    if pgid > 1 {
        // SAFETY: kill(2) has no memory effects; a negative pid names the agent's group.
        unsafe { libc::kill(-pgid, signal) };
    }
}
