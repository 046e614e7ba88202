//! The steps of one task: check who asked, re-read the issue, prepare the branch, run the
//! repository's setup, the agent and its checks (with fix rounds: `verify`), commit, push,
//! open the pull request. Reporting the end is `finish`'s job.

mod feedback;
mod publish;
mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;

use super::Context;
use super::agent::{self, AgentOutcome, AgentRun, AgentSpec};
use super::checks::CommandRun;
use super::finish::task_url;
use super::guard::{Guard, StopReason};
use super::launch;
use super::outcome::{Failure, Success};
use super::prompt::Prompt;
use super::questions;
use super::report::{self, PullFacts, Status};
use super::workspace::{
    BranchStart, GitCredentials, Identity, Leftovers, PrepareSpec, WorkspaceError, Worktree, branch_name,
};
use crate::config::Verification;
use crate::db::entities::tasks;
use crate::db::{Beat, NewStep, RunRecord, StepPhase};
use crate::forge::client::{ErrorKind, Forge, ForgeError, NewPull};

type Step<T> = Result<T, Failure>;

/// Where a task's work happens.
struct Plan {
    branch: String,
    start: BranchStart,
    /// The branch pull requests go into.
    base: String,
    clone_url: String,
    issue_body: String,
    /// People's comments on the issue, as the prompt shows them (implement tasks only).
    comments: String,
    /// What a follow-up answers, as the prompt shows it (failed checks, a review's inline
    /// comments); empty for other tasks.
    feedback: String,
    /// A review's inline comments, replied to once the work is pushed.
    threads: Vec<crate::forge::client::ReviewComment>,
    /// The branch exists from an earlier task whose pull request is gone: replace it.
    force_push: bool,
}

/// A follow-up pushes to the pull request's branch: it must be open, on forgehand's
/// branch, in the repository itself (forgehand cannot push to a fork).
fn pushable(ctx: &Context, task: &tasks::Model, pull: &crate::forge::client::PullInfo) -> Step<()> {
    let number = pull.number;
    if !pull.is_open {
        return Err(Failure::Cancelled { reason: format!("pull request #{number} is no longer open") });
    }
    if let Some(fork) = pull.head_repo.as_deref().filter(|head| !task.repo_name().same_as(&(*head).into())) {
        return Err(Failure::Rejected {
            reason: format!(
                "pull request #{number} comes from the fork {fork}: forgehand cannot push to a fork's branch. \
                 Ask for the change on an issue (with the trigger label) and forgehand opens its own pull request"
            ),
        });
    }
    let prefix = &ctx.settings.git.branch_prefix;
    if !pull.head_ref.starts_with(prefix.as_str()) {
        return Err(Failure::Rejected {
            reason: format!(
                "pull request #{number} is on the branch {:?}, not one of forgehand's ({prefix:?}…): forgehand only pushes to its own branches",
                pull.head_ref
            ),
        });
    }
    Ok(())
}

