//! Per-repository rules: the operator's `[[repos]]` entries and `[repo_config]`, and a
//! repository's own `.forgehand.toml`, merged into the [`Verification`] a task follows.
//!
//! Later sources win, key by key: `[repo_config]` defaults, then the operator's
//! `[[repos]]` entry for the repository, then the repository's file. The file may only set
//! the keys `repo_config.allow` lists, and never past the operator's caps
//! (`repo_config.max_fix_rounds`, `repo_config.max_command_timeout_secs`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The file a repository may hold at its root on the default branch.
pub const REPO_FILE: &str = ".forgehand.toml";

/// The keys of [`REPO_FILE`], in the order the documentation lists them.
pub const REPO_KEYS: &[&str] = &[
    "setup",
    "checks",
    "fix_rounds",
    "instructions",
    "on_failing_checks",
    "on_failing_setup",
    "command_timeout_secs",
    "agent",
];

/// What happens when checks still fail after the last fix round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailingChecks {
    /// Open the pull request as a draft that lists the failing checks.
    #[default]
    Draft,
    /// Open no pull request; the task fails and says why.
    Fail,
}

/// What happens when a setup command fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailingSetup {
    /// The task fails with the command and the end of its output.
    #[default]
    Fail,
    /// The agent runs anyway; the failure is noted in the pull request.
    Continue,
}

/// `[repo_config]`: defaults for every repository, and what a repository's file may set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepoConfigSettings {
    /// Keys a repository's `.forgehand.toml` may set; any other key there is refused.
    pub allow: Vec<String>,
    /// Fix rounds when nobody says otherwise.
    pub fix_rounds: u32,
    /// The most fix rounds a repository's file may ask for.
    pub max_fix_rounds: u32,
    /// Time limit of one setup or check command, in seconds.
    pub command_timeout_secs: u64,
    /// The longest time limit a repository's file may ask for.
    pub max_command_timeout_secs: u64,
    pub on_failing_checks: OnFailingChecks,
    pub on_failing_setup: OnFailingSetup,
    /// Agent profiles a repository's file may choose with `agent = "…"`; empty: none.
    pub agents: Vec<String>,
}

impl Default for RepoConfigSettings {
    fn default() -> Self {
        RepoConfigSettings {
            allow: ["setup", "checks", "fix_rounds", "instructions"].map(str::to_owned).to_vec(),
            fix_rounds: 2,
            max_fix_rounds: 5,
            command_timeout_secs: 600,
            max_command_timeout_secs: 1800,
            on_failing_checks: OnFailingChecks::Draft,
            on_failing_setup: OnFailingSetup::Fail,
            agents: Vec::new(),
        }
    }
}

/// One `[[repos]]` entry: the keys of `.forgehand.toml` for the repository `name`, set by
/// the operator (not limited by `repo_config.allow` or the caps).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepoSettings {
    /// `owner/name`.
    pub name: String,
    pub setup: Option<Vec<String>>,
    pub checks: Option<Vec<String>>,
    pub fix_rounds: Option<u32>,
    pub instructions: Option<String>,
    pub on_failing_checks: Option<OnFailingChecks>,
    pub on_failing_setup: Option<OnFailingSetup>,
    pub command_timeout_secs: Option<u64>,
    /// The agent profile the repository's tasks run with unless a comment or label names one.
    pub agent: Option<String>,
    /// Agent profiles the repository's file may choose (operator only); unset:
    /// `repo_config.agents`.
    pub agents: Option<Vec<String>>,
    /// Most of the repository's tasks running at once, over all instances (operator only).
    pub max_running: Option<u32>,
    /// Most the repository's tasks may spend in a UTC day / month, in US dollars (operator only).
    pub budget_daily_usd: Option<f64>,
    pub budget_monthly_usd: Option<f64>,
}

/// A repository's `.forgehand.toml`, with where each key stands in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepoFile {
    setup: Option<Spanned<Vec<String>>>,
    checks: Option<Spanned<Vec<String>>>,
    fix_rounds: Option<Spanned<u32>>,
    instructions: Option<Spanned<String>>,
    on_failing_checks: Option<Spanned<OnFailingChecks>>,
    on_failing_setup: Option<Spanned<OnFailingSetup>>,
    command_timeout_secs: Option<Spanned<u64>>,
    agent: Option<Spanned<String>>,
}

