//! `forgehand mcp`: the MCP server named `forgehand` that gives the agent one tool,
//! `ask_question` (`{"question": string}`), over stdio (newline-delimited JSON-RPC 2.0:
//! `initialize`, `notifications/initialized`, `ping`, `tools/list`, `tools/call`).
//!
//! The agent's CLI starts it inside the agent's sandbox with the agent's environment. It
//! knows only the file it may write the question to and how many questions are left: no
//! configuration, database or token. The executor reads the file after the run.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The server's name, as Claude Code prefixes its tools: `mcp__forgehand__ask_question`.
pub const SERVER_NAME: &str = "forgehand";
/// The one tool.
pub const TOOL_NAME: &str = "ask_question";
/// The tool as Claude Code names it (for `--allowedTools`).
pub const CLAUDE_TOOL_NAME: &str = "mcp__forgehand__ask_question";
/// Longest question kept, in characters.
pub const MAX_QUESTION_CHARS: usize = 4000;
/// The protocol revision answered when the client asks for none we know.
const LATEST_PROTOCOL: &str = "2025-06-18";
const KNOWN_PROTOCOLS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// What one server process may do.
#[derive(Debug, Clone)]
pub struct Server {
    /// Where the question is written (`{"question": …}`), once.
    pub question_file: PathBuf,
    /// Questions the agent may still ask in this task.
    pub remaining: u32,
}

/// The question a run asked, as `forgehand mcp` wrote it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Asked {
    pub question: String,
}

impl Server {
    /// Answers requests from `input` on `output` until `input` ends.
    pub fn serve(&self, input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
        for line in input.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            if let Some(reply) = self.handle_line(&line) {
                writeln!(output, "{reply}")?;
                output.flush()?;
            }
        }
        Ok(())
    }

    /// The reply to one message, if it wants one (notifications do not).
    pub fn handle_line(&self, line: &str) -> Option<Value> {
        let message: Value = match serde_json::from_str(line) {
            Ok(message) => message,
            Err(err) => return Some(error(Value::Null, -32700, &format!("parse error: {err}"))),
        };
        let id = message.get("id").cloned()?;
        let method = message.get("method").and_then(Value::as_str).unwrap_or_default();
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        Some(match method {
            "initialize" => reply(id, initialize(&params)),
            "ping" => reply(id, json!({})),
            "tools/list" => reply(id, json!({ "tools": [tool()] })),
            "tools/call" => match params.get("name").and_then(Value::as_str) {
                Some(TOOL_NAME) => reply(id, self.ask(params.get("arguments").unwrap_or(&Value::Null))),
                other => error(id, -32602, &format!("unknown tool {other:?}; the only tool is {TOOL_NAME}")),
            },
            _ => error(id, -32601, &format!("method {method:?} not found")),
        })
    }

    /// `tools/call ask_question`: writes the question, tells the agent to stop.
    fn ask(&self, arguments: &Value) -> Value {
        let question = arguments.get("question").and_then(Value::as_str).unwrap_or_default().trim();
        if question.is_empty() {
            return tool_result(true, "ask_question needs {\"question\": \"...\"} with the question's text.");
        }
        if self.remaining == 0 {
            return tool_result(
                true,
                "No more questions may be asked in this task. Decide with your best judgement, go on, \
                 and say in your final summary what you assumed.",
            );
        }
        if self.question_file.exists() {
            return tool_result(true, "A question was already posted in this run. End your turn now.");
        }
        let question: String = question.chars().take(MAX_QUESTION_CHARS).collect();
        if let Err(err) = write_question(&self.question_file, &Asked { question }) {
            return tool_result(
                true,
                &format!("The question could not be posted ({err}). Go on without it."),
            );
        }
        tool_result(
            false,
            "Your question has been posted on the issue. End your turn now: do not go on working. \
             When a person answers, this session resumes with the answer.",
        )
    }
}

/// Writes `asked` to `path` whole (a temporary file, then a rename).
fn write_question(path: &Path, asked: &Asked) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, serde_json::to_vec(asked)?)?;
    std::fs::rename(&temporary, path)
}

/// Reads (and removes) the question a run left at `path`, if any.
pub fn take_question(path: &Path) -> Option<Asked> {
    let bytes = std::fs::read(path).ok()?;
    let _ = std::fs::remove_file(path);
    serde_json::from_slice(&bytes).ok()
}

fn initialize(params: &Value) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or_default();
    let version = if KNOWN_PROTOCOLS.contains(&asked) { asked } else { LATEST_PROTOCOL };
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION") },
        "instructions": "Use ask_question only when the request is ambiguous in a way that changes the \
                         result, or cannot be done as written. Then end your turn.",
    })
}

fn tool() -> Value {
    json!({
        "name": TOOL_NAME,
        "description": "Ask the person who requested this task a question on the issue, when the \
                        request is ambiguous in a way that changes the result or cannot be done as \
                        written. Not for anything the code can tell you. After asking, end your turn: \
                        the session resumes with the answer.",
        "inputSchema": {
            "type": "object",
            "properties": { "question": { "type": "string", "description": "The question, self-contained." } },
            "required": ["question"],
        },
    })
}

fn tool_result(is_error: bool, text: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": text }], "isError": is_error })
}

fn reply(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(dir: &Path, remaining: u32) -> Server {
        Server { question_file: dir.join("question.json"), remaining }
    }

    #[test]
    fn a_session_lists_the_tool_and_writes_the_question_once() {
        let dir = tempfile::tempdir().unwrap();
        let input = [
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ask_question","arguments":{"question":"Which flag?"}}}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"ask_question","arguments":{"question":"Again?"}}}"#,
            r#"{"jsonrpc":"2.0","id":5,"method":"resources/list"}"#,
        ]
        .join("\n");
        let mut output = Vec::new();
        server(dir.path(), 1).serve(input.as_bytes(), &mut output).unwrap();
        let replies: Vec<Value> =
            String::from_utf8(output).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(replies.len(), 5, "the notification gets no reply: {replies:?}");
        assert_eq!(replies[0]["result"]["serverInfo"]["name"], "forgehand");
        assert_eq!(replies[0]["result"]["protocolVersion"], "2025-06-18");
        assert_eq!(replies[1]["result"]["tools"][0]["name"], "ask_question");
        assert_eq!(replies[2]["result"]["isError"], false);
        assert_eq!(replies[3]["result"]["isError"], true, "a second question in one run is refused");
        assert_eq!(replies[4]["error"]["code"], -32601);
        let asked = take_question(&dir.path().join("question.json")).unwrap();
        assert_eq!(asked.question, "Which flag?");
        assert!(take_question(&dir.path().join("question.json")).is_none(), "taking removes it");
    }

    #[test]
    fn no_question_is_written_when_none_are_left_or_the_text_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let call = |q: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{{"name":"ask_question","arguments":{{"question":{q:?}}}}}}}"#
            )
        };
        let spent = server(dir.path(), 0).handle_line(&call("Which?")).unwrap();
        assert_eq!(spent["result"]["isError"], true);
        assert_eq!(spent["id"], "a");
        let empty = server(dir.path(), 3).handle_line(&call("  ")).unwrap();
        assert_eq!(empty["result"]["isError"], true);
        assert!(!dir.path().join("question.json").exists());
        assert_eq!(server(dir.path(), 3).handle_line("{not json").unwrap()["error"]["code"], -32700);
    }
}