/// Runs a claimed task to its end (but does not record the end).
pub async fn execute(ctx: &Arc<Context>, task: &tasks::Model, guard: &Guard) -> Step<Success> {
    let forge = ctx.forges.get(&task.forge).cloned().ok_or_else(|| Failure::Permanent {
        reason: format!("the forge {:?} is no longer configured", task.forge),
        partial_branch: None,
    })?;
    // Nothing is said on the issue before it is known that this person may start a task.
    check_permission(ctx, forge.as_ref(), task).await?;
    let resume = answered(ctx, forge.as_ref(), task).await?;
    announce(ctx, forge.as_ref(), task, resume.is_some()).await;
    let mut plan = plan(ctx, forge.as_ref(), task).await?;
    stop_if_asked(guard)?;
    let creds = credentials(ctx, task).await?;
    let repo_key = format!("{}/{}", task.forge, task.repo);
    let remote_head = remote_branch(ctx, &repo_key, &plan, creds.as_ref()).await?;
    crate::failpoint::hit("after_fetch");
    let already_pushed = match remote_head {
        Some(head) if task.kind == "implement" => {
            reuse_branch(forge.as_ref(), task, &head, &mut plan).await?
        }
        _ => false,
    };
    let started = Instant::now();
    let work = if already_pushed {
        // An earlier attempt pushed the branch and stopped before the pull request.
        Work {
            summary: task.result_text.clone().unwrap_or_default(),
            turns: task.turns.map(|t| t as u32),
            cost_usd: task.cost_usd,
            checks: Vec::new(),
        }
    } else {
        let kept = resume.as_ref().and_then(|_| reopen(ctx, task, &plan));
        let reopened = kept.is_some();
        let worktree = match kept {
            Some(worktree) => worktree,
            None => prepare(ctx, task, &repo_key, &plan, creds.clone()).await?,
        };
        let rules = verify::rules(ctx, task, &repo_key, &plan).await?;
        verify::file_profile(ctx, forge.as_ref(), task, &rules).await?;
        let mut verified = verify::Verified::default();
        let site = Site { plan: &plan, worktree: &worktree, guard };
        verify::setup(ctx, task, &site, &rules, &mut verified).await?;
        progress(ctx, task, "the agent is working").await;
        let answers = resume.as_ref().map(|r| (r, reopened));
        let attachments = if task.kind == "implement" && !reopened {
            let texts = [plan.issue_body.as_str(), plan.comments.as_str()];
            // Asked again: setup may have outlived the token fetched before it.
            let token = credentials(ctx, task).await?.map(|c| c.token);
            super::attachments::fetch_into(&ctx.settings, &task.forge, token, &texts, &worktree.path).await
        } else {
            String::new()
        };
        let (prompt, resume) = first_prompt(ctx, task, &plan, &rules, answers, &attachments).await?;
        let first = run_agent(ctx, task, &site, &prompt, resume, 0, &verified.leftovers).await?;
        let runs = verify::check_and_fix(ctx, task, &site, &rules, first, &mut verified).await?;
        let work = record_totals(ctx, task, &runs, std::mem::take(&mut verified.runs)).await?;
        record_checks_result(ctx, task, &work.checks).await?;
        verify::refuse_failing(ctx, task, &site, &rules, &work.checks, &verified.leftovers).await?;
        // The run may have outlived the token fetched before it.
        let creds = credentials(ctx, task).await?;
        let pushed =
            commit_and_push(ctx, task, &worktree, &verified.leftovers, creds, plan.force_push).await?;
        answer_threads(forge.as_ref(), task, &plan, &worktree, &pushed, &work.summary).await;
        if pushed == Pushed::Nothing {
            recycle_workspace(ctx, task.id, &repo_key).await;
            return Ok(Success::NoChanges { agent_text: work.summary });
        }
        recycle_workspace(ctx, task.id, &repo_key).await;
        work
    };
    ensure_lease(ctx, task).await?;
    open_pull(ctx, forge.as_ref(), task, &plan, &work, started.elapsed()).await
}

/// Replies in the threads of the review a follow-up answered: what the pushed commit
/// changed (or that nothing was). Never fatal.
async fn answer_threads(
    forge: &dyn Forge,
    task: &tasks::Model,
    plan: &Plan,
    worktree: &Worktree,
    pushed: &Pushed,
    summary: &str,
) {
    if plan.threads.is_empty() {
        return;
    }
    let tree = worktree.clone();
    let (head, changed) = match pushed {
        Pushed::Branch => match blocking(move || Ok((tree.head()?, tree.summary()?.files))).await {
            Ok((head, files)) => (Some(head), files),
            Err(err) => {
                tracing::warn!(error = ?err, "cannot tell what the commit changed");
                return;
            }
        },
        Pushed::Nothing => (None, Vec::new()),
    };
    feedback::reply(forge, task, &plan.threads, head.as_deref(), &changed, summary).await;
}

/// Where a task's agent runs.
#[derive(Clone, Copy)]
struct Site<'a> {
    plan: &'a Plan,
    worktree: &'a Worktree,
    guard: &'a Guard,
}

/// What the agent's runs and the checks came to, for the pull request.
struct Work {
    /// The last run's summary.
    summary: String,
    /// Over all the task's runs.
    turns: Option<u32>,
    cost_usd: Option<f64>,
    /// Setup and check commands, every round.
    checks: Vec<CommandRun>,
}

/// Posts (or updates) the status comment and the working label (a resumed task's
/// question label goes); failures here are logged, never fatal.
async fn announce(ctx: &Context, forge: &dyn Forge, task: &tasks::Model, resumed: bool) {
    let now = Some("preparing the branch");
    let status =
        Status::Working { attempt: task.attempt, max_attempts: ctx.settings.executor.max_attempts, now };
    super::finish::post_status(ctx, forge, task, &status).await;
    let number = task.issue_number();
    if let Err(err) = forge.add_label(&task.repo_name(), number, &ctx.settings.labels.working).await {
        tracing::warn!(error = %err, "cannot set the working label");
    }
    if resumed
        && let Err(err) = forge.remove_label(&task.repo_name(), number, &ctx.settings.labels.question).await
    {
        tracing::warn!(error = %err, "cannot remove the question label");
    }
}