/// What a task does around the agent for one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Command lines run (`sh -c`) before the agent, in order.
    pub setup: Vec<String>,
    /// Command lines run after the agent; each must exit 0.
    pub checks: Vec<String>,
    pub fix_rounds: u32,
    /// Added to the agent's prompt.
    pub instructions: String,
    pub on_failing_checks: OnFailingChecks,
    pub on_failing_setup: OnFailingSetup,
    /// Time limit of each command.
    pub command_timeout: Duration,
    /// The agent profile the operator's `[[repos]]` entry routes the repository's tasks to.
    pub agent: Option<String>,
    /// The agent profile the repository's file asks for (`agent = "…"`), and its line:
    /// not applied here, as only the executor knows where the task was routed.
    pub file_agent: Option<(String, usize)>,
    /// The profiles the repository's file may choose (`[[repos]] agents`, else
    /// `repo_config.agents`).
    pub file_agents: Vec<String>,
}

impl Verification {
    /// The rules for `repo` from the operator's settings alone.
    pub fn for_repo(defaults: &RepoConfigSettings, entries: &[RepoSettings], repo: &str) -> Verification {
        let mut rules = Verification {
            setup: Vec::new(),
            checks: Vec::new(),
            fix_rounds: defaults.fix_rounds,
            instructions: String::new(),
            on_failing_checks: defaults.on_failing_checks,
            on_failing_setup: defaults.on_failing_setup,
            command_timeout: Duration::from_secs(defaults.command_timeout_secs),
            agent: None,
            file_agent: None,
            file_agents: defaults.agents.clone(),
        };
        if let Some(entry) = entries.iter().find(|e| e.name.eq_ignore_ascii_case(repo)) {
            rules.apply_entry(entry);
        }
        rules
    }

    fn apply_entry(&mut self, entry: &RepoSettings) {
        if let Some(setup) = &entry.setup {
            self.setup.clone_from(setup);
        }
        if let Some(checks) = &entry.checks {
            self.checks.clone_from(checks);
        }
        if let Some(instructions) = &entry.instructions {
            self.instructions.clone_from(instructions);
        }
        self.fix_rounds = entry.fix_rounds.unwrap_or(self.fix_rounds);
        self.on_failing_checks = entry.on_failing_checks.unwrap_or(self.on_failing_checks);
        self.on_failing_setup = entry.on_failing_setup.unwrap_or(self.on_failing_setup);
        if let Some(secs) = entry.command_timeout_secs {
            self.command_timeout = Duration::from_secs(secs);
        }
        if let Some(agent) = &entry.agent {
            self.agent = Some(agent.clone());
        }
        if let Some(agents) = &entry.agents {
            self.file_agents.clone_from(agents);
        }
    }

    /// True when there is nothing to run: the task goes as it did before checks existed.
    pub fn runs_nothing(&self) -> bool {
        self.setup.is_empty() && self.checks.is_empty()
    }

