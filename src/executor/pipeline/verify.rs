//! The phases around the agent: the repository's rules (the operator's, with the
//! repository's `.forgehand.toml` on the default branch on top), its setup commands, and
//! its checks, with the agent resumed to fix what fails up to `fix_rounds` times.

use std::sync::Arc;

use super::{Site, Step, blocking, push_partial, run_agent, stop_if_asked};
use crate::config::{DEFAULT_PROFILE, FileAgent, OnFailingChecks, OnFailingSetup, REPO_FILE, Verification};
use crate::db::entities::tasks;
use crate::db::{NewStep, StepPhase};
use crate::executor::Context;
use crate::executor::agent::AgentRun;
use crate::executor::checks::{CommandRun, POSTED_TAIL_CHARS, Phase, Runner, fix_prompt};
use crate::executor::outcome::Failure;
use crate::executor::report::still_failing;
use crate::executor::workspace::{Leftovers, Snapshot, Worktree};
use crate::forge::client::Forge;
use crate::trigger::RoutedBy;

/// What the commands did so far.
#[derive(Default)]
pub(super) struct Verified {
    /// Setup and check commands, in the order they ran.
    pub runs: Vec<CommandRun>,
    /// What they left in the worktree: kept out of the commit.
    pub leftovers: Leftovers,
}

/// The rules for the task's repository. A repository file that cannot be used fails the
/// task with a message that names the line and the key.
pub(super) async fn rules(
    ctx: &Arc<Context>,
    task: &tasks::Model,
    repo_key: &str,
    plan: &super::Plan,
) -> Step<Verification> {
    let mut rules = ctx.settings.verification(&task.repo);
    let (ctx2, key, base) = (ctx.clone(), repo_key.to_owned(), plan.base.clone());
    let Some(bytes) = blocking(move || ctx2.workspaces.mirror_file(&key, &base, REPO_FILE)).await? else {
        return Ok(rules);
    };
    let refuse = |why: String| Failure::Permanent {
        reason: format!("{why}. Fix {REPO_FILE} on the branch {}, then ask again", plan.base),
        partial_branch: None,
    };
    let text = String::from_utf8(bytes).map_err(|_| refuse(format!("{REPO_FILE} is not UTF-8 text")))?;
    rules.apply_repo_file(&text, &ctx.settings.repo_config).map_err(refuse)?;
    Ok(rules)
}

/// Applies the profile the repository's file chooses (`agent = "…"`) when the comment or
/// a label did not choose one and the operator allows it: the task goes back to the
/// queue on that profile (`Failure::Switch`), so that the claim statement applies the
/// profile's `max_concurrent` and its breaker (and fallback) as for any task. A profile
/// the file may not choose is said once on the issue and the task runs where it is.
pub(super) async fn file_profile(
    ctx: &Context,
    forge: &dyn Forge,
    task: &tasks::Model,
    rules: &Verification,
) -> Step<()> {
    // On a fallback, the task was routed to `fallback_from`: that is what the file replaces.
    let routed = task.fallback_from.as_deref().or(task.agent_profile.as_deref()).unwrap_or(DEFAULT_PROFILE);
    let by_request = task.agent_source.as_deref() == Some(RoutedBy::Request.as_str());
    match rules.file_agent_choice(routed, by_request, &ctx.settings.profile_names()) {
        FileAgent::Keep => Ok(()),
        FileAgent::Switch(profile) => {
            let reason = format!(
                "{REPO_FILE} chose the agent profile {profile:?} (routed to {routed:?}); the task waits for a place on it, the attempt not counted"
            );
            Err(Failure::Switch { profile, reason })
        }
        FileAgent::Refused(why) => {
            tracing::warn!(task = task.id, why, "the repository file chose a profile it may not");
            let _ = ctx.lease(task.id).add_note(&why).await;
            // Once per task, not on every retry.
            if task.attempt <= 1
                && let Err(err) =
                    forge.create_comment(&task.repo_name(), task.issue_number(), &format!("⚠️ {why}.")).await
            {
                tracing::warn!(error = %err, "cannot say that the repository file's profile was refused");
            }
            Ok(())
        }
    }
}

/// Runs the setup commands. A failing one ends the task with its output, unless the
/// operator chose `on_failing_setup = "continue"`.
pub(super) async fn setup(
    ctx: &Context,
    task: &tasks::Model,
    site: &Site<'_>,
    rules: &Verification,
    verified: &mut Verified,
) -> Step<()> {
    if rules.setup.is_empty() {
        return Ok(());
    }
    super::progress(ctx, task, "running the setup").await;
    let runs = run_phase(ctx, task, site, rules, Phase::Setup, 0, verified).await?;
    if let Some(failed) = runs.iter().find(|run| !run.passed())
        && rules.on_failing_setup == OnFailingSetup::Fail
    {
        return Err(Failure::Permanent {
            reason: format!("the setup command {}", failed.failure_text(POSTED_TAIL_CHARS)),
            partial_branch: None,
        });
    }
    Ok(())
}

