//! The verdict on a finished agent run, whatever the CLI: success, or why not and whether
//! running again may help. Reasons are safe to post on an issue: they never quote stderr
//! or paths.

use std::time::Duration;

use super::{AgentEnd, AgentResult, AgentRun};

/// The verdict on a finished run.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentOutcome {
    Success,
    /// No result line: the CLI crashed or was killed. Worth retrying.
    NoResult(AgentEnd),
    MaxTurns {
        turns: Option<u32>,
    },
    PermissionDenied {
        count: usize,
        tools: Vec<String>,
    },
    /// The model API kept failing with a status worth waiting out (429, 5xx, 529
    /// overloaded) or gave no answer at all. Worth retrying later.
    ModelUnavailable {
        status: Option<u16>,
    },
    Failed(String),
    TimedOut(Duration),
    Cancelled,
}

/// Classifies a finished run. The reason ([`AgentOutcome::reason`]) never quotes stderr
/// or paths.
pub fn outcome(run: &AgentRun) -> AgentOutcome {
    match run.end {
        AgentEnd::Cancelled => return AgentOutcome::Cancelled,
        AgentEnd::TimedOut => return AgentOutcome::TimedOut(run.duration),
        AgentEnd::Exited(_) | AgentEnd::Signalled(_) => {}
    }
    let Some(result) = &run.result else { return AgentOutcome::NoResult(run.end) };
    if result.subtype == "error_max_turns" || result.terminal_reason.as_deref() == Some("max_turns") {
        return AgentOutcome::MaxTurns { turns: result.num_turns };
    }
    if result.permission_denials > 0 {
        let tools = result.denied_tools.clone();
        return AgentOutcome::PermissionDenied { count: result.permission_denials, tools };
    }
    if result.is_error
        && (result.terminal_reason.as_deref() == Some("api_error") || result.api_error_status.is_some())
    {
        return api_failure(result.api_error_status);
    }
    match failure(run.end, result) {
        Some(reason) => AgentOutcome::Failed(reason),
        None => AgentOutcome::Success,
    }
}

fn failure(end: AgentEnd, result: &AgentResult) -> Option<String> {
    let reason = result.terminal_reason.as_deref().filter(|reason| *reason != "completed");
    let what = match (reason, result.subtype.as_str()) {
        (Some(reason), _) => format!(" ({reason})"),
        (None, "success" | "") => String::new(),
        (None, subtype) => format!(" ({subtype})"),
    };
    match end {
        AgentEnd::Signalled(signal) => Some(format!("the agent was killed by signal {signal}{what}")),
        _ if result.is_error => Some(format!("the agent reported an error{what}")),
        AgentEnd::Exited(code) if code != 0 => Some(format!("the agent exited with code {code}{what}")),
        _ if reason.is_some() => Some(format!("the agent stopped early{what}")),
        _ => None,
    }
}

/// A run the model API ended: waiting helps with rate limits, overload, server errors and
/// no answer; any other status (400, 401, …) will not change by itself.
fn api_failure(status: Option<u16>) -> AgentOutcome {
    match status {
        None | Some(408 | 429 | 500..=599) => AgentOutcome::ModelUnavailable { status },
        Some(status @ (401 | 403)) => AgentOutcome::Failed(format!(
            "the model API refused the credentials (HTTP {status}); check the API key in agent.env"
        )),
        Some(status) => AgentOutcome::Failed(format!("the model API rejected the request (HTTP {status})")),
    }
}

/// What the model provider's stderr says when it, not the task, failed the run: a
/// lower-case fragment and the words forgehand reports for it.
const PROVIDER_STDERR: &[(&str, &str)] = &[
    ("econnrefused", "the model API refused the connection"),
    ("connection refused", "the model API refused the connection"),
    ("overloaded_error", "the model API is overloaded"),
    ("rate_limit_error", "the model API rate-limited the run"),
    ("too many requests", "the model API rate-limited the run"),
    ("authentication_error", "the model API refused the credentials"),
    ("invalid api key", "the model API refused the credentials"),
    ("service unavailable", "the model API is unavailable"),
    ("bad gateway", "the model API is unavailable"),
];