    /// Applies a repository's `.forgehand.toml` (its text) on top, within what `limits`
    /// allow. The error names the file's line and key and says what to do.
    pub fn apply_repo_file(&mut self, text: &str, limits: &RepoConfigSettings) -> Result<(), String> {
        let file: RepoFile = toml::from_str(text).map_err(|err| {
            let place = err.span().map(|span| where_in(text, span.start)).unwrap_or_default();
            format!("{REPO_FILE}{place}: {}; the keys are {}", err.message().trim(), REPO_KEYS.join(", "))
        })?;
        let refuse = |key: &str, span: std::ops::Range<usize>, why: String| {
            Err(format!("{REPO_FILE} line {}: {key}: {why}", line_of(text, span.start)))
        };
        let allowed = |key: &str| limits.allow.iter().any(|k| k == key);
        for (key, span) in file.spans() {
            // `agent` is governed by `repo_config.agents` / `[[repos]] agents`, and a
            // profile the file may not choose does not fail the task (see `file_agent`).
            if key != "agent" && !allowed(key) {
                return refuse(
                    key,
                    span,
                    format!(
                        "the operator does not let repository files set it (repo_config.allow is [{}]); \
                         remove it, or ask the operator to allow it",
                        limits.allow.join(", ")
                    ),
                );
            }
        }
        if let Some(rounds) = &file.fix_rounds
            && *rounds.get_ref() > limits.max_fix_rounds
        {
            let why = format!(
                "{} is more than the operator allows (repo_config.max_fix_rounds = {})",
                rounds.get_ref(),
                limits.max_fix_rounds
            );
            return refuse("fix_rounds", rounds.span(), why);
        }
        if let Some(secs) = &file.command_timeout_secs
            && *secs.get_ref() > limits.max_command_timeout_secs
        {
            let why = format!(
                "{} is more than the operator allows (repo_config.max_command_timeout_secs = {})",
                secs.get_ref(),
                limits.max_command_timeout_secs
            );
            return refuse("command_timeout_secs", secs.span(), why);
        }
        self.file_agent = file.agent.as_ref().map(|a| (a.get_ref().clone(), line_of(text, a.span().start)));
        self.apply_entry(&file.into_entry());
        Ok(())
    }
}

/// What a repository file's `agent = "…"` does to a task routed to a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAgent {
    /// Nothing: no such key, the comment or a label chose, or it names the routed profile.
    Keep,
    /// The task moves to this profile before its agent starts.
    Switch(String),
    /// The file names a profile it may not choose; why, to be said on the issue. The task
    /// runs where it was routed.
    Refused(String),
}

impl Verification {
    /// What the file's `agent` does to a task routed to `routed` (`by_request`: the comment
    /// or a label chose it, which the file cannot override); `profiles`: those there are.
    pub fn file_agent_choice(&self, routed: &str, by_request: bool, profiles: &[&str]) -> FileAgent {
        let Some((name, line)) = &self.file_agent else { return FileAgent::Keep };
        if by_request || name == routed {
            return FileAgent::Keep;
        }
        let place = format!("{REPO_FILE} line {line}: agent = {name:?}");
        if !profiles.contains(&name.as_str()) {
            return FileAgent::Refused(format!(
                "{place}: no agent profile has that name (the profiles are {}); the task runs on {routed:?}",
                profiles.join(", ")
            ));
        }
        if !self.file_agents.contains(name) {
            let allowed =
                if self.file_agents.is_empty() { "none".to_owned() } else { self.file_agents.join(", ") };
            return FileAgent::Refused(format!(
                "{place}: the operator does not let this repository choose that profile (allowed: {allowed}; \
                 repo_config.agents or [[repos]] agents); the task runs on {routed:?}"
            ));
        }
        FileAgent::Switch(name.clone())
    }
}

impl RepoFile {
    /// The keys the file sets, with where their values stand.
    fn spans(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut spans = Vec::new();
        let mut add = |key, span: Option<std::ops::Range<usize>>| spans.extend(span.map(|s| (key, s)));
        add("setup", self.setup.as_ref().map(Spanned::span));
        add("checks", self.checks.as_ref().map(Spanned::span));
        add("fix_rounds", self.fix_rounds.as_ref().map(Spanned::span));
        add("instructions", self.instructions.as_ref().map(Spanned::span));
        add("on_failing_checks", self.on_failing_checks.as_ref().map(Spanned::span));
        add("on_failing_setup", self.on_failing_setup.as_ref().map(Spanned::span));
        add("command_timeout_secs", self.command_timeout_secs.as_ref().map(Spanned::span));
        add("agent", self.agent.as_ref().map(Spanned::span));
        spans
    }