/// Runs the checks after `first`; while some fail and fix rounds are left, resumes the
/// agent's session with the failures and runs them again. Returns every agent run.
pub(super) async fn check_and_fix(
    ctx: &Arc<Context>,
    task: &tasks::Model,
    site: &Site<'_>,
    rules: &Verification,
    first: AgentRun,
    verified: &mut Verified,
) -> Step<Vec<AgentRun>> {
    let mut runs = vec![first];
    if rules.checks.is_empty() {
        return Ok(runs);
    }
    for round in 0..=rules.fix_rounds {
        super::progress(ctx, task, &checks_now(round)).await;
        let checks = run_phase(ctx, task, site, rules, Phase::Check, round, verified).await?;
        let failing: Vec<&CommandRun> = checks.iter().filter(|run| !run.passed()).collect();
        if failing.is_empty() || round == rules.fix_rounds {
            break;
        }
        tracing::info!(round = round + 1, failing = failing.len(), "checks fail; resuming the agent");
        let now = format!(
            "fix round {} of {}: the agent is fixing the failing checks",
            round + 1,
            rules.fix_rounds
        );
        super::progress(ctx, task, &now).await;
        let prompt = fix_prompt(&failing, round + 1, rules.fix_rounds);
        let resume = runs.last().and_then(|run| run.session_id.clone());
        runs.push(run_agent(ctx, task, site, &prompt, resume, round + 1, &verified.leftovers).await?);
    }
    Ok(runs)
}

/// With `on_failing_checks = "fail"`, checks that still fail end the task without a pull
/// request (the work is pushed so that people can look at it).
pub(super) async fn refuse_failing(
    ctx: &Arc<Context>,
    task: &tasks::Model,
    site: &Site<'_>,
    rules: &Verification,
    checks: &[CommandRun],
    leftovers: &Leftovers,
) -> Step<()> {
    let failing = still_failing(checks);
    if failing.is_empty() || rules.on_failing_checks != OnFailingChecks::Fail {
        return Ok(());
    }
    let names: Vec<String> =
        failing.iter().map(|run| format!("`{}` ({})", run.command, run.how_it_ended())).collect();
    let partial = push_partial(ctx, task, site.worktree, leftovers).await;
    Err(Failure::Permanent {
        reason: format!(
            "the checks still fail after {} fix round(s): {}; no pull request was opened (on_failing_checks = \"fail\")",
            rules.fix_rounds,
            names.join(", ")
        ),
        partial_branch: partial.then(|| site.plan.branch.clone()),
    })
}

fn checks_now(round: u32) -> String {
    if round == 0 {
        "running the checks".to_owned()
    } else {
        format!("running the checks after fix round {round}")
    }
}

/// Runs one phase's commands, records them as the task's steps, and records what they
/// left in the worktree.
async fn run_phase(
    ctx: &Context,
    task: &tasks::Model,
    site: &Site<'_>,
    rules: &Verification,
    phase: Phase,
    round: u32,
    verified: &mut Verified,
) -> Step<Vec<CommandRun>> {
    let before = snapshot(site.worktree).await?;
    let runner = Runner {
        settings: &ctx.settings,
        cwd: &site.worktree.path,
        timeout: rules.command_timeout,
        cancel: site.guard.stop_signal(),
    };
    let commands = if phase == Phase::Setup { &rules.setup } else { &rules.checks };
    let runs = runner.run_all(phase, commands, round).await;
    record_steps(ctx, task, &runs).await;
    stop_if_asked(site.guard)?;
    verified.leftovers.record(&before, &snapshot(site.worktree).await?);
    verified.runs.extend(runs.iter().cloned());
    Ok(runs)
}

/// Adds the commands to the task's steps, with their output's tail.
async fn record_steps(ctx: &Context, task: &tasks::Model, runs: &[CommandRun]) {
    let lease = ctx.lease(task.id);
    for run in runs {
        let phase = if run.phase == Phase::Setup { StepPhase::Setup } else { StepPhase::Check };
        let step = NewStep {
            attempt: task.attempt,
            phase,
            round: run.round,
            command: Some(&run.command),
            passed: run.passed(),
            outcome: &run.how_it_ended(),
            duration: run.duration,
            output: Some(&run.output),
        };
        if let Err(err) = lease.add_step(&step).await {
            tracing::warn!(error = %err, "cannot record a command as a step");
        }
    }
}

async fn snapshot(worktree: &Worktree) -> Step<Snapshot> {
    let tree = worktree.clone();
    blocking(move || tree.snapshot()).await
}
