//! The one [`Forge`] implementation for forges whose REST API has GitHub's shape (GitHub,
//! Gitea, Forgejo): the same routes and bodies, with the differences read from an [`Api`]
//! table that each forge folder fills, and the HTTP calls made by that forge's
//! [`Transport`].

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use axum::http::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::IssueNumber;
use super::client::{
    Answer, ErrorKind, FailedCheck, Forge, ForgeError, ForgeResult, IssueComment, IssueInfo, MAX_PAGES,
    NewPull, PullInfo, RepoInfo, ReviewComment, ReviewRef, TreeEntry, UserInfo, repo_path, segment,
};
use super::models::{
    CheckRuns, Comment, GitObject, GiteaReviewComment, GithubReviewComment, Id, Issue, Label, Login,
    PermissionAnswer, Pull, Repository, Review, User,
};
use crate::config::{ForgeKind, Permission, RepoName};

/// What differs between the REST APIs of forges with GitHub's shape.
pub struct Api {
    pub kind: ForgeKind,
    /// The query parameter that sets the page size, and the size asked for.
    pub page_size_param: &'static str,
    pub page_size: usize,
    /// Added to an issue listing so that it leaves out pull requests, if the forge can.
    pub issues_only: &'static str,
    /// How an issue's labels are addressed.
    pub labels: LabelsBy,
    /// Put before a label's hex colour when creating it.
    pub color_prefix: &'static str,
    /// The status that says "a pull request for this head exists already".
    pub duplicate_pull_status: u16,
    pub draft: DraftStyle,
    /// The forge's permission names, mapped onto forgehand's levels; others are `None`.
    pub permissions: &'static [(&'static str, Permission)],
    /// Said when the permission endpoint answers 403 because of who may read it, if the
    /// forge restricts it.
    pub permission_forbidden_hint: Option<&'static str>,
    pub find_pull: FindPull,
    /// The forge has check runs (GitHub) beside commit statuses, and Actions job logs
    /// behind `/actions/jobs/{id}/logs`.
    pub check_runs: bool,
    /// Review comments take replies in their thread (GitHub's `/comments/{id}/replies`).
    pub review_replies: bool,
}

/// How much of a failed check's log the prompt carries, in characters (the end is kept).
pub const LOG_TAIL_CHARS: usize = 8_000;

/// The conclusions of check runs and the states of commit statuses that are failures.
const FAILED: &[&str] = &["failure", "timed_out", "startup_failure", "error"];

/// The last `LOG_TAIL_CHARS` characters of `text`, from a line start where there is one.
pub fn log_tail(text: &str) -> String {
    let count = text.chars().count();
    if count <= LOG_TAIL_CHARS {
        return text.to_owned();
    }
    let tail: String = text.chars().skip(count - LOG_TAIL_CHARS).collect();
    match tail.split_once('\n') {
        Some((_, rest)) if !rest.is_empty() => rest.to_owned(),
        _ => tail,
    }
}

/// How labels are named in routes and bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelsBy {
    /// By name; adding a label creates it (`POST /labels` answers 422 when it exists).
    Name,
    /// By id, found by listing the repository's labels.
    Id,
}

/// A label as routes and bodies name it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelAddress {
    Name(String),
    Id(u64),
}

impl LabelAddress {
    fn json(&self) -> Value {
        match self {
            LabelAddress::Name(name) => json!(name),
            LabelAddress::Id(id) => json!(id),
        }
    }

    fn segment(&self) -> String {
        match self {
            LabelAddress::Name(name) => segment(name),
            LabelAddress::Id(id) => id.to_string(),
        }
    }
}

/// How a pull request is marked as a draft.
pub enum DraftStyle {
    /// A `draft` field in the body.
    Flag,
    /// A prefix on the title.
    TitlePrefix(&'static str),
}

/// How the open pull request for a head branch is found.
pub enum FindPull {
    /// `GET /pulls?state=open&head=owner:branch&base=...`, a list.
    HeadQuery,
    /// `GET /pulls/{base}/{head}`, one pull request of any state, or 404.
    BaseHeadRoute,
}

/// Sends one request to the forge's API and hands back the raw answer: status and headers
/// intact, so that [`Answer`] can classify errors the same way for every forge.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        operation: &str,
    ) -> ForgeResult<Answer>;

    /// The token git pushes to `repo` with, when it is not the configured one (a GitHub
    /// App's installation token); `None` means the configured token.
    async fn git_token(&self, _repo: &RepoName) -> ForgeResult<Option<SecretString>> {
        Ok(None)
    }

    /// The repositories the credentials define, if they do (see `Forge::installed_repos`).
    async fn installed_repos(&self) -> ForgeResult<Option<Vec<RepoName>>> {
        Ok(None)
    }
}

