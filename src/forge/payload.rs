//! Webhook payloads of GitHub and Gitea/Forgejo, parsed into [`ForgeEvent`].
//!
//! Only the fields forgehand uses are read; everything else is ignored. A field that is
//! missing or has the wrong type is reported with its JSON path.

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use super::IssueNumber;
use super::event::{Actor, ForgeEvent, Issue, IssueChange, Repo, ReviewVerdict};
use crate::config::{ForgeKind, RepoName};

/// A payload that cannot be read, with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {event} payload at {path}: {message}")]
pub struct PayloadError {
    pub event: String,
    pub path: String,
    pub message: String,
}

/// Parses the JSON body of a delivery of `event` sent by a forge of `kind`: the events every
/// forge sends here, its own (reviews) in its folder.
///
/// A delivery whose action forgehand never acts on (`issues`/`pinned`, a comment edited)
/// is read only up to its `action`: its other fields may have any shape, and it becomes
/// [`ForgeEvent::Unsupported`], recorded and answered `ignored`.
pub fn parse(kind: ForgeKind, event: &str, json: &[u8]) -> Result<ForgeEvent, PayloadError> {
    match event {
        "ping" => read::<IgnoredAny>(event, json).map(|_| ForgeEvent::Ping),
        "issues" => when_acted_on(event, json, ISSUE_ACTIONS, IssuesPayload::into_event),
        "issue_comment" => when_acted_on(event, json, &["created"], CommentPayload::into_event),
        // GitHub, and Gitea/Forgejo with Actions, send it in GitHub's shape.
        "workflow_run" => when_acted_on(event, json, &["completed"], WorkflowRunPayload::into_event),
        _ => (super::dialect(kind).parse_own_event)(event, json).unwrap_or_else(|| {
            read::<Envelope>(event, json)
                .map(|envelope| ForgeEvent::Unsupported { event: event.to_owned(), action: envelope.action })
        }),
    }
}

/// The `issues` actions forgehand acts on (both forges' label changes, open and close).
const ISSUE_ACTIONS: &[&str] =
    &["labeled", "unlabeled", "label_updated", "label_cleared", "opened", "closed"];

/// A payload with an `action`, read whole only when forgehand acts on that action.
pub(crate) trait Acted: DeserializeOwned {
    fn action(&self) -> &str;
}

/// The event of a payload whose `action` is one of `actions`; any other action is
/// [`ForgeEvent::Unsupported`], whatever the shape of its other fields. An action-less
/// payload of an event that must have one is malformed.
pub(crate) fn when_acted_on<T: Acted>(
    event: &str,
    json: &[u8],
    actions: &[&str],
    into_event: impl FnOnce(T) -> ForgeEvent,
) -> Result<ForgeEvent, PayloadError> {
    // The whole payload first, so that a delivery acted on is read once (reading its
    // action alone first cost a second pass over every payload). Only when that fails
    // does the action decide between malformed and not acted on.
    let action = match serde_json::from_slice::<T>(json) {
        Ok(payload) if actions.contains(&payload.action()) => return Ok(into_event(payload)),
        Ok(payload) => payload.action().to_owned(),
        Err(_) => read::<ActionEnvelope>(event, json)?.action,
    };
    if actions.contains(&action.as_str()) {
        // Acted on but unreadable: this names the field.
        return read_with_path::<T>(event, json).map(into_event);
    }
    Ok(ForgeEvent::Unsupported { event: event.to_owned(), action: Some(action) })
}

/// Reads a payload, naming the JSON path of a field that cannot be read.
pub(crate) fn read<T: DeserializeOwned>(event: &str, json: &[u8]) -> Result<T, PayloadError> {
    // The plain parse is the fast path (it also refuses trailing text); only a payload it
    // refuses pays for a second parse that tracks the path for the message.
    match serde_json::from_slice(json) {
        Ok(value) => Ok(value),
        Err(_) => read_with_path(event, json),
    }
}