/// The question a task resumes with and the answers that may reach the agent: those of
/// people allowed to trigger (the others are recorded as ignored). `None`: the task is
/// not resuming; `Failure::Asked`: no answer may be used, the task waits on.
async fn answered(ctx: &Context, forge: &dyn Forge, task: &tasks::Model) -> Step<Option<Resume>> {
    let (Some(_), Some(question)) = (task.asked_at, task.question.clone()) else { return Ok(None) };
    let mut answers = Vec::new();
    for answer in questions::parse_answers(task.answers.as_deref()) {
        match may_trigger(ctx, forge, task, &answer.by).await? {
            Ok(()) => answers.push(answer),
            Err(why) => {
                let note = format!("the answer by @{} was ignored: {}", answer.by, why.reason());
                let _ = ctx.lease(task.id).add_note(&note).await;
            }
        }
    }
    if answers.is_empty() {
        return Err(Failure::Asked { question: None });
    }
    ctx.lease(task.id).record_resumed().await?;
    Ok(Some(Resume { question, answers }))
}

/// Why someone may not trigger.
enum Denied {
    /// Their permission is below `trigger.min_permission`.
    Lacks(String),
    /// The forge would not say what it is.
    Unknown(String),
}

impl Denied {
    fn reason(&self) -> &str {
        match self {
            Denied::Lacks(reason) | Denied::Unknown(reason) => reason,
        }
    }
}

/// Whether `login` has `trigger.min_permission` on the task's repository; a transient
/// forge error is the step's failure.
async fn may_trigger(
    ctx: &Context,
    forge: &dyn Forge,
    task: &tasks::Model,
    login: &str,
) -> Step<Result<(), Denied>> {
    let needed = ctx.settings.trigger.min_permission;
    match forge.permission(&task.repo_name(), login).await {
        Ok(has) if has >= needed => Ok(Ok(())),
        Ok(has) => Ok(Err(Denied::Lacks(format!(
            "@{login} has {has} permission on {}; {needed} is needed",
            task.repo
        )))),
        Err(err) if err.is_transient() => Err(err.into()),
        Err(err) => Ok(Err(Denied::Unknown(permission_unknown(forge, &err)))),
    }
}

/// A question and the answers a resumed task takes to its agent.
struct Resume {
    question: String,
    answers: Vec<questions::Answer>,
}

/// The checkout a waiting task kept, if this instance still has it.
fn reopen(ctx: &Context, task: &tasks::Model, plan: &Plan) -> Option<Worktree> {
    let start = match &plan.start {
        BranchStart::FromBase(base) => base.as_str(),
        BranchStart::Existing => plan.branch.as_str(),
    };
    let worktree = ctx.workspaces.reopen(task.id, &plan.branch, start);
    if worktree.is_none() {
        tracing::warn!(
            "the checkout kept for the answer is gone; starting afresh with the question and answers"
        );
    }
    worktree
}

async fn check_permission(ctx: &Context, forge: &dyn Forge, task: &tasks::Model) -> Step<()> {
    match may_trigger(ctx, forge, task, &task.requested_by).await? {
        Ok(()) => Ok(()),
        Err(Denied::Lacks(reason)) => Err(Failure::Rejected { reason }),
        // Not a "no" for this person: forgehand could not ask. That is the token's doing.
        Err(Denied::Unknown(reason)) => Err(Failure::Permanent { reason, partial_branch: None }),
    }
}

/// Why a task fails when the forge would not say what the person may do.
fn permission_unknown(forge: &dyn Forge, err: &ForgeError) -> String {
    let advice =
        crate::forge::dialect(forge.kind()).setup.token_advice.replace("<code>", "").replace("</code>", "");
    let scope = match err.kind {
        ErrorKind::Unauthorized => "the token was refused: replace forges[].token".to_owned(),
        _ => format!("check the token's scope and the bot account's access to the repository. {advice}"),
    };
    format!("cannot check who may trigger: {err}. This is not a refusal of the person; {scope}")
}

