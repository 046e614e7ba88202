//! The checklist under a task's status comment: one line per phase as it ends (setup,
//! the agent, the checks, each fix round), and the phase running now, so that people on
//! the issue see what happens without opening the dashboard.

use std::time::Duration;

use super::report::human_duration;
use crate::db::StepPhase;
use crate::db::entities::task_steps;

/// The checklist of one attempt's `steps` (in the order they ended), with `now` — what runs
/// at the moment — as its last line. Empty when nothing ended and nothing runs.
pub fn checklist(steps: &[task_steps::Model], now: Option<&str>) -> String {
    let mut lines: Vec<String> = groups(steps).iter().map(|group| line(group)).collect();
    if let Some(now) = now {
        lines.push(format!("- ⏳ {now}"));
    }
    lines.join("\n")
}

/// Consecutive steps of one phase and round: a phase's commands make one line.
fn groups(steps: &[task_steps::Model]) -> Vec<&[task_steps::Model]> {
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 1..=steps.len() {
        let boundary = i == steps.len()
            || steps[i].phase != steps[start].phase
            || steps[i].round != steps[start].round
            || steps[i].phase == StepPhase::Agent.as_str();
        if boundary {
            groups.push(&steps[start..i]);
            start = i;
        }
    }
    groups
}

fn line(group: &[task_steps::Model]) -> String {
    let first = &group[0];
    let passed = group.iter().all(|step| step.passed);
    let mark = if passed { "✅" } else { "❌" };
    let took = human_duration(Duration::from_millis(group.iter().map(|s| s.duration_ms.max(0) as u64).sum()));
    match StepPhase::parse(&first.phase) {
        Some(StepPhase::Agent) => {
            let name =
                if first.round == 0 { "agent".to_owned() } else { format!("fix round {}", first.round) };
            format!("- {mark} {name}: {}, {took}", first.outcome)
        }
        Some(StepPhase::Setup) if passed => format!("- ✅ setup: {}, {took}", commands(group.len())),
        Some(StepPhase::Check) if passed => {
            let after =
                if first.round == 0 { String::new() } else { format!(" after fix round {}", first.round) };
            format!("- ✅ checks pass{after}: {}, {took}", commands(group.len()))
        }
        phase => {
            let name = if phase == Some(StepPhase::Setup) { "setup fails" } else { "checks fail" };
            let failing: Vec<String> = group
                .iter()
                .filter(|step| !step.passed)
                .map(|step| format!("{} ({})", code(step.command.as_deref().unwrap_or("?")), step.outcome))
                .collect();
            format!("- {mark} {name}: {}", failing.join(", "))
        }
    }
}

fn commands(n: usize) -> String {
    if n == 1 { "1 command".to_owned() } else { format!("{n} commands") }
}

/// A command line as inline code, whatever backticks it holds.
fn code(command: &str) -> String {
    format!("`{}`", command.replace('`', "'"))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn step(
        phase: StepPhase,
        round: i32,
        command: Option<&str>,
        passed: bool,
        outcome: &str,
    ) -> task_steps::Model {
        task_steps::Model {
            id: 0,
            task_id: 1,
            attempt: 1,
            phase: phase.as_str().to_owned(),
            round,
            command: command.map(str::to_owned),
            passed,
            outcome: outcome.to_owned(),
            duration_ms: 2500,
            output: None,
            ended_at: Utc::now(),
        }
    }

    #[test]
    fn a_fixed_task_reads_as_its_story() {
        let steps = [
            step(StepPhase::Setup, 0, Some("npm ci"), true, "exit 0"),
            step(StepPhase::Agent, 0, None, true, "8 turns · $0.3100"),
            step(StepPhase::Check, 0, Some("npm test"), false, "exit 1"),
            step(StepPhase::Check, 0, Some("npm run lint"), true, "exit 0"),
            step(StepPhase::Agent, 1, None, true, "2 turns · $0.0500"),
            step(StepPhase::Check, 1, Some("npm test"), true, "exit 0"),
            step(StepPhase::Check, 1, Some("npm run lint"), true, "exit 0"),
        ];
        let text = checklist(&steps, Some("opening the pull request"));
        assert_eq!(
            text,
            "- ✅ setup: 1 command, 2s\n\
             - ✅ agent: 8 turns · $0.3100, 2s\n\
             - ❌ checks fail: `npm test` (exit 1)\n\
             - ✅ fix round 1: 2 turns · $0.0500, 2s\n\
             - ✅ checks pass after fix round 1: 2 commands, 5s\n\
             - ⏳ opening the pull request"
        );
    }

    #[test]
    fn a_failing_setup_names_its_command_and_nothing_is_empty_text() {
        let steps = [step(StepPhase::Setup, 0, Some("make `deps`"), false, "exit 2")];
        assert_eq!(checklist(&steps, None), "- ❌ setup fails: `make 'deps'` (exit 2)");
        assert_eq!(checklist(&[], None), "");
        assert_eq!(checklist(&[], Some("running the setup")), "- ⏳ running the setup");
    }
}
