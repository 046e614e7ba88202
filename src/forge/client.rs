//! The `Forge` trait: what the executor asks of a forge's REST API. One implementation
//! (`rest.rs`) serves GitHub (through octocrab) and Gitea/Forgejo (through reqwest).
//!
//! Errors say what failed and whether trying again later can help; they never contain
//! the token.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::IssueNumber;
use crate::config::{ForgeKind, ForgeSettings, Permission, RepoName};

/// A repository as the executor needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    pub default_branch: String,
    pub clone_url: String,
}

/// An account as its public profile shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub id: u64,
    pub login: String,
    /// The e-mail the profile shows, if any (Gitea shows a placeholder for a private one).
    pub email: Option<String>,
}

/// An issue (or pull request) read back from the forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueInfo {
    pub number: IssueNumber,
    pub title: String,
    pub body: String,
    pub is_open: bool,
    pub labels: Vec<String>,
    pub is_pull_request: bool,
    /// Login of the person who opened it; empty when the forge does not say.
    pub author: String,
}

/// A comment on an issue, as people wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueComment {
    /// Empty when the forge does not say.
    pub author: String,
    pub body: String,
}

/// A pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullInfo {
    pub number: IssueNumber,
    /// The page people open.
    pub url: String,
    pub head_ref: String,
    /// The head commit; empty when the forge does not say.
    pub head_sha: String,
    /// `owner/name` of the repository the head branch lives in (a fork's, or the base
    /// repository's own); `None` when the forge does not say (a deleted fork).
    pub head_repo: Option<String>,
    pub is_open: bool,
}

/// An inline comment of a review, on lines of the pull request's diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewComment {
    pub id: u64,
    /// Empty when the forge does not say.
    pub author: String,
    pub path: String,
    /// The (last) line it is on in the new file; `None` when outdated or unknown.
    pub line: Option<u32>,
    /// The first line of a multi-line comment.
    pub start_line: Option<u32>,
    /// The diff hunk the comment sits on.
    pub diff_hunk: String,
    pub body: String,
}

/// Which review's inline comments to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewRef<'a> {
    /// By the id the webhook carried (GitHub).
    Id(u64),
    /// The newest review by this person (Gitea's review webhooks carry no id).
    NewestBy(&'a str),
}

/// A check or commit status that failed on a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCheck {
    /// The check run's name or the status's context.
    pub name: String,
    /// `failure`, `timed_out`, `error`, ...
    pub conclusion: String,
    /// What the check said of itself (a check run's title and summary, a status's
    /// description); may be empty.
    pub summary: String,
    /// Where people look at it; may be empty.
    pub url: String,
    /// The end of its log (a check run's text, or the Actions job log where the token may
    /// read it); may be empty.
    pub log_tail: String,
}

/// A pull request to open.
#[derive(Debug, Clone)]
pub struct NewPull<'a> {
    pub title: &'a str,
    pub head: &'a str,
    pub base: &'a str,
    pub body: &'a str,
    pub draft: bool,
}

/// Whether a failed call can succeed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Network trouble, a 5xx, or a rate limit: try again, after `retry_after` if known.
    Transient {
        retry_after: Option<Duration>,
    },
    /// The token was refused (401).
    Unauthorized,
    /// The token lacks a right (403).
    Forbidden,
    NotFound,
    /// The forge refused the request as it stands (409, 422, other 4xx).
    Rejected,
}

/// A failed forge call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct ForgeError {
    pub operation: String,
    pub kind: ErrorKind,
    pub message: String,
}