fn read_with_path<T: DeserializeOwned>(event: &str, json: &[u8]) -> Result<T, PayloadError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(json);
    let value = serde_path_to_error::deserialize(&mut *deserializer).map_err(|err| {
        let path = err.path().to_string();
        PayloadError {
            event: event.to_owned(),
            path: if path == "." { "the top level".into() } else { path },
            message: err.into_inner().to_string(),
        }
    })?;
    // Text after the JSON document would otherwise pass unnoticed.
    deserializer.end().map_err(|err| PayloadError {
        event: event.to_owned(),
        path: "the end of the body".into(),
        message: err.to_string(),
    })?;
    Ok(value)
}

#[derive(Deserialize)]
struct Envelope {
    action: Option<String>,
}

#[derive(Deserialize)]
struct ActionEnvelope {
    action: String,
}

#[derive(Deserialize)]
pub(crate) struct RepoPayload {
    full_name: RepoName,
    clone_url: String,
}

#[derive(Deserialize)]
pub(crate) struct UserPayload {
    login: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct LabelPayload {
    name: String,
}

#[derive(Deserialize)]
struct IssuePayload {
    number: IssueNumber,
    title: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    labels: Vec<LabelPayload>,
    state: String,
    #[serde(default)]
    pull_request: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct IssuesPayload {
    action: String,
    issue: IssuePayload,
    label: Option<LabelPayload>,
    repository: RepoPayload,
    sender: UserPayload,
}

#[derive(Deserialize)]
struct CommentBody {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default, deserialize_with = "null_as_empty")]
    body: String,
}

#[derive(Deserialize)]
struct CommentPayload {
    action: String,
    issue: IssuePayload,
    comment: CommentBody,
    repository: RepoPayload,
    sender: UserPayload,
    /// Gitea/Forgejo only: the comment is on a pull request.
    #[serde(default)]
    is_pull: bool,
}

#[derive(Deserialize)]
struct RepoNamePayload {
    full_name: String,
}

/// A pull request's head.
#[derive(Deserialize)]
pub(crate) struct HeadPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    pub sha: String,
    #[serde(default)]
    repo: Option<RepoNamePayload>,
}

/// A pull request as webhooks show it.
#[derive(Deserialize)]
pub(crate) struct PullPayload {
    pub number: IssueNumber,
    title: String,
    #[serde(default)]
    state: String,
    pub head: HeadPayload,
}

impl PullPayload {
    fn head_in(&self, repo: &RepoPayload) -> bool {
        self.head
            .repo
            .as_ref()
            .is_some_and(|head| head.full_name.eq_ignore_ascii_case(repo.full_name.as_str()))
    }
}

/// A review event: the parts every forge sends alike, and `R`, its own review object.
#[derive(Deserialize)]
pub(crate) struct ReviewPayload<R> {
    pub action: String,
    pub review: R,
    pub pull_request: PullPayload,
    repository: RepoPayload,
    sender: UserPayload,
}

/// What a forge reads from its own review object.
pub(crate) struct ReviewFacts {
    pub review_key: Option<String>,
    pub verdict: ReviewVerdict,
    pub body: String,
}

impl<R> ReviewPayload<R> {
    /// The event, with what `read` takes from the forge's review object.
    pub(crate) fn into_event(self, read: impl FnOnce(R, &PullPayload) -> ReviewFacts) -> ForgeEvent {
        let facts = read(self.review, &self.pull_request);
        ForgeEvent::Review {
            action: self.action,
            review_key: facts.review_key,
            head_in_repo: self.pull_request.head_in(&self.repository),
            pr_open: self.pull_request.state == "open",
            repo: self.repository.into(),
            pr_number: self.pull_request.number,
            pr_title: self.pull_request.title,
            head_ref: self.pull_request.head.git_ref,
            verdict: facts.verdict,
            body: facts.body,
            sender: self.sender.into(),
        }
    }
}

