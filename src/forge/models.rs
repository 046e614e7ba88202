//! The REST answers GitHub and Gitea share the shape of: only the fields forgehand reads.

use serde::Deserialize;
use serde_json::Value;

use super::IssueNumber;
use super::client::{IssueComment, IssueInfo, PullInfo, RepoInfo, ReviewComment, UserInfo};

/// `GET /user`.
#[derive(Deserialize)]
pub struct Login {
    pub login: String,
}

/// `GET /users/{login}`.
#[derive(Deserialize)]
pub struct User {
    id: u64,
    login: String,
    #[serde(default)]
    email: Option<String>,
}

impl From<User> for UserInfo {
    fn from(user: User) -> UserInfo {
        UserInfo { id: user.id, login: user.login, email: user.email }
    }
}

/// `GET /repos/{o}/{r}`.
#[derive(Deserialize)]
pub struct Repository {
    default_branch: String,
    clone_url: String,
}

impl From<Repository> for RepoInfo {
    fn from(repo: Repository) -> RepoInfo {
        RepoInfo { default_branch: repo.default_branch, clone_url: repo.clone_url }
    }
}

/// `GET /repos/{o}/{r}/collaborators/{user}/permission`.
#[derive(Deserialize)]
pub struct PermissionAnswer {
    pub permission: String,
}

/// A label; Gitea addresses labels by id, GitHub by name.
#[derive(Deserialize)]
pub struct Label {
    #[serde(default)]
    pub id: u64,
    pub name: String,
}

/// An issue (pull requests show up as issues too).
#[derive(Deserialize)]
pub struct Issue {
    number: IssueNumber,
    title: String,
    #[serde(default)]
    body: Option<String>,
    state: String,
    #[serde(default)]
    labels: Option<Vec<Label>>,
    #[serde(default)]
    pull_request: Option<Value>,
    #[serde(default)]
    user: Option<Login>,
}

impl From<Issue> for IssueInfo {
    fn from(issue: Issue) -> IssueInfo {
        IssueInfo {
            number: issue.number,
            title: issue.title,
            body: issue.body.unwrap_or_default(),
            is_open: issue.state == "open",
            labels: issue.labels.unwrap_or_default().into_iter().map(|l| l.name).collect(),
            // Gitea sends `"pull_request": null` on plain issues.
            is_pull_request: issue.pull_request.is_some_and(|p| !p.is_null()),
            author: issue.user.map(|u| u.login).unwrap_or_default(),
        }
    }
}

/// A comment on an issue or pull request, as listed.
#[derive(Deserialize)]
pub struct Comment {
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<Login>,
}

impl From<Comment> for IssueComment {
    fn from(comment: Comment) -> IssueComment {
        IssueComment {
            author: comment.user.map(|u| u.login).unwrap_or_default(),
            body: comment.body.unwrap_or_default(),
        }
    }
}

/// A blob, tree or commit the Git database API made.
#[derive(Deserialize)]
pub struct GitObject {
    pub sha: String,
}

/// Anything created with an id (a comment, a label).
#[derive(Deserialize)]
pub struct Id {
    pub id: u64,
}

#[derive(Deserialize)]
struct HeadRef {
    #[serde(rename = "ref")]
    name: String,
    #[serde(default)]
    sha: Option<String>,
    /// `None` when the fork was deleted.
    #[serde(default)]
    repo: Option<RepoFullName>,
}

#[derive(Deserialize)]
struct RepoFullName {
    full_name: String,
}

/// A review as `GET /pulls/{n}/reviews` lists it (Gitea).
#[derive(Deserialize)]
pub struct Review {
    pub id: u64,
    #[serde(default)]
    pub user: Option<Login>,
}

/// An inline review comment on GitHub (`GET /pulls/{n}/reviews/{id}/comments`): its lines
/// in the new file (`null` when the comment is outdated).
#[derive(Deserialize)]
pub struct GithubReviewComment {
    id: u64,
    #[serde(default)]
    user: Option<Login>,
    #[serde(default)]
    path: String,
    #[serde(default)]
    diff_hunk: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    line: Option<u32>,
    #[serde(default)]
    start_line: Option<u32>,
}

/// An inline review comment on Gitea: its line in the new file is its `position` (0 for a
/// comment on the old side).
#[derive(Deserialize)]
pub struct GiteaReviewComment {
    id: u64,
    #[serde(default)]
    user: Option<Login>,
    #[serde(default)]
    path: String,
    #[serde(default)]
    diff_hunk: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    position: Option<u32>,
}

impl From<GithubReviewComment> for ReviewComment {
    fn from(c: GithubReviewComment) -> ReviewComment {
        ReviewComment {
            id: c.id,
            author: c.user.map(|u| u.login).unwrap_or_default(),
            path: c.path,
            line: c.line,
            start_line: c.start_line,
            diff_hunk: c.diff_hunk.unwrap_or_default(),
            body: c.body.unwrap_or_default(),
        }
    }
}

impl From<GiteaReviewComment> for ReviewComment {
    fn from(c: GiteaReviewComment) -> ReviewComment {
        ReviewComment {
            id: c.id,
            author: c.user.map(|u| u.login).unwrap_or_default(),
            path: c.path,
            line: c.position.filter(|line| *line > 0),
            start_line: None,
            diff_hunk: c.diff_hunk.unwrap_or_default(),
            body: c.body.unwrap_or_default(),
        }
    }
}

/// `GET /repos/{o}/{r}/commits/{ref}/check-runs` (GitHub).
#[derive(Deserialize)]
pub struct CheckRuns {
    pub check_runs: Vec<CheckRun>,
}

/// One check run.
#[derive(Deserialize)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub output: Option<CheckOutput>,
    #[serde(default)]
    pub app: Option<CheckApp>,
}

/// What a check run reports.
#[derive(Deserialize, Default)]
pub struct CheckOutput {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

/// The app that ran a check (`github-actions` for Actions jobs, whose id is the job's).
#[derive(Deserialize)]
pub struct CheckApp {
    #[serde(default)]
    pub slug: Option<String>,
}

/// A pull request.
#[derive(Deserialize)]
pub struct Pull {
    number: IssueNumber,
    html_url: String,
    state: String,
    head: HeadRef,
}

impl From<Pull> for PullInfo {
    fn from(pull: Pull) -> PullInfo {
        PullInfo {
            number: pull.number,
            url: pull.html_url,
            head_ref: pull.head.name,
            head_sha: pull.head.sha.unwrap_or_default(),
            head_repo: pull.head.repo.map(|r| r.full_name),
            is_open: pull.state == "open",
        }
    }
}