/// A forge client: the shared routes over a forge's [`Api`] table and [`Transport`].
pub struct RestForge {
    api: &'static Api,
    transport: Box<dyn Transport>,
    /// `repo#label` → how to address that label, for labels known to exist, so that each
    /// is created (or looked up) at most once per process.
    known_labels: Mutex<HashMap<String, LabelAddress>>,
}

impl RestForge {
    pub fn new(api: &'static Api, transport: Box<dyn Transport>) -> RestForge {
        RestForge { api, transport, known_labels: Mutex::new(HashMap::new()) }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        operation: &str,
    ) -> ForgeResult<Answer> {
        self.transport.send(method, path, body, operation).await
    }

    /// `path` with the page size and number added to its query.
    fn page(&self, path: &str, page: u32) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{path}{separator}{}={}&page={page}", self.api.page_size_param, self.api.page_size)
    }

    /// Every item of a paged listing, up to [`MAX_PAGES`] pages.
    async fn all_pages<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        operation: &str,
    ) -> ForgeResult<Vec<T>> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let batch: Vec<T> =
                self.send(Method::GET, &self.page(path, page), None, operation).await?.json(operation)?;
            let last = batch.len() < self.api.page_size;
            all.extend(batch);
            if last {
                break;
            }
        }
        Ok(all)
    }

    fn known_label(&self, key: &str) -> Option<LabelAddress> {
        self.known_labels.lock().ok()?.get(key).cloned()
    }

    fn remember_label(&self, key: String, address: &LabelAddress) {
        if let Ok(mut known) = self.known_labels.lock() {
            known.insert(key, address.clone());
        }
    }

    fn forget_label(&self, key: &str) {
        if let Ok(mut known) = self.known_labels.lock() {
            known.remove(key);
        }
    }

    /// How to address `label` in `repo` (its name, or its id), creating it when `create`
    /// is set; `None` when it does not exist and was not created.
    async fn label_address(
        &self,
        repo: &RepoName,
        label: &str,
        create: bool,
    ) -> ForgeResult<Option<LabelAddress>> {
        let key = format!("{repo}#{label}");
        if let Some(known) = self.known_label(&key) {
            return Ok(Some(known));
        }
        let address = match (self.api.labels, create) {
            (LabelsBy::Name, false) => return Ok(Some(LabelAddress::Name(label.to_owned()))),
            (LabelsBy::Name, true) => self.create_label(repo, label).await?,
            (LabelsBy::Id, _) => match self.find_label_id(repo, label).await? {
                Some(id) => LabelAddress::Id(id),
                None if create => self.create_label(repo, label).await?,
                None => return Ok(None),
            },
        };
        self.remember_label(key, &address);
        Ok(Some(address))
    }

    async fn find_label_id(&self, repo: &RepoName, label: &str) -> ForgeResult<Option<u64>> {
        let operation = format!("listing the labels of {repo}");
        let path = format!("/repos/{}/labels", repo_path(repo));
        let labels: Vec<Label> = self.all_pages(&path, &operation).await?;
        Ok(labels.into_iter().find(|l| l.name == label).map(|l| l.id))
    }

    /// Creates `label`; returns how to address it.
    async fn create_label(&self, repo: &RepoName, label: &str) -> ForgeResult<LabelAddress> {
        let operation = format!("creating the label {label:?} in {repo}");
        let body =
            json!({ "name": label, "color": format!("{}{}", self.api.color_prefix, label_color(label)) });
        let path = format!("/repos/{}/labels", repo_path(repo));
        let answer = self.send(Method::POST, &path, Some(&body), &operation).await?;
        match self.api.labels {
            // 422: it exists already.
            LabelsBy::Name if answer.status.as_u16() == 422 => Ok(LabelAddress::Name(label.to_owned())),
            LabelsBy::Name => answer.ok(&operation).map(|_| LabelAddress::Name(label.to_owned())),
            LabelsBy::Id => Ok(LabelAddress::Id(answer.json::<Id>(&operation)?.id)),
        }
    }

    async fn delete_label(
        &self,
        repo: &RepoName,
        number: IssueNumber,
        address: &LabelAddress,
        operation: &str,
    ) -> ForgeResult<Answer> {
        let path = format!("/repos/{}/issues/{number}/labels/{}", repo_path(repo), address.segment());
        self.send(Method::DELETE, &path, None, operation).await
    }

    /// The check runs that failed on `git_ref`, with the Actions job log's end where the
    /// token may read it.
    async fn failed_check_runs(&self, repo: &RepoName, git_ref: &str) -> ForgeResult<Vec<FailedCheck>> {
        let operation = format!("reading the check runs of {git_ref} in {repo}");
        let path = format!("/repos/{}/commits/{}/check-runs?per_page=100", repo_path(repo), segment(git_ref));
        let runs: CheckRuns = self.send(Method::GET, &path, None, &operation).await?.json(&operation)?;
        let mut failed = Vec::new();
        for run in runs.check_runs {
            let conclusion = run.conclusion.clone().unwrap_or_default();
            if !FAILED.contains(&conclusion.as_str()) {
                continue;
            }
            let output = run.output.unwrap_or_default();
            let summary = [output.title, output.summary]
                .into_iter()
                .flatten()
                .filter(|t| !t.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            let actions = run.app.as_ref().and_then(|a| a.slug.as_deref()) == Some("github-actions");
            let job_log = if actions { self.job_log(repo, run.id).await } else { None };
            let log_tail = log_tail(&job_log.or(output.text).unwrap_or_default());
            failed.push(FailedCheck {
                name: run.name,
                conclusion,
                summary,
                url: run.html_url.unwrap_or_default(),
                log_tail,
            });
        }
        Ok(failed)
    }

    /// An Actions job's log, when the forge answers it as text (a token without the
    /// Actions read permission gets none, which is fine: the check's own text remains).
    async fn job_log(&self, repo: &RepoName, job_id: u64) -> Option<String> {
        let operation = format!("reading the log of job {job_id} in {repo}");
        let path = format!("/repos/{}/actions/jobs/{job_id}/logs", repo_path(repo));
        let answer = self.send(Method::GET, &path, None, &operation).await.ok()?;
        let body = answer.ok(&operation).ok()?;
        Some(String::from_utf8_lossy(&body).into_owned())
    }

    /// The commit statuses that failed on `git_ref` (GitHub names a status's state
    /// `state`, Gitea `status`).
    async fn failed_statuses(&self, repo: &RepoName, git_ref: &str) -> ForgeResult<Vec<FailedCheck>> {
        let operation = format!("reading the commit statuses of {git_ref} in {repo}");
        let path = format!("/repos/{}/commits/{}/status", repo_path(repo), segment(git_ref));
        let combined: Value = self.send(Method::GET, &path, None, &operation).await?.json(&operation)?;
        let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_owned();
        let statuses = combined["statuses"].as_array().cloned().unwrap_or_default();
        Ok(statuses
            .iter()
            .filter_map(|status| {
                let state = status["state"].as_str().or(status["status"].as_str()).unwrap_or_default();
                FAILED.contains(&state).then(|| FailedCheck {
                    name: text(status, "context"),
                    conclusion: state.to_owned(),
                    summary: text(status, "description"),
                    url: text(status, "target_url"),
                    log_tail: String::new(),
                })
            })
            .collect())
    }

    fn permission_named(&self, name: &str) -> Permission {
        let known = self.api.permissions.iter().find(|(forge_name, _)| *forge_name == name);
        known.map_or(Permission::None, |(_, level)| *level)
    }

    fn new_pull_body(&self, pull: &NewPull<'_>) -> Value {
        match self.api.draft {
            DraftStyle::Flag => {
                json!({ "title": pull.title, "head": pull.head, "base": pull.base, "body": pull.body, "draft": pull.draft })
            }
            DraftStyle::TitlePrefix(prefix) => {
                let title =
                    if pull.draft { format!("{prefix}{}", pull.title) } else { pull.title.to_owned() };
                json!({ "title": title, "head": pull.head, "base": pull.base, "body": pull.body })
            }
        }
    }
}