/// Why `run` failed for the model provider's sake (overloaded/529, 5xx, rate limit,
/// authentication, no connection), or `None` when it did not fail so: a success, or a
/// failure of the task's own (turns, permissions, a rejected request, a timeout). Judged
/// from the result line's API error and, for a run without one, the CLI's stderr; the
/// reason never quotes stderr. This is what counts against a profile's circuit breaker.
pub fn provider_failure(run: &AgentRun) -> Option<String> {
    if matches!(run.end, AgentEnd::Cancelled | AgentEnd::TimedOut) {
        return None;
    }
    if let Some(result) = &run.result {
        let api_error =
            result.terminal_reason.as_deref() == Some("api_error") || result.api_error_status.is_some();
        if result.is_error && api_error {
            return match result.api_error_status {
                None | Some(401 | 403 | 408 | 429 | 500..=599) => Some(api_reason(result.api_error_status)),
                // 400, 404, 413…: the request itself, which another provider would refuse too.
                Some(_) => None,
            };
        }
        if !result.is_error {
            return None;
        }
    }
    let stderr = run.stderr_tail.to_ascii_lowercase();
    PROVIDER_STDERR
        .iter()
        .find(|(fragment, _)| stderr.contains(fragment))
        .map(|(_, words)| (*words).to_owned())
}

fn api_reason(status: Option<u16>) -> String {
    match status {
        Some(status @ (401 | 403)) => format!("the model API refused the credentials (HTTP {status})"),
        status => AgentOutcome::ModelUnavailable { status }.reason(),
    }
}

/// True when a run that was asked to `--resume` a session never started: the CLI answers
/// an unknown session id with a non-zero exit and a zero-turn `error_during_execution`
/// result ("No conversation found with session ID"), or with no result at all.
pub fn resume_refused(run: &AgentRun) -> bool {
    let failed_exit = matches!(run.end, AgentEnd::Exited(code) if code != 0);
    let never_started = run
        .result
        .as_ref()
        .is_none_or(|r| r.is_error && r.subtype == "error_during_execution" && r.num_turns.unwrap_or(0) == 0);
    failed_exit && never_started
}

impl AgentOutcome {
    /// A short sentence for an issue comment.
    pub fn reason(&self) -> String {
        match self {
            AgentOutcome::Success => "the agent finished".to_owned(),
            AgentOutcome::NoResult(end) => {
                format!("the agent stopped without a final result ({})", end_words(*end))
            }
            AgentOutcome::MaxTurns { turns } => format!(
                "the agent used all its turns{} without finishing; raise agent.max_turns or narrow the issue",
                turns.map(|n| format!(" ({n})")).unwrap_or_default()
            ),
            AgentOutcome::PermissionDenied { count, tools } => format!(
                "the agent was refused permission {count} time{}{}; allow the tools it needs in agent.allowed_tools",
                if *count == 1 { "" } else { "s" },
                if tools.is_empty() { String::new() } else { format!(" ({})", tools.join(", ")) }
            ),
            AgentOutcome::ModelUnavailable { status } => match status {
                Some(status) => {
                    format!("the model API is unavailable (HTTP {status}{})", status_words(*status))
                }
                None => "the model API is unavailable or could not be reached".to_owned(),
            },
            AgentOutcome::Failed(reason) => reason.clone(),
            AgentOutcome::TimedOut(after) => {
                format!("the agent did not finish in time and was stopped after {}", human_duration(*after))
            }
            AgentOutcome::Cancelled => "the run was cancelled".to_owned(),
        }
    }

    /// True when running again as it is may well succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, AgentOutcome::NoResult(_) | AgentOutcome::ModelUnavailable { .. })
    }

    /// True only for [`AgentOutcome::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, AgentOutcome::Success)
    }
}

fn status_words(status: u16) -> &'static str {
    match status {
        429 => " rate limited",
        529 => " overloaded",
        408 => " request timeout",
        _ => " server error",
    }
}

fn end_words(end: AgentEnd) -> String {
    match end {
        AgentEnd::Exited(code) => format!("exit code {code}"),
        AgentEnd::Signalled(signal) => format!("killed by signal {signal}"),
        AgentEnd::TimedOut => "timed out".to_owned(),
        AgentEnd::Cancelled => "cancelled".to_owned(),
    }
}

fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(end: AgentEnd, result: AgentResult) -> AgentRun {
        AgentRun {
            end,
            session_id: None,
            result: Some(result),
            stderr_tail: String::new(),
            transcript_bytes: 0,
            duration: Duration::from_secs(75),
        }
    }

    fn success() -> AgentResult {
        AgentResult {
            subtype: "success".into(),
            terminal_reason: Some("completed".into()),
            ..AgentResult::default()
        }
    }

    #[test]
    fn outcome_needs_exit_zero_and_no_error() {
        assert_eq!(outcome(&finished(AgentEnd::Exited(0), success())), AgentOutcome::Success);
        let exit_one = outcome(&finished(AgentEnd::Exited(1), success()));
        assert_eq!(exit_one, AgentOutcome::Failed("the agent exited with code 1".into()));
        let flagged = AgentResult { is_error: true, ..success() };
        let error = outcome(&finished(AgentEnd::Exited(0), flagged));
        assert_eq!(error, AgentOutcome::Failed("the agent reported an error".into()));
        let aborted = AgentResult { terminal_reason: Some("api_error".into()), ..success() };
        let early = outcome(&finished(AgentEnd::Exited(0), aborted));
        assert_eq!(early, AgentOutcome::Failed("the agent stopped early (api_error)".into()));
        let killed = outcome(&finished(AgentEnd::Signalled(9), success()));
        assert_eq!(killed, AgentOutcome::Failed("the agent was killed by signal 9".into()));
    }

    #[test]
    fn model_api_errors_are_transient_only_when_waiting_helps() {
        let api_error = |status: Option<u16>| {
            let result = AgentResult {
                is_error: true,
                terminal_reason: Some("api_error".into()),
                api_error_status: status,
                ..success()
            };
            outcome(&finished(AgentEnd::Exited(1), result))
        };
        for status in [429, 500, 502, 529] {
            let verdict = api_error(Some(status));
            assert_eq!(verdict, AgentOutcome::ModelUnavailable { status: Some(status) });
            assert!(verdict.is_transient(), "{status}");
        }
        assert_eq!(api_error(Some(529)).reason(), "the model API is unavailable (HTTP 529 overloaded)");
        assert_eq!(api_error(None).reason(), "the model API is unavailable or could not be reached");
        assert!(api_error(None).is_transient());
        let rejected = api_error(Some(400));
        assert_eq!(rejected, AgentOutcome::Failed("the model API rejected the request (HTTP 400)".into()));
        assert!(!rejected.is_transient());
        assert!(api_error(Some(401)).reason().contains("check the API key in agent.env"));
    }

    #[test]
    fn provider_failures_are_the_providers_not_the_tasks() {
        let api = |status: Option<u16>| AgentResult {
            is_error: true,
            terminal_reason: Some("api_error".into()),
            api_error_status: status,
            ..success()
        };
        let of = |end, result: Option<AgentResult>, stderr: &str| {
            provider_failure(&AgentRun { result, stderr_tail: stderr.into(), ..finished(end, success()) })
        };
        let exit1 = AgentEnd::Exited(1);
        assert_eq!(
            of(exit1, Some(api(Some(529))), "").as_deref(),
            Some("the model API is unavailable (HTTP 529 overloaded)")
        );
        for status in [429, 500, 503, 401, 403] {
            assert!(of(exit1, Some(api(Some(status))), "").is_some(), "{status}");
        }
        assert!(of(exit1, Some(api(Some(401))), "").unwrap().contains("credentials (HTTP 401)"));
        assert!(of(exit1, Some(api(None)), "").is_some());
        // The request itself was refused: another provider would refuse it too.
        assert_eq!(of(exit1, Some(api(Some(400))), ""), None);
        // The task's own failures.
        assert_eq!(of(AgentEnd::Exited(0), Some(success()), "overloaded_error"), None);
        let turns = AgentResult { subtype: "error_max_turns".into(), is_error: true, ..success() };
        assert_eq!(of(exit1, Some(turns), "tests failed"), None);
        assert_eq!(of(AgentEnd::TimedOut, None, "ECONNREFUSED"), None);
        assert_eq!(of(exit1, None, "segfault"), None);
        // No result line: the CLI's stderr tells, and is never quoted.
        let refused = of(exit1, None, "Error: connect ECONNREFUSED 127.0.0.1:9 key=sk-secret");
        assert_eq!(refused.as_deref(), Some("the model API refused the connection"));
        let overloaded = of(exit1, None, r#"{"type":"error","error":{"type":"overloaded_error"}}"#);
        assert_eq!(overloaded.as_deref(), Some("the model API is overloaded"));
    }

    #[test]
    fn an_unknown_session_is_a_refused_resume() {
        let unknown = AgentResult {
            subtype: "error_during_execution".into(),
            is_error: true,
            num_turns: Some(0),
            ..AgentResult::default()
        };
        assert!(resume_refused(&finished(AgentEnd::Exited(1), unknown.clone())));
        assert!(resume_refused(&AgentRun { result: None, ..finished(AgentEnd::Exited(1), success()) }));
        let worked = AgentResult { num_turns: Some(3), ..unknown.clone() };
        assert!(!resume_refused(&finished(AgentEnd::Exited(1), worked)));
        assert!(!resume_refused(&finished(AgentEnd::Exited(0), success())));
        assert!(!resume_refused(&finished(AgentEnd::TimedOut, unknown)));
    }

    #[test]
    fn timeout_reason_says_how_long() {
        let run =
            AgentRun { end: AgentEnd::TimedOut, result: None, ..finished(AgentEnd::TimedOut, success()) };
        let reason = outcome(&run).reason();
        assert_eq!(reason, "the agent did not finish in time and was stopped after 1m 15s");
    }
}
