//! What differs between agent CLIs: how forgehand starts one (arguments, stdin, which
//! variables it may see) and how it reads what the CLI prints. The process itself is
//! run the same way for all of them (`super::run`).

use super::{AgentEnd, AgentEvent, Launch, Request, claude, codex, command};
use crate::config::AgentKind;

/// The arguments and stdin of a run of `kind`.
pub fn launch(kind: AgentKind, request: &Request) -> Launch {
    match kind {
        AgentKind::Claude => Launch { args: claude::args(request), stdin: None },
        AgentKind::Codex => codex::launch(request),
        AgentKind::Command => command::launch(request),
    }
}

/// Variable-name prefixes passed on from forgehand's environment to a CLI of `kind`
/// (besides the common names and `agent.env`): its API keys and settings.
pub fn env_prefixes(kind: AgentKind) -> &'static [&'static str] {
    match kind {
        AgentKind::Claude => &["ANTHROPIC_", "CLAUDE_"],
        AgentKind::Codex => &["OPENAI_", "CODEX_"],
        AgentKind::Command => &[],
    }
}

/// Turns a CLI's stdout lines into events, and its end into a result where the CLI does
/// not print one itself.
#[derive(Debug)]
pub enum Reader {
    Claude,
    Codex(codex::Reader),
    Text(command::Reader),
}

impl Reader {
    /// A reader for the output of `kind`.
    pub fn new(kind: AgentKind) -> Reader {
        match kind {
            AgentKind::Claude => Reader::Claude,
            AgentKind::Codex => Reader::Codex(codex::Reader::default()),
            AgentKind::Command => Reader::Text(command::Reader::default()),
        }
    }

    /// The events of one stdout line (without its line ending).
    pub fn line(&mut self, line: &[u8]) -> Vec<AgentEvent> {
        let blank = line.trim_ascii().is_empty();
        match self {
            // Blank lines mean nothing in JSON Lines output; in plain text they part paragraphs.
            Reader::Claude | Reader::Codex(_) if blank => Vec::new(),
            Reader::Claude => claude::parse_events(line),
            Reader::Codex(reader) => reader.line(line),
            Reader::Text(reader) => reader.line(line),
        }
    }

    /// The result event once the process ended, for CLIs whose output has no final line.
    pub fn finish(&mut self, end: AgentEnd) -> Option<AgentEvent> {
        match self {
            Reader::Claude => None,
            Reader::Codex(reader) => reader.finish(end),
            Reader::Text(reader) => reader.finish(end),
        }
    }
}