/// forgehand's status labels get colours that say what they mean.
fn label_color(label: &str) -> &'static str {
    if label.ends_with("failed") {
        "d73a4a"
    } else if label.ends_with("done") {
        "0e8a16"
    } else {
        "fbca04"
    }
}

/// Success, or a 404 (the thing to remove is not there): both fine for a removal.
fn removed(answer: Answer, operation: &str) -> ForgeResult<()> {
    if answer.status.is_success() || answer.status.as_u16() == 404 {
        Ok(())
    } else {
        Err(answer.error(operation))
    }
}

#[async_trait]
impl Forge for RestForge {
    fn kind(&self) -> ForgeKind {
        self.api.kind
    }

    async fn current_login(&self) -> ForgeResult<String> {
        let operation = "reading the bot account";
        Ok(self.send(Method::GET, "/user", None, operation).await?.json::<Login>(operation)?.login)
    }

    async fn git_token(&self, repo: &RepoName) -> ForgeResult<Option<SecretString>> {
        self.transport.git_token(repo).await
    }

    async fn installed_repos(&self) -> ForgeResult<Option<Vec<RepoName>>> {
        self.transport.installed_repos().await
    }

    async fn user(&self, login: &str) -> ForgeResult<UserInfo> {
        let operation = format!("reading {login}'s profile");
        let answer = self.send(Method::GET, &format!("/users/{}", segment(login)), None, &operation).await?;
        Ok(answer.json::<User>(&operation)?.into())
    }