async fn plan(ctx: &Context, forge: &dyn Forge, task: &tasks::Model) -> Step<Plan> {
    let number = task.issue_number();
    let issue = forge.issue(&task.repo_name(), number).await?;
    if !issue.is_open {
        return Err(Failure::Cancelled { reason: format!("#{number} was closed") });
    }
    let label = &ctx.settings.trigger.label;
    if matches!(task.trigger.as_str(), "label" | "sweep") && !issue.labels.iter().any(|l| l == label) {
        return Err(Failure::Cancelled { reason: format!("the label {label:?} is no longer on #{number}") });
    }
    let repo = forge.repository(&task.repo_name()).await?;
    if task.kind == "follow_up" {
        let pull = forge.pull(&task.repo_name(), number).await?;
        pushable(ctx, task, &pull)?;
        let bot_login = ctx.settings.forge(&task.forge).map(|f| f.bot_login.as_str()).unwrap_or_default();
        let feedback = feedback::gather(forge, task, &pull, &repo.default_branch, bot_login).await?;
        return Ok(Plan {
            branch: pull.head_ref,
            start: BranchStart::Existing,
            base: repo.default_branch,
            clone_url: repo.clone_url,
            issue_body: issue.body,
            comments: String::new(),
            feedback: feedback.text,
            threads: feedback.threads,
            force_push: false,
        });
    }
    let comments = forge.comments(&task.repo_name(), number).await?;
    let bot_login = ctx.settings.forge(&task.forge).map(|f| f.bot_login.as_str()).unwrap_or_default();
    Ok(Plan {
        comments: super::prompt::thread(&comments, bot_login),
        feedback: String::new(),
        threads: Vec::new(),
        branch: branch_name(&ctx.settings.git.branch_prefix, number, &issue.title),
        start: BranchStart::FromBase(repo.default_branch.clone()),
        base: repo.default_branch,
        clone_url: repo.clone_url,
        issue_body: issue.body,
        force_push: false,
    })
}

/// Edits the status comment: the phases that ended so far, and `now`. Never fatal.
async fn progress(ctx: &Context, task: &tasks::Model, now: &str) {
    let Some(forge) = ctx.forges.get(&task.forge) else { return };
    // The comment's id was recorded after the task was claimed.
    let fresh = match ctx.db.task(task.id).await {
        Ok(Some((fresh, _))) => fresh,
        _ => task.clone(),
    };
    let status = Status::Working {
        attempt: task.attempt,
        max_attempts: ctx.settings.executor.max_attempts,
        now: Some(now),
    };
    super::finish::post_status(ctx, forge.as_ref(), &fresh, &status).await;
}

/// Remembers how the checks of the pull request about to be opened came out.
async fn record_checks_result(ctx: &Context, task: &tasks::Model, runs: &[CommandRun]) -> Step<()> {
    if let Some(result) = report::checks_result(runs) {
        ctx.lease(task.id).record_checks_result(result).await?;
    }
    Ok(())
}

fn stop_if_asked(guard: &Guard) -> Step<()> {
    match guard.stop_reason() {
        None => Ok(()),
        Some(StopReason::Cancelled) => Err(Failure::Cancelled { reason: "a cancel was requested".into() }),
        Some(_) => Err(Failure::Stopped),
    }
}

/// The forge token (a GitHub App's: its installation's, fresh for some minutes), offered
/// to git only through the credential callback.
async fn credentials(ctx: &Context, task: &tasks::Model) -> Step<Option<GitCredentials>> {
    let Some(forge) = ctx.settings.forge(&task.forge) else { return Ok(None) };
    let username = crate::forge::dialect(forge.kind).git_user.name(&forge.bot_login);
    if let Some(client) = ctx.forges.get(&task.forge)
        && let Some(token) = client.git_token(&task.repo_name()).await?
    {
        return Ok(Some(GitCredentials { username, token }));
    }
    let token: &str = secrecy::ExposeSecret::expose_secret(&forge.token);
    if token.is_empty() {
        return Ok(None);
    }
    Ok(Some(GitCredentials { username, token: SecretString::from(token.to_owned()) }))
}

/// Syncs the mirror; the message of the head commit of the task's branch on the remote, if
/// the branch exists.
async fn remote_branch(
    ctx: &Arc<Context>,
    repo_key: &str,
    plan: &Plan,
    creds: Option<&GitCredentials>,
) -> Step<Option<String>> {
    let (ctx, key, url, branch, creds) =
        (ctx.clone(), repo_key.to_owned(), plan.clone_url.clone(), plan.branch.clone(), creds.cloned());
    let base = plan.base.clone();
    blocking(move || {
        ctx.workspaces.sync_mirror(&key, &url, creds.as_ref(), &[&base, &branch])?;
        ctx.workspaces.mirror_head_message(&key, &branch)
    })
    .await
}

