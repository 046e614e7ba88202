//! The agent's transcript (`data_dir/transcripts/task-<id>.jsonl`, one stream-json line
//! per event) turned into entries a person can read: assistant text, one line per tool
//! call that opens onto its input and result, errors marked.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Lines rendered at most on the task page; older ones are left out.
pub const MAX_LINES: usize = 5_000;
/// Bytes read at most from the end of the file.
const MAX_TAIL_BYTES: u64 = 8 * 1024 * 1024;
/// Characters kept of one tool input or result.
const MAX_DETAIL_CHARS: usize = 20_000;

/// What an entry shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Tool,
    /// A tool result whose call was rendered earlier (while streaming).
    LateResult,
    Info,
}

/// One readable piece of the transcript.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    /// Text, or the one-line summary of a tool call.
    pub text: String,
    pub tool_id: String,
    pub input: String,
    pub result: Option<String>,
    pub is_error: bool,
}

/// Entries read from a transcript, and where the next read starts.
#[derive(Debug, Default)]
pub struct Chunk {
    pub entries: Vec<Entry>,
    /// Byte offset just past the last complete line read.
    pub offset: u64,
    /// Whether earlier lines were left out.
    pub truncated: bool,
    /// Lines read (each makes zero or more entries).
    pub lines: usize,
}

/// The transcript file of task `id`.
pub fn path(data_dir: &Path, id: i64) -> PathBuf {
    data_dir.join("transcripts").join(format!("task-{id}.jsonl"))
}

/// Bytes read at most, from the database or a file.
pub const MAX_BYTES: u64 = MAX_TAIL_BYTES;

/// `bytes` for a person: `812 bytes`, `64.0 KB`, `6.5 MB` (powers of 1,000).
pub fn size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} bytes"),
        1_000..1_000_000 => format!("{:.1} KB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

/// The entries of transcript bytes that start at offset `start`; `from` is what the
/// caller asked for (`None`: the tail, which begins with a whole line).
pub fn chunk_of(bytes: &[u8], start: u64, from: Option<u64>) -> Chunk {
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut lines: Vec<&[u8]> = bytes[..complete].split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut truncated = false;
    if from.is_none() && start > 0 {
        truncated = true;
    }
    if lines.len() > MAX_LINES {
        lines.drain(..lines.len() - MAX_LINES);
        truncated = true;
    }
    let mut entries = Vec::new();
    for line in &lines {
        parse_line(line, &mut entries);
    }
    Chunk { entries, offset: start + complete as u64, truncated, lines: lines.len() }
}

/// Reads the complete lines after `from` (or, with `None`, the last [`MAX_LINES`]).
pub fn read(path: &Path, from: Option<u64>) -> std::io::Result<Chunk> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Chunk::default()),
        Err(err) => return Err(err),
    };
    let len = file.metadata()?.len();
    let start = match from {
        Some(offset) => offset.min(len),
        None => len.saturating_sub(MAX_TAIL_BYTES),
    };
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(MAX_TAIL_BYTES).read_to_end(&mut bytes)?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut lines: Vec<&[u8]> = bytes[..complete].split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut truncated = false;
    if from.is_none() && start > 0 {
        // The first line read was cut in the middle.
        lines.remove(0);
        truncated = true;
    }
    if lines.len() > MAX_LINES {
        lines.drain(..lines.len() - MAX_LINES);
        truncated = true;
    }
    let mut entries = Vec::new();
    for line in &lines {
        parse_line(line, &mut entries);
    }
    Ok(Chunk { entries, offset: start + complete as u64, truncated, lines: lines.len() })
}

/// Adds the entries of one line: Claude Code stream-json, Codex JSON Lines, or plain text
/// (`kind = "command"`), shown as it is.
pub fn parse_line(line: &[u8], entries: &mut Vec<Entry>) {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(line) else {
        let text = String::from_utf8_lossy(line);
        if !text.trim().is_empty() {
            entries.push(Entry { kind: Kind::Text, ..info(cap(&text), false) });
        }
        return;
    };
    match object.get("type").and_then(Value::as_str).unwrap_or_default() {
        "thread.started" => entries.push(info("Session started (Codex)".into(), false)),
        "item.completed" => {
            if let Some(item) = object.get("item").and_then(Value::as_object) {
                codex_item(item, entries);
            }
        }
        "turn.completed" => entries.push(info("Turn completed".into(), false)),
        crate::executor::agent::VERDICT_TYPE => entries.push(verdict_entry(&object)),
        "turn.failed" => {
            let mut entry = info("Turn failed".into(), true);
            let message = object.get("error").and_then(|e| e.get("message")).and_then(Value::as_str);
            entry.result = message.map(cap);
            entries.push(entry);
        }
        "system" if object.get("subtype").and_then(Value::as_str) == Some("init") => {
            let model = object.get("model").and_then(Value::as_str).unwrap_or("unknown model");
            entries.push(info(format!("Session started ({model})"), false));
        }
        "assistant" | "user" => {
            let blocks = object.get("message").and_then(|m| m.get("content")).and_then(Value::as_array);
            for block in blocks.into_iter().flatten().filter_map(Value::as_object) {
                block_entry(block, entries);
            }
        }
        "result" => entries.push(result_entry(&object)),
        _ => {}
    }
}

