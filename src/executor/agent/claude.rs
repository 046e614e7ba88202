//! Claude Code (`kind = "claude"`): `claude -p <prompt> --output-format stream-json`,
//! read line by line: `system`/`init`, `assistant` and `user` content blocks, `result`.

use serde_json::{Map, Value};

use super::{AgentEvent, AgentResult, Request, one_line};

/// Tools the CLI may use without asking when the configuration grants none (no
/// `agent.allowed_tools` and no permission flag in `agent.args`): read, search and edit the
/// worktree, and run git and the usual build and test tools. These run the repository's
/// own code, so the default is as safe as the repositories the label is used on.
pub const DEFAULT_ALLOWED_TOOLS: &[&str] = &[
    "Read",
    "Glob",
    "Grep",
    "LS",
    "Edit",
    "MultiEdit",
    "Write",
    "NotebookEdit",
    "TodoWrite",
    "Bash(git:*)",
    "Bash(ls:*)",
    "Bash(cat:*)",
    "Bash(head:*)",
    "Bash(tail:*)",
    "Bash(wc:*)",
    "Bash(find:*)",
    "Bash(grep:*)",
    "Bash(rg:*)",
    "Bash(diff:*)",
    "Bash(sort:*)",
    "Bash(mkdir:*)",
    "Bash(echo:*)",
    "Bash(printf:*)",
    "Bash(make:*)",
    "Bash(cargo:*)",
    "Bash(go:*)",
    "Bash(npm:*)",
    "Bash(npx:*)",
    "Bash(yarn:*)",
    "Bash(pnpm:*)",
    "Bash(node:*)",
    "Bash(python3:*)",
    "Bash(python:*)",
    "Bash(pytest:*)",
    "Bash(pip:*)",
    "Bash(mvn:*)",
    "Bash(gradle:*)",
    "Bash(./gradlew:*)",
    "Bash(dotnet:*)",
    "Bash(bundle:*)",
    "Bash(rake:*)",
];

/// The default inside `agent.sandbox = "bubblewrap"`, where a command can reach only the
/// worktree, the system's programs and a private home: any shell command.
pub const SANDBOXED_ALLOWED_TOOLS: &[&str] =
    &["Read", "Glob", "Grep", "LS", "Edit", "MultiEdit", "Write", "NotebookEdit", "TodoWrite", "Bash"];

/// The tools allowed when the configuration grants none.
pub fn default_allowed_tools(sandboxed: bool) -> &'static [&'static str] {
    if sandboxed { SANDBOXED_ALLOWED_TOOLS } else { DEFAULT_ALLOWED_TOOLS }
}

/// Whether `agent.args` already says how permissions work (a mode, a tool list, or
/// skipping them): then forgehand adds no default.
fn args_set_permissions(extra: &[String]) -> bool {
    const FLAGS: [&str; 6] = [
        "--permission-mode",
        "--allowedTools",
        "--allowed-tools",
        "--dangerously-skip-permissions",
        "--disallowedTools",
        "--disallowed-tools",
    ];
    extra.iter().any(|arg| FLAGS.iter().any(|flag| arg == flag || arg.starts_with(&format!("{flag}="))))
}