/// The branch of an implement task exists already. When its head carries this task's
/// trailer, an earlier attempt pushed it (true: skip to the pull request). Otherwise an
/// earlier task left it: continue it when its pull request is open, else start it afresh.
async fn reuse_branch(
    forge: &dyn Forge,
    task: &tasks::Model,
    head_message: &str,
    plan: &mut Plan,
) -> Step<bool> {
    if head_message.lines().any(|line| line.trim() == trailer(task)) {
        return Ok(true);
    }
    if forge.find_pull(&task.repo_name(), &plan.branch, &plan.base).await?.is_some() {
        plan.start = BranchStart::Existing;
    } else {
        plan.force_push = true;
    }
    Ok(false)
}

async fn prepare(
    ctx: &Arc<Context>,
    task: &tasks::Model,
    repo_key: &str,
    plan: &Plan,
    creds: Option<GitCredentials>,
) -> Step<Worktree> {
    let ctx2 = ctx.clone();
    let (task_id, key, url, branch, start) =
        (task.id, repo_key.to_owned(), plan.clone_url.clone(), plan.branch.clone(), plan.start.clone());
    let identity = identity(ctx);
    let worktree = blocking(move || {
        let spec = PrepareSpec {
            task_id,
            repo_key: &key,
            clone_url: &url,
            creds: creds.as_ref(),
            branch: &branch,
            start,
        };
        let worktree = ctx2.workspaces.prepare(&spec)?;
        worktree.set_identity(&identity)?;
        Ok(worktree)
    })
    .await?;
    ctx.lease(task.id).record_branch(&plan.branch).await?;
    Ok(worktree)
}

fn identity(ctx: &Context) -> Identity {
    let git = &ctx.settings.git;
    Identity {
        name: git.author_name.clone(),
        email: git.author_email.clone(),
        signing_key: git.signing_key.clone(),
    }
}

/// The first run's prompt, and the session it continues (a follow-up's, or the one that
/// asked the question `answered` answers, when its checkout was kept).
async fn first_prompt(
    ctx: &Context,
    task: &tasks::Model,
    plan: &Plan,
    rules: &Verification,
    answered: Option<(&Resume, bool)>,
    attachments: &str,
) -> Step<(String, Option<String>)> {
    let resumable = ctx.settings.agent.kind != crate::config::AgentKind::Command;
    if let Some((resume, true)) = answered
        && let Some(session) = task.agent_session_id.clone().filter(|_| resumable)
    {
        return Ok((questions::resume_prompt(&resume.question, &resume.answers), Some(session)));
    }
    let answered =
        answered.map(|(r, _)| questions::answered_block(&r.question, &r.answers)).unwrap_or_default();
    let follow_up = task.kind == "follow_up";
    let prompt = Prompt {
        repo: &task.repo,
        branch: &plan.branch,
        number: task.issue_number(),
        title: &task.title,
        body: &plan.issue_body,
        requested_by: &task.requested_by,
        instructions: &task.instructions,
        follow_up,
        repo_instructions: &rules.instructions,
        checks: &rules.checks,
        comments: &plan.comments,
        feedback: &plan.feedback,
        attachments,
        questions_left: questions_left(ctx, task),
        answered: &answered,
    }
    .text();
    let resume = if follow_up {
        ctx.db.last_session_for_pull(&task.forge, &task.repo_name(), task.issue_number()).await?
    } else {
        None
    };
    Ok((prompt, resume))
}

/// How many more questions the task's agent may ask (0 when it gets no tool).
fn questions_left(ctx: &Context, task: &tasks::Model) -> u32 {
    let agent = &ctx.settings.agent;
    if !agent.asks_questions() {
        return 0;
    }
    agent.max_questions.saturating_sub(task.questions_asked.max(0) as u32)
}

/// Where the run's question goes, and the `--mcp-config` that starts the server writing
/// it; `None` when the agent gets no question tool.
fn question_tool(ctx: &Context, task: &tasks::Model) -> Option<(std::path::PathBuf, String)> {
    if !ctx.settings.agent.asks_questions() {
        return None;
    }
    let program = questions::server_program(&ctx.settings)?;
    let dir = questions::question_dir(&ctx.settings.data_dir, task.id);
    if let Err(err) = std::fs::create_dir_all(&dir) {
        tracing::warn!(error = %err, "cannot create the question directory; the agent gets no question tool");
        return None;
    }
    // A question a crash left behind is not this run's.
    let _ = std::fs::remove_file(questions::question_file(&dir));
    let config = questions::mcp_config(&program, &dir, questions_left(ctx, task));
    Some((dir, config))
}