/// A workflow run (GitHub Actions, Gitea/Forgejo Actions).
#[derive(Deserialize)]
struct WorkflowRunPayload {
    action: String,
    workflow_run: WorkflowRun,
    repository: RepoPayload,
    sender: UserPayload,
}

#[derive(Deserialize)]
struct WorkflowRun {
    id: u64,
    head_sha: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    display_title: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    conclusion: String,
}

impl WorkflowRunPayload {
    fn into_event(self) -> ForgeEvent {
        let run = self.workflow_run;
        let name = if run.name.is_empty() { run.display_title } else { run.name };
        let check = CheckFacts {
            key: format!("workflow_run:{}", run.id),
            head_sha: run.head_sha,
            name,
            conclusion: run.conclusion,
        };
        check.into_event(self.repository, self.sender)
    }
}

/// What a forge reads from its own check, status or run object.
pub(crate) struct CheckFacts {
    pub key: String,
    pub head_sha: String,
    pub name: String,
    pub conclusion: String,
}

impl CheckFacts {
    pub(crate) fn into_event(self, repo: RepoPayload, sender: UserPayload) -> ForgeEvent {
        ForgeEvent::Check {
            check_key: self.key,
            repo: repo.into(),
            head_sha: self.head_sha,
            name: self.name,
            conclusion: self.conclusion.to_ascii_lowercase(),
            sender: sender.into(),
        }
    }
}

/// Reads `null` as the default value (Gitea sends `null` for empty lists and texts).
pub(crate) fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl From<RepoPayload> for Repo {
    fn from(repo: RepoPayload) -> Repo {
        Repo { full_name: repo.full_name, clone_url: repo.clone_url }
    }
}

impl From<UserPayload> for Actor {
    fn from(user: UserPayload) -> Actor {
        let is_bot = user.kind.as_deref() == Some("Bot") || user.login.ends_with("[bot]");
        Actor { login: user.login, is_bot }
    }
}

impl IssuePayload {
    fn into_issue(self, is_pull_request: bool) -> Issue {
        Issue {
            number: self.number,
            title: self.title,
            labels: self.labels.into_iter().map(|l| l.name).collect(),
            is_open: self.state == "open",
            is_pull_request: is_pull_request || self.pull_request.is_some(),
        }
    }
}

/// `Acted` for payload types whose `action: String` field is their action.
macro_rules! acted_by_field {
    ($($payload:ty),+ $(,)?) => {
        $(impl crate::forge::payload::Acted for $payload {
            fn action(&self) -> &str {
                &self.action
            }
        })+
    };
}
pub(crate) use acted_by_field;

acted_by_field!(IssuesPayload, CommentPayload, WorkflowRunPayload);

impl<R: serde::de::DeserializeOwned> Acted for ReviewPayload<R> {
    fn action(&self) -> &str {
        &self.action
    }
}

impl IssuesPayload {
    fn into_event(self) -> ForgeEvent {
        let label = self.label.map(|l| l.name);
        let change = match (self.action.as_str(), label) {
            ("labeled", Some(name)) => IssueChange::Labeled(name),
            ("unlabeled", Some(name)) => IssueChange::Unlabeled(name),
            ("label_updated", _) => IssueChange::LabelsUpdated,
            ("label_cleared", _) => IssueChange::LabelsCleared,
            ("closed", _) => IssueChange::Closed,
            ("opened", _) => IssueChange::Opened,
            _ => IssueChange::Other,
        };
        ForgeEvent::Issue {
            action: self.action,
            change,
            repo: self.repository.into(),
            issue: self.issue.into_issue(false),
            sender: self.sender.into(),
        }
    }
}

