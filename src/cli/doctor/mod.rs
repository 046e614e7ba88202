//! `forgehand doctor`: what a new user runs after configuring. Each check is a plain
//! function that returns findings; every finding is one line that says OK, or what is
//! wrong and what to do. `FAIL` lines would stop tasks (the exit code is then 1), `WARN`
//! lines may not, `SKIP` lines say what was not checked and why. Secrets (forge tokens,
//! webhook secrets, the database password) are never printed.

mod agent;
mod forge;
mod storage;

use std::fmt;

use crate::config::Settings;

/// How a finding weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// Worth fixing, but tasks can still run.
    Warn,
    /// Not checked, and why.
    Skip,
    /// Would stop tasks.
    Fail,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Skip => "SKIP",
            Level::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub text: String,
}

impl Finding {
    fn ok(text: impl Into<String>) -> Finding {
        Finding { level: Level::Ok, text: text.into() }
    }

    fn warn(text: impl Into<String>) -> Finding {
        Finding { level: Level::Warn, text: text.into() }
    }

    fn skip(text: impl Into<String>) -> Finding {
        Finding { level: Level::Skip, text: text.into() }
    }

    fn fail(text: impl Into<String>) -> Finding {
        Finding { level: Level::Fail, text: text.into() }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<4} {}", self.level.tag(), self.text)
    }
}

/// What to check beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Repositories (`owner/name`) to check the token's permission on instead of
    /// `trigger.repos`.
    pub repos: Vec<crate::config::RepoName>,
    /// Do not run the agent (the dry run costs a model call).
    pub skip_agent_run: bool,
}

/// Runs every check, printing each line as soon as it is known (a dry run of the agent
/// takes a while). Returns all findings.
pub async fn run(settings: &Settings, options: &Options) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut report = |found: Vec<Finding>| {
        for finding in found {
            println!("{finding}");
            findings.push(finding);
        }
    };
    report(configuration(settings));
    report(storage::check_data_dir(settings));
    report(storage::check_database(settings).await);
    let repos = if options.repos.is_empty() { &settings.trigger.repos } else { &options.repos };
    report(forge::check_forges(settings, repos).await);
    report(agent::check_agent(settings, options.skip_agent_run).await);
    findings
}

/// What `check-config` finds in the file itself (placeholders, risky values), except what
/// the live checks below say better (no forge, webhook secrets, the agent program, an
/// empty `trigger.repos`).
fn configuration(settings: &Settings) -> Vec<Finding> {
    let live = |key: &str| {
        key == "forges"
            || key.ends_with(".webhook_secret")
            || key == "agent.command"
            || key == "trigger.repos"
    };
    let findings = super::check::findings(settings)
        .into_iter()
        .filter(|f| !live(&f.key) || f.text.contains("placeholder"));
    findings
        .map(|f| {
            let text = format!("{}: {}", f.key, f.text);
            match f.severity {
                super::check::Severity::Error => Finding::fail(text),
                super::check::Severity::Warning => Finding::warn(text),
            }
        })
        .collect()
}

/// The closing line: how many lines stop tasks and how many are warnings.
pub fn summary(findings: &[Finding]) -> String {
    let count = |level| findings.iter().filter(|f| f.level == level).count();
    let (failed, warned) = (count(Level::Fail), count(Level::Warn));
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if failed == 0 {
        format!("doctor: nothing stops tasks; {}.", plural(warned, "warning"))
    } else {
        format!(
            "doctor: {} would stop tasks (FAIL lines): fix them and run forgehand doctor again; {}.",
            plural(failed, "problem"),
            plural(warned, "warning")
        )
    }
}

/// True when a finding would stop tasks.
pub fn blocks_tasks(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.level == Level::Fail)
}