/// Runs the agent once with `prompt`, continuing the session `resume` if given.
async fn run_agent(
    ctx: &Arc<Context>,
    task: &tasks::Model,
    site: &Site<'_>,
    prompt: &str,
    resume: Option<String>,
    round: u32,
    leftovers: &Leftovers,
) -> Step<AgentRun> {
    let Site { plan, worktree, guard } = *site;
    let started = Instant::now();
    let settings = &ctx.settings.agent;
    let tool = question_tool(ctx, task);
    let mut request = launch::request(settings, prompt, resume.as_deref());
    request.mcp_config = tool.as_ref().map(|(_, config)| config.as_str());
    let transcript = ctx.settings.data_dir.join("transcripts").join(format!("task-{}.jsonl", task.id));
    let mut spec = launch::spec(&ctx.settings, &request, worktree.path.clone(), transcript);
    spec.writable.extend(tool.as_ref().map(|(dir, _)| dir.clone()));
    let shipper = super::shipper::Shipper::start(ctx.db.clone(), task.id, spec.transcript_path.clone());
    let start = |spec: AgentSpec| async move {
        launch::run(&ctx.settings, spec, guard.stop_signal())
            .await
            .map_err(|reason| Failure::Permanent { reason, partial_branch: None })
    };
    let mut run = start(spec.clone()).await;
    if let Ok(refused) = &run
        && resume.is_some()
        && agent::resume_refused(refused)
    {
        // The session is gone (another HOME, a cleaned ~/.claude, another checkout path):
        // start afresh; the follow-up prompt carries the pull request's context.
        tracing::warn!(session = ?resume, "the agent could not resume its session; starting a new one");
        let fresh = agent::launch(settings.kind, &agent::Request { resume: None, ..request });
        (spec.args, spec.stdin) = (fresh.args, fresh.stdin);
        run = start(spec).await;
    }
    shipper.finish().await;
    let run = run?;
    record_run(ctx, task, &run).await?;
    let outcome = agent::outcome(&run);
    let provider = super::breaker::observe(ctx, task, &run).await;
    record_agent_step(ctx, task, &run, &outcome, round, started.elapsed()).await;
    let asked = tool.and_then(|(dir, _)| super::mcp::take_question(&questions::question_file(&dir)));
    match (&outcome, asked) {
        (AgentOutcome::Cancelled, _) => return Err(stop_if_asked(guard).err().unwrap_or(Failure::Stopped)),
        (_, Some(asked)) => return Err(Failure::Asked { question: Some(asked.question) }),
        _ => {}
    }
    if let Some(reason) = over_budget(settings.max_budget_usd, &run) {
        let partial = push_partial(ctx, task, worktree, leftovers).await;
        return Err(Failure::Permanent { reason, partial_branch: partial.then(|| plan.branch.clone()) });
    }
    match outcome {
        AgentOutcome::Success => Ok(run),
        AgentOutcome::Cancelled => Err(stop_if_asked(guard).err().unwrap_or(Failure::Stopped)),
        _ if let Some(reason) = provider => Err(Failure::Provider { reason }),
        outcome if outcome.is_transient() => {
            Err(Failure::Transient { reason: outcome.reason(), after: None })
        }
        outcome => {
            // Keep what the agent did: push it so that people can look at it.
            let partial = push_partial(ctx, task, worktree, leftovers).await;
            Err(Failure::Permanent {
                reason: outcome.reason(),
                partial_branch: partial.then(|| plan.branch.clone()),
            })
        }
    }
}

/// Why `run` ended the task when it spent more than the profile's `max_budget_usd`.
fn over_budget(budget: Option<f64>, run: &AgentRun) -> Option<String> {
    let (budget, spent) = (budget?, run.result.as_ref()?.total_cost_usd?);
    (spent > budget).then(|| {
        format!("the agent run spent ${spent:.4}, more than its profile's max_budget_usd of ${budget:.4}")
    })
}

