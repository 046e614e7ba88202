//! The agent's questions, on the executor's side: where `forgehand mcp` leaves a question
//! (`<data_dir>/questions/task-<id>/question.json`, the only path outside its worktree a
//! sandboxed agent may write), the `--mcp-config` that starts it, and how the answers
//! that arrived on the issue become the prompt that resumes the session.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::mcp::SERVER_NAME;
use crate::config::Settings;
pub use crate::db::{Answer, append_answer, parse_answers};

/// The directory whose `question.json` a task's question server writes.
pub fn question_dir(data_dir: &Path, task_id: i64) -> PathBuf {
    data_dir.join("questions").join(format!("task-{task_id}"))
}

/// The question file in `dir`.
pub fn question_file(dir: &Path) -> PathBuf {
    dir.join("question.json")
}

/// The program the agent's CLI starts as the question server: `agent.forgehand_command`,
/// else this very program.
pub fn server_program(settings: &Settings) -> Option<String> {
    if !settings.agent.forgehand_command.is_empty() {
        return Some(settings.agent.forgehand_command.clone());
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.to_string_lossy().into_owned())
}

/// Claude Code's `--mcp-config` JSON: the server `forgehand`, run as `program mcp
/// --question-file <dir>/question.json --remaining <n>`, with no variables of its own
/// (it inherits the agent's filtered environment).
pub fn mcp_config(program: &str, dir: &Path, remaining: u32) -> String {
    let file = question_file(dir).to_string_lossy().into_owned();
    let args = ["mcp", "--question-file", &file, "--remaining", &remaining.to_string()];
    json!({ "mcpServers": { SERVER_NAME: { "command": program, "args": args, "env": {} } } }).to_string()
}

/// The answers as one text: each quoted under its author.
pub fn joined(answers: &[Answer]) -> String {
    let parts: Vec<String> =
        answers.iter().map(|a| format!("@{} answered:\n\n{}", a.by, a.text.trim())).collect();
    parts.join("\n\n")
}

/// The prompt that resumes the session that asked `question`.
pub fn resume_prompt(question: &str, answers: &[Answer]) -> String {
    format!(
        "Your question on the issue was answered. You asked:\n\n{}\n\n{}\n\nGo on with the task using this \
         answer. Finish with a short summary of what you changed and why.",
        quote(question),
        joined(answers)
    )
}

/// The question and its answers, for a prompt that starts a new session.
pub fn answered_block(question: &str, answers: &[Answer]) -> String {
    format!("{}\n\n{}", quote(question), joined(answers))
}

/// `text` as a Markdown quote.
pub fn quote(text: &str) -> String {
    text.trim().lines().map(|line| format!("> {line}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mcp_config_starts_forgehand_mcp_with_the_question_file() {
        let config: serde_json::Value =
            serde_json::from_str(&mcp_config("/usr/bin/forgehand", Path::new("/d/questions/task-3"), 2))
                .unwrap();
        let server = &config["mcpServers"]["forgehand"];
        assert_eq!(server["command"], "/usr/bin/forgehand");
        assert_eq!(
            server["args"],
            json!(["mcp", "--question-file", "/d/questions/task-3/question.json", "--remaining", "2"])
        );
        assert_eq!(server["env"], json!({}));
    }

    #[test]
    fn answers_append_and_join_in_order() {
        let one = append_answer(None, Answer { by: "alice".into(), text: "Use -v.".into() });
        let two = append_answer(Some(&one), Answer { by: "bob".into(), text: "And --verbose.".into() });
        let answers = parse_answers(Some(&two));
        assert_eq!(answers.len(), 2);
        let prompt = resume_prompt("Which flag?\nShort or long?", &answers);
        assert!(prompt.contains("> Which flag?\n> Short or long?"), "{prompt}");
        assert!(
            prompt.contains("@alice answered:\n\nUse -v.\n\n@bob answered:\n\nAnd --verbose."),
            "{prompt}"
        );
        assert!(parse_answers(Some("not json")).is_empty());
    }
}
