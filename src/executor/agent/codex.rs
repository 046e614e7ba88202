//! OpenAI Codex CLI (`kind = "codex"`): `codex exec --json … -` with the prompt on stdin,
//! read as its JSON Lines events: `thread.started`, `item.completed` (agent messages,
//! shell commands, file changes), `turn.completed` or `turn.failed`, `error`.
//!
//! Codex has no turn limit (`agent.max_turns` is not passed; `executor.timeout_secs`
//! bounds a run) and reports neither turns nor cost.

use serde_json::{Map, Value};

use super::{AgentEnd, AgentEvent, AgentResult, Launch, Request, one_line};

/// `exec --json [-m model] agent.args… -`, or for a follow-up
/// `exec resume --json [-m model] agent.args… <session> -`; the prompt goes on stdin (the
/// `-`), where no length limit of the command line applies.
pub fn launch(request: &Request) -> Launch {
    let mut args: Vec<String> = match request.resume {
        Some(_) => vec!["exec".into(), "resume".into(), "--json".into()],
        None => vec!["exec".into(), "--json".into()],
    };
    if !request.model.is_empty() {
        args.extend(["-m".to_owned(), request.model.to_owned()]);
    }
    args.extend(request.extra.iter().cloned());
    args.extend(request.mcp_config.map(mcp_overrides).unwrap_or_default());
    if let Some(session) = request.resume {
        args.push(session.to_owned());
    }
    args.push("-".to_owned());
    Launch { args, stdin: Some(request.prompt.to_owned()) }
}

/// Codex takes MCP servers from its config: the `--mcp-config` JSON (Claude Code's
/// `mcpServers` shape) as `-c mcp_servers.<name>.command=…` / `.args=[…]` overrides. JSON
/// strings and arrays of strings are valid TOML values.
fn mcp_overrides(config: &str) -> Vec<String> {
    let Ok(Value::Object(root)) = serde_json::from_str::<Value>(config) else { return Vec::new() };
    let Some(Value::Object(servers)) = root.get("mcpServers") else { return Vec::new() };
    let mut args = Vec::new();
    for (name, server) in servers {
        for key in ["command", "args"] {
            if let Some(value) = server.get(key) {
                args.extend(["-c".to_owned(), format!("mcp_servers.{name}.{key}={value}")]);
            }
        }
    }
    args
}

/// Follows a run: the thread id and the last agent message make the result.
#[derive(Debug, Default)]
pub struct Reader {
    session_id: Option<String>,
    last_message: String,
}

impl Reader {
    /// The events of one JSON line.
    pub fn line(&mut self, line: &[u8]) -> Vec<AgentEvent> {
        let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(line) else {
            return vec![AgentEvent::Unparsable];
        };
        let kind = str_field(&event, "type").unwrap_or_default();
        match kind {
            "thread.started" => {
                self.session_id = str_field(&event, "thread_id").map(str::to_owned);
                vec![AgentEvent::Init { session_id: self.session_id.clone(), model: None }]
            }
            "item.completed" => match event.get("item").and_then(Value::as_object) {
                Some(item) => self.item(item),
                None => vec![AgentEvent::Other(kind.to_owned())],
            },
            "turn.completed" => vec![AgentEvent::Result(self.result(None))],
            "turn.failed" => {
                let message = event.get("error").and_then(|e| e.get("message")).and_then(Value::as_str);
                vec![AgentEvent::Result(self.result(Some(message.unwrap_or_default())))]
            }
            _ => vec![AgentEvent::Other(kind.to_owned())],
        }
    }

    /// Codex prints its own end (`turn.completed` / `turn.failed`): nothing to add.
    pub fn finish(&mut self, _end: AgentEnd) -> Option<AgentEvent> {
        None
    }

