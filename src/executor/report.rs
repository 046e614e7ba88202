//! What forgehand says on the issue: one status comment per task, edited through its life,
//! and the pull request's description. Never raw stderr, tokens or local paths.

use std::time::Duration;

use super::agent::AgentResult;
use super::checks::{CommandRun, POSTED_TAIL_CHARS, Phase};
use crate::db::ChecksResult;
use crate::forge::IssueNumber;

/// A task's state as people see it on the issue.
pub enum Status<'a> {
    /// `now`: what runs at the moment, the checklist's last line.
    Working {
        attempt: i32,
        max_attempts: u32,
        now: Option<&'a str>,
    },
    Retrying {
        attempt: i32,
        max_attempts: u32,
        reason: &'a str,
        wait: Duration,
    },
    Done {
        pr_number: IssueNumber,
        pr_url: &'a str,
        follow_up: bool,
    },
    NoChanges {
        agent_text: &'a str,
    },
    Failed {
        reason: &'a str,
        partial_branch: Option<&'a str>,
    },
    Rejected {
        reason: &'a str,
    },
    Cancelled {
        reason: &'a str,
    },
    /// The agent asked a question; the task waits for an answer from `requested_by` (or
    /// anyone who may trigger) for `hours`.
    NeedsInput {
        requested_by: &'a str,
        hours: u64,
    },
    /// The task has not started: a budget is spent (`reason` says which and until when).
    Waiting {
        reason: &'a str,
    },
    /// Nobody answered the question in `hours`.
    Expired {
        hours: u64,
    },
}

/// The status comment for task `task_id`: what happened, then the `checklist` of the
/// attempt's phases (see `checklist.rs`).
pub fn status_comment(task_id: i64, task_url: &str, status: &Status<'_>, checklist: &str) -> String {
    let task = format!("[task #{task_id}]({task_url})");
    let text = match status {
        Status::Working { attempt, max_attempts, .. } if *attempt > 1 => {
            format!("🤖 forgehand is working on this ({task}, attempt {attempt} of {max_attempts}).")
        }
        Status::Working { .. } => format!("🤖 forgehand is working on this ({task})."),
        Status::Retrying { attempt, max_attempts, reason, wait } => format!(
            "⏳ forgehand hit a temporary problem on attempt {attempt} of {max_attempts} and will try again in {}: {reason} ({task}).",
            human_duration(*wait)
        ),
        Status::Waiting { reason } => format!("⏸️ forgehand has not started this yet: {reason} ({task})."),
        Status::Done { pr_number, pr_url, follow_up: false } => {
            format!("✅ forgehand opened pull request [#{pr_number}]({pr_url}) ({task}).")
        }
        Status::Done { follow_up: true, .. } => {
            format!("✅ forgehand pushed the requested changes ({task}).")
        }
        Status::NoChanges { agent_text } => {
            format!("ℹ️ forgehand found nothing to change ({task}).{}", quoted(agent_text))
        }
        // A reason of several lines (a command's output) ends the comment, so that its
        // code block closes cleanly.
        Status::Failed { reason, partial_branch: Some(branch) } if reason.contains('\n') => format!(
            "❌ forgehand could not finish ({task}); the work so far is on the branch `{branch}`: {reason}"
        ),
        Status::Failed { reason, partial_branch: None } if reason.contains('\n') => {
            format!("❌ forgehand could not finish ({task}): {reason}")
        }
        Status::Failed { reason, partial_branch: Some(branch) } => format!(
            "❌ forgehand could not finish: {reason}. The work so far is on the branch `{branch}` ({task})."
        ),
        Status::Failed { reason, partial_branch: None } => {
            format!("❌ forgehand could not finish: {reason} ({task}).")
        }
        Status::Rejected { reason } => format!("🚫 forgehand did not start: {reason} ({task})."),
        Status::Cancelled { reason } => format!("⏹️ forgehand stopped: {reason} ({task})."),
        Status::NeedsInput { requested_by, hours } => format!(
            "❓ forgehand is waiting for an answer to its question below, from @{requested_by} or anyone who \
             may start forgehand: the next comment on this issue answers it ({task}). It waits {hours} hours."
        ),
        Status::Expired { hours } => format!(
            "⌛ forgehand stopped: nobody answered its question in {hours} hours ({task}). Remove and add the \
             label again to start over."
        ),
    };
    let mut checklist = checklist.to_owned();
    if let Status::Done { pr_number, follow_up: false, .. } = status
        && !checklist.is_empty()
    {
        checklist.push_str(&format!("\n- ✅ pull request #{pr_number}"));
    }
    if !checklist.is_empty() {
        checklist.insert_str(0, "\n\n");
    }
    format!("{text}{checklist}\n\n<!-- forgehand:task:{task_id} -->")
}