    async fn repository(&self, repo: &RepoName) -> ForgeResult<RepoInfo> {
        let operation = format!("reading the repository {repo}");
        let answer = self.send(Method::GET, &format!("/repos/{}", repo_path(repo)), None, &operation).await?;
        Ok(answer.json::<Repository>(&operation)?.into())
    }

    async fn permission(&self, repo: &RepoName, login: &str) -> ForgeResult<Permission> {
        let operation = format!("reading {login}'s permission on {repo}");
        let path = format!("/repos/{}/collaborators/{}/permission", repo_path(repo), segment(login));
        let answer = self.send(Method::GET, &path, None, &operation).await?;
        if let (403, Some(hint)) = (answer.status.as_u16(), self.api.permission_forbidden_hint) {
            let message = format!("{hint} {repo}");
            return Err(ForgeError { operation, kind: ErrorKind::Forbidden, message });
        }
        Ok(self.permission_named(&answer.json::<PermissionAnswer>(&operation)?.permission))
    }

    async fn issue(&self, repo: &RepoName, number: IssueNumber) -> ForgeResult<IssueInfo> {
        let operation = format!("reading {repo}#{number}");
        let path = format!("/repos/{}/issues/{number}", repo_path(repo));
        Ok(self.send(Method::GET, &path, None, &operation).await?.json::<Issue>(&operation)?.into())
    }

    async fn comments(&self, repo: &RepoName, number: IssueNumber) -> ForgeResult<Vec<IssueComment>> {
        let operation = format!("reading the comments of {repo}#{number}");
        let path = format!("/repos/{}/issues/{number}/comments", repo_path(repo));
        let comments: Vec<Comment> = self.all_pages(&path, &operation).await?;
        Ok(comments.into_iter().map(IssueComment::from).collect())
    }

    async fn create_comment(&self, repo: &RepoName, number: IssueNumber, body: &str) -> ForgeResult<u64> {
        let operation = format!("commenting on {repo}#{number}");
        let path = format!("/repos/{}/issues/{number}/comments", repo_path(repo));
        let answer = self.send(Method::POST, &path, Some(&json!({ "body": body })), &operation).await?;
        Ok(answer.json::<Id>(&operation)?.id)
    }

    async fn edit_comment(&self, repo: &RepoName, comment_id: u64, body: &str) -> ForgeResult<()> {
        let operation = format!("editing comment {comment_id} in {repo}");
        let path = format!("/repos/{}/issues/comments/{comment_id}", repo_path(repo));
        self.send(Method::PATCH, &path, Some(&json!({ "body": body })), &operation).await?.ok(&operation)?;
        Ok(())
    }