impl ForgeError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Transient { .. })
    }

    /// How long the forge asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            ErrorKind::Transient { retry_after } => retry_after,
            _ => None,
        }
    }

    /// The forge at `url` could not be reached: the message names the URL and the
    /// deepest cause (the OS error, e.g. "Connection refused (os error 111)"), not the
    /// HTTP stack's wrapping of it ("client error (Connect)").
    pub(crate) fn unreachable(
        operation: &str,
        url: &str,
        err: &(dyn std::error::Error + 'static),
    ) -> ForgeError {
        ForgeError {
            operation: operation.to_owned(),
            kind: ErrorKind::Transient { retry_after: None },
            message: format!("cannot reach {}: {}", crate::config::mask_url_password(url), root_cause(err)),
        }
    }

    fn no_git_api(operation: &str) -> ForgeError {
        ForgeError {
            operation: operation.to_owned(),
            kind: ErrorKind::Rejected,
            message: "this forge takes commits only by a git push; set git.commit_via_api = \"never\"".into(),
        }
    }

    pub(crate) fn invalid_answer(operation: &str, message: impl std::fmt::Display) -> ForgeError {
        ForgeError {
            operation: operation.to_owned(),
            kind: ErrorKind::Transient { retry_after: None },
            message: format!("the forge's answer could not be read: {message}"),
        }
    }
}

/// The first OS error in `err`'s chain of sources, else the innermost message.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = err;
    let mut next = Some(err);
    while let Some(cause) = next {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io.to_string();
        }
        innermost = cause;
        next = cause.source();
    }
    innermost.to_string()
}

/// Result of a forge call.
pub type ForgeResult<T> = Result<T, ForgeError>;