    fn item(&mut self, item: &Map<String, Value>) -> Vec<AgentEvent> {
        let kind = str_field(item, "type").unwrap_or_default();
        match kind {
            "agent_message" => {
                self.last_message = str_field(item, "text").unwrap_or_default().to_owned();
                vec![AgentEvent::AssistantText(self.last_message.clone())]
            }
            "command_execution" => {
                let command = str_field(item, "command").unwrap_or_default();
                let exit_code = item.get("exit_code").and_then(Value::as_i64);
                let output = str_field(item, "aggregated_output").unwrap_or_default();
                vec![
                    AgentEvent::ToolUse {
                        name: "shell".into(),
                        summary: one_line(&format!("shell {command}")),
                    },
                    AgentEvent::ToolResult { is_error: exit_code != Some(0), preview: one_line(output) },
                ]
            }
            "file_change" => {
                let changes = item.get("changes").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
                let paths: Vec<&str> = changes.iter().filter_map(|c| c.get("path")?.as_str()).collect();
                let summary = one_line(&format!("file_change {}", paths.join(", ")));
                vec![AgentEvent::ToolUse { name: "file_change".into(), summary }]
            }
            _ => vec![AgentEvent::Other(format!("item/{kind}"))],
        }
    }

    fn result(&self, failure: Option<&str>) -> AgentResult {
        let mut result = AgentResult {
            subtype: "success".to_owned(),
            text: self.last_message.clone(),
            terminal_reason: Some("completed".to_owned()),
            session_id: self.session_id.clone(),
            ..AgentResult::default()
        };
        if let Some(message) = failure {
            let message = api_message(message).unwrap_or_else(|| without_url(message).to_owned());
            let message = message.as_str();
            result.subtype = "turn_failed".to_owned();
            result.is_error = true;
            result.text = message.to_owned();
            result.api_error_status = http_status(message);
            // The message comes from the model API or Codex itself, never from the
            // repository: it may go into the reason that is posted.
            let api = result.api_error_status.is_some() || message.contains(HIGH_DEMAND);
            result.terminal_reason =
                Some(if api { "api_error".to_owned() } else { one_line(&format!("turn_failed: {message}")) });
        }
        result
    }
}

/// What Codex says when the model API answered 5xx (it names no status then).
const HIGH_DEMAND: &str = "experiencing high demand";

/// The message without the `, url: …` Codex appends: the endpoint is configuration and
/// has no place in a comment.
fn without_url(message: &str) -> &str {
    message.split(", url: ").next().unwrap_or(message).trim()
}

/// The `error.message` of a model API error body that Codex passes on as it is (it does
/// for a 400), e.g. `{"error": {"message": "…", "type": "invalid_request_error"}}`.
fn api_message(message: &str) -> Option<String> {
    let body: Value = serde_json::from_str(message).ok()?;
    let error = body.get("error")?;
    let text = error.get("message")?.as_str()?;
    Some(match error.get("type").and_then(Value::as_str) {
        Some(kind) => format!("{kind}: {text}"),
        None => text.to_owned(),
    })
}

/// The HTTP status a failure message names: `last status: 429 Too Many Requests`,
/// `unexpected status 400 Bad Request: …`.
fn http_status(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("status")?;
    let digits: String =
        rest.trim_start_matches([':', ' ']).chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|status| (100..600).contains(status))
}

