//! Whether an event starts, joins or cancels a task: a pure function of the event, the
//! configuration and what the database knows about the issue.
//!
//! Permission checks need the forge's API and happen when a task is picked up, never here.

use crate::config::{CiSettings, ForgeSettings, RepoName, TriggerSettings};
use crate::forge::IssueNumber;
use crate::forge::event::{Actor, ForgeEvent, Issue, IssueChange, Repo, ReviewVerdict};

/// What the database knows about the issue or PR an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssueContext {
    /// The queued or running task for this issue or PR, if any.
    pub active_task: Option<i64>,
    /// Whether the trigger label was on the issue when forgehand last saw its labels.
    pub label_was_present: Option<bool>,
    /// The active task asked a question and has not resumed yet: a comment answers it.
    pub awaiting_answer: bool,
    /// For a check event: the pull request forgehand pushed its commit to, if it did.
    pub pushed: Option<PushedCommit>,
}

/// What the database knows of a commit forgehand pushed (found by its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedCommit {
    /// The pull request the commit is on.
    pub pull: IssueNumber,
    pub pull_title: String,
    /// Who asked for the task that pushed it: the follow-up runs on their behalf.
    pub requested_by: String,
    pub clone_url: String,
    /// It is still the last commit forgehand pushed to that pull request.
    pub newest: bool,
    /// Check-fix tasks the pull request had so far.
    pub fix_rounds: u32,
    /// A check-fix task for this very commit exists already.
    pub fixed_by: Option<i64>,
}

/// The kind of work a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Implement an issue and open a pull request.
    Implement,
    /// Push more commits to one of forgehand's pull requests.
    FollowUp,
}

/// What started a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    Label,
    Comment,
    Review,
    /// The periodic sweep found a labelled issue whose webhook never arrived.
    Sweep,
    /// Checks failed on the head forgehand pushed to its pull request.
    Checks,
}

/// A task to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    pub kind: TaskKind,
    pub trigger: TriggerKind,
    pub repo: RepoName,
    pub clone_url: String,
    pub number: IssueNumber,
    pub title: String,
    pub requested_by: String,
    /// Text the person added after the command, or the review's body.
    pub instructions: String,
    /// The branch to work on, when already known (follow-ups on a review).
    pub branch: Option<String>,
    /// The agent profile and priority the comment or labels asked for.
    pub routing: Routing,
    /// What a follow-up answers: the review's id, or the commit whose checks failed.
    pub feedback_ref: Option<String>,
}

/// What a comment (`/forgehand with <profile> p=N …`) or the issue's labels
/// (`<label>:<profile>`, `<label>:priority-high`/`-low`) ask of a task's place in the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// An agent profile's name; `None`: the repository's, else `default`.
    pub profile: Option<String>,
    /// Higher runs first; 0 is normal.
    pub priority: i32,
    /// Who chose `profile` (set by [`route`]).
    pub source: Option<RoutedBy>,
}

/// `decision` with its task's agent profile checked and, when neither comment nor labels
/// named one, the repository's `[[repos]]` entry's: a profile nobody configured starts
/// nothing, and the answer lists the ones there are.
pub fn route(decision: Decision, settings: &crate::config::Settings) -> Decision {
    let Decision::Create(mut request) = decision else { return decision };
    let profiles = settings.profile_names();
    if request.trigger == TriggerKind::Comment {
        request.instructions = request.routing.take_from_command(&request.instructions, &profiles);
    }
    match &request.routing.profile {
        Some(name) if !profiles.contains(&name.as_str()) => {
            return Decision::Ignore(format!(
                "no agent profile is named {name:?}; the profiles are {}",
                profiles.join(", ")
            ));
        }
        Some(_) => request.routing.source = Some(RoutedBy::Request),
        None => {
            request.routing.profile = settings.verification(request.repo.as_str()).agent;
            request.routing.source = request.routing.profile.as_ref().map(|_| RoutedBy::Repository);
        }
    }
    Decision::Create(request)
}

/// Who chose a task's agent profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutedBy {
    /// The comment or a label.
    Request,
    /// The repository's `[[repos]]` entry (its file may still choose another).
    Repository,
}

impl RoutedBy {
    /// The name stored in `tasks.agent_source`.
    pub fn as_str(self) -> &'static str {
        match self {
            RoutedBy::Request => "request",
            RoutedBy::Repository => "repository",
        }
    }
}

/// The first word of `text` (after blank space), and what follows it.
fn first_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    text.split_once(char::is_whitespace).unwrap_or((text, ""))
}

/// The priority of `<label>:priority-high`; `-low` is its negation.
pub const HIGH_PRIORITY: i32 = 10;
/// `p=N` is clamped to `-MAX_PRIORITY..=MAX_PRIORITY`.
pub const MAX_PRIORITY: i32 = 1000;