impl CommentPayload {
    fn into_event(self) -> ForgeEvent {
        ForgeEvent::Comment {
            action: self.action,
            comment_id: self.comment.id,
            repo: self.repository.into(),
            issue: self.issue.into_issue(self.is_pull),
            body: self.comment.body,
            sender: self.sender.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn github_labeled() {
        let event = parse(ForgeKind::Github, "issues", &fixture("github/issues_labeled.json")).unwrap();
        let ForgeEvent::Issue { change, issue, repo, sender, .. } = event else { panic!("{event:?}") };
        assert_eq!(change, IssueChange::Labeled("forgehand".into()));
        assert_eq!(issue.number, 42);
        assert!(issue.is_open && !issue.is_pull_request);
        assert_eq!(repo.full_name, "octo-org/hello-world");
        assert_eq!(sender, Actor { login: "alice".into(), is_bot: false });
    }

    #[test]
    fn a_repository_name_is_taken_as_the_forge_sent_it() {
        let mut json: serde_json::Value =
            serde_json::from_slice(&fixture("github/issues_labeled.json")).unwrap();
        for odd in ["a/b/c", "no-slash", "../up"] {
            json["repository"]["full_name"] = odd.into();
            let event = parse(ForgeKind::Github, "issues", json.to_string().as_bytes()).unwrap();
            assert_eq!(event.repo().unwrap().full_name, odd);
        }
        json["repository"]["full_name"] = 7.into();
        let err = parse(ForgeKind::Github, "issues", json.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.path, "repository.full_name");
    }

    #[test]
    fn gitea_label_updated_has_only_the_label_set() {
        let event = parse(ForgeKind::Gitea, "issues", &fixture("gitea/issues_label_updated.json")).unwrap();
        assert_eq!(event.label_present_after("forgehand"), Some(true));
        let ForgeEvent::Issue { change, .. } = event else { panic!() };
        assert_eq!(change, IssueChange::LabelsUpdated);
    }

    #[test]
    fn comments_on_pull_requests_are_marked() {
        for (kind, path) in [
            (ForgeKind::Github, "github/issue_comment_pr.json"),
            (ForgeKind::Gitea, "gitea/issue_comment_pr.json"),
        ] {
            let event = parse(kind, "issue_comment", &fixture(path)).unwrap();
            let ForgeEvent::Comment { issue, body, .. } = event else { panic!() };
            assert!(issue.is_pull_request, "{path}");
            assert!(body.starts_with("/forgehand"), "{path}");
        }
    }

    #[test]
    fn reviews_of_both_forges() {
        let github =
            parse(ForgeKind::Github, "pull_request_review", &fixture("github/pull_request_review.json"))
                .unwrap();
        let gitea =
            parse(ForgeKind::Gitea, "pull_request_rejected", &fixture("gitea/pull_request_rejected.json"))
                .unwrap();
        for event in [github, gitea] {
            let ForgeEvent::Review { verdict, head_ref, pr_number, action, .. } = event else { panic!() };
            assert_eq!(
                (verdict, pr_number.get(), action.as_str()),
                (ReviewVerdict::ChangesRequested, 43, "submitted")
            );
            assert!(head_ref.starts_with("forgehand/"));
        }
    }

    #[test]
    fn gitea_statuses_and_workflow_runs_are_checks_on_a_commit() {
        let sha = "9c2f4e1b7a3d5f60e8b1c2d3a4f5e6b7c8d9e0f1";
        let status = parse(ForgeKind::Gitea, "status", &fixture("gitea/events/status.json")).unwrap();
        let ForgeEvent::Check { check_key, head_sha, name, conclusion, .. } = &status else {
            panic!("{status:?}")
        };
        assert_eq!(
            (check_key.as_str(), head_sha.as_str(), name.as_str(), conclusion.as_str()),
            ("status:12", sha, "ci / test (push)", "success")
        );
        assert_eq!(status.event_key().as_deref(), Some("status:12:success"));
        let run =
            parse(ForgeKind::Gitea, "workflow_run", &fixture("gitea/events/workflow_run_completed.json"))
                .unwrap();
        let ForgeEvent::Check { check_key, head_sha, name, .. } = &run else { panic!("{run:?}") };
        assert_eq!(
            (check_key.as_str(), head_sha.as_str(), name.as_str()),
            ("workflow_run:5", sha, "Add a --verbose flag")
        );
        // A GitHub check run names itself; a suite is named by its app.
        let suite = br#"{"action":"completed","check_suite":{"id":3,"head_sha":"abc","conclusion":"failure","app":{"name":"GitHub Actions"}},"repository":{"full_name":"o/r","clone_url":"u"},"sender":{"login":"x"}}"#;
        let ForgeEvent::Check { name, conclusion, .. } =
            parse(ForgeKind::Github, "check_suite", suite).unwrap()
        else {
            panic!()
        };
        assert_eq!((name.as_str(), conclusion.as_str()), ("GitHub Actions", "failure"));
        let requested = br#"{"action":"requested","check_suite":{}}"#;
        assert!(matches!(
            parse(ForgeKind::Github, "check_suite", requested),
            Ok(ForgeEvent::Unsupported { .. })
        ));
    }

    #[test]
    fn errors_name_the_json_path() {
        let err = parse(ForgeKind::Github, "issues", br#"{"action":"labeled","issue":{"number":"x"}}"#)
            .unwrap_err();
        assert_eq!(err.path, "issue.number");
        let err = parse(ForgeKind::Github, "issues", br#"{"action":"labeled"}"#).unwrap_err();
        assert!(err.message.contains("missing field `issue`"), "{err}");
        let err = parse(ForgeKind::Github, "ping", b"{\"zen\":").unwrap_err();
        assert!(err.to_string().starts_with("malformed ping payload"), "{err}");
        let err = parse(ForgeKind::Github, "push", b"[1,2").unwrap_err();
        assert_eq!(err.event, "push");
    }

    #[test]
    fn actions_forgehand_never_acts_on_are_read_no_further() {
        // GitHub's issues.pinned carries an issue without `state`.
        let pinned = br#"{"action":"pinned","issue":{"number":1,"title":"x"},"repository":{}}"#;
        let event = parse(ForgeKind::Github, "issues", pinned).unwrap();
        assert_eq!(event, ForgeEvent::Unsupported { event: "issues".into(), action: Some("pinned".into()) });
        let edited = br#"{"action":"edited","comment":{"body":7}}"#;
        assert!(matches!(
            parse(ForgeKind::Gitea, "issue_comment", edited),
            Ok(ForgeEvent::Unsupported { .. })
        ));
        let dismissed = br#"{"action":"dismissed","review":null}"#;
        let event = parse(ForgeKind::Github, "pull_request_review", dismissed).unwrap();
        assert_eq!(event.action(), Some("dismissed"));
        // A whole, well-formed payload of such an action is not acted on either.
        let whole = String::from_utf8(fixture("github/issues_labeled.json")).unwrap();
        let edited = whole.replacen(r#""action":"labeled""#, r#""action":"edited""#, 1);
        assert_ne!(edited, whole);
        let event = parse(ForgeKind::Github, "issues", edited.as_bytes()).unwrap();
        assert_eq!(event, ForgeEvent::Unsupported { event: "issues".into(), action: Some("edited".into()) });
        // The actions it acts on are read whole, and an event that has actions needs one.
        let labeled = br#"{"action":"labeled","issue":{"number":1,"title":"x"}}"#;
        assert!(parse(ForgeKind::Github, "issues", labeled).is_err());
        let err = parse(ForgeKind::Github, "issues", br#"{"issue":{}}"#).unwrap_err();
        assert!(err.message.contains("missing field `action`"), "{err}");
    }

    #[test]
    fn unknown_events_are_unsupported_not_errors() {
        let event = parse(ForgeKind::Gitea, "push", &fixture("gitea/push.json")).unwrap();
        assert_eq!(event, ForgeEvent::Unsupported { event: "push".into(), action: None });
    }
}