/// Builds the argv after the program: `-p <prompt> --output-format stream-json --verbose
/// --max-turns <n>`, then `--model` if non-empty, `--allowedTools` if any (with neither
/// those nor a permission flag in `agent.args`: `--permission-mode acceptEdits` and
/// [`default_allowed_tools`]), `--resume` if given, then `agent.args`.
pub fn args(request: &Request) -> Vec<String> {
    let prompt = request.prompt;
    // The CLI's option parser would take a prompt starting with `-` for an option.
    let prompt = if prompt.starts_with('-') { format!(" {prompt}") } else { prompt.to_owned() };
    let mut args = vec!["-p".to_owned(), prompt];
    for arg in ["--output-format", "stream-json", "--verbose", "--max-turns"] {
        args.push(arg.to_owned());
    }
    args.push(request.max_turns.to_string());
    if !request.model.is_empty() {
        args.extend(["--model".to_owned(), request.model.to_owned()]);
    }
    if !request.fallback_model.is_empty() {
        args.extend(["--fallback-model".to_owned(), request.fallback_model.to_owned()]);
    }
    if let Some(usd) = request.max_budget_usd {
        args.extend(["--max-budget-usd".to_owned(), usd.to_string()]);
    }
    // One comma-separated value: the option takes several values and would swallow
    // whatever follows that does not start with `-`.
    let ask = request.mcp_config.map(|_| crate::executor::mcp::CLAUDE_TOOL_NAME);
    if !request.allowed_tools.is_empty() {
        let tools: Vec<&str> = request.allowed_tools.iter().map(String::as_str).chain(ask).collect();
        args.extend(["--allowedTools".to_owned(), tools.join(",")]);
    } else if !args_set_permissions(request.extra) {
        let tools: Vec<&str> = default_allowed_tools(request.sandboxed).iter().copied().chain(ask).collect();
        args.extend([
            "--permission-mode".to_owned(),
            "acceptEdits".to_owned(),
            "--allowedTools".to_owned(),
            tools.join(","),
        ]);
    }
    if let Some(config) = request.mcp_config {
        args.extend(["--mcp-config".to_owned(), config.to_owned()]);
    }
    if let Some(session) = request.resume {
        args.extend(["--resume".to_owned(), session.to_owned()]);
    }
    args.extend(request.extra.iter().cloned());
    args
}

/// Parses one stdout line into its first event; see [`parse_events`] for all of them.
pub fn parse_line(line: &[u8]) -> AgentEvent {
    parse_events(line).into_iter().next().unwrap_or(AgentEvent::Unparsable)
}

/// Parses one stdout line. Assistant and user lines give one event per content block
/// (text, tool use, tool result); every other line gives exactly one event.
pub fn parse_events(line: &[u8]) -> Vec<AgentEvent> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(line) else {
        return vec![AgentEvent::Unparsable];
    };
    let kind = str_field(&object, "type").unwrap_or_default();
    let events = match kind {
        "system" => vec![system_event(&object)],
        "assistant" | "user" => content_events(&object),
        "result" => vec![AgentEvent::Result(parse_result(&object))],
        _ => Vec::new(),
    };
    if events.is_empty() { vec![AgentEvent::Other(kind.to_owned())] } else { events }
}

fn str_field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

fn string_field(object: &Map<String, Value>, key: &str) -> Option<String> {
    str_field(object, key).map(str::to_owned)
}

fn system_event(object: &Map<String, Value>) -> AgentEvent {
    match str_field(object, "subtype").unwrap_or_default() {
        "init" => AgentEvent::Init {
            session_id: string_field(object, "session_id"),
            model: string_field(object, "model"),
        },
        subtype => AgentEvent::Other(format!("system/{subtype}")),
    }
}

fn content_events(object: &Map<String, Value>) -> Vec<AgentEvent> {
    let blocks = object.get("message").and_then(|m| m.get("content")).and_then(Value::as_array);
    blocks.into_iter().flatten().filter_map(Value::as_object).filter_map(block_event).collect()
}

fn block_event(block: &Map<String, Value>) -> Option<AgentEvent> {
    match str_field(block, "type")? {
        "text" => Some(AgentEvent::AssistantText(string_field(block, "text")?)),
        "tool_use" => {
            let name = string_field(block, "name").unwrap_or_default();
            let summary = tool_summary(&name, block.get("input"));
            Some(AgentEvent::ToolUse { name, summary })
        }
        "tool_result" => Some(AgentEvent::ToolResult {
            is_error: block.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            preview: one_line(&tool_result_text(block.get("content"))),
        }),
        _ => None,
    }
}

fn tool_summary(name: &str, input: Option<&Value>) -> String {
    let keys = ["file_path", "notebook_path", "command", "pattern", "path", "url"];
    let detail = keys.iter().find_map(|key| input?.get(key)?.as_str());
    one_line(&match detail {
        Some(detail) => format!("{name} {detail}"),
        None => name.to_owned(),
    })
}

fn tool_result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let texts = parts.iter().filter_map(|part| part.get("text")?.as_str());
            texts.collect::<Vec<_>>().join(" ")
        }
        _ => String::new(),
    }
}