impl Routing {
    /// The routing the issue's `labels` ask for (`trigger_label` is the trigger label).
    pub fn from_labels(labels: &[String], trigger_label: &str) -> Routing {
        let mut routing = Routing::default();
        let prefix = format!("{trigger_label}:");
        for rest in labels.iter().filter_map(|label| label.strip_prefix(&prefix)) {
            match rest {
                "priority-high" => routing.priority = HIGH_PRIORITY,
                "priority-low" => routing.priority = -HIGH_PRIORITY,
                name if routing.profile.is_none() && crate::config::is_profile_name(name) => {
                    routing.profile = Some(name.to_owned());
                }
                _ => {}
            }
        }
        routing
    }

    /// Takes `with <profile>` (one of `profiles`) and `p=N` off the start of a command's
    /// `text`; what they ask wins over `self` (the labels'). Returns the rest of the text:
    /// "with care" stays instructions unless a profile is named `care`.
    pub fn take_from_command(&mut self, text: &str, profiles: &[&str]) -> String {
        let mut rest = text.trim_start();
        loop {
            let (word, after) = first_word(rest);
            let (name, tail) = first_word(after);
            if word == "with" && profiles.contains(&name) {
                self.profile = Some(name.to_owned());
                rest = tail.trim_start();
            } else if let Some(n) = word.strip_prefix("p=").and_then(|n| n.parse::<i64>().ok()) {
                self.priority = n.clamp(-i64::from(MAX_PRIORITY), i64::from(MAX_PRIORITY)) as i32;
                rest = after.trim_start();
            } else {
                return rest.to_owned();
            }
        }
    }
}

/// The settings beside `[trigger]` that decide what an event means.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// `git.branch_prefix`: forgehand's own branches start with it.
    pub branch_prefix: &'a str,
    pub ci: &'a CiSettings,
}

/// The conclusions of a check (GitHub) or states of a status (Gitea) that are failures.
const FAILING: &[&str] = &["failure", "timed_out", "startup_failure", "error"];

/// A finished check on a commit: a failure on the head forgehand last pushed to its pull
/// request queues one follow-up (several failing checks on one commit join it), within
/// `ci.fix_rounds` per pull request.
fn check(event: &ForgeEvent, ci: &CiSettings, ctx: &IssueContext) -> Decision {
    let ForgeEvent::Check { repo, head_sha, name, conclusion, .. } = event else {
        unreachable!("check() is only called with checks")
    };
    let short = crate::forge::event::short_sha(head_sha);
    if !FAILING.contains(&conclusion.as_str()) {
        return Decision::Ignore(format!("check {name:?} on {short} ended {conclusion}: nothing to fix"));
    }
    if !ci.follow_failures {
        return Decision::Ignore("ci.follow_failures is off: failing checks start nothing".into());
    }
    let Some(pushed) = &ctx.pushed else {
        return Decision::Ignore(format!(
            "{short} is not a commit forgehand pushed to one of its pull requests (someone else's push, or not forgehand's branch)"
        ));
    };
    let pull = pushed.pull;
    if !pushed.newest {
        return Decision::Ignore(format!("{short} is no longer the head forgehand pushed to #{pull}"));
    }
    match (pushed.fixed_by, ctx.active_task) {
        (Some(task_id), Some(active)) if task_id == active => {
            return Decision::Coalesce { task_id, instructions: None };
        }
        (Some(task_id), _) => {
            return Decision::Ignore(format!("task {task_id} already tried to fix the checks of {short}"));
        }
        (None, Some(active)) => {
            return Decision::Ignore(format!(
                "task {active} is working on #{pull}; its push is checked again"
            ));
        }
        (None, None) => {}
    }
    if pushed.fix_rounds >= ci.fix_rounds {
        return Decision::Ignore(format!(
            "#{pull} had its {} automatic fix rounds (ci.fix_rounds); fix it by hand or comment the command",
            ci.fix_rounds
        ));
    }
    Decision::Create(TaskRequest {
        kind: TaskKind::FollowUp,
        trigger: TriggerKind::Checks,
        repo: repo.full_name.clone(),
        clone_url: pushed.clone_url.clone(),
        number: pull,
        title: pushed.pull_title.clone(),
        requested_by: pushed.requested_by.clone(),
        instructions: String::new(),
        branch: None,
        routing: Routing::default(),
        feedback_ref: Some(head_sha.clone()),
    })
}

/// The outcome of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do; the reason is recorded and answered.
    Ignore(String),
    /// Queue a new task.
    Create(TaskRequest),
    /// A task for this issue is already queued or running; the delivery joins it, and its
    /// instructions (`@login: text`), if any, join the next run.
    Coalesce { task_id: i64, instructions: Option<String> },
    /// Cancel the issue's queued or running task.
    Cancel { task_id: i64, reason: String },
    /// A comment answers the question the issue's task waits on; whether its author may
    /// answer is the executor's check, as for any trigger.
    Answer { task_id: i64, by: String, text: String },
}

