//! The REST answers GitHub and Gitea share the shape of: only the fields forgehand reads.

use serde::Deserialize;
use serde_json::Value;

use super::IssueNumber;
use super::client::{IssueComment, IssueInfo, PullInfo, RepoInfo, UserInfo};

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

/// Anything created with an id (a comment, a label).
#[derive(Deserialize)]
pub struct Id {
    pub id: u64,
}

#[derive(Deserialize)]
struct HeadRef {
    #[serde(rename = "ref")]
    name: String,
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
            is_open: pull.state == "open",
        }
    }
}