fn str_field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mcp_config_becomes_config_overrides() {
        let config = r#"{"mcpServers":{"forgehand":{"command":"/usr/bin/forgehand","args":["mcp","--question-file","/d/q \"x\".json"],"env":{}}}}"#;
        let launch = launch(&Request { mcp_config: Some(config), ..Request::new("Do it") });
        let args = launch.args.join(" ");
        assert!(
            args.contains(r#"-c mcp_servers.forgehand.command="/usr/bin/forgehand" -c mcp_servers.forgehand.args=["mcp","--question-file","/d/q \"x\".json"]"#),
            "{args}"
        );
        assert_eq!(launch.args.last().map(String::as_str), Some("-"));
        assert_eq!(mcp_overrides("not json"), Vec::<String>::new());
    }

    #[test]
    fn the_prompt_goes_on_stdin_and_resume_names_the_session() {
        let extra = ["--sandbox".to_owned(), "workspace-write".to_owned()];
        let request = Request { model: "gpt-5", extra: &extra, ..Request::new("-Fix it") };
        let fresh = launch(&request);
        assert_eq!(fresh.args, ["exec", "--json", "-m", "gpt-5", "--sandbox", "workspace-write", "-"]);
        assert_eq!(fresh.stdin.as_deref(), Some("-Fix it"));
        let resumed = launch(&Request { resume: Some("0199-abc"), model: "", ..request });
        assert_eq!(
            resumed.args,
            ["exec", "resume", "--json", "--sandbox", "workspace-write", "0199-abc", "-"]
        );
    }

    #[test]
    fn a_completed_turn_is_a_result_with_the_last_message() {
        let mut reader = Reader::default();
        let lines: [&[u8]; 6] = [
            br#"{"type":"thread.started","thread_id":"t-1"}"#,
            br#"{"type":"turn.started"}"#,
            br#"{"type":"item.completed","item":{"id":"item_0","type":"command_execution","command":"bash -lc 'cargo test'","aggregated_output":"ok\n","exit_code":0,"status":"completed"}}"#,
            br#"{"type":"item.completed","item":{"id":"item_1","type":"file_change","changes":[{"path":"/w/a.md","kind":"add"}],"status":"completed"}}"#,
            br#"{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"Added a.md"}}"#,
            br#"{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":5}}"#,
        ];
        let events: Vec<AgentEvent> = lines.iter().flat_map(|l| reader.line(l)).collect();
        assert_eq!(events[0], AgentEvent::Init { session_id: Some("t-1".into()), model: None });
        let shell =
            AgentEvent::ToolUse { name: "shell".into(), summary: "shell bash -lc 'cargo test'".into() };
        assert_eq!(events[2], shell);
        assert_eq!(events[3], AgentEvent::ToolResult { is_error: false, preview: "ok".into() });
        assert_eq!(
            events[4],
            AgentEvent::ToolUse { name: "file_change".into(), summary: "file_change /w/a.md".into() }
        );
        let AgentEvent::Result(result) = events.last().unwrap() else { panic!("no result") };
        assert_eq!((result.text.as_str(), result.is_error), ("Added a.md", false));
        assert_eq!(result.session_id.as_deref(), Some("t-1"));
    }

    #[test]
    fn a_failed_turn_is_an_error_result() {
        let mut reader = Reader::default();
        let events = reader.line(br#"{"type":"turn.failed","error":{"message":"stream disconnected"}}"#);
        let [AgentEvent::Result(result)] = events.as_slice() else { panic!("{events:?}") };
        assert!(result.is_error);
        assert_eq!((result.subtype.as_str(), result.text.as_str()), ("turn_failed", "stream disconnected"));
        assert_eq!(result.terminal_reason.as_deref(), Some("turn_failed: stream disconnected"));
        assert_eq!(reader.line(b"not json"), [AgentEvent::Unparsable]);
    }

    #[test]
    fn model_api_failures_carry_their_status_and_no_url() {
        let failed = |message: &str| {
            let line = serde_json::json!({"type": "turn.failed", "error": {"message": message}}).to_string();
            match Reader::default().line(line.as_bytes()).pop() {
                Some(AgentEvent::Result(result)) => result,
                other => panic!("{other:?}"),
            }
        };
        let limited = failed("exceeded retry limit, last status: 429 Too Many Requests");
        assert_eq!(
            (limited.api_error_status, limited.terminal_reason.as_deref()),
            (Some(429), Some("api_error"))
        );
        let rejected =
            failed("unexpected status 400 Bad Request: bad input, url: http://gateway.internal/v1/responses");
        assert_eq!(rejected.api_error_status, Some(400));
        assert_eq!(rejected.text, "unexpected status 400 Bad Request: bad input");
        let body =
            failed(r#"{"error":{"message":"Unsupported parameter: 'x'","type":"invalid_request_error"}}"#);
        assert_eq!(
            body.terminal_reason.as_deref(),
            Some("turn_failed: invalid_request_error: Unsupported parameter: 'x'")
        );
        let busy =
            failed("We\u{2019}re currently experiencing high demand, which may cause temporary errors.");
        assert_eq!((busy.api_error_status, busy.terminal_reason.as_deref()), (None, Some("api_error")));
    }
}