/// Decides what `event` means for forgehand.
pub fn decide(
    event: &ForgeEvent,
    forge: &ForgeSettings,
    trigger: &TriggerSettings,
    rules: &Rules<'_>,
    ctx: &IssueContext,
) -> Decision {
    // A check's sender is whoever pushed or the CI's own bot: the check, not its sender,
    // is what forgehand reacts to.
    let person = !matches!(event, ForgeEvent::Check { .. });
    if let Some(reason) = event
        .sender()
        .filter(|_| person)
        .and_then(|sender| ignored_sender(sender, forge))
        .or_else(|| event.repo().and_then(|repo| ignored_repo(repo, trigger)))
    {
        return Decision::Ignore(reason);
    }
    match event {
        ForgeEvent::Ping => Decision::Ignore("ping: the webhook works".into()),
        ForgeEvent::Issue { change, repo, issue, sender, .. } => {
            issue_change(change, repo, issue, sender, trigger, ctx)
        }
        ForgeEvent::Comment { action, repo, issue, body, sender, .. } => {
            comment(action, repo, issue, body, sender, trigger, ctx)
        }
        ForgeEvent::Review { .. } => review(event, rules.branch_prefix, ctx),
        ForgeEvent::Check { .. } => check(event, rules.ci, ctx),
        ForgeEvent::Unsupported { event, .. } if event == "pull_request_review_comment" => Decision::Ignore(
            "inline comments are read with their review when it is submitted (the pull_request_review event)"
                .into(),
        ),
        ForgeEvent::Unsupported { event, action } => Decision::Ignore(match action {
            // The webhook edge has already updated which installation holds which
            // repository (`forge::github_app`); no task comes of it.
            Some(action) if event.starts_with("installation") => format!(
                "event {event}/{action}: the GitHub App's installations changed; forgehand updated which \
                 installation holds which repository, and the sweep lists them afresh"
            ),
            Some(action) => format!("event {event}/{action} is not one forgehand acts on"),
            None => format!("event {event} is not one forgehand acts on"),
        }),
    }
}

fn ignored_sender(sender: &Actor, forge: &ForgeSettings) -> Option<String> {
    if !forge.bot_login.is_empty() && sender.login.eq_ignore_ascii_case(&forge.bot_login) {
        Some(format!("caused by forgehand's own account {}", sender.login))
    } else if sender.is_bot {
        Some(format!("caused by the bot account {}", sender.login))
    } else {
        None
    }
}

fn ignored_repo(repo: &Repo, trigger: &TriggerSettings) -> Option<String> {
    let allowed = trigger.repos.is_empty() || trigger.repos.iter().any(|r| r.same_as(&repo.full_name));
    (!allowed).then(|| format!("repository {} is not in trigger.repos", repo.full_name))
}

fn issue_change(
    change: &IssueChange,
    repo: &Repo,
    issue: &Issue,
    sender: &Actor,
    trigger: &TriggerSettings,
    ctx: &IssueContext,
) -> Decision {
    let label = trigger.label.as_str();
    match change {
        IssueChange::Closed => cancel_active(ctx, "the issue was closed"),
        IssueChange::Unlabeled(name) if name == label => {
            cancel_active(ctx, &format!("the label {label:?} was removed"))
        }
        // Only a task the label started (or joined) is the label's to cancel.
        IssueChange::LabelsCleared if ctx.label_was_present == Some(true) => {
            cancel_active(ctx, "all labels were removed")
        }
        IssueChange::LabelsCleared => {
            Decision::Ignore(format!("labels cleared; the issue did not carry the label {label:?}"))
        }
        IssueChange::Opened if !issue.labels.iter().any(|l| l == label) => {
            Decision::Ignore("opened without the trigger label".into())
        }
        IssueChange::LabelsUpdated if !issue.labels.iter().any(|l| l == label) => {
            if ctx.label_was_present == Some(true) {
                cancel_active(ctx, &format!("the label {label:?} was removed"))
            } else {
                Decision::Ignore(format!("the issue does not carry the label {label:?}"))
            }
        }
        IssueChange::Labeled(name) if name != label => {
            Decision::Ignore(format!("label {name:?} is not the trigger label {label:?}"))
        }
        IssueChange::Unlabeled(name) => {
            Decision::Ignore(format!("label {name:?} is not the trigger label {label:?}"))
        }
        IssueChange::Labeled(_) | IssueChange::LabelsUpdated | IssueChange::Opened => {
            label_added(repo, issue, sender, trigger, ctx)
        }
        IssueChange::Other => Decision::Ignore("this issue action starts nothing".into()),
    }
}

