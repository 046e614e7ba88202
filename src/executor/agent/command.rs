//! Any program (`kind = "command"`): `agent.command agent.args…` with the prompt on stdin
//! or as the last argument. Its stdout is plain text: every line is kept in the
//! transcript, the last [`TEXT_TAIL_BYTES`] become the result, and the exit code alone
//! decides success.

use crate::config::PromptVia;

use super::{AgentEnd, AgentEvent, AgentResult, Launch, Request};

/// How much of the end of the output becomes the result text.
pub const TEXT_TAIL_BYTES: usize = 64 << 10;

/// `agent.args`, then `--mcp-config <json>` when the agent may ask questions
/// (`agent.questions = true`), then the prompt as the last argument or on stdin. `max_turns`, `model`
/// and `resume` mean nothing to an arbitrary program and are not passed.
pub fn launch(request: &Request) -> Launch {
    let mut args = request.extra.to_vec();
    if let Some(config) = request.mcp_config {
        args.extend(["--mcp-config".to_owned(), config.to_owned()]);
    }
    match request.prompt_via {
        PromptVia::Stdin => Launch { args, stdin: Some(request.prompt.to_owned()) },
        PromptVia::Arg => {
            args.push(request.prompt.to_owned());
            Launch { args, stdin: None }
        }
    }
}

/// Collects the text the program prints.
#[derive(Debug, Default)]
pub struct Reader {
    text: String,
}

impl Reader {
    /// Each non-blank line is assistant text.
    pub fn line(&mut self, line: &[u8]) -> Vec<AgentEvent> {
        let line = String::from_utf8_lossy(line);
        self.text.push_str(&line);
        self.text.push('\n');
        if self.text.len() > 2 * TEXT_TAIL_BYTES {
            self.keep_tail();
        }
        if line.trim().is_empty() { Vec::new() } else { vec![AgentEvent::AssistantText(line.into_owned())] }
    }

    /// The result of a program that exited (a signal leaves none: worth another try).
    pub fn finish(&mut self, end: AgentEnd) -> Option<AgentEvent> {
        let AgentEnd::Exited(code) = end else { return None };
        self.keep_tail();
        let result = AgentResult {
            subtype: if code == 0 { "success" } else { "" }.to_owned(),
            // The exit code speaks for itself: `outcome` names it.
            is_error: false,
            text: self.text.trim().to_owned(),
            terminal_reason: (code == 0).then(|| "completed".to_owned()),
            ..AgentResult::default()
        };
        Some(AgentEvent::Result(result))
    }

    fn keep_tail(&mut self) {
        let mut cut = self.text.len().saturating_sub(TEXT_TAIL_BYTES);
        while !self.text.is_char_boundary(cut) {
            cut += 1;
        }
        self.text.drain(..cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_goes_where_configured() {
        let extra = ["--yes".to_owned()];
        let request = Request { extra: &extra, ..Request::new("Fix it") };
        let stdin = launch(&request);
        assert_eq!(stdin, Launch { args: vec!["--yes".into()], stdin: Some("Fix it".into()) });
        let arg = launch(&Request { prompt_via: PromptVia::Arg, ..request });
        assert_eq!(arg, Launch { args: vec!["--yes".into(), "Fix it".into()], stdin: None });
    }

    #[test]
    fn the_output_becomes_the_result_and_the_exit_code_decides() {
        let mut reader = Reader::default();
        assert_eq!(
            reader.line(b"Changed two files."),
            [AgentEvent::AssistantText("Changed two files.".into())]
        );
        assert!(reader.line(b"").is_empty());
        reader.line(b"Done.");
        let Some(AgentEvent::Result(result)) = reader.finish(AgentEnd::Exited(0)) else { panic!() };
        assert_eq!(result.text, "Changed two files.\n\nDone.");
        assert_eq!(result.terminal_reason.as_deref(), Some("completed"));
        assert!(Reader::default().finish(AgentEnd::Signalled(9)).is_none());
    }

    #[test]
    fn only_the_tail_of_a_long_output_is_kept() {
        let mut reader = Reader::default();
        for _ in 0..10_000 {
            reader.line("ééééééééééééééééééééééééééééééé".as_bytes());
        }
        reader.line(b"last line");
        let Some(AgentEvent::Result(result)) = reader.finish(AgentEnd::Exited(1)) else { panic!() };
        assert!(result.text.len() <= TEXT_TAIL_BYTES && result.text.ends_with("last line"));
        assert!(!result.is_error && result.terminal_reason.is_none());
    }
}