fn parse_result(object: &Map<String, Value>) -> AgentResult {
    let subtype = string_field(object, "subtype").unwrap_or_default();
    let denials = object.get("permission_denials").and_then(Value::as_array);
    let mut denied_tools: Vec<String> = Vec::new();
    for tool in denials.into_iter().flatten().filter_map(|d| d.get("tool_name")?.as_str()) {
        if !denied_tools.iter().any(|seen| seen == tool) {
            denied_tools.push(tool.to_owned());
        }
    }
    AgentResult {
        // A result line without `is_error` is judged by its subtype as the only hint left.
        is_error: object.get("is_error").and_then(Value::as_bool).unwrap_or(subtype != "success"),
        subtype,
        num_turns: object.get("num_turns").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()),
        total_cost_usd: object.get("total_cost_usd").and_then(Value::as_f64),
        text: string_field(object, "result").unwrap_or_default(),
        permission_denials: denials.map_or(0, Vec::len),
        denied_tools,
        terminal_reason: string_field(object, "terminal_reason"),
        api_error_status: object
            .get("api_error_status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok()),
        session_id: string_field(object, "session_id"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::agent::PREVIEW_CHARS;

    #[test]
    fn build_args_always_passes_max_turns() {
        let built = args(&Request::new("Do it"));
        assert_eq!(
            built[..7],
            ["-p", "Do it", "--output-format", "stream-json", "--verbose", "--max-turns", "50"]
        );
        let extra = ["--permission-mode".to_owned(), "acceptEdits".to_owned()];
        let tools = ["Write".to_owned(), "Bash(git diff:*)".to_owned()];
        let request = Request {
            max_turns: 7,
            model: "opus",
            resume: Some("abc"),
            allowed_tools: &tools,
            extra: &extra,
            ..Request::new("Do it")
        };
        let tail = [
            "--max-turns",
            "7",
            "--model",
            "opus",
            "--allowedTools",
            "Write,Bash(git diff:*)",
            "--resume",
            "abc",
            "--permission-mode",
            "acceptEdits",
        ];
        assert_eq!(args(&request)[5..], tail);
    }

    #[test]
    fn with_no_permission_settings_edits_and_usual_commands_are_allowed() {
        let built = args(&Request::new("Do it"));
        assert_eq!(built[7..10], ["--permission-mode", "acceptEdits", "--allowedTools"]);
        let tools: Vec<&str> = built[10].split(',').collect();
        assert!(tools.contains(&"Write") && tools.contains(&"Bash(cargo:*)"), "{tools:?}");
        assert!(!tools.contains(&"Bash"), "any shell command only inside the sandbox");
        let sandboxed = args(&Request { sandboxed: true, ..Request::new("Do it") });
        assert!(sandboxed[10].split(',').any(|tool| tool == "Bash"), "{sandboxed:?}");
        assert_eq!(built.len(), 11);
    }

    #[test]
    fn configured_permissions_replace_the_default() {
        let tools = ["Write".to_owned()];
        let listed = args(&Request { allowed_tools: &tools, ..Request::new("Do it") });
        assert_eq!(listed[7..], ["--allowedTools", "Write"]);
        for extra in [
            vec!["--permission-mode".to_owned(), "plan".to_owned()],
            vec!["--permission-mode=bypassPermissions".to_owned()],
            vec!["--dangerously-skip-permissions".to_owned()],
            vec!["--allowedTools".to_owned(), "Bash".to_owned()],
        ] {
            let built = args(&Request { extra: &extra, ..Request::new("Do it") });
            assert_eq!(built[7..], extra[..], "agent.args alone decide");
        }
    }

    #[test]
    fn the_question_tool_is_configured_and_allowed() {
        let config = r#"{"mcpServers":{}}"#;
        let built = args(&Request { mcp_config: Some(config), ..Request::new("Do it") });
        assert!(built[10].ends_with(",mcp__forgehand__ask_question"), "{built:?}");
        assert_eq!(built[11..13], ["--mcp-config", config]);
        let tools = ["Write".to_owned()];
        let listed =
            args(&Request { allowed_tools: &tools, mcp_config: Some(config), ..Request::new("Do it") });
        assert_eq!(listed[7..9], ["--allowedTools", "Write,mcp__forgehand__ask_question"]);
    }

    #[test]
    fn build_args_keeps_a_dash_prompt_from_looking_like_an_option() {
        assert_eq!(args(&Request::new("--help me"))[1], " --help me");
    }

    #[test]
    fn parse_line_reads_the_known_types() {
        let init = br#"{"type":"system","subtype":"init","session_id":"s1","model":"m","tools":[],"new":1}"#;
        let init_event = AgentEvent::Init { session_id: Some("s1".into()), model: Some("m".into()) };
        assert_eq!(parse_line(init), init_event);
        let retry = br#"{"type":"system","subtype":"api_retry","attempt":2}"#;
        assert_eq!(parse_line(retry), AgentEvent::Other("system/api_retry".into()));
        let tool = br#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Bash","input":{"command":"cargo\ntest"}}]}}"#;
        assert_eq!(
            parse_line(tool),
            AgentEvent::ToolUse { name: "Bash".into(), summary: "Bash cargo test".into() }
        );
        let result = br#"{"type":"user","message":{"content":[{"type":"tool_result","content":[{"type":"text","text":"ok"}],"is_error":true}]}}"#;
        assert_eq!(parse_line(result), AgentEvent::ToolResult { is_error: true, preview: "ok".into() });
        assert_eq!(
            parse_line(br#"{"type":"stream_event","event":{}}"#),
            AgentEvent::Other("stream_event".into())
        );
        assert_eq!(parse_line(b"\xff\xfe{"), AgentEvent::Unparsable);
        assert_eq!(parse_line(b"[1]"), AgentEvent::Unparsable);
    }

    #[test]
    fn parse_events_splits_content_blocks() {
        let line = br#"{"type":"assistant","message":{"content":[{"type":"text","text":"Hi"},{"type":"tool_use","name":"Read","input":{}}]}}"#;
        let events = parse_events(line);
        let tool = AgentEvent::ToolUse { name: "Read".into(), summary: "Read".into() };
        assert_eq!(events, [AgentEvent::AssistantText("Hi".into()), tool]);
    }

    #[test]
    fn summaries_are_one_short_line() {
        let long = format!(
            r#"{{"type":"assistant","message":{{"content":[{{"type":"tool_use","name":"Grep","input":{{"pattern":"{}"}}}}]}}}}"#,
            "é".repeat(500)
        );
        let AgentEvent::ToolUse { summary, .. } = parse_line(long.as_bytes()) else {
            panic!("not a tool use")
        };
        assert_eq!(summary.chars().count(), PREVIEW_CHARS);
        assert!(summary.starts_with("Grep éé") && summary.ends_with('…'));
    }

    #[test]
    fn unknown_types_and_fields_are_passed_over() {
        // What a newer CLI might print: new line types, new fields, new content blocks.
        let lines: [&[u8]; 5] = [
            br#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed"}}"#,
            br#"{"type":"system","subtype":"init","session_id":"s1","model":"m","plugins":[{"x":1}],"fast_mode_state":"off"}"#,
            br#"{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"Hi","citations":null}],"context_management":{}},"parent_tool_use_id":null,"uuid":"u"}"#,
            br#"{"type":"user","message":{"content":[{"type":"image","source":{}}]},"tool_use_result":{"stdout":""}}"#,
            br#"{"type":"result","subtype":"success","is_error":false,"num_turns":1,"modelUsage":{"m":{}},"fast_mode_state":"off","new_field":[1,2]}"#,
        ];
        let events: Vec<AgentEvent> = lines.iter().flat_map(|line| parse_events(line)).collect();
        let [unknown, init, text, image, AgentEvent::Result(result)] = &events[..] else {
            panic!("{events:#?}")
        };
        assert_eq!(unknown, &AgentEvent::Other("rate_limit_event".into()));
        assert_eq!(init, &AgentEvent::Init { session_id: Some("s1".into()), model: Some("m".into()) });
        assert_eq!(text, &AgentEvent::AssistantText("Hi".into()), "the thinking block is skipped");
        assert_eq!(image, &AgentEvent::Other("user".into()));
        assert!(!result.is_error && result.num_turns == Some(1), "{result:?}");
    }

    #[test]
    fn result_fields_are_optional() {
        let AgentEvent::Result(result) =
            parse_line(br#"{"type":"result","subtype":"error_during_execution"}"#)
        else {
            panic!("not a result")
        };
        let expected = AgentResult {
            subtype: "error_during_execution".into(),
            is_error: true,
            ..AgentResult::default()
        };
        assert_eq!(result, expected);
    }
}