    async fn add_label(&self, repo: &RepoName, number: IssueNumber, label: &str) -> ForgeResult<()> {
        let Some(address) = self.label_address(repo, label, true).await? else { return Ok(()) };
        let operation = format!("labelling {repo}#{number} {label:?}");
        let path = format!("/repos/{}/issues/{number}/labels", repo_path(repo));
        let answer =
            self.send(Method::POST, &path, Some(&json!({ "labels": [address.json()] })), &operation).await?;
        if !answer.status.is_success() && self.api.labels == LabelsBy::Id {
            // An id goes stale when the label is deleted (a name does not): look it up
            // again next time.
            self.forget_label(&format!("{repo}#{label}"));
        }
        answer.ok(&operation)?;
        Ok(())
    }

    async fn remove_label(&self, repo: &RepoName, number: IssueNumber, label: &str) -> ForgeResult<()> {
        let Some(address) = self.label_address(repo, label, false).await? else { return Ok(()) };
        let operation = format!("removing the label {label:?} from {repo}#{number}");
        let answer = self.delete_label(repo, number, &address, &operation).await?;
        if self.api.labels == LabelsBy::Id && answer.status.as_u16() == 404 {
            // The id may be stale (the label deleted and made again): look it up afresh.
            self.forget_label(&format!("{repo}#{label}"));
            match self.label_address(repo, label, false).await? {
                Some(fresh) if fresh != address => {
                    return removed(self.delete_label(repo, number, &fresh, &operation).await?, &operation);
                }
                _ => {}
            }
        }
        removed(answer, &operation)
    }

    async fn react(&self, repo: &RepoName, number: IssueNumber, content: &str) -> ForgeResult<()> {
        let operation = format!("reacting to {repo}#{number}");
        let path = format!("/repos/{}/issues/{number}/reactions", repo_path(repo));
        self.send(Method::POST, &path, Some(&json!({ "content": content })), &operation)
            .await?
            .ok(&operation)?;
        Ok(())
    }

    async fn find_pull(&self, repo: &RepoName, head: &str, base: &str) -> ForgeResult<Option<PullInfo>> {
        let operation = format!("looking for the pull request of {head} in {repo}");
        match self.api.find_pull {
            FindPull::HeadQuery => {
                let owner = repo.owner();
                let path = format!(
                    "/repos/{}/pulls?state=open&head={}:{}&base={}",
                    repo_path(repo),
                    segment(owner),
                    segment(head),
                    segment(base)
                );
                let pulls: Vec<Pull> =
                    self.send(Method::GET, &path, None, &operation).await?.json(&operation)?;
                Ok(pulls.into_iter().next().map(PullInfo::from))
            }
            FindPull::BaseHeadRoute => {
                let path = format!("/repos/{}/pulls/{}/{}", repo_path(repo), segment(base), segment(head));
                let answer = self.send(Method::GET, &path, None, &operation).await?;
                if answer.status.as_u16() == 404 {
                    return Ok(None);
                }
                let pull: PullInfo = answer.json::<Pull>(&operation)?.into();
                Ok(pull.is_open.then_some(pull))
            }
        }
    }

    async fn create_pull(&self, repo: &RepoName, pull: &NewPull<'_>) -> ForgeResult<PullInfo> {
        let operation = format!("opening the pull request of {} in {repo}", pull.head);
        let body = self.new_pull_body(pull);
        let answer = self
            .send(Method::POST, &format!("/repos/{}/pulls", repo_path(repo)), Some(&body), &operation)
            .await?;
        // The forge refuses a second pull request for the same head: reuse the first.
        if answer.status.as_u16() == self.api.duplicate_pull_status
            && let Some(existing) = self.find_pull(repo, pull.head, pull.base).await?
        {
            return Ok(existing);
        }
        Ok(answer.json::<Pull>(&operation)?.into())
    }

    async fn pull(&self, repo: &RepoName, number: IssueNumber) -> ForgeResult<PullInfo> {
        let operation = format!("reading the pull request {repo}#{number}");
        let path = format!("/repos/{}/pulls/{number}", repo_path(repo));
        Ok(self.send(Method::GET, &path, None, &operation).await?.json::<Pull>(&operation)?.into())
    }

    async fn failing_checks(&self, repo: &RepoName, git_ref: &str) -> ForgeResult<Vec<FailedCheck>> {
        let mut failed =
            if self.api.check_runs { self.failed_check_runs(repo, git_ref).await? } else { Vec::new() };
        failed.extend(self.failed_statuses(repo, git_ref).await?);
        Ok(failed)
    }