/// Records the task's runs as one: turns and cost summed, the last session and summary.
async fn record_totals(
    ctx: &Context,
    task: &tasks::Model,
    runs: &[AgentRun],
    checks: Vec<CommandRun>,
) -> Step<Work> {
    let results = || runs.iter().filter_map(|run| run.result.as_ref());
    let turns = results().filter_map(|r| r.num_turns).reduce(|a, b| a + b);
    let cost_usd = results().filter_map(|r| r.total_cost_usd).reduce(|a, b| a + b);
    let last = runs.last();
    let summary = last.and_then(|run| run.result.as_ref()).map(|r| r.text.clone()).unwrap_or_default();
    if runs.len() > 1 {
        let record = RunRecord {
            session_id: last.and_then(|run| run.session_id.as_deref()),
            turns,
            cost_usd,
            result_text: Some(&summary),
        };
        ctx.lease(task.id).record_run(&record).await?;
    }
    Ok(Work { summary, turns, cost_usd, checks })
}

/// Adds the agent's run to the task's steps: its turns and cost, or why it failed.
async fn record_agent_step(
    ctx: &Context,
    task: &tasks::Model,
    run: &AgentRun,
    outcome: &AgentOutcome,
    round: u32,
    took: Duration,
) {
    let passed = matches!(outcome, AgentOutcome::Success);
    let text = if passed { report::run_facts(run.result.as_ref()) } else { outcome.reason() };
    let step = NewStep {
        attempt: task.attempt,
        phase: StepPhase::Agent,
        round,
        command: None,
        passed,
        outcome: &text,
        duration: took,
        output: None,
    };
    if let Err(err) = ctx.lease(task.id).add_step(&step).await {
        tracing::warn!(error = %err, "cannot record the agent's run as a step");
    }
}

async fn record_run(ctx: &Context, task: &tasks::Model, run: &AgentRun) -> Step<()> {
    let result = run.result.as_ref();
    let record = RunRecord {
        session_id: run.session_id.as_deref(),
        turns: result.and_then(|r| r.num_turns),
        cost_usd: result.and_then(|r| r.total_cost_usd),
        result_text: result.map(|r| r.text.as_str()),
    };
    ctx.lease(task.id).record_run(&record).await?;
    Ok(())
}

#[derive(PartialEq, Eq)]
enum Pushed {
    Nothing,
    Branch,
}

async fn commit_and_push(
    ctx: &Arc<Context>,
    task: &tasks::Model,
    worktree: &Worktree,
    leftovers: &Leftovers,
    creds: Option<GitCredentials>,
    force: bool,
) -> Step<Pushed> {
    let message = commit_message(ctx, task).await;
    let identity = identity(ctx);
    let (tree, leftovers) = (worktree.clone(), leftovers.clone());
    let changed = blocking(move || {
        tree.commit_all_except(&message, &identity, &leftovers)?;
        tree.has_new_commits()
    })
    .await?;
    if !changed {
        return Ok(Pushed::Nothing);
    }
    crate::failpoint::hit("after_commit");
    ensure_lease(ctx, task).await?;
    let head = publish::publish(ctx, task, worktree, creds, force).await?;
    crate::failpoint::hit("after_push");
    tracing::info!(branch = %worktree.branch, %head, "pushed the branch");
    ctx.lease(task.id).record_pushed(&head).await?;
    Ok(Pushed::Branch)
}

async fn commit_message(ctx: &Context, task: &tasks::Model) -> String {
    let title = task.title.lines().next().unwrap_or("forgehand");
    let mut trailers = trailer(task);
    if let Some(co_author) = co_author(ctx, task).await {
        trailers = format!("{trailers}\n{co_author}");
    }
    format!("{title} (#{})\n\n{trailers}", task.number)
}

/// The `Co-authored-by:` trailer crediting the person who asked for the task; `None` for
/// forgehand's own account and when the forge cannot say who they are (logged: the commit
/// goes on without the credit rather than failing the task).
async fn co_author(ctx: &Context, task: &tasks::Model) -> Option<String> {
    let settings = ctx.settings.forge(&task.forge)?;
    let login = task.requested_by.as_str();
    let own = !settings.bot_login.is_empty() && login.eq_ignore_ascii_case(&settings.bot_login);
    if login.is_empty() || own || login.ends_with("[bot]") {
        return None;
    }
    let forge = ctx.forges.get(&task.forge)?;
    match forge.user(login).await {
        Ok(user) => Some(crate::forge::co_author_trailer(settings, &user)),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the requester's profile; the commit names no co-author");
            None
        }
    }
}

/// The trailer that marks forgehand's commits as a task's.
fn trailer(task: &tasks::Model) -> String {
    format!("forgehand-task: {}", task.id)
}