    fn into_entry(self) -> RepoSettings {
        RepoSettings {
            name: String::new(),
            setup: self.setup.map(Spanned::into_inner),
            checks: self.checks.map(Spanned::into_inner),
            fix_rounds: self.fix_rounds.map(Spanned::into_inner),
            instructions: self.instructions.map(Spanned::into_inner),
            on_failing_checks: self.on_failing_checks.map(Spanned::into_inner),
            on_failing_setup: self.on_failing_setup.map(Spanned::into_inner),
            command_timeout_secs: self.command_timeout_secs.map(Spanned::into_inner),
            // Kept apart in `file_agent`: the executor decides whether it may apply.
            agent: None,
            agents: None,
            max_running: None,
            budget_daily_usd: None,
            budget_monthly_usd: None,
        }
    }
}

/// ` line N (key)`: the line of byte `offset` and the key set on it, if it sets one.
fn where_in(text: &str, offset: usize) -> String {
    let line = line_of(text, offset);
    let key = text.lines().nth(line - 1).and_then(|l| l.split_once('=')).map(|(key, _)| key.trim());
    match key {
        Some(key) if !key.is_empty() => format!(" line {line} ({key})"),
        _ => format!(" line {line}"),
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// Problems with `[repo_config]` and `[[repos]]`, for `Settings::validate`.
pub(super) fn problems(defaults: &RepoConfigSettings, entries: &[RepoSettings]) -> Vec<String> {
    let mut problems = Vec::new();
    for key in &defaults.allow {
        if key == "agent" {
            problems.push(
                "repo_config.allow: \"agent\" is not needed here; list the profiles a repository's file may choose in repo_config.agents".into(),
            );
        } else if !REPO_KEYS.contains(&key.as_str()) {
            problems.push(format!(
                "repo_config.allow: {key:?} is not a key of {REPO_FILE}; use some of {}",
                REPO_KEYS.join(", ")
            ));
        }
    }
    for (key, value) in [
        ("repo_config.command_timeout_secs", defaults.command_timeout_secs),
        ("repo_config.max_command_timeout_secs", defaults.max_command_timeout_secs),
    ] {
        if value == 0 {
            problems.push(format!("{key}: must be at least 1"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        if !super::is_repo_name(&entry.name) {
            problems.push(format!("repos[{i}].name: {:?} is not of the form \"owner/name\"", entry.name));
        } else if !seen.insert(entry.name.to_ascii_lowercase()) {
            problems.push(format!("repos[{i}].name: {:?} has two entries; merge them", entry.name));
        }
        if entry.command_timeout_secs == Some(0) {
            problems.push(format!("repos[{i}].command_timeout_secs: must be at least 1"));
        }
        for (key, cap) in
            [("budget_daily_usd", entry.budget_daily_usd), ("budget_monthly_usd", entry.budget_monthly_usd)]
        {
            if cap.is_some_and(|usd| !(usd > 0.0 && usd.is_finite())) {
                problems.push(format!("repos[{i}].{key}: must be more than 0; leave it out for no cap"));
            }
        }
        if entry.max_running == Some(0) {
            problems.push(format!(
                "repos[{i}].max_running: must be at least 1; hold the repository to stop its tasks"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator() -> Verification {
        let entry = RepoSettings {
            name: "Octo/Repo".into(),
            setup: Some(vec!["make deps".into()]),
            checks: None,
            fix_rounds: Some(1),
            instructions: None,
            on_failing_checks: Some(OnFailingChecks::Fail),
            on_failing_setup: None,
            command_timeout_secs: None,
            agent: None,
            agents: None,
            max_running: None,
            budget_daily_usd: None,
            budget_monthly_usd: None,
        };
        Verification::for_repo(&RepoConfigSettings::default(), &[entry], "octo/repo")
    }

    #[test]
    fn the_operator_entry_sets_the_defaults_and_the_file_goes_on_top() {
        let mut rules = operator();
        assert_eq!((rules.setup.clone(), rules.fix_rounds), (vec!["make deps".to_owned()], 1));
        assert_eq!(rules.on_failing_checks, OnFailingChecks::Fail);
        let text = "setup = [\"npm ci\"]\nchecks = [\"npm test\", \"npm run lint\"]\nfix_rounds = 3\ninstructions = \"Be brief.\"\n";
        rules.apply_repo_file(text, &RepoConfigSettings::default()).unwrap();
        assert_eq!(rules.setup, ["npm ci"]);
        assert_eq!(rules.checks, ["npm test", "npm run lint"]);
        assert_eq!((rules.fix_rounds, rules.instructions.as_str()), (3, "Be brief."));
        assert_eq!(rules.command_timeout, Duration::from_secs(600));
        let none = Verification::for_repo(&RepoConfigSettings::default(), &[], "other/repo");
        assert!(none.runs_nothing() && none.fix_rounds == 2);
    }

    #[test]
    fn a_bad_key_or_type_is_named_with_its_line() {
        let limits = RepoConfigSettings::default();
        let err = operator().apply_repo_file("checks = [\"t\"]\n\nsetpu = [\"x\"]\n", &limits).unwrap_err();
        assert!(err.starts_with(".forgehand.toml line 3 (setpu): unknown field `setpu`"), "{err}");
        let err = operator().apply_repo_file("fix_rounds = \"two\"\n", &limits).unwrap_err();
        assert!(err.starts_with(".forgehand.toml line 1 (fix_rounds): invalid type"), "{err}");
    }

    #[test]
    fn a_file_cannot_exceed_what_the_operator_allows() {
        let limits = RepoConfigSettings::default();
        let err =
            operator().apply_repo_file("checks = []\non_failing_checks = \"draft\"\n", &limits).unwrap_err();
        assert!(
            err.starts_with(".forgehand.toml line 2: on_failing_checks: the operator does not let"),
            "{err}"
        );
        let err = operator().apply_repo_file("fix_rounds = 50\n", &limits).unwrap_err();
        assert!(
            err.contains(
                "line 1: fix_rounds: 50 is more than the operator allows (repo_config.max_fix_rounds = 5)"
            ),
            "{err}"
        );
        let wide = RepoConfigSettings { allow: vec!["command_timeout_secs".into()], ..limits };
        let err = operator().apply_repo_file("command_timeout_secs = 99999\n", &wide).unwrap_err();
        assert!(err.contains("max_command_timeout_secs = 1800"), "{err}");
    }

    #[test]
    fn a_file_chooses_a_profile_only_within_what_the_operator_allows() {
        let limits = RepoConfigSettings { agents: vec!["fast".into()], ..RepoConfigSettings::default() };
        let profiles = ["default", "fast", "opus"];
        let mut rules = Verification::for_repo(&limits, &[], "o/r");
        rules.apply_repo_file("checks = []\nagent = \"fast\"\n", &limits).unwrap();
        assert_eq!(rules.agent, None, "the file's choice is not applied as the operator's");
        assert_eq!(rules.file_agent_choice("default", false, &profiles), FileAgent::Switch("fast".into()));
        assert_eq!(rules.file_agent_choice("fast", false, &profiles), FileAgent::Keep);
        assert_eq!(rules.file_agent_choice("opus", true, &profiles), FileAgent::Keep);
        let mut rules = Verification::for_repo(&limits, &[], "o/r");
        rules.apply_repo_file("agent = \"opus\"\n", &limits).unwrap();
        let FileAgent::Refused(why) = rules.file_agent_choice("default", false, &profiles) else { panic!() };
        assert!(
            why.starts_with(".forgehand.toml line 1: agent = \"opus\": the operator does not let"),
            "{why}"
        );
        assert!(why.contains("(allowed: fast;") && why.ends_with("the task runs on \"default\""), "{why}");
        let mut rules = Verification::for_repo(&limits, &[], "o/r");
        rules.apply_repo_file("agent = \"nope\"\n", &limits).unwrap();
        let FileAgent::Refused(why) = rules.file_agent_choice("default", false, &profiles) else { panic!() };
        assert!(
            why.contains("no agent profile has that name (the profiles are default, fast, opus)"),
            "{why}"
        );
        let entry =
            RepoSettings { name: "o/r".into(), agents: Some(vec!["opus".into()]), ..Default::default() };
        let mut rules = Verification::for_repo(&limits, &[entry], "o/r");
        rules.apply_repo_file("agent = \"opus\"\n", &limits).unwrap();
        assert_eq!(rules.file_agent_choice("default", false, &profiles), FileAgent::Switch("opus".into()));
    }
}