    async fn review_comments(
        &self,
        repo: &RepoName,
        number: IssueNumber,
        review: ReviewRef<'_>,
    ) -> ForgeResult<Vec<ReviewComment>> {
        let pulls = format!("/repos/{}/pulls/{number}/reviews", repo_path(repo));
        let id = match review {
            ReviewRef::Id(id) => id,
            ReviewRef::NewestBy(login) => {
                let operation = format!("listing the reviews of {repo}#{number}");
                let reviews: Vec<Review> = self.all_pages(&pulls, &operation).await?;
                let by = |r: &Review| r.user.as_ref().is_some_and(|u| u.login.eq_ignore_ascii_case(login));
                match reviews.iter().filter(|r| by(r)).map(|r| r.id).max() {
                    Some(id) => id,
                    None => return Ok(Vec::new()),
                }
            }
        };
        let operation = format!("reading the comments of review {id} on {repo}#{number}");
        let path = format!("{pulls}/{id}/comments");
        // GitHub names the lines in the new file; Gitea gives a position.
        Ok(if self.api.kind == ForgeKind::Github {
            let comments: Vec<GithubReviewComment> = self.all_pages(&path, &operation).await?;
            comments.into_iter().map(ReviewComment::from).collect()
        } else {
            let comments: Vec<GiteaReviewComment> = self.all_pages(&path, &operation).await?;
            comments.into_iter().map(ReviewComment::from).collect()
        })
    }

    async fn reply_to_review_comment(
        &self,
        repo: &RepoName,
        number: IssueNumber,
        comment_id: u64,
        body: &str,
    ) -> ForgeResult<bool> {
        if !self.api.review_replies {
            return Ok(false);
        }
        let operation = format!("replying to review comment {comment_id} on {repo}#{number}");
        let path = format!("/repos/{}/pulls/{number}/comments/{comment_id}/replies", repo_path(repo));
        self.send(Method::POST, &path, Some(&json!({ "body": body })), &operation).await?.ok(&operation)?;
        Ok(true)
    }

    async fn open_issues_with_label(&self, repo: &RepoName, label: &str) -> ForgeResult<Vec<IssueInfo>> {
        let operation = format!("listing the open issues labelled {label:?} in {repo}");
        let path = format!(
            "/repos/{}/issues?state=open&labels={}{}",
            repo_path(repo),
            segment(label),
            self.api.issues_only
        );
        let issues: Vec<Issue> = self.all_pages(&path, &operation).await?;
        Ok(issues.into_iter().map(IssueInfo::from).filter(|issue| !issue.is_pull_request).collect())
    }

    async fn create_blob(&self, repo: &RepoName, content: &[u8]) -> ForgeResult<String> {
        let operation = format!("uploading a file of {} bytes to {repo}", content.len());
        let body = json!({ "content": openssl::base64::encode_block(content), "encoding": "base64" });
        let path = format!("/repos/{}/git/blobs", repo_path(repo));
        Ok(self.send(Method::POST, &path, Some(&body), &operation).await?.json::<GitObject>(&operation)?.sha)
    }

    async fn create_tree(
        &self,
        repo: &RepoName,
        base_tree: &str,
        entries: &[TreeEntry],
    ) -> ForgeResult<String> {
        let operation = format!("creating a tree of {} changed paths in {repo}", entries.len());
        let entries: Vec<Value> = entries
            .iter()
            .map(|e| {
                let kind = if e.mode == "160000" { "commit" } else { "blob" };
                match &e.content {
                    // `sha` must be absent, not null (null removes the path).
                    Some(text) => json!({ "path": e.path, "mode": e.mode, "type": kind, "content": text }),
                    None => json!({ "path": e.path, "mode": e.mode, "type": kind, "sha": e.sha }),
                }
            })
            .collect();
        let body = json!({ "base_tree": base_tree, "tree": entries });
        let path = format!("/repos/{}/git/trees", repo_path(repo));
        Ok(self.send(Method::POST, &path, Some(&body), &operation).await?.json::<GitObject>(&operation)?.sha)
    }