fn block_entry(block: &Map<String, Value>, entries: &mut Vec<Entry>) {
    let field = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    match block.get("type").and_then(Value::as_str).unwrap_or_default() {
        "text" => {
            let text = field("text");
            if !text.trim().is_empty() {
                entries.push(Entry { kind: Kind::Text, ..info(cap(&text), false) });
            }
        }
        "tool_use" => {
            let name = field("name");
            let input = block.get("input").cloned().unwrap_or(Value::Null);
            entries.push(Entry {
                kind: Kind::Tool,
                text: summary(&name, &input),
                tool_id: field("id"),
                input: cap(&serde_json::to_string_pretty(&input).unwrap_or_default()),
                result: None,
                is_error: false,
            });
        }
        "tool_result" => {
            let id = field("tool_use_id");
            let is_error = block.get("is_error").and_then(Value::as_bool).unwrap_or(false);
            let text = cap(&result_text(block.get("content")));
            let call =
                entries.iter_mut().rev().find(|e| e.kind == Kind::Tool && e.tool_id == id && !id.is_empty());
            match call {
                Some(call) => {
                    call.result = Some(text);
                    call.is_error = is_error;
                }
                None => entries.push(Entry {
                    kind: Kind::LateResult,
                    text: if is_error { "Result (error)".into() } else { "Result".into() },
                    tool_id: id,
                    input: String::new(),
                    result: Some(text),
                    is_error,
                }),
            }
        }
        _ => {}
    }
}

/// A finished Codex item: a message, a shell command with its output, a file change.
fn codex_item(item: &Map<String, Value>, entries: &mut Vec<Entry>) {
    let field = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or_default();
    match field("type") {
        "agent_message" if !field("text").trim().is_empty() => {
            entries.push(Entry { kind: Kind::Text, ..info(cap(field("text")), false) });
        }
        "command_execution" => entries.push(Entry {
            kind: Kind::Tool,
            text: summary("shell", &serde_json::json!({ "command": field("command") })),
            tool_id: field("id").to_owned(),
            input: cap(field("command")),
            result: Some(cap(field("aggregated_output"))),
            is_error: item.get("exit_code").and_then(Value::as_i64) != Some(0),
        }),
        "file_change" => {
            let changes = item.get("changes").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            let paths: Vec<&str> = changes.iter().filter_map(|c| c.get("path")?.as_str()).collect();
            entries.push(info(format!("Changed {}", paths.join(", ")), false));
        }
        "error" => entries.push(info(cap(field("message")), true)),
        _ => {}
    }
}

fn result_entry(object: &Map<String, Value>) -> Entry {
    // Claude Code says `success` of a run whose tool calls were refused: that is no success.
    let denials = object.get("permission_denials").and_then(Value::as_array).map_or(0, Vec::len);
    let is_error = object.get("is_error").and_then(Value::as_bool).unwrap_or(false) || denials > 0;
    let subtype = object.get("subtype").and_then(Value::as_str).unwrap_or("finished");
    let turns =
        object.get("num_turns").and_then(Value::as_u64).map(|n| format!(", {n} turns")).unwrap_or_default();
    let cost = object
        .get("total_cost_usd")
        .and_then(Value::as_f64)
        .map(|c| format!(", ${c:.2}"))
        .unwrap_or_default();
    let refused = match denials {
        0 => String::new(),
        n => format!(", {n} tool call{} refused", if n == 1 { "" } else { "s" }),
    };
    let mut entry = info(format!("The agent reported: {subtype}{turns}{cost}{refused}"), is_error);
    if let Some(text) = object.get("result").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        entry.result = Some(cap(text));
    }
    entry
}