fn label_added(
    repo: &Repo,
    issue: &Issue,
    sender: &Actor,
    trigger: &TriggerSettings,
    ctx: &IssueContext,
) -> Decision {
    if issue.is_pull_request {
        return Decision::Ignore(format!(
            "labels on pull requests start nothing; comment {} on the pull request instead",
            trigger.command
        ));
    }
    if !issue.is_open {
        return Decision::Ignore("the issue is closed".into());
    }
    if let Some(task_id) = ctx.active_task {
        return Decision::Coalesce { task_id, instructions: None };
    }
    // The trigger label must be newly present: Gitea reports every label change with the
    // full set only, so any later label edit would start the issue again; and the same
    // label event replayed under a new delivery id must not start a second task.
    if ctx.label_was_present == Some(true) {
        return Decision::Ignore(format!(
            "the label {:?} was already on the issue; remove it and add it again to start a new task",
            trigger.label
        ));
    }
    Decision::Create(TaskRequest {
        kind: TaskKind::Implement,
        trigger: TriggerKind::Label,
        repo: repo.full_name.clone(),
        clone_url: repo.clone_url.clone(),
        number: issue.number,
        title: issue.title.clone(),
        requested_by: sender.login.clone(),
        instructions: String::new(),
        branch: None,
        routing: Routing::from_labels(&issue.labels, &trigger.label),
        feedback_ref: None,
    })
}

fn cancel_active(ctx: &IssueContext, why: &str) -> Decision {
    match ctx.active_task {
        Some(task_id) => Decision::Cancel { task_id, reason: why.to_owned() },
        None => Decision::Ignore(format!("{why}; no queued or running task to cancel")),
    }
}

fn comment(
    action: &str,
    repo: &Repo,
    issue: &Issue,
    body: &str,
    sender: &Actor,
    trigger: &TriggerSettings,
    ctx: &IssueContext,
) -> Decision {
    if action != "created" {
        return Decision::Ignore(format!("comment {action}: only new comments start tasks"));
    }
    if let Some(task_id) = ctx.active_task.filter(|_| ctx.awaiting_answer && issue.is_open) {
        // Any comment answers, a command too: its text after the command.
        let text = parse_command(body, &trigger.command).unwrap_or_else(|| body.trim().to_owned());
        if text.is_empty() {
            return Decision::Ignore("an empty comment answers nothing".into());
        }
        return Decision::Answer { task_id, by: sender.login.clone(), text };
    }
    let Some(instructions) = parse_command(body, &trigger.command) else {
        return Decision::Ignore(format!("the comment does not start with {}", trigger.command));
    };
    // `with <profile>` and `p=N` are taken off by `route`, which knows the profiles.
    let routing = Routing::from_labels(&issue.labels, &trigger.label);
    if !issue.is_open {
        return Decision::Ignore("the issue is closed".into());
    }
    if let Some(task_id) = ctx.active_task {
        let instructions = (!instructions.is_empty()).then(|| format!("@{}: {instructions}", sender.login));
        return Decision::Coalesce { task_id, instructions };
    }
    let kind = if issue.is_pull_request { TaskKind::FollowUp } else { TaskKind::Implement };
    Decision::Create(TaskRequest {
        kind,
        trigger: TriggerKind::Comment,
        repo: repo.full_name.clone(),
        clone_url: repo.clone_url.clone(),
        number: issue.number,
        title: issue.title.clone(),
        requested_by: sender.login.clone(),
        instructions,
        branch: None,
        routing,
        feedback_ref: None,
    })
}

/// The instructions after `command` when `body` starts with it (leading blank space
/// allowed), or `None` when the comment is not a command.
pub fn parse_command(body: &str, command: &str) -> Option<String> {
    let rest = body.trim_start().strip_prefix(command)?;
    if rest.chars().next().is_some_and(|c| !c.is_whitespace()) {
        return None;
    }
    Some(rest.trim().to_owned())
}

fn review(event: &ForgeEvent, branch_prefix: &str, ctx: &IssueContext) -> Decision {
    let ForgeEvent::Review {
        action,
        repo,
        pr_number,
        pr_title,
        pr_open,
        head_ref,
        head_in_repo,
        verdict,
        body,
        sender,
        review_key,
    } = event
    else {
        unreachable!("review() is only called with reviews")
    };
    if action != "submitted" {
        return Decision::Ignore(format!("review {action}: only submitted reviews start follow-ups"));
    }
    if !pr_open {
        return Decision::Ignore(format!("pull request #{pr_number} is not open"));
    }
    if !head_ref.starts_with(branch_prefix) || !head_in_repo {
        return Decision::Ignore(format!(
            "pull request #{pr_number} is not forgehand's (its branch {head_ref:?} is not a {branch_prefix:?} branch of {})",
            repo.full_name
        ));
    }
    if *verdict == ReviewVerdict::Approved {
        return Decision::Ignore("an approval asks for no change".into());
    }
    // A review made only of inline comments has no body: the executor reads its comments.
    if let Some(task_id) = ctx.active_task {
        let instructions = (!body.trim().is_empty()).then(|| format!("@{}: {}", sender.login, body.trim()));
        return Decision::Coalesce { task_id, instructions };
    }
    Decision::Create(TaskRequest {
        kind: TaskKind::FollowUp,
        trigger: TriggerKind::Review,
        repo: repo.full_name.clone(),
        clone_url: repo.clone_url.clone(),
        number: *pr_number,
        title: pr_title.clone(),
        requested_by: sender.login.clone(),
        instructions: body.trim().to_owned(),
        branch: Some(head_ref.clone()),
        routing: Routing::default(),
        feedback_ref: review_key.clone(),
    })
}