    async fn create_commit(
        &self,
        repo: &RepoName,
        message: &str,
        tree: &str,
        parent: &str,
    ) -> ForgeResult<String> {
        let operation = format!("creating a commit on {parent} in {repo}");
        let body = json!({ "message": message, "tree": tree, "parents": [parent] });
        let path = format!("/repos/{}/git/commits", repo_path(repo));
        Ok(self.send(Method::POST, &path, Some(&body), &operation).await?.json::<GitObject>(&operation)?.sha)
    }

    async fn set_branch(&self, repo: &RepoName, branch: &str, sha: &str, force: bool) -> ForgeResult<()> {
        let operation = format!("moving the branch {branch} of {repo} to {sha}");
        // A ref's name keeps its slashes in the path (`git/ref/heads/forgehand/issue-1`).
        let name: Vec<String> = branch.split('/').map(segment).collect();
        let name = format!("heads/{}", name.join("/"));
        let base = format!("/repos/{}/git", repo_path(repo));
        let found = self.send(Method::GET, &format!("{base}/ref/{name}"), None, &operation).await?;
        let answer = if found.status.as_u16() == 404 {
            let body = json!({ "ref": format!("refs/heads/{branch}"), "sha": sha });
            self.send(Method::POST, &format!("{base}/refs"), Some(&body), &operation).await?
        } else {
            found.ok(&operation)?;
            let body = json!({ "sha": sha, "force": force });
            self.send(Method::PATCH, &format!("{base}/refs/{name}"), Some(&body), &operation).await?
        };
        answer.ok(&operation).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, StatusCode};

    use super::*;

    /// Answers from a script of `(method path, status, body)`; records what was asked.
    struct Scripted {
        script: Vec<(&'static str, u16, &'static str)>,
        asked: std::sync::Arc<Mutex<Vec<String>>>,
    }

    #[async_trait]
    impl Transport for Scripted {
        async fn send(&self, method: Method, path: &str, _: Option<&Value>, _: &str) -> ForgeResult<Answer> {
            let request = format!("{method} {path}");
            self.asked.lock().unwrap().push(request.clone());
            let (_, status, body) = self.script.iter().find(|(r, ..)| *r == request).expect(&request);
            let status = StatusCode::from_u16(*status).unwrap();
            Ok(Answer { status, headers: HeaderMap::new(), body: body.as_bytes().to_vec() })
        }
    }

    static BY_ID: Api = Api {
        kind: ForgeKind::Gitea,
        page_size_param: "limit",
        page_size: 2,
        issues_only: "",
        labels: LabelsBy::Id,
        color_prefix: "#",
        duplicate_pull_status: 409,
        draft: DraftStyle::Flag,
        permissions: &[],
        permission_forbidden_hint: None,
        find_pull: FindPull::BaseHeadRoute,
        check_runs: false,
        review_replies: false,
    };

    #[tokio::test]
    async fn label_ids_are_looked_up_once_over_all_pages() {
        let asked = std::sync::Arc::new(Mutex::new(Vec::new()));
        let transport = Scripted {
            script: vec![
                ("GET /repos/o/r/labels?limit=2&page=1", 200, r#"[{"id":1,"name":"a"},{"id":2,"name":"b"}]"#),
                ("GET /repos/o/r/labels?limit=2&page=2", 200, r#"[{"id":3,"name":"wip"}]"#),
                ("POST /repos/o/r/issues/7/labels", 200, "[]"),
                ("DELETE /repos/o/r/issues/7/labels/3", 204, ""),
            ],
            asked: asked.clone(),
        };
        let forge = RestForge::new(&BY_ID, Box::new(transport));
        forge.add_label(&"o/r".into(), 7.into(), "wip").await.unwrap();
        forge.remove_label(&"o/r".into(), 7.into(), "wip").await.unwrap();
        forge.add_label(&"o/r".into(), 7.into(), "wip").await.unwrap();
        let asked = asked.lock().unwrap().clone();
        let listings = asked.iter().filter(|r| r.contains("/labels?")).count();
        assert_eq!(listings, 2, "{asked:?}");
        assert_eq!(asked.len(), 5, "{asked:?}");
    }

    #[test]
    fn status_labels_say_what_they_mean() {
        assert_eq!(label_color("forgehand:failed"), "d73a4a");
        assert_eq!(label_color("forgehand:done"), "0e8a16");
        assert_eq!(label_color("forgehand:working"), "fbca04");
    }
}