/// What forgehand asks of a forge.
#[async_trait]
pub trait Forge: Send + Sync {
    /// Which dialect this forge speaks.
    fn kind(&self) -> ForgeKind;
    /// The login of the account the token belongs to.
    async fn current_login(&self) -> ForgeResult<String>;
    /// The token git pushes to `repo` with when it is not the configured `token` (a GitHub
    /// App's installation token, fresh for at least a few minutes); `None` otherwise.
    async fn git_token(&self, _repo: &RepoName) -> ForgeResult<Option<secrecy::SecretString>> {
        Ok(None)
    }
    /// Every repository the credentials reach when they define that set (a GitHub App's
    /// installations); `None` for a token, which reaches whatever its account can see.
    async fn installed_repos(&self) -> ForgeResult<Option<Vec<RepoName>>> {
        Ok(None)
    }
    /// The public profile of account `login`.
    async fn user(&self, login: &str) -> ForgeResult<UserInfo>;
    /// Default branch and clone URL.
    async fn repository(&self, repo: &RepoName) -> ForgeResult<RepoInfo>;
    /// The permission `login` has on `repo`.
    async fn permission(&self, repo: &RepoName, login: &str) -> ForgeResult<Permission>;
    /// An issue or pull request as it is now.
    async fn issue(&self, repo: &RepoName, number: IssueNumber) -> ForgeResult<IssueInfo>;
    /// Posts a comment; returns its id.
    /// The comments on issue `number`, oldest first (at most `MAX_PAGES` pages).
    async fn comments(&self, repo: &RepoName, number: IssueNumber) -> ForgeResult<Vec<IssueComment>>;
    async fn create_comment(&self, repo: &RepoName, number: IssueNumber, body: &str) -> ForgeResult<u64>;
    /// Replaces a comment's text.
    async fn edit_comment(&self, repo: &RepoName, comment_id: u64, body: &str) -> ForgeResult<()>;
    /// Adds a label to an issue, creating it in the repository when missing.
    async fn add_label(&self, repo: &RepoName, number: IssueNumber, label: &str) -> ForgeResult<()>;
    /// Removes a label from an issue; a label that is not there is fine.
    async fn remove_label(&self, repo: &RepoName, number: IssueNumber, label: &str) -> ForgeResult<()>;
    /// Adds a reaction (`eyes`, `rocket`, ...) to an issue.
    async fn react(&self, repo: &RepoName, number: IssueNumber, content: &str) -> ForgeResult<()>;
    /// The open pull request from `head` into `base`, if any.
    async fn find_pull(&self, repo: &RepoName, head: &str, base: &str) -> ForgeResult<Option<PullInfo>>;
    /// Opens a pull request, or returns the open one for the same head: never two.
    async fn create_pull(&self, repo: &RepoName, pull: &NewPull<'_>) -> ForgeResult<PullInfo>;
    /// A pull request by number.
    async fn pull(&self, repo: &RepoName, number: IssueNumber) -> ForgeResult<PullInfo>;
    /// The checks (GitHub) and commit statuses (both forges) that failed on `git_ref`, a
    /// commit or a branch.
    async fn failing_checks(&self, repo: &RepoName, git_ref: &str) -> ForgeResult<Vec<FailedCheck>>;
    /// The inline comments of a review of pull request `number`, oldest first.
    async fn review_comments(
        &self,
        repo: &RepoName,
        number: IssueNumber,
        review: ReviewRef<'_>,
    ) -> ForgeResult<Vec<ReviewComment>>;
    /// Replies in the thread of review comment `comment_id`; `false` when the forge has
    /// no such reply (Gitea), so that the caller says it elsewhere.
    async fn reply_to_review_comment(
        &self,
        repo: &RepoName,
        number: IssueNumber,
        comment_id: u64,
        body: &str,
    ) -> ForgeResult<bool>;
    /// Every open issue (never a pull request) that carries `label`, all pages.
    async fn open_issues_with_label(&self, repo: &RepoName, label: &str) -> ForgeResult<Vec<IssueInfo>>;
    /// Stores `content` as a blob in `repo` (GitHub's Git database API); its sha.
    async fn create_blob(&self, _repo: &RepoName, _content: &[u8]) -> ForgeResult<String> {
        Err(ForgeError::no_git_api("uploading a file"))
    }
    /// A tree made of `base_tree` with `entries` replaced or removed; its sha.
    async fn create_tree(
        &self,
        _repo: &RepoName,
        _base_tree: &str,
        _entries: &[TreeEntry],
    ) -> ForgeResult<String> {
        Err(ForgeError::no_git_api("creating a tree"))
    }
    /// A commit of `tree` on `parent` with no author nor committer given, so that GitHub
    /// makes them the token's account and signs it; its sha.
    async fn create_commit(
        &self,
        _repo: &RepoName,
        _message: &str,
        _tree: &str,
        _parent: &str,
    ) -> ForgeResult<String> {
        Err(ForgeError::no_git_api("creating a commit"))
    }
    /// Points branch `branch` at `sha`, creating it when missing; without `force`, only
    /// a fast-forward (else [`ErrorKind::Rejected`]).
    async fn set_branch(&self, _repo: &RepoName, _branch: &str, _sha: &str, _force: bool) -> ForgeResult<()> {
        Err(ForgeError::no_git_api("moving a branch"))
    }
}

/// One entry of a tree made through the API: `path` holds `content` (text GitHub writes
/// as a blob) or the object `sha`; neither removes `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub path: String,
    /// `100644`, `100755`, `120000` (a symbolic link) or `160000` (a submodule).
    pub mode: String,
    pub sha: Option<String>,
    pub content: Option<String>,
}

/// The most pages a listing reads, so that a forge answering in circles cannot hold the
/// caller forever.
pub(crate) const MAX_PAGES: u32 = 50;

/// Builds the client for a configured forge.
pub fn connect(settings: &ForgeSettings) -> anyhow::Result<Arc<dyn Forge>> {
    (super::dialect(settings.kind).connect)(settings)
}