/// forgehand's own verdict on a run, the last line of each run in the transcript.
fn verdict_entry(object: &Map<String, Value>) -> Entry {
    let success = object.get("success").and_then(Value::as_bool).unwrap_or(false);
    let reason = object.get("reason").and_then(Value::as_str).unwrap_or_default();
    match success {
        true => info("forgehand: the run succeeded".into(), false),
        false => info(format!("forgehand: the run failed: {}", cap(reason)), true),
    }
}

fn info(text: String, is_error: bool) -> Entry {
    Entry { kind: Kind::Info, text, tool_id: String::new(), input: String::new(), result: None, is_error }
}

/// The tool and what it works on, on one line.
fn summary(name: &str, input: &Value) -> String {
    let keys = ["file_path", "notebook_path", "command", "pattern", "path", "url", "description"];
    let detail = keys.iter().find_map(|key| input.get(key)?.as_str());
    let line = match detail {
        Some(detail) => format!("{name} {detail}"),
        None => name.to_owned(),
    };
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 160 {
        format!("{}…", line.chars().take(159).collect::<String>())
    } else {
        line
    }
}

fn result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text")?.as_str()).collect::<Vec<_>>().join("\n")
        }
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn cap(text: &str) -> String {
    if text.chars().count() <= MAX_DETAIL_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_DETAIL_CHARS).collect();
    cut.push_str("\n… (cut)");
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_call_carries_its_result_and_error_flag() {
        let mut entries = Vec::new();
        let call = br#"{"type":"assistant","message":{"content":[{"type":"text","text":"Looking."},{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"cargo test"}}]}}"#;
        let result = br#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":"boom"}]}}"#;
        parse_line(call, &mut entries);
        parse_line(result, &mut entries);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].kind, Kind::Text);
        assert_eq!(entries[1].text, "Bash cargo test");
        assert_eq!(entries[1].result.as_deref(), Some("boom"));
        assert!(entries[1].is_error);
    }

    #[test]
    fn a_refused_run_never_ends_in_success() {
        let mut entries = Vec::new();
        let result = br#"{"type":"result","subtype":"success","is_error":false,"num_turns":2,"permission_denials":[{"tool_name":"Write"}]}"#;
        parse_line(result, &mut entries);
        let verdict = br#"{"type":"forgehand.verdict","success":false,"reason":"the agent was refused permission 1 time (Write)"}"#;
        parse_line(verdict, &mut entries);
        assert_eq!(entries[0].text, "The agent reported: success, 2 turns, 1 tool call refused");
        assert!(entries[0].is_error);
        let last = entries.last().unwrap();
        assert_eq!(last.text, "forgehand: the run failed: the agent was refused permission 1 time (Write)");
        assert!(last.is_error);
    }

    #[test]
    fn a_result_without_its_call_stands_alone() {
        let mut entries = Vec::new();
        let result = br#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t9","content":[{"type":"text","text":"ok"}]}]}}"#;
        parse_line(result, &mut entries);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].kind, Kind::LateResult);
        assert_eq!(entries[0].tool_id, "t9");
    }

    #[test]
    fn plain_text_lines_are_shown_as_they_are() {
        let mut entries = Vec::new();
        parse_line(b"Changed two files.", &mut entries);
        parse_line(b"   ", &mut entries);
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].kind, entries[0].text.as_str()), (Kind::Text, "Changed two files."));
    }

    #[test]
    fn codex_items_become_text_and_commands() {
        let mut entries = Vec::new();
        for line in [
            &br#"{"type":"thread.started","thread_id":"t"}"#[..],
            br#"{"type":"item.completed","item":{"id":"i1","type":"command_execution","command":"bash -lc ls","aggregated_output":"a.md\n","exit_code":2}}"#,
            br#"{"type":"item.completed","item":{"id":"i2","type":"agent_message","text":"Listed."}}"#,
            br#"{"type":"turn.failed","error":{"message":"stream disconnected"}}"#,
        ] {
            parse_line(line, &mut entries);
        }
        assert_eq!(entries.len(), 4);
        assert_eq!((entries[1].kind, entries[1].text.as_str()), (Kind::Tool, "shell bash -lc ls"));
        assert_eq!(entries[1].result.as_deref(), Some("a.md\n"));
        assert!(entries[1].is_error);
        assert_eq!(entries[2].text, "Listed.");
        assert!(entries[3].is_error && entries[3].result.as_deref() == Some("stream disconnected"));
    }
}