impl TaskKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Implement => "implement",
            TaskKind::FollowUp => "follow_up",
        }
    }
}

impl TriggerKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Label => "label",
            TriggerKind::Comment => "comment",
            TriggerKind::Review => "review",
            TriggerKind::Sweep => "sweep",
            TriggerKind::Checks => "checks",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ForgeKind, Permission, WebhookSecrets};

    fn forge() -> ForgeSettings {
        ForgeSettings {
            name: "github".into(),
            kind: ForgeKind::Github,
            api_url: "https://api.github.com".into(),
            token: "".into(),
            webhook_secret: WebhookSecrets::default(),
            bot_login: "forgehand-bot".into(),
            app_id: None,
            private_key: String::new().into(),
        }
    }

    fn trigger() -> TriggerSettings {
        TriggerSettings {
            label: "forgehand".into(),
            command: "/forgehand".into(),
            repos: vec![],
            min_permission: Permission::Write,
        }
    }

    fn alice() -> Actor {
        Actor { login: "alice".into(), is_bot: false }
    }

    fn repo() -> Repo {
        Repo { full_name: "o/r".into(), clone_url: "file:///r.git".into() }
    }

    fn issue(labels: &[&str]) -> Issue {
        Issue {
            number: 7.into(),
            title: "Fix it".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            is_open: true,
            is_pull_request: false,
        }
    }

    fn issue_event(change: IssueChange, issue: Issue) -> ForgeEvent {
        ForgeEvent::Issue { action: "x".into(), change, repo: repo(), issue, sender: alice() }
    }

    fn comment_event(action: &str, body: &str, issue: Issue) -> ForgeEvent {
        ForgeEvent::Comment {
            action: action.into(),
            comment_id: Some(1),
            repo: repo(),
            issue,
            body: body.into(),
            sender: alice(),
        }
    }

    fn review_event(verdict: ReviewVerdict, head_ref: &str, body: &str) -> ForgeEvent {
        ForgeEvent::Review {
            action: "submitted".into(),
            review_key: Some("2".into()),
            repo: repo(),
            pr_number: 9.into(),
            pr_title: "PR".into(),
            pr_open: true,
            head_ref: head_ref.into(),
            head_in_repo: true,
            verdict,
            body: body.into(),
            sender: alice(),
        }
    }

    fn run(event: &ForgeEvent, ctx: IssueContext) -> Decision {
        decide(event, &forge(), &trigger(), &RULES, &ctx)
    }

    const CI: CiSettings = CiSettings { follow_failures: true, fix_rounds: 2 };
    const RULES: Rules<'static> = Rules { branch_prefix: "forgehand/", ci: &CI };
    const NONE: IssueContext =
        IssueContext { active_task: None, label_was_present: None, awaiting_answer: false, pushed: None };
    const WAITING: IssueContext = IssueContext {
        active_task: Some(3),
        label_was_present: Some(true),
        awaiting_answer: true,
        pushed: None,
    };
    const ACTIVE: IssueContext = IssueContext {
        active_task: Some(3),
        label_was_present: Some(true),
        awaiting_answer: false,
        pushed: None,
    };

    fn created(decision: Decision) -> TaskRequest {
        match decision {
            Decision::Create(request) => request,
            other => panic!("expected a task, got {other:?}"),
        }
    }

    fn ignored(decision: Decision) -> String {
        match decision {
            Decision::Ignore(reason) => reason,
            other => panic!("expected ignore, got {other:?}"),
        }
    }

    #[test]
    fn while_a_question_waits_any_new_comment_answers_it() {
        let answer = |body: &str| run(&comment_event("created", body, issue(&["forgehand"])), WAITING);
        let expected = |text: &str| Decision::Answer { task_id: 3, by: "alice".into(), text: text.into() };
        assert_eq!(answer("  Use -v, please.\n"), expected("Use -v, please."));
        assert_eq!(answer("/forgehand use --verbose"), expected("use --verbose"));
        ignored(answer("   "));
        ignored(run(&comment_event("edited", "Use -v", issue(&["forgehand"])), WAITING));
        let not_waiting = run(&comment_event("created", "Use -v", issue(&["forgehand"])), ACTIVE);
        assert!(ignored(not_waiting).contains("does not start with"));
        let mut bot = comment_event("created", "Use -v", issue(&["forgehand"]));
        if let ForgeEvent::Comment { sender, .. } = &mut bot {
            *sender = Actor { login: "Forgehand-Bot".into(), is_bot: false };
        }
        assert!(ignored(run(&bot, WAITING)).contains("forgehand's own account"));
    }

    #[test]
    fn github_trigger_label_creates_an_implement_task() {
        let request =
            created(run(&issue_event(IssueChange::Labeled("forgehand".into()), issue(&["forgehand"])), NONE));
        assert_eq!(
            (request.kind, request.trigger, request.number.get()),
            (TaskKind::Implement, TriggerKind::Label, 7)
        );
        assert_eq!((request.requested_by.as_str(), request.repo.as_str()), ("alice", "o/r"));
    }

    #[test]
    fn other_labels_and_actions_are_ignored() {
        let reason = ignored(run(&issue_event(IssueChange::Labeled("bug".into()), issue(&["bug"])), NONE));
        assert!(reason.contains("\"bug\" is not the trigger label"), "{reason}");
        ignored(run(&issue_event(IssueChange::Unlabeled("bug".into()), issue(&[])), ACTIVE));
        ignored(run(&issue_event(IssueChange::Other, issue(&["forgehand"])), NONE));
    }

    #[test]
    fn label_on_closed_issue_or_pull_request_is_ignored() {
        let mut closed = issue(&["forgehand"]);
        closed.is_open = false;
        assert!(
            ignored(run(&issue_event(IssueChange::Labeled("forgehand".into()), closed), NONE))
                .contains("closed")
        );
        let mut pr = issue(&["forgehand"]);
        pr.is_pull_request = true;
        assert!(
            ignored(run(&issue_event(IssueChange::Labeled("forgehand".into()), pr), NONE))
                .contains("pull requests")
        );
    }

    #[test]
    fn a_second_trigger_joins_the_active_task() {
        let label = issue_event(IssueChange::Labeled("forgehand".into()), issue(&["forgehand"]));
        assert_eq!(run(&label, ACTIVE), Decision::Coalesce { task_id: 3, instructions: None });
        let comment = comment_event("created", "/forgehand", issue(&[]));
        assert_eq!(run(&comment, ACTIVE), Decision::Coalesce { task_id: 3, instructions: None });
        let with_text = comment_event("created", "/forgehand also docs", issue(&[]));
        assert_eq!(
            run(&with_text, ACTIVE),
            Decision::Coalesce { task_id: 3, instructions: Some("@alice: also docs".into()) }
        );
    }

    #[test]
    fn gitea_label_set_triggers_only_when_the_label_is_new() {
        let event = issue_event(IssueChange::LabelsUpdated, issue(&["bug", "forgehand"]));
        created(run(&event, NONE));
        created(run(
            &event,
            IssueContext {
                active_task: None,
                label_was_present: Some(false),
                awaiting_answer: false,
                pushed: None,
            },
        ));
        let reason = ignored(run(
            &event,
            IssueContext {
                active_task: None,
                label_was_present: Some(true),
                awaiting_answer: false,
                pushed: None,
            },
        ));
        assert!(reason.contains("already on the issue"), "{reason}");
        let without = issue_event(IssueChange::LabelsUpdated, issue(&["bug"]));
        assert!(ignored(run(&without, NONE)).contains("does not carry"));
    }

    #[test]
    fn an_issue_opened_with_the_label_starts_once() {
        let opened = issue_event(IssueChange::Opened, issue(&["forgehand"]));
        created(run(&opened, NONE));
        assert_eq!(run(&opened, ACTIVE), Decision::Coalesce { task_id: 3, instructions: None });
        ignored(run(
            &opened,
            IssueContext {
                active_task: None,
                label_was_present: Some(true),
                awaiting_answer: false,
                pushed: None,
            },
        ));
        assert!(ignored(run(&issue_event(IssueChange::Opened, issue(&["bug"])), NONE)).contains("without"));
        // A labeled event for a label forgehand already saw added (a replay, or GitHub's
        // labeled after opened once the task is over) starts nothing.
        let labeled = issue_event(IssueChange::Labeled("forgehand".into()), issue(&["forgehand"]));
        ignored(run(
            &labeled,
            IssueContext {
                active_task: None,
                label_was_present: Some(true),
                awaiting_answer: false,
                pushed: None,
            },
        ));
        created(run(
            &labeled,
            IssueContext {
                active_task: None,
                label_was_present: Some(false),
                awaiting_answer: false,
                pushed: None,
            },
        ));
    }

    #[test]
    fn removing_the_label_or_closing_cancels() {
        let cases = [
            issue_event(IssueChange::Unlabeled("forgehand".into()), issue(&[])),
            issue_event(IssueChange::LabelsCleared, issue(&[])),
            issue_event(IssueChange::LabelsUpdated, issue(&["bug"])),
            issue_event(IssueChange::Closed, issue(&["forgehand"])),
        ];
        for event in &cases {
            assert!(matches!(run(event, ACTIVE), Decision::Cancel { task_id: 3, .. }), "{event:?}");
            let reason = ignored(run(event, IssueContext::default()));
            assert!(reason.contains("no queued or running task") || reason.contains("not carry"), "{reason}");
        }
        // A Gitea label edit on an issue whose task came from a comment cancels nothing.
        let comment_task = IssueContext {
            active_task: Some(3),
            label_was_present: None,
            awaiting_answer: false,
            pushed: None,
        };
        ignored(run(&cases[1], comment_task.clone()));
        ignored(run(&cases[2], comment_task));
    }

    #[test]
    fn command_comments() {
        let on_issue =
            created(run(&comment_event("created", "/forgehand  also the README\n", issue(&[])), NONE));
        assert_eq!((on_issue.kind, on_issue.trigger), (TaskKind::Implement, TriggerKind::Comment));
        assert_eq!(on_issue.instructions, "also the README");
        let mut pr = issue(&[]);
        pr.is_pull_request = true;
        let on_pr = created(run(&comment_event("created", "/forgehand rename it", pr), NONE));
        assert_eq!(on_pr.kind, TaskKind::FollowUp);
        ignored(run(&comment_event("edited", "/forgehand", issue(&[])), NONE));
        ignored(run(&comment_event("created", "LGTM /forgehand", issue(&[])), NONE));
        let mut closed = issue(&[]);
        closed.is_open = false;
        ignored(run(&comment_event("created", "/forgehand", closed), NONE));
    }

    #[test]
    fn command_parsing() {
        assert_eq!(parse_command("/forgehand", "/forgehand"), Some(String::new()));
        assert_eq!(parse_command("  /forgehand\tdo it ", "/forgehand"), Some("do it".into()));
        assert_eq!(parse_command("/forgehand\nline 1\nline 2", "/forgehand"), Some("line 1\nline 2".into()));
        assert_eq!(parse_command("/forgehandx", "/forgehand"), None);
        assert_eq!(parse_command("/Forgehand", "/forgehand"), None);
        assert_eq!(parse_command("", "/forgehand"), None);
        assert_eq!(parse_command("please /forgehand", "/forgehand"), None);
    }

    #[test]
    fn reviews_on_forgehands_pull_requests_start_follow_ups() {
        let request = created(run(
            &review_event(ReviewVerdict::ChangesRequested, "forgehand/issue-7-x", " add a test "),
            NONE,
        ));
        assert_eq!(
            (request.kind, request.trigger, request.number.get()),
            (TaskKind::FollowUp, TriggerKind::Review, 9)
        );
        assert_eq!(
            (request.instructions.as_str(), request.branch.as_deref()),
            ("add a test", Some("forgehand/issue-7-x"))
        );
        created(run(&review_event(ReviewVerdict::Commented, "forgehand/issue-7-x", "nit"), NONE));
        assert!(
            ignored(run(&review_event(ReviewVerdict::ChangesRequested, "feature/x", "y"), NONE))
                .contains("not forgehand's")
        );
        ignored(run(&review_event(ReviewVerdict::Approved, "forgehand/issue-7-x", "great"), NONE));
        // A review of inline comments only has no body: its comments are read when it runs.
        let inline = created(run(&review_event(ReviewVerdict::Commented, "forgehand/issue-7-x", "  "), NONE));
        assert_eq!((inline.instructions.as_str(), inline.feedback_ref.as_deref()), ("", Some("2")));
        assert_eq!(
            run(&review_event(ReviewVerdict::Commented, "forgehand/a", " "), ACTIVE),
            Decision::Coalesce { task_id: 3, instructions: None }
        );
        assert_eq!(
            run(&review_event(ReviewVerdict::Commented, "forgehand/a", "x"), ACTIVE),
            Decision::Coalesce { task_id: 3, instructions: Some("@alice: x".into()) }
        );
    }

    fn check_event(conclusion: &str) -> ForgeEvent {
        ForgeEvent::Check {
            check_key: "check_run:5".into(),
            repo: repo(),
            head_sha: "abc1234def".into(),
            name: "ci / test".into(),
            conclusion: conclusion.into(),
            sender: Actor { login: "github-actions[bot]".into(), is_bot: true },
        }
    }

    fn pushed(newest: bool, fix_rounds: u32, fixed_by: Option<i64>) -> PushedCommit {
        PushedCommit {
            pull: 9.into(),
            pull_title: "Fix it".into(),
            requested_by: "alice".into(),
            clone_url: "file:///r.git".into(),
            newest,
            fix_rounds,
            fixed_by,
        }
    }

    fn on(pushed: PushedCommit, active_task: Option<i64>) -> IssueContext {
        IssueContext { active_task, pushed: Some(pushed), ..NONE }
    }

    #[test]
    fn an_inline_comment_event_points_at_its_review() {
        let event = ForgeEvent::Unsupported {
            event: "pull_request_review_comment".into(),
            action: Some("created".into()),
        };
        assert!(ignored(run(&event, NONE)).contains("read with their review"));
    }

    #[test]
    fn a_failing_check_on_forgehands_last_push_queues_one_fix_within_the_rounds() {
        let request = created(run(&check_event("failure"), on(pushed(true, 1, None), None)));
        assert_eq!(
            (request.kind, request.trigger, request.number.get(), request.requested_by.as_str()),
            (TaskKind::FollowUp, TriggerKind::Checks, 9, "alice")
        );
        assert_eq!(request.feedback_ref.as_deref(), Some("abc1234def"));
        // The CI's bot sends it: that is no reason to ignore a check.
        created(run(&check_event("timed_out"), on(pushed(true, 0, None), None)));
        assert!(
            ignored(run(&check_event("success"), on(pushed(true, 0, None), None))).contains("nothing to fix")
        );
        assert!(ignored(run(&check_event("failure"), NONE)).contains("not a commit forgehand pushed"));
        assert!(
            ignored(run(&check_event("failure"), on(pushed(false, 0, None), None)))
                .contains("no longer the head")
        );
        assert!(
            ignored(run(&check_event("failure"), on(pushed(true, 2, None), None))).contains("ci.fix_rounds")
        );
        // A second failing check on the same commit joins the fix; a fix that ran is not repeated.
        assert_eq!(
            run(&check_event("failure"), on(pushed(true, 1, Some(4)), Some(4))),
            Decision::Coalesce { task_id: 4, instructions: None }
        );
        assert!(
            ignored(run(&check_event("failure"), on(pushed(true, 1, Some(4)), None)))
                .contains("already tried")
        );
        assert!(
            ignored(run(&check_event("failure"), on(pushed(true, 0, None), Some(3))))
                .contains("is working on #9")
        );
        let off = CiSettings { follow_failures: false, ..CI };
        let rules = Rules { ci: &off, ..RULES };
        let decision =
            decide(&check_event("failure"), &forge(), &trigger(), &rules, &on(pushed(true, 0, None), None));
        assert!(ignored(decision).contains("ci.follow_failures"));
    }

    #[test]
    fn reviews_on_closed_or_forked_pull_requests_are_ignored() {
        let mut closed = review_event(ReviewVerdict::ChangesRequested, "forgehand/issue-7-x", "fix");
        if let ForgeEvent::Review { pr_open, .. } = &mut closed {
            *pr_open = false;
        }
        assert!(ignored(run(&closed, NONE)).contains("not open"));
        let mut fork = review_event(ReviewVerdict::ChangesRequested, "forgehand/issue-7-x", "fix");
        if let ForgeEvent::Review { head_in_repo, .. } = &mut fork {
            *head_in_repo = false;
        }
        assert!(ignored(run(&fork, NONE)).contains("not forgehand's"));
    }

    #[test]
    fn bots_and_other_repositories_are_ignored() {
        let mut event = issue_event(IssueChange::Labeled("forgehand".into()), issue(&["forgehand"]));
        if let ForgeEvent::Issue { sender, .. } = &mut event {
            *sender = Actor { login: "Forgehand-Bot".into(), is_bot: false };
        }
        assert!(ignored(run(&event, NONE)).contains("own account"));
        if let ForgeEvent::Issue { sender, .. } = &mut event {
            *sender = Actor { login: "renovate[bot]".into(), is_bot: true };
        }
        assert!(ignored(run(&event, NONE)).contains("bot account"));
        let labeled = issue_event(IssueChange::Labeled("forgehand".into()), issue(&["forgehand"]));
        let mut only_other = trigger();
        only_other.repos = vec!["O/other".into()];
        assert!(
            ignored(decide(&labeled, &forge(), &only_other, &RULES, &NONE)).contains("not in trigger.repos")
        );
        only_other.repos.push("O/R".into());
        created(decide(&labeled, &forge(), &only_other, &RULES, &NONE));
    }

    #[test]
    fn ping_and_unsupported_events() {
        assert!(ignored(run(&ForgeEvent::Ping, NONE)).contains("ping"));
        let push = ForgeEvent::Unsupported { event: "push".into(), action: None };
        assert_eq!(ignored(run(&push, NONE)), "event push is not one forgehand acts on");
    }

    #[test]
    fn routing_comes_from_the_command_over_the_labels() {
        let labels = ["bug".to_owned(), "forgehand:opus".to_owned(), "forgehand:priority-high".to_owned()];
        let mut routing = Routing::from_labels(&labels, "forgehand");
        assert_eq!((routing.profile.as_deref(), routing.priority), (Some("opus"), HIGH_PRIORITY));
        let profiles = ["default", "haiku"];
        let rest = routing.take_from_command("with haiku p=-3 fix the typo", &profiles);
        assert_eq!(
            (routing.profile.as_deref(), routing.priority, rest.as_str()),
            (Some("haiku"), -3, "fix the typo")
        );
        let mut plain = Routing::default();
        assert_eq!(plain.take_from_command("with care please", &profiles), "with care please");
        assert_eq!(plain.take_from_command("p=99999", &profiles), "");
        assert_eq!((plain.profile, plain.priority), (None, MAX_PRIORITY));
        let low = Routing::from_labels(&["forgehand:priority-low".to_owned()], "forgehand");
        assert_eq!((low.profile, low.priority), (None, -HIGH_PRIORITY));
    }
}