/// The comment that asks the agent's question on the issue, addressed to `requested_by`.
pub fn question_comment(task_id: i64, task_url: &str, requested_by: &str, question: &str) -> String {
    let quoted: Vec<String> = question.trim().lines().map(|line| format!("> {line}")).collect();
    format!(
        "@{requested_by}, forgehand's agent has a question before it goes on ([task #{task_id}]({task_url})):\n\n{}\n\n\
         Answer in a comment on this issue: the next comment by someone who may start forgehand is the answer, \
         and the work resumes where it stopped.\n\n<!-- forgehand:question:{task_id} -->",
        quoted.join("\n")
    )
}

/// Facts for a pull request's description.
pub struct PullFacts<'a> {
    pub summary: &'a str,
    pub issue: Option<IssueNumber>,
    pub task_id: i64,
    pub task_url: &'a str,
    pub requested_by: &'a str,
    /// The agent profile and the model it ran.
    pub agent: &'a str,
    pub turns: Option<u32>,
    pub cost_usd: Option<f64>,
    pub duration: Duration,
    /// Setup and check commands, every round (empty: the repository has none).
    pub checks: &'a [CommandRun],
}

/// The pull request's description.
pub fn pull_body(facts: &PullFacts<'_>) -> String {
    let mut body = String::new();
    let summary = facts.summary.trim();
    body.push_str(if summary.is_empty() { "forgehand made the changes below." } else { summary });
    body.push_str("\n\n");
    if let Some(issue) = facts.issue {
        body.push_str(&format!("Closes #{issue}\n\n"));
    }
    let mut facts_line = vec![
        format!("forgehand [task #{}]({})", facts.task_id, facts.task_url),
        format!("requested by @{}", facts.requested_by),
        facts.agent.to_owned(),
    ];
    if let Some(turns) = facts.turns {
        facts_line.push(format!("{turns} turns"));
    }
    if let Some(cost) = facts.cost_usd {
        facts_line.push(format!("${cost:.4}"));
    }
    facts_line.push(human_duration(facts.duration));
    body.push_str(&checks_section(facts.checks));
    body.push_str(&format!("---\n{}\n", facts_line.join(" · ")));
    body
}

/// The table of setup and check commands, and the checks that still fail.
fn checks_section(runs: &[CommandRun]) -> String {
    if runs.is_empty() {
        return String::new();
    }
    let mut text =
        String::from("### Checks\n\n| Command | Result | Duration | Round |\n| --- | --- | --- | --- |\n");
    for run in runs {
        let result =
            if run.passed() { "✅ pass".to_owned() } else { format!("❌ fail ({})", run.how_it_ended()) };
        let round = match run.phase {
            Phase::Setup => "setup".to_owned(),
            Phase::Check => run.round.to_string(),
        };
        let command = run.command.replace('|', "\\|");
        let duration = format!("{:.1}s", run.duration.as_secs_f64());
        text.push_str(&format!("| `{command}` | {result} | {duration} | {round} |\n"));
    }
    text.push_str("\nRound 0 ran after the agent's first pass; round n after fix round n.\n\n");
    let still_failing = still_failing(runs);
    if !still_failing.is_empty() {
        text.push_str("⚠️ **These checks still fail**, so this pull request is a draft:\n\n");
        for run in still_failing {
            text.push_str(&format!("- {}\n", run.failure_text(POSTED_TAIL_CHARS)));
        }
        text.push('\n');
    }
    text
}

/// How the checks came out, for the overview's counts; none when no check ran.
pub fn checks_result(runs: &[CommandRun]) -> Option<ChecksResult> {
    let last = runs.iter().filter(|run| run.phase == Phase::Check).map(|run| run.round).max()?;
    Some(match (still_failing(runs).is_empty(), last) {
        (false, _) => ChecksResult::Failing,
        (true, 0) => ChecksResult::Passed,
        (true, _) => ChecksResult::Fixed,
    })
}