/// An HTTP answer before interpretation.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as `T` when the status is a success, else the error it describes.
    pub fn json<T: DeserializeOwned>(self, operation: &str) -> ForgeResult<T> {
        let body = self.ok(operation)?;
        serde_json::from_slice(&body).map_err(|e| ForgeError::invalid_answer(operation, e))
    }

    /// The body when the status is a success, else the error it describes.
    pub fn ok(self, operation: &str) -> ForgeResult<Vec<u8>> {
        if self.status.is_success() { Ok(self.body) } else { Err(self.error(operation)) }
    }

    /// The error a non-success answer describes.
    pub fn error(&self, operation: &str) -> ForgeError {
        ForgeError { operation: operation.to_owned(), kind: self.kind(), message: self.message() }
    }

    fn kind(&self) -> ErrorKind {
        let header = |name: &str| self.headers.get(name).and_then(|v| v.to_str().ok());
        let rate_limited = header("x-ratelimit-remaining") == Some("0");
        match self.status.as_u16() {
            429 => ErrorKind::Transient { retry_after: retry_after(&self.headers) },
            403 if rate_limited || header("retry-after").is_some() => {
                ErrorKind::Transient { retry_after: retry_after(&self.headers) }
            }
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            408 | 500..=599 => ErrorKind::Transient { retry_after: None },
            _ => ErrorKind::Rejected,
        }
    }

    fn message(&self) -> String {
        let said = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let said: String = said.chars().take(200).filter(|c| !c.is_control()).collect();
        let status = self.status.as_u16();
        match self.kind() {
            ErrorKind::Unauthorized => {
                format!("the forge refused the token ({status}); check forges[].token")
            }
            ErrorKind::Transient { retry_after: Some(wait) } => {
                format!("rate limited ({status}); retry in {} s", wait.as_secs())
            }
            _ if said.is_empty() => format!("the forge answered {status}"),
            _ => format!("the forge answered {status}: {said}"),
        }
    }
}

/// `Retry-After` seconds, else the time until `X-RateLimit-Reset` (epoch seconds).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if let Some(seconds) = number("retry-after") {
        return Some(Duration::from_secs(seconds));
    }
    let reset = number("x-ratelimit-reset")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now).max(1)))
}

/// Percent-encodes one URL path segment (a label or branch name).
pub(crate) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `owner/name` as two encoded path segments.
pub(crate) fn repo_path(repo: &RepoName) -> String {
    repo.segments().map(segment).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> Answer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        Answer { status: StatusCode::from_u16(status).unwrap(), headers: map, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn rate_limits_are_transient_with_the_wait() {
        let limited = answer(429, &[("retry-after", "7")], "{}").error("x");
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
        let reset =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 60;
        let exhausted =
            answer(403, &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &reset.to_string())], "{}")
                .error("x");
        assert!(exhausted.is_transient());
        assert!((55..=60).contains(&exhausted.retry_after().unwrap().as_secs()));
    }

    #[test]
    fn other_statuses() {
        assert!(answer(502, &[], "").error("x").is_transient());
        assert_eq!(
            answer(401, &[], r#"{"message":"Bad credentials"}"#).error("x").kind,
            ErrorKind::Unauthorized
        );
        assert_eq!(answer(403, &[], "{}").error("x").kind, ErrorKind::Forbidden);
        let rejected =
            answer(422, &[], r#"{"message":"Validation Failed"}"#).error("opening the pull request");
        assert_eq!(rejected.kind, ErrorKind::Rejected);
        assert_eq!(
            rejected.to_string(),
            "opening the pull request: the forge answered 422: Validation Failed"
        );
    }

    #[tokio::test]
    async fn an_unreachable_forge_is_named_with_the_os_error() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/v1", closed.local_addr().unwrap());
        drop(closed);
        for kind in ForgeKind::ALL {
            let settings = ForgeSettings {
                name: "f".into(),
                kind,
                api_url: url.clone(),
                token: "t".to_owned().into(),
                webhook_secret: Default::default(),
                bot_login: String::new(),
                app_id: None,
                private_key: String::new().into(),
            };
            let err = connect(&settings).unwrap().issue(&"o/r".into(), 1.into()).await.unwrap_err();
            assert!(err.is_transient(), "{kind}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("cannot reach {url}: Connection refused (os error ")),
                "{kind}: {text}"
            );
        }
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("forgehand:working"), "forgehand%3Aworking");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(repo_path(&"octo-org/hello.world".into()), "octo-org/hello.world");
    }
}
