//! What differs between agent CLIs: how forgehand starts one (arguments, stdin, which
//! variables it may see) and how it reads what the CLI prints. The process itself is
//! run the same way for all of them (`super::run`).

use crate::config::{AgentKind, PromptVia};

use super::{AgentEnd, AgentEvent, claude, codex, command};

/// Longest summary or preview carried by an [`AgentEvent`], in characters.
pub const PREVIEW_CHARS: usize = 200;

/// What forgehand asks of one run, whatever the CLI.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub prompt: &'a str,
    pub max_turns: u32,
    /// Empty: the CLI's default model.
    pub model: &'a str,
    /// The session to continue (a follow-up).
    pub resume: Option<&'a str>,
    pub allowed_tools: &'a [String],
    /// `agent.args`.
    pub extra: &'a [String],
    pub prompt_via: PromptVia,
}

impl<'a> Request<'a> {
    /// A request with the defaults: 50 turns, the CLI's model, no resume, no extras.
    pub fn new(prompt: &'a str) -> Request<'a> {
        Request {
            prompt,
            max_turns: 50,
            model: "",
            resume: None,
            allowed_tools: &[],
            extra: &[],
            prompt_via: PromptVia::Stdin,
        }
    }
}

/// How to start the CLI: the arguments after the program, and what to write to its stdin
/// (`None`: stdin is `/dev/null`).
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub args: Vec<String>,
    pub stdin: Option<String>,
}

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

/// Collapses whitespace runs (newlines included) and cuts to [`PREVIEW_CHARS`].
pub fn one_line(text: &str) -> String {
    let mut joined = String::new();
    // A char is at most 4 bytes: past this length the cut below is certain.
    for word in text.split_whitespace() {
        if joined.len() > PREVIEW_CHARS * 4 {
            break;
        }
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(word);
    }
    if joined.chars().count() <= PREVIEW_CHARS {
        return joined;
    }
    let mut cut: String = joined.chars().take(PREVIEW_CHARS - 1).collect();
    cut.push('…');
    cut
}