/// `8 turns · $0.3100` of an agent run, as far as it says.
pub fn run_facts(result: Option<&AgentResult>) -> String {
    let mut facts = Vec::new();
    if let Some(turns) = result.and_then(|r| r.num_turns) {
        facts.push(if turns == 1 { "1 turn".to_owned() } else { format!("{turns} turns") });
    }
    if let Some(cost) = result.and_then(|r| r.total_cost_usd) {
        facts.push(format!("${cost:.4}"));
    }
    if facts.is_empty() { "finished".to_owned() } else { facts.join(" · ") }
}

/// The checks of the last round that failed.
pub fn still_failing(runs: &[CommandRun]) -> Vec<&CommandRun> {
    let checks = || runs.iter().filter(|run| run.phase == Phase::Check);
    let Some(last) = checks().map(|run| run.round).max() else { return Vec::new() };
    checks().filter(|run| run.round == last && !run.passed()).collect()
}

fn quoted(text: &str) -> String {
    let text: String = text.trim().chars().take(1500).collect();
    if text.is_empty() {
        return String::new();
    }
    let lines: Vec<String> = text.lines().map(|line| format!("> {line}")).collect();
    format!("\n\n{}", lines.join("\n"))
}

/// `1h 2m`, `3m 4s`, `5s`.
pub fn human_duration(duration: Duration) -> String {
    let s = duration.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_link_the_task_and_carry_a_marker() {
        let working = Status::Working { attempt: 1, max_attempts: 3, now: None };
        let text = status_comment(12, "http://h/tasks/12", &working, "");
        assert!(text.starts_with("🤖 forgehand is working on this ([task #12](http://h/tasks/12))."));
        assert!(text.ends_with("<!-- forgehand:task:12 -->"));
        let retry = status_comment(
            1,
            "u",
            &Status::Retrying {
                attempt: 1,
                max_attempts: 3,
                reason: "the forge answered 502",
                wait: Duration::from_secs(90),
            },
            "",
        );
        assert!(retry.contains("try again in 1m 30s: the forge answered 502"), "{retry}");
        let asked = question_comment(4, "http://h/tasks/4", "alice", "Short -v\nor long --verbose?");
        assert!(asked.starts_with("@alice, forgehand's agent has a question"), "{asked}");
        assert!(asked.contains("\n\n> Short -v\n> or long --verbose?\n\n"), "{asked}");
        let waiting = status_comment(4, "u", &Status::NeedsInput { requested_by: "alice", hours: 72 }, "");
        assert!(waiting.contains("waiting for an answer") && waiting.contains("72 hours"), "{waiting}");
        let none =
            status_comment(1, "u", &Status::NoChanges { agent_text: "Already done.\nSee main.rs" }, "");
        assert!(none.contains("\n\n> Already done.\n> See main.rs"), "{none}");
    }

    #[test]
    fn the_checklist_follows_the_headline_and_ends_with_the_pull_request() {
        let done = Status::Done { pr_number: 42.into(), pr_url: "http://pr", follow_up: false };
        let text = status_comment(5, "u", &done, "- ✅ agent: 3 turns, 9s");
        assert!(
            text.ends_with(
                "([task #5](u)).\n\n- ✅ agent: 3 turns, 9s\n- ✅ pull request #42\n\n<!-- forgehand:task:5 -->"
            ),
            "{text}"
        );
        let failed = Status::Failed { reason: "no", partial_branch: None };
        assert!(!status_comment(5, "u", &failed, "").contains("\n\n\n"));
    }

    #[test]
    fn pull_bodies_close_the_issue_and_state_the_cost() {
        let body = pull_body(&PullFacts {
            agent: "agent `default`",
            summary: "Added --verbose.",
            issue: Some(42.into()),
            task_id: 3,
            task_url: "http://h/tasks/3",
            requested_by: "alice",
            turns: Some(4),
            cost_usd: Some(0.01234),
            duration: Duration::from_secs(75),
            checks: &[],
        });
        assert!(body.starts_with("Added --verbose.\n\nCloses #42\n\n---\n"), "{body}");
        assert!(
            body.contains("[task #3](http://h/tasks/3) · requested by @alice · agent `default` · 4 turns · $0.0123 · 1m 15s"),
            "{body}"
        );
    }
}