/// Commits and pushes whatever a failed run left; true when a branch was pushed.
async fn push_partial(
    ctx: &Arc<Context>,
    task: &tasks::Model,
    worktree: &Worktree,
    leftovers: &Leftovers,
) -> bool {
    if ensure_lease(ctx, task).await.is_err() {
        return false;
    }
    let Ok(creds) = credentials(ctx, task).await else { return false };
    let (message, identity, tree) = (commit_message(ctx, task).await, identity(ctx), worktree.clone());
    let leftovers = leftovers.clone();
    let committed = blocking(move || {
        tree.commit_all_except(&message, &identity, &leftovers)?;
        tree.has_new_commits()
    })
    .await;
    let pushed = match committed {
        Ok(true) => publish::publish(ctx, task, worktree, creds, false).await.map(Some),
        Ok(false) => Ok(None),
        Err(err) => Err(err),
    };
    match pushed {
        Ok(Some(head)) => {
            if let Err(err) = ctx.lease(task.id).record_pushed(&head).await {
                tracing::warn!(error = %err, "cannot record the pushed commit");
            }
            true
        }
        Ok(None) => false,
        Err(err) => {
            tracing::warn!(error = ?err, "cannot push the partial work");
            false
        }
    }
}

async fn open_pull(
    ctx: &Context,
    forge: &dyn Forge,
    task: &tasks::Model,
    plan: &Plan,
    work: &Work,
    duration: Duration,
) -> Step<Success> {
    let number = task.issue_number();
    if task.kind == "follow_up" {
        let pull = forge.pull(&task.repo_name(), number).await?;
        return Ok(Success::Done { pr_number: pull.number, pr_url: pull.url });
    }
    let task_url = task_url(ctx, task.id);
    let agent =
        agent_line(task.agent_profile.as_deref(), &ctx.settings.agent.model, task.fallback_from.as_deref());
    let body = report::pull_body(&PullFacts {
        agent: &agent,
        summary: &work.summary,
        issue: Some(number),
        task_id: task.id,
        task_url: &task_url,
        requested_by: &task.requested_by,
        turns: work.turns,
        cost_usd: work.cost_usd,
        duration,
        checks: &work.checks,
    });
    let title = task.title.lines().next().unwrap_or("forgehand").to_owned();
    let pull = NewPull {
        title: &title,
        head: &plan.branch,
        base: &plan.base,
        body: &body,
        draft: ctx.settings.pr.draft || !report::still_failing(&work.checks).is_empty(),
    };
    let opened = forge.create_pull(&task.repo_name(), &pull).await?;
    crate::failpoint::hit("after_pull_created");
    Ok(Success::Done { pr_number: opened.number, pr_url: opened.url })
}

/// How the pull request names the agent profile and model a task ran with.
fn agent_line(profile: Option<&str>, model: &str, fallback_from: Option<&str>) -> String {
    let profile = profile.unwrap_or(crate::config::DEFAULT_PROFILE);
    let line = match model {
        "" => format!("agent `{profile}` (the CLI's default model)"),
        model => format!("agent `{profile}` (model `{model}`)"),
    };
    match fallback_from {
        // The circuit breaker of the profile the task was routed to was open.
        Some(from) => format!("{line}, the fallback of `{from}`"),
        None => line,
    }
}

/// Fails with `Stopped` when the task's lease is no longer ours (another executor took it).
pub async fn ensure_lease(ctx: &Context, task: &tasks::Model) -> Step<()> {
    match ctx.lease(task.id).heartbeat().await? {
        Beat::Held | Beat::CancelRequested => Ok(()),
        Beat::Lost => Err(Failure::Stopped),
    }
}

/// Keeps a fully committed checkout for the next task on the repository (see
/// `workspace/recycle.rs`), one per task that may run at once.
async fn recycle_workspace(ctx: &Arc<Context>, task_id: i64, repo_key: &str) {
    let (ctx, repo_key) = (ctx.clone(), repo_key.to_owned());
    let executor = &ctx.settings.executor;
    let keep = if executor.recycle_checkouts { executor.max_concurrent } else { 0 };
    if let Err(err) = blocking(move || ctx.workspaces.recycle_task(task_id, &repo_key, keep)).await {
        tracing::warn!(error = ?err, "cannot recycle the workspace");
    }
}

/// Runs git work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, WorkspaceError> + Send + 'static,
) -> Step<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Failure::from),
        Err(err) => {
            Err(Failure::Permanent { reason: format!("git work stopped: {err}"), partial_branch: None })
        }
    }
}
